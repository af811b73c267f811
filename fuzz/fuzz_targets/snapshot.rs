//! Snapshot files (`snapshots/*.snap.zst`) loaded as a member loads them at start or on
//! install: the container (header, trailer, checksums), zstd, the Raft metadata and the store's
//! snapshot body.
//!
//! Input: a mode byte, then
//! - mode 0 (mod 3): the bytes of a snapshot file as found on disk (or received from a peer);
//! - mode 1: the Raft metadata (a `u16` little-endian length then its bytes), then the
//!   uncompressed body, written into a valid container first;
//! - mode 2: the uncompressed body, with valid metadata, in a valid container.
//!
//! The files go to `conflux-fuzz-snapshot-<pid>` under `/dev/shm` when there is one (the
//! container is fsync'd), else under the temporary directory. libFuzzer ends the process with
//! `exit`, which runs no destructors, so each run first removes the directories of processes
//! that are gone.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use conflux::fuzzing::{empty_snapshot_meta, load_snapshot, write_snapshot};
use conflux_engine::snapshot::Snapshots;
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "conflux-fuzz-snapshot-";

struct Dir {
    snapshots: Snapshots,
    raw: PathBuf,
    meta: Vec<u8>,
}

/// Removes the directories earlier runs left behind (their process is gone).
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(PREFIX)
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn dir() -> &'static Dir {
    static DIR: OnceLock<Dir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        remove_stale(&root);
        let dir = root.join(format!("{PREFIX}{}", std::process::id()));
        let snapshots = Snapshots::open(Arc::new(conflux_engine::io::StdIo), &dir).expect("snapshot dir");
        let raw = snapshots.dir().join(conflux_engine::format::snapshot::file_name(2, 2));
        Dir { snapshots, raw, meta: empty_snapshot_meta() }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let d = dir();
    let path = match mode % 3 {
        0 => {
            std::fs::write(&d.raw, rest).expect("write the file");
            d.raw.clone()
        }
        1 => {
            let [lo, hi, rest @ ..] = rest else { return };
            let len = (u16::from_le_bytes([*lo, *hi]) as usize).min(rest.len());
            let (meta, body) = rest.split_at(len);
            write_snapshot(&d.snapshots, meta, body).expect("write a snapshot").path
        }
        _ => write_snapshot(&d.snapshots, &d.meta, rest).expect("write a snapshot").path,
    };
    if let Ok(store) = load_snapshot(&d.snapshots, &path) {
        // A store that loaded answers reads over all of it.
        let all =
            conflux::mvcc::RangeRequest { key: vec![0u8].into(), range_end: vec![0u8].into(), ..Default::default() };
        let _ = store.range(&all);
    }
});
