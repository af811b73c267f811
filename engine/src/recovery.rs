//! Opening a data directory: lock it, read the meta file, check the segment chain, trust or
//! rebuild each sealed segment's index, and scan the last segment to find the end of the log
//! (truncating a torn tail). The numbered steps match `docs/format.md#recovery`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{index as idxfmt, meta as metafmt, record, segment as segfmt};
use crate::io::{Io, IoFile};
use crate::scan::{Scan, scan};
use crate::segment::{Segment, SlotIndex, check_record};

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the meta file in the data directory.
pub const META_FILE: &str = "meta";
/// Name of the log directory in the data directory.
pub const LOG_DIR: &str = "log";
/// Entries of the data directory that belong to the node, not the engine.
pub const NODE_ENTRIES: &[&str] = &["snapshots", "node"];

pub(crate) struct Recovered {
    pub lock: Arc<dyn IoFile>,
    pub meta_file: Arc<dyn IoFile>,
    pub meta_path: PathBuf,
    pub meta_body: metafmt::MetaBody,
    pub meta_seq: u64,
    pub meta_next_slot: u64,
    pub segments: BTreeMap<u64, Arc<Segment>>,
    /// The segment appends continue in: (segment, next offset, chain crc, next index).
    pub active: Option<(Arc<Segment>, u64, u32, u64)>,
    /// Payload of the last record in the log, if any.
    pub last_payload: Option<Vec<u8>>,
    /// Index of the next entry (when the log has entries).
    pub next_index: Option<u64>,
    /// A whole preallocated spare segment left by the last run.
    pub spare: Option<PathBuf>,
}

