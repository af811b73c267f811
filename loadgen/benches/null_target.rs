//! `null_target`: what loadgen alone can generate, against the null target (an in-process target
//! that answers every operation at once with success), for the requirement that loadgen is never
//! the bottleneck: it must generate at least 10× the highest put throughput conflux reaches on the
//! same machine (`docs/benchmarks.md` holds both figures).
//!
//! - `closed/…`: the closed-loop driver (`run::run` without a rate) — 64 workers, each issuing its
//!   next put (16 B key, 256 B value, uniform keys) as soon as the last one answered.
//! - `open/…`: the open-loop dispatcher with a rate it cannot keep (10⁹ ops/s), so it issues as
//!   fast as it can: its ceiling, i.e. the highest `--rate` a run on this machine can ask for.
//!
//! Each iteration is one whole run of `ops` measured operations (no warmup, no preload, progress
//! off) on a multi-thread tokio runtime whose threads are named `lg-worker`, as the binary's. The
//! time of an iteration is the run's measured phase as `run::run` reports it (`RunOutput::duration`):
//! `run::run` itself returns only at the next tick of its once-a-second progress ticker, a wait
//! that belongs to no phase and is left out.
//!
//! `cargo bench -p conflux-loadgen --bench null_target`

use std::sync::Arc;
use std::time::Duration;

use conflux_loadgen::dist::Distribution;
use conflux_loadgen::op::OpKind;
use conflux_loadgen::run::{self, Arrival, RunConfig};
use conflux_loadgen::target::NullTarget;
use conflux_loadgen::workload::{KeySpace, ValueSize, WorkloadSpec};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

/// Measured operations per closed-loop run: long enough (a few hundred ms here) that the
/// spawning of workers is noise, short enough that a sample is one or two runs.
const CLOSED_OPS: u64 = 1_000_000;
/// Measured operations per open-loop run (the dispatcher is single-threaded and slower).
const OPEN_OPS: u64 = 500_000;
/// Closed loop: workers.
const CLOSED_CLIENTS: usize = 64;
/// Open loop: operations in flight at most.
const OPEN_CLIENTS: usize = 1024;
/// Open loop: a rate no dispatcher keeps, so it never sleeps.
const UNBOUNDED_RATE: f64 = 1e9;
/// Bytes per value.
const VALUE: usize = 256;

fn put_workload() -> WorkloadSpec {
    WorkloadSpec {
        name: "put".into(),
        mix: vec![(OpKind::Put, 1)],
        distribution: Distribution::Uniform,
        key_space: 10_000,
        key_size: 16,
        value_size: ValueSize { min: VALUE, max: VALUE },
        scan_length: 100,
        key_prefix: "lg/".into(),
    }
}

fn config(clients: usize, rate: Option<f64>, total: u64) -> RunConfig {
    RunConfig {
        workload: put_workload(),
        clients,
        rate,
        arrival: Arrival::Constant,
        duration: None,
        total: Some(total),
        warmup: Duration::ZERO,
        preload: false,
        preload_clients: 1,
        seed: 42,
        serializable: false,
        progress: false,
        // Nothing is dropped: every scheduled put is issued, however late.
        max_lag: Duration::from_secs(3600),
        history: None,
    }
}

/// One run; returns its measured phase. Panics if it did not complete `total` successful puts.
fn one_run(rt: &tokio::runtime::Runtime, cfg: &RunConfig) -> Duration {
    let target = Arc::new(NullTarget { conns: 8 });
    let out = rt.block_on(run::run(target, cfg, KeySpace::new(cfg.workload.key_space), None));
    let total = cfg.total.expect("runs are bounded by count");
    assert_eq!(out.recorder.total_ops(), total, "a run completes exactly its measured operations");
    assert_eq!(out.recorder.total_errors(), 0, "the null target never fails");
    out.duration
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lg-worker")
        .build()
        .expect("a tokio runtime");
    let mut g = c.benchmark_group("null_target");
    // A run costs about a second of wall time whatever its length (the ticker, see the module
    // doc), and criterion plans by wall time: ten samples of one run each take ten seconds. (Its
    // "unable to complete 10 samples in 10.0s" warning is that second's rounding, not a problem.)
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));

    let closed = config(CLOSED_CLIENTS, None, CLOSED_OPS);
    g.throughput(Throughput::Elements(CLOSED_OPS));
    g.bench_function(
        BenchmarkId::new("closed", format!("op=put/value={VALUE}B/clients={CLOSED_CLIENTS}/ops={CLOSED_OPS}")),
        |b| b.iter_custom(|iters| (0..iters).map(|_| one_run(&rt, &closed)).sum()),
    );

    let open = config(OPEN_CLIENTS, Some(UNBOUNDED_RATE), OPEN_OPS);
    g.throughput(Throughput::Elements(OPEN_OPS));
    g.bench_function(
        BenchmarkId::new(
            "open",
            format!("op=put/value={VALUE}B/inflight={OPEN_CLIENTS}/rate=unbounded/ops={OPEN_OPS}"),
        ),
        |b| b.iter_custom(|iters| (0..iters).map(|_| one_run(&rt, &open)).sum()),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
