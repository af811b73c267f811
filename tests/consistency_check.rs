//! The periodic consistency check (`--corrupt-check-time`): a member made to diverge (the
//! `failpoints` feature's `CONFLUX_FAILPOINT_DIVERGE_KEY`: it applies puts of one key with
//! another value) is found by the leader, which logs the mismatch naming the members and raises
//! CORRUPT; then writes are refused with etcd's `etcdserver: corrupt cluster` and reads go on.
//! Run as `cargo test -p conflux --features failpoints --test consistency_check`.
#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_diverged_member_is_found_and_raises_corrupt() {
    let mut c = Cluster::start(3, &["--corrupt-check-time", "500ms"]);
    let leader = c.wait_leader(None);
    let victim = (leader + 1) % 3;
    let args = c.args(victim);
    c.kill(victim);
    c.spawn_env(victim, &args, &[("CONFLUX_FAILPOINT_DIVERGE_KEY", "diverge")]);
    c.wait_ready(victim);
    let ep = c.members[leader].endpoint();
    for i in 0..10 {
        ok(etcdctl(&ep, &["put", &format!("k{i}"), "v"]), "put");
    }
    // Equal stores: no alarm after a few checks.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ok(etcdctl(&ep, &["alarm", "list"]), "alarm list").trim(), "", "alarm before any divergence");

    ok(etcdctl(&ep, &["put", "diverge", "v"]), "put");
    let victim_id = c.member_id(victim).unwrap();
    let expected = format!("memberID:{victim_id} alarm:CORRUPT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = ok(etcdctl(&ep, &["alarm", "list"]), "alarm list");
        if list.trim() == expected {
            break;
        }
        assert!(Instant::now() < deadline, "CORRUPT never raised: {list:?}; leader's log:\n{}", c.log(leader));
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = c.log(leader);
    let line = log.lines().find(|l| l.contains("found hash mismatch")).expect("the leader logs the mismatch");
    assert!(
        line.contains(&format!("member={}", c.members[victim].name))
            && line.contains(&format!("leader={}", c.members[leader].name)),
        "the line names both members: {line}"
    );
    // Every member lists it; writes are refused, reads served.
    for i in 0..3 {
        let e = etcdctl(&c.members[i].endpoint(), &["alarm", "list"]);
        assert_eq!(ok(e, "alarm list").trim(), expected, "member {i}");
        let out = etcdctl(&c.members[i].endpoint(), &["put", "k0", "w"]);
        assert!(!out.status.success(), "member {i} took a write under CORRUPT");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("etcdserver: corrupt cluster"), "member {i}: {e}");
        let out = etcdctl(&c.members[i].endpoint(), &["del", "k0"]);
        assert!(!out.status.success(), "member {i} took a delete under CORRUPT");
        assert_eq!(ok(etcdctl(&c.members[i].endpoint(), &["get", "k1", "--print-value-only"]), "get").trim(), "v");
    }
}
