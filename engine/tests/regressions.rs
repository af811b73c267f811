//! Regression tests, each named after the bug it caught (found in review of the first engine).

mod common;

use common::*;
use conflux_engine::Error;
use openraft::storage::RaftLogStorage;

fn same_size(term: u64, index: u64) -> Entry {
    entry(term, index, vec![(index as u8).wrapping_add(term as u8); 100])
}

/// Truncation zeroes only the header at the cut; re-appending records of the same size left an
/// intact old record right at the new end, whose own successor chained to it, and open refused
/// the log as damaged.
#[test]
fn truncate_then_reappend_same_size_reopens() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), small_config());
        rt.block_on(append_sync(&mut s, (0..10).map(|i| same_size(1, i)).collect())).unwrap();
        rt.block_on(s.truncate_after(Some(log_id(1, 5)))).unwrap();
        rt.block_on(append_sync(&mut s, vec![same_size(2, 6)])).unwrap();
    }
    let s = open(dir.path(), small_config());
    let got = s.read(0..100).unwrap();
    assert_eq!(got.len(), 7, "entries 0..=6 after truncate + re-append");
    assert_eq!(got[6].log_id.leader_id.term, 2);
    drop(s);
    let r = conflux_engine::tools::verify(&conflux_engine::io::StdIo, dir.path()).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// When open dropped a newest segment with a torn header, the store was left with no active
/// segment and a next-index of 0: a purge then deleted the remaining newest segment whole, and
/// truncation skipped zeroing.
#[test]
fn purge_and_truncate_after_open_dropped_a_torn_newest_segment() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let n;
    {
        let mut s = open(dir.path(), small_config());
        rt.block_on(append_sync(&mut s, (0..300).map(test_entry).collect())).unwrap();
        n = 300;
    }
    // A crash right after a roll: the newest segment exists, its header never reached the disk.
    let fake = dir.path().join("log").join(format!("{n:020}.seg"));
    std::fs::write(&fake, vec![0u8; 64 << 10]).unwrap();
    // verify judges it as open does: a torn newest segment is repaired, not corruption.
    let r = conflux_engine::tools::verify(&conflux_engine::io::StdIo, dir.path()).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert!(r.notes.iter().any(|n| n.contains("open removes it")), "{:?}", r.notes);
    {
        let mut s = open(dir.path(), small_config());
        assert!(!fake.exists(), "the torn newest segment is removed");
        check_entries(&s, 0, n);
        rt.block_on(s.purge(log_id(1, 10))).unwrap();
        check_entries(&s, 11, n);
        rt.block_on(s.truncate_after(Some(log_id(1, n - 6)))).unwrap();
        check_entries(&s, 11, n - 5);
    }
    let s = open(dir.path(), small_config());
    check_entries(&s, 11, n - 5);
    assert_eq!(s.log_state().last_log_id.map(|l| l.index), Some(n - 6), "truncation is durable");
}

/// A flipped bit in the stored checksum of an acknowledged record in the last segment made its
/// successor look unchained, and the records after it were dropped as a "torn tail".
#[test]
fn flipped_checksum_field_in_the_last_segment_is_damage_not_a_torn_tail() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), small_config());
        rt.block_on(append_sync(&mut s, (0..20).map(test_entry).collect())).unwrap();
    }
    let seg = segments(dir.path()).last().unwrap().clone();
    let (off, _) = record_offsets(&seg)[2];
    let mut b = std::fs::read(&seg).unwrap();
    b[off as usize + 5] ^= 0x40; // the crc field
    std::fs::write(&seg, &b).unwrap();
    match Store::open(dir.path(), small_config()) {
        Err(Error::Corruption { file, offset, .. }) => assert_eq!((file, offset), (seg, off)),
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(s) => panic!("opened and dropped acknowledged entries: log ends at {:?}", s.log_state().last_log_id),
    }
}

/// A damaged header on the newest segment deleted the segment even when it held synced records.
#[test]
fn damaged_header_of_a_newest_segment_with_records_is_refused() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), small_config());
        rt.block_on(append_sync(&mut s, (0..300).map(test_entry).collect())).unwrap();
    }
    let seg = segments(dir.path()).last().unwrap().clone();
    let mut b = std::fs::read(&seg).unwrap();
    b[20] ^= 1; // inside first_index: the header checksum no longer matches
    std::fs::write(&seg, &b).unwrap();
    let r = conflux_engine::tools::verify(&conflux_engine::io::StdIo, dir.path()).unwrap();
    assert!(r.problems.iter().any(|p| p.file == seg), "verify reports what open refuses: {:?}", r.problems);
    match Store::open(dir.path(), small_config()) {
        Err(Error::Corruption { file, offset: 0, .. }) => assert_eq!(file, seg),
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("deleted a segment holding acknowledged records"),
    }
}

