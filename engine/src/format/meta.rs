//! The meta file (`meta`): two fixed-size slots written alternately. See `docs/format.md#meta-file`.
//!
//! ```text
//! slot (4096 bytes, at offset 0 or 4096):
//! 0        8         12            16         24                     24+body_len  +4
//! +--------+---------+-------------+----------+----------------------+-----------+
//! | magic  | version | body_len    | sequence | body                 | crc32c    |
//! +--------+---------+-------------+----------+----------------------+-----------+
//! body = field(vote) field(committed) field(purged)
//! field = u32 length (0xFFFF_FFFF = absent) ++ bytes encoded by the store's codec
//! ```
//!
//! A write goes to the slot not holding the newest valid record, then fdatasync. A torn write can
//! only damage that slot; the other still holds the previous state. The valid slot with the higher
//! sequence wins at open.

use super::{FORMAT_VERSION, u32_at, u64_at};

/// Magic bytes at the start of each slot.
pub const MAGIC: &[u8; 8] = b"CFLXMETA";
/// Offset of the version field.
pub const VERSION_OFF: usize = MAGIC.len();
/// Offset of the body length.
pub const BODY_LEN_OFF: usize = VERSION_OFF + 4;
/// Offset of the sequence number.
pub const SEQ_OFF: usize = BODY_LEN_OFF + 4;
/// Offset of the body.
pub const BODY_OFF: usize = SEQ_OFF + 8;
/// Size of one slot; slot `n` is at offset `n * SLOT_LEN`.
pub const SLOT_LEN: usize = 4096;
/// Largest body a slot can hold.
pub const MAX_BODY: usize = SLOT_LEN - BODY_OFF - 4;
/// Length value marking an absent field.
pub const ABSENT: u32 = u32::MAX;

/// The three fields, each already encoded by the codec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaBody {
    /// Encoded vote.
    pub vote: Option<Vec<u8>>,
    /// Encoded committed log id.
    pub committed: Option<Vec<u8>>,
    /// Encoded purged log id.
    pub purged: Option<Vec<u8>>,
}

/// A decoded slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaSlot {
    /// Monotonic write sequence.
    pub sequence: u64,
    /// The fields.
    pub body: MetaBody,
}

/// Encode a slot; `None` when the body does not fit in [`MAX_BODY`].
pub fn encode(seq: u64, body: &MetaBody) -> Option<Vec<u8>> {
    let mut b = vec![0u8; BODY_OFF];
    b[..VERSION_OFF].copy_from_slice(MAGIC);
    b[VERSION_OFF..BODY_LEN_OFF].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[SEQ_OFF..BODY_OFF].copy_from_slice(&seq.to_le_bytes());
    for f in [&body.vote, &body.committed, &body.purged] {
        match f {
            None => b.extend_from_slice(&ABSENT.to_le_bytes()),
            Some(v) => {
                b.extend_from_slice(&(v.len() as u32).to_le_bytes());
                b.extend_from_slice(v);
            }
        }
    }
    let body_len = b.len() - BODY_OFF;
    if body_len > MAX_BODY {
        return None;
    }
    b[BODY_LEN_OFF..SEQ_OFF].copy_from_slice(&(body_len as u32).to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.resize(SLOT_LEN, 0);
    Some(b)
}

/// Why a slot did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotError {
    /// All zero: never written.
    Empty,
    /// Not our magic.
    Magic,
    /// Another format version.
    Version(u32),
    /// Impossible body length or field lengths.
    Framing,
    /// Checksum mismatch.
    Checksum,
}

/// Decode one slot (`b` is exactly one slot's bytes, possibly short if the file is short).
pub fn decode(b: &[u8]) -> Result<MetaSlot, SlotError> {
    if b.len() < BODY_OFF + 4 || b.iter().all(|&x| x == 0) {
        return Err(SlotError::Empty);
    }
    if &b[..VERSION_OFF] != MAGIC {
        return Err(SlotError::Magic);
    }
    let v = u32_at(b, VERSION_OFF);
    if v != FORMAT_VERSION {
        return Err(SlotError::Version(v));
    }
    let body_len = u32_at(b, BODY_LEN_OFF) as usize;
    if body_len > MAX_BODY || BODY_OFF + body_len + 4 > b.len() {
        return Err(SlotError::Framing);
    }
    let end = BODY_OFF + body_len;
    if u32_at(b, end) != crc32c::crc32c(&b[..end]) {
        return Err(SlotError::Checksum);
    }
    let mut pos = BODY_OFF;
    let mut fields: [Option<Vec<u8>>; 3] = [None, None, None];
    for f in fields.iter_mut() {
        if pos + 4 > end {
            return Err(SlotError::Framing);
        }
        let len = u32_at(b, pos);
        pos += 4;
        if len != ABSENT {
            let len = len as usize;
            if pos + len > end {
                return Err(SlotError::Framing);
            }
            *f = Some(b[pos..pos + len].to_vec());
            pos += len;
        }
    }
    if pos != end {
        return Err(SlotError::Framing);
    }
    let [vote, committed, purged] = fields;
    Ok(MetaSlot { sequence: u64_at(b, SEQ_OFF), body: MetaBody { vote, committed, purged } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))
    }

    proptest! {
        #[test]
        fn roundtrip(seq: u64, vote in field(), committed in field(), purged in field()) {
            let body = MetaBody { vote, committed, purged };
            let b = encode(seq, &body).unwrap();
            prop_assert_eq!(b.len(), SLOT_LEN);
            let s = decode(&b).unwrap();
            prop_assert_eq!(s.sequence, seq);
            prop_assert_eq!(s.body, body);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b);
        }
    }

    #[test]
    fn oversize_body_refused() {
        let body = MetaBody { vote: Some(vec![1; MAX_BODY]), committed: None, purged: None };
        assert!(encode(1, &body).is_none());
    }
}
