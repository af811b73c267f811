//! Watch events: what apply reports for every key it changes, and the same events rebuilt from
//! the retained versions for a watcher that asks for history (or fell behind the live feed).

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_epoch as epoch;

use super::error::MvccError;
use super::request::KeyValue;
use super::store::{RangeEnd, Store, VNode};

/// What happened to a key (etcd's `mvccpb.Event.EventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated.
    Put,
    /// Deleted.
    Delete,
}

/// One change of one key (etcd's `mvccpb.Event`). A delete's `kv` holds the key and the
/// deleting revision only, as etcd's does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key-value after the change.
    pub kv: KeyValue,
    /// The key-value before it, if the key existed.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision as u64
    }

    pub(crate) fn delete(key: Bytes, rev: u64, prev: Option<KeyValue>) -> Event {
        Event {
            kind: EventKind::Delete,
            kv: KeyValue { key, mod_revision: rev as i64, ..Default::default() },
            prev_kv: prev,
        }
    }
}

/// A watched key range: one key, or `[key, range_end)` with etcd's `\0` meaning "no end".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    key: Bytes,
    end: RangeEnd,
}

impl KeyRange {
    /// The range etcd's `key` and `range_end` describe.
    pub fn new(key: Bytes, range_end: &Bytes) -> KeyRange {
        KeyRange { end: RangeEnd::from_request(range_end), key }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.end.contains(&self.key, key)
    }
}

fn node_kv(key: &Bytes, n: &VNode) -> KeyValue {
    n.v.to_kv(key, n.rev, true)
}

impl Store {
    /// Every change to a key in `range` at revisions `from..=to`, ordered by revision (and by key
    /// within a revision), rebuilt from the retained versions, with previous key-values where
    /// they are retained.
    ///
    /// # Errors
    /// [`MvccError::Compacted`] when `from` is below the compacted revision (before or during the
    /// scan: physical compaction may have removed versions it needed).
    pub fn history(&self, range: &KeyRange, from: u64, to: u64) -> Result<Vec<Event>, MvccError> {
        self.recheck(from)?;
        let mut events = Vec::new();
        if from > to {
            return Ok(events);
        }
        let guard = &epoch::pin();
        let mut cur = self.map.lower_bound(Bound::Included(range.key.as_ref()), guard);
        let mut chain: Vec<Arc<VNode>> = Vec::new();
        while let Some(e) = cur {
            if range.end.is_past(&range.key, e.key()) {
                break;
            }
            let key = Bytes::copy_from_slice(e.key());
            // The chain from the newest version at or below `to` down to the first below `from`
            // (that one only gives the previous key-value of the oldest change).
            chain.clear();
            let mut node = e.value().at(to);
            while let Some(n) = node {
                let below = n.rev < from;
                node = n.next.load_full();
                chain.push(n);
                if below {
                    break;
                }
            }
            for (i, n) in chain.iter().enumerate() {
                if n.rev < from {
                    break;
                }
                let prev = chain.get(i + 1).filter(|p| !p.v.tombstone).map(|p| node_kv(&key, p));
                events.push(if n.v.tombstone {
                    Event::delete(key.clone(), n.rev, prev)
                } else {
                    Event { kind: EventKind::Put, kv: node_kv(&key, n), prev_kv: prev }
                });
            }
            cur = e.next();
        }
        self.recheck(from)?;
        events.sort_by(|a, b| a.kv.mod_revision.cmp(&b.kv.mod_revision).then_with(|| a.kv.key.cmp(&b.kv.key)));
        Ok(events)
    }
}
