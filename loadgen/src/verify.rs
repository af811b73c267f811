//! `loadgen verify`: every acknowledged write of a run (recorded with `--ack-log`) must still be
//! readable — a put's key holds its value or a later one, a deleted key is absent or written
//! again later. Anything else is reported as lost.
//!
//! The ack log is text, one write per line (hex keys, so any bytes fit):
//!
//! ```text
//! P <key hex> <revision> <crc32c of value, hex>   acknowledged put (or successful CAS)
//! D <key hex> <revision>                          acknowledged delete
//! U <key hex>                                     a write whose outcome is unknown (error, timeout)
//! ```

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

use bytes::Bytes;
use conflux::node::proto::etcdserverpb::RangeRequest;
use futures_util::StreamExt;

use crate::target::{GrpcTarget, WriteAck, code_name};

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Write one ack line.
pub fn write_ack(w: &mut impl Write, a: &WriteAck) -> std::io::Result<()> {
    match a {
        WriteAck::Put { key, value, revision } => {
            writeln!(w, "P {} {} {:08x}", hex(key), revision, crc32c::crc32c(value))
        }
        WriteAck::Delete { key, revision } => writeln!(w, "D {} {}", hex(key), revision),
        WriteAck::Unknown { key } => writeln!(w, "U {}", hex(key)),
    }
}

/// What the log says a key must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// The last acknowledged write: (revision, Some(value crc) for a put / None for a delete).
    pub last: Option<(i64, Option<u32>)>,
    /// Whether any write to the key had an unknown outcome.
    pub unknown: bool,
}

/// Read an ack log: per key, what must hold. Errors name the file and line.
pub fn read_log(path: &Path) -> Result<HashMap<Bytes, Expect>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read --ack-log {}: {e}", path.display()))?;
    let mut out: HashMap<Bytes, Expect> = HashMap::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: line {}: {e}", path.display(), n + 1))?;
        let bad = || format!("{}: line {}: not an ack line: {line:?}", path.display(), n + 1);
        let mut parts = line.split(' ');
        let (tag, key) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let key = Bytes::from(unhex(key).ok_or_else(bad)?);
        let e = out.entry(key).or_default();
        let write = match tag {
            "P" => {
                let rev: i64 = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
                let crc = parts.next().and_then(|c| u32::from_str_radix(c, 16).ok()).ok_or_else(bad)?;
                Some((rev, Some(crc)))
            }
            "D" => Some((parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?, None)),
            "U" => {
                e.unknown = true;
                None
            }
            _ => return Err(bad()),
        };
        if let Some(w) = write
            && e.last.is_none_or(|(r, _)| w.0 >= r)
        {
            e.last = Some(w);
        }
    }
    Ok(out)
}

/// The verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// As acknowledged, or overwritten later.
    Ok,
    /// The acknowledged write is gone and nothing explains it.
    Lost(String),
    /// Gone, but a write with an unknown outcome (maybe a delete) could explain it.
    Uncertain(String),
}

/// Judge a key from what the log expects and what the cluster holds now
/// (`(mod_revision, value crc)`, or None when absent).
pub fn judge(e: &Expect, now: Option<(i64, u32)>) -> Verdict {
    let Some((rev, crc)) = e.last else { return Verdict::Ok };
    match (crc, now) {
        (Some(_), Some((m, _))) if m > rev => Verdict::Ok,
        (Some(want), Some((m, got))) if m == rev => {
            if want == got {
                Verdict::Ok
            } else {
                Verdict::Lost(format!("holds a different value at the acknowledged revision {rev}"))
            }
        }
        (Some(_), Some((m, _))) => {
            Verdict::Lost(format!("holds revision {m}, older than the acknowledged put at {rev}"))
        }
        (Some(_), None) if e.unknown => {
            Verdict::Uncertain(format!("absent; acknowledged put at {rev}, a later write had an unknown outcome"))
        }
        (Some(_), None) => Verdict::Lost(format!("absent, though a put was acknowledged at revision {rev}")),
        (None, Some((m, _))) if m > rev => Verdict::Ok,
        (None, Some((m, _))) => Verdict::Lost(format!("present at revision {m}, though deleted at revision {rev}")),
        (None, None) => Verdict::Ok,
    }
}

/// What verify found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Keys checked.
    pub checked: u64,
    /// Keys whose acknowledged write is there (or overwritten later).
    pub ok: u64,
    /// Lost keys with the reason (the first 100).
    pub lost: Vec<(Bytes, String)>,
    /// How many keys were lost in all.
    pub lost_count: u64,
    /// Keys that are gone but had writes with unknown outcomes.
    pub uncertain: u64,
    /// Reads that failed (status code name and count).
    pub read_errors: HashMap<String, u64>,
}

