//! The `loadgen` binary end to end: every workload family against an embedded three-member
//! conflux cluster, the open loop and its side outputs (hgrm, CSV, SVG), the ack log and
//! verify, the `compare` gate, and bad input refused quickly with a message naming the flag.

mod common;

use std::path::Path;

use common::{FAIL_FAST_LIMIT, RUN_LIMIT, Ran, check_report, loadgen, read_json};
use conflux_loadgen::report::Report;
use serde_json::{Value, json};

/// One closed-loop run: `--embedded 3`, 200 keys, 4 clients, no warmup, seeded; with `extra`
/// flags (the workload, and `--duration` or `--total`). Returns the JSON report.
fn embedded_run(dir: &Path, name: &str, seed: u64, extra: &[&str]) -> Value {
    let json = dir.join(format!("{name}.json"));
    let seed_s = seed.to_string();
    let mut args = vec!["--embedded", "3", "--warmup", "0s", "--key-space", "200", "--clients", "4", "--quiet"];
    args.extend(["--seed", &seed_s, "--json", json.to_str().unwrap()]);
    args.extend(extra);
    let ran = loadgen(&args, RUN_LIMIT);
    ran.expect_code(0, name);
    // Quiet and clean: no warnings (a member that would not stop, a failed side output, ...).
    assert_eq!(ran.stderr, "", "{name}: a quiet run wrote to stderr");
    assert!(
        ran.stdout.contains("workload:") && ran.stdout.contains("total"),
        "{name}: no text report:\n{}",
        ran.stdout
    );
    Report::read_json(&json).unwrap_or_else(|e| panic!("{name}: compare could not read the report: {e}"));
    read_json(&json)
}

/// Runs each `(name, flags, op kinds)` and checks its report. Op kinds are as the JSON names them
/// (`rmw`, as the text report, hgrm files and `--mix` say).
fn check_workloads(cases: &[(&str, &[&str], &[&str])]) {
    let dir = tempfile::tempdir().unwrap();
    for (i, (name, flags, kinds)) in cases.iter().enumerate() {
        let seed = 1000 + i as u64;
        let r = embedded_run(dir.path(), name, seed, flags);
        let workload = flags[flags.iter().position(|f| *f == "--workload").unwrap() + 1];
        let mut config = vec![
            ("workload", json!(workload)),
            ("key_space", json!(200)),
            ("clients", json!(4)),
            ("warmup", json!(0.0)),
        ];
        let consistency = flags.iter().position(|f| *f == "--consistency").map_or("l", |p| flags[p + 1]);
        config.push(("consistency", json!(consistency)));
        if let Some(p) = flags.iter().position(|f| *f == "--total") {
            let total: u64 = flags[p + 1].parse().unwrap();
            config.push(("total", json!(total)));
            assert_eq!(r["totals"]["ops"], total, "{name}: --total {total} measures exactly that many operations");
        } else {
            config.push(("duration", json!(1.0)));
            assert!(r["duration_secs"].as_f64().unwrap() >= 1.0, "{name}: measured less than --duration");
        }
        check_report(&r, kinds, seed, &config);
        assert_eq!(r["target"], "embedded conflux x3", "{name}");
        assert_eq!(r["endpoints"].as_array().unwrap().len(), 3, "{name}: one entry per member");
        assert!(r["open_loop"].is_null(), "{name}: closed loop has no open-loop section");
    }
}

#[test]
fn single_operation_workloads() {
    check_workloads(&[
        ("put", &["--workload", "put", "--duration", "1s"], &["put"]),
        ("get-linearizable", &["--workload", "get", "--duration", "1s"], &["get"]),
        ("get-serializable", &["--workload", "get", "--consistency", "s", "--duration", "1s"], &["get"]),
        ("delete", &["--workload", "delete", "--duration", "1s"], &["delete"]),
        ("txn", &["--workload", "txn", "--duration", "1s"], &["txn"]),
        ("scan", &["--workload", "scan", "--scan-length", "10", "--duration", "1s"], &["scan"]),
        ("insert", &["--workload", "insert", "--duration", "1s"], &["insert"]),
        ("rmw", &["--workload", "rmw", "--duration", "1s"], &["rmw"]),
    ]);
}

#[test]
fn mix_and_ycsb_workloads() {
    // B, D and E give one kind 5%: a fixed count of operations makes sure it comes up.
    check_workloads(&[
        ("mix", &["--workload", "mix", "--mix", "put=50,get=50", "--duration", "1s"], &["put", "get"]),
        ("ycsb-a", &["--workload", "ycsb-a", "--duration", "1s"], &["get", "put"]),
        ("ycsb-b", &["--workload", "ycsb-b", "--total", "200"], &["get", "put"]),
        ("ycsb-c", &["--workload", "ycsb-c", "--duration", "1s"], &["get"]),
        ("ycsb-d", &["--workload", "ycsb-d", "--total", "200"], &["get", "insert"]),
        ("ycsb-e", &["--workload", "ycsb-e", "--scan-length", "10", "--total", "200"], &["scan", "insert"]),
        ("ycsb-f", &["--workload", "ycsb-f", "--duration", "1s"], &["get", "rmw"]),
    ]);
}

