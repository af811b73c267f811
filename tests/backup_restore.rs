//! Backups with etcd's tools against real `conflux` processes: `etcdctl snapshot save` from a
//! member of a 3-member cluster, `conflux restore` into fresh directories for a new 3-member
//! cluster that then serves the same keys, values, revisions, history and leases on a new Raft
//! log; damaged, truncated and foreign files refused by restore with nothing written; and
//! `etcdctl defrag` deleting log segments and stale snapshot files, and logging what it did.
//! Needs etcdctl (Debian package `etcd-client`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use conflux::node::proto::etcdserverpb::lease_client::LeaseClient;
use conflux::node::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use conflux::node::proto::etcdserverpb::{
    CompactionRequest, LeaseGrantRequest, LeaseLeasesRequest, PutRequest, RangeRequest, StatusRequest, StatusResponse,
};
use conflux::node::proto::mvccpb::KeyValue;

/// `conflux restore FILE ARGS...`.
fn restore(file: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conflux")).arg("restore").arg(file).args(args).output().expect("run restore")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every key at `revision` (0: current) through member `i`, and the header's revision; or the error.
fn range_all(c: &Cluster, i: usize, revision: i64) -> Result<(Vec<KeyValue>, i64), String> {
    rt().block_on(async {
        let mut kv = c.kv(i).await;
        let req = RangeRequest { key: vec![0].into(), range_end: vec![0].into(), revision, ..Default::default() };
        let r = kv.range(req).await.map_err(|e| e.message().to_string())?.into_inner();
        Ok((r.kvs, r.header.unwrap_or_default().revision))
    })
}

fn status(c: &Cluster, i: usize) -> StatusResponse {
    rt().block_on(async {
        let ch = c.endpoint(i).connect().await.expect("connect");
        MaintenanceClient::new(ch).status(StatusRequest {}).await.expect("status").into_inner()
    })
}

fn leases(c: &Cluster, i: usize) -> Vec<i64> {
    rt().block_on(async {
        let ch = c.endpoint(i).connect().await.expect("connect");
        let r = LeaseClient::new(ch).lease_leases(LeaseLeasesRequest {}).await.expect("lease list").into_inner();
        r.leases.iter().map(|l| l.id).collect()
    })
}

/// Files of `dir` whose names end with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(suffix)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Writes, overwrites, a delete, a lease holding a key, and a compaction; returns the lease id.
fn fill(c: &Cluster) -> i64 {
    rt().block_on(async {
        let mut kv = c.kv(0).await;
        for i in 0..40 {
            put(&mut kv, &format!("k{i:02}"), &format!("v{i}")).await.unwrap();
        }
        for i in 0..10 {
            put(&mut kv, &format!("k{i:02}"), &format!("w{i}")).await.unwrap();
        }
        let ch = c.endpoint(0).connect().await.unwrap();
        let lease = LeaseClient::new(ch).lease_grant(LeaseGrantRequest { ttl: 600, id: 0 }).await.unwrap().into_inner();
        let req = PutRequest {
            key: b"leased".to_vec().into(),
            value: b"x".to_vec().into(),
            lease: lease.id,
            ..Default::default()
        };
        kv.put(req).await.unwrap();
        kv.compact(CompactionRequest { revision: 5, physical: true }).await.unwrap();
        lease.id
    })
}

#[test]
fn snapshot_save_from_a_cluster_restores_into_a_new_cluster_with_the_same_data() {
    let c = Cluster::start(3, &[]);
    let lease = fill(&c);
    assert_eq!(ok(etcdctl(&c.members[0].endpoint(), &["del", "k39"]), "del").trim(), "1");
    // Through a follower: it builds its own snapshot (a linearizable read first, so it has
    // applied everything above).
    let leader = c.wait_leader(None);
    let f = (0..3).find(|&i| i != leader).unwrap();
    let (expected, revision) = range_all(&c, f, 0).unwrap();
    let history = range_all(&c, f, 20).unwrap();
    assert_eq!((expected.len(), history.0.len()), (40, 19), "k00..k38 and `leased`; at revision 20, k00..k18");
    // Outside the cluster's directory, which goes with it.
    let keep = tempfile::tempdir().unwrap();
    let file = keep.path().join("backup.db");
    let out = ok(etcdctl(&c.members[f].endpoint(), &["snapshot", "save", file.to_str().unwrap()]), "snapshot save");
    assert!(out.contains("Snapshot saved"), "{out}");
    let len = std::fs::metadata(&file).unwrap().len();
    assert_eq!(len % 512, 32, "payload padded to 512 bytes, then the SHA-256");
    let old_status = status(&c, f);
    drop(c);

    // A new cluster from the file: other token, other ports, other member ids.
    let mut r = Cluster::prepare(3, &[]);
    r.token = "restored-cluster".into();
    restore_members(&r, &file);
    for i in 0..3 {
        r.spawn(i);
    }
    for i in 0..3 {
        r.wait_ready(i);
    }
    for i in 0..3 {
        assert_eq!(range_all(&r, i, 0).unwrap(), (expected.clone(), revision), "member {i}: same keys and revisions");
        assert_eq!(range_all(&r, i, 20).unwrap(), history, "member {i}: same history");
        let e = range_all(&r, i, 3).unwrap_err();
        assert!(e.contains("compacted"), "member {i}: compaction kept: {e}");
        assert!(leases(&r, i).contains(&lease), "member {i}: lease {lease:x} kept");
        let s = status(&r, i);
        let h = s.header.unwrap();
        assert_ne!(h.cluster_id, old_status.header.as_ref().unwrap().cluster_id, "a new cluster");
        assert!(
            s.raft_index < old_status.raft_index,
            "a fresh Raft log: index {} (old cluster {})",
            s.raft_index,
            old_status.raft_index
        );
        assert!(s.raft_applied_index <= s.raft_index, "{s:?}");
        assert!(!s.is_learner && s.errors.is_empty() && s.leader != 0, "{s:?}");
    }
    let list = ok(etcdctl(&r.members[0].endpoint(), &["member", "list"]), "member list");
    for m in &r.members {
        assert!(list.contains(&m.name) && list.contains(&m.peer_url()), "{list}");
    }
    // It takes writes, after the restored revision.
    let next = rt().block_on(async { put(&mut r.kv(1).await, "after", "restore").await.unwrap() });
    assert_eq!(next, revision + 1);
    drop(r);

    // A single member from the same file serves the same data too.
    let mut one = Cluster::prepare(1, &[]);
    restore_members(&one, &file);
    one.spawn(0);
    one.wait_ready(0);
    assert_eq!(range_all(&one, 0, 0).unwrap(), (expected, revision));
    assert!(leases(&one, 0).contains(&lease));
}

/// `conflux restore` for every member of `r`, with the flags each will run with.
fn restore_members(r: &Cluster, file: &Path) {
    for m in &r.members {
        let o = restore(
            file,
            &[
                "--name",
                &m.name,
                "--data-dir",
                m.data_dir.to_str().unwrap(),
                "--initial-cluster",
                &r.initial_cluster(),
                "--initial-cluster-token",
                &r.token,
                "--initial-advertise-peer-urls",
                &m.peer_url(),
            ],
        );
        assert!(o.status.success(), "restore {}: {}", m.name, text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("SHA-256 checked"), "{}", text(&o));
    }
}

#[test]
fn restore_refuses_damaged_truncated_and_foreign_files_and_writes_nothing() {
    let c = Cluster::start(1, &[]);
    fill(&c);
    let dir = c.dir.path();
    let file = dir.join("backup.db");
    ok(etcdctl(&c.members[0].endpoint(), &["snapshot", "save", file.to_str().unwrap()]), "snapshot save");
    let bytes = std::fs::read(&file).unwrap();
    let target = dir.join("restored");
    let args = ["--data-dir", target.to_str().unwrap()];
    let refused = |name: &str, content: &[u8], extra: &[&str], expect: &str| {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        let mut a = args.to_vec();
        a.extend_from_slice(extra);
        let o = restore(&p, &a);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{name}: restore succeeded: {}", text(&o));
        assert!(err.contains(&p.display().to_string()) && err.contains(expect), "{name}: {err}");
        assert!(!target.exists(), "{name}: the target was created");
        let leftovers: Vec<_> =
            files(dir, "").into_iter().filter(|p| p.to_string_lossy().contains(".restore-")).collect();
        assert!(leftovers.is_empty(), "{name}: staging left behind: {leftovers:?}");
    };
    // One byte flipped in the snapshot, near its end (padding or trailer), in the checksum.
    for (what, at) in [("middle", bytes.len() / 3), ("tail", bytes.len() - 40), ("checksum", bytes.len() - 1)] {
        let mut b = bytes.clone();
        b[at] ^= 0x40;
        refused(&format!("flipped-{what}.db"), &b, &[], "SHA-256 mismatch");
    }
    // Truncated: anywhere, or by whole 512-byte blocks (the trailer is then payload bytes).
    refused("truncated.db", &bytes[..bytes.len() / 2], &[], "no SHA-256 trailer");
    refused("truncated-block.db", &bytes[..bytes.len() - 512], &[], "SHA-256 mismatch");
    // Not a conflux backup: an empty file, zeros as a bbolt file starts, text.
    refused("empty.db", b"", &[], "not a conflux backup");
    let mut zeros = vec![0u8; 4096];
    zeros.extend_from_slice(&[7u8; 32]);
    refused("bbolt.db", &zeros, &[], "bbolt");
    refused("text.db", b"hello, this is not a snapshot\n", &[], "not a conflux backup");
    // --skip-hash-check still checks the snapshot's own checksums.
    let mut b = bytes.clone();
    b[bytes.len() / 3] ^= 0x40;
    refused("flipped-skip.db", &b, &["--skip-hash-check"], "checksum mismatch");

    // A non-empty target is refused and left as it was.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("precious"), b"keep").unwrap();
    let o = restore(&file, &args);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not empty"), "{}", text(&o));
    assert_eq!(files(&target, ""), vec![target.join("precious")]);
    std::fs::remove_dir_all(&target).unwrap();

    // The good file restores; so does a bare snapshot file from a data directory, but only
    // with --skip-hash-check (it has no SHA-256 trailer).
    let o = restore(&file, &args);
    assert!(o.status.success(), "{}", text(&o));
    let bare = files(&c.members[0].data_dir.join("snapshots"), ".snap.zst").pop().expect("a snapshot file");
    let other = dir.join("from-bare");
    let o = restore(&bare, &["--data-dir", other.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no SHA-256 trailer"), "{}", text(&o));
    let o = restore(&bare, &["--data-dir", other.to_str().unwrap(), "--skip-hash-check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("SHA-256 not checked"), "{}", text(&o));
}

#[test]
fn etcdctl_defrag_deletes_log_segments_and_stale_snapshots_and_logs_what_it_did() {
    // Small segments and no automatic snapshot, so the log spans many segments.
    let flags = ["--segment-bytes", "262144", "--max-request-bytes", "65536", "--snapshot-count", "1000000"];
    let c = Cluster::start(3, &flags);
    let value = "x".repeat(16 * 1024);
    rt().block_on(async {
        let mut kv = c.kv(0).await;
        for round in 0..2 {
            for i in 0..40 {
                put(&mut kv, &format!("big{i:02}"), &format!("{round}{value}")).await.unwrap();
            }
        }
    });
    let endpoints: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    let all = endpoints.join(",");
    let (_, revision) = range_all(&c, 0, 0).unwrap();
    ok(etcdctl(&endpoints[0], &["compaction", &revision.to_string()]), "compaction");
    // A snapshot exists (snapshot save builds one); plant a stale copy beside it on member 0.
    let backup = c.dir.path().join("b.db");
    ok(etcdctl(&endpoints[0], &["snapshot", "save", backup.to_str().unwrap()]), "snapshot save");
    let snaps = c.members[0].data_dir.join("snapshots");
    let current = files(&snaps, ".snap.zst").pop().expect("a snapshot");
    let stale = snaps.join("00000000000000000001-00000000000000000002.snap.zst");
    std::fs::copy(&current, &stale).unwrap();
    rt().block_on(async {
        let mut kv = c.kv(1).await;
        put(&mut kv, "after-snapshot", "1").await.unwrap();
    });
    let before: Vec<usize> = c.members.iter().map(|m| files(&m.data_dir.join("log"), ".seg").len()).collect();
    assert!(before.iter().all(|&n| n >= 5), "segments before defrag: {before:?}");
    let size_before = status(&c, 0).db_size;

    // A generous command timeout: the machine running the tests may be busy (the member answers
    // within a few seconds, building a snapshot first).
    let out = ok(etcdctl(&all, &["--command-timeout=30s", "defrag"]), "defrag");
    assert_eq!(out.matches("Finished defragmenting etcd member").count(), 3, "{out}");

    // Segments go (the engine deletes them right after the purge point is durable).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now: Vec<usize> = c.members.iter().map(|m| files(&m.data_dir.join("log"), ".seg").len()).collect();
        if now.iter().all(|&n| n <= 2) {
            break;
        }
        assert!(Instant::now() < deadline, "segments after defrag: {now:?} (before: {before:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
    for m in &c.members {
        let left = files(&m.data_dir.join("snapshots"), ".snap.zst");
        assert_eq!(left.len(), 1, "{}: one snapshot left: {left:?}", m.name);
    }
    assert!(!stale.exists(), "stale snapshot file still there");
    let log = c.log(0);
    let line = log.lines().find(|l| l.contains("defragmented")).expect("defrag reported in the log");
    let field = |name: &str| -> u64 {
        let at = line.find(&format!(" {name}=")).unwrap_or_else(|| panic!("{name} not in {line}"));
        line[at + name.len() + 2..].split(' ').next().unwrap().parse().unwrap()
    };
    assert!(line.contains("log_purged=true"), "{line}");
    assert!(field("segments_after") < field("segments_before"), "{line}");
    assert!(field("bytes_after") < field("bytes_before"), "{line}");
    // Reported even when there was nothing to do (the compactor already removed the versions).
    for name in ["versions_removed", "stale_snapshots_removed", "snapshot_index"] {
        field(name);
    }
    assert!(status(&c, 0).db_size < size_before, "db_size shrinks");
    // Everything still there, on every member.
    for i in 0..3 {
        let (kvs, _) = range_all(&c, i, 0).unwrap();
        assert_eq!(kvs.len(), 41, "member {i}");
    }
}
