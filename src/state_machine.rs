//! openraft's `RaftStateMachine` over the MVCC store.
//!
//! - `apply` drains whatever entries are ready (not one await per entry), applies them to the
//!   store, publishes the batch at once, then answers every responder.
//! - Snapshots are built from one published revision while apply goes on, streamed through zstd
//!   into the engine's snapshot container (`conflux_engine::snapshot`); installing one decodes it
//!   into a fresh store and swaps it in whole.
//! - At open, the newest snapshot is loaded; openraft re-applies the log after it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use conflux_engine::snapshot::{SnapshotInfo, Snapshots};
use futures_util::{FutureExt, Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use parking_lot::Mutex;

use crate::mvcc::snapshot::StoreMeta;
use crate::mvcc::{DEFAULT_MAX_TXN_OPS, Store};
use crate::types::{ApplyResult, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::watch_hub::{DEFAULT_RING_EVENTS, WatchHub};

/// What the snapshot container's `app_meta` holds: the store's own state at the snapshot point
/// (informational: the body is authoritative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppMeta {
    /// The revision the snapshot is at.
    pub revision: u64,
    /// The compacted revision at that point.
    pub compacted: u64,
    /// Live keys at `revision`.
    pub keys: u64,
}

/// Snapshot data handed to and from openraft: a finished, checked snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The file (in the snapshot directory).
    pub path: PathBuf,
}

/// State machine settings.
#[derive(Debug, Clone)]
pub struct SmConfig {
    /// zstd level for snapshots (1 fastest, 19 smallest). Default 3.
    pub snapshot_zstd_level: i32,
    /// Most operations in one transaction (etcd's `--max-txn-ops`). Default 128.
    pub max_txn_ops: usize,
    /// Most entries applied before publishing and answering. Default 1024.
    pub max_apply_batch: usize,
    /// Events the watch feed keeps for watchers to read (older ones are rebuilt from the
    /// store's history). Default 65536.
    pub watch_ring_events: usize,
    /// Test builds only (`failpoints`): puts of this key are applied with a changed value on
    /// this member (`CONFLUX_FAILPOINT_DIVERGE_KEY`, `src/failpoints.rs`). Ignored otherwise.
    pub diverge_key: Option<bytes::Bytes>,
}

impl Default for SmConfig {
    fn default() -> Self {
        SmConfig {
            snapshot_zstd_level: 3,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            max_apply_batch: 1024,
            watch_ring_events: DEFAULT_RING_EVENTS,
            diverge_key: None,
        }
    }
}

