//! `--history` and `loadgen check` end to end: a short run against an embedded three-member
//! conflux cluster records every operation, the checker judges the history linearizable, and
//! doctored copies of it (a value nobody wrote, a stale read) are refused with an explanation.

mod common;

use std::path::Path;

use common::{FAIL_FAST_LIMIT, RUN_LIMIT, loadgen};
use serde_json::{Value, json};

/// The header and the records of a history file.
fn read_lines(path: &Path) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")));
    let header = lines.next().expect("a header line");
    (header, lines.collect())
}

fn write_lines(path: &Path, header: &Value, records: &[Value]) {
    let mut text = header.to_string();
    for r in records {
        text.push('\n');
        text.push_str(&r.to_string());
    }
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn check(path: &Path) -> common::Ran {
    loadgen(&["check", path.to_str().unwrap()], RUN_LIMIT)
}

#[test]
fn an_embedded_cluster_history_is_linearizable_and_doctored_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("history.jsonl");
    // Five keys, four clients: every key is read, written and swapped concurrently.
    let ran = loadgen(
        &[
            "--embedded",
            "3",
            "--workload",
            "mix",
            "--mix",
            "put=30,get=40,txn=30",
            "--key-space",
            "5",
            "--clients",
            "4",
            "--warmup",
            "0s",
            "--duration",
            "2s",
            "--seed",
            "5",
            "--quiet",
            "--history",
            h.to_str().unwrap(),
        ],
        RUN_LIMIT,
    );
    ran.expect_code(0, "history run");
    let (header, records) = read_lines(&h);
    assert_eq!(header["format"], "conflux-loadgen-history");
    assert_eq!(header["version"], 1);
    assert_eq!(header["seed"], 5);
    let count = |op: &str| records.iter().filter(|r| r["op"] == op).count();
    // A txn is a get then a cas; no preload, so the first reads find nothing.
    assert!(count("put") >= 5 && count("get") >= 5 && count("cas") >= 5, "{} records", records.len());
    assert!(records.iter().any(|r| r["op"] == "get" && r["found"].is_null() && r["outcome"] == "ok"));
    assert!(records.iter().any(|r| r["op"] == "get" && r["found"].is_string()));
    assert!(records.iter().any(|r| r["op"] == "cas" && r["succeeded"] == true));
    assert!(records.iter().all(|r| r["complete_us"].as_u64() >= r["invoke_us"].as_u64()));
    // Every write's value is unique.
    let mut written: Vec<&str> = records
        .iter()
        .filter_map(|r| match r["op"].as_str() {
            Some("put") => r["value"].as_str(),
            Some("cas") => r["new"].as_str(),
            _ => None,
        })
        .collect();
    let n = written.len();
    written.sort_unstable();
    written.dedup();
    assert_eq!(written.len(), n, "values repeat");
    assert!(written.iter().all(|v| v.len() == 256), "values keep --value-size");

    let ok = check(&h);
    ok.expect_code(0, "check of the recorded history");
    assert!(ok.stdout.starts_with(&format!("linearizable: {} operations on 5 keys", records.len())), "{}", ok.stdout);

    // Doctored: a successful get returning a value nobody wrote.
    let mut bad = records.clone();
    let i = bad.iter().position(|r| r["op"] == "get" && r["outcome"] == "ok").unwrap();
    bad[i]["found"] = json!("never-written");
    let key = bad[i]["key"].as_str().unwrap().to_string();
    let ghost = dir.path().join("ghost.jsonl");
    write_lines(&ghost, &header, &bad);
    let r = check(&ghost);
    r.expect_code(1, "a read of a value nobody wrote");
    assert!(r.stdout.starts_with("NOT LINEARIZABLE: 1 of 5 keys"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("key {key}: a read returned a value that no operation wrote")), "{}", r.stdout);
    assert!(r.stdout.contains("\"never-written\""), "{}", r.stdout);

    // Doctored: after the run, a put, then a get of the value the key held before it.
    let end = records.iter().filter_map(|r| r["complete_us"].as_u64()).max().unwrap();
    let old = records.iter().rev().find(|r| r["op"] == "put" && r["outcome"] == "ok").unwrap();
    let key = old["key"].as_str().unwrap();
    let mut stale = records.clone();
    stale.push(json!({"client": 99, "key": key, "op": "put", "value": "newest",
        "invoke_us": end + 10, "complete_us": end + 20, "outcome": "ok"}));
    stale.push(json!({"client": 98, "key": key, "op": "get", "found": old["value"],
        "invoke_us": end + 30, "complete_us": end + 40, "outcome": "ok"}));
    let path = dir.path().join("stale.jsonl");
    write_lines(&path, &header, &stale);
    let r = check(&path);
    r.expect_code(1, "a stale read");
    assert!(r.stdout.contains(&format!("key {key}: ")), "{}", r.stdout);
    // (The register holds "newest" there unless a write of unknown outcome took effect after it.)
    assert!(r.stdout.contains("then this one cannot: client 98 get"), "{}", r.stdout);
    assert!(r.stdout.contains("client 98 get"), "{}", r.stdout);
    assert!(r.stdout.contains("client 99 put"), "{}", r.stdout);
}

#[test]
fn history_mode_refuses_what_it_cannot_record() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("h.jsonl");
    let hs = h.to_str().unwrap();
    let r = loadgen(&["--null-target", "--history", hs], FAIL_FAST_LIMIT);
    r.expect_code(2, "null target");
    assert!(r.stderr.contains("--history") && r.stderr.contains("--null-target"), "{}", r.stderr);
    let r = loadgen(&["--endpoints", "127.0.0.1:1", "--workload", "scan", "--history", hs], FAIL_FAST_LIMIT);
    r.expect_code(2, "scan");
    assert!(r.stderr.contains("--history") && r.stderr.contains("scan operations"), "{}", r.stderr);
    // A file that is not a history: named, with the line.
    std::fs::write(&h, "P 6c67 1 00000000\n").unwrap();
    let r = loadgen(&["check", hs], FAIL_FAST_LIMIT);
    r.expect_code(2, "not a history");
    assert!(r.stderr.contains("h.jsonl: line 1: not a loadgen history header"), "{}", r.stderr);
    let r = loadgen(&["check", hs, "--max-steps", "0"], FAIL_FAST_LIMIT);
    r.expect_code(2, "zero budget");
    assert!(r.stderr.contains("--max-steps"), "{}", r.stderr);
}
