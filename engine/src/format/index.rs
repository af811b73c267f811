//! Index file header (`log/<first-index>.idx`). See `docs/format.md#index-files`.
//!
//! ```text
//! 0        8         12       16            24       32         36       40          64
//! +--------+---------+--------+-------------+--------+----------+--------+-----------+
//! | magic  | version | state  | first_index | count  | last_crc | crc32c | reserved  |
//! +--------+---------+--------+-------------+--------+----------+--------+-----------+
//! 64: slot[0] u64, slot[1] u64, ...   slot i = byte offset of entry first_index+i in the segment
//! ```
//!
//! The index is derived data: it is never fsync'd on the append path and is rebuilt from its
//! segment whenever it does not prove itself consistent at open.

use super::{FORMAT_VERSION, u32_at, u64_at};

/// Magic bytes at offset 0 of every index file.
pub const MAGIC: &[u8; 8] = b"CFLXIDX\0";
/// Offset of the version field.
pub const VERSION_OFF: usize = MAGIC.len();
/// Offset of the state field ([`STATE_OPEN`] or [`STATE_SEALED`]).
pub const STATE_OFF: usize = VERSION_OFF + 4;
/// Offset of the first index.
pub const FIRST_INDEX_OFF: usize = STATE_OFF + 4;
/// Offset of the number of entries (meaningful when sealed).
pub const COUNT_OFF: usize = FIRST_INDEX_OFF + 8;
/// Offset of the checksum of the segment's last record (meaningful when sealed).
pub const LAST_CRC_OFF: usize = COUNT_OFF + 8;
/// Offset of the header checksum over `0..CRC_OFF`.
pub const CRC_OFF: usize = LAST_CRC_OFF + 4;
/// Size of the header; slots start here.
pub const HEADER_LEN: usize = 64;
/// Size of one slot.
pub const SLOT_LEN: usize = 8;

/// The segment is still being written: slots may be incomplete.
pub const STATE_OPEN: u32 = 0;
/// The segment was sealed and the slots were flushed before this state was written.
pub const STATE_SEALED: u32 = 1;

/// File name of the index of the segment whose first entry is `first_index`.
pub fn file_name(first_index: u64) -> String {
    format!("{first_index:020}.idx")
}

/// A decoded index header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    /// [`STATE_OPEN`] or [`STATE_SEALED`].
    pub state: u32,
    /// First Raft index.
    pub first_index: u64,
    /// Entries in the segment (when sealed).
    pub count: u64,
    /// Checksum of the last record (when sealed).
    pub last_crc: u32,
}

/// Encode an index header.
pub fn encode(h: &IndexHeader) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..VERSION_OFF].copy_from_slice(MAGIC);
    b[VERSION_OFF..STATE_OFF].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[STATE_OFF..FIRST_INDEX_OFF].copy_from_slice(&h.state.to_le_bytes());
    b[FIRST_INDEX_OFF..COUNT_OFF].copy_from_slice(&h.first_index.to_le_bytes());
    b[COUNT_OFF..LAST_CRC_OFF].copy_from_slice(&h.count.to_le_bytes());
    b[LAST_CRC_OFF..CRC_OFF].copy_from_slice(&h.last_crc.to_le_bytes());
    let crc = crc32c::crc32c(&b[..CRC_OFF]);
    b[CRC_OFF..CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decode an index header; `None` when it is not a valid header of this version (the index is
/// then rebuilt, never trusted).
pub fn decode(b: &[u8]) -> Option<IndexHeader> {
    if b.len() < HEADER_LEN || &b[..VERSION_OFF] != MAGIC || u32_at(b, VERSION_OFF) != FORMAT_VERSION {
        return None;
    }
    if u32_at(b, CRC_OFF) != crc32c::crc32c(&b[..CRC_OFF]) {
        return None;
    }
    Some(IndexHeader {
        state: u32_at(b, STATE_OFF),
        first_index: u64_at(b, FIRST_INDEX_OFF),
        count: u64_at(b, COUNT_OFF),
        last_crc: u32_at(b, LAST_CRC_OFF),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let h = IndexHeader { state: STATE_SEALED, first_index: 7, count: 100, last_crc: 0xdead_beef };
        let b = encode(&h);
        assert_eq!(decode(&b), Some(h));
        let mut bad = b;
        bad[COUNT_OFF] ^= 4;
        assert_eq!(decode(&bad), None);
        const { assert!(CRC_OFF + 4 <= HEADER_LEN) };
    }
}
