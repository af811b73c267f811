//! The MVCC store against a simple model (a map of version chains): random puts, deletes, txns
//! and compactions; after every step, every read at every retained revision is compared. And
//! readers on other threads during apply always see the model's state at some revision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use conflux::mvcc::*;
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Kv {
    create: i64,
    modr: i64,
    version: i64,
    value: Bytes,
    lease: i64,
}

#[derive(Debug, Default, Clone)]
struct Model {
    rev: i64,
    compacted: i64,
    hist: BTreeMap<Bytes, Vec<(i64, Option<Kv>)>>,
}

impl Model {
    fn new() -> Model {
        Model { rev: 1, ..Model::default() }
    }
    fn get(&self, key: &Bytes, at: i64) -> Option<Kv> {
        self.hist.get(key)?.iter().rev().find(|(r, _)| *r <= at).and_then(|(_, v)| v.clone())
    }
    fn state(&self, at: i64) -> Vec<(Bytes, Kv)> {
        self.hist.keys().filter_map(|k| self.get(k, at).map(|v| (k.clone(), v))).collect()
    }
    fn put(&mut self, rev: i64, key: &Bytes, value: &Bytes, lease: i64) {
        let prev = self.get(key, rev);
        let kv = Kv {
            create: prev.as_ref().map(|p| p.create).unwrap_or(rev),
            modr: rev,
            version: prev.as_ref().map(|p| p.version + 1).unwrap_or(1),
            value: value.clone(),
            lease,
        };
        self.hist.entry(key.clone()).or_default().push((rev, Some(kv)));
    }
    fn delete(&mut self, rev: i64, keys: &[Bytes]) {
        for k in keys {
            self.hist.entry(k.clone()).or_default().push((rev, None));
        }
    }
    fn keys_in(&self, at: i64, start: &Bytes, end: &Option<Bytes>) -> Vec<Bytes> {
        self.state(at)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| match end {
                None => k == start,
                Some(e) => k >= start && k < e,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8, i64),
    Delete(u8, Option<u8>),
    /// if value(key) == v { put a } else { delete b }
    Txn(u8, u8, u8, u8),
    Compact(u8),
}

fn key(k: u8) -> Bytes {
    Bytes::from(format!("k{k}"))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..8, 0u8..4, 0i64..3).prop_map(|(k, v, l)| Op::Put(k, v, l)),
        2 => (0u8..8, proptest::option::of(0u8..9)).prop_map(|(k, e)| Op::Delete(k, e)),
        2 => (0u8..8, 0u8..4, 0u8..8, 0u8..8).prop_map(|(k, v, a, b)| Op::Txn(k, v, a, b)),
        1 => (0u8..100).prop_map(Op::Compact),
    ]
}

fn val(v: u8) -> Bytes {
    Bytes::from(format!("v{v}"))
}

/// Grant leases `ids` (60 s each); a grant takes no revision.
fn grant_leases(store: &Store, ids: &[i64]) {
    for &id in ids {
        store.apply(&WriteRequest::LeaseGrant(LeaseGrantRequest { id, ttl: 60 })).unwrap();
    }
}

/// Each lease holds exactly the live keys whose newest version names it.
fn check_lease_keys(store: &Store, ids: &[i64]) {
    let all = store
        .range(&RangeRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            ..Default::default()
        })
        .unwrap();
    for &id in ids {
        let want: Vec<Bytes> = all.kvs.iter().filter(|kv| kv.lease == id).map(|kv| kv.key.clone()).collect();
        assert_eq!(store.lease(id).expect("granted").keys, want, "keys of lease {id}");
    }
}

