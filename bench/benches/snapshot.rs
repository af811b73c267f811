//! `snapshot`: build (store → zstd → snapshot file, fdatasync'd) and install (file → new store)
//! for 1 M keys at zstd levels 1, 3 and 9, beside zstd level 1 compressing the same body bytes
//! from memory. Throughput is the uncompressed body; the compression ratio is printed.
//!
//! `cargo bench -p conflux-bench --bench snapshot`

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conflux::mvcc::{PutRequest, Store, WriteRequest};
use conflux_engine::snapshot::Snapshots;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const KEYS: u64 = 1_000_000;

fn store() -> Store {
    let s = Store::new();
    for i in 0..KEYS {
        // Values with some redundancy, like real configuration data: a repeated prefix and a
        // per-key tail.
        let mut v = format!("{{\"owner\":\"service-{}\",\"generation\":{},\"payload\":\"", i % 97, i).into_bytes();
        v.resize(256, b'a' + (i % 26) as u8);
        s.apply_unpublished(
            &WriteRequest::Put(PutRequest {
                key: Bytes::from(format!("key{:013}", i)),
                value: Bytes::from(v),
                ..Default::default()
            }),
            128,
        )
        .unwrap();
    }
    s.publish();
    s
}

fn bench(c: &mut Criterion) {
    let s = store();
    let mut body = Vec::new();
    s.write_snapshot(&mut body).unwrap();
    let raw = body.len() as u64;
    let dir = conflux_bench::temp_dir("snapshot");
    let snaps = Snapshots::open(Arc::new(conflux_engine::io::StdIo), dir.path()).unwrap();

    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(raw));
    g.bench_function(BenchmarkId::new("raw-zstd", "level=1/memory"), |b| {
        b.iter(|| zstd::bulk::compress(&body, 1).unwrap().len())
    });
    for level in [1, 3, 9] {
        let mut index = 0u64;
        let mut last = None;
        g.bench_function(BenchmarkId::new("build", format!("level={level}/keys=1M")), |b| {
            b.iter(|| {
                index += 1;
                let mut w = snaps.create(1, index, b"bench", b"", level).unwrap();
                let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut w);
                s.write_snapshot(&mut buf).unwrap();
                buf.flush().unwrap();
                drop(buf);
                let info = w.finish().unwrap();
                snaps.remove_older_than(&info).unwrap();
                last = Some(info);
            })
        });
        let info = last.expect("built");
        println!(
            "snapshot/level={level}: {} raw body bytes -> {} file bytes, ratio {:.2}",
            raw,
            info.file_bytes,
            raw as f64 / info.file_bytes as f64
        );
        g.bench_function(BenchmarkId::new("install", format!("level={level}/keys=1M")), |b| {
            b.iter(|| {
                let r = snaps.open_reader(&info.path).unwrap();
                let mut body = r.body().unwrap();
                let (store, _) = Store::read_snapshot(&mut body).unwrap();
                let mut rest = Vec::new();
                body.read_to_end(&mut rest).unwrap();
                store.key_count()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
