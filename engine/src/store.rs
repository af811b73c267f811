//! [`LogStore`]: the engine's openraft `RaftLogStorage`. It owns the appender state (where the
//! next record goes, the checksum chain), the writer thread (group commit) and the janitor thread.
//! Reader handles ([`LogReader`]) share the segments and the in-memory tail with it.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::Sender;
use futures_util::{Stream, StreamExt};
use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, RaftTypeConfig};
use parking_lot::{Mutex, RwLock};

use crate::codec::{CodecError, RaftCodec};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::{meta as metafmt, record, segment as segfmt};
use crate::group_commit::{Completion, Job, Poison, Writer};
use crate::io::IoFile;
use crate::janitor::{Janitor, JanitorJob};
use crate::recovery::{self, LOG_DIR};
use crate::segment::Segment;
use crate::shared::{MetaState, Shared};
use crate::stats::{Stats, StatsSnapshot};
use crate::tail::Tail;

/// The log store. Create with [`LogStore::open`]; hand it to openraft.
pub struct LogStore<C: RaftTypeConfig, K: RaftCodec<C>> {
    shared: Arc<Shared<C, K>>,
    tx: Sender<Job>,
    janitor_tx: Sender<JanitorJob>,
    writer: Option<JoinHandle<()>>,
    janitor: Option<JoinHandle<()>>,
    spare: Arc<Mutex<Option<PathBuf>>>,
    /// Segment appends go to, with the offset of the next record, the chain value and the index
    /// the next record in it must have.
    active: Option<Arc<Segment>>,
    next_offset: u64,
    last_crc: u32,
    active_next: u64,
    /// Index the next appended entry must have (when `last_log_id` is `Some`).
    next_index: u64,
    last_log_id: Option<LogIdOf<C>>,
    meta_file: Arc<dyn IoFile>,
    meta_path: Arc<PathBuf>,
    meta_seq: u64,
    meta_next_slot: u64,
    /// `save_committed` changed the committed id since the last meta write.
    committed_dirty: bool,
    /// Segments left by rolls in the append being placed, to seal after its writes.
    pending_seals: Vec<(Arc<Segment>, u64, u32, u64)>,
    /// Append buffers, reused once written.
    buffers: Arc<crate::buffers::BufPool>,
    /// Bookkeeping vectors of `append_with`, kept between calls: four fresh vectors per call
    /// were a measurable share of a single-entry append (glibc malloc/free).
    scratch: AppendScratch<C::Entry>,
}

/// See [`LogStore::append_with`].
struct AppendScratch<E> {
    /// Per record: (payload length, framed length).
    recs: Vec<(usize, usize)>,
    /// The entries, in order.
    items: Vec<E>,
    /// Per record: (chain value it was sealed with, its checksum).
    crcs: Vec<(u32, u32)>,
    /// Runs of records of one chunk in one segment: (segment, file offset, start, end).
    runs: Vec<(Arc<Segment>, u64, usize, usize)>,
}

impl<E> Default for AppendScratch<E> {
    fn default() -> Self {
        AppendScratch { recs: Vec::new(), items: Vec::new(), crcs: Vec::new(), runs: Vec::new() }
    }
}

/// A read handle: cheap to clone, reads entries appended by the store at once.
pub struct LogReader<C: RaftTypeConfig, K: RaftCodec<C>> {
    shared: Arc<Shared<C, K>>,
}

impl<C: RaftTypeConfig, K: RaftCodec<C>> LogReader<C, K> {
    /// Engine counters, as [`LogStore::stats`] (a reader is what outlives handing the store to
    /// openraft).
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Number of segment files in use.
    pub fn segment_count(&self) -> usize {
        self.shared.segments.read().len()
    }

    /// Whether the store is poisoned by a write that failed because the disk was full
    /// (ENOSPC): the node then raises its NOSPACE alarm through the other members.
    pub fn poisoned_by_full_disk(&self) -> bool {
        self.shared.poison.check().is_err() && self.shared.poison.no_space()
    }
}

