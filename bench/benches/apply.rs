//! `apply`: batches of puts (16 B keys, 256 B values) applied to an MVCC store holding 1 M keys,
//! beside a plain single-threaded `BTreeMap` insert of the same keys and values.
//!
//! `cargo bench -p conflux-bench --bench apply`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conflux::mvcc::{CompactionRequest, PutRequest, Store, WriteRequest};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const KEYS: u64 = 1_000_000;
const VALUE: usize = 256;

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key{:013}", i % KEYS)) // 16 bytes
}

fn value(i: u64) -> Bytes {
    let mut v = vec![0u8; VALUE];
    v[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(v)
}

fn put(i: u64) -> WriteRequest {
    WriteRequest::Put(PutRequest { key: key(i), value: value(i), ..Default::default() })
}

/// A store holding `KEYS` keys.
pub fn populated_store() -> Store {
    let s = Store::new();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(4096) {
        for &i in chunk {
            s.apply_unpublished(&put(i), 128).unwrap();
        }
        s.publish();
    }
    s
}

fn bench(c: &mut Criterion) {
    let store = populated_store();
    let mut map: BTreeMap<Bytes, Bytes> = (0..KEYS).map(|i| (key(i), value(i))).collect();
    let mut g = c.benchmark_group("apply");
    g.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for batch in [1u64, 64, 1024] {
        g.throughput(Throughput::Elements(batch));
        // Requests are built outside the timed part, as the log hands them over decoded.
        let mut next = 0u64;
        g.bench_function(BenchmarkId::new("mvcc", format!("batch={batch}/keys=1M")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let reqs: Vec<WriteRequest> = (next..next + batch).map(|i| put(i * 7919)).collect();
                    next += batch;
                    let t = Instant::now();
                    for r in &reqs {
                        store.apply_unpublished(r, 128).unwrap();
                    }
                    store.publish();
                    total += t.elapsed();
                    // Keep the history bounded (untimed): compact what the updates superseded.
                    if store.version_count() as u64 > KEYS + 500_000 {
                        let rev = store.revision() as i64;
                        store
                            .apply(&WriteRequest::Compact(CompactionRequest { revision: rev, physical: true }))
                            .unwrap();
                        store.compact_physically();
                    }
                }
                total
            })
        });
        let mut next = 0u64;
        g.bench_function(BenchmarkId::new("btreemap", format!("batch={batch}/keys=1M")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let kvs: Vec<(Bytes, Bytes)> =
                        (next..next + batch).map(|i| (key(i * 7919), value(i * 7919))).collect();
                    next += batch;
                    let t = Instant::now();
                    for (k, v) in kvs {
                        map.insert(k, v);
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
