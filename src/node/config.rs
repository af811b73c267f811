//! The node's configuration: the `serve` flags ([`ServeArgs`]), their `CONFLUX_*` environment
//! variables and the YAML config file, layered (command line > environment > config file >
//! defaults) and checked into one [`NodeConfig`].
//!
//! Flag names and defaults are etcd 3.4's where etcd has the flag, so an etcd command line or
//! config file mostly works unchanged; etcd options conflux does not have are warned about, not
//! refused. Every error names the flag, the value and the layer it came from. This module only
//! reads: it opens no socket and touches no data directory. Operators' view: `docs/operations.md`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::{Host, Url};

use crate::compactor::AutoCompaction;

/// Every flag that can also be set from the environment and the config file, as etcd spells it,
/// with its variable (`CONFLUX_` + the flag upper-cased, `-` → `_`; a test checks the spelling).
/// `--config-file` is not here: it comes from the command line or [`CONFIG_FILE_ENV`] only.
const FLAGS: &[(&str, &str)] = &[
    ("name", "CONFLUX_NAME"),
    ("data-dir", "CONFLUX_DATA_DIR"),
    ("listen-client-urls", "CONFLUX_LISTEN_CLIENT_URLS"),
    ("advertise-client-urls", "CONFLUX_ADVERTISE_CLIENT_URLS"),
    ("listen-peer-urls", "CONFLUX_LISTEN_PEER_URLS"),
    ("initial-advertise-peer-urls", "CONFLUX_INITIAL_ADVERTISE_PEER_URLS"),
    ("peer-local-address", "CONFLUX_PEER_LOCAL_ADDRESS"),
    ("initial-cluster", "CONFLUX_INITIAL_CLUSTER"),
    ("initial-cluster-state", "CONFLUX_INITIAL_CLUSTER_STATE"),
    ("initial-cluster-token", "CONFLUX_INITIAL_CLUSTER_TOKEN"),
    ("heartbeat-interval", "CONFLUX_HEARTBEAT_INTERVAL"),
    ("election-timeout", "CONFLUX_ELECTION_TIMEOUT"),
    ("max-request-bytes", "CONFLUX_MAX_REQUEST_BYTES"),
    ("max-txn-ops", "CONFLUX_MAX_TXN_OPS"),
    ("auto-compaction-mode", "CONFLUX_AUTO_COMPACTION_MODE"),
    ("auto-compaction-retention", "CONFLUX_AUTO_COMPACTION_RETENTION"),
    ("listen-metrics-urls", "CONFLUX_LISTEN_METRICS_URLS"),
    ("log-level", "CONFLUX_LOG_LEVEL"),
    ("snapshot-count", "CONFLUX_SNAPSHOT_COUNT"),
    ("snapshot-catchup-entries", "CONFLUX_SNAPSHOT_CATCHUP_ENTRIES"),
    ("segment-bytes", "CONFLUX_SEGMENT_BYTES"),
    ("snapshot-zstd-level", "CONFLUX_SNAPSHOT_ZSTD_LEVEL"),
    ("request-timeout", "CONFLUX_REQUEST_TIMEOUT"),
    ("io", "CONFLUX_IO"),
    ("watch-progress-notify-interval", "CONFLUX_WATCH_PROGRESS_NOTIFY_INTERVAL"),
    ("watch-ring-events", "CONFLUX_WATCH_RING_EVENTS"),
    ("quota-backend-bytes", "CONFLUX_QUOTA_BACKEND_BYTES"),
    ("corrupt-check-time", "CONFLUX_CORRUPT_CHECK_TIME"),
    ("cert-file", "CONFLUX_CERT_FILE"),
    ("key-file", "CONFLUX_KEY_FILE"),
    ("trusted-ca-file", "CONFLUX_TRUSTED_CA_FILE"),
    ("client-cert-auth", "CONFLUX_CLIENT_CERT_AUTH"),
    ("peer-cert-file", "CONFLUX_PEER_CERT_FILE"),
    ("peer-key-file", "CONFLUX_PEER_KEY_FILE"),
    ("peer-trusted-ca-file", "CONFLUX_PEER_TRUSTED_CA_FILE"),
    ("peer-client-cert-auth", "CONFLUX_PEER_CLIENT_CERT_AUTH"),
];

/// The variable naming the config file when `--config-file` is not given.
const CONFIG_FILE_ENV: &str = "CONFLUX_CONFIG_FILE";

/// Flags whose value is a comma-separated list; the config file may also give a YAML list.
const LIST_FLAGS: &[&str] = &[
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "listen-metrics-urls",
];

/// etcd 3.4/3.5 config-file keys conflux does not implement: a file holding them is still loaded
/// (with a warning), so an etcd config can be reused. Keys starting with `experimental-` or
/// `unsafe-` are treated the same way.
const ETCD_ONLY_KEYS: &[&str] = &[
    "wal-dir",
    "max-snapshots",
    "max-wals",
    "backend-batch-interval",
    "backend-batch-limit",
    "backend-bbolt-freelist-type",
    "initial-election-tick-advance",
    "pre-vote",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "max-concurrent-streams",
    "socket-reuse-port",
    "socket-reuse-address",
    "listen-client-http-urls",
    "cors",
    "host-whitelist",
    "discovery",
    "discovery-fallback",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "strict-reconfig-check",
    "enable-v2",
    "v2-deprecation",
    "enable-pprof",
    "enable-grpc-gateway",
    "proxy",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    "auth-token",
    "auth-token-ttl",
    "bcrypt-cost",
    "logger",
    "log-outputs",
    "log-format",
    "log-package-levels",
    "log-rotate-config-json",
    "enable-log-rotation",
    "debug",
    "force-new-cluster",
    "metrics",
    "initial-corrupt-check",
    "compact-hash-check-enabled",
    "compact-hash-check-time",
    "watch-progress-notify-interval",
    "warning-apply-duration",
    "warning-unary-request-duration",
    "enable-distributed-tracing",
    "distributed-tracing-address",
    "distributed-tracing-service-name",
    "distributed-tracing-instance-id",
    "distributed-tracing-sampling-rate",
    "memory-mlock",
    "feature-gates",
];

/// etcd TLS options conflux does not implement. Set in a config file (to anything but false or
/// empty) they are refused rather than ignored: a CRL or a cipher list silently dropped is a
/// security hole. On the command line they are unknown flags.
const UNSUPPORTED_TLS_KEYS: &[&str] = &[
    "auto-tls",
    "peer-auto-tls",
    "client-crl-file",
    "peer-crl-file",
    "cipher-suites",
    "tls-min-version",
    "tls-max-version",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "self-signed-cert-validity",
];

/// etcd 3.4's default space quota (`DefaultQuotaBytes`, 2 GiB).
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;
/// Above this etcd warns that the quota is larger than it recommends (`MaxQuotaBytes`, 8 GiB).
const MAX_QUOTA_BYTES: u64 = 8 << 30;

/// etcd refuses election timeouts above this (ms); so do we.
const MAX_ELECTION_MS: u64 = 50_000;
/// The engine refuses smaller segments (`conflux_engine::Config::validate`).
const MIN_SEGMENT_BYTES: u64 = 4096;
/// Room a segment must have beyond the largest request: the entry's framing around the request
/// and the segment header.
const SEGMENT_SLACK_BYTES: u64 = 64 << 10;

/// Command-line flags of the server. Every field is `Option` (`None` = not given on the command
/// line) so [`NodeConfig::resolve`] can fall back to the environment, the config file and the
/// default, in that order. Values stay text until `resolve` parses them, so a bad value reads the
/// same whichever layer it came from.
#[derive(Debug, Clone, Default, clap::Args)]
// The doc above is for Rust readers; keep it out of `--help` (the subcommand describes itself).
#[command(about = None, long_about = None)]
pub struct ServeArgs {
    /// Human-readable name of this member; must have an entry in --initial-cluster [default: default]
    #[arg(long = "name", value_name = "NAME")]
    pub name: Option<String>,
    /// Directory holding the Raft log, snapshots and metadata [default: <name>.conflux]
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Comma-separated http:// or https:// URLs to serve clients (the etcd v3 gRPC API) on
    /// [default: http://localhost:2379]
    #[arg(long = "listen-client-urls", value_name = "URLS")]
    pub listen_client_urls: Option<String>,
    /// Comma-separated client URLs of this member as clients should reach it; required when
    /// --listen-client-urls is set [default: http://localhost:2379]
    #[arg(long = "advertise-client-urls", value_name = "URLS")]
    pub advertise_client_urls: Option<String>,
    /// Comma-separated http:// or https:// URLs to serve other members on
    /// [default: http://localhost:2380]
    #[arg(long = "listen-peer-urls", value_name = "URLS")]
    pub listen_peer_urls: Option<String>,
    /// Comma-separated peer URLs of this member as other members should reach it; must equal its
    /// --initial-cluster entry [default: http://localhost:2380]
    #[arg(long = "initial-advertise-peer-urls", value_name = "URLS")]
    pub initial_advertise_peer_urls: Option<String>,
    /// IP address this member's connections to other members' peer URLs go out from (a
    /// multi-homed host choosing its interface) [default: chosen by the operating system]
    #[arg(long = "peer-local-address", value_name = "IP")]
    pub peer_local_address: Option<String>,
    /// The bootstrap members, as comma-separated name=peer-URL pairs (a name may repeat to give it
    /// several URLs) [default: <name>=<initial-advertise-peer-urls>]
    #[arg(long = "initial-cluster", value_name = "NAME=URL,...")]
    pub initial_cluster: Option<String>,
    /// `new` to bootstrap a new cluster, `existing` to join one [default: new]
    #[arg(long = "initial-cluster-state", value_name = "new|existing")]
    pub initial_cluster_state: Option<String>,
    /// Token identifying the cluster during bootstrap [default: etcd-cluster]
    #[arg(long = "initial-cluster-token", value_name = "TOKEN")]
    pub initial_cluster_token: Option<String>,
    /// Leader heartbeat interval in milliseconds [default: 100]
    #[arg(long = "heartbeat-interval", value_name = "MS", allow_negative_numbers = true)]
    pub heartbeat_interval: Option<String>,
    /// Election timeout in milliseconds; at least 5 × --heartbeat-interval, at most 50000
    /// [default: 1000]
    #[arg(long = "election-timeout", value_name = "MS", allow_negative_numbers = true)]
    pub election_timeout: Option<String>,
    /// Largest client request accepted, in bytes [default: 1572864]
    #[arg(long = "max-request-bytes", value_name = "BYTES", allow_negative_numbers = true)]
    pub max_request_bytes: Option<String>,
    /// Most operations in one transaction [default: 128]
    #[arg(long = "max-txn-ops", value_name = "N", allow_negative_numbers = true)]
    pub max_txn_ops: Option<String>,
    /// `periodic` (keep a duration of history) or `revision` (keep a number of revisions)
    /// [default: periodic]
    #[arg(long = "auto-compaction-mode", value_name = "MODE")]
    pub auto_compaction_mode: Option<String>,
    /// History to keep: a duration such as 1h30m or a number of hours (periodic), or a number of
    /// revisions (revision); 0 turns auto-compaction off [default: 0]
    #[arg(long = "auto-compaction-retention", value_name = "RETENTION", allow_negative_numbers = true)]
    pub auto_compaction_retention: Option<String>,
    /// Comma-separated http:// URLs to serve /metrics and /health on [default: none]
    #[arg(long = "listen-metrics-urls", value_name = "URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Log level: trace, debug, info, warn or error [default: info]
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Applied entries between two snapshots [default: 100000]
    #[arg(long = "snapshot-count", value_name = "N", allow_negative_numbers = true)]
    pub snapshot_count: Option<String>,
    /// Entries kept in the log after a snapshot, so slow followers catch up without one
    /// [default: 5000]
    #[arg(long = "snapshot-catchup-entries", value_name = "N", allow_negative_numbers = true)]
    pub snapshot_catchup_entries: Option<String>,
    /// Size of each log segment file in bytes, a multiple of 8 [default: 67108864]
    #[arg(long = "segment-bytes", value_name = "BYTES", allow_negative_numbers = true)]
    pub segment_bytes: Option<String>,
    /// zstd level for snapshots, 1 (fastest) to 22 (smallest) [default: 3]
    #[arg(long = "snapshot-zstd-level", value_name = "LEVEL", allow_negative_numbers = true)]
    pub snapshot_zstd_level: Option<String>,
    /// How long a client request waits for a leader and for its commit, in milliseconds
    /// [default: 5000]
    #[arg(long = "request-timeout", value_name = "MS", allow_negative_numbers = true)]
    pub request_timeout: Option<String>,
    /// How the log is written: auto (probe io_uring, use the backend measured faster here, fall
    /// back to sync with a log line), uring (fail where io_uring is unavailable) or sync
    /// [default: auto]
    #[arg(long = "io", value_name = "BACKEND")]
    pub io: Option<String>,
    /// How often an idle watcher created with progress_notify gets a progress notification, in
    /// milliseconds (etcd's --experimental-watch-progress-notify-interval) [default: 600000]
    #[arg(long = "watch-progress-notify-interval", value_name = "MS", allow_negative_numbers = true)]
    pub watch_progress_notify_interval: Option<String>,
    /// Recent events kept in memory for watchers; a watcher further behind rebuilds its events
    /// from the store's history [default: 65536]
    #[arg(long = "watch-ring-events", value_name = "EVENTS", allow_negative_numbers = true)]
    pub watch_ring_events: Option<String>,
    /// Space quota in bytes: crossing it raises the NOSPACE alarm; 0 means the default, a
    /// negative value turns the quota off [default: 2147483648]
    #[arg(long = "quota-backend-bytes", value_name = "BYTES", allow_negative_numbers = true)]
    pub quota_backend_bytes: Option<String>,
    /// How often the leader compares its HashKV with the followers', as a duration (`5m`,
    /// `30s`); 0 turns the check off (etcd's --experimental-corrupt-check-time) [default: 0]
    #[arg(long = "corrupt-check-time", value_name = "DURATION")]
    pub corrupt_check_time: Option<String>,
    /// Certificate (PEM, with its chain) the https:// client URLs present [default: none]
    #[arg(long = "cert-file", value_name = "FILE")]
    pub cert_file: Option<String>,
    /// Private key (PEM) of --cert-file [default: none]
    #[arg(long = "key-file", value_name = "FILE")]
    pub key_file: Option<String>,
    /// CA bundle (PEM) that client certificates must be signed by, with --client-cert-auth
    /// [default: none]
    #[arg(long = "trusted-ca-file", value_name = "FILE")]
    pub trusted_ca_file: Option<String>,
    /// Refuse clients of the https:// client URLs without a certificate signed by
    /// --trusted-ca-file [default: false]
    #[arg(long = "client-cert-auth", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub client_cert_auth: Option<String>,
    /// Certificate (PEM) the https:// peer URLs present, and members present when they dial
    /// others [default: none]
    #[arg(long = "peer-cert-file", value_name = "FILE")]
    pub peer_cert_file: Option<String>,
    /// Private key (PEM) of --peer-cert-file [default: none]
    #[arg(long = "peer-key-file", value_name = "FILE")]
    pub peer_key_file: Option<String>,
    /// CA bundle (PEM) that verifies other members (their servers, and their client certificates
    /// with --peer-client-cert-auth) [default: none]
    #[arg(long = "peer-trusted-ca-file", value_name = "FILE")]
    pub peer_trusted_ca_file: Option<String>,
    /// Refuse members dialling the https:// peer URLs without a certificate signed by
    /// --peer-trusted-ca-file [default: false]
    #[arg(long = "peer-client-cert-auth", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub peer_client_cert_auth: Option<String>,
    /// YAML file of settings keyed by flag name; command-line flags and CONFLUX_* variables
    /// override it [default: none]
    #[arg(long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

/// Whether this member bootstraps a new cluster or joins an existing one
/// (`--initial-cluster-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a cluster that already runs (the member was added with `member add`).
    Existing,
}

