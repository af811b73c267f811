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

pub fn small_config() -> Config {
    Config { segment_bytes: 64 << 10, max_entry_bytes: 16 << 10, tail_cache_bytes: 8 << 10, ..Config::default() }
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

#[derive(Debug, Default)]
pub struct MemSm {
    pub data: Arc<Mutex<SmData>>,
    pub snapshot: Arc<Mutex<Option<(SnapshotMetaOf<TC>, Vec<u8>)>>>,
}

impl RaftSnapshotBuilder<TC> for MemSm {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TC, Vec<u8>>, io::Error> {
        let d = self.data.lock().await.clone();
        let bytes = postcard::to_stdvec(&d).map_err(io::Error::other)?;
        let meta = SnapshotMetaOf::<TC> {
            last_log_id: d.last_applied,
            last_membership: d.membership.clone(),
        };
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
