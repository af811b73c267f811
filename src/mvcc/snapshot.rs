//! The store's snapshot body: every retained version at one revision, streamed. The engine's
//! snapshot container (`conflux_engine::snapshot`) wraps it in a checksummed, zstd-compressed
//! file; this module only defines the bytes inside. Format in `docs/format.md#state-machine-snapshot-body`.
//!
//! ```text
//! magic "CFXMVCC3"
//! version*:  0x01 | key_len u32 | key | mod_rev u64 | create_rev u64 | version u64 | lease i64
//!                 | tombstone u8 | value_len u32 | value
//! lease*:    0x02 | id i64 | ttl i64
//! alarm*:    0x03 | member_id u64 | alarm u32
//! end:       0x00 | count u64 | revision u64 | compacted u64
//! ```
//! All integers little-endian. Versions come in the store's order (key ascending, revision
//! descending), then leases by id, then alarms by (member, type). Which keys a lease holds is
//! not stored: it follows from the newest version of every key. Version 2 bodies (`CFXMVCC2`,
//! no alarm records) load with no alarms; version 1 bodies (`CFXMVCC1`, no lease records either)
//! with no leases and no alarms.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::alarm::{AlarmMember, AlarmType};
use super::store::{Store, VKey, Version};

/// Magic at the start of the body.
pub const MAGIC: &[u8; 8] = b"CFXMVCC3";
/// Magic of version 2 bodies (before alarms), still read.
pub const MAGIC_V2: &[u8; 8] = b"CFXMVCC2";
/// Magic of version 1 bodies (before leases), still read.
pub const MAGIC_V1: &[u8; 8] = b"CFXMVCC1";
const TAG_VERSION: u8 = 1;
const TAG_LEASE: u8 = 2;
const TAG_ALARM: u8 = 3;
const TAG_END: u8 = 0;
/// Largest key or value accepted when reading (guards allocations on damaged input).
pub const MAX_FIELD: usize = 64 << 20;

/// A fixed point to write a snapshot at; see [`Store::snapshot_point`].
#[derive(Debug)]
pub struct SnapshotPoint<'a> {
    _guard: parking_lot::MutexGuard<'a, ()>,
    /// The revision.
    pub revision: u64,
    /// The compacted revision.
    pub compacted: u64,
    /// Lease ids and TTLs at `revision`.
    pub leases: std::sync::Arc<std::collections::BTreeMap<i64, i64>>,
    /// Alarms raised at `revision`.
    pub alarms: std::sync::Arc<Vec<AlarmMember>>,
}

/// What the snapshot container's `app_meta` holds for the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// The revision the snapshot is at.
    pub revision: u64,
    /// The compacted revision at that point.
    pub compacted: u64,
    /// Live keys at `revision`.
    pub keys: u64,
    /// Versions written.
    pub versions: u64,
}

/// A snapshot body that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotBodyError {
    /// Reading failed (including a checksum failure reported by the container).
    #[error("reading snapshot body: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a store snapshot.
    #[error("snapshot body is malformed at byte {offset}: {what}")]
    Malformed {
        /// Offset in the decompressed body.
        offset: u64,
        /// What was wrong.
        what: String,
    },
}

impl Store {
    /// Write every version at or below the current revision to `out`. Apply and readers go on;
    /// physical compaction waits until the build is done. Returns what was written.
    ///
    /// # Errors
    /// Errors of `out`.
    pub fn write_snapshot(&self, out: &mut impl Write) -> io::Result<StoreMeta> {
        let point = self.snapshot_point();
        self.write_snapshot_from(&point, out)
    }

