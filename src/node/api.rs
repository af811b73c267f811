//! The etcd v3 gRPC services a client talks to: KV, Cluster (MemberList) and Maintenance
//! (Status). Reads are served from this member's store (after a read index unless
//! `serializable`); writes go through Raft, forwarded to the leader when this member is not.

use std::sync::Arc;

use openraft::async_runtime::WatchReceiver;
use prost::Message;
use tonic::{Request, Response, Status};

use super::Core;
use super::convert::{self, HeaderInfo};
use super::proto::etcdserverpb::{self as pb, cluster_server, kv_server, maintenance_server};
use crate::mvcc::{WriteRequest, WriteResponse};

/// The etcd API version conflux's answers follow (reported by Status).
pub const ETCD_API_VERSION: &str = "3.4.0";

/// The client-facing services over one node.
#[derive(Clone)]
pub struct EtcdApi {
    core: Arc<Core>,
}

impl EtcdApi {
    /// Services over `core`.
    pub fn new(core: Arc<Core>) -> EtcdApi {
        EtcdApi { core }
    }

    /// Refuse a write request larger than `--max-request-bytes`, as etcd does.
    fn check_size(&self, m: &impl Message) -> Result<(), Status> {
        if m.encoded_len() > self.core.max_request_bytes {
            return Err(Status::invalid_argument("etcdserver: request is too large"));
        }
        Ok(())
    }

    async fn write(&self, req: WriteRequest) -> Result<(WriteResponse, HeaderInfo), Status> {
        let (resp, term) = self.core.write(req).await?;
        let mut h = self.core.header();
        h.raft_term = h.raft_term.max(term);
        Ok((resp, h))
    }
}

fn empty_key(key: &[u8]) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("etcdserver: key is not provided"));
    }
    Ok(())
}

/// etcd's checks of a put before it is proposed.
fn check_put(p: &pb::PutRequest) -> Result<(), Status> {
    empty_key(&p.key)?;
    if p.ignore_value && !p.value.is_empty() {
        return Err(Status::invalid_argument("etcdserver: value is provided"));
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Status::invalid_argument("etcdserver: lease is provided"));
    }
    // The node grants no leases yet (the Lease service is not served), so a put naming one names
    // a lease that does not exist: refused as etcd refuses an unknown lease.
    if p.lease != 0 {
        return Err(convert::mvcc_status(&crate::mvcc::MvccError::LeaseNotFound));
    }
    Ok(())
}

/// etcd's checks of a transaction before it is proposed: a nested transaction gets only the
/// operation budget its parent leaves (`max_ops` minus the parent's largest list).
fn check_txn(t: &pb::TxnRequest, max_ops: usize) -> Result<(), Status> {
    use pb::request_op::Request as R;
    let used = t.compare.len().max(t.success.len()).max(t.failure.len());
    if used > max_ops {
        return Err(Status::invalid_argument("etcdserver: too many operations in txn request"));
    }
    for c in &t.compare {
        empty_key(&c.key)?;
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(R::RequestRange(r)) => empty_key(&r.key)?,
            Some(R::RequestPut(p)) => check_put(p)?,
            Some(R::RequestDeleteRange(r)) => empty_key(&r.key)?,
            Some(R::RequestTxn(t)) => check_txn(t, max_ops - used)?,
            None => {}
        }
    }
    Ok(())
}

/// A Range as the service checks and converts it before serving it.
pub(crate) fn range_request(r: pb::RangeRequest) -> Result<crate::mvcc::RangeRequest, Status> {
    let req = convert::range(r)?;
    empty_key(&req.key)?;
    Ok(req)
}

/// A Put as the service checks and converts it before proposing it.
pub(crate) fn put_request(r: pb::PutRequest) -> Result<WriteRequest, Status> {
    check_put(&r)?;
    Ok(WriteRequest::Put(convert::put(r)))
}

/// A DeleteRange as the service checks and converts it before proposing it.
pub(crate) fn delete_range_request(r: pb::DeleteRangeRequest) -> Result<WriteRequest, Status> {
    let req = convert::delete_range(r);
    empty_key(&req.key)?;
    Ok(WriteRequest::DeleteRange(req))
}

/// A Txn as the service checks and converts it before proposing it.
pub(crate) fn txn_request(r: pb::TxnRequest, max_ops: usize) -> Result<WriteRequest, Status> {
    check_txn(&r, max_ops)?;
    Ok(WriteRequest::Txn(convert::txn(r)?))
}

