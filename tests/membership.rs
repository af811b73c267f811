//! Membership changes through etcd's Cluster service, driven by `etcdctl member ...` (Debian's
//! `etcd-client`) against real `conflux` processes on loopback ports: a 3-member cluster grows to
//! 4 (a learner added, started from what `etcdctl member add` printed, caught up by snapshot and
//! log, promoted) and back to 3 (the leader removed, and stopping by itself) while writes
//! continue, and every acknowledged write is then readable on every member; a member removed
//! while frozen stops when it returns; MemberUpdate moves a member to another peer URL; bad
//! requests get etcd's errors and the cluster keeps serving; members join over https (a learner
//! promoted, then a voter added directly).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::certs::TestPki;
use common::*;
use conflux::node::proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, RangeRequest, cluster_client::ClusterClient, kv_client::KvClient,
};
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

/// Add a member's settings (not started) to the harness; its index.
fn add_spec(c: &mut Cluster, name: &str) -> usize {
    let scheme = c.members[0].scheme;
    c.members.push(MemberSpec {
        name: name.to_string(),
        client_port: free_port(),
        peer_port: free_port(),
        metrics_port: free_port(),
        data_dir: c.dir.path().join(format!("{name}.conflux")),
        scheme,
        advertised_peer_port: None,
        peer_local_address: None,
    });
    c.procs.push(None);
    c.members.len() - 1
}

/// What `etcdctl member add` printed: the new id and the `ETCD_*` settings.
struct Added {
    id: String,
    env: Vec<(String, String)>,
}

fn parse_added(out: &str) -> Added {
    let first = out.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    assert!(
        words.len() >= 2 && words[0] == "Member" && first.contains("added to cluster"),
        "member add printed {out:?}"
    );
    let env = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("ETCD_"))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect();
    Added { id: words[1].to_string(), env }
}

impl Added {
    fn get(&self, key: &str) -> &str {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key} printed"))
    }

    /// The printed settings as conflux's environment variables (`ETCD_X` → `CONFLUX_X`).
    fn conflux_env(&self) -> Vec<(String, String)> {
        self.env.iter().map(|(k, v)| (k.replacen("ETCD_", "CONFLUX_", 1), v.clone())).collect()
    }
}

/// The flags etcdctl does not print: data directory, listen URLs, timings, `extra`.
fn joiner_args(c: &Cluster, i: usize, extra: &[&str]) -> Vec<String> {
    let m = &c.members[i];
    let mut a: Vec<String> = [
        "--data-dir",
        m.data_dir.to_str().unwrap(),
        "--listen-client-urls",
        &m.client_url(),
        "--advertise-client-urls",
        &m.client_url(),
        "--listen-peer-urls",
        &m.peer_url(),
        "--listen-metrics-urls",
        &format!("http://127.0.0.1:{}", m.metrics_port),
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The `member list` lines: (id, status, name, peer URLs, learner).
fn member_list(out: &str) -> Vec<(String, String, String, String, bool)> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            assert_eq!(f.len(), 6, "member list line {l:?}");
            (f[0].to_string(), f[1].to_string(), f[2].to_string(), f[3].to_string(), f[5] == "true")
        })
        .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Run etcdctl expecting it to fail with `message`.
