//! Walking a segment's records from the start, checking each one and the chain between them.
//! Used at open (last segment, and any index that has to be rebuilt) and by `verify`.

use crate::error::CorruptionKind;
use crate::format::{record, segment as segfmt};
use crate::segment::check_record;

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Offset of each whole record, in order: entry `first_index + i` is at `offsets[i]`.
    pub offsets: Vec<u64>,
    /// Checksum of the last whole record (the header's crc when there is none).
    pub last_crc: u32,
    /// Offset just past the last whole record: where the next record goes.
    pub end: u64,
    /// Why the scan stopped before the end of the file, if it did not stop on clean zeroed space.
    pub damage: Option<(u64, CorruptionKind)>,
}

/// Scan `bytes` (a whole segment, header included) whose first record is `first_index`.
/// `stop_after` bounds how many records are read (sealed segments know their count).
pub(crate) fn scan(bytes: &[u8], first_index: u64, header_crc: u32, stop_after: Option<u64>) -> Scan {
    let mut off = segfmt::HEADER_LEN as u64;
    let mut prev = header_crc;
    let mut offsets = Vec::new();
    let mut damage = None;
    loop {
        if stop_after.is_some_and(|n| offsets.len() as u64 >= n) {
            break;
        }
        let o = off as usize;
        if o + record::HEADER_LEN > bytes.len() {
            // Not even a header fits: the end of the file. Trailing bytes that are not zero are a
            // torn record.
            if bytes[o.min(bytes.len())..].iter().any(|&b| b != 0) {
                damage = Some((off, CorruptionKind::BadLength { len: 0, why: "partial header at end of file" }));
            }
            break;
        }
        if bytes[o..o + record::HEADER_LEN].iter().all(|&b| b == 0) {
            break; // clean end: preallocated or zeroed space
        }
        match check_record(bytes, off) {
            Err(k) => {
                damage = Some((off, k));
                break;
            }
            Ok((_, h)) => {
                let expected = first_index + offsets.len() as u64;
                if h.prev_crc != prev {
                    damage = Some((off, CorruptionKind::BrokenChain { expected: prev, found: h.prev_crc }));
                    break;
                }
                if h.index != expected {
                    damage = Some((off, CorruptionKind::IndexMismatch { expected, found: h.index }));
                    break;
                }
                offsets.push(off);
                prev = h.crc;
                off += record::framed_len(h.len as usize);
            }
        }
    }
    Scan { offsets, last_crc: prev, end: off, damage }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(first: u64, payloads: &[&[u8]]) -> (Vec<u8>, u32) {
        let h = segfmt::encode(first);
        let hcrc = crate::format::u32_at(&h, segfmt::CRC_OFF);
        let mut b = h.to_vec();
        let mut prev = hcrc;
        for (i, p) in payloads.iter().enumerate() {
            let start = b.len();
            b.resize(start + record::HEADER_LEN, 0);
            b.extend_from_slice(p);
            prev = record::seal(&mut b[start..], first + i as u64, prev);
            b.resize(crate::format::align8(b.len() as u64) as usize, 0);
        }
        b.resize(b.len() + 256, 0);
        (b, hcrc)
    }

    #[test]
    fn clean_scan_and_every_torn_cut() {
        let (b, hcrc) = build(10, &[b"hello", b"world!!!", b"x"]);
        let s = scan(&b, 10, hcrc, None);
        assert_eq!(s.offsets.len(), 3);
        assert!(s.damage.is_none());
        // Cut the bytes of the last record (not its padding) at every offset: only whole records
        // survive.
        let last_end = s.offsets[2] as usize + record::HEADER_LEN + 1;
        for cut in s.offsets[2] as usize..last_end {
            let mut t = b.clone();
            for x in &mut t[cut..] {
                *x = 0;
            }
            let s2 = scan(&t, 10, hcrc, None);
            assert_eq!(s2.offsets.len(), 2, "cut at {cut}");
            assert_eq!(s2.end, s.offsets[2]);
        }
    }

    #[test]
    fn stale_record_after_rewrite_is_not_chained() {
        // Records 10, 11, 12; then 11 rewritten with a payload of the same size: 12 must not chain.
        let (mut b, hcrc) = build(10, &[b"aaaa", b"bbbb", b"cccc"]);
        let s = scan(&b, 10, hcrc, None);
        let off11 = s.offsets[1] as usize;
        let crc10 = record::RecordHeader::decode(&b[s.offsets[0] as usize..]).crc;
        let mut r = vec![0u8; record::HEADER_LEN];
        r.extend_from_slice(b"BBBB");
        record::seal(&mut r, 11, crc10);
        b[off11..off11 + r.len()].copy_from_slice(&r);
        let s2 = scan(&b, 10, hcrc, None);
        assert_eq!(s2.offsets.len(), 2);
        assert!(matches!(s2.damage, Some((_, CorruptionKind::BrokenChain { .. }))));
    }
}
