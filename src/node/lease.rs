//! Lease expiry, as etcd's lessor keeps it: the leader alone holds a deadline per lease (granted
//! TTL from the last keep-alive, or from when it became leader) and revokes an expired lease
//! through Raft, which deletes the lease's keys on every member in one revision. Which leases
//! exist, their TTLs and keys are replicated state in the store (`crate::mvcc`); deadlines are
//! not, so a new leader starts every lease's clock afresh (now + TTL), as etcd does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::mvcc::Store;

/// How often the leader looks for expired leases.
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How long a revoke in flight is left alone before it is proposed again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);

/// What the leader answers a keep-alive or time-to-live (possibly forwarded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseAnswer {
    /// Keep-alive: the TTL the lease was renewed for (0: no such lease, or it expired).
    KeepAlive {
        /// Seconds.
        ttl: i64,
    },
    /// Time-to-live: remaining and granted TTL (-1 remaining: no such lease), keys if asked.
    TimeToLive {
        /// Remaining seconds, or -1.
        ttl: i64,
        /// Granted seconds.
        granted: i64,
        /// Attached keys.
        keys: Vec<bytes::Bytes>,
    },
}

#[derive(Debug, Default)]
struct Clock {
    /// The term this member leads in, when the deadlines were started.
    term: Option<u64>,
    deadlines: HashMap<i64, Instant>,
    revoking: HashMap<i64, Instant>,
}

/// The leader's lease clock, and the settings every member uses for grants.
#[derive(Debug)]
pub struct Leases {
    min_ttl: i64,
    member_id: u64,
    counter: AtomicU64,
    clock: Mutex<Clock>,
}

/// etcd's minimum TTL: 1.5 election timeouts (counted in heartbeats), rounded up to seconds.
pub fn min_ttl(heartbeat: Duration, election_timeout: Duration) -> i64 {
    let hb = heartbeat.as_millis().max(1);
    let ticks = (election_timeout.as_millis() / hb).max(1);
    let min_ms = (3 * ticks / 2) * hb;
    (min_ms as i64 + 999) / 1000
}

impl Leases {
    /// The clock of member `member_id` with these Raft timings.
    pub fn new(member_id: u64, heartbeat: Duration, election_timeout: Duration) -> Leases {
        Leases {
            min_ttl: min_ttl(heartbeat, election_timeout).max(1),
            member_id,
            counter: AtomicU64::new(0),
            clock: Mutex::new(Clock::default()),
        }
    }

    /// The smallest TTL a grant gets (smaller ones are raised to it, as etcd does).
    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    /// A fresh lease id for a grant that named none: this member's id in the top bits, then the
    /// time and a counter (ids from different members never collide), positive and nonzero.
    pub fn new_id(&self) -> i64 {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = ((self.member_id & 0x7fff) << 48) | ((ms & 0xff_ffff_ffff) << 8).wrapping_add(n & 0xffff_ffff_ffff);
        let id = (id & (u64::MAX >> 1)) as i64;
        if id == 0 { 1 } else { id }
    }