fn unexpected(what: &str, resp: WriteResponse) -> Status {
    Status::internal(format!("state machine answered a {what} with {resp:?}"))
}

#[tonic::async_trait]
impl kv_server::Kv for EtcdApi {
    async fn range(&self, r: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let req = range_request(r.into_inner())?;
        if !req.serializable {
            self.core.linearize().await?;
        }
        let h = self.core.header();
        let store = self.core.sm.store();
        let resp = store.range(&req).map_err(|e| convert::mvcc_status(&e))?;
        Ok(Response::new(convert::range_response(resp, &h)))
    }

    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.check_size(r.get_ref())?;
        let req = put_request(r.into_inner())?;
        match self.write(req).await? {
            (WriteResponse::Put(p), h) => Ok(Response::new(convert::put_response(p, &h))),
            (other, _) => Err(unexpected("put", other)),
        }
    }

    async fn delete_range(
        &self,
        r: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.check_size(r.get_ref())?;
        let req = delete_range_request(r.into_inner())?;
        match self.write(req).await? {
            (WriteResponse::DeleteRange(d), h) => Ok(Response::new(convert::delete_range_response(d, &h))),
            (other, _) => Err(unexpected("delete", other)),
        }
    }

    async fn txn(&self, r: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        self.check_size(r.get_ref())?;
        let req = txn_request(r.into_inner(), self.core.max_txn_ops)?;
        match self.write(req).await? {
            (WriteResponse::Txn(t), h) => Ok(Response::new(convert::txn_response(t, &h))),
            (other, _) => Err(unexpected("txn", other)),
        }
    }

    async fn compact(&self, r: Request<pb::CompactionRequest>) -> Result<Response<pb::CompactionResponse>, Status> {
        self.check_size(r.get_ref())?;
        let req = convert::compaction(r.into_inner());
        let physical = req.physical;
        let (resp, h) = self.write(WriteRequest::Compact(req)).await?;
        let WriteResponse::Compact(c) = resp else { return Err(unexpected("compact", resp)) };
        if physical {
            // Remove the compacted versions now (or wait for the compactor thread doing it).
            let store = self.core.sm.store();
            tokio::task::spawn_blocking(move || store.compact_physically())
                .await
                .map_err(|e| Status::internal(format!("physical compaction: {e}")))?;
        }
        Ok(Response::new(convert::compaction_response(c, &h)))
    }
}

#[tonic::async_trait]
impl cluster_server::Cluster for EtcdApi {
    async fn member_list(&self, r: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        if r.get_ref().linearizable {
            self.core.linearize().await?;
        }
        let members = self
            .core
            .members()
            .into_iter()
            .map(|(id, m, learner)| pb::Member {
                id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner: learner,
            })
            .collect();
        let h = self.core.header();
        Ok(Response::new(pb::MemberListResponse { header: Some(h.header(self.core.revision())), members }))
    }
}

#[tonic::async_trait]
impl maintenance_server::Maintenance for EtcdApi {
    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let h = self.core.header();
        let m = self.core.raft.metrics().borrow_watched().clone();
        let store = self.core.sm.store();
        let db = store.retained_bytes() as i64;
        let mut errors = Vec::new();
        if m.current_leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
        }
        let learner = !m.membership_config.membership().voter_ids().any(|id| id == self.core.member_id);
        Ok(Response::new(pb::StatusResponse {
            header: Some(h.header(store.revision() as i64)),
            version: ETCD_API_VERSION.to_string(),
            db_size: db,
            leader: m.current_leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: self.core.sm.applied_index(),
            errors,
            db_size_in_use: db,
            is_learner: learner,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &[u8]) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: key.to_vec().into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn txn_checks_match_etcd() {
        let ok = pb::TxnRequest { success: vec![put(b"a")], ..Default::default() };
        assert!(check_txn(&ok, 128).is_ok());
        let empty = pb::TxnRequest { failure: vec![put(b"")], ..Default::default() };
        assert_eq!(check_txn(&empty, 128).unwrap_err().message(), "etcdserver: key is not provided");
        let many = pb::TxnRequest { success: vec![put(b"a"); 3], ..Default::default() };
        let e = check_txn(&many, 2).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::InvalidArgument, "etcdserver: too many operations in txn request")
        );
    }
}
