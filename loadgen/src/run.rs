//! The driver: preload, warmup, then the measured phase in closed loop (`--clients` workers each
//! issuing its next operation when the last one answers) or open loop (operations issued on a
//! schedule at `--rate`, whether or not earlier ones have answered, latency measured from each
//! operation's intended start).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::SeedableRng;
use rand_distr::Distribution as _;
use serde::{Deserialize, Serialize};

use crate::history::History;
use crate::op::{OpKind, Outcome};
use crate::record::{Interval, Recorder, SeriesRow};
use crate::target::{Target, WriteAck};
use crate::workload::{KeySpace, OpGen, WorkloadSpec, preload_part};

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Evenly, `1/rate` apart.
    Constant,
    /// A Poisson process: exponential gaps with mean `1/rate`.
    Poisson,
}

/// Everything a run needs besides the target.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// What to issue.
    pub workload: WorkloadSpec,
    /// Closed loop: workers. Open loop: the most operations in flight at once.
    pub clients: usize,
    /// Open loop: operations per second (None = closed loop).
    pub rate: Option<f64>,
    /// Open loop arrival process.
    pub arrival: Arrival,
    /// Measured phase length (None with `total`).
    pub duration: Option<Duration>,
    /// Measured operations (None with `duration`).
    pub total: Option<u64>,
    /// Unmeasured time before the measured phase.
    pub warmup: Duration,
    /// Write the key space before the run.
    pub preload: bool,
    /// Concurrency of the preload phase.
    pub preload_clients: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Serve reads locally (etcd's serializable) instead of linearizably.
    pub serializable: bool,
    /// Print progress every second (on a terminal).
    pub progress: bool,
    /// Open loop: an operation that cannot start within this of its intended time is dropped.
    pub max_lag: Duration,
    /// `--history`: every operation (warmup included) gets a unique value and is recorded.
    pub history: Option<History>,
}

/// Open-loop accounting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleStats {
    /// Operations scheduled in the measured phase.
    pub scheduled: u64,
    /// Operations dropped because they could not start within `max_lag`.
    pub dropped: u64,
    /// Mean delay from intended to actual start, ms.
    pub mean_lag_ms: f64,
    /// Largest delay, ms.
    pub max_lag_ms: f64,
}

/// What a run measured.
pub struct RunOutput {
    /// Every measured operation.
    pub recorder: Recorder,
    /// One row per second of the measured phase.
    pub series: Vec<SeriesRow>,
    /// Length of the measured phase.
    pub duration: Duration,
    /// Open loop: the schedule's accounting.
    pub schedule: Option<ScheduleStats>,
    /// CPU time loadgen's own threads used in the measured phase (user, system).
    pub cpu: (Duration, Duration),
    /// Wall-clock start of the measured phase.
    pub started_at: std::time::SystemTime,
}

/// Where acknowledged writes go for `loadgen verify` (a line per write, from a writer thread).
#[derive(Clone)]
pub struct AckLog {
    tx: std::sync::mpsc::Sender<Vec<WriteAck>>,
}

impl AckLog {
    /// Write to `path` (created or truncated). The thread stops when every `AckLog` clone is
    /// dropped; join the handle to be sure everything is on disk.
    pub fn create(path: &std::path::Path) -> std::io::Result<(AckLog, std::thread::JoinHandle<std::io::Result<()>>)> {
        let file = std::fs::File::create(path)?;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<WriteAck>>();
        let h = std::thread::Builder::new().name("lg-acklog".into()).spawn(move || {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            for batch in rx {
                for a in batch {
                    crate::verify::write_ack(&mut w, &a)?;
                }
            }
            w.flush()?;
            w.get_ref().sync_all()
        })?;
        Ok((AckLog { tx }, h))
    }

    fn send(&self, acks: Vec<WriteAck>) {
        if !acks.is_empty() {
            let _ = self.tx.send(acks);
        }
    }
}

/// CPU time (user, system) of this process's threads whose name starts with `lg-` (loadgen's
/// runtime workers, dispatcher and progress threads), from `/proc/self/task`.
pub fn loadgen_cpu() -> (Duration, Duration) {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut user = 0u64;
    let mut sys = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return (Duration::ZERO, Duration::ZERO) };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        // The name sits in parentheses and may hold spaces: fields follow the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !stat[open + 1..close].starts_with("lg-") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of stat; after the name, fields start at 3.
        user += fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        sys += fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    (Duration::from_secs_f64(user as f64 / ticks), Duration::from_secs_f64(sys as f64 / ticks))
}

