//! Bit flips and truncations in every file of a stopped member's data directory, against real
//! `conflux` processes: the member either refuses to start, naming the file (and the offset, for
//! corruption), or starts and never serves a wrong value (docs/format.md, docs/reliability.md).
//!
//! Set-up: three members write a known data set (several segments, a snapshot). Member 1 (the
//! "lagger") is stopped early, so it misses most of the writes; then member 0 (the "victim") and
//! member 2 are stopped with SIGTERM. Each case restores pristine copies of the victim's and the
//! lagger's directories, damages one file of the victim's, and starts the two of them (member 2
//! stays down). The victim holds the longer log, so it must lead, and to commit anything it must
//! first catch the lagger up from its own log: that reads the sealed segments start-up does not
//! read, so damage there is exercised too ("reported at first read").
//!
//! The default run samples positions (the header of every file and the cases that matter most);
//! `CONFLUX_FULL_TESTS=1` runs every position class of every file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use conflux::node::proto::etcdserverpb::{RangeRequest, StatusRequest, maintenance_client::MaintenanceClient};

const VICTIM: usize = 0;
const LAGGER: usize = 1;
const THIRD: usize = 2;
/// Keys written; each is written several times.
const KEYS: usize = 100;
/// Writes before the lagger stops (one per key) and after.
const EARLY_WRITES: usize = 100;
const LATE_WRITES: usize = 400;
const VALUE_BYTES: usize = 1000;

/// Small segments and frequent snapshots, so the data set spans several segments and a snapshot.
/// `--snapshot-catchup-entries` (default 5000) keeps the whole log behind the snapshot.
const FLAGS: &[&str] = &["--snapshot-count", "200", "--segment-bytes", "131072", "--max-request-bytes", "4096"];

/// Every write: key -> [(value, mod revision)], oldest first.
type Written = BTreeMap<String, Vec<(String, i64)>>;

fn key(i: usize) -> String {
    format!("bf/{i:03}")
}

fn value(k: &str, round: usize) -> String {
    let mut v = format!("{k}:{round}:");
    while v.len() < VALUE_BYTES {
        v.push('.');
    }
    v
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Flip one bit at a byte offset.
    Flip { offset: u64, bit: u8 },
    /// Cut the file to this length.
    Truncate { len: u64 },
    /// Write a byte into an empty file.
    Garbage,
}

#[derive(Debug, Clone)]
struct Case {
    /// Path relative to the data directory.
    file: PathBuf,
    /// Where, in words.
    what: String,
    damage: Damage,
    /// Part of the default run.
    sampled: bool,
}

/// What a case ended as.
#[derive(Debug)]
enum Outcome {
    /// Exited before serving; the first error line of its log.
    Refused(String),
    /// Started and served the whole data set (reads from both members checked).
    Served { note: String },
    /// Started, then stopped on an error (at a read start-up did not do); its error line.
    FailedAtRead(String),
    /// Started but did not serve within the bound; every read was refused with an error.
    Unavailable(String),
}

impl Outcome {
    /// One line for the table: the outcome, and the error with the test's paths cut out.
    fn describe(&self, data_dir: &Path) -> String {
        let dir = format!("{}/", data_dir.display());
        let short = |e: &str| {
            let e = e.replace(&dir, "").replace(&data_dir.display().to_string(), "<dir>");
            // Drop the log line's timestamp and level.
            let e = e.split_once(" ERROR ").map_or(e.as_str(), |(_, rest)| rest).to_string();
            e.chars().take(220).collect::<String>()
        };
        match self {
            Outcome::Refused(e) => format!("refused to start: {}", short(e)),
            Outcome::Served { note } if note.is_empty() => "started, served everything".into(),
            Outcome::Served { note } => format!("started ({note}), served everything"),
            Outcome::FailedAtRead(e) => format!("started, stopped at first read: {}", short(e)),
            Outcome::Unavailable(why) => format!("started, never served: {why}"),
        }
    }
}

fn full() -> bool {
    std::env::var("CONFLUX_FULL_TESTS").is_ok()
}