impl<C: RaftTypeConfig, K: RaftCodec<C>> Clone for LogReader<C, K> {
    fn clone(&self) -> Self {
        LogReader { shared: self.shared.clone() }
    }
}

fn codec_err(e: CodecError) -> Error {
    Error::Codec(e)
}

impl<C: RaftTypeConfig, K: RaftCodec<C>> LogStore<C, K>
where
    C::Entry: Clone,
{
    /// Open (or create) the store in data directory `dir`.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process has it open; [`Error::ForeignFile`],
    /// [`Error::BadMagic`], [`Error::UnsupportedVersion`] for files that are not ours or not
    /// this version; [`Error::Corruption`] for damage that is not a torn tail; [`Error::Io`]
    /// (naming the path) for permission and other OS errors.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let io = config.io.clone();
        let log_index_of = |b: &[u8]| -> Result<u64> { Ok(K::decode_log_id(b).map_err(codec_err)?.index) };
        let rec = recovery::open(&*io, &dir, &config, &log_index_of)?;

        let decode_opt_log_id = |b: &Option<Vec<u8>>| -> Result<Option<LogIdOf<C>>> {
            b.as_deref().map(K::decode_log_id).transpose().map_err(codec_err)
        };
        let vote = rec.meta_body.vote.as_deref().map(K::decode_vote).transpose().map_err(codec_err)?;
        let committed = decode_opt_log_id(&rec.meta_body.committed)?;
        let purged = decode_opt_log_id(&rec.meta_body.purged)?;

        let last_entry_log_id = match &rec.last_payload {
            Some(p) => Some(K::decode_entry(p).map_err(codec_err)?.log_id()),
            None => None,
        };
        let purged_end = purged.as_ref().map(|p| p.index + 1).unwrap_or(0);
        let (next_index, last_log_id) = match (rec.next_index, last_entry_log_id) {
            (Some(n), Some(l)) if n > purged_end => (n, Some(l)),
            _ => (purged_end, purged.clone()),
        };

        let log_dir = dir.join(LOG_DIR);
        let poison = Arc::new(Poison::default());
        let durable_end = Arc::new(AtomicU64::new(next_index));
        let stats = Arc::new(Stats::default());
        let (active, next_offset, last_crc, active_next) = match rec.active {
            Some((seg, off, crc, next)) => (Some(seg), off, crc, next),
            None => (None, 0, 0, next_index),
        };
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            log_dir: log_dir.clone(),
            config: config.clone(),
            segments: RwLock::new(rec.segments),
            tail: RwLock::new(Tail::new(next_index)),
            meta: Mutex::new(MetaState { vote, committed, purged }),
            poison: poison.clone(),
            durable_end: durable_end.clone(),
            stats: stats.clone(),
            truncations: AtomicU64::new(0),
            _lock: rec.lock,
            _codec: PhantomData,
        });

        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = Writer { rx, io: io.clone(), poison, durable_end, max_batch_bytes: config.max_batch_bytes, stats };
        let writer = std::thread::Builder::new()
            .name("conflux-log-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io("spawn writer thread", &dir, e))?;
        let spare = Arc::new(Mutex::new(rec.spare.clone()));
        let (janitor_tx, jrx) = crossbeam_channel::unbounded();
        let janitor = Janitor {
            rx: jrx,
            io: io.clone(),
            log_dir: log_dir.clone(),
            segment_bytes: config.segment_bytes,
            preallocate: config.preallocate,
            spare: spare.clone(),
        };
        let janitor = std::thread::Builder::new()
            .name("conflux-log-janitor".into())
            .spawn(move || janitor.run())
            .map_err(|e| Error::io("spawn janitor thread", &dir, e))?;
        janitor_tx.send(JanitorJob::PrepareSpare).ok();

        Ok(LogStore {
            shared,
            tx,
            janitor_tx,
            writer: Some(writer),
            janitor: Some(janitor),
            spare,
            active,
            next_offset,
            last_crc,
            active_next,
            next_index,
            last_log_id,
            meta_file: rec.meta_file,
            meta_path: Arc::new(rec.meta_path),
            meta_seq: rec.meta_seq,
            meta_next_slot: rec.meta_next_slot,
            committed_dirty: false,
            pending_seals: Vec::new(),
            buffers: Arc::default(),
            scratch: AppendScratch::default(),
        })
    }

    /// A new read handle.
    pub fn reader(&self) -> LogReader<C, K> {
        LogReader { shared: self.shared.clone() }
    }

    /// Engine counters (fsyncs, batch sizes, bytes).
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Number of segment files in use.
    pub fn segment_count(&self) -> usize {
        self.shared.segments.read().len()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Entries in `range` (purged and not yet appended indexes are skipped).
    ///
    /// # Errors
    /// [`Error::Corruption`] when a record fails its checks.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<C::Entry>> {
        let (lo, hi) = bounds(range);
        self.shared.read_range(lo, hi)
    }

    /// Last purged and last appended log ids.
    pub fn log_state(&self) -> LogState<C> {
        let purged = self.shared.meta.lock().purged.clone();
        LogState { last_purged_log_id: purged.clone(), last_log_id: self.last_log_id.clone().or(purged) }
    }

    fn send(&self, job: Job) -> Result<()> {
        self.tx.send(job).map_err(|_| Error::WriterGone)
    }

    /// Queue a completion after everything queued so far and wait for it.
    async fn barrier(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Complete {
            durable_end: None,
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        })?;
        rx.await.map_err(|_| Error::WriterGone)?
    }

    /// Queue a durable write of the meta state and wait for it.
    async fn write_meta(&mut self) -> Result<()> {
        self.queue_meta()?;
        self.barrier().await
    }

    /// Start a new segment at `index`, retiring the active one.
    fn roll(&mut self, index: u64) -> Result<()> {
        if let Some(old) = self.active.take() {
            if self.active_next == old.first_index || self.active_next != index {
                // Empty, or not continued (every entry in it is purged): it must go, or the next
                // open would find a hole where its name says entries are.
                self.shared.segments.write().remove(&old.first_index);
                self.send(Job::Remove(old.index.path.to_path_buf()))?;
                self.send(Job::Remove(old.path.to_path_buf()))?;
            } else {
                // Sealed once its last records are durable: the seal is queued after this
                // append's writes (see `append_with`), never before them.
                let count = self.active_next - old.first_index;
                let generation = old.seal_generation.load(Ordering::Acquire);
                self.pending_seals.push((old, count, self.last_crc, generation));
            }
        }
        let io = &*self.shared.config.io;
        let spare = self.spare.lock().take();
        let config = &self.shared.config;
        let seg = Arc::new(Segment::create(
            io,
            &self.shared.log_dir,
            index,
            config.segment_bytes,
            config.preallocate,
            spare,
        )?);
        self.shared.segments.write().insert(index, seg.clone());
        self.send(Job::SyncDir(self.shared.log_dir.clone()))?;
        self.next_offset = segfmt::HEADER_LEN as u64;
        self.last_crc = seg.header_crc;
        self.active_next = index;
        self.active = Some(seg);
        let _ = self.janitor_tx.send(JanitorJob::PrepareSpare);
        Ok(())
    }

    /// Append entries: readable at once, durable when `done` is called with `Ok`.
    ///
    /// # Errors
    /// [`Error::EntryTooLarge`], [`Error::NonContiguousAppend`] and codec errors before anything
    /// is written; [`Error::Poisoned`] after an earlier I/O failure.
    pub fn append_with<I>(&mut self, entries: I, done: Completion) -> Result<()>
    where
        I: IntoIterator<Item = C::Entry>,
    {
        self.shared.poison.check()?;
        let mut sc = std::mem::take(&mut self.scratch);
        let r = self.append_scratch(entries, done, &mut sc);
        sc.recs.clear();
        sc.items.clear();
        sc.crcs.clear();
        sc.runs.clear();
        self.scratch = sc;
        r
    }

    fn append_scratch<I>(&mut self, entries: I, done: Completion, sc: &mut AppendScratch<C::Entry>) -> Result<()>
    where
        I: IntoIterator<Item = C::Entry>,
    {
        let max = self.shared.config.max_entry_bytes;
        let chunk_bytes = self.shared.config.append_chunk_bytes;
        let AppendScratch { recs, items, crcs, runs } = sc;
        // Phase 1: check every entry and learn its encoded size, refusing bad input before
        // touching any state (`RaftCodec::encoded_len` is cheap for byte payloads).
        let mut expect = if self.last_log_id.is_none() { None } else { Some(self.next_index) };
        let mut total = 0usize;
        for e in entries {
            let index = e.index();
            if let Some(x) = expect
                && x != index
            {
                return Err(Error::NonContiguousAppend { expected: x, got: index });
            }
            expect = Some(index + 1);
            let len = K::encoded_len(&e).map_err(codec_err)?;
            if len > max {
                return Err(Error::EntryTooLarge { index, size: len, max });
            }
            if len == 0 {
                return Err(Error::Codec(CodecError(format!("entry {index} encoded to zero bytes"))));
            }
            let framed = record::framed_len(len) as usize;
            recs.push((len, framed));
            items.push(e);
            total += framed;
        }
        if items.is_empty() {
            // Still ordered behind everything queued: "durable" means what it says.
            return self.send(Job::Complete { durable_end: None, done });
        }

        // Phase 2: encode, place, chain and index each record into chunk buffers of about
        // `append_chunk_bytes`, and hand each chunk to the writer as soon as it is full: the
        // writer copies the first chunks into the page cache and starts their writeback while
        // this thread encodes and checksums the next ones. Buffers come from a pool (a fresh
        // multi-megabyte buffer costs a page fault per 4 KiB). Nothing can fail from here on
        // but a segment roll or a codec that breaks its own size promise; both poison the store.
        let first_index = items[0].index();
        let mut left = total;
        let mut buf: Vec<u8> = Vec::new();
        for k in 0..items.len() {
            let (len, framed) = recs[k];
            if buf.len() + framed > buf.capacity() {
                if !buf.is_empty() {
                    let full = std::mem::take(&mut buf);
                    self.send_chunk(full, runs)?;
                }
                buf = self.buffers.take(framed.max(left.min(chunk_bytes)));
            }
            left -= framed;
            let index = first_index + k as u64;
            let start = buf.len();
            buf.resize(start + record::HEADER_LEN, 0);
            let encoded = K::encode_entry(&items[k], &mut buf).map_err(codec_err);
            let got = buf.len() - start - record::HEADER_LEN;
            if let Err(e) = encoded.and_then(|()| {
                if got == len {
                    Ok(())
                } else {
                    Err(Error::Codec(CodecError(format!(
                        "entry {index} encoded to {got} bytes, but the codec's encoded_len said {len}"
                    ))))
                }
            }) {
                self.shared.poison.set(self.shared.poison.describe_ref(&e));
                return Err(e);
            }
            buf.resize(start + framed, 0);

            let fits = self.active.as_ref().is_some_and(|s| self.next_offset + framed as u64 <= s.len());
            if (!fits || self.active_next != index)
                && let Err(e) = self.roll(index)
            {
                self.shared.poison.set(self.shared.poison.describe_ref(&e));
                return Err(e);
            }
            let seg = self.active.as_ref().expect("rolled").clone();
            let prev = self.last_crc;
            self.last_crc = record::seal(&mut buf[start..start + record::HEADER_LEN + len], index, prev);
            crcs.push((prev, self.last_crc));
            seg.index.set(index - seg.first_index, self.next_offset);
            match runs.last_mut() {
                Some(r) if Arc::ptr_eq(&r.0, &seg) => r.3 = start + framed,
                _ => runs.push((seg, self.next_offset, start, start + framed)),
            }
            self.next_offset += framed as u64;
            self.active_next = index + 1;
        }
        self.send_chunk(buf, runs)?;

        let last_index = first_index + items.len() as u64 - 1;
        self.last_log_id = Some(items.last().expect("non-empty").log_id());
        self.next_index = last_index + 1;
        {
            let mut tail = self.shared.tail.write();
            if tail.end() != first_index {
                tail.reset(first_index);
            }
            for ((e, (_, framed)), (prev, crc)) in items.drain(..).zip(recs.iter()).zip(crcs.iter()) {
                tail.push(e, *framed as u32, *prev, *crc);
            }
            let durable = self.shared.durable_end.load(Ordering::Acquire);
            tail.evict(durable, self.shared.config.tail_cache_bytes);
        }
        self.shared.stats.record_append(recs.len() as u64);
        for (seg, count, last_crc, generation) in self.pending_seals.drain(..) {
            let jtx = self.janitor_tx.clone();
            self.tx
                .send(Job::Complete {
                    durable_end: None,
                    done: Box::new(move |r| {
                        if r.is_ok() {
                            let _ = jtx.send(JanitorJob::Seal { seg, count, last_crc, generation });
                        }
                    }),
                })
                .map_err(|_| Error::WriterGone)?;
        }
        self.send(Job::Complete { durable_end: Some(last_index + 1), done })
    }

    /// Queue the writes of one encoded chunk: one `Write` per run of its records in one segment.
    fn send_chunk(&self, chunk: Vec<u8>, runs: &mut Vec<(Arc<Segment>, u64, usize, usize)>) -> Result<()> {
        let chunk = self.buffers.freeze(chunk);
        for (seg, off, a, e) in runs.drain(..) {
            let job =
                Job::Write { file: seg.file.clone(), path: seg.path.clone(), offset: off, data: chunk.slice(a..e) };
            if let Err(e) = self.send(job) {
                // Part of this append is placed and indexed but cannot be written.
                self.shared.poison.set(self.shared.poison.describe_ref(&e));
                return Err(e);
            }
        }
        Ok(())
    }

    fn do_truncate_after(&mut self, last: Option<LogIdOf<C>>) -> Result<Option<u64>> {
        let t = last.as_ref().map(|l| l.index + 1).unwrap_or(0);
        if self.last_log_id.is_none() || t >= self.next_index {
            return Ok(None);
        }
        let purged_end = self.shared.meta.lock().purged.as_ref().map(|p| p.index + 1).unwrap_or(0);
        let t = t.max(purged_end);
        // Readers overlapping this truncation redo their read (see `Shared::truncations`).
        self.shared.truncations.fetch_add(1, Ordering::AcqRel);
        let r = self.truncate_from(t, last, purged_end);
        self.shared.truncations.fetch_add(1, Ordering::AcqRel);
        r.map(|()| Some(t))
    }

    fn truncate_from(&mut self, t: u64, last: Option<LogIdOf<C>>, purged_end: u64) -> Result<()> {
        // The chain value of record t (needed below) before the tail forgets it.
        let cached_prev = self.shared.tail.read().prev_crc(t);
        let cached_last = if t > 0 { self.shared.tail.read().framed_size_and_crc(t - 1) } else { None };
        self.shared.tail.write().truncate_from(t);
        // Segments that start at or after t go entirely, newest first (so a crash in between
        // leaves a shorter log, never a hole).
        let doomed: Vec<Arc<Segment>> = {
            let mut map = self.shared.segments.write();
            let keys: Vec<u64> = map.range(t..).map(|(k, _)| *k).collect();
            keys.iter().rev().filter_map(|k| map.remove(k)).collect()
        };
        for seg in &doomed {
            self.send(Job::Remove(seg.path.to_path_buf()))?;
            self.send(Job::Remove(seg.index.path.to_path_buf()))?;
        }
        // The chain value record t was written with: from the tail cache, or from its header.
        let holder_of_t = doomed.last().filter(|d| d.first_index == t).cloned();
        let prev_of_t = |seg_of_t: &Arc<Segment>| -> Result<u32> {
            match cached_prev {
                Some(p) => Ok(p),
                None => Ok(seg_of_t.record_at(seg_of_t.index.get(t - seg_of_t.first_index))?.1.prev_crc),
            }
        };
        let holder = self.shared.segments.read().range(..t).next_back().map(|(_, s)| s.clone());
        match holder {
            Some(seg) => {
                let seg_end = doomed.last().map(|d| d.first_index).unwrap_or(self.active_next);
                if t < seg_end {
                    // t is inside this segment: zero its record header, so the chain stops there.
                    let off = seg.index.get(t - seg.first_index);
                    self.last_crc = prev_of_t(&seg)?;
                    self.send(Job::Write {
                        file: seg.file.clone(),
                        path: seg.path.clone(),
                        offset: off,
                        data: Bytes::from_static(&[0u8; record::HEADER_LEN]),
                    })?;
                    self.next_offset = off;
                } else {
                    // t was the first entry of a removed segment: this one continues after its
                    // own last record, t - 1, chained to that record's checksum.
                    debug_assert!(holder_of_t.is_some(), "t starts a removed segment");
                    let last_off = seg.index.get(t - 1 - seg.first_index);
                    let (framed, crc) = match cached_last {
                        Some((f, c)) => (f as u64, c),
                        None => {
                            let h = seg.record_at(last_off)?.1;
                            (record::framed_len(h.len as usize), h.crc)
                        }
                    };
                    self.last_crc = crc;
                    self.next_offset = last_off + framed;
                }
                self.active_next = t;
                // In use again: its index no longer proves anything until it is sealed anew, and a
                // seal queued before must not land.
                {
                    let _sealing = seg.seal_lock.lock();
                    seg.seal_generation.fetch_add(1, Ordering::AcqRel);
                    seg.index.write_header(&crate::format::index::IndexHeader {
                        state: crate::format::index::STATE_OPEN,
                        first_index: seg.first_index,
                        count: 0,
                        last_crc: 0,
                    });
                    seg.index.flush().map_err(|e| Error::io("msync index", seg.index.path.as_ref(), e))?;
                }
                self.active = Some(seg);
            }
            None => {
                self.active = None;
            }
        }
        self.next_index = t;
        self.last_log_id = match last {
            Some(l) if l.index + 1 > purged_end => Some(l),
            _ => self.shared.meta.lock().purged.clone(),
        };
        Ok(())
    }

    /// Drop what a (durable) purge up to `upto` made unreachable.
    fn apply_purge(&mut self, upto: LogIdOf<C>) -> Result<()> {
        let end = upto.index + 1; // first index that survives
        let mut delete = Vec::new();
        {
            let mut map = self.shared.segments.write();
            let firsts: Vec<u64> = map.keys().copied().collect();
            for (i, &f) in firsts.iter().enumerate() {
                let seg_end = firsts.get(i + 1).copied().unwrap_or(self.active_next);
                let is_active = self.active.as_ref().is_some_and(|a| a.first_index == f);
                let gone = if is_active { end > self.next_index } else { seg_end <= end };
                if gone && let Some(s) = map.remove(&f) {
                    delete.push(s.path.to_path_buf());
                    delete.push(s.index.path.to_path_buf());
                    if is_active {
                        self.active = None;
                    }
                }
            }
        }
        self.shared.tail.write().purge_upto(upto.index);
        if end > self.next_index {
            self.next_index = end;
            self.last_log_id = Some(upto);
        }
        if !delete.is_empty() {
            // After the purge point is durable (the caller awaits the meta write first).
            let jtx = self.janitor_tx.clone();
            self.send(Job::Complete {
                durable_end: None,
                done: Box::new(move |r| {
                    if r.is_ok() {
                        let _ = jtx.send(JanitorJob::Delete(delete));
                    }
                }),
            })?;
        }
        Ok(())
    }
}

