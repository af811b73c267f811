//! The etcd v3 gRPC services a client talks to: KV, Lease, Cluster (member list and changes,
//! [`super::membership`]) and Maintenance (Status, Snapshot, Defragment, Alarm, HashKV; their disk
//! work in [`super::maintenance`]); Watch is in [`super::watch_api`]. Reads are served from this
//! member's store (after a read index unless `serializable`); writes go through Raft, forwarded to
//! the leader when this member is not; lease keep-alives and time-to-live go to the leader, which
//! keeps lease clocks.

use std::sync::Arc;

use openraft::async_runtime::WatchReceiver;
use prost::Message;
use tonic::{Request, Response, Status};

use super::Core;
use super::convert::{self, HeaderInfo};
use super::lease::LeaseAnswer;
use super::membership::{self, Listed, MemberAnswer, MemberChange};
use super::peer::ForwardRequest;
use super::proto::etcdserverpb::{self as pb, cluster_server, kv_server, lease_server, maintenance_server};
use crate::mvcc::{
    AlarmAction, AlarmMember, AlarmRequest, AlarmType, LeaseGrantRequest, LeaseRevokeRequest, WriteRequest,
    WriteResponse,
};
use crate::types::Member;

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
    // Whether the lease exists is checked where it is applied (it may be revoked meanwhile).
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
        self.core.check_quota(&req).await?;
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
        self.core.check_quota(&req).await?;
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

type KeepAliveStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl lease_server::Lease for EtcdApi {
    async fn lease_grant(&self, r: Request<pb::LeaseGrantRequest>) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = r.into_inner();
        // The id is chosen here, before proposing, so every member applies the same lease; a
        // TTL under the minimum is raised to it (etcd's rule).
        let ttl = r.ttl.max(self.core.leases.min_ttl());
        self.core.check_quota(&WriteRequest::LeaseGrant(LeaseGrantRequest { id: r.id, ttl })).await?;
        let mut attempts = 0;
        loop {
            let id = if r.id == 0 { self.core.leases.new_id() } else { r.id };
            let answer = self.write(WriteRequest::LeaseGrant(LeaseGrantRequest { id, ttl })).await;
            match answer {
                Ok((WriteResponse::LeaseGrant(g), h)) => {
                    return Ok(Response::new(pb::LeaseGrantResponse {
                        header: Some(h.header(g.header.revision)),
                        id: g.id,
                        ttl: g.ttl,
                        error: String::new(),
                    }));
                }
                Ok((other, _)) => return Err(unexpected("lease grant", other)),
                // An id this member picked collided (a clock stepped back): pick another.
                Err(e) if r.id == 0 && e.code() == tonic::Code::FailedPrecondition && attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn lease_revoke(
        &self,
        r: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = r.into_inner().id;
        match self.write(WriteRequest::LeaseRevoke(LeaseRevokeRequest { id })).await? {
            (WriteResponse::LeaseRevoke(v), h) => {
                Ok(Response::new(pb::LeaseRevokeResponse { header: Some(h.header(v.header.revision)) }))
            }
            (other, _) => Err(unexpected("lease revoke", other)),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        r: Request<tonic::Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        use futures_util::StreamExt;
        let core = self.core.clone();
        let mut stopping = core.stopping.clone();
        let mut input = r.into_inner();
        // One answer per request, in order; the stream ends with the client's or at shutdown.
        let out = spawn_stream(move |tx| async move {
            loop {
                let next = tokio::select! {
                    n = input.next() => n,
                    _ = stopping.wait_for(|s| *s) => return,
                };
                let req = match next {
                    Some(Ok(req)) => req,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "keep-alive stream broke");
                        return;
                    }
                    None => return,
                };
                let answer = match core.lease_query(ForwardRequest::LeaseKeepAlive { id: req.id }).await {
                    Ok(LeaseAnswer::KeepAlive { ttl }) => {
                        let h = core.header();
                        Ok(pb::LeaseKeepAliveResponse { header: Some(h.header(core.revision())), id: req.id, ttl })
                    }
                    Ok(other) => Err(Status::internal(format!("keep-alive answered with {other:?}"))),
                    Err(e) => Err(e),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(out))
    }

    async fn lease_time_to_live(
        &self,
        r: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = r.into_inner();
        match self.core.lease_query(ForwardRequest::LeaseTimeToLive { id: r.id, keys: r.keys }).await? {
            LeaseAnswer::TimeToLive { ttl, granted, keys } => {
                let h = self.core.header();
                Ok(Response::new(pb::LeaseTimeToLiveResponse {
                    header: Some(h.header(self.core.revision())),
                    id: r.id,
                    ttl,
                    granted_ttl: granted,
                    keys,
                }))
            }
            other => Err(Status::internal(format!("time-to-live answered with {other:?}"))),
        }
    }

    async fn lease_leases(
        &self,
        _: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        // Linearized like a default read: on a follower, a grant the leader already acknowledged
        // may not be applied here yet (seen as a flaky `etcdctl lease list` through a follower).
        self.core.linearize().await?;
        let store = self.core.sm.store();
        let leases = store.leases().keys().map(|&id| pb::LeaseStatus { id }).collect();
        let h = self.core.header();
        Ok(Response::new(pb::LeaseLeasesResponse { header: Some(h.header(store.revision() as i64)), leases }))
    }
}

/// A response stream fed by a task: `body` gets the sending half of a small bounded channel (a
/// client that stops reading holds the task, never the node).
pub(crate) fn spawn_stream<T, F, Fut>(
    body: F,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send + 'static>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Members as etcd lists them.
fn proto_members(members: Vec<Listed>) -> Vec<pb::Member> {
    members.into_iter().map(proto_member).collect()
}

fn proto_member((id, m, learner): Listed) -> pb::Member {
    pb::Member { id, name: m.name, peer_ur_ls: m.peer_urls, client_ur_ls: m.client_urls, is_learner: learner }
}

impl EtcdApi {
    /// Make `change` on the leader; the answer and the header to send with it.
    async fn change_members(&self, change: MemberChange) -> Result<(MemberAnswer, pb::ResponseHeader), Status> {
        let answer = self.core.change_members(change).await?;
        let mut h = self.core.header();
        h.raft_term = h.raft_term.max(answer.term);
        let header = h.header(self.core.revision());
        Ok((answer, header))
    }
}

#[tonic::async_trait]
impl cluster_server::Cluster for EtcdApi {
    async fn member_add(&self, r: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        let r = r.into_inner();
        let peer_urls = membership::peer_urls(&r.peer_ur_ls).map_err(|e| e.status())?;
        let change = MemberChange::Add { peer_urls: peer_urls.clone(), learner: r.is_learner };
        let (answer, header) = self.change_members(change).await?;
        let added = Member { name: String::new(), peer_urls, client_urls: Vec::new() };
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(header),
            member: Some(proto_member((answer.id, added, r.is_learner))),
            members: proto_members(answer.members),
        }))
    }

    async fn member_remove(
        &self,
        r: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let (answer, header) = self.change_members(MemberChange::Remove { id: r.into_inner().id }).await?;
        Ok(Response::new(pb::MemberRemoveResponse { header: Some(header), members: proto_members(answer.members) }))
    }

    async fn member_update(
        &self,
        r: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let r = r.into_inner();
        let peer_urls = membership::peer_urls(&r.peer_ur_ls).map_err(|e| e.status())?;
        let (answer, header) = self.change_members(MemberChange::Update { id: r.id, peer_urls }).await?;
        Ok(Response::new(pb::MemberUpdateResponse { header: Some(header), members: proto_members(answer.members) }))
    }

    async fn member_promote(
        &self,
        r: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let (answer, header) = self.change_members(MemberChange::Promote { id: r.into_inner().id }).await?;
        Ok(Response::new(pb::MemberPromoteResponse { header: Some(header), members: proto_members(answer.members) }))
    }

    async fn member_list(&self, r: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        if r.get_ref().linearizable {
            self.core.linearize().await?;
        }
        let members = proto_members(self.core.members());
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
        // etcd: the backend file's size, and the bytes of it in use. conflux: the data
        // directory's bytes on disk (what Defragment shrinks), and the store's retained keys,
        // values and versions (what compaction shrinks).
        let dir = super::maintenance::data_dir(&self.core);
        let on_disk = tokio::task::spawn_blocking(move || super::maintenance::disk_usage(&dir).bytes)
            .await
            .map_err(|e| Status::internal(format!("measuring the data directory: {e}")))?;
        let mut errors = Vec::new();
        if m.current_leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
        }
        // Every raised alarm, in the text form of etcd's AlarmMember message (as etcd lists them).
        for a in store.alarms().iter() {
            errors.push(format!("memberID:{} alarm:{}", a.member_id, a.alarm));
        }
        let learner = !m.membership_config.membership().voter_ids().any(|id| id == self.core.member_id);
        Ok(Response::new(pb::StatusResponse {
            header: Some(h.header(store.revision() as i64)),
            version: ETCD_API_VERSION.to_string(),
            db_size: on_disk as i64,
            leader: m.current_leader.unwrap_or(0),
            // etcd reports its Raft commit index here.
            raft_index: m.local_committed.as_ref().map(|l| l.index).unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: self.core.sm.applied_index(),
            errors,
            db_size_in_use: store.retained_bytes() as i64,
            is_learner: learner,
        }))
    }

    async fn defragment(&self, _: Request<pb::DefragmentRequest>) -> Result<Response<pb::DefragmentResponse>, Status> {
        super::maintenance::defragment(&self.core).await?;
        // etcd answers an empty response; what was reclaimed is in the member's log.
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    type SnapshotStream = super::maintenance::SnapshotStream;

    async fn snapshot(&self, _: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let reader = super::maintenance::fresh_snapshot(&self.core).await?;
        Ok(Response::new(super::maintenance::snapshot_stream(reader)))
    }

    async fn alarm(&self, r: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        EtcdApi::alarm(self, r.into_inner()).await.map(Response::new)
    }

    async fn hash_kv(&self, r: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        EtcdApi::hash_kv(self, r.into_inner()).await.map(Response::new)
    }
}

/// An alarm type from the wire.
fn alarm_type(code: i32) -> Result<AlarmType, Status> {
    u32::try_from(code)
        .ok()
        .and_then(AlarmType::from_code)
        .ok_or_else(|| Status::invalid_argument(format!("etcdserver: unknown alarm type {code}")))
}

fn alarm_member(a: &AlarmMember) -> pb::AlarmMember {
    pb::AlarmMember { member_id: a.member_id, alarm: a.alarm.code() as i32 }
}

impl EtcdApi {
    /// Maintenance Alarm: list, raise or disarm, through Raft like etcd (a GET too, so it lists
    /// every alarm committed before it).
    pub async fn alarm(&self, r: pb::AlarmRequest) -> Result<pb::AlarmResponse, Status> {
        use pb::alarm_request::AlarmAction as A;
        let action = match A::try_from(r.action) {
            Ok(A::Get) => AlarmAction::Get,
            Ok(A::Activate) => AlarmAction::Activate,
            Ok(A::Deactivate) => AlarmAction::Deactivate,
            Err(_) => return Err(Status::invalid_argument(format!("etcdserver: unknown alarm action {}", r.action))),
        };
        let req = AlarmRequest { action, member_id: r.member_id, alarm: alarm_type(r.alarm)? };
        match self.write(WriteRequest::Alarm(req)).await? {
            (WriteResponse::Alarm(a), h) => {
                if action == AlarmAction::Deactivate && !a.alarms.is_empty() {
                    tracing::warn!(member = format!("{:x}", req.member_id), alarm = %req.alarm, "alarm disarmed");
                }
                Ok(pb::AlarmResponse {
                    header: Some(h.header(a.header.revision)),
                    alarms: a.alarms.iter().map(alarm_member).collect(),
                })
            }
            (other, _) => Err(unexpected("alarm", other)),
        }
    }

    /// Maintenance HashKV, from this member's own state (not linearized, as etcd's).
    pub async fn hash_kv(&self, r: pb::HashKvRequest) -> Result<pb::HashKvResponse, Status> {
        let store = self.core.sm.store();
        let revision = r.revision.max(0) as u64;
        let h = tokio::task::spawn_blocking(move || store.hash_kv(revision))
            .await
            .map_err(|e| Status::internal(format!("hash: {e}")))?
            .map_err(|e| convert::mvcc_status(&e))?;
        Ok(pb::HashKvResponse {
            header: Some(self.core.header().header(h.current as i64)),
            hash: h.hash,
            compact_revision: h.compacted as i64,
        })
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
