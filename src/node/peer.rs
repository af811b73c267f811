//! Member-to-member traffic over gRPC (`proto/conflux/peer.proto`): openraft's RPCs (append —
//! streamed and pipelined —, vote, snapshot transfer) and the requests a member hands to the
//! leader (client writes, read index). Payloads are openraft's own messages in the engine's codec
//! (postcard). One HTTP/2 connection per peer carries everything; every request names the
//! sender's cluster id, and a member of another cluster is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt};
use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use super::lease::{LeaseAnswer, Leases};
use super::membership::{self, MemberAnswer, MemberChange, MemberError};
use super::proto::peer::{self as pb, peer_client::PeerClient, peer_server};
use crate::mvcc::WriteRequest;
use crate::state_machine::{SnapshotFile, StateMachine};
use crate::types::{ApplyResult, LogId, Member, SnapshotMeta, TypeConfig};

/// The metadata key carrying the sender's cluster id (hex).
const CLUSTER_HEADER: &str = "conflux-cluster-id";
/// Snapshot file bytes per chunk.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Largest peer message (a batch of big entries).
pub const MAX_PEER_MESSAGE: usize = 1 << 30;

type Vote = openraft::alias::VoteOf<TypeConfig>;

/// Encode a peer message.
pub fn encode<T: Serialize>(v: &T) -> pb::Payload {
    pb::Payload { data: postcard::to_stdvec(v).expect("peer messages always serialize").into() }
}

/// Decode a peer message.
pub fn decode<T: DeserializeOwned>(p: &pb::Payload) -> Result<T, Status> {
    postcard::from_bytes(&p.data).map_err(|e| Status::invalid_argument(format!("undecodable peer message: {e}")))
}

/// What a member says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Cluster id.
    pub cluster_id: u64,
    /// Member id.
    pub member_id: u64,
    /// `--name`.
    pub name: String,
    /// The members it knows (id, member, is learner).
    pub members: Vec<(u64, Member, bool)>,
}

/// A request handed to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// A client write.
    Write(WriteRequest),
    /// Record a member's client URLs (and name) in the membership (kept in its place for older
    /// members; run as [`MemberChange::Publish`]).
    Publish {
        /// The member.
        id: u64,
        /// What it publishes.
        member: Member,
    },
    /// Renew a lease (the leader keeps lease deadlines).
    LeaseKeepAlive {
        /// Lease id.
        id: i64,
    },
    /// A lease's remaining TTL (and keys).
    LeaseTimeToLive {
        /// Lease id.
        id: i64,
        /// Whether to list the attached keys.
        keys: bool,
    },
    /// A membership change (etcd's Cluster service).
    Member(MemberChange),
    /// The newest membership the asked member knows committed (answered by any member; a member
    /// asks to learn whether it was removed while cut off, [`super::removal`]).
    CommittedMembership,
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    /// Committed and applied.
    Done {
        /// What applying it answered.
        result: ApplyResult,
        /// The entry's term.
        term: u64,
    },
    /// Not the leader: nothing was appended; try `leader`.
    NotLeader {
        /// The leader it knows of.
        leader: Option<u64>,
    },
    /// Appended, but the leader lost leadership before it committed: it may or may not commit.
    Unknown,
    /// Refused for another reason.
    Failed(String),
    /// The leader's answer to a lease keep-alive or time-to-live.
    Lease(LeaseAnswer),
    /// The leader's answer to a membership change: done, or refused by etcd's rules.
    Member(Result<MemberAnswer, MemberError>),
    /// A member's newest committed membership: its log id and member ids.
    Committed {
        /// Where it is in the log.
        log_id: Option<LogId>,
        /// Every member in it, voters and learners.
        members: Vec<u64>,
    },
}

/// The leader's answer to a read-index request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadIndexReply {
    /// Apply up to this index, then read.
    Index(u64),
    /// Not the leader.
    NotLeader {
        /// The leader it knows of.
        leader: Option<u64>,
    },
    /// No quorum answered, or another failure.
    Failed(String),
}