impl fmt::Display for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        })
    }
}

/// Where a setting's value came from; errors name it so an operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    CommandLine,
    /// An environment variable (its name).
    Env(&'static str),
    /// The YAML config file (the key is the flag's name).
    File(PathBuf),
    /// Nothing set it: the built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CommandLine => f.write_str("from the command line"),
            Origin::Env(var) => write!(f, "from {var}"),
            Origin::File(path) => write!(f, "from config file {}", path.display()),
            Origin::Default => f.write_str("the default"),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One setting's value does not parse or is out of range.
    #[error("invalid value {value:?} for --{flag} ({origin}): {reason}")]
    InvalidValue {
        /// The flag, without `--`.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Where it came from.
        origin: Origin,
        /// What is wrong with it.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {} ({origin}): {error}", path.display())]
    ReadConfigFile {
        /// The file.
        path: PathBuf,
        /// Where its name came from (`--config-file` or `CONFLUX_CONFIG_FILE`).
        origin: Origin,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The config file is not YAML, or not a mapping of flag names to values.
    #[error("cannot parse config file {}: {reason}", path.display())]
    ParseConfigFile {
        /// The file.
        path: PathBuf,
        /// The YAML error (with its line and column) or what the file holds instead of a mapping.
        reason: String,
    },
    /// A config-file key conflux knows holds a value of the wrong YAML type (a mapping, say).
    #[error("config file {}: key {key} has value {value}, but expects {expected}", path.display())]
    ConfigFileValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value, rendered on one line.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// `--name` has no entry in `--initial-cluster`.
    #[error(
        "member {name} ({name_origin}) has no entry in --initial-cluster {initial_cluster:?} ({cluster_origin}); \
         add {name}=<its --initial-advertise-peer-urls> to it, or set --name to one of its members"
    )]
    MemberNotInCluster {
        /// This member's name.
        name: String,
        /// Where the name came from.
        name_origin: Origin,
        /// `--initial-cluster` as given.
        initial_cluster: String,
        /// Where it came from.
        cluster_origin: Origin,
    },
    /// This member's `--initial-cluster` entry lists other URLs than its
    /// `--initial-advertise-peer-urls` (etcd refuses this too).
    #[error(
        "--initial-cluster ({cluster_origin}) gives member {name} the peer URLs {cluster_urls}, but \
         --initial-advertise-peer-urls ({advertise_origin}) is {advertise_urls}; they must list the same URLs"
    )]
    AdvertiseMismatch {
        /// This member's name.
        name: String,
        /// Its URLs in `--initial-cluster`, comma-separated.
        cluster_urls: String,
        /// Where `--initial-cluster` came from.
        cluster_origin: Origin,
        /// `--initial-advertise-peer-urls`, comma-separated.
        advertise_urls: String,
        /// Where it came from.
        advertise_origin: Origin,
    },
    /// The election timeout is under five heartbeats (etcd's rule): followers would start
    /// elections while the leader is healthy.
    #[error(
        "--election-timeout {election_ms} ms ({election_origin}) must be at least 5 times \
         --heartbeat-interval {heartbeat_ms} ms ({heartbeat_origin})"
    )]
    ElectionTimeoutTooShort {
        /// The election timeout, ms.
        election_ms: u64,
        /// Where it came from.
        election_origin: Origin,
        /// The heartbeat interval, ms.
        heartbeat_ms: u64,
        /// Where it came from.
        heartbeat_origin: Origin,
    },
    /// `--auto-compaction-mode` and `--auto-compaction-retention` do not go together.
    #[error(
        "invalid auto-compaction settings: --auto-compaction-mode {mode:?} ({mode_origin}), \
         --auto-compaction-retention {retention:?} ({retention_origin}): {reason}"
    )]
    AutoCompaction {
        /// The mode as given.
        mode: String,
        /// Where it came from.
        mode_origin: Origin,
        /// The retention as given.
        retention: String,
        /// Where it came from.
        retention_origin: Origin,
        /// What is wrong.
        reason: String,
    },
    /// An https URL without the TLS files it needs.
    #[error("--{flag} {url} ({origin}) uses https, which needs {needs}; give it, or use http://")]
    TlsFilesMissing {
        /// The URL flag, without `--`.
        flag: &'static str,
        /// The https URL.
        url: String,
        /// Where the URL came from.
        origin: Origin,
        /// The flags it needs.
        needs: String,
    },
    /// The config file sets an etcd TLS option conflux does not implement; ignoring it would
    /// weaken security behind the operator's back, so it is refused.
    #[error(
        "config file {}: etcd TLS option {key} ({value}) is not supported by conflux; remove it \
         (docs/operations.md, TLS)", path.display()
    )]
    UnsupportedTlsOption {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Its value, on one line.
        value: String,
    },
    /// `--listen-client-urls` was set but `--advertise-client-urls` was not (etcd refuses this
    /// too): clients would be told to use the default `http://localhost:2379`.
    #[error(
        "--advertise-client-urls is required when --listen-client-urls is set (it is {listen:?}, {listen_origin}): \
         give the URLs clients should use to reach this member"
    )]
    AdvertiseClientUrlsUnset {
        /// `--listen-client-urls` as given.
        listen: String,
        /// Where it came from.
        listen_origin: Origin,
    },
}

/// The node's resolved, checked configuration. Build it with [`NodeConfig::resolve`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's name.
    pub name: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where the client (etcd v3 gRPC) server listens.
    pub listen_client_urls: Vec<Url>,
    /// The client URLs this member reports to clients.
    pub advertise_client_urls: Vec<Url>,
    /// Where the peer (Raft) server listens.
    pub listen_peer_urls: Vec<Url>,
    /// This member's peer URLs as reported to the other members.
    pub initial_advertise_peer_urls: Vec<Url>,
    /// The source address of this member's connections to other members (`--peer-local-address`);
    /// `None` lets the operating system choose.
    pub peer_local_address: Option<std::net::IpAddr>,
    /// The bootstrap members: name and peer URLs, in flag order, one entry per name (the URLs of
    /// a repeated name are merged into its first entry).
    pub initial_cluster: Vec<(String, Vec<Url>)>,
    /// Whether `--initial-cluster` was given (flag, environment or file) rather than defaulted.
    pub initial_cluster_given: bool,
    /// Bootstrap a new cluster or join an existing one.
    pub initial_cluster_state: ClusterState,
    /// The bootstrap token.
    pub initial_cluster_token: String,
    /// Leader heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Election timeout (at least 5 heartbeats).
    pub election_timeout: Duration,
    /// Largest client request accepted, bytes.
    pub max_request_bytes: usize,
    /// Most operations in one transaction.
    pub max_txn_ops: usize,
    /// `periodic` or `revision`.
    pub auto_compaction_mode: String,
    /// As given; checked with [`AutoCompaction::parse`] (see [`NodeConfig::auto_compaction`]).
    pub auto_compaction_retention: String,
    /// Where `/metrics` is served; empty for nowhere.
    pub listen_metrics_urls: Vec<Url>,
    /// `trace`, `debug`, `info`, `warn` or `error` (lower case).
    pub log_level: String,
    /// Applied entries between two snapshots.
    pub snapshot_count: u64,
    /// Entries kept in the log after a snapshot, for slow followers.
    pub snapshot_catchup_entries: u64,
    /// Log engine segment size, bytes.
    pub segment_bytes: u64,
    /// zstd level of snapshots, 1..=22.
    pub snapshot_zstd_level: i32,
    /// The log's I/O backend (`--io`).
    pub io_mode: conflux_engine::io::IoMode,
    /// How long a client request waits for a leader or for its commit.
    pub request_timeout: Duration,
    /// How often idle watchers that asked for it get a progress notification.
    pub watch_progress_notify_interval: Duration,
    /// Recent events kept in memory for watchers.
    pub watch_ring_events: usize,
    /// The space quota in bytes (`--quota-backend-bytes`); `None` when turned off.
    pub quota_backend_bytes: Option<u64>,
    /// How often the leader runs the consistency check; `None` when off.
    pub corrupt_check_time: Option<Duration>,
    /// TLS of the client listeners (`--cert-file`, ...); files only when an https client URL
    /// uses them.
    pub client_tls: TlsSettings,
    /// TLS of the peer listeners and of the connections to other members (`--peer-cert-file`,
    /// ...); files only when an https peer URL uses them.
    pub peer_tls: TlsSettings,
    /// The config file that was loaded, if any.
    pub config_file: Option<PathBuf>,
    warnings: Vec<String>,
}

/// The flag names of one side's TLS settings, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsFlags {
    /// `--cert-file` or `--peer-cert-file`.
    pub cert: &'static str,
    /// `--key-file` or `--peer-key-file`.
    pub key: &'static str,
    /// `--trusted-ca-file` or `--peer-trusted-ca-file`.
    pub trusted_ca: &'static str,
    /// `--client-cert-auth` or `--peer-client-cert-auth`.
    pub client_cert_auth: &'static str,
}

