//! Measurement: what one worker saw, in histograms whose size does not grow with the run.
//!
//! Each worker owns a [`Recorder`] and records every finished operation into it without locks;
//! the progress ticker takes an [`Interval`] from each worker every second, and at the end the
//! workers' recorders are [merged](Recorder::merge) into one for the report.
//!
//! Latency is measured from when the operation *should* have started (its slot in the open-loop
//! schedule), not from when it was sent, so a stalled server cannot hide its stall by slowing the
//! client down (coordinated omission). In open loop the send-to-done service time is kept too,
//! in separate "uncorrected" histograms, to show how much of the latency was queueing. A recorder
//! notices open loop by itself — the first operation sent later than intended — so the driver
//! needs no mode switch; until then an op's uncorrected latency equals its latency, which lets the
//! uncorrected histogram start as a copy of the latency one, exactly.
//!
//! Everything here is constant in memory in the run length; only the per-second [`SeriesRow`]s
//! that the ticker keeps grow, by a few dozen bytes a second.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::op::{OpKind, Outcome};

/// Lowest latency told apart, in microseconds.
pub const LOWEST_US: u64 = 1;
/// Highest latency recorded, in microseconds (one hour); longer ones are recorded as this and
/// counted in [`Recorder::clamped`].
pub const HIGHEST_US: u64 = 3_600_000_000;
/// Significant decimal digits kept: values are exact to 0.1%.
pub const SIGFIG: u8 = 3;

/// An empty latency histogram: microseconds, [`LOWEST_US`] to [`HIGHEST_US`], [`SIGFIG`] digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("constant histogram bounds are valid")
}

/// Adds `src` into `dst`. Both come from [`new_histogram`], so the ranges match and it cannot fail.
fn add(dst: &mut Histogram<u64>, src: &Histogram<u64>) {
    dst.add(src).expect("histograms from new_histogram share one range");
}

/// Microseconds between two instants (0 if `later` is earlier), clamped to [`HIGHEST_US`].
/// The flag says whether it was clamped.
fn micros(earlier: Instant, later: Instant) -> (u64, bool) {
    let us = u64::try_from(later.saturating_duration_since(earlier).as_micros()).unwrap_or(u64::MAX);
    if us > HIGHEST_US { (HIGHEST_US, true) } else { (us, false) }
}

/// All of one op kind's measurements.
#[derive(Clone, Debug)]
struct KindStats {
    /// Latency of successes (from the intended start).
    ok: Histogram<u64>,
    /// Service time of successes (from the actual send). `None` means "equal to `ok`": every
    /// success so far was sent when intended. Created, as a copy of `ok`, at the first that was
    /// not.
    uncorrected: Option<Histogram<u64>>,
    /// Latency of failures, by gRPC status code name.
    errors: BTreeMap<String, Histogram<u64>>,
    /// Latency of successes since the last [`Recorder::take_interval`].
    interval: Histogram<u64>,
    /// Failures since the last [`Recorder::take_interval`].
    interval_errors: u64,
}

impl KindStats {
    fn new() -> KindStats {
        KindStats {
            ok: new_histogram(),
            uncorrected: None,
            errors: BTreeMap::new(),
            interval: new_histogram(),
            interval_errors: 0,
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().map(Histogram::len).sum()
    }

    fn is_empty(&self) -> bool {
        self.ok.is_empty() && self.error_count() == 0
    }
}

/// Operations sent to one endpoint and how many of them failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    /// Operations completed, any outcome.
    pub ops: u64,
    /// Of those, the ones that failed.
    pub errors: u64,
}

/// One worker's measurements.
///
/// An HdrHistogram per (op kind, outcome) of latency in microseconds ([`LOWEST_US`] to
/// [`HIGHEST_US`], [`SIGFIG`] significant digits; longer values are clamped and counted). Errors
/// get their own histograms by status and never enter success latency. In open loop (see
/// [`Recorder::is_open_loop`]) there is also an uncorrected (service time) histogram per kind.
/// For the progress ticker: an interval histogram per kind (successes only) and an interval error
/// count, taken and reset by [`Recorder::take_interval`]. And per-endpoint counts.
#[derive(Clone, Debug)]
pub struct Recorder {
    /// Indexed by `OpKind as usize`; `None` until the kind is first recorded.
    kinds: [Option<Box<KindStats>>; OpKind::ALL.len()],
    endpoints: Vec<EndpointCounts>,
    open_loop: bool,
    clamped: u64,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder. It turns open loop by itself at the first operation sent later than
    /// intended.
    pub fn new() -> Recorder {
        Recorder { kinds: Default::default(), endpoints: Vec::new(), open_loop: false, clamped: 0 }
    }

