//! Alarms: etcd's cluster-wide conditions that stop writes. The alarm list is replicated state:
//! an [`AlarmRequest`] is applied through Raft like any write, the list is saved in snapshots,
//! and apply refuses requests while an alarm is active, the same way on every member:
//!
//! - `NOSPACE` (the backend quota was crossed, or a member's disk is full): Put, a Txn with a
//!   put in either branch (top level, as etcd counts a txn's cost) and LeaseGrant are refused
//!   with `etcdserver: mvcc: database space exceeded`; reads, deletes, lease revokes and
//!   compaction go on, so an operator can free space.
//! - `CORRUPT` (the consistency check found members whose stores differ): every write (Put,
//!   DeleteRange, a Txn that is not read-only, Compact, LeaseGrant, LeaseRevoke) is refused with
//!   `etcdserver: corrupt cluster`. Reads are served, Range and read-only Txn (only ranges in
//!   both branches) included, as etcd 3.4 serves them outside its alarm-aware applier.
//!
//! Alarm requests themselves always apply, so alarms can be listed and disarmed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::error::MvccError;
use super::request::{RequestOp, ResponseHeader, TxnRequest, WriteRequest};
use super::store::Store;

/// etcd's `AlarmType` (same numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmType {
    /// No alarm: in a GET, every alarm.
    None,
    /// Space quota exceeded (or a member's disk is full).
    NoSpace,
    /// Members' stores differ.
    Corrupt,
}

impl AlarmType {
    /// etcd's number for it.
    pub fn code(self) -> u32 {
        match self {
            AlarmType::None => 0,
            AlarmType::NoSpace => 1,
            AlarmType::Corrupt => 2,
        }
    }

    /// From etcd's number (`None` for an unknown one).
    pub fn from_code(code: u32) -> Option<AlarmType> {
        match code {
            0 => Some(AlarmType::None),
            1 => Some(AlarmType::NoSpace),
            2 => Some(AlarmType::Corrupt),
            _ => None,
        }
    }
}

impl std::fmt::Display for AlarmType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AlarmType::None => "NONE",
            AlarmType::NoSpace => "NOSPACE",
            AlarmType::Corrupt => "CORRUPT",
        })
    }
}

/// etcd's `AlarmRequest.AlarmAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmAction {
    /// List alarms (of `alarm`'s type, or all with [`AlarmType::None`]).
    Get,
    /// Raise `alarm` for `member_id`.
    Activate,
    /// Clear `alarm` for `member_id`.
    Deactivate,
}

/// One raised alarm (etcd's `AlarmMember`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlarmMember {
    /// The member it was raised for.
    pub member_id: u64,
    /// What.
    pub alarm: AlarmType,
}

/// etcd's `AlarmRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmRequest {
    /// Get, activate or deactivate.
    pub action: AlarmAction,
    /// The member (activate, deactivate).
    pub member_id: u64,
    /// The alarm.
    pub alarm: AlarmType,
}

/// etcd's `AlarmResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmResponse {
    /// Header.
    pub header: ResponseHeader,
    /// Get: the alarms listed; activate: the alarm raised (or already raised); deactivate: the
    /// alarm cleared (none when it was not raised).
    pub alarms: Vec<AlarmMember>,
}

/// Bytes a version costs against the quota (and in [`Store::retained_bytes`]): its key, its
/// value and a fixed overhead for the revision numbers, lease and chain node.
pub const VERSION_OVERHEAD_BYTES: u64 = 64;
/// What a lease grant costs against the quota.
pub const LEASE_COST_BYTES: u64 = 64;

/// What `req` would add to the store, as etcd's quota counts it: a put's key and value; a txn's
/// larger branch (its top-level puts only, as etcd 3.4's `costTxn`); a lease grant a fixed
/// amount; anything else nothing.
pub fn quota_cost(req: &WriteRequest) -> u64 {
    fn txn_cost(t: &TxnRequest) -> u64 {
        let branch = |ops: &[RequestOp]| -> u64 {
            ops.iter()
                .map(|op| match op {
                    RequestOp::Put(p) => (p.key.len() + p.value.len()) as u64 + VERSION_OVERHEAD_BYTES,
                    _ => 0,
                })
                .sum()
        };
        branch(&t.success).max(branch(&t.failure))
    }
    match req {
        WriteRequest::Put(p) => (p.key.len() + p.value.len()) as u64 + VERSION_OVERHEAD_BYTES,
        WriteRequest::Txn(t) => txn_cost(t),
        WriteRequest::LeaseGrant(_) => LEASE_COST_BYTES,
        _ => 0,
    }
}