fn refused(endpoints: &str, args: &[&str], message: &str) {
    let out = etcdctl(endpoints, args);
    assert!(!out.status.success(), "etcdctl {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr(&out).contains(message), "etcdctl {args:?}: expected {message:?}, got {}", stderr(&out));
}

/// Wait (at most `timeout`) for `done`.
fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait (at most `timeout`) for member `i` to exit by itself; its exit status.
fn wait_exit(c: &mut Cluster, i: usize, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    let p = c.procs[i].as_mut().expect("member is running");
    loop {
        if let Some(s) = p.try_wait().unwrap() {
            c.procs[i] = None;
            return s;
        }
        assert!(Instant::now() < deadline, "member {i} still runs {timeout:?} later; its log:\n{}", c.log(i));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Member `i`'s `/metrics` text.
fn scrape(c: &Cluster, i: usize) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", c.members[i].metrics_port)).expect("metrics port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read /metrics");
    text
}

/// Writes `w/<n>` in a loop through a rotating set of members; records every acknowledged key.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    targets: Arc<Mutex<Vec<Endpoint>>>,
    failed: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(targets: Vec<Endpoint>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let targets = Arc::new(Mutex::new(targets));
        let failed = Arc::new(Mutex::new(0));
        let (s, a, t, f) = (stop.clone(), acked.clone(), targets.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            rt().block_on(async move {
                let mut n = 0u64;
                while !s.load(Ordering::Relaxed) {
                    let ep = {
                        let t = t.lock();
                        t[n as usize % t.len()].clone()
                    };
                    let key = format!("w/{n:06}");
                    n += 1;
                    let put = async {
                        let ch =
                            ep.clone().timeout(Duration::from_secs(5)).connect().await.map_err(|e| e.to_string())?;
                        put(&mut KvClient::new(ch), &key, "v").await.map_err(|e| e.to_string())
                    };
                    match tokio::time::timeout(Duration::from_secs(6), put).await {
                        Ok(Ok(_)) => a.lock().push(key),
                        Ok(Err(e)) => {
                            let mut f = f.lock();
                            if *f < 5 {
                                eprintln!("write {key} through {:?} failed: {e}", ep.uri());
                            }
                            *f += 1;
                        }
                        Err(_) => *f.lock() += 1,
                    }
                }
            })
        });
        Writer { stop, acked, targets, failed, thread: Some(thread) }
    }

    fn acked(&self) -> usize {
        self.acked.lock().len()
    }

    fn wait_acked(&self, more: usize, timeout: Duration) {
        let goal = self.acked() + more;
        wait_until(timeout, &format!("{more} more acknowledged writes"), || self.acked() >= goal);
    }

    fn stop(mut self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("writer thread");
        (self.acked.lock().clone(), *self.failed.lock())
    }
}

/// Every key under `w/` as member `i` reads it (linearizable: after its read index is applied
/// there, from its own store).
fn written_keys(c: &Cluster, i: usize) -> BTreeSet<String> {
    rt().block_on(async {
        let ch = c.endpoint(i).connect().await.expect("connect");
        let r = KvClient::new(ch)
            .range(RangeRequest {
                key: b"w/".to_vec().into(),
                range_end: b"w0".to_vec().into(),
                keys_only: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("range on member {i}: {e}"));
        r.get_ref().kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).to_string()).collect()
    })
}

