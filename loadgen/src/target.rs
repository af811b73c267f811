//! What loadgen drives: connections to etcd v3 endpoints (plain or TLS, etcdctl's flags) and how
//! each [`Op`] becomes gRPC calls; and a null target that answers at once, to measure loadgen
//! itself.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use conflux::node::proto::etcdserverpb::{
    self as pb, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare, kv_client::KvClient,
    request_op,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::history::{History, Record, Tracer, text};
use crate::linearizability::Command;
use crate::op::{Op, Outcome};

/// TLS settings, named as etcdctl names them.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// `--cacert`: CA bundle to verify servers with.
    pub cacert: Option<PathBuf>,
    /// `--cert`: client certificate.
    pub cert: Option<PathBuf>,
    /// `--key`: client key.
    pub key: Option<PathBuf>,
}

impl Tls {
    fn is_set(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// What an acknowledged or failed write tells `loadgen verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAck {
    /// A put was acknowledged at `revision`.
    Put {
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
        /// The revision the server answered.
        revision: i64,
    },
    /// A delete was acknowledged at `revision`.
    Delete {
        /// Key.
        key: Bytes,
        /// Revision.
        revision: i64,
    },
    /// A write whose outcome is unknown (error or timeout): it may or may not have applied.
    Unknown {
        /// Key.
        key: Bytes,
    },
}

/// The result of executing one op.
#[derive(Debug, Clone)]
pub struct Executed {
    /// How it ended.
    pub outcome: Outcome,
    /// The writes it made or may have made (for the ack log).
    pub acks: Vec<WriteAck>,
}

type BoxFut<'a> = Pin<Box<dyn Future<Output = Executed> + Send + 'a>>;
type TracedFut<'a> = Pin<Box<dyn Future<Output = (Executed, Vec<Record>)> + Send + 'a>>;

/// Something loadgen can send operations to.
pub trait Target: Send + Sync + 'static {
    /// How many connections it has.
    fn connections(&self) -> usize;
    /// The endpoint connection `conn` goes to (index into [`Target::endpoints`]).
    fn endpoint_of(&self, conn: usize) -> usize;
    /// Endpoint names, for the report.
    fn endpoints(&self) -> Vec<String>;
    /// Run `op` on connection `conn`.
    fn execute(&self, conn: usize, op: Op, serializable: bool) -> BoxFut<'_>;
    /// Run `op` as [`Target::execute`] does, and describe each call it made as a history record
    /// of `client` (`--history`). A target that is not a key-value store (the null target)
    /// describes nothing; the command line refuses `--history` for it.
    fn execute_traced<'a>(
        &'a self,
        conn: usize,
        op: Op,
        serializable: bool,
        history: &'a History,
        client: u64,
    ) -> TracedFut<'a> {
        let _ = (history, client);
        Box::pin(async move { (self.execute(conn, op, serializable).await, Vec::new()) })
    }
}

/// An etcd v3 cluster over gRPC.
pub struct GrpcTarget {
    endpoints: Vec<String>,
    conns: Vec<(usize, KvClient<Channel>)>,
    timeout: Duration,
}

/// Why the target could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A malformed endpoint.
    #[error("bad endpoint {endpoint:?} in --endpoints: {reason}")]
    BadEndpoint {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A TLS file could not be read.
    #[error("cannot read {flag} {path}: {source}")]
    TlsFile {
        /// The flag.
        flag: &'static str,
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to {endpoint}: {reason}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The error.
        reason: String,
    },
}

fn url_of(endpoint: &str, tls: bool) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

