//! Disk faults on one member, injected through the engine's I/O seam with the `failpoints`
//! feature (`src/failpoints.rs`): a failed fdatasync or ENOSPC on the log stops that member
//! (non-zero exit, the reason in its log) without losing anything acknowledged; the other two
//! keep serving (after ENOSPC the member first has the others raise NOSPACE for it: writes that
//! add data are then refused cluster-wide, reads go on, until an operator disarms it); restarted
//! without the fault, the member recovers its log, rejoins and converges. Run by the test script
//! as `cargo test --features failpoints --test disk_faults`.
#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Wait (60 s at most) for member `i` to exit on its own; its exit status.
fn wait_exit(c: &mut Cluster, i: usize) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(p) = c.procs[i].as_mut()
            && let Some(s) = p.try_wait().unwrap()
        {
            c.procs[i] = None;
            return s;
        }
        assert!(Instant::now() < deadline, "member {i} did not stop after its disk fault; its log:\n{}", c.log(i));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn disk_fault(fault: &str, on_leader: bool, log_says: &str, raises_nospace: bool) {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(None);
    let victim = if on_leader { leader } else { (leader + 1) % 3 };
    let victim_id = c.member_id(victim).unwrap();
    let args = c.args(victim);
    c.kill(victim);
    c.spawn_env(victim, &args, &[("CONFLUX_FAILPOINTS", fault)]);
    c.wait_ready(victim);
    let rt = rt();
    let mut acked: Vec<String> = Vec::new();
    let start = Instant::now();
    let mut stopped = None;
    // Write through the members other than the victim until the victim stops, then some more.
    let mut extra = 0;
    while extra < 20 {
        assert!(start.elapsed() < Duration::from_secs(90), "writes did not go on around the faulty member");
        let i = (acked.len() + 1 + victim) % 3;
        let i = if i == victim { (i + 1) % 3 } else { i };
        let key = format!("k{}", acked.len());
        let r = rt.block_on(async {
            let mut kv = c.kv(i).await;
            put(&mut kv, &key, "v").await
        });
        if r.is_ok() {
            acked.push(key);
        }
        if stopped.is_none()
            && let Some(p) = c.procs[victim].as_mut()
            && p.try_wait().unwrap().is_some()
        {
            stopped = Some(wait_exit(&mut c, victim));
        }
        if stopped.is_some() {
            extra += 1;
        }
    }
    let status = stopped.expect("stopped");
    assert!(!status.success(), "the faulty member exits non-zero, got {status}");
    let log = c.log(victim);
    assert!(log.contains("raft stopped"), "its log says why it stopped:\n{log}");
    assert!(log.contains(log_says), "its log names the fault ({log_says}):\n{log}");
    let other = (victim + 1) % 3;
    let alarms = ok(etcdctl(&c.members[other].endpoint(), &["alarm", "list"]), "alarm list");
    if raises_nospace {
        // The full disk was reported through the others before the member exited.
        assert!(log.contains("NOSPACE alarm raised for this member"), "its log:\n{log}");
        assert_eq!(alarms.trim(), format!("memberID:{victim_id} alarm:NOSPACE"));
        let refused = rt.block_on(async {
            let mut kv = c.kv(other).await;
            put(&mut kv, "after-enospc", "v").await
        });
        let e = refused.expect_err("writes are refused while NOSPACE is raised");
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded")
        );
    } else {
        assert_eq!(alarms.trim(), "", "no alarm for a failed fdatasync");
    }

    // Repaired (restarted without the fault): it recovers, rejoins and catches up.
    let restarted = Instant::now();
    c.spawn(victim);
    c.wait_ready(victim);
    let deadline = Instant::now() + Duration::from_secs(60);
    for key in &acked {
        loop {
            let got = rt.block_on(async {
                let mut kv = c.kv(victim).await;
                get(&mut kv, key, true).await
            });
            if matches!(got, Ok(Some(_))) {
                break;
            }
            assert!(Instant::now() < deadline, "member {victim} did not catch up: {key} missing ({got:?})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if raises_nospace {
        // Disk repaired: the operator disarms, and writes go again.
        let disarmed = ok(etcdctl(&c.members[victim].endpoint(), &["alarm", "disarm"]), "alarm disarm");
        assert_eq!(disarmed.trim(), format!("memberID:{victim_id} alarm:NOSPACE"));
        let r = rt.block_on(async {
            let mut kv = c.kv(victim).await;
            put(&mut kv, "after-disarm", "v").await
        });
        assert!(r.is_ok(), "a write after disarm: {r:?}");
    }
    eprintln!(
        "{fault} on the {}: {} writes acknowledged around it, exit {status}, caught up {:?} after restart",
        if on_leader { "leader" } else { "follower" },
        acked.len(),
        restarted.elapsed()
    );
    // Every acknowledged write is on every member.
    for i in 0..3 {
        for key in &acked {
            let got = rt.block_on(async {
                let mut kv = c.kv(i).await;
                get(&mut kv, key, false).await
            });
            assert!(matches!(got, Ok(Some(_))), "member {i} lost acknowledged {key}: {got:?}");
        }
    }
}

#[test]
fn an_fdatasync_error_stops_a_follower_and_it_rejoins_after_repair() {
    disk_fault("fsync-error@log/+20", false, "fdatasync", false);
}

#[test]
fn enospc_stops_the_leader_raises_nospace_and_it_rejoins_after_repair() {
    disk_fault("enospc@log/+20", true, "No space left on device", true);
}
