//! The node's Prometheus metrics and the HTTP listener that serves them (`/metrics`, `/health`).
//!
//! Names and types follow etcd's wherever etcd exports the same quantity, so etcd dashboards and
//! alerts read a conflux node unchanged; quantities etcd has no name for are prefixed `conflux_`.
//! Values arrive three ways:
//!
//! - pushed by the node: Raft gauges through [`Metrics::observe_raft`] on every openraft metrics
//!   change, proposal gauges and counters through the public fields;
//! - pulled at scrape time from the engine and the store through the closures given to
//!   [`Metrics::new`], so nothing on the write path pays for them;
//! - recorded per RPC by [`GrpcMetricsLayer`], under go-grpc-prometheus's names (which etcd
//!   exports).
//!
//! This module owns no node state. Everything it does on the Raft and gRPC paths is an atomic
//! update or an uncontended lock; scrapes and health checks run on the HTTP listener's tasks.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conflux_engine::StatsSnapshot;
use conflux_engine::stats::{BATCH_BUCKETS, FSYNC_BUCKETS};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use openraft::ServerState;
use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::types::TypeConfig;

/// What the engine reports at each scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSample {
    /// The log store's counters ([`conflux_engine::LogStore::stats`]).
    pub stats: StatsSnapshot,
    /// Segment files the log currently spans.
    pub segments: u64,
}

/// What the state machine reports at each scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSample {
    /// Live keys.
    pub keys: u64,
    /// Current revision.
    pub revision: i64,
    /// Revision of the last compaction.
    pub compact_revision: i64,
    /// Bytes the store occupies (etcd's "db size").
    pub db_bytes: u64,
    /// Watchers open on this member.
    pub watchers: u64,
    /// Leases that exist.
    pub leases: u64,
    /// `--quota-backend-bytes` in effect (negative when the quota is off, as etcd reports it).
    pub quota_bytes: i64,
    /// Alarms raised (cluster-wide list).
    pub alarms: u64,
}

/// The Raft quantities [`Metrics::observe_raft`] reads from openraft's metrics, as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftSample {
    /// Current term.
    pub term: u64,
    /// The leader this node knows of, if any.
    pub leader: Option<u64>,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// Whether this node is a learner (a member without a vote).
    pub is_learner: bool,
    /// Index of the last entry in this node's log (0 when empty).
    pub last_log_index: u64,
    /// Index of the last entry this node knows committed.
    pub committed: u64,
    /// Index of the last entry applied to the state machine.
    pub applied: u64,
}

/// The kind of an RPC, as go-grpc-prometheus labels it (`grpc_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcType {
    /// One request, one response.
    Unary,
    /// A request stream, one response.
    ClientStream,
    /// One request, a response stream.
    ServerStream,
    /// Streams both ways.
    BidiStream,
}

impl GrpcType {
    /// The label value: `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ClientStream => "client_stream",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

impl fmt::Display for GrpcType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of etcd's v3 RPCs: `Watch` and `LeaseKeepAlive` stream both ways, `Snapshot` streams
/// its answer, everything else is unary. [`GrpcMetricsLayer::new`]'s default classifier.
pub fn etcd_grpc_type(service: &str, method: &str) -> GrpcType {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => GrpcType::BidiStream,
        ("etcdserverpb.Maintenance", "Snapshot") => GrpcType::ServerStream,
        _ => GrpcType::Unary,
    }
}

/// gRPC status code names as Go spells them (`codes.Code.String()`), which is what
/// go-grpc-prometheus puts in `grpc_code`; indexed by the numeric code.
const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The `grpc_code` label for a numeric gRPC status code; out-of-range codes count as `Unknown`.
pub fn grpc_code_name(code: i32) -> &'static str {
    usize::try_from(code).ok().and_then(|i| GRPC_CODE_NAMES.get(i)).copied().unwrap_or("Unknown")
}

/// The `grpc_code` label for a `grpc-status` header or trailer value.
fn grpc_code_from_header(value: &http::HeaderValue) -> &'static str {
    std::str::from_utf8(value.as_bytes()).ok().and_then(|s| s.trim().parse().ok()).map_or("Unknown", grpc_code_name)
}