/// The connections to the other members, kept open and shared by Raft and the forwarding path.
#[derive(Debug)]
pub struct Peers {
    cluster_id: u64,
    heartbeat: Duration,
    election_timeout: Duration,
    /// How to dial https peer URLs (`--peer-trusted-ca-file`, `--peer-cert-file`).
    tls: Option<ClientTlsConfig>,
    /// The source address of connections to other members (`--peer-local-address`).
    local_address: Option<IpAddr>,
    channels: Mutex<HashMap<u64, (String, Channel)>>,
    /// Each member's peer URL in the newest membership seen: it wins over the one a caller
    /// passes (openraft hands its replication streams the member as it was when they started).
    known: ArcSwap<HashMap<u64, String>>,
}

impl Peers {
    /// No connections yet; https peer URLs are dialled with `tls`, every connection from
    /// `local_address` when given.
    pub fn new(
        cluster_id: u64,
        heartbeat: Duration,
        election_timeout: Duration,
        tls: Option<ClientTlsConfig>,
        local_address: Option<IpAddr>,
    ) -> Arc<Peers> {
        Arc::new(Peers {
            cluster_id,
            heartbeat,
            election_timeout,
            tls,
            local_address,
            channels: Mutex::new(HashMap::new()),
            known: ArcSwap::from_pointee(HashMap::new()),
        })
    }

    /// The connection to member `id` at `url` (made lazily, reused while the URL is the same).
    pub fn channel(&self, id: u64, url: &str) -> Result<Channel, Status> {
        let mut map = self.channels.lock();
        if let Some((u, ch)) = map.get(&id)
            && u == url
        {
            return Ok(ch.clone());
        }
        let ch =
            endpoint(url, self.heartbeat, self.election_timeout, self.tls.as_ref(), self.local_address)?.connect_lazy();
        map.insert(id, (url.to_string(), ch.clone()));
        Ok(ch)
    }

    /// A client for member `id` (`member` gives its URLs, unless a newer membership moved it).
    pub fn client(&self, id: u64, member: &Member) -> Result<PeerClient<Channel>, Status> {
        let known = self.known.load();
        let url = known
            .get(&id)
            .or_else(|| member.peer_urls.first())
            .ok_or_else(|| Status::unavailable(format!("member {id:x} has no peer URL")))?;
        Ok(client(self.channel(id, url)?))
    }

    /// Take the peer URLs of a new membership (members no longer in it are forgotten).
    pub fn learn<'a>(&self, members: impl Iterator<Item = (u64, &'a Member)>) {
        let known = members.filter_map(|(id, m)| Some((id, m.peer_urls.first()?.clone()))).collect();
        self.known.store(Arc::new(known));
    }

    /// A request carrying this cluster's id.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert(CLUSTER_HEADER, format!("{:x}", self.cluster_id).parse().expect("hex is ASCII"));
        r
    }
}

fn endpoint(
    url: &str,
    heartbeat: Duration,
    election_timeout: Duration,
    tls: Option<&ClientTlsConfig>,
    local_address: Option<IpAddr>,
) -> Result<Endpoint, Status> {
    let mut ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| Status::invalid_argument(format!("bad peer URL {url}: {e}")))?;
    if url.starts_with("https://") {
        let tls = tls.ok_or_else(|| {
            Status::unavailable(format!("peer URL {url} is https, but no --peer-trusted-ca-file verifies it"))
        })?;
        ep = ep.tls_config(tls.clone()).map_err(|e| Status::unavailable(format!("TLS for peer URL {url}: {e}")))?;
    }
    Ok(ep
        .local_address(local_address)
        .connect_timeout(election_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(heartbeat.max(Duration::from_millis(100)))
        .keep_alive_timeout(election_timeout)
        .keep_alive_while_idle(true)
        .initial_connection_window_size(8 << 20)
        .initial_stream_window_size(4 << 20))
}

