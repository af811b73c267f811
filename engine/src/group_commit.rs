//! The writer thread: group commit.
//!
//! `append` queues [`Job`]s. This thread blocks for the first job, drains everything else already
//! queued (up to `max_batch_bytes`), performs the writes in queue order — runs of contiguous
//! writes to one file become one vectored write — then fdatasyncs every file it touched once,
//! syncs the directory when files were created or removed, and only then completes every
//! callback of the batch, in order. A lone appender pays one fsync; N concurrent appends share
//! one.
//!
//! A failed write or sync poisons the store ([`Poison`]): the kernel may have dropped the dirty
//! pages, so retrying could report success for lost data. Every callback of the failing batch
//! and of every later job completes with the error.

use std::io::IoSlice;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::error::Error;
use crate::io::{Io, IoFile};
use crate::stats::Stats;

/// Writes at least this large get their writeback started at once (see [`IoFile::start_writeback`]).
const WRITEBACK_MIN_BYTES: u64 = 256 << 10;

/// A callback run once the jobs queued before it are durable (or have failed).
pub(crate) type Completion = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// Work for the writer thread.
pub(crate) enum Job {
    /// Write `data` at `offset` of `file`.
    Write { file: Arc<dyn IoFile>, path: Arc<PathBuf>, offset: u64, data: Bytes },
    /// A file was created or renamed in this directory: sync it before completing.
    SyncDir(PathBuf),
    /// Remove a file (made durable by syncing its directory before completing).
    Remove(PathBuf),
    /// Everything queued before is durable: raise the durable mark to `durable_end`, then run.
    Complete { durable_end: Option<u64>, done: Completion },
    /// Finish what is queued and stop.
    Shutdown,
}

/// Linux's ENOSPC ("No space left on device").
const ENOSPC: i32 = libc::ENOSPC;

/// The store-wide poison flag, set by the first failed write or sync.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    flag: AtomicBool,
    reason: Mutex<Option<String>>,
    /// A failure was the disk being full (ENOSPC), so the node can raise its NOSPACE alarm.
    no_space: AtomicBool,
}

impl Poison {
    /// The message for a failure about to poison the store; notes whether it was ENOSPC.
    pub fn describe(&self, e: Error) -> String {
        self.note(&e);
        e.to_string()
    }

    /// [`Poison::describe`] without taking the error.
    pub fn describe_ref(&self, e: &Error) -> String {
        self.note(e);
        e.to_string()
    }