/// Step 1–2: create and lock the directory.
pub(crate) fn lock_dir(io: &dyn Io, dir: &Path) -> Result<Arc<dyn IoFile>> {
    io.create_dir_all(dir).map_err(|e| Error::io("create data directory", dir, e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = io
        .open(&lock_path, true)
        .map_err(|e| Error::io("open lock file (is the directory writable?)", &lock_path, e))?;
    match lock.try_lock() {
        Ok(true) => Ok(lock),
        Ok(false) => Err(Error::Locked { path: dir.to_path_buf(), lock: lock_path }),
        Err(e) => Err(Error::io("lock", &lock_path, e)),
    }
}

pub(crate) fn open(
    io: &dyn Io,
    dir: &Path,
    config: &Config,
    log_index_of: &dyn Fn(&[u8]) -> Result<u64>,
) -> Result<Recovered> {
    let lock = lock_dir(io, dir)?;

    // Step 3: nothing foreign in the data directory.
    for p in io.list_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name != LOCK_FILE && name != META_FILE && name != LOG_DIR && !NODE_ENTRIES.contains(&name.as_str()) {
            return Err(Error::ForeignFile { path: p });
        }
    }

    // Step 4: meta.
    let meta_path = dir.join(META_FILE);
    let (meta_file, meta_body, meta_seq, meta_next_slot) = open_meta(io, dir, &meta_path)?;
    let purged_end = match &meta_body.purged {
        Some(b) => log_index_of(b)? + 1,
        None => 0,
    };
    // One past the committed index meta records (0 when none). Every record up to it was synced
    // before that meta write, so a log that now ends below it (and above the purge point) was
    // damaged, not torn: refuse rather than cut acknowledged entries (steps 7, 8.3, 8.4).
    let committed_end = match &meta_body.committed {
        Some(b) => log_index_of(b)? + 1,
        None => 0,
    };
    let committed_lost = |found: u64| {
        (committed_end > found.max(purged_end))
            .then(|| CorruptionKind::CommittedMissing { committed: committed_end - 1, found })
    };

    // Step 5: list segments.
    let log_dir = dir.join(LOG_DIR);
    io.create_dir_all(&log_dir).map_err(|e| Error::io("create log directory", &log_dir, e))?;
    let mut seg_paths: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut spare: Option<PathBuf> = None;
    for p in io.list_dir(&log_dir).map_err(|e| Error::io("list", &log_dir, e))? {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".tmp") {
            // A spare (kept if it is whole: preallocating again would only cost time), or a
            // segment that was never renamed into place (holds nothing acknowledged).
            let whole = name.starts_with("spare-")
                && spare.is_none()
                && io.open_read(&p).and_then(|f| f.len()).is_ok_and(|l| l == config.segment_bytes);
            if whole {
                let kept = log_dir.join(crate::janitor::KEPT_SPARE);
                if p != kept {
                    io.rename(&p, &kept).map_err(|e| Error::io("rename spare", &kept, e))?;
                }
                spare = Some(kept);
            } else {
                io.remove_file(&p).map_err(|e| Error::io("remove leftover", &p, e))?;
            }
            continue;
        }
        let (stem, ext) = name.split_once('.').unwrap_or((&name, ""));
        let first = (stem.len() == 20).then(|| stem.parse::<u64>().ok()).flatten();
        match (first, ext) {
            (Some(first), "seg") => {
                seg_paths.insert(first, p);
            }
            (Some(_), "idx") => {} // checked with its segment
            _ => return Err(Error::ForeignFile { path: p }),
        }
    }
    // Indexes without a segment are stale (their segment was purged or truncated away).
    for p in io.list_dir(&log_dir).map_err(|e| Error::io("list", &log_dir, e))? {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(stem) = name.strip_suffix(".idx")
            && let Ok(first) = stem.parse::<u64>()
            && !seg_paths.contains_key(&first)
        {
            io.remove_file(&p).map_err(|e| Error::io("remove stale index", &p, e))?;
        }
    }

    // Step 6: drop segments wholly below the purge point (a purge's deletions are not synced).
    let firsts: Vec<u64> = seg_paths.keys().copied().collect();
    for w in firsts.windows(2) {
        if w[1] <= purged_end {
            let p = seg_paths.remove(&w[0]).expect("listed");
            remove_segment_files(io, &p)?;
        }
    }

    // Step 7: the newest segment's header is only made durable by the first data sync in it. A
    // torn one (zeros, or a bad checksum) with no whole record behind it means nothing in it was
    // ever acknowledged: remove it, and look at the one before.
    while let Some((&first, path)) = seg_paths.iter().next_back() {
        let path = path.clone();
        let file = io.open(&path, false).map_err(|e| Error::io("open segment", &path, e))?;
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        let probe_len = (segfmt::HEADER_LEN + record::HEADER_LEN + 64).min(len as usize);
        let mut probe = vec![0u8; probe_len];
        crate::io::read_exact_at(&*file, &mut probe, 0).map_err(|e| Error::io("read segment header", &path, e))?;
        // A torn header (see `segment::is_torn`); anything else is left to the checks below.
        let torn = segfmt::is_torn(&probe, first);
        if !torn {
            break;
        }
        if any_whole_record(&*file, first)? {
            // A whole record behind a damaged header: data was synced here; this is damage.
            let reason = match segfmt::decode(&probe) {
                Err(segfmt::HeaderError::Checksum { stored, computed }) => {
                    CorruptionKind::ChecksumMismatch { stored, computed }
                }
                _ => CorruptionKind::Truncated { len },
            };
            return Err(Error::corruption(path, 0, reason));
        }
        if let Some(reason) = committed_lost(first) {
            return Err(Error::corruption(path, 0, reason));
        }
        tracing::warn!(path = %path.display(), "newest segment has no valid header and no records; removing it");
        drop(file);
        remove_segment_files(io, &path)?;
        seg_paths.remove(&first);
    }

    // Step 8: open each segment; check headers.
    let mut firsts: Vec<u64> = seg_paths.keys().copied().collect();
    if firsts.len() > 2 {
        let sealed: Vec<(u64, PathBuf)> =
            firsts[..firsts.len() - 1].iter().map(|f| (*f, seg_paths[f].clone())).collect();
        prefetch_sealed(io, &log_dir, &sealed);
    }
    let mut segments = BTreeMap::new();
    let mut active = None;
    let mut last_payload = None;
    let mut i = 0;
    while i < firsts.len() {
        let first = firsts[i];
        let path = seg_paths[&first].clone();
        let mut is_last = i + 1 == firsts.len();
        let file = io.open(&path, false).map_err(|e| Error::io("open segment", &path, e))?;
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        let mut hbuf = vec![0u8; segfmt::HEADER_LEN.min(len as usize)];
        crate::io::read_exact_at(&*file, &mut hbuf, 0).map_err(|e| Error::io("read segment header", &path, e))?;
        let header = match segfmt::decode(&hbuf) {
            Ok(h) => h,
            Err(segfmt::HeaderError::Magic(found)) if !found.iter().all(|&b| b == 0) => {
                return Err(Error::BadMagic { path, kind: "segment", expected: "CFLXSEG\\0", found });
            }
            Err(segfmt::HeaderError::Version(v)) if header_checksum_ok(&hbuf) => {
                return Err(Error::UnsupportedVersion { path, found: v, supported: crate::format::FORMAT_VERSION });
            }
            Err(e) => {
                let reason = match e {
                    segfmt::HeaderError::Checksum { stored, computed } => {
                        CorruptionKind::ChecksumMismatch { stored, computed }
                    }
                    segfmt::HeaderError::Short(n) => CorruptionKind::Truncated { len: n as u64 },
                    segfmt::HeaderError::Magic(found) => {
                        CorruptionKind::Undecodable(format!("zeroed header {found:02x?}"))
                    }
                    segfmt::HeaderError::Version(v) => CorruptionKind::HeaderMismatch {
                        field: "version",
                        expected: crate::format::FORMAT_VERSION as u64,
                        found: v as u64,
                    },
                };
                return Err(Error::corruption(path, 0, reason));
            }
        };
        if header.first_index != first {
            return Err(Error::corruption(
                path,
                segfmt::FIRST_INDEX_OFF as u64,
                CorruptionKind::HeaderMismatch { field: "first_index", expected: first, found: header.first_index },
            ));
        }
        let idx_path = dir.join(LOG_DIR).join(idxfmt::file_name(first));
        if !is_last {
            let count = firsts[i + 1] - first;
            let map = file.map().map_err(|e| Error::io("mmap", &path, e))?;
            match sealed_index(io, &path, &idx_path, &map, first, header.crc, count)? {
                Ok(index) => {
                    let seg = Segment::from_parts(first, path, file, map, header.crc, index);
                    segments.insert(first, Arc::new(seg));
                    i += 1;
                    continue;
                }
                Err(short) => {
                    // Entries are missing at the end of a segment that has newer ones after it.
                    // If the newer segments hold no whole record, this segment's index was never
                    // sealed, and no whole record follows the damage, the log was torn across a
                    // segment roll (a crash between the write to this segment and the first
                    // write to the next): nothing after the tear was acknowledged, because
                    // callbacks complete in order after every file of the batch is synced. Drop
                    // the newer segments and repair this one as the last. Anything else is
                    // damage, and refused.
                    let mut later_has_records = false;
                    for f in &firsts[i + 1..] {
                        let p = &seg_paths[f];
                        let file = io.open(p, false).map_err(|e| Error::io("open segment", p, e))?;
                        let len = file.len().map_err(|e| Error::io("stat", p, e))?;
                        later_has_records |= first_record_is_whole(&*file, len, *f);
                    }
                    let successor = valid_successor(&map, short.offset, short.found, &short.reason);
                    if short.was_sealed || later_has_records || successor.is_some() {
                        return Err(Error::corruption(path, short.offset, short.reason));
                    }
                    if let Some(reason) = committed_lost(short.found) {
                        return Err(Error::corruption(path, short.offset, reason));
                    }
                    tracing::warn!(
                        path = %path.display(),
                        offset = short.offset,
                        dropped = firsts.len() - i - 1,
                        "log torn across a segment roll: dropping newer segments that hold only unacknowledged entries"
                    );
                    for f in firsts.drain(i + 1..).rev() {
                        remove_segment_files(io, &seg_paths[&f])?;
                    }
                    is_last = true;
                }
            }
        }
        debug_assert!(is_last);

        // Step 8: the last segment is scanned whole: its index was never synced, and its tail
        // may be torn.
        if len < config.segment_bytes {
            file.allocate(config.segment_bytes).map_err(|e| Error::io("fallocate", &path, e))?;
        }
        let map = file.map().map_err(|e| Error::io("mmap", &path, e))?;
        let s = scan(&map, first, header.crc, None);
        if let Some(reason) = committed_lost(first + s.offsets.len() as u64) {
            let at = s.damage.as_ref().map_or(s.end, |d| d.0);
            return Err(Error::corruption(path, at, reason));
        }
        if let Some((off, kind)) = &s.damage {
            if let Some(next_off) = valid_successor(&map, *off, first + s.offsets.len() as u64, kind) {
                return Err(Error::corruption(
                    path,
                    *off,
                    CorruptionKind::Undecodable(format!(
                        "{kind}; a valid record follows at offset {next_off}, so this is damage inside the log, not a torn tail"
                    )),
                ));
            }
            tracing::warn!(path = %path.display(), offset = off, reason = %kind, "torn tail: truncating the log to the last whole record");
            let zero_len = (map.len() as u64 - off).min(record::HEADER_LEN as u64) as usize;
            crate::io::write_all_at(&*file, &vec![0u8; zero_len], *off)
                .map_err(|e| Error::io("zero torn tail", &path, e))?;
            file.sync_data().map_err(|e| Error::io("fdatasync", &path, e))?;
        }
        let index = SlotIndex::create(io, &idx_path, first, map.len() as u64)?;
        for (k, off) in s.offsets.iter().enumerate() {
            index.set(k as u64, *off);
        }
        let seg = Arc::new(Segment::from_parts(first, path, file, map, header.crc, index));
        let next = first + s.offsets.len() as u64;
        segments.insert(first, seg.clone());
        active = Some((seg, s.end, s.last_crc, next));
        i += 1;
    }

    // The end of the log: the active segment's next index (the newest remaining segment is
    // always the active one).
    let mut next_index = active.as_ref().map(|a| a.3);
    // A newest segment whose entries are all purged, not continued by the purge point, holds
    // nothing the log needs (a purge past the end of the log, then a crash before deletion).
    if let Some(a) = &active
        && a.3 < purged_end
    {
        let seg = a.0.clone();
        active = None;
        segments.remove(&seg.first_index);
        remove_segment_files(io, seg.path.as_ref())?;
        next_index = None;
    }
    if let Some(n) = next_index
        && let Some((_, seg)) = segments.range(..n).next_back()
    {
        last_payload = Some(seg.read(n - 1)?.to_vec());
    }

    // Step 9: the log must continue right after the purge point.
    if let Some((&first, seg)) = segments.iter().next()
        && purged_end > 0
        && first > purged_end
    {
        return Err(Error::corruption(
            seg.path.as_ref(),
            0,
            CorruptionKind::MissingEntries { expected: purged_end, found: first },
        ));
    }

    // Step 10: make what recovery changed — and whatever an earlier run created or renamed
    // without reaching its directory sync — durable before anything new is acknowledged.
    io.sync_dir(&log_dir).map_err(|e| Error::io("fsync directory", &log_dir, e))?;
    io.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
        && let Err(e) = io.sync_dir(parent)
    {
        tracing::debug!(path = %parent.display(), error = %e, "could not sync the data directory's parent");
    }

    Ok(Recovered {
        lock,
        meta_file,
        meta_path,
        meta_body,
        meta_seq,
        meta_next_slot,
        segments,
        active,
        last_payload,
        next_index,
        spare,
    })
}