/// Every metric of a node, and the registry they are registered in.
///
/// The public fields are for the node to update; the scrape-time metrics (engine, store) have no
/// field, they are read through the closures given to [`new`](Self::new).
pub struct Metrics {
    /// The registry [`render`](Self::render) gathers.
    pub registry: Registry,
    /// `etcd_server_has_leader`: 1 while a leader is known.
    pub has_leader: IntGauge,
    /// `etcd_server_is_leader`: 1 while this node leads.
    pub is_leader: IntGauge,
    /// `etcd_server_is_learner`: 1 while this node is a learner.
    pub is_learner: IntGauge,
    /// `etcd_server_leader_changes_seen_total`.
    pub leader_changes: IntCounter,
    /// `etcd_server_proposals_committed_total`: the commit index (a gauge, as in etcd).
    pub proposals_committed: IntGauge,
    /// `etcd_server_proposals_applied_total`: the applied index (a gauge, as in etcd).
    pub proposals_applied: IntGauge,
    /// `etcd_server_proposals_pending`: proposals submitted and not yet answered. The write path
    /// increments it on submit and decrements it on answer.
    pub proposals_pending: IntGauge,
    /// `etcd_server_proposals_failed_total`: proposals Raft refused or lost (not etcd-level
    /// errors such as a failed compare, which are committed answers).
    pub proposals_failed: IntCounter,
    /// `etcd_server_id{server_id}`: 1 for this member's id in hex.
    pub server_id: IntGaugeVec,
    /// `conflux_raft_term`.
    pub raft_term: IntGauge,
    /// `conflux_raft_leader_id`: the leader's id, 0 when none. A float, so ids above 2^53 are
    /// approximate; `etcd_server_id` carries the exact id of each member.
    pub raft_leader_id: Gauge,
    /// `conflux_raft_commit_index`.
    pub raft_commit_index: IntGauge,
    /// `conflux_raft_applied_index`.
    pub raft_applied_index: IntGauge,
    /// `conflux_raft_follower_lag_entries{follower}`: on the leader, entries each follower's
    /// matched index trails the leader's last log index; empty on other nodes.
    pub follower_lag: IntGaugeVec,
    /// `grpc_server_started_total{grpc_type,grpc_service,grpc_method}`.
    pub grpc_started: IntCounterVec,
    /// `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`.
    pub grpc_handled: IntCounterVec,
    /// `grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}`.
    pub grpc_handling_seconds: HistogramVec,
    member_id: u64,
    raft: Mutex<RaftTracking>,
}

/// What [`Metrics::observe_raft`] remembers between calls.
#[derive(Default)]
struct RaftTracking {
    /// The leader last observed, to count changes the way etcd does.
    leader: Option<u64>,
    /// Lag gauge per follower currently exported, so a departed follower's series is removed and
    /// a present one costs no label lookup per observation.
    lags: BTreeMap<u64, IntGauge>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").field("member_id", &format_args!("{:x}", self.member_id)).finish_non_exhaustive()
    }
}

/// Registers `c` in `registry` and hands it back. Registration fails only on a duplicate or
/// malformed name, which the static names here rule out.
fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry.register(Box::new(c.clone())).expect("metric names are static and unique");
    c
}

impl Metrics {
    /// Creates the metrics of member `member_id`, reading the engine and the store through
    /// `engine` and `store` at each scrape.
    ///
    /// The closures run on the HTTP listener's task for every `/metrics` request, so they should
    /// be quick and must not block on Raft.
    pub fn new(
        member_id: u64,
        engine: impl Fn() -> EngineSample + Send + Sync + 'static,
        store: impl Fn() -> StoreSample + Send + Sync + 'static,
    ) -> Arc<Metrics> {
        let r = Registry::new();
        let int_gauge = |name: &str, help: &str| register(&r, IntGauge::new(name, help).expect("valid metric"));
        let int_counter = |name: &str, help: &str| register(&r, IntCounter::new(name, help).expect("valid metric"));
        let int_gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&r, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        const GRPC_LABELS: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];