/// The recorders operations write to: a few shards so concurrent completions rarely contend.
struct Shards {
    shards: Vec<Mutex<Recorder>>,
}

impl Shards {
    fn new(n: usize) -> Arc<Shards> {
        Arc::new(Shards { shards: (0..n.max(1)).map(|_| Mutex::new(Recorder::new())).collect() })
    }

    fn take_interval(&self) -> Interval {
        let mut it = self.shards[0].lock().take_interval();
        for s in &self.shards[1..] {
            it.merge(&s.lock().take_interval());
        }
        it
    }

    fn merged(&self) -> Recorder {
        let mut r = Recorder::new();
        for s in &self.shards {
            r.merge(&s.lock());
        }
        r
    }
}

/// Write the key space (`[0, key_space)`), `preload_clients` writers at once; returns the
/// number of failed puts.
pub async fn preload(target: Arc<dyn Target>, cfg: &RunConfig, acks: Option<AckLog>) -> u64 {
    let parts = cfg.preload_clients.max(1) as u64;
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for part in 0..parts {
        let target = target.clone();
        let spec = cfg.workload.clone();
        let seed = cfg.seed;
        let failed = failed.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let conn = part as usize % target.connections();
            for op in preload_part(&spec, seed, part, parts) {
                let r = target.execute(conn, op, false).await;
                if r.outcome != Outcome::Ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(a) = &acks {
                    a.send(r.acks);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    failed.load(Ordering::Relaxed)
}

fn pct_ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 }
}

/// The progress ticker: once a second, takes the interval measurements, appends a series row
/// (measured phase only) and prints a progress line when asked.
fn spawn_ticker(
    shards: Arc<Shards>,
    measure_start: Instant,
    stop: Arc<AtomicBool>,
    progress: bool,
) -> tokio::task::JoinHandle<Vec<SeriesRow>> {
    tokio::spawn(async move {
        let mut series = Vec::new();
        let mut tick =
            tokio::time::interval_at((measure_start + Duration::from_secs(1)).into(), Duration::from_secs(1));
        // Nothing to discard at the end of the warmup: only measured operations are recorded.
        // (Taking an interval there threw away the measured operations recorded before this
        // task got to run, all of them when the workers never yielded.)
        loop {
            tick.tick().await;
            // Read the flag before taking the interval: an operation recorded between the take
            // and a later read would be left out of the series.
            let last = stop.load(Ordering::Acquire);
            let it = shards.take_interval();
            let t = measure_start.elapsed().as_secs_f64();
            let row = SeriesRow {
                t: t.round(),
                ops: it.ops,
                errors: it.errors,
                p50_ms: pct_ms(&it.hist, 0.5),
                p99_ms: pct_ms(&it.hist, 0.99),
                max_ms: if it.hist.is_empty() { 0.0 } else { it.hist.max() as f64 / 1000.0 },
            };
            if progress {
                eprintln!(
                    "[{:>5.0}s] {:>9} ops/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {}",
                    row.t, row.ops, row.p50_ms, row.p99_ms, row.errors
                );
            }
            series.push(row);
            if last {
                return series;
            }
        }
    })
}

/// Run the workload against `target`: warmup, then the measured phase.
pub async fn run(target: Arc<dyn Target>, cfg: &RunConfig, keys: Arc<KeySpace>, acks: Option<AckLog>) -> RunOutput {
    let shards = Shards::new(16);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let measure_start = start + cfg.warmup;
    let measure_end = cfg.duration.map(|d| measure_start + d);
    let ticker = spawn_ticker(shards.clone(), measure_start, stop.clone(), cfg.progress);
    let cpu_at_start = Arc::new(Mutex::new(None));
    {
        let cpu = cpu_at_start.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_start.into()).await;
            *cpu.lock() = Some((loadgen_cpu(), std::time::SystemTime::now()));
        });
    }
    let schedule = match cfg.rate {
        None => {
            closed_loop(target, cfg, keys, acks, &shards, measure_start, measure_end).await;
            None
        }
        Some(rate) => Some(open_loop(target, cfg, rate, keys, acks, &shards, measure_start, measure_end).await),
    };
    // The measured phase: to the configured end when the run reached it (operations still in
    // flight then complete after it, but rates are per second of the phase), else to now.
    let end = match measure_end {
        Some(e) if !interrupted() => e.min(Instant::now()),
        _ => Instant::now(),
    };
    stop.store(true, Ordering::Release);
    let cpu_end = loadgen_cpu();
    let series = ticker.await.unwrap_or_default();
    let (cpu_start, started_at) =
        cpu_at_start.lock().unwrap_or(((Duration::ZERO, Duration::ZERO), std::time::SystemTime::now()));
    RunOutput {
        recorder: shards.merged(),
        series,
        duration: end.saturating_duration_since(measure_start),
        schedule,
        cpu: (cpu_end.0.saturating_sub(cpu_start.0), cpu_end.1.saturating_sub(cpu_start.1)),
        started_at,
    }
}

