//! Between etcd's wire messages (`etcdserverpb`) and the state machine's request and response
//! types (`crate::mvcc`): field for field, etcd's enums to ours.

use tonic::Status;

use super::proto::{etcdserverpb as pb, mvccpb};
use crate::mvcc;

fn sort_order(v: i32) -> Result<mvcc::SortOrder, Status> {
    Ok(match pb::range_request::SortOrder::try_from(v) {
        Ok(pb::range_request::SortOrder::None) => mvcc::SortOrder::None,
        Ok(pb::range_request::SortOrder::Ascend) => mvcc::SortOrder::Ascend,
        Ok(pb::range_request::SortOrder::Descend) => mvcc::SortOrder::Descend,
        Err(_) => return Err(Status::invalid_argument(format!("etcdserver: invalid sort order {v}"))),
    })
}

fn sort_target(v: i32) -> Result<mvcc::SortTarget, Status> {
    Ok(match pb::range_request::SortTarget::try_from(v) {
        Ok(pb::range_request::SortTarget::Key) => mvcc::SortTarget::Key,
        Ok(pb::range_request::SortTarget::Version) => mvcc::SortTarget::Version,
        Ok(pb::range_request::SortTarget::Create) => mvcc::SortTarget::Create,
        Ok(pb::range_request::SortTarget::Mod) => mvcc::SortTarget::Mod,
        Ok(pb::range_request::SortTarget::Value) => mvcc::SortTarget::Value,
        Err(_) => return Err(Status::invalid_argument(format!("etcdserver: invalid sort target {v}"))),
    })
}

/// A Range request.
pub fn range(r: pb::RangeRequest) -> Result<mvcc::RangeRequest, Status> {
    Ok(mvcc::RangeRequest {
        sort_order: sort_order(r.sort_order)?,
        sort_target: sort_target(r.sort_target)?,
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

/// A Put request.
pub fn put(r: pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

/// A DeleteRange request.
pub fn delete_range(r: pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest { key: r.key, range_end: r.range_end, prev_kv: r.prev_kv }
}

fn compare(c: pb::Compare) -> Result<mvcc::Compare, Status> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match R::try_from(c.result) {
        Ok(R::Equal) => mvcc::CompareResult::Equal,
        Ok(R::Greater) => mvcc::CompareResult::Greater,
        Ok(R::Less) => mvcc::CompareResult::Less,
        Ok(R::NotEqual) => mvcc::CompareResult::NotEqual,
        Err(_) => return Err(Status::invalid_argument(format!("etcdserver: invalid compare result {}", c.result))),
    };
    // The target names which member of the union is compared; an unset union compares against
    // the type's zero value, as etcd does.
    let target = match (T::try_from(c.target), c.target_union) {
        (Ok(T::Version), Some(U::Version(v))) => mvcc::CompareTarget::Version(v),
        (Ok(T::Version), _) => mvcc::CompareTarget::Version(0),
        (Ok(T::Create), Some(U::CreateRevision(v))) => mvcc::CompareTarget::Create(v),
        (Ok(T::Create), _) => mvcc::CompareTarget::Create(0),
        (Ok(T::Mod), Some(U::ModRevision(v))) => mvcc::CompareTarget::Mod(v),
        (Ok(T::Mod), _) => mvcc::CompareTarget::Mod(0),
        (Ok(T::Value), Some(U::Value(v))) => mvcc::CompareTarget::Value(v),
        (Ok(T::Value), _) => mvcc::CompareTarget::Value(Default::default()),
        (Ok(T::Lease), Some(U::Lease(v))) => mvcc::CompareTarget::Lease(v),
        (Ok(T::Lease), _) => mvcc::CompareTarget::Lease(0),
        (Err(_), _) => {
            return Err(Status::invalid_argument(format!("etcdserver: invalid compare target {}", c.target)));
        }
    };
    Ok(mvcc::Compare { result, target, key: c.key, range_end: c.range_end })
}

fn request_op(op: pb::RequestOp) -> Result<mvcc::RequestOp, Status> {
    use pb::request_op::Request;
    Ok(match op.request {
        Some(Request::RequestRange(r)) => mvcc::RequestOp::Range(range(r)?),
        Some(Request::RequestPut(r)) => mvcc::RequestOp::Put(put(r)),
        Some(Request::RequestDeleteRange(r)) => mvcc::RequestOp::DeleteRange(delete_range(r)),
        Some(Request::RequestTxn(r)) => mvcc::RequestOp::Txn(txn(r)?),
        None => return Err(Status::invalid_argument("etcdserver: a txn operation holds no request")),
    })
}

/// A Txn request.
pub fn txn(r: pb::TxnRequest) -> Result<mvcc::TxnRequest, Status> {
    Ok(mvcc::TxnRequest {
        compare: r.compare.into_iter().map(compare).collect::<Result<_, _>>()?,
        success: r.success.into_iter().map(request_op).collect::<Result<_, _>>()?,
        failure: r.failure.into_iter().map(request_op).collect::<Result<_, _>>()?,
    })
}

/// A Compact request.
pub fn compaction(r: pb::CompactionRequest) -> mvcc::CompactionRequest {
    mvcc::CompactionRequest { revision: r.revision, physical: r.physical }
}

/// The node-level part of every answer's header.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderInfo {
    /// Cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// The Raft term.
    pub raft_term: u64,
}

impl HeaderInfo {
    /// A header at `revision`.
    pub fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft_term,
        }
    }
}

