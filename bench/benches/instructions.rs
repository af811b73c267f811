//! `instructions`: instruction counts (callgrind `Ir`) of the CPU-bound hot paths, for the CI
//! regression gate (`bench/gate.sh`, baseline `bench/baseline/instructions.tsv`). Wall-clock
//! figures are the criterion suites' job; these counts are deterministic, so a 2% limit holds.
//!
//! - `engine::encode_records`: 64 node entries (a put of a 16 B key and a 256 B value each)
//!   encoded by the node's codec and framed (`record::seal`, crc32c chain), as `append_with` does.
//! - `engine::decode_records`: the same 64 records checked (header, crc32c) and decoded.
//! - `engine::index_read`: 64 single-entry `LogStore::read`s of a 1 Ki-entry log reopened with no
//!   tail cache, so each goes through the mmap'd index, the record check and the codec.
//! - `mvcc::apply_batch`: 256 puts applied to a store of 4 Ki keys, then one `publish`.
//! - `mvcc::range`: 64 point gets, and one 100-key scan, on a store of 4 Ki keys.
//! - `mvcc::snapshot_encode`: `Store::write_snapshot` of 1 Ki keys into a `Vec`.
//! - `loadgen::histogram_record`: 1 Ki `Recorder::record` calls (closed loop, successes).
//!
//! Everything a benchmark needs is built in its setup function, which gungraun runs outside the
//! measured function; fixtures are handed back so they are dropped outside it too. Data are
//! fixed and nothing measured reads a clock.
//!
//! Self-test of the gate: with `CONFLUX_GATE_SELFTEST=1` (passed through to the benchmark
//! process), the setup of `mvcc::apply_batch` hands over 13 more puts (269, about 5% more work in
//! the same measured code), which `bench/gate.sh --selftest` expects the gate to reject.
//!
//! `bench/gate.sh` runs this suite; `cargo bench -p conflux-bench --bench instructions` runs it
//! alone (valgrind and `gungraun-runner` 0.20.0 on `PATH` needed).

#![allow(missing_docs, reason = "gungraun's macros generate public items without docs")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conflux::mvcc::{PutRequest, RangeRequest, Store, WriteRequest};
use conflux::types::{Codec, Entry, LogStore};
use conflux_engine::format::record::{self, RecordHeader};
use conflux_engine::{Config, RaftCodec};
use conflux_loadgen::op::{OpKind, Outcome};
use conflux_loadgen::record::Recorder;
use gungraun::{LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main};
use openraft::EntryPayload;
use openraft::entry::RaftEntry;

/// The variable that turns on the gate's self-test regression (see the module doc).
const SELFTEST_ENV: &str = "CONFLUX_GATE_SELFTEST";
const VALUE: usize = 256;

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key{i:013}")) // 16 bytes
}

