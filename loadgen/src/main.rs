//! `loadgen`: drive an etcd v3 cluster (conflux or etcd) and report; `loadgen sweep` finds the
//! highest rate that meets an SLO; `loadgen compare` is the CI gate; `loadgen verify` checks
//! that acknowledged writes survived; `loadgen check` judges a `--history` for linearizability.
//! Usage: `docs/loadgen.md`, `docs/reliability.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use conflux_loadgen::dist::Distribution;
use conflux_loadgen::embedded::{Embedded, EmbeddedOptions};
use conflux_loadgen::history::{self, History};
use conflux_loadgen::linearizability::{self, Budget};
use conflux_loadgen::op::OpKind;
use conflux_loadgen::report::{self, Report};
use conflux_loadgen::run::{self, AckLog, Arrival, RunConfig};
use conflux_loadgen::target::{GrpcTarget, NullTarget, Target, Tls};
use conflux_loadgen::workload::{self, KeySpace, ValueSize, WorkloadSpec};
use conflux_loadgen::{charts, compare, verify};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Drive an etcd v3 cluster (conflux or etcd) and report its latency and throughput"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Step or search the open-loop rate for the highest throughput that meets an SLO.
    Sweep(Box<SweepArgs>),
    /// Compare two JSON reports; exit 1 when NEW regressed beyond the threshold (the CI gate).
    Compare(CompareArgs),
    /// Check that every write acknowledged in a run's --ack-log is still readable.
    Verify(VerifyArgs),
    /// Check that a run's --history is linearizable; exit 1 with the explanation when not.
    Check(CheckArgs),
}

/// Where the load goes.
#[derive(Debug, Clone, Args, Serialize)]
struct TargetArgs {
    /// etcd v3 endpoints, comma-separated (host:port or URLs).
    #[arg(long, value_delimiter = ',', conflicts_with = "embedded")]
    endpoints: Vec<String>,
    /// Start N conflux members in this process (temporary data, free loopback ports) and drive them.
    #[arg(long, value_name = "N")]
    embedded: Option<usize>,
    /// Keep the embedded members' data directories (their path is printed).
    #[arg(long, requires = "embedded")]
    keep_data: bool,
    /// Where the embedded members' data directories go (default: the system temp dir).
    #[arg(long, requires = "embedded")]
    data_root: Option<PathBuf>,
    /// The embedded members' log I/O backend: auto, uring or sync (the server's --io).
    #[arg(long, value_name = "BACKEND", requires = "embedded")]
    io: Option<String>,
    /// Drive a null in-process target that answers at once (measures loadgen itself).
    #[arg(long, conflicts_with_all = ["endpoints", "embedded"])]
    null_target: bool,
    /// CA bundle to verify TLS servers (as etcdctl's --cacert).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Client certificate (as etcdctl's --cert).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (as etcdctl's --key).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Time to connect to each endpoint.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    dial_timeout: Duration,
    /// Time a single request may take before it counts as DeadlineExceeded.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    request_timeout: Duration,
    /// gRPC connections, spread over the endpoints.
    #[arg(long, default_value_t = 8)]
    conns: usize,
}