    /// Note whether `e` is the disk being full.
    pub fn note(&self, e: &Error) {
        if let Error::Io { source, .. } = e
            && (source.raw_os_error() == Some(ENOSPC) || source.kind() == std::io::ErrorKind::StorageFull)
        {
            self.no_space.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a failure that poisoned (or is poisoning) the store was ENOSPC.
    pub fn no_space(&self) -> bool {
        self.no_space.load(Ordering::Acquire)
    }

    pub fn set(&self, reason: String) {
        let mut r = self.reason.lock();
        if r.is_none() {
            tracing::error!(%reason, "log store poisoned; all further writes will fail");
            *r = Some(reason);
        }
        self.flag.store(true, Ordering::SeqCst);
    }

    pub fn check(&self) -> Result<(), Error> {
        if self.flag.load(Ordering::Acquire) {
            Err(Error::Poisoned(self.reason.lock().clone().unwrap_or_default()))
        } else {
            Ok(())
        }
    }
}

pub(crate) struct Writer {
    pub rx: Receiver<Job>,
    pub io: Arc<dyn Io>,
    pub poison: Arc<Poison>,
    pub durable_end: Arc<AtomicU64>,
    pub max_batch_bytes: usize,
    pub stats: Arc<Stats>,
}

impl Writer {
    pub fn run(self) {
        let mut batch: Vec<Job> = Vec::new();
        loop {
            let Ok(first) = self.rx.recv() else { return };
            let mut bytes = job_bytes(&first);
            batch.push(first);
            bytes = self.drain(&mut batch, bytes);
            let mut st = BatchState::new(self.poison.check().err().map(|e| e.to_string()));
            self.write_phase(&mut st, &mut batch);
            // Appends that arrived while this batch was being written join it before the sync:
            // one fdatasync covers them too. The writer only waits for more while nobody waits
            // for it: a large append arrives in chunks (see `LogStore::append_with`), and its
            // first chunks are written (and their writeback started) while the caller is still
            // checksumming the next ones; syncing before its completion arrives would only add
            // an fdatasync.
            while !st.shutdown && st.failure.is_none() && bytes < self.max_batch_bytes {
                bytes = self.drain(&mut batch, bytes);
                if batch.is_empty() {
                    if !st.completions.is_empty() || st.written == 0 {
                        break;
                    }
                    match self.rx.recv() {
                        Ok(j) => {
                            bytes += job_bytes(&j);
                            batch.push(j);
                        }
                        Err(_) => break,
                    }
                }
                self.write_phase(&mut st, &mut batch);
            }
            if self.finish(st) {
                return;
            }
        }
    }

    /// Take what is queued, up to `max_batch_bytes` in all; returns the bytes taken so far.
    fn drain(&self, batch: &mut Vec<Job>, mut bytes: usize) -> usize {
        while bytes < self.max_batch_bytes {
            match self.rx.try_recv() {
                Ok(j) => {
                    bytes += job_bytes(&j);
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        bytes
    }

    /// Perform the writes and removals of `batch` (draining it), setting its completions aside
    /// in `st` for [`Writer::finish`].
    fn write_phase(&self, st: &mut BatchState, batch: &mut Vec<Job>) {
        let BatchState { completions, touched, dirs, failure, shutdown, written, writes, synced_early, removed_dirs } =
            st;

        // Completions and directory syncs do no I/O of their own: set them aside, so the writes
        // of consecutive appends meet and become one vectored write.
        let mut ops: Vec<Job> = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            match job {
                Job::Write { .. } | Job::Remove(_) => ops.push(job),
                Job::SyncDir(d) => {
                    if !dirs.contains(&d) {
                        dirs.push(d);
                    }
                }
                Job::Complete { durable_end, done } => completions.push((durable_end, done)),
                Job::Shutdown => *shutdown = true,
            }
        }
        let mut ops = ops.into_iter().peekable();
        while let Some(op) = ops.next() {
            if failure.is_some() {
                break;
            }
            match op {
                Job::Write { file, path, offset, data } => {
                    // Removals queued before this write (a truncation dropping whole segments)
                    // must be durable first: the zeros that end the log in an older segment
                    // must never be on disk while a newer segment is still there.
                    if !removed_dirs.is_empty() {
                        for d in removed_dirs.drain(..) {
                            if let Err(e) = self.io.sync_dir(&d) {
                                *failure = Some(Poison::describe(&self.poison, Error::io("fsync directory", &d, e)));
                            }
                        }
                        if failure.is_some() {
                            continue;
                        }
                    }
                    // Coalesce the following writes that continue this one in the same file.
                    let mut run: Vec<Bytes> = vec![data];
                    let mut end = offset + run[0].len() as u64;
                    while let Some(Job::Write { file: f2, offset: o2, .. }) = ops.peek() {
                        if !Arc::ptr_eq(f2, &file) || *o2 != end {
                            break;
                        }
                        let Some(Job::Write { data: d2, .. }) = ops.next() else { unreachable!() };
                        end += d2.len() as u64;
                        run.push(d2);
                    }
                    // Moving on to another file (a segment roll): make the previous one durable
                    // first, so a later segment never holds records that the one before lacks.
                    // Recovery relies on this to tell a log torn across a roll from damage.
                    if let Some((prev, prev_path)) = touched.last()
                        && !Arc::ptr_eq(prev, &file)
                        && !synced_early.iter().any(|f| Arc::ptr_eq(f, prev))
                    {
                        let t = Instant::now();
                        if let Err(e) = prev.sync_data() {
                            *failure =
                                Some(Poison::describe(&self.poison, Error::io("fdatasync", prev_path.as_ref(), e)));
                            continue;
                        }
                        self.stats.record_fsync(t.elapsed());
                        synced_early.push(prev.clone());
                    }
                    let slices: Vec<IoSlice<'_>> = run.iter().map(|b| IoSlice::new(b)).collect();
                    match crate::io::write_all_vectored_at(&*file, &slices, offset) {
                        Ok(()) => {
                            if end - offset >= WRITEBACK_MIN_BYTES {
                                // Start writing these pages to the device now, so the batch's
                                // fdatasync finds less to do. Only a hint: durability still
                                // comes from that fdatasync, and an error here is ignored (the
                                // fdatasync reports any real one).
                                let _ = file.start_writeback(offset, end - offset);
                            }
                            *written += end - offset;
                            *writes += 1;
                            synced_early.retain(|f| !Arc::ptr_eq(f, &file));
                            if let Some(i) = touched.iter().position(|(f, _)| Arc::ptr_eq(f, &file)) {
                                // Keep `touched` ordered by last write, so the check above sees
                                // the file written just before.
                                let t = touched.remove(i);
                                touched.push(t);
                            } else {
                                touched.push((file, path));
                            }
                        }
                        Err(e) => *failure = Some(Poison::describe(&self.poison, Error::io("write", path.as_ref(), e))),
                    }
                }
                Job::Remove(p) => {
                    match self.io.remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => *failure = Some(Poison::describe(&self.poison, Error::io("remove", &p, e))),
                    }
                    if let Some(d) = p.parent().map(|d| d.to_path_buf()) {
                        if !dirs.contains(&d) {
                            dirs.push(d.clone());
                        }
                        if !removed_dirs.contains(&d) {
                            removed_dirs.push(d);
                        }
                    }
                }
                _ => unreachable!("only writes and removals are I/O operations"),
            }
        }
    }

    /// Sync what the batch touched, then complete its callbacks; returns true when a shutdown
    /// was requested.
    fn finish(&self, st: BatchState) -> bool {
        let BatchState {
            completions,
            touched,
            dirs,
            mut failure,
            shutdown,
            written,
            writes,
            synced_early,
            removed_dirs: _,
        } = st;
        if failure.is_none() {
            for (f, path) in &touched {
                if synced_early.iter().any(|s| Arc::ptr_eq(s, f)) {
                    continue; // synced before the writer moved to another file, not written since
                }
                let t = Instant::now();
                if let Err(e) = f.sync_data() {
                    failure = Some(Poison::describe(&self.poison, Error::io("fdatasync", path.as_ref(), e)));
                    break;
                }
                self.stats.record_fsync(t.elapsed());
            }
        }
        if failure.is_none() {
            for d in &dirs {
                if let Err(e) = self.io.sync_dir(d) {
                    failure = Some(Poison::describe(&self.poison, Error::io("fsync directory", d, e)));
                    break;
                }
            }
        }

        match failure {
            Some(reason) => {
                self.poison.set(reason);
                for (_, done) in completions {
                    done(Err(self.poison.check().expect_err("just poisoned")));
                }
            }
            None => {
                self.stats.record_batch(completions.len() as u64, written, writes);
                for (end, done) in completions {
                    if let Some(end) = end {
                        self.durable_end.fetch_max(end, Ordering::AcqRel);
                    }
                    done(Ok(()));
                }
            }
        }
        shutdown
    }
}

/// One group commit in the making: what its writes touched and who waits for it.
struct BatchState {
    completions: Vec<(Option<u64>, Completion)>,
    touched: Vec<(Arc<dyn IoFile>, Arc<PathBuf>)>,
    dirs: Vec<PathBuf>,
    failure: Option<String>,
    shutdown: bool,
    written: u64,
    writes: u64,
    synced_early: Vec<Arc<dyn IoFile>>,
    removed_dirs: Vec<PathBuf>,
}

impl BatchState {
    fn new(failure: Option<String>) -> BatchState {
        BatchState {
            completions: Vec::new(),
            touched: Vec::new(),
            dirs: Vec::new(),
            failure,
            shutdown: false,
            written: 0,
            writes: 0,
            synced_early: Vec::new(),
            removed_dirs: Vec::new(),
        }
    }
}

fn job_bytes(j: &Job) -> usize {
    match j {
        Job::Write { data, .. } => data.len(),
        _ => 0,
    }
}
