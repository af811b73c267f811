//! `codec`: the CPU work of one log entry on its way to and from disk, without I/O.
//!
//! - `codec/encode/entry=E` and `codec/decode/entry=E`: [`PostcardCodec`] on an openraft entry
//!   carrying an `E`-byte payload, as the store encodes it into its append buffer (reused) and
//!   decodes it on a read (the decoded entry owns its payload, so decode allocates).
//! - `.../entry=E/blob=bytes`: the same with the payload serialized as bytes (one copy) instead of
//!   a sequence (byte by byte, as `Vec<u8>` derives): separates postcard's per-byte cost.
//! - `codec/frame/record=R`: sealing a record whose `R`-byte payload already sits behind its
//!   header (what the store does after encoding): header fields, then crc32c over header and
//!   payload.
//! - `codec/unframe/record=R`: decoding the header of a sealed record and verifying it (length,
//!   crc32c, kind), as the engine's `segment::check_record` does before any read. That function
//!   is crate-private, so this benchmark composes the same public pieces
//!   (`format::record::{RecordHeader::decode, checksum}`) in the same order.
//! - Peers, same group: `codec/copy/bytes=N` (appending `N` bytes to a reused buffer: the floor of
//!   an encode) and `codec/crc32c/bytes=N` (the checksum alone: the floor of frame and unframe).
//!
//! Throughput is the payload's bytes. `cargo bench -p conflux-bench --bench codec`

use std::hint::black_box;
use std::time::Duration;

use conflux_bench::{BenchTypes, TC, TCBytes, payload, size_label};
use conflux_engine::format::record::{self, RecordHeader};
use conflux_engine::{PostcardCodec, RaftCodec};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};

const SIZES: [usize; 3] = [64, 1 << 10, 16 << 10];
/// Raft index and previous checksum the framed records carry (any values do).
const INDEX: u64 = 42;
const PREV_CRC: u32 = 0x1234_5678;

/// `encode/entry=E` and `decode/entry=E` for type config `C`.
fn bench_entry<C: BenchTypes>(group: &mut BenchmarkGroup<'_, WallTime>, size: usize)
where
    PostcardCodec<C>: RaftCodec<C>,
{
    let entry = C::entry(INDEX, payload(size));
    let mut buf = Vec::new();
    PostcardCodec::<C>::encode_entry(&entry, &mut buf).expect("encode entry");
    let encoded = buf.clone();
    let label = format!("entry={}{}", size_label(size as u64), C::BLOB);
    group.bench_function(format!("encode/{label}"), |b| {
        b.iter(|| {
            buf.clear();
            PostcardCodec::<C>::encode_entry(black_box(&entry), &mut buf).expect("encode entry");
            black_box(buf.len())
        })
    });
    group.bench_function(format!("decode/{label}"), |b| {
        b.iter(|| PostcardCodec::<C>::decode_entry(black_box(&encoded)).expect("decode entry"))
    });
}

/// A record laid out as the store lays it out: header space, payload, zero padding to 8 bytes.
fn unsealed_record(size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; record::HEADER_LEN];
    buf.extend_from_slice(&payload(size));
    buf.resize(record::framed_len(size) as usize, 0);
    buf
}

/// The header and payload of the record at the start of `bytes`, if it is whole and its checksum
/// and kind are right: the checks of the engine's crate-private `segment::check_record`.
fn unframe(bytes: &[u8]) -> Option<(RecordHeader, &[u8])> {
    if bytes.len() < record::HEADER_LEN {
        return None;
    }
    let h = RecordHeader::decode(bytes);
    let end = record::HEADER_LEN + h.len as usize;
    if h.len == 0 || end > bytes.len() || record::checksum(&bytes[..end]) != h.crc || h.kind != record::KIND_ENTRY {
        return None;
    }
    Some((h, &bytes[record::HEADER_LEN..end]))
}

/// `frame/record=R`, `unframe/record=R`.
fn bench_record(group: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    let label = format!("record={}", size_label(size as u64));
    let mut buf = unsealed_record(size);
    let sealed_len = record::HEADER_LEN + size;
    group.bench_function(format!("frame/{label}"), |b| {
        b.iter(|| record::seal(black_box(&mut buf[..sealed_len]), INDEX, PREV_CRC))
    });
    // `buf` now holds a sealed record.
    let (h, body) = unframe(&buf).expect("a sealed record verifies");
    assert_eq!((h.index, h.prev_crc, body.len()), (INDEX, PREV_CRC, size));
    group.bench_function(format!("unframe/{label}"), |b| {
        b.iter(|| unframe(black_box(&buf)).expect("record verifies").0.crc)
    });
}

/// The peers: `copy/bytes=N`, `crc32c/bytes=N`.
fn bench_peers(group: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    let label = format!("bytes={}", size_label(size as u64));
    let data = payload(size);
    let mut buf = Vec::with_capacity(size);
    group.bench_function(format!("copy/{label}"), |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(&data));
            black_box(buf.len())
        })
    });
    group.bench_function(format!("crc32c/{label}"), |b| b.iter(|| crc32c::crc32c(black_box(&data))));
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    // Nanoseconds to microseconds per call: short windows are plenty.
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        bench_entry::<TC>(&mut group, size);
        bench_entry::<TCBytes>(&mut group, size);
        bench_record(&mut group, size);
        bench_peers(&mut group, size);
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
