//! `dump` and `verify`: read a data directory at the framing level (no codec needed) for humans
//! at 3 a.m. Both only read; neither takes the directory lock, so they can inspect a live store
//! (a live store's last segment may show records still being written).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{index as idxfmt, meta as metafmt, record, segment as segfmt};
use crate::io::Io;
use crate::recovery::{LOCK_FILE, LOG_DIR, META_FILE, NODE_ENTRIES, valid_successor};
use crate::scan::scan;

/// Something wrong that opening the store would refuse or that loses data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Byte offset in it.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at offset {}: {}", self.file.display(), self.offset, self.what)
    }
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Files read.
    pub files: usize,
    /// Records whose checksum and chain were verified.
    pub records: u64,
    /// Corruption: the store would refuse to open, or a read would fail.
    pub problems: Vec<Problem>,
    /// Conditions open repairs by itself (torn tail, stale index).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is corrupt.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

struct SegFile {
    first: u64,
    path: PathBuf,
    bytes: Vec<u8>,
}

fn list_segments(io: &dyn Io, dir: &Path, report: &mut VerifyReport) -> Result<Vec<SegFile>> {
    let log_dir = dir.join(LOG_DIR);
    let mut segs = BTreeMap::new();
    let listing = match io.list_dir(&log_dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("list", &log_dir, e)),
    };
    for p in listing {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".tmp") || name.ends_with(".idx") {
            continue;
        }
        match name.strip_suffix(".seg").filter(|s| s.len() == 20).and_then(|s| s.parse::<u64>().ok()) {
            Some(first) => {
                segs.insert(first, p);
            }
            None => {
                report.problems.push(Problem { file: p, offset: 0, what: "foreign file in the log directory".into() })
            }
        }
    }
    let mut out = Vec::new();
    for (first, path) in segs {
        let f = io.open_read(&path).map_err(|e| Error::io("open", &path, e))?;
        let len = f.len().map_err(|e| Error::io("stat", &path, e))?;
        let mut bytes = vec![0u8; len as usize];
        crate::io::read_exact_at(&*f, &mut bytes, 0).map_err(|e| Error::io("read", &path, e))?;
        report.files += 1;
        out.push(SegFile { first, path, bytes });
    }
    Ok(out)
}

/// Check every record of every file in data directory `dir`.
///
/// # Errors
/// Only when files cannot be read at all; damage is reported in the [`VerifyReport`].
pub fn verify(io: &dyn Io, dir: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for p in io.list_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name != LOCK_FILE && name != META_FILE && name != LOG_DIR && !NODE_ENTRIES.contains(&name.as_str()) {
            report.problems.push(Problem { file: p, offset: 0, what: "foreign file in the data directory".into() });
        }
    }
    verify_meta(io, dir, &mut report)?;
    let segs = list_segments(io, dir, &mut report)?;
    for (i, s) in segs.iter().enumerate() {
        let next_first = segs.get(i + 1).map(|n| n.first);
        let header = match segfmt::decode(&s.bytes) {
            Ok(h) => h,
            Err(e) => {
                // The same rule as open: a torn header is one whose every byte is the expected
                // one (it is a function of the file name) or still zero, with no whole record of
                // this segment anywhere behind it.
                let torn = segfmt::is_torn(&s.bytes, s.first);
                let any_whole = crate::segment::holds_whole_record(&s.bytes, s.first);
                if next_first.is_none() && torn && !any_whole {
                    report.notes.push(format!(
                        "{}: newest segment has no valid header ({e:?}); open removes it",
                        s.path.display()
                    ));
                } else {
                    report.problems.push(Problem {
                        file: s.path.clone(),
                        offset: 0,
                        what: format!("bad segment header: {e:?}"),
                    });
                }
                continue;
            }
        };
        if header.first_index != s.first {
            report.problems.push(Problem {
                file: s.path.clone(),
                offset: segfmt::FIRST_INDEX_OFF as u64,
                what: format!("header says first index {}, file name says {}", header.first_index, s.first),
            });
            continue;
        }
        let sc = scan(&s.bytes, s.first, header.crc, next_first.map(|n| n - s.first));
        report.records += sc.offsets.len() as u64;
        match (next_first, &sc.damage) {
            (Some(n), _) if s.first + (sc.offsets.len() as u64) < n => {
                let (off, what) = match &sc.damage {
                    Some((off, k)) => (*off, k.to_string()),
                    None => (
                        sc.end,
                        format!("ends at index {}, next segment starts at {n}", s.first + sc.offsets.len() as u64),
                    ),
                };
                report.problems.push(Problem { file: s.path.clone(), offset: off, what });
            }
            (None, Some((off, k))) => {
                let next = s.first + sc.offsets.len() as u64;
                match valid_successor(&s.bytes, *off, next, k) {
                    Some(at) => report.problems.push(Problem {
                        file: s.path.clone(),
                        offset: *off,
                        what: format!("{k}; a valid record follows at offset {at}: damage inside the log"),
                    }),
                    None => report.notes.push(format!(
                        "{}: torn tail at offset {off} ({k}); open truncates the log to index {} (or refuses, if \
                         meta records a later entry as committed)",
                        s.path.display(),
                        next.saturating_sub(1)
                    )),
                }
            }
            _ => {}
        }
        verify_index(io, s, &sc.offsets, next_first.is_some(), &mut report);
    }
    Ok(report)
}

