//! A cluster of real `conflux` processes on loopback ports, for the node's integration tests, and
//! an `etcdctl` runner.
#![allow(dead_code)]

pub mod certs;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use conflux::node::proto::etcdserverpb::{
    PutRequest, RangeRequest, StatusRequest, kv_client::KvClient, maintenance_client::MaintenanceClient,
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

mod port;
#[allow(unused_imports)] // not every test binary that includes this module needs it
pub use port::free_port;

/// Fail with the Debian package to install when a tool is missing.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/local/bin"]) {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{tool}` is not installed: install the Debian package `{package}` (scripts/test.sh does)");
}

/// One member's settings.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    /// `http` or `https` (client and peer URLs alike).
    pub scheme: &'static str,
    /// The port other members dial for this one, when not its own peer port (a [`proxy::Proxy`]
    /// in between).
    pub advertised_peer_port: Option<u16>,
    /// `--peer-local-address`, when set.
    pub peer_local_address: Option<std::net::IpAddr>,
}

impl MemberSpec {
    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.peer_port)
    }
    /// The peer URL the other members dial: through the proxy when there is one.
    pub fn advertised_peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.advertised_peer_port.unwrap_or(self.peer_port))
    }
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// A cluster of `conflux` processes; kills them on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<MemberSpec>,
    pub procs: Vec<Option<Child>>,
    pub extra: Vec<String>,
    pub token: String,
    /// How the harness's own gRPC client dials https client URLs (`None`: plain http URLs).
    pub client_tls: Option<ClientTlsConfig>,
}

