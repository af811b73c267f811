//! etcd's concurrency recipes (`etcdctl lock`, `etcdctl elect`) between two clients on two
//! members of a 3-member cluster: they need leases (sessions), txns and watches together.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn etcdctl_lock_excludes_a_second_client_until_the_first_releases() {
    let c = Cluster::start(3, &[]);
    let (a, b) = (c.members[0].endpoint(), c.members[1].endpoint());
    let mut first = Background::etcdctl(&a, &["lock", "--ttl", "5", "the-lock"]);
    first.wait_for(Duration::from_secs(15), "the first client holding the lock", |seen| !seen.is_empty());
    let key = first.seen[0].clone();
    assert!(key.starts_with("the-lock/"), "lock printed {:?}", first.seen);
    let mut second = Background::etcdctl(&b, &["lock", "--ttl", "5", "the-lock"]);
    second.drain_for(Duration::from_secs(2));
    assert!(second.seen.is_empty(), "the second client got the lock while the first held it: {:?}", second.seen);
    // The first client lets go (etcdctl revokes its session on SIGTERM): the second gets it.
    first.terminate();
    second.wait_for(Duration::from_secs(15), "the second client taking the lock", |seen| !seen.is_empty());
    assert!(second.seen[0].starts_with("the-lock/") && second.seen[0] != key, "{:?}", second.seen);
}

#[test]
fn etcdctl_lock_passes_on_when_the_holder_dies_and_its_lease_expires() {
    let c = Cluster::start(3, &[]);
    let (a, b) = (c.members[0].endpoint(), c.members[2].endpoint());
    let mut first = Background::etcdctl(&a, &["lock", "--ttl", "2", "crash-lock"]);
    first.wait_for(Duration::from_secs(15), "the first client holding the lock", |seen| !seen.is_empty());
    let mut second = Background::etcdctl(&b, &["lock", "--ttl", "2", "crash-lock"]);
    second.drain_for(Duration::from_millis(1500));
    assert!(second.seen.is_empty(), "{:?}", second.seen);
    // SIGKILL: no revoke; the lease runs out and the leader's expiry deletes the lock key.
    drop(first);
    let t = Instant::now();
    second.wait_for(Duration::from_secs(20), "the lock after the holder's lease expired", |seen| !seen.is_empty());
    eprintln!("lock passed on {:?} after the holder was killed", t.elapsed());
}

#[test]
fn etcdctl_elect_has_one_leader_and_observers_see_the_next() {
    let c = Cluster::start(3, &[]);
    let (a, b) = (c.members[0].endpoint(), c.members[1].endpoint());
    let mut p1 = Background::etcdctl(&a, &["elect", "the-election", "p1"]);
    p1.wait_for(Duration::from_secs(15), "p1 elected", |seen| seen.iter().any(|l| l == "p1"));
    let mut observer = Background::etcdctl(&c.members[2].endpoint(), &["elect", "-l", "the-election"]);
    observer.wait_for(Duration::from_secs(15), "the observer seeing p1", |seen| seen.iter().any(|l| l == "p1"));
    let mut p2 = Background::etcdctl(&b, &["elect", "the-election", "p2"]);
    p2.drain_for(Duration::from_secs(2));
    assert!(!p2.seen.iter().any(|l| l == "p2"), "p2 elected while p1 leads: {:?}", p2.seen);
    p1.terminate();
    p2.wait_for(Duration::from_secs(15), "p2 elected after p1 resigned", |seen| seen.iter().any(|l| l == "p2"));
    observer.wait_for(Duration::from_secs(15), "the observer seeing p2", |seen| seen.iter().any(|l| l == "p2"));
}
