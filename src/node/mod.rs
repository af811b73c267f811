//! The conflux server: a member of a Raft cluster serving etcd's v3 API.
//!
//! [`start`] opens the data directory (log engine, state machine, identity), joins or bootstraps
//! the cluster, and serves three listeners: clients (etcd's gRPC API, [`api`]), peers (Raft and
//! forwarding, [`peer`]) and metrics (`/metrics`, `/health`, [`metrics`]); client and peer
//! listeners speak TLS on https URLs ([`tls`]). Operating it:
//! `docs/operations.md`; how a write and a read travel through it: `docs/architecture.md`.

pub mod alarm;
pub mod api;
pub mod config;
pub mod convert;
pub mod lease;
pub mod maintenance;
pub mod member;
pub mod membership;
pub mod metrics;
pub mod peer;
pub mod proto;
pub mod removal;
pub mod tls;
pub mod watch_api;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;

use self::config::{ClusterState, NodeConfig};
use self::convert::HeaderInfo;
use self::member::{Identity, url_string};
use self::membership::{MemberAnswer, MemberChange};
use self::metrics::{EngineSample, Metrics, StoreSample};
use self::peer::{ForwardReply, ForwardRequest, NetworkFactory, Peers, ReadIndexReply};
use crate::mvcc::{WriteRequest, WriteResponse};
use crate::state_machine::{SmConfig, StateMachine};
use crate::types::{ApplyResult, LogStore, Member, TypeConfig};

