//! The run report and its outputs: the human summary, JSON (what `compare` reads), HdrHistogram
//! `.hgrm` percentile files, the per-second CSV, and SLO checks.
//!
//! Conventions used throughout: `ops`/`count` is operations completed with any outcome, `errors`
//! how many of those failed, throughput (`ops/s`) counts successes only, and latencies are
//! milliseconds measured from the intended start (see [`crate::record`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::op::{OpKind, Outcome};
use crate::record::{Recorder, SeriesRow};

/// Version of the JSON report layout; bumped on any change a reader would notice. `compare`
/// refuses to compare reports of different versions.
pub const SCHEMA_VERSION: u32 = 1;

/// Microseconds (what the histograms hold) per millisecond (what reports show).
const US_PER_MS: f64 = 1000.0;

/// Everything a run produced, as written to `--json` and read back by `compare`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Report {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// Version of the loadgen that ran.
    pub loadgen_version: String,
    /// When the run started, RFC 3339 UTC (see [`rfc3339_utc`]).
    pub started_at: String,
    /// The machine loadgen ran on.
    pub host: HostInfo,
    /// The full run configuration, echoed.
    pub config: serde_json::Value,
    /// Seed of the run's random choices.
    pub seed: u64,
    /// Workload name and mix, e.g. `ycsb-a (get=50,put=50) zipfian(0.99)`; `compare` refuses
    /// reports whose workloads differ.
    pub workload: String,
    /// What was driven, e.g. `embedded conflux x3` or the endpoints.
    pub target: String,
    /// Length of the measured part (after warmup), seconds.
    pub duration_secs: f64,
    /// Length of the warmup, not measured, seconds.
    pub warmup_secs: f64,
    /// All kinds together.
    pub totals: Totals,
    /// Per op kind, in [`OpKind::ALL`] order.
    pub ops: Vec<OpSummary>,
    /// Per endpoint, in the order given.
    pub endpoints: Vec<EndpointSummary>,
    /// How well the open-loop schedule was kept; `None` in closed loop.
    pub open_loop: Option<OpenLoop>,
    /// CPU that loadgen itself used.
    pub loadgen_cpu: CpuUse,
    /// SLO checks, when `--slo` was given.
    pub slo: Vec<SloCheck>,
    /// Per-second series.
    pub series: Vec<SeriesRow>,
}

/// The machine loadgen ran on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Operating system, as Rust names it (`linux`, `macos`).
    pub os: String,
    /// CPU architecture, as Rust names it (`x86_64`, `aarch64`).
    pub arch: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Logical CPUs this process may use.
    pub logical_cpus: usize,
}