impl Cluster {
    /// Start `n` members with `extra` flags each, and wait until every one answers and a leader
    /// is known.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, None)
    }

    /// Like [`Cluster::start`], but with https client and peer URLs when `client_tls` is given
    /// (`extra` then carries the members' TLS flags); the harness dials with `client_tls`.
    pub fn start_with(n: usize, extra: &[&str], client_tls: Option<ClientTlsConfig>) -> Cluster {
        // Free ports are picked by binding port 0 and releasing it, so a parallel test can take
        // one in between: start again on new ports when a member could not bind.
        for attempt in 1..=3 {
            let mut c = Cluster::new(n, extra, client_tls.clone());
            for i in 0..n {
                c.spawn(i);
            }
            match (0..n).try_for_each(|i| c.try_wait_ready(i)) {
                Ok(()) => return c,
                Err(e) if e.contains("Address already in use") && attempt < 3 => continue,
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    /// A cluster's ports and data directories, with nothing started: fill the data directories
    /// first (as `conflux restore` does), then [`Cluster::spawn`] and [`Cluster::wait_ready`]
    /// each member.
    pub fn prepare(n: usize, extra: &[&str]) -> Cluster {
        Cluster::new(n, extra, None)
    }

    fn new(n: usize, extra: &[&str], client_tls: Option<ClientTlsConfig>) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let scheme = if client_tls.is_some() { "https" } else { "http" };
        let members = (0..n)
            .map(|i| MemberSpec {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                metrics_port: free_port(),
                data_dir: dir.path().join(format!("m{i}.conflux")),
                scheme,
                advertised_peer_port: None,
                peer_local_address: None,
            })
            .collect();
        Cluster {
            dir,
            members,
            procs: (0..n).map(|_| None).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            token: "test-cluster".into(),
            client_tls,
        }
    }

    /// An endpoint for member `i`'s client URL (with the harness's TLS on https).
    pub fn endpoint(&self, i: usize) -> Endpoint {
        let ep = Endpoint::from_shared(self.members[i].client_url()).unwrap();
        match &self.client_tls {
            Some(tls) => ep.tls_config(tls.clone()).expect("client TLS config"),
            None => ep,
        }
    }

    pub fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}={}", m.name, m.advertised_peer_url())).collect::<Vec<_>>().join(",")
    }

    /// The flags member `i` runs with.
    pub fn args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let mut a: Vec<String> = [
            "--name",
            &m.name,
            "--data-dir",
            m.data_dir.to_str().unwrap(),
            "--listen-client-urls",
            &m.client_url(),
            "--advertise-client-urls",
            &m.client_url(),
            "--listen-peer-urls",
            &m.peer_url(),
            "--initial-advertise-peer-urls",
            &m.advertised_peer_url(),
            "--initial-cluster",
            &self.initial_cluster(),
            "--initial-cluster-token",
            &self.token,
            "--listen-metrics-urls",
            &format!("http://127.0.0.1:{}", m.metrics_port),
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--log-level",
            "info",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(ip) = m.peer_local_address {
            a.extend(["--peer-local-address".to_string(), ip.to_string()]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.members[i].name))
    }

    /// Start member `i` (again).
    pub fn spawn(&mut self, i: usize) {
        let args = self.args(i);
        self.spawn_with(i, &args);
    }

    pub fn spawn_with(&mut self, i: usize, args: &[String]) {
        self.spawn_env(i, args, &[]);
    }

    /// Start member `i` with `args` and extra environment variables.
    pub fn spawn_env(&mut self, i: usize, args: &[String], env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(i)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_conflux"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn conflux");
        self.procs[i] = Some(child);
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Wait (30 s at most) until member `i` answers Status with a leader known.
    pub fn wait_ready(&mut self, i: usize) {
        if let Err(e) = self.try_wait_ready(i) {
            panic!("{e}");
        }
    }

    fn try_wait_ready(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ep = self.endpoint(i);
        loop {
            if let Some(Some(p)) = self.procs.get_mut(i)
                && let Ok(Some(status)) = p.try_wait()
            {
                return Err(format!("member {i} exited with {status} while starting; its log:\n{}", self.log(i)));
            }
            let ok = rt().block_on(async {
                let Ok(ch) = ep.connect().await else { return false };
                let mut m = MaintenanceClient::new(ch);
                matches!(m.status(StatusRequest {}).await, Ok(r) if r.get_ref().leader != 0)
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("member {i} not ready after 30 s; its log:\n{}", self.log(i)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// SIGTERM member `i` and wait (20 s at most) for it to exit; returns its exit status.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut p = self.procs[i].take().expect("member is running");
        let _ = Command::new("kill").arg("-TERM").arg(p.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = p.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = p.kill();
                panic!("member {i} did not exit within 20 s of SIGTERM; its log:\n{}", self.log(i));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The leader's index, as member `asked` reports it.
    pub fn leader(&self, asked: usize) -> Option<usize> {
        let ep = self.endpoint(asked);
        let id = rt().block_on(async {
            let ch = ep.connect().await.ok()?;
            let r = MaintenanceClient::new(ch).status(StatusRequest {}).await.ok()?;
            Some((r.get_ref().leader, r.get_ref().header.as_ref()?.member_id))
        })?;
        let (leader, _) = id;
        (0..self.members.len()).find(|&i| self.member_id(i) == Some(leader))
    }

    /// Member `i`'s id, as it reports it.
    pub fn member_id(&self, i: usize) -> Option<u64> {
        let ep = self.endpoint(i);
        rt().block_on(async {
            let ch = ep.connect().await.ok()?;
            let r = MaintenanceClient::new(ch).status(StatusRequest {}).await.ok()?;
            Some(r.get_ref().header.as_ref()?.member_id)
        })
    }

    /// Wait (30 s at most) for a leader among the running members other than `except`.
    pub fn wait_leader(&self, except: Option<usize>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..self.members.len() {
                if Some(i) == except || self.procs[i].is_none() {
                    continue;
                }
                if let Some(l) = self.leader(i)
                    && Some(l) != except
                {
                    return l;
                }
            }
            assert!(Instant::now() < deadline, "no leader elected within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A KV client for member `i`.
    pub async fn kv(&self, i: usize) -> KvClient<Channel> {
        let ch = self.endpoint(i).connect().await.expect("connect");
        KvClient::new(ch)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// A small runtime for blocking helpers.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Run etcdctl (API v3) against `endpoints`; returns its output.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    let bin = require_tool("etcdctl", "etcd-client");
    Command::new(bin)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// Run etcdctl with `stdin` as its input.
pub fn etcdctl_stdin(endpoints: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let bin = require_tool("etcdctl", "etcd-client");
    let mut child = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// etcdctl's stdout, asserting it succeeded.
pub fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "etcdctl {what} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Put through the gRPC client; the revision.
pub async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> Result<i64, tonic::Status> {
    let r = kv
        .put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            ..Default::default()
        })
        .await?;
    Ok(r.get_ref().header.as_ref().map(|h| h.revision).unwrap_or(0))
}

/// Get one key's value (linearizable unless `serializable`).
pub async fn get(kv: &mut KvClient<Channel>, key: &str, serializable: bool) -> Result<Option<String>, tonic::Status> {
    let r = kv.range(RangeRequest { key: key.as_bytes().to_vec().into(), serializable, ..Default::default() }).await?;
    Ok(r.get_ref().kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).to_string()))
}

/// A gRPC channel to member `i`.
pub async fn channel(c: &Cluster, i: usize) -> Channel {
    Channel::from_shared(c.members[i].client_url()).unwrap().connect().await.expect("connect")
}

/// A long-running etcdctl (watch, lock, elect) whose stdout lines are collected as they come.
pub struct Background {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
    what: String,
}

impl Background {
    /// Start etcdctl (API v3) against `endpoints` with `args`.
    pub fn etcdctl(endpoints: &str, args: &[&str]) -> Background {
        let bin = require_tool("etcdctl", "etcd-client");
        let mut child = Command::new(bin)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run etcdctl");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Background { child, lines: rx, seen: Vec::new(), what: format!("etcdctl {}", args.join(" ")) }
    }

    /// Wait (at most `timeout`) until the lines read so far satisfy `done`; panics with them if
    /// they never do.
    pub fn wait_for(&mut self, timeout: Duration, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(l) => self.seen.push(l),
                Err(_) if Instant::now() >= deadline => {
                    panic!("{}: {what} not seen within {timeout:?}; output so far: {:?}", self.what, self.seen)
                }
                Err(_) => {}
            }
        }
    }

    /// Read whatever else arrives within `d`.
    pub fn drain_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(l) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(l);
        }
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Send SIGTERM (etcdctl lock/elect release on it) and wait up to 10 s for the exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