    /// Fix the revision a snapshot will be written at: the published revision and compacted
    /// revision now. Physical compaction is held off until the point is dropped, so no version
    /// the snapshot needs can go; apply and readers go on. Take it while holding whatever lock
    /// makes the caller's own metadata (last applied log id) match the published revision.
    pub fn snapshot_point(&self) -> SnapshotPoint<'_> {
        let guard = self.compaction.lock();
        SnapshotPoint {
            _guard: guard,
            revision: self.revision(),
            compacted: self.compacted_revision(),
            leases: self.leases(),
            alarms: self.alarms(),
        }
    }

    /// Write the versions at `point` to `out`.
    ///
    /// # Errors
    /// Errors of `out`.
    pub fn write_snapshot_from(&self, point: &SnapshotPoint<'_>, out: &mut impl Write) -> io::Result<StoreMeta> {
        let (revision, compacted) = (point.revision, point.compacted);
        out.write_all(MAGIC)?;
        let mut versions = 0u64;
        let mut keys = 0u64;
        let mut rec = Vec::with_capacity(256);
        let mut chain = Vec::new();
        let guard = &crossbeam_epoch::pin();
        let mut cur = self.map.front(guard);
        while let Some(e) = cur {
            cur = e.next();
            let key = e.key();
            // The key's versions at or below `revision`, newest first.
            chain.clear();
            let mut node = e.value().at(revision);
            while let Some(n) = node {
                node = n.next.load_full();
                chain.push(n);
            }
            if chain.first().is_some_and(|n| !n.v.tombstone) {
                keys += 1;
            }
            for n in &chain {
                let v = &n.v;
                rec.clear();
                rec.push(TAG_VERSION);
                rec.extend_from_slice(&(key.len() as u32).to_le_bytes());
                rec.extend_from_slice(key);
                rec.extend_from_slice(&n.rev.to_le_bytes());
                rec.extend_from_slice(&v.create().to_le_bytes());
                rec.extend_from_slice(&v.version().to_le_bytes());
                rec.extend_from_slice(&v.lease.to_le_bytes());
                rec.push(v.tombstone as u8);
                rec.extend_from_slice(&(v.value.len() as u32).to_le_bytes());
                out.write_all(&rec)?;
                out.write_all(&v.value)?;
                versions += 1;
            }
        }
        for (id, ttl) in point.leases.iter() {
            rec.clear();
            rec.push(TAG_LEASE);
            rec.extend_from_slice(&id.to_le_bytes());
            rec.extend_from_slice(&ttl.to_le_bytes());
            out.write_all(&rec)?;
        }
        for a in point.alarms.iter() {
            rec.clear();
            rec.push(TAG_ALARM);
            rec.extend_from_slice(&a.member_id.to_le_bytes());
            rec.extend_from_slice(&a.alarm.code().to_le_bytes());
            out.write_all(&rec)?;
        }
        let mut end = vec![TAG_END];
        end.extend_from_slice(&versions.to_le_bytes());
        end.extend_from_slice(&revision.to_le_bytes());
        end.extend_from_slice(&compacted.to_le_bytes());
        out.write_all(&end)?;
        Ok(StoreMeta { revision, compacted, keys, versions })
    }

    /// Build a store from a snapshot body.
    ///
    /// # Errors
    /// [`SnapshotBodyError`] naming the offset of what does not decode.
    pub fn read_snapshot(input: &mut impl Read) -> Result<(Store, StoreMeta), SnapshotBodyError> {
        let mut r = Counting { inner: input, offset: 0 };
        let bad = |offset: u64, what: &str| SnapshotBodyError::Malformed { offset, what: what.to_string() };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        let (with_leases, with_alarms) = match &magic {
            m if m == MAGIC => (true, true),
            m if m == MAGIC_V2 => (true, false),
            m if m == MAGIC_V1 => (false, false),
            _ => return Err(bad(0, "not a store snapshot (bad magic)")),
        };
        let mut leases = std::collections::BTreeMap::new();
        let mut alarms: Vec<AlarmMember> = Vec::new();
        let store = Store::new();
        let mut versions = 0u64;
        let mut keys = 0i64;
        let mut last_key: Option<Bytes> = None;
        let mut prev: Option<VKey> = None;
        let mut max_rev = 0u64;
        let mut pending: Vec<(Bytes, u64, Version)> = Vec::new();
        let flush = |store: &Store, pending: &mut Vec<(Bytes, u64, Version)>| {
            for (k, r, v) in pending.drain(..).rev() {
                store.insert(&k, r, v);
            }
        };
        loop {
            let at = r.offset;
            match r.u8()? {
                TAG_END => break,
                TAG_VERSION => {}
                TAG_ALARM if with_alarms => {
                    let member_id = r.u64()?;
                    let code = r.u32()?;
                    let alarm = AlarmType::from_code(code)
                        .filter(|a| *a != AlarmType::None)
                        .ok_or_else(|| bad(at, &format!("unknown alarm type {code}")))?;
                    let m = AlarmMember { member_id, alarm };
                    if alarms.last().is_some_and(|last| *last >= m) {
                        return Err(bad(at, "alarms out of order"));
                    }
                    alarms.push(m);
                    continue;
                }
                TAG_LEASE if with_leases => {
                    if !alarms.is_empty() {
                        return Err(bad(at, "a lease after the alarms"));
                    }
                    let id = r.u64()? as i64;
                    let ttl = r.u64()? as i64;
                    if leases.last_key_value().is_some_and(|(last, _)| *last >= id) {
                        return Err(bad(at, "leases out of order"));
                    }
                    leases.insert(id, ttl);
                    continue;
                }
                t => return Err(bad(at, &format!("unknown record tag {t}"))),
            }
            if !leases.is_empty() || !alarms.is_empty() {
                return Err(bad(at, "a version after the leases or alarms"));
            }
            let key = r.field()?.ok_or_else(|| bad(at, "key longer than the limit"))?;
            let rev = r.u64()?;
            let create = r.u64()?;
            let version = r.u64()?;
            let lease = r.u64()? as i64;
            let tombstone = match r.u8()? {
                0 => false,
                1 => true,
                x => return Err(bad(at, &format!("tombstone flag {x}"))),
            };
            let value = r.field()?.ok_or_else(|| bad(at, "value longer than the limit"))?;
            let vk = VKey { key: super::store::KeyBuf::from_slice(&key), rev };
            if prev.as_ref().is_some_and(|p| *p >= vk) {
                return Err(bad(at, "versions out of order"));
            }
            if last_key.as_ref() != Some(&key) {
                if !tombstone {
                    keys += 1;
                }
                last_key = Some(key.clone());
            }
            max_rev = max_rev.max(rev);
            // A key's versions come newest first; chains are built oldest first.
            if pending.first().is_some_and(|(k, _, _)| *k != key) {
                flush(&store, &mut pending);
            }
            pending.push((key, rev, Version::new(create, version, lease, value, tombstone)));
            prev = Some(vk);
            versions += 1;
        }
        flush(&store, &mut pending);
        let at = r.offset;
        let count = r.u64()?;
        let revision = r.u64()?;
        let compacted = r.u64()?;
        if count != versions {
            return Err(bad(at, &format!("trailer says {count} versions, body holds {versions}")));
        }
        if max_rev > revision || compacted > revision {
            return Err(bad(at, "revisions past the snapshot's revision"));
        }
        store.rev.store(revision, Ordering::Release);
        store.working.store(revision, Ordering::Release);
        store.compacted.store(compacted, Ordering::Release);
        store.working_compacted.store(compacted, Ordering::Release);
        store.physically_compacted.store(0, Ordering::Release);
        store.keys.store(keys, Ordering::Release);
        store.rebuild_leases(&leases);
        store.set_alarms(&alarms);
        Ok((store, StoreMeta { revision, compacted, keys: keys as u64, versions }))
    }
}