/// Offsets of the records of a segment file, following the framing (len u32, record of
/// align8(24 + len) bytes from offset 32), until a zero length.
fn record_offsets(bytes: &[u8]) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let mut off = 32usize;
    while off + 24 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
        if len == 0 || off + 24 + len as usize > bytes.len() {
            break;
        }
        out.push((off as u64, len));
        off += (24 + len as usize).div_ceil(8) * 8;
    }
    out
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                stack.push(r);
            } else {
                out.push(r);
            }
        }
    }
    out.sort();
    out
}

/// The damage cases for every file of `dir`.
fn cases(dir: &Path) -> Vec<Case> {
    let all = files(dir);
    let newest_seg = all.iter().filter(|f| f.extension().is_some_and(|e| e == "seg")).max().cloned();
    let sealed_segs: Vec<&PathBuf> =
        all.iter().filter(|f| f.extension().is_some_and(|e| e == "seg") && Some(*f) != newest_seg.as_ref()).collect();
    let mut out = Vec::new();
    for f in &all {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        let len = bytes.len() as u64;
        let name = f.to_string_lossy().to_string();
        let mut add = |what: &str, damage: Damage, sampled: bool| {
            out.push(Case { file: f.clone(), what: what.to_string(), damage, sampled })
        };
        if len == 0 {
            add("empty file: one byte written", Damage::Garbage, true);
            continue;
        }
        let is_seg = name.ends_with(".seg");
        let newest = Some(f) == newest_seg.as_ref();
        // A sealed segment in the middle of the log: read only when the lagger catches up.
        let middle_sealed = sealed_segs.len() > 1 && Some(&f) == sealed_segs.get(sealed_segs.len() / 2);
        add("header (byte 0)", Damage::Flip { offset: 0, bit: 0 }, true);
        add("middle", Damage::Flip { offset: len / 2, bit: 0 }, name.ends_with(".idx") || name == "meta");
        add("last byte", Damage::Flip { offset: len - 1, bit: 7 }, false);
        add("truncated to half", Damage::Truncate { len: len / 2 }, name.contains("snap") || name == "meta");
        add("last byte cut", Damage::Truncate { len: len - 1 }, false);
        if name == "meta" {
            // The version field of slot 0: a newer version refuses, whatever slot 1 holds.
            add("slot 0 version", Damage::Flip { offset: 8, bit: 1 }, true);
            add("slot 1 body", Damage::Flip { offset: 4096 + 26, bit: 0 }, true);
        }
        if name.ends_with(".idx") && len > 64 + 8 {
            // A slot the sealed index uses (segments hold about 124 entries here): a low bit
            // makes it unaligned, a higher one points into another record.
            let slot = 64 + 8 * 60;
            add("a used slot, bit 0", Damage::Flip { offset: slot, bit: 0 }, middle_idx(&sealed_segs, f));
            add("a used slot, bit 4", Damage::Flip { offset: slot, bit: 4 }, false);
            add("the sealed count", Damage::Flip { offset: 24, bit: 0 }, false);
        }
        if name == "node" {
            // A digit of each id, and a letter of the token, flipped into another valid value:
            // the YAML still parses.
            let text = String::from_utf8_lossy(&bytes).to_string();
            for field in ["member_id: ", "cluster_id: ", "cluster_token: "] {
                let at = (text.find(field).unwrap() + field.len() + 2) as u64;
                add(&format!("{field}one character"), Damage::Flip { offset: at, bit: 0 }, field == "member_id: ");
            }
        }
        if name == "node" || name.contains("snap") {
            add("middle, bit 1", Damage::Flip { offset: len / 2, bit: 1 }, true);
        }
        if is_seg {
            let recs = record_offsets(&bytes);
            if let (Some(&(first, _)), Some(&(last, last_len))) = (recs.first(), recs.last()) {
                let (mid, _) = recs[recs.len() / 2];
                add("first record's payload", Damage::Flip { offset: first + 24 + 1, bit: 3 }, false);
                add("middle record's len", Damage::Flip { offset: mid, bit: 2 }, middle_sealed);
                add("middle record's payload", Damage::Flip { offset: mid + 40, bit: 5 }, middle_sealed);
                add("last record's payload (the tail)", Damage::Flip { offset: last + 30, bit: 1 }, newest);
                add(
                    "cut inside the last record (a torn tail)",
                    Damage::Truncate { len: last + 24 + u64::from(last_len) / 2 },
                    newest,
                );
            }
        }
    }
    out
}

