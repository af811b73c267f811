//! `append`: durable appends (fsync on), entry size × entries per append, beside the raw-device
//! peer (`pwrite` of the same bytes + `fdatasync` on a preallocated file in the same directory).
//!
//! - `append/entry=E/batch=N/io=sync`: one `append_with` of N entries, timed until its callback
//!   ran (that is, after the fdatasync that made it durable; the moment is taken inside the
//!   callback, so the benchmark thread's own wake-up is not counted).
//! - `.../io=uring/blob=bytes`: the same appends on the io_uring backend (`conflux_engine::io::UringIo`).
//! - `append/entry=E/batch=N/io=raw`: one `pwrite` of the bytes those N records take on disk,
//!   then `fdatasync`.
//! - `append/entry=1KiB/inflight=64/io=sync`: 64 single-entry appends submitted without waiting
//!   (as openraft 0.10 does), timed until all 64 callbacks ran; group commit shares fsyncs.
//!   Its peer `io=raw` is one 64 KiB `pwrite` + `fdatasync`.
//! - `.../io=sync/blob=bytes`: the same with a payload type that serde encodes as bytes (one
//!   copy) instead of a sequence (byte by byte, as `Vec<u8>` derives): separates the engine's
//!   cost from the payload codec's.
//! - `append/bytes=4MiB/io=raw`: the bandwidth ceiling for `entry=16KiB/batch=256`.
//!
//! With the `peers` feature, tikv's raft-engine in the same group (configuration in
//! `conflux_bench::raft_engine_peer`):
//! - `append/entry=E/batch=N/io=raft-engine`: one `LogBatch` of N entries of raft group 1,
//!   `Engine::write(batch, sync = true)`, timed from encoding the entries (`add_entries`) until
//!   `write` returns (after the group's fdatasync and the memtable update).
//! - `append/entry=1KiB/inflight=64/io=raft-engine`: 64 writer threads, each doing one synced
//!   single-entry `write` per iteration, all released at once; timed until all 64 returned.
//!   raft-engine's write barrier group-commits them. Each thread writes its own raft group:
//!   raft-engine applies a write to the memtable after the group's fsync, in the writer's own
//!   thread, and requires each group's indexes to arrive in order (a gap panics, an older index
//!   truncates), so 64 concurrent writers of one group are not something it supports. One group
//!   per thread is how it is driven concurrently (tikv's write workers own disjoint regions).
//! - `append/entry=1KiB/inflight=64/io=raft-engine/one-logbatch`: the other way one raft group
//!   hands raft-engine 64 entries: one thread, one `LogBatch` of the 64, one synced write.
//!
//! All sides run in a steady state: the raw peer starts a fresh preallocated file every 64 MiB,
//! and the store is purged (untimed) whenever it holds more than two segments, so its old
//! segments are deleted in the background as on a node that snapshots; raft-engine is compacted
//! and purged (untimed) once its files pass 256 MiB, and recycles the purged files.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use conflux_bench::{
    BenchTypes, RawPeer, StoreOf, TC, TCBytes, entries, framed_bytes, open_store, payload, recycle, size_label,
    temp_dir,
};
use conflux_engine::{Config, PostcardCodec, RaftCodec};
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main, measurement::WallTime,
};

const ENTRY_SIZES: [usize; 3] = [64, 1 << 10, 16 << 10];
const BATCHES: [u64; 3] = [1, 16, 256];
const IN_FLIGHT: u64 = 64;
/// Segments kept before the benchmark purges the log (untimed; see `conflux_bench::recycle`).
const KEEP_SEGMENTS: usize = 2;

/// The engine's default segment size: the raw peer preallocates files this large.
fn segment_bytes() -> u64 {
    Config::default().segment_bytes
}

/// The engine's defaults on the io_uring backend; panics with the probe's reason where io_uring
/// is unavailable (the `io=uring` ids cannot be measured there).
fn uring_config() -> Config {
    let (io, _) = conflux_engine::io::backend(conflux_engine::io::IoMode::Uring)
        .unwrap_or_else(|e| panic!("the io=uring benchmarks need io_uring: {e}"));
    Config { io, ..Config::default() }
}

