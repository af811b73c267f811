//! `--history FILE`: every operation a run issues, as JSON lines, for the linearizability checker
//! ([`crate::linearizability`], `loadgen check FILE`).
//!
//! The first line is a header, `{"format":"conflux-loadgen-history","version":1,...}`; then one
//! line per operation, written when it completes:
//!
//! ```text
//! {"client":3,"key":"lg/0000000000042","op":"put","value":"5f.3.17","invoke_us":1200,"complete_us":1480,"outcome":"ok"}
//! {"client":1,"key":"lg/0000000000042","op":"get","found":null,"invoke_us":1210,"complete_us":1300,"outcome":"ok"}
//! {"client":2,"key":"lg/0000000000042","op":"cas","expected":"5f.0.4","new":"5f.2.9","succeeded":false,"invoke_us":1500,"complete_us":1900,"outcome":"ok"}
//! {"client":0,"key":"lg/0000000000007","op":"delete","invoke_us":1600,"complete_us":11600,"outcome":"unknown","error":"DeadlineExceeded"}
//! ```
//!
//! Times are microseconds since the history began (one monotonic clock for all clients). The
//! format is specified in `docs/reliability.md`. In history mode every write carries a value
//! unique to the run ([`History::unique_value`]), so a value read names the one write that made
//! it, and loadgen's compare-and-swap (a Range, then a Txn comparing the mod revision it read)
//! is exactly a compare-and-swap on values: the Range is recorded as a get, the Txn as a cas
//! expecting the value that get returned.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::linearizability::{Command, Operation, Outcome};
use crate::op::Op;

/// The `format` of a history file's header line.
pub const FORMAT: &str = "conflux-loadgen-history";
/// The layout version of history files this loadgen writes and reads.
pub const VERSION: u32 = 1;

/// The first line of a history file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Layout version: [`VERSION`].
    pub version: u32,
    /// The run's seed.
    pub seed: u64,
    /// The workload, as the report names it.
    pub workload: String,
}

/// One operation: a line of a history file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The loadgen client (closed loop: the worker; open loop: the operation's in-flight slot).
    pub client: u64,
    /// The key (UTF-8; loadgen's keys are ASCII).
    pub key: String,
    /// The operation and its answer.
    #[serde(flatten)]
    pub command: Command,
    /// Microseconds from the start of the history to the send.
    pub invoke_us: u64,
    /// Microseconds from the start of the history to the answer; absent when none came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_us: Option<u64>,
    /// `ok`, `failed` (definitely not applied) or `unknown` (may have applied).
    pub outcome: Outcome,
    /// The gRPC status name of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The member that answered (its response header's member id, hex), when one did: which
    /// member served a read that the checker refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The store revision in the answer's response header, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
}

impl Record {
    /// The checker's view of it.
    pub fn to_operation(&self) -> Operation {
        Operation {
            client: self.client,
            key: self.key.clone(),
            command: self.command.clone(),
            invoke: self.invoke_us,
            complete: self.complete_us,
            outcome: self.outcome,
        }
    }
}

/// Whether a write that failed with this gRPC status (named as [`crate::target::code_name`]
/// names it) definitely did not take effect: the request was refused before it was proposed.
/// Any other failure (unavailable, deadline exceeded, a lost connection, ...) may have happened
/// after the write was proposed, so its outcome is unknown.
pub fn failure_is_definite(code: &str) -> bool {
    matches!(
        code,
        "InvalidArgument"
            | "FailedPrecondition"
            | "OutOfRange"
            | "NotFound"
            | "AlreadyExists"
            | "PermissionDenied"
            | "Unauthenticated"
            | "Unimplemented"
    )
}

/// Text of a key or value (lossy for bytes that are not UTF-8: loadgen writes ASCII).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A run's history: the clock, the value tags and the writer thread's channel. Cheap to clone.
#[derive(Debug, Clone)]
pub struct History {
    start: Instant,
    tag: String,
    tx: std::sync::mpsc::Sender<Vec<Record>>,
}

