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
        // Discard what the warmup recorded in intervals.
        tokio::time::sleep_until(measure_start.into()).await;
        let _ = shards.take_interval();
        loop {
            tick.tick().await;
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
            if stop.load(Ordering::Acquire) {
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
    let end = Instant::now();
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

/// Whether the measured phase is over (by time, or by count `issued` of measured operations).
fn finished(
    cfg: &RunConfig,
    now: Instant,
    measure_start: Instant,
    measure_end: Option<Instant>,
    issued: &AtomicU64,
) -> bool {
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
                let r = target.execute(conn, op, cfg.serializable).await;
                let done = Instant::now();
                if measured {
                    shard.lock().record(kind, &r.outcome, endpoint, sent, sent, done);
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
                if finished(&cfg, intended, measure_start, measure_end, &issued) {
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
                        match handle.block_on(tokio::time::timeout(wait, permits.clone().acquire_owned())) {
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
                let t = handle.spawn(async move {
                    let r = target.execute(conn, op, serializable).await;
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
