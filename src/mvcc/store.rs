//! The multi-version store: one lock-free ordered map of keys (a crossbeam skiplist, keys
//! inline), each key holding its versions as a chain, newest first. A read seeks the key once and
//! walks its chain to the newest version at or below the revision it reads; a write prepends a
//! version to the chain (an update adds no node to the map).
//!
//! Readers never lock and never wait for apply: they load the published revision `R` and ignore
//! every version above it, so a write in progress (at `R + 1`) is invisible until apply publishes
//! `R + 1` after the whole batch. Compaction publishes the new compacted revision first and cuts
//! chains after; a reader re-checks the compacted revision after reading, so it never returns a
//! state with versions missing.

use std::cmp::Ordering as CmpOrdering;
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use crossbeam_epoch as epoch;
use crossbeam_skiplist::base::SkipList;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::error::MvccError;
use super::lease::LeaseTable;
use super::request::KeyValue;

/// A key as the map stores it.
pub(crate) type KeyBuf = smallvec::SmallVec<[u8; 32]>;

/// Position of a version in the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VKey {
    /// Stored inline up to 32 bytes, so comparing keys during a search reads the skiplist node's
    /// own cache line instead of chasing a pointer per node (measured: see `bench/benches/range.rs`).
    pub key: KeyBuf,
    /// The version's `mod_revision`.
    pub rev: u64,
}

impl Ord for VKey {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.key.cmp(&other.key).then(other.rev.cmp(&self.rev))
    }
}

impl PartialOrd for VKey {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    create: u64,
    version: u64,
    pub lease: i64,
    pub value: Bytes,
    /// A delete: the key does not exist from this revision on.
    pub tombstone: bool,
}

/// A version in a key's chain.
#[derive(Debug)]
pub(crate) struct VNode {
    /// The version's `mod_revision`.
    pub rev: u64,
    pub v: Version,
    /// The next older version.
    pub next: ArcSwapOption<VNode>,
}

/// A key's versions, newest first.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    pub head: ArcSwapOption<VNode>,
}

impl Chain {
    /// The newest version at or below `rev`.
    pub fn at(&self, rev: u64) -> Option<Arc<VNode>> {
        let mut cur = self.head.load_full();
        while let Some(n) = cur {
            if n.rev <= rev {
                return Some(n);
            }
            cur = n.next.load_full();
        }
        None
    }
}

impl Version {
    pub fn new(create: u64, version: u64, lease: i64, value: Bytes, tombstone: bool) -> Version {
        Version { create, version, lease, value, tombstone }
    }

    pub fn tombstone() -> Version {
        Version::new(0, 0, 0, Bytes::new(), true)
    }

    /// Revision the key was created at.
    pub fn create(&self) -> u64 {
        self.create
    }

    /// Writes since creation.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The key-value of this version, sharing `key`'s buffer.
    pub fn to_kv_shared(&self, key: &Bytes, rev: u64) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: self.create() as i64,
            mod_revision: rev as i64,
            version: self.version() as i64,
            value: self.value.clone(),
            lease: self.lease,
        }
    }

    pub fn to_kv(&self, key: &[u8], rev: u64, with_value: bool) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key),
            create_revision: self.create() as i64,
            mod_revision: rev as i64,
            version: self.version() as i64,
            value: if with_value { self.value.clone() } else { Bytes::new() },
            lease: self.lease,
        }
    }
}

/// The revision an empty store starts at (etcd's).
pub const INITIAL_REVISION: u64 = 1;