/// Promote `id` through `eps`, retrying while etcd's "not in sync" refusal comes back.
fn promote(eps: &str, id: &str, run: impl Fn(&str, &[&str]) -> std::process::Output) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = run(eps, &["member", "promote", id]);
        if out.status.success() {
            let said = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(said.contains("promoted"), "member promote printed {said:?}");
            return;
        }
        let e = stderr(&out);
        assert!(e.contains("in sync with leader"), "member promote failed otherwise: {e}");
        assert!(Instant::now() < deadline, "learner {id} never in sync: {e}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn learner_joins_is_promoted_and_the_leader_leaves_under_writes() {
    // Small snapshots and catch-up window: the leader's log is purged before the learner starts,
    // so it must catch up by snapshot, then by the log.
    let extra = ["--snapshot-count", "200", "--snapshot-catchup-entries", "50"];
    let mut c = Cluster::start(3, &extra);
    let writer = Writer::start((0..3).map(|i| c.endpoint(i)).collect());
    writer.wait_acked(500, Duration::from_secs(120));

    // One endpoint for a change and the lists after it: the member that took a change lists it
    // at once (another may take a moment to apply it).
    let eps = c.members[0].endpoint();
    let new = add_spec(&mut c, "m3");
    let peer_url = c.members[new].peer_url();
    let out = ok(etcdctl(&eps, &["member", "add", "m3", &format!("--peer-urls={peer_url}"), "--learner"]), "add");
    let added = parse_added(&out);
    assert_eq!(added.get("ETCD_NAME"), "m3");
    assert_eq!(added.get("ETCD_INITIAL_ADVERTISE_PEER_URLS"), peer_url);
    assert_eq!(added.get("ETCD_INITIAL_CLUSTER_STATE"), "existing");
    let cluster = added.get("ETCD_INITIAL_CLUSTER");
    for m in &c.members {
        assert!(cluster.contains(&format!("{}={}", m.name, m.peer_url())), "{cluster}");
    }
    let list = member_list(&ok(etcdctl(&eps, &["member", "list"]), "member list"));
    assert_eq!(list.len(), 4, "{list:?}");
    let row = list.iter().find(|r| r.0 == added.id).expect("the new member is listed");
    assert_eq!((row.1.as_str(), row.2.as_str(), row.3.as_str(), row.4), ("unstarted", "", peer_url.as_str(), true));

    // Started from what etcdctl printed (as CONFLUX_* variables), with another cluster token
    // than the cluster's: the member learns its id from the cluster.
    let env = added.conflux_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    c.spawn_env(new, &joiner_args(&c, new, &extra), &env);
    c.wait_ready(new);
    assert_eq!(c.member_id(new).map(|id| format!("{id:x}")), Some(added.id.clone()));
    wait_until(Duration::from_secs(10), "the learner's metrics", || {
        scrape(&c, new).contains("\netcd_server_is_learner 1\n")
    });
    promote(&eps, &added.id, etcdctl);
    wait_until(Duration::from_secs(10), "the promoted member's metrics", || {
        scrape(&c, new).contains("\netcd_server_is_learner 0\n")
    });
    let list = member_list(&ok(etcdctl(&eps, &["member", "list"]), "member list"));
    assert!(list.iter().all(|r| !r.4), "a learner is left after the promotion: {list:?}");
    wait_until(Duration::from_secs(10), "the new member publishes its name", || {
        let list = member_list(&ok(etcdctl(&eps, &["member", "list"]), "member list"));
        list.iter().any(|r| r.0 == added.id && r.1 == "started" && r.2 == "m3")
    });
    let log = c.log(new);
    assert!(log.contains("snapshot installed"), "the new member did not catch up by snapshot:\n{log}");
    writer.wait_acked(200, Duration::from_secs(60));

    // Remove the leader: writes go to the others, leadership moves on.
    let leader = c.wait_leader(None);
    let leader_id = format!("{:x}", c.member_id(leader).expect("leader id"));
    let rest: Vec<usize> = (0..4).filter(|&i| i != leader).collect();
    *writer.targets.lock() = rest.iter().map(|&i| c.endpoint(i)).collect();
    let eps = c.members[rest[0]].endpoint();
    let out = ok(etcdctl(&eps, &["member", "remove", &leader_id]), "member remove");
    assert!(out.contains(&format!("Member {leader_id} removed")), "member remove printed {out:?}");
    // The removed member stops by itself, as etcd's does.
    let status = wait_exit(&mut c, leader, Duration::from_secs(20));
    assert!(status.success(), "the removed member exited with {status}");
    assert!(c.log(leader).contains("permanently removed"), "{}", c.log(leader));
    writer.wait_acked(200, Duration::from_secs(60));
    let (acked, failed) = writer.stop();
    let list = member_list(&ok(etcdctl(&eps, &["member", "list"]), "member list"));
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list.iter().all(|r| r.0 != leader_id && !r.4), "{list:?}");

    for &i in &rest {
        let keys = written_keys(&c, i);
        let missing: Vec<&String> = acked.iter().filter(|k| !keys.contains(*k)).collect();
        assert!(missing.is_empty(), "member {i} lacks {} acknowledged writes, first {:?}", missing.len(), missing[0]);
    }
    eprintln!("{} writes acknowledged, {failed} failed (member changes, leader removal)", acked.len());
    // Writes keep being served through the changes (a few may fail while leadership moves).
    assert!(failed * 10 < acked.len() as u64, "{failed} writes failed, {} acknowledged", acked.len());

    // The membership is in the log and the snapshots: a full restart keeps it (the original
    // members with their original flags, the new one with what it was started with).
    let before = member_list(&ok(etcdctl(&eps, &["member", "list"]), "member list"));
    for &i in &rest {
        c.terminate(i);
    }
    for &i in &rest {
        if i == new {
            c.spawn_env(new, &joiner_args(&c, new, &extra), &env);
        } else {
            c.spawn(i);
        }
    }
    for &i in &rest {
        c.wait_ready(i);
        let list = member_list(&ok(etcdctl(&c.members[i].endpoint(), &["member", "list"]), "member list"));
        assert_eq!(list, before, "member {i} after the restart");
        let keys = written_keys(&c, i);
        assert!(acked.iter().all(|k| keys.contains(k)), "member {i} lost acknowledged writes in the restart");
    }
}

