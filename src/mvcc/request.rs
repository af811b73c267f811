//! The etcd v3 requests and responses the state machine applies and answers, as Rust types.
//! Field names and meanings are etcd's (`etcdserverpb`), so the gRPC layer maps them one to one;
//! revisions are etcd's `int64` values. These are also what the Raft log carries (encoded by the
//! node's codec).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A key and its metadata at some revision (etcd's `mvccpb.KeyValue`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// Revision of the key's last creation.
    pub create_revision: i64,
    /// Revision of the key's last modification.
    pub mod_revision: i64,
    /// Writes since the key was created (1 after creation).
    pub version: i64,
    /// The value (empty with `keys_only`).
    pub value: Bytes,
    /// Lease attached to the key (0 = none).
    pub lease: i64,
}

/// Sort order of a range (etcd's `RangeRequest.SortOrder`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    /// Key order, ascending (as stored).
    #[default]
    None,
    /// Ascending by the sort target.
    Ascend,
    /// Descending by the sort target.
    Descend,
}

/// What a range sorts by (etcd's `RangeRequest.SortTarget`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// `version`.
    Version,
    /// `create_revision`.
    Create,
    /// `mod_revision`.
    Mod,
    /// The value.
    Value,
}

/// etcd's `RangeRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    /// First key (or the only key when `range_end` is empty).
    pub key: Bytes,
    /// End of the range, exclusive; `\0` means "every key >= key".
    pub range_end: Bytes,
    /// Most keys returned (0 = no limit).
    pub limit: i64,
    /// Read at this revision (<= 0 = the current one).
    pub revision: i64,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Serve locally without read-index (node-level; the store ignores it).
    pub serializable: bool,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Keep keys with `mod_revision >=` this (0 = off).
    pub min_mod_revision: i64,
    /// Keep keys with `mod_revision <=` this (0 = off).
    pub max_mod_revision: i64,
    /// Keep keys with `create_revision >=` this (0 = off).
    pub min_create_revision: i64,
    /// Keep keys with `create_revision <=` this (0 = off).
    pub max_create_revision: i64,
}

/// etcd's `PutRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// Key.
    pub key: Bytes,
    /// Value.
    pub value: Bytes,
    /// Lease to attach (0 = none).
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

/// etcd's `DeleteRangeRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    /// First key (or the only key).
    pub key: Bytes,
    /// End of the range, exclusive; `\0` means "every key >= key".
    pub range_end: Bytes,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// How a compare's two sides relate (etcd's `Compare.CompareResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    /// `=`
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

/// What a compare looks at, with the value to compare against (etcd's `Compare.target` and
/// `target_union`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The key's `version`.
    Version(i64),
    /// The key's `create_revision`.
    Create(i64),
    /// The key's `mod_revision`.
    Mod(i64),
    /// The key's value.
    Value(Bytes),
    /// The key's lease.
    Lease(i64),
}

/// etcd's `Compare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The relation that must hold.
    pub result: CompareResult,
    /// Target and value.
    pub target: CompareTarget,
    /// The key.
    pub key: Bytes,
    /// With a range end, the compare must hold for every key in `[key, range_end)`.
    pub range_end: Bytes,
}

/// One operation of a transaction branch (etcd's `RequestOp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    /// A read.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// etcd's `TxnRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    /// All must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Run when every compare holds.
    pub success: Vec<RequestOp>,
    /// Run otherwise.
    pub failure: Vec<RequestOp>,
}

/// etcd's `CompactionRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionRequest {
    /// Drop versions superseded before this revision.
    pub revision: i64,
    /// Wait for the physical compaction before answering (node-level).
    pub physical: bool,
}

/// A lease grant with its id already chosen (by the member that took the request), so every
/// member applies the same lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantRequest {
    /// Lease id (never 0 once proposed).
    pub id: i64,
    /// TTL, seconds (already raised to the minimum).
    pub ttl: i64,
}

/// A lease revoke: the client's, or the leader's on expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeRequest {
    /// Lease id.
    pub id: i64,
}