/// Apply `op` to both; compare the answers that matter.
fn step(store: &Store, model: &mut Model, op: &Op) {
    match op {
        Op::Put(k, v, l) => {
            let r = store
                .apply(&WriteRequest::Put(PutRequest {
                    key: key(*k),
                    value: val(*v),
                    lease: *l,
                    prev_kv: true,
                    ..Default::default()
                }))
                .unwrap();
            let prev = model.get(&key(*k), model.rev);
            model.rev += 1;
            let rev = model.rev;
            model.put(rev, &key(*k), &val(*v), *l);
            let WriteResponse::Put(p) = r else { panic!() };
            assert_eq!(p.header.revision, rev);
            assert_eq!(p.prev_kv.map(|kv| kv.value), prev.map(|p| p.value));
        }
        Op::Delete(k, e) => {
            let end = e.map(|e| key(e.max(*k + 1)));
            let req = DeleteRangeRequest { key: key(*k), range_end: end.clone().unwrap_or_default(), prev_kv: false };
            let r = store.apply(&WriteRequest::DeleteRange(req)).unwrap();
            let doomed = model.keys_in(model.rev, &key(*k), &end);
            if !doomed.is_empty() {
                model.rev += 1;
                let rev = model.rev;
                model.delete(rev, &doomed);
            }
            let WriteResponse::DeleteRange(d) = r else { panic!() };
            assert_eq!(d.deleted as usize, doomed.len());
            assert_eq!(d.header.revision, model.rev);
        }
        Op::Txn(k, v, a, b) => {
            let req = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal,
                    target: CompareTarget::Value(val(*v)),
                    key: key(*k),
                    range_end: Bytes::new(),
                }],
                success: vec![
                    RequestOp::Put(PutRequest { key: key(*a), value: val(*v), ..Default::default() }),
                    RequestOp::Range(RangeRequest { key: key(*a), ..Default::default() }),
                ],
                failure: vec![RequestOp::DeleteRange(DeleteRangeRequest { key: key(*b), ..Default::default() })],
            };
            let r = store.apply(&WriteRequest::Txn(req)).unwrap();
            let WriteResponse::Txn(t) = r else { panic!() };
            let holds = model.get(&key(*k), model.rev).is_some_and(|kv| kv.value == val(*v));
            assert_eq!(t.succeeded, holds);
            if holds {
                model.rev += 1;
                let rev = model.rev;
                model.put(rev, &key(*a), &val(*v), 0);
                let ResponseOp::Range(rr) = &t.responses[1] else { panic!() };
                assert_eq!(rr.kvs.len(), 1, "a txn's range sees its own put");
                assert_eq!(rr.kvs[0].mod_revision, rev);
            } else if model.get(&key(*b), model.rev).is_some() {
                model.rev += 1;
                let rev = model.rev;
                model.delete(rev, &[key(*b)]);
            }
            assert_eq!(t.header.revision, model.rev);
        }
        Op::Compact(x) => {
            let target = 1 + (*x as i64) % model.rev.max(1);
            let r = store.apply(&WriteRequest::Compact(CompactionRequest { revision: target, physical: false }));
            if target <= model.compacted {
                assert_eq!(r, Err(MvccError::Compacted { compacted: model.compacted }));
            } else {
                r.unwrap();
                model.compacted = target;
                if x % 2 == 0 {
                    store.compact_physically();
                }
            }
        }
    }
}

fn all(rev: i64) -> RangeRequest {
    RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        revision: rev,
        ..Default::default()
    }
}