impl GrpcTarget {
    /// Open `conns` connections spread over `endpoints` (connection i goes to endpoint i mod n);
    /// fails fast, naming the endpoint, when one cannot be reached within `dial_timeout`.
    pub async fn connect(
        endpoints: &[String],
        conns: usize,
        tls: &Tls,
        dial_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<GrpcTarget, ConnectError> {
        let tls_config = if tls.is_set() {
            let read = |flag: &'static str, p: &PathBuf| {
                std::fs::read(p).map_err(|source| ConnectError::TlsFile { flag, path: p.clone(), source })
            };
            let mut c = ClientTlsConfig::new();
            if let Some(ca) = &tls.cacert {
                c = c.ca_certificate(Certificate::from_pem(read("--cacert", ca)?));
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                c = c.identity(Identity::from_pem(read("--cert", cert)?, read("--key", key)?));
            }
            Some(c)
        } else {
            None
        };
        let mut eps = Vec::new();
        for e in endpoints {
            let url = url_of(e, tls_config.is_some());
            let mut ep = Endpoint::from_shared(url.clone())
                .map_err(|err| ConnectError::BadEndpoint { endpoint: e.clone(), reason: err.to_string() })?
                .connect_timeout(dial_timeout)
                .tcp_nodelay(true)
                .initial_connection_window_size(4 << 20)
                .initial_stream_window_size(2 << 20);
            if let Some(t) = &tls_config {
                ep = ep
                    .tls_config(t.clone())
                    .map_err(|err| ConnectError::BadEndpoint { endpoint: e.clone(), reason: err.to_string() })?;
            }
            eps.push((e.clone(), ep));
        }
        let mut out = Vec::new();
        for i in 0..conns.max(1) {
            let idx = i % eps.len();
            let (name, ep) = &eps[idx];
            let ch = ep
                .connect()
                .await
                .map_err(|err| ConnectError::Unreachable { endpoint: name.clone(), reason: error_chain(&err) })?;
            let kv = KvClient::new(ch).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX);
            out.push((idx, kv));
        }
        Ok(GrpcTarget { endpoints: endpoints.to_vec(), conns: out, timeout: request_timeout })
    }

    /// A KV client on connection `conn`.
    pub fn client(&self, conn: usize) -> KvClient<Channel> {
        self.conns[conn % self.conns.len()].1.clone()
    }
}

/// An error with its causes, one after the other.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        // Many errors already print their cause: do not say it twice.
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// Go's name for a gRPC code, as etcd's tools print them.
pub fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

fn failed(s: &tonic::Status) -> Outcome {
    Outcome::Error(code_name(s.code()).to_string())
}

fn rev(h: &Option<pb::ResponseHeader>) -> i64 {
    h.as_ref().map(|h| h.revision).unwrap_or(0)
}

/// A scan reads every key from its start key on (range end `\0`), cut by its limit.
const SCAN_END: &[u8] = b"\0";

