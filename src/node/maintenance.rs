//! The Maintenance work behind [`super::api`]'s Snapshot, Defragment and Status: a backup stream
//! of a fresh snapshot, reclaiming disk, and the on-disk size. (Alarm, Hash and the rest live
//! elsewhere.)
//!
//! - **Snapshot** streams the member's snapshot file, built by the Raft snapshot builder at (or
//!   after) everything applied when the call came, in the backup framing of [`crate::backup`].
//! - **Defragment** removes versions below the compacted revision, builds a snapshot, purges the
//!   log up to it and deletes snapshot files older than it, then logs what it reclaimed.
//! - **Status** reports the data directory's bytes on disk as `db_size`.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use conflux_engine::snapshot::SnapshotReader;
use openraft::async_runtime::WatchReceiver;
use tonic::Status;

use super::Core;
use super::proto::etcdserverpb as pb;
use crate::backup::framing::Chunks;

/// How long a Snapshot or Defragment call waits for a snapshot to be built.
pub const SNAPSHOT_BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long Defragment waits for Raft to purge the log (the purge goes on after the answer).
/// With the wait below, the call stays within etcdctl's default 5 s command timeout.
const PURGE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Defragment waits for the engine to delete purged segment files.
const SEGMENT_DELETE_WAIT: Duration = Duration::from_secs(1);
/// How often a trigger is repeated while a snapshot is awaited (a trigger during another build
/// is ignored by Raft).
const RETRIGGER: Duration = Duration::from_secs(1);

/// The stream a Snapshot call answers with.
pub type SnapshotStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<pb::SnapshotResponse, Status>> + Send + 'static>>;

fn snapshot_index(meta: &crate::types::SnapshotMeta) -> u64 {
    meta.last_log_id.as_ref().map(|l| l.index).unwrap_or(0)
}

/// Open (checked whole) a snapshot that covers every entry this member had applied when called:
/// the current one if it does, else one the Raft snapshot builder makes now (same consistent
/// point as any Raft snapshot: the store's published revision and the last applied log id,
/// taken together).
pub(crate) async fn fresh_snapshot(core: &Core) -> Result<SnapshotReader, Status> {
    let target = core.sm.applied_index();
    let deadline = Instant::now() + SNAPSHOT_BUILD_TIMEOUT;
    let mut triggered: Option<Instant> = None;
    loop {
        if let Some((meta, info)) = core.sm.current_snapshot()
            && snapshot_index(&meta) >= target
        {
            let snapshots = core.sm.snapshots().clone();
            let path = info.path.clone();
            let opened = tokio::task::spawn_blocking(move || snapshots.open_reader(&path))
                .await
                .map_err(|e| Status::internal(format!("opening the snapshot: {e}")))?;
            match opened {
                Ok(r) => return Ok(r),
                // A newer snapshot replaced it meanwhile: take that one.
                Err(conflux_engine::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Status::internal(format!("etcdserver: snapshot: {e}"))),
            }
        }
        if let Err(f) = &core.raft.metrics().borrow_watched().running_state {
            return Err(Status::unavailable(format!("etcdserver: server stopped: {f}")));
        }
        if triggered.is_none_or(|t| t.elapsed() >= RETRIGGER) {
            core.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| Status::unavailable(format!("etcdserver: server stopped: {e}")))?;
            triggered = Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return Err(Status::deadline_exceeded("etcdserver: timed out building a snapshot"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stream `reader`'s file in the backup framing: chunks with the bytes still to come, then one
/// message with the SHA-256 of the payload.
pub(crate) fn snapshot_stream(reader: SnapshotReader) -> SnapshotStream {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let path = reader.path().to_path_buf();
        let mut chunks = Chunks::new(reader.raw_file(), reader.file_len());
        let total = chunks.total();
        loop {
            let msg = match chunks.next_chunk() {
                Ok(Some((blob, remaining_bytes))) => {
                    pb::SnapshotResponse { header: None, remaining_bytes, blob: blob.into() }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "reading the snapshot for a backup");
                    let _ = tx.blocking_send(Err(Status::internal(format!("etcdserver: reading snapshot: {e}"))));
                    return;
                }
            };
            if tx.blocking_send(Ok(msg)).is_err() {
                tracing::info!(path = %path.display(), "backup stream closed by the client");
                return;
            }
        }
        let sha = chunks.finish();
        let last = pb::SnapshotResponse { header: None, remaining_bytes: 0, blob: sha.to_vec().into() };
        if tx.blocking_send(Ok(last)).is_ok() {
            tracing::info!(
                path = %path.display(),
                bytes = total,
                sha256 = %crate::backup::framing::hex(&sha),
                took = ?started.elapsed(),
                "sent a snapshot to a client"
            );
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// What a data directory holds on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes of every file (their lengths; segments count whole, as preallocated).
    pub bytes: u64,
    /// Log segment files.
    pub segments: u64,
    /// Finished snapshot files.
    pub snapshots: u64,
}

/// Measure `dir` (missing files, as between a listing and a stat, count as gone).
pub fn disk_usage(dir: &Path) -> DiskUsage {
    fn walk(dir: &Path, u: &mut DiskUsage) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(&e.path(), u);
                continue;
            }
            u.bytes += meta.len();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".seg") {
                u.segments += 1;
            } else if name.ends_with(".snap.zst") {
                u.snapshots += 1;
            }
        }
    }
    let mut u = DiskUsage::default();
    walk(dir, &mut u);
    u
}

