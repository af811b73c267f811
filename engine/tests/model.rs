//! Property test: random sequences of append / truncate / purge / reopen, checked against an
//! in-memory model of the log after every step.

mod common;

use std::collections::BTreeMap;

use common::*;
use openraft::EntryPayload;
use openraft::storage::RaftLogStorage;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { n: u8, size: u16 },
    Truncate { back: u8 },
    Purge { fwd: u8 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..20, 1u16..1500).prop_map(|(n, size)| Op::Append { n, size }),
        2 => (0u8..30).prop_map(|back| Op::Truncate { back }),
        1 => (0u8..40).prop_map(|fwd| Op::Purge { fwd }),
        1 => Just(Op::Reopen),
    ]
}

fn body(term: u64, index: u64, size: u16) -> Vec<u8> {
    payload(index ^ (term << 32), size as usize)
}

fn check(s: &Store, model: &BTreeMap<u64, (u64, u16)>, purged: Option<u64>) -> Result<(), TestCaseError> {
    let st = s.log_state();
    prop_assert_eq!(st.last_purged_log_id.map(|l| l.index), purged);
    let want_last = model.keys().next_back().copied().or(purged);
    prop_assert_eq!(st.last_log_id.map(|l| l.index), want_last);
    let got = s.read(0..u64::MAX).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(got.len(), model.len());
    for (e, (&i, &(term, size))) in got.iter().zip(model.iter()) {
        prop_assert_eq!(e.log_id.index, i);
        prop_assert_eq!(e.log_id.leader_id.term, term);
        let EntryPayload::Normal(Blob(b)) = &e.payload else { return Err(TestCaseError::fail("payload")) };
        prop_assert_eq!(b, &body(term, i, size));
    }
    // Sub-ranges too (crossing segment boundaries and the tail cache).
    if let (Some(&a), Some(&z)) = (model.keys().next(), model.keys().next_back()) {
        let mid = (a + z) / 2;
        let part = s.read(mid..=z).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(part.len() as u64, z - mid + 1);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var("CONFLUX_FULL_TESTS").is_ok() { 1000 } else { 48 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let config = || conflux_engine::Config {
            segment_bytes: 8 << 10,
            max_entry_bytes: 2 << 10,
            tail_cache_bytes: 4 << 10,
            ..default_config()
        };
        let mut s = open(dir.path(), config());
        let mut model: BTreeMap<u64, (u64, u16)> = BTreeMap::new();
        let mut purged: Option<(u64, u64)> = None; // (index, term)
        let mut term = 1u64;
        for op in ops {
            let next = model.keys().next_back().map(|i| i + 1).or(purged.map(|p| p.0 + 1)).unwrap_or(0);
            match op {
                Op::Append { n, size } => {
                    let entries: Vec<Entry> = (next..next + n as u64).map(|i| entry(term, i, body(term, i, size))).collect();
                    rt.block_on(append_sync(&mut s, entries)).unwrap();
                    for i in next..next + n as u64 {
                        model.insert(i, (term, size));
                    }
                }
                Op::Truncate { back } => {
                    let floor = purged.map(|p| p.0 + 1).unwrap_or(0);
                    let keep_end = next.saturating_sub(back as u64).max(floor);
                    let last = if keep_end == 0 {
                        None
                    } else if let Some(&(t, _)) = model.get(&(keep_end - 1)) {
                        Some(log_id(t, keep_end - 1))
                    } else {
                        purged.map(|(i, t)| log_id(t, i))
                    };
                    rt.block_on(s.truncate_after(last)).unwrap();
                    model.retain(|&i, _| i < keep_end);
                    term += 1;
                }
                Op::Purge { fwd } => {
                    let base = purged.map(|p| p.0 + 1).unwrap_or(0);
                    let upto = base + fwd as u64;
                    // Purging past the end is allowed (a snapshot install does it).
                    let t = model.get(&upto).map(|m| m.0).unwrap_or(term);
                    rt.block_on(s.purge(log_id(t, upto))).unwrap();
                    model.retain(|&i, _| i > upto);
                    purged = Some((upto, t));
                }
                Op::Reopen => {
                    drop(s);
                    s = open(dir.path(), config());
                }
            }
            check(&s, &model, purged.map(|p| p.0))?;
        }
        drop(s);
        let s = open(dir.path(), config());
        check(&s, &model, purged.map(|p| p.0))?;
        drop(s);
        let r = conflux_engine::tools::verify(&conflux_engine::io::StdIo, dir.path()).unwrap();
        prop_assert!(r.is_clean(), "{:?}", r.problems);
    }
}