/// What to run and how to report it.
#[derive(Debug, Clone, Args, Serialize)]
struct RunArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// put, get (range), delete, txn (compare-and-swap), scan, insert, rmw, mix (see --mix) or
    /// ycsb-a … ycsb-f.
    #[arg(long, default_value = "put")]
    workload: String,
    /// Operation weights for --workload mix, e.g. put=20,get=80.
    #[arg(long)]
    mix: Option<String>,
    /// Key distribution: uniform, zipfian (scrambled), sequential, latest, hotspot[:set:ops].
    #[arg(long)]
    distribution: Option<String>,
    /// Zipfian skew θ, in (0, 1).
    #[arg(long, default_value_t = 0.99)]
    zipf_theta: f64,
    /// Keys in the key space (written by the preload phase).
    #[arg(long, default_value_t = 10_000)]
    key_space: u64,
    /// Bytes per key.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Bytes per value: a size (256, 4KiB) or a range (100-1000).
    #[arg(long, default_value = "256")]
    value_size: String,
    /// Most keys a scan reads (each scan reads 1..=this, uniformly).
    #[arg(long, default_value_t = 100)]
    scan_length: u64,
    /// The server's --max-request-bytes (values that cannot fit are refused before the run).
    #[arg(long, default_value_t = 1_572_864)]
    server_max_request_bytes: usize,
    /// Closed loop: concurrent clients. Open loop: the most operations in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Open loop at this many operations per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Open-loop arrivals: constant or poisson.
    #[arg(long, default_value = "constant")]
    arrival: String,
    /// Open loop: drop an operation that cannot start within this of its intended time.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    max_lag: Duration,
    /// Length of the measured phase (e.g. 10s, 2m).
    #[arg(long, value_parser = parse_duration, conflicts_with = "total")]
    #[serde(serialize_with = "ser_opt_duration")]
    duration: Option<Duration>,
    /// Measured operations (instead of --duration).
    #[arg(long)]
    total: Option<u64>,
    /// Unmeasured time before the measured phase.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    warmup: Duration,
    /// Skip writing the key space before the run.
    #[arg(long)]
    no_preload: bool,
    /// Concurrent writers of the preload phase.
    #[arg(long, default_value_t = 64)]
    preload_clients: usize,
    /// Reads: l (linearizable) or s (serializable), as etcdctl's --consistency.
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Seed of every random choice (default: from the clock; printed and recorded).
    #[arg(long)]
    seed: Option<u64>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write HdrHistogram percentile distributions (.hgrm) into this directory.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write the per-second series as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write SVG charts (latency by percentile, throughput over time) into this directory.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Service level objective(s), e.g. p99=10ms,p50=2ms: exit 1 when breached.
    #[arg(long)]
    slo: Option<String>,
    /// Record every acknowledged write here, for `loadgen verify`.
    #[arg(long)]
    ack_log: Option<PathBuf>,
    /// After the run, check every acknowledged write against the target (needs --ack-log).
    #[arg(long, requires = "ack_log")]
    verify: bool,
    /// Record every operation (invoke, complete, answer) here as JSON lines, with a unique value
    /// per write and no preload, for `loadgen check`.
    #[arg(long)]
    history: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SweepArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Rates to step through, comma-separated (ops/s).
    #[arg(long, value_delimiter = ',', conflicts_with = "search")]
    rates: Vec<f64>,
    /// Search between two rates (MIN..MAX) for the highest that meets the SLO.
    #[arg(long)]
    search: Option<String>,
    /// Search steps.
    #[arg(long, default_value_t = 6)]
    steps: usize,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The baseline report (JSON).
    base: PathBuf,
    /// The new report (JSON).
    new: PathBuf,
    /// Largest tolerated regression, e.g. 5%.
    #[arg(long, default_value = "5%")]
    max_regression: String,
    /// Percentiles to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [50.0, 99.0])]
    percentiles: Vec<f64>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The history a run wrote with --history.
    history: PathBuf,
    /// Most search steps per key before the key is reported as undecided.
    #[arg(long, default_value_t = Budget::default().max_steps)]
    max_steps: u64,
    /// Most memory (MiB) the search may remember per key before the key is reported as undecided.
    #[arg(long, default_value_t = Budget::default().max_memo_bytes >> 20)]
    max_memo_mib: usize,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The ack log a run wrote.
    #[arg(long)]
    ack_log: PathBuf,
    /// Concurrent reads.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// `10s`, `1.5s`, `250ms`, `2m`, `1h`, `100us`; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 250ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?} has an unknown unit {unit:?} (use us, ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A command-line error: names the flag and the value.
