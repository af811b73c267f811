//! The lease table: which leases exist, their granted TTL, and the keys attached to each. It is
//! replicated state (granted and revoked through Raft, saved in snapshots); when a lease expires
//! is not: the leader alone keeps expiry deadlines (`crate::node::lease`) and revokes through
//! Raft, as etcd's lessor does.
//!
//! Apply changes the working table; [`Store::publish`] makes the ids and TTLs visible to readers
//! and snapshot builds together with the revision, so a snapshot's leases match its versions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::error::MvccError;
use super::store::Store;

/// The largest TTL a lease may be granted with, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// One lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaseEntry {
    /// Granted TTL, seconds.
    pub ttl: i64,
    /// Keys attached (their newest version names this lease).
    pub keys: BTreeSet<Bytes>,
}

/// The leases apply works on.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    pub leases: BTreeMap<i64, LeaseEntry>,
}

impl LeaseTable {
    pub fn grant(&mut self, id: i64, ttl: i64) -> Result<(), MvccError> {
        if id == 0 {
            return Err(MvccError::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(MvccError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(MvccError::LeaseExists);
        }
        self.leases.insert(id, LeaseEntry { ttl, keys: BTreeSet::new() });
        Ok(())
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Move `key` from lease `old` to lease `new` (0 = none).
    pub fn reattach(&mut self, key: &Bytes, old: i64, new: i64) {
        if old == new {
            return;
        }
        if old != 0
            && let Some(l) = self.leases.get_mut(&old)
        {
            l.keys.remove(key);
        }
        if new != 0
            && let Some(l) = self.leases.get_mut(&new)
        {
            l.keys.insert(key.clone());
        }
    }
}

/// A lease as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Lease id.
    pub id: i64,
    /// Granted TTL, seconds.
    pub ttl: i64,
    /// Attached keys, ascending.
    pub keys: Vec<Bytes>,
}

impl Store {
    /// Every lease at the published revision: id and granted TTL, by id.
    pub fn leases(&self) -> Arc<BTreeMap<i64, i64>> {
        self.published_leases.load_full()
    }

    /// Lease `id` (with its attached keys), if it exists.
    pub fn lease(&self, id: i64) -> Option<LeaseInfo> {
        let t = self.lease_table.lock();
        t.leases.get(&id).map(|l| LeaseInfo { id, ttl: l.ttl, keys: l.keys.iter().cloned().collect() })
    }

    /// Make the working table's ids and TTLs what readers see (apply, from `publish`).
    pub(crate) fn publish_leases(&self) {
        if self.leases_dirty.swap(false, Ordering::AcqRel) {
            let t = self.lease_table.lock();
            let map: BTreeMap<i64, i64> = t.leases.iter().map(|(id, l)| (*id, l.ttl)).collect();
            self.published_leases.store(Arc::new(map));
        }
    }

    /// Rebuild the table from published ids and TTLs plus the newest version of every key (a
    /// snapshot load: attachments are derived, not stored).
    pub(crate) fn rebuild_leases(&self, leases: &BTreeMap<i64, i64>) {
        let mut t = LeaseTable::default();
        for (id, ttl) in leases {
            t.leases.insert(*id, LeaseEntry { ttl: *ttl, keys: BTreeSet::new() });
        }
        let guard = &crossbeam_epoch::pin();
        let mut cur = self.map.front(guard);
        while let Some(e) = cur {
            if let Some(head) = e.value().head.load_full()
                && !head.v.tombstone
                && head.v.lease != 0
                && let Some(l) = t.leases.get_mut(&head.v.lease)
            {
                l.keys.insert(Bytes::copy_from_slice(e.key()));
            }
            cur = e.next();
        }
        *self.lease_table.lock() = t;
        self.published_leases.store(Arc::new(leases.clone()));
        self.leases_dirty.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_refuses_as_etcd() {
        let mut t = LeaseTable::default();
        assert_eq!(t.grant(0, 10), Err(MvccError::LeaseNotFound));
        assert_eq!(t.grant(1, MAX_LEASE_TTL + 1), Err(MvccError::LeaseTtlTooLarge));
        t.grant(1, 10).unwrap();
        assert_eq!(t.grant(1, 20), Err(MvccError::LeaseExists));
        assert_eq!(t.leases[&1].ttl, 10, "a refused grant changes nothing");
    }

    #[test]
    fn reattach_moves_a_key_between_leases() {
        let mut t = LeaseTable::default();
        t.grant(1, 10).unwrap();
        t.grant(2, 10).unwrap();
        let k = Bytes::from_static(b"k");
        t.reattach(&k, 0, 1);
        assert!(t.leases[&1].keys.contains(&k));
        t.reattach(&k, 1, 2);
        assert!(t.leases[&1].keys.is_empty() && t.leases[&2].keys.contains(&k));
        t.reattach(&k, 2, 0);
        assert!(t.leases[&2].keys.is_empty());
    }
}