#[test]
fn bad_requests_get_etcds_errors_and_the_cluster_keeps_serving() {
    let mut c = Cluster::start(3, &[]);
    let eps = c.members[0].endpoint();
    let ids: Vec<String> = (0..3).map(|i| format!("{:x}", c.member_id(i).unwrap())).collect();
    let serving = |c: &Cluster, what: &str| {
        for i in 0..3 {
            let key = format!("alive/{what}/{i}");
            assert_eq!(ok(etcdctl(&c.members[i].endpoint(), &["put", &key, "v"]), "put").trim(), "OK");
            let other = c.members[(i + 1) % 3].endpoint();
            assert_eq!(ok(etcdctl(&other, &["get", &key, "--print-value-only"]), "get").trim(), "v", "{what}");
        }
    };

    refused(&eps, &["member", "remove", "1234abcd"], "etcdserver: member not found");
    refused(&eps, &["member", "promote", "1234abcd"], "etcdserver: member not found");
    refused(&eps, &["member", "update", "1234abcd", "--peer-urls=http://127.0.0.1:1"], "etcdserver: member not found");
    refused(&eps, &["member", "promote", &ids[1]], "etcdserver: can only promote a learner member");
    let taken = format!("--peer-urls={}", c.members[1].peer_url());
    refused(&eps, &["member", "add", "x", &taken], "etcdserver: Peer URLs already exists");
    refused(&eps, &["member", "add", "x", &taken, "--learner"], "etcdserver: Peer URLs already exists");
    refused(&eps, &["member", "update", &ids[0], &taken], "etcdserver: Peer URLs already exists");
    for bad in ["http://127.0.0.1", "ftp://127.0.0.1:1", "http://127.0.0.1:1/path"] {
        refused(&eps, &["member", "add", "x", &format!("--peer-urls={bad}")], bad);
    }
    rt().block_on(async {
        let ch = c.endpoint(2).connect().await.unwrap();
        let e = ClusterClient::new(ch)
            .member_add(MemberAddRequest { peer_ur_ls: vec!["127.0.0.1:2380".into()], is_learner: false })
            .await
            .expect_err("a URL without a scheme");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("given member URLs are invalid") && e.message().contains("127.0.0.1:2380"));
    });
    serving(&c, "after-refusals");

    // A learner that never starts: not in sync, so not promoted; and the only learner allowed.
    let ghost = format!("http://127.0.0.1:{}", free_port());
    let learner = parse_added(&ok(
        etcdctl(&eps, &["member", "add", "ghost", &format!("--peer-urls={ghost}"), "--learner"]),
        "add a learner",
    ));
    refused(
        &eps,
        &["member", "promote", &learner.id],
        "can only promote a learner member which is in sync with leader",
    );
    let second = format!("--peer-urls=http://127.0.0.1:{}", free_port());
    refused(&eps, &["member", "add", "y", &second, "--learner"], "etcdserver: too many learner members in cluster");
    serving(&c, "with-a-learner");
    ok(etcdctl(&eps, &["member", "remove", &learner.id]), "remove the learner");

    // A voter that never starts: 3 of 4 still commit; removing it gives the 3 back.
    let voter = parse_added(&ok(etcdctl(&eps, &["member", "add", "ghost", &second]), "add a voter"));
    let list = member_list(&ok(etcdctl(&eps, &["member", "list"]), "member list"));
    assert!(list.iter().any(|r| r.0 == voter.id && !r.4 && r.1 == "unstarted"), "{list:?}");
    serving(&c, "with-an-unstarted-voter");
    ok(etcdctl(&eps, &["member", "remove", &voter.id]), "remove the voter");
    assert_eq!(member_list(&ok(etcdctl(&eps, &["member", "list"]), "member list")).len(), 3);

    // A voter down: adding a member, or removing a reachable voter, could cost the quorum.
    c.terminate(2);
    c.wait_leader(Some(2));
    std::thread::sleep(Duration::from_millis(1500));
    let up = c.members[0].endpoint();
    let third = format!("--peer-urls=http://127.0.0.1:{}", free_port());
    refused(&up, &["member", "add", "z", &third, "--learner"], "etcdserver: unhealthy cluster");
    refused(&up, &["member", "remove", &ids[1]], "etcdserver: unhealthy cluster");
    c.spawn(2);
    c.wait_ready(2);
    let mut z = None;
    wait_until(Duration::from_secs(10), "member 2 back in the leader's view", || {
        let out = etcdctl(&eps, &["member", "add", "z", &third, "--learner"]);
        if out.status.success() {
            z = Some(parse_added(&String::from_utf8_lossy(&out.stdout)).id);
        }
        z.is_some()
    });
    ok(etcdctl(&eps, &["member", "remove", &z.unwrap()]), "remove z");
    serving(&c, "after-unhealthy");

    // MemberUpdate, then member 1 restarted on the new peer URL (from its data directory, without
    // the --initial-cluster it was created with): the others dial it there.
    let moved_port = free_port();
    let moved = format!("http://127.0.0.1:{moved_port}");
    let out = ok(etcdctl(&eps, &["member", "update", &ids[1], &format!("--peer-urls={moved}")]), "member update");
    assert!(out.contains("updated"), "member update printed {out:?}");
    for i in 0..3 {
        wait_until(Duration::from_secs(10), "every member lists the new URL", || {
            let list = member_list(&ok(etcdctl(&c.members[i].endpoint(), &["member", "list"]), "member list"));
            list.len() == 3 && list.iter().any(|r| r.0 == ids[1] && r.3 == moved)
        });
    }
    c.terminate(1);
    c.members[1].peer_port = moved_port;
    let mut args = c.args(1);
    let at = args.iter().position(|a| a == "--initial-cluster").unwrap();
    args.drain(at..at + 2);
    c.spawn_with(1, &args);
    c.wait_ready(1);
    serving(&c, "after-moving");
    // Member 1 has everything written while it was away, through the log it got at the new URL.
    let got = ok(etcdctl(&c.members[1].endpoint(), &["get", "alive/", "--prefix", "--keys-only"]), "get on member 1");
    assert_eq!(got.lines().filter(|l| !l.is_empty()).count(), 15, "{got}");
    let list = member_list(&ok(etcdctl(&eps, &["member", "list"]), "member list"));
    assert!(list.iter().any(|r| r.0 == ids[1] && r.3 == moved && r.1 == "started"), "{list:?}");
}