impl<C: RaftTypeConfig, K: RaftCodec<C>> LogStore<C, K> {
    /// Queue a write of the meta state (vote, committed, purged) to the slot not holding the
    /// newest record; durable when the next completion runs.
    fn queue_meta(&mut self) -> Result<()> {
        let body = {
            let m = self.shared.meta.lock();
            let mut body = metafmt::MetaBody::default();
            if let Some(v) = &m.vote {
                let mut b = Vec::new();
                K::encode_vote(v, &mut b).map_err(codec_err)?;
                body.vote = Some(b);
            }
            for (src, dst) in [(&m.committed, &mut body.committed), (&m.purged, &mut body.purged)] {
                if let Some(l) = src {
                    let mut b = Vec::new();
                    K::encode_log_id(l, &mut b).map_err(codec_err)?;
                    *dst = Some(b);
                }
            }
            body
        };
        self.meta_seq += 1;
        let slot = metafmt::encode(self.meta_seq, &body)
            .ok_or_else(|| Error::Codec(CodecError("vote and log ids do not fit in a meta slot".into())))?;
        let offset = self.meta_next_slot * metafmt::SLOT_LEN as u64;
        self.meta_next_slot ^= 1;
        self.committed_dirty = false;
        self.tx
            .send(Job::Write {
                file: self.meta_file.clone(),
                path: self.meta_path.clone(),
                offset,
                data: Bytes::from(slot),
            })
            .map_err(|_| Error::WriterGone)
    }
}

