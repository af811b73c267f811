//! The janitor thread: work that must stay off the append path — preallocating the next
//! segment, flushing and sealing the index of a full segment, deleting purged segments.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::config::Preallocate;
use crate::format::index as idxfmt;
use crate::io::Io;
use crate::segment::Segment;

pub(crate) enum JanitorJob {
    /// Make sure a preallocated spare segment file of `bytes` bytes is ready.
    PrepareSpare,
    /// The segment is full and its data durable: flush its index and mark it sealed.
    Seal {
        seg: Arc<Segment>,
        count: u64,
        last_crc: u32,
        /// The segment's seal generation when the seal was queued.
        generation: u64,
    },
    /// Delete these files (purged segments and their indexes).
    Delete(Vec<PathBuf>),
    Shutdown,
}

/// Reserve `bytes` for a new segment file, the way `mode` says.
pub(crate) fn preallocate(f: &dyn crate::io::IoFile, bytes: u64, mode: Preallocate) -> std::io::Result<()> {
    match mode {
        Preallocate::Fallocate => f.allocate(bytes),
        Preallocate::ZeroFill => {
            let zeros = vec![0u8; 1 << 20];
            let mut off = 0;
            while off < bytes {
                let n = (bytes - off).min(zeros.len() as u64) as usize;
                crate::io::write_all_at(f, &zeros[..n], off)?;
                off += n as u64;
            }
            Ok(())
        }
    }
}

/// Name a spare kept across a restart is given (the janitor numbers its own from 1).
pub(crate) const KEPT_SPARE: &str = "spare-0.seg.tmp";

pub(crate) struct Janitor {
    pub rx: Receiver<JanitorJob>,
    pub io: Arc<dyn Io>,
    pub log_dir: PathBuf,
    pub segment_bytes: u64,
    pub preallocate: Preallocate,
    /// The ready spare, taken by the appender when it rolls to a new segment.
    pub spare: Arc<Mutex<Option<PathBuf>>>,
}

impl Janitor {
    pub fn run(self) {
        // Each spare gets a new name, so a spare already handed to the appender (which renames
        // it into place) is never touched again.
        let mut spares = 0u64;
        while let Ok(job) = self.rx.recv() {
            match job {
                JanitorJob::PrepareSpare => {
                    if self.spare.lock().is_some() {
                        continue;
                    }
                    spares += 1;
                    match self.prepare_spare(spares) {
                        Ok(p) => *self.spare.lock() = Some(p),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not preallocate the next segment; it will be created when needed")
                        }
                    }
                }
                JanitorJob::Seal { seg, count, last_crc, generation } => {
                    let _sealing = seg.seal_lock.lock();
                    if seg.seal_generation.load(std::sync::atomic::Ordering::Acquire) != generation {
                        continue; // reopened by a truncation since: not full any more
                    }
                    let idx = &seg.index;
                    let res = idx.flush().and_then(|()| {
                        idx.write_header(&idxfmt::IndexHeader {
                            state: idxfmt::STATE_SEALED,
                            first_index: seg.first_index,
                            count,
                            last_crc,
                        });
                        idx.flush()
                    });
                    if let Err(e) = res {
                        // The index is derived data: at worst it is rebuilt at the next open.
                        tracing::warn!(path = %idx.path.display(), error = %e, "could not seal index");
                    }
                }
                JanitorJob::Delete(paths) => {
                    for p in paths {
                        match self.io.remove_file(&p) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => tracing::warn!(path = %p.display(), error = %e, "could not delete purged file"),
                        }
                    }
                }
                JanitorJob::Shutdown => return,
            }
        }
    }

    fn prepare_spare(&self, n: u64) -> std::io::Result<PathBuf> {
        let p = self.log_dir.join(format!("spare-{n}.seg.tmp"));
        let f = self.io.open(&p, true)?;
        f.set_len(0)?;
        preallocate(&*f, self.segment_bytes, self.preallocate)?;
        f.sync_data()?;
        Ok(p)
    }
}