/// etcd 3.4's `isTxnReadonly`: a txn whose branches hold only ranges (a nested txn counts as a
/// write).
fn is_read_only_txn(req: &WriteRequest) -> bool {
    match req {
        WriteRequest::Txn(t) => t.success.iter().chain(&t.failure).all(|op| matches!(op, RequestOp::Range(_))),
        _ => false,
    }
}

/// The alarm types raised in `list`, one bit each (`1 << code`), for apply's fast check.
fn mask(list: &BTreeSet<AlarmMember>) -> u8 {
    list.iter().fold(0, |m, a| m | (1 << a.alarm.code()))
}

/// Whether the alarm types in `mask` (see [`Store::alarm_mask`]) make apply refuse `req`, and
/// with what.
pub(crate) fn refusal(mask: u8, req: &WriteRequest) -> Option<MvccError> {
    let has = |t: AlarmType| mask & (1 << t.code()) != 0;
    if mask == 0 || matches!(req, WriteRequest::Alarm(_)) {
        return None;
    }
    if has(AlarmType::Corrupt) && !is_read_only_txn(req) {
        return Some(MvccError::Corrupt);
    }
    if has(AlarmType::NoSpace) && quota_cost(req) > 0 {
        return Some(MvccError::NoSpace);
    }
    None
}

impl Store {
    /// The alarms raised, at the published revision, in (member, type) order.
    pub fn alarms(&self) -> Arc<Vec<AlarmMember>> {
        self.published_alarms.load_full()
    }

    /// Apply an alarm request to the working list (apply only; published with the batch).
    pub(crate) fn apply_alarm(&self, req: &AlarmRequest, revision: u64) -> AlarmResponse {
        let mut list = self.alarm_list.lock();
        let header = ResponseHeader { revision: revision as i64 };
        let alarms = match req.action {
            AlarmAction::Get => {
                list.iter().filter(|a| req.alarm == AlarmType::None || a.alarm == req.alarm).copied().collect()
            }
            // etcd would store an alarm of type NONE; it means nothing, so it is not raised here.
            AlarmAction::Activate if req.alarm == AlarmType::None => Vec::new(),
            AlarmAction::Activate => {
                let m = AlarmMember { member_id: req.member_id, alarm: req.alarm };
                if list.insert(m) {
                    self.alarms_dirty.store(true, Ordering::Release);
                }
                vec![m]
            }
            AlarmAction::Deactivate => {
                let m = AlarmMember { member_id: req.member_id, alarm: req.alarm };
                if list.remove(&m) {
                    self.alarms_dirty.store(true, Ordering::Release);
                    vec![m]
                } else {
                    Vec::new()
                }
            }
        };
        self.alarm_mask.store(mask(&list), Ordering::Release);
        AlarmResponse { header, alarms }
    }

    /// Publish the working alarm list (from `publish`).
    pub(crate) fn publish_alarms(&self) {
        if self.alarms_dirty.swap(false, Ordering::AcqRel) {
            let list: Vec<AlarmMember> = self.alarm_list.lock().iter().copied().collect();
            self.published_alarms.store(Arc::new(list));
        }
    }

    /// The alarm types apply's list holds, one bit per type (`1 << code`); 0 when none is raised,
    /// so apply's check costs one load.
    pub(crate) fn alarm_mask(&self) -> u8 {
        self.alarm_mask.load(Ordering::Acquire)
    }