/// A completion callback that reports its result and the moment it ran. Appends are timed until
/// their callback ran, not until the benchmark thread wakes up to see it: waking a parked thread
/// costs 30-40 µs on this VM, which is the benchmark's cost, not the engine's (raft-engine's
/// `write` and the raw peer return in the calling thread and pay no such wake-up).
fn done_at(
    tx: mpsc::Sender<(Result<(), conflux_engine::Error>, Instant)>,
) -> Box<dyn FnOnce(Result<(), conflux_engine::Error>) + Send> {
    Box::new(move |r| tx.send((r, Instant::now())).expect("bench waits"))
}

/// The callbacks of one burst of appends: each counts down; the last one (appends complete in
/// order) takes the time and wakes the bench thread, once per burst. A callback per append that
/// woke the bench thread would add up to one futex wake-up and context switch per append on the
/// writer's thread, a cost of this harness, not of the engine (`docs/benchmarks.md`).
struct Countdown {
    left: AtomicU64,
    failed: AtomicBool,
    tx: mpsc::Sender<Instant>,
}

impl Countdown {
    fn done(&self, r: Result<(), conflux_engine::Error>) {
        if r.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tx.send(Instant::now()).expect("bench waits");
        }
    }
}

/// Time `iters` calls of one append of `batch` entries of `entry_size` bytes, each until its
/// callback. Entries are built outside the timed region.
fn bench_engine_batch<C: BenchTypes>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    entry_size: usize,
    batch: u64,
    config: Config,
) where
    PostcardCodec<C>: RaftCodec<C>,
{
    let dir = temp_dir("append-");
    let mut store = open_store::<C>(&dir.path().join("store"), config);
    let data = payload(entry_size);
    let mut next = 1u64;
    let mut submit = Submit::default();
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch_entries = entries::<C>(next, batch, &data);
                next += batch;
                let (tx, rx) = mpsc::channel();
                let start = Instant::now();
                store.append_with(batch_entries, done_at(tx)).expect("append");
                submit.add(start.elapsed());
                let (r, at) = rx.recv().expect("callback");
                r.expect("append durable");
                total += at - start;
                recycle::<C>(&mut store, next, KEEP_SEGMENTS);
            }
            total
        })
    });
    report_stats(id, &store, &submit);
}

/// 64 single-entry appends in flight at once, timed until every callback ran.
fn bench_engine_inflight<C: BenchTypes>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    entry_size: usize,
    in_flight: u64,
    config: Config,
) where
    PostcardCodec<C>: RaftCodec<C>,
{
    let dir = temp_dir("append-");
    let mut store = open_store::<C>(&dir.path().join("store"), config);
    let data = payload(entry_size);
    let mut next = 1u64;
    let mut submit = Submit::default();
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let singles: Vec<Vec<C::Entry>> = (0..in_flight).map(|k| entries::<C>(next + k, 1, &data)).collect();
                next += in_flight;
                let (tx, rx) = mpsc::channel();
                let countdown =
                    Arc::new(Countdown { left: AtomicU64::new(in_flight), failed: AtomicBool::new(false), tx });
                let start = Instant::now();
                for one in singles {
                    let c = countdown.clone();
                    store.append_with(one, Box::new(move |r| c.done(r))).expect("append");
                }
                submit.add(start.elapsed());
                let last = rx.recv().expect("callback");
                assert!(!countdown.failed.load(Ordering::Acquire), "an append failed");
                total += last - start;
                recycle::<C>(&mut store, next, KEEP_SEGMENTS);
            }
            total
        })
    });
    report_stats(id, &store, &submit);
}

/// Time spent in `append_with` calls themselves (encode, checksum, queue: the caller's share),
/// per timed iteration.
#[derive(Default)]
struct Submit {
    time: Duration,
    iters: u64,
}

impl Submit {
    fn add(&mut self, d: Duration) {
        self.time += d;
        self.iters += 1;
    }
}

