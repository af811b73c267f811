//! `range`: point gets and 100-key scans on an MVCC store of 1 M keys while another thread
//! applies puts, beside a `RwLock<BTreeMap>` read path under the same writer.
//!
//! `cargo bench -p conflux-bench --bench range`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use conflux::mvcc::{CompactionRequest, PutRequest, RangeRequest, Store, WriteRequest};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use parking_lot::RwLock;

const KEYS: u64 = 1_000_000;

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key{:013}", i % KEYS))
}

fn value(i: u64) -> Bytes {
    Bytes::from(vec![(i % 251) as u8; 256])
}

fn bench(c: &mut Criterion) {
    let store = Arc::new(Store::new());
    for i in 0..KEYS {
        store
            .apply_unpublished(
                &WriteRequest::Put(PutRequest { key: key(i), value: value(i), ..Default::default() }),
                128,
            )
            .unwrap();
    }
    store.publish();
    let map = Arc::new(RwLock::new((0..KEYS).map(|i| (key(i), value(i))).collect::<BTreeMap<Bytes, Bytes>>()));

    // Without a writer first: the cost of the read path alone.
    {
        let mut g = c.benchmark_group("range");
        g.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
        g.throughput(Throughput::Elements(1));
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("mvcc", "point/keys=1M/writer=off"), |b| {
            b.iter(|| {
                n = n.wrapping_add(104_729);
                black_box(store.range(&RangeRequest { key: key(n), ..Default::default() }).unwrap().kvs.len())
            })
        });
        g.bench_function(BenchmarkId::new("rwlock-btreemap", "point/keys=1M/writer=off"), |b| {
            b.iter(|| {
                n = n.wrapping_add(104_729);
                black_box(map.read().get(&key(n)).cloned().map(|v| v.len()))
            })
        });
        g.finish();
    }

    // The writers: the same stream of puts, in batches of 64, into each structure.
    let stop = Arc::new(AtomicBool::new(false));
    let (s, m, st) = (store.clone(), map.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut i = 0u64;
        while !st.load(Ordering::Relaxed) {
            for _ in 0..64 {
                let k = (i * 7919) % KEYS;
                s.apply_unpublished(
                    &WriteRequest::Put(PutRequest { key: key(k), value: value(i), ..Default::default() }),
                    128,
                )
                .unwrap();
                m.write().insert(key(k), value(i));
                i += 1;
            }
            s.publish();
            if s.version_count() as u64 > KEYS + 500_000 {
                let rev = s.revision() as i64;
                s.apply(&WriteRequest::Compact(CompactionRequest { revision: rev, physical: true })).unwrap();
                s.compact_physically();
            }
        }
    });

    let mut g = c.benchmark_group("range");
    g.sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    let mut n = 0u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("mvcc", "point/keys=1M/writer=on"), |b| {
        b.iter(|| {
            n = n.wrapping_add(104_729);
            let r = store.range(&RangeRequest { key: key(n), ..Default::default() }).unwrap();
            black_box(r.kvs.len())
        })
    });
    g.bench_function(BenchmarkId::new("rwlock-btreemap", "point/keys=1M/writer=on"), |b| {
        b.iter(|| {
            n = n.wrapping_add(104_729);
            let v = map.read().get(&key(n)).cloned();
            black_box(v.map(|v| v.len()))
        })
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function(BenchmarkId::new("mvcc", "scan=100/keys=1M/writer=on"), |b| {
        b.iter(|| {
            n = n.wrapping_add(104_729);
            let r = store
                .range(&RangeRequest {
                    key: key(n % (KEYS - 200)),
                    range_end: key(n % (KEYS - 200) + 100),
                    ..Default::default()
                })
                .unwrap();
            black_box(r.kvs.len())
        })
    });
    g.bench_function(BenchmarkId::new("rwlock-btreemap", "scan=100/keys=1M/writer=on"), |b| {
        b.iter(|| {
            n = n.wrapping_add(104_729);
            let start = key(n % (KEYS - 200));
            let end = key(n % (KEYS - 200) + 100);
            let v: Vec<(Bytes, Bytes)> = map.read().range(start..end).map(|(k, v)| (k.clone(), v.clone())).collect();
            black_box(v.len())
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