fn flag_err(flag: &str, value: impl std::fmt::Display, why: impl std::fmt::Display) -> String {
    format!("invalid value \"{value}\" for --{flag}: {why}")
}

fn workload_spec(a: &RunArgs) -> Result<WorkloadSpec, String> {
    let name = a.workload.to_ascii_lowercase();
    let theta = a.zipf_theta;
    let (mix, default_dist) = if let Some(letter) = name.strip_prefix("ycsb-") {
        workload::ycsb(letter)?
    } else if name == "mix" {
        let m = a.mix.as_deref().ok_or_else(|| "--workload mix needs --mix (e.g. put=20,get=80)".to_string())?;
        (workload::parse_mix(m)?, Distribution::Uniform)
    } else {
        let k = OpKind::parse(&name).ok_or_else(|| {
            flag_err(
                "workload",
                &a.workload,
                "expected put, get, delete, txn, scan, insert, rmw, mix or ycsb-a … ycsb-f",
            )
        })?;
        (vec![(k, 1)], Distribution::Uniform)
    };
    if mix.iter().any(|(k, w)| *k == OpKind::Watch && *w > 0) {
        return Err(flag_err(
            "workload",
            &a.workload,
            "watch latency needs the Watch service, which conflux does not serve yet; loadgen measures it once it does",
        ));
    }
    let distribution = match &a.distribution {
        Some(d) => Distribution::parse(d, theta)?,
        None => match default_dist {
            Distribution::Zipfian { .. } => Distribution::Zipfian { theta },
            Distribution::Latest { .. } => Distribution::Latest { theta },
            other => other,
        },
    };
    if a.mix.is_some() && name != "mix" {
        return Err(flag_err("mix", a.mix.as_deref().unwrap_or(""), "needs --workload mix"));
    }
    let value_size = ValueSize::parse(&a.value_size)?;
    if a.key_space == 0 {
        return Err(flag_err("key-space", 0, "must be at least 1"));
    }
    // A put carries key, value and a few bytes of framing.
    if value_size.max + a.key_size + 64 > a.server_max_request_bytes {
        return Err(flag_err(
            "value-size",
            &a.value_size,
            format!(
                "a put of {} bytes would exceed the server's request limit of {} bytes (--server-max-request-bytes)",
                value_size.max + a.key_size,
                a.server_max_request_bytes
            ),
        ));
    }
    let label = if name == "mix" || name.starts_with("ycsb-") {
        let m: Vec<String> = mix.iter().map(|(k, w)| format!("{k}={w}")).collect();
        format!("{name} ({})", m.join(","))
    } else {
        name.clone()
    };
    let spec = WorkloadSpec {
        name: label,
        mix,
        distribution,
        key_space: a.key_space,
        key_size: a.key_size,
        value_size,
        scan_length: a.scan_length,
        key_prefix: "lg/".into(),
    };
    spec.validate()?;
    Ok(spec)
}

/// Checks of flags that only make sense together, and of every value that is only used after
/// the run (so a typo fails at once, not after the run).
fn check_flags(a: &RunArgs) -> Result<(), String> {
    let t = &a.target;
    if t.embedded.is_none() && t.keep_data {
        return Err("--keep-data needs --embedded".into());
    }
    if t.embedded.is_none() && t.data_root.is_some() {
        return Err("--data-root needs --embedded".into());
    }
    if a.verify && t.null_target {
        return Err("--verify needs a real target (--endpoints or --embedded), not --null-target".into());
    }
    if let Some(s) = &a.slo {
        report::parse_slo(s)?;
    }
    if let Some(p) = &a.history
        && t.null_target
    {
        return Err(flag_err(
            "history",
            p.display(),
            "needs a real target (--endpoints or --embedded), not --null-target",
        ));
    }
    Ok(())
}