impl GrpcTarget {
    async fn with_timeout<T>(
        &self,
        f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map(|r| r.into_inner()),
            Err(_) => Err(tonic::Status::deadline_exceeded("loadgen request timeout")),
        }
    }

    async fn put(&self, kv: &mut KvClient<Channel>, key: Bytes, value: Bytes) -> Executed {
        let req = PutRequest { key: key.clone(), value: value.clone(), ..Default::default() };
        match self.with_timeout(kv.put(req)).await {
            Ok(r) => {
                Executed { outcome: Outcome::Ok, acks: vec![WriteAck::Put { key, value, revision: rev(&r.header) }] }
            }
            Err(s) => Executed { outcome: failed(&s), acks: vec![WriteAck::Unknown { key }] },
        }
    }

    async fn get(
        &self,
        kv: &mut KvClient<Channel>,
        key: Bytes,
        serializable: bool,
    ) -> Result<pb::RangeResponse, Executed> {
        let req = RangeRequest { key, serializable, ..Default::default() };
        self.with_timeout(kv.range(req)).await.map_err(|s| Executed { outcome: failed(&s), acks: vec![] })
    }

    /// A Txn putting `value` if `key`'s mod revision is still `seen` (0: absent); whether the
    /// compare held.
    async fn cas(&self, kv: &mut KvClient<Channel>, key: Bytes, value: Bytes, seen: i64) -> (Executed, bool) {
        let txn = TxnRequest {
            compare: vec![pb::Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: key.clone(),
                target_union: Some(compare::TargetUnion::ModRevision(seen)),
                range_end: Bytes::new(),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })),
            }],
            failure: vec![],
        };
        match self.with_timeout(kv.txn(txn)).await {
            Ok(r) if r.succeeded => (
                Executed { outcome: Outcome::Ok, acks: vec![WriteAck::Put { key, value, revision: rev(&r.header) }] },
                true,
            ),
            Ok(_) => (Executed { outcome: Outcome::Ok, acks: vec![] }, false),
            Err(s) => (Executed { outcome: failed(&s), acks: vec![WriteAck::Unknown { key }] }, false),
        }
    }

    async fn run(&self, conn: usize, op: Op, serializable: bool) -> Executed {
        let mut kv = self.client(conn);
        match op {
            Op::Put { key, value } | Op::Insert { key, value } => self.put(&mut kv, key, value).await,
            // Watch latency needs the Watch service; the command line refuses the workload
            // before a run starts, so this is only reached by a caller that skipped that check.
            Op::Watch { .. } => Executed { outcome: Outcome::Error("Unimplemented".into()), acks: vec![] },
            Op::Get { key } => match self.get(&mut kv, key, serializable).await {
                Ok(_) => Executed { outcome: Outcome::Ok, acks: vec![] },
                Err(e) => e,
            },
            Op::Delete { key } => {
                let req = DeleteRangeRequest { key: key.clone(), ..Default::default() };
                match self.with_timeout(kv.delete_range(req)).await {
                    Ok(r) => Executed {
                        outcome: Outcome::Ok,
                        acks: vec![WriteAck::Delete { key, revision: rev(&r.header) }],
                    },
                    Err(s) => Executed { outcome: failed(&s), acks: vec![WriteAck::Unknown { key }] },
                }
            }
            Op::Scan { key, limit } => {
                let req = RangeRequest {
                    key,
                    range_end: Bytes::from_static(SCAN_END),
                    limit,
                    serializable,
                    ..Default::default()
                };
                match self.with_timeout(kv.range(req)).await {
                    Ok(_) => Executed { outcome: Outcome::Ok, acks: vec![] },
                    Err(s) => Executed { outcome: failed(&s), acks: vec![] },
                }
            }
            Op::ReadModifyWrite { key, value } => {
                if let Err(e) = self.get(&mut kv, key.clone(), serializable).await {
                    return e;
                }
                self.put(&mut kv, key, value).await
            }
            Op::Txn { key, value } => {
                // Compare-and-swap: read the key's mod revision, then put only if it is unchanged.
                let seen = match self.get(&mut kv, key.clone(), false).await {
                    Ok(r) => r.kvs.first().map(|kv| kv.mod_revision).unwrap_or(0),
                    Err(e) => return e,
                };
                self.cas(&mut kv, key, value, seen).await.0
            }
        }
    }
}

impl GrpcTarget {
    /// A put, traced.
    async fn put_traced(&self, kv: &mut KvClient<Channel>, t: &mut Tracer<'_>, key: Bytes, value: Bytes) -> Executed {
        let sent = std::time::Instant::now();
        let r = self.put(kv, key.clone(), value.clone()).await;
        t.record(&key, Command::Put { value: text(&value) }, sent, error_of(&r));
        r
    }

    /// A get, traced; the value read (`None`: absent) when it answered.
    async fn get_traced(
        &self,
        kv: &mut KvClient<Channel>,
        t: &mut Tracer<'_>,
        key: Bytes,
        serializable: bool,
    ) -> Result<Option<(Bytes, i64)>, Executed> {
        let sent = std::time::Instant::now();
        match self.get(kv, key.clone(), serializable).await {
            Ok(r) => {
                let found = r.kvs.first().map(|kv| (kv.value.clone(), kv.mod_revision));
                t.record(&key, Command::Get { found: found.as_ref().map(|(v, _)| text(v)) }, sent, None);
                if let Some(h) = &r.header {
                    t.answered_by(h.member_id, h.revision);
                }
                Ok(found)
            }
            Err(e) => {
                t.record(&key, Command::Get { found: None }, sent, error_of(&e));
                Err(e)
            }
        }
    }