/// How long a removed member keeps running (handing leadership over) before it stops.
const REMOVED_GRACE: Duration = Duration::from_secs(1);
/// gRPC framing allowance on top of `--max-request-bytes` (as etcd allows).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// Room for an entry's own fields on top of the request it carries.
const ENTRY_OVERHEAD_BYTES: usize = 64 * 1024;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A data directory that belongs elsewhere, or flags that contradict it.
    #[error("{0}")]
    Identity(String),
    /// `CONFLUX_FAILPOINTS` is malformed (test builds with the `failpoints` feature only).
    #[cfg(feature = "failpoints")]
    #[error("{0}")]
    Failpoints(String),
    /// Raft stopped on a fatal error (a failed log write or sync, a storage error).
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// The log engine refused to open.
    #[error("cannot open the log in {dir}: {source}")]
    Log {
        /// Data directory.
        dir: String,
        /// Cause.
        source: conflux_engine::Error,
    },
    /// The state machine refused to open.
    #[error("cannot open the state machine in {dir}: {source}")]
    StateMachine {
        /// Data directory.
        dir: String,
        /// Cause.
        source: crate::state_machine::SmError,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {url} ({flag}): {source}")]
    Listen {
        /// The flag naming it.
        flag: &'static str,
        /// The URL.
        url: String,
        /// Cause.
        source: std::io::Error,
    },
    /// `--peer-local-address` is not an address of this host: no connection to another member
    /// could be opened from it.
    #[error("--peer-local-address {address} cannot be used as a source address here: {source}")]
    PeerLocalAddress {
        /// The address.
        address: std::net::IpAddr,
        /// Why binding it failed (`EADDRNOTAVAIL`: no interface has it).
        source: std::io::Error,
    },
    /// Raft could not start.
    #[error("raft: {0}")]
    Raft(String),
    /// Joining an existing cluster failed.
    #[error("cannot join the existing cluster: {0}")]
    Join(String),
    /// A certificate, key or CA file is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// What the services share: Raft, the state machine, the peers and this member's identity.
pub struct Core {
    /// This member's Raft.
    pub raft: Raft<TypeConfig, StateMachine>,
    /// The state machine.
    pub sm: StateMachine,
    /// Connections to the other members.
    pub peers: Arc<Peers>,
    /// Cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// `--name`.
    pub name: String,
    /// How long a request may wait for a leader, a commit or a read index.
    pub request_timeout: Duration,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Lease deadlines (while this member leads) and grant settings.
    pub leases: Arc<lease::Leases>,
    /// Becomes true when the member stops (long-lived streams end).
    pub stopping: watch::Receiver<bool>,
    /// How often idle watchers that asked for it get a progress notification.
    pub watch_progress_interval: Duration,
    /// `--quota-backend-bytes` (`None`: off).
    pub quota_backend_bytes: Option<u64>,
}

fn no_leader() -> Status {
    Status::unavailable("etcdserver: no leader")
}

fn timed_out() -> Status {
    Status::unavailable("etcdserver: request timed out")
}

fn leader_failed() -> Status {
    Status::unavailable("etcdserver: request timed out, possibly due to previous leader failure")
}

impl Core {
    /// The node-level header fields.
    pub fn header(&self) -> HeaderInfo {
        HeaderInfo {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            raft_term: self.raft.metrics().borrow_watched().current_term,
        }
    }

    /// The leader this member knows of.
    pub fn current_leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        self.sm.store().revision() as i64
    }

    /// Every member: id, what is known of it, whether it is a learner.
    pub fn members(&self) -> Vec<(u64, Member, bool)> {
        let m = self.raft.metrics().borrow_watched().membership_config.clone();
        let voters: std::collections::BTreeSet<u64> = m.membership().voter_ids().collect();
        m.membership().nodes().map(|(id, n)| (*id, n.clone(), !voters.contains(id))).collect()
    }

    fn member(&self, id: u64) -> Option<Member> {
        self.raft.metrics().borrow_watched().membership_config.membership().get_node(&id).cloned()
    }

    /// Wait (until `deadline`) for a known leader.
    async fn leader(&self, deadline: Instant) -> Result<u64, Status> {
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = rx.borrow_and_update().current_leader {
                return Ok(l);
            }
            match tokio::time::timeout_at(deadline.into(), rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Status::unavailable("etcdserver: server stopped")),
                Err(_) => return Err(no_leader()),
            }
        }
    }

    /// Wait a moment for the leader to change (after a "not leader" answer or a failed call),
    /// then fail with `expired()` if `deadline` has passed.
    async fn settle(&self, deadline: Instant, expired: fn() -> Status) -> Result<(), Status> {
        let pause = Instant::now() + Duration::from_millis(20);
        tokio::time::sleep_until(pause.min(deadline).into()).await;
        if Instant::now() >= deadline { Err(expired()) } else { Ok(()) }
    }

    /// Commit `req` through the leader; its answer and the term it committed in.
    pub async fn write(&self, req: WriteRequest) -> Result<(WriteResponse, u64), Status> {
        self.metrics.proposals_pending.inc();
        let r = self.forward(ForwardRequest::Write(req)).await;
        self.metrics.proposals_pending.dec();
        if r.is_err() {
            self.metrics.proposals_failed.inc();
        }
        let (result, term) = r?;
        match result {
            ApplyResult::Write(Ok(resp)) => Ok((resp, term)),
            ApplyResult::Write(Err(e)) => Err(convert::mvcc_status(&e)),
            ApplyResult::Noop { .. } => Err(Status::internal("a client write was applied as a no-op")),
        }
    }

    /// Run `req` on the leader (here or there), within the request timeout.
    async fn forward(&self, req: ForwardRequest) -> Result<(ApplyResult, u64), Status> {
        match self.ask_leader(req).await? {
            ForwardReply::Done { result, term } => Ok((result, term)),
            ForwardReply::Unknown => Err(leader_failed()),
            ForwardReply::Failed(msg) => Err(Status::unavailable(format!("etcdserver: {msg}"))),
            other => Err(Status::internal(format!("the leader answered a write with {other:?}"))),
        }
    }

    /// Make a membership change on the leader: what it answered, or etcd's error.
    pub async fn change_members(&self, change: MemberChange) -> Result<MemberAnswer, Status> {
        let deadline = Instant::now() + self.request_timeout;
        match self.ask_leader(ForwardRequest::Member(change)).await? {
            ForwardReply::Member(Ok(answer)) => {
                // A member the change removed never receives it.
                if answer.members.iter().any(|(id, _, _)| *id == self.member_id) {
                    tokio::time::timeout_at(deadline.into(), self.sm.wait_applied(answer.index))
                        .await
                        .map_err(|_| timed_out())?;
                }
                Ok(answer)
            }
            ForwardReply::Member(Err(e)) => Err(e.status()),
            ForwardReply::Unknown => Err(leader_failed()),
            ForwardReply::Failed(msg) => Err(Status::unavailable(format!("etcdserver: {msg}"))),
            other => Err(Status::internal(format!("the leader answered a membership change with {other:?}"))),
        }
    }

    /// Hand `req` to the leader (here or there) until one answers as the leader, within the
    /// request timeout.
    async fn ask_leader(&self, req: ForwardRequest) -> Result<ForwardReply, Status> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader(deadline).await?;
            let reply = if leader == self.member_id {
                let local = peer::forward_locally(&self.raft, &self.sm, &self.leases, req.clone());
                match tokio::time::timeout_at(deadline.into(), local).await {
                    Ok(r) => r,
                    Err(_) => return Err(timed_out()),
                }
            } else {
                let Some(member) = self.member(leader) else {
                    // A leader the membership no longer lists: it was removed and is handing over.
                    self.settle(deadline, no_leader).await?;
                    continue;
                };
                let mut client = self.peers.client(leader, &member)?;
                let call = client.forward(self.peers.request(peer::encode(&req)));
                match tokio::time::timeout_at(deadline.into(), call).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Ok(reply)) => peer::decode::<ForwardReply>(reply.get_ref())?,
                    // Not connected: the request never left; try again (the leader may change).
                    Ok(Err(e)) if e.code() == tonic::Code::Unavailable && not_sent(&e) => {
                        tracing::debug!(leader = format!("{leader:x}"), error = %e, "leader unreachable");
                        self.settle(deadline, no_leader).await?;
                        continue;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(leader = format!("{leader:x}"), error = %e, "forwarding to the leader failed");
                        return Err(leader_failed());
                    }
                }
            };
            match reply {
                ForwardReply::NotLeader { .. } => self.settle(deadline, no_leader).await?,
                other => return Ok(other),
            }
        }
    }

    /// Run a lease keep-alive or time-to-live on the leader (here or there).
    pub async fn lease_query(&self, req: ForwardRequest) -> Result<lease::LeaseAnswer, Status> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader(deadline).await?;
            let reply = if leader == self.member_id {
                let local = peer::forward_locally(&self.raft, &self.sm, &self.leases, req.clone());
                tokio::time::timeout_at(deadline.into(), local).await.map_err(|_| timed_out())?
            } else {
                let Some(member) = self.member(leader) else {
                    // A leader the membership no longer lists: it was removed and is handing over.
                    self.settle(deadline, no_leader).await?;
                    continue;
                };
                let mut client = self.peers.client(leader, &member)?;
                let call = client.forward(self.peers.request(peer::encode(&req)));
                match tokio::time::timeout_at(deadline.into(), call).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Ok(reply)) => peer::decode::<ForwardReply>(reply.get_ref())?,
                    // A query changes nothing: ask again (the leader may have changed).
                    Ok(Err(e)) => {
                        tracing::debug!(leader = format!("{leader:x}"), error = %e, "lease query to the leader failed");
                        ForwardReply::NotLeader { leader: None }
                    }
                }
            };
            match reply {
                ForwardReply::Lease(a) => return Ok(a),
                ForwardReply::NotLeader { .. } | ForwardReply::Unknown => {
                    self.settle(deadline, no_leader).await?;
                }
                ForwardReply::Failed(msg) => {
                    tracing::debug!(%msg, "lease query failed");
                    self.settle(deadline, timed_out).await?;
                }
                ForwardReply::Done { .. } | ForwardReply::Member(_) | ForwardReply::Committed { .. } => {
                    return Err(Status::internal("the leader answered a lease query as a write"));
                }
            }
        }
    }

    /// Make a following local read linearizable: learn the leader's commit index (a read index
    /// confirmed by a quorum) and wait until this member has applied it.
    pub async fn linearize(&self) -> Result<(), Status> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader(deadline).await?;
            let reply = if leader == self.member_id {
                let r = tokio::time::timeout_at(
                    deadline.into(),
                    self.raft.get_read_log_id(openraft::ReadPolicy::ReadIndex),
                )
                .await
                .map_err(|_| timed_out())?;
                match r {
                    Ok((read, _)) => ReadIndexReply::Index(read.index()),
                    Err(e) => match e.forward_to_leader() {
                        Some(f) => ReadIndexReply::NotLeader { leader: f.leader_id },
                        None => ReadIndexReply::Failed(e.to_string()),
                    },
                }
            } else {
                let Some(member) = self.member(leader) else {
                    // A leader the membership no longer lists: it was removed and is handing over.
                    self.settle(deadline, no_leader).await?;
                    continue;
                };
                let mut client = self.peers.client(leader, &member)?;
                let call = client.read_index(self.peers.request(proto::peer::Payload::default()));
                match tokio::time::timeout_at(deadline.into(), call).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Ok(reply)) => peer::decode(reply.get_ref())?,
                    Ok(Err(e)) => {
                        tracing::debug!(leader = format!("{leader:x}"), error = %e, "read index from the leader failed");
                        self.settle(deadline, timed_out).await?;
                        continue;
                    }
                }
            };
            match reply {
                ReadIndexReply::Index(i) => {
                    tokio::time::timeout_at(deadline.into(), self.sm.wait_applied(i)).await.map_err(|_| timed_out())?;
                    tracing::debug!(
                        leader = format!("{leader:x}"),
                        read_index = i,
                        applied = self.sm.applied_index(),
                        revision = self.sm.store().revision(),
                        "read linearized"
                    );
                    return Ok(());
                }
                ReadIndexReply::NotLeader { .. } => {
                    self.settle(deadline, no_leader).await?;
                }
                ReadIndexReply::Failed(msg) => {
                    tracing::debug!(%msg, "read index failed");
                    self.settle(deadline, timed_out).await?;
                }
            }
        }
    }
}