/// Set by [`interrupt`] (Ctrl-C): the run stops issuing operations and reports what it measured.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Stop the running measurement early (the report covers what was measured until now).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Whether the measured phase is over (by time, or by count `issued` of measured operations).
fn finished(
    cfg: &RunConfig,
    now: Instant,
    measure_start: Instant,
    measure_end: Option<Instant>,
    issued: &AtomicU64,
) -> bool {
    if INTERRUPTED.load(Ordering::Relaxed) {
        return true;
    }
    if let Some(end) = measure_end
        && now >= end
    {
        return true;
    }
    if let Some(total) = cfg.total
        && now >= measure_start
        && issued.load(Ordering::Relaxed) >= total
    {
        return true;
    }
    false
}

async fn closed_loop(
    target: Arc<dyn Target>,
    cfg: &RunConfig,
    keys: Arc<KeySpace>,
    acks: Option<AckLog>,
    shards: &Arc<Shards>,
    measure_start: Instant,
    measure_end: Option<Instant>,
) {
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..cfg.clients.max(1) {
        let target = target.clone();
        let cfg = cfg.clone();
        let keys = keys.clone();
        let acks = acks.clone();
        let shards = shards.clone();
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut ops = OpGen::new(&cfg.workload, keys, cfg.seed, w as u64);
            let conn = w % target.connections();
            let endpoint = target.endpoint_of(conn);
            let shard = &shards.shards[w % shards.shards.len()];
            let mut seq = 0u64;
            loop {
                let sent = Instant::now();
                if finished(&cfg, sent, measure_start, measure_end, &issued) {
                    return;
                }
                let measured = sent >= measure_start;
                if measured && cfg.total.is_some() && issued.fetch_add(1, Ordering::Relaxed) >= cfg.total.unwrap_or(0) {
                    return;
                }
                let op = ops.next_op();
                let kind = op.kind();
                let r = match &cfg.history {
                    None => target.execute(conn, op, cfg.serializable).await,
                    Some(h) => {
                        let op = h.with_unique_value(op, w as u64, seq);
                        seq += 1;
                        let (r, records) = target.execute_traced(conn, op, cfg.serializable, h, w as u64).await;
                        h.send(records);
                        r
                    }
                };
                let done = Instant::now();
                if measured {
                    shard.lock().record(kind, &r.outcome, endpoint, sent, sent, done);
                }
                if let Some(a) = &acks {
                    a.send(r.acks);
                }
                // A target that answers at once (the null target) never makes this task wait:
                // yield now and then, or the other workers, the ticker and the CPU sampler
                // starve until the run is over.
                tokio::task::consume_budget().await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Let the dispatcher thread sleep precisely (the default 50 µs timer slack would add up to
/// 50 µs to every intended start).
fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long value and changes only this thread's
    // timer slack; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    target: Arc<dyn Target>,
    cfg: &RunConfig,
    rate: f64,
    keys: Arc<KeySpace>,
    acks: Option<AckLog>,
    shards: &Arc<Shards>,
    measure_start: Instant,
    measure_end: Option<Instant>,
) -> ScheduleStats {
    let handle = tokio::runtime::Handle::current();
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.clients.max(1)));
    let cfg = cfg.clone();
    let shards = shards.clone();
    // The schedule runs on its own thread: it sleeps to each intended start (precisely, see
    // `tighten_timer_slack`), takes an in-flight slot, and hands the operation to the runtime.
    let dispatcher = std::thread::Builder::new()
        .name("lg-dispatch".into())
        .spawn(move || {
            tighten_timer_slack();
            let mut ops = OpGen::new(&cfg.workload, keys, cfg.seed, u64::MAX);
            let mut rng = rand::rngs::SmallRng::seed_from_u64(cfg.seed ^ 0x5eed_a771_5a1e);
            let exp = rand_distr::Exp::new(rate).expect("rate was checked to be positive");
            let mut stats = ScheduleStats::default();
            let mut lag_sum = 0f64;
            let mut started = 0u64;
            let issued = AtomicU64::new(0);
            let mut intended = Instant::now();
            let mut seq = 0usize;
            let mut tasks = Vec::new();
            loop {
                let gap = match cfg.arrival {
                    Arrival::Constant => 1.0 / rate,
                    Arrival::Poisson => exp.sample(&mut rng),
                };
                intended += Duration::from_secs_f64(gap);
                // Over when the schedule reaches the end, or when the wall clock does (an
                // overloaded target must not stretch the run past --duration).
                if finished(&cfg, intended, measure_start, measure_end, &issued)
                    || finished(&cfg, Instant::now(), measure_start, measure_end, &issued)
                {
                    break;
                }
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                let measured = intended >= measure_start;
                if measured {
                    issued.fetch_add(1, Ordering::Relaxed);
                    stats.scheduled += 1;
                }
                let permit = match permits.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        let deadline = intended + cfg.max_lag;
                        let wait = deadline.saturating_duration_since(Instant::now());
                        // The timeout's timer must be made inside the runtime (this thread is not
                        // in it), hence the async block.
                        let acquire = async { tokio::time::timeout(wait, permits.clone().acquire_owned()).await };
                        match handle.block_on(acquire) {
                            Ok(Ok(p)) => p,
                            _ => {
                                if measured {
                                    stats.dropped += 1;
                                }
                                continue;
                            }
                        }
                    }
                };
                let sent = Instant::now();
                // An operation that could not start within --max-lag of its slot is dropped,
                // whether it waited for a free slot or for this thread.
                if sent.saturating_duration_since(intended) > cfg.max_lag {
                    if measured {
                        stats.dropped += 1;
                    }
                    continue;
                }
                if measured {
                    let lag = sent.saturating_duration_since(intended).as_secs_f64() * 1000.0;
                    lag_sum += lag;
                    started += 1;
                    stats.max_lag_ms = stats.max_lag_ms.max(lag);
                }
                let op = ops.next_op();
                let kind = op.kind();
                let conn = seq % target.connections();
                let endpoint = target.endpoint_of(conn);
                let shard = seq % shards.shards.len();
                seq += 1;
                let target = target.clone();
                let shards = shards.clone();
                let acks = acks.clone();
                let serializable = cfg.serializable;
                let history = cfg.history.clone();
                // In open loop every operation is its own client: its sequence number.
                let client = seq as u64 - 1;
                let t = handle.spawn(async move {
                    let r = match &history {
                        None => target.execute(conn, op, serializable).await,
                        Some(h) => {
                            let op = h.with_unique_value(op, client, 0);
                            let (r, records) = target.execute_traced(conn, op, serializable, h, client).await;
                            h.send(records);
                            r
                        }
                    };
                    let done = Instant::now();
                    drop(permit);
                    if measured {
                        shards.shards[shard].lock().record(kind, &r.outcome, endpoint, intended, sent, done);
                    }
                    if let Some(a) = &acks {
                        a.send(r.acks);
                    }
                });
                tasks.push(t);
                if tasks.len() >= 4096 {
                    tasks.retain(|t| !t.is_finished());
                }
            }
            for t in tasks {
                let _ = handle.block_on(t);
            }
            if started > 0 {
                stats.mean_lag_ms = lag_sum / started as f64;
            }
            stats
        })
        .expect("spawn the dispatcher thread");
    tokio::task::spawn_blocking(move || dispatcher.join().expect("the dispatcher does not panic"))
        .await
        .expect("joining the dispatcher")
}

