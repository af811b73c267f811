//! `bench-report`: turns criterion's results (`target/criterion/**/new/`) and the instruction-count
//! baseline (`bench/baseline/`) into the markdown tables of `docs/benchmarks.md`, so the doc is
//! regenerated, not typed. Each criterion group becomes a table: benchmark, median, spread (the
//! 95% confidence interval of the median), throughput, and the ratio to every peer measured in
//! the same group (`io=raw`, `io=raft-engine`) under the same other parameters.
//!
//! Usage: `cargo run -p conflux-bench --bin bench-report -- [--criterion DIR] [--doc FILE] [--print]`
//! (defaults: `target/criterion`, `docs/benchmarks.md`). The tables replace what lies between
//! `<!-- bench-report:begin -->` and `<!-- bench-report:end -->` in the doc (appended with those
//! markers when absent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const BEGIN: &str = "<!-- bench-report:begin -->";
const END: &str = "<!-- bench-report:end -->";
/// Parameters that name who was measured: a benchmark's peers share every other parameter.
const PEER_KEYS: [&str; 1] = ["io"];
/// Parameters of how our side encodes its payload: not part of what a peer is compared on.
const VARIANT_KEYS: [&str; 1] = ["blob"];

/// One criterion result.
#[derive(Debug, Clone)]
struct Result {
    group: String,
    id: String,
    median_ns: f64,
    lower_ns: f64,
    upper_ns: f64,
    bytes: Option<u64>,
    elements: Option<u64>,
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "new") && p.join("benchmark.json").is_file() {
                out.push(p);
            } else {
                find(&p, out);
            }
        }
    }
}

fn load(dir: &Path) -> std::result::Result<Result, String> {
    let read = |f: &str| -> std::result::Result<serde_json::Value, String> {
        let p = dir.join(f);
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    };
    let b = read("benchmark.json")?;
    let e = read("estimates.json")?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let median = &e["median"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    Ok(Result {
        group: s(&b["group_id"]),
        id: s(&b["full_id"]),
        median_ns: f(&median["point_estimate"]),
        lower_ns: f(&median["confidence_interval"]["lower_bound"]),
        upper_ns: f(&median["confidence_interval"]["upper_bound"]),
        bytes: b["throughput"]["Bytes"].as_u64().or(b["throughput"]["BytesDecimal"].as_u64()),
        elements: b["throughput"]["Elements"].as_u64(),
    })
}

fn time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn throughput(r: &Result) -> String {
    let secs = r.median_ns / 1e9;
    if let Some(b) = r.bytes {
        let mib = b as f64 / secs / (1 << 20) as f64;
        format!("{mib:.1} MiB/s")
    } else if let Some(n) = r.elements {
        let per = n as f64 / secs;
        if per >= 1e6 { format!("{:.2} M/s", per / 1e6) } else { format!("{:.0} /s", per) }
    } else {
        String::new()
    }
}

/// The id's parameters, and the same id with the peer parameters taken out (the key its peers
/// share).
fn peer_key(id: &str) -> (String, Option<String>) {
    let mut who = None;
    let rest: Vec<&str> = id
        .split('/')
        .filter(|part| match part.split_once('=') {
            Some((k, v)) if PEER_KEYS.contains(&k) => {
                who = Some(v.to_string());
                false
            }
            Some((k, _)) if VARIANT_KEYS.contains(&k) => false,
            _ => true,
        })
        .collect();
    (rest.join("/"), who)
}

fn tables(results: &[Result]) -> String {
    let mut by_group: BTreeMap<&str, Vec<&Result>> = BTreeMap::new();
    for r in results {
        by_group.entry(&r.group).or_default().push(r);
    }
    let mut out = String::new();
    for (group, mut rs) in by_group {
        rs.sort_by(|a, b| a.id.cmp(&b.id));
        // Peers present in this group (anything under a peer key other than ours, `sync`).
        let mut peers: Vec<String> = rs
            .iter()
            .filter_map(|r| peer_key(&r.id).1)
            .filter(|w| !w.starts_with("sync") && !w.starts_with("uring"))
            .collect();
        peers.sort();
        peers.dedup();
        out.push_str(&format!("### {group}\n\n| benchmark | median | 95% CI of the median | throughput |"));
        for p in &peers {
            out.push_str(&format!(" vs {p} |"));
        }
        out.push_str("\n|---|---|---|---|");
        for _ in &peers {
            out.push_str("---|");
        }
        out.push('\n');
        for r in &rs {
            out.push_str(&format!(
                "| `{}` | {} | {} – {} | {} |",
                r.id,
                time(r.median_ns),
                time(r.lower_ns),
                time(r.upper_ns),
                throughput(r)
            ));
            let (key, who) = peer_key(&r.id);
            for p in &peers {
                let cell = match &who {
                    Some(w) if w == p => "—".to_string(),
                    Some(_) => rs
                        .iter()
                        .find(|o| {
                            let (k, w) = peer_key(&o.id);
                            k == key && w.as_deref() == Some(p.as_str())
                        })
                        // Peer time ÷ our time: above 1 means we are faster.
                        .map(|o| format!("{:.2}×", o.median_ns / r.median_ns))
                        .unwrap_or_default(),
                    None => String::new(),
                };
                out.push_str(&format!(" {cell} |"));
            }
            out.push('\n');
        }
        if !peers.is_empty() {
            out.push_str(&format!(
                "\n\"vs P\": P's median time ÷ this benchmark's, same parameters (above 1: faster than {}).\n",
                peers.join(", ")
            ));
        }
        out.push('\n');
    }
    out
}

/// The instruction-count baseline, if present: every `bench/baseline/*` file shown as is.
fn baseline_section(root: &Path) -> String {
    let dir = root.join("bench/baseline");
    let Ok(rd) = std::fs::read_dir(&dir) else { return String::new() };
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        out.push_str(&format!(
            "### Instruction counts (`{}`)\n\n```text\n{}\n```\n\n",
            f.strip_prefix(root).unwrap_or(&f).display(),
            text.trim_end()
        ));
    }
    out
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("Generated by `bench-report` on: {cpu}, {cores} cores, Linux {}.\n\n", kernel.trim())
}

