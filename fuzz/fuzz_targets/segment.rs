//! Segment files (`log/*.seg`): the header, the record framing and checksum chain, and the
//! node's entry codec on each payload.
//!
//! Input: a mode byte, then
//! - even mode: the bytes of a segment file as found on disk;
//! - odd mode: entry payloads, each a `u16` little-endian length then its bytes, sealed into a
//!   valid segment first, so the entry codec sees arbitrary bytes behind valid checksums.
#![no_main]

use conflux::types::Codec;
use conflux_engine::RaftCodec;
use conflux_engine::fuzzing::{decode_segment, encode_segment};
use libfuzzer_sys::fuzz_target;

/// Splits `u16`-length-prefixed parts; empty parts are skipped (a record has a payload).
fn parts(mut b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [lo, hi, rest @ ..] = b {
        let len = (u16::from_le_bytes([*lo, *hi]) as usize).min(rest.len());
        if len > 0 {
            out.push(&rest[..len]);
        }
        b = &rest[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let sealed;
    let bytes = if mode % 2 == 0 {
        rest
    } else {
        let payloads = parts(rest);
        sealed = encode_segment(7, &payloads);
        let seg = decode_segment(&sealed).expect("a segment the writer made decodes");
        assert!(!seg.damaged, "a segment the writer made is damaged");
        assert_eq!(seg.payloads, payloads, "records do not read back as written");
        &sealed[..]
    };
    let Some(seg) = decode_segment(bytes) else { return };
    // Records end within the file, but for the last one's padding: a torn write may cut its
    // zeros, and the next record still goes at the next multiple of 8.
    assert!(seg.end <= (bytes.len() as u64).next_multiple_of(8), "records end past the file");
    // Whatever was read as whole records is written back identically.
    let again = encode_segment(seg.first_index, &seg.payloads);
    let back = decode_segment(&again).expect("re-encoded segment decodes");
    assert_eq!(back.payloads, seg.payloads);
    for p in &seg.payloads {
        let _ = Codec::decode_entry(p);
    }
});
