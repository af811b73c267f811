//! Simulated power loss through the I/O seam (SIGKILL keeps the page cache, so it cannot test
//! this): at a chosen moment everything not fdatasync'd is dropped, or torn at a random byte.
//! After reopen every acknowledged entry (and the acknowledged vote) is there, the log is a
//! contiguous prefix of what was written, and nothing corrupt is returned.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use conflux_engine::Config;
use conflux_engine::io::fault::{FaultIo, PowerLoss};
use openraft::storage::RaftLogStorage;
use openraft::{EntryPayload, RaftLogReader};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn versioned(term: u64, index: u64) -> Entry {
    entry(term, index, payload(index ^ (term << 40), len_for(index)))
}

/// Returns (unsynced bytes at the cut, entries lost that were written but not acknowledged).
fn run(seed: u64, mode: PowerLoss) -> (usize, u64) {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (io, faults) = FaultIo::new(base_io());
    let config = Config { io: Arc::new(io), ..small_config() };
    let mut written: BTreeMap<u64, u64> = BTreeMap::new(); // index -> term, the log as written
    let acked_end = Arc::new(AtomicU64::new(0));
    let mut purged_end = 0u64;
    let mut term = 1u64;
    let mut next = 0u64;
    let mut vote_acked = None;
    let unsynced;
    {
        let mut s = open(dir.path(), config);
        let steps = 10 + rng.below(30);
        for step in 0..steps {
            match rng.below(10) {
                0 => {
                    let v = openraft::impls::Vote::new(step + 1, 1);
                    rt.block_on(s.save_vote(&v)).unwrap();
                    vote_acked = Some(v);
                }
                1 if next > purged_end + 5 => {
                    // Truncate a few entries (durable when it returns), continue with a new term.
                    let keep_end = next - 1 - rng.below(4);
                    let last = (keep_end > 0).then(|| log_id(written[&(keep_end - 1)], keep_end - 1));
                    rt.block_on(s.truncate_after(last)).unwrap();
                    written.retain(|&i, _| i < keep_end);
                    acked_end.fetch_min(keep_end, Ordering::SeqCst);
                    next = keep_end;
                    term += 1;
                }
                2 if next > purged_end + 30 => {
                    let upto = purged_end + rng.below(20);
                    rt.block_on(s.purge(log_id(written[&upto], upto))).unwrap();
                    purged_end = upto + 1;
                }
                _ => {
                    let n = 1 + rng.below(12);
                    let batch: Vec<Entry> = (next..next + n).map(|i| versioned(term, i)).collect();
                    for i in next..next + n {
                        written.insert(i, term);
                    }
                    next += n;
                    let end = next;
                    let a = acked_end.clone();
                    s.append_with(
                        batch,
                        Box::new(move |r| {
                            if r.is_ok() {
                                a.fetch_max(end, Ordering::SeqCst);
                            }
                        }),
                    )
                    .unwrap();
                    if rng.below(3) == 0 {
                        // Wait for this append's callback now and then, so some are acknowledged.
                        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                        while acked_end.load(Ordering::SeqCst) < end && std::time::Instant::now() < deadline {
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                    }
                }
            }
        }
        // Cut the power with appends in flight.
        if rng.below(2) == 0 {
            std::thread::sleep(std::time::Duration::from_micros(rng.below(1500)));
        }
        unsynced = faults.unsynced_bytes();
        faults.power_loss(mode).unwrap();
    }
    let acked = acked_end.load(Ordering::SeqCst);

    let mut s = open(dir.path(), small_config());
    let st = s.log_state();
    let end = st.last_log_id.map(|l| l.index + 1).unwrap_or(0);
    assert!(end >= acked, "seed {seed} {mode:?}: log ends at {end}, but entries up to {acked} were acknowledged");
    let start = purged_end.min(end);
    let got = s.read(0..end).unwrap_or_else(|e| panic!("seed {seed} {mode:?}: read after power loss: {e}"));
    let first = got.first().map(|e| e.log_id.index).unwrap_or(end);
    assert_eq!(first, start, "seed {seed} {mode:?}: the log starts right after the (durable) purge point");
    for (k, e) in got.iter().enumerate() {
        let i = first + k as u64;
        assert_eq!(e.log_id.index, i, "seed {seed} {mode:?}: gap at {i}");
        let t = written.get(&i).copied().unwrap_or_else(|| panic!("seed {seed} {mode:?}: entry {i} was never written"));
        assert_eq!(e.log_id.leader_id.term, t, "seed {seed} {mode:?}: entry {i} has a stale term");
        let EntryPayload::Normal(Blob(b)) = &e.payload else { panic!("payload") };
        assert_eq!(b, &payload(i ^ (t << 40), len_for(i)), "seed {seed} {mode:?}: entry {i} content");
    }
    if let Some(v) = vote_acked {
        let got = rt.block_on(s.read_vote()).unwrap();
        assert_eq!(got, Some(v), "seed {seed}: acknowledged vote lost");
    }
    // The store is writable after recovery.
    rt.block_on(append_sync(&mut s, vec![versioned(term + 1, end)])).unwrap();
    (unsynced, next - end)
}

/// The test must actually cut power with data in flight, or it proves nothing.
fn check_meaningful(results: &[(usize, u64)]) {
    let cut_in_flight = results.iter().filter(|r| r.0 > 0).count();
    let lost = results.iter().filter(|r| r.1 > 0).count();
    assert!(cut_in_flight * 4 >= results.len(), "too few runs cut power with unsynced data: {results:?}");
    assert!(lost > 0, "no run lost an unacknowledged entry: the simulation is not biting: {results:?}");
}

fn seeds() -> u64 {
    if std::env::var("CONFLUX_FULL_TESTS").is_ok() { 500 } else { 40 }
}

#[test]
fn power_loss_drops_unsynced_writes() {
    let r: Vec<_> = (0..seeds()).map(|seed| run(seed, PowerLoss::DropUnsynced)).collect();
    check_meaningful(&r);
}

#[test]
fn power_loss_tears_unsynced_writes() {
    let r: Vec<_> = (0..seeds()).map(|seed| run(seed, PowerLoss::Tear { seed: seed * 7 + 3 })).collect();
    check_meaningful(&r);
}