fn main() -> ExitCode {
    let mut criterion = PathBuf::from("target/criterion");
    let mut doc = PathBuf::from("docs/benchmarks.md");
    let mut print = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--criterion" => criterion = args.next().map(PathBuf::from).unwrap_or(criterion),
            "--doc" => doc = args.next().map(PathBuf::from).unwrap_or(doc),
            "--print" => print = true,
            other => {
                eprintln!("bench-report: unknown argument {other:?} (expected --criterion DIR, --doc FILE, --print)");
                return ExitCode::from(2);
            }
        }
    }
    let mut dirs = Vec::new();
    find(&criterion, &mut dirs);
    if dirs.is_empty() {
        eprintln!("bench-report: no criterion results under {} (run `cargo bench` first)", criterion.display());
        return ExitCode::from(2);
    }
    let mut results = Vec::new();
    for d in &dirs {
        match load(d) {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("bench-report: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let root = doc.parent().and_then(|p| p.parent()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let body = format!("{}{}{}", machine(), tables(&results), baseline_section(&root));
    if print {
        print!("{body}");
        return ExitCode::SUCCESS;
    }
    let text = match std::fs::read_to_string(&doc) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench-report: cannot read {}: {e}", doc.display());
            return ExitCode::from(2);
        }
    };
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{body}{}", &text[..b], &text[e..]),
        _ => format!("{}\n## Generated tables\n\n{BEGIN}\n{body}{END}\n", text.trim_end()),
    };
    if let Err(e) = std::fs::write(&doc, new) {
        eprintln!("bench-report: cannot write {}: {e}", doc.display());
        return ExitCode::from(2);
    }
    eprintln!("bench-report: {} results from {} into {}", results.len(), criterion.display(), doc.display());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, ns: f64) -> Result {
        Result {
            group: "append".into(),
            id: id.into(),
            median_ns: ns,
            lower_ns: ns,
            upper_ns: ns,
            bytes: Some(1024),
            elements: None,
        }
    }

    #[test]
    fn peers_pair_on_the_other_parameters() {
        assert_eq!(
            peer_key("append/entry=1KiB/batch=1/io=raw"),
            ("append/entry=1KiB/batch=1".into(), Some("raw".into()))
        );
        let t = tables(&[
            r("append/entry=1KiB/batch=1/io=sync", 100.0),
            r("append/entry=1KiB/batch=1/io=raw", 80.0),
            r("append/entry=1KiB/batch=1/io=raft-engine", 300.0),
            r("append/entry=64B/batch=1/io=sync", 50.0),
        ]);
        let sync = t.lines().find(|l| l.contains("1KiB/batch=1/io=sync")).unwrap();
        assert!(sync.contains("0.80×") && sync.contains("3.00×"), "{sync}");
        let lone = t.lines().find(|l| l.contains("64B/batch=1/io=sync")).unwrap();
        assert!(!lone.contains('×'), "no peer measured for it: {lone}");
    }
}
