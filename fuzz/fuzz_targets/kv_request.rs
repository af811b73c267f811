//! Client requests handled as the KV service and the state machine handle them: the protobuf
//! decode of etcd's request messages, the service's checks and conversion, the MVCC store's
//! apply (or read), and the answer's encoding — on one in-process store, without a network.
//!
//! Input: a sequence of requests, each a kind byte (`conflux::fuzzing::KV_REQUESTS`: range,
//! put, delete_range, txn, compact, modulo 5), a `u16` little-endian length, then the message.
//! They run in order on one fresh store, so later requests see what earlier ones wrote.
#![no_main]

use conflux::fuzzing::kv_request;
use conflux::mvcc::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let store = Store::new();
    let mut rest = data;
    while let [kind, lo, hi, tail @ ..] = rest {
        let len = (u16::from_le_bytes([*lo, *hi]) as usize).min(tail.len());
        let _ = kv_request(&store, *kind, &tail[..len]);
        rest = &tail[len..];
    }
});
