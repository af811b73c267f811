//! Auto-compaction, as etcd's `--auto-compaction-mode` and `--auto-compaction-retention`.
//!
//! - `revision`: every 5 minutes, compact to (current revision − retention).
//! - `periodic`: keep `retention` of history. The revision is sampled every tenth of
//!   min(retention, 1 hour), and once per min(retention, 1 hour) the store is compacted to the
//!   newest sample that is at least `retention` old — etcd's schedule.
//!
//! The policy here is pure ([`Compactor::tick`]); [`spawn`] runs it on a timer and proposes the
//! compaction through whatever the caller passes (the node proposes through Raft on the leader).

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often the revision mode checks (etcd's fixed 5 minutes).
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// The configured mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much time of history.
    Periodic(Duration),
    /// Keep this many revisions of history.
    Revision(u64),
}

impl AutoCompaction {
    /// Parse etcd's flags: `mode` is `periodic` or `revision`; `retention` is a duration
    /// (`72h`, `30m`, `90s`) or a bare number (hours for periodic, revisions for revision).
    /// `0` (or empty) disables auto-compaction.
    ///
    /// # Errors
    /// A message naming the flag and the value.
    pub fn parse(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, String> {
        let r = retention.trim();
        if r.is_empty() || r == "0" {
            return Ok(None);
        }
        match mode {
            "periodic" => {
                let d = match r.parse::<u64>() {
                    Ok(hours) => Duration::from_secs(hours * 3600),
                    Err(_) => parse_duration(r)
                        .ok_or_else(|| format!("--auto-compaction-retention={retention:?} is not a duration (like 72h, 30m or 90s) or a number of hours"))?,
                };
                if d.is_zero() { Ok(None) } else { Ok(Some(AutoCompaction::Periodic(d))) }
            }
            "revision" => r.parse::<u64>().map(|n| Some(AutoCompaction::Revision(n))).map_err(|_| {
                format!("--auto-compaction-retention={retention:?} must be a number of revisions in revision mode")
            }),
            other => Err(format!("--auto-compaction-mode={other:?} is not one of: periodic, revision")),
        }
    }

    /// How often the policy checks.
    pub fn interval(&self) -> Duration {
        match self {
            AutoCompaction::Revision(_) => REVISION_CHECK_INTERVAL,
            AutoCompaction::Periodic(d) => ((*d).min(Duration::from_secs(3600)) / 10).max(Duration::from_millis(10)),
        }
    }
}

/// Parse `1h30m`, `72h`, `10m`, `90s`, `500ms` (Go's duration syntax, as etcd's flags take).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next()?);
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let secs = match unit.as_str() {
            "h" => n * 3600.0,
            "m" => n * 60.0,
            "s" => n,
            "ms" => n / 1000.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
        any = true;
    }
    (num.is_empty() && any).then_some(total)
}

/// The policy's state.
#[derive(Debug)]
pub struct Compactor {
    mode: AutoCompaction,
    samples: VecDeque<(Instant, u64)>,
    ticks: u64,
}

impl Compactor {
    /// A compactor for `mode`.
    pub fn new(mode: AutoCompaction) -> Compactor {
        Compactor { mode, samples: VecDeque::new(), ticks: 0 }
    }

    /// The mode.
    pub fn mode(&self) -> AutoCompaction {
        self.mode
    }

    /// One check at time `now` with the store at `revision` and compacted to `compacted`:
    /// the revision to compact to, if any.
    pub fn tick(&mut self, now: Instant, revision: u64, compacted: u64) -> Option<u64> {
        let target = match self.mode {
            AutoCompaction::Revision(keep) => revision.saturating_sub(keep),
            AutoCompaction::Periodic(keep) => {
                self.samples.push_back((now, revision));
                self.ticks += 1;
                // Sample every tick; compact every tenth (once per min(retention, 1 h)).
                if !self.ticks.is_multiple_of(10) {
                    return None;
                }
                // The newest sample at least `keep` old is the target; older ones are no longer
                // needed.
                let mut target = 0;
                while let Some(&(t, r)) = self.samples.front() {
                    if now.duration_since(t) >= keep {
                        target = r;
                        self.samples.pop_front();
                    } else {
                        break;
                    }
                }
                if target > 0 {
                    // Keep the boundary sample for the next round.
                    self.samples.push_front((now - keep, target));
                }
                target
            }
        };
        (target > compacted).then_some(target)
    }
}

/// Run `mode` on a timer: every interval, read `(revision, compacted)` with `state` and call
/// `propose(target)` when there is something to compact. Stops when `propose` returns `false`
/// for "stop" (the node stops it when it is no longer leader or shuts down).
pub fn spawn<S, P, F>(mode: AutoCompaction, state: S, mut propose: P) -> tokio::task::JoinHandle<()>
where
    S: Fn() -> (u64, u64) + Send + 'static,
    P: FnMut(u64) -> F + Send + 'static,
    F: Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        let mut c = Compactor::new(mode);
        let mut timer = tokio::time::interval(mode.interval());
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let (rev, compacted) = state();
            if let Some(target) = c.tick(Instant::now(), rev, compacted) {
                tracing::info!(revision = target, "auto-compaction");
                if !propose(target).await {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_flags_like_etcd() {
        assert_eq!(
            AutoCompaction::parse("periodic", "72h"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(72 * 3600))))
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "1"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(3600))))
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "1h30m"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(5400))))
        );
        assert_eq!(AutoCompaction::parse("revision", "1000"), Ok(Some(AutoCompaction::Revision(1000))));
        assert_eq!(AutoCompaction::parse("periodic", "0"), Ok(None));
        assert!(AutoCompaction::parse("revision", "1h").unwrap_err().contains("--auto-compaction-retention"));
        assert!(AutoCompaction::parse("sometimes", "1h").unwrap_err().contains("--auto-compaction-mode=\"sometimes\""));
        assert!(AutoCompaction::parse("periodic", "soon").is_err());
        assert_eq!(AutoCompaction::Periodic(Duration::from_secs(600)).interval(), Duration::from_secs(60));
        assert_eq!(AutoCompaction::Periodic(Duration::from_secs(72 * 3600)).interval(), Duration::from_secs(360));
    }

    #[test]
    fn revision_mode_keeps_the_last_n() {
        let mut c = Compactor::new(AutoCompaction::Revision(100));
        let t = Instant::now();
        assert_eq!(c.tick(t, 50, 0), None);
        assert_eq!(c.tick(t, 350, 0), Some(250));
        assert_eq!(c.tick(t, 350, 250), None);
    }

    #[test]
    fn periodic_mode_keeps_the_retention_window() {
        let keep = Duration::from_secs(600);
        let mut c = Compactor::new(AutoCompaction::Periodic(keep));
        let t0 = Instant::now();
        let step = keep / 10;
        let mut compacted = 0;
        let mut results = Vec::new();
        for i in 0..41u32 {
            let now = t0 + step * i;
            let rev = 1 + 100 * i as u64; // 100 revisions per step
            if let Some(target) = c.tick(now, rev, compacted) {
                compacted = target;
                results.push((i, target));
            }
        }
        // Samples every tick, a compaction every tenth tick, to the revision of one retention
        // (10 ticks) ago.
        assert_eq!(results, vec![(19, 901), (29, 1901), (39, 2901)]);
    }
}