        let metrics = Metrics {
            has_leader: int_gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: int_gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            is_learner: int_gauge(
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            leader_changes: int_counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen."),
            proposals_committed: int_gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: int_gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_pending: int_gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed: int_counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            server_id: int_gauge_vec(
                "etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                &["server_id"],
            ),
            raft_term: int_gauge("conflux_raft_term", "The current Raft term."),
            raft_leader_id: register(
                &r,
                Gauge::new(
                    "conflux_raft_leader_id",
                    "The id of the current leader, 0 when none (approximate above 2^53).",
                )
                .expect("valid metric"),
            ),
            raft_commit_index: int_gauge("conflux_raft_commit_index", "Index of the last log entry known committed."),
            raft_applied_index: int_gauge(
                "conflux_raft_applied_index",
                "Index of the last log entry applied to the state machine.",
            ),
            follower_lag: int_gauge_vec(
                "conflux_raft_follower_lag_entries",
                "On the leader: entries each follower's matched index trails the leader's last log index.",
                &["follower"],
            ),
            grpc_started: register(
                &r,
                IntCounterVec::new(
                    Opts::new("grpc_server_started_total", "Total number of RPCs started on the server."),
                    &GRPC_LABELS,
                )
                .expect("valid metric"),
            ),
            grpc_handled: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "grpc_server_handled_total",
                        "Total number of RPCs completed on the server, regardless of success or failure.",
                    ),
                    &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
                )
                .expect("valid metric"),
            ),
            grpc_handling_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "grpc_server_handling_seconds",
                        "Histogram of response latency (seconds) of gRPC that had been application-level handled \
                         by the server.",
                    )
                    .buckets(prometheus::DEFAULT_BUCKETS.to_vec()),
                    &GRPC_LABELS,
                )
                .expect("valid metric"),
            ),
            member_id,
            raft: Mutex::new(RaftTracking::default()),
            registry: r.clone(),
        };
        metrics.server_id.with_label_values(&[format!("{member_id:x}")]).set(1);
        r.register(Box::new(SampleCollector::new(engine, engine_families))).expect("engine metric names are unique");
        r.register(Box::new(SampleCollector::new(store, store_families))).expect("store metric names are unique");
        Arc::new(metrics)
    }

    /// The member id the metrics were created for.
    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    /// Updates the Raft gauges from openraft's metrics; call on every change of
    /// `Raft::metrics()`.
    pub fn observe_raft(&self, m: &openraft::RaftMetrics<TypeConfig>) {
        let is_leader = m.state == ServerState::Leader;
        self.observe_raft_sample(&RaftSample {
            term: m.current_term,
            leader: m.current_leader,
            is_leader,
            // As Status reports it: listed in the membership, without a vote.
            is_learner: {
                let membership = m.membership_config.membership();
                membership.get_node(&m.id).is_some() && !membership.voter_ids().any(|v| v == m.id)
            },
            last_log_index: m.last_log_index.unwrap_or(0),
            committed: m.local_committed.map_or(0, |l| l.index),
            applied: m.last_applied.map_or(0, |l| l.index),
        });
        let matched = m.replication.as_ref().filter(|_| is_leader);
        self.observe_replication(
            m.last_log_index.unwrap_or(0),
            matched.into_iter().flatten().map(|(id, l)| (*id, l.map_or(0, |l| l.index))),
        );
    }

    /// Updates the Raft gauges from plain numbers; [`observe_raft`](Self::observe_raft) without
    /// openraft. Counts a leader change, as etcd does, whenever a leader is known and differs from
    /// the one last observed (so losing and regaining the same leader counts too).
    pub fn observe_raft_sample(&self, s: &RaftSample) {
        {
            let mut t = self.raft.lock();
            if s.leader.is_some() && s.leader != t.leader {
                self.leader_changes.inc();
            }
            t.leader = s.leader;
        }
        self.has_leader.set(i64::from(s.leader.is_some()));
        self.is_leader.set(i64::from(s.is_leader));
        self.is_learner.set(i64::from(s.is_learner));
        self.raft_term.set(saturating_i64(s.term));
        self.raft_leader_id.set(s.leader.unwrap_or(0) as f64);
        self.raft_commit_index.set(saturating_i64(s.committed));
        self.raft_applied_index.set(saturating_i64(s.applied));
        self.proposals_committed.set(saturating_i64(s.committed));
        self.proposals_applied.set(saturating_i64(s.applied));
    }

    /// Sets `conflux_raft_follower_lag_entries` from the leader's matched index per member
    /// (`last_log_index − matched`); this member's own entry is skipped. An empty `matched`
    /// (this node does not lead) clears every follower's series.
    pub fn observe_replication(&self, last_log_index: u64, matched: impl IntoIterator<Item = (u64, u64)>) {
        let mut t = self.raft.lock();
        let mut seen = Vec::new();
        for (id, index) in matched {
            if id == self.member_id {
                continue;
            }
            let lag = saturating_i64(last_log_index.saturating_sub(index));
            t.lags.entry(id).or_insert_with(|| self.follower_lag.with_label_values(&[format!("{id:x}")])).set(lag);
            seen.push(id);
        }
        if seen.len() != t.lags.len() {
            t.lags.retain(|id, _| {
                let keep = seen.contains(id);
                if !keep {
                    // Absent only if someone else removed it; nothing to do then.
                    let _ = self.follower_lag.remove_label_values(&[format!("{id:x}")]);
                }
                keep
            });
        }
    }

    /// Counts an RPC as started (`grpc_server_started_total`).
    pub fn grpc_started(&self, ty: GrpcType, service: &str, method: &str) {
        self.grpc_started.with_label_values(&[ty.as_str(), service, method]).inc();
    }

    /// Counts an RPC as handled with `code` (a Go code name, see [`grpc_code_name`]) after
    /// `elapsed` (`grpc_server_handled_total`, `grpc_server_handling_seconds`).
    pub fn grpc_handled(&self, ty: GrpcType, service: &str, method: &str, code: &str, elapsed: Duration) {
        self.grpc_handled.with_label_values(&[ty.as_str(), service, method, code]).inc();
        self.grpc_handling_seconds.with_label_values(&[ty.as_str(), service, method]).observe(elapsed.as_secs_f64());
    }

    /// Every metric in Prometheus's text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Scrape-time metrics.

/// A collector that takes a sample at each scrape and turns it into metric families.
struct SampleCollector<S> {
    descs: Vec<Desc>,
    sample: Box<dyn Fn() -> S + Send + Sync>,
    families: fn(&S) -> Vec<MetricFamily>,
}

impl<S: Default> SampleCollector<S> {
    /// The descriptors come from the families of a default sample, so they cannot drift from what
    /// `collect` emits.
    fn new(sample: impl Fn() -> S + Send + Sync + 'static, families: fn(&S) -> Vec<MetricFamily>) -> Self {
        let descs = families(&S::default())
            .iter()
            .map(|f| Desc::new(f.name().to_owned(), f.help().to_owned(), vec![], HashMap::new()).expect("valid desc"))
            .collect();
        SampleCollector { descs, sample: Box::new(sample), families }
    }
}

impl<S> Collector for SampleCollector<S> {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        (self.families)(&(self.sample)())
    }
}

fn family(name: &str, help: &str, ty: MetricType, metric: proto::Metric) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(ty);
    f.set_metric(vec![metric]);
    f
}

