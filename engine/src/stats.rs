//! Counters the engine keeps for the node's `/metrics`: lock-free, cheap to update.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the fsync latency buckets: etcd's `etcd_disk_wal_fsync_duration_seconds`
/// buckets (0.001 × 2^n, n = 0..13), so dashboards built for etcd read ours.
pub const FSYNC_BUCKETS: [f64; 14] =
    [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/// Engine statistics.
#[derive(Debug, Default)]
pub struct Stats {
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    fsync_buckets: [AtomicU64; FSYNC_BUCKETS.len()],
    batches: AtomicU64,
    batched_appends: AtomicU64,
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
    /// Completions (appends, meta writes, barriers) completed by them.
    pub batched_appends: u64,
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
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        self.vectored_writes.fetch_add(writes, Ordering::Relaxed);
    }

    pub(crate) fn record_append(&self, entries: u64) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.entries.fetch_add(entries, Ordering::Relaxed);
    }

    /// Copy the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut cum = 0;
        let fsync_cumulative = self
            .fsync_buckets
            .iter()
            .map(|b| {
                cum += b.load(Ordering::Relaxed);
                cum
            })
            .collect();
        StatsSnapshot {
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            fsync_seconds: self.fsync_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            fsync_cumulative,
            batches: self.batches.load(Ordering::Relaxed),
            batched_appends: self.batched_appends.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            vectored_writes: self.vectored_writes.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
        }
    }
}
