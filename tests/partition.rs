//! Network partitions between real `conflux` processes, made by a TCP proxy the test controls
//! (`tests/common/proxy.rs`): every member advertises the proxy's port for it and dials from its
//! own loopback address (`--peer-local-address`), so the proxy knows each connection's two ends.
//!
//! - The leader cut off from the majority (both ways), under a loadgen run with `--history` and
//!   `--ack-log` over all three members: the majority elects a new leader and goes on; writes
//!   sent to the old leader fail or time out and never take effect; after the heal the old leader
//!   follows the new one and catches up, the three members' HashKV agree at the same revision,
//!   `loadgen verify` finds every acknowledged write and `loadgen check` judges the history
//!   linearizable.
//! - One-way partitions (the leader cannot hear a follower; a follower cannot hear the leader)
//!   and delay: a majority keeps committing, and after the heal the members converge.
//! - The proxy itself, between plain sockets: held bytes are never delivered, the heal closes
//!   the connection, delay postpones, strangers are counted.
//!
//! `CONFLUX_FULL_TESTS=1` isolates the leader in more cycles. The figures go to
//! `docs/reliability.md` ("Network partitions"); `-- --nocapture` prints them. loadgen is taken
//! from the same target directory as this test (`cargo build -p conflux-loadgen`; `cargo test
//! --workspace` builds it); the test fails, saying so, when it is not there.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Stats, source_address};
use common::*;
use conflux::node::proto::etcdserverpb::{
    HashKvRequest, PutRequest, RangeRequest, StatusRequest, kv_client::KvClient, maintenance_client::MaintenanceClient,
};
use tonic::transport::{Channel, Endpoint};

/// Leader isolations in one run; `CONFLUX_FULL_TESTS=1` runs more.
fn cycles() -> usize {
    if std::env::var("CONFLUX_FULL_TESTS").is_ok() { 5 } else { 1 }
}

/// How long writes go on during a partition (after a new leader, when the leader is isolated):
/// several election timeouts (the harness runs members with `--election-timeout 500`).
const PARTITION: Duration = Duration::from_secs(3);

/// A bounded wait's limit.
const WAIT: Duration = Duration::from_secs(30);

