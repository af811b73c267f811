//! The CI gate: compares a new report against a baseline and says whether it regressed.
//!
//! Compared: throughput, total and per op kind (lower is worse), and the chosen latency
//! percentiles of each op kind that has successes in both reports (higher is worse). A metric
//! regresses when it is worse by more than the allowed percentage. Reports of different schema
//! versions or workloads are refused rather than compared: their numbers do not mean the same.
//! Targets may differ — comparing conflux against etcd on one workload is a use.

use std::fmt::Write as _;

use serde::Serialize;

use crate::op::OpKind;
use crate::report::{Percentiles, Report, STORED_PERCENTILES};

/// The result of [`compare`].
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Comparison {
    /// One row per metric compared.
    pub rows: Vec<CompareRow>,
    /// Whether any row regressed.
    pub regressed: bool,
    /// The threshold used, percent.
    pub max_regression_pct: f64,
}

/// One metric in both reports.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct CompareRow {
    /// What was compared, e.g. `throughput ops/s`, `get ops/s`, `get p99 ms`.
    pub metric: String,
    /// The baseline's value.
    pub base: f64,
    /// The new report's value.
    pub new: f64,
    /// `(new - base) / base` in percent; ±infinity when only `base` is 0.
    pub change_pct: f64,
    /// Whether a higher value is worse (latency) rather than better (throughput).
    pub higher_is_worse: bool,
    /// Whether this is worse than the baseline by more than the threshold.
    pub regression: bool,
}

/// Why two reports cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The reports have different layouts.
    #[error("cannot compare reports of different schema versions: base has {base}, new has {new}")]
    SchemaMismatch {
        /// The baseline's schema version.
        base: u32,
        /// The new report's schema version.
        new: u32,
    },
    /// The reports ran different workloads.
    #[error("cannot compare different workloads: base ran `{base}`, new ran `{new}`")]
    WorkloadMismatch {
        /// The baseline's workload.
        base: String,
        /// The new report's workload.
        new: String,
    },
    /// A percentile that reports do not store was asked for.
    #[error("reports store percentiles 50, 90, 99, 99.9 and 100 (max), not {0}")]
    UnsupportedPercentile(f64),
    /// The threshold is negative or not a number.
    #[error("--max-regression must be a percentage of at least 0, not {0}")]
    InvalidThreshold(f64),
}

/// Compares `new` against `base`: throughput (total and per op kind; lower is worse) and
/// `percentiles` (from 50, 90, 99, 99.9, 100) of each op kind with successes in both (higher is
/// worse). A row regresses when it is worse by more than `max_regression_pct` percent.
///
/// # Errors
///
/// Reports of different schema versions or workloads; percentiles reports do not store; a
/// negative threshold.
pub fn compare(
    base: &Report,
    new: &Report,
    max_regression_pct: f64,
    percentiles: &[f64],
) -> Result<Comparison, CompareError> {
    if base.schema_version != new.schema_version {
        return Err(CompareError::SchemaMismatch { base: base.schema_version, new: new.schema_version });
    }
    if base.workload != new.workload {
        return Err(CompareError::WorkloadMismatch { base: base.workload.clone(), new: new.workload.clone() });
    }
    if max_regression_pct.is_nan() || max_regression_pct < 0.0 {
        return Err(CompareError::InvalidThreshold(max_regression_pct));
    }
    if let Some(&p) = percentiles.iter().find(|&&p| !STORED_PERCENTILES.iter().any(|&s| (s - p).abs() < 1e-9)) {
        return Err(CompareError::UnsupportedPercentile(p));
    }

    let mut rows = Vec::new();
    let mut row = |metric: String, base: f64, new: f64, higher_is_worse: bool| {
        let change_pct = change_pct(base, new);
        let worse_by = if higher_is_worse { change_pct } else { -change_pct };
        rows.push(CompareRow {
            metric,
            base,
            new,
            change_pct,
            higher_is_worse,
            regression: worse_by > max_regression_pct,
        });
    };
    row("throughput ops/s".into(), base.totals.throughput, new.totals.throughput, false);
    // A kind missing from one report (nothing completed) counts as 0 ops/s there.
    let kinds: Vec<OpKind> =
        OpKind::ALL.into_iter().filter(|k| base.ops.iter().chain(&new.ops).any(|o| o.op == *k)).collect();
    let throughput = |r: &Report, k: OpKind| r.ops.iter().find(|o| o.op == k).map_or(0.0, |o| o.throughput);
    for &k in &kinds {
        row(format!("{k} ops/s"), throughput(base, k), throughput(new, k), false);
    }
    let latency = |r: &Report, k: OpKind| r.ops.iter().find(|o| o.op == k).and_then(|o| o.latency);
    for &k in &kinds {
        let (Some(b), Some(n)) = (latency(base, k), latency(new, k)) else { continue };
        for &p in percentiles {
            let at = |l: Percentiles| l.at(p).expect("checked against STORED_PERCENTILES");
            row(format!("{k} {} ms", percentile_name(p)), at(b), at(n), true);
        }
    }
    let regressed = rows.iter().any(|r| r.regression);
    Ok(Comparison { rows, regressed, max_regression_pct })
}