/// Why a history file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a history line.
    #[error("{path}: line {line}: {reason}", path = path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl History {
    /// Write a history to `path` (created or truncated), beginning now. The writer thread stops
    /// when every clone is dropped; join the handle to be sure everything is on disk.
    ///
    /// # Errors
    /// When the file cannot be created or its header written.
    pub fn create(
        path: &Path,
        header: &Header,
    ) -> Result<(History, std::thread::JoinHandle<Result<(), HistoryError>>), HistoryError> {
        let io = |source| HistoryError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        serde_json::to_writer(&mut w, header).map_err(|e| io(e.into()))?;
        w.write_all(b"\n").map_err(io)?;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Record>>();
        let owned = path.to_path_buf();
        let h = std::thread::Builder::new()
            .name("lg-history".into())
            .spawn(move || {
                let io = |source| HistoryError::Io { path: owned.clone(), source };
                for batch in rx {
                    for r in batch {
                        serde_json::to_writer(&mut w, &r).map_err(|e| io(e.into()))?;
                        w.write_all(b"\n").map_err(io)?;
                    }
                }
                w.flush().map_err(io)?;
                w.get_ref().sync_all().map_err(io)
            })
            .map_err(io)?;
        // A per-run tag (from the clock) keeps values unique across runs on one cluster too.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Ok((History { start: Instant::now(), tag: format!("{:x}", nanos & 0xffff_ffff_ffff), tx }, h))
    }

    /// Microseconds from the start of the history to `t`.
    pub fn micros(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX)
    }

    /// The value of `client`'s `seq`-th write: `<run tag>.<client>.<seq>`, padded with `.` to
    /// `len` bytes when that is longer. Unique within the run and across runs.
    pub fn unique_value(&self, client: u64, seq: u64, len: usize) -> Bytes {
        let mut v = format!("{}.{client}.{seq}", self.tag).into_bytes();
        if v.len() < len {
            v.resize(len, b'.');
        }
        Bytes::from(v)
    }

    /// `op` with its value (if it writes one) replaced by a unique one.
    pub fn with_unique_value(&self, op: Op, client: u64, seq: u64) -> Op {
        let u = |v: &Bytes| self.unique_value(client, seq, v.len());
        match op {
            Op::Put { key, value } => Op::Put { value: u(&value), key },
            Op::Insert { key, value } => Op::Insert { value: u(&value), key },
            Op::Txn { key, value } => Op::Txn { value: u(&value), key },
            Op::ReadModifyWrite { key, value } => Op::ReadModifyWrite { value: u(&value), key },
            Op::Watch { key, value } => Op::Watch { value: u(&value), key },
            other @ (Op::Get { .. } | Op::Delete { .. } | Op::Scan { .. }) => other,
        }
    }

    /// Queue records for the file.
    pub fn send(&self, records: Vec<Record>) {
        if !records.is_empty() {
            let _ = self.tx.send(records);
        }
    }
}

/// Calls of one operation being traced: each gRPC call it makes becomes a [`Record`].
#[derive(Debug)]
pub struct Tracer<'a> {
    history: &'a History,
    client: u64,
    /// The records so far.
    pub records: Vec<Record>,
}