    /// Bring the clock to leadership `term` (`None`: not the leader). A new term restarts every
    /// deadline.
    fn lead(&self, term: Option<u64>) -> parking_lot::MutexGuard<'_, Clock> {
        let mut c = self.clock.lock();
        if c.term != term {
            c.term = term;
            c.deadlines.clear();
            c.revoking.clear();
        }
        c
    }

    /// Leader (in `term`): lease `id` was just granted with `ttl`; its clock starts now.
    pub fn granted(&self, id: i64, ttl: i64, term: u64, now: Instant) {
        self.lead(Some(term)).deadlines.insert(id, deadline_at(now, ttl));
    }

    /// Leader: renew lease `id`; its granted TTL, or 0 when it does not exist or has expired.
    pub fn keep_alive(&self, store: &Store, term: u64, id: i64, now: Instant) -> i64 {
        let Some(&ttl) = store.leases().get(&id) else { return 0 };
        let mut c = self.lead(Some(term));
        let deadline = *c.deadlines.entry(id).or_insert(deadline_at(now, ttl));
        if deadline <= now {
            // Expired: its revoke is on the way; etcd answers such a keep-alive as not found.
            return 0;
        }
        c.deadlines.insert(id, deadline_at(now, ttl));
        ttl
    }

    /// Leader: lease `id`'s remaining and granted TTL and keys.
    pub fn time_to_live(&self, store: &Store, term: u64, id: i64, with_keys: bool, now: Instant) -> LeaseAnswer {
        let Some(lease) = store.lease(id) else { return LeaseAnswer::TimeToLive { ttl: -1, granted: 0, keys: vec![] } };
        let mut c = self.lead(Some(term));
        let deadline = *c.deadlines.entry(id).or_insert(deadline_at(now, lease.ttl));
        let remaining = deadline.saturating_duration_since(now).as_secs() as i64;
        LeaseAnswer::TimeToLive {
            ttl: remaining,
            granted: lease.ttl,
            keys: if with_keys { lease.keys } else { Vec::new() },
        }
    }

    /// Leader (`term`) or not (`None`): the leases past their deadline that need a revoke now.
    /// Each is handed out once per [`REVOKE_RETRY`].
    pub fn expired(&self, store: &Store, term: Option<u64>, now: Instant) -> Vec<i64> {
        let mut c = self.lead(term);
        if term.is_none() {
            return Vec::new();
        }
        let leases = store.leases();
        let c = &mut *c;
        c.deadlines.retain(|id, _| leases.contains_key(id));
        c.revoking.retain(|id, _| leases.contains_key(id));
        let mut out = Vec::new();
        for (&id, &ttl) in leases.iter() {
            let deadline = *c.deadlines.entry(id).or_insert(deadline_at(now, ttl));
            if deadline > now {
                continue;
            }
            if c.revoking.get(&id).is_some_and(|at| now.duration_since(*at) < REVOKE_RETRY) {
                continue;
            }
            c.revoking.insert(id, now);
            out.push(id);
        }
        out
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

/// `now` + `ttl` seconds; a TTL too large for the clock (etcd allows 9e9 s) never expires.
fn deadline_at(now: Instant, ttl: i64) -> Instant {
    now.checked_add(secs(ttl)).unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{LeaseGrantRequest, LeaseRevokeRequest, WriteRequest};

    fn grant(s: &Store, id: i64, ttl: i64) {
        s.apply(&WriteRequest::LeaseGrant(LeaseGrantRequest { id, ttl })).unwrap();
    }

    #[test]
    fn min_ttl_follows_etcd() {
        // etcd's defaults (100 ms heartbeat, 1 s election timeout): 1.5 s, rounded up to 2 s.
        assert_eq!(min_ttl(Duration::from_millis(100), Duration::from_millis(1000)), 2);
        assert_eq!(min_ttl(Duration::from_millis(50), Duration::from_millis(500)), 1);
        assert_eq!(min_ttl(Duration::from_millis(100), Duration::from_millis(5000)), 8);
    }

    #[test]
    fn ids_are_positive_and_distinct() {
        let l = Leases::new(0xabcd_ef01_2345, Duration::from_millis(100), Duration::from_secs(1));
        let ids: std::collections::HashSet<i64> = (0..1000).map(|_| l.new_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|&i| i > 0));
    }

    #[test]
    fn deadlines_expire_renew_and_restart_with_a_new_term() {
        let s = Store::new();
        let l = Leases::new(1, Duration::from_millis(100), Duration::from_secs(1));
        grant(&s, 7, 10);
        let t0 = Instant::now();
        assert!(l.expired(&s, Some(1), t0).is_empty(), "deadline starts at now + 10 s");
        assert_eq!(l.keep_alive(&s, 1, 7, t0 + secs(8)), 10, "renewed to t0 + 18 s");
        assert!(l.expired(&s, Some(1), t0 + secs(12)).is_empty());
        assert_eq!(l.expired(&s, Some(1), t0 + secs(19)), vec![7]);
        assert!(l.expired(&s, Some(1), t0 + secs(20)).is_empty(), "one revoke in flight at a time");
        assert_eq!(l.keep_alive(&s, 1, 7, t0 + secs(20)), 0, "an expired lease is not renewed");
        assert_eq!(l.keep_alive(&s, 1, 99, t0), 0, "unknown lease");
        // A new term: every clock restarts at now + TTL.
        assert!(l.expired(&s, Some(2), t0 + secs(20)).is_empty());
        match l.time_to_live(&s, 2, 7, false, t0 + secs(25)) {
            LeaseAnswer::TimeToLive { ttl, granted, .. } => assert_eq!((ttl, granted), (5, 10)),
            other => panic!("{other:?}"),
        }
        s.apply(&WriteRequest::LeaseRevoke(LeaseRevokeRequest { id: 7 })).unwrap();
        assert_eq!(l.time_to_live(&s, 2, 7, false, t0), LeaseAnswer::TimeToLive { ttl: -1, granted: 0, keys: vec![] });
        assert!(l.expired(&s, None, t0 + secs(100)).is_empty(), "followers revoke nothing");
        grant(&s, 8, crate::mvcc::MAX_LEASE_TTL);
        assert_eq!(l.keep_alive(&s, 3, 8, t0), crate::mvcc::MAX_LEASE_TTL, "the largest TTL fits the clock");
    }
}