/// The client listeners' TLS flags.
pub const CLIENT_TLS_FLAGS: TlsFlags = TlsFlags {
    cert: "--cert-file",
    key: "--key-file",
    trusted_ca: "--trusted-ca-file",
    client_cert_auth: "--client-cert-auth",
};

/// The peer listeners' and peer clients' TLS flags.
pub const PEER_TLS_FLAGS: TlsFlags = TlsFlags {
    cert: "--peer-cert-file",
    key: "--peer-key-file",
    trusted_ca: "--peer-trusted-ca-file",
    client_cert_auth: "--peer-client-cert-auth",
};

/// One side's TLS files (client or peer), as etcd names them. Files are read and checked at
/// startup by [`crate::node::tls::TlsMaterial::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Which flags these are.
    pub flags: TlsFlags,
    /// Certificate chain, PEM.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM.
    pub key_file: Option<PathBuf>,
    /// CA bundle, PEM.
    pub trusted_ca_file: Option<PathBuf>,
    /// Require client certificates signed by the trusted CA.
    pub client_cert_auth: bool,
}

impl TlsSettings {
    fn none(flags: TlsFlags) -> TlsSettings {
        TlsSettings { flags, cert_file: None, key_file: None, trusted_ca_file: None, client_cert_auth: false }
    }

    /// Whether any file is named (TLS is in use on this side).
    pub fn is_set(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some() || self.trusted_ca_file.is_some()
    }
}

impl NodeConfig {
    /// Layer the settings — command line (`args`) > `CONFLUX_*` environment (looked up through
    /// `env`) > YAML config file (`--config-file` or `CONFLUX_CONFIG_FILE`) > defaults — then
    /// check them, alone and against each other.
    ///
    /// The environment is passed in so tests need not touch the process's; the binary passes
    /// `&|k| std::env::var(k).ok()`. An empty environment variable counts as unset, as does a
    /// config-file key with an empty (null) value.
    ///
    /// # Examples
    ///
    /// ```
    /// use conflux::node::config::{NodeConfig, ServeArgs};
    ///
    /// let args = ServeArgs { name: Some("n1".into()), ..ServeArgs::default() };
    /// let env = |var: &str| (var == "CONFLUX_HEARTBEAT_INTERVAL").then(|| "50".to_string());
    /// let config = NodeConfig::resolve(args, &env).unwrap();
    /// assert_eq!(config.data_dir, std::path::PathBuf::from("n1.conflux"));
    /// assert_eq!(config.heartbeat_interval, std::time::Duration::from_millis(50));
    /// ```
    ///
    /// # Errors
    /// The first problem found, as a [`ConfigError`] naming the flag, the value and where it came
    /// from.
    pub fn resolve(args: ServeArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<NodeConfig, ConfigError> {
        let mut warnings = Vec::new();
        let config_file = match (&args.config_file, nonempty_env(env, CONFIG_FILE_ENV)) {
            (Some(path), _) => Some((path.clone(), Origin::CommandLine)),
            (None, Some(value)) => Some((PathBuf::from(value), Origin::Env(CONFIG_FILE_ENV))),
            (None, None) => None,
        };
        let file = match &config_file {
            Some((path, origin)) => Some(ConfigFile::load(path, origin, &mut warnings)?),
            None => None,
        };
        let layers = Layers { env, file };

        let name = layers.setting("name", args.name.as_deref(), "default");
        if name.value.is_empty() {
            return Err(name.invalid("the member name must not be empty"));
        }
        if name.value.contains([',', '=']) {
            return Err(
                name.invalid("a member name cannot contain ',' or '=' (they separate --initial-cluster entries)")
            );
        }
        let data_dir = match &args.data_dir {
            Some(dir) => {
                Setting { flag: "data-dir", value: dir.to_string_lossy().into_owned(), origin: Origin::CommandLine }
            }
            None => layers.setting("data-dir", None, &format!("{}.conflux", name.value)),
        };
        if data_dir.value.is_empty() {
            return Err(data_dir.invalid("the data directory must not be empty"));
        }
        let data_dir_path = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(&data_dir.value));

        let listen_client =
            layers.setting("listen-client-urls", args.listen_client_urls.as_deref(), DEFAULT_CLIENT_URL);
        let listen_client_urls = parse_urls(&listen_client, UrlRole::Listen, true)?;
        let advertise_client =
            layers.setting("advertise-client-urls", args.advertise_client_urls.as_deref(), DEFAULT_CLIENT_URL);
        let advertise_client_urls = parse_urls(&advertise_client, UrlRole::Advertise, true)?;
        if listen_client.given() && !advertise_client.given() {
            return Err(ConfigError::AdvertiseClientUrlsUnset {
                listen: listen_client.value,
                listen_origin: listen_client.origin,
            });
        }
        let listen_peer = layers.setting("listen-peer-urls", args.listen_peer_urls.as_deref(), DEFAULT_PEER_URL);
        let listen_peer_urls = parse_urls(&listen_peer, UrlRole::Listen, true)?;
        let advertise_peer = layers.setting(
            "initial-advertise-peer-urls",
            args.initial_advertise_peer_urls.as_deref(),
            DEFAULT_PEER_URL,
        );
        let initial_advertise_peer_urls = parse_urls(&advertise_peer, UrlRole::Advertise, true)?;
        let local = layers.setting("peer-local-address", args.peer_local_address.as_deref(), "");
        let peer_local_address = match local.value.trim() {
            "" if !local.given() => None,
            v => match v.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
                Ok(ip) if ip.is_unspecified() => None,
                Ok(ip) if ip.is_multicast() => {
                    return Err(local.invalid("a multicast address cannot open a connection"));
                }
                Ok(ip) => Some(ip),
                Err(_) => return Err(local.invalid("expected an IP address of this host, such as 10.0.0.5 or fd00::5")),
            },
        };
        let metrics = layers.setting("listen-metrics-urls", args.listen_metrics_urls.as_deref(), "");
        let listen_metrics_urls = parse_urls(&metrics, UrlRole::Listen, false)?;
        if let Some(u) = listen_metrics_urls.iter().find(|u| u.scheme() == "https") {
            return Err(metrics.invalid(format!(
                "{} uses https, but /metrics and /health are served over plain HTTP only; use http://",
                url_text(u)
            )));
        }

        let default_cluster = format!(
            "{}={}",
            name.value,
            initial_advertise_peer_urls.iter().map(url_text).collect::<Vec<_>>().join(&format!(",{}=", name.value))
        );
        let cluster = layers.setting("initial-cluster", args.initial_cluster.as_deref(), &default_cluster);
        let initial_cluster = parse_initial_cluster(&cluster)?;
        check_member_entry(&name, &cluster, &initial_cluster, &advertise_peer, &initial_advertise_peer_urls)?;

        let client_tls = tls_settings(
            &layers,
            CLIENT_TLS_FLAGS,
            [&args.cert_file, &args.key_file, &args.trusted_ca_file, &args.client_cert_auth],
        )?;
        let client_tls = tls_for_urls(client_tls, &listen_client, &listen_client_urls, None, &[], &mut warnings)?;
        let peer_tls = tls_settings(
            &layers,
            PEER_TLS_FLAGS,
            [&args.peer_cert_file, &args.peer_key_file, &args.peer_trusted_ca_file, &args.peer_client_cert_auth],
        )?;
        let peer_tls =
            tls_for_urls(peer_tls, &listen_peer, &listen_peer_urls, Some(&cluster), &initial_cluster, &mut warnings)?;

        let state = layers.setting("initial-cluster-state", args.initial_cluster_state.as_deref(), "new");
        let initial_cluster_state = match state.value.trim() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            _ => return Err(state.invalid("expected new or existing")),
        };
        let token = layers.setting("initial-cluster-token", args.initial_cluster_token.as_deref(), "etcd-cluster");
        if token.value.is_empty() {
            return Err(token.invalid("the cluster token must not be empty"));
        }

        let heartbeat = layers.setting("heartbeat-interval", args.heartbeat_interval.as_deref(), "100");
        let heartbeat_ms = positive(&heartbeat, "milliseconds")?;
        let election = layers.setting("election-timeout", args.election_timeout.as_deref(), "1000");
        let election_ms = positive(&election, "milliseconds")?;
        if election_ms > MAX_ELECTION_MS {
            return Err(election.invalid(format!("must be at most {MAX_ELECTION_MS} ms (etcd's limit)")));
        }
        if election_ms < heartbeat_ms.saturating_mul(5) {
            return Err(ConfigError::ElectionTimeoutTooShort {
                election_ms,
                election_origin: election.origin,
                heartbeat_ms,
                heartbeat_origin: heartbeat.origin,
            });
        }

        let request_bytes = layers.setting("max-request-bytes", args.max_request_bytes.as_deref(), "1572864");
        let max_request_bytes = positive(&request_bytes, "bytes")?;
        let txn_ops = layers.setting("max-txn-ops", args.max_txn_ops.as_deref(), "128");
        let max_txn_ops = positive(&txn_ops, "operations")?;

        let mode = layers.setting("auto-compaction-mode", args.auto_compaction_mode.as_deref(), "periodic");
        let retention = layers.setting("auto-compaction-retention", args.auto_compaction_retention.as_deref(), "0");
        let auto_compaction_mode = mode.value.trim().to_owned();
        if let Err(reason) = AutoCompaction::parse(&auto_compaction_mode, &retention.value) {
            return Err(ConfigError::AutoCompaction {
                mode: mode.value,
                mode_origin: mode.origin,
                retention: retention.value,
                retention_origin: retention.origin,
                reason,
            });
        }
        if !matches!(auto_compaction_mode.as_str(), "periodic" | "revision") {
            // `parse` accepts any mode when the retention turns compaction off; we do not.
            return Err(mode.invalid("expected periodic or revision"));
        }

        let level = layers.setting("log-level", args.log_level.as_deref(), "info");
        let log_level = level.value.trim().to_ascii_lowercase();
        if !matches!(log_level.as_str(), "trace" | "debug" | "info" | "warn" | "error") {
            return Err(level.invalid("expected one of trace, debug, info, warn, error"));
        }

        let snap_count = layers.setting("snapshot-count", args.snapshot_count.as_deref(), "100000");
        let snapshot_count = positive(&snap_count, "a number of entries")?;
        let catchup = layers.setting("snapshot-catchup-entries", args.snapshot_catchup_entries.as_deref(), "5000");
        let snapshot_catchup_entries = whole_number(&catchup, "a number of entries")?;

        let segment = layers.setting("segment-bytes", args.segment_bytes.as_deref(), "67108864");
        let segment_bytes = positive(&segment, "bytes")?;
        if segment_bytes < MIN_SEGMENT_BYTES || !segment_bytes.is_multiple_of(8) {
            return Err(segment.invalid(format!("must be a multiple of 8 and at least {MIN_SEGMENT_BYTES}")));
        }
        if segment_bytes > u64::from(u32::MAX) * 8 {
            return Err(segment.invalid(format!("must be at most {}", u64::from(u32::MAX) * 8)));
        }
        if segment_bytes < max_request_bytes.saturating_add(SEGMENT_SLACK_BYTES) {
            return Err(segment.invalid(format!(
                "must be at least --max-request-bytes ({max_request_bytes}, {}) + {SEGMENT_SLACK_BYTES}, \
                 so that the largest request fits in one segment",
                request_bytes.origin
            )));
        }
        let zstd = layers.setting("snapshot-zstd-level", args.snapshot_zstd_level.as_deref(), "3");
        let snapshot_zstd_level = match zstd.value.trim().parse::<i32>() {
            Ok(level @ 1..=22) => level,
            _ => return Err(zstd.invalid("expected a zstd level from 1 (fastest) to 22 (smallest)")),
        };
        let io = layers.setting("io", args.io.as_deref(), "auto");
        let io_mode = match io.value.trim().parse::<conflux_engine::io::IoMode>() {
            Ok(m) => m,
            Err(_) => return Err(io.invalid("expected auto, uring or sync")),
        };
        let timeout = layers.setting("request-timeout", args.request_timeout.as_deref(), "5000");
        let request_timeout_ms = positive(&timeout, "milliseconds")?;
        if request_timeout_ms < election_ms {
            warnings.push(format!(
                "--request-timeout {request_timeout_ms} ms ({}) is shorter than --election-timeout {election_ms} ms \
                 ({}): requests will fail while a leader is being elected",
                timeout.origin, election.origin
            ));
        }

        let progress =
            layers.setting("watch-progress-notify-interval", args.watch_progress_notify_interval.as_deref(), "600000");
        let progress_ms = positive(&progress, "milliseconds")?;
        let ring = layers.setting("watch-ring-events", args.watch_ring_events.as_deref(), "65536");
        let watch_ring_events = positive(&ring, "events")?;
        let quota = layers.setting("quota-backend-bytes", args.quota_backend_bytes.as_deref(), "0");
        let quota_backend_bytes = match quota.value.trim().parse::<i64>() {
            Ok(0) => Some(DEFAULT_QUOTA_BYTES),
            Ok(n) if n < 0 => None,
            Ok(n) => Some(n as u64),
            Err(_) => return Err(quota.invalid("expected bytes as a whole number (0: the default, negative: off)")),
        };
        if quota_backend_bytes.is_some_and(|q| q > MAX_QUOTA_BYTES) {
            warnings.push(format!(
                "--quota-backend-bytes {} ({}) is above the recommended maximum {MAX_QUOTA_BYTES} (as etcd warns)",
                quota.value.trim(),
                quota.origin
            ));
        }
        let check = layers.setting("corrupt-check-time", args.corrupt_check_time.as_deref(), "0");
        let corrupt_check_time = match check.value.trim() {
            "0" => None,
            v => match crate::compactor::parse_duration(v) {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => return Err(check.invalid("expected a duration such as 5m, 30s or 500ms (0: off)")),
            },
        };

        Ok(NodeConfig {
            name: name.value,
            data_dir: data_dir_path,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            peer_local_address,
            initial_cluster,
            initial_cluster_given: cluster.given(),
            initial_cluster_state,
            initial_cluster_token: token.value,
            heartbeat_interval: Duration::from_millis(heartbeat_ms),
            election_timeout: Duration::from_millis(election_ms),
            max_request_bytes: to_usize(&request_bytes, max_request_bytes)?,
            max_txn_ops: to_usize(&txn_ops, max_txn_ops)?,
            auto_compaction_mode,
            auto_compaction_retention: retention.value,
            listen_metrics_urls,
            log_level,
            snapshot_count,
            snapshot_catchup_entries,
            segment_bytes,
            snapshot_zstd_level,
            io_mode,
            request_timeout: Duration::from_millis(request_timeout_ms),
            watch_progress_notify_interval: Duration::from_millis(progress_ms),
            watch_ring_events: to_usize(&ring, watch_ring_events)?,
            quota_backend_bytes,
            corrupt_check_time,
            client_tls,
            peer_tls,
            config_file: config_file.map(|(path, _)| path),
            warnings,
        })
    }

    /// Warnings collected while loading (etcd options in the config file that conflux ignores,
    /// settings that work but look wrong), for the caller to log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The auto-compaction policy, `None` when it is off (retention 0).
    pub fn auto_compaction(&self) -> Option<AutoCompaction> {
        // `resolve` already refused combinations `parse` rejects.
        AutoCompaction::parse(&self.auto_compaction_mode, &self.auto_compaction_retention).ok().flatten()
    }
}