/// A key-value.
pub fn kv(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// A Range answer.
pub fn range_response(r: mvcc::RangeResponse, h: &HeaderInfo) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(h.header(r.header.revision)),
        kvs: r.kvs.into_iter().map(kv).collect(),
        more: r.more,
        count: r.count,
    }
}

/// A Put answer.
pub fn put_response(r: mvcc::PutResponse, h: &HeaderInfo) -> pb::PutResponse {
    pb::PutResponse { header: Some(h.header(r.header.revision)), prev_kv: r.prev_kv.map(kv) }
}

/// A DeleteRange answer.
pub fn delete_range_response(r: mvcc::DeleteRangeResponse, h: &HeaderInfo) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(h.header(r.header.revision)),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv).collect(),
    }
}

/// A Txn answer. Answers nested in it carry only their revision in their header (etcd fills
/// cluster, member and term on the outermost header only).
pub fn txn_response(r: mvcc::TxnResponse, h: &HeaderInfo) -> pb::TxnResponse {
    use pb::response_op::Response;
    let outer = h;
    let h = &HeaderInfo::default();
    let responses = r
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                mvcc::ResponseOp::Range(r) => Response::ResponseRange(range_response(r, h)),
                mvcc::ResponseOp::Put(r) => Response::ResponsePut(put_response(r, h)),
                mvcc::ResponseOp::DeleteRange(r) => Response::ResponseDeleteRange(delete_range_response(r, h)),
                // etcd leaves a nested transaction's own header empty.
                mvcc::ResponseOp::Txn(r) => {
                    let mut t = txn_response(r, h);
                    t.header = Some(pb::ResponseHeader::default());
                    Response::ResponseTxn(t)
                }
            }),
        })
        .collect();
    pb::TxnResponse { header: Some(outer.header(r.header.revision)), succeeded: r.succeeded, responses }
}

/// A Compact answer.
pub fn compaction_response(r: mvcc::CompactionResponse, h: &HeaderInfo) -> pb::CompactionResponse {
    pb::CompactionResponse { header: Some(h.header(r.header.revision)) }
}

/// etcd's status for a refused request: code and message as etcd's gRPC layer gives them.
pub fn mvcc_status(e: &mvcc::MvccError) -> Status {
    use mvcc::MvccError as E;
    match e {
        E::Compacted { .. } | E::FutureRevision => Status::out_of_range(format!("etcdserver: {e}")),
        E::LeaseNotFound => Status::not_found(e.to_string()),
        E::LeaseExists => Status::failed_precondition(e.to_string()),
        E::LeaseTtlTooLarge => Status::out_of_range(e.to_string()),
        E::EmptyKey | E::KeyNotFound | E::DuplicateKey | E::TooManyOps => Status::invalid_argument(e.to_string()),
        // etcd's ErrGRPCNoSpace and ErrGRPCCorrupt.
        E::NoSpace => Status::resource_exhausted(e.to_string()),
        E::Corrupt => Status::data_loss(e.to_string()),
    }
}

/// A watch event.
pub fn event(e: mvcc::Event, with_prev: bool) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            mvcc::EventKind::Put => mvccpb::event::EventType::Put as i32,
            mvcc::EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv(e.kv)),
        prev_kv: if with_prev { e.prev_kv.map(kv) } else { None },
    }
}
