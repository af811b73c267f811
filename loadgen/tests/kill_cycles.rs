//! Kills during load: three real `conflux` processes on loopback, loadgen driving a read / write /
//! compare-and-swap mix against them with `--history` and `--ack-log`, while this test SIGKILLs the
//! leader or a follower at random moments and restarts it, for `CYCLES` cycles. Afterwards: every
//! acknowledged write is still readable (`loadgen verify`), the history is linearizable
//! (`loadgen check`), and the time from each leader kill to the first write acknowledged through a
//! survivor is reported (docs/reliability.md).
//!
//! `CONFLUX_KILL_CYCLES_DEBUG=1` keeps the run's directory (members' logs, history, ack log; its
//! path is printed) and has the members log at debug level, for investigating a failure.
//!
//! The `conflux` binary is taken from the same target directory as this test (`cargo test
//! --workspace` builds it); the test fails, saying so, when it is not there.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, RUN_LIMIT, free_port, loadgen};
use conflux::node::proto::etcdserverpb::kv_client::KvClient;
use conflux::node::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use conflux::node::proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};
use rand::Rng;

/// Kill/restart cycles in the default run; `CONFLUX_FULL_TESTS=1` runs more.
fn cycles() -> usize {
    if std::env::var("CONFLUX_FULL_TESTS").is_ok() { 100 } else { 20 }
}

/// Whether to keep the run's files and log at debug level (`CONFLUX_KILL_CYCLES_DEBUG=1`).
fn debugging() -> bool {
    std::env::var("CONFLUX_KILL_CYCLES_DEBUG").is_ok_and(|v| v == "1")
}

/// Raft timing for the run: the leader's failure is noticed within an election timeout.
const HEARTBEAT_MS: u64 = 50;
const ELECTION_MS: u64 = 300;

fn conflux_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/kill_cycles-<hash> -> target/<profile>/conflux
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("conflux");
    assert!(
        bin.is_file(),
        "{} is missing: build the server first (`cargo build -p conflux`; `cargo test --workspace` does)",
        bin.display()
    );
    bin
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    log: PathBuf,
    proc: Option<KillOnDrop>,
}

struct Cluster {
    members: Vec<Member>,
    initial: String,
    bin: PathBuf,
}

