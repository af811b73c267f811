//! Fault injection through the I/O seam: a failing write, a failing fdatasync, ENOSPC and a short
//! write. The store reports the error, refuses later writes (poisoned), and loses nothing that
//! was acknowledged.

mod common;

use std::sync::Arc;

use common::*;
use conflux_engine::io::fault::{Fault, FaultIo};
use conflux_engine::{Config, Error};

fn fault_config() -> (Config, conflux_engine::io::fault::FaultHandle) {
    let (io, handle) = FaultIo::new(base_io());
    (Config { io: Arc::new(io), ..small_config() }, handle)
}

fn poisoning_fault(fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (config, faults) = fault_config();
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let mut s = open(dir.path(), config);
        rt.block_on(append_sync(&mut s, (0..50).map(test_entry).collect())).unwrap();
        faults.inject(fault.clone(), ".seg", 0);
        // These appends share the failing batch or come after it: none may report success.
        for i in 50..60 {
            match append_tracked(&mut s, vec![test_entry(i)], &acked) {
                Ok(()) => {}
                Err(Error::Poisoned(_)) => break,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        // Wait for the writer to finish what was queued.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while acked.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(faults.fired(), 1, "{fault:?} fired");
        let results = acked.lock().unwrap().clone();
        assert!(!results.is_empty(), "callbacks ran");
        assert!(
            results.iter().all(|(_, ok)| !ok),
            "{fault:?}: a callback reported success after the failure: {results:?}"
        );
        // Poisoned: every later write fails, with the cause in the message.
        match append_tracked(&mut s, vec![test_entry(60)], &acked) {
            Err(Error::Poisoned(reason)) => assert!(reason.contains(".seg"), "reason names the file: {reason}"),
            other => panic!("expected poisoned, got {other:?}"),
        }
        let vote = openraft::impls::Vote::new(3, 1);
        let r = rt.block_on(openraft::storage::RaftLogStorage::save_vote(&mut s, &vote));
        assert!(r.is_err(), "save_vote on a poisoned store must fail");
        // The node raises NOSPACE for a full disk only.
        assert_eq!(s.reader().poisoned_by_full_disk(), fault == Fault::NoSpace, "{fault:?}");
    }
    // Reopen on a healthy disk: everything acknowledged is there.
    let s = open(dir.path(), small_config());
    check_entries(&s, 0, 50);
    let end = s.log_state().last_log_id.unwrap().index + 1;
    assert!(end >= 50);
    check_entries(&s, 0, end);
}

#[test]
fn failing_write_poisons_and_loses_nothing_acknowledged() {
    poisoning_fault(Fault::WriteError);
}

#[test]
fn failing_fdatasync_poisons_and_loses_nothing_acknowledged() {
    poisoning_fault(Fault::SyncError);
}

#[test]
fn enospc_poisons_and_loses_nothing_acknowledged() {
    poisoning_fault(Fault::NoSpace);
}

#[test]
fn short_writes_are_completed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (config, faults) = fault_config();
    {
        let mut s = open(dir.path(), config);
        for k in 0..5 {
            faults.inject(Fault::ShortWrite { max: 37 + k * 11 }, ".seg", 0);
            let from = k as u64 * 20;
            rt.block_on(append_sync(&mut s, (from..from + 20).map(test_entry).collect())).unwrap();
        }
        assert_eq!(faults.fired(), 5);
        check_entries(&s, 0, 100);
    }
    let s = open(dir.path(), small_config());
    check_entries(&s, 0, 100);
}

#[test]
fn failing_meta_sync_fails_save_vote() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (config, faults) = fault_config();
    let mut s = open(dir.path(), config);
    let v1 = openraft::impls::Vote::new(1, 1);
    rt.block_on(openraft::storage::RaftLogStorage::save_vote(&mut s, &v1)).unwrap();
    faults.inject(Fault::SyncError, "meta", 0);
    let v2 = openraft::impls::Vote::new(2, 1);
    assert!(rt.block_on(openraft::storage::RaftLogStorage::save_vote(&mut s, &v2)).is_err());
    drop(s);
    let mut s = open(dir.path(), small_config());
    let got = rt.block_on(openraft::RaftLogReader::read_vote(&mut s)).unwrap();
    assert!(got == Some(v1) || got == Some(v2), "vote is one that was written: {got:?}");
}