impl HostInfo {
    /// Describes this machine (`unknown` for what cannot be found out).
    pub fn detect() -> HostInfo {
        let (hostname, kernel) = uname();
        HostInfo {
            hostname,
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            kernel,
            logical_cpus: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// (host name, kernel release) from `uname(2)`.
#[allow(unsafe_code, reason = "uname has no safe wrapper in std")]
fn uname() -> (String, String) {
    // SAFETY: `utsname` is a plain C struct of `c_char` arrays, for which all-zero bytes are a
    // valid value. `uname` only writes through the pointer, which points to that live, aligned
    // local for the whole call.
    let (rc, u) = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        let rc = libc::uname(&mut u);
        (rc, u)
    };
    if rc != 0 {
        return ("unknown".into(), "unknown".into());
    }
    // The fields are NUL-terminated; read up to the NUL (or the array's end) without trusting it.
    let text = |field: &[libc::c_char]| {
        let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (text(&u.nodename), text(&u.release))
}

/// `t` as RFC 3339 UTC to the second, e.g. `2024-05-01T12:34:56Z` (times before 1970 print as
/// 1970).
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`), in 400-year
    // eras of 146097 days starting on March 1st, so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// All kinds together.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Totals {
    /// Operations completed, any outcome.
    pub ops: u64,
    /// Of those, the ones that failed.
    pub errors: u64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Operations whose latency passed the histograms' one-hour ceiling and was recorded as that.
    #[serde(default)]
    pub clamped: u64,
}

/// Latency percentiles, milliseconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Highest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of `h` (microseconds); `None` if it is empty.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / US_PER_MS;
        Some(Percentiles {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / US_PER_MS,
            mean: h.mean() / US_PER_MS,
        })
    }

    /// The stored value for `percentile` (50, 90, 99, 99.9 or 100 for the max); `None` for
    /// others.
    pub fn at(&self, percentile: f64) -> Option<f64> {
        const EPS: f64 = 1e-9;
        [(50.0, self.p50), (90.0, self.p90), (99.0, self.p99), (99.9, self.p999), (100.0, self.max)]
            .into_iter()
            .find(|(p, _)| (p - percentile).abs() < EPS)
            .map(|(_, v)| v)
    }
}

/// The percentiles [`Percentiles::at`] knows.
pub const STORED_PERCENTILES: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 100.0];

/// One op kind's results.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OpSummary {
    /// The kind.
    pub op: OpKind,
    /// Operations completed, any outcome.
    pub count: u64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Failures by gRPC status code name.
    pub errors: BTreeMap<String, u64>,
    /// Latency of successes from the intended start; `None` if there were no successes (every
    /// operation failed).
    pub latency: Option<Percentiles>,
    /// Latency of successes from the actual send (service time); open loop only.
    pub uncorrected: Option<Percentiles>,
}

impl OpSummary {
    /// Successful operations: the ones [`OpSummary::latency`] describes.
    pub fn successes(&self) -> u64 {
        self.count.saturating_sub(self.error_count())
    }

    /// Failures, all statuses.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One endpoint's share of the operations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EndpointSummary {
    /// The endpoint URL.
    pub endpoint: String,
    /// Operations completed, any outcome.
    pub ops: u64,
    /// Of those, the ones that failed.
    pub errors: u64,
}

/// How well the open-loop schedule was kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OpenLoop {
    /// Operations per second asked for.
    pub target_rate: f64,
    /// Arrival process: `constant` or `poisson`.
    pub arrival: String,
    /// Operations per second actually started.
    pub achieved_rate: f64,
    /// Mean delay between an operation's schedule slot and its send, ms.
    pub mean_lag_ms: f64,
    /// Longest such delay, ms.
    pub max_lag_ms: f64,
    /// Scheduled operations never sent (all workers busy past the slot, beyond the backlog).
    pub dropped: u64,
    /// Whether the target was met: `achieved_rate >= 0.99 * target_rate` and nothing dropped.
    pub met: bool,
}

impl OpenLoop {
    /// Fraction of the target rate that must be achieved for the run to count as meeting it.
    pub const MET_FRACTION: f64 = 0.99;

    /// A summary, with `met` worked out.
    pub fn new(
        target_rate: f64,
        arrival: &str,
        achieved_rate: f64,
        mean_lag_ms: f64,
        max_lag_ms: f64,
        dropped: u64,
    ) -> OpenLoop {
        OpenLoop {
            target_rate,
            arrival: arrival.to_string(),
            achieved_rate,
            mean_lag_ms,
            max_lag_ms,
            dropped,
            met: achieved_rate >= OpenLoop::MET_FRACTION * target_rate && dropped == 0,
        }
    }
}

/// CPU that loadgen itself used over the measured part.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CpuUse {
    /// User CPU seconds.
    pub user_secs: f64,
    /// System CPU seconds.
    pub system_secs: f64,
    /// CPU seconds per wall second: how many cores' worth loadgen kept busy.
    pub cores_used: f64,
    /// Cores loadgen may use.
    pub available_cores: usize,
    /// `cores_used >= 0.9 * available_cores`: the load generator may be the bottleneck.
    pub saturated: bool,
}

impl CpuUse {
    /// Fraction of the available cores at which loadgen counts as saturated.
    pub const SATURATED_FRACTION: f64 = 0.9;

    /// The use between two [`crate::record::cpu_times`] readings taken `wall` apart.
    pub fn measure(
        start: (Duration, Duration),
        end: (Duration, Duration),
        wall: Duration,
        available_cores: usize,
    ) -> CpuUse {
        let user_secs = end.0.saturating_sub(start.0).as_secs_f64();
        let system_secs = end.1.saturating_sub(start.1).as_secs_f64();
        let cores_used = per_sec(user_secs + system_secs, wall);
        CpuUse {
            user_secs,
            system_secs,
            cores_used,
            available_cores,
            saturated: cores_used >= CpuUse::SATURATED_FRACTION * available_cores as f64,
        }
    }
}

/// One SLO checked against one op kind (or `all`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SloCheck {
    /// The SLO as given, e.g. `p99=10ms`.
    pub slo: String,
    /// Op kind name ([`OpKind::as_str`]) or `all`.
    pub op: String,
    /// The measured latency at the SLO's percentile, ms.
    pub measured_ms: f64,
    /// Whether it was within the SLO.
    pub met: bool,
}

/// `n / wall` in per-second units, 0 for an empty interval (so no NaN reaches the JSON).
fn per_sec(n: f64, wall: Duration) -> f64 {
    let secs = wall.as_secs_f64();
    if secs > 0.0 { n / secs } else { 0.0 }
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file could not be read.
    #[error("cannot read report {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not JSON, or not a report of this schema.
    #[error("{} is not a loadgen report: {source}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The file is JSON but has no `schema_version`.
    #[error("{} is not a loadgen report: it has no schema_version", .path.display())]
    NoSchemaVersion {
        /// The file.
        path: PathBuf,
    },
    /// The report was written with another schema version.
    #[error(
        "{} has report schema_version {found}, but this loadgen reads schema_version {expected}; \
         re-run the baseline with this loadgen (or compare with the loadgen that wrote it)",
        .path.display()
    )]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// The file's version.
        found: u64,
        /// [`SCHEMA_VERSION`].
        expected: u32,
    },
}

impl Report {
    /// The totals, per-kind and per-endpoint summaries of a merged recorder over a measured
    /// `duration`. `endpoints[i]` names endpoint `i` of [`Recorder::record`] (unnamed ones are
    /// called `#i`).
    pub fn summarize(
        rec: &Recorder,
        endpoints: &[String],
        duration: Duration,
    ) -> (Totals, Vec<OpSummary>, Vec<EndpointSummary>) {
        let totals = Totals {
            ops: rec.total_ops(),
            errors: rec.total_errors(),
            throughput: per_sec((rec.total_ops() - rec.total_errors()) as f64, duration),
            clamped: rec.clamped(),
        };
        let ops = rec
            .kinds()
            .into_iter()
            .map(|kind| {
                let ok = rec.successes(kind);
                OpSummary {
                    op: kind,
                    count: ok + rec.error_count(kind),
                    throughput: per_sec(ok as f64, duration),
                    errors: rec.errors(kind),
                    latency: rec.histogram(kind, &Outcome::Ok).and_then(Percentiles::from_histogram),
                    uncorrected: rec.uncorrected(kind).and_then(Percentiles::from_histogram),
                }
            })
            .collect();
        let counts = rec.endpoints();
        let eps = (0..endpoints.len().max(counts.len()))
            .map(|i| {
                let c = counts.get(i).copied().unwrap_or_default();
                let endpoint = endpoints.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
                EndpointSummary { endpoint, ops: c.ops, errors: c.errors }
            })
            .collect();
        (totals, ops, eps)
    }

    /// The human summary: header, per-op table, errors by status, per-endpoint split, open-loop
    /// section, loadgen CPU and SLO lines.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_text(&mut s).expect("writing to a String cannot fail");
        s
    }

    fn write_text(&self, s: &mut String) -> std::fmt::Result {
        let h = &self.host;
        writeln!(s, "loadgen {} — started {} on {}", self.loadgen_version, self.started_at, h.hostname)?;
        writeln!(s, "host:      {}/{}, kernel {}, {} cpus", h.os, h.arch, h.kernel, h.logical_cpus)?;
        writeln!(s, "target:    {}", self.target)?;
        writeln!(s, "workload:  {}", self.workload)?;
        writeln!(
            s,
            "measured:  {:.1} s after {:.1} s warmup, seed {}",
            self.duration_secs, self.warmup_secs, self.seed
        )?;
        writeln!(s)?;

        writeln!(
            s,
            "{:<8}{:>12}{:>12}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "op", "count", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
        )?;
        for op in &self.ops {
            write!(s, "{:<8}{:>12}{:>12.1}", op.op.as_str(), op.count, op.throughput)?;
            write_percentiles(s, op.latency.as_ref())?;
            writeln!(s, "{:>10}", op.error_count())?;
        }
        writeln!(
            s,
            "{:<8}{:>12}{:>12.1}{:>50}{:>10}",
            "total", self.totals.ops, self.totals.throughput, "", self.totals.errors
        )?;

        if self.totals.errors > 0 {
            writeln!(s, "\nerrors by status:")?;
            for op in &self.ops {
                for (code, n) in &op.errors {
                    let pct = 100.0 * *n as f64 / op.count.max(1) as f64;
                    writeln!(s, "  {:<8}{:<20}{:>10}  ({pct:.2}% of {})", op.op.as_str(), code, n, op.op.as_str())?;
                }
            }
        }
        if self.totals.clamped > 0 {
            writeln!(
                s,
                "\nWARNING: {} operations took over an hour and were recorded as one hour",
                self.totals.clamped
            )?;
        }

        if !self.endpoints.is_empty() {
            writeln!(s, "\nendpoints:")?;
            let width = self.endpoints.iter().map(|e| e.endpoint.len()).max().unwrap_or(0);
            for e in &self.endpoints {
                let share = 100.0 * e.ops as f64 / self.totals.ops.max(1) as f64;
                writeln!(s, "  {:<width$}  ops {:>10} ({share:5.1}%)  errors {}", e.endpoint, e.ops, e.errors)?;
            }
        }

        if let Some(ol) = &self.open_loop {
            writeln!(s, "\nopen loop ({} arrivals):", ol.arrival)?;
            let pct = 100.0 * ol.achieved_rate / ol.target_rate.max(f64::MIN_POSITIVE);
            if ol.met {
                writeln!(
                    s,
                    "  target {:.1} ops/s, achieved {:.1} ops/s ({pct:.1}%), {} dropped — met",
                    ol.target_rate, ol.achieved_rate, ol.dropped
                )?;
            } else {
                writeln!(
                    s,
                    "  !!! TARGET RATE NOT MET: achieved {:.1} of {:.1} ops/s ({pct:.1}%), {} dropped !!!",
                    ol.achieved_rate, ol.target_rate, ol.dropped
                )?;
                writeln!(s, "  !!! the latencies above describe a lighter load than the one asked for !!!")?;
            }
            writeln!(s, "  schedule lag: mean {:.3} ms, max {:.3} ms", ol.mean_lag_ms, ol.max_lag_ms)?;
            if self.ops.iter().any(|o| o.uncorrected.is_some()) {
                writeln!(s, "  uncorrected latency (send to done; service time without queueing):")?;
                writeln!(
                    s,
                    "  {:<30}{:>10}{:>10}{:>10}{:>10}{:>10}",
                    "op", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
                )?;
                for op in &self.ops {
                    if op.uncorrected.is_some() {
                        write!(s, "  {:<30}", op.op.as_str())?;
                        write_percentiles(s, op.uncorrected.as_ref())?;
                        writeln!(s)?;
                    }
                }
            }
        }

        let cpu = &self.loadgen_cpu;
        writeln!(
            s,
            "\nloadgen cpu: user {:.1} s + system {:.1} s = {:.2} of {} cores",
            cpu.user_secs, cpu.system_secs, cpu.cores_used, cpu.available_cores
        )?;
        if cpu.saturated {
            writeln!(
                s,
                "WARNING: loadgen used {:.2} of {} cores — the load generator, not the target, may be the \
                 bottleneck; run it on a bigger or separate machine",
                cpu.cores_used, cpu.available_cores
            )?;
        }

        if !self.slo.is_empty() {
            writeln!(s, "\nSLO:")?;
            for c in &self.slo {
                let verdict = if c.met { "met" } else { "MISSED" };
                writeln!(s, "  {:<16}{:<8}{:>12.3} ms  {verdict}", c.slo, c.op, c.measured_ms)?;
            }
        }
        Ok(())
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        text.push('\n');
        std::fs::write(path, text)
    }

    /// Reads a report written by [`Report::write_json`].
    ///
    /// # Errors
    ///
    /// [`ReportError::SchemaVersion`] if it was written with another [`SCHEMA_VERSION`] (checked
    /// before the rest is parsed, so the message says that rather than naming a missing field);
    /// otherwise I/O and parse errors naming the file.
    pub fn read_json(path: &Path) -> Result<Report, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io { path: path.into(), source })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ReportError::Parse { path: path.into(), source })?;
        let found = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| ReportError::NoSchemaVersion { path: path.into() })?;
        if found != u64::from(SCHEMA_VERSION) {
            return Err(ReportError::SchemaVersion { path: path.into(), found, expected: SCHEMA_VERSION });
        }
        serde_json::from_value(value).map_err(|source| ReportError::Parse { path: path.into(), source })
    }
}

