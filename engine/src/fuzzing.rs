//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the engine's decoders of bytes
//! read from disk, callable on a byte slice without a data directory. They run the same code as
//! open, `dump` and `verify`; nothing here is used by the engine itself. Not a stable API.

use std::path::Path;

use crate::format::{meta as metafmt, record, segment as segfmt};
use crate::scan::scan;
use crate::segment::check_record;

/// What [`decode_segment`] found in a segment file's bytes.
#[derive(Debug)]
pub struct DecodedSegment<'a> {
    /// The first Raft index, from the header.
    pub first_index: u64,
    /// The payload of every whole record, in order: entry `first_index + i` is `payloads[i]`.
    pub payloads: Vec<&'a [u8]>,
    /// Where the records end (the next record would go here).
    pub end: u64,
    /// Whether the scan stopped at damage (a torn, corrupt or stale record) rather than at
    /// zeroed space or the end of the file.
    pub damaged: bool,
}

/// Decode a segment file's bytes as recovery does: the header, then every record and the
/// checksum chain between them, up to the first damage. `None` when the header is not a valid
/// segment header.
///
/// # Panics
/// If the scan reports a record that does not decode as a whole record (a bug the fuzz target
/// is looking for).
pub fn decode_segment(bytes: &[u8]) -> Option<DecodedSegment<'_>> {
    let header = segfmt::decode(bytes).ok()?;
    let s = scan(bytes, header.first_index, header.crc, None);
    let payloads = s
        .offsets
        .iter()
        .map(|&off| check_record(bytes, off).expect("scan returned a record that does not check").0)
        .collect();
    Some(DecodedSegment { first_index: header.first_index, payloads, end: s.end, damaged: s.damage.is_some() })
}

/// A segment file holding `payloads` as entries `first_index..`, each record sealed and chained
/// as the writer does (for seeds and for fuzzing what lies behind the checksums).
pub fn encode_segment(first_index: u64, payloads: &[&[u8]]) -> Vec<u8> {
    let header = segfmt::encode(first_index);
    let mut prev = crate::format::u32_at(&header, segfmt::CRC_OFF);
    let mut b = header.to_vec();
    for (i, p) in payloads.iter().enumerate() {
        let start = b.len();
        b.resize(start + record::HEADER_LEN, 0);
        b.extend_from_slice(p);
        prev = record::seal(&mut b[start..], first_index + i as u64, prev);
        b.resize(crate::format::align8(b.len() as u64) as usize, 0);
    }
    b
}

/// Decode a meta file's bytes as open does: the newest valid of its two slots, `Ok(None)` when
/// neither holds a record (a new store), or the error open would report.
///
/// # Errors
/// As open: a foreign or newer file, or both slots damaged.
pub fn decode_meta(bytes: &[u8]) -> crate::Result<Option<metafmt::MetaSlot>> {
    let buf = &bytes[..bytes.len().min(2 * metafmt::SLOT_LEN)];
    Ok(crate::recovery::newest_meta_slot(buf, Path::new("meta"))?.map(|(_, s)| s))
}