fn remove_segment_files(io: &dyn Io, seg: &Path) -> Result<()> {
    for p in [seg.to_path_buf(), seg.with_extension("idx")] {
        match io.remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &p, e)),
        }
    }
    Ok(())
}

/// After damage at `off`, is there a whole record with index `damaged_index + 1` that chains to
/// the damaged record (its stored checksum, or the checksum of its bytes as they are, in case the
/// stored checksum is what was hit)? Then the damage is inside acknowledged data.
///
/// A record that passes its own checks but does not continue the chain (or holds another index)
/// is stale, left behind a truncation or a torn tail, and marks a clean end: no successor is
/// looked for.
pub(crate) fn valid_successor(bytes: &[u8], off: u64, damaged_index: u64, why: &CorruptionKind) -> Option<u64> {
    if matches!(why, CorruptionKind::BrokenChain { .. } | CorruptionKind::IndexMismatch { .. }) {
        return None;
    }
    let o = off as usize;
    if o + record::HEADER_LEN > bytes.len() {
        return None;
    }
    let damaged = record::RecordHeader::decode(&bytes[o..]);
    let end = o + record::HEADER_LEN + damaged.len as usize;
    let recomputed = (damaged.len > 0 && end <= bytes.len()).then(|| record::checksum(&bytes[o..end]));
    let mut p = o + 8;
    while p + record::HEADER_LEN <= bytes.len() {
        if crate::format::u64_at(bytes, p + record::INDEX_OFF) == damaged_index + 1
            && let Ok((_, h)) = check_record(bytes, p as u64)
            && (h.prev_crc == damaged.crc || Some(h.prev_crc) == recomputed)
        {
            return Some(p as u64);
        }
        p += 8;
    }
    None
}

