//! The fuzz targets' seed corpora (`fuzz/corpus/<target>/seed-*`): valid inputs made with the
//! node's own encoders, so the fuzzers start from real files and requests. This test checks that
//! the committed seeds are exactly what the encoders make today (a format change that leaves them
//! stale fails here) and that each seed reaches the decoder it is for.
//!
//! Regenerate them after a format change with
//! `CONFLUX_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_seeds`. The input layout of each target is
//! described at the top of its file in `fuzz/fuzz_targets/`.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use conflux::fuzzing;
use conflux::mvcc::{PutRequest, Store, WriteRequest};
use conflux::node::proto::etcdserverpb as pb;
use conflux::types::{Codec, Entry, LogId, TypeConfig};
use conflux_engine::RaftCodec;
use conflux_engine::format::meta as metafmt;
use conflux_engine::snapshot::Snapshots;
use openraft::entry::RaftEntry;
use prost::Message;

fn log_id(term: u64, index: u64) -> LogId {
    openraft::LogId::new(openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 }, index)
}

fn put(k: &str, v: &str) -> WriteRequest {
    WriteRequest::Put(PutRequest {
        key: Bytes::from(k.to_string()),
        value: Bytes::from(v.to_string()),
        ..Default::default()
    })
}

fn encoded(e: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    Codec::encode_entry(e, &mut out).unwrap();
    out
}

/// `u16` little-endian length, then the bytes: how the targets' structured modes split input.
fn framed(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u16).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn with_mode(mode: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(rest);
    v
}

fn segment_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let entries = [
        Entry::new_blank(log_id(1, 7)),
        Entry::new(log_id(1, 8), openraft::EntryPayload::Normal(put("lg/1", "hello"))),
        Entry::new(log_id(2, 9), openraft::EntryPayload::Normal(put("lg/2", "world"))),
    ];
    let payloads: Vec<Vec<u8>> = entries.iter().map(encoded).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let file = conflux_engine::fuzzing::encode_segment(7, &refs);
    // A torn tail: the last record cut in half, as a crash leaves it.
    let torn = file[..file.len() - 12].to_vec();
    vec![
        ("seed-file", with_mode(0, &file)),
        ("seed-torn-tail", with_mode(0, &torn)),
        ("seed-entries", with_mode(1, &framed(&refs))),
    ]
}

fn meta_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut vote = Vec::new();
    Codec::encode_vote(&openraft::alias::VoteOf::<TypeConfig>::new(3, 1), &mut vote).unwrap();
    let (mut committed, mut purged) = (Vec::new(), Vec::new());
    Codec::encode_log_id(&log_id(3, 40), &mut committed).unwrap();
    Codec::encode_log_id(&log_id(2, 10), &mut purged).unwrap();
    let body = metafmt::MetaBody { vote: Some(vote.clone()), committed: Some(committed.clone()), purged: None };
    let newer = metafmt::MetaBody { purged: Some(purged.clone()), ..body.clone() };
    // Two slots, the second newer: the file after two writes.
    let mut file = metafmt::encode(1, &body).unwrap();
    file.extend_from_slice(&metafmt::encode(2, &newer).unwrap());
    let absent: &[u8] = &[0xff, 0xff];
    let mut fields = framed(&[&vote, &committed]);
    fields.extend_from_slice(absent);
    vec![("seed-file", with_mode(0, &file)), ("seed-fields", with_mode(1, &fields))]
}

fn snapshot_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let store = Store::new();
    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
        store.apply(&put(k, v)).unwrap();
    }
    store
        .apply(&WriteRequest::DeleteRange(conflux::mvcc::DeleteRangeRequest { key: "b".into(), ..Default::default() }))
        .unwrap();
    // An alarm, so the seeds reach the alarm records of version 3 bodies.
    let alarm = conflux::mvcc::AlarmRequest {
        action: conflux::mvcc::AlarmAction::Activate,
        member_id: 7,
        alarm: conflux::mvcc::AlarmType::NoSpace,
    };
    store.apply(&WriteRequest::Alarm(alarm)).unwrap();
    let mut body = Vec::new();
    store.write_snapshot(&mut body).unwrap();
    let meta = fuzzing::empty_snapshot_meta();
    let dir = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(Arc::new(conflux_engine::io::StdIo), dir.path()).unwrap();
    let info = fuzzing::write_snapshot(&snaps, &meta, &body).unwrap();
    let file = std::fs::read(&info.path).unwrap();
    let mut meta_body = framed(&[&meta]);
    meta_body.extend_from_slice(&body);
    vec![
        ("seed-file", with_mode(0, &file)),
        ("seed-meta-and-body", with_mode(1, &meta_body)),
        ("seed-body", with_mode(2, &body)),
    ]
}