/// `--history` records registers: refuse the operations that are not one key's read or write.
fn check_history_workload(a: &RunArgs, spec: &WorkloadSpec) -> Result<(), String> {
    let Some(p) = &a.history else { return Ok(()) };
    if let Some((k, _)) = spec.mix.iter().find(|(k, w)| *w > 0 && matches!(k, OpKind::Scan | OpKind::Watch)) {
        return Err(flag_err(
            "history",
            p.display(),
            format!(
                "the workload has {k} operations, which read many keys; history mode records put, get, \
                 delete, txn (compare-and-swap), insert and rmw"
            ),
        ));
    }
    Ok(())
}

fn run_config(a: &RunArgs, spec: WorkloadSpec, seed: u64, rate: Option<f64>) -> Result<RunConfig, String> {
    if a.clients == 0 {
        return Err(flag_err("clients", 0, "must be at least 1"));
    }
    if a.target.conns == 0 {
        return Err(flag_err("conns", 0, "must be at least 1"));
    }
    if let Some(r) = rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(flag_err("rate", r, "must be a positive number of operations per second"));
    }
    let arrival = match a.arrival.as_str() {
        "constant" => Arrival::Constant,
        "poisson" => Arrival::Poisson,
        other => return Err(flag_err("arrival", other, "expected constant or poisson")),
    };
    let serializable = match a.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => return Err(flag_err("consistency", other, "expected l (linearizable) or s (serializable)")),
    };
    if a.total == Some(0) {
        return Err(flag_err("total", 0, "must be at least 1"));
    }
    let duration = match (a.duration, a.total) {
        (Some(d), _) if d.is_zero() => return Err(flag_err("duration", "0", "must be positive")),
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    // History mode starts from absent keys: every write must be in the history.
    let preload = !a.no_preload
        && a.history.is_none()
        && spec.mix.iter().any(|(k, w)| *w > 0 && !matches!(k, OpKind::Put | OpKind::Insert));
    Ok(RunConfig {
        workload: spec,
        clients: a.clients,
        rate,
        arrival,
        duration,
        total: a.total,
        warmup: a.warmup,
        preload,
        preload_clients: a.preload_clients.max(1),
        seed,
        serializable,
        progress: !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        max_lag: a.max_lag,
        history: None,
    })
}

/// The target a run drives, and the embedded cluster behind it (if any).
struct Driven {
    target: Arc<dyn Target>,
    grpc: Option<Arc<GrpcTarget>>,
    embedded: Option<Embedded>,
    label: String,
}

fn tls_of(t: &TargetArgs) -> Tls {
    Tls { cacert: t.cacert.clone(), cert: t.cert.clone(), key: t.key.clone() }
}