/// The write requests the Raft log carries. New variants go at the end: the log holds them by
/// position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteRequest {
    /// Put.
    Put(PutRequest),
    /// DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// Txn (may hold reads).
    Txn(TxnRequest),
    /// Compact.
    Compact(CompactionRequest),
    /// LeaseGrant.
    LeaseGrant(LeaseGrantRequest),
    /// LeaseRevoke (deletes the lease's keys in one revision).
    LeaseRevoke(LeaseRevokeRequest),
    /// Alarm (list, raise or clear; changes no revision).
    Alarm(super::alarm::AlarmRequest),
}

impl std::fmt::Display for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteRequest::Put(p) => write!(f, "put {:?} ({} bytes)", p.key, p.value.len()),
            WriteRequest::DeleteRange(d) => write!(f, "delete {:?}..{:?}", d.key, d.range_end),
            WriteRequest::Txn(t) => {
                write!(f, "txn ({} compares, {}/{} ops)", t.compare.len(), t.success.len(), t.failure.len())
            }
            WriteRequest::Compact(c) => write!(f, "compact {}", c.revision),
            WriteRequest::LeaseGrant(g) => write!(f, "lease grant {:x} ttl {}", g.id, g.ttl),
            WriteRequest::LeaseRevoke(r) => write!(f, "lease revoke {:x}", r.id),
            WriteRequest::Alarm(a) => write!(f, "alarm {:?} {} for {:x}", a.action, a.alarm, a.member_id),
        }
    }
}

/// The header of every answer (the store fills the revision; the node adds cluster, member and
/// term).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHeader {
    /// The store's revision when the request was served.
    pub revision: i64,
}

/// etcd's `RangeResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The keys (none with `count_only`).
    pub kvs: Vec<KeyValue>,
    /// More keys than `limit` matched.
    pub more: bool,
    /// Keys in the range (before limit and filters, as etcd counts).
    pub count: i64,
}

/// etcd's `PutResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The previous key-value, when asked and present.
    pub prev_kv: Option<KeyValue>,
}

/// etcd's `DeleteRangeResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    /// Header.
    pub header: ResponseHeader,
    /// Keys deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked.
    pub prev_kvs: Vec<KeyValue>,
}

/// One answer of a transaction (etcd's `ResponseOp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    /// Range.
    Range(RangeResponse),
    /// Put.
    Put(PutResponse),
    /// DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// Nested Txn.
    Txn(TxnResponse),
}

/// etcd's `TxnResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Header.
    pub header: ResponseHeader,
    /// Whether every compare held.
    pub succeeded: bool,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

/// etcd's `CompactionResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionResponse {
    /// Header.
    pub header: ResponseHeader,
}

/// The answer to a lease grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    /// Header.
    pub header: ResponseHeader,
    /// Lease id.
    pub id: i64,
    /// Granted TTL, seconds.
    pub ttl: i64,
}

/// The answer to a lease revoke.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    /// Header.
    pub header: ResponseHeader,
}

/// The answer to a [`WriteRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteResponse {
    /// Put.
    Put(PutResponse),
    /// DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// Txn.
    Txn(TxnResponse),
    /// Compact.
    Compact(CompactionResponse),
    /// LeaseGrant.
    LeaseGrant(LeaseGrantResponse),
    /// LeaseRevoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// Alarm.
    Alarm(super::alarm::AlarmResponse),
}

impl WriteResponse {
    /// The header revision.
    pub fn revision(&self) -> i64 {
        match self {
            WriteResponse::Put(r) => r.header.revision,
            WriteResponse::DeleteRange(r) => r.header.revision,
            WriteResponse::Txn(r) => r.header.revision,
            WriteResponse::Compact(r) => r.header.revision,
            WriteResponse::LeaseGrant(r) => r.header.revision,
            WriteResponse::LeaseRevoke(r) => r.header.revision,
            WriteResponse::Alarm(r) => r.header.revision,
        }
    }
}
