//! Segment file header (`log/<first-index>.seg`). See `docs/format.md#segment-files`.
//!
//! ```text
//! 0        8          12         16            24       28         32
//! +--------+----------+----------+-------------+--------+----------+
//! | magic  | version  | reserved | first_index | crc32c | reserved |
//! +--------+----------+----------+-------------+--------+----------+
//! ```

use super::{FORMAT_VERSION, u32_at, u64_at};

/// Magic bytes at offset 0 of every segment file.
pub const MAGIC: &[u8; 8] = b"CFLXSEG\0";
/// Offset of the version field.
pub const VERSION_OFF: usize = MAGIC.len();
/// Offset of the reserved word after the version.
pub const RESERVED0_OFF: usize = VERSION_OFF + 4;
/// Offset of the first Raft index the segment holds.
pub const FIRST_INDEX_OFF: usize = RESERVED0_OFF + 4;
/// Offset of the crc32c over bytes `0..CRC_OFF`.
pub const CRC_OFF: usize = FIRST_INDEX_OFF + 8;
/// Offset of the trailing reserved word.
pub const RESERVED1_OFF: usize = CRC_OFF + 4;
/// Size of the header; the first record starts here.
pub const HEADER_LEN: usize = RESERVED1_OFF + 4;

/// File name of the segment whose first entry is `first_index`.
pub fn file_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u32,
    /// Raft index of the first record.
    pub first_index: u64,
    /// crc32c of the header bytes; also the seed of the first record's checksum chain.
    pub crc: u32,
}

/// Why a header did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short(usize),
    /// Wrong magic.
    Magic(Vec<u8>),
    /// Wrong version.
    Version(u32),
    /// Header checksum mismatch.
    Checksum {
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
}

/// Encode the header of a segment starting at `first_index`.
pub fn encode(first_index: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..VERSION_OFF].copy_from_slice(MAGIC);
    h[VERSION_OFF..RESERVED0_OFF].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[FIRST_INDEX_OFF..CRC_OFF].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&h[..CRC_OFF]);
    h[CRC_OFF..RESERVED1_OFF].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Whether `b` (the start of the segment file named for `first_index`) holds a torn write of
/// that segment's header: the header is a function of the name, so a torn one has every byte
/// either the expected one or still zero (preallocated space). A flipped bit, another build's
/// version or a foreign file is not torn.
pub fn is_torn(b: &[u8], first_index: u64) -> bool {
    let expected = encode(first_index);
    let head = &b[..b.len().min(HEADER_LEN)];
    decode(b).is_err() && head.iter().zip(expected.iter()).all(|(x, e)| *x == 0 || x == e)
}

/// Decode and check a segment header.
pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
    if b.len() < HEADER_LEN {
        return Err(HeaderError::Short(b.len()));
    }
    if &b[..VERSION_OFF] != MAGIC {
        return Err(HeaderError::Magic(b[..VERSION_OFF].to_vec()));
    }
    let version = u32_at(b, VERSION_OFF);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let stored = u32_at(b, CRC_OFF);
    let computed = crc32c::crc32c(&b[..CRC_OFF]);
    if stored != computed {
        return Err(HeaderError::Checksum { stored, computed });
    }
    Ok(SegmentHeader { version, first_index: u64_at(b, FIRST_INDEX_OFF), crc: stored })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_reject() {
        let h = encode(42);
        let d = decode(&h).unwrap();
        assert_eq!(d.first_index, 42);
        assert_eq!(d.crc, crc32c::crc32c(&h[..CRC_OFF]));
        let mut bad = h;
        bad[FIRST_INDEX_OFF] ^= 1;
        assert!(matches!(decode(&bad), Err(HeaderError::Checksum { .. })));
        let mut v = h;
        v[VERSION_OFF] = 9;
        assert_eq!(decode(&v), Err(HeaderError::Version(9)));
        assert!(matches!(decode(&h[..10]), Err(HeaderError::Short(10))));
        assert_eq!(HEADER_LEN, 32);
    }
}