/// Trust a sealed segment's index if it proves consistent with the segment; otherwise rebuild it
/// by scanning. Damage found while rebuilding is corruption.
fn sealed_index(
    io: &dyn Io,
    seg_path: &Path,
    idx_path: &Path,
    map: &[u8],
    first: u64,
    header_crc: u32,
    count: u64,
) -> Result<std::result::Result<SlotIndex, Short>> {
    let existing = SlotIndex::open_existing(io, idx_path, map.len() as u64)?;
    let was_sealed = existing
        .as_ref()
        .is_some_and(|(_, h)| h.is_some_and(|h| h.state == idxfmt::STATE_SEALED && h.first_index == first));
    if let Some((idx, Some(h))) = existing
        && h.state == idxfmt::STATE_SEALED
        && h.first_index == first
        && h.count == count
        && count > 0
        && count <= idx.capacity()
    {
        // One sequential read of the slots (`prefetch_sealed` has usually brought them in
        // already, for all segments at once): a cold open would otherwise fault the map in page
        // by page.
        let mut slots = vec![0u8; count as usize * idxfmt::SLOT_LEN];
        let read = io
            .open_read(idx_path)
            .and_then(|f| crate::io::read_exact_at(&*f, &mut slots, idxfmt::HEADER_LEN as u64))
            .is_ok();
        let mut prev = 0;
        let monotonic = read
            && slots.chunks_exact(idxfmt::SLOT_LEN).all(|s| {
                let o = crate::format::u64_at(s, 0);
                let ok = o > prev && o >= segfmt::HEADER_LEN as u64 && o < map.len() as u64;
                prev = o;
                ok
            });
        if monotonic
            && let Ok((_, r)) = check_record(map, idx.get(count - 1))
            && r.crc == h.last_crc
            && r.index == first + count - 1
        {
            return Ok(Ok(idx));
        }
    }
    tracing::info!(path = %idx_path.display(), "index missing or inconsistent; rebuilding from its segment");
    let s: Scan = scan(map, first, header_crc, Some(count));
    if (s.offsets.len() as u64) < count {
        let found = first + s.offsets.len() as u64;
        let (offset, reason) =
            s.damage.unwrap_or((s.end, CorruptionKind::MissingEntries { expected: first + count, found }));
        let _ = seg_path;
        return Ok(Err(Short { offset, reason, found, was_sealed }));
    }
    let idx = SlotIndex::create(io, idx_path, first, map.len() as u64)?;
    for (k, off) in s.offsets.iter().enumerate() {
        idx.set(k as u64, *off);
    }
    idx.write_header(&idxfmt::IndexHeader {
        state: idxfmt::STATE_SEALED,
        first_index: first,
        count,
        last_crc: s.last_crc,
    });
    idx.flush().map_err(|e| Error::io("msync index", idx_path, e))?;
    Ok(Ok(idx))
}