/// Whether a transport error means the request was never sent (no connection).
fn not_sent(e: &Status) -> bool {
    let text = format!("{e:?}").to_ascii_lowercase();
    text.contains("connect") && !text.contains("reset")
}

/// A running member.
pub struct RunningNode {
    /// The shared core.
    pub core: Arc<Core>,
    /// Addresses the client listeners bound (useful with port 0).
    pub client_addrs: Vec<SocketAddr>,
    /// Addresses the peer listeners bound.
    pub peer_addrs: Vec<SocketAddr>,
    /// Addresses the metrics listeners bound.
    pub metrics_addrs: Vec<SocketAddr>,
    /// A read handle on the log engine (to tell why it stopped).
    log: conflux_engine::LogReader<TypeConfig, crate::types::Codec>,
    stop: watch::Sender<bool>,
    /// Client and metrics servers: drained first.
    tasks: Vec<JoinHandle<()>>,
    /// Peer servers: they carry long-lived Raft streams, so they stop after Raft.
    peer_tasks: Vec<JoinHandle<()>>,
    /// How long requests in flight get to finish.
    grace: Duration,
}

impl RunningNode {
    /// Stop: stop accepting requests, finish the ones in flight, stop Raft, close files.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        // Client requests in flight finish (bounded: a request waits at most its timeout).
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(self.grace, t).await.is_err() {
                tracing::warn!("client connections still open after {:?}; closing them", self.grace);
                abort.abort();
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), self.core.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "raft shutdown"),
            // Everything acknowledged is already durable; the log store closes when dropped.
            Err(_) => tracing::warn!("raft did not stop within 10 s; leaving it"),
        }
        // Peers' replication streams never end on their own: with Raft stopped, close them.
        for t in self.peer_tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_millis(500), t).await.is_err() {
                abort.abort();
            }
        }
        tracing::info!("stopped");
    }
}