    /// An empty recorder that reports uncorrected latency from the start, even if every
    /// operation goes out exactly on schedule (then it equals the latency).
    pub fn new_open_loop() -> Recorder {
        Recorder { open_loop: true, ..Recorder::new() }
    }

    /// Whether uncorrected latency is reported: made by [`Recorder::new_open_loop`], an operation
    /// was recorded with `sent` after `intended`, or merged with a recorder of which either holds.
    pub fn is_open_loop(&self) -> bool {
        self.open_loop
    }

    fn stats_mut(&mut self, kind: OpKind) -> &mut KindStats {
        self.kinds[kind as usize].get_or_insert_with(|| Box::new(KindStats::new()))
    }

    fn stats(&self, kind: OpKind) -> Option<&KindStats> {
        self.kinds[kind as usize].as_deref()
    }

    /// Records one finished operation sent to endpoint number `endpoint`.
    ///
    /// `intended` is when the operation should have started (its open-loop schedule slot; the
    /// same as `sent` in closed loop), `sent` when it actually went out, `done` when its answer
    /// arrived. Latency is `done - intended`; the uncorrected latency (successes only, reported
    /// in open loop) is `done - sent`.
    pub fn record(
        &mut self,
        kind: OpKind,
        outcome: &Outcome,
        endpoint: usize,
        intended: Instant,
        sent: Instant,
        done: Instant,
    ) {
        let (latency, mut clamped) = micros(intended, done);
        let late = sent != intended;
        self.open_loop |= late;
        let stats = self.stats_mut(kind);
        match outcome {
            Outcome::Ok => {
                if late && stats.uncorrected.is_none() {
                    // Every earlier success had service time = latency.
                    stats.uncorrected = Some(stats.ok.clone());
                }
                stats.ok.record(latency).expect("value within range");
                stats.interval.record(latency).expect("value within range");
                if let Some(h) = &mut stats.uncorrected {
                    let (service, c) = micros(sent, done);
                    clamped |= c;
                    h.record(service).expect("value within range");
                }
            }
            Outcome::Error(code) => {
                stats.interval_errors += 1;
                match stats.errors.get_mut(code.as_str()) {
                    Some(h) => h.record(latency).expect("value within range"),
                    None => {
                        let mut h = new_histogram();
                        h.record(latency).expect("value within range");
                        stats.errors.insert(code.clone(), h);
                    }
                }
            }
        }
        if clamped {
            self.clamped += 1;
        }
        if self.endpoints.len() <= endpoint {
            self.endpoints.resize(endpoint + 1, EndpointCounts::default());
        }
        let counts = &mut self.endpoints[endpoint];
        counts.ops += 1;
        counts.errors += u64::from(matches!(outcome, Outcome::Error(_)));
    }

    /// Takes what was recorded since the last call (or since creation) for the progress ticker,
    /// and starts a new interval.
    pub fn take_interval(&mut self) -> Interval {
        let mut out = Interval::new();
        for (i, slot) in self.kinds.iter_mut().enumerate() {
            let Some(stats) = slot else { continue };
            let ok = stats.interval.len();
            let ops = ok + stats.interval_errors;
            if ops > 0 {
                out.per_kind.insert(OpKind::ALL[i], ops);
            }
            out.ops += ops;
            out.errors += stats.interval_errors;
            add(&mut out.hist, &stats.interval);
            stats.interval.reset();
            stats.interval_errors = 0;
        }
        out
    }