/// A sealed segment that ends before the entries its neighbour's name says it holds.
struct Short {
    /// Where the scan stopped.
    offset: u64,
    reason: CorruptionKind,
    /// One past the last whole record.
    found: u64,
    /// Whether its index had been sealed (so its data had been synced).
    was_sealed: bool,
}

/// Whether a whole record of this segment (index in its range, own checksum good) sits anywhere
/// in the file. Read only when the newest segment's header is torn, before deleting it.
fn any_whole_record(file: &dyn IoFile, first: u64) -> Result<bool> {
    let len = file.len().map_err(|e| Error::io("stat", "<segment>", e))?;
    if len < (segfmt::HEADER_LEN + record::HEADER_LEN) as u64 {
        return Ok(false);
    }
    let map = file.map().map_err(|e| Error::io("mmap", "<segment>", e))?;
    Ok(crate::segment::holds_whole_record(&map, first))
}

/// Read, several segments at a time, what the sealed-index proof needs (segment header, index
/// header and slots, last record), so a cold open overlaps its disk reads instead of waiting
/// for them one segment after another. A pure cache warm-up: errors are left to the checks.
fn prefetch_sealed(io: &dyn Io, log_dir: &Path, sealed: &[(u64, PathBuf)]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut page = vec![0u8; 4096];
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((first, seg_path)) = sealed.get(i) else { return };
            let Ok(seg) = io.open_read(seg_path) else { continue };
            let _ = seg.read_at(&mut page[..segfmt::HEADER_LEN], 0);
            let Ok(idx) = io.open_read(&log_dir.join(idxfmt::file_name(*first))) else { continue };
            if idx.read_at(&mut page, 0).is_err() {
                continue;
            }
            let Some(h) = idxfmt::decode(&page) else { continue };
            if h.count == 0 {
                continue;
            }
            let mut slots =
                vec![0u8; h.count.min(SlotIndex::capacity_for(u32::MAX as u64)) as usize * idxfmt::SLOT_LEN];
            if crate::io::read_exact_at(&*idx, &mut slots, idxfmt::HEADER_LEN as u64).is_ok() {
                let last = crate::format::u64_at(&slots, slots.len() - idxfmt::SLOT_LEN);
                let _ = seg.read_at(&mut page, last);
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..8.min(sealed.len()) {
            s.spawn(work);
        }
    });
}