async fn bind(flag: &'static str, urls: &[url::Url]) -> Result<Vec<TcpListener>, StartError> {
    let mut out = Vec::new();
    for u in urls {
        let err = |source| StartError::Listen { flag, url: url_string(u), source };
        let host = u.host_str().unwrap_or("localhost").trim_start_matches('[').trim_end_matches(']').to_string();
        let port = u.port_or_known_default().unwrap_or(0);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port)).await.map_err(err)?.collect();
        // Prefer IPv4 (what `localhost` means to most clients), else the first address.
        let addr = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(|| {
            err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} resolves to no address")))
        })?;
        out.push(TcpListener::bind(addr).await.map_err(err)?);
    }
    Ok(out)
}

fn urls(v: &[url::Url]) -> Vec<String> {
    v.iter().map(url_string).collect()
}

/// Work out this member's identity from the flags and the data directory.
async fn identity(
    cfg: &NodeConfig,
    peer_tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<(Identity, bool), StartError> {
    let token = &cfg.initial_cluster_token;
    let my_peer_urls = urls(&cfg.initial_advertise_peer_urls);
    let my_id = member::member_id(&my_peer_urls, token);
    let ids: Vec<u64> = cfg.initial_cluster.iter().map(|(_, u)| member::member_id(&urls(u), token)).collect();
    let flags_cluster = member::cluster_id(&ids);
    let stored = Identity::load(&cfg.data_dir).map_err(|e| StartError::Identity(e.to_string()))?;
    if let Some(id) = stored {
        if id.name != cfg.name {
            return Err(StartError::Identity(format!(
                "data dir {} belongs to member {:?} (id {:x}) by its identity file {}, not to --name {:?} (if \
                 --name is right, that file was altered or damaged)",
                cfg.data_dir.display(),
                id.name,
                id.member_id,
                Identity::path(&cfg.data_dir).display(),
                cfg.name
            )));
        }
        // Only the member's own id is compared: once members were added or removed, an
        // --initial-cluster kept up to date with the membership describes another initial
        // cluster (and cluster id) than the one this member was created in.
        if cfg.initial_cluster_given && cfg.initial_cluster_state == ClusterState::New && my_id != id.member_id {
            return Err(StartError::Identity(format!(
                "data dir {} belongs to member {:x} of cluster {:x} by its identity file {}, but --initial-cluster \
                 (token {:?}) describes member {:x} of cluster {:x} (if the flags are right, that file was altered \
                 or damaged)",
                cfg.data_dir.display(),
                id.member_id,
                id.cluster_id,
                Identity::path(&cfg.data_dir).display(),
                token,
                my_id,
                flags_cluster
            )));
        }
        return Ok((id, false));
    }
    if cfg.data_dir.join("meta").exists() {
        return Err(StartError::Identity(format!(
            "data dir {} holds a log but no `node` identity file: it was not written by a conflux member",
            cfg.data_dir.display()
        )));
    }
    let (cluster_id, member_id) = match cfg.initial_cluster_state {
        ClusterState::New => (flags_cluster, my_id),
        ClusterState::Existing => join_existing(cfg, &my_peer_urls, peer_tls).await?,
    };
    Ok((Identity { name: cfg.name.clone(), member_id, cluster_id, cluster_token: token.clone() }, true))
}

/// Ask the other members of `--initial-cluster` for the cluster's id and for the id MemberAdd
/// gave this member, found by its peer URLs (as etcd finds it: the id depends on when it was
/// added, so the joining member cannot compute it).
async fn join_existing(
    cfg: &NodeConfig,
    my_peer_urls: &[String],
    peer_tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<(u64, u64), StartError> {
    let mut mine = my_peer_urls.to_vec();
    mine.sort();
    let mut errors = Vec::new();
    // Members that answered without listing this one (one may not have applied the MemberAdd
    // yet: ask the others before giving up).
    let mut without_me = Vec::new();
    for (name, peer_urls) in &cfg.initial_cluster {
        if *name == cfg.name {
            continue;
        }
        for u in peer_urls {
            match peer::hello(&url_string(u), cfg.election_timeout * 2, peer_tls, cfg.peer_local_address).await {
                Ok(h) => {
                    let found = h.members.iter().find(|(_, m, _)| {
                        let mut theirs = m.peer_urls.clone();
                        theirs.sort();
                        theirs == mine
                    });
                    let Some((id, _, _)) = found else {
                        without_me.push(format!("{name} at {} (cluster {:x})", url_string(u), h.cluster_id));
                        continue;
                    };
                    tracing::info!(member = format!("{id:x}"), cluster = format!("{:x}", h.cluster_id), "joining");
                    return Ok((h.cluster_id, *id));
                }
                Err(e) => errors.push(format!("{name} at {}: {e}", url_string(u))),
            }
        }
    }
    if !without_me.is_empty() {
        return Err(StartError::Join(format!(
            "no member of the cluster has the peer URLs {} of {} (asked {}); add it first with `etcdctl member add`",
            my_peer_urls.join(","),
            cfg.name,
            without_me.join(", ")
        )));
    }
    Err(StartError::Join(format!("no member of --initial-cluster answered: {}", errors.join("; "))))
}

/// Start a member with `cfg`; it serves until [`RunningNode::shutdown`].
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, StartError> {
    // Unusable TLS files fail before anything is bound.
    tls::TlsMaterial::load(&cfg.client_tls)?;
    tls::TlsMaterial::load(&cfg.peer_tls)?;
    // Bind first: a port in use fails before anything is written.
    let listeners = Listeners {
        client: bind("--listen-client-urls", &cfg.listen_client_urls).await?,
        peer: bind("--listen-peer-urls", &cfg.listen_peer_urls).await?,
        metrics: bind("--listen-metrics-urls", &cfg.listen_metrics_urls).await?,
    };
    start_on(cfg, listeners).await
}

/// Listeners a member serves on, bound by the caller.
pub struct Listeners {
    /// For `--listen-client-urls`.
    pub client: Vec<TcpListener>,
    /// For `--listen-peer-urls`.
    pub peer: Vec<TcpListener>,
    /// For `--listen-metrics-urls`.
    pub metrics: Vec<TcpListener>,
}

/// Start a member with `cfg` on listeners the caller bound (embedding: bind port 0, then put the
/// ports into `cfg`'s URLs); the listen URLs of `cfg` are not bound again.
pub async fn start_on(cfg: NodeConfig, listeners: Listeners) -> Result<RunningNode, StartError> {
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    if let Some(address) = cfg.peer_local_address {
        // Fail at start, not at every dial, and before the data directory is made, when no interface has the address.
        std::net::TcpListener::bind((address, 0)).map_err(|source| StartError::PeerLocalAddress { address, source })?;
    }
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| StartError::Listen {
        flag: "--data-dir",
        url: cfg.data_dir.display().to_string(),
        source,
    })?;
    let dir = cfg.data_dir.display().to_string();
    let client_tls = tls::TlsMaterial::load(&cfg.client_tls)?;
    let peer_tls = tls::TlsMaterial::load(&cfg.peer_tls)?;
    if let Some(m) = &peer_tls {
        for w in m.self_check(&cfg.initial_advertise_peer_urls) {
            tracing::warn!("{w}");
        }
    }
    let peer_client_tls = peer_tls.as_ref().and_then(tls::TlsMaterial::client);
    let (identity, fresh) = identity(&cfg, peer_client_tls.as_ref()).await?;
    let Listeners { client: client_listeners, peer: peer_listeners, metrics: metrics_listeners } = listeners;
    if fresh {
        identity.store(&cfg.data_dir).map_err(|e| StartError::Identity(e.to_string()))?;
    }
    tracing::info!(
        name = %identity.name,
        member = format!("{:x}", identity.member_id),
        cluster = format!("{:x}", identity.cluster_id),
        data_dir = %dir,
        "starting"
    );

    let (io, io_used) =
        conflux_engine::io::backend(cfg.io_mode).map_err(|source| StartError::Log { dir: dir.clone(), source })?;
    tracing::info!(io = %cfg.io_mode, using = %io_used, "log I/O backend");
    #[cfg(feature = "failpoints")]
    let io = crate::failpoints::wrap(io).map_err(StartError::Failpoints)?;
    let log_config = conflux_engine::Config {
        io,
        segment_bytes: cfg.segment_bytes,
        // A proposed request is at most --max-request-bytes encoded; the entry adds its log id
        // and framing (the configuration checks segments have room for this).
        max_entry_bytes: cfg.max_request_bytes + ENTRY_OVERHEAD_BYTES,
        ..Default::default()
    };
    let log =
        LogStore::open(&cfg.data_dir, log_config).map_err(|source| StartError::Log { dir: dir.clone(), source })?;
    let log_reader = log.reader();
    let log_for_node = log.reader();
    let sm_config = SmConfig {
        snapshot_zstd_level: cfg.snapshot_zstd_level,
        max_txn_ops: cfg.max_txn_ops,
        watch_ring_events: cfg.watch_ring_events,
        #[cfg(feature = "failpoints")]
        diverge_key: crate::failpoints::diverge_key(),
        ..Default::default()
    };
    let sm = StateMachine::open(&cfg.data_dir, Arc::new(conflux_engine::io::StdIo), sm_config)
        .map_err(|source| StartError::StateMachine { dir: dir.clone(), source })?;

    let election_ms = cfg.election_timeout.as_millis() as u64;
    let raft_config = openraft::Config {
        cluster_name: identity.cluster_token.clone(),
        heartbeat_interval: cfg.heartbeat_interval.as_millis() as u64,
        // openraft starts an election `leader lease (= election_timeout_max) + a random
        // timeout in [min, max)` after the last heartbeat. With min = T/3 and max = 2T/3 that
        // is [T, 4T/3) for `--election-timeout` T: at least T, as in etcd, and not the [3T, 4T)
        // that min = T, max = 2T gave (docs/decisions.md).
        // (openraft wants min above the heartbeat interval: T ≥ 5 heartbeats gives that.)
        election_timeout_min: (election_ms / 3).max(cfg.heartbeat_interval.as_millis() as u64 + 1),
        election_timeout_max: (election_ms * 2 / 3).max(cfg.heartbeat_interval.as_millis() as u64 + 2),
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_count),
        max_in_snapshot_log_to_keep: cfg.snapshot_catchup_entries,
        install_snapshot_timeout: (cfg.election_timeout.as_millis() as u64 * 20).max(10_000),
        max_payload_entries: 256,
        // A leader that restarts comes back as a follower, as in etcd. openraft would otherwise
        // restore it as leader of its old term with its committed index as last saved (the
        // engine saves it lazily): its read index could then be below writes it had already
        // acknowledged, and a linearizable read would return stale data (docs/decisions.md).
        enable_leader_restore: Some(false),
        // Retry replication to a member that failed every heartbeat interval. openraft's default
        // grows from 200 ms to a 1 s cap, so a member back from a partition of a few seconds
        // waited up to a second for its first entry (docs/reliability.md, "Network
        // partitions"); etcd retries its peer streams every 100 ms. The heartbeats already go
        // out at this rate, so the retries add no new kind of traffic.
        backoff: format!("{0}ms..{0}ms", cfg.heartbeat_interval.as_millis()),
        ..Default::default()
    };
    let raft_config = Arc::new(raft_config.validate().map_err(|e| StartError::Raft(e.to_string()))?);
    let peers = Peers::new(
        identity.cluster_id,
        cfg.heartbeat_interval,
        cfg.election_timeout,
        peer_client_tls,
        cfg.peer_local_address,
    );
    let network = NetworkFactory { peers: peers.clone() };
    let raft = Raft::new(identity.member_id, raft_config, network, log, sm.clone())
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

    let engine = move || EngineSample { stats: log_reader.stats(), segments: log_reader.segment_count() as u64 };
    let store_sm = sm.clone();
    let quota_bytes = cfg.quota_backend_bytes;
    let store = move || {
        let s = store_sm.store();
        StoreSample {
            keys: s.key_count(),
            revision: s.revision() as i64,
            compact_revision: s.compacted_revision() as i64,
            db_bytes: s.retained_bytes(),
            watchers: store_sm.hub().watchers() as u64,
            leases: s.leases().len() as u64,
            quota_bytes: quota_bytes.map_or(-1, |q| q as i64),
            alarms: s.alarms().len() as u64,
        }
    };
    let metrics = Metrics::new(identity.member_id, engine, store);
    let leases = Arc::new(lease::Leases::new(identity.member_id, cfg.heartbeat_interval, cfg.election_timeout));
    let (stop, stop_rx) = watch::channel(false);
    let core = Arc::new(Core {
        raft: raft.clone(),
        sm: sm.clone(),
        peers: peers.clone(),
        cluster_id: identity.cluster_id,
        member_id: identity.member_id,
        name: identity.name.clone(),
        request_timeout: cfg.request_timeout,
        max_request_bytes: cfg.max_request_bytes,
        max_txn_ops: cfg.max_txn_ops,
        metrics: metrics.clone(),
        leases: leases.clone(),
        stopping: stop_rx.clone(),
        watch_progress_interval: cfg.watch_progress_notify_interval,
        quota_backend_bytes: cfg.quota_backend_bytes,
    });

    if fresh && cfg.initial_cluster_state == ClusterState::New {
        // Every member of a new cluster proposes the same initial membership (client URLs are
        // published later, by each member itself), so whichever is elected agrees with the rest.
        let members: BTreeMap<u64, Member> = cfg
            .initial_cluster
            .iter()
            .map(|(name, u)| {
                let peer_urls = urls(u);
                let id = member::member_id(&peer_urls, &identity.cluster_token);
                (id, Member { name: name.clone(), peer_urls, client_urls: Vec::new() })
            })
            .collect();
        if let Err(e) = raft.initialize(members).await {
            tracing::info!(error = %e, "cluster already initialized");
        }
    }

    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = Vec::new();
    let mut peer_tasks = Vec::new();
    let client_addrs = client_listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let peer_addrs = peer_listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let metrics_addrs = metrics_listeners.iter().filter_map(|l| l.local_addr().ok()).collect();

    let api = api::EtcdApi::new(core.clone());
    let max_decode = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    // TLS only where the URL says https (etcd serves an http URL in plain text even with
    // certificates configured).
    let client_tls_config = match &client_tls {
        Some(m) => Some(m.server()?),
        None => None,
    };
    let peer_tls_config = match &peer_tls {
        Some(m) if cfg.peer_tls.cert_file.is_some() => Some(m.server()?),
        _ => None,
    };
    for (l, u) in client_listeners.into_iter().zip(&cfg.listen_client_urls) {
        let router = server_builder(u, client_tls_config.as_ref(), "the client listener")?
            .tcp_nodelay(true)
            .layer(metrics::GrpcMetricsLayer::new(metrics.clone()))
            .add_service(
                proto::etcdserverpb::kv_server::KvServer::new(api.clone())
                    .max_decoding_message_size(max_decode)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                proto::etcdserverpb::lease_server::LeaseServer::new(api.clone()).max_decoding_message_size(max_decode),
            )
            .add_service(
                proto::etcdserverpb::watch_server::WatchServer::new(watch_api::WatchApi::new(core.clone()))
                    .max_decoding_message_size(max_decode)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(proto::etcdserverpb::cluster_server::ClusterServer::new(api.clone()))
            .add_service(proto::etcdserverpb::maintenance_server::MaintenanceServer::new(api.clone()));
        let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
        let stopped = stopped();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                tracing::error!(error = %e, "client listener failed");
            }
        }));
    }
    for (l, u) in peer_listeners.into_iter().zip(&cfg.listen_peer_urls) {
        let service = peer::PeerService {
            raft: raft.clone(),
            sm: sm.clone(),
            cluster_id: identity.cluster_id,
            member_id: identity.member_id,
            name: identity.name.clone(),
            leases: leases.clone(),
        };
        let router = server_builder(u, peer_tls_config.as_ref(), "the peer listener")?.tcp_nodelay(true).add_service(
            proto::peer::peer_server::PeerServer::new(service)
                .max_decoding_message_size(peer::MAX_PEER_MESSAGE)
                .max_encoding_message_size(peer::MAX_PEER_MESSAGE),
        );
        let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
        let stopped = stopped();
        peer_tasks.push(tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                tracing::error!(error = %e, "peer listener failed");
            }
        }));
    }
    if !metrics_listeners.is_empty() {
        let health_core = core.clone();
        let health: Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, metrics::Health> + Send + Sync> =
            Arc::new(move || {
                let core = health_core.clone();
                Box::pin(async move { health(&core).await })
            });
        let m = metrics.clone();
        let stopped = stopped();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = metrics::serve_http(metrics_listeners, m, health, stopped).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        }));
    }
    // Raft metrics into Prometheus gauges; each new membership's peer URLs to the connections
    // (MemberUpdate moves a member while openraft keeps its replication stream).
    {
        let mut rx = raft.metrics();
        let m = metrics.clone();
        let peers = peers.clone();
        let mut stop_rx = stop.subscribe();
        let mut membership_seen = None;
        tokio::spawn(async move {
            loop {
                {
                    let now = rx.borrow_and_update();
                    m.observe_raft(&now);
                    let membership = &now.membership_config;
                    if membership_seen != Some(*membership.log_id()) {
                        membership_seen = Some(*membership.log_id());
                        peers.learn(membership.membership().nodes().map(|(id, n)| (*id, n)));
                    }
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
            }
        });
    }
    // Publish this member's name and client URLs into the membership (once they are there,
    // every member lists them).
    {
        let core = core.clone();
        let me = Member {
            name: identity.name.clone(),
            peer_urls: urls(&cfg.initial_advertise_peer_urls),
            client_urls: urls(&cfg.advertise_client_urls),
        };
        let mut stop_rx = stop.subscribe();
        tokio::spawn(async move {
            loop {
                let known = core.member(core.member_id);
                if known.as_ref().is_some_and(|k| k.client_urls == me.client_urls && k.name == me.name) {
                    return;
                }
                if known.is_some() {
                    let change = MemberChange::Publish {
                        id: core.member_id,
                        name: me.name.clone(),
                        client_urls: me.client_urls.clone(),
                    };
                    match core.change_members(change).await {
                        Ok(_) => tracing::info!(client_urls = ?me.client_urls, "published client URLs"),
                        Err(e) => tracing::debug!(error = %e, "publishing client URLs"),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
            }
        });
    }
    // The leader revokes expired leases through Raft.
    {
        let core = core.clone();
        let mut stop_rx = stop.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease::EXPIRY_CHECK_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
                let term = {
                    let m = core.raft.metrics().borrow_watched().clone();
                    (m.current_leader == Some(core.member_id) && m.state.is_leader()).then_some(m.current_term)
                };
                let store = core.sm.store();
                for id in core.leases.expired(&store, term, Instant::now()) {
                    let core = core.clone();
                    tokio::spawn(async move {
                        let req = WriteRequest::LeaseRevoke(crate::mvcc::LeaseRevokeRequest { id });
                        match core.write(req).await {
                            Ok(_) => tracing::info!(lease = format!("{id:x}"), "lease expired: revoked"),
                            Err(e) => {
                                tracing::debug!(lease = format!("{id:x}"), error = %e, "revoking an expired lease")
                            }
                        }
                    });
                }
            }
        });
    }
    if let Some(mode) = cfg.auto_compaction() {
        let state_sm = sm.clone();
        let c = core.clone();
        let stop_rx = stop.subscribe();
        crate::compactor::spawn(
            mode,
            move || {
                let s = state_sm.store();
                (s.revision(), s.compacted_revision())
            },
            move |target| {
                let c = c.clone();
                let stopping = *stop_rx.borrow();
                async move {
                    if stopping {
                        return false;
                    }
                    if c.raft.metrics().borrow_watched().current_leader == Some(c.member_id) {
                        let req = crate::mvcc::CompactionRequest { revision: target as i64, physical: false };
                        if let Err(e) = c.write(WriteRequest::Compact(req)).await {
                            tracing::warn!(revision = target, error = %e, "auto-compaction");
                        }
                    }
                    true
                }
            },
        );
    }
    if let Some(period) = cfg.corrupt_check_time {
        alarm::spawn_corrupt_check(core.clone(), period, stop.subscribe());
    }
    let grace = cfg.request_timeout + Duration::from_secs(1);
    let log = log_for_node;
    Ok(RunningNode { core, client_addrs, peer_addrs, metrics_addrs, log, stop, tasks, peer_tasks, grace })
}

