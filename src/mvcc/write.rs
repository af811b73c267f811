//! Applying etcd's write requests: Put, DeleteRange, Txn (compares, branches, nested txns) and
//! Compact. Single-threaded (the state machine's apply); readers are never blocked.
//!
//! A write transaction inserts its versions at `revision + 1` (invisible to readers) and
//! publishes the new revision once, at the end. A request that is refused changes nothing: every
//! check that can fail runs before the first insert, as etcd's do.

use std::collections::HashSet;

use bytes::Bytes;

use super::error::MvccError;
use super::event::{Event, EventKind};
use super::lease::LeaseTable;
use super::request::*;
use super::store::{RangeEnd, Store, Version};

/// Most operations a transaction may hold (etcd's `--max-txn-ops` default).
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

struct WriteTxn<'a> {
    store: &'a Store,
    base: u64,
    changed: bool,
    key_delta: i64,
    leases: &'a mut LeaseTable,
    /// Where watch events go, when someone watches.
    events: Option<&'a mut Vec<Event>>,
}

impl WriteTxn<'_> {
    fn new_rev(&self) -> u64 {
        self.base + 1
    }

    /// The revision this transaction's reads see: its own writes included.
    fn view(&self) -> u64 {
        if self.changed { self.base + 1 } else { self.base }
    }

    fn put(&mut self, req: &PutRequest) -> PutResponse {
        let rev = self.new_rev();
        let prev = if req.ignore_value || req.ignore_lease {
            // The new version takes fields from the previous one: look it up first.
            let prev = self.store.get_at(&req.key, self.view());
            let (create, version) = match &prev {
                Some((_, p)) => (p.create(), p.version() + 1),
                None => (rev, 1),
            };
            let value = match (&prev, req.ignore_value) {
                (Some((_, p)), true) => p.value.clone(),
                _ => req.value.clone(),
            };
            let lease = match (&prev, req.ignore_lease) {
                (Some((_, p)), true) => p.lease,
                _ => req.lease,
            };
            let new = Version::new(create, version, lease, value, false);
            self.emit_put(&req.key, rev, &new, prev.as_ref());
            self.store.insert(&req.key, rev, new);
            prev
        } else {
            // One traversal: insert, then read the previous version next to it.
            let prev = self.store.insert_put(&req.key, rev, req.lease, req.value.clone());
            if self.events.is_some() {
                let (create, version) = match &prev {
                    Some((_, p)) => (p.create(), p.version() + 1),
                    None => (rev, 1),
                };
                let new = Version::new(create, version, req.lease, req.value.clone(), false);
                self.emit_put(&req.key, rev, &new, prev.as_ref());
            }
            prev
        };
        let old_lease = prev.as_ref().map(|(_, p)| p.lease).unwrap_or(0);
        let new_lease = if req.ignore_lease { old_lease } else { req.lease };
        self.leases.reattach(&req.key, old_lease, new_lease);
        if prev.is_none() {
            self.key_delta += 1;
        }
        self.changed = true;
        PutResponse {
            header: ResponseHeader { revision: rev as i64 },
            prev_kv: if req.prev_kv { prev.map(|(r, v)| v.to_kv(&req.key, r, true)) } else { None },
        }
    }

    fn delete_range(&mut self, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let view = self.view();
        let end = RangeEnd::from_request(&req.range_end);
        let mut doomed: Vec<(Bytes, u64, Version)> = Vec::new();
        self.store.scan_at(&req.key, &end, view, |k, r, v| {
            doomed.push((Bytes::copy_from_slice(k), r, v.clone()));
            true
        });
        let rev = self.new_rev();
        let mut prev_kvs = Vec::new();
        for (k, r, v) in &doomed {
            if req.prev_kv {
                prev_kvs.push(v.to_kv(k, *r, true));
            }
            if let Some(ev) = self.events.as_deref_mut() {
                ev.push(Event::delete(k.clone(), rev, Some(v.to_kv(k, *r, true))));
            }
            if v.lease != 0 {
                self.leases.reattach(k, v.lease, 0);
            }
            self.store.insert(k, rev, Version::tombstone());
        }
        if !doomed.is_empty() {
            self.changed = true;
            self.key_delta -= doomed.len() as i64;
        }
        DeleteRangeResponse {
            header: ResponseHeader { revision: self.view() as i64 },
            deleted: doomed.len() as i64,
            prev_kvs,
        }
    }

    fn emit_put(&mut self, key: &Bytes, rev: u64, new: &Version, prev: Option<&(u64, Version)>) {
        if let Some(ev) = self.events.as_deref_mut() {
            ev.push(Event {
                kind: EventKind::Put,
                kv: new.to_kv_shared(key, rev),
                prev_kv: prev.map(|(r, p)| p.to_kv_shared(key, *r)),
            });
        }
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.store.range_at(req, self.view(), true)
    }

    /// Run the branch `path` chose (computed up front, as etcd does, on the view before the
    /// transaction's own writes).
    fn txn(&mut self, req: &TxnRequest, path: &TxnPath) -> Result<TxnResponse, MvccError> {
        let ops = if path.succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        let mut nested = path.nested.iter();
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r)?),
                RequestOp::Put(p) => ResponseOp::Put(self.put(p)),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_range(d)),
                RequestOp::Txn(t) => {
                    let p = nested.next().expect("one path per nested txn");
                    ResponseOp::Txn(self.txn(t, p)?)
                }
            });
        }
        Ok(TxnResponse {
            header: ResponseHeader { revision: self.view() as i64 },
            succeeded: path.succeeded,
            responses,
        })
    }

    fn finish(self) -> u64 {
        if self.changed {
            self.store.advance(self.base + 1, self.key_delta);
            self.base + 1
        } else {
            self.base
        }
    }
}

