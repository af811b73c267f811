//! The meta file (`meta`): the two slots, the choice of the newest, and the node's codec on the
//! vote and log ids it holds.
//!
//! Input: a mode byte, then
//! - even mode: the bytes of a meta file as found on disk;
//! - odd mode: the three fields (vote, committed, purged), each a `u16` little-endian length then
//!   its bytes (`0xffff`: absent), written into a valid slot first, so the codec sees arbitrary
//!   bytes behind a valid checksum.
#![no_main]

use conflux::types::Codec;
use conflux_engine::RaftCodec;
use conflux_engine::format::meta::{self as metafmt, MetaBody};
use conflux_engine::fuzzing::decode_meta;
use libfuzzer_sys::fuzz_target;

fn fields(mut b: &[u8]) -> [Option<Vec<u8>>; 3] {
    let mut out: [Option<Vec<u8>>; 3] = [None, None, None];
    for f in &mut out {
        let [lo, hi, rest @ ..] = b else { break };
        let len = u16::from_le_bytes([*lo, *hi]);
        if len == u16::MAX {
            b = rest;
            continue;
        }
        let len = (len as usize).min(rest.len());
        *f = Some(rest[..len].to_vec());
        b = &rest[len..];
    }
    out
}

fn decode_fields(body: &MetaBody) {
    if let Some(v) = &body.vote {
        let _ = Codec::decode_vote(v);
    }
    for id in [&body.committed, &body.purged].into_iter().flatten() {
        let _ = Codec::decode_log_id(id);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(Some(slot)) = decode_meta(rest) {
            decode_fields(&slot.body);
        }
        return;
    }
    let [vote, committed, purged] = fields(rest);
    let body = MetaBody { vote, committed, purged };
    let Some(mut file) = metafmt::encode(u64::from(mode), &body) else { return };
    file.resize(2 * metafmt::SLOT_LEN, 0);
    let slot = decode_meta(&file).expect("a slot the writer made decodes").expect("and is found");
    assert_eq!(slot.body, body, "the slot does not read back as written");
    decode_fields(&slot.body);
});