/// Print, to stderr, how the writer batched the appends of one benchmark (appends per fsync,
/// counting the untimed purges' meta syncs too) and where the time went.
fn report_stats<C: BenchTypes>(id: &str, store: &StoreOf<C>, submit: &Submit)
where
    PostcardCodec<C>: RaftCodec<C>,
{
    let s = store.stats();
    if s.fsyncs > 0 && s.appends > 0 && submit.iters > 0 {
        eprintln!(
            "  [{id}] engine stats: {} appends, {} entries, {} fsyncs ({:.2} appends/fsync), {} group-commit batches, \
             mean fsync {:.3} ms, mean append_with call(s) {:.3} ms per iteration",
            s.appends,
            s.entries,
            s.fsyncs,
            s.appends as f64 / s.fsyncs as f64,
            s.batches,
            s.fsync_seconds * 1e3 / s.fsyncs as f64,
            submit.time.as_secs_f64() * 1e3 / submit.iters as f64,
        );
    }
}

/// Time `iters` raw `pwrite(len bytes) + fdatasync` calls on a preallocated file.
fn bench_raw(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, len: u64) {
    let dir = temp_dir("append-raw-");
    let mut peer = RawPeer::new(dir.path(), segment_bytes());
    let buf = payload(len as usize);
    group.bench_function(id, |b| b.iter_custom(|iters| (0..iters).map(|_| peer.write_sync(&buf)).sum()));
    if peer.calls() > 0 {
        eprintln!("  [{id}] raw peer: {len} bytes per call, {}", peer.report());
    }
}

/// The raft-engine peer's variants (feature `peers`).
#[cfg(feature = "peers")]
mod raft_engine_peer {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use conflux_bench::raft_engine_peer::{LogBatch, PeerEntry, PeerStats, REGION, RaftEnginePeer, entries};
    use conflux_bench::{payload, temp_dir};
    use criterion::{BenchmarkGroup, measurement::WallTime};

    /// How long the bench waits for a writer thread before deciding it died.
    const WRITER_TIMEOUT: Duration = Duration::from_secs(60);

    fn open() -> (tempfile::TempDir, RaftEnginePeer) {
        let dir = temp_dir("append-raft-engine-");
        let peer = RaftEnginePeer::open(&dir.path().join("raft-engine"));
        (dir, peer)
    }