#[test]
fn open_loop_run_reports_its_schedule_and_writes_hgrm_csv_svg() {
    let dir = tempfile::tempdir().unwrap();
    let (json_path, csv, hgrm, svg) =
        (dir.path().join("r.json"), dir.path().join("series.csv"), dir.path().join("hgrm"), dir.path().join("svg"));
    let args = [
        "--embedded",
        "3",
        "--workload",
        "put",
        "--rate",
        "200",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--key-space",
        "200",
        "--clients",
        "64",
        "--seed",
        "99",
        "--quiet",
        "--json",
        json_path.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--hgrm",
        hgrm.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ];
    let ran = loadgen(&args, RUN_LIMIT);
    ran.expect_code(0, "open loop");
    assert_eq!(ran.stderr, "", "a quiet run wrote to stderr");
    let r = read_json(&json_path);
    check_report(&r, &["put"], 99, &[("rate", json!(200.0)), ("duration", json!(2.0))]);
    let ol = &r["open_loop"];
    assert_eq!(ol["target_rate"], 200.0, "{ol}");
    assert_eq!(ol["arrival"], "constant", "{ol}");
    let achieved = ol["achieved_rate"].as_f64().unwrap();
    assert!((180.0..=220.0).contains(&achieved), "achieved {achieved}/s of 200/s: {ol}");
    let dropped = ol["dropped"].as_u64().expect("dropped is counted");
    let met = achieved >= 0.99 * 200.0 && dropped == 0;
    assert_eq!(ol["met"], met, "{ol}");
    let (mean_lag, max_lag) = (ol["mean_lag_ms"].as_f64().unwrap(), ol["max_lag_ms"].as_f64().unwrap());
    assert!(0.0 <= mean_lag && mean_lag <= max_lag, "{ol}");
    // About 2 s × 200/s scheduled: the ones that ran plus the ones dropped.
    let ops = r["totals"]["ops"].as_u64().unwrap();
    assert!((380..=400).contains(&(ops + dropped)), "{ops} ran + {dropped} dropped of ~400 scheduled");
    let put = &r["ops"][0];
    assert!(put["uncorrected"]["p50"].is_number(), "open loop reports service time: {put}");
    assert!(ran.stdout.contains("open loop (constant arrivals)"), "{}", ran.stdout);

    // hgrm: HdrHistogram's four columns, up to a 100% line holding every operation.
    for name in ["put.hgrm", "put.uncorrected.hgrm"] {
        let text = std::fs::read_to_string(hgrm.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        let last = lines.iter().find(|l| l.split_whitespace().nth(1) == Some("1.000000000000"));
        let last = last.unwrap_or_else(|| panic!("{name} has no 100% line:\n{text}"));
        assert_eq!(last.split_whitespace().nth(2), Some(ops.to_string().as_str()), "{name}: {last}");
        assert!(lines.iter().any(|l| l.starts_with("#[Max")), "{name}:\n{text}");
    }

    // CSV: the header, then a row a second whose ops add up to the total.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("t,ops,errors,p50_ms,p99_ms,max_ms"));
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|f| f.parse().unwrap_or_else(|_| panic!("{l:?} in:\n{text}"))).collect())
        .collect();
    assert!(rows.len() >= 2 && rows.iter().all(|r| r.len() == 6), "{text}");
    assert_eq!(rows.iter().map(|r| r[1] as u64).sum::<u64>(), ops, "{text}");

    // SVG charts.
    for name in ["latency.svg", "throughput.svg"] {
        let text = std::fs::read_to_string(svg.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let head = text.trim_start();
        assert!(head.starts_with("<svg") || head.starts_with("<?xml"), "{name}: {}", &text[..text.len().min(200)]);
        assert!(text.trim_end().ends_with("</svg>"), "{name} is cut short");
    }
}

#[test]
fn ack_log_and_verify_find_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("acks.log");
    let args = ["--embedded", "3", "--workload", "put", "--duration", "1s", "--warmup", "0s", "--key-space", "200"];
    let ran = loadgen(
        &[&args[..], &["--clients", "4", "--quiet", "--ack-log", log.to_str().unwrap(), "--verify"]].concat(),
        RUN_LIMIT,
    );
    ran.expect_code(0, "--ack-log --verify");
    assert_eq!(ran.stderr, "", "a quiet run wrote to stderr");
    let line = ran.stdout.lines().find(|l| l.starts_with("verify:")).unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(line.contains(" 0 lost"), "{line}");
    let checked: u64 = line["verify: ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(checked > 0, "{line}");
    let acks = std::fs::read_to_string(&log).unwrap();
    assert!(acks.lines().count() as u64 >= checked, "every checked key had an acknowledged write");
    assert!(acks.lines().all(|l| l.starts_with("P ")), "a put run acknowledges puts only:\n{acks}");
}