    /// [`GrpcTarget::run`] noting every call in `t`. Scans and watches are not registers: they
    /// run untraced (the command line refuses them with `--history`).
    async fn run_traced(&self, conn: usize, op: Op, serializable: bool, t: &mut Tracer<'_>) -> Executed {
        let mut kv = self.client(conn);
        match op {
            Op::Put { key, value } | Op::Insert { key, value } => self.put_traced(&mut kv, t, key, value).await,
            Op::Get { key } => match self.get_traced(&mut kv, t, key, serializable).await {
                Ok(_) => Executed { outcome: Outcome::Ok, acks: vec![] },
                Err(e) => e,
            },
            Op::Delete { key } => {
                let sent = std::time::Instant::now();
                let r = self.run(conn, Op::Delete { key: key.clone() }, serializable).await;
                t.record(&key, Command::Delete, sent, error_of(&r));
                r
            }
            Op::ReadModifyWrite { key, value } => {
                if let Err(e) = self.get_traced(&mut kv, t, key.clone(), serializable).await {
                    return e;
                }
                self.put_traced(&mut kv, t, key, value).await
            }
            Op::Txn { key, value } => {
                // The read is a linearizable get; the Txn compares the mod revision it saw, which
                // with values unique per write is a compare on the value it saw.
                let seen = match self.get_traced(&mut kv, t, key.clone(), false).await {
                    Ok(found) => found,
                    Err(e) => return e,
                };
                let sent = std::time::Instant::now();
                let (r, succeeded) =
                    self.cas(&mut kv, key.clone(), value.clone(), seen.as_ref().map_or(0, |s| s.1)).await;
                let command =
                    Command::Cas { expected: seen.as_ref().map(|(v, _)| text(v)), new: text(&value), succeeded };
                t.record(&key, command, sent, error_of(&r));
                r
            }
            op @ (Op::Scan { .. } | Op::Watch { .. }) => self.run(conn, op, serializable).await,
        }
    }
}

/// The gRPC status name of a failed call, `None` on success.
fn error_of(r: &Executed) -> Option<&str> {
    match &r.outcome {
        Outcome::Ok => None,
        Outcome::Error(code) => Some(code),
    }
}

impl Target for GrpcTarget {
    fn connections(&self) -> usize {
        self.conns.len()
    }

    fn endpoint_of(&self, conn: usize) -> usize {
        self.conns[conn % self.conns.len()].0
    }

    fn endpoints(&self) -> Vec<String> {
        self.endpoints.clone()
    }

    fn execute(&self, conn: usize, op: Op, serializable: bool) -> BoxFut<'_> {
        Box::pin(self.run(conn, op, serializable))
    }

    fn execute_traced<'a>(
        &'a self,
        conn: usize,
        op: Op,
        serializable: bool,
        history: &'a History,
        client: u64,
    ) -> TracedFut<'a> {
        Box::pin(async move {
            let mut t = Tracer::new(history, client);
            let r = self.run_traced(conn, op, serializable, &mut t).await;
            (r, t.records)
        })
    }
}

/// A target that answers every operation at once with success: what loadgen alone can generate.
pub struct NullTarget {
    /// Connections it pretends to have.
    pub conns: usize,
}

impl Target for NullTarget {
    fn connections(&self) -> usize {
        self.conns.max(1)
    }

    fn endpoint_of(&self, _: usize) -> usize {
        0
    }

    fn endpoints(&self) -> Vec<String> {
        vec!["null".into()]
    }

    fn execute(&self, _: usize, op: Op, _: bool) -> BoxFut<'_> {
        Box::pin(async move {
            let acks = match op {
                Op::Put { key, value } | Op::Insert { key, value } => vec![WriteAck::Put { key, value, revision: 1 }],
                _ => vec![],
            };
            Executed { outcome: Outcome::Ok, acks }
        })
    }
}
