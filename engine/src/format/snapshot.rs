//! Snapshot container (`snapshots/<term>-<index>.snap.zst`). See `docs/format.md#snapshot-files`.
//!
//! ```text
//! 0        8         12      16             20            24
//! +--------+---------+-------+--------------+-------------+------------+----------+----------+
//! | magic  | version | level | raft_meta_len| app_meta_len| raft_meta  | app_meta | hdr crc  |
//! +--------+---------+-------+--------------+-------------+------------+----------+----------+
//! then the body: one zstd stream of the application's bytes
//! then the trailer (24 bytes):
//! +-----------+-----------+----------+-----------+
//! | body_len  | body_crc  | reserved | end magic |
//! +-----------+-----------+----------+-----------+
//! ```
//!
//! The container is the engine's and knows nothing of what the body means: `raft_meta` is the
//! Raft snapshot metadata (last log id, membership) as the store's codec encodes it, `app_meta`
//! is the state machine's own (its revisions, say), and the body is whatever it streams in.

use super::{FORMAT_VERSION, u32_at, u64_at};

/// Magic bytes at offset 0.
pub const MAGIC: &[u8; 8] = b"CFLXSNAP";
/// Offset of the version.
pub const VERSION_OFF: usize = MAGIC.len();
/// Offset of the zstd level the body was written with (i32, informational).
pub const LEVEL_OFF: usize = VERSION_OFF + 4;
/// Offset of the length of `raft_meta`.
pub const RAFT_META_LEN_OFF: usize = LEVEL_OFF + 4;
/// Offset of the length of `app_meta`.
pub const APP_META_LEN_OFF: usize = RAFT_META_LEN_OFF + 4;
/// Size of the fixed part of the header; `raft_meta` starts here.
pub const FIXED_LEN: usize = APP_META_LEN_OFF + 4;
/// Largest metadata field accepted (guards allocations on corrupt input).
pub const MAX_META: usize = 16 << 20;

/// Offset (in the trailer) of the compressed body's length.
pub const TRAILER_BODY_LEN_OFF: usize = 0;
/// Offset (in the trailer) of the crc32c of the compressed body.
pub const TRAILER_BODY_CRC_OFF: usize = TRAILER_BODY_LEN_OFF + 8;
/// Offset (in the trailer) of the reserved word.
pub const TRAILER_RESERVED_OFF: usize = TRAILER_BODY_CRC_OFF + 4;
/// Offset (in the trailer) of the end magic.
pub const TRAILER_MAGIC_OFF: usize = TRAILER_RESERVED_OFF + 4;
/// End magic: a file without it was not finished.
pub const END_MAGIC: &[u8; 8] = b"CFLXSEND";
/// Size of the trailer.
pub const TRAILER_LEN: usize = TRAILER_MAGIC_OFF + END_MAGIC.len();

/// File name of the snapshot of log id (`term`, `index`).
pub fn file_name(term: u64, index: u64) -> String {
    format!("{term:020}-{index:020}.snap.zst")
}

/// Parse a snapshot file name into (term, index).
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".snap.zst")?;
    let (t, i) = stem.split_once('-')?;
    if t.len() != 20 || i.len() != 20 {
        return None;
    }
    Some((t.parse().ok()?, i.parse().ok()?))
}

/// Encode the header.
pub fn encode_header(level: i32, raft_meta: &[u8], app_meta: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(FIXED_LEN + raft_meta.len() + app_meta.len() + 4);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&level.to_le_bytes());
    b.extend_from_slice(&(raft_meta.len() as u32).to_le_bytes());
    b.extend_from_slice(&(app_meta.len() as u32).to_le_bytes());
    b.extend_from_slice(raft_meta);
    b.extend_from_slice(app_meta);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The fixed part, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    /// Format version.
    pub version: u32,
    /// zstd level.
    pub level: i32,
    /// Length of `raft_meta`.
    pub raft_meta_len: usize,
    /// Length of `app_meta`.
    pub app_meta_len: usize,
}

impl Fixed {
    /// Whole header length, checksum included.
    pub fn header_len(&self) -> usize {
        FIXED_LEN + self.raft_meta_len + self.app_meta_len + 4
    }
}

/// Decode the fixed part (magic and version are checked by the caller, which names the file).
pub fn decode_fixed(b: &[u8; FIXED_LEN]) -> Fixed {
    Fixed {
        version: u32_at(b, VERSION_OFF),
        level: u32_at(b, LEVEL_OFF) as i32,
        raft_meta_len: u32_at(b, RAFT_META_LEN_OFF) as usize,
        app_meta_len: u32_at(b, APP_META_LEN_OFF) as usize,
    }
}

/// Encode the trailer.
pub fn encode_trailer(body_len: u64, body_crc: u32) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[TRAILER_BODY_LEN_OFF..TRAILER_BODY_CRC_OFF].copy_from_slice(&body_len.to_le_bytes());
    t[TRAILER_BODY_CRC_OFF..TRAILER_RESERVED_OFF].copy_from_slice(&body_crc.to_le_bytes());
    t[TRAILER_MAGIC_OFF..].copy_from_slice(END_MAGIC);
    t
}

/// Decode the trailer: (body length, body crc), or `None` without the end magic.
pub fn decode_trailer(t: &[u8; TRAILER_LEN]) -> Option<(u64, u32)> {
    (&t[TRAILER_MAGIC_OFF..] == END_MAGIC).then(|| (u64_at(t, TRAILER_BODY_LEN_OFF), u32_at(t, TRAILER_BODY_CRC_OFF)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_layout() {
        assert_eq!(parse_name(&file_name(3, 77)), Some((3, 77)));
        assert_eq!(parse_name("3-77.snap.zst"), None);
        assert_eq!(FIXED_LEN, 24);
        assert_eq!(TRAILER_LEN, 24);
        let h = encode_header(3, b"raft", b"app!");
        let mut fixed = [0u8; FIXED_LEN];
        fixed.copy_from_slice(&h[..FIXED_LEN]);
        let f = decode_fixed(&fixed);
        assert_eq!((f.level, f.raft_meta_len, f.app_meta_len, f.header_len()), (3, 4, 4, h.len()));
        assert_eq!(decode_trailer(&encode_trailer(9, 7)), Some((9, 7)));
    }
}