fn compare(base: &Path, new: &Path) -> Ran {
    loadgen(&["compare", base.to_str().unwrap(), new.to_str().unwrap()], FAIL_FAST_LIMIT)
}

fn write(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

#[test]
fn compare_gates_on_regressions_and_refuses_unlike_reports() {
    let dir = tempfile::tempdir().unwrap();
    let base = embedded_run(dir.path(), "base", 5, &["--workload", "put", "--duration", "1s"]);
    let base_path = dir.path().join("base.json");

    let same = compare(&base_path, &base_path);
    same.expect_code(0, "a report against itself");
    assert!(same.stdout.contains("ok: no metric worse"), "{}", same.stdout);

    // p99 doubled, throughput halved.
    let mut worse = base.clone();
    for op in worse["ops"].as_array_mut().unwrap() {
        op["latency"]["p99"] = json!(op["latency"]["p99"].as_f64().unwrap() * 2.0);
        op["throughput"] = json!(op["throughput"].as_f64().unwrap() / 2.0);
    }
    worse["totals"]["throughput"] = json!(worse["totals"]["throughput"].as_f64().unwrap() / 2.0);
    let worse_path = dir.path().join("worse.json");
    write(&worse_path, &worse);
    let ran = compare(&base_path, &worse_path);
    ran.expect_code(1, "a regression");
    let row = |metric: &str| {
        ran.stdout.lines().find(|l| l.starts_with(metric)).unwrap_or_else(|| panic!("no {metric} row:\n{}", ran.stdout))
    };
    for metric in ["throughput ops/s", "put ops/s", "put p99 ms"] {
        assert!(row(metric).contains("REGRESSED"), "{}", row(metric));
    }
    assert!(row("put p99 ms").contains("+100.0%"), "{}", row("put p99 ms"));
    assert!(row("throughput ops/s").contains("-50.0%"), "{}", row("throughput ops/s"));
    assert!(row("put p50 ms").contains("same"), "{}", row("put p50 ms"));
    assert!(ran.stdout.contains("REGRESSED: 3 of"), "{}", ran.stdout);

    let mut other = base.clone();
    other["workload"] = json!("get uniform");
    let other_path = dir.path().join("other.json");
    write(&other_path, &other);
    let ran = compare(&base_path, &other_path);
    ran.expect_code(2, "different workloads");
    let base_workload = base["workload"].as_str().unwrap();
    assert!(ran.stderr.contains(base_workload) && ran.stderr.contains("get uniform"), "{}", ran.stderr);

    let mut future = base.clone();
    future["schema_version"] = json!(99);
    let future_path = dir.path().join("future.json");
    write(&future_path, &future);
    let ran = compare(&base_path, &future_path);
    ran.expect_code(2, "another schema version");
    assert!(ran.stderr.contains("schema_version 99") && ran.stderr.contains("future.json"), "{}", ran.stderr);
}

/// Runs loadgen on input it must refuse, and checks it exits 2 quickly, naming every `needle`.
fn refused(args: &[&str], needles: &[&str]) {
    let ran = loadgen(args, FAIL_FAST_LIMIT);
    ran.expect_code(2, &args.join(" "));
    for n in needles {
        assert!(ran.stderr.contains(n), "`loadgen {}`: {n:?} not in the message:\n{}", args.join(" "), ran.stderr);
    }
}

#[test]
fn bad_values_are_refused_naming_the_flag() {
    refused(&["--null-target", "--rate", "0"], &["--rate", "\"0\""]);
    refused(&["--null-target", "--distribution", "zipfian", "--zipf-theta", "1.5"], &["--zipf-theta", "1.5"]);
    refused(&["--null-target", "--value-size", "2MiB"], &["--value-size", "2MiB"]);
    refused(&["--null-target", "--workload", "mix"], &["--mix"]);
}

#[test]
fn a_bad_slo_is_refused_before_the_run() {
    // Finding the typo only after a long run would waste the run.
    refused(&["--null-target", "--duration", "60s", "--warmup", "0s", "--slo", "p99=fast"], &["--slo", "p99=fast"]);
}

#[test]
fn an_unreachable_endpoint_fails_fast_naming_it() {
    let ran = loadgen(&["--endpoints", "127.0.0.1:1", "--duration", "1s", "--warmup", "0s"], FAIL_FAST_LIMIT);
    ran.expect_code(2, "unreachable endpoint");
    assert!(ran.stderr.contains("127.0.0.1:1"), "{}", ran.stderr);
}