fn client(ch: Channel) -> PeerClient<Channel> {
    PeerClient::new(ch).max_decoding_message_size(MAX_PEER_MESSAGE).max_encoding_message_size(MAX_PEER_MESSAGE)
}

/// Ask the member at `url` who it is (used before this member has an identity), dialling from
/// `local_address` when given.
pub async fn hello(
    url: &str,
    timeout: Duration,
    tls: Option<&ClientTlsConfig>,
    local_address: Option<IpAddr>,
) -> Result<Hello, String> {
    let ep = endpoint(url, timeout, timeout, tls, local_address).map_err(|e| e.message().to_string())?;
    let call = async {
        let ch = ep.connect().await.map_err(|e| format!("cannot connect: {e}"))?;
        let reply = client(ch).hello(pb::Payload::default()).await.map_err(|e| e.message().to_string())?;
        decode::<Hello>(reply.get_ref()).map_err(|e| e.message().to_string())
    };
    tokio::time::timeout(timeout, call).await.map_err(|_| format!("no answer within {timeout:?}"))?
}

fn unreachable(target: u64, e: &Status) -> Unreachable<TypeConfig> {
    Unreachable::from_string(format!("member {target:x}: {}", e.message()))
}

/// Transport failures make the peer unreachable (openraft backs off); anything else is a
/// network error.
fn rpc_error(target: u64, e: Status) -> RPCError<TypeConfig> {
    match e.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(unreachable(target, &e))
        }
        _ => RPCError::Network(NetworkError::from_string(format!("member {target:x}: {e}"))),
    }
}

/// openraft's network: one per target member.
pub struct Network {
    peers: Arc<Peers>,
    target: u64,
    member: Member,
}

impl Network {
    fn client(&self) -> Result<PeerClient<Channel>, RPCError<TypeConfig>> {
        self.peers.client(self.target, &self.member).map_err(|e| rpc_error(self.target, e))
    }

    async fn unary<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Unary,
        msg: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let mut c = self.client()?;
        let req = self.peers.request(encode(msg));
        let call = async {
            match method {
                Unary::Append => c.append_entries(req).await,
                Unary::Vote => c.vote(req).await,
            }
        };
        let reply = tokio::time::timeout(ttl, call)
            .await
            .map_err(|_| {
                RPCError::Unreachable(Unreachable::from_string(format!(
                    "member {:x}: no {method:?} answer within {ttl:?}",
                    self.target
                )))
            })?
            .map_err(|e| rpc_error(self.target, e))?;
        decode(reply.get_ref()).map_err(|e| rpc_error(self.target, e))
    }
}

/// The request-response Raft RPCs.
#[derive(Debug, Clone, Copy)]
enum Unary {
    Append,
    Vote,
}

type RemoteResult<T> = Result<T, String>;

