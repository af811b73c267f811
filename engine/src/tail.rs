//! The in-memory tail: recent entries, decoded, for readers. Every entry that is not yet durable
//! is here (so `append` makes entries readable at once); durable ones stay while they fit in the
//! configured budget, so followers catching up and the state machine read from memory.

use std::collections::VecDeque;

#[derive(Debug)]
struct Cached<E> {
    entry: E,
    /// Framed size on disk, for the byte budget.
    size: u32,
    /// Checksum chain value the record was written with (needed to truncate in front of it).
    prev_crc: u32,
    /// The record's own checksum (needed to continue a segment after it).
    crc: u32,
}

/// A contiguous run of entries `[first, first + len)`.
#[derive(Debug)]
pub(crate) struct Tail<E> {
    first: u64,
    entries: VecDeque<Cached<E>>,
    bytes: usize,
}

impl<E: Clone> Tail<E> {
    /// An empty tail whose next entry is `next`.
    pub fn new(next: u64) -> Self {
        Tail { first: next, entries: VecDeque::new(), bytes: 0 }
    }

    /// Index of the first cached entry.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// One past the last index of the log.
    pub fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Append the entry at index `end()`.
    pub fn push(&mut self, entry: E, size: u32, prev_crc: u32, crc: u32) {
        self.bytes += size as usize;
        self.entries.push_back(Cached { entry, size, prev_crc, crc });
    }

    /// Clones of the cached entries in `[lo, hi)`.
    #[cfg(test)]
    pub fn range(&self, lo: u64, hi: u64) -> Vec<E> {
        let lo = lo.max(self.first);
        let hi = hi.min(self.end());
        if lo >= hi {
            return Vec::new();
        }
        let a = (lo - self.first) as usize;
        let b = (hi - self.first) as usize;
        self.entries.range(a..b).map(|c| c.entry.clone()).collect()
    }

    /// Clones of the cached entries in `[lo, hi)` with their framed sizes, stopping once `budget`
    /// bytes are taken (at least one entry is taken when there is one).
    pub fn range_limited(&self, lo: u64, hi: u64, budget: usize) -> Vec<(E, u32)> {
        let lo = lo.max(self.first);
        let hi = hi.min(self.end());
        let mut out = Vec::new();
        let mut used = 0usize;
        for i in lo..hi {
            if used >= budget && !out.is_empty() {
                break;
            }
            let c = &self.entries[(i - self.first) as usize];
            used += c.size as usize;
            out.push((c.entry.clone(), c.size));
        }
        out
    }

    /// The chain value entry `index` was written with, if it is cached.
    pub fn prev_crc(&self, index: u64) -> Option<u32> {
        if index < self.first {
            return None;
        }
        self.entries.get((index - self.first) as usize).map(|c| c.prev_crc)
    }

    /// The framed size and checksum of entry `index`'s record, if it is cached.
    pub fn framed_size_and_crc(&self, index: u64) -> Option<(u32, u32)> {
        if index < self.first {
            return None;
        }
        self.entries.get((index - self.first) as usize).map(|c| (c.size, c.crc))
    }

    /// Drop entries `>= index`.
    pub fn truncate_from(&mut self, index: u64) {
        if index <= self.first {
            self.entries.clear();
            self.bytes = 0;
            self.first = index;
            return;
        }
        let keep = (index - self.first) as usize;
        while self.entries.len() > keep {
            let c = self.entries.pop_back().expect("non-empty");
            self.bytes -= c.size as usize;
        }
    }

    /// Drop entries `<= index`; when that empties the tail past its end, the log continues at
    /// `index + 1`.
    pub fn purge_upto(&mut self, index: u64) {
        while self.first <= index {
            match self.entries.pop_front() {
                Some(c) => {
                    self.bytes -= c.size as usize;
                    self.first += 1;
                }
                None => {
                    self.first = index + 1;
                    break;
                }
            }
        }
    }

    /// Evict durable entries (index `< durable_end`) from the front while over `budget` bytes.
    pub fn evict(&mut self, durable_end: u64, budget: usize) {
        while self.bytes > budget && self.first < durable_end {
            match self.entries.pop_front() {
                Some(c) => {
                    self.bytes -= c.size as usize;
                    self.first += 1;
                }
                None => break,
            }
        }
    }

    /// Restart an empty log at `next` (after everything was truncated or purged).
    pub fn reset(&mut self, next: u64) {
        self.entries.clear();
        self.bytes = 0;
        self.first = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_range_truncate_purge_evict() {
        let mut t: Tail<u64> = Tail::new(5);
        for i in 5..15 {
            t.push(i, 100, i as u32, i as u32 + 1);
        }
        assert_eq!(t.range(0, 100), (5..15).collect::<Vec<_>>());
        assert_eq!(t.range(7, 9), vec![7, 8]);
        assert_eq!(t.prev_crc(9), Some(9));
        t.truncate_from(12);
        assert_eq!(t.end(), 12);
        t.purge_upto(6);
        assert_eq!(t.first(), 7);
        t.evict(9, 250);
        assert_eq!(t.first(), 9, "only durable entries are evicted");
        t.evict(9, 0);
        assert_eq!(t.first(), 9);
        t.purge_upto(20);
        assert_eq!((t.first(), t.end()), (21, 21));
    }
}