/// The multi-version key-value store.
#[derive(Debug)]
pub struct Store {
    pub(crate) map: SkipList<KeyBuf, Chain>,
    /// Versions held (all chains).
    pub(crate) versions: AtomicU64,
    /// Held by apply for each request and by physical compaction while it removes keys, so a
    /// key is never removed from the map while a version is being added to it.
    pub(crate) apply_lock: Mutex<()>,
    /// The newest revision readers may see.
    pub(crate) rev: CachePadded<AtomicU64>,
    /// Apply's own revision: ahead of `rev` while a batch is being applied.
    pub(crate) working: CachePadded<AtomicU64>,
    /// Reads below this revision are refused.
    pub(crate) compacted: CachePadded<AtomicU64>,
    /// Apply's compacted revision, published with `working`.
    pub(crate) working_compacted: AtomicU64,
    /// Live-key change not yet published.
    pub(crate) pending_keys: CachePadded<AtomicI64>,
    /// Versions below this have been physically removed.
    pub(crate) physically_compacted: AtomicU64,
    /// Live keys at the published revision.
    pub(crate) keys: AtomicI64,
    /// Held by physical compaction and by snapshot builds, never by readers or apply.
    pub(crate) compaction: Mutex<()>,
    /// Leases and their keys as apply has them.
    pub(crate) lease_table: Mutex<LeaseTable>,
    /// Lease ids and TTLs at the published revision.
    pub(crate) published_leases: ArcSwap<BTreeMap<i64, i64>>,
    /// The working lease table changed since the last publish.
    pub(crate) leases_dirty: AtomicBool,
    /// Bytes of keys, values and per-version overhead retained (see [`Store::retained_bytes`]).
    pub(crate) retained: AtomicU64,
    /// The alarms as apply has them.
    pub(crate) alarm_list: Mutex<std::collections::BTreeSet<super::alarm::AlarmMember>>,
    /// The alarms at the published revision.
    pub(crate) published_alarms: ArcSwap<Vec<super::alarm::AlarmMember>>,
    /// The working alarm list changed since the last publish.
    pub(crate) alarms_dirty: AtomicBool,
    /// The alarm types in the working list, one bit each (apply's fast check).
    pub(crate) alarm_mask: std::sync::atomic::AtomicU8,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// The end of a key range, decoded from etcd's `range_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeEnd {
    /// Only the key itself.
    Single,
    /// Every key >= the start.
    Unbounded,
    /// Keys < this.
    Before(Bytes),
}

impl RangeEnd {
    pub fn from_request(range_end: &Bytes) -> RangeEnd {
        if range_end.is_empty() {
            RangeEnd::Single
        } else if range_end.as_ref() == [0] {
            RangeEnd::Unbounded
        } else {
            RangeEnd::Before(range_end.clone())
        }
    }

    pub fn contains(&self, start: &[u8], key: &[u8]) -> bool {
        match self {
            RangeEnd::Single => key == start,
            RangeEnd::Unbounded => key >= start,
            RangeEnd::Before(end) => key >= start && key < end.as_ref(),
        }
    }

    /// True once `key` (>= start) is past the range.
    pub fn is_past(&self, start: &[u8], key: &[u8]) -> bool {
        match self {
            RangeEnd::Single => key != start,
            RangeEnd::Unbounded => false,
            RangeEnd::Before(end) => key >= end.as_ref(),
        }
    }
}