fn verify_index(io: &dyn Io, s: &SegFile, offsets: &[u64], sealed: bool, report: &mut VerifyReport) {
    let idx_path = s.path.with_extension("idx");
    let bytes = match io.open_read(&idx_path).and_then(|f| {
        let mut b = vec![0u8; f.len()? as usize];
        crate::io::read_exact_at(&*f, &mut b, 0)?;
        Ok(b)
    }) {
        Ok(b) => b,
        Err(_) => {
            report.notes.push(format!("{}: missing or unreadable; open rebuilds it", idx_path.display()));
            return;
        }
    };
    report.files += 1;
    let header_ok = idxfmt::decode(&bytes)
        .is_some_and(|h| h.first_index == s.first && (!sealed || h.state == idxfmt::STATE_SEALED));
    let slots_ok = offsets.iter().enumerate().all(|(i, &o)| {
        let at = idxfmt::HEADER_LEN + i * idxfmt::SLOT_LEN;
        at + 8 <= bytes.len() && crate::format::u64_at(&bytes, at) == o
    });
    if !header_ok || !slots_ok {
        report.notes.push(format!("{}: does not match its segment; open rebuilds it", idx_path.display()));
    }
}

fn verify_meta(io: &dyn Io, dir: &Path, report: &mut VerifyReport) -> Result<()> {
    let path = dir.join(META_FILE);
    let f = match io.open_read(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.notes.push(format!("{}: missing (a new store)", path.display()));
            return Ok(());
        }
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    report.files += 1;
    let len = f.len().map_err(|e| Error::io("stat", &path, e))?;
    let mut b = vec![0u8; len.min(2 * metafmt::SLOT_LEN as u64) as usize];
    crate::io::read_exact_at(&*f, &mut b, 0).map_err(|e| Error::io("read", &path, e))?;
    let slots: Vec<_> = (0..2)
        .map(|i| metafmt::decode(&b[(i * metafmt::SLOT_LEN).min(b.len())..((i + 1) * metafmt::SLOT_LEN).min(b.len())]))
        .collect();
    let valid = slots.iter().filter(|s| s.is_ok()).count();
    let damaged: Vec<usize> =
        (0..2).filter(|&i| matches!(slots[i], Err(ref e) if *e != metafmt::SlotError::Empty)).collect();
    // The same rules as open: a slot from a newer format is refused outright; with no valid
    // slot, a foreign slot (wrong magic or version) or two damaged slots are refused.
    let newer =
        (0..2).find(|&i| matches!(slots[i], Err(metafmt::SlotError::Version(v)) if v > crate::format::FORMAT_VERSION));
    let foreign = (0..2).any(|i| matches!(slots[i], Err(metafmt::SlotError::Magic | metafmt::SlotError::Version(_))));
    if let Some(i) = newer {
        report.problems.push(Problem {
            file: path.clone(),
            offset: (i * metafmt::SLOT_LEN) as u64,
            what: format!("slot {i} was written by a newer format ({:?}); this build refuses to open it", slots[i]),
        });
    } else if valid == 0 && (damaged.len() == 2 || foreign) {
        report.problems.push(Problem { file: path.clone(), offset: 0, what: "neither meta slot is valid".into() });
    } else {
        for i in damaged {
            report.notes.push(format!(
                "{}: slot {i} is damaged ({:?}); the other slot holds the state",
                path.display(),
                slots[i]
            ));
        }
    }
    Ok(())
}

/// What to print in [`dump`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpOptions {
    /// One line per record.
    pub records: bool,
    /// Index slots beside the records.
    pub slots: bool,
}