fn kv_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use pb::{compare, request_op};
    let put = |k: &str, v: &str| pb::PutRequest {
        key: k.to_string().into(),
        value: v.to_string().into(),
        ..Default::default()
    };
    let range = pb::RangeRequest { key: "a".into(), range_end: "z".into(), ..Default::default() };
    let txn = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Mod as i32,
            key: "a".into(),
            target_union: Some(compare::TargetUnion::ModRevision(0)),
            range_end: Bytes::new(),
        }],
        success: vec![pb::RequestOp { request: Some(request_op::Request::RequestPut(put("a", "new"))) }],
        failure: vec![pb::RequestOp { request: Some(request_op::Request::RequestRange(range.clone())) }],
    };
    let delete = pb::DeleteRangeRequest { key: "a".into(), prev_kv: true, ..Default::default() };
    let compact = pb::CompactionRequest { revision: 2, physical: true };
    // A sequence of (kind, u16 length, message): kinds as `conflux::fuzzing::KV_REQUESTS`.
    let seq = |reqs: &[(u8, Vec<u8>)]| {
        let mut out = Vec::new();
        for (kind, m) in reqs {
            out.push(*kind);
            out.extend_from_slice(&framed(&[m]));
        }
        out
    };
    vec![
        ("seed-put-range", seq(&[(1, put("a", "1").encode_to_vec()), (0, range.encode_to_vec())])),
        ("seed-txn", seq(&[(1, put("a", "1").encode_to_vec()), (3, txn.encode_to_vec())])),
        (
            "seed-delete-compact",
            seq(&[
                (1, put("a", "1").encode_to_vec()),
                (1, put("a", "2").encode_to_vec()),
                (2, delete.encode_to_vec()),
                (4, compact.encode_to_vec()),
            ]),
        ),
    ]
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target)
}

#[test]
fn seeds_are_current_and_decode() {
    // Each seed reaches the code its target is for.
    let seg = segment_seeds();
    let d = conflux_engine::fuzzing::decode_segment(&seg[0].1[1..]).unwrap();
    assert_eq!((d.first_index, d.payloads.len(), d.damaged), (7, 3, false));
    assert!(d.payloads.iter().all(|p| Codec::decode_entry(p).is_ok()));
    let torn = conflux_engine::fuzzing::decode_segment(&seg[1].1[1..]).unwrap();
    assert_eq!((torn.payloads.len(), torn.damaged), (2, true));
    let meta = meta_seeds();
    let slot = conflux_engine::fuzzing::decode_meta(&meta[0].1[1..]).unwrap().unwrap();
    assert_eq!(slot.sequence, 2);
    assert!(Codec::decode_vote(slot.body.vote.as_deref().unwrap()).is_ok());
    assert!(Codec::decode_log_id(slot.body.purged.as_deref().unwrap()).is_ok());
    let snap = snapshot_seeds();
    let dir = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(Arc::new(conflux_engine::io::StdIo), dir.path()).unwrap();
    let path = snaps.dir().join(conflux_engine::format::snapshot::file_name(1, 1));
    std::fs::write(&path, &snap[0].1[1..]).unwrap();
    let store = fuzzing::load_snapshot(&snaps, &path).unwrap();
    assert_eq!((store.revision(), store.key_count(), store.alarms().len()), (5, 1, 1));
    let store = Store::new();
    for (name, seed) in kv_seeds() {
        let mut rest = &seed[..];
        while let [kind, a, b, tail @ ..] = rest {
            let len = u16::from_le_bytes([*a, *b]) as usize;
            let r = fuzzing::kv_request(&store, *kind, &tail[..len]);
            assert!(r.is_ok(), "{name}: {r:?}");
            rest = &tail[len..];
        }
    }
    assert_eq!(store.compacted_revision(), 2);

    let write = std::env::var("CONFLUX_WRITE_FUZZ_SEEDS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (target, seeds) in [("segment", seg), ("meta", meta), ("snapshot", snap), ("kv_request", kv_seeds())] {
        let dir = corpus_dir(target);
        for (name, bytes) in seeds {
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "fuzz seeds missing or stale (regenerate with CONFLUX_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_seeds): {stale:?}"
    );
}