fn check_all_revisions(store: &Store, model: &Model) {
    assert_eq!(store.revision() as i64, model.rev);
    for at in model.compacted.max(1)..=model.rev {
        let got = store.range(&all(at)).unwrap_or_else(|e| panic!("read at {at}: {e}"));
        let want = model.state(at);
        assert_eq!(got.count as usize, want.len(), "count at {at}");
        let got: Vec<(Bytes, Kv)> = got
            .kvs
            .into_iter()
            .map(|kv| {
                (
                    kv.key,
                    Kv {
                        create: kv.create_revision,
                        modr: kv.mod_revision,
                        version: kv.version,
                        value: kv.value,
                        lease: kv.lease,
                    },
                )
            })
            .collect();
        assert_eq!(got, want, "state at revision {at}");
        // A limited, descending-by-mod read agrees too.
        let lim = store
            .range(&RangeRequest { limit: 2, sort_order: SortOrder::Descend, sort_target: SortTarget::Mod, ..all(at) })
            .unwrap();
        let mut by_mod = want.clone();
        by_mod.sort_by_key(|(_, kv)| std::cmp::Reverse(kv.modr));
        assert_eq!(
            lim.kvs.iter().map(|kv| kv.mod_revision).collect::<Vec<_>>(),
            by_mod.iter().take(2).map(|(_, kv)| kv.modr).collect::<Vec<_>>()
        );
        assert_eq!(lim.more, want.len() > 2);
    }
    if model.compacted > 1 {
        assert_eq!(store.range(&all(model.compacted - 1)), Err(MvccError::Compacted { compacted: model.compacted }));
    }
    assert_eq!(store.range(&all(model.rev + 1)), Err(MvccError::FutureRevision));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var("CONFLUX_FULL_TESTS").is_ok() { 2000 } else { 96 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model_at_every_revision(ops in proptest::collection::vec(op(), 1..60)) {
        let store = Store::new();
        grant_leases(&store, &[1, 2]);
        let mut model = Model::new();
        for op in &ops {
            step(&store, &mut model, op);
            check_all_revisions(&store, &model);
        }
        check_lease_keys(&store, &[1, 2]);
        // The snapshot round trip keeps every retained revision readable.
        let mut body = Vec::new();
        let meta = store.write_snapshot(&mut body).unwrap();
        prop_assert_eq!(meta.revision as i64, model.rev);
        let (restored, meta2) = Store::read_snapshot(&mut &body[..]).unwrap();
        prop_assert_eq!(meta, meta2);
        // Leases come back with their keys (rebuilt from the newest versions).
        prop_assert_eq!(restored.leases(), store.leases());
        for id in [1, 2] {
            prop_assert_eq!(restored.lease(id), store.lease(id));
        }
        check_all_revisions(&restored, &model);
        prop_assert_eq!(restored.key_count(), store.key_count());
    }
}

#[test]
fn readers_and_snapshots_during_apply_never_see_a_torn_state() {
    // Precompute the model's state at every revision, then apply while readers compare.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut ops = Vec::new();
    for _ in 0..3000 {
        let r = next();
        ops.push(match r % 10 {
            0..=5 => Op::Put((r >> 8) as u8 % 16, (r >> 16) as u8 % 4, 0),
            6 | 7 => Op::Txn((r >> 8) as u8 % 16, (r >> 16) as u8 % 4, (r >> 24) as u8 % 16, (r >> 32) as u8 % 16),
            _ => Op::Delete((r >> 8) as u8 % 16, Some((r >> 16) as u8 % 17)),
        });
    }
    let mut model = Model::new();
    let scratch = Store::new();
    grant_leases(&scratch, &[1, 2]);
    let mut states: Vec<Vec<(Bytes, Bytes)>> = vec![Vec::new(); 2];
    for op in &ops {
        step(&scratch, &mut model, op);
        while states.len() <= model.rev as usize {
            states.push(model.state(model.rev).into_iter().map(|(k, v)| (k, v.value)).collect());
        }
    }
    let states = Arc::new(states);
    let store = Arc::new(Store::new());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, states, done) = (store.clone(), states.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    let r = store.range(&all(0)).unwrap();
                    let rev = r.header.revision as usize;
                    let got: Vec<(Bytes, Bytes)> = r.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                    assert_eq!(got, states[rev], "torn read at revision {rev}");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // Snapshots built during apply hold exactly the model's state at their revision.
    let snapshotter = {
        let (store, states, done) = (store.clone(), states.clone(), done.clone());
        std::thread::spawn(move || {
            let mut built = 0u64;
            while !done.load(Ordering::Acquire) {
                let mut body = Vec::new();
                let meta = store.write_snapshot(&mut body).unwrap();
                let (restored, _) = Store::read_snapshot(&mut &body[..]).unwrap();
                let r = restored.range(&all(0)).unwrap();
                let got: Vec<(Bytes, Bytes)> = r.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                assert_eq!(got, states[meta.revision as usize], "snapshot at revision {}", meta.revision);
                built += 1;
            }
            built
        })
    };
    let mut m2 = Model::new();
    for op in &ops {
        step(&store, &mut m2, op);
    }
    done.store(true, Ordering::Release);
    let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(reads > 10, "readers ran: {reads}");
    assert!(snapshotter.join().unwrap() > 0, "snapshots were built during apply");
}

#[test]
fn etcd_errors_and_edge_cases() {
    let s = Store::new();
    grant_leases(&s, &[7]);
    assert_eq!(s.revision(), 1);
    let put = |k: &str, v: &str| {
        WriteRequest::Put(PutRequest {
            key: Bytes::from(k.to_string()),
            value: Bytes::from(v.to_string()),
            ..Default::default()
        })
    };
    assert_eq!(s.apply(&put("", "x")), Err(MvccError::EmptyKey));
    assert_eq!(
        s.apply(&WriteRequest::Put(PutRequest { key: Bytes::from("nope"), ignore_value: true, ..Default::default() })),
        Err(MvccError::KeyNotFound)
    );
    assert_eq!(s.revision(), 1, "refused requests change nothing");
    s.apply(&put("a", "1")).unwrap();
    s.apply(&put("b", "2")).unwrap();
    // ignore_value keeps the value, bumps the version.
    s.apply(&WriteRequest::Put(PutRequest {
        key: Bytes::from("a"),
        ignore_value: true,
        lease: 7,
        ..Default::default()
    }))
    .unwrap();
    let r = s.range(&RangeRequest { key: Bytes::from("a"), ..Default::default() }).unwrap();
    assert_eq!(
        (r.kvs[0].value.as_ref(), r.kvs[0].version, r.kvs[0].lease, r.kvs[0].create_revision),
        (&b"1"[..], 2, 7, 2)
    );
    // A duplicate key in a txn is refused whole.
    let dup = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest { key: Bytes::from("a"), ..Default::default() }),
            RequestOp::Put(PutRequest { key: Bytes::from("a"), ..Default::default() }),
        ],
        failure: vec![],
    };
    assert_eq!(s.apply(&WriteRequest::Txn(dup)), Err(MvccError::DuplicateKey));
    let overlap = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: Bytes::from("a"),
                range_end: Bytes::from("c"),
                prev_kv: false,
            }),
            RequestOp::Put(PutRequest { key: Bytes::from("b"), ..Default::default() }),
        ],
        failure: vec![],
    };
    assert_eq!(s.apply(&WriteRequest::Txn(overlap)), Err(MvccError::DuplicateKey));
    assert_eq!(s.revision(), 4);
    // etcd's nested-transaction rules: the two branches of a nested txn exclude each other.
    let nested = |then_op: RequestOp, else_op: RequestOp| {
        WriteRequest::Txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Txn(TxnRequest {
                compare: vec![],
                success: vec![then_op],
                failure: vec![else_op],
            })],
            failure: vec![],
        })
    };
    let p = |k: &str| RequestOp::Put(PutRequest { key: Bytes::from(k.to_string()), ..Default::default() });
    let d =
        |k: &str| RequestOp::DeleteRange(DeleteRangeRequest { key: Bytes::from(k.to_string()), ..Default::default() });
    let rev0 = s.revision();
    assert!(s.apply(&nested(p("n1"), p("n1"))).is_ok(), "same key in both branches of a nested txn");
    assert!(s.apply(&nested(p("n2"), d("n2"))).is_ok(), "put in one branch, delete in the other");
    assert_eq!(s.revision(), rev0 + 2);
    // A compare over a range with no key compares an empty key-value (version 0), as etcd.
    let empty_range = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Version(0),
            key: Bytes::from("zz-none-"),
            range_end: Bytes::from("zz-none0"),
        }],
        success: vec![],
        failure: vec![],
    };
    let WriteResponse::Txn(t) = s.apply(&WriteRequest::Txn(empty_range)).unwrap() else { panic!() };
    assert!(t.succeeded);
    // Range whose end precedes its start: empty, as etcd.
    let r =
        s.range(&RangeRequest { key: Bytes::from("b"), range_end: Bytes::from("a"), ..Default::default() }).unwrap();
    assert_eq!((r.kvs.len(), r.count), (0, 0));
    // Compaction bounds.
    assert_eq!(
        s.apply(&WriteRequest::Compact(CompactionRequest { revision: 9, physical: false })),
        Err(MvccError::FutureRevision)
    );
    s.apply(&WriteRequest::Compact(CompactionRequest { revision: 3, physical: false })).unwrap();
    assert_eq!(
        s.apply(&WriteRequest::Compact(CompactionRequest { revision: 3, physical: false })),
        Err(MvccError::Compacted { compacted: 3 })
    );
    assert_eq!(
        s.range(&RangeRequest { key: Bytes::from("a"), revision: 2, ..Default::default() }),
        Err(MvccError::Compacted { compacted: 3 })
    );
    assert_eq!(MvccError::Compacted { compacted: 3 }.to_string(), "mvcc: required revision has been compacted");
    assert_eq!(MvccError::FutureRevision.to_string(), "mvcc: required revision is a future revision");
    // Revision-filtered, count-only and keys-only reads (the lock and election recipes).
    s.apply(&put("lock/1", "x")).unwrap();
    s.apply(&put("lock/2", "y")).unwrap();
    let owners = s
        .range(&RangeRequest {
            key: Bytes::from("lock/"),
            range_end: Bytes::from("lock0"),
            sort_order: SortOrder::Ascend,
            sort_target: SortTarget::Create,
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((owners.kvs[0].key.as_ref(), owners.more, owners.count), (&b"lock/1"[..], true, 2));
    let before = s
        .range(&RangeRequest {
            key: Bytes::from("lock/"),
            range_end: Bytes::from("lock0"),
            max_create_revision: owners.kvs[0].create_revision,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(before.kvs.len(), 1);
    let c = s
        .range(&RangeRequest {
            key: Bytes::from("lock/"),
            range_end: Bytes::from("lock0"),
            count_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((c.kvs.len(), c.count), (0, 2));
    let k = s
        .range(&RangeRequest {
            key: Bytes::from("lock/"),
            range_end: Bytes::from("lock0"),
            keys_only: true,
            ..Default::default()
        })
        .unwrap();
    assert!(k.kvs.iter().all(|kv| kv.value.is_empty()) && k.kvs.len() == 2);
    // Physical compaction keeps every read at or above the compacted revision intact.
    let at = s.revision() as i64;
    s.apply(&WriteRequest::DeleteRange(DeleteRangeRequest { key: Bytes::from("b"), ..Default::default() })).unwrap();
    let versions = s.version_count();
    s.apply(&WriteRequest::Compact(CompactionRequest { revision: at + 1, physical: true })).unwrap();
    let removed = s.compact_physically();
    assert!(removed >= 3, "at least a@2 (superseded), b@3 and its tombstone go: {removed}");
    assert_eq!(s.version_count(), versions - removed);
    assert_eq!(s.range(&all(at + 1)).unwrap().kvs.len(), 5, "a, lock/1, lock/2, n1, n2");
    assert_eq!(s.range(&all(at)), Err(MvccError::Compacted { compacted: at + 1 }));
}

/// A read of the latest revision raced a compaction to the (new) latest revision and was refused
/// as compacted (caught by the range benchmark); it now reads again.
#[test]
fn latest_reads_are_never_refused_by_a_racing_compaction() {
    let store = Arc::new(Store::new());
    let put = |i: u64| {
        WriteRequest::Put(PutRequest {
            key: Bytes::from(format!("k{}", i % 64)),
            value: Bytes::from(i.to_string()),
            ..Default::default()
        })
    };
    for i in 0..64 {
        store.apply(&put(i)).unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let (s, d) = (store.clone(), done.clone());
    let writer = std::thread::spawn(move || {
        for i in 64..20_000u64 {
            s.apply(&put(i)).unwrap();
            if i % 16 == 0 {
                s.apply(&WriteRequest::Compact(CompactionRequest { revision: s.revision() as i64, physical: true }))
                    .unwrap();
                s.compact_physically();
            }
        }
        d.store(true, Ordering::Release);
    });
    let mut reads = 0;
    while !done.load(Ordering::Acquire) {
        let r = store.range(&RangeRequest { key: Bytes::from("k"), range_end: Bytes::from("l"), ..Default::default() });
        assert_eq!(r.expect("a read of the latest revision is never refused").kvs.len(), 64);
        reads += 1;
    }
    writer.join().unwrap();
    assert!(reads > 0);
}

proptest! {
    /// Damaged snapshot bodies are refused with an error, never a panic or a huge allocation.
    #[test]
    fn damaged_snapshot_bodies_are_refused(cut in 0usize..2000, flip in 0usize..2000, noise in proptest::collection::vec(any::<u8>(), 0..64)) {
        let store = Store::new();
        for i in 0..20u64 {
            store.apply(&WriteRequest::Put(PutRequest { key: Bytes::from(format!("k{i}")), value: Bytes::from(vec![i as u8; 30]), ..Default::default() })).unwrap();
        }
        let mut body = Vec::new();
        store.write_snapshot(&mut body).unwrap();
        let cut = cut % body.len();
        prop_assert!(Store::read_snapshot(&mut &body[..cut]).is_err(), "a truncated body is refused");
        let mut flipped = body.clone();
        let at = flip % flipped.len();
        flipped[at] ^= 0xff;
        let _ = Store::read_snapshot(&mut &flipped[..]); // may decode (a value byte) or not; must not panic
        let mut garbage = noise.clone();
        garbage.extend_from_slice(&body);
        let _ = Store::read_snapshot(&mut &garbage[..]);
    }
}