fn gauge_family(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut m = proto::Metric::default();
    m.set_gauge(g);
    family(name, help, MetricType::GAUGE, m)
}

fn counter_family(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut c = proto::Counter::default();
    c.set_value(value);
    let mut m = proto::Metric::default();
    m.set_counter(c);
    family(name, help, MetricType::COUNTER, m)
}

/// A histogram from upper bounds and cumulative counts; `count` is the `+Inf` bucket.
fn histogram_family(name: &str, help: &str, bounds: &[f64], cumulative: &[u64], count: u64, sum: f64) -> MetricFamily {
    let buckets = bounds
        .iter()
        .zip(cumulative.iter().copied().chain(std::iter::repeat(0)))
        .map(|(&le, n)| {
            let mut b = proto::Bucket::default();
            b.set_upper_bound(le);
            b.set_cumulative_count(n);
            b
        })
        .collect();
    let mut h = proto::Histogram::default();
    h.set_sample_count(count);
    h.set_sample_sum(sum);
    h.set_bucket(buckets);
    let mut m = proto::Metric::default();
    m.set_histogram(h);
    family(name, help, MetricType::HISTOGRAM, m)
}

fn engine_families(s: &EngineSample) -> Vec<MetricFamily> {
    let st = &s.stats;
    let batch_bounds = BATCH_BUCKETS.map(|b| b as f64);
    vec![
        histogram_family(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            &FSYNC_BUCKETS,
            &st.fsync_cumulative,
            st.fsyncs,
            st.fsync_seconds,
        ),
        histogram_family(
            "conflux_engine_append_batch_size",
            "Completions (appends, meta writes, barriers) per group commit.",
            &batch_bounds,
            &st.batch_cumulative,
            st.batches,
            st.batched_appends as f64,
        ),
        counter_family(
            "conflux_engine_bytes_written_total",
            "Bytes written to log segments and meta files.",
            st.bytes_written as f64,
        ),
        counter_family("conflux_engine_vectored_writes_total", "Vectored write calls.", st.vectored_writes as f64),
        counter_family("conflux_engine_appends_total", "Append calls.", st.appends as f64),
        counter_family("conflux_engine_entries_total", "Log entries appended.", st.entries as f64),
        gauge_family("conflux_engine_segments", "Segment files the log spans.", s.segments as f64),
    ]
}

fn store_families(s: &StoreSample) -> Vec<MetricFamily> {
    const DB_SIZE_HELP: &str = "Total size of the underlying database physically allocated in bytes.";
    vec![
        gauge_family("etcd_debugging_mvcc_keys_total", "Total number of keys.", s.keys as f64),
        gauge_family("etcd_debugging_mvcc_current_revision", "The current revision of store.", s.revision as f64),
        gauge_family(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            s.compact_revision as f64,
        ),
        gauge_family("etcd_mvcc_db_total_size_in_bytes", DB_SIZE_HELP, s.db_bytes as f64),
        gauge_family("etcd_debugging_mvcc_db_total_size_in_bytes", DB_SIZE_HELP, s.db_bytes as f64),
        gauge_family("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", s.watchers as f64),
        gauge_family("conflux_leases", "Leases that exist (granted and not yet revoked or expired).", s.leases as f64),
        gauge_family(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            s.quota_bytes as f64,
        ),
        gauge_family("conflux_alarms", "Alarms raised (NOSPACE, CORRUPT), cluster-wide.", s.alarms as f64),
    ]
}

// ---------------------------------------------------------------------------------------------
// gRPC layer.

/// A tower layer for tonic's server that records `grpc_server_started_total`,
/// `grpc_server_handled_total` and `grpc_server_handling_seconds` for every request whose path has
/// the gRPC form `/package.Service/Method`:
///
/// ```ignore
/// tonic::transport::Server::builder().layer(GrpcMetricsLayer::new(metrics)).add_service(kv)
/// ```
///
/// An RPC counts as started when the request reaches the layer and as handled when its status is
/// known: from the `grpc-status` response header for trailers-only answers (tonic's errors),
/// otherwise from the `grpc-status` trailer at the end of the response body (`OK` when the body
/// ends without one). Handling time runs until then, so a stream's covers its whole life. A
/// response dropped before its status was sent (the client went away) counts as `Canceled`.
///
/// Every path seen becomes a label value, including methods no service implements (answered
/// `Unimplemented`), so a client probing random paths grows the series count.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
    classify: fn(&str, &str) -> GrpcType,
}

impl fmt::Debug for GrpcMetricsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcMetricsLayer").finish_non_exhaustive()
    }
}

impl GrpcMetricsLayer {
    /// A layer recording into `metrics`, typing RPCs with [`etcd_grpc_type`].
    pub fn new(metrics: Arc<Metrics>) -> Self {
        GrpcMetricsLayer { metrics, classify: etcd_grpc_type }
    }

    /// Types RPCs with `classify(service, method)` instead.
    pub fn with_classifier(mut self, classify: fn(&str, &str) -> GrpcType) -> Self {
        self.classify = classify;
        self
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService { inner, metrics: self.metrics.clone(), classify: self.classify }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around tonic's routes.
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
    classify: fn(&str, &str) -> GrpcType,
}

impl<S> fmt::Debug for GrpcMetricsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcMetricsService").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Body,
{
    type Response = http::Response<GrpcMetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let call = RpcCall::start(&self.metrics, self.classify, req.uri().path());
        ResponseFuture { inner: self.inner.call(req), call }
    }
}

