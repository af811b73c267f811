//! State machine snapshots: build while apply goes on, install on a fresh member, compare at every
//! retained revision; damaged, truncated or foreign-version files are refused and the current
//! state is kept.

use std::sync::Arc;

use bytes::Bytes;
use conflux::mvcc::*;
use conflux::state_machine::{SmConfig, SnapshotFile, StateMachine};
use conflux::types::Entry;
use futures_util::StreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

fn entry(index: u64, req: WriteRequest) -> Entry {
    let lid = openraft::impls::leader_id_adv::LeaderId { term: 1, node_id: 1 };
    Entry::new(openraft::LogId::new(lid, index), openraft::EntryPayload::Normal(req))
}

fn put(k: &str, v: &str) -> WriteRequest {
    WriteRequest::Put(PutRequest {
        key: Bytes::from(k.to_string()),
        value: Bytes::from(v.to_string()),
        ..Default::default()
    })
}

async fn apply(sm: &mut StateMachine, entries: Vec<Entry>) {
    let s = futures_util::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm.apply(s.boxed()).await.unwrap();
}

fn open(dir: &std::path::Path) -> StateMachine {
    StateMachine::open(dir, Arc::new(conflux_engine::io::StdIo), SmConfig::default()).unwrap()
}

fn read_all(sm: &StateMachine, rev: i64) -> Result<RangeResponse, MvccError> {
    sm.store().range(&RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        revision: rev,
        ..Default::default()
    })
}

async fn populated(dir: &std::path::Path) -> (StateMachine, u64) {
    let mut sm = open(dir);
    let mut entries = Vec::new();
    for i in 1..=600u64 {
        entries.push(entry(i, put(&format!("key/{:04}", i % 150), &format!("value-{i}"))));
    }
    entries.push(entry(
        601,
        WriteRequest::DeleteRange(DeleteRangeRequest {
            key: Bytes::from("key/0010"),
            range_end: Bytes::from("key/0020"),
            prev_kv: false,
        }),
    ));
    entries.push(entry(602, WriteRequest::Compact(CompactionRequest { revision: 300, physical: false })));
    apply(&mut sm, entries).await;
    (sm, 602)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_install_compare_every_retained_revision() {
    let a = tempfile::tempdir().unwrap();
    let (mut sm, last) = populated(a.path()).await;
    // Build while apply continues on another task: the snapshot is at one published revision.
    let mut builder = sm.get_snapshot_builder().await;
    let mut sm2 = sm.clone();
    let writer = tokio::spawn(async move {
        for i in 0..200u64 {
            apply(&mut sm2, vec![entry(last + 1 + i, put(&format!("late/{i}"), "x"))]).await;
        }
    });
    let snap = builder.build_snapshot().await.unwrap();
    writer.await.unwrap();
    let at = snap.meta.last_log_id.unwrap().index;
    assert!(at >= last);

    let b = tempfile::tempdir().unwrap();
    let mut fresh = open(b.path());
    fresh.install_snapshot(&snap.meta, snap.snapshot.clone()).await.unwrap();
    let (applied, _) = fresh.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(at));
    // The installed store equals the source at every revision it retains.
    let rev = fresh.store().revision() as i64;
    let compacted = fresh.store().compacted_revision() as i64;
    assert_eq!(compacted, 300);
    for r in compacted..=rev {
        assert_eq!(read_all(&fresh, r).unwrap().kvs, read_all(&sm, r).unwrap().kvs, "revision {r}");
    }
    assert_eq!(read_all(&fresh, compacted - 1), Err(MvccError::Compacted { compacted }));
    // get_current_snapshot serves it on both sides; the receiver keeps its own copy.
    let cur = fresh.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(cur.meta, snap.meta);
    assert!(cur.snapshot.path.starts_with(b.path()));
    // A restart of the receiver comes back from the snapshot.
    drop(fresh);
    let again = open(b.path());
    assert_eq!(read_all(&again, rev).unwrap().kvs, read_all(&sm, rev).unwrap().kvs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_snapshots_are_refused_and_state_is_kept() {
    let a = tempfile::tempdir().unwrap();
    let (mut sm, _) = populated(a.path()).await;
    let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let orig = std::fs::read(&snap.snapshot.path).unwrap();

    let b = tempfile::tempdir().unwrap();
    let mut target = open(b.path());
    apply(&mut target, vec![entry(1, put("mine", "kept"))]).await;
    let before = read_all(&target, 0).unwrap();

    let bad_dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flipped body byte", {
            let mut v = orig.clone();
            let n = v.len();
            v[n / 2] ^= 0x20;
            v
        }),
        ("truncated", orig[..orig.len() * 2 / 3].to_vec()),
        ("other version", {
            let mut v = orig.clone();
            v[8] = 2;
            v
        }),
        ("not a snapshot", b"hello, this is not a snapshot at all, just some words".to_vec()),
    ];
    for (what, bytes) in cases {
        let p = bad_dir.path().join(format!("{what}.snap.zst"));
        std::fs::write(&p, &bytes).unwrap();
        let err = target.install_snapshot(&snap.meta, SnapshotFile { path: p.clone() }).await.expect_err(what);
        assert!(err.to_string().contains(&p.display().to_string()), "{what}: error names the file: {err}");
        assert_eq!(read_all(&target, 0).unwrap(), before, "{what}: current state kept");
    }

    // At open: a damaged newest snapshot is refused with its path.
    drop(sm);
    let p = snap.snapshot.path.clone();
    let mut v = orig.clone();
    let n = v.len();
    v[n - 30] ^= 1;
    std::fs::write(&p, &v).unwrap();
    let err = StateMachine::open(a.path(), Arc::new(conflux_engine::io::StdIo), SmConfig::default())
        .expect_err("damaged at open");
    assert!(err.to_string().contains(&p.display().to_string()), "{err}");
}