/// Writes six right-aligned latency columns, or dashes.
fn write_percentiles(s: &mut String, p: Option<&Percentiles>) -> std::fmt::Result {
    match p {
        Some(p) => write!(s, "{:>10.3}{:>10.3}{:>10.3}{:>10.3}{:>10.3}", p.p50, p.p90, p.p99, p.p999, p.max),
        None => write!(s, "{:>10}{:>10}{:>10}{:>10}{:>10}", "-", "-", "-", "-", "-"),
    }
}

/// A latency objective: at `percentile`, at most `max`.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    /// Percentile, in (0, 100].
    pub percentile: f64,
    /// Highest acceptable latency at that percentile.
    pub max: Duration,
    /// The SLO as written, e.g. `p99=10ms`.
    pub text: String,
}

/// Parses `--slo`: one or more comma-separated `p<percentile>=<number><unit>` items, units `us`
/// (or `µs`), `ms`, `s`; e.g. `p99=10ms` or `p50=2ms,p99.9=50ms`.
///
/// # Errors
///
/// A message naming `--slo` and the offending text.
pub fn parse_slo(s: &str) -> Result<Vec<Slo>, String> {
    const EXAMPLE: &str = "expected e.g. p99=10ms or p50=2ms,p99.9=50ms (units us, ms, s)";
    let mut out = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        let bad = |why: &str| format!("--slo `{s}`: {why}; {EXAMPLE}");
        if item.is_empty() {
            return Err(bad("empty item"));
        }
        let (p, v) = item.split_once('=').ok_or_else(|| bad(&format!("`{item}` has no `=`")))?;
        let percentile: f64 = p
            .trim()
            .strip_prefix(['p', 'P'])
            .and_then(|n| n.parse().ok())
            .filter(|&n: &f64| n > 0.0 && n <= 100.0)
            .ok_or_else(|| bad(&format!("`{p}` is not a percentile like p99 or p99.9 (0 < p <= 100)")))?;
        let v = v.trim();
        let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
            (n, 1e-3)
        } else if let Some(n) = v.strip_suffix("us").or_else(|| v.strip_suffix("µs")) {
            (n, 1e-6)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1.0)
        } else {
            return Err(bad(&format!("`{v}` has no unit")));
        };
        let secs = number
            .trim()
            .parse::<f64>()
            .ok()
            .map(|n| n * scale)
            .filter(|n| n.is_finite() && *n >= 0.0 && *n < 1e9)
            .ok_or_else(|| bad(&format!("`{v}` is not a duration")))?;
        out.push(Slo { percentile, max: Duration::from_secs_f64(secs), text: item.to_string() });
    }
    Ok(out)
}

