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
