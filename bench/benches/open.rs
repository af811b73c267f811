//! `open`: reopen time of a log as a function of its size, with the page cache warm and cold.
//!
//! - `open/log=S/entry=E/cache=warm`: `LogStore::open` of a cleanly closed log of S bytes of
//!   payload in E-byte entries, its files in the page cache.
//! - `open/log=S/entry=E/cache=cold`: the same after `sync; echo 1 > /proc/sys/vm/drop_caches`
//!   (outside the timed region). Skipped, with a message, when that file is not writable.
//!
//! Sizes: 100 MiB and 400 MiB by default; `CONFLUX_BENCH_FULL=1` adds 1 GiB. Only `open` is
//! timed: closing the store (which waits for its background threads) is not.

use std::time::{Duration, Instant};

use conflux_bench::{TC, drop_page_cache, fill, full_run, open_store, payload, size_label, temp_dir};
use conflux_engine::Config;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main, measurement::WallTime,
};

const ENTRY_SIZES: [u64; 2] = [1 << 10, 4 << 10];

fn log_sizes() -> Vec<u64> {
    let mut sizes = vec![100 << 20, 400 << 20];
    if full_run() {
        sizes.push(1 << 30);
    }
    sizes
}

fn bench_open(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, path: &std::path::Path, cold: bool) {
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if cold {
                    drop_page_cache().expect("drop page cache");
                }
                let start = Instant::now();
                let store = open_store::<TC>(path, Config::default());
                total += start.elapsed();
                drop(store);
            }
            total
        })
    });
}

fn open(c: &mut Criterion) {
    let cold_available = match drop_page_cache() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("open: cold-cache runs unavailable (cannot write /proc/sys/vm/drop_caches: {e}); warm only");
            false
        }
    };

    let mut group = c.benchmark_group("open");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(500));

    for size in log_sizes() {
        for entry_size in ENTRY_SIZES {
            let dir = temp_dir("open-");
            let path = dir.path().join("store");
            let count = size / entry_size;
            let built = Instant::now();
            {
                let mut store = open_store::<TC>(&path, Config::default());
                fill::<TC>(&mut store, 1, count, &payload(entry_size as usize));
                eprintln!(
                    "  built log={} entry={}: {count} entries, {} segments, in {:.1} s",
                    size_label(size),
                    size_label(entry_size),
                    store.segment_count(),
                    built.elapsed().as_secs_f64()
                );
            }
            let label = format!("log={}/entry={}", size_label(size), size_label(entry_size));
            group.throughput(Throughput::Bytes(size));
            group.measurement_time(Duration::from_secs(3));
            bench_open(&mut group, &format!("{label}/cache=warm"), &path, false);
            if cold_available {
                // Each iteration also pays sync + drop_caches + close outside the timed region:
                // a short target keeps it near one open per sample.
                group.measurement_time(Duration::from_secs(1));
                bench_open(&mut group, &format!("{label}/cache=cold"), &path, true);
            }
        }
    }
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
