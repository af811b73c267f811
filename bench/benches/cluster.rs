//! `cluster`: put throughput of a 3-member conflux cluster at 1, 64 and 256 concurrent clients.
//!
//! - `cluster/put/value=256B/clients=N`: one iteration is `N` tasks, each issuing its puts
//!   (16 B keys cycling through 10 000, 256 B values) one after the other, until all of them
//!   answered; `N × 16` puts per iteration (`N × 1` in criterion's test mode). Throughput is puts.
//!
//! The members run in this process (`conflux_loadgen::embedded::Embedded`: their own runtime,
//! loopback ports, data directories under `conflux_bench::bench_root`, the real data disk), with
//! `--snapshot-count` high enough that no snapshot falls inside a run. The clients share 8 gRPC
//! connections spread over the three members (connection `i` to member `i mod 3`, as loadgen
//! spreads them; client `t` uses connection `t mod 8`), so most puts reach a follower and are
//! forwarded to the leader. The clients run on a multi-thread runtime of their own. Which member
//! leads is printed to stderr: with one client, all puts go to member 0.
//!
//! The same setting as the `put 256 B` rows of loadgen's side-by-side table in
//! `docs/benchmarks.md`, measured per iteration instead of over a 10 s run.
//!
//! `cargo bench -p conflux-bench --bench cluster`

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conflux::node::proto::etcdserverpb::kv_client::KvClient;
use conflux::node::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use conflux::node::proto::etcdserverpb::{PutRequest, StatusRequest};
use conflux_bench::{bench_root, full_run, payload};
use conflux_loadgen::embedded::{Embedded, EmbeddedOptions};
use conflux_loadgen::target::{GrpcTarget, Tls};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tonic::transport::Channel;

const MEMBERS: usize = 3;
const CLIENTS: [usize; 3] = [1, 64, 256];
const CONNECTIONS: usize = 8;
/// Puts each client issues per iteration (benchmark mode).
const PUTS_PER_CLIENT: u64 = 16;
const VALUE: usize = 256;
const KEYS: u64 = 10_000;
/// Applied entries between snapshots: more than any run writes.
const SNAPSHOT_COUNT: &str = "1000000000";

/// Whether criterion runs in test mode (`cargo test --benches`, or `--test`): each benchmark
/// runs one iteration, so keep that iteration small.
fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test")
}

/// Print which member leads (the `Status` of each; the header names the member answering).
fn report_leader(rt: &tokio::runtime::Runtime, endpoints: &[String]) {
    let statuses = rt.block_on(async {
        let mut out = Vec::new();
        for e in endpoints {
            let status = async {
                let mut m = MaintenanceClient::connect(format!("http://{e}")).await.ok()?;
                let s = m.status(StatusRequest::default()).await.ok()?.into_inner();
                Some((s.header?.member_id, s.leader))
            };
            out.push(status.await);
        }
        out
    });
    let leader = statuses.iter().position(|s| s.is_some_and(|(me, leader)| me == leader));
    match leader {
        Some(i) => eprintln!("  [cluster] leader: member {i} ({}), of {endpoints:?}", endpoints[i]),
        None => eprintln!("  [cluster] could not tell which member leads ({statuses:?})"),
    }
}

fn cluster(c: &mut Criterion) {
    let opts = EmbeddedOptions {
        members: MEMBERS,
        data_root: Some(bench_root()),
        extra: vec![("--snapshot-count".into(), SNAPSHOT_COUNT.into())],
    };
    let cluster = Embedded::start(&opts).unwrap_or_else(|e| panic!("start the cluster: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()
        .expect("client runtime");
    let target = rt
        .block_on(GrpcTarget::connect(
            &cluster.endpoints,
            CONNECTIONS,
            &Tls::default(),
            Duration::from_secs(5),
            Duration::from_secs(10),
        ))
        .unwrap_or_else(|e| panic!("connect to the cluster: {e}"));
    let conns: Vec<KvClient<Channel>> = (0..CONNECTIONS).map(|i| target.client(i)).collect();
    let keys: Arc<Vec<Bytes>> = Arc::new((0..KEYS).map(|i| Bytes::from(format!("cluster/k{i:07}"))).collect());
    let value = Bytes::from(payload(VALUE));
    report_leader(&rt, &cluster.endpoints);

    let per_client = if test_mode() { 1 } else { PUTS_PER_CLIENT };
    let mut group = c.benchmark_group("cluster");
    let (samples, seconds) = if full_run() { (20, 15) } else { (10, 5) };
    // Iterations take milliseconds to a few hundred: flat sampling keeps the run bounded.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(seconds));
    let mut next = 0u64;
    for clients in CLIENTS {
        let puts = clients as u64 * per_client;
        group.throughput(Throughput::Elements(puts));
        group.bench_function(format!("put/value={VALUE}B/clients={clients}"), |b| {
            b.iter(|| {
                let base = next;
                next = next.wrapping_add(puts);
                rt.block_on(async {
                    let tasks: Vec<_> = (0..clients)
                        .map(|t| {
                            let mut kv = conns[t % CONNECTIONS].clone();
                            let (keys, value) = (keys.clone(), value.clone());
                            let first = base + t as u64 * per_client;
                            tokio::spawn(async move {
                                for n in first..first + per_client {
                                    let key = keys[(n % KEYS) as usize].clone();
                                    kv.put(PutRequest { key, value: value.clone(), ..Default::default() })
                                        .await
                                        .expect("put");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("client task");
                    }
                })
            })
        });
    }
    group.finish();

    drop(conns);
    drop(target);
    drop(rt);
    cluster.stop(false);
}

criterion_group!(benches, cluster);
criterion_main!(benches);
