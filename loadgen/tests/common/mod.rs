//! What loadgen's integration tests share: running the `loadgen` binary with a time bound, free
//! loopback ports, processes killed on drop, and the checks every JSON report must pass.
#![allow(dead_code)]

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a run against an embedded cluster may take, start and stop included (a debug build
/// on a busy two-core machine, other tests running beside it).
pub const RUN_LIMIT: Duration = Duration::from_secs(90);

/// How long loadgen may take to refuse bad input or an unreachable endpoint.
pub const FAIL_FAST_LIMIT: Duration = Duration::from_secs(10);

/// What a finished `loadgen` printed.
#[derive(Debug)]
pub struct Ran {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time it took.
    pub elapsed: Duration,
}

impl Ran {
    /// Panics, with everything it printed, unless it exited with `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> &Ran {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: expected exit code {code}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the `loadgen` binary with `args`; kills it and panics, showing what it printed, if it
/// has not exited within `limit`.
pub fn loadgen(args: &[&str], limit: Duration) -> Ran {
    let dir = tempfile::tempdir().expect("create tempdir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("create stdout file"))
        .stderr(File::create(&err).expect("create stderr file"))
        .spawn()
        .expect("spawn loadgen");
    let mut child = KillOnDrop(child);
    let start = Instant::now();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| format!("<cannot read {}: {e}>", p.display()));
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait loadgen") {
            return Ran { code: status.code(), stdout: read(&out), stderr: read(&err), elapsed: start.elapsed() };
        }
        if start.elapsed() > limit {
            drop(child);
            panic!(
                "`loadgen {}` did not finish within {limit:?} (killed)\n--- stdout:\n{}\n--- stderr:\n{}",
                args.join(" "),
                read(&out),
                read(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[path = "../../../tests/common/port.rs"]
mod port;
#[allow(unused_imports)] // not every test binary that includes this module needs it
pub use port::free_port;

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}\n{text}", path.display()))
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// Checks what every run report must hold: schema version 1; the seed and the run's settings
/// echoed; exactly the op kinds `kinds`, each with operations, no errors and monotone
/// percentiles; totals, endpoints and the per-second series that add up; loadgen's CPU use.
/// `config` holds `(key, value)` pairs the `config` echo must contain.
pub fn check_report(r: &Value, kinds: &[&str], seed: u64, config: &[(&str, Value)]) {
    let ctx = |what: &str| format!("{what} in report:\n{}", serde_json::to_string_pretty(r).unwrap_or_default());
    assert_eq!(r["schema_version"], 1, "{}", ctx("schema_version"));
    assert_eq!(r["seed"], seed, "{}", ctx("seed"));
    assert_eq!(r["config"]["seed"], seed, "{}", ctx("config.seed"));
    for (key, value) in config {
        assert_eq!(&r["config"][key], value, "{}", ctx(&format!("config.{key}")));
    }
    let wanted = r["config"]["workload"].as_str().unwrap_or_else(|| panic!("{}", ctx("config.workload")));
    let workload = r["workload"].as_str().unwrap_or_else(|| panic!("{}", ctx("workload")));
    assert!(workload.starts_with(wanted), "{}", ctx("workload name"));

    let ops = r["ops"].as_array().unwrap_or_else(|| panic!("{}", ctx("ops")));
    let mut seen: Vec<&str> = ops.iter().map(|o| o["op"].as_str().unwrap_or("?")).collect();
    seen.sort_unstable();
    let mut want = kinds.to_vec();
    want.sort_unstable();
    assert_eq!(seen, want, "{}", ctx("op kinds"));
    let mut count_sum = 0;
    for o in ops {
        let kind = o["op"].as_str().unwrap_or("?");
        let count = o["count"].as_u64().unwrap_or(0);
        assert!(count > 0, "{}", ctx(&format!("{kind} count")));
        count_sum += count;
        assert_eq!(o["errors"], serde_json::json!({}), "{}", ctx(&format!("{kind} errors")));
        let l = &o["latency"];
        let p: Vec<f64> =
            ["p50", "p90", "p99", "p999", "max"].iter().map(|q| num(&l[q], &format!("{kind} {q}"))).collect();
        assert!(p[0] > 0.0, "{}", ctx(&format!("{kind} p50 of a real server is above 0")));
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "{kind} percentiles not monotone: {p:?}");
        let mean = num(&l["mean"], "mean");
        assert!(mean > 0.0 && mean <= p[4], "{kind} mean {mean} outside (0, max {}]", p[4]);
        assert!(num(&o["throughput"], "throughput") > 0.0, "{}", ctx(&format!("{kind} throughput")));
    }
    let totals = &r["totals"];
    assert_eq!(totals["errors"], 0, "{}", ctx("totals.errors"));
    assert_eq!(totals["ops"], count_sum, "{}", ctx("totals.ops = sum of op counts"));
    assert!(num(&totals["throughput"], "totals.throughput") > 0.0);
    let endpoint_ops: u64 =
        r["endpoints"].as_array().expect("endpoints").iter().map(|e| e["ops"].as_u64().unwrap()).sum();
    assert_eq!(endpoint_ops, count_sum, "{}", ctx("endpoint ops add up"));
    let series = r["series"].as_array().expect("series");
    assert!(!series.is_empty(), "{}", ctx("series"));
    let series_ops: u64 = series.iter().map(|s| s["ops"].as_u64().unwrap()).sum();
    assert_eq!(series_ops, count_sum, "{}", ctx("series ops add up to the totals"));

    let cpu = &r["loadgen_cpu"];
    for field in ["user_secs", "system_secs", "cores_used"] {
        assert!(num(&cpu[field], field) >= 0.0, "{}", ctx(&format!("loadgen_cpu.{field}")));
    }
    assert!(cpu["available_cores"].as_u64().is_some_and(|n| n >= 1), "{}", ctx("loadgen_cpu.available_cores"));
    assert!(cpu["saturated"].is_boolean(), "{}", ctx("loadgen_cpu.saturated"));
}