/// An append of no entries reported "durable" at once, ahead of writes still queued.
#[test]
fn empty_append_completes_after_what_was_queued_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), small_config());
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (o1, o2) = (order.clone(), order.clone());
    s.append_with(
        (0..50).map(test_entry).collect::<Vec<_>>(),
        Box::new(move |r| o1.lock().unwrap().push(("data", r.is_ok()))),
    )
    .unwrap();
    s.append_with(Vec::new(), Box::new(move |r| o2.lock().unwrap().push(("empty", r.is_ok())))).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while order.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "callbacks did not run");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(*order.lock().unwrap(), vec![("data", true), ("empty", true)]);
}

/// save_committed is kept in memory and persisted with the next meta write; a clean close
/// persists it too.
#[test]
fn committed_survives_a_clean_close() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), small_config());
        rt.block_on(append_sync(&mut s, (0..10).map(test_entry).collect())).unwrap();
        rt.block_on(s.save_committed(Some(log_id(1, 7)))).unwrap();
    }
    let mut s = open(dir.path(), small_config());
    assert_eq!(rt.block_on(s.read_committed()).unwrap(), Some(log_id(1, 7)));
}

/// A bit flipped in the last record of a cleanly closed store was cut as a torn tail, though
/// meta recorded that entry as committed (so synced): the node then stopped with openraft's
/// "Failed to get log entries" and no file named (found by `tests/bit_flips.rs`). Open now
/// refuses, naming the file and the damaged record; a tail past the committed index is still a
/// torn tail.
#[test]
fn damaged_tail_below_the_committed_index_is_damage_not_a_torn_tail() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), small_config());
        rt.block_on(append_sync(&mut s, (0..20).map(test_entry).collect())).unwrap();
        rt.block_on(s.save_committed(Some(log_id(1, 19)))).unwrap();
    }
    let seg = segments(dir.path()).last().unwrap().clone();
    let pristine = std::fs::read(&seg).unwrap();
    let (off, _) = *record_offsets(&seg).last().unwrap();
    let mut b = pristine.clone();
    b[off as usize + 30] ^= 2; // the payload of entry 19
    std::fs::write(&seg, &b).unwrap();
    match Store::open(dir.path(), small_config()) {
        Err(e @ Error::Corruption { .. }) => {
            let Error::Corruption { file, offset, reason } = &e else { unreachable!() };
            assert_eq!((file, *offset), (&seg, off), "{e}");
            assert!(
                matches!(reason, conflux_engine::CorruptionKind::CommittedMissing { committed: 19, found: 19 }),
                "{e}"
            );
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(s) => panic!("cut a committed entry: log ends at {:?}", s.log_state().last_log_id),
    }
    assert_eq!(std::fs::read(&seg).unwrap(), b, "a refused open changes nothing");

    // Committed only up to 17: entries 18 and 19 were maybe never acknowledged, a torn tail.
    std::fs::write(&seg, &pristine).unwrap();
    {
        let mut s = open(dir.path(), small_config());
        rt.block_on(s.save_committed(Some(log_id(1, 17)))).unwrap();
    }
    std::fs::write(&seg, &b).unwrap();
    let s = open(dir.path(), small_config());
    assert_eq!(s.log_state().last_log_id.map(|l| l.index), Some(18), "the torn tail is cut back");
}

/// A flipped bit in a used slot of a sealed index passed open's checks (slots still increasing,
/// last record still proven), and the first read of that entry failed with a corruption error
/// though the segment was intact: a damaged derived file stopped the node (found by
/// `tests/bit_flips.rs`). The read now finds the record in the segment and repairs the slot.
#[test]
fn a_damaged_used_slot_of_a_sealed_index_is_repaired_at_read() {
    let rt = rt();
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    {
        let mut s = open(&src, small_config());
        rt.block_on(append_sync(&mut s, (0..300).map(test_entry).collect())).unwrap();
    }
    let idx = segments(&src)[0].with_extension("idx");
    assert_eq!(std::fs::read(&idx).unwrap()[12], 1, "the first segment's index is sealed");
    for bit in [0u8, 4] {
        let dir = base.path().join(format!("bit-{bit}"));
        std::fs::create_dir_all(dir.join("log")).unwrap();
        for f in ["meta"].iter().map(std::path::PathBuf::from).chain(
            std::fs::read_dir(src.join("log"))
                .unwrap()
                .map(|e| std::path::Path::new("log").join(e.unwrap().file_name())),
        ) {
            std::fs::copy(src.join(&f), dir.join(&f)).unwrap();
        }
        let p = dir.join("log").join(idx.file_name().unwrap());
        let mut b = std::fs::read(&p).unwrap();
        b[64 + 8 * 3] ^= 1 << bit; // slot of entry 3
        std::fs::write(&p, &b).unwrap();
        let s = open(&dir, small_config());
        check_entries(&s, 0, 300);
        check_entries(&s, 3, 4);
    }
}
