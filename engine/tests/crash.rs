//! Crash: a child process appends under load and is SIGKILLed at random moments. After each
//! kill, every entry whose callback reported durable before the kill is present and intact, and
//! the log has no gaps. The child is this test binary, re-run in child mode.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

const CHILD_ENV: &str = "CONFLUX_CRASH_CHILD_DIR";

/// Child mode: append forever (a few appends in flight, periodic purges), printing
/// `ack <end>` each time entries up to `end` are durable.
#[test]
#[ignore = "run by crash_cycles as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        panic!("crash_child is the child half of crash_cycles; run that test instead");
    };
    let rt = rt();
    let mut s = open(std::path::Path::new(&dir), small_config());
    let mut next = s.log_state().last_log_id.map(|l| l.index + 1).unwrap_or(0);
    let acked = Arc::new(AtomicU64::new(next));
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    {
        let mut o = out.lock().unwrap();
        writeln!(o, "ready {next}").unwrap();
        o.flush().unwrap();
    }
    let mut k = 0u64;
    loop {
        let n = 1 + (next % 9);
        let batch: Vec<Entry> = (next..next + n).map(test_entry).collect();
        next += n;
        let end = next;
        let (a, o) = (acked.clone(), out.clone());
        s.append_with(
            batch,
            Box::new(move |r| {
                r.expect("durable");
                a.fetch_max(end, Ordering::SeqCst);
                let mut o = o.lock().unwrap();
                let _ = writeln!(o, "ack {end}");
                let _ = o.flush();
            }),
        )
        .unwrap();
        // Keep at most ~4 appends in flight.
        while next - acked.load(Ordering::SeqCst) > 40 {
            std::thread::sleep(Duration::from_micros(50));
        }
        k += 1;
        if k.is_multiple_of(200) {
            let upto = acked.load(Ordering::SeqCst).saturating_sub(100);
            if upto > 0 {
                rt.block_on(openraft::storage::RaftLogStorage::purge(&mut s, log_id(1, upto))).unwrap();
            }
        }
    }
}

#[test]
fn crash_cycles() {
    let cycles = if std::env::var("CONFLUX_FULL_TESTS").is_ok() { 200 } else { 20 };
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut total_acked = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let max_ack = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(AtomicU64::new(u64::MAX));
        let (m, r) = (max_ack.clone(), ready.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(v) = line.strip_prefix("ack ") {
                    m.fetch_max(v.trim().parse().unwrap(), Ordering::SeqCst);
                } else if let Some((_, v)) = line.split_once("ready ") {
                    // libtest prints "test crash_child ... " before the child's first line.
                    r.store(v.trim().parse().unwrap(), Ordering::SeqCst);
                }
            }
        });
        // Let it start and write, then kill at a random moment.
        let deadline = Instant::now() + Duration::from_secs(60);
        while ready.load(Ordering::SeqCst) == u64::MAX {
            assert!(Instant::now() < deadline, "cycle {cycle}: child never became ready");
            if let Ok(Some(st)) = child.try_wait() {
                panic!("cycle {cycle}: child exited early: {st}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 200));
        child.kill().expect("SIGKILL"); // std's kill sends SIGKILL on Unix
        let _ = child.wait();
        reader.join().unwrap();
        let acked = max_ack.load(Ordering::SeqCst);
        assert!(acked > 0 || cycle > 0, "cycle {cycle}: the child acknowledged nothing");

        let s = open(dir.path(), small_config());
        let st = s.log_state();
        let end = st.last_log_id.map(|l| l.index + 1).unwrap_or(0);
        assert!(end >= acked, "cycle {cycle}: log ends at {end}, but entries up to {acked} were acknowledged");
        let from = st.last_purged_log_id.map(|l| l.index + 1).unwrap_or(0);
        check_entries(&s, from, end);
        total_acked = acked;
        drop(s);
    }
    assert!(total_acked > 100, "the child wrote too little to mean anything: {total_acked}");
}
