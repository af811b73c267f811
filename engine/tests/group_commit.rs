//! Group commit as the writer does it: one fdatasync per batch, however the batch arrives.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use conflux_engine::Config;

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A lone append larger than `append_chunk_bytes` reaches the writer in many chunks; the writer
/// waits for the rest instead of syncing each one, so the append costs one fdatasync.
#[test]
fn a_chunked_lone_append_costs_one_fdatasync() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let config = Config { segment_bytes: 4 << 20, append_chunk_bytes: 4 << 10, ..small_config() };
    let mut s = open(dir.path(), config.clone());
    // Open the first segment (a roll syncs the directory): not what is measured.
    rt.block_on(append_sync(&mut s, vec![test_entry(0)])).unwrap();
    let before = s.stats();
    // ~200 KiB of records in 4 KiB chunks: about fifty chunks.
    rt.block_on(append_sync(&mut s, (1..400).map(test_entry).collect())).unwrap();
    let after = s.stats();
    assert_eq!(after.fsyncs - before.fsyncs, 1, "one fdatasync for one append: {before:?} -> {after:?}");
    assert!(after.vectored_writes - before.vectored_writes >= 2, "the append was written in pieces: {after:?}");
    check_entries(&s, 0, 400);
    drop(s);
    let s = open(dir.path(), config);
    check_entries(&s, 0, 400);
}

/// Appends submitted back to back without waiting (as openraft does) share fdatasyncs, and every
/// callback runs once, in order.
#[test]
fn appends_in_flight_share_fdatasyncs_and_complete_in_order() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), Config { segment_bytes: 4 << 20, ..small_config() });
    rt.block_on(append_sync(&mut s, vec![test_entry(0)])).unwrap();
    let before = s.stats();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    for i in 1..=64u64 {
        let (order, done) = (order.clone(), done.clone());
        s.append_with(
            vec![test_entry(i)],
            Box::new(move |r| {
                r.expect("durable");
                order.lock().unwrap().push(i);
                done.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
    }
    wait_for("64 callbacks", || done.load(Ordering::SeqCst) == 64);
    let after = s.stats();
    assert_eq!(*order.lock().unwrap(), (1..=64).collect::<Vec<_>>(), "callbacks in append order");
    assert!(
        after.fsyncs - before.fsyncs < 64,
        "group commit shared fdatasyncs: {} for 64 appends",
        after.fsyncs - before.fsyncs
    );
    check_entries(&s, 0, 65);
}