/// Stream `range` in bounded batches (`read_batch_bytes` each), reading the next batch only when
/// the consumer gets to it, instead of loading the whole range first.
fn entries_stream<C, K>(
    shared: Arc<Shared<C, K>>,
    range: impl RangeBounds<u64>,
) -> impl Stream<Item = EntriesStreamResult<C>> + OptionalSend
where
    C: RaftTypeConfig,
    C::Entry: Clone,
    K: RaftCodec<C>,
{
    let (lo, hi) = bounds(range);
    let batches = futures_util::stream::unfold(Some(lo), move |next| {
        let shared = shared.clone();
        async move {
            let lo = next?;
            if lo >= hi {
                return None;
            }
            match shared.read_range_limited(lo, hi, shared.config.read_batch_bytes) {
                Ok(batch) if batch.is_empty() => None,
                Ok(batch) => {
                    let after = batch.last().map(|e| e.index() + 1);
                    Some((futures_util::stream::iter(batch.into_iter().map(Ok).collect::<Vec<_>>()), after))
                }
                Err(e) => Some((futures_util::stream::iter(vec![Err(std::io::Error::from(e))]), None)),
            }
        }
    });
    // Fused: openraft may poll again after the end.
    batches.flatten().fuse()
}

/// What `entries_stream` yields (openraft does not export its alias).
type EntriesStreamResult<C> = std::result::Result<<C as RaftTypeConfig>::Entry, std::io::Error>;