/// Whether a segment header's own checksum matches (whatever its version says).
fn header_checksum_ok(b: &[u8]) -> bool {
    b.len() >= segfmt::HEADER_LEN && crate::format::u32_at(b, segfmt::CRC_OFF) == crc32c::crc32c(&b[..segfmt::CRC_OFF])
}

/// Whether the segment file holds a whole first record for entry `first` at the first record
/// offset (checked by its own checksum; the header may be damaged).
fn first_record_is_whole(file: &dyn IoFile, len: u64, first: u64) -> bool {
    let start = segfmt::HEADER_LEN as u64;
    if len < start + record::HEADER_LEN as u64 {
        return false;
    }
    let mut h = [0u8; record::HEADER_LEN];
    if crate::io::read_exact_at(file, &mut h, start).is_err() {
        return false;
    }
    let rh = record::RecordHeader::decode(&h);
    if rh.len == 0 || rh.index != first || start + (record::HEADER_LEN as u64) + rh.len as u64 > len {
        return false;
    }
    let mut rec = vec![0u8; record::HEADER_LEN + rh.len as usize];
    crate::io::read_exact_at(file, &mut rec, start).is_ok() && record::checksum(&rec) == rh.crc
}

/// The newest valid slot of a meta file's bytes (`buf`, the file's first two slots or less),
/// as (slot number, contents); `None` when neither slot holds a record and the file may be
/// (re)initialised. Errors name `path`: a foreign or newer file, or both slots damaged.
pub(crate) fn newest_meta_slot(buf: &[u8], path: &Path) -> Result<Option<(u64, metafmt::MetaSlot)>> {
    let mut best: Option<(u64, metafmt::MetaSlot)> = None;
    let mut damaged = None;
    let mut empty = 0;
    let mut foreign: Option<Error> = None;
    for slot in 0..2u64 {
        let start = (slot as usize * metafmt::SLOT_LEN).min(buf.len());
        let end = ((slot as usize + 1) * metafmt::SLOT_LEN).min(buf.len());
        match metafmt::decode(&buf[start..end]) {
            Ok(s) => {
                if best.as_ref().is_none_or(|(_, b)| s.sequence > b.sequence) {
                    best = Some((slot, s));
                }
            }
            Err(metafmt::SlotError::Empty) => empty += 1,
            // A wrong magic or version in one slot is only fatal when no slot is valid: one torn
            // write can garble the slot it was writing.
            Err(metafmt::SlotError::Magic) => {
                foreign.get_or_insert(Error::BadMagic {
                    path: path.to_path_buf(),
                    kind: "meta",
                    expected: "CFLXMETA",
                    found: buf[start..(start + 8).min(end)].to_vec(),
                });
            }
            Err(metafmt::SlotError::Version(v)) if v > crate::format::FORMAT_VERSION => {
                // Written by a newer build: opening with the other (older) slot would roll the
                // vote back and overwrite the newer state.
                return Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: v,
                    supported: crate::format::FORMAT_VERSION,
                });
            }
            Err(metafmt::SlotError::Version(v)) => {
                foreign.get_or_insert(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: v,
                    supported: crate::format::FORMAT_VERSION,
                });
            }
            Err(e) => damaged = Some((start as u64, e)),
        }
    }
    if best.is_some() {
        return Ok(best);
    }
    if let Some(e) = foreign {
        return Err(e);
    }
    // One slot torn and the other never written: only the very first write (the empty state
    // written at creation) ever happened, so nothing was acknowledged. Both slots damaged is
    // damage: refuse rather than guess.
    if let Some((off, e)) = damaged
        && empty == 0
    {
        return Err(Error::corruption(
            path,
            off,
            CorruptionKind::Undecodable(format!("{:?}; {}", e, CorruptionKind::NoValidMeta)),
        ));
    }
    Ok(None)
}

/// Read (or create) the meta file. Returns (file, newest body, its sequence, slot to write next).
fn open_meta(io: &dyn Io, dir: &Path, path: &Path) -> Result<(Arc<dyn IoFile>, metafmt::MetaBody, u64, u64)> {
    let file = io.open(path, true).map_err(|e| Error::io("open meta", path, e))?;
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    let mut buf = vec![0u8; (len as usize).min(2 * metafmt::SLOT_LEN)];
    crate::io::read_exact_at(&*file, &mut buf, 0).map_err(|e| Error::io("read meta", path, e))?;
    match newest_meta_slot(&buf, path)? {
        Some((slot, s)) => Ok((file, s.body, s.sequence, slot ^ 1)),
        None => {
            // New store: write an empty state so the file is ours from now on.
            let body = metafmt::MetaBody::default();
            let slot = metafmt::encode(0, &body).expect("empty body fits");
            crate::io::write_all_at(&*file, &slot, 0).map_err(|e| Error::io("write meta", path, e))?;
            file.sync_data().map_err(|e| Error::io("fdatasync", path, e))?;
            io.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
            Ok((file, body, 0, 1))
        }
    }
}
