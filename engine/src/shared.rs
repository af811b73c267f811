//! State shared by the store and every reader handle.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use openraft::RaftTypeConfig;
use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use parking_lot::{Mutex, RwLock};

use crate::codec::RaftCodec;
use crate::config::Config;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::record;
use crate::group_commit::Poison;
use crate::io::IoFile;
use crate::segment::Segment;
use crate::stats::Stats;
use crate::tail::Tail;

/// Vote, committed and purged log ids, as last written (or, for committed, last saved).
pub(crate) struct MetaState<C: RaftTypeConfig> {
    pub vote: Option<VoteOf<C>>,
    pub committed: Option<LogIdOf<C>>,
    pub purged: Option<LogIdOf<C>>,
}

pub(crate) struct Shared<C: RaftTypeConfig, K> {
    pub dir: PathBuf,
    pub log_dir: PathBuf,
    pub config: Config,
    pub segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    pub tail: RwLock<Tail<C::Entry>>,
    pub meta: Mutex<MetaState<C>>,
    pub poison: Arc<Poison>,
    /// One past the highest index known durable.
    pub durable_end: Arc<AtomicU64>,
    pub stats: Arc<Stats>,
    /// Bumped before and after every truncation: a read that overlaps one is redone, so a read
    /// is atomic (never a mix of old and new entries, never an error from a removed segment).
    pub truncations: AtomicU64,
    /// Held for the store's lifetime: the data directory's advisory lock.
    pub _lock: Arc<dyn IoFile>,
    pub _codec: PhantomData<fn() -> K>,
}

impl<C: RaftTypeConfig, K: RaftCodec<C>> Shared<C, K>
where
    C::Entry: Clone,
{
    /// Entries in `[lo, hi)` that the log holds (purged and future indexes are skipped), from the
    /// in-memory tail where cached and from the segments otherwise.
    pub fn read_range(&self, lo: u64, hi: u64) -> Result<Vec<C::Entry>> {
        self.read_range_limited(lo, hi, usize::MAX)
    }

    /// Like [`Shared::read_range`], but stops once about `budget` bytes of records are read
    /// (always at least one entry when the range holds one): replication and streaming read in
    /// bounded batches instead of loading a whole range.
    pub fn read_range_limited(&self, lo: u64, hi: u64, budget: usize) -> Result<Vec<C::Entry>> {
        loop {
            let epoch = self.truncations.load(std::sync::atomic::Ordering::Acquire);
            let r = self.read_range_once(lo, hi, budget);
            if self.truncations.load(std::sync::atomic::Ordering::Acquire) == epoch {
                return r;
            }
        }
    }

    fn read_range_once(&self, lo: u64, hi: u64, budget: usize) -> Result<Vec<C::Entry>> {
        let purged_end = self.meta.lock().purged.as_ref().map(|p| p.index + 1).unwrap_or(0);
        let lo = lo.max(purged_end);
        let (lo, cache_first, hi, cached) = {
            let tail = self.tail.read();
            // The log starts at its oldest segment (or at the tail, before anything is on disk).
            let start = self.segments.read().keys().next().copied().unwrap_or(u64::MAX).min(tail.first());
            let lo = lo.max(start);
            let hi = hi.min(tail.end());
            if lo >= hi {
                return Ok(Vec::new());
            }
            let first = tail.first().max(lo);
            (lo, first, hi, tail.range_limited(first, hi, budget))
        };
        let disk_hi = cache_first.min(hi);
        let mut out = Vec::with_capacity(((hi - lo) as usize).min(4096));
        let mut used = 0;
        if lo < disk_hi {
            let (n, stopped) = self.read_disk(lo, disk_hi, &mut out, budget)?;
            used = n;
            if stopped {
                return Ok(out);
            }
        }
        for (e, size) in cached {
            if used >= budget && !out.is_empty() {
                break;
            }
            used += size as usize;
            out.push(e);
        }
        Ok(out)
    }

    /// Read `[lo, hi)` from the segments; returns the record bytes read and whether it stopped
    /// early at `budget`.
    fn read_disk(&self, lo: u64, hi: u64, out: &mut Vec<C::Entry>, budget: usize) -> Result<(usize, bool)> {
        let mut used = 0usize;
        let segs: Vec<Arc<Segment>> = {
            let map = self.segments.read();
            let start = map.range(..=lo).next_back().map(|(k, _)| *k).unwrap_or(lo);
            map.range(start..hi).map(|(_, s)| s.clone()).collect()
        };
        let mut i = lo;
        let mut si = 0;
        while i < hi {
            while si + 1 < segs.len() && segs[si + 1].first_index <= i {
                si += 1;
            }
            let Some(seg) = segs.get(si).filter(|s| s.first_index <= i) else {
                // Purged concurrently: nothing below the new purge point is returned.
                let purged_end = self.meta.lock().purged.as_ref().map(|p| p.index + 1).unwrap_or(0);
                if i < purged_end {
                    i = purged_end;
                    out.clear();
                    used = 0;
                    continue;
                }
                return Err(Error::corruption(
                    &self.log_dir,
                    0,
                    CorruptionKind::MissingEntries { expected: i, found: i },
                ));
            };
            let payload = seg.read(i)?;
            let entry = K::decode_entry(payload).map_err(|e| {
                Error::corruption(
                    seg.path.as_ref(),
                    seg.index.get(i - seg.first_index),
                    CorruptionKind::Undecodable(e.0),
                )
            })?;
            if entry.index() != i {
                return Err(Error::corruption(
                    seg.path.as_ref(),
                    seg.index.get(i - seg.first_index),
                    CorruptionKind::IndexMismatch { expected: i, found: entry.index() },
                ));
            }
            out.push(entry);
            used += record::framed_len(payload.len()) as usize;
            i += 1;
            if used >= budget && i < hi {
                return Ok((used, true));
            }
        }
        Ok((used, false))
    }
}