struct Counting<'a, R> {
    inner: &'a mut R,
    offset: u64,
}

impl<R: Read> Counting<'_, R> {
    fn read_exact(&mut self, b: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(b)?;
        self.offset += b.len() as u64;
        Ok(())
    }
    fn u8(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(b[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// A u32-length-prefixed field; `None` when the length is over [`MAX_FIELD`].
    fn field(&mut self) -> io::Result<Option<Bytes>> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        let len = u32::from_le_bytes(b) as usize;
        if len > MAX_FIELD {
            return Ok(None);
        }
        let mut v = vec![0u8; len];
        self.read_exact(&mut v)?;
        Ok(Some(Bytes::from(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{LeaseGrantRequest, PutRequest, WriteRequest};

    fn put(s: &Store, key: &'static [u8], lease: i64) {
        let req =
            PutRequest { key: Bytes::from_static(key), value: Bytes::from_static(b"v"), lease, ..Default::default() };
        s.apply(&WriteRequest::Put(req)).unwrap();
    }

    #[test]
    fn leases_round_trip_with_their_keys() {
        let s = Store::new();
        for id in [-3, 5, 9] {
            s.apply(&WriteRequest::LeaseGrant(LeaseGrantRequest { id, ttl: 30 })).unwrap();
        }
        put(&s, b"a", 5);
        put(&s, b"b", 5);
        put(&s, b"a", 9); // moves a to lease 9
        put(&s, b"c", 0);
        let mut body = Vec::new();
        s.write_snapshot(&mut body).unwrap();
        let (r, _) = Store::read_snapshot(&mut &body[..]).unwrap();
        assert_eq!(*r.leases(), [(-3, 30), (5, 30), (9, 30)].into_iter().collect());
        assert_eq!(r.lease(5).unwrap().keys, vec![Bytes::from_static(b"b")]);
        assert_eq!(r.lease(9).unwrap().keys, vec![Bytes::from_static(b"a")]);
        assert!(r.lease(-3).unwrap().keys.is_empty());
    }

    #[test]
    fn version_1_bodies_load_without_leases_and_never_hold_lease_records() {
        let s = Store::new();
        put(&s, b"a", 0);
        let mut body = Vec::new();
        s.write_snapshot(&mut body).unwrap();
        // Without leases or alarms a version 3 body is a version 1 body but for the magic.
        body[..8].copy_from_slice(MAGIC_V1);
        let (r, meta) = Store::read_snapshot(&mut &body[..]).unwrap();
        assert_eq!((meta.revision, r.leases().len()), (2, 0));
        s.apply(&WriteRequest::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 30 })).unwrap();
        let mut body = Vec::new();
        s.write_snapshot(&mut body).unwrap();
        body[..8].copy_from_slice(MAGIC_V1);
        let e = Store::read_snapshot(&mut &body[..]).unwrap_err();
        assert!(e.to_string().contains("unknown record tag 2"), "{e}");
    }

    #[test]
    fn alarms_round_trip_and_version_2_bodies_load_without_them() {
        use crate::mvcc::{AlarmAction, AlarmRequest};
        let s = Store::new();
        put(&s, b"a", 0);
        s.apply(&WriteRequest::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 30 })).unwrap();
        for (member_id, alarm) in [(9, AlarmType::NoSpace), (3, AlarmType::Corrupt), (3, AlarmType::NoSpace)] {
            s.apply(&WriteRequest::Alarm(AlarmRequest { action: AlarmAction::Activate, member_id, alarm })).unwrap();
        }
        let mut body = Vec::new();
        s.write_snapshot(&mut body).unwrap();
        let (r, _) = Store::read_snapshot(&mut &body[..]).unwrap();
        assert_eq!(*r.alarms(), *s.alarms());
        assert_eq!(r.alarms().len(), 3);
        assert_eq!(r.apply(&WriteRequest::Put(PutRequest::default())), Err(crate::mvcc::MvccError::Corrupt));
        // A version 2 body: the same bytes without alarm records.
        let s2 = Store::new();
        put(&s2, b"a", 0);
        s2.apply(&WriteRequest::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 30 })).unwrap();
        let mut body = Vec::new();
        s2.write_snapshot(&mut body).unwrap();
        body[..8].copy_from_slice(MAGIC_V2);
        let (r, _) = Store::read_snapshot(&mut &body[..]).unwrap();
        assert!(r.alarms().is_empty());
        assert_eq!(r.leases().len(), 1);
    }
}