/// `(new - base) / base` in percent; 0 when both are 0, ±infinity when only `base` is.
fn change_pct(base: f64, new: f64) -> f64 {
    if base == 0.0 { if new == 0.0 { 0.0 } else { f64::INFINITY.copysign(new) } } else { (new - base) / base * 100.0 }
}

/// `p99`, `p99.9`, `max` (for 100).
fn percentile_name(p: f64) -> String {
    if p >= 100.0 { "max".into() } else { format!("p{p}") }
}

impl Comparison {
    /// A table of every row with its verdict, and a last line with the overall one.
    pub fn to_table(&self) -> String {
        let width = self.rows.iter().map(|r| r.metric.len()).max().unwrap_or(0).max("metric".len());
        let mut s = String::new();
        let _ = writeln!(s, "{:<width$}  {:>14}  {:>14}  {:>9}  verdict", "metric", "base", "new", "change");
        for r in &self.rows {
            let verdict = if r.regression {
                "REGRESSED"
            } else if r.change_pct == 0.0 {
                "same"
            } else if (r.change_pct > 0.0) == r.higher_is_worse {
                "worse (within threshold)"
            } else {
                "better"
            };
            let _ = writeln!(
                s,
                "{:<width$}  {:>14.3}  {:>14.3}  {:>+8.1}%  {verdict}",
                r.metric, r.base, r.new, r.change_pct
            );
        }
        let bad = self.rows.iter().filter(|r| r.regression).count();
        let t = self.max_regression_pct;
        if self.regressed {
            let _ = writeln!(s, "REGRESSED: {bad} of {} metrics worse by more than {t}%", self.rows.len());
        } else {
            let _ = writeln!(s, "ok: no metric worse by more than {t}%");
        }
        s
    }
}