/// One side's TLS flags from the layers, checked alone: a certificate needs its key (and the
/// other way round), client-cert-auth needs a trusted CA.
fn tls_settings(layers: &Layers<'_>, flags: TlsFlags, args: [&Option<String>; 4]) -> Result<TlsSettings, ConfigError> {
    let [cert_arg, key_arg, ca_arg, auth_arg] = args;
    let flag = |name: &'static str| name.trim_start_matches("--");
    let file = |name: &'static str, arg: &Option<String>| -> Result<Option<(Setting, PathBuf)>, ConfigError> {
        let s = layers.setting(flag(name), arg.as_deref(), "");
        if !s.given() {
            return Ok(None);
        }
        if s.value.trim().is_empty() {
            return Err(s.invalid("the file name must not be empty"));
        }
        let path = PathBuf::from(&s.value);
        Ok(Some((s, path)))
    };
    let cert = file(flags.cert, cert_arg)?;
    let key = file(flags.key, key_arg)?;
    let ca = file(flags.trusted_ca, ca_arg)?;
    let auth = layers.setting(flag(flags.client_cert_auth), auth_arg.as_deref(), "false");
    let client_cert_auth = parse_bool(&auth)?;
    match (&cert, &key) {
        (Some((s, _)), None) => return Err(s.invalid(format!("{} must be given too", flags.key))),
        (None, Some((s, _))) => return Err(s.invalid(format!("{} must be given too", flags.cert))),
        _ => {}
    }
    if client_cert_auth && ca.is_none() {
        return Err(auth.invalid(format!("verifying client certificates needs {}", flags.trusted_ca)));
    }
    Ok(TlsSettings {
        flags,
        cert_file: cert.map(|(_, p)| p),
        key_file: key.map(|(_, p)| p),
        trusted_ca_file: ca.map(|(_, p)| p),
        client_cert_auth,
    })
}

/// Check one side's TLS settings against its URLs, as etcd 3.4 does: an https listen URL needs a
/// certificate and key; without any https URL the files are ignored, with a warning. For peers,
/// `cluster` (`--initial-cluster`, parsed into `members`) gives the URLs this member dials: an
/// https one needs a trusted CA to verify it.
fn tls_for_urls(
    tls: TlsSettings,
    listen: &Setting,
    listen_urls: &[Url],
    cluster: Option<&Setting>,
    members: &[(String, Vec<Url>)],
    warnings: &mut Vec<String>,
) -> Result<TlsSettings, ConfigError> {
    let flags = tls.flags;
    let https_listen = listen_urls.iter().find(|u| u.scheme() == "https");
    if let Some(u) = https_listen
        && tls.cert_file.is_none()
    {
        return Err(ConfigError::TlsFilesMissing {
            flag: listen.flag,
            url: url_text(u).to_owned(),
            origin: listen.origin.clone(),
            needs: format!("{} and {}", flags.cert, flags.key),
        });
    }
    let https_dialled = cluster.and_then(|setting| {
        members.iter().flat_map(|(_, urls)| urls).find(|u| u.scheme() == "https").map(|u| (setting, u))
    });
    if let Some((setting, u)) = https_dialled
        && tls.trusted_ca_file.is_none()
    {
        return Err(ConfigError::TlsFilesMissing {
            flag: setting.flag,
            url: url_text(u).to_owned(),
            origin: setting.origin.clone(),
            needs: format!(
                "{} (to verify the other members; conflux does not use the system's roots)",
                flags.trusted_ca
            ),
        });
    }
    if https_listen.is_none() && https_dialled.is_none() && tls.is_set() {
        warnings.push(format!(
            "no --{} URL uses https while {}/{}/{} are set: they are ignored and the URLs are served in plain text \
             (as etcd does)",
            listen.flag, flags.cert, flags.key, flags.trusted_ca
        ));
        return Ok(TlsSettings::none(flags));
    }
    Ok(tls)
}

/// A Go-style boolean (etcd's flags are Go flags): 1, t, true, 0, f, false, any case.
fn parse_bool(s: &Setting) -> Result<bool, ConfigError> {
    match s.value.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(s.invalid("expected true or false")),
    }
}

const DEFAULT_CLIENT_URL: &str = "http://localhost:2379";
const DEFAULT_PEER_URL: &str = "http://localhost:2380";

/// The flag's environment variable.
///
/// # Panics
/// When `flag` is not in [`FLAGS`] (a bug: every setting `resolve` reads is there).
fn env_var(flag: &str) -> &'static str {
    FLAGS.iter().find(|(f, _)| *f == flag).map(|(_, var)| *var).unwrap_or_else(|| panic!("--{flag} is not in FLAGS"))
}

/// The variable's value, when set and not empty.
fn nonempty_env(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    env(var).filter(|v| !v.is_empty())
}

/// One setting's text and where it came from.
struct Setting {
    flag: &'static str,
    value: String,
    origin: Origin,
}

impl Setting {
    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            flag: self.flag,
            value: self.value.clone(),
            origin: self.origin.clone(),
            reason: reason.into(),
        }
    }

    /// Set by a flag, the environment or the file rather than defaulted.
    fn given(&self) -> bool {
        self.origin != Origin::Default
    }
}

/// The layers below the command line.
struct Layers<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: Option<ConfigFile>,
}

impl Layers<'_> {
    /// The flag's value from the highest layer that sets it, else `default`.
    fn setting(&self, flag: &'static str, arg: Option<&str>, default: &str) -> Setting {
        if let Some(value) = arg {
            return Setting { flag, value: value.to_owned(), origin: Origin::CommandLine };
        }
        let var = env_var(flag);
        if let Some(value) = nonempty_env(self.env, var) {
            return Setting { flag, value, origin: Origin::Env(var) };
        }
        if let Some(file) = &self.file
            && let Some(value) = file.values.get(flag)
        {
            return Setting { flag, value: value.clone(), origin: Origin::File(file.path.clone()) };
        }
        Setting { flag, value: default.to_owned(), origin: Origin::Default }
    }
}

/// The config file's known keys, as text.
struct ConfigFile {
    path: PathBuf,
    values: HashMap<&'static str, String>,
}

impl ConfigFile {
    fn load(path: &std::path::Path, origin: &Origin, warnings: &mut Vec<String>) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadConfigFile {
            path: path.to_owned(),
            origin: origin.clone(),
            error,
        })?;
        let parse_error = |reason: String| ConfigError::ParseConfigFile { path: path.to_owned(), reason };
        let doc: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| {
            let mut reason = e.to_string();
            if let Some(at) = e.location()
                && !reason.contains("line")
            {
                reason.push_str(&format!(" at line {} column {}", at.line(), at.column()));
            }
            parse_error(reason)
        })?;
        let mapping = match doc {
            serde_norway::Value::Mapping(m) => m,
            // An empty file (or one of only comments) sets nothing.
            serde_norway::Value::Null => serde_norway::Mapping::new(),
            other => {
                return Err(parse_error(format!(
                    "expected a mapping of flag names to values (like `name: n1`), found {}",
                    render(&other)
                )));
            }
        };
        let mut values = HashMap::new();
        let mut nested: Vec<(&'static str, String, String)> = Vec::new();
        for (key, value) in mapping {
            let serde_norway::Value::String(key) = key else {
                warnings.push(format!(
                    "config file {}: key {} is not a flag name; ignored",
                    path.display(),
                    render(&key)
                ));
                continue;
            };
            if let Some(side) = TRANSPORT_BLOCKS.iter().find(|(block, _)| *block == key).map(|(_, side)| side) {
                nested.extend(transport_block(path, &key, side, &value, warnings)?);
                continue;
            }
            let Some(&(flag, _)) = FLAGS.iter().find(|(f, _)| *f == key) else {
                let off = matches!(&value, serde_norway::Value::Bool(false))
                    || scalar_text(&value).is_some_and(|t| t.is_empty() || t == "false");
                if UNSUPPORTED_TLS_KEYS.contains(&key.as_str()) && !value.is_null() && !off {
                    return Err(ConfigError::UnsupportedTlsOption {
                        path: path.to_owned(),
                        key,
                        value: render(&value),
                    });
                }
                // A key with no value sets nothing (etcd's sample config leaves many blank).
                if !value.is_null() {
                    warnings.push(unknown_key_warning(path, &key));
                }
                continue;
            };
            let list = LIST_FLAGS.contains(&flag);
            let text = match &value {
                serde_norway::Value::Null => continue,
                serde_norway::Value::Sequence(items) if list => {
                    let mut parts = Vec::with_capacity(items.len());
                    for item in items {
                        match scalar_text(item) {
                            Some(text) => parts.push(text),
                            None => return Err(wrong_type(path, &key, &value, list)),
                        }
                    }
                    parts.join(",")
                }
                other => scalar_text(other).ok_or_else(|| wrong_type(path, &key, &value, list))?,
            };
            if text.is_empty() {
                continue;
            }
            values.insert(flag, text);
        }
        for (flag, text, at) in nested {
            if values.contains_key(flag) {
                return Err(ConfigError::ParseConfigFile {
                    path: path.to_owned(),
                    reason: format!("{at} and {flag} set the same thing; keep one"),
                });
            }
            values.insert(flag, text);
        }
        Ok(ConfigFile { path: path.to_owned(), values })
    }
}