async fn connect(t: &TargetArgs, rt_embedded: Option<Embedded>) -> Result<Driven, String> {
    if t.null_target {
        return Ok(Driven {
            target: Arc::new(NullTarget { conns: t.conns }),
            grpc: None,
            embedded: None,
            label: "null target (loadgen alone)".into(),
        });
    }
    let (endpoints, label) = match &rt_embedded {
        Some(e) => (e.endpoints.clone(), format!("embedded conflux x{}", e.endpoints.len())),
        None if t.endpoints.is_empty() => {
            return Err("give --endpoints a,b,c, --embedded N or --null-target".to_string());
        }
        None => (t.endpoints.clone(), t.endpoints.join(",")),
    };
    let g = GrpcTarget::connect(&endpoints, t.conns, &tls_of(t), t.dial_timeout, t.request_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let g = Arc::new(g);
    Ok(Driven { target: g.clone(), grpc: Some(g), embedded: rt_embedded, label })
}

fn start_embedded(t: &TargetArgs) -> Result<Option<Embedded>, String> {
    let Some(n) = t.embedded else { return Ok(None) };
    if n == 0 {
        return Err(flag_err("embedded", 0, "must be at least 1"));
    }
    let e = Embedded::start(&EmbeddedOptions {
        members: n,
        data_root: t.data_root.clone(),
        extra: [("--log-level".to_string(), "warn".to_string())]
            .into_iter()
            .chain(t.io.clone().map(|v| ("--io".to_string(), v)))
            .collect(),
    })?;
    Ok(Some(e))
}

fn finish_embedded(e: Option<Embedded>, keep: bool) {
    if let Some(e) = e
        && let Some(p) = e.stop(keep)
    {
        eprintln!("embedded data kept in {}", p.display());
    }
}

fn host_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// One measured run: preload, warmup, measure; the report.
async fn measure(d: &Driven, a: &RunArgs, cfg: &RunConfig, acks: Option<AckLog>) -> Result<Report, String> {
    // Without a preload the same key numbers are chosen; reads of keys never written miss.
    let keys = KeySpace::new(cfg.workload.key_space);
    if cfg.preload {
        if !a.quiet {
            eprintln!("preloading {} keys ...", cfg.workload.key_space);
        }
        let failed = run::preload(d.target.clone(), cfg, acks.clone()).await;
        if failed > 0 {
            return Err(format!("the preload phase failed for {failed} of {} keys", cfg.workload.key_space));
        }
    }
    let out = run::run(d.target.clone(), cfg, keys, acks).await;
    let endpoints = d.target.endpoints();
    let (totals, ops, eps) = Report::summarize(&out.recorder, &endpoints, out.duration);
    let wall = out.duration.as_secs_f64().max(1e-9);
    let slos = match &a.slo {
        Some(s) => report::parse_slo(s)?,
        None => vec![],
    };
    let open_loop = out.schedule.as_ref().map(|s| {
        let arrival = match cfg.arrival {
            Arrival::Constant => "constant",
            Arrival::Poisson => "poisson",
        };
        // Achieved: operations that completed (any outcome) per second of the measured phase.
        report::OpenLoop::new(
            cfg.rate.unwrap_or(0.0),
            arrival,
            totals.ops as f64 / wall,
            s.mean_lag_ms,
            s.max_lag_ms,
            s.dropped,
        )
    });
    let r = Report {
        schema_version: report::SCHEMA_VERSION,
        loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: report::rfc3339_utc(out.started_at),
        host: report::HostInfo::detect(),
        config: serde_json::to_value(a).map_err(|e| e.to_string())?,
        seed: cfg.seed,
        workload: format!("{} {}", cfg.workload.name, cfg.workload.distribution.name()),
        target: d.label.clone(),
        duration_secs: out.duration.as_secs_f64(),
        warmup_secs: cfg.warmup.as_secs_f64(),
        totals,
        ops,
        endpoints: eps,
        open_loop,
        loadgen_cpu: report::CpuUse::measure((Duration::ZERO, Duration::ZERO), out.cpu, out.duration, host_cores()),
        slo: report::check_slo(&slos, &out.recorder),
        series: out.series.clone(),
    };
    // Side outputs that need the histograms.
    if let Some(dir) = &a.hgrm {
        std::fs::create_dir_all(dir)
            .and_then(|_| report::write_hgrm(dir, &out.recorder))
            .map_err(|e| format!("cannot write --hgrm {}: {e}", dir.display()))?;
    }
    if let Some(dir) = &a.svg {
        let title = format!("{} on {}", r.workload, r.target);
        std::fs::create_dir_all(dir)
            .map_err(|e| e.to_string())
            .and_then(|_| charts::write_run_charts(dir, &out.recorder, &out.series, &title))
            .map_err(|e| format!("cannot write --svg {}: {e}", dir.display()))?;
    }
    Ok(r)
}

fn write_outputs(a: &RunArgs, r: &Report) -> Result<(), String> {
    if let Some(p) = &a.json {
        r.write_json(p).map_err(|e| format!("cannot write --json {}: {e}", p.display()))?;
    }
    if let Some(p) = &a.csv {
        report::write_csv(p, &r.series).map_err(|e| format!("cannot write --csv {}: {e}", p.display()))?;
    }
    Ok(())
}

fn seed_of(a: &RunArgs) -> u64 {
    a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

async fn cmd_run(a: RunArgs, embedded: Option<Embedded>) -> Result<ExitCode, String> {
    check_flags(&a)?;
    let seed = seed_of(&a);
    let spec = workload_spec(&a)?;
    check_history_workload(&a, &spec)?;
    let mut cfg = run_config(&a, spec, seed, a.rate)?;
    let d = connect(&a.target, embedded).await?;
    let history_thread = match &a.history {
        Some(p) => {
            let header = history::Header {
                format: history::FORMAT.into(),
                version: history::VERSION,
                seed,
                workload: format!("{} {}", cfg.workload.name, cfg.workload.distribution.name()),
            };
            let (h, thread) = History::create(p, &header).map_err(|e| format!("cannot create --history {e}"))?;
            cfg.history = Some(h);
            Some(thread)
        }
        None => None,
    };
    let (acks, ack_thread) = match &a.ack_log {
        Some(p) => {
            let (l, h) = AckLog::create(p).map_err(|e| format!("cannot create --ack-log {}: {e}", p.display()))?;
            (Some(l), Some(h))
        }
        None => (None, None),
    };
    // Ctrl-C ends the measured phase early; the report covers what was measured.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("loadgen: interrupted; reporting what was measured");
            run::interrupt();
        }
    });
    let report = measure(&d, &a, &cfg, acks).await?;
    // Every clone of the history is gone with the run: the writer can finish.
    drop(cfg);
    if let Some(h) = history_thread {
        h.join().map_err(|_| "the history writer failed".to_string())?.map_err(|e| format!("writing --history {e}"))?;
    }
    if let Some(h) = ack_thread {
        h.join()
            .map_err(|_| "the ack log writer failed".to_string())?
            .map_err(|e| format!("writing --ack-log: {e}"))?;
    }
    print!("{}", report.to_text());
    write_outputs(&a, &report)?;
    let mut code = ExitCode::SUCCESS;
    if report.slo.iter().any(|s| !s.met) {
        eprintln!("loadgen: SLO breached");
        code = ExitCode::from(1);
    }
    if a.slo.is_some() && report.totals.errors > 0 {
        eprintln!("loadgen: SLO not met: {} operations failed", report.totals.errors);
        code = ExitCode::from(1);
    }
    if a.verify
        && let (Some(g), Some(p)) = (&d.grpc, &a.ack_log)
    {
        let log = verify::read_log(p)?;
        let v = verify::verify(g, log, 64, a.target.request_timeout).await;
        print!("{}", v.to_text());
        if !v.passed() {
            code = ExitCode::from(1);
        }
    }
    finish_embedded(d.embedded, a.target.keep_data);
    Ok(code)
}