/// Which branch each (nested) transaction takes.
#[derive(Debug)]
struct TxnPath {
    succeeded: bool,
    nested: Vec<TxnPath>,
}

impl Store {
    /// Apply one write request and publish it (readers see it when this returns). A refused
    /// request (`Err`) changes nothing.
    ///
    /// # Errors
    /// As etcd: empty keys, `ignore_value`/`ignore_lease` on a missing key, duplicate keys in a
    /// transaction, too many operations, compacted or future revisions.
    pub fn apply(&self, req: &WriteRequest) -> Result<WriteResponse, MvccError> {
        let r = self.apply_unpublished(req, DEFAULT_MAX_TXN_OPS);
        self.publish();
        r
    }

    /// Apply one write request without publishing it: a batch applies many, then calls
    /// [`Store::publish`] once, so readers never see part of a batch.
    ///
    /// # Errors
    /// As [`Store::apply`].
    pub fn apply_unpublished(&self, req: &WriteRequest, max_txn_ops: usize) -> Result<WriteResponse, MvccError> {
        self.apply_with_events(req, max_txn_ops, None)
    }

    /// [`Store::apply_unpublished`], appending a watch event for every key changed to `events`.
    ///
    /// # Errors
    /// As [`Store::apply`], and for leases: an unknown lease on a put or revoke, a grant of an id
    /// in use or of a TTL above [`crate::mvcc::MAX_LEASE_TTL`].
    pub fn apply_with_events(
        &self,
        req: &WriteRequest,
        max_txn_ops: usize,
        events: Option<&mut Vec<Event>>,
    ) -> Result<WriteResponse, MvccError> {
        let _apply = self.apply_lock.lock();
        let base = self.working_revision();
        // An active alarm refuses what it stops, the same way on every member (alarms are
        // replicated state); alarm requests themselves always apply.
        if let Some(refused) = super::alarm::refusal(self.alarm_mask(), req) {
            return Err(refused);
        }
        let mut leases = self.lease_table.lock();
        let mut txn = WriteTxn { store: self, base, changed: false, key_delta: 0, leases: &mut leases, events };
        match req {
            WriteRequest::LeaseGrant(g) => {
                txn.leases.grant(g.id, g.ttl)?;
                self.leases_dirty.store(true, std::sync::atomic::Ordering::Release);
                Ok(WriteResponse::LeaseGrant(LeaseGrantResponse {
                    header: ResponseHeader { revision: base as i64 },
                    id: g.id,
                    ttl: g.ttl,
                }))
            }
            WriteRequest::LeaseRevoke(r) => {
                let Some(lease) = txn.leases.leases.remove(&r.id) else { return Err(MvccError::LeaseNotFound) };
                self.leases_dirty.store(true, std::sync::atomic::Ordering::Release);
                // Every attached key goes in one revision (one delete per key, as etcd's revoke).
                for key in lease.keys {
                    txn.delete_range(&DeleteRangeRequest { key, range_end: Bytes::new(), prev_kv: false });
                }
                let rev = txn.finish();
                Ok(WriteResponse::LeaseRevoke(LeaseRevokeResponse { header: ResponseHeader { revision: rev as i64 } }))
            }
            WriteRequest::Put(p) => {
                check_put(self, &*txn.leases, p, base)?;
                let resp = txn.put(p);
                txn.finish();
                Ok(WriteResponse::Put(resp))
            }
            WriteRequest::DeleteRange(d) => {
                if d.key.is_empty() {
                    return Err(MvccError::EmptyKey);
                }
                let resp = txn.delete_range(d);
                txn.finish();
                Ok(WriteResponse::DeleteRange(resp))
            }
            WriteRequest::Txn(t) => {
                validate_txn(t, max_txn_ops)?;
                let path = self.compare_path(t, base);
                self.check_path(t, &path, base, &*txn.leases)?;
                let mut resp = txn.txn(t, &path)?;
                resp.header.revision = txn.finish() as i64;
                Ok(WriteResponse::Txn(resp))
            }
            WriteRequest::Compact(c) => {
                let rev = c.revision.max(0) as u64;
                let compacted = self.working_compacted.load(std::sync::atomic::Ordering::Acquire);
                if rev <= compacted {
                    return Err(MvccError::Compacted { compacted: compacted as i64 });
                }
                if rev > base {
                    return Err(MvccError::FutureRevision);
                }
                self.working_compacted.store(rev, std::sync::atomic::Ordering::Release);
                Ok(WriteResponse::Compact(CompactionResponse { header: ResponseHeader { revision: base as i64 } }))
            }
            WriteRequest::Alarm(a) => Ok(WriteResponse::Alarm(self.apply_alarm(a, base))),
        }
    }