/// Why the state machine could not open or install.
#[derive(Debug, thiserror::Error)]
pub enum SmError {
    /// The engine refused a snapshot file (damaged, other version, I/O).
    #[error(transparent)]
    Engine(#[from] conflux_engine::Error),
    /// The snapshot's body does not decode.
    #[error("snapshot {path}: {source}", path = path.display())]
    Body {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: crate::mvcc::snapshot::SnapshotBodyError,
    },
    /// The snapshot's metadata does not decode.
    #[error("snapshot {path}: metadata does not decode: {reason}", path = path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<SmError> for io::Error {
    fn from(e: SmError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

struct Inner {
    store: ArcSwap<Store>,
    applied: Mutex<Applied>,
    /// Index of the last applied entry (0 before any), for read-index waits.
    applied_index: AtomicU64,
    applied_notify: tokio::sync::Notify,
    current: Mutex<Option<(SnapshotMeta, SnapshotInfo)>>,
    snapshots: Snapshots,
    config: SmConfig,
    compactor: crossbeam_channel::Sender<()>,
    hub: Arc<WatchHub>,
}

/// The state machine. Clones share state; [`StateMachine::store`] gives lock-free readers.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").field("revision", &self.store().revision()).finish()
    }
}

fn decode_meta(path: &Path, bytes: &[u8]) -> Result<SnapshotMeta, SmError> {
    postcard::from_bytes(bytes).map_err(|e| SmError::Meta { path: path.to_path_buf(), reason: e.to_string() })
}

pub(crate) fn load(snapshots: &Snapshots, path: &Path) -> Result<(SnapshotMeta, Store, StoreMeta), SmError> {
    let reader = snapshots.open_reader(path)?;
    let meta = decode_meta(path, reader.raft_meta())?;
    let mut body = reader.body()?;
    let (store, sm) =
        Store::read_snapshot(&mut body).map_err(|source| SmError::Body { path: path.to_path_buf(), source })?;
    Ok((meta, store, sm))
}

impl StateMachine {
    /// Open the state machine of data directory `data_dir`: the newest snapshot if there is one
    /// (the log after it is re-applied by openraft), else an empty store.
    ///
    /// # Errors
    /// A damaged newest snapshot is refused, naming the file.
    pub fn open(
        data_dir: &Path,
        io: Arc<dyn conflux_engine::io::Io>,
        config: SmConfig,
    ) -> Result<StateMachine, SmError> {
        let snapshots = Snapshots::open(io, data_dir)?;
        let (store, applied, current) = match snapshots.latest()? {
            Some(info) => {
                let (meta, store, _) = load(&snapshots, &info.path)?;
                tracing::info!(path = %info.path.display(), revision = store.revision(), "state loaded from snapshot");
                let applied = Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
                (store, applied, Some((meta, info)))
            }
            None => (Store::new(), Applied { last_applied: None, membership: StoredMembership::default() }, None),
        };
        let applied_index = applied.last_applied.as_ref().map(|l| l.index).unwrap_or(0);
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        let hub = Arc::new(WatchHub::new(store.revision(), config.watch_ring_events));
        let inner = Arc::new(Inner {
            store: ArcSwap::from_pointee(store),
            applied: Mutex::new(applied),
            applied_index: AtomicU64::new(applied_index),
            applied_notify: tokio::sync::Notify::new(),
            current: Mutex::new(current),
            snapshots,
            config,
            compactor: tx,
            hub,
        });
        // Physical compaction runs here, off the apply path.
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("conflux-compactor".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    while rx.try_recv().is_ok() {}
                    let Some(inner) = weak.upgrade() else { return };
                    let store = inner.store.load_full();
                    drop(inner);
                    let removed = store.compact_physically();
                    tracing::debug!(removed, compacted = store.compacted_revision(), "physical compaction done");
                }
            })
            .map_err(|e| conflux_engine::Error::Io {
                op: "spawn compactor thread",
                path: data_dir.to_path_buf(),
                source: e,
            })?;
        Ok(StateMachine { inner })
    }

    /// The store, for lock-free reads (a snapshot install swaps it; hold the `Arc` for one read).
    pub fn store(&self) -> Arc<Store> {
        self.inner.store.load_full()
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        self.inner.applied_index.load(Ordering::Acquire)
    }

    /// Wait until entry `index` is applied.
    pub async fn wait_applied(&self, index: u64) {
        loop {
            let notified = self.inner.applied_notify.notified();
            if self.applied_index() >= index {
                return;
            }
            notified.await;
        }
    }

    /// The watch feed.
    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.inner.hub
    }

    /// The snapshot directory.
    pub fn snapshots(&self) -> &Snapshots {
        &self.inner.snapshots
    }

    /// The current snapshot (the newest built or installed), if any.
    pub fn current_snapshot(&self) -> Option<(SnapshotMeta, SnapshotInfo)> {
        self.inner.current.lock().clone()
    }

    /// Delete snapshot files older than the current snapshot (normally none are left: each new
    /// snapshot removes them, unless that failed). Returns how many went.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn remove_stale_snapshots(&self) -> Result<usize, conflux_engine::Error> {
        match self.current_snapshot() {
            Some((_, info)) => self.inner.snapshots.remove_older_than(&info),
            None => Ok(0),
        }
    }

    fn apply_batch(&self, batch: Vec<EntryResponder<TypeConfig>>) {
        let store = self.inner.store.load_full();
        let mut answers = Vec::with_capacity(batch.len());
        let mut last = None;
        let mut membership = None;
        let hub = &self.inner.hub;
        let mut events = hub.active().then(Vec::new);
        for (entry, responder) in batch {
            let log_id = entry.log_id();
            let result = match &entry.payload {
                EntryPayload::Normal(req) => {
                    #[cfg(feature = "failpoints")]
                    let diverged =
                        self.inner.config.diverge_key.as_ref().and_then(|k| crate::failpoints::diverge(req, k));
                    #[cfg(feature = "failpoints")]
                    let req = diverged.as_ref().unwrap_or(req);
                    ApplyResult::Write(store.apply_with_events(req, self.inner.config.max_txn_ops, events.as_mut()))
                }
                EntryPayload::Blank => ApplyResult::Noop { revision: store.working_revision() as i64 },
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(log_id), m.clone()));
                    ApplyResult::Noop { revision: store.working_revision() as i64 }
                }
            };
            last = Some(log_id);
            if let Some(r) = responder {
                answers.push((r, result));
            }
        }
        // Publish the batch and record how far it goes in one step, so a snapshot build sees a
        // revision and a log id that match.
        let compaction_moved = {
            let mut a = self.inner.applied.lock();
            hub.record(events, store.working_revision());
            let moved = store.publish();
            if let Some(m) = membership {
                a.membership = m;
            }
            if let Some(l) = &last {
                a.last_applied = Some(*l);
                self.inner.applied_index.store(l.index, Ordering::Release);
            }
            moved
        };
        self.inner.applied_notify.notify_waiters();
        hub.announce(store.revision());
        if compaction_moved {
            let _ = self.inner.compactor.send(());
        }
        for (r, result) in answers {
            r.send(result);
        }
    }

    /// Build a snapshot now (blocking: call from a blocking thread).
    fn build_blocking(&self) -> Result<(SnapshotMeta, SnapshotInfo), io::Error> {
        // Store, snapshot point (which holds off physical compaction) and applied log id, taken
        // together under the lock apply and install take to change them: they match.
        let store: Arc<Store>;
        let (point, meta, keys) = {
            let a = self.inner.applied.lock();
            store = self.inner.store.load_full();
            let point = store.snapshot_point();
            let meta = SnapshotMeta { last_log_id: a.last_applied, last_membership: a.membership.clone() };
            (point, meta, store.key_count())
        };
        let raft_meta = postcard::to_stdvec(&meta).map_err(io::Error::other)?;
        let (term, index) = meta.last_log_id.as_ref().map(|l| (l.leader_id.term, l.index)).unwrap_or((0, 0));
        let app_meta = postcard::to_stdvec(&AppMeta { revision: point.revision, compacted: point.compacted, keys })
            .map_err(io::Error::other)?;
        let mut w =
            self.inner.snapshots.create(term, index, &raft_meta, &app_meta, self.inner.config.snapshot_zstd_level)?;
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &mut w);
        let written = store.write_snapshot_from(&point, &mut buffered)?;
        buffered.flush()?;
        drop(buffered);
        drop(point);
        let info = w.finish()?;
        tracing::info!(path = %info.path.display(), revision = written.revision, versions = written.versions, raw = info.raw_bytes, file = info.file_bytes, "snapshot built");
        self.set_current(meta.clone(), info.clone())?;
        Ok((meta, info))
    }

    fn set_current(&self, meta: SnapshotMeta, info: SnapshotInfo) -> io::Result<()> {
        let mut cur = self.inner.current.lock();
        let newer = cur.as_ref().is_none_or(|(m, _)| m.last_log_id <= meta.last_log_id);
        if newer {
            *cur = Some((meta, info.clone()));
            drop(cur);
            // The new one is durable: older snapshot files go.
            self.inner.snapshots.remove_older_than(&info)?;
        }
        Ok(())
    }

    fn install_blocking(&self, meta: &SnapshotMeta, file: &SnapshotFile) -> Result<(), io::Error> {
        let (file_meta, store, sm) = load(&self.inner.snapshots, &file.path)?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot {} holds log id {:?}, but install was asked for {:?}",
                    file.path.display(),
                    file_meta.last_log_id,
                    meta.last_log_id
                ),
            ));
        }
        // Make the file ours (same directory: rename is durable via the container's own path).
        let (term, index) = meta.last_log_id.as_ref().map(|l| (l.leader_id.term, l.index)).unwrap_or((0, 0));
        let info = if file.path.parent() == Some(self.inner.snapshots.dir()) {
            SnapshotInfo { path: file.path.clone(), term, index, file_bytes: 0, raw_bytes: 0 }
        } else {
            let reader = self.inner.snapshots.open_reader(&file.path)?;
            self.inner.snapshots.receive(term, index, reader.raw_file())?
        };
        {
            let mut a = self.inner.applied.lock();
            let revision = store.revision();
            self.inner.store.store(Arc::new(store));
            self.inner.hub.reset(revision);
            a.last_applied = meta.last_log_id;
            a.membership = meta.last_membership.clone();
            self.inner.applied_index.store(index, Ordering::Release);
        }
        self.inner.applied_notify.notify_waiters();
        tracing::info!(path = %info.path.display(), revision = sm.revision, "snapshot installed");
        self.set_current(meta.clone(), info)
    }
}

/// Builds a snapshot on a blocking thread while apply goes on.
pub struct SnapshotBuilder {
    sm: StateMachine,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>, io::Error> {
        let sm = self.sm.clone();
        let (meta, info) =
            tokio::task::spawn_blocking(move || sm.build_blocking()).await.map_err(io::Error::other)??;
        Ok(openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> { meta, snapshot: SnapshotFile { path: info.path } })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let a = self.inner.applied.lock();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let max = self.inner.config.max_apply_batch;
        while let Some(first) = entries.next().await {
            let mut batch = vec![first?];
            // Take whatever else is ready without waiting.
            while batch.len() < max {
                match entries.next().now_or_never() {
                    Some(Some(item)) => batch.push(item?),
                    _ => break,
                }
            }
            self.apply_batch(batch);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { sm: self.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> Result<(), io::Error> {
        let sm = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || sm.install_blocking(&meta, &snapshot)).await.map_err(io::Error::other)?
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>>, io::Error> {
        Ok(self.inner.current.lock().as_ref().map(|(meta, info)| openraft::alias::SnapshotOf::<
            TypeConfig,
            SnapshotFile,
        > {
            meta: meta.clone(),
            snapshot: SnapshotFile { path: info.path.clone() },
        }))
    }
}