    /// Adds everything `other` recorded — totals, interval parts, endpoint counts — into `self`.
    /// The result is the same as if one recorder had seen both streams of operations.
    pub fn merge(&mut self, other: &Recorder) {
        self.open_loop |= other.open_loop;
        for (i, theirs) in other.kinds.iter().enumerate() {
            let Some(theirs) = theirs else { continue };
            let mine = self.stats_mut(OpKind::ALL[i]);
            // An absent uncorrected histogram stands for a copy of `ok`.
            match (&mut mine.uncorrected, &theirs.uncorrected) {
                (Some(m), t) => add(m, t.as_ref().unwrap_or(&theirs.ok)),
                (None, Some(t)) => {
                    let mut m = mine.ok.clone();
                    add(&mut m, t);
                    mine.uncorrected = Some(m);
                }
                (None, None) => {}
            }
            add(&mut mine.ok, &theirs.ok);
            for (code, h) in &theirs.errors {
                match mine.errors.get_mut(code) {
                    Some(m) => add(m, h),
                    None => {
                        mine.errors.insert(code.clone(), h.clone());
                    }
                }
            }
            add(&mut mine.interval, &theirs.interval);
            mine.interval_errors += theirs.interval_errors;
        }
        if self.endpoints.len() < other.endpoints.len() {
            self.endpoints.resize(other.endpoints.len(), EndpointCounts::default());
        }
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            mine.ops += theirs.ops;
            mine.errors += theirs.errors;
        }
        self.clamped += other.clamped;
    }

    /// Forgets everything recorded (for the end of warmup), keeping the memory.
    pub fn reset(&mut self) {
        for stats in self.kinds.iter_mut().flatten() {
            stats.ok.reset();
            stats.uncorrected = None;
            stats.errors.clear();
            stats.interval.reset();
            stats.interval_errors = 0;
        }
        self.endpoints.clear();
        self.clamped = 0;
        // Whether the run is open loop does not change at the end of warmup.
    }

    /// The latency histogram of `kind` ending in `outcome` (µs), if any such operation was
    /// recorded.
    pub fn histogram(&self, kind: OpKind, outcome: &Outcome) -> Option<&Histogram<u64>> {
        let stats = self.stats(kind)?;
        let h = match outcome {
            Outcome::Ok => &stats.ok,
            Outcome::Error(code) => stats.errors.get(code.as_str())?,
        };
        (!h.is_empty()).then_some(h)
    }

    /// The uncorrected (send-to-done) latency histogram of `kind`'s successes (µs): only in open
    /// loop (see [`Recorder::is_open_loop`]), and only if there were successes.
    pub fn uncorrected(&self, kind: OpKind) -> Option<&Histogram<u64>> {
        if !self.open_loop {
            return None;
        }
        let stats = self.stats(kind)?;
        Some(stats.uncorrected.as_ref().unwrap_or(&stats.ok)).filter(|h| !h.is_empty())
    }

    /// The kinds with any sample, success or failure, in [`OpKind::ALL`] order.
    pub fn kinds(&self) -> Vec<OpKind> {
        OpKind::ALL.into_iter().filter(|&k| self.stats(k).is_some_and(|s| !s.is_empty())).collect()
    }

    /// Successful operations of `kind`.
    pub fn successes(&self, kind: OpKind) -> u64 {
        self.stats(kind).map_or(0, |s| s.ok.len())
    }

    /// Failed operations of `kind`, by gRPC status code name.
    pub fn errors(&self, kind: OpKind) -> BTreeMap<String, u64> {
        let Some(stats) = self.stats(kind) else { return BTreeMap::new() };
        stats.errors.iter().filter(|(_, h)| !h.is_empty()).map(|(code, h)| (code.clone(), h.len())).collect()
    }

    /// Failed operations of `kind`, all statuses.
    pub fn error_count(&self, kind: OpKind) -> u64 {
        self.stats(kind).map_or(0, KindStats::error_count)
    }

    /// Operations completed, any kind and outcome.
    pub fn total_ops(&self) -> u64 {
        OpKind::ALL.into_iter().map(|k| self.successes(k) + self.error_count(k)).sum()
    }

    /// Failed operations, any kind.
    pub fn total_errors(&self) -> u64 {
        OpKind::ALL.into_iter().map(|k| self.error_count(k)).sum()
    }

    /// Success latency of all kinds together (µs), if there were successes.
    pub fn all_successes(&self) -> Option<Histogram<u64>> {
        let mut all = new_histogram();
        for stats in self.kinds.iter().flatten() {
            add(&mut all, &stats.ok);
        }
        (!all.is_empty()).then_some(all)
    }

    /// Per-endpoint counts, indexed by the `endpoint` passed to [`Recorder::record`] (endpoints
    /// past the last one used are absent).
    pub fn endpoints(&self) -> &[EndpointCounts] {
        &self.endpoints
    }

    /// Operations whose latency (or uncorrected latency) exceeded [`HIGHEST_US`] and was recorded
    /// as that.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }
}