impl Store {
    /// An empty store at [`INITIAL_REVISION`].
    pub fn new() -> Store {
        Store {
            map: SkipList::new(epoch::default_collector().clone()),
            versions: AtomicU64::new(0),
            apply_lock: Mutex::new(()),
            rev: CachePadded::new(AtomicU64::new(INITIAL_REVISION)),
            working: CachePadded::new(AtomicU64::new(INITIAL_REVISION)),
            compacted: CachePadded::new(AtomicU64::new(0)),
            working_compacted: AtomicU64::new(0),
            pending_keys: CachePadded::new(AtomicI64::new(0)),
            physically_compacted: AtomicU64::new(0),
            keys: AtomicI64::new(0),
            compaction: Mutex::new(()),
            lease_table: Mutex::new(LeaseTable::default()),
            published_leases: ArcSwap::from_pointee(BTreeMap::new()),
            leases_dirty: AtomicBool::new(false),
            retained: AtomicU64::new(0),
            alarm_list: Mutex::new(std::collections::BTreeSet::new()),
            published_alarms: ArcSwap::from_pointee(Vec::new()),
            alarms_dirty: AtomicBool::new(false),
            alarm_mask: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// The current (published) revision.
    pub fn revision(&self) -> u64 {
        self.rev.load(Ordering::Acquire)
    }

    /// The compacted revision (0 when never compacted).
    pub fn compacted_revision(&self) -> u64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// Live keys at the current revision.
    pub fn key_count(&self) -> u64 {
        self.keys.load(Ordering::Acquire).max(0) as u64
    }

    /// Versions retained (all keys, all revisions, tombstones included).
    pub fn version_count(&self) -> usize {
        self.versions.load(Ordering::Relaxed) as usize
    }

    /// Bytes of keys and values retained (what the store holds, as etcd's db size approximates):
    /// for every version held, tombstones included, its key, its value and
    /// [`VERSION_OVERHEAD_BYTES`](super::alarm::VERSION_OVERHEAD_BYTES). Kept as a counter
    /// (apply adds, physical compaction subtracts), so reading it costs nothing; the quota is
    /// checked against it.
    pub fn retained_bytes(&self) -> u64 {
        self.retained.load(Ordering::Relaxed)
    }

    /// What one version of `key` with `value_len` bytes of value counts in [`Store::retained_bytes`].
    pub(crate) fn version_bytes(key_len: usize, value_len: usize) -> u64 {
        (key_len + value_len) as u64 + super::alarm::VERSION_OVERHEAD_BYTES
    }

    /// Check that revision `rev` can be read now. Readers look at published state only; apply
    /// (`in_apply`) also sees a compaction applied earlier in its batch. (The atomics readers
    /// load sit on cache lines of their own: apply's per-put counters must not evict them.)
    pub(crate) fn check_readable(&self, rev: u64, current: u64, in_apply: bool) -> Result<(), MvccError> {
        if rev > current {
            return Err(MvccError::FutureRevision);
        }
        let mut c = self.compacted_revision();
        if in_apply {
            c = c.max(self.working_compacted.load(Ordering::Acquire));
        }
        if rev < c {
            return Err(MvccError::Compacted { compacted: c as i64 });
        }
        Ok(())
    }

    /// After a read at `rev`: refuse it if a compaction past `rev` started meanwhile (versions the
    /// read used may have been removed under it).
    pub(crate) fn recheck(&self, rev: u64) -> Result<(), MvccError> {
        let c = self.compacted_revision();
        if rev < c { Err(MvccError::Compacted { compacted: c as i64 }) } else { Ok(()) }
    }

    /// The newest version of `key` at or below `rev`, if the key exists there.
    pub(crate) fn get_at(&self, key: &Bytes, rev: u64) -> Option<(u64, Version)> {
        let guard = &epoch::pin();
        let e = self.map.get(key.as_ref(), guard)?;
        let n = e.value().at(rev)?;
        if n.v.tombstone {
            return None;
        }
        Some((n.rev, n.v.clone()))
    }

    /// Visit every key existing at `rev` in [`start`, `end`), in key order, with its newest
    /// version at or below `rev`. The visitor returns `false` to stop. One epoch pin for the
    /// whole scan; map entries are borrowed, never reference-counted.
    pub(crate) fn scan_at(
        &self,
        start: &Bytes,
        end: &RangeEnd,
        rev: u64,
        mut visit: impl FnMut(&[u8], u64, &Version) -> bool,
    ) {
        let guard = &epoch::pin();
        let mut cur = self.map.lower_bound(Bound::Included(start.as_ref()), guard);
        while let Some(e) = cur {
            let key = e.key();
            if end.is_past(start, key) {
                return;
            }
            if let Some(n) = e.value().at(rev)
                && !n.v.tombstone
                && !visit(key, n.rev, &n.v)
            {
                return;
            }
            cur = e.next();
        }
    }

    /// Add a version to `key` (apply only). Returns the key's previous newest version.
    fn prepend(&self, key: &[u8], rev: u64, make: impl FnOnce(Option<&Arc<VNode>>) -> Version) -> Option<Arc<VNode>> {
        let guard = &epoch::pin();
        // One search whether the key exists or not.
        let e = self.map.get_or_insert(KeyBuf::from_slice(key), Chain::default(), guard);
        let chain = e.value();
        let head = chain.head.load_full();
        let v = make(head.as_ref());
        self.retained.fetch_add(Store::version_bytes(key.len(), v.value.len()), Ordering::Relaxed);
        chain.head.store(Some(Arc::new(VNode { rev, v, next: ArcSwapOption::new(head.clone()) })));
        e.release(guard);
        self.versions.fetch_add(1, Ordering::Relaxed);
        head
    }

    /// Insert a version (apply only).
    pub(crate) fn insert(&self, key: &[u8], rev: u64, v: Version) {
        self.prepend(key, rev, |_| v);
    }

    /// Insert a put's version and return the key's previous version (if the key existed); the
    /// new version's create revision and version follow from it.
    pub(crate) fn insert_put(&self, key: &[u8], rev: u64, lease: i64, value: Bytes) -> Option<(u64, Version)> {
        let prev = self.prepend(key, rev, |head| match head.filter(|h| !h.v.tombstone) {
            Some(h) => Version::new(h.v.create, h.v.version + 1, lease, value, false),
            None => Version::new(rev, 1, lease, value, false),
        });
        prev.filter(|h| !h.v.tombstone).map(|h| (h.rev, h.v.clone()))
    }

    /// Record a finished write at revision `rev` (apply only). Readers see it after
    /// [`Store::publish`].
    pub(crate) fn advance(&self, rev: u64, key_delta: i64) {
        if key_delta != 0 {
            self.pending_keys.fetch_add(key_delta, Ordering::AcqRel);
        }
        self.working.store(rev, Ordering::Release);
    }

    /// Apply's revision (ahead of [`Store::revision`] inside a batch).
    pub(crate) fn working_revision(&self) -> u64 {
        self.working.load(Ordering::Acquire)
    }

    /// Make everything applied so far visible to readers at once: a batch is never seen torn.
    /// Returns true when the compacted revision moved (physical compaction has work).
    pub fn publish(&self) -> bool {
        self.publish_leases();
        self.publish_alarms();
        let delta = self.pending_keys.swap(0, Ordering::AcqRel);
        if delta != 0 {
            self.keys.fetch_add(delta, Ordering::AcqRel);
        }
        self.rev.store(self.working_revision(), Ordering::Release);
        let wc = self.working_compacted.load(Ordering::Acquire);
        self.compacted.fetch_max(wc, Ordering::AcqRel) < wc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(val: &str, tomb: bool) -> Version {
        Version::new(1, 1, 0, Bytes::from(val.to_string()), tomb)
    }

    /// What `retained_bytes` counts, by walking every chain.
    fn walked_bytes(s: &Store) -> u64 {
        let guard = &epoch::pin();
        let mut n = 0;
        let mut cur = s.map.front(guard);
        while let Some(e) = cur {
            let mut v = e.value().head.load_full();
            while let Some(node) = v {
                n += Store::version_bytes(e.key().len(), node.v.value.len());
                v = node.next.load_full();
            }
            cur = e.next();
        }
        n
    }

    #[test]
    fn retained_bytes_counter_matches_a_walk() {
        use crate::mvcc::{CompactionRequest, DeleteRangeRequest, PutRequest, WriteRequest};
        let s = Store::new();
        for i in 0..200u32 {
            let key = Bytes::from(format!("k{}", i % 17));
            let req = if i % 5 == 4 {
                WriteRequest::DeleteRange(DeleteRangeRequest { key, ..Default::default() })
            } else {
                WriteRequest::Put(PutRequest { key, value: Bytes::from(vec![b'v'; i as usize]), ..Default::default() })
            };
            s.apply(&req).unwrap();
            if i % 50 == 49 {
                let revision = s.revision() as i64 - 3;
                s.apply(&WriteRequest::Compact(CompactionRequest { revision, physical: true })).unwrap();
                s.compact_physically();
            }
            assert_eq!(s.retained_bytes(), walked_bytes(&s), "after request {i}");
        }
        let mut body = Vec::new();
        s.write_snapshot(&mut body).unwrap();
        let (r, _) = Store::read_snapshot(&mut &body[..]).unwrap();
        assert_eq!(r.retained_bytes(), s.retained_bytes(), "a restored store counts the same");
    }

    #[test]
    fn newest_version_at_or_below() {
        let s = Store::new();
        let k = Bytes::from_static(b"a");
        s.insert(&k, 2, v("x", false));
        s.insert(&k, 5, v("y", false));
        s.insert(&k, 7, v("", true));
        s.insert(b"b", 3, v("z", false));
        assert_eq!(s.get_at(&k, 1), None);
        assert_eq!(s.get_at(&k, 4).unwrap().1.value, "x");
        assert_eq!(s.get_at(&k, 6).unwrap().0, 5);
        assert_eq!(s.get_at(&k, 9), None, "deleted");
        let mut seen = Vec::new();
        s.scan_at(&Bytes::from_static(b"a"), &RangeEnd::Unbounded, 6, |k, r, _| {
            seen.push((Bytes::copy_from_slice(k), r));
            true
        });
        assert_eq!(seen, vec![(Bytes::from_static(b"a"), 5), (Bytes::from_static(b"b"), 3)]);
        let mut seen = Vec::new();
        s.scan_at(&Bytes::from_static(b"a"), &RangeEnd::Before(Bytes::from_static(b"b")), 9, |k, _, _| {
            seen.push(Bytes::copy_from_slice(k));
            true
        });
        assert!(seen.is_empty(), "a is deleted at 9 and b is outside");
    }
}