fn loadgen_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/partition-<hash> -> target/<profile>/loadgen
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("loadgen");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build -p conflux-loadgen`; `cargo test --workspace` does)",
        bin.display()
    );
    bin
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three members whose peer traffic goes through a proxy; the proxy outlives the members.
struct Partitioned {
    c: Cluster,
    proxy: Proxy,
    /// Member ids, by index.
    ids: Vec<u64>,
}

impl Partitioned {
    fn start() -> Partitioned {
        let mut c = Cluster::prepare(3, &[]);
        let proxy = Proxy::start(&c.members.iter().map(|m| m.peer_port).collect::<Vec<_>>());
        for (i, m) in c.members.iter_mut().enumerate() {
            m.advertised_peer_port = Some(proxy.port(i));
            m.peer_local_address = Some(source_address(i));
        }
        for i in 0..3 {
            c.spawn(i);
        }
        for i in 0..3 {
            c.wait_ready(i);
        }
        let ids = (0..3).map(|i| c.member_id(i).expect("member id")).collect();
        Partitioned { c, proxy, ids }
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.ids.iter().position(|&m| m == id)
    }

    fn logs(&self) -> String {
        (0..3).map(|i| format!("--- member {i}:\n{}", self.c.log(i))).collect()
    }
}

/// A client of member `i` whose calls give up after `timeout`.
fn channel(c: &Cluster, i: usize, timeout: Duration) -> Channel {
    Endpoint::from_shared(c.members[i].client_url())
        .unwrap()
        .connect_timeout(Duration::from_millis(300))
        .timeout(timeout)
        .connect_lazy()
}

async fn put_to(c: &Cluster, i: usize, key: &str, timeout: Duration) -> Result<i64, tonic::Status> {
    let req = PutRequest { key: key.as_bytes().to_vec().into(), value: b"v".to_vec().into(), ..Default::default() };
    let r = KvClient::new(channel(c, i, timeout)).put(req).await?;
    Ok(r.get_ref().header.as_ref().map(|h| h.revision).unwrap_or(0))
}

/// Member `i`'s leader id (0: none) as it reports it.
async fn leader_of(c: &Cluster, i: usize) -> Option<u64> {
    let r = MaintenanceClient::new(channel(c, i, Duration::from_millis(500))).status(StatusRequest {}).await.ok()?;
    Some(r.get_ref().leader)
}

/// Member `i`'s HashKV at `revision` (0: its current one): (hash, the revision it answered at).
async fn hash_kv(c: &Cluster, i: usize, revision: i64) -> Result<(u32, i64), tonic::Status> {
    let r = MaintenanceClient::new(channel(c, i, Duration::from_secs(2))).hash_kv(HashKvRequest { revision }).await?;
    Ok((r.get_ref().hash, r.get_ref().header.as_ref().map(|h| h.revision).unwrap_or(0)))
}

/// Wait until the three members report the same HashKV at the same current revision (no writes
/// running); the revision.
async fn wait_converged(p: &Partitioned, since: Instant) -> i64 {
    loop {
        let mut seen = Vec::new();
        for i in 0..3 {
            seen.push(hash_kv(&p.c, i, 0).await.map_err(|e| e.message().to_string()));
        }
        if let [Ok(a), Ok(b), Ok(c)] = &seen[..]
            && a == b
            && b == c
        {
            return a.1;
        }
        assert!(since.elapsed() < WAIT, "members did not converge within {WAIT:?}: {seen:?}\n{}", p.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Put through `members` in turn (each call bounded by `timeout`) for `span`; the keys
/// acknowledged.
async fn write_for(c: &Cluster, members: &[usize], prefix: &str, span: Duration, timeout: Duration) -> Vec<String> {
    let end = Instant::now() + span;
    let mut acked = Vec::new();
    let mut n = 0;
    while Instant::now() < end {
        let key = format!("{prefix}/{n}");
        if put_to(c, members[n % members.len()], &key, timeout).await.is_ok() {
            acked.push(key);
        }
        n += 1;
    }
    acked
}

/// Whether member `i` serves `key` (serializable: from its own state).
async fn has_key(c: &Cluster, i: usize, key: &str, serializable: bool) -> bool {
    let req = RangeRequest { key: key.as_bytes().to_vec().into(), serializable, ..Default::default() };
    match KvClient::new(channel(c, i, Duration::from_secs(2))).range(req).await {
        Ok(r) => !r.get_ref().kvs.is_empty(),
        Err(e) => panic!("read of {key} through member {i} failed: {e}"),
    }
}

/// The leader cut off from the majority: a new leader on the majority side, nothing the old one
/// was sent takes effect, nothing acknowledged is lost, one linearizable history after the heal.
#[test]
fn leader_isolated_from_the_majority() {
    let p = Partitioned::start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let endpoints = (0..3).map(|i| p.c.members[i].endpoint()).collect::<Vec<_>>().join(",");
    let history = p.c.dir.path().join("history.jsonl");
    let acks = p.c.dir.path().join("acks.log");
    let lg_err = p.c.dir.path().join("loadgen.err");
    let n = cycles();
    let lg = Command::new(loadgen_bin())
        .args(["--endpoints", &endpoints, "--workload", "mix", "--mix", "put=40,get=40,txn=20"])
        // As in the kill-cycles test: an open loop over many keys keeps each key's history short,
        // so the checker's search stays small despite the writes a partition leaves unknown.
        .args(["--key-space", "200", "--rate", "150", "--clients", "16", "--conns", "3"])
        .args(["--warmup", "0s", "--duration", &format!("{}s", 20 + n * 10)])
        .args(["--request-timeout", "2s", "--quiet", "--seed", "17"])
        .args(["--history", history.to_str().unwrap(), "--ack-log", acks.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&lg_err).unwrap())
        .spawn()
        .expect("spawn loadgen");
    let mut lg = KillOnDrop(lg);
    // loadgen connects to every endpoint before it starts; its first writes show it runs.
    let started = Instant::now();
    while !rt.block_on(async {
        let req = RangeRequest {
            key: b"lg/".to_vec().into(),
            range_end: b"lg0".to_vec().into(),
            count_only: true,
            serializable: true,
            ..Default::default()
        };
        KvClient::new(channel(&p.c, 0, Duration::from_millis(500)))
            .range(req)
            .await
            .is_ok_and(|r| r.get_ref().count > 0)
    }) {
        assert!(lg.0.try_wait().unwrap().is_none(), "loadgen stopped before its first write");
        assert!(started.elapsed() < WAIT, "no loadgen write within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));

    let mut acked = Vec::new();
    let mut sent_to_old = Vec::new();
    for cycle in 0..n {
        let old = p.c.wait_leader(None);
        let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let before = p.proxy.stats();
        p.proxy.isolate(old);
        let cut = Instant::now();
        // A new leader on the majority side: the first write acknowledged through it.
        let to_new = rt.block_on(async {
            let mut k = 0;
            loop {
                let key = format!("part/{cycle}/majority/{k}");
                if put_to(&p.c, majority[k % 2], &key, Duration::from_millis(300)).await.is_ok() {
                    acked.push(key);
                    return cut.elapsed();
                }
                k += 1;
                assert!(cut.elapsed() < WAIT, "no write acknowledged by the majority within {WAIT:?}\n{}", p.logs());
            }
        });
        let new_leader = rt.block_on(leader_of(&p.c, majority[0])).and_then(|id| p.index(id));
        assert!(
            new_leader.is_some_and(|l| l != old),
            "the majority acknowledged a write, so it has a leader of its own; member {} reports {new_leader:?} \
             (old leader {old})",
            majority[0]
        );
        // Writes sent to the old leader meanwhile: none may be acknowledged (it cannot reach a
        // majority), and none may take effect later. The majority goes on beside them.
        let (old_results, during) = rt.block_on(async {
            let to_old = async {
                let mut out = Vec::new();
                for k in 0..2 {
                    let key = format!("part/{cycle}/old/{k}");
                    out.push((key.clone(), put_to(&p.c, old, &key, Duration::from_secs(1)).await));
                }
                out
            };
            let prefix = format!("part/{cycle}/during");
            let to_majority = write_for(&p.c, &majority, &prefix, PARTITION, Duration::from_secs(1));
            tokio::join!(to_old, to_majority)
        });
        for (key, r) in &old_results {
            assert!(r.is_err(), "the isolated old leader {old} acknowledged {key}: {r:?}");
            sent_to_old.push(key.clone());
        }
        assert!(!during.is_empty(), "the majority acknowledged no write during the partition");
        acked.extend(during.iter().cloned());
        assert!(p.proxy.stats().held > before.held, "the proxy held nothing: the partition did not bite");

        p.proxy.heal();
        let healed = Instant::now();
        // The old leader follows the new one and reaches the revision the majority had.
        let rev = rt
            .block_on(put_to(&p.c, new_leader.unwrap(), &format!("part/{cycle}/healed"), Duration::from_secs(2)))
            .expect("write through the new leader after the heal");
        acked.push(format!("part/{cycle}/healed"));
        let (follows, caught_up) = rt.block_on(async {
            let mut follows = None;
            loop {
                let leader = leader_of(&p.c, old).await.and_then(|id| p.index(id));
                if follows.is_none() && leader.is_some_and(|l| l != old) {
                    follows = Some(healed.elapsed());
                }
                if follows.is_some()
                    && let Ok(mine) = hash_kv(&p.c, old, rev).await
                    && let Ok(theirs) = hash_kv(&p.c, new_leader.unwrap(), rev).await
                {
                    assert_eq!(mine.0, theirs.0, "HashKV at revision {rev}: old leader {old} disagrees");
                    return (follows.unwrap(), healed.elapsed());
                }
                assert!(healed.elapsed() < WAIT, "old leader {old} did not catch up within {WAIT:?}\n{}", p.logs());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        eprintln!(
            "cycle {cycle}: leader {old} isolated; first write acknowledged by the majority after {to_new:?}; \
             {} writes acknowledged by it in the {PARTITION:?} after that, {} sent to the old leader, none \
             acknowledged; after the heal the old leader follows in {follows:?}, caught up to revision {rev} \
             (HashKV equal) in {caught_up:?}",
            during.len(),
            old_results.len(),
        );
        std::thread::sleep(Duration::from_secs(1));
        assert!(lg.0.try_wait().unwrap().is_none(), "loadgen stopped early");
    }

    // End the measured phase (SIGINT: loadgen stops cleanly and writes its files).
    let _ = Command::new("kill").args(["-INT", &lg.0.id().to_string()]).status();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = lg.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "loadgen did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&lg_err).unwrap_or_default();
    assert!(history.is_file() && acks.is_file(), "loadgen ({status}) left no history or ack log:\n{err}");

    let stopped = Instant::now();
    let revision = rt.block_on(wait_converged(&p, stopped));
    let converged = stopped.elapsed();
    rt.block_on(async {
        for key in &acked {
            for i in 0..3 {
                assert!(has_key(&p.c, i, key, true).await, "acknowledged {key} is missing on member {i}");
            }
        }
        for key in &sent_to_old {
            assert!(!has_key(&p.c, 0, key, false).await, "{key}, sent only to the isolated old leader, took effect");
        }
    });

    let verified = run_loadgen(&["verify", "--endpoints", &endpoints, "--ack-log", acks.to_str().unwrap()]);
    assert_eq!(verified.0, Some(0), "loadgen verify: every acknowledged write is readable\n{}", verified.1);
    let checked = run_loadgen(&["check", history.to_str().unwrap()]);
    assert_eq!(checked.0, Some(0), "loadgen check: the history is linearizable\n{}", checked.1);
    let stats = p.proxy.stats();
    assert_eq!(stats.unknown_sources, 0, "every peer connection came from a member's --peer-local-address");
    // The ack log: `P`/`D` lines are acknowledged writes, `U` lines writes of unknown outcome.
    let log = std::fs::read_to_string(&acks).unwrap();
    let count = |kinds: &[&str]| log.lines().filter(|l| kinds.iter().any(|k| l.starts_with(k))).count();
    eprintln!(
        "{n} isolation(s); loadgen: {} writes acknowledged, {} of unknown outcome; after loadgen stopped, the three \
         members' HashKV equal at revision {revision} after {converged:?}; {} test writes acknowledged, all on every \
         member; proxy {stats:?}\nverify: {}\ncheck: {}",
        count(&["P ", "D "]),
        count(&["U "]),
        acked.len(),
        verified.1.trim(),
        checked.1.trim()
    );
}

/// `loadgen ARGS`: exit code and stdout (stderr appended), bounded by [`WAIT`] × 3.
fn run_loadgen(args: &[&str]) -> (Option<i32>, String) {
    let child = Command::new(loadgen_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loadgen");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(WAIT * 3)
        .unwrap_or_else(|_| panic!("`loadgen {}` did not finish within {:?}", args.join(" "), WAIT * 3))
        .expect("loadgen output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The proxy on its own, between plain sockets: a blocked direction delivers nothing more while
/// the other goes on; the heal closes the connection, so the receiver has exactly the prefix sent
/// before the block; delay postpones; a connection from an unknown address is counted.
#[test]
fn proxy_holds_blocked_bytes_and_closes_on_heal_without_tearing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};

    let rt = common::rt();
    // "Member 1" is a plain listener; member 0 dials it from its source address.
    let member1 = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let proxy = Proxy::start(&[free_port(), member1.local_addr().unwrap().port()]);
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.port(1)));
    let dial = |from: std::net::IpAddr| async move {
        let s = TcpSocket::new_v4().unwrap();
        s.bind((from, 0).into()).unwrap();
        s.connect(target).await.unwrap()
    };
    async fn read_for(s: &mut TcpStream, d: Duration) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; 1024];
        match tokio::time::timeout(d, s.read(&mut buf)).await {
            Err(_) => Ok(Vec::new()),
            Ok(Ok(0)) => Err("closed".into()),
            Ok(Ok(n)) => Ok(buf[..n].to_vec()),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }
    let second = Duration::from_secs(1);
    rt.block_on(async {
        let mut client = dial(source_address(0)).await;
        let (mut server, _) = member1.accept().await.unwrap();
        client.write_all(b"abc").await.unwrap();
        assert_eq!(read_for(&mut server, second).await.unwrap(), b"abc");

        // One-way: 0 -> 1 held, 1 -> 0 flows.
        proxy.block(0, 1);
        client.write_all(b"def").await.unwrap();
        assert_eq!(read_for(&mut server, Duration::from_millis(300)).await.unwrap(), b"", "held bytes arrived");
        server.write_all(b"xyz").await.unwrap();
        assert_eq!(read_for(&mut client, second).await.unwrap(), b"xyz");

        // Heal: the connection is closed; "def" never arrives.
        proxy.heal();
        assert!(read_for(&mut server, second).await.is_err(), "the held connection was not closed by the heal");
        assert!(read_for(&mut client, second).await.is_err(), "the dialler's side was not closed by the heal");

        // Delay on a fresh connection.
        let mut client = dial(source_address(0)).await;
        let (mut server, _) = member1.accept().await.unwrap();
        proxy.delay(0, 1, Duration::from_millis(200));
        let sent = Instant::now();
        client.write_all(b"late").await.unwrap();
        assert_eq!(read_for(&mut server, second).await.unwrap(), b"late");
        assert!(sent.elapsed() >= Duration::from_millis(200), "delivered after {:?}", sent.elapsed());
        proxy.heal();

        // A connection from no member's address is forwarded, and counted.
        let mut stranger = dial(std::net::IpAddr::from([127, 0, 0, 1])).await;
        let (mut server, _) = member1.accept().await.unwrap();
        stranger.write_all(b"hi").await.unwrap();
        assert_eq!(read_for(&mut server, second).await.unwrap(), b"hi");
    });
    let stats = proxy.stats();
    assert_eq!(
        stats,
        // Held twice: the writer kept "def" back, then the reader stopped reading.
        Stats { connections: 3, unknown_sources: 1, held: 2, closed_on_heal: 1, delayed: 1 },
        "proxy counters"
    );
}

/// One-way partitions and delay: the leader cannot hear a follower, then a follower cannot hear
/// the leader, then every link is slow; a majority commits throughout, and the members converge.
#[test]
fn one_way_partitions_and_delay_keep_a_majority_committing() {
    let p = Partitioned::start();
    let rt = common::rt();
    let leader = p.c.wait_leader(None);
    let (f, g) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut acked = Vec::new();
    let phase = |name: &str, members: &[usize], acked: &mut Vec<String>| {
        let before = p.proxy.stats().held;
        let keys = rt.block_on(write_for(&p.c, members, &format!("oneway/{name}"), PARTITION, Duration::from_secs(1)));
        assert!(keys.len() >= 5, "{name}: only {} writes acknowledged in {PARTITION:?}\n{}", keys.len(), p.logs());
        let held = p.proxy.stats().held - before;
        let leader_now = p.c.wait_leader(None);
        eprintln!("{name}: {} writes acknowledged in {PARTITION:?}; leader now {leader_now}; {held} holds", keys.len());
        acked.extend(keys);
        held
    };

    // The leader cannot hear follower f: f's answers to it are held; g's are enough.
    p.proxy.block(f, leader);
    let held = phase("leader-cannot-hear-follower", &[leader, g], &mut acked);
    assert!(held > 0, "nothing was held from {f} to {leader}");
    p.proxy.heal();

    // Follower f cannot hear the leader (it stops getting heartbeats and may campaign); writes
    // go through the two others, which may elect a new leader between them.
    let leader = p.c.wait_leader(None);
    let f = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|&i| i != f).collect();
    p.proxy.block(leader, f);
    let held = phase("follower-cannot-hear-leader", &others, &mut acked);
    assert!(held > 0, "nothing was held from {leader} to {f}");
    p.proxy.heal();

    // Every link 40 ms slow each way.
    for a in 0..3 {
        for b in 0..3 {
            if a != b {
                p.proxy.delay(a, b, Duration::from_millis(40));
            }
        }
    }
    let delayed = p.proxy.stats().delayed;
    phase("delay-40ms", &[0, 1, 2], &mut acked);
    assert!(p.proxy.stats().delayed > delayed, "nothing was delayed");
    p.proxy.heal();

    let healed = Instant::now();
    let revision = rt.block_on(wait_converged(&p, healed));
    let converged = healed.elapsed();
    rt.block_on(async {
        for key in &acked {
            for i in 0..3 {
                assert!(has_key(&p.c, i, key, true).await, "acknowledged {key} is missing on member {i}");
            }
        }
    });
    let stats = p.proxy.stats();
    assert_eq!(stats.unknown_sources, 0, "every peer connection came from a member's --peer-local-address");
    eprintln!(
        "one-way and delay: {} writes acknowledged, all on every member; HashKV equal at revision {revision} \
         {converged:?} after the last heal; proxy {stats:?}",
        acked.len()
    );
}