/// What the workers recorded in one ticker period (about a second).
#[derive(Clone, Debug)]
pub struct Interval {
    /// Operations completed, any outcome.
    pub ops: u64,
    /// Of those, the ones that failed.
    pub errors: u64,
    /// Success latency of all kinds (µs).
    pub hist: Histogram<u64>,
    /// Operations completed per kind, any outcome.
    pub per_kind: BTreeMap<OpKind, u64>,
}

impl Default for Interval {
    fn default() -> Interval {
        Interval::new()
    }
}

impl Interval {
    /// An empty interval, to merge workers' intervals into.
    pub fn new() -> Interval {
        Interval { ops: 0, errors: 0, hist: new_histogram(), per_kind: BTreeMap::new() }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Interval) {
        self.ops += other.ops;
        self.errors += other.errors;
        add(&mut self.hist, &other.hist);
        for (&kind, &n) in &other.per_kind {
            *self.per_kind.entry(kind).or_insert(0) += n;
        }
    }
}

/// One row of the per-second series, built by the ticker from the workers' merged [`Interval`]s.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SeriesRow {
    /// End of the interval, in seconds since the measurement started.
    pub t: f64,
    /// Operations completed in the interval, any outcome.
    pub ops: u64,
    /// Of those, the ones that failed.
    pub errors: u64,
    /// Median success latency in the interval, ms (0 without successes).
    pub p50_ms: f64,
    /// 99th percentile success latency in the interval, ms (0 without successes).
    pub p99_ms: f64,
    /// Highest success latency in the interval, ms (0 without successes).
    pub max_ms: f64,
}

