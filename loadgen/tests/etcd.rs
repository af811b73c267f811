//! loadgen against a real etcd (Debian's `etcd-server`, `/usr/bin/etcd`): a mixed put/get run
//! must report like one against conflux, and the keys it wrote must be in etcd.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{KillOnDrop, RUN_LIMIT, check_report, free_port, loadgen, read_json};
use conflux::node::proto::etcdserverpb::RangeRequest;
use conflux::node::proto::etcdserverpb::kv_client::KvClient;
use serde_json::json;
use tonic::transport::Channel;

/// How long etcd may take to answer its first request.
const READY_LIMIT: Duration = Duration::from_secs(30);

fn etcd_binary() -> PathBuf {
    let p = PathBuf::from("/usr/bin/etcd");
    assert!(
        p.is_file(),
        "/usr/bin/etcd is missing: this test drives a real etcd; install the Debian package `etcd-server` \
         (apt-get install etcd-server)"
    );
    p
}

/// A single-member etcd on free loopback ports with its data in a temporary directory; killed
/// when dropped.
struct Etcd {
    _child: KillOnDrop,
    client_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it answers a Range; retries on fresh ports when a port was
    /// taken between picking and binding it.
    fn start(rt: &tokio::runtime::Runtime) -> (Etcd, Channel) {
        const ATTEMPTS: usize = 3;
        let binary = etcd_binary();
        for attempt in 1..=ATTEMPTS {
            let mut etcd = Etcd::spawn(&binary);
            match rt.block_on(etcd.ready()) {
                Ok(channel) => return (etcd, channel),
                Err(e) => {
                    let log = etcd.log_text();
                    if attempt < ATTEMPTS && log.contains("address already in use") {
                        continue;
                    }
                    panic!("etcd {e}; its log:\n{log}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(binary: &Path) -> Etcd {
        let dir = tempfile::tempdir().expect("create tempdir");
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.path().join("etcd.log");
        let log_file = File::create(&log).expect("create etcd log");
        let child = Command::new(binary)
            .args(["--name", "default", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            // etcd 3.4's default logger ignores --log-level.
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log fd"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        Etcd { _child: KillOnDrop(child), client_port, log, _dir: dir }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()))
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    async fn ready(&mut self) -> Result<Channel, String> {
        let start = Instant::now();
        let mut last = String::from("no attempt yet");
        loop {
            if let Some(status) = self._child.0.try_wait().expect("try_wait etcd") {
                return Err(format!("exited ({status}) before answering"));
            }
            if start.elapsed() > READY_LIMIT {
                return Err(format!("did not answer a Range within {READY_LIMIT:?} (last error: {last})"));
            }
            match self.probe().await {
                Ok(channel) => return Ok(channel),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn probe(&self) -> Result<Channel, String> {
        let endpoint = Channel::from_shared(format!("http://{}", self.endpoint())).map_err(|e| e.to_string())?;
        let channel = tokio::time::timeout(Duration::from_secs(2), endpoint.connect())
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let probe = RangeRequest { key: Bytes::from_static(b"ready-probe"), ..Default::default() };
        tokio::time::timeout(Duration::from_secs(2), KvClient::new(channel.clone()).range(probe))
            .await
            .map_err(|_| "range timed out".to_string())?
            .map_err(|s| format!("range: {:?}: {}", s.code(), s.message()))?;
        Ok(channel)
    }
}

#[test]
fn mixed_load_against_a_real_etcd() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (etcd, channel) = Etcd::start(&rt);
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("etcd.json");
    let endpoint = etcd.endpoint();
    let args = [
        "--endpoints",
        &endpoint,
        "--workload",
        "mix",
        "--mix",
        "put=50,get=50",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--key-space",
        "200",
        "--clients",
        "4",
        "--seed",
        "31",
        "--quiet",
        "--json",
        json_path.to_str().unwrap(),
    ];
    let ran = loadgen(&args, RUN_LIMIT);
    ran.expect_code(0, "loadgen against etcd");
    assert_eq!(ran.stderr, "", "a quiet run wrote to stderr");
    let r = read_json(&json_path);
    check_report(&r, &["get", "put"], 31, &[("workload", json!("mix")), ("mix", json!("put=50,get=50"))]);
    assert_eq!(r["target"], endpoint);
    assert_eq!(r["endpoints"], json!([{ "endpoint": endpoint, "ops": r["totals"]["ops"], "errors": 0 }]));
    assert!(r["workload"].as_str().unwrap().starts_with("mix (put=50,get=50)"), "{}", r["workload"]);

    // The preload wrote the whole key space into etcd, under loadgen's prefix.
    let keys = rt.block_on(async {
        let req = RangeRequest {
            key: Bytes::from_static(b"lg/"),
            range_end: Bytes::from_static(b"lg0"),
            count_only: true,
            ..Default::default()
        };
        KvClient::new(channel).range(req).await.expect("count loadgen's keys").into_inner().count
    });
    assert_eq!(keys, 200, "etcd holds {keys} of loadgen's 200 keys; its log:\n{}", etcd.log_text());
}