    /// Time `iters` synced writes of one `LogBatch` of `batch` entries of [`REGION`]. Entries are
    /// built outside the timed region; encoding them into the batch is inside, as for conflux.
    pub fn bench_batch(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, entry_size: usize, batch: u64) {
        let (_dir, peer) = open();
        let data = payload(entry_size);
        let mut log_batch = LogBatch::default();
        let mut next = 1u64;
        let before = PeerStats::snapshot();
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch_entries = entries(next, batch, &data);
                    next += batch;
                    let start = Instant::now();
                    peer.append(&mut log_batch, REGION, &batch_entries).expect("raft-engine write");
                    total += start.elapsed();
                    peer.recycle(REGION..REGION + 1, next);
                }
                total
            })
        });
        report(id, &before);
    }

    /// `writers` threads, each owning raft group `REGION + k`, each doing one synced single-entry
    /// write per iteration. The main thread hands every thread its (prebuilt) entry, then waits
    /// for all of them: the iteration's time.
    pub fn bench_threads(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, entry_size: usize, writers: u64) {
        let (_dir, peer) = open();
        let data = payload(entry_size);
        // Each writer's outcome; the error as text, to print it here.
        let (done_tx, done_rx) = mpsc::channel::<Result<(), String>>();
        let mut to_writers = Vec::new();
        let mut threads = Vec::new();
        for k in 0..writers {
            let (tx, rx) = mpsc::channel::<PeerEntry>();
            let (peer, done) = (peer.clone(), done_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("re-writer-{k}"))
                .spawn(move || {
                    let mut log_batch = LogBatch::default();
                    for entry in rx {
                        let r = peer.append(&mut log_batch, REGION + k, std::slice::from_ref(&entry));
                        done.send(r.map(drop).map_err(|e| e.to_string())).expect("bench waits");
                    }
                })
                .expect("spawn raft-engine writer");
            to_writers.push(tx);
            threads.push(thread);
        }
        let mut next = 1u64;
        let before = PeerStats::snapshot();
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let singles: Vec<PeerEntry> = (0..writers).map(|_| PeerEntry::new(next, data.clone())).collect();
                    next += 1;
                    let start = Instant::now();
                    for (tx, entry) in to_writers.iter().zip(singles) {
                        tx.send(entry).expect("raft-engine writer alive");
                    }
                    for _ in 0..writers {
                        done_rx.recv_timeout(WRITER_TIMEOUT).expect("raft-engine writer").expect("raft-engine write");
                    }
                    total += start.elapsed();
                    peer.recycle(REGION..REGION + writers, next);
                }
                total
            })
        });
        report(id, &before);
        drop(to_writers);
        for t in threads {
            t.join().expect("raft-engine writer thread");
        }
    }

    /// Print, to stderr, how raft-engine grouped this benchmark's writes (nothing when the
    /// benchmark was filtered out).
    fn report(id: &str, before: &PeerStats) {
        let now = PeerStats::snapshot();
        if now.writes > before.writes {
            eprintln!("  [{id}] raft-engine stats: {}", now.report_since(before));
        }
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    // Each iteration is at least one fsync (milliseconds): flat sampling keeps the run bounded.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    for entry_size in ENTRY_SIZES {
        for batch in BATCHES {
            let e = size_label(entry_size as u64);
            group.throughput(Throughput::Bytes(entry_size as u64 * batch));
            let id = format!("entry={e}/batch={batch}/io=sync");
            bench_engine_batch::<TC>(&mut group, &id, entry_size, batch, Config::default());
            let id = format!("entry={e}/batch={batch}/io=sync{}", TCBytes::BLOB);
            bench_engine_batch::<TCBytes>(&mut group, &id, entry_size, batch, Config::default());
            let id = format!("entry={e}/batch={batch}/io=uring{}", TCBytes::BLOB);
            bench_engine_batch::<TCBytes>(&mut group, &id, entry_size, batch, uring_config());
            #[cfg(feature = "peers")]
            {
                let id = format!("entry={e}/batch={batch}/io=raft-engine");
                raft_engine_peer::bench_batch(&mut group, &id, entry_size, batch);
            }
            let on_disk = framed_bytes::<TC>(&entries::<TC>(1, batch, &payload(entry_size)));
            bench_raw(&mut group, &format!("entry={e}/batch={batch}/io=raw"), on_disk);
        }
    }

    let inflight_entry = 1 << 10;
    group.throughput(Throughput::Bytes(inflight_entry as u64 * IN_FLIGHT));
    let e = size_label(inflight_entry as u64);
    let id = format!("entry={e}/inflight={IN_FLIGHT}/io=sync");
    bench_engine_inflight::<TC>(&mut group, &id, inflight_entry, IN_FLIGHT, Config::default());
    let id = format!("entry={e}/inflight={IN_FLIGHT}/io=sync{}", TCBytes::BLOB);
    bench_engine_inflight::<TCBytes>(&mut group, &id, inflight_entry, IN_FLIGHT, Config::default());
    let id = format!("entry={e}/inflight={IN_FLIGHT}/io=uring{}", TCBytes::BLOB);
    bench_engine_inflight::<TCBytes>(&mut group, &id, inflight_entry, IN_FLIGHT, uring_config());
    #[cfg(feature = "peers")]
    {
        let id = format!("entry={e}/inflight={IN_FLIGHT}/io=raft-engine");
        raft_engine_peer::bench_threads(&mut group, &id, inflight_entry, IN_FLIGHT);
        let id = format!("entry={e}/inflight={IN_FLIGHT}/io=raft-engine/one-logbatch");
        raft_engine_peer::bench_batch(&mut group, &id, inflight_entry, IN_FLIGHT);
    }
    // The inflight peer is exactly 64 KiB (the engine writes ~4% more: record framing).
    let id = format!("entry={e}/inflight={IN_FLIGHT}/io=raw");
    bench_raw(&mut group, &id, inflight_entry as u64 * IN_FLIGHT);

    group.throughput(Throughput::Bytes(4 << 20));
    bench_raw(&mut group, "bytes=4MiB/io=raw", 4 << 20);

    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
