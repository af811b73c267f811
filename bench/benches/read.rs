//! `read`: reading entries back, 1 KiB entries, 1 or 64 per call.
//!
//! - `read/tail/...`: recent entries, served decoded from the in-memory tail (default budget).
//! - `read/cold/...`: the same log reopened with `tail_cache_bytes = 0`, so every entry is found
//!   through the mmap'd index, checked (crc32c) and decoded from the segment. "Cold" means not in
//!   the engine's cache; the segment pages are in the OS page cache (they were just written).
//!
//! With the `peers` feature, tikv's raft-engine on the same log (configuration in
//! `conflux_bench::raft_engine_peer`):
//! - `read/raft-engine/entry=1KiB/batch=N/written=W`: `fetch_entries_to` of N entries of one raft
//!   group, from a log written W entries per `LogBatch`. raft-engine keeps only entry positions in
//!   memory: each read finds the entries' block in its memtable, `pread`s the whole block (page
//!   cache) and checks its crc32, then decodes the entries (it caches the last block per thread).
//!   So its cost depends on how the log was written: `written=256` is how conflux's log is filled
//!   here, `written=1` (one entry per block) is raft-engine's best case for small reads. Both are
//!   "recent" entries in the sense of `read/tail`: just written, in the OS page cache.
//!
//! Start indexes follow a fixed pseudo-random sequence over the whole log, so reads are not all
//! served from one hot page.

use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use conflux_bench::{BenchTypes, StoreOf, TC, TCBytes, fill, open_store, payload, size_label, temp_dir};
use conflux_engine::{Config, PostcardCodec, RaftCodec};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};

const ENTRY: usize = 1 << 10;
/// 16 Ki entries of 1 KiB: about 17 MiB framed, well inside the default 64 MiB tail budget.
const ENTRIES: u64 = 16 << 10;
const BATCHES: [u64; 2] = [1, 64];

fn bench_reads<C: BenchTypes>(group: &mut BenchmarkGroup<'_, WallTime>, source: &str, store: &StoreOf<C>)
where
    PostcardCodec<C>: RaftCodec<C>,
{
    bench_range_reads(group, source, C::BLOB, |range| {
        let got = store.read(range).expect("read");
        let n = got.len() as u64;
        black_box(got);
        n
    });
}

/// For each of [`BATCHES`], time `read` of `batch` entries from pseudo-random start indexes;
/// `read` returns how many entries it got. Ids: `{source}/entry=1KiB/batch=N{suffix}`.
fn bench_range_reads(
    group: &mut BenchmarkGroup<'_, WallTime>,
    source: &str,
    suffix: &str,
    mut read: impl FnMut(Range<u64>) -> u64,
) {
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch));
        let id = format!("{source}/entry={}/batch={batch}{suffix}", size_label(ENTRY as u64));
        // Linear congruential walk over valid start indexes (1..=ENTRIES - batch + 1).
        let span = ENTRIES - batch + 1;
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        group.bench_function(&id, |b| {
            b.iter(|| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let start = 1 + (x >> 33) % span;
                let got = read(black_box(start..start + batch));
                debug_assert_eq!(got, batch);
                black_box(got)
            })
        });
    }
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    read_log::<TC>(&mut group, true);
    // Cold reads decode every entry: also measure a payload serde encodes as bytes.
    read_log::<TCBytes>(&mut group, false);
    #[cfg(feature = "peers")]
    for written in RAFT_ENGINE_WRITES {
        read_raft_engine(&mut group, written);
    }
    group.finish();
}

/// Entries per `LogBatch` when filling raft-engine's log: 256 as `conflux_bench::fill` appends,
/// and 1.
#[cfg(feature = "peers")]
const RAFT_ENGINE_WRITES: [u64; 2] = [256, 1];

/// Fill a raft-engine log with the same [`ENTRIES`] entries of [`ENTRY`] bytes, `written`
/// entries per write, and read it back as the conflux store is read.
#[cfg(feature = "peers")]
fn read_raft_engine(group: &mut BenchmarkGroup<'_, WallTime>, written: u64) {
    use conflux_bench::raft_engine_peer::{REGION, RaftEnginePeer};

    let dir = temp_dir("read-raft-engine-");
    let peer = RaftEnginePeer::open(&dir.path().join("raft-engine"));
    peer.fill(REGION, 1, ENTRIES, &payload(ENTRY), written);
    bench_range_reads(group, "raft-engine", &format!("/written={written}"), |range| {
        let got = peer.read(REGION, range);
        let n = got.len() as u64;
        black_box(got);
        n
    });
}

/// Build a log of [`ENTRIES`] entries and read it: from the tail (when `tail`), then reopened
/// with no tail budget so every entry comes from the segment.
fn read_log<C: BenchTypes>(group: &mut BenchmarkGroup<'_, WallTime>, tail: bool)
where
    PostcardCodec<C>: RaftCodec<C>,
{
    let dir = temp_dir("read-");
    let path = dir.path().join("store");
    let data = payload(ENTRY);
    {
        let mut store = open_store::<C>(&path, Config::default());
        fill::<C>(&mut store, 1, ENTRIES, &data);
        if tail {
            // Every entry is still in the tail: the budget (64 MiB) holds the whole log.
            bench_reads(group, "tail", &store);
        }
    }
    let cold = Config { tail_cache_bytes: 0, ..Config::default() };
    let store = open_store::<C>(&path, cold);
    bench_reads(group, "cold", &store);
}

criterion_group!(benches, read);
criterion_main!(benches);
