//! A segment in use: its file, its read-only map, and its mmap'd dense index.
//!
//! Formats: `format::segment`, `format::record`, `format::index` (spec in `docs/format.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{CorruptionKind, Error, Result};
use crate::format::{index as idxfmt, record, segment as segfmt};
use crate::io::{Io, IoFile, Map, MapRaw};

/// One segment file and its index.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Raft index of the first record.
    pub first_index: u64,
    /// `log/<first>.seg`.
    pub path: Arc<PathBuf>,
    /// The open file (writes go through the writer thread).
    pub file: Arc<dyn IoFile>,
    /// The whole file mapped read-only, for reads and scans.
    pub map: Map,
    /// Checksum of the segment header: seed of the record chain.
    pub header_crc: u32,
    /// The dense index.
    pub index: SlotIndex,
    /// Bumped when truncation puts the segment back in use, so a seal queued before that is
    /// dropped instead of marking the reopened index sealed.
    pub seal_generation: std::sync::atomic::AtomicU64,
    /// Held across a seal (check generation, write header, flush) and across a reopen (bump
    /// generation, write header, flush), so the two never interleave.
    pub seal_lock: parking_lot::Mutex<()>,
}

impl Segment {
    /// A segment opened at recovery from its parts.
    pub fn from_parts(
        first_index: u64,
        path: PathBuf,
        file: Arc<dyn IoFile>,
        map: Map,
        header_crc: u32,
        index: SlotIndex,
    ) -> Segment {
        Segment {
            first_index,
            path: Arc::new(path),
            file,
            map,
            header_crc,
            index,
            seal_generation: Default::default(),
            seal_lock: Default::default(),
        }
    }

    /// Length of the segment file (and of its map).
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Create the segment whose first entry is `first_index`: take the preallocated `spare`
    /// file if there is one, else create and preallocate one now; write its header (made durable
    /// by the first data sync) and rename it into place (made durable by a directory sync the
    /// caller queues).
    pub fn create(
        io: &dyn Io,
        log_dir: &Path,
        first_index: u64,
        bytes: u64,
        mode: crate::config::Preallocate,
        spare: Option<PathBuf>,
    ) -> Result<Segment> {
        let path = log_dir.join(segfmt::file_name(first_index));
        let tmp = match spare {
            Some(p) => p,
            None => {
                let p = log_dir.join(format!("{first_index:020}.seg.tmp"));
                let f = io.open(&p, true).map_err(|e| Error::io("create segment", &p, e))?;
                f.set_len(0).map_err(|e| Error::io("truncate segment", &p, e))?;
                crate::janitor::preallocate(&*f, bytes, mode).map_err(|e| Error::io("preallocate", &p, e))?;
                p
            }
        };
        let file = io.open(&tmp, false).map_err(|e| Error::io("open segment", &tmp, e))?;
        let header = segfmt::encode(first_index);
        crate::io::write_all_at(&*file, &header, 0).map_err(|e| Error::io("write segment header", &tmp, e))?;
        io.rename(&tmp, &path).map_err(|e| Error::io("rename segment into place", &path, e))?;
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        let map = file.map().map_err(|e| Error::io("mmap", &path, e))?;
        let index = SlotIndex::create(io, &log_dir.join(idxfmt::file_name(first_index)), first_index, len)?;
        let header_crc = crate::format::u32_at(&header, segfmt::CRC_OFF);
        Ok(Segment::from_parts(first_index, path, file, map, header_crc, index))
    }

    /// Read and check record `index` through the index slot; return its payload.
    ///
    /// The index is derived data: when its slot does not lead to the record (an index damaged at
    /// rest that passed open's checks, or after open), the record is found by following the
    /// chain from the segment's start, the slot is repaired and a warning logged. Only damage
    /// in the segment itself is an error.
    pub fn read(&self, index: u64) -> Result<&[u8]> {
        let rel = index - self.first_index;
        let slot = self.index.get(rel);
        match self.read_at_slot(index, rel, slot) {
            Ok(payload) => Ok(payload),
            Err(slot_err) => {
                let s = crate::scan::scan(&self.map, self.first_index, self.header_crc, Some(rel + 1));
                match s.offsets.get(rel as usize) {
                    Some(&off) => {
                        tracing::warn!(
                            index = %self.index.path.display(),
                            entry = index,
                            slot,
                            offset = off,
                            error = %slot_err,
                            "index slot does not lead to its record; found it in the segment, slot repaired"
                        );
                        self.index.set(rel, off);
                        Ok(self.record_at(off)?.0)
                    }
                    None => match s.damage {
                        Some((off, kind)) => Err(Error::corruption(self.path.as_ref(), off, kind)),
                        None => Err(slot_err),
                    },
                }
            }
        }
    }