/// etcd's config-file TLS blocks and the flags their keys stand for (`cert-file` in
/// `peer-transport-security` is `--peer-cert-file`).
const TRANSPORT_BLOCKS: &[(&str, [(&str, &str); 4])] = &[
    (
        "client-transport-security",
        [
            ("cert-file", "cert-file"),
            ("key-file", "key-file"),
            ("trusted-ca-file", "trusted-ca-file"),
            ("client-cert-auth", "client-cert-auth"),
        ],
    ),
    (
        "peer-transport-security",
        [
            ("cert-file", "peer-cert-file"),
            ("key-file", "peer-key-file"),
            ("trusted-ca-file", "peer-trusted-ca-file"),
            ("client-cert-auth", "peer-client-cert-auth"),
        ],
    ),
];

/// One etcd TLS block (`client-transport-security: {cert-file: ..., ...}`) as (flag, value,
/// `block.key`) settings. Keys conflux lacks are refused when switched on, like their top-level
/// forms.
fn transport_block(
    path: &std::path::Path,
    block: &str,
    side: &[(&str, &str); 4],
    value: &serde_norway::Value,
    warnings: &mut Vec<String>,
) -> Result<Vec<(&'static str, String, String)>, ConfigError> {
    let mapping = match value {
        serde_norway::Value::Null => return Ok(Vec::new()),
        serde_norway::Value::Mapping(m) => m,
        other => {
            return Err(ConfigError::ConfigFileValue {
                path: path.to_owned(),
                key: block.to_owned(),
                value: render(other),
                expected: "a mapping of cert-file, key-file, trusted-ca-file, client-cert-auth",
            });
        }
    };
    let mut out = Vec::new();
    for (inner, v) in mapping {
        let inner = match inner {
            serde_norway::Value::String(k) => k.as_str(),
            other => {
                warnings.push(format!(
                    "config file {}: key {} in {block} is not a name; ignored",
                    path.display(),
                    render(other)
                ));
                continue;
            }
        };
        let at = format!("{block}.{inner}");
        if let Some((_, flag)) = side.iter().find(|(k, _)| *k == inner) {
            let flag = FLAGS.iter().map(|(f, _)| *f).find(|f| f == flag).expect("transport block flags are in FLAGS");
            let text = match v {
                serde_norway::Value::Null => continue,
                other => scalar_text(other).ok_or_else(|| wrong_type(path, &at, v, false))?,
            };
            if !text.is_empty() {
                out.push((flag, text, at));
            }
            continue;
        }
        let off = v.is_null()
            || matches!(v, serde_norway::Value::Bool(false))
            || scalar_text(v).is_some_and(|t| t.is_empty() || t == "false");
        if matches!(inner, "auto-tls" | "crl-file" | "allowed-cn" | "allowed-hostname" | "ca-file") && !off {
            return Err(ConfigError::UnsupportedTlsOption { path: path.to_owned(), key: at, value: render(v) });
        }
        if !off {
            warnings.push(format!("config file {}: unknown key {at} ignored", path.display()));
        }
    }
    Ok(out)
}

fn unknown_key_warning(path: &std::path::Path, key: &str) -> String {
    let path = path.display();
    if UNSUPPORTED_TLS_KEYS.contains(&key) {
        return format!("config file {path}: etcd TLS option {key} is not supported by conflux; ignored (it is off)");
    }
    if key == "config-file" {
        return format!("config file {path}: key config-file is ignored (a config file cannot name another)");
    }
    if let Some(ours) = key.strip_prefix("experimental-")
        && FLAGS.iter().any(|(f, _)| *f == ours)
    {
        return format!(
            "config file {path}: etcd option {key} is ignored; conflux's setting is {ours} (see docs/operations.md for \
             its units)"
        );
    }
    if ETCD_ONLY_KEYS.contains(&key) || key.starts_with("experimental-") || key.starts_with("unsafe-") {
        return format!("config file {path}: etcd option {key} is not supported by conflux; ignored");
    }
    let spelled = key.to_ascii_lowercase().replace('_', "-");
    match FLAGS.iter().find(|(f, _)| *f == spelled) {
        Some((flag, _)) => format!("config file {path}: unknown key {key} ignored; did you mean {flag}?"),
        None => format!("config file {path}: unknown key {key} ignored"),
    }
}

fn wrong_type(path: &std::path::Path, key: &str, value: &serde_norway::Value, list: bool) -> ConfigError {
    ConfigError::ConfigFileValue {
        path: path.to_owned(),
        key: key.to_owned(),
        value: render(value),
        expected: if list {
            "a comma-separated string or a list of strings"
        } else {
            "a string, a number or a boolean"
        },
    }
}

/// A YAML scalar as the text a flag would hold.
fn scalar_text(value: &serde_norway::Value) -> Option<String> {
    match value {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A YAML value on one line, for messages.
fn render(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::Null => "null".to_owned(),
        serde_norway::Value::String(s) => format!("{s:?}"),
        serde_norway::Value::Bool(_) | serde_norway::Value::Number(_) => scalar_text(value).unwrap_or_default(),
        serde_norway::Value::Sequence(items) => {
            format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(", "))
        }
        serde_norway::Value::Mapping(m) => {
            let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{}: {}", render(k), render(v))).collect();
            format!("{{{}}}", pairs.join(", "))
        }
        serde_norway::Value::Tagged(t) => format!("{} {}", t.tag, render(&t.value)),
    }
}

fn whole_number(s: &Setting, what: &str) -> Result<u64, ConfigError> {
    s.value.trim().parse::<u64>().map_err(|_| s.invalid(format!("expected {what} as a whole number")))
}

fn positive(s: &Setting, what: &str) -> Result<u64, ConfigError> {
    match whole_number(s, what)? {
        0 => Err(s.invalid("must be greater than zero")),
        n => Ok(n),
    }
}

fn to_usize(s: &Setting, n: u64) -> Result<usize, ConfigError> {
    usize::try_from(n).map_err(|_| s.invalid("too large for this platform"))
}

/// What a URL is for: a listen URL is bound here, an advertised one is dialled by others.
#[derive(Clone, Copy)]
enum UrlRole {
    Listen,
    Advertise,
}

/// A comma-separated URL list. `required`: an empty list is refused.
fn parse_urls(s: &Setting, role: UrlRole, required: bool) -> Result<Vec<Url>, ConfigError> {
    if s.value.trim().is_empty() {
        return if required { Err(s.invalid("at least one URL is required")) } else { Ok(Vec::new()) };
    }
    s.value.split(',').map(|raw| check_url(raw.trim(), role).map_err(|reason| s.invalid(reason))).collect()
}

/// One `http://host:port` URL, or why not.
fn check_url(raw: &str, role: UrlRole) -> Result<Url, String> {
    if raw.is_empty() {
        return Err("empty URL in the list (a stray comma?)".to_owned());
    }
    let url = Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL ({e}); expected http://host:port"))?;
    match url.scheme() {
        "http" => {}
        "https" => {}
        other => return Err(format!("{raw} has scheme {other}; expected http://host:port or https://host:port")),
    }
    let Some(host) = url.host() else {
        return Err(format!("{raw} has no host; expected http://host:port"));
    };
    // `Url` hides a port equal to the scheme's default, so ask the text whether one was written.
    if url.port().is_none() && !has_explicit_port(raw) {
        return Err(format!("{raw} has no port; expected http://host:port"));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!("{raw} must be only scheme://host:port (no path, query or user)"));
    }
    match (role, host) {
        (UrlRole::Listen, Host::Domain(d)) if d != "localhost" => Err(format!(
            "{raw}: a listen URL's host must be an IP address or localhost (use 0.0.0.0 to listen on every interface)"
        )),
        (UrlRole::Advertise, Host::Ipv4(ip)) if ip.is_unspecified() => {
            Err(format!("{raw}: {ip} cannot be advertised; give an address other machines can reach"))
        }
        (UrlRole::Advertise, Host::Ipv6(ip)) if ip.is_unspecified() => {
            Err(format!("{raw}: {ip} cannot be advertised; give an address other machines can reach"))
        }
        _ => Ok(url),
    }
}

/// One URL other machines dial (a peer URL given to MemberAdd or MemberUpdate), checked as
/// `--initial-advertise-peer-urls` is; the error names the URL.
pub fn check_advertised_url(raw: &str) -> Result<Url, String> {
    check_url(raw, UrlRole::Advertise)
}

/// Whether `http://host:port...` text writes a port after the host.
fn has_explicit_port(raw: &str) -> bool {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host_port)| host_port);
    let port = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']').and_then(|(_, after)| after.strip_prefix(':')),
        None => host_port.split_once(':').map(|(_, port)| port),
    };
    port.is_some_and(|p| !p.is_empty())
}

/// `name=url,name=url,...`; a repeated name adds URLs to its first entry.
fn parse_initial_cluster(s: &Setting) -> Result<Vec<(String, Vec<Url>)>, ConfigError> {
    if s.value.trim().is_empty() {
        return Err(s.invalid("at least one name=http://host:port entry is required"));
    }
    let mut members: Vec<(String, Vec<Url>)> = Vec::new();
    for entry in s.value.split(',').map(str::trim) {
        let malformed = |why: &str| s.invalid(format!("entry {entry:?} {why}; expected name=http://host:port"));
        let Some((name, raw)) = entry.split_once('=') else {
            return Err(malformed("has no '='"));
        };
        let (name, raw) = (name.trim(), raw.trim());
        if name.is_empty() {
            return Err(malformed("has no member name"));
        }
        if raw.is_empty() {
            return Err(malformed("has no URL"));
        }
        let url = check_url(raw, UrlRole::Advertise)
            .map_err(|reason| s.invalid(format!("entry {entry:?} of member {name}: {reason}")))?;
        if let Some((other, _)) = members.iter().find(|(n, urls)| n != name && urls.contains(&url)) {
            return Err(s.invalid(format!("peer URL {raw} is given to both {other} and {name}")));
        }
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => {
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
            None => members.push((name.to_owned(), vec![url])),
        }
    }
    Ok(members)
}

/// This member must have an entry, and it must list exactly its advertised peer URLs.
fn check_member_entry(
    name: &Setting,
    cluster: &Setting,
    members: &[(String, Vec<Url>)],
    advertise: &Setting,
    advertise_urls: &[Url],
) -> Result<(), ConfigError> {
    let Some((_, urls)) = members.iter().find(|(n, _)| *n == name.value) else {
        return Err(ConfigError::MemberNotInCluster {
            name: name.value.clone(),
            name_origin: name.origin.clone(),
            initial_cluster: cluster.value.clone(),
            cluster_origin: cluster.origin.clone(),
        });
    };
    fn sorted(urls: &[Url]) -> Vec<&str> {
        let mut texts: Vec<&str> = urls.iter().map(url_text).collect();
        texts.sort_unstable();
        texts.dedup();
        texts
    }
    if sorted(urls) != sorted(advertise_urls) {
        let list = |urls: &[Url]| urls.iter().map(url_text).collect::<Vec<_>>().join(",");
        return Err(ConfigError::AdvertiseMismatch {
            name: name.value.clone(),
            cluster_urls: list(urls),
            cluster_origin: cluster.origin.clone(),
            advertise_urls: list(advertise_urls),
            advertise_origin: advertise.origin.clone(),
        });
    }
    Ok(())
}