/// Check every key of the log against the cluster, `concurrency` linearizable reads at a time.
pub async fn verify(
    target: &GrpcTarget,
    log: HashMap<Bytes, Expect>,
    concurrency: usize,
    timeout: std::time::Duration,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let conns = crate::target::Target::connections(target);
    let results = futures_util::stream::iter(log.into_iter().enumerate())
        .map(|(i, (key, expect))| {
            let mut kv = target.client(i % conns);
            async move {
                let r = match tokio::time::timeout(
                    timeout,
                    kv.range(RangeRequest { key: key.clone(), ..Default::default() }),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(tonic::Status::deadline_exceeded("verify read timed out")),
                };
                (key, expect, r)
            }
        })
        .buffer_unordered(concurrency.max(1));
    futures_util::pin_mut!(results);
    while let Some((key, expect, r)) = results.next().await {
        report.checked += 1;
        let now = match r {
            Ok(r) => r.into_inner().kvs.first().map(|kv| (kv.mod_revision, crc32c::crc32c(&kv.value))),
            Err(s) => {
                *report.read_errors.entry(code_name(s.code()).to_string()).or_default() += 1;
                continue;
            }
        };
        match judge(&expect, now) {
            Verdict::Ok => report.ok += 1,
            Verdict::Uncertain(_) => report.uncertain += 1,
            Verdict::Lost(why) => {
                report.lost_count += 1;
                if report.lost.len() < 100 {
                    report.lost.push((key, why));
                }
            }
        }
    }
    report
}

impl VerifyReport {
    /// A human summary.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "verify: {} keys checked, {} as acknowledged, {} lost, {} uncertain (a write with an unknown outcome \
             could explain them)\n",
            self.checked, self.ok, self.lost_count, self.uncertain
        );
        for (code, n) in &self.read_errors {
            s.push_str(&format!("  {n} reads failed with {code} (those keys were not checked)\n"));
        }
        for (k, why) in &self.lost {
            s.push_str(&format!("  LOST {}: {why}\n", String::from_utf8_lossy(k)));
        }
        s
    }

    /// Whether nothing was lost and every key could be read.
    pub fn passed(&self) -> bool {
        self.lost_count == 0 && self.read_errors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_round_trips_and_keeps_the_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks");
        let mut w = std::fs::File::create(&path).unwrap();
        let k = Bytes::from_static(b"k\x00\xff");
        for a in [
            WriteAck::Put { key: k.clone(), value: Bytes::from_static(b"v1"), revision: 5 },
            WriteAck::Put { key: k.clone(), value: Bytes::from_static(b"v2"), revision: 9 },
            WriteAck::Put { key: k.clone(), value: Bytes::from_static(b"v0"), revision: 3 },
            WriteAck::Unknown { key: k.clone() },
            WriteAck::Delete { key: Bytes::from_static(b"d"), revision: 4 },
        ] {
            write_ack(&mut w, &a).unwrap();
        }
        drop(w);
        let log = read_log(&path).unwrap();
        assert_eq!(log[&k], Expect { last: Some((9, Some(crc32c::crc32c(b"v2")))), unknown: true });
        assert_eq!(log[&Bytes::from_static(b"d")].last, Some((4, None)));
        std::fs::write(&path, "P zz 1 0\n").unwrap();
        assert!(read_log(&path).unwrap_err().contains("line 1"));
    }

    #[test]
    fn verdicts() {
        let put = Expect { last: Some((10, Some(7))), unknown: false };
        assert_eq!(judge(&put, Some((10, 7))), Verdict::Ok);
        assert_eq!(judge(&put, Some((12, 1))), Verdict::Ok);
        assert!(matches!(judge(&put, Some((10, 8))), Verdict::Lost(_)));
        assert!(matches!(judge(&put, Some((8, 7))), Verdict::Lost(_)));
        assert!(matches!(judge(&put, None), Verdict::Lost(_)));
        let maybe = Expect { unknown: true, ..put };
        assert!(matches!(judge(&maybe, None), Verdict::Uncertain(_)));
        let del = Expect { last: Some((10, None)), unknown: false };
        assert_eq!(judge(&del, None), Verdict::Ok);
        assert_eq!(judge(&del, Some((11, 0))), Verdict::Ok);
        assert!(matches!(judge(&del, Some((9, 0))), Verdict::Lost(_)));
    }
}
