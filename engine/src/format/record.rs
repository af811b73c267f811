//! Record framing inside a segment. See `docs/format.md#records`.
//!
//! ```text
//! 0       4       8               16          20      24            24+len   align8
//! +-------+-------+---------------+-----------+-------+-------------+--------+
//! | len   | crc   | index         | prev_crc  | kind  | payload     | zeros  |
//! +-------+-------+---------------+-----------+-------+-------------+--------+
//! ```
//!
//! `crc` is crc32c over header bytes `8..24` followed by the payload. `prev_crc` is the `crc` of
//! the record before it in the same segment (the segment header's crc for the first record), so a
//! stale record left behind a torn or truncated tail can never be read as the continuation of the
//! log. A zero `len` word means "no record here": preallocated space reads as the end of the log.

use super::{align8, u32_at, u64_at};

/// Offset of the payload length (u32).
pub const LEN_OFF: usize = 0;
/// Offset of the record checksum (u32).
pub const CRC_OFF: usize = LEN_OFF + 4;
/// Offset of the Raft index (u64). The checksum covers from here on.
pub const INDEX_OFF: usize = CRC_OFF + 4;
/// Offset of the previous record's checksum (u32).
pub const PREV_CRC_OFF: usize = INDEX_OFF + 8;
/// Offset of the record kind (u32).
pub const KIND_OFF: usize = PREV_CRC_OFF + 4;
/// Size of the record header; the payload starts here.
pub const HEADER_LEN: usize = KIND_OFF + 4;

/// Record kind: a Raft log entry encoded by the store's codec. Kind 0 is never valid.
pub const KIND_ENTRY: u32 = 1;

/// Bytes a record with a `payload_len`-byte payload occupies, padding included.
#[inline]
pub const fn framed_len(payload_len: usize) -> u64 {
    align8((HEADER_LEN + payload_len) as u64)
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length.
    pub len: u32,
    /// Stored checksum.
    pub crc: u32,
    /// Raft index.
    pub index: u64,
    /// Checksum of the previous record (chain).
    pub prev_crc: u32,
    /// Record kind.
    pub kind: u32,
}

impl RecordHeader {
    /// Decode the header at the start of `b` (which must hold at least [`HEADER_LEN`] bytes).
    #[inline]
    pub fn decode(b: &[u8]) -> RecordHeader {
        RecordHeader {
            len: u32_at(b, LEN_OFF),
            crc: u32_at(b, CRC_OFF),
            index: u64_at(b, INDEX_OFF),
            prev_crc: u32_at(b, PREV_CRC_OFF),
            kind: u32_at(b, KIND_OFF),
        }
    }
}

/// Fill in the header of a record whose payload already sits at `buf[HEADER_LEN..HEADER_LEN+len]`,
/// and return its checksum.
#[inline]
pub fn seal(buf: &mut [u8], index: u64, prev_crc: u32) -> u32 {
    let len = buf.len() - HEADER_LEN;
    buf[LEN_OFF..CRC_OFF].copy_from_slice(&(len as u32).to_le_bytes());
    buf[INDEX_OFF..PREV_CRC_OFF].copy_from_slice(&index.to_le_bytes());
    buf[PREV_CRC_OFF..KIND_OFF].copy_from_slice(&prev_crc.to_le_bytes());
    buf[KIND_OFF..HEADER_LEN].copy_from_slice(&KIND_ENTRY.to_le_bytes());
    let crc = checksum(buf);
    buf[CRC_OFF..INDEX_OFF].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// Checksum of a whole record (`header ++ payload`, no padding): crc32c over `INDEX_OFF..`.
#[inline]
pub fn checksum(record: &[u8]) -> u32 {
    crc32c::crc32c(&record[INDEX_OFF..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout() {
        assert_eq!(HEADER_LEN, 24);
        assert_eq!(framed_len(0), 24);
        assert_eq!(framed_len(1), 32);
        assert_eq!(framed_len(8), 32);
        assert_eq!(framed_len(9), 40);
    }

    proptest! {
        #[test]
        fn seal_then_decode(payload in proptest::collection::vec(any::<u8>(), 1..300), index: u64, prev: u32) {
            let mut buf = vec![0u8; HEADER_LEN];
            buf.extend_from_slice(&payload);
            let crc = seal(&mut buf, index, prev);
            let h = RecordHeader::decode(&buf);
            prop_assert_eq!(h.len as usize, payload.len());
            prop_assert_eq!(h.index, index);
            prop_assert_eq!(h.prev_crc, prev);
            prop_assert_eq!(h.kind, KIND_ENTRY);
            prop_assert_eq!(h.crc, crc);
            prop_assert_eq!(checksum(&buf), crc);
            // any single bit flip after the crc field is detected
            let bit = (index as usize) % ((buf.len() - INDEX_OFF) * 8);
            buf[INDEX_OFF + bit / 8] ^= 1 << (bit % 8);
            prop_assert_ne!(checksum(&buf), crc);
        }
    }
}
