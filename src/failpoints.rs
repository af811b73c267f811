//! Engine I/O failpoints for fault-injection tests, compiled only with the `failpoints` cargo
//! feature (never in a release build: `cargo build --release` does not enable it).
//!
//! `CONFLUX_FAILPOINTS` arms one-shot faults on the member's log I/O (through the engine's
//! `FaultIo` wrapper, `docs/architecture.md#the-io-seam`): a comma-separated list of
//! `FAULT@PATH[+SKIP]`, where `FAULT` is `write-error`, `enospc`, `short-write:BYTES`,
//! `fsync-error` or `slow-fsync:MILLISECONDS`; `PATH` is a substring of the file's path (e.g.
//! `log/` for the segments, `meta` for the meta file); `SKIP` lets that many matching
//! operations through first. Example: `CONFLUX_FAILPOINTS=fsync-error@log/+200`.
//!
//! `CONFLUX_FAILPOINT_DIVERGE_KEY=KEY` makes this member's state machine diverge from the
//! others: every put of exactly `KEY` it applies stores the value with `~diverged` appended (the
//! other members store what was written). It is how the tests make the consistency check
//! (`--corrupt-check-time`) find a mismatch.

use std::sync::Arc;
use std::time::Duration;

use conflux_engine::io::Io;
use conflux_engine::io::fault::{Fault, FaultIo};

/// The variable read at start.
pub const ENV: &str = "CONFLUX_FAILPOINTS";
/// The variable naming the key whose puts this member applies differently.
pub const DIVERGE_ENV: &str = "CONFLUX_FAILPOINT_DIVERGE_KEY";

/// The key `CONFLUX_FAILPOINT_DIVERGE_KEY` names, if set.
pub fn diverge_key() -> Option<bytes::Bytes> {
    let key = std::env::var(DIVERGE_ENV).ok().filter(|k| !k.is_empty())?;
    tracing::warn!(%key, "failpoint armed: puts of this key diverge on this member");
    Some(bytes::Bytes::from(key))
}

/// `req` as this member applies it: a put of `key` gets `~diverged` appended to its value.
pub fn diverge(req: &crate::mvcc::WriteRequest, key: &bytes::Bytes) -> Option<crate::mvcc::WriteRequest> {
    match req {
        crate::mvcc::WriteRequest::Put(p) if p.key == *key => {
            let mut p = p.clone();
            let mut v = p.value.to_vec();
            v.extend_from_slice(b"~diverged");
            p.value = v.into();
            Some(crate::mvcc::WriteRequest::Put(p))
        }
        _ => None,
    }
}

/// One parsed `FAULT@PATH[+SKIP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The fault.
    pub fault: Fault,
    /// Substring of the path it applies to.
    pub path: String,
    /// Matching operations let through first.
    pub skip: u64,
}

/// Parse a `CONFLUX_FAILPOINTS` value.
///
/// # Errors
/// A message naming the entry that is malformed.
pub fn parse(value: &str) -> Result<Vec<Spec>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| format!("{ENV}: bad entry {item:?}: {why}");
        let (fault, rest) = item.split_once('@').ok_or_else(|| bad("expected FAULT@PATH[+SKIP]"))?;
        let (path, skip) = match rest.rsplit_once('+') {
            Some((p, s)) => (p, s.parse::<u64>().map_err(|_| bad("SKIP must be a whole number"))?),
            None => (rest, 0),
        };
        if path.is_empty() {
            return Err(bad("PATH is empty"));
        }
        let (name, arg) = match fault.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (fault, None),
        };
        let num = |what: &str| -> Result<u64, String> {
            arg.ok_or_else(|| bad(&format!("{name} needs :{what}")))?
                .parse::<u64>()
                .map_err(|_| bad(&format!("{what} must be a whole number")))
        };
        let fault = match name {
            "write-error" => Fault::WriteError,
            "enospc" => Fault::NoSpace,
            "fsync-error" => Fault::SyncError,
            "short-write" => Fault::ShortWrite { max: num("BYTES")? as usize },
            "slow-fsync" => Fault::SlowSync(Duration::from_millis(num("MILLISECONDS")?)),
            other => {
                return Err(bad(&format!(
                    "unknown fault {other:?}: expected write-error, enospc, short-write:BYTES, fsync-error or \
                     slow-fsync:MILLISECONDS"
                )));
            }
        };
        out.push(Spec { fault, path: path.to_string(), skip });
    }
    Ok(out)
}

/// Wrap `io` in the failpoints `CONFLUX_FAILPOINTS` names (or return it as is when unset).
///
/// # Errors
/// A malformed value.
pub fn wrap(io: Arc<dyn Io>) -> Result<Arc<dyn Io>, String> {
    let Ok(value) = std::env::var(ENV) else { return Ok(io) };
    let specs = parse(&value)?;
    if specs.is_empty() {
        return Ok(io);
    }
    let (fault_io, handle) = FaultIo::new(io);
    for s in &specs {
        tracing::warn!(fault = ?s.fault, path = %s.path, skip = s.skip, "failpoint armed");
        handle.inject(s.fault.clone(), &s.path, s.skip);
    }
    // The handle only arms; faults stay armed in the wrapper's shared state after it is dropped.
    Ok(Arc::new(fault_io))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_errors_name_the_entry() {
        assert_eq!(
            parse("fsync-error@log/+200, short-write:100@meta").unwrap(),
            vec![
                Spec { fault: Fault::SyncError, path: "log/".into(), skip: 200 },
                Spec { fault: Fault::ShortWrite { max: 100 }, path: "meta".into(), skip: 0 },
            ]
        );
        assert_eq!(parse("slow-fsync:5@seg").unwrap()[0].fault, Fault::SlowSync(Duration::from_millis(5)));
        assert_eq!(parse("").unwrap(), vec![]);
        for (bad, says) in [
            ("fsync-error", "FAULT@PATH"),
            ("boom@log/", "unknown fault \"boom\""),
            ("short-write@log/", "needs :BYTES"),
            ("enospc@log/+x", "SKIP"),
            ("enospc@", "PATH is empty"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains(says), "{bad}: {e}");
        }
    }
}