/// Whether `idx` is the index of the middle sealed segment.
fn middle_idx(sealed: &[&PathBuf], idx: &Path) -> bool {
    sealed.len() > 1 && sealed[sealed.len() / 2].with_extension("idx") == idx
}

fn apply(path: &Path, d: Damage) {
    match d {
        Damage::Flip { offset, bit } => {
            let mut b = std::fs::read(path).unwrap();
            b[offset as usize] ^= 1 << bit;
            std::fs::write(path, &b).unwrap();
        }
        Damage::Truncate { len } => std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap(),
        Damage::Garbage => std::fs::write(path, b"x").unwrap(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    for f in files(from) {
        let dst = to.join(&f);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), dst).unwrap();
    }
    for sub in ["log", "snapshots"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
    }
}

/// Status of member `i`: (applied index, leader) if it answers within a second.
fn status(c: &Cluster, i: usize) -> Option<(u64, u64)> {
    let ep = c.endpoint(i).connect_timeout(Duration::from_millis(500)).timeout(Duration::from_secs(1));
    rt().block_on(async {
        let ch = ep.connect().await.ok()?;
        let r = MaintenanceClient::new(ch).status(StatusRequest {}).await.ok()?;
        Some((r.get_ref().raft_applied_index, r.get_ref().leader))
    })
}

fn exited(c: &mut Cluster, i: usize) -> Option<std::process::ExitStatus> {
    c.procs[i].as_mut().and_then(|p: &mut Child| p.try_wait().unwrap())
}

/// Every `bf/` key member `i` returns, with its value and mod revision; `Err` if refused.
fn read_all(c: &Cluster, i: usize, serializable: bool) -> Result<BTreeMap<String, (String, i64)>, String> {
    let ep = c.endpoint(i).connect_timeout(Duration::from_millis(500)).timeout(Duration::from_secs(3));
    rt().block_on(async {
        let ch = ep.connect().await.map_err(|e| e.to_string())?;
        let mut kv = conflux::node::proto::etcdserverpb::kv_client::KvClient::new(ch);
        let r = kv
            .range(RangeRequest {
                key: b"bf/".to_vec().into(),
                range_end: b"bf0".to_vec().into(),
                serializable,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("{}: {}", e.code(), e.message()))?;
        Ok(r.into_inner()
            .kvs
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    (String::from_utf8_lossy(&kv.value).into_owned(), kv.mod_revision),
                )
            })
            .collect())
    })
}

/// Check a read: every pair is one that was written; if `complete`, the read is the final state.
fn check_read(written: &Written, read: &BTreeMap<String, (String, i64)>, complete: bool, what: &str) {
    for (k, (v, rev)) in read {
        let ok = written.get(k).is_some_and(|ws| ws.iter().any(|(wv, wr)| wv == v && wr == rev));
        assert!(ok, "{what}: WRONG VALUE for {k} at revision {rev}: {:?}", &v[..v.len().min(40)]);
    }
    if complete {
        let last: BTreeMap<String, (String, i64)> =
            written.iter().map(|(k, ws)| (k.clone(), ws.last().unwrap().clone())).collect();
        assert_eq!(read.len(), last.len(), "{what}: keys missing from a read that must be complete");
        assert!(read == &last, "{what}: a read that must be complete is not the final state");
    }
}

/// The log lines written since `from`, and the first line that reports an error.
fn new_log(c: &Cluster, i: usize, from: usize) -> (String, Option<String>) {
    let log = c.log(i);
    let new = log.get(from..).unwrap_or("").to_string();
    let err = new
        .lines()
        .find(|l| l.starts_with("conflux: ") || l.contains(" ERROR ") || l.contains("fatal"))
        .map(|l| l.trim().to_string());
    (new, err)
}

fn log_len(c: &Cluster, i: usize) -> usize {
    c.log(i).len()
}

