//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): a client request and a snapshot
//! file handled by the same code the node runs, without a network or a cluster. Nothing here is
//! used by the node itself. Not a stable API.

use std::path::Path;

use conflux_engine::snapshot::{SnapshotInfo, Snapshots};
use prost::Message;
use tonic::Status;

use crate::mvcc::{DEFAULT_MAX_TXN_OPS, Store, WriteRequest, WriteResponse};
use crate::node::api;
use crate::node::convert::{self, HeaderInfo};
use crate::node::proto::etcdserverpb as pb;
use crate::state_machine::SmError;

/// The etcd KV requests [`kv_request`] decodes, chosen by its `kind` modulo their number.
pub const KV_REQUESTS: [&str; 5] = ["range", "put", "delete_range", "txn", "compact"];

/// Decode `bytes` as the etcd request `KV_REQUESTS[kind % 5]` (the protobuf message a gRPC
/// call carries), check and convert it as the KV service does, run it on `store` as the state
/// machine applies a committed write (or as the service serves a read), and encode the answer
/// the service would send.
///
/// # Errors
/// The status the service would answer: an undecodable message, a refused request, etcd's
/// errors from the store.
pub fn kv_request(store: &Store, kind: u8, bytes: &[u8]) -> Result<Vec<u8>, Status> {
    fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, Status> {
        // What tonic answers for a body that does not decode.
        M::decode(bytes).map_err(|e| Status::internal(e.to_string()))
    }
    let h = HeaderInfo::default();
    let req = match kind as usize % KV_REQUESTS.len() {
        0 => {
            let req = api::range_request(decode(bytes)?)?;
            let r = store.range(&req).map_err(|e| convert::mvcc_status(&e))?;
            return Ok(convert::range_response(r, &h).encode_to_vec());
        }
        1 => api::put_request(decode(bytes)?)?,
        2 => api::delete_range_request(decode(bytes)?)?,
        3 => api::txn_request(decode(bytes)?, DEFAULT_MAX_TXN_OPS)?,
        _ => WriteRequest::Compact(convert::compaction(decode::<pb::CompactionRequest>(bytes)?)),
    };
    let resp = store.apply(&req).map_err(|e| convert::mvcc_status(&e))?;
    Ok(match resp {
        WriteResponse::Put(r) => convert::put_response(r, &h).encode_to_vec(),
        WriteResponse::DeleteRange(r) => convert::delete_range_response(r, &h).encode_to_vec(),
        WriteResponse::Txn(r) => convert::txn_response(r, &h).encode_to_vec(),
        WriteResponse::Compact(r) => {
            if matches!(req, WriteRequest::Compact(ref c) if c.physical) {
                store.compact_physically();
            }
            convert::compaction_response(r, &h).encode_to_vec()
        }
        // Only the lease service makes lease requests; the KV requests above never answer so.
        WriteResponse::LeaseGrant(_) | WriteResponse::LeaseRevoke(_) | WriteResponse::Alarm(_) => {
            unreachable!("a KV request was answered as a lease or alarm request")
        }
    })
}

/// Load the snapshot file at `path` as a member does at start or on install: the container's
/// checks, the Raft metadata, then the store from the body. Returns the store.
///
/// # Errors
/// As loading: a damaged container, metadata or body that does not decode.
pub fn load_snapshot(snapshots: &Snapshots, path: &Path) -> Result<Store, SmError> {
    crate::state_machine::load(snapshots, path).map(|(_, store, _)| store)
}

/// Write a finished snapshot of log id (1, 1) holding `raft_meta` and the uncompressed store
/// snapshot `body`, as the state machine writes one (for seeds, and to fuzz what lies behind the
/// container's checksums).
///
/// # Errors
/// I/O errors of the snapshot directory.
pub fn write_snapshot(snapshots: &Snapshots, raft_meta: &[u8], body: &[u8]) -> conflux_engine::Result<SnapshotInfo> {
    let mut w = snapshots.create(1, 1, raft_meta, &[], 1)?;
    std::io::Write::write_all(&mut w, body).map_err(|source| conflux_engine::Error::Io {
        op: "write snapshot",
        path: snapshots.dir().into(),
        source,
    })?;
    w.finish()
}

/// The Raft metadata of a snapshot of an empty single-member cluster, encoded as snapshots hold
/// it.
pub fn empty_snapshot_meta() -> Vec<u8> {
    postcard::to_stdvec(&crate::types::SnapshotMeta::default()).expect("snapshot metadata encodes")
}
