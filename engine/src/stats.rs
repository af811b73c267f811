//! Counters the engine keeps for the node's `/metrics`: lock-free, cheap to update.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the fsync latency buckets: etcd's `etcd_disk_wal_fsync_duration_seconds`
/// buckets (0.001 × 2^n, n = 0..13), so dashboards built for etcd read ours.
pub const FSYNC_BUCKETS: [f64; 14] =
    [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/// Upper bounds of the group-commit batch size buckets (completions per batch): powers of two
/// up to 1024. Larger batches count only in the implicit `+Inf` bucket (= [`StatsSnapshot::batches`]).
pub const BATCH_BUCKETS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Engine statistics.
#[derive(Debug, Default)]
pub struct Stats {
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    fsync_buckets: [AtomicU64; FSYNC_BUCKETS.len()],
    batches: AtomicU64,
    batched_appends: AtomicU64,
    batch_buckets: [AtomicU64; BATCH_BUCKETS.len()],
    bytes_written: AtomicU64,
    vectored_writes: AtomicU64,
    appends: AtomicU64,
    entries: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    /// fdatasync calls on log and meta files.
    pub fsyncs: u64,
    /// Total time spent in them, seconds.
    pub fsync_seconds: f64,
    /// Cumulative counts per bucket of [`FSYNC_BUCKETS`] (Prometheus `le` semantics).
    pub fsync_cumulative: Vec<u64>,
    /// Group commits completed.
    pub batches: u64,
    /// Completions (appends, meta writes, barriers) completed by them: the sum of the batch size
    /// histogram.
    pub batched_appends: u64,
    /// Cumulative counts of batches per bucket of [`BATCH_BUCKETS`] (Prometheus `le` semantics);
    /// the `+Inf` count is [`batches`](Self::batches).
    pub batch_cumulative: Vec<u64>,
    /// Bytes written to segment and meta files.
    pub bytes_written: u64,
    /// Vectored write calls.
    pub vectored_writes: u64,
    /// `append` calls.
    pub appends: u64,
    /// Entries appended.
    pub entries: u64,
}

impl Stats {
    pub(crate) fn record_fsync(&self, d: Duration) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_nanos.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        let s = d.as_secs_f64();
        if let Some(i) = FSYNC_BUCKETS.iter().position(|&b| s <= b) {
            self.fsync_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_batch(&self, completions: u64, bytes: u64, writes: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_appends.fetch_add(completions, Ordering::Relaxed);
        if let Some(i) = BATCH_BUCKETS.iter().position(|&b| completions <= b) {
            self.batch_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        self.vectored_writes.fetch_add(writes, Ordering::Relaxed);
    }

    pub(crate) fn record_append(&self, entries: u64) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.entries.fetch_add(entries, Ordering::Relaxed);
    }

    /// Copy the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            fsync_seconds: self.fsync_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            fsync_cumulative: cumulative(&self.fsync_buckets),
            batches: self.batches.load(Ordering::Relaxed),
            batched_appends: self.batched_appends.load(Ordering::Relaxed),
            batch_cumulative: cumulative(&self.batch_buckets),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            vectored_writes: self.vectored_writes.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
        }
    }
}

/// Running sums of per-bucket counts, as Prometheus histograms want them.
fn cumulative(buckets: &[AtomicU64]) -> Vec<u64> {
    let mut cum = 0;
    buckets
        .iter()
        .map(|b| {
            cum += b.load(Ordering::Relaxed);
            cum
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_land_in_cumulative_buckets() {
        let stats = Stats::default();
        for completions in [1, 1, 2, 3, 64, 65, 5000] {
            stats.record_batch(completions, 0, 1);
        }
        let snap = stats.snapshot();
        assert_eq!(snap.batches, 7);
        assert_eq!(snap.batched_appends, 1 + 1 + 2 + 3 + 64 + 65 + 5000);
        assert_eq!(snap.batch_cumulative.len(), BATCH_BUCKETS.len());
        // le=1: two; le=2: three; le=4: four (3 rounds up); le=64: five; le=128: six; 5000 only in +Inf.
        let at = |le: u64| snap.batch_cumulative[BATCH_BUCKETS.iter().position(|&b| b == le).unwrap()];
        assert_eq!(at(1), 2);
        assert_eq!(at(2), 3);
        assert_eq!(at(4), 4);
        assert_eq!(at(32), 4);
        assert_eq!(at(64), 5);
        assert_eq!(at(128), 6);
        assert_eq!(at(1024), 6);
    }

    #[test]
    fn fsync_buckets_are_cumulative() {
        let stats = Stats::default();
        stats.record_fsync(Duration::from_micros(500));
        stats.record_fsync(Duration::from_millis(3));
        stats.record_fsync(Duration::from_secs(20));
        let snap = stats.snapshot();
        assert_eq!(snap.fsyncs, 3);
        assert_eq!(snap.fsync_cumulative[0], 1);
        assert_eq!(snap.fsync_cumulative[2], 2);
        assert_eq!(*snap.fsync_cumulative.last().unwrap(), 2);
    }
}