fn bounds(range: impl RangeBounds<u64>) -> (u64, u64) {
    let lo = match range.start_bound() {
        Bound::Included(&x) => x,
        Bound::Excluded(&x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(&x) => x.saturating_add(1),
        Bound::Excluded(&x) => x,
        Bound::Unbounded => u64::MAX,
    };
    (lo, hi)
}

impl<C: RaftTypeConfig, K: RaftCodec<C>> Drop for LogStore<C, K> {
    fn drop(&mut self) {
        // Persist the committed log id on a clean close (it is otherwise written only with the
        // vote and the purge point); the writer finishes the queue before it stops.
        if self.committed_dirty && self.shared.poison.check().is_ok() {
            let _ = self.queue_meta();
        }
        let _ = self.tx.send(Job::Shutdown);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let _ = self.janitor_tx.send(JanitorJob::Shutdown);
        if let Some(j) = self.janitor.take() {
            let _ = j.join();
        }
    }
}

impl<C: RaftTypeConfig, K: RaftCodec<C>> RaftLogReader<C> for LogReader<C, K>
where
    C::Entry: Clone,
{
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> std::io::Result<Vec<C::Entry>> {
        Ok(self.shared.read_range_limited(start, end, self.shared.config.read_batch_bytes)?)
    }

    async fn entries_stream<RB>(&mut self, range: RB) -> impl Stream<Item = EntriesStreamResult<C>> + OptionalSend
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        entries_stream(self.shared.clone(), range)
    }

    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::io::Result<Vec<C::Entry>> {
        let (lo, hi) = bounds(range);
        Ok(self.shared.read_range(lo, hi)?)
    }

    async fn read_vote(&mut self) -> std::io::Result<Option<VoteOf<C>>> {
        Ok(self.shared.meta.lock().vote.clone())
    }
}