/// Parses `--max-regression`: `5%` or `5` → 5.0.
///
/// # Errors
///
/// A message naming `--max-regression` for anything but a non-negative number.
pub fn parse_pct(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("--max-regression `{s}`: expected a percentage of at least 0, e.g. 5% or 5"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{sample_recorder, sample_report};

    fn report() -> Report {
        sample_report(&sample_recorder(false))
    }

    fn row<'a>(c: &'a Comparison, metric: &str) -> &'a CompareRow {
        c.rows.iter().find(|r| r.metric == metric).unwrap_or_else(|| panic!("no {metric} in {c:?}"))
    }

    fn op_mut(r: &mut Report, kind: OpKind) -> &mut crate::report::OpSummary {
        r.ops.iter_mut().find(|o| o.op == kind).unwrap()
    }

    #[test]
    fn equal_reports_do_not_regress() {
        let r = report();
        let c = compare(&r, &r, 5.0, &[50.0, 99.0, 99.9]).unwrap();
        assert!(!c.regressed);
        // total + 2 kinds' throughput + 2 kinds × 3 percentiles
        assert_eq!(c.rows.len(), 9);
        assert!(c.rows.iter().all(|r| r.change_pct == 0.0 && !r.regression));
        let table = c.to_table();
        assert!(table.contains("get p99.9 ms") && table.contains("ok: no metric worse by more than 5%"), "{table}");
    }

    #[test]
    fn ten_percent_worse_p99_regresses_at_five() {
        let base = report();
        let mut new = base.clone();
        op_mut(&mut new, OpKind::Get).latency.as_mut().unwrap().p99 *= 1.10;
        let c = compare(&base, &new, 5.0, &[99.0]).unwrap();
        assert!(c.regressed);
        let r = row(&c, "get p99 ms");
        assert!(r.regression && (r.change_pct - 10.0).abs() < 1e-9, "{r:?}");
        assert!(!row(&c, "put p99 ms").regression);
        assert!(c.to_table().contains("REGRESSED: 1 of"), "{}", c.to_table());
        // The same change passes a looser gate.
        assert!(!compare(&base, &new, 15.0, &[99.0]).unwrap().regressed);
    }

    #[test]
    fn throughput_drop_is_detected() {
        let base = report();
        let mut new = base.clone();
        new.totals.throughput *= 0.8;
        op_mut(&mut new, OpKind::Put).throughput *= 0.9;
        let c = compare(&base, &new, 5.0, &[99.0]).unwrap();
        assert!(c.regressed);
        assert!(row(&c, "throughput ops/s").regression);
        assert!((row(&c, "throughput ops/s").change_pct + 20.0).abs() < 1e-9);
        assert!(row(&c, "put ops/s").regression);
        assert!(!row(&c, "get ops/s").regression);

        // A kind that stopped completing at all is a drop to 0.
        let mut gone = base.clone();
        gone.ops.retain(|o| o.op != OpKind::Put);
        let c = compare(&base, &gone, 5.0, &[99.0]).unwrap();
        assert!(row(&c, "put ops/s").regression && row(&c, "put ops/s").new == 0.0);

        // A kind that only failed: its throughput drop is caught; it has no latency to compare.
        let mut failing = base.clone();
        let put = op_mut(&mut failing, OpKind::Put);
        put.errors.insert("Unavailable".into(), put.count);
        put.throughput = 0.0;
        put.latency = None;
        let c = compare(&base, &failing, 5.0, &[99.0]).unwrap();
        assert!(row(&c, "put ops/s").regression);
        assert!(c.rows.iter().all(|r| r.metric != "put p99 ms"), "{}", c.to_table());
    }

    #[test]
    fn improvements_are_not_regressions() {
        let base = report();
        let mut new = base.clone();
        new.totals.throughput *= 2.0;
        let get = op_mut(&mut new, OpKind::Get);
        get.throughput *= 2.0;
        let lat = get.latency.as_mut().unwrap();
        lat.p50 *= 0.5;
        lat.p99 *= 0.1;
        let c = compare(&base, &new, 5.0, &[50.0, 99.0, 100.0]).unwrap();
        assert!(!c.regressed, "{}", c.to_table());
        assert!(row(&c, "get p99 ms").change_pct < -89.0);
        assert!(row(&c, "throughput ops/s").change_pct > 99.0);
        assert!(c.to_table().contains("better"));
        // Regressions where base is the new one: the gate is directional.
        assert!(compare(&new, &base, 5.0, &[99.0]).unwrap().regressed);
    }

    #[test]
    fn mismatches_are_refused() {
        let base = report();
        let mut other = base.clone();
        other.workload = "ycsb-b (get=95,put=5) zipfian(0.99)".into();
        let err = compare(&base, &other, 5.0, &[99.0]).unwrap_err();
        assert!(matches!(err, CompareError::WorkloadMismatch { .. }));
        let msg = err.to_string();
        assert!(msg.contains("ycsb-a (get=50,put=50)") && msg.contains("ycsb-b (get=95,put=5)"), "{msg}");

        let mut v2 = base.clone();
        v2.schema_version += 1;
        let msg = compare(&base, &v2, 5.0, &[99.0]).unwrap_err().to_string();
        assert!(msg.contains("base has 1, new has 2"), "{msg}");

        assert!(
            matches!(compare(&base, &base, 5.0, &[95.0]), Err(CompareError::UnsupportedPercentile(p)) if p == 95.0)
        );
        assert!(matches!(compare(&base, &base, -1.0, &[99.0]), Err(CompareError::InvalidThreshold(_))));
        assert!(matches!(compare(&base, &base, f64::NAN, &[99.0]), Err(CompareError::InvalidThreshold(_))));

        let mut elsewhere = base.clone();
        elsewhere.target = "etcd x3".into();
        assert!(compare(&base, &elsewhere, 5.0, &[99.0]).is_ok(), "targets may differ");
    }

    #[test]
    fn pct_parse() {
        assert_eq!(parse_pct("5%"), Ok(5.0));
        assert_eq!(parse_pct("5"), Ok(5.0));
        assert_eq!(parse_pct(" 2.5 % "), Ok(2.5));
        assert_eq!(parse_pct("0"), Ok(0.0));
        for bad in ["", "%", "five", "-5%", "inf", "5%%"] {
            let err = parse_pct(bad).unwrap_err();
            assert!(err.starts_with("--max-regression") && err.contains(&format!("`{bad}`")), "{bad:?}: {err}");
        }
    }

    #[test]
    fn change_edge_cases() {
        assert_eq!(change_pct(0.0, 0.0), 0.0);
        assert_eq!(change_pct(0.0, 3.0), f64::INFINITY);
        assert_eq!(change_pct(4.0, 2.0), -50.0);
        assert_eq!(percentile_name(99.9), "p99.9");
        assert_eq!(percentile_name(50.0), "p50");
        assert_eq!(percentile_name(100.0), "max");
    }
}
