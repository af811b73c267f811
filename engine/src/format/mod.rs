//! On-disk formats, byte by byte. The specification is `docs/format.md`; every offset here is a
//! named constant derived from the one before it, so code and spec can be checked side by side.
//!
//! All integers are little-endian with explicit widths.

pub mod index;
pub mod meta;
pub mod record;
pub mod segment;
pub mod snapshot;

/// The format version every file header carries. Bump it (and keep a reader for the old one, or
/// refuse it with [`crate::Error::UnsupportedVersion`]) whenever a byte changes meaning.
pub const FORMAT_VERSION: u32 = 1;

/// Round `n` up to the next multiple of 8: records start on 8-byte boundaries so a length field
/// never straddles a sector.
#[inline]
pub const fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

#[inline]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline]
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}