/// A server for a listener on `url`: with `tls` when the URL is https.
fn server_builder(
    url: &url::Url,
    tls: Option<&tonic::transport::ServerTlsConfig>,
    what: &'static str,
) -> Result<tonic::transport::Server, StartError> {
    let builder = tonic::transport::Server::builder();
    match tls {
        Some(t) if url.scheme() == "https" => builder
            .tls_config(t.clone())
            .map_err(|e| StartError::Tls(tls::TlsError::Transport { what, reason: e.to_string() })),
        _ => Ok(builder),
    }
}

/// etcd's health rule: a leader is known and a linearizable read completes.
async fn health(core: &Core) -> metrics::Health {
    if core.raft.metrics().borrow_watched().current_leader.is_none() {
        return metrics::Health { healthy: false, reason: "RAFT NO LEADER".into() };
    }
    match core.linearize().await {
        Ok(()) => metrics::Health { healthy: true, reason: String::new() },
        Err(e) => metrics::Health { healthy: false, reason: format!("QGET ERROR: {}", e.message()) },
    }
}

/// Run a member until SIGINT or SIGTERM, then shut down cleanly.
pub async fn run(cfg: NodeConfig) -> Result<(), StartError> {
    let node = start(cfg).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| StartError::Listen { flag: "signal", url: "SIGTERM".into(), source })?;
    let mut metrics = node.core.raft.metrics();
    let fatal = async move {
        loop {
            if let Err(f) = &metrics.borrow_watched().running_state {
                return f.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft stopped".to_string();
            }
        }
    };
    let removed = removal::removed(node.core.clone());
    let fatal = tokio::select! {
        _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); None }
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = removed => {
            // As etcd does. A removed leader hands leadership over first (openraft steps it down
            // shortly after the change commits); the pause lets that happen.
            tracing::warn!("the member has been permanently removed from the cluster; shutting down");
            tokio::time::sleep(REMOVED_GRACE).await;
            None
        }
        f = fatal => {
            // A failed log write or sync poisons the store: nothing more can be made durable
            // here, so the member stops (non-zero exit) rather than serve without Raft. Nothing
            // acknowledged is lost; restarting recovers the log.
            tracing::error!(error = %f, "raft stopped on a fatal error; shutting down");
            Some(f)
        }
    };
    if fatal.is_some() && node.log.poisoned_by_full_disk() {
        // The disk is full: this member can write nothing more, but the others can record
        // that for it (docs/decisions.md, "A full disk raises NOSPACE").
        let within = node.core.request_timeout.max(Duration::from_secs(10));
        alarm::report_full_disk(&node.core, within).await;
    }
    node.shutdown().await;
    match fatal {
        Some(f) => Err(StartError::Fatal(f)),
        None => Ok(()),
    }
}