/// Checks each SLO against each op kind with successes, then against all kinds' successes
/// together (`all`).
pub fn check_slo(slos: &[Slo], rec: &Recorder) -> Vec<SloCheck> {
    let mut hists: Vec<(String, Histogram<u64>)> = rec
        .kinds()
        .into_iter()
        .filter_map(|k| rec.histogram(k, &Outcome::Ok).map(|h| (k.as_str().to_string(), h.clone())))
        .collect();
    if let Some(all) = rec.all_successes() {
        hists.push(("all".to_string(), all));
    }
    let mut out = Vec::new();
    for slo in slos {
        let max_us = u64::try_from(slo.max.as_micros()).unwrap_or(u64::MAX);
        for (op, h) in &hists {
            let us = h.value_at_percentile(slo.percentile);
            out.push(SloCheck {
                slo: slo.text.clone(),
                op: op.clone(),
                measured_ms: us as f64 / US_PER_MS,
                met: us <= max_us,
            });
        }
    }
    out
}

/// Percentile ticks per half distance to 100% in `.hgrm` files (HdrHistogram's usual 5).
const HGRM_TICKS: u32 = 5;

/// Writes `<dir>/<kind>.hgrm` for each op kind with successes, plus
/// `<dir>/<kind>.uncorrected.hgrm` in open loop (see [`hgrm_text`]); returns the paths written.
pub fn write_hgrm(dir: &Path, rec: &Recorder) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for kind in rec.kinds() {
        let mut files = vec![(format!("{kind}.hgrm"), rec.histogram(kind, &Outcome::Ok))];
        if rec.is_open_loop() {
            files.push((format!("{kind}.uncorrected.hgrm"), rec.uncorrected(kind)));
        }
        for (name, h) in files {
            if let Some(h) = h {
                let path = dir.join(name);
                std::fs::write(&path, hgrm_text(h))?;
                written.push(path);
            }
        }
    }
    Ok(written)
}