/// One RPC being measured: finishes (records `handled`) exactly once, as `Canceled` if dropped
/// unfinished.
struct RpcCall {
    metrics: Arc<Metrics>,
    ty: GrpcType,
    /// `package.Service/Method`; `split` is the index of the `/`.
    name: Box<str>,
    split: usize,
    start: Instant,
    finished: bool,
}

impl RpcCall {
    /// Counts the RPC at `path` as started; `None` when the path is not `/service/method`.
    fn start(metrics: &Arc<Metrics>, classify: fn(&str, &str) -> GrpcType, path: &str) -> Option<RpcCall> {
        let name = path.strip_prefix('/')?;
        let split = name.find('/')?;
        let (service, method) = (&name[..split], &name[split + 1..]);
        if service.is_empty() || method.is_empty() || method.contains('/') {
            return None;
        }
        let ty = classify(service, method);
        metrics.grpc_started(ty, service, method);
        Some(RpcCall { metrics: metrics.clone(), ty, name: name.into(), split, start: Instant::now(), finished: false })
    }

    fn finish(&mut self, code: &str) {
        if !self.finished {
            self.finished = true;
            let (service, method) = (&self.name[..self.split], &self.name[self.split + 1..]);
            self.metrics.grpc_handled(self.ty, service, method, code, self.start.elapsed());
        }
    }
}

impl Drop for RpcCall {
    fn drop(&mut self) {
        self.finish(grpc_code_name(1));
    }
}

pin_project_lite::pin_project! {
    /// The future of [`GrpcMetricsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<RpcCall>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: Body,
{
    type Output = Result<http::Response<GrpcMetricsBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(c) = &mut call {
                    if let Some(status) = response.headers().get("grpc-status") {
                        c.finish(grpc_code_from_header(status));
                    } else if response.body().is_end_stream() {
                        // The server may never poll a body that is already over.
                        c.finish(grpc_code_name(0));
                    }
                }
                Ok(response.map(|inner| GrpcMetricsBody { inner, call: call.filter(|c| !c.finished) }))
            }
            Err(e) => {
                if let Some(c) = &mut call {
                    c.finish(grpc_code_name(2));
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the RPC's status when its trailers (or its end) pass.
    pub struct GrpcMetricsBody<B> {
        #[pin]
        inner: B,
        call: Option<RpcCall>,
    }
}

impl<B: Body> Body for GrpcMetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(call) = this.call {
            match &frame {
                Some(Ok(f)) => {
                    if let Some(trailers) = f.trailers_ref() {
                        call.finish(trailers.get("grpc-status").map_or(grpc_code_name(0), grpc_code_from_header));
                    }
                }
                Some(Err(_)) => call.finish(grpc_code_name(2)),
                None => call.finish(grpc_code_name(0)),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for GrpcMetricsBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcMetricsBody").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP listener.

/// A node's answer to `/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Whether the node can serve.
    pub healthy: bool,
    /// Why not, when it cannot; empty otherwise.
    pub reason: String,
}

impl Health {
    /// A healthy answer.
    pub fn ok() -> Health {
        Health { healthy: true, reason: String::new() }
    }

    /// An unhealthy answer for `reason`.
    pub fn unhealthy(reason: impl Into<String>) -> Health {
        Health { healthy: false, reason: reason.into() }
    }

    /// etcd 3.5's JSON: `{"health":"true","reason":""}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(32 + self.reason.len());
        out.push_str(r#"{"health":""#);
        out.push_str(if self.healthy { "true" } else { "false" });
        out.push_str(r#"","reason":""#);
        push_json_escaped(&mut out, &self.reason);
        out.push_str(r#""}"#);
        out
    }
}

fn push_json_escaped(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// The health check `/health` runs per request.
pub type HealthCheck = Arc<dyn Fn() -> BoxFuture<'static, Health> + Send + Sync>;

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    health: HealthCheck,
}

/// The router of the metrics listener: `GET /metrics` and `GET /health` (and `HEAD` of each).
fn router(metrics: Arc<Metrics>, health: HealthCheck) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/health", get(serve_health))
        .with_state(HttpState { metrics, health })
}

async fn serve_metrics(State(s): State<HttpState>) -> Response {
    ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], s.metrics.render()).into_response()
}

async fn serve_health(State(s): State<HttpState>) -> Response {
    let health = (s.health)().await;
    let status = if health.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(CONTENT_TYPE, "application/json")], health.to_json()).into_response()
}