    fn compare_path(&self, t: &TxnRequest, view: u64) -> TxnPath {
        let succeeded = t.compare.iter().all(|c| self.compare_holds(c, view));
        let ops = if succeeded { &t.success } else { &t.failure };
        let nested = ops
            .iter()
            .filter_map(|op| match op {
                RequestOp::Txn(n) => Some(self.compare_path(n, view)),
                _ => None,
            })
            .collect();
        TxnPath { succeeded, nested }
    }

    /// etcd's compare: over a range, every key must satisfy it; a missing single key compares
    /// as version/create/mod/lease 0 (and never matches on value).
    fn compare_holds(&self, c: &Compare, view: u64) -> bool {
        let end = RangeEnd::from_request(&c.range_end);
        if end == RangeEnd::Single {
            let v = self.get_at(&c.key, view);
            return compare_one(c, v.as_ref().map(|(r, v)| (*r, v)));
        }
        let mut ok = true;
        let mut any = false;
        self.scan_at(&c.key, &end, view, |_, r, v| {
            any = true;
            ok = compare_one(c, Some((r, v)));
            ok
        });
        // etcd: a range holding no key compares as one empty key-value.
        if any { ok } else { compare_one(c, None) }
    }

    fn check_path(&self, t: &TxnRequest, path: &TxnPath, view: u64, leases: &LeaseView) -> Result<(), MvccError> {
        let ops = if path.succeeded { &t.success } else { &t.failure };
        let mut nested = path.nested.iter();
        for op in ops {
            match op {
                RequestOp::Put(p) => check_put(self, leases, p, view)?,
                RequestOp::Range(r) => {
                    if r.key.is_empty() {
                        return Err(MvccError::EmptyKey);
                    }
                    if r.revision > 0 {
                        self.check_readable(r.revision as u64, view + 1, true)?;
                    }
                }
                RequestOp::DeleteRange(d) => {
                    if d.key.is_empty() {
                        return Err(MvccError::EmptyKey);
                    }
                }
                RequestOp::Txn(n) => self.check_path(n, nested.next().expect("path"), view, leases)?,
            }
        }
        Ok(())
    }
}