fn parse_search(s: &str) -> Result<(f64, f64), String> {
    let (lo, hi) = s.split_once("..").ok_or_else(|| flag_err("search", s, "expected MIN..MAX (ops/s)"))?;
    let lo: f64 = lo.trim().parse().map_err(|_| flag_err("search", s, "MIN is not a number"))?;
    let hi: f64 = hi.trim().parse().map_err(|_| flag_err("search", s, "MAX is not a number"))?;
    if !(lo > 0.0 && hi > lo) {
        return Err(flag_err("search", s, "needs 0 < MIN < MAX"));
    }
    Ok((lo, hi))
}

/// One step of a sweep: an open-loop run at `rate`.
async fn sweep_point(
    d: &Driven,
    a: &RunArgs,
    spec: &WorkloadSpec,
    seed: u64,
    rate: f64,
    preload: bool,
) -> Result<charts::SweepPoint, String> {
    let mut cfg = run_config(a, spec.clone(), seed, Some(rate))?;
    cfg.preload &= preload;
    cfg.progress = false;
    let r = measure(d, a, &cfg, None).await?;
    let worst =
        |f: fn(&report::Percentiles) -> f64| r.ops.iter().filter_map(|o| o.latency.as_ref()).map(f).fold(0.0, f64::max);
    let (p50, p99, p999) = (worst(|l| l.p50), worst(|l| l.p99), worst(|l| l.p999));
    let met = r.slo.iter().all(|c| c.met) && r.totals.errors == 0 && r.open_loop.as_ref().is_some_and(|o| o.met);
    eprintln!(
        "rate {rate:>10.0}/s: achieved {:>10.0}/s  p50 {p50:>8.3} ms  p99 {p99:>8.3} ms  {}",
        r.totals.throughput,
        if met { "meets the SLO" } else { "misses it" }
    );
    Ok(charts::SweepPoint {
        target_rate: rate,
        achieved_rate: r.totals.throughput,
        p50_ms: p50,
        p99_ms: p99,
        p999_ms: p999,
        errors: r.totals.errors,
        met_slo: met,
    })
}