#[test]
fn a_member_removed_while_stopped_stops_when_it_returns() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(None);
    let gone = (leader + 1) % 3;
    let stay = (leader + 2) % 3;
    let id = format!("{:x}", c.member_id(gone).unwrap());
    let pid = c.procs[gone].as_ref().unwrap().id().to_string();
    // Frozen, it never receives the membership without it (the leader stops replicating to it
    // as soon as that membership is appended).
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let eps = c.members[stay].endpoint();
    ok(etcdctl(&eps, &["member", "remove", &id]), "member remove");
    ok(etcdctl(&eps, &["put", "after", "v"]), "put after the removal");
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let status = wait_exit(&mut c, gone, Duration::from_secs(30));
    assert!(status.success(), "the removed member exited with {status}");
    let log = c.log(gone);
    assert!(log.contains("permanently removed") && log.contains("removed while cut off"), "{log}");
    let list = member_list(&ok(etcdctl(&eps, &["member", "list"]), "member list"));
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(ok(etcdctl(&eps, &["get", "after", "--print-value-only"]), "get").trim(), "v");
}

#[test]
fn the_last_voter_cannot_be_removed() {
    let c = Cluster::start(1, &[]);
    let ep = c.members[0].endpoint();
    let id = format!("{:x}", c.member_id(0).unwrap());
    refused(&ep, &["member", "remove", &id], "etcdserver: re-configuration failed due to not enough started members");
    assert_eq!(ok(etcdctl(&ep, &["put", "k", "v"]), "put").trim(), "OK");
    let list = rt().block_on(async {
        let ch: Channel = c.endpoint(0).connect().await.unwrap();
        ClusterClient::new(ch).member_list(MemberListRequest { linearizable: true }).await.unwrap().into_inner()
    });
    assert_eq!(list.members.len(), 1);
}