/// Kinds whose operations a workload can issue.
pub fn kinds_of(spec: &WorkloadSpec) -> Vec<OpKind> {
    spec.mix.iter().filter(|(_, w)| *w > 0).map(|(k, _)| *k).collect()
}

#[cfg(test)]
mod tests {
    //! The driver against in-test targets. Assertions use bounds that follow from the schedule
    //! and the targets' fixed service time (an operation never starts before its slot; one
    //! in-flight slot serves at most one operation per service time), not from how fast this
    //! machine happens to be.

    use std::future::Future;
    use std::pin::Pin;

    use super::*;
    use crate::dist::Distribution;
    use crate::op::Op;
    use crate::report::Report;
    use crate::target::{Executed, NullTarget};
    use crate::workload::ValueSize;

    /// Answers every operation with success after `delay`, noting when each one arrived.
    struct SlowTarget {
        delay: Duration,
        arrivals: Mutex<Vec<Instant>>,
    }

    impl SlowTarget {
        fn new(delay: Duration) -> Arc<SlowTarget> {
            Arc::new(SlowTarget { delay, arrivals: Mutex::new(Vec::new()) })
        }

        /// Arrival times, earliest first.
        fn arrivals(&self) -> Vec<Instant> {
            let mut a = self.arrivals.lock().clone();
            a.sort();
            a
        }
    }

