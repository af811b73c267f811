//! Test support shared by the engine's integration tests: a type config, a minimal state machine
//! for openraft's conformance suite, and helpers to build entries.
#![allow(dead_code, missing_docs)]

use std::io;
use std::path::Path;
use std::sync::Arc;

use conflux_engine::{Config, LogStore, PostcardCodec};
use futures_util::StreamExt;
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use tokio::sync::Mutex;

/// Application data: opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Blob(pub Vec<u8>);

impl std::fmt::Display for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    pub TC:
        D = Blob,
        R = u64,
);

pub type Codec = PostcardCodec<TC>;
pub type Store = LogStore<TC, Codec>;
pub type Entry = <TC as openraft::RaftTypeConfig>::Entry;

/// A normal entry at `index` (term `term`, leader node 1) carrying `data`.
pub fn entry(term: u64, index: u64, data: Vec<u8>) -> Entry {
    let lid = openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 };
    Entry::new(openraft::LogId::new(lid, index), EntryPayload::Normal(Blob(data)))
}

pub fn log_id(term: u64, index: u64) -> LogIdOf<TC> {
    openraft::LogId::new(openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 }, index)
}

/// Deterministic payload for entry `index`: its bytes can be checked after reopen.
pub fn payload(index: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// The I/O backend the suites run on: `CONFLUX_ENGINE_IO=uring` runs every engine suite on the
/// io_uring backend (the test script runs them once per backend), anything else or unset on the
/// sync one. A requested backend that is unavailable fails the test with the probe's reason.
pub fn base_io() -> Arc<dyn conflux_engine::io::Io> {
    use conflux_engine::io::{IoMode, backend};
    let mode = match std::env::var("CONFLUX_ENGINE_IO").as_deref() {
        Ok("uring") => IoMode::Uring,
        Ok("sync") | Err(_) => IoMode::Sync,
        Ok(other) => panic!("CONFLUX_ENGINE_IO={other:?}: expected uring or sync"),
    };
    backend(mode).unwrap_or_else(|e| panic!("CONFLUX_ENGINE_IO: {e}")).0
}

/// `Config::default()` on the suites' backend.
pub fn default_config() -> Config {
    Config { io: base_io(), ..Config::default() }
}

pub fn small_config() -> Config {
    // Small chunks: appends of a few entries already go to the writer in several pieces.
    Config {
        io: base_io(),
        segment_bytes: 64 << 10,
        max_entry_bytes: 16 << 10,
        tail_cache_bytes: 8 << 10,
        append_chunk_bytes: 2 << 10,
        ..Config::default()
    }
}

pub fn open(dir: &Path, config: Config) -> Store {
    Store::open(dir, config).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Append and wait for durability.
pub async fn append_sync(store: &mut Store, entries: Vec<Entry>) -> Result<(), io::Error> {
    use openraft::storage::RaftLogStorageExt;
    store.blocking_append(entries).await.map_err(io::Error::other)
}

// ----- a minimal state machine for the conformance suite ---------------------------------------

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct SmData {
    pub last_applied: Option<LogIdOf<TC>>,
    pub membership: StoredMembershipOf<TC>,
    pub sum: u64,
}

pub type StoredSnapshot = (SnapshotMetaOf<TC>, Vec<u8>);

#[derive(Debug, Default)]
pub struct MemSm {
    pub data: Arc<Mutex<SmData>>,
    pub snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl RaftSnapshotBuilder<TC> for MemSm {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TC, Vec<u8>>, io::Error> {
        let d = self.data.lock().await.clone();
        let bytes = postcard::to_stdvec(&d).map_err(io::Error::other)?;
        let meta = SnapshotMetaOf::<TC> { last_log_id: d.last_applied, last_membership: d.membership.clone() };
        *self.snapshot.lock().await = Some((meta.clone(), bytes.clone()));
        Ok(SnapshotOf::<TC, Vec<u8>> { meta, snapshot: bytes })
    }
}

impl RaftStateMachine<TC> for MemSm {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = MemSm;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<TC>>, StoredMembershipOf<TC>), io::Error> {
        let d = self.data.lock().await;
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures_util::Stream<Item = Result<EntryResponder<TC>, io::Error>> + Unpin + OptionalSend,
    {
        let mut d = self.data.lock().await;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            d.last_applied = Some(entry.log_id());
            if let Some(m) = entry.get_membership() {
                d.membership = StoredMembershipOf::<TC>::new(Some(entry.log_id()), m);
            }
            if let EntryPayload::Normal(data) = &entry.payload {
                d.sum += data.0.len() as u64;
            }
            if let Some(r) = responder {
                r.send(d.sum);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        MemSm { data: self.data.clone(), snapshot: self.snapshot.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<TC>, snapshot: Vec<u8>) -> Result<(), io::Error> {
        let d: SmData = postcard::from_bytes(&snapshot).map_err(io::Error::other)?;
        *self.data.lock().await = d;
        *self.snapshot.lock().await = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<TC, Vec<u8>>>, io::Error> {
        Ok(self.snapshot.lock().await.clone().map(|(meta, snapshot)| SnapshotOf::<TC, Vec<u8>> { meta, snapshot }))
    }
}

// ----- checks ---------------------------------------------------------------------------------

/// Payload length used for entry `index` in tests that check content after a crash.
pub fn len_for(index: u64) -> usize {
    1 + (index.wrapping_mul(2_654_435_761) % 700) as usize
}

/// The entry the crash and power-loss tests write at `index`.
pub fn test_entry(index: u64) -> Entry {
    entry(1, index, payload(index, len_for(index)))
}

/// Check that entries `from..to` are exactly the ones [`test_entry`] makes, with no gaps.
pub fn check_entries(store: &Store, from: u64, to: u64) {
    let got = store.read(from..to).unwrap_or_else(|e| panic!("read {from}..{to}: {e}"));
    assert_eq!(got.len() as u64, to - from, "entries {from}..{to}: got {}", got.len());
    for (k, e) in got.iter().enumerate() {
        let i = from + k as u64;
        assert_eq!(e.log_id.index, i, "gap or reorder at {i}");
        match &e.payload {
            EntryPayload::Normal(Blob(b)) => assert_eq!(b, &payload(i, len_for(i)), "entry {i} content differs"),
            other => panic!("entry {i}: unexpected payload {other:?}"),
        }
    }
}

/// Append `entries` with a completion that records the result in `acked` (index of the last
/// entry) when durable.
pub fn append_tracked(
    store: &mut Store,
    entries: Vec<Entry>,
    acked: &Arc<std::sync::Mutex<Vec<(u64, bool)>>>,
) -> conflux_engine::Result<()> {
    let last = entries.last().map(|e| e.log_id.index).unwrap_or(0);
    let acked = acked.clone();
    store.append_with(entries, Box::new(move |r| acked.lock().unwrap().push((last, r.is_ok()))))
}

/// Highest index whose append was acknowledged as durable.
pub fn max_acked(acked: &Arc<std::sync::Mutex<Vec<(u64, bool)>>>) -> Option<u64> {
    acked.lock().unwrap().iter().filter(|(_, ok)| *ok).map(|(i, _)| *i).max()
}

/// Copy a directory tree (test fixtures).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// Segment files of a data directory, oldest first.
pub fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Offsets of the records in a segment file, read by walking the framing (test-side, no engine code).
pub fn record_offsets(seg: &Path) -> Vec<(u64, u32)> {
    let b = std::fs::read(seg).unwrap();
    let mut off = 32usize;
    let mut out = Vec::new();
    while off + 24 <= b.len() {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
        if len == 0 {
            break;
        }
        out.push((off as u64, len));
        off += (24 + len as usize).div_ceil(8) * 8;
    }
    out
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}