impl RaftNetworkV2<TypeConfig> for Network {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let r: RemoteResult<AppendEntriesResponse<TypeConfig>> =
            self.unary(Unary::Append, &rpc, option.hard_ttl()).await?;
        r.map_err(|e| RPCError::Network(NetworkError::from_string(e)))
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> openraft::base::BoxFuture<
        's,
        Result<
            openraft::base::BoxStream<'s, Result<openraft::raft::StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        let target = self.target;
        Box::pin(async move {
            let mut c = self.client()?;
            let req = self.peers.request(input.map(|r| encode(&r)));
            // Accepting the stream takes a round trip (two on a new connection). openraft's TTL
            // here is the heartbeat interval: on a link slower than 3/4 of it no stream would
            // ever be accepted and nothing would replicate (docs/reliability.md, "Network
            // partitions"). A dead member is still given up on within an election timeout.
            let accept = option.soft_ttl().max(self.peers.election_timeout);
            let reply = tokio::time::timeout(accept, c.stream_append(req))
                .await
                .map_err(|_| {
                    RPCError::Unreachable(Unreachable::from_string(format!(
                        "member {target:x}: append stream not accepted within {accept:?}"
                    )))
                })?
                .map_err(|e| rpc_error(target, e))?;
            let out = reply.into_inner().map(move |item| {
                let p = item.map_err(|e| rpc_error(target, e))?;
                let r: RemoteResult<openraft::raft::StreamAppendResult<TypeConfig>> =
                    decode(&p).map_err(|e| rpc_error(target, e))?;
                r.map_err(|e| RPCError::Network(NetworkError::from_string(format!("member {target:x}: {e}"))))
            });
            Ok(Box::pin(out) as openraft::base::BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let r: RemoteResult<VoteResponse<TypeConfig>> = self.unary(Unary::Vote, &rpc, option.hard_ttl()).await?;
        r.map_err(|e| RPCError::Network(NetworkError::from_string(e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let target = self.target;
        let to_streaming = |e: RPCError<TypeConfig>| match e {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::Timeout(t) => StreamingError::Timeout(t),
            RPCError::Network(n) => StreamingError::Network(n),
            RPCError::RemoteError(r) => StreamingError::Network(NetworkError::from_string(r.to_string())),
        };
        let mut c = self.client().map_err(to_streaming)?;
        let header: Vec<u8> =
            postcard::to_stdvec(&(vote, snapshot.meta.clone())).expect("snapshot headers always serialize");
        let path = snapshot.snapshot.path.clone();
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            StreamingError::Network(NetworkError::from_string(format!("open snapshot {}: {e}", path.display())))
        })?;
        let first =
            futures_util::stream::once(
                async move { pb::SnapshotChunk { header: header.into(), data: Default::default() } },
            );
        let body = futures_util::stream::unfold(Some(file), |f| async move {
            use tokio::io::AsyncReadExt;
            let mut f = f?;
            let mut buf = vec![0u8; SNAPSHOT_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match f.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading snapshot to send");
                        return None;
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            Some((pb::SnapshotChunk { header: Default::default(), data: buf.into() }, Some(f)))
        });
        let req = self.peers.request(first.chain(body));
        let send = async {
            let reply = c.install_snapshot(req).await.map_err(|e| to_streaming(rpc_error(target, e)))?;
            let r: RemoteResult<SnapshotResponse<TypeConfig>> =
                decode(reply.get_ref()).map_err(|e| to_streaming(rpc_error(target, e)))?;
            r.map_err(|e| StreamingError::Network(NetworkError::from_string(format!("member {target:x}: {e}"))))
        };
        tokio::select! {
            r = send => r,
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

/// Makes openraft's per-member networks.
pub struct NetworkFactory {
    /// The shared connections.
    pub peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &Member) -> Network {
        Network { peers: self.peers.clone(), target, member: node.clone() }
    }
}

/// The peer gRPC service.
pub struct PeerService {
    /// This member's Raft.
    pub raft: Raft<TypeConfig, StateMachine>,
    /// The state machine (snapshot receiving).
    pub sm: StateMachine,
    /// Cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// This member's name.
    pub name: String,
    /// Lease deadlines (kept here while this member leads).
    pub leases: Arc<Leases>,
}

impl PeerService {
    fn check<T>(&self, r: &Request<T>) -> Result<(), Status> {
        let theirs = r.metadata().get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if u64::from_str_radix(theirs, 16).ok() != Some(self.cluster_id) {
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: member {:x} is in cluster {:x}, the request came from cluster {:?}",
                self.member_id, self.cluster_id, theirs
            )));
        }
        Ok(())
    }
}

fn done<T: Serialize>(v: &T) -> Result<Response<pb::Payload>, Status> {
    Ok(Response::new(encode(v)))
}

type PayloadStream = std::pin::Pin<Box<dyn Stream<Item = Result<pb::Payload, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl peer_server::Peer for PeerService {
    async fn hello(&self, _: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        let m = self.raft.metrics().borrow_watched().membership_config.clone();
        let voters: std::collections::BTreeSet<u64> = m.membership().voter_ids().collect();
        let members = m.membership().nodes().map(|(id, n)| (*id, n.clone(), !voters.contains(id))).collect();
        done(&Hello { cluster_id: self.cluster_id, member_id: self.member_id, name: self.name.clone(), members })
    }

    async fn append_entries(&self, r: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        self.check(&r)?;
        let req: AppendEntriesRequest<TypeConfig> = decode(r.get_ref())?;
        let res: RemoteResult<_> = self.raft.append_entries(req).await.map_err(|e| e.to_string());
        done(&res)
    }

    type StreamAppendStream = PayloadStream;

    async fn stream_append(
        &self,
        r: Request<Streaming<pb::Payload>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        self.check(&r)?;
        // The stream ends at the first broken or undecodable message (skipping one would
        // misalign answers and requests).
        let input = r
            .into_inner()
            .map(|item| match item {
                Ok(p) => decode::<AppendEntriesRequest<TypeConfig>>(&p)
                    .inspect_err(|e| tracing::warn!(error = %e, "bad append in stream"))
                    .ok(),
                Err(e) => {
                    tracing::debug!(error = %e, "append stream ended");
                    None
                }
            })
            .take_while(|r| std::future::ready(r.is_some()))
            .filter_map(std::future::ready);
        let out = self.raft.stream_append(input).map(|item| {
            let r: RemoteResult<openraft::raft::StreamAppendResult<TypeConfig>> = item.map_err(|e| e.to_string());
            Ok(encode(&r))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn vote(&self, r: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        self.check(&r)?;
        let req: VoteRequest<TypeConfig> = decode(r.get_ref())?;
        let res: RemoteResult<_> = self.raft.vote(req).await.map_err(|e| e.to_string());
        done(&res)
    }

    async fn install_snapshot(
        &self,
        r: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::Payload>, Status> {
        self.check(&r)?;
        let mut chunks = r.into_inner();
        let first = chunks.next().await.ok_or_else(|| Status::invalid_argument("snapshot stream is empty"))??;
        let (vote, meta): (Vote, SnapshotMeta) = postcard::from_bytes(&first.header)
            .map_err(|e| Status::invalid_argument(format!("undecodable snapshot header: {e}")))?;
        let (term, index) = meta.last_log_id.as_ref().map(|l| (l.leader_id.term, l.index)).unwrap_or((0, 0));
        // The file is written on a blocking thread, fed through a bounded channel.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<bytes::Bytes, String>>(8);
        let snapshots = self.sm.clone();
        let writer = tokio::task::spawn_blocking(move || {
            snapshots.snapshots().receive(term, index, ChannelReader { rx, buf: bytes::Bytes::new() })
        });
        let mut failed = None;
        while let Some(c) = chunks.next().await {
            let item = c.map(|c| c.data).map_err(|e| e.to_string());
            let stop = item.is_err();
            if tx.send(item).is_err() || stop {
                failed = Some("snapshot stream broke off");
                break;
            }
        }
        drop(tx);
        let info = writer
            .await
            .map_err(|e| Status::internal(format!("snapshot receiver: {e}")))?
            .map_err(|e| Status::data_loss(format!("received snapshot rejected: {e}")))?;
        if let Some(f) = failed {
            return Err(Status::aborted(f));
        }
        let snapshot = openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
            meta,
            snapshot: SnapshotFile { path: info.path },
        };
        let res: RemoteResult<_> = self.raft.install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string());
        done(&res)
    }

    async fn forward(&self, r: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        self.check(&r)?;
        let req: ForwardRequest = decode(r.get_ref())?;
        done(&forward_locally(&self.raft, &self.sm, &self.leases, req).await)
    }

    async fn hash_kv(&self, r: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        self.check(&r)?;
        let req: super::alarm::HashKvRequest = decode(r.get_ref())?;
        done(&super::alarm::local_hash(&self.sm, self.member_id, req.revision).await)
    }

    async fn read_index(&self, r: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        self.check(&r)?;
        let reply = match self.raft.get_read_log_id(openraft::ReadPolicy::ReadIndex).await {
            Ok((read, _)) => ReadIndexReply::Index(read.index()),
            Err(e) => match e.forward_to_leader() {
                Some(f) => ReadIndexReply::NotLeader { leader: f.leader_id },
                None => ReadIndexReply::Failed(e.to_string()),
            },
        };
        done(&reply)
    }
}

/// Run a lease keep-alive or time-to-live on this member if it is the leader: confirm the
/// leadership with a read index and apply up to it (so every grant committed before is here),
/// then read the lease clock.
async fn lease_locally(
    raft: &Raft<TypeConfig, StateMachine>,
    sm: &StateMachine,
    leases: &Leases,
    req: ForwardRequest,
) -> ForwardReply {
    let read = match raft.get_read_log_id(openraft::ReadPolicy::ReadIndex).await {
        Ok((read, _)) => read,
        Err(e) => {
            return match e.forward_to_leader() {
                Some(f) => ForwardReply::NotLeader { leader: f.leader_id },
                None => ForwardReply::Failed(e.to_string()),
            };
        }
    };
    sm.wait_applied(read.index()).await;
    let term = raft.metrics().borrow_watched().current_term;
    let store = sm.store();
    let now = std::time::Instant::now();
    ForwardReply::Lease(match req {
        ForwardRequest::LeaseKeepAlive { id } => {
            LeaseAnswer::KeepAlive { ttl: leases.keep_alive(&store, term, id, now) }
        }
        ForwardRequest::LeaseTimeToLive { id, keys } => leases.time_to_live(&store, term, id, keys, now),
        other => return ForwardReply::Failed(format!("not a lease request: {other:?}")),
    })
}

/// Run a forwarded request on this member (which the sender believes is the leader).
pub async fn forward_locally(
    raft: &Raft<TypeConfig, StateMachine>,
    sm: &StateMachine,
    leases: &Leases,
    req: ForwardRequest,
) -> ForwardReply {
    use openraft::error::ClientWriteError as W;
    let grant = match &req {
        ForwardRequest::Write(WriteRequest::LeaseGrant(g)) => Some(g.id),
        _ => None,
    };
    let res = match req {
        ForwardRequest::Write(w) => raft.client_write(w).await,
        ForwardRequest::Publish { id, member } => {
            let change = MemberChange::Publish { id, name: member.name, client_urls: member.client_urls };
            return membership::change_locally(raft, change).await;
        }
        ForwardRequest::Member(change) => return membership::change_locally(raft, change).await,
        ForwardRequest::CommittedMembership => {
            let m = raft.metrics().borrow_watched().committed_membership_config.clone();
            let members = m.membership().nodes().map(|(id, _)| *id).collect();
            return ForwardReply::Committed { log_id: *m.log_id(), members };
        }
        ForwardRequest::LeaseKeepAlive { .. } | ForwardRequest::LeaseTimeToLive { .. } => {
            return lease_locally(raft, sm, leases, req).await;
        }
    };
    match res {
        Ok(r) => {
            if let (Some(id), ApplyResult::Write(Ok(crate::mvcc::WriteResponse::LeaseGrant(g)))) = (grant, &r.data) {
                // The lease's clock starts when the leader applied its grant, as etcd's does.
                leases.granted(id, g.ttl, r.log_id.leader_id.term, std::time::Instant::now());
            }
            ForwardReply::Done { result: r.data, term: r.log_id.leader_id.term }
        }
        Err(openraft::error::RaftError::APIError(W::ForwardToLeader(f))) => {
            ForwardReply::NotLeader { leader: f.leader_id }
        }
        Err(openraft::error::RaftError::APIError(W::LogEntryDiscarded(_))) => ForwardReply::Unknown,
        Err(e) => ForwardReply::Failed(e.to_string()),
    }
}

/// A blocking `Read` over chunks arriving on a channel.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    buf: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.recv() {
                Ok(Ok(b)) => self.buf = b,
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}