    /// Read record `index` (relative `rel`) at `off`, the offset its slot holds.
    fn read_at_slot(&self, index: u64, rel: u64, off: u64) -> Result<&[u8]> {
        if off < segfmt::HEADER_LEN as u64 || !off.is_multiple_of(8) || off + record::HEADER_LEN as u64 > self.len() {
            return Err(Error::corruption(
                self.index.path.as_ref(),
                self.index.slot_offset(rel),
                CorruptionKind::HeaderMismatch { field: "slot", expected: segfmt::HEADER_LEN as u64, found: off },
            ));
        }
        let (payload, h) = self.record_at(off)?;
        if h.index != index {
            return Err(Error::corruption(
                self.path.as_ref(),
                off,
                CorruptionKind::IndexMismatch { expected: index, found: h.index },
            ));
        }
        Ok(payload)
    }

    /// Check the record at byte `off` by its own checksum and return (payload, header).
    pub fn record_at(&self, off: u64) -> Result<(&[u8], record::RecordHeader)> {
        check_record(&self.map, off).map_err(|k| Error::corruption(self.path.as_ref(), off, k))
    }
}

/// Whether a whole record of the segment starting at `first` (index in its range, own checksum
/// good) sits anywhere in `bytes` (the whole segment file).
pub(crate) fn holds_whole_record(bytes: &[u8], first: u64) -> bool {
    let cap = SlotIndex::capacity_for(bytes.len() as u64);
    (segfmt::HEADER_LEN..bytes.len().saturating_sub(record::HEADER_LEN)).step_by(8).any(|off| {
        let idx = crate::format::u64_at(bytes, off + record::INDEX_OFF);
        idx >= first && idx < first + cap && check_record(bytes, off as u64).is_ok()
    })
}

/// Check the record at `off` in `bytes` (a whole segment) by its own checksum.
pub(crate) fn check_record(
    bytes: &[u8],
    off: u64,
) -> std::result::Result<(&[u8], record::RecordHeader), CorruptionKind> {
    let off = off as usize;
    if off + record::HEADER_LEN > bytes.len() {
        return Err(CorruptionKind::BadLength { len: 0, why: "header runs past the end of the segment" });
    }
    let h = record::RecordHeader::decode(&bytes[off..]);
    let end = off + record::HEADER_LEN + h.len as usize;
    if h.len == 0 {
        return Err(CorruptionKind::BadLength { len: 0, why: "zero length" });
    }
    if end > bytes.len() {
        return Err(CorruptionKind::BadLength { len: h.len as u64, why: "runs past the end of the segment" });
    }
    let computed = record::checksum(&bytes[off..end]);
    if computed != h.crc {
        return Err(CorruptionKind::ChecksumMismatch { stored: h.crc, computed });
    }
    if h.kind != record::KIND_ENTRY {
        return Err(CorruptionKind::BadKind(h.kind));
    }
    Ok((&bytes[off + record::HEADER_LEN..end], h))
}

/// The dense index of one segment: a header and `capacity` u64 slots, mmap'd.
///
/// Slot `i` holds the byte offset of entry `first_index + i`; 0 means "unknown" (offset 0 is the
/// segment header, never a record). Slots are read and written as atomics through a raw map, so
/// readers never lock and never see a torn slot.
#[derive(Debug)]
pub(crate) struct SlotIndex {
    pub path: Arc<PathBuf>,
    map: MapRaw,
    capacity: u64,
}

impl SlotIndex {
    /// Slots needed for a segment of `seg_len` bytes: one per smallest possible record.
    pub fn capacity_for(seg_len: u64) -> u64 {
        seg_len.saturating_sub(segfmt::HEADER_LEN as u64) / record::framed_len(1)
    }

