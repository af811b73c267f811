//! The live feed watchers read: apply appends every batch's events to a bounded ring and
//! announces the new revision; watchers read the ring at their own pace. Apply never waits for
//! a watcher: a watcher whose position fell out of the ring rebuilds its events from the store's
//! retained versions ([`Store::history`]) instead, or learns its revision was compacted.
//!
//! While nobody watches, apply collects no events at all (the ring only records from where it
//! covers; anything older comes from history).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::mvcc::event::KeyRange;
use crate::mvcc::{Event, MvccError, Store};

/// Events kept in the ring by default.
pub const DEFAULT_RING_EVENTS: usize = 65_536;
/// Most revisions one history fetch covers (etcd's catch-up batch), so a watcher far behind
/// catches up in steps of bounded memory.
pub const HISTORY_BATCH_REVISIONS: u64 = 1000;

/// Every event with a revision in `from..` up to the newest applied revision, oldest first.
#[derive(Debug)]
struct Ring {
    from: u64,
    events: VecDeque<Event>,
    capacity: usize,
}

impl Ring {
    fn reset(&mut self, from: u64) {
        self.events.clear();
        self.from = from;
    }

    fn push(&mut self, events: Vec<Event>) {
        self.events.extend(events);
        // Trim whole revisions only, so the ring covers every event of each revision >= from.
        while self.events.len() > self.capacity {
            let Some(old) = self.events.pop_front() else { break };
            self.from = old.revision() + 1;
            while self.events.front().is_some_and(|e| e.revision() < self.from) {
                self.events.pop_front();
            }
        }
    }
}

/// What a watcher got from [`WatchHub::fetch`].
#[derive(Debug)]
pub struct Fetched {
    /// Matching events, by revision.
    pub events: Vec<Event>,
    /// Where the next fetch starts.
    pub next: u64,
    /// Whether they came from history (the watcher was behind the ring).
    pub from_history: bool,
}

/// The feed: a ring of recent events and the published revision.
#[derive(Debug)]
pub struct WatchHub {
    ring: RwLock<Ring>,
    revision: watch::Sender<u64>,
    watchers: AtomicUsize,
}

impl WatchHub {
    /// A hub for a store at `revision`, keeping `capacity` events.
    pub fn new(revision: u64, capacity: usize) -> WatchHub {
        WatchHub {
            ring: RwLock::new(Ring { from: revision + 1, events: VecDeque::new(), capacity: capacity.max(1) }),
            revision: watch::Sender::new(revision),
            watchers: AtomicUsize::new(0),
        }
    }

    /// Whether apply should collect events.
    pub fn active(&self) -> bool {
        self.watchers() > 0
    }

    /// Watchers registered now.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Acquire)
    }

    /// Count a watcher in (apply collects events while any exists); dropping the guard counts it out.
    pub fn register(self: &std::sync::Arc<Self>) -> WatcherGuard {
        self.watchers.fetch_add(1, Ordering::AcqRel);
        WatcherGuard { hub: self.clone() }
    }

    /// Apply, before publishing revision `upto`: the events of the batch (`None` when it
    /// collected none, so the ring starts over after `upto`).
    pub fn record(&self, events: Option<Vec<Event>>, upto: u64) {
        let mut ring = self.ring.write();
        match events {
            Some(e) => ring.push(e),
            None => ring.reset(upto + 1),
        }
    }

    /// A new store (snapshot installed) at `revision`: the ring starts over.
    pub fn reset(&self, revision: u64) {
        self.ring.write().reset(revision + 1);
        self.revision.send_replace(revision);
    }

    /// Apply, after publishing: wake the watchers.
    pub fn announce(&self, revision: u64) {
        self.revision.send_if_modified(|r| {
            let moved = *r != revision;
            *r = revision;
            moved
        });
    }

    /// A receiver of published revisions.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Events for `range` from revision `from` up to the store's published revision (from the
    /// ring), or up to [`HISTORY_BATCH_REVISIONS`] revisions of them (from history: fetch again
    /// from [`Fetched::next`] for the rest).
    ///
    /// # Errors
    /// [`MvccError::Compacted`] when `from` is behind the ring and below the compacted revision.
    pub fn fetch(&self, store: &Store, range: &KeyRange, from: u64) -> Result<Fetched, MvccError> {
        let upto = store.revision();
        if from > upto {
            return Ok(Fetched { events: Vec::new(), next: from, from_history: false });
        }
        {
            let ring = self.ring.read();
            if ring.from <= from {
                let start = ring.events.partition_point(|e| e.revision() < from);
                let events = ring
                    .events
                    .range(start..)
                    .take_while(|e| e.revision() <= upto)
                    .filter(|e| range.contains(&e.kv.key))
                    .cloned()
                    .collect();
                return Ok(Fetched { events, next: upto + 1, from_history: false });
            }
        }
        let upto = upto.min(from + HISTORY_BATCH_REVISIONS - 1);
        let events = store.history(range, from, upto)?;
        Ok(Fetched { events, next: upto + 1, from_history: true })
    }
}

