//! Reads: bounded batches for replication, streaming, and reads spanning the tail cache and the
//! segments, through reader handles taken before the writes.

mod common;

use common::*;
use futures_util::StreamExt;
use openraft::RaftLogReader;
use openraft::storage::RaftLogStorage;

#[test]
fn limited_reads_are_bounded_and_streams_are_complete() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let config = conflux_engine::Config { read_batch_bytes: 8 << 10, tail_cache_bytes: 16 << 10, ..small_config() };
    let mut s = open(dir.path(), config);
    let mut reader = rt.block_on(s.get_log_reader());
    rt.block_on(append_sync(&mut s, (0..500).map(test_entry).collect())).unwrap();

    // Bounded: at least one entry, far fewer than the range, contiguous from `start`.
    for start in [0u64, 100, 480, 499] {
        let got = rt.block_on(reader.limited_get_log_entries(start, 500)).unwrap();
        assert!(!got.is_empty());
        assert!(got.len() < 60 || start >= 480, "start {start}: {} entries for an 8 KiB budget", got.len());
        for (k, e) in got.iter().enumerate() {
            assert_eq!(e.log_id.index, start + k as u64);
        }
    }
    // The stream yields the whole range, in order, across the disk/tail boundary.
    let all: Vec<_> = rt.block_on(async { reader.entries_stream(0..500).await.collect::<Vec<_>>().await });
    assert_eq!(all.len(), 500);
    for (k, e) in all.into_iter().enumerate() {
        assert_eq!(e.unwrap().log_id.index, k as u64);
    }
    // Reads past the end or below the start are empty, not errors.
    assert!(rt.block_on(reader.try_get_log_entries(500..600)).unwrap().is_empty());
    check_entries(&s, 0, 500);
}

/// openraft polled `entries_stream` again after it ended; the unfused stream panicked (caught by
/// the one-node restart test).
#[test]
fn entries_stream_can_be_polled_after_its_end() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), small_config());
    rt.block_on(append_sync(&mut s, (0..5).map(test_entry).collect())).unwrap();
    let mut reader = rt.block_on(s.get_log_reader());
    rt.block_on(async {
        let mut st = std::pin::pin!(reader.entries_stream(0..5).await);
        for _ in 0..5 {
            assert!(st.next().await.is_some());
        }
        assert!(st.next().await.is_none());
        assert!(st.next().await.is_none(), "still the end, not a panic");
    });
}

/// Readers racing truncations got checksum or missing-segment errors, or a mix of old and new
/// entries (review finding); a read is now redone when a truncation overlaps it.
#[test]
fn reads_racing_truncations_are_atomic() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let config = conflux_engine::Config {
        segment_bytes: 8 << 10,
        max_entry_bytes: 2 << 10,
        tail_cache_bytes: 2 << 10,
        ..small_config()
    };
    let mut s = open(dir.path(), config);
    let reader = s.reader();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (mut r, stop) = (reader.clone(), stop.clone());
            std::thread::spawn(move || {
                let rt = common::rt();
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let got = rt
                        .block_on(r.try_get_log_entries(0..u64::MAX))
                        .expect("a read racing a truncation must not fail");
                    for (k, w) in got.windows(2).enumerate() {
                        assert_eq!(w[1].log_id.index, w[0].log_id.index + 1, "gap at {k}");
                        assert!(
                            w[1].log_id.leader_id.term >= w[0].log_id.leader_id.term,
                            "a mix of truncated and new entries"
                        );
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let mut next = 0u64;
    for term in 1..100u64 {
        let batch: Vec<Entry> = (next..next + 30).map(|i| entry(term, i, payload(i + term, 200))).collect();
        rt.block_on(append_sync(&mut s, batch)).unwrap();
        next += 30;
        let keep = next - 20;
        rt.block_on(s.truncate_after(Some(log_id(term, keep - 1)))).unwrap();
        next = keep;
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(reads > 0);
}
