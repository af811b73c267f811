//! Range reads: limit with etcd's `count` and `more`, keys-only, count-only, sorting, revision
//! filters, and reads at older revisions. Lock-free: see `store.rs`.

use bytes::Bytes;

use super::error::MvccError;
use super::request::{KeyValue, RangeRequest, RangeResponse, ResponseHeader, SortOrder, SortTarget};
use super::store::{RangeEnd, Store};

impl Store {
    /// Serve a range at the current revision (or the one the request names).
    ///
    /// # Errors
    /// [`MvccError::EmptyKey`], [`MvccError::Compacted`], [`MvccError::FutureRevision`].
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        loop {
            match self.range_at(req, self.revision(), false) {
                // A read of the latest state overtaken by a compaction past the revision it
                // started at: read again at the new latest revision (etcd never refuses those).
                Err(MvccError::Compacted { .. }) if req.revision <= 0 => continue,
                r => return r,
            }
        }
    }

    /// Serve a range as of `current` being the newest revision (a transaction's own view).
    pub(crate) fn range_at(
        &self,
        req: &RangeRequest,
        current: u64,
        in_apply: bool,
    ) -> Result<RangeResponse, MvccError> {
        if req.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        let rev = if req.revision <= 0 { current } else { req.revision as u64 };
        self.check_readable(rev, current, in_apply)?;

        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        // etcd sorts ascending by default when the target is not the key.
        let order = match (req.sort_order, req.sort_target) {
            (SortOrder::None, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (o, _) => o,
        };
        let sorted = order != SortOrder::None && !(order == SortOrder::Ascend && req.sort_target == SortTarget::Key);
        // Without an explicit sort order or filters, only the first limit + 1 keys (in key order)
        // are taken, and sorted among themselves, as etcd does.
        let keep = if req.limit > 0 && req.sort_order == SortOrder::None && !filtered {
            req.limit as usize + 1
        } else {
            usize::MAX
        };
        let with_values = !req.keys_only && !req.count_only;

        let end = RangeEnd::from_request(&req.range_end);
        let mut count = 0i64;
        let mut kvs: Vec<KeyValue> = Vec::new();
        self.scan_at(&req.key, &end, rev, |key, mod_rev, v| {
            count += 1;
            if !req.count_only && kvs.len() < keep {
                kvs.push(v.to_kv(key, mod_rev, with_values || sorted && req.sort_target == SortTarget::Value));
            }
            true
        });
        self.recheck(rev)?;

        if filtered {
            kvs.retain(|kv| {
                (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
                    && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            });
        }
        if sorted {
            sort(&mut kvs, req.sort_target, order);
            if !with_values {
                for kv in &mut kvs {
                    kv.value = Bytes::new();
                }
            }
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        Ok(RangeResponse { header: ResponseHeader { revision: current as i64 }, kvs, more, count })
    }
}

fn sort(kvs: &mut [KeyValue], target: SortTarget, order: SortOrder) {
    // Stable sorts with the comparison itself reversed for descending order, so keys with equal
    // targets stay in ascending key order either way, as etcd's answers have them.
    let cmp = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
        _ if target == SortTarget::Key => {}
        _ => kvs.sort_by(cmp),
    }
}