/// Keeps apply collecting events while it lives.
#[derive(Debug)]
pub struct WatcherGuard {
    hub: std::sync::Arc<WatchHub>,
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.hub.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{PutRequest, WriteRequest};
    use bytes::Bytes;
    use std::sync::Arc;

    fn put(store: &Store, hub: &WatchHub, key: &str, collect: bool) {
        let mut ev = Vec::new();
        let req = WriteRequest::Put(PutRequest {
            key: Bytes::from(key.to_string()),
            value: Bytes::from_static(b"v"),
            ..Default::default()
        });
        store.apply_with_events(&req, 128, collect.then_some(&mut ev)).unwrap();
        hub.record(collect.then_some(ev), store.working_revision());
        store.publish();
        hub.announce(store.revision());
    }

    fn revs(f: &Fetched) -> Vec<u64> {
        f.events.iter().map(|e| e.revision()).collect()
    }

    #[test]
    fn ring_serves_caught_up_watchers_and_history_the_rest() {
        let store = Store::new();
        let hub = Arc::new(WatchHub::new(store.revision(), 4));
        put(&store, &hub, "a", false); // rev 2, not collected
        let _w = hub.register();
        for k in ["a", "b", "a", "c", "a", "d"] {
            put(&store, &hub, k, hub.active()); // revs 3..=8
        }
        let all = KeyRange::new(Bytes::from_static(b"a"), &Bytes::from_static(b"\0"));
        let f = hub.fetch(&store, &all, 6).unwrap();
        assert!(!f.from_history, "revisions 5..=8 are in a ring of 4");
        assert_eq!((revs(&f), f.next), (vec![6, 7, 8], 9));
        let f = hub.fetch(&store, &all, 2).unwrap();
        assert!(f.from_history, "revision 2 is older than the ring");
        assert_eq!(revs(&f), vec![2, 3, 4, 5, 6, 7, 8]);
        let only_a = KeyRange::new(Bytes::from_static(b"a"), &Bytes::new());
        let f = hub.fetch(&store, &only_a, 3).unwrap();
        assert_eq!(revs(&f), vec![3, 5, 7]);
        assert_eq!(f.events[1].prev_kv.as_ref().map(|p| p.mod_revision), Some(3), "prev_kv from history");
        assert!(hub.fetch(&store, &all, 9).unwrap().events.is_empty(), "nothing past the newest revision");
    }

    #[test]
    fn history_comes_in_bounded_batches() {
        let store = Store::new();
        let hub = WatchHub::new(store.revision(), 16);
        for _ in 0..HISTORY_BATCH_REVISIONS + 200 {
            put(&store, &hub, "k", false);
        }
        let k = KeyRange::new(Bytes::from_static(b"k"), &Bytes::new());
        let f = hub.fetch(&store, &k, 2).unwrap();
        assert_eq!((f.events.len() as u64, f.next), (HISTORY_BATCH_REVISIONS, 2 + HISTORY_BATCH_REVISIONS));
        let rest = hub.fetch(&store, &k, f.next).unwrap();
        assert_eq!((rest.events.len(), rest.next), (200, store.revision() + 1));
    }

    #[test]
    fn compacted_history_is_refused() {
        let store = Store::new();
        let hub = WatchHub::new(store.revision(), 16);
        for k in ["a", "a", "a"] {
            put(&store, &hub, k, false);
        }
        store.apply(&WriteRequest::Compact(crate::mvcc::CompactionRequest { revision: 3, physical: true })).unwrap();
        store.compact_physically();
        let a = KeyRange::new(Bytes::from_static(b"a"), &Bytes::new());
        assert_eq!(hub.fetch(&store, &a, 2).unwrap_err(), MvccError::Compacted { compacted: 3 });
        assert_eq!(revs(&hub.fetch(&store, &a, 3).unwrap()), vec![3, 4]);
    }
}