#[test]
fn a_member_joins_over_https() {
    let certs = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(certs.path());
    let flags: Vec<String> = [
        "--cert-file",
        pki.server.cert(),
        "--key-file",
        pki.server.key(),
        "--trusted-ca-file",
        pki.ca(),
        "--peer-cert-file",
        pki.server.cert(),
        "--peer-key-file",
        pki.server.key(),
        "--peer-trusted-ca-file",
        pki.ca(),
        "--peer-client-cert-auth=true",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut c = Cluster::start_with(1, &flag_refs, Some(pki.client_tls()));
    let tls = |ep: &str, args: &[&str]| {
        let mut all = vec![format!("--cacert={}", pki.ca())];
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        etcdctl(ep, &all)
    };
    let ep = c.members[0].client_url();
    assert_eq!(ok(tls(&ep, &["put", "before", "v"]), "put").trim(), "OK");
    let new = add_spec(&mut c, "m1");
    let peer_url = c.members[new].peer_url();
    assert!(peer_url.starts_with("https://"));
    let added =
        parse_added(&ok(tls(&ep, &["member", "add", "m1", &format!("--peer-urls={peer_url}"), "--learner"]), "add"));
    // The printed settings as flags this time.
    let start = |c: &mut Cluster, i: usize, added: &Added| {
        let mut args = joiner_args(c, i, &flag_refs);
        for (k, v) in added.env.iter() {
            let flag = format!("--{}", k.trim_start_matches("ETCD_").to_ascii_lowercase().replace('_', "-"));
            args.extend([flag, v.clone()]);
        }
        c.spawn_with(i, &args);
        c.wait_ready(i);
    };
    start(&mut c, new, &added);
    promote(&ep, &added.id, tls);
    let joined = c.members[new].client_url();
    assert_eq!(ok(tls(&joined, &["get", "before", "--print-value-only"]), "get on the new member").trim(), "v");
    assert_eq!(ok(tls(&joined, &["put", "after", "v"]), "put on the new member").trim(), "OK");
    assert_eq!(ok(tls(&ep, &["get", "after", "--print-value-only"]), "get").trim(), "v");

    // A third member added as a voter straight away (2 of the 3 commit the change).
    let third = add_spec(&mut c, "m2");
    let peer_url = c.members[third].peer_url();
    let added = parse_added(&ok(tls(&joined, &["member", "add", "m2", &format!("--peer-urls={peer_url}")]), "add"));
    start(&mut c, third, &added);
    let last = c.members[third].client_url();
    assert_eq!(ok(tls(&last, &["get", "after", "--print-value-only"]), "get on the third member").trim(), "v");
    let list = member_list(&ok(tls(&joined, &["member", "list"]), "member list"));
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list.iter().all(|r| r.3.starts_with("https://") && !r.4), "{list:?}");
    // Any two of the three now make a quorum: without the first member, writes go on.
    c.terminate(0);
    assert_eq!(ok(tls(&last, &["put", "without-m0", "v"]), "put without the first member").trim(), "OK");
    assert_eq!(ok(tls(&joined, &["get", "without-m0", "--print-value-only"]), "get").trim(), "v");
}