async fn cmd_sweep(s: SweepArgs, embedded: Option<Embedded>) -> Result<ExitCode, String> {
    let a = &s.run;
    check_flags(a)?;
    if let Some(p) = &a.history {
        return Err(flag_err("history", p.display(), "records one run; a sweep makes many (run at one rate instead)"));
    }
    let slo_text = a.slo.clone().ok_or_else(|| "loadgen sweep needs --slo (e.g. --slo p99=10ms)".to_string())?;
    let slos = report::parse_slo(&slo_text)?;
    if s.rates.is_empty() && s.search.is_none() {
        return Err("loadgen sweep needs --rates a,b,c or --search MIN..MAX".into());
    }
    if let Some(bad) = s.rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        return Err(flag_err("rates", bad, "every rate must be a positive number"));
    }
    let seed = seed_of(a);
    let spec = workload_spec(a)?;
    let d = connect(&a.target, embedded).await?;
    let mut points = Vec::new();
    let mut preloaded = false;
    if let Some(sr) = &s.search {
        let (mut lo, mut hi) = parse_search(sr)?;
        for _ in 0..s.steps.max(1) {
            let mid = (lo + hi) / 2.0;
            let p = sweep_point(&d, a, &spec, seed, mid, !preloaded).await?;
            preloaded = true;
            if p.met_slo {
                lo = mid
            } else {
                hi = mid
            }
            points.push(p);
        }
    } else {
        for &r in &s.rates {
            points.push(sweep_point(&d, a, &spec, seed, r, !preloaded).await?);
            preloaded = true;
        }
    }
    points.sort_by(|x, y| x.target_rate.total_cmp(&y.target_rate));
    println!(
        "{:>12} {:>12} {:>10} {:>10} {:>10} {:>8}  SLO {slo_text}",
        "rate", "achieved", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for p in &points {
        println!(
            "{:>12.0} {:>12.0} {:>10.3} {:>10.3} {:>10.3} {:>8}  {}",
            p.target_rate,
            p.achieved_rate,
            p.p50_ms,
            p.p99_ms,
            p.p999_ms,
            p.errors,
            if p.met_slo { "met" } else { "missed" }
        );
    }
    let best = points
        .iter()
        .filter(|p| p.met_slo)
        .map(|p| p.achieved_rate)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    match best {
        Some(b) => println!("highest throughput meeting {slo_text}: {b:.0} ops/s"),
        None => println!("no rate tried met {slo_text}"),
    }
    let slo_ms = slos.iter().find(|s| (s.percentile - 99.0).abs() < 1e-9).map(|s| s.max.as_secs_f64() * 1000.0);
    if let Some(dir) = &a.svg {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create --svg {}: {e}", dir.display()))?;
        let path = dir.join("sweep.svg");
        charts::write_sweep_chart(&path, &points, slo_ms, &format!("{} on {}", spec.name, d.label))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(p) = &a.json {
        let body = serde_json::json!({ "kind": "sweep", "schema_version": report::SCHEMA_VERSION, "slo": slo_text, "seed": seed, "workload": spec.name, "target": d.label, "points": points });
        std::fs::write(p, serde_json::to_vec_pretty(&body).unwrap_or_default())
            .map_err(|e| format!("cannot write --json {}: {e}", p.display()))?;
    }
    finish_embedded(d.embedded, a.target.keep_data);
    Ok(if best.is_some() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn cmd_compare(c: CompareArgs) -> Result<ExitCode, String> {
    let max = compare::parse_pct(&c.max_regression)?;
    for p in &c.percentiles {
        if !(*p > 0.0 && *p <= 100.0) {
            return Err(flag_err("percentiles", p, "each must be in (0, 100]"));
        }
    }
    let base = Report::read_json(&c.base).map_err(|e| e.to_string())?;
    let new = Report::read_json(&c.new).map_err(|e| e.to_string())?;
    let cmp = compare::compare(&base, &new, max, &c.percentiles).map_err(|e| e.to_string())?;
    print!("{}", cmp.to_table());
    Ok(if cmp.regressed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn cmd_check(c: CheckArgs) -> Result<ExitCode, String> {
    if c.max_steps == 0 {
        return Err(flag_err("max-steps", 0, "must be at least 1"));
    }
    if c.max_memo_mib == 0 {
        return Err(flag_err("max-memo-mib", 0, "must be at least 1"));
    }
    let (_, records) = history::read(&c.history).map_err(|e| e.to_string())?;
    let ops: Vec<linearizability::Operation> = records.iter().map(history::Record::to_operation).collect();
    let budget = Budget { max_steps: c.max_steps, max_memo_bytes: c.max_memo_mib.saturating_mul(1 << 20) };
    let r = linearizability::check(&ops, budget);
    print!("{}", r.to_text());
    Ok(if !r.violations.is_empty() {
        ExitCode::from(1)
    } else if !r.unknown.is_empty() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

async fn cmd_verify(v: VerifyArgs, embedded: Option<Embedded>) -> Result<ExitCode, String> {
    if v.target.endpoints.is_empty() || embedded.is_some() || v.target.null_target {
        finish_embedded(embedded, false);
        return Err("loadgen verify checks a running cluster: give its --endpoints (an embedded cluster is gone \
                    once its run ends; use --verify on that run)"
            .into());
    }
    let log = verify::read_log(&v.ack_log)?;
    let d = connect(&v.target, embedded).await?;
    let g = d.grpc.clone().ok_or_else(|| "verify needs --endpoints".to_string())?;
    let r = verify::verify(&g, log, v.concurrency, v.target.request_timeout).await;
    print!("{}", r.to_text());
    finish_embedded(d.embedded, v.target.keep_data);
    Ok(if r.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("lg-worker").build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let target_of = |c: &Option<Command>| -> Option<TargetArgs> {
        match c {
            None => Some(cli.run.target.clone()),
            Some(Command::Sweep(s)) => Some(s.run.target.clone()),
            Some(Command::Verify(v)) => Some(v.target.clone()),
            Some(Command::Compare(_) | Command::Check(_)) => None,
        }
    };
    // The embedded cluster runs on its own runtime, started outside loadgen's.
    let embedded = match target_of(&cli.command).map(|t| start_embedded(&t)).transpose() {
        Ok(e) => e.flatten(),
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        None => runtime.block_on(cmd_run(cli.run, embedded)),
        Some(Command::Sweep(s)) => runtime.block_on(cmd_sweep(*s, embedded)),
        Some(Command::Compare(c)) => cmd_compare(c),
        Some(Command::Check(c)) => cmd_check(c),
        Some(Command::Verify(v)) => runtime.block_on(cmd_verify(v, embedded)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