/// The store reads exactly as its reader handles do.
impl<C: RaftTypeConfig, K: RaftCodec<C>> RaftLogReader<C> for LogStore<C, K>
where
    C::Entry: Clone,
{
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> std::io::Result<Vec<C::Entry>> {
        self.reader().limited_get_log_entries(start, end).await
    }

    async fn entries_stream<RB>(&mut self, range: RB) -> impl Stream<Item = EntriesStreamResult<C>> + OptionalSend
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        entries_stream(self.shared.clone(), range)
    }

    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::io::Result<Vec<C::Entry>> {
        self.reader().try_get_log_entries(range).await
    }

    async fn read_vote(&mut self) -> std::io::Result<Option<VoteOf<C>>> {
        self.reader().read_vote().await
    }
}

impl<C: RaftTypeConfig, K: RaftCodec<C>> RaftLogStorage<C> for LogStore<C, K>
where
    C::Entry: Clone,
{
    type LogReader = LogReader<C, K>;

    async fn get_log_state(&mut self) -> std::io::Result<LogState<C>> {
        Ok(self.log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> std::io::Result<()> {
        self.shared.poison.check()?;
        self.shared.meta.lock().vote = Some(vote.clone());
        Ok(self.write_meta().await?)
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> std::io::Result<()> {
        // Kept in memory and persisted with the next meta write: a stale committed id only means
        // re-applying a little more at startup.
        self.shared.meta.lock().committed = committed;
        self.committed_dirty = true;
        Ok(())
    }

    async fn read_committed(&mut self) -> std::io::Result<Option<LogIdOf<C>>> {
        Ok(self.shared.meta.lock().committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> std::io::Result<()>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let done: Completion = Box::new(move |r: Result<()>| callback.io_completed(r.map_err(std::io::Error::from)));
        Ok(self.append_with(entries, done)?)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> std::io::Result<()> {
        self.shared.poison.check()?;
        let truncated = match self.do_truncate_after(last_log_id) {
            Ok(t) => t,
            Err(e) => {
                // Half-done: the in-memory view may no longer match what is queued.
                self.shared.poison.set(format!("truncate_after failed: {e}"));
                return Err(e.into());
            }
        };
        if let Some(t) = truncated {
            self.barrier().await?;
            // Every completion queued before the truncation has run: lower the durable mark so
            // re-appended entries are not taken as durable.
            let _ = self.shared.durable_end.fetch_min(t, Ordering::AcqRel);
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> std::io::Result<()> {
        self.shared.poison.check()?;
        {
            let mut m = self.shared.meta.lock();
            if m.purged.as_ref().is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
            m.purged = Some(log_id.clone());
        }
        // The purge point is durable before any segment is deleted.
        self.write_meta().await?;
        self.apply_purge(log_id)?;
        Ok(())
    }
}