/// Segment files in `log_dir` holding only entries at or below `upto`: each but the newest ends
/// where the next begins (files are named by their first index).
fn purgeable_segments(log_dir: &Path, upto: u64) -> usize {
    let Ok(entries) = std::fs::read_dir(log_dir) else { return 0 };
    let mut firsts: Vec<u64> =
        entries.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok()).collect();
    firsts.sort_unstable();
    firsts.windows(2).filter(|w| w[1] <= upto.saturating_add(1)).count()
}

/// The member's data directory.
pub(crate) fn data_dir(core: &Core) -> PathBuf {
    let snaps = core.sm.snapshots().dir();
    snaps.parent().unwrap_or(snaps).to_path_buf()
}

/// What a Defragment call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefragReport {
    /// Versions below the compacted revision removed from the store.
    pub versions_removed: usize,
    /// The snapshot's log index the log was purged up to.
    pub snapshot_index: u64,
    /// Whether Raft reported the purge done within the wait.
    pub purged: bool,
    /// Stale snapshot files deleted.
    pub stale_snapshots_removed: usize,
    /// The data directory before.
    pub before: DiskUsage,
    /// And after (segment files are deleted by the log engine right after the purge point is
    /// durable, so a few may still be going).
    pub after: DiskUsage,
}

/// Reclaim what can be reclaimed on this member (etcd's Defragment is per member too).
pub(crate) async fn defragment(core: &Core) -> Result<DefragReport, Status> {
    let started = Instant::now();
    let dir = data_dir(core);
    let before = disk_usage(&dir);
    // 1. Versions below the compacted revision, so the snapshot below no longer carries them.
    let store = core.sm.store();
    let versions_removed = tokio::task::spawn_blocking(move || store.compact_physically())
        .await
        .map_err(|e| Status::internal(format!("physical compaction: {e}")))?;
    // 2. A snapshot of everything applied.
    let reader = fresh_snapshot(core).await?;
    drop(reader);
    let snapshot_index = core.sm.current_snapshot().map(|(m, _)| snapshot_index(&m)).unwrap_or(0);
    // 3. The log up to it (Raft keeps whatever a replication still reads, and purges it after).
    core.raft
        .trigger()
        .purge_log(snapshot_index)
        .await
        .map_err(|e| Status::unavailable(format!("etcdserver: server stopped: {e}")))?;
    let purged = core
        .raft
        .wait(Some(PURGE_TIMEOUT))
        .metrics(|m| m.purged.as_ref().is_some_and(|p| p.index >= snapshot_index), "log purged")
        .await
        .is_ok();
    // 4. Snapshot files older than the current one.
    let sm = core.sm.clone();
    let stale_snapshots_removed = tokio::task::spawn_blocking(move || sm.remove_stale_snapshots())
        .await
        .map_err(|e| Status::internal(format!("removing stale snapshots: {e}")))?
        .map_err(|e| Status::internal(format!("etcdserver: removing stale snapshots: {e}")))?;
    // The engine deletes purged segments right after the purge point is durable; wait (a little)
    // for the ones wholly at or below the snapshot, so the report says what is on disk.
    if purged {
        let log_dir = dir.join(conflux_engine::LOG_DIR);
        let settle = Instant::now() + SEGMENT_DELETE_WAIT;
        while purgeable_segments(&log_dir, snapshot_index) > 0 && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let after = disk_usage(&dir);
    let report = DefragReport { versions_removed, snapshot_index, purged, stale_snapshots_removed, before, after };
    tracing::info!(
        versions_removed,
        snapshot_index,
        log_purged = purged,
        stale_snapshots_removed,
        segments_before = before.segments,
        segments_after = after.segments,
        bytes_before = before.bytes,
        bytes_after = after.bytes,
        took = ?started.elapsed(),
        "defragmented: compacted versions removed, snapshot built, log purged up to it, stale snapshots deleted"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purgeable_segments_are_those_ending_at_or_below_the_point() {
        let dir = tempfile::tempdir().unwrap();
        for name in
            ["00000000000000000000.seg", "00000000000000000019.seg", "00000000000000000035.seg", "spare-1.seg.tmp"]
        {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        // 0..=18, 19..=34, 35..: the first ends at 18, the second at 34; the newest never goes.
        assert_eq!(purgeable_segments(dir.path(), 17), 0);
        assert_eq!(purgeable_segments(dir.path(), 18), 1);
        assert_eq!(purgeable_segments(dir.path(), 34), 2);
        assert_eq!(purgeable_segments(dir.path(), 1000), 2);
        assert_eq!(purgeable_segments(&dir.path().join("missing"), 5), 0);
    }
}