/// Print meta, segments, indexes (and with options, every record) in human-readable form.
/// Returns whether everything verified (the `verify` result is printed at the end).
///
/// # Errors
/// When files cannot be read, or `out` fails.
pub fn dump(io: &dyn Io, dir: &Path, opts: DumpOptions, out: &mut dyn Write) -> Result<bool> {
    let w = |e: std::io::Error| Error::io("write output", "<stdout>", e);
    writeln!(out, "data directory {}", dir.display()).map_err(w)?;
    let meta_path = dir.join(META_FILE);
    match io.open_read(&meta_path) {
        Ok(f) => {
            let len = f.len().map_err(|e| Error::io("stat", &meta_path, e))?;
            let mut b = vec![0u8; len.min(2 * metafmt::SLOT_LEN as u64) as usize];
            crate::io::read_exact_at(&*f, &mut b, 0).map_err(|e| Error::io("read", &meta_path, e))?;
            writeln!(out, "meta ({len} bytes)").map_err(w)?;
            for i in 0..2 {
                let s = &b[(i * metafmt::SLOT_LEN).min(b.len())..((i + 1) * metafmt::SLOT_LEN).min(b.len())];
                match metafmt::decode(s) {
                    Ok(m) => writeln!(
                        out,
                        "  slot {i}: sequence {} vote {} committed {} purged {}",
                        m.sequence,
                        hex_field(&m.body.vote),
                        hex_field(&m.body.committed),
                        hex_field(&m.body.purged)
                    )
                    .map_err(w)?,
                    Err(e) => writeln!(out, "  slot {i}: {e:?}").map_err(w)?,
                }
            }
        }
        Err(e) => writeln!(out, "meta: {e}").map_err(w)?,
    }
    let mut scratch = VerifyReport::default();
    let segs = list_segments(io, dir, &mut scratch)?;
    for (i, s) in segs.iter().enumerate() {
        let next_first = segs.get(i + 1).map(|n| n.first);
        write!(out, "segment {} ({} bytes)", s.path.display(), s.bytes.len()).map_err(w)?;
        let h = match segfmt::decode(&s.bytes) {
            Ok(h) => h,
            Err(e) => {
                writeln!(out, ": bad header {e:?}").map_err(w)?;
                continue;
            }
        };
        let sc = scan(&s.bytes, s.first, h.crc, next_first.map(|n| n - s.first));
        let last = (s.first + sc.offsets.len() as u64).checked_sub(1).filter(|_| !sc.offsets.is_empty());
        writeln!(
            out,
            ": version {} first {} records {} last {} end offset {} header crc {:#010x}{}",
            h.version,
            h.first_index,
            sc.offsets.len(),
            last.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
            sc.end,
            h.crc,
            match &sc.damage {
                Some((o, k)) => format!(" STOPPED at {o}: {k}"),
                None => String::new(),
            }
        )
        .map_err(w)?;
        let idx_path = s.path.with_extension("idx");
        let idx = io.open_read(&idx_path).ok().and_then(|f| {
            let mut b = vec![0u8; f.len().ok()? as usize];
            crate::io::read_exact_at(&*f, &mut b, 0).ok()?;
            Some(b)
        });
        match idx.as_deref().map(|b| (b, idxfmt::decode(b))) {
            Some((b, Some(ih))) => writeln!(
                out,
                "  index {}: {} first {} count {} last_crc {:#010x} ({} slots)",
                idx_path.display(),
                if ih.state == idxfmt::STATE_SEALED { "sealed" } else { "open" },
                ih.first_index,
                ih.count,
                ih.last_crc,
                (b.len().saturating_sub(idxfmt::HEADER_LEN)) / idxfmt::SLOT_LEN
            )
            .map_err(w)?,
            Some((_, None)) => writeln!(out, "  index {}: bad header", idx_path.display()).map_err(w)?,
            None => writeln!(out, "  index {}: missing", idx_path.display()).map_err(w)?,
        }
        if opts.records {
            for (k, &off) in sc.offsets.iter().enumerate() {
                let rh = record::RecordHeader::decode(&s.bytes[off as usize..]);
                let slot = if opts.slots {
                    let at = idxfmt::HEADER_LEN + k * idxfmt::SLOT_LEN;
                    match idx.as_deref() {
                        Some(b) if at + 8 <= b.len() => format!(" slot {}", crate::format::u64_at(b, at)),
                        _ => " slot -".into(),
                    }
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "    index {} offset {} len {} crc {:#010x} prev {:#010x} kind {}{}",
                    rh.index, off, rh.len, rh.crc, rh.prev_crc, rh.kind, slot
                )
                .map_err(w)?;
            }
        }
    }
    let report = verify(io, dir)?;
    writeln!(out, "verify: {} files, {} records", report.files, report.records).map_err(w)?;
    for n in &report.notes {
        writeln!(out, "note: {n}").map_err(w)?;
    }
    for p in &report.problems {
        writeln!(out, "CORRUPT: {p}").map_err(w)?;
    }
    Ok(report.is_clean())
}

fn hex_field(f: &Option<Vec<u8>>) -> String {
    match f {
        None => "-".into(),
        Some(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}