fn compare_one(c: &Compare, v: Option<(u64, &Version)>) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match &c.target {
        CompareTarget::Version(x) => v.map(|(_, v)| v.version() as i64).unwrap_or(0).cmp(x),
        CompareTarget::Create(x) => v.map(|(_, v)| v.create() as i64).unwrap_or(0).cmp(x),
        CompareTarget::Mod(x) => v.map(|(r, _)| r as i64).unwrap_or(0).cmp(x),
        CompareTarget::Lease(x) => v.map(|(_, v)| v.lease).unwrap_or(0).cmp(x),
        CompareTarget::Value(x) => match v {
            Some((_, v)) => v.value.as_ref().cmp(x.as_ref()),
            None => return false,
        },
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
        CompareResult::NotEqual => ord != Ordering::Equal,
    }
}

/// The leases a request's checks look up.
type LeaseView = LeaseTable;

fn check_put(store: &Store, leases: &LeaseView, p: &PutRequest, view: u64) -> Result<(), MvccError> {
    if p.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if (p.ignore_value || p.ignore_lease) && store.get_at(&p.key, view).is_none() {
        return Err(MvccError::KeyNotFound);
    }
    if p.lease != 0 && !p.ignore_lease && !leases.contains(p.lease) {
        return Err(MvccError::LeaseNotFound);
    }
    Ok(())
}

/// etcd's checks on a transaction's shape: operation count, empty compare keys, and no key
/// written twice (or put and deleted) where both could run, with etcd's rules for nested
/// transactions (their two branches exclude each other).
fn validate_txn(t: &TxnRequest, max_ops: usize) -> Result<(), MvccError> {
    if t.compare.len() > max_ops || t.success.len() > max_ops || t.failure.len() > max_ops {
        return Err(MvccError::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
    }
    check_intervals(&t.success, max_ops)?;
    check_intervals(&t.failure, max_ops)?;
    Ok(())
}

type Interval = (Bytes, RangeEnd);

fn intersects(dels: &[Interval], key: &Bytes) -> bool {
    dels.iter().any(|(start, end)| end.contains(start, key))
}

/// Keys put and ranges deleted by one branch, nested transactions included. This level's
/// deletes are collected first; a nested transaction's puts may not hit them nor earlier puts,
/// except that its failure branch may repeat its own success branch's keys; this level's puts
/// may hit nothing collected so far, nested deletes included.
fn check_intervals(ops: &[RequestOp], max_ops: usize) -> Result<(HashSet<Bytes>, Vec<Interval>), MvccError> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some((d.key.clone(), RangeEnd::from_request(&d.range_end))),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Bytes> = HashSet::new();
    for op in ops {
        if let RequestOp::Txn(n) = op {
            validate_txn(n, max_ops)?;
            let (then_puts, then_dels) = check_intervals(&n.success, max_ops)?;
            let (else_puts, else_dels) = check_intervals(&n.failure, max_ops)?;
            for k in &then_puts {
                if puts.contains(k) || intersects(&dels, k) {
                    return Err(MvccError::DuplicateKey);
                }
                puts.insert(k.clone());
            }
            for k in &else_puts {
                if (puts.contains(k) && !then_puts.contains(k)) || intersects(&dels, k) {
                    return Err(MvccError::DuplicateKey);
                }
                puts.insert(k.clone());
            }
            dels.extend(then_dels);
            dels.extend(else_dels);
        }
    }
    for op in ops {
        if let RequestOp::Put(p) = op {
            if puts.contains(&p.key) || intersects(&dels, &p.key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(p.key.clone());
        }
    }
    Ok((puts, dels))
}