/// HdrHistogram's percentile distribution of `h` (microseconds) with values in milliseconds:
/// the `Value Percentile TotalCount 1/(1-Percentile)` columns at 5 ticks per half distance, the
/// last line at percentile 1.0, and the `#[Mean ..]`, `#[Max ..]`, `#[Buckets ..]` footer — the
/// layout of Java's `outputPercentileDistribution`, which the online HdrHistogram plotter reads.
pub fn hgrm_text(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let digits = usize::from(h.sigfig());
    let _ = write!(s, "{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0u64;
    for v in h.iter_quantiles(HGRM_TICKS) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / US_PER_MS;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(s, "{value:12.digits$} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(s, "{value:12.digits$} {q:2.12} {total:10}");
        }
    }
    let (mean, stdev, max) = (h.mean() / US_PER_MS, h.stdev() / US_PER_MS, h.max() as f64 / US_PER_MS);
    let _ = writeln!(s, "#[Mean    = {mean:12.digits$}, StdDeviation   = {stdev:12.digits$}]");
    let _ = writeln!(s, "#[Max     = {max:12.digits$}, Total count    = {:12}]", h.len());
    // Sub-buckets per bucket: the power of two that holds 2 * 10^sigfig, as HdrHistogram sizes it.
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig()))).log2().ceil().exp2() as u64;
    let _ = writeln!(s, "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]", h.buckets());
    s
}

/// Writes the per-second series as CSV: `t,ops,errors,p50_ms,p99_ms,max_ms`.
pub fn write_csv(path: &Path, series: &[SeriesRow]) -> io::Result<()> {
    std::fs::write(path, csv_text(series))
}