/// A URL without the `/` path `Url` adds (`http://host:port`).
fn url_text(url: &Url) -> &str {
    url.as_str().strip_suffix('/').unwrap_or(url.as_str())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(flags: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("conflux").chain(flags.iter().copied())).unwrap().serve
    }

    fn resolve(flags: &[&str], env: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        NodeConfig::resolve(args(flags), &|k| env.get(k).cloned())
    }

    fn ok(flags: &[&str], env: &[(&str, &str)]) -> NodeConfig {
        resolve(flags, env).unwrap_or_else(|e| panic!("{flags:?} {env:?}: {e}"))
    }

    fn err(flags: &[&str], env: &[(&str, &str)]) -> String {
        match resolve(flags, env) {
            Ok(c) => panic!("{flags:?} {env:?} was accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn yaml(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn path(f: &tempfile::NamedTempFile) -> &str {
        f.path().to_str().unwrap()
    }

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    fn assert_contains(message: &str, parts: &[&str]) {
        for part in parts {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }

    #[test]
    fn quota_and_corrupt_check_take_etcds_meanings() {
        let c = ok(&[], &[]);
        assert_eq!((c.quota_backend_bytes, c.corrupt_check_time), (Some(2 << 30), None), "etcd's defaults");
        let c = ok(&["--quota-backend-bytes", "4096", "--corrupt-check-time", "1m30s"], &[]);
        assert_eq!((c.quota_backend_bytes, c.corrupt_check_time), (Some(4096), Some(Duration::from_secs(90))));
        let c = ok(&["--quota-backend-bytes", "-1"], &[("CONFLUX_CORRUPT_CHECK_TIME", "0")]);
        assert_eq!((c.quota_backend_bytes, c.corrupt_check_time), (None, None), "negative: off");
        let file = yaml("quota-backend-bytes: 0\ncorrupt-check-time: 500ms\n");
        let c = ok(&["--config-file", path(&file)], &[]);
        assert_eq!((c.quota_backend_bytes, c.corrupt_check_time), (Some(2 << 30), Some(Duration::from_millis(500))));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let file = yaml("experimental-corrupt-check-time: 5m\n");
        let c = ok(&["--config-file", path(&file)], &[]);
        assert_eq!(c.corrupt_check_time, None, "etcd's experimental key is not taken");
        assert_contains(&c.warnings().join("\n"), &["conflux's setting is corrupt-check-time"]);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn no_flags_give_the_etcd_default_single_member() {
        let c = NodeConfig::resolve(ServeArgs::default(), &|_| None).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.conflux"));
        assert_eq!(c.listen_client_urls, urls(&["http://localhost:2379"]));
        assert_eq!(c.advertise_client_urls, urls(&["http://localhost:2379"]));
        assert_eq!(c.listen_peer_urls, urls(&["http://localhost:2380"]));
        assert_eq!(c.initial_advertise_peer_urls, urls(&["http://localhost:2380"]));
        assert_eq!(c.initial_cluster, vec![("default".to_string(), urls(&["http://localhost:2380"]))]);
        assert!(!c.initial_cluster_given);
        assert_eq!(c.initial_cluster_state, ClusterState::New);
        assert_eq!(c.initial_cluster_token, "etcd-cluster");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(c.election_timeout, Duration::from_millis(1000));
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.max_txn_ops, crate::mvcc::DEFAULT_MAX_TXN_OPS);
        assert_eq!(c.auto_compaction_mode, "periodic");
        assert_eq!(c.auto_compaction_retention, "0");
        assert_eq!(c.auto_compaction(), None);
        assert!(c.listen_metrics_urls.is_empty());
        assert_eq!(c.log_level, "info");
        assert_eq!(c.snapshot_count, 100_000);
        assert_eq!(c.snapshot_catchup_entries, 5000);
        assert_eq!(c.segment_bytes, 64 << 20);
        assert_eq!(c.segment_bytes, conflux_engine::Config::default().segment_bytes);
        assert_eq!(c.snapshot_zstd_level, 3);
        assert_eq!(c.request_timeout, Duration::from_millis(5000));
        assert_eq!(c.config_file, None);
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn name_drives_the_default_data_dir_and_cluster() {
        let c =
            ok(&["--name", "n1", "--initial-advertise-peer-urls", "http://10.0.0.1:2380,http://10.0.0.2:2380"], &[]);
        assert_eq!(c.data_dir, PathBuf::from("n1.conflux"));
        assert_eq!(
            c.initial_cluster,
            vec![("n1".to_string(), urls(&["http://10.0.0.1:2380", "http://10.0.0.2:2380"]))]
        );
        assert!(!c.initial_cluster_given);
    }

    #[test]
    fn every_flag_is_parsed() {
        let c = ok(
            &[
                "--name=n2",
                "--data-dir=/var/lib/conflux",
                "--listen-client-urls=http://0.0.0.0:12379,http://127.0.0.1:22379",
                "--advertise-client-urls=http://node2:12379",
                "--listen-peer-urls=http://[::]:12380",
                "--initial-advertise-peer-urls=http://node2:12380",
                "--initial-cluster=n1=http://node1:12380,n2=http://node2:12380,n3=http://node3:12380",
                "--initial-cluster-state=existing",
                "--initial-cluster-token=tok",
                "--heartbeat-interval=50",
                "--election-timeout=500",
                "--max-request-bytes=1000",
                "--max-txn-ops=64",
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1000",
                "--listen-metrics-urls=http://127.0.0.1:9090",
                "--log-level=DEBUG",
                "--snapshot-count=10",
                "--snapshot-catchup-entries=0",
                "--segment-bytes=1048576",
                "--snapshot-zstd-level=19",
                "--request-timeout=2000",
                "--peer-local-address=10.0.0.2",
            ],
            &[],
        );
        assert_eq!(c.name, "n2");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/conflux"));
        assert_eq!(c.listen_client_urls, urls(&["http://0.0.0.0:12379", "http://127.0.0.1:22379"]));
        assert_eq!(c.advertise_client_urls, urls(&["http://node2:12379"]));
        assert_eq!(c.listen_peer_urls, urls(&["http://[::]:12380"]));
        assert_eq!(c.initial_advertise_peer_urls, urls(&["http://node2:12380"]));
        let names: Vec<&str> = c.initial_cluster.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
        assert!(c.initial_cluster_given);
        assert_eq!(c.initial_cluster_state, ClusterState::Existing);
        assert_eq!(c.initial_cluster_token, "tok");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(c.election_timeout, Duration::from_millis(500));
        assert_eq!(c.max_request_bytes, 1000);
        assert_eq!(c.max_txn_ops, 64);
        assert_eq!(c.auto_compaction(), Some(AutoCompaction::Revision(1000)));
        assert_eq!(c.listen_metrics_urls, urls(&["http://127.0.0.1:9090"]));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.snapshot_count, 10);
        assert_eq!(c.snapshot_catchup_entries, 0);
        assert_eq!(c.segment_bytes, 1 << 20);
        assert_eq!(c.snapshot_zstd_level, 19);
        assert_eq!(c.request_timeout, Duration::from_millis(2000));
        assert_eq!(c.peer_local_address, Some("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn repeated_cluster_names_merge_their_urls_in_flag_order() {
        let c = ok(
            &[
                "--name=b",
                "--initial-advertise-peer-urls=http://10.0.0.3:2380,http://10.0.0.2:2380",
                "--initial-cluster=b=http://10.0.0.2:2380, a=http://10.0.0.1:2380 ,b=http://10.0.0.3:2380",
            ],
            &[],
        );
        assert_eq!(
            c.initial_cluster,
            vec![
                ("b".to_string(), urls(&["http://10.0.0.2:2380", "http://10.0.0.3:2380"])),
                ("a".to_string(), urls(&["http://10.0.0.1:2380"])),
            ]
        );
    }

    #[test]
    fn explicit_port_80_is_a_port() {
        let c = ok(&["--listen-metrics-urls=http://127.0.0.1:80"], &[]);
        assert_eq!(c.listen_metrics_urls[0].port_or_known_default(), Some(80));
        assert_contains(&err(&["--listen-metrics-urls=http://127.0.0.1"], &[]), &["has no port"]);
        assert!(has_explicit_port("http://[::1]:80/"));
        assert!(!has_explicit_port("http://[::1]/"));
        assert!(!has_explicit_port("http://host:/"));
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = yaml("heartbeat-interval: 30\nname: from-file\nlisten-peer-urls: http://127.0.0.3:2380\n");
        let file_env = ("CONFLUX_CONFIG_FILE", path(&file));
        let env =
            [file_env, ("CONFLUX_HEARTBEAT_INTERVAL", "20"), ("CONFLUX_LISTEN_PEER_URLS", "http://127.0.0.2:2380")];
        let flags = ["--heartbeat-interval", "10", "--listen-peer-urls", "http://127.0.0.1:2380"];

        let c = ok(&flags, &env);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(10));
        assert_eq!(c.listen_peer_urls, urls(&["http://127.0.0.1:2380"]));
        assert_eq!(c.name, "from-file");
        assert_eq!(c.data_dir, PathBuf::from("from-file.conflux"));
        assert_eq!(c.config_file.as_deref(), Some(file.path()));

        let c = ok(&[], &env);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(20));
        assert_eq!(c.listen_peer_urls, urls(&["http://127.0.0.2:2380"]));

        let c = ok(&[], &[file_env]);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(30));
        assert_eq!(c.listen_peer_urls, urls(&["http://127.0.0.3:2380"]));

        let c = ok(&[], &[]);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(c.name, "default");
    }

    #[test]
    fn empty_env_vars_count_as_unset() {
        let c = ok(&[], &[("CONFLUX_NAME", ""), ("CONFLUX_CONFIG_FILE", "")]);
        assert_eq!(c.name, "default");
        assert_eq!(c.config_file, None);
    }

    #[test]
    fn config_file_flag_beats_its_env_var() {
        let flag_file = yaml("name: a\n");
        let env_file = yaml("name: b\n");
        let c = ok(&["--config-file", path(&flag_file)], &[("CONFLUX_CONFIG_FILE", path(&env_file))]);
        assert_eq!(c.name, "a");
    }

    #[test]
    fn config_file_sets_every_key() {
        let file = yaml(
            "name: n1\n\
             data-dir: /data/n1\n\
             listen-client-urls: http://0.0.0.0:2379\n\
             advertise-client-urls: [http://n1:2379, http://10.0.0.1:2379]\n\
             listen-peer-urls: 'http://0.0.0.0:2380'\n\
             initial-advertise-peer-urls: http://n1:2380\n\
             initial-cluster: n1=http://n1:2380,n2=http://n2:2380\n\
             initial-cluster-state: existing\n\
             initial-cluster-token: t\n\
             heartbeat-interval: 200\n\
             election-timeout: \"2000\"\n\
             max-request-bytes: 2097152\n\
             max-txn-ops: 256\n\
             auto-compaction-mode: periodic\n\
             auto-compaction-retention: 1h30m\n\
             listen-metrics-urls: http://127.0.0.1:2381\n\
             log-level: warn\n\
             snapshot-count: 50000\n\
             snapshot-catchup-entries: 100\n\
             segment-bytes: 8388608\n\
             snapshot-zstd-level: 5\n\
             request-timeout: 3000\n\
             peer-local-address: 10.0.0.1\n",
        );
        let c = ok(&["--config-file", path(&file)], &[]);
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        assert_eq!(c.name, "n1");
        assert_eq!(c.data_dir, PathBuf::from("/data/n1"));
        assert_eq!(c.advertise_client_urls, urls(&["http://n1:2379", "http://10.0.0.1:2379"]));
        assert_eq!(c.listen_peer_urls, urls(&["http://0.0.0.0:2380"]));
        assert_eq!(c.initial_cluster.len(), 2);
        assert!(c.initial_cluster_given);
        assert_eq!(c.initial_cluster_state, ClusterState::Existing);
        assert_eq!(c.initial_cluster_token, "t");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.election_timeout, Duration::from_millis(2000));
        assert_eq!(c.max_request_bytes, 2 << 20);
        assert_eq!(c.max_txn_ops, 256);
        assert_eq!(c.auto_compaction(), Some(AutoCompaction::Periodic(Duration::from_secs(5400))));
        assert_eq!(c.listen_metrics_urls, urls(&["http://127.0.0.1:2381"]));
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.snapshot_count, 50_000);
        assert_eq!(c.snapshot_catchup_entries, 100);
        assert_eq!(c.segment_bytes, 8 << 20);
        assert_eq!(c.snapshot_zstd_level, 5);
        assert_eq!(c.request_timeout, Duration::from_millis(3000));
        assert_eq!(c.peer_local_address, Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn peer_local_address_is_an_ip_of_either_family() {
        assert_eq!(ok(&[], &[]).peer_local_address, None);
        let c = ok(&[], &[("CONFLUX_PEER_LOCAL_ADDRESS", "127.0.0.11")]);
        assert_eq!(c.peer_local_address, Some("127.0.0.11".parse().unwrap()));
        let c = ok(&["--peer-local-address", "[fd00::5]"], &[("CONFLUX_PEER_LOCAL_ADDRESS", "127.0.0.11")]);
        assert_eq!(c.peer_local_address, Some("fd00::5".parse().unwrap()));
        // The unspecified address is the operating system's choice, as without the flag.
        assert_eq!(ok(&["--peer-local-address", "0.0.0.0"], &[]).peer_local_address, None);
        assert_contains(
            &err(&["--peer-local-address", "node1"], &[]),
            &["invalid value \"node1\" for --peer-local-address (from the command line)", "expected an IP address"],
        );
        assert_contains(&err(&["--peer-local-address", "224.0.0.1"], &[]), &["multicast"]);
    }

    #[test]
    fn etcd_config_file_loads_with_warnings_for_what_conflux_lacks() {
        // Shaped like etcd's etcd.conf.yml.sample.
        let file = yaml(
            "# This is the configuration file for the etcd server.\n\
             name: 'infra1'\n\
             data-dir:\n\
             wal-dir:\n\
             snapshot-count: 10000\n\
             heartbeat-interval: 100\n\
             election-timeout: 1000\n\
             quota-backend-bytes: 0\n\
             listen-peer-urls: http://localhost:2380\n\
             listen-client-urls: http://localhost:2379\n\
             max-snapshots: 5\n\
             cors:\n\
             initial-advertise-peer-urls: http://localhost:2380\n\
             advertise-client-urls: http://localhost:2379\n\
             initial-cluster:\n\
             initial-cluster-token: 'etcd-cluster'\n\
             initial-cluster-state: 'new'\n\
             strict-reconfig-check: false\n\
             enable-v2: true\n\
             enable-pprof: true\n\
             proxy: 'off'\n\
             client-transport-security:\n  cert-file:\n  key-file:\n  client-cert-auth: false\n  auto-tls: false\n\
             peer-transport-security:\n  cert-file:\n  auto-tls: false\n\
             log-level: debug\n\
             logger: zap\n\
             log-outputs: [stderr]\n\
             force-new-cluster: false\n\
             experimental-initial-corrupt-check: true\n\
             auto-compaction-mode: periodic\n\
             auto-compaction-retention: \"1\"\n\
             heartbeat_interval: 100\n\
             frobnicate: 1\n",
        );
        let c = ok(&["--config-file", path(&file)], &[]);
        assert_eq!(c.name, "infra1");
        assert_eq!(c.data_dir, PathBuf::from("infra1.conflux"), "a null data-dir leaves the default");
        assert_eq!(c.initial_cluster, vec![("infra1".to_string(), urls(&["http://localhost:2380"]))]);
        assert!(!c.initial_cluster_given, "a null initial-cluster is not given");
        assert_eq!(c.snapshot_count, 10_000);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.auto_compaction(), Some(AutoCompaction::Periodic(Duration::from_secs(3600))));
        let warnings = c.warnings().join("\n");
        assert_eq!(c.quota_backend_bytes, Some(DEFAULT_QUOTA_BYTES), "etcd's 0: the default");
        for key in ["max-snapshots", "enable-v2", "logger", "log-outputs", "experimental-initial-corrupt-check"] {
            assert_contains(&warnings, &[&format!("etcd option {key} is not supported by conflux; ignored")]);
        }
        assert_contains(&warnings, &["unknown key heartbeat_interval ignored; did you mean heartbeat-interval?"]);
        assert_contains(&warnings, &["unknown key frobnicate ignored", path(&file)]);
        assert!(!warnings.contains("wal-dir") && !warnings.contains("cors"), "blank keys set nothing: {warnings}");
        assert_eq!(c.warnings().len(), 11, "{warnings}");
        assert!(!c.client_tls.is_set() && !c.peer_tls.is_set(), "blank TLS blocks set nothing");
    }

    #[test]
    fn empty_config_file_sets_nothing() {
        let file = yaml("# nothing yet\n");
        let c = ok(&["--config-file", path(&file)], &[]);
        assert_eq!(c.name, "default");
    }

    #[test]
    fn env_var_names_follow_the_flags() {
        for (flag, var) in FLAGS {
            assert_eq!(*var, format!("CONFLUX_{}", flag.to_ascii_uppercase().replace('-', "_")));
        }
        assert_eq!(env_var("initial-cluster"), "CONFLUX_INITIAL_CLUSTER");
        let c = ok(
            &[],
            &[
                ("CONFLUX_NAME", "e1"),
                ("CONFLUX_INITIAL_ADVERTISE_PEER_URLS", "http://e1:2380"),
                ("CONFLUX_INITIAL_CLUSTER", "e1=http://e1:2380,e2=http://e2:2380"),
                ("CONFLUX_SNAPSHOT_ZSTD_LEVEL", "7"),
            ],
        );
        assert_eq!(c.name, "e1");
        assert!(c.initial_cluster_given);
        assert_eq!(c.snapshot_zstd_level, 7);
    }

    #[test]
    fn a_bad_value_names_flag_value_and_origin() {
        assert_eq!(
            err(&[], &[("CONFLUX_HEARTBEAT_INTERVAL", "abc")]),
            "invalid value \"abc\" for --heartbeat-interval (from CONFLUX_HEARTBEAT_INTERVAL): \
             expected milliseconds as a whole number"
        );
        assert_eq!(
            err(&["--max-txn-ops", "-1"], &[]),
            "invalid value \"-1\" for --max-txn-ops (from the command line): expected operations as a whole number"
        );
        let file = yaml("election-timeout: 1.5\n");
        assert_eq!(
            err(&["--config-file", path(&file)], &[]),
            format!(
                "invalid value \"1.5\" for --election-timeout (from config file {}): \
                 expected milliseconds as a whole number",
                path(&file)
            )
        );
    }

    #[test]
    fn urls_must_be_http_with_host_and_port() {
        let e = err(&[], &[("CONFLUX_LISTEN_PEER_URLS", "unix://x:1")]);
        assert_contains(
            &e,
            &["--listen-peer-urls", "from CONFLUX_LISTEN_PEER_URLS", "scheme unix", "http://host:port"],
        );
        assert_contains(&err(&["--listen-peer-urls", "http://127.0.0.1"], &[]), &["has no port"]);
        assert_contains(&err(&["--listen-peer-urls", "localhost:2380"], &[]), &["scheme localhost"]);
        assert_contains(&err(&["--listen-peer-urls", "not a url"], &[]), &["\"not a url\" is not a URL"]);
        assert_contains(&err(&["--listen-peer-urls", "http://127.0.0.1:2380/raft"], &[]), &["no path"]);
        assert_contains(&err(&["--listen-peer-urls", "http://127.0.0.1:2380,"], &[]), &["empty URL"]);
        assert_contains(&err(&["--listen-peer-urls", ""], &[]), &["at least one URL is required"]);
        let e = err(&["--listen-peer-urls", "http://example.com:2380"], &[]);
        assert_contains(&e, &["must be an IP address or localhost"]);
        let e = err(&["--initial-advertise-peer-urls", "http://0.0.0.0:2380"], &[]);
        assert_contains(&e, &["--initial-advertise-peer-urls", "0.0.0.0 cannot be advertised"]);
        let e = err(&["--listen-client-urls=http://[::]:2379", "--advertise-client-urls=http://[::]:2379"], &[]);
        assert_contains(&e, &["--advertise-client-urls", ":: cannot be advertised"]);
    }

    #[test]
    fn listen_client_urls_need_advertise_client_urls() {
        let e = err(&["--listen-client-urls", "http://0.0.0.0:2379"], &[]);
        assert_contains(&e, &["--advertise-client-urls is required", "http://0.0.0.0:2379", "from the command line"]);
        ok(&["--listen-client-urls", "http://0.0.0.0:2379"], &[("CONFLUX_ADVERTISE_CLIENT_URLS", "http://n:2379")]);
    }

    #[test]
    fn malformed_initial_cluster_entries() {
        let e = err(&["--initial-cluster", "default"], &[]);
        assert_contains(&e, &["--initial-cluster", "entry \"default\" has no '='", "name=http://host:port"]);
        let e = err(&["--initial-cluster", "=http://localhost:2380"], &[]);
        assert_contains(&e, &["has no member name"]);
        let e = err(&["--initial-cluster", "default="], &[]);
        assert_contains(&e, &["has no URL"]);
        let e = err(&["--initial-cluster", "default=http://localhost:2380,,"], &[]);
        assert_contains(&e, &["entry \"\" has no '='"]);
        let e = err(&["--initial-cluster", "default=ftp://localhost:2380"], &[]);
        assert_contains(&e, &["member default", "scheme ftp"]);
        let e = err(&["--initial-cluster", "default=http://localhost:2380,other=http://localhost:2380"], &[]);
        assert_contains(&e, &["peer URL http://localhost:2380 is given to both default and other"]);
        assert_contains(&err(&["--initial-cluster", ""], &[]), &["at least one name=http://host:port entry"]);
    }

    #[test]
    fn name_must_have_an_initial_cluster_entry() {
        let file = yaml("initial-cluster: a=http://a:2380,b=http://b:2380\n");
        let e = err(&["--name", "c", "--config-file", path(&file)], &[]);
        assert_contains(
            &e,
            &[
                "member c (from the command line) has no entry in --initial-cluster",
                "a=http://a:2380,b=http://b:2380",
                &format!("from config file {}", path(&file)),
            ],
        );
    }

    #[test]
    fn member_entry_must_match_advertised_peer_urls() {
        let e = err(
            &[],
            &[
                ("CONFLUX_NAME", "a"),
                ("CONFLUX_INITIAL_CLUSTER", "a=http://a:2380,b=http://b:2380"),
                ("CONFLUX_INITIAL_ADVERTISE_PEER_URLS", "http://10.0.0.1:2380"),
            ],
        );
        assert_contains(
            &e,
            &[
                "--initial-cluster (from CONFLUX_INITIAL_CLUSTER) gives member a the peer URLs http://a:2380",
                "--initial-advertise-peer-urls (from CONFLUX_INITIAL_ADVERTISE_PEER_URLS) is http://10.0.0.1:2380",
            ],
        );
        // The default advertise URL is checked too.
        let e = err(&["--initial-cluster", "default=http://a:2380"], &[]);
        assert_contains(&e, &["(the default) is http://localhost:2380"]);
        // The same URLs in another order, written differently, match.
        ok(
            &[
                "--initial-advertise-peer-urls=http://B:2380,http://a:2380/",
                "--initial-cluster=default=http://b:2380,default=http://a:2380",
            ],
            &[],
        );
    }

    #[test]
    fn election_timeout_rules() {
        let e = err(&["--heartbeat-interval", "300"], &[]);
        assert_eq!(
            e,
            "--election-timeout 1000 ms (the default) must be at least 5 times \
             --heartbeat-interval 300 ms (from the command line)"
        );
        ok(&["--heartbeat-interval", "200"], &[]);
        let e = err(&["--election-timeout", "50001"], &[]);
        assert_contains(&e, &["--election-timeout", "50001", "at most 50000 ms"]);
    }

    #[test]
    fn zero_is_refused_where_it_makes_no_sense() {
        for flag in [
            "--heartbeat-interval",
            "--election-timeout",
            "--max-request-bytes",
            "--max-txn-ops",
            "--snapshot-count",
            "--segment-bytes",
            "--request-timeout",
        ] {
            let e = err(&[flag, "0"], &[]);
            assert_contains(&e, &[&format!("invalid value \"0\" for {flag}"), "must be greater than zero"]);
        }
        assert_eq!(ok(&["--snapshot-catchup-entries", "0"], &[]).snapshot_catchup_entries, 0);
    }

    #[test]
    fn segment_size_rules() {
        assert_contains(&err(&["--segment-bytes", "4100"], &[]), &["multiple of 8 and at least 4096"]);
        assert_contains(&err(&["--segment-bytes", "4096"], &[]), &["--max-request-bytes (1572864, the default)"]);
        let e = err(&["--segment-bytes", "1048576", "--max-request-bytes", "1000000"], &[]);
        assert_contains(&e, &["--max-request-bytes (1000000, from the command line) + 65536"]);
        ok(&["--segment-bytes", "1048576", "--max-request-bytes", "983040"], &[]);
        assert_contains(&err(&["--segment-bytes", "34359738368"], &[]), &["at most 34359738360"]);
    }

    #[test]
    fn io_backend_from_flag_env_and_default() {
        use conflux_engine::io::IoMode;
        assert_eq!(ok(&[], &[]).io_mode, IoMode::Auto);
        assert_eq!(ok(&["--io", "sync"], &[]).io_mode, IoMode::Sync);
        assert_eq!(ok(&[], &[("CONFLUX_IO", "uring")]).io_mode, IoMode::Uring);
        assert_eq!(ok(&["--io", "sync"], &[("CONFLUX_IO", "uring")]).io_mode, IoMode::Sync);
        assert_contains(&err(&["--io", "fast"], &[]), &["--io", "\"fast\"", "auto, uring or sync"]);
    }

    #[test]
    fn huge_numbers_are_refused_without_overflow() {
        let max = u64::MAX.to_string();
        assert_contains(&err(&["--heartbeat-interval", &max], &[]), &["at least 5 times"]);
        assert_contains(&err(&["--max-request-bytes", &max], &[]), &["--segment-bytes", "largest request"]);
        let too_big = "18446744073709551616";
        assert_contains(&err(&["--snapshot-count", too_big], &[]), &["whole number"]);
    }

    #[test]
    fn zstd_level_range() {
        for bad in ["0", "23", "-1", "fast"] {
            assert_contains(&err(&["--snapshot-zstd-level", bad], &[]), &["from 1 (fastest) to 22 (smallest)"]);
        }
        assert_eq!(ok(&["--snapshot-zstd-level", "22"], &[]).snapshot_zstd_level, 22);
    }

    #[test]
    fn log_level_and_cluster_state_must_be_known() {
        let e = err(&[], &[("CONFLUX_LOG_LEVEL", "verbose")]);
        assert_eq!(
            e,
            "invalid value \"verbose\" for --log-level (from CONFLUX_LOG_LEVEL): \
             expected one of trace, debug, info, warn, error"
        );
        let e = err(&["--initial-cluster-state", "joining"], &[]);
        assert_eq!(
            e,
            "invalid value \"joining\" for --initial-cluster-state (from the command line): expected new or existing"
        );
    }

    #[test]
    fn bad_auto_compaction_combinations() {
        let e = err(&["--auto-compaction-mode", "hourly", "--auto-compaction-retention", "1"], &[]);
        assert_contains(&e, &["--auto-compaction-mode \"hourly\" (from the command line)", "not one of"]);
        let e = err(&["--auto-compaction-mode", "hourly"], &[]);
        assert_contains(&e, &["--auto-compaction-mode", "hourly", "expected periodic or revision"]);
        let e = err(&["--auto-compaction-retention", "soon"], &[]);
        assert_contains(&e, &["(the default)", "\"soon\" (from the command line)", "not a duration"]);
        let e = err(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"], &[]);
        assert_contains(&e, &["number of revisions"]);
    }

    #[test]
    fn names_and_other_strings_must_not_be_empty() {
        assert_contains(&err(&["--name", ""], &[]), &["--name", "must not be empty"]);
        assert_contains(&err(&["--name", "a,b"], &[]), &["cannot contain"]);
        // clap refuses an empty path, and an empty variable or file value is unset: only a
        // caller building ServeArgs can get here.
        let args = ServeArgs { data_dir: Some(PathBuf::new()), ..ServeArgs::default() };
        let e = NodeConfig::resolve(args, &|_| None).unwrap_err().to_string();
        assert_contains(&e, &["--data-dir (from the command line)", "must not be empty"]);
        assert_contains(&err(&["--initial-cluster-token", ""], &[]), &["token must not be empty"]);
    }

    #[test]
    fn unreadable_config_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.yaml");
        let e = err(&[], &[("CONFLUX_CONFIG_FILE", missing.to_str().unwrap())]);
        assert_contains(&e, &["cannot read config file", missing.to_str().unwrap(), "from CONFLUX_CONFIG_FILE"]);
        let e = err(&["--config-file", dir.path().to_str().unwrap()], &[]);
        assert_contains(&e, &["cannot read config file", "from the command line"]);
    }

    #[test]
    fn unparsable_config_file_names_the_path_and_line() {
        let file = yaml("name: n1\nheartbeat-interval: [1, 2\n");
        let e = err(&["--config-file", path(&file)], &[]);
        assert_contains(&e, &["cannot parse config file", path(&file), "line"]);
        let file = yaml("- name\n- n1\n");
        let e = err(&["--config-file", path(&file)], &[]);
        assert_contains(&e, &["expected a mapping of flag names to values", "found [\"name\", \"n1\"]"]);
    }

    #[test]
    fn wrong_yaml_type_for_a_known_key_names_file_key_and_value() {
        let file = yaml("heartbeat-interval:\n  ms: 100\n");
        let e = err(&["--config-file", path(&file)], &[]);
        assert_eq!(
            e,
            format!(
                "config file {}: key heartbeat-interval has value {{\"ms\": 100}}, \
                 but expects a string, a number or a boolean",
                path(&file)
            )
        );
        let file = yaml("listen-peer-urls: [[http://a:1]]\n");
        let e = err(&["--config-file", path(&file)], &[]);
        assert_contains(&e, &["key listen-peer-urls", "[[\"http://a:1\"]]", "a list of strings"]);
        let file = yaml("name: [a, b]\n");
        assert_contains(&err(&["--config-file", path(&file)], &[]), &["key name", "[\"a\", \"b\"]"]);
        // A boolean where a number belongs is a bad value of a known type.
        let file = yaml("max-txn-ops: true\n");
        let e = err(&["--config-file", path(&file)], &[]);
        assert_contains(&e, &["invalid value \"true\" for --max-txn-ops", "config file", "whole number"]);
    }

    #[test]
    fn short_request_timeout_is_a_warning() {
        let c = ok(&["--request-timeout", "500"], &[]);
        assert_eq!(c.warnings().len(), 1);
        assert_contains(&c.warnings()[0], &["--request-timeout 500 ms", "shorter than --election-timeout 1000 ms"]);
    }

    #[test]
    fn https_urls_need_their_sides_tls_files() {
        let https_client =
            ["--listen-client-urls", "https://127.0.0.1:2379", "--advertise-client-urls", "https://a:2379"];
        let e = err(&https_client, &[]);
        assert_eq!(
            e,
            "--listen-client-urls https://127.0.0.1:2379 (from the command line) uses https, which needs --cert-file \
             and --key-file; give it, or use http://"
        );
        let c = ok(&[&https_client[..], &["--cert-file", "c.pem", "--key-file", "k.pem"]].concat(), &[]);
        assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("c.pem")));
        assert_eq!(c.client_tls.key_file, Some(PathBuf::from("k.pem")));
        assert!(!c.client_tls.client_cert_auth);
        assert!(!c.peer_tls.is_set());

        let e = err(&[&https_client[..], &["--cert-file", "c.pem"]].concat(), &[]);
        assert_contains(&e, &["--cert-file", "c.pem", "--key-file must be given too"]);
        let e = err(
            &[&https_client[..], &["--cert-file", "c.pem", "--key-file", "k.pem", "--client-cert-auth"]].concat(),
            &[],
        );
        assert_contains(&e, &["--client-cert-auth", "needs --trusted-ca-file"]);
        let c = ok(
            &[&https_client[..], &["--cert-file=c.pem", "--key-file=k.pem", "--trusted-ca-file=ca.pem"]].concat(),
            &[("CONFLUX_CLIENT_CERT_AUTH", "true")],
        );
        assert!(c.client_tls.client_cert_auth);
        assert_eq!(c.client_tls.trusted_ca_file, Some(PathBuf::from("ca.pem")));
        let e = err(&["--client-cert-auth=maybe"], &[]);
        assert_contains(&e, &["--client-cert-auth", "expected true or false"]);

        // Peers: an https peer URL needs the peer certificate, an https member to dial the peer CA.
        let https_peer =
            ["--listen-peer-urls", "https://127.0.0.1:2380", "--initial-advertise-peer-urls", "https://a:2380"];
        let e = err(&https_peer, &[]);
        assert_contains(&e, &["--listen-peer-urls https://127.0.0.1:2380", "--peer-cert-file and --peer-key-file"]);
        let e = err(&[&https_peer[..], &["--peer-cert-file", "p.pem", "--peer-key-file", "pk.pem"]].concat(), &[]);
        assert_contains(&e, &["--initial-cluster https://a:2380", "--peer-trusted-ca-file"]);
        let file = yaml(
            "peer-cert-file: p.pem\npeer-key-file: pk.pem\npeer-trusted-ca-file: ca.pem\npeer-client-cert-auth: true\n",
        );
        let c = ok(&[&https_peer[..], &["--config-file", path(&file)]].concat(), &[]);
        assert_eq!(c.peer_tls.cert_file, Some(PathBuf::from("p.pem")));
        assert_eq!(c.peer_tls.trusted_ca_file, Some(PathBuf::from("ca.pem")));
        assert!(c.peer_tls.client_cert_auth);
        assert!(!c.client_tls.is_set());
    }

    #[test]
    fn tls_files_on_http_urls_are_ignored_with_a_warning_as_etcd_does() {
        let c = ok(&["--cert-file", "c.pem", "--key-file", "k.pem", "--peer-trusted-ca-file", "ca.pem"], &[]);
        assert!(!c.client_tls.is_set() && !c.peer_tls.is_set(), "{c:?}");
        let warnings = c.warnings().join("\n");
        assert_contains(&warnings, &["no --listen-client-urls URL uses https", "--cert-file", "ignored"]);
        assert_contains(&warnings, &["no --listen-peer-urls URL uses https", "--peer-trusted-ca-file", "ignored"]);
    }

    #[test]
    fn etcds_transport_security_blocks_set_the_tls_flags() {
        let file = yaml(
            "listen-client-urls: https://127.0.0.1:2379\n\
             advertise-client-urls: https://127.0.0.1:2379\n\
             listen-peer-urls: https://127.0.0.1:2380\n\
             initial-advertise-peer-urls: https://127.0.0.1:2380\n\
             client-transport-security:\n  cert-file: c.pem\n  key-file: k.pem\n  trusted-ca-file: ca.pem\n  \
             client-cert-auth: true\n  auto-tls: false\n\
             peer-transport-security:\n  cert-file: p.pem\n  key-file: pk.pem\n  trusted-ca-file: pca.pem\n",
        );
        let c = ok(&["--config-file", path(&file)], &[]);
        assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("c.pem")));
        assert_eq!(c.client_tls.trusted_ca_file, Some(PathBuf::from("ca.pem")));
        assert!(c.client_tls.client_cert_auth);
        assert_eq!(c.peer_tls.cert_file, Some(PathBuf::from("p.pem")));
        assert_eq!(c.peer_tls.key_file, Some(PathBuf::from("pk.pem")));
        assert_eq!(c.peer_tls.trusted_ca_file, Some(PathBuf::from("pca.pem")));
        assert!(!c.peer_tls.client_cert_auth);
        // A flag beats the block, as it beats any file key.
        let c = ok(&["--config-file", path(&file), "--peer-cert-file", "flag.pem"], &[]);
        assert_eq!(c.peer_tls.cert_file, Some(PathBuf::from("flag.pem")));

        let file = yaml("client-transport-security:\n  auto-tls: true\n");
        assert_contains(
            &err(&["--config-file", path(&file)], &[]),
            &["client-transport-security.auto-tls", "not supported"],
        );
        let file = yaml("cert-file: a.pem\nclient-transport-security:\n  cert-file: b.pem\n");
        assert_contains(
            &err(&["--config-file", path(&file)], &[]),
            &["client-transport-security.cert-file and cert-file set the same thing"],
        );
        let file = yaml("peer-transport-security: yes please\n");
        assert_contains(&err(&["--config-file", path(&file)], &[]), &["peer-transport-security", "expects a mapping"]);
    }

    #[test]
    fn metrics_urls_stay_plain_http() {
        let e = err(&["--listen-metrics-urls", "https://127.0.0.1:2381"], &[]);
        assert_contains(&e, &["--listen-metrics-urls", "plain HTTP only"]);
    }

    #[test]
    fn unsupported_etcd_tls_options_in_a_config_file_are_refused_unless_off() {
        for (line, key) in [
            ("auto-tls: true", "auto-tls"),
            ("client-crl-file: /etc/crl.pem", "client-crl-file"),
            ("cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]", "cipher-suites"),
            ("peer-cert-allowed-cn: etcd", "peer-cert-allowed-cn"),
        ] {
            let file = yaml(&format!("{line}\n"));
            let e = err(&["--config-file", path(&file)], &[]);
            assert_contains(&e, &[path(&file), &format!("etcd TLS option {key}"), "not supported"]);
        }
        let file = yaml("auto-tls: false\npeer-auto-tls: false\nclient-crl-file: ''\n");
        let c = ok(&["--config-file", path(&file)], &[]);
        assert_contains(
            &c.warnings().join("\n"),
            &["etcd TLS option auto-tls is not supported by conflux; ignored (it is off)"],
        );
    }

    #[test]
    fn operations_doc_lists_every_flag() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
        for (flag, var) in FLAGS.iter().copied().chain([("config-file", CONFIG_FILE_ENV)]) {
            let row = doc.lines().find(|l| l.starts_with(&format!("| `--{flag}`"))).unwrap_or_else(|| {
                panic!("docs/operations.md has no table row for --{flag}");
            });
            assert!(row.contains(&format!("`{var}`")), "row for --{flag} lacks its env var: {row}");
        }
    }
}