impl SeriesRow {
    /// The row for `interval`, which ended `t` seconds after the measurement started.
    pub fn from_interval(t: f64, interval: &Interval) -> SeriesRow {
        let h = &interval.hist;
        let ms = |us: u64| if h.is_empty() { 0.0 } else { us as f64 / 1000.0 };
        SeriesRow {
            t,
            ops: interval.ops,
            errors: interval.errors,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// Fallback for [`cpu_times`] on failure.
const NO_CPU: (Duration, Duration) = (Duration::ZERO, Duration::ZERO);

/// This process's CPU time so far, (user, system), from `getrusage(RUSAGE_SELF)`; zeros if the
/// call fails.
#[allow(unsafe_code, reason = "getrusage has no safe wrapper in std")]
pub fn cpu_times() -> (Duration, Duration) {
    // SAFETY: `rusage` is a plain C struct of integers, for which all-zero bytes are a valid
    // value. `getrusage` only writes through the pointer, which points to that live, aligned
    // local for the whole call, and RUSAGE_SELF is a valid `who`.
    let (rc, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let rc = libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        (rc, usage)
    };
    if rc != 0 {
        return NO_CPU;
    }
    let to_duration = |tv: libc::timeval| {
        Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
    };
    (to_duration(usage.ru_utime), to_duration(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, us: u64) -> Instant {
        base + Duration::from_micros(us)
    }

    /// Records successes of `kind`, one per latency in `lats` (µs), sent to `endpoint`.
    fn feed(rec: &mut Recorder, base: Instant, kind: OpKind, lats: &[u64], endpoint: usize) {
        for &us in lats {
            rec.record(kind, &Outcome::Ok, endpoint, base, base, at(base, us));
        }
    }

    #[test]
    fn merge_equals_one_recorder_fed_both() {
        let base = Instant::now();
        let a_lat: Vec<u64> = (1..=1000).map(|i| i * 7).collect();
        let b_lat: Vec<u64> = (1..=500).map(|i| i * 131).collect();
        let (mut a, mut b, mut both) = (Recorder::new(), Recorder::new(), Recorder::new());
        feed(&mut a, base, OpKind::Get, &a_lat, 0);
        feed(&mut b, base, OpKind::Get, &b_lat, 1);
        feed(&mut b, base, OpKind::Put, &b_lat[..10], 1);
        let err = Outcome::Error("Unavailable".into());
        a.record(OpKind::Put, &err, 0, base, base, at(base, 50_000));
        feed(&mut both, base, OpKind::Get, &a_lat, 0);
        feed(&mut both, base, OpKind::Get, &b_lat, 1);
        feed(&mut both, base, OpKind::Put, &b_lat[..10], 1);
        both.record(OpKind::Put, &err, 0, base, base, at(base, 50_000));

        a.merge(&b);
        assert_eq!(a.kinds(), vec![OpKind::Put, OpKind::Get]);
        for kind in [OpKind::Get, OpKind::Put] {
            let (m, w) = (a.histogram(kind, &Outcome::Ok).unwrap(), both.histogram(kind, &Outcome::Ok).unwrap());
            assert_eq!(m.len(), w.len());
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(m.value_at_quantile(q), w.value_at_quantile(q), "{kind} q={q}");
            }
            assert_eq!(m.max(), w.max());
        }
        assert_eq!(a.histogram(OpKind::Get, &Outcome::Ok).unwrap().len(), 1500);
        assert_eq!(a.errors(OpKind::Put), both.errors(OpKind::Put));
        assert_eq!(a.endpoints(), both.endpoints());
        assert_eq!(a.endpoints(), &[EndpointCounts { ops: 1001, errors: 1 }, EndpointCounts { ops: 510, errors: 0 }]);
        assert_eq!(a.total_ops(), 1511);
        assert_eq!(a.total_errors(), 1);
    }

    #[test]
    fn errors_are_kept_apart_from_success_latency() {
        let base = Instant::now();
        let mut rec = Recorder::new();
        feed(&mut rec, base, OpKind::Get, &[100, 200, 300], 0);
        for _ in 0..50 {
            rec.record(OpKind::Get, &Outcome::Error("DeadlineExceeded".into()), 0, base, base, at(base, 5_000_000));
        }
        rec.record(OpKind::Get, &Outcome::Error("Unavailable".into()), 0, base, base, at(base, 10));
        let ok = rec.histogram(OpKind::Get, &Outcome::Ok).unwrap();
        assert_eq!(ok.len(), 3);
        assert!(ok.max() < 1000, "a timeout leaked into success latency: {}", ok.max());
        let slow = rec.histogram(OpKind::Get, &Outcome::Error("DeadlineExceeded".into())).unwrap();
        assert_eq!(slow.len(), 50);
        assert!(slow.min() >= 4_990_000);
        assert_eq!(
            rec.errors(OpKind::Get),
            BTreeMap::from([("DeadlineExceeded".into(), 50), ("Unavailable".into(), 1)])
        );
        assert_eq!(rec.error_count(OpKind::Get), 51);
        assert_eq!(rec.successes(OpKind::Get), 3);
        assert!(rec.histogram(OpKind::Get, &Outcome::Error("Internal".into())).is_none());
        assert!(rec.histogram(OpKind::Put, &Outcome::Ok).is_none());
        assert_eq!(rec.all_successes().unwrap().len(), 3);
    }

    #[test]
    fn interval_take_resets_the_interval_only() {
        let base = Instant::now();
        let mut rec = Recorder::new();
        feed(&mut rec, base, OpKind::Get, &[1000; 10], 0);
        feed(&mut rec, base, OpKind::Put, &[3000; 5], 0);
        rec.record(OpKind::Put, &Outcome::Error("Unavailable".into()), 0, base, base, at(base, 9_000_000));

        let first = rec.take_interval();
        assert_eq!((first.ops, first.errors), (16, 1));
        assert_eq!(first.hist.len(), 15, "errors are not in the interval latency");
        assert!(first.hist.max() < 4000);
        assert_eq!(first.per_kind, BTreeMap::from([(OpKind::Put, 6), (OpKind::Get, 10)]));

        let empty = rec.take_interval();
        assert_eq!((empty.ops, empty.errors, empty.hist.len()), (0, 0, 0));
        assert!(empty.per_kind.is_empty());

        feed(&mut rec, base, OpKind::Get, &[2000; 4], 0);
        let third = rec.take_interval();
        assert_eq!((third.ops, third.errors), (4, 0));
        // The totals were not reset.
        assert_eq!(rec.histogram(OpKind::Get, &Outcome::Ok).unwrap().len(), 14);
        assert_eq!(rec.total_ops(), 20);

        let mut merged = Interval::new();
        merged.merge(&first);
        merged.merge(&third);
        assert_eq!((merged.ops, merged.errors, merged.hist.len()), (20, 1, 19));
        assert_eq!(merged.per_kind[&OpKind::Get], 14);

        let row = SeriesRow::from_interval(2.0, &merged);
        assert_eq!((row.t, row.ops, row.errors), (2.0, 20, 1));
        assert!((row.p50_ms - 1.0).abs() < 0.01, "{row:?}");
        assert!((row.max_ms - 3.0).abs() < 0.01, "{row:?}");
        let empty_row = SeriesRow::from_interval(3.0, &Interval::new());
        assert_eq!((empty_row.p50_ms, empty_row.p99_ms, empty_row.max_ms), (0.0, 0.0, 0.0));
    }

    #[test]
    fn open_loop_keeps_uncorrected_latency() {
        let base = Instant::now();
        let mut open = Recorder::new_open_loop();
        // Scheduled at 0, sent 900 µs late, answered 100 µs after sending.
        open.record(OpKind::Get, &Outcome::Ok, 0, base, at(base, 900), at(base, 1000));
        let corrected = open.histogram(OpKind::Get, &Outcome::Ok).unwrap();
        let uncorrected = open.uncorrected(OpKind::Get).unwrap();
        assert!(corrected.equivalent(corrected.max(), 1000));
        assert!(uncorrected.equivalent(uncorrected.max(), 100));

        let mut closed = Recorder::new();
        closed.record(OpKind::Get, &Outcome::Ok, 0, base, base, at(base, 100));
        assert!(!closed.is_open_loop());
        assert!(closed.uncorrected(OpKind::Get).is_none());
        closed.merge(&open);
        assert!(closed.is_open_loop());
        assert_eq!(closed.uncorrected(OpKind::Get).unwrap().len(), 2);
    }

    #[test]
    fn open_loop_is_noticed_without_being_told() {
        let base = Instant::now();
        // On-time ops first (uncorrected = latency), then one sent 4 ms late.
        let mut rec = Recorder::new();
        feed(&mut rec, base, OpKind::Put, &[200, 300], 0);
        assert!(!rec.is_open_loop() && rec.uncorrected(OpKind::Put).is_none());
        rec.record(OpKind::Put, &Outcome::Ok, 0, base, at(base, 4000), at(base, 4500));
        feed(&mut rec, base, OpKind::Get, &[700], 0);
        assert!(rec.is_open_loop());
        let unc = rec.uncorrected(OpKind::Put).unwrap();
        assert_eq!(unc.len(), 3);
        assert!(unc.equivalent(unc.max(), 500), "{}", unc.max());
        let lat = rec.histogram(OpKind::Put, &Outcome::Ok).unwrap();
        assert!(lat.equivalent(lat.max(), 4500));
        // A kind never late: its uncorrected latency is its latency.
        assert_eq!(rec.uncorrected(OpKind::Get).unwrap().len(), 1);

        // Merging in both directions gives the same as one recorder fed everything.
        let mut on_time = Recorder::new();
        feed(&mut on_time, base, OpKind::Put, &[100, 900], 1);
        let mut a = on_time.clone();
        a.merge(&rec);
        let mut b = rec.clone();
        b.merge(&on_time);
        for m in [&a, &b] {
            let u = m.uncorrected(OpKind::Put).unwrap();
            assert_eq!(u.len(), 5);
            assert!(u.equivalent(u.max(), 900) && u.equivalent(u.min(), 100));
        }
    }

    #[test]
    fn too_long_is_clamped_and_counted() {
        let base = Instant::now();
        let mut rec = Recorder::new();
        rec.record(OpKind::Get, &Outcome::Ok, 0, base, base, base + Duration::from_secs(2 * 3600));
        rec.record(OpKind::Get, &Outcome::Ok, 0, base, base, at(base, 5));
        assert_eq!(rec.clamped(), 1);
        let h = rec.histogram(OpKind::Get, &Outcome::Ok).unwrap();
        assert!(h.equivalent(h.max(), HIGHEST_US));
        rec.reset();
        assert_eq!((rec.clamped(), rec.total_ops()), (0, 0));
        assert!(rec.kinds().is_empty());
    }

    #[test]
    fn cpu_times_move_forward() {
        let (u0, s0) = cpu_times();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let (u1, s1) = cpu_times();
        assert!(u1 + s1 > u0 + s0, "{u0:?}+{s0:?} -> {u1:?}+{s1:?}");
    }
}
