//! Maintenance Snapshot, Defragment and Status side by side with a real etcd 3.4: the same
//! writes go to a fresh single-node etcd and a fresh single-node conflux, then the answers'
//! shapes must match — the snapshot stream's framing (chunks counting down `remaining_bytes`, a
//! last message holding the SHA-256 of everything before it, a payload that is a multiple of 512
//! bytes, no headers), Defragment's empty answer, and which Status fields are set and how they
//! relate. The payloads themselves differ (etcd streams a bbolt file, conflux its own snapshot).
//!
//! Needs `/usr/bin/etcd` (Debian package `etcd-server`); fails, naming it, when it is missing.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conflux::node::proto::etcdserverpb::kv_client::KvClient;
use conflux::node::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use conflux::node::proto::etcdserverpb::{DefragmentRequest, PutRequest, SnapshotRequest, StatusRequest};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

struct Server {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_ports() -> [u16; 2] {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind");
    [a.local_addr().unwrap().port(), b.local_addr().unwrap().port()]
}

fn etcd_binary() -> PathBuf {
    let p = PathBuf::from(std::env::var_os("ETCD_BIN").unwrap_or_else(|| "/usr/bin/etcd".into()));
    assert!(
        p.is_file(),
        "etcd not found at {}: this test compares conflux with a real etcd 3.4; install the Debian package \
         `etcd-server` (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A single-node member of `binary` on fresh ports, answering Status; retried on a port race.
async fn launch(what: &str, binary: &Path) -> (Server, Channel) {
    for attempt in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let [cp, pp] = free_ports();
        let (client, peer) = (format!("http://127.0.0.1:{cp}"), format!("http://127.0.0.1:{pp}"));
        let log = dir.path().join("server.log");
        let f = File::create(&log).unwrap();
        let mut cmd = Command::new(binary);
        cmd.args(["--name", "n1", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("n1={peer}")]);
        if what == "etcd" {
            cmd.args(["--logger", "zap", "--log-level", "warn"]);
        }
        let child = cmd.stdin(Stdio::null()).stdout(f.try_clone().unwrap()).stderr(f).spawn().expect("spawn");
        let mut server = Server { child, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = server.child.try_wait().unwrap() {
                let text = std::fs::read_to_string(&server.log).unwrap_or_default();
                if attempt < 3 && text.contains("address already in use") {
                    break;
                }
                panic!("{what} exited ({s}); its log:\n{text}");
            }
            if let Ok(ch) = Channel::from_shared(client.clone()).unwrap().connect().await {
                let leader =
                    MaintenanceClient::new(ch.clone()).status(StatusRequest {}).await.map(|r| r.get_ref().leader);
                if matches!(leader, Ok(l) if l != 0) {
                    return (server, ch);
                }
            }
            assert!(Instant::now() < deadline, "{what} not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unreachable!("the last attempt returns or panics")
}

async fn write_some(ch: &Channel) {
    let mut kv = KvClient::new(ch.clone());
    for i in 0..200 {
        let req = PutRequest {
            key: format!("key{i:04}").into_bytes().into(),
            value: vec![b'v'; 1000].into(),
            ..Default::default()
        };
        kv.put(req).await.expect("put");
    }
}

/// The snapshot stream described by what must hold of it (same text for etcd and conflux).
async fn snapshot_shape(ch: &Channel) -> (String, Vec<u8>) {
    let mut m = MaintenanceClient::new(ch.clone());
    let mut stream = m.snapshot(SnapshotRequest {}).await.expect("snapshot").into_inner();
    let mut msgs = Vec::new();
    while let Some(msg) = stream.message().await.expect("snapshot message") {
        msgs.push(msg);
    }
    assert!(msgs.len() >= 2, "a snapshot stream has data and a checksum: {} messages", msgs.len());
    let (last, data) = msgs.split_last().unwrap();
    let payload: Vec<u8> = data.iter().flat_map(|m| m.blob.iter().copied()).collect();
    let mut sent = 0u64;
    let mut counts_down = true;
    for m in data {
        sent += m.blob.len() as u64;
        counts_down &= m.remaining_bytes == payload.len() as u64 - sent;
    }
    let shape = format!(
        "data messages count remaining_bytes down to 0: {counts_down}; largest chunk <= 32 KiB: {}; payload multiple \
         of 512: {}; last message: {} bytes, remaining_bytes {}, is the SHA-256 of the payload: {}; any header set: {}",
        data.iter().all(|m| m.blob.len() <= 32 * 1024),
        payload.len().is_multiple_of(512),
        last.blob.len(),
        last.remaining_bytes,
        last.blob[..] == Sha256::digest(&payload)[..],
        msgs.iter().any(|m| m.header.is_some()),
    );
    (shape, payload)
}

async fn status_shape(ch: &Channel) -> String {
    let r = MaintenanceClient::new(ch.clone()).status(StatusRequest {}).await.expect("status").into_inner();
    let h = r.header.unwrap_or_default();
    format!(
        "version set: {}, leader is self: {}, raft_index >= applied: {}, applied > 200: {}, raft_term = header \
         term: {}, db_size > 0: {}, in_use > 0: {}, errors: {:?}, is_learner: {}",
        !r.version.is_empty(),
        r.leader == h.member_id,
        r.raft_index >= r.raft_applied_index,
        r.raft_applied_index > 200,
        r.raft_term == h.raft_term,
        r.db_size > 0,
        r.db_size_in_use > 0,
        r.errors,
        r.is_learner
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_defragment_and_status_answer_like_etcd() {
    let etcd_bin = etcd_binary();
    let ((etcd, etcd_ch), (conflux, conflux_ch)) =
        tokio::join!(launch("etcd", &etcd_bin), launch("conflux", Path::new(env!("CARGO_BIN_EXE_conflux"))));
    tokio::join!(write_some(&etcd_ch), write_some(&conflux_ch));

    let ((etcd_snap, _), (conflux_snap, payload)) = tokio::join!(snapshot_shape(&etcd_ch), snapshot_shape(&conflux_ch));
    eprintln!("snapshot stream: {etcd_snap}");
    assert_eq!(conflux_snap, etcd_snap, "snapshot stream\n  etcd:    {etcd_snap}\n  conflux: {conflux_snap}");
    assert_eq!(&payload[..8], b"CFLXSNAP", "conflux streams its own snapshot container");

    let (mut em, mut cm) = (MaintenanceClient::new(etcd_ch.clone()), MaintenanceClient::new(conflux_ch.clone()));
    let (e, c) = tokio::join!(em.defragment(DefragmentRequest {}), cm.defragment(DefragmentRequest {}));
    let (e, c) = (e.expect("etcd defragment").into_inner(), c.expect("conflux defragment").into_inner());
    assert_eq!(format!("{c:?}"), format!("{e:?}"), "defragment answer");

    let (e, c) = tokio::join!(status_shape(&etcd_ch), status_shape(&conflux_ch));
    eprintln!("status: {e}");
    assert_eq!(c, e, "status\n  etcd:    {e}\n  conflux: {c}");
    drop((etcd, conflux));
}