    /// Create (or reset) the index file for a segment, in the open state, all slots unknown.
    pub fn create(io: &dyn Io, path: &Path, first_index: u64, seg_len: u64) -> Result<SlotIndex> {
        let capacity = Self::capacity_for(seg_len);
        let file = io.open(path, true).map_err(|e| Error::io("create index", path, e))?;
        // Reset to zeros: a stale index left by a deleted segment of the same name must not leak.
        file.set_len(0).map_err(|e| Error::io("truncate index", path, e))?;
        file.set_len(idxfmt::HEADER_LEN as u64 + capacity * idxfmt::SLOT_LEN as u64)
            .map_err(|e| Error::io("size index", path, e))?;
        let h = idxfmt::IndexHeader { state: idxfmt::STATE_OPEN, first_index, count: 0, last_crc: 0 };
        crate::io::write_all_at(&*file, &idxfmt::encode(&h), 0)
            .map_err(|e| Error::io("write index header", path, e))?;
        let map = file.map_raw().map_err(|e| Error::io("mmap index", path, e))?;
        Ok(SlotIndex { path: Arc::new(path.to_path_buf()), map, capacity })
    }

    /// Open an existing index without trusting it; `None` when it is missing or the wrong size
    /// for the segment (the caller rebuilds it).
    pub fn open_existing(
        io: &dyn Io,
        path: &Path,
        seg_len: u64,
    ) -> Result<Option<(SlotIndex, Option<idxfmt::IndexHeader>)>> {
        let capacity = Self::capacity_for(seg_len);
        let want = idxfmt::HEADER_LEN as u64 + capacity * idxfmt::SLOT_LEN as u64;
        let file = match io.open(path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open index", path, e)),
        };
        if file.len().map_err(|e| Error::io("stat", path, e))? != want {
            return Ok(None);
        }
        let map = file.map_raw().map_err(|e| Error::io("mmap index", path, e))?;
        let idx = SlotIndex { path: Arc::new(path.to_path_buf()), map, capacity };
        let header = idx.read_header();
        Ok(Some((idx, header)))
    }

    fn read_header(&self) -> Option<idxfmt::IndexHeader> {
        let mut b = [0u8; idxfmt::HEADER_LEN];
        // SAFETY: the map is at least HEADER_LEN bytes long (it was sized from the capacity
        // plus the header); header bytes are only written by `write_header`, never concurrently
        // with this read (open and seal are serialized by the store).
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr(), b.as_mut_ptr(), idxfmt::HEADER_LEN) };
        idxfmt::decode(&b)
    }

    /// Write the header through the map.
    pub fn write_header(&self, h: &idxfmt::IndexHeader) {
        let b = idxfmt::encode(h);
        // SAFETY: the map holds at least HEADER_LEN bytes; slots (written concurrently) start at
        // HEADER_LEN, so this never overlaps an atomic slot access.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.map.as_mut_ptr(), idxfmt::HEADER_LEN) };
    }

    fn slot(&self, rel: u64) -> &AtomicU64 {
        assert!(
            rel < self.capacity,
            "slot {rel} out of range for index {} (capacity {})",
            self.path.display(),
            self.capacity
        );
        // SAFETY: `rel < capacity`, and the map is HEADER_LEN + capacity * 8 bytes long, so the
        // slot lies inside it; the map is page-aligned and HEADER_LEN is a multiple of 8, so the
        // slot is 8-aligned as AtomicU64 requires; the map lives as long as `self`; every access
        // to slot memory goes through AtomicU64, so there is no non-atomic aliasing.
        unsafe {
            &*(self.map.as_mut_ptr().add(idxfmt::HEADER_LEN + rel as usize * idxfmt::SLOT_LEN) as *const AtomicU64)
        }
    }

    /// Position of entry `first_index + rel` (0 when unknown). Slots are little-endian on disk.
    pub fn get(&self, rel: u64) -> u64 {
        if rel >= self.capacity {
            return 0;
        }
        u64::from_le(self.slot(rel).load(Ordering::Acquire))
    }

    /// Record the position of entry `first_index + rel`.
    pub fn set(&self, rel: u64, offset: u64) {
        self.slot(rel).store(offset.to_le(), Ordering::Release);
    }

    /// File offset of slot `rel` (for error messages).
    pub fn slot_offset(&self, rel: u64) -> u64 {
        idxfmt::HEADER_LEN as u64 + rel * idxfmt::SLOT_LEN as u64
    }

    /// How many slots there are.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Write the map back to the file (msync). Off the hot path only.
    pub fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }
}