    impl Target for SlowTarget {
        fn connections(&self) -> usize {
            4
        }

        fn endpoint_of(&self, _: usize) -> usize {
            0
        }

        fn endpoints(&self) -> Vec<String> {
            vec!["slow".into()]
        }

        fn execute(&self, _: usize, _: Op, _: bool) -> Pin<Box<dyn Future<Output = Executed> + Send + '_>> {
            Box::pin(async move {
                self.arrivals.lock().push(Instant::now());
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                Executed { outcome: Outcome::Ok, acks: vec![] }
            })
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// Puts of 8-byte values on 100 keys; closed loop, 4 clients, 1 s, no warmup, no preload.
    fn config() -> RunConfig {
        RunConfig {
            workload: WorkloadSpec {
                name: "put".into(),
                mix: vec![(OpKind::Put, 1)],
                distribution: Distribution::Uniform,
                key_space: 100,
                key_size: 16,
                value_size: ValueSize { min: 8, max: 8 },
                scan_length: 10,
                key_prefix: "lg/".into(),
            },
            clients: 4,
            rate: None,
            arrival: Arrival::Constant,
            duration: Some(Duration::from_secs(1)),
            total: None,
            warmup: Duration::ZERO,
            preload: false,
            preload_clients: 1,
            seed: 7,
            serializable: false,
            progress: false,
            max_lag: Duration::from_secs(10),
            history: None,
        }
    }

    fn open(rate: f64, clients: usize, duration: Duration) -> RunConfig {
        RunConfig { rate: Some(rate), clients, duration: Some(duration), ..config() }
    }

    async fn drive(target: Arc<dyn Target>, cfg: &RunConfig) -> RunOutput {
        run(target, cfg, KeySpace::new(cfg.workload.key_space), None).await
    }