impl<'a> Tracer<'a> {
    /// Trace the calls of an operation of `client`.
    pub fn new(history: &'a History, client: u64) -> Tracer<'a> {
        Tracer { history, client, records: Vec::new() }
    }

    /// Note a call: `invoked` when it was sent, now as its answer; `error` the gRPC status
    /// name of a failure (None on success). Reads that fail have an unknown outcome (they tell
    /// nothing); writes that fail are definite or unknown by [`failure_is_definite`].
    pub fn record(&mut self, key: &[u8], command: Command, invoked: Instant, error: Option<&str>) {
        let outcome = match (error, &command) {
            (None, _) => Outcome::Ok,
            (Some(_), Command::Get { .. }) => Outcome::Unknown,
            (Some(code), _) if failure_is_definite(code) => Outcome::Failed,
            (Some(_), _) => Outcome::Unknown,
        };
        self.records.push(Record {
            client: self.client,
            key: text(key),
            command,
            invoke_us: self.history.micros(invoked),
            complete_us: Some(self.history.micros(Instant::now())),
            outcome,
            error: error.map(str::to_string),
            member: None,
            revision: None,
        });
    }

    /// Note which member answered the last recorded call, and at which revision.
    pub fn answered_by(&mut self, member_id: u64, revision: i64) {
        if let Some(r) = self.records.last_mut() {
            r.member = Some(format!("{member_id:x}"));
            r.revision = Some(revision);
        }
    }
}

/// Read a history file: its header and records.
///
/// # Errors
/// An unreadable file, a missing or foreign header, another version, or a line that is not a
/// record; the message names the file and line.
pub fn read(path: &Path) -> Result<(Header, Vec<Record>), HistoryError> {
    let io = |source| HistoryError::Io { path: path.to_path_buf(), source };
    let bad = |line: usize, reason: String| HistoryError::Malformed { path: path.to_path_buf(), line, reason };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut lines = std::io::BufReader::new(f).lines();
    let first = lines.next().ok_or_else(|| bad(1, "empty file: no history header".into()))?.map_err(io)?;
    let header: Header = serde_json::from_str(&first)
        .map_err(|e| bad(1, format!("not a loadgen history header ({e}); is this a --history file?")))?;
    if header.format != FORMAT {
        return Err(bad(1, format!("format {:?}, expected {FORMAT:?}", header.format)));
    }
    if header.version != VERSION {
        return Err(bad(1, format!("history version {}, this loadgen reads version {VERSION}", header.version)));
    }
    let mut records = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(&line).map_err(|e| bad(i + 2, e.to_string()))?;
        if r.complete_us.is_some_and(|c| c < r.invoke_us) {
            return Err(bad(i + 2, "completes before it was invoked".into()));
        }
        records.push(r);
    }
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_roundtrip_and_bad_lines_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let header = Header { format: FORMAT.into(), version: VERSION, seed: 7, workload: "txn uniform".into() };
        let (h, thread) = History::create(&path, &header).unwrap();
        let mut t = Tracer::new(&h, 3);
        let now = Instant::now();
        t.record(b"k", Command::Put { value: "v".into() }, now, None);
        t.record(b"k", Command::Get { found: None }, now, Some("Unavailable"));
        t.record(b"k", Command::Delete, now, Some("DeadlineExceeded"));
        t.record(b"k", Command::Put { value: "w".into() }, now, Some("InvalidArgument"));
        let cas = Command::Cas { expected: Some("v".into()), new: "x".into(), succeeded: true };
        t.record(b"k", cas.clone(), now, None);
        let records = t.records;
        h.send(records.clone());
        drop(h);
        thread.join().unwrap().unwrap();
        let (back_header, back) = read(&path).unwrap();
        assert_eq!(back_header, header);
        assert_eq!(back, records);
        let outcomes: Vec<Outcome> = back.iter().map(|r| r.outcome).collect();
        use Outcome::*;
        assert_eq!(outcomes, [Ok, Unknown, Unknown, Failed, Ok]);
        assert_eq!(back[4].command, cas);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().nth(1).unwrap().contains(r#""op":"put","value":"v""#), "{text}");
        assert!(text.lines().nth(2).unwrap().contains(r#""found":null"#), "{text}");

        std::fs::write(&path, format!("{}\n{{\"client\":1}}\n", text.lines().next().unwrap())).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("h.jsonl: line 2:"), "{e}");
        std::fs::write(&path, "P 6c67 1 0\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 1: not a loadgen history header"), "{e}");
    }

    #[test]
    fn unique_values_keep_the_size_and_differ() {
        let dir = tempfile::tempdir().unwrap();
        let header = Header { format: FORMAT.into(), version: VERSION, seed: 1, workload: "put".into() };
        let (h, _t) = History::create(&dir.path().join("h"), &header).unwrap();
        let a = h.unique_value(1, 2, 64);
        assert_eq!(a.len(), 64);
        assert_ne!(a, h.unique_value(1, 3, 64));
        assert_ne!(a, h.unique_value(12, 2, 64));
        // Shorter than its tag: the tag whole.
        let bare = h.unique_value(1, 2, 0);
        assert!(bare.ends_with(b".1.2") && a.starts_with(&bare) && a[bare.len()..].iter().all(|&b| b == b'.'));
        let op =
            h.with_unique_value(Op::Put { key: Bytes::from_static(b"k"), value: Bytes::from(vec![0u8; 16]) }, 1, 2);
        assert_eq!(op, Op::Put { key: Bytes::from_static(b"k"), value: h.unique_value(1, 2, 16) });
    }
}