fn value(i: u64) -> Bytes {
    let mut v = vec![b'v'; VALUE];
    v[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(v)
}

fn put(i: u64) -> WriteRequest {
    WriteRequest::Put(PutRequest { key: key(i), value: value(i), ..Default::default() })
}

fn entry(index: u64) -> Entry {
    let log_id = openraft::LogId::new(openraft::impls::leader_id_adv::LeaderId { term: 1, node_id: 1 }, index);
    Entry::new(log_id, EntryPayload::Normal(put(index)))
}

/// A store holding keys `0..keys` (one version each), published.
fn store_of(keys: u64) -> Store {
    let s = Store::new();
    for i in 0..keys {
        s.apply_unpublished(&put(i), 128).expect("put");
    }
    s.publish();
    s
}

// ---- engine: record codec ----

/// `count` entries and an output buffer big enough for all of them framed.
fn setup_encode(count: u64) -> (Vec<Entry>, Vec<u8>) {
    let entries: Vec<Entry> = (1..=count).map(entry).collect();
    (entries, Vec::with_capacity(count as usize * 512))
}

/// What `LogStore::append_with` does per entry: room for the header, the codec's bytes, the
/// padding, then the header sealed into the checksum chain. Returns the last record's checksum.
fn frame(entries: &[Entry], buf: &mut Vec<u8>) -> u32 {
    let mut prev = 0u32;
    for e in entries {
        let start = buf.len();
        buf.resize(start + record::HEADER_LEN, 0);
        Codec::encode_entry(e, buf).expect("encode");
        let len = buf.len() - start - record::HEADER_LEN;
        buf.resize(start + record::framed_len(len) as usize, 0);
        prev = record::seal(&mut buf[start..start + record::HEADER_LEN + len], e.index(), prev);
    }
    prev
}

#[library_benchmark]
#[bench::entries_64_value_256b(args = (64), setup = setup_encode)]
fn encode_records((entries, mut buf): (Vec<Entry>, Vec<u8>)) -> (Vec<Entry>, Vec<u8>) {
    black_box(frame(&entries, &mut buf));
    (entries, buf)
}

/// `count` framed records, and room for the decoded entries.
fn setup_decode(count: u64) -> (Vec<u8>, Vec<Entry>) {
    let (entries, mut buf) = setup_encode(count);
    frame(&entries, &mut buf);
    (buf, Vec::with_capacity(entries.len()))
}

#[library_benchmark]
#[bench::entries_64_value_256b(args = (64), setup = setup_decode)]
fn decode_records((buf, mut out): (Vec<u8>, Vec<Entry>)) -> (Vec<u8>, Vec<Entry>) {
    // What a segment read does per record (`segment::check_record`, then the codec).
    let mut off = 0;
    while off < buf.len() {
        let h = RecordHeader::decode(&buf[off..]);
        let end = off + record::HEADER_LEN + h.len as usize;
        assert!(h.kind == record::KIND_ENTRY && record::checksum(&buf[off..end]) == h.crc, "bad record at {off}");
        out.push(Codec::decode_entry(&buf[off + record::HEADER_LEN..end]).expect("decode"));
        off += record::framed_len(h.len as usize) as usize;
    }
    (buf, out)
}

// ---- engine: index lookup ----

/// A log of `entries` entries, reopened with no tail cache, and the indexes to read (a fixed
/// walk over the whole log).
struct IndexFixture {
    _dir: tempfile::TempDir,
    store: LogStore,
    reads: Vec<u64>,
}

fn setup_index(entries: u64, reads: u64) -> IndexFixture {
    // In the system temp directory, not `conflux_bench::temp_dir`: no fsync is measured here, so
    // tmpfs is fine (that one refuses it), and the path does not depend on the checkout's.
    let dir = tempfile::Builder::new().prefix("conflux-instructions-").tempdir().expect("temp dir");
    let path = dir.path().join("store");
    {
        let mut store = LogStore::open(&path, Config::default()).expect("open");
        let (tx, rx) = std::sync::mpsc::channel();
        let batch: Vec<Entry> = (1..=entries).map(entry).collect();
        store.append_with(batch, Box::new(move |r| tx.send(r).expect("wait"))).expect("append");
        rx.recv().expect("callback").expect("durable");
    }
    let store = LogStore::open(&path, Config { tail_cache_bytes: 0, ..Config::default() }).expect("reopen");
    let reads = (0..reads).map(|k| 1 + (k * 389) % entries).collect();
    // A first read maps what lazily gets mapped; then let the store's threads settle, so the
    // measured reads never meet them on a lock.
    black_box(store.read(1..2).expect("read"));
    std::thread::sleep(Duration::from_millis(200));
    IndexFixture { _dir: dir, store, reads }
}

#[library_benchmark]
#[bench::log_1ki_reads_64(args = (1024, 64), setup = setup_index)]
fn index_read(f: IndexFixture) -> (IndexFixture, usize) {
    let mut n = 0;
    for &i in &f.reads {
        n += black_box(f.store.read(i..i + 1).expect("read")).len();
    }
    (f, n)
}

// ---- mvcc: apply, range, snapshot ----

/// A store of `keys` keys and a batch of `batch` puts to apply: every other one updates an
/// existing key, the rest create new ones. With the self-test on, 5% more puts.
fn setup_apply(keys: u64, batch: u64) -> (Store, Vec<WriteRequest>) {
    let batch = if std::env::var_os(SELFTEST_ENV).is_some_and(|v| v == "1") { batch + batch / 20 } else { batch };
    let reqs = (0..batch).map(|i| if i % 2 == 0 { put((i * 7919) % keys) } else { put(keys + i) }).collect();
    (store_of(keys), reqs)
}

#[library_benchmark]
#[bench::keys_4ki_puts_256(args = (4096, 256), setup = setup_apply)]
fn apply_batch((store, reqs): (Store, Vec<WriteRequest>)) -> (Store, Vec<WriteRequest>) {
    for r in &reqs {
        black_box(store.apply_unpublished(r, 128).expect("apply"));
    }
    store.publish();
    (store, reqs)
}

/// A store of `keys` keys and the requests to serve.
fn setup_points(keys: u64, gets: u64) -> (Store, Vec<RangeRequest>) {
    let reqs = (0..gets).map(|i| RangeRequest { key: key((i * 104_729) % keys), ..Default::default() }).collect();
    (store_of(keys), reqs)
}

fn setup_scan(keys: u64, len: u64) -> (Store, Vec<RangeRequest>) {
    let start = keys / 3;
    let req = RangeRequest { key: key(start), range_end: key(start + len), ..Default::default() };
    (store_of(keys), vec![req])
}

#[library_benchmark]
#[bench::point_keys_4ki_gets_64(args = (4096, 64), setup = setup_points)]
#[bench::scan_keys_4ki_len_100(args = (4096, 100), setup = setup_scan)]
fn range((store, reqs): (Store, Vec<RangeRequest>)) -> (Store, Vec<RangeRequest>) {
    for r in &reqs {
        black_box(store.range(r).expect("range"));
    }
    (store, reqs)
}

/// A store of `keys` keys and a buffer that holds its snapshot without growing.
fn setup_snapshot(keys: u64) -> (Store, Vec<u8>) {
    (store_of(keys), Vec::with_capacity(keys as usize * 512))
}

#[library_benchmark]
#[bench::keys_1ki(args = (1024), setup = setup_snapshot)]
fn snapshot_encode((store, mut out): (Store, Vec<u8>)) -> (Store, Vec<u8>) {
    black_box(store.write_snapshot(&mut out).expect("snapshot"));
    (store, out)
}

// ---- loadgen: histogram record ----

/// What one `Recorder::record` call gets.
type Op = (OpKind, Instant, Instant);

/// A recorder that has seen every kind used once (its histograms exist, as in a running
/// worker), and `ops` operations with fixed latencies from 50 µs to about 65 ms.
fn setup_record(ops: u64) -> (Recorder, Vec<Op>) {
    let base = Instant::now();
    let mut rec = Recorder::new();
    rec.record(OpKind::Put, &Outcome::Ok, 0, base, base, base);
    rec.record(OpKind::Get, &Outcome::Ok, 0, base, base, base);
    let ops = (0..ops)
        .map(|i| {
            let start = base + Duration::from_micros(i * 1_000);
            let latency = Duration::from_micros(50 + (i * i * 7_919) % 65_000);
            (if i % 4 == 0 { OpKind::Put } else { OpKind::Get }, start, start + latency)
        })
        .collect();
    (rec, ops)
}

#[library_benchmark]
#[bench::ops_1ki(args = (1024), setup = setup_record)]
fn histogram_record((mut rec, ops): (Recorder, Vec<Op>)) -> (Recorder, Vec<Op>) {
    for &(kind, start, done) in &ops {
        rec.record(kind, &Outcome::Ok, 0, start, start, done);
    }
    (rec, ops)
}

library_benchmark_group!(name = engine, benchmarks = [encode_records, decode_records, index_read]);
library_benchmark_group!(name = mvcc, benchmarks = [apply_batch, range, snapshot_encode]);
library_benchmark_group!(name = loadgen, benchmarks = [histogram_record]);

main!(
    config = LibraryBenchmarkConfig::default().pass_through_env(SELFTEST_ENV);
    library_benchmark_groups = engine, mvcc, loadgen
);