    fn series_ops(out: &RunOutput) -> u64 {
        out.series.iter().map(|r| r.ops).sum()
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    /// Mean and coefficient of variation of the gaps between consecutive instants.
    fn gap_stats(t: &[Instant]) -> (f64, f64) {
        let gaps: Vec<f64> = t.windows(2).map(|w| ms(w[1] - w[0])).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        (mean, var.sqrt() / mean)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn constant_arrivals_are_evenly_spaced_at_one_over_rate() {
        // 100/s for 1 s against 20 ms service: 2 in flight on average, 8 slots, nothing queues.
        let target = SlowTarget::new(20 * MS);
        let cfg = open(100.0, 8, Duration::from_secs(1));
        let before = Instant::now();
        let out = drive(target.clone(), &cfg).await;
        let s = out.schedule.clone().expect("open loop reports its schedule");

        // Slots at t0 + k/rate before the end of the measured second, t0 = the dispatcher's start.
        assert!((90..=100).contains(&s.scheduled), "{s:?}");
        assert_eq!(s.dropped, 0, "{s:?}");
        assert_eq!(out.recorder.total_ops(), s.scheduled);
        assert_eq!(series_ops(&out), s.scheduled, "the per-second series lost operations: {:?}", out.series);
        let arrivals = target.arrivals();
        assert_eq!(arrivals.len() as u64, s.scheduled);
        // Never early: the k-th operation (from 0) cannot go out before its slot, (k+1)/rate
        // after the dispatcher started.
        for (k, a) in arrivals.iter().enumerate() {
            let slot = before + Duration::from_secs_f64((k + 1) as f64 / 100.0);
            assert!(*a >= slot, "operation {k} went out {:?} before its slot", slot - *a);
        }
        // And not late on average: the mean gap is 1/rate.
        let (mean_gap, _) = gap_stats(&arrivals);
        assert!((7.5..=12.5).contains(&mean_gap), "mean gap {mean_gap:.3} ms, expected 10 ms");
        // Every operation took the 20 ms service time at least, from its slot and from its send.
        let h = out.recorder.histogram(OpKind::Put, &Outcome::Ok).unwrap();
        assert!(h.min() >= 19_900, "{} µs", h.min());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn too_few_clients_queue_and_latency_counts_the_queueing() {
        // 100/s against 20 ms service through one slot: the slot serves 50/s, so operation k
        // starts at least 20k ms after the first while its slot is 10k ms after it.
        let target = SlowTarget::new(20 * MS);
        let cfg = open(100.0, 1, Duration::from_millis(500));
        let out = drive(target.clone(), &cfg).await;
        let s = out.schedule.clone().unwrap();
        // The run ends at 500 ms of wall clock, by which the one slot has served about 25 of the
        // 50 slots' operations: the schedule does not stretch the run.
        assert!((15..=50).contains(&s.scheduled), "{s:?}");
        assert_eq!(s.dropped, 0, "max lag is 10 s: {s:?}");
        let n = out.recorder.total_ops();
        assert_eq!(n, s.scheduled);
        // lag_k >= 10k ms, so mean >= 10 (n-1)/2 ms and max >= 10 (n-1) ms.
        let floor = 10.0 * (n - 1) as f64;
        assert!(s.mean_lag_ms >= 0.99 * floor / 2.0, "mean lag {} ms < {} ms", s.mean_lag_ms, floor / 2.0);
        assert!(s.max_lag_ms >= 0.99 * floor, "max lag {} ms < {floor} ms", s.max_lag_ms);
        assert!(s.max_lag_ms >= s.mean_lag_ms);

        // Latency from the intended start includes the queueing; service time does not.
        assert!(out.recorder.is_open_loop());
        let corrected = out.recorder.histogram(OpKind::Put, &Outcome::Ok).unwrap();
        let service = out.recorder.uncorrected(OpKind::Put).expect("open loop keeps service time");
        assert_eq!((corrected.len(), service.len()), (n, n));
        assert!(service.min() >= 19_900, "service time below the target's 20 ms: {} µs", service.min());
        // Per operation, latency = lag + service time, so the means differ by the mean lag.
        let diff_ms = (corrected.mean() - service.mean()) / 1000.0;
        assert!(
            (diff_ms - s.mean_lag_ms).abs() <= 0.01 * s.mean_lag_ms + 0.1,
            "latency - service = {diff_ms} ms, mean lag {} ms",
            s.mean_lag_ms
        );
        assert!(corrected.max() as f64 / 1000.0 >= floor + 20.0);

        let (_, ops, _) = Report::summarize(&out.recorder, &target.endpoints(), out.duration);
        let put = &ops[0];
        let (lat, unc) = (put.latency.unwrap(), put.uncorrected.expect("the report shows service time"));
        assert!(lat.p50 > unc.p50 && lat.p99 > unc.p99 && lat.mean > unc.mean, "{lat:?} vs {unc:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operations_that_cannot_start_within_max_lag_are_dropped_and_counted() {
        // 200/s for 1 s through one slot of 20 ms service: at most 50/s can start.
        let target = SlowTarget::new(20 * MS);
        let cfg = RunConfig { max_lag: 30 * MS, ..open(200.0, 1, Duration::from_secs(1)) };
        let out = drive(target.clone(), &cfg).await;
        let s = out.schedule.clone().unwrap();
        assert!((180..=200).contains(&s.scheduled), "{s:?}");
        let done = out.recorder.total_ops();
        assert_eq!(done + s.dropped, s.scheduled, "every scheduled operation ran or was dropped: {s:?}");
        assert_eq!(target.arrivals().len() as u64, done, "a dropped operation was sent");
        // One slot, 20 ms each: no more than the measured time allows.
        assert!(done as f64 * 20.0 <= ms(out.duration) + 0.5, "{done} ops in {:?}", out.duration);
        assert!(
            s.dropped > 0 && s.dropped >= s.scheduled.saturating_sub((ms(out.duration) / 20.0) as u64 + 1),
            "{s:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn poisson_arrivals_have_mean_gap_one_over_rate() {
        let target = SlowTarget::new(MS);
        let cfg = RunConfig { arrival: Arrival::Poisson, ..open(500.0, 32, Duration::from_secs(1)) };
        let out = drive(target.clone(), &cfg).await;
        let s = out.schedule.clone().unwrap();
        // 500 expected; the count of a Poisson process over 1 s has a standard deviation of 22.
        assert!((425..=575).contains(&s.scheduled), "{s:?}");
        assert_eq!(s.dropped, 0);
        assert_eq!(out.recorder.total_ops(), s.scheduled);
        let arrivals = target.arrivals();
        assert_eq!(arrivals.len() as u64, s.scheduled);
        let (mean_gap, cv) = gap_stats(&arrivals);
        assert!((1.5..=2.5).contains(&mean_gap), "mean gap {mean_gap:.3} ms, expected 2 ms");
        // Exponential gaps vary as much as their mean (cv 1); a constant schedule's barely do.
        assert!(cv > 0.6, "gaps look evenly spaced (cv {cv:.2}), not exponential");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_measures_exactly_total_operations() {
        let cfg = RunConfig { duration: None, total: Some(5_000), ..config() };
        let out = drive(Arc::new(NullTarget { conns: 2 }), &cfg).await;
        assert_eq!(out.recorder.total_ops(), 5_000);
        assert_eq!(out.recorder.successes(OpKind::Put), 5_000);
        assert_eq!(out.recorder.kinds(), vec![OpKind::Put]);
        assert_eq!(series_ops(&out), 5_000);
        assert!(out.schedule.is_none(), "closed loop has no schedule");
        assert!(!out.recorder.is_open_loop(), "closed loop sends every operation when it is issued");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_warmup_is_not_recorded() {
        let target = SlowTarget::new(MS);
        let cfg = RunConfig { duration: None, total: Some(50), warmup: 300 * MS, clients: 2, ..config() };
        let before = Instant::now();
        let out = drive(target.clone(), &cfg).await;
        let arrivals = target.arrivals();
        let in_warmup = arrivals.iter().filter(|a| **a < before + cfg.warmup).count();
        assert!(in_warmup > 10, "the warmup issued {in_warmup} operations");
        assert_eq!(out.recorder.total_ops(), 50, "{} operations reached the target", arrivals.len());
        assert_eq!(series_ops(&out), 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn measured_operations_right_after_warmup_reach_the_series() {
        // A null target completes thousands of operations in the first millisecond after the
        // warmup: the per-second series must count them like the totals do.
        let cfg = RunConfig { duration: None, total: Some(100_000), warmup: 200 * MS, ..config() };
        let out = drive(Arc::new(NullTarget { conns: 1 }), &cfg).await;
        assert_eq!(out.recorder.total_ops(), 100_000);
        assert_eq!(series_ops(&out), 100_000, "{:?}", out.series);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_null_target_does_not_starve_the_ticker() {
        // More clients than runtime threads, against a target that never makes them wait: the
        // ticker must still take a row each second while they run, not one at the end.
        let cfg = RunConfig { clients: 8, duration: Some(Duration::from_millis(2500)), ..config() };
        let out = drive(Arc::new(NullTarget { conns: 1 }), &cfg).await;
        let t: Vec<f64> = out.series.iter().map(|r| r.t).collect();
        assert_eq!(t, [1.0, 2.0, 3.0], "{:?}", out.series);
        assert!(out.series.iter().all(|r| r.ops > 0), "{:?}", out.series);
        assert_eq!(series_ops(&out), out.recorder.total_ops());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_warmup_is_not_scheduled_or_recorded() {
        // 200/s: about 100 slots in the 0.5 s warmup, then 100 measured ones.
        let target = SlowTarget::new(MS);
        let cfg = RunConfig { warmup: 500 * MS, ..open(200.0, 8, Duration::from_millis(500)) };
        let out = drive(target.clone(), &cfg).await;
        let s = out.schedule.clone().unwrap();
        assert!((99..=100).contains(&s.scheduled), "only measured slots count: {s:?}");
        assert_eq!(s.dropped, 0);
        assert_eq!(out.recorder.total_ops(), s.scheduled);
        assert_eq!(series_ops(&out), s.scheduled);
        let sent = target.arrivals().len() as u64;
        assert!(sent >= s.scheduled + 50, "the warmup sent only {} operations", sent - s.scheduled);
    }
}