impl Cluster {
    fn start(root: &std::path::Path) -> Cluster {
        let members: Vec<Member> = (0..3)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                dir: root.join(format!("m{i}.conflux")),
                log: root.join(format!("m{i}.log")),
                proc: None,
            })
            .collect();
        let initial =
            members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        let mut c = Cluster { members, initial, bin: conflux_bin() };
        for i in 0..3 {
            c.spawn(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log).expect("member log");
        let child: Child = Command::new(&self.bin)
            .args(["--name", &m.name, "--data-dir", m.dir.to_str().unwrap()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-token", "kill-cycles"])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string(), "--election-timeout", &ELECTION_MS.to_string()])
            .args(["--snapshot-count", "500", "--snapshot-catchup-entries", "100"])
            .args(["--log-level", if debugging() { "debug" } else { "warn" }])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn conflux");
        self.members[i].proc = Some(KillOnDrop(child));
    }

    fn kill(&mut self, i: usize) {
        // KillOnDrop sends SIGKILL and reaps.
        self.members[i].proc = None;
    }

    fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client)
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// Whether member 0 serves a loadgen key (`lg/` prefix) yet.
    async fn has_loadgen_keys(&self) -> bool {
        let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{}", self.endpoint(0)))
            .expect("endpoint")
            .connect_timeout(Duration::from_millis(200))
            .timeout(Duration::from_millis(500))
            .connect()
            .await
        else {
            return false;
        };
        let req = RangeRequest {
            key: b"lg/".to_vec().into(),
            range_end: b"lg0".to_vec().into(),
            count_only: true,
            serializable: true,
            ..Default::default()
        };
        KvClient::new(ch).range(req).await.is_ok_and(|r| r.get_ref().count > 0)
    }

    /// The member that member `asked` says leads, once it knows one.
    async fn leader(&self, asked: usize) -> Option<usize> {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", self.endpoint(asked)))
            .ok()?
            .connect_timeout(Duration::from_millis(200))
            .timeout(Duration::from_millis(500))
            .connect()
            .await
            .ok()?;
        let s = MaintenanceClient::new(ch).status(StatusRequest {}).await.ok()?.into_inner();
        if s.leader == 0 {
            return None;
        }
        let header = s.header?;
        // The asked member's own id tells which index it is when it leads; otherwise ask around.
        if s.leader == header.member_id {
            return Some(asked);
        }
        for j in 0..3 {
            if j != asked
                && let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{}", self.endpoint(j)))
                    .ok()?
                    .connect_timeout(Duration::from_millis(200))
                    .timeout(Duration::from_millis(500))
                    .connect()
                    .await
                && let Ok(r) = MaintenanceClient::new(ch).status(StatusRequest {}).await
                && r.get_ref().header.as_ref().is_some_and(|h| h.member_id == s.leader)
            {
                return Some(j);
            }
        }
        None
    }

    /// Wait (30 s at most) until every running member answers with a leader known; the leader.
    async fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..3 {
                if self.members[i].proc.is_some()
                    && let Some(l) = self.leader(i).await
                    && self.members[l].proc.is_some()
                {
                    return l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader within 30 s; logs:\n{}\n{}\n{}",
                self.log(0),
                self.log(1),
                self.log(2)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Time until a put through one of the running members `except` is acknowledged.
    async fn first_write(&self, except: usize, key: &str) -> Duration {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(30);
        let mut k = 0;
        loop {
            let i = (except + 1 + k % 2) % 3;
            k += 1;
            let ok = async {
                let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", self.endpoint(i)))
                    .ok()?
                    .connect_timeout(Duration::from_millis(200))
                    // Short, so a put that waits for a leader is retried promptly.
                    .timeout(Duration::from_millis(150))
                    .connect()
                    .await
                    .ok()?;
                let req = PutRequest {
                    key: key.as_bytes().to_vec().into(),
                    value: b"x".to_vec().into(),
                    ..Default::default()
                };
                KvClient::new(ch).put(req).await.ok()
            }
            .await
            .is_some();
            if ok {
                return start.elapsed();
            }
            assert!(Instant::now() < deadline, "no write acknowledged within 30 s of killing the leader");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Every acknowledged write survives the kills, and the history is linearizable.
#[test]
fn kills_during_load_lose_nothing_and_stay_linearizable() {
    kill_cycles();
}

fn kill_cycles() {
    let mut root = tempfile::tempdir().expect("tempdir");
    if debugging() {
        root.disable_cleanup(true);
        eprintln!("kill cycles: files kept in {}", root.path().display());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut c = Cluster::start(root.path());
    rt.block_on(c.wait_leader());
    let endpoints = (0..3).map(|i| c.endpoint(i)).collect::<Vec<_>>().join(",");
    let history = root.path().join("history.jsonl");
    let acks = root.path().join("acks.log");
    let n = cycles();
    // Long enough for every cycle; the test stops loadgen (SIGINT ends the measured phase early,
    // cleanly) once the cycles are done.
    let duration = format!("{}s", 5 + n * 4);
    let lg = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--endpoints", &endpoints, "--workload", "mix", "--mix", "put=40,get=40,txn=20"])
        // An open loop at a modest rate over many keys: each key's history stays short, so the
        // checker's search stays small even with the writes whose outcome a kill left unknown.
        .args(["--key-space", "200", "--rate", "150", "--clients", "16", "--conns", "3"])
        .args(["--warmup", "0s", "--duration", &duration])
        .args(["--request-timeout", "2s", "--quiet", "--seed", "11"])
        .args(["--history", history.to_str().unwrap(), "--ack-log", acks.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.path().join("loadgen.err")).unwrap())
        .spawn()
        .expect("spawn loadgen");
    let mut lg = KillOnDrop(lg);

    // Start killing once loadgen runs: it connects to every endpoint first and stops when one
    // refuses (a member killed before then would end the run). Its first writes show it runs.
    let started = Instant::now();
    while !rt.block_on(c.has_loadgen_keys()) {
        assert!(lg.0.try_wait().unwrap().is_none(), "loadgen stopped before its first write");
        assert!(started.elapsed() < Duration::from_secs(30), "no loadgen write within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rng = rand::rng();
    let mut failovers = Vec::new();
    for cycle in 0..n {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..700)));
        let leader = rt.block_on(c.wait_leader());
        let victim = if cycle % 2 == 0 { leader } else { (leader + 1 + rng.random_range(0..2)) % 3 };
        c.kill(victim);
        if victim == leader {
            failovers.push(rt.block_on(c.first_write(victim, &format!("failover-{cycle}"))));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..500)));
        c.spawn(victim);
        rt.block_on(c.wait_leader());
        assert!(lg.0.try_wait().unwrap().is_none(), "loadgen stopped early");
    }
    // End the measured phase and let loadgen write its files.
    let _ = Command::new("kill").args(["-INT", &lg.0.id().to_string()]).status();
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(s) = lg.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "loadgen did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(root.path().join("loadgen.err")).unwrap_or_default();
    // Errors during kills are expected (the run's exit code counts them); the files must be there.
    assert!(history.is_file() && acks.is_file(), "loadgen ({status}) left no history or ack log:\n{err}");

    let verified = loadgen(&["verify", "--endpoints", &endpoints, "--ack-log", acks.to_str().unwrap()], RUN_LIMIT);
    verified.expect_code(0, "every acknowledged write is readable after the kills");
    let checked = loadgen(&["check", history.to_str().unwrap()], RUN_LIMIT);
    checked.expect_code(0, "the history is linearizable");

    failovers.sort();
    let median = failovers[failovers.len() / 2];
    eprintln!(
        "{n} kill/restart cycles ({} leader kills); leader kill to first acknowledged write: median {median:?}, \
         min {:?}, max {:?} (heartbeat {HEARTBEAT_MS} ms, election timeout {ELECTION_MS} ms)\nverify: {}\ncheck: {}",
        failovers.len(),
        failovers[0],
        failovers[failovers.len() - 1],
        verified.stdout.trim(),
        checked.stdout.trim()
    );
    assert!(median < Duration::from_secs(10), "failover took {median:?} (median)");
}