/// Run one case: restore, damage, start the victim and the lagger, judge.
fn run_case(c: &mut Cluster, pristine: &[PathBuf; 2], written: &Written, target: u64, case: &Case) -> Outcome {
    c.kill(VICTIM);
    c.kill(LAGGER);
    copy_dir(&pristine[0], &c.members[VICTIM].data_dir.clone());
    copy_dir(&pristine[1], &c.members[LAGGER].data_dir.clone());
    let damaged = c.members[VICTIM].data_dir.join(&case.file);
    apply(&damaged, case.damage);
    let from0 = log_len(c, VICTIM);
    c.spawn(VICTIM);

    // Start-up: the victim exits (refusal) or answers Status, within a bound.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = exited(c, VICTIM) {
            let (log, err) = new_log(c, VICTIM, from0);
            assert!(!s.success(), "{case:?}: exited with success at start; log:\n{log}");
            let err = err.unwrap_or_else(|| panic!("{case:?}: exited ({s}) without an error line; log:\n{log}"));
            return Outcome::Refused(err);
        }
        if status(c, VICTIM).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "{case:?}: neither started nor exited within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.spawn(LAGGER);

    // The victim must lead (its log is longer) and catch the lagger up; wait for both to have
    // applied everything, or for the victim to stop.
    let deadline = Instant::now() + Duration::from_secs(if full() { 20 } else { 12 });
    let mut caught_up = false;
    while Instant::now() < deadline {
        if exited(c, VICTIM).is_some() {
            break;
        }
        let v = status(c, VICTIM);
        let l = status(c, LAGGER);
        if let (Some((va, leader)), Some((la, _))) = (v, l)
            && leader != 0
            && va >= target
            && la >= target
        {
            caught_up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Reads: whatever the member's state, never a wrong value.
    let mut notes = Vec::new();
    let mut refused = Vec::new();
    for (i, who) in [(VICTIM, "victim"), (LAGGER, "lagger")] {
        let applied = status(c, i).map(|s| s.0).unwrap_or(0);
        for serializable in [true, false] {
            let what =
                format!("{case:?}: {} read from the {who}", if serializable { "serializable" } else { "linearizable" });
            match read_all(c, i, serializable) {
                Ok(r) => check_read(written, &r, !serializable || applied >= target, &what),
                Err(e) => refused.push(format!("{who} {}: {e}", if serializable { "s" } else { "l" })),
            }
        }
    }
    let (log0, err0) = new_log(c, VICTIM, from0);
    if log0.contains("torn tail") || log0.contains("truncat") {
        notes.push("tail cut back".to_string());
    }
    if log0.contains("rebuil") {
        notes.push("index rebuilt".to_string());
    }
    if let Some(s) = exited(c, VICTIM) {
        assert!(!s.success(), "{case:?}: the victim exited with success; log:\n{log0}");
        let err =
            err0.unwrap_or_else(|| panic!("{case:?}: the victim exited ({s}) without an error line; log:\n{log0}"));
        return Outcome::FailedAtRead(err);
    }
    if caught_up {
        assert!(refused.is_empty(), "{case:?}: caught up, yet reads were refused: {refused:?}");
        Outcome::Served { note: notes.join(", ") }
    } else {
        Outcome::Unavailable(format!("not caught up within the bound; refused: {}", refused.join("; ")))
    }
}

/// Whether a refusal names the damaged file (by its path, or its name in the data directory).
fn names_file(err: &str, data_dir: &Path, file: &Path) -> bool {
    err.contains(&data_dir.join(file).display().to_string())
        || err.contains(&file.file_name().unwrap().to_string_lossy().to_string())
}

#[test]
fn damage_in_every_file_is_refused_or_never_served() {
    let started = Instant::now();
    let mut c = Cluster::start(3, FLAGS);
    let mut written = Written::new();
    let mut at = c.wait_leader(None);
    let runtime = rt();
    let mut kv = runtime.block_on(c.kv(at));
    for n in 0..EARLY_WRITES + LATE_WRITES {
        if n == EARLY_WRITES {
            // The lagger misses the rest; the victim and the third member commit it.
            c.terminate(LAGGER);
            at = c.wait_leader(Some(LAGGER));
            kv = runtime.block_on(c.kv(at));
        }
        let k = key(n % KEYS);
        let v = value(&k, n / KEYS);
        let rev = runtime.block_on(put(&mut kv, &k, &v)).unwrap_or_else(|e| panic!("put {k} via member {at}: {e}"));
        written.entry(k).or_default().push((v, rev));
    }
    // Wait until the victim has applied everything the third member has, and has a snapshot.
    let deadline = Instant::now() + Duration::from_secs(30);
    let target = loop {
        let (v, t) = (status(&c, VICTIM), status(&c, THIRD));
        let snap = std::fs::read_dir(c.members[VICTIM].data_dir.join("snapshots"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".snap.zst")))
            .unwrap_or(false);
        if let (Some((va, _)), Some((ta, _))) = (v, t)
            && va >= ta
            && snap
        {
            break va;
        }
        assert!(Instant::now() < deadline, "the victim did not catch up or snapshot within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(c.terminate(VICTIM).code(), Some(0));
    assert_eq!(c.terminate(THIRD).code(), Some(0));

    let pristine = [c.dir.path().join("pristine-victim"), c.dir.path().join("pristine-lagger")];
    copy_dir(&c.members[VICTIM].data_dir.clone(), &pristine[0]);
    copy_dir(&c.members[LAGGER].data_dir.clone(), &pristine[1]);
    let all = cases(&pristine[0]);
    let segs = all.iter().filter(|x| x.file.extension().is_some_and(|e| e == "seg")).count();
    let listing: Vec<String> = files(&pristine[0]).iter().map(|f| f.display().to_string()).collect();
    println!("victim's files (applied index {target}): {}", listing.join(", "));
    assert!(listing.iter().filter(|f| f.ends_with(".seg")).count() >= 4, "want several segments: {listing:?}");
    assert!(listing.iter().any(|f| f.ends_with(".snap.zst")), "want a snapshot: {listing:?}");
    assert!(segs > 0);

    // Sanity: the pristine copies start and serve everything.
    let clean = Case { file: PathBuf::from("LOCK"), what: "no damage".into(), damage: Damage::Garbage, sampled: true };
    let out = run_case(&mut c, &pristine, &written, target, &clean);
    assert!(matches!(out, Outcome::Served { .. }), "undamaged copies: {out:?}");

    let data_dir = c.members[VICTIM].data_dir.clone();
    let mut rows = Vec::new();
    let only = std::env::var("CONFLUX_BIT_FLIPS_ONLY").ok();
    let chosen = |x: &&Case| match &only {
        Some(o) => format!("{} {}", x.file.display(), x.what).contains(o.as_str()),
        None => x.sampled || full(),
    };
    for case in all.iter().filter(chosen) {
        let t = Instant::now();
        let out = run_case(&mut c, &pristine, &written, target, case);
        let name = case.file.display().to_string();
        if let Outcome::Refused(err) | Outcome::FailedAtRead(err) = &out {
            assert!(names_file(err, &data_dir, &case.file), "{case:?}: the error does not name the file: {err}");
            if err.contains("corruption") {
                assert!(err.contains("at offset"), "{case:?}: a corruption without an offset: {err}");
            }
        }
        // What docs/format.md promises per file.
        if name.ends_with(".idx") || name.ends_with(".tmp") || name == "LOCK" {
            assert!(
                matches!(out, Outcome::Served { .. }),
                "{case:?}: derived or unused data must not stop the member: {out:?}"
            );
        }
        if name == "node" {
            assert!(
                matches!(out, Outcome::Refused(_)),
                "{case:?}: a damaged identity file must be refused at start (its checksum line): {out:?}"
            );
        }
        if name.ends_with(".snap.zst") {
            assert!(
                matches!(out, Outcome::Refused(_)),
                "{case:?}: a damaged snapshot must be refused at start: {out:?}"
            );
        }
        let damage = match case.damage {
            Damage::Flip { offset, bit } => format!("bit {bit} of byte {offset} flipped"),
            Damage::Truncate { len } => format!("cut to {len} bytes"),
            Damage::Garbage => "one byte written".into(),
        };
        println!(
            "| `{name}` | {}: {damage} | {} | {:.1} s |",
            case.what,
            out.describe(&data_dir),
            t.elapsed().as_secs_f64()
        );
        rows.push(out);
    }
    println!("{} cases in {:.0} s", rows.len(), started.elapsed().as_secs_f64());
}