    /// Replace the alarm list (a snapshot load).
    pub(crate) fn set_alarms(&self, alarms: &[AlarmMember]) {
        let list: BTreeSet<AlarmMember> = alarms.iter().copied().collect();
        self.alarm_mask.store(mask(&list), Ordering::Release);
        *self.alarm_list.lock() = list;
        self.published_alarms.store(Arc::new(alarms.to_vec()));
        self.alarms_dirty.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::mvcc::{
        CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
        WriteResponse,
    };

    fn put(k: &'static str) -> WriteRequest {
        WriteRequest::Put(PutRequest { key: Bytes::from_static(k.as_bytes()), value: "v".into(), ..Default::default() })
    }

    fn alarm(action: AlarmAction, member_id: u64, alarm: AlarmType) -> WriteRequest {
        WriteRequest::Alarm(AlarmRequest { action, member_id, alarm })
    }

    fn listed(s: &Store) -> Vec<AlarmMember> {
        match s.apply(&alarm(AlarmAction::Get, 0, AlarmType::None)).unwrap() {
            WriteResponse::Alarm(a) => a.alarms,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nospace_refuses_what_adds_data_and_lets_the_rest_through() {
        let s = Store::new();
        s.apply(&put("a")).unwrap();
        s.apply(&WriteRequest::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 10 })).unwrap();
        s.apply(&alarm(AlarmAction::Activate, 5, AlarmType::NoSpace)).unwrap();
        assert_eq!(listed(&s), vec![AlarmMember { member_id: 5, alarm: AlarmType::NoSpace }]);
        assert_eq!(*s.alarms(), listed(&s), "published with the request");
        assert_eq!(s.apply(&put("b")), Err(MvccError::NoSpace));
        let txn_put = TxnRequest { failure: vec![RequestOp::Put(PutRequest::default())], ..Default::default() };
        assert_eq!(s.apply(&WriteRequest::Txn(txn_put)), Err(MvccError::NoSpace), "a put in either branch");
        assert_eq!(s.apply(&WriteRequest::LeaseGrant(LeaseGrantRequest { id: 8, ttl: 10 })), Err(MvccError::NoSpace));
        let read = RangeRequest { key: "a".into(), ..Default::default() };
        s.apply(&WriteRequest::Txn(TxnRequest { success: vec![RequestOp::Range(read)], ..Default::default() }))
            .unwrap();
        s.apply(&WriteRequest::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() })).unwrap();
        s.apply(&WriteRequest::LeaseRevoke(LeaseRevokeRequest { id: 7 })).unwrap();
        s.apply(&WriteRequest::Compact(CompactionRequest { revision: 2, physical: false })).unwrap();
        // Disarmed: writes go again.
        let r = s.apply(&alarm(AlarmAction::Deactivate, 5, AlarmType::NoSpace)).unwrap();
        assert!(matches!(r, WriteResponse::Alarm(a) if a.alarms.len() == 1));
        s.apply(&put("b")).unwrap();
        assert!(s.alarms().is_empty());
    }

    #[test]
    fn corrupt_refuses_every_write_but_alarms() {
        let s = Store::new();
        s.apply(&put("a")).unwrap();
        s.apply(&alarm(AlarmAction::Activate, 9, AlarmType::Corrupt)).unwrap();
        s.apply(&alarm(AlarmAction::Activate, 9, AlarmType::Corrupt)).unwrap();
        assert_eq!(listed(&s).len(), 1, "raising twice keeps one");
        for req in [
            put("b"),
            WriteRequest::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() }),
            WriteRequest::Txn(TxnRequest {
                success: vec![RequestOp::Txn(TxnRequest::default())],
                ..Default::default()
            }),
            WriteRequest::Compact(CompactionRequest { revision: 2, physical: false }),
        ] {
            assert_eq!(s.apply(&req), Err(MvccError::Corrupt), "{req}");
        }
        assert!(s.range(&RangeRequest { key: "a".into(), ..Default::default() }).is_ok(), "reads are served");
        let read = RequestOp::Range(RangeRequest { key: "a".into(), ..Default::default() });
        let read_only = TxnRequest { success: vec![read.clone()], failure: vec![read], ..Default::default() };
        assert!(s.apply(&WriteRequest::Txn(read_only)).is_ok(), "so are read-only txns");
        let r = s.apply(&alarm(AlarmAction::Deactivate, 1, AlarmType::Corrupt)).unwrap();
        assert!(matches!(r, WriteResponse::Alarm(a) if a.alarms.is_empty()), "another member's alarm stays");
        s.apply(&alarm(AlarmAction::Deactivate, 9, AlarmType::Corrupt)).unwrap();
        s.apply(&put("b")).unwrap();
    }

    #[test]
    fn txn_cost_is_the_larger_branch_of_top_level_puts() {
        let p = |k: &'static str, v: &'static str| {
            RequestOp::Put(PutRequest { key: k.into(), value: v.into(), ..Default::default() })
        };
        let t =
            TxnRequest { success: vec![p("a", "12")], failure: vec![p("b", "1"), p("c", "1")], ..Default::default() };
        assert_eq!(quota_cost(&WriteRequest::Txn(t)), 2 * (2 + VERSION_OVERHEAD_BYTES));
        let nested = TxnRequest {
            success: vec![RequestOp::Txn(TxnRequest { success: vec![p("a", "1")], ..Default::default() })],
            ..Default::default()
        };
        assert_eq!(quota_cost(&WriteRequest::Txn(nested)), 0, "etcd 3.4 does not count nested puts");
    }
}
