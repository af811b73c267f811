//! HashKV: a checksum of the store's MVCC state up to a revision, equal on every member that
//! applied the same log, so members can be compared (`etcdctl endpoint hashkv`, and the
//! leader's periodic consistency check). The meaning is etcd's: every key-value version at or
//! below the revision, down to the compacted revision; the bytes hashed are conflux's own.
//!
//! What is hashed, with crc32c (Castagnoli, as etcd), for each key in key order and each of its
//! versions newest first: `key_len u32 | key | mod_rev u64 | create_rev u64 | version u64 |
//! lease i64 | tombstone u8 | value_len u32 | value` (little-endian, the snapshot record without
//! its tag). The versions hashed are those a compaction at the compacted revision `C` leaves,
//! whether or not physical compaction has removed the others yet: every version with
//! `C < mod_rev <= revision`, and the newest version at or below `C` unless it is a delete. So a
//! member that compacted physically and one that has not (or one restored from a snapshot that
//! still held versions below `C`) hash alike.

use super::error::MvccError;
use super::store::Store;

/// The answer to a HashKV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    /// The checksum.
    pub hash: u32,
    /// The revision hashed up to.
    pub revision: u64,
    /// The compacted revision the hash starts from.
    pub compacted: u64,
    /// The store's current revision when it was computed (etcd's `header.revision`).
    pub current: u64,
}

impl Store {
    /// Hash every version at or below `revision` (0: the current revision) down to the compacted
    /// revision. Holds off physical compaction while it runs (like a snapshot build); apply and
    /// readers go on.
    ///
    /// # Errors
    /// As etcd: [`MvccError::Compacted`] when `revision` is at or below the compacted revision,
    /// [`MvccError::FutureRevision`] when it is above the current one.
    pub fn hash_kv(&self, revision: u64) -> Result<HashKv, MvccError> {
        let _no_physical_compaction = self.compaction.lock();
        let current = self.revision();
        let compacted = self.compacted_revision();
        if revision > 0 && revision <= compacted {
            return Err(MvccError::Compacted { compacted: compacted as i64 });
        }
        if revision > current {
            return Err(MvccError::FutureRevision);
        }
        let rev = if revision == 0 { current } else { revision };
        let mut h = 0u32;
        let mut rec = Vec::with_capacity(256);
        let guard = &crossbeam_epoch::pin();
        let mut cur = self.map.front(guard);
        while let Some(e) = cur {
            cur = e.next();
            let key = e.key();
            let mut node = e.value().at(rev);
            while let Some(n) = node {
                let below = n.rev <= compacted;
                if !(below && n.v.tombstone) {
                    rec.clear();
                    rec.extend_from_slice(&(key.len() as u32).to_le_bytes());
                    rec.extend_from_slice(key);
                    rec.extend_from_slice(&n.rev.to_le_bytes());
                    rec.extend_from_slice(&n.v.create().to_le_bytes());
                    rec.extend_from_slice(&n.v.version().to_le_bytes());
                    rec.extend_from_slice(&n.v.lease.to_le_bytes());
                    rec.push(n.v.tombstone as u8);
                    rec.extend_from_slice(&(n.v.value.len() as u32).to_le_bytes());
                    h = crc32c::crc32c_append(h, &rec);
                    h = crc32c::crc32c_append(h, &n.v.value);
                }
                // Below the compacted revision only the newest version counts.
                if below {
                    break;
                }
                node = n.next.load_full();
            }
        }
        Ok(HashKv { hash: h, revision: rev, compacted, current })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::mvcc::{CompactionRequest, DeleteRangeRequest, PutRequest, WriteRequest};

    fn put(s: &Store, k: &str, v: &str) {
        let req =
            PutRequest { key: Bytes::from(k.to_string()), value: Bytes::from(v.to_string()), ..Default::default() };
        s.apply(&WriteRequest::Put(req)).unwrap();
    }

    fn fill(s: &Store) {
        put(s, "a", "1");
        put(s, "b", "1");
        put(s, "a", "2");
        s.apply(&WriteRequest::DeleteRange(DeleteRangeRequest { key: "b".into(), ..Default::default() })).unwrap();
        put(s, "c", "1");
        s.apply(&WriteRequest::Compact(CompactionRequest { revision: 5, physical: false })).unwrap();
        put(s, "a", "3");
    }

    #[test]
    fn equal_stores_hash_alike_whatever_physical_compaction_did() {
        let (x, y) = (Store::new(), Store::new());
        fill(&x);
        fill(&y);
        let before = x.hash_kv(0).unwrap();
        assert_eq!(before, y.hash_kv(0).unwrap());
        assert!(x.compact_physically() > 0);
        assert_eq!(x.hash_kv(0).unwrap(), before, "physical compaction changes nothing hashed");
        // And a store restored from a snapshot of the uncompacted one.
        let mut body = Vec::new();
        y.write_snapshot(&mut body).unwrap();
        let (z, _) = Store::read_snapshot(&mut &body[..]).unwrap();
        assert_eq!(z.hash_kv(0).unwrap(), before);
        assert_eq!((before.revision, before.compacted, before.current), (7, 5, 7));
    }

    #[test]
    fn hashes_follow_revisions_and_values() {
        let s = Store::new();
        fill(&s);
        let at6 = s.hash_kv(6).unwrap();
        assert_ne!(at6.hash, s.hash_kv(7).unwrap().hash);
        put(&s, "d", "x");
        assert_eq!(s.hash_kv(6).unwrap().hash, at6.hash, "later writes do not change an older hash");
        assert_eq!(s.hash_kv(6).unwrap().current, 8);
        let t = Store::new();
        fill(&t);
        put(&t, "d", "y");
        assert_ne!(t.hash_kv(0).unwrap().hash, s.hash_kv(0).unwrap().hash, "one value differs");
        assert_eq!(s.hash_kv(5), Err(MvccError::Compacted { compacted: 5 }));
        assert_eq!(s.hash_kv(9), Err(MvccError::FutureRevision));
    }
}
