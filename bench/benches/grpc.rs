//! `grpc`: round trips to one conflux node over loopback, one request at a time (latency).
//!
//! - `grpc/put/value=256B`: a put of a 256 B value under a 16 B key (1 000 keys, in turn); the
//!   answer comes after the entry is durable (fdatasync) and applied.
//! - `grpc/range/keys=1/consistency=l`: a linearizable single-key range (the node confirms it is
//!   still leader and waits until it has applied the read index).
//! - `grpc/range/keys=1/consistency=s`: the same, serializable (answered from local state).
//!
//! The node runs in-process on its own tokio runtime (threads `conflux-node`), one member,
//! bootstrapped on pre-bound port-0 loopback listeners with its data directory under
//! `conflux_bench::bench_root` (the real data disk) and `--snapshot-count` high enough that no
//! snapshot falls inside a run. The client is a tonic `KvClient` on a current-thread runtime of
//! its own, with `TCP_NODELAY` as the node sets it; each iteration is one `block_on` of one call.
//!
//! `cargo bench -p conflux-bench --bench grpc`

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conflux::node::config::{NodeConfig, ServeArgs};
use conflux::node::proto::etcdserverpb::kv_client::KvClient;
use conflux::node::proto::etcdserverpb::{PutRequest, RangeRequest};
use conflux::node::{Listeners, RunningNode};
use conflux_bench::{full_run, payload, temp_dir};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tonic::transport::{Channel, Endpoint};

const VALUE: usize = 256;
/// Keys the puts cycle through.
const KEYS: u64 = 1_000;
/// Applied entries between snapshots: more than any run writes.
const SNAPSHOT_COUNT: &str = "1000000000";

/// A 16-byte key.
fn key(i: u64) -> Bytes {
    Bytes::from(format!("grpc/key/{:07}", i % KEYS))
}

/// One member, in-process, on its own runtime and in its own data directory.
struct Node {
    runtime: tokio::runtime::Runtime,
    node: RunningNode,
    /// `http://127.0.0.1:port` of the client listener.
    url: String,
    _dir: tempfile::TempDir,
}

fn loopback_listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.set_nonblocking(true).expect("non-blocking listener");
    l
}

impl Node {
    fn start() -> Node {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("conflux-node")
            .build()
            .expect("node runtime");
        let dir = temp_dir("grpc-");
        let (client, peer) = (loopback_listener(), loopback_listener());
        let url = |l: &TcpListener| format!("http://{}", l.local_addr().expect("bound address"));
        let (client_url, peer_url) = (url(&client), url(&peer));
        let args = ServeArgs {
            name: Some("bench".into()),
            data_dir: Some(dir.path().join("bench.conflux")),
            listen_client_urls: Some(client_url.clone()),
            advertise_client_urls: Some(client_url.clone()),
            listen_peer_urls: Some(peer_url.clone()),
            initial_advertise_peer_urls: Some(peer_url.clone()),
            initial_cluster: Some(format!("bench={peer_url}")),
            initial_cluster_token: Some("conflux-bench-grpc".into()),
            snapshot_count: Some(SNAPSHOT_COUNT.into()),
            ..ServeArgs::default()
        };
        // No environment: nothing from the caller's CONFLUX_* variables leaks into the figures.
        let cfg = NodeConfig::resolve(args, &|_: &str| None).expect("node configuration");
        let node = runtime
            .block_on(async {
                let listeners = Listeners {
                    client: vec![tokio::net::TcpListener::from_std(client).expect("client listener")],
                    peer: vec![tokio::net::TcpListener::from_std(peer).expect("peer listener")],
                    metrics: vec![],
                };
                conflux::node::start_on(cfg, listeners).await
            })
            .expect("start the node");
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.core.current_leader().is_none() {
            assert!(Instant::now() < deadline, "the node elected no leader within 30 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        Node { runtime, node, url: client_url, _dir: dir }
    }

    fn stop(self) {
        let Node { runtime, node, _dir, .. } = self;
        if runtime.block_on(async { tokio::time::timeout(Duration::from_secs(20), node.shutdown()).await }).is_err() {
            eprintln!("grpc bench: the node did not stop within 20 s");
        }
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

fn grpc(c: &mut Criterion) {
    let node = Node::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
    let mut client: KvClient<Channel> = rt.block_on(async {
        let channel = Endpoint::from_shared(node.url.clone())
            .expect("endpoint")
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to the node");
        KvClient::new(channel)
    });
    let value = Bytes::from(payload(VALUE));
    let keys: Vec<Bytes> = (0..KEYS).map(key).collect();
    // The key the ranges read, written (and the leader's first commit waited for) before timing.
    let put = |k: &Bytes| PutRequest { key: k.clone(), value: value.clone(), ..Default::default() };
    rt.block_on(client.put(put(&keys[0]))).expect("first put");

    let mut group = c.benchmark_group("grpc");
    let (samples, seconds) = if full_run() { (50, 15) } else { (20, 3) };
    // A put is at least one fdatasync (milliseconds): flat sampling keeps the run bounded.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(seconds));
    group.throughput(Throughput::Elements(1));

    let mut next = 0usize;
    group.bench_function(format!("put/value={VALUE}B"), |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            rt.block_on(client.put(put(&keys[next]))).expect("put")
        })
    });

    for (serializable, label) in [(false, "l"), (true, "s")] {
        let req = RangeRequest { key: keys[0].clone(), serializable, ..Default::default() };
        let found = rt.block_on(client.range(req.clone())).expect("range").into_inner();
        assert_eq!(found.kvs.len(), 1, "the ranged key exists");
        group.bench_function(format!("range/keys=1/consistency={label}"), |b| {
            b.iter(|| rt.block_on(client.range(req.clone())).expect("range"))
        });
    }
    group.finish();

    drop(client);
    drop(rt);
    node.stop();
}

criterion_group!(benches, grpc);
criterion_main!(benches);