/// The CSV [`write_csv`] writes.
pub fn csv_text(series: &[SeriesRow]) -> String {
    let mut s = String::from("t,ops,errors,p50_ms,p99_ms,max_ms\n");
    for r in series {
        let _ = writeln!(s, "{:.3},{},{},{:.3},{:.3},{:.3}", r.t, r.ops, r.errors, r.p50_ms, r.p99_ms, r.max_ms);
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Instant;

    use super::*;

    /// A recorder with 10 000 gets at 0.01..100 ms (uniform), 100 puts at 0.1..10 ms, and 7 put
    /// errors at 1 s.
    pub(crate) fn sample_recorder(open_loop: bool) -> Recorder {
        let base = Instant::now();
        let mut rec = if open_loop { Recorder::new_open_loop() } else { Recorder::new() };
        for i in 1..=10_000u64 {
            let done = base + Duration::from_micros(i * 10);
            // Open loop: sent after the intended start (`base`); closed loop: on it.
            let sent = if open_loop { base + Duration::from_micros(i * 2) } else { base };
            rec.record(OpKind::Get, &Outcome::Ok, (i % 2) as usize, base, sent, done);
        }
        for i in 1..=100u64 {
            rec.record(OpKind::Put, &Outcome::Ok, 0, base, base, base + Duration::from_micros(i * 100));
        }
        for _ in 0..7 {
            rec.record(
                OpKind::Put,
                &Outcome::Error("Unavailable".into()),
                1,
                base,
                base,
                base + Duration::from_secs(1),
            );
        }
        rec
    }

    pub(crate) fn sample_report(rec: &Recorder) -> Report {
        let endpoints = vec!["http://127.0.0.1:2379".to_string(), "http://127.0.0.1:2380".to_string()];
        let duration = Duration::from_secs(10);
        let (totals, ops, endpoints) = Report::summarize(rec, &endpoints, duration);
        Report {
            schema_version: SCHEMA_VERSION,
            loadgen_version: "0.1.0".into(),
            started_at: rfc3339_utc(SystemTime::now()),
            host: HostInfo::detect(),
            config: serde_json::json!({ "clients": 16, "rate": 1000.0 / 3.0 }),
            seed: 42,
            workload: "ycsb-a (get=50,put=50) zipfian(0.99)".into(),
            target: "embedded conflux x3".into(),
            duration_secs: duration.as_secs_f64(),
            warmup_secs: 2.5,
            totals,
            ops,
            endpoints,
            open_loop: Some(OpenLoop::new(1000.0, "poisson", 1011.7, 0.123_456_789, 17.25, 0)),
            loadgen_cpu: CpuUse::measure(
                (Duration::ZERO, Duration::ZERO),
                (Duration::from_millis(1234), Duration::from_millis(567)),
                duration,
                8,
            ),
            slo: check_slo(&parse_slo("p99=1ms").unwrap(), rec),
            series: vec![
                SeriesRow { t: 1.0, ops: 1000, errors: 0, p50_ms: 0.05, p99_ms: 0.099, max_ms: 0.1 },
                SeriesRow { t: 2.000_1, ops: 1003, errors: 7, p50_ms: 1.0 / 3.0, p99_ms: 0.5, max_ms: 1000.0 },
            ],
        }
    }

    #[test]
    fn summarize_counts_and_rates() {
        let rec = sample_recorder(false);
        let r = sample_report(&rec);
        assert_eq!((r.totals.ops, r.totals.errors), (10_107, 7));
        assert!((r.totals.throughput - 1010.0).abs() < 1e-9);
        assert_eq!(r.ops.len(), 2);
        let put = r.ops.iter().find(|o| o.op == OpKind::Put).unwrap();
        assert_eq!((put.count, put.error_count()), (107, 7));
        assert!((put.throughput - 10.0).abs() < 1e-9);
        let lat = put.latency.unwrap();
        assert!(lat.max < 10.1, "errors (1 s) leaked into put latency: {lat:?}");
        let get = r.ops.iter().find(|o| o.op == OpKind::Get).unwrap().latency.unwrap();
        assert!((get.p50 - 50.0).abs() < 0.1, "{get:?}");
        assert!((get.p99 - 99.0).abs() < 0.1, "{get:?}");
        assert!(get.p50 <= get.p90 && get.p90 <= get.p99 && get.p99 <= get.p999 && get.p999 <= get.max);
        assert_eq!(r.endpoints[0].ops + r.endpoints[1].ops, 10_107);
        assert_eq!(r.endpoints[1].errors, 7);
        assert!(r.ops.iter().all(|o| o.uncorrected.is_none()), "closed loop has no uncorrected latency");
        assert!(!r.loadgen_cpu.saturated);
        assert!((r.loadgen_cpu.cores_used - 0.1801).abs() < 1e-9);
    }

    #[test]
    fn text_has_every_section() {
        let rec = sample_recorder(true);
        let mut r = sample_report(&rec);
        let text = r.to_text();
        for needle in [
            "embedded conflux x3",
            "ycsb-a (get=50,put=50) zipfian(0.99)",
            "seed 42",
            "p99.9 ms",
            "Unavailable",
            "http://127.0.0.1:2380",
            "poisson",
            "— met",
            "uncorrected",
            "loadgen cpu",
            "p99=1ms",
            "MISSED",
        ] {
            assert!(text.contains(needle), "no {needle:?} in:\n{text}");
        }
        assert!(!text.contains("NOT MET") && !text.contains("WARNING"), "{text}");

        // A kind that only failed shows no latency rather than zeros.
        let mut failing = Recorder::new();
        let now = Instant::now();
        failing.record(OpKind::Delete, &Outcome::Error("Unavailable".into()), 0, now, now, now);
        let (_, ops, _) = Report::summarize(&failing, &[], Duration::from_secs(1));
        let failed = Report { ops, ..r.clone() }.to_text();
        let row = failed.lines().find(|l| l.starts_with("delete")).unwrap();
        assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["delete", "1", "0.0", "-", "-", "-", "-", "-", "1"]);

        r.open_loop = Some(OpenLoop::new(1000.0, "constant", 800.0, 1.0, 2.0, 5));
        r.loadgen_cpu = CpuUse::measure(
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_secs(70), Duration::from_secs(5)),
            Duration::from_secs(10),
            8,
        );
        let text = r.to_text();
        assert!(text.contains("TARGET RATE NOT MET: achieved 800.0 of 1000.0 ops/s (80.0%), 5 dropped"), "{text}");
        assert!(text.contains("WARNING: loadgen used 7.50 of 8 cores"), "{text}");
    }

    #[test]
    fn open_loop_met_and_cpu_saturation_rules() {
        assert!(OpenLoop::new(1000.0, "constant", 990.0, 0.0, 0.0, 0).met);
        assert!(!OpenLoop::new(1000.0, "constant", 989.0, 0.0, 0.0, 0).met);
        assert!(!OpenLoop::new(1000.0, "constant", 1000.0, 0.0, 0.0, 1).met);
        let cpu = |secs| {
            CpuUse::measure(
                (Duration::ZERO, Duration::ZERO),
                (Duration::from_secs(secs), Duration::ZERO),
                Duration::from_secs(10),
                4,
            )
        };
        assert!(cpu(36).saturated);
        assert!(!cpu(35).saturated);
        assert_eq!(CpuUse::measure(Default::default(), Default::default(), Duration::ZERO, 4).cores_used, 0.0);
    }

    #[test]
    fn json_round_trip() {
        let rec = sample_recorder(true);
        let r = sample_report(&rec);
        assert!(r.ops.iter().any(|o| o.uncorrected.is_some()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        r.write_json(&path).unwrap();
        let back = Report::read_json(&path).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn json_of_another_schema_version_is_refused_clearly() {
        let rec = sample_recorder(false);
        let mut r = sample_report(&rec);
        r.schema_version = SCHEMA_VERSION + 1;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.json");
        r.write_json(&path).unwrap();
        let err = Report::read_json(&path).unwrap_err();
        assert!(
            matches!(err, ReportError::SchemaVersion { found, expected, .. } if found == u64::from(SCHEMA_VERSION + 1) && expected == SCHEMA_VERSION)
        );
        let msg = err.to_string();
        assert!(msg.contains("old.json"), "{msg}");
        assert!(msg.contains(&format!("schema_version {}", SCHEMA_VERSION + 1)), "{msg}");
        assert!(msg.contains(&format!("reads schema_version {SCHEMA_VERSION}")), "{msg}");

        std::fs::write(&path, r#"{"schema_version": 99}"#).unwrap();
        assert!(matches!(Report::read_json(&path), Err(ReportError::SchemaVersion { found: 99, .. })));
        std::fs::write(&path, r#"{"hello": 1}"#).unwrap();
        assert!(matches!(Report::read_json(&path), Err(ReportError::NoSchemaVersion { .. })));
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(Report::read_json(&path), Err(ReportError::Parse { .. })));
        let missing = dir.path().join("missing.json");
        assert!(Report::read_json(&missing).unwrap_err().to_string().contains("missing.json"));
    }

    #[test]
    fn slo_parse() {
        let slos = parse_slo("p99=10ms").unwrap();
        assert_eq!(slos, vec![Slo { percentile: 99.0, max: Duration::from_millis(10), text: "p99=10ms".into() }]);
        let slos = parse_slo("p50=2ms, p99.9=50ms,p100=1.5s,p90=250us").unwrap();
        let got: Vec<(f64, Duration)> = slos.iter().map(|s| (s.percentile, s.max)).collect();
        assert_eq!(
            got,
            vec![
                (50.0, Duration::from_millis(2)),
                (99.9, Duration::from_millis(50)),
                (100.0, Duration::from_millis(1500)),
                (90.0, Duration::from_micros(250)),
            ]
        );
        assert_eq!(slos[1].text, "p99.9=50ms");
        for bad in
            ["", "p99", "p99=10", "99=10ms", "p0=1ms", "p101=1ms", "p99=fast ms", "p99=10ms,", "p99=-1ms", "px=1ms"]
        {
            let err = parse_slo(bad).unwrap_err();
            assert!(err.starts_with("--slo"), "{bad:?}: {err}");
            assert!(err.contains(&format!("`{bad}`")), "{bad:?}: {err}");
        }
    }

    #[test]
    fn slo_check() {
        let rec = sample_recorder(false);
        // get: 0.01..100 ms uniform; put: 0.1..10 ms uniform (errors at 1 s are not counted).
        let checks = check_slo(&parse_slo("p99=20ms,p50=60ms").unwrap(), &rec);
        let find = |slo: &str, op: &str| checks.iter().find(|c| c.slo == slo && c.op == op).unwrap().clone();
        assert_eq!(checks.len(), 6);
        assert!(!find("p99=20ms", "get").met);
        assert!((find("p99=20ms", "get").measured_ms - 99.0).abs() < 0.1);
        assert!(find("p99=20ms", "put").met, "put errors (1 s) must not count");
        assert!(!find("p99=20ms", "all").met);
        assert!(find("p50=60ms", "get").met);
        assert!(find("p50=60ms", "all").met);
        assert!(check_slo(&parse_slo("p99=1ms").unwrap(), &Recorder::new()).is_empty());
    }

    #[test]
    fn hgrm_format() {
        let rec = sample_recorder(false);
        let h = rec.histogram(OpKind::Get, &Outcome::Ok).unwrap();
        let text = hgrm_text(h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        let footer = &lines[lines.len() - 3..];
        assert!(footer[0].starts_with("#[Mean    = ") && footer[0].contains(", StdDeviation   = "), "{}", footer[0]);
        assert!(
            footer[1].starts_with("#[Max     = ") && footer[1].ends_with(", Total count    =        10000]"),
            "{}",
            footer[1]
        );
        assert!(
            footer[2].starts_with("#[Buckets = ") && footer[2].ends_with(", SubBuckets     =         2048]"),
            "{}",
            footer[2]
        );
        let max: f64 = footer[1]["#[Max     = ".len()..].split(',').next().unwrap().trim().parse().unwrap();
        assert!((max - 100.0).abs() < 0.1, "{max}");

        let rows: Vec<Vec<&str>> = lines[2..lines.len() - 3].iter().map(|l| l.split_whitespace().collect()).collect();
        assert!(rows.len() > 20, "{text}");
        let (mut last_v, mut last_p, mut last_n) = (0.0, -1.0, 0);
        for (i, row) in rows.iter().enumerate() {
            let is_last = i == rows.len() - 1;
            assert_eq!(row.len(), if is_last { 3 } else { 4 }, "{row:?}");
            let (v, p, n): (f64, f64, u64) =
                (row[0].parse().unwrap(), row[1].parse().unwrap(), row[2].parse().unwrap());
            assert!(v >= last_v && p > last_p && n >= last_n, "not monotone at {row:?}");
            if !is_last {
                let inv: f64 = row[3].parse().unwrap();
                assert!((inv - 1.0 / (1.0 - p)).abs() < 0.01 * inv.max(1.0), "{row:?}");
            }
            (last_v, last_p, last_n) = (v, p, n);
        }
        assert_eq!(rows.last().unwrap()[1], "1.000000000000");
        assert_eq!(last_n, 10_000);
        assert!((last_v - 100.0).abs() < 0.1);
        // Values are milliseconds with three decimals, like Java's output for 3 digits.
        assert!(rows[0][0].contains('.') && rows[0][0].split('.').nth(1).unwrap().len() == 3);
    }

    #[test]
    fn hgrm_files_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let closed = write_hgrm(dir.path(), &sample_recorder(false)).unwrap();
        let names: Vec<String> = closed.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["put.hgrm", "get.hgrm"]);
        let open_dir = dir.path().join("open");
        let open = write_hgrm(&open_dir, &sample_recorder(true)).unwrap();
        let names: Vec<String> = open.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["put.hgrm", "put.uncorrected.hgrm", "get.hgrm", "get.uncorrected.hgrm"]);
        let text = std::fs::read_to_string(open_dir.join("get.uncorrected.hgrm")).unwrap();
        assert!(text.starts_with("       Value"));
    }

    #[test]
    fn csv_header_and_rows() {
        let rec = sample_recorder(false);
        let r = sample_report(&rec);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.csv");
        write_csv(&path, &r.series).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "t,ops,errors,p50_ms,p99_ms,max_ms",
                "1.000,1000,0,0.050,0.099,0.100",
                "2.000,1003,7,0.333,0.500,1000.000"
            ]
        );
        assert_eq!(csv_text(&[]), "t,ops,errors,p50_ms,p99_ms,max_ms\n");
    }

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn host_is_described() {
        let h = HostInfo::detect();
        assert!(!h.hostname.is_empty() && !h.kernel.is_empty() && h.logical_cpus >= 1, "{h:?}");
    }
}