/// Serves `GET /metrics` (text format, `text/plain; version=0.0.4`) and `GET /health` (etcd's
/// JSON; 200 when healthy, 503 otherwise) on every listener until `shutdown` resolves, then lets
/// requests in flight finish.
///
/// # Errors
///
/// The first listener's I/O error; the other listeners stop with it.
pub async fn serve_http(
    listeners: Vec<tokio::net::TcpListener>,
    metrics: Arc<Metrics>,
    health: HealthCheck,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(metrics, health);
    let shutdown = shutdown.shared();
    let servers = listeners
        .into_iter()
        .map(|listener| axum::serve(listener, app.clone()).with_graceful_shutdown(shutdown.clone()).into_future());
    futures_util::future::try_join_all(servers).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::{Layer, Service, ServiceExt};

    use super::*;

    fn sample_metrics() -> Arc<Metrics> {
        Metrics::new(
            0xabc,
            || {
                let mut stats = StatsSnapshot {
                    fsyncs: 3,
                    fsync_seconds: 0.5,
                    fsync_cumulative: vec![1; FSYNC_BUCKETS.len()],
                    batches: 2,
                    batched_appends: 5,
                    batch_cumulative: vec![0; BATCH_BUCKETS.len()],
                    bytes_written: 4096,
                    appends: 5,
                    entries: 7,
                    ..Default::default()
                };
                stats.batch_cumulative[1] = 1;
                stats.batch_cumulative[2..].fill(2);
                EngineSample { stats, segments: 4 }
            },
            || StoreSample {
                keys: 10,
                revision: 42,
                compact_revision: 7,
                db_bytes: 1 << 20,
                watchers: 3,
                leases: 2,
                quota_bytes: 2 << 30,
                alarms: 1,
            },
        )
    }

    /// The value of the sample line `series` (name with labels, as rendered).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn render_has_every_metric_with_its_type() {
        let m = sample_metrics();
        // Vector metrics render only once a series exists.
        m.observe_replication(10, [(1, 4)]);
        m.grpc_started(GrpcType::Unary, "etcdserverpb.KV", "Range");
        m.grpc_handled(GrpcType::Unary, "etcdserverpb.KV", "Range", "OK", Duration::from_millis(3));
        let text = m.render();
        let expected = [
            ("etcd_server_has_leader", "gauge"),
            ("etcd_server_is_leader", "gauge"),
            ("etcd_server_is_learner", "gauge"),
            ("etcd_server_leader_changes_seen_total", "counter"),
            ("etcd_server_proposals_committed_total", "gauge"),
            ("etcd_server_proposals_applied_total", "gauge"),
            ("etcd_server_proposals_pending", "gauge"),
            ("etcd_server_proposals_failed_total", "counter"),
            ("etcd_server_id", "gauge"),
            ("conflux_raft_term", "gauge"),
            ("conflux_raft_leader_id", "gauge"),
            ("conflux_raft_commit_index", "gauge"),
            ("conflux_raft_applied_index", "gauge"),
            ("conflux_raft_follower_lag_entries", "gauge"),
            ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
            ("conflux_engine_append_batch_size", "histogram"),
            ("conflux_engine_bytes_written_total", "counter"),
            ("conflux_engine_vectored_writes_total", "counter"),
            ("conflux_engine_appends_total", "counter"),
            ("conflux_engine_entries_total", "counter"),
            ("conflux_engine_segments", "gauge"),
            ("etcd_debugging_mvcc_keys_total", "gauge"),
            ("etcd_debugging_mvcc_current_revision", "gauge"),
            ("etcd_debugging_mvcc_compact_revision", "gauge"),
            ("etcd_debugging_mvcc_watcher_total", "gauge"),
            ("conflux_leases", "gauge"),
            ("etcd_server_quota_backend_bytes", "gauge"),
            ("conflux_alarms", "gauge"),
            ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
            ("etcd_debugging_mvcc_db_total_size_in_bytes", "gauge"),
            ("grpc_server_started_total", "counter"),
            ("grpc_server_handled_total", "counter"),
            ("grpc_server_handling_seconds", "histogram"),
        ];
        for (name, ty) in expected {
            assert!(text.contains(&format!("\n# TYPE {name} {ty}\n")), "no `# TYPE {name} {ty}` in\n{text}");
        }
        assert_eq!(value(&text, r#"etcd_server_id{server_id="abc"}"#), Some(1.0));
        assert_eq!(value(&text, r#"conflux_raft_follower_lag_entries{follower="1"}"#), Some(6.0));
        // Scrape-time values, histograms with their +Inf bucket, sum and count.
        assert_eq!(value(&text, "etcd_debugging_mvcc_current_revision"), Some(42.0));
        assert_eq!(value(&text, "etcd_mvcc_db_total_size_in_bytes"), Some(1048576.0));
        assert_eq!(value(&text, "etcd_debugging_mvcc_db_total_size_in_bytes"), Some(1048576.0));
        assert_eq!(value(&text, "conflux_engine_segments"), Some(4.0));
        assert_eq!(value(&text, "etcd_server_quota_backend_bytes"), Some(2147483648.0));
        assert_eq!(value(&text, "conflux_alarms"), Some(1.0));
        assert_eq!(value(&text, "conflux_engine_bytes_written_total"), Some(4096.0));
        assert_eq!(value(&text, r#"etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"}"#), Some(1.0));
        assert_eq!(value(&text, r#"etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}"#), Some(3.0));
        assert_eq!(value(&text, "etcd_disk_wal_fsync_duration_seconds_sum"), Some(0.5));
        assert_eq!(value(&text, "etcd_disk_wal_fsync_duration_seconds_count"), Some(3.0));
        assert_eq!(value(&text, r#"conflux_engine_append_batch_size_bucket{le="2"}"#), Some(1.0));
        assert_eq!(value(&text, r#"conflux_engine_append_batch_size_bucket{le="1024"}"#), Some(2.0));
        assert_eq!(value(&text, "conflux_engine_append_batch_size_sum"), Some(5.0));
        assert_eq!(value(&text, "conflux_engine_append_batch_size_count"), Some(2.0));
    }

    fn log_id(term: u64, node_id: u64, index: u64) -> crate::types::LogId {
        openraft::LogId::new(openraft::impls::leader_id_adv::LeaderId { term, node_id }, index)
    }

    #[test]
    fn observe_raft_sets_gauges_and_counts_leader_changes() {
        let m = sample_metrics();
        let mut rm = openraft::RaftMetrics::<TypeConfig>::new_initial(0xabc);
        rm.current_term = 3;
        rm.current_leader = Some(0xdef);
        rm.last_log_index = Some(20);
        rm.local_committed = Some(log_id(3, 0xdef, 18));
        rm.last_applied = Some(log_id(3, 0xdef, 17));
        m.observe_raft(&rm);
        assert_eq!(m.has_leader.get(), 1);
        assert_eq!(m.is_leader.get(), 0);
        assert_eq!(m.raft_term.get(), 3);
        assert_eq!(m.raft_leader_id.get(), 0xdef as f64);
        assert_eq!(m.raft_commit_index.get(), 18);
        assert_eq!(m.proposals_committed.get(), 18);
        assert_eq!(m.raft_applied_index.get(), 17);
        assert_eq!(m.proposals_applied.get(), 17);
        assert_eq!(m.leader_changes.get(), 1);
        m.observe_raft(&rm);
        assert_eq!(m.leader_changes.get(), 1, "same leader again is no change");

        // This node wins an election: lag per follower, not for itself.
        rm.current_term = 4;
        rm.current_leader = Some(0xabc);
        rm.state = ServerState::Leader;
        let matched = |i| Some(log_id(4, 0xabc, i));
        rm.replication = Some(BTreeMap::from([(0xabc, matched(20)), (1, matched(15)), (2, None)]));
        m.observe_raft(&rm);
        assert_eq!(m.leader_changes.get(), 2);
        assert_eq!(m.is_leader.get(), 1);
        assert_eq!(m.follower_lag.with_label_values(&["1"]).get(), 5);
        assert_eq!(m.follower_lag.with_label_values(&["2"]).get(), 20);
        assert!(!m.render().contains(r#"follower="abc""#));

        // A follower leaves the membership: its series goes.
        rm.replication = Some(BTreeMap::from([(0xabc, matched(20)), (1, matched(20))]));
        m.observe_raft(&rm);
        let text = m.render();
        assert_eq!(value(&text, r#"conflux_raft_follower_lag_entries{follower="1"}"#), Some(0.0));
        assert!(!text.contains(r#"follower="2""#), "{text}");

        // Leadership lost, then no leader: lag cleared, has_leader 0.
        rm.state = ServerState::Follower;
        rm.current_leader = None;
        rm.replication = None;
        m.observe_raft(&rm);
        assert_eq!(m.has_leader.get(), 0);
        assert_eq!(m.is_leader.get(), 0);
        assert_eq!(m.raft_leader_id.get(), 0.0);
        assert!(!m.render().contains("conflux_raft_follower_lag_entries"));
        assert_eq!(m.leader_changes.get(), 2);

        // The same leader after an interregnum counts, as in etcd.
        m.observe_raft_sample(&RaftSample { term: 5, leader: Some(0xabc), is_leader: true, ..Default::default() });
        assert_eq!(m.leader_changes.get(), 3);
    }

    fn grpc_response(status: Option<&'static str>, trailer: Option<&'static str>) -> http::Response<TestBody> {
        let mut response = http::Response::new(TestBody { data: Some(bytes::Bytes::from_static(b"x")), trailer });
        if let Some(s) = status {
            response.headers_mut().insert("grpc-status", http::HeaderValue::from_static(s));
        }
        response
    }

    /// A body of one data frame and an optional `grpc-status` trailer.
    struct TestBody {
        data: Option<bytes::Bytes>,
        trailer: Option<&'static str>,
    }

    impl Body for TestBody {
        type Data = bytes::Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Infallible>>> {
            if let Some(d) = self.data.take() {
                return Poll::Ready(Some(Ok(Frame::data(d))));
            }
            Poll::Ready(self.trailer.take().map(|t| {
                let mut h = http::HeaderMap::new();
                h.insert("grpc-status", http::HeaderValue::from_static(t));
                Ok(Frame::trailers(h))
            }))
        }
    }

    async fn drain<B: Body + Unpin>(mut body: B) {
        use std::future::poll_fn;
        while poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await.is_some() {}
    }

    fn handled(m: &Metrics, ty: &str, method: &str, code: &str) -> u64 {
        m.grpc_handled.with_label_values(&[ty, "etcdserverpb.KV", method, code]).get()
    }

    #[tokio::test]
    async fn grpc_layer_counts_requests_with_their_code() {
        let m = sample_metrics();
        let layer = GrpcMetricsLayer::new(m.clone());
        let mut svc = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
            let r = match req.uri().path() {
                "/etcdserverpb.KV/Range" => grpc_response(None, Some("0")),
                "/etcdserverpb.KV/Put" => grpc_response(Some("9"), None),
                "/etcdserverpb.KV/Txn" => grpc_response(None, Some("14")),
                _ => grpc_response(None, None),
            };
            Ok::<_, Infallible>(r)
        }));
        let request = |path: &str| http::Request::builder().uri(path).body(()).unwrap();

        // OK in the trailers: handled only once the body has been read.
        let response = svc.ready().await.unwrap().call(request("/etcdserverpb.KV/Range")).await.unwrap();
        assert_eq!(m.grpc_started.with_label_values(&["unary", "etcdserverpb.KV", "Range"]).get(), 1);
        assert_eq!(handled(&m, "unary", "Range", "OK"), 0);
        drain(response.into_body()).await;
        assert_eq!(handled(&m, "unary", "Range", "OK"), 1);
        assert_eq!(
            m.grpc_handling_seconds.with_label_values(&["unary", "etcdserverpb.KV", "Range"]).get_sample_count(),
            1
        );

        // Trailers-only error: the header's status, at once.
        let _response = svc.ready().await.unwrap().call(request("/etcdserverpb.KV/Put")).await.unwrap();
        assert_eq!(handled(&m, "unary", "Put", "FailedPrecondition"), 1);

        // Error status in the trailers.
        let response = svc.ready().await.unwrap().call(request("/etcdserverpb.KV/Txn")).await.unwrap();
        drain(response.into_body()).await;
        assert_eq!(handled(&m, "unary", "Txn", "Unavailable"), 1);

        // No status anywhere: OK. Body dropped unread: Canceled.
        let response = svc.ready().await.unwrap().call(request("/etcdserverpb.KV/Compact")).await.unwrap();
        drain(response.into_body()).await;
        assert_eq!(handled(&m, "unary", "Compact", "OK"), 1);
        let response = svc.ready().await.unwrap().call(request("/etcdserverpb.KV/Range")).await.unwrap();
        drop(response);
        assert_eq!(handled(&m, "unary", "Range", "Canceled"), 1);
        assert_eq!(handled(&m, "unary", "Range", "OK"), 1);

        // Streams are typed by the classifier; non-gRPC paths are not counted.
        let response = svc.ready().await.unwrap().call(request("/etcdserverpb.Watch/Watch")).await.unwrap();
        drain(response.into_body()).await;
        assert_eq!(m.grpc_handled.with_label_values(&["bidi_stream", "etcdserverpb.Watch", "Watch", "OK"]).get(), 1);
        let response = svc.ready().await.unwrap().call(request("/metrics")).await.unwrap();
        drain(response.into_body()).await;
        let text = m.render();
        assert!(!text.contains(r#"grpc_method="""#) && !text.contains("metrics\""), "{text}");
    }

    /// The layer fits tonic's server, and an RPC answered trailers-only (no such method) counts.
    #[tokio::test]
    async fn grpc_layer_in_a_tonic_server() {
        let m = sample_metrics();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(GrpcMetricsLayer::new(m.clone()))
                .add_routes(tonic::service::Routes::default())
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async move {
                    let _ = stopped.await;
                }),
        );

        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Range");
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let status = grpc.unary(tonic::Request::new(()), path, codec).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert_eq!(m.grpc_started.with_label_values(&["unary", "etcdserverpb.KV", "Range"]).get(), 1);
        assert_eq!(handled(&m, "unary", "Range", "Unimplemented"), 1);

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("server stops").unwrap().unwrap();
    }

    #[test]
    fn grpc_code_names_follow_go() {
        assert_eq!(grpc_code_name(0), "OK");
        assert_eq!(grpc_code_name(1), "Canceled");
        assert_eq!(grpc_code_name(16), "Unauthenticated");
        assert_eq!(grpc_code_name(17), "Unknown");
        assert_eq!(grpc_code_name(-1), "Unknown");
        assert_eq!(grpc_code_from_header(&http::HeaderValue::from_static("x")), "Unknown");
    }

    #[test]
    fn health_json_is_etcds_and_escapes() {
        assert_eq!(Health::ok().to_json(), r#"{"health":"true","reason":""}"#);
        assert_eq!(Health::unhealthy("no \"leader\"\n").to_json(), r#"{"health":"false","reason":"no \"leader\"\n"}"#);
    }

    async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serve_http_answers_metrics_and_health() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let h = healthy.clone();
        let health: HealthCheck = Arc::new(move || {
            let ok = h.load(std::sync::atomic::Ordering::Relaxed);
            async move { if ok { Health::ok() } else { Health::unhealthy("no leader") } }.boxed()
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_http(vec![listener], sample_metrics(), health, async move {
            let _ = stopped.await;
        }));

        let response = http_get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{response}");
        assert!(response.contains("# TYPE etcd_server_has_leader gauge"), "{response}");

        let response = http_get(addr, "/health").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(r#"{"health":"true","reason":""}"#), "{response}");

        healthy.store(false, std::sync::atomic::Ordering::Relaxed);
        let response = http_get(addr, "/health").await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(response.ends_with(r#"{"health":"false","reason":"no leader"}"#), "{response}");

        let response = http_get(addr, "/nope").await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("server stops").unwrap().unwrap();
    }
}
