//! A 3-node cluster of real `conflux` processes on loopback ports, driven by `etcdctl` (Debian's
//! `etcd-client`) and by a gRPC client: every member serves every request, followers forward,
//! reads are linearizable, a killed leader is replaced and the killed member catches up (by log
//! and by snapshot), and a full restart brings the data back.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn etcdctl_works_against_every_member() {
    let c = Cluster::start(3, &[]);
    for (i, m) in c.members.iter().enumerate() {
        let ep = m.endpoint();
        let key = format!("k{i}");
        assert_eq!(ok(etcdctl(&ep, &["put", &key, "v1"]), "put").trim(), "OK");
        assert_eq!(ok(etcdctl(&ep, &["get", &key]), "get"), format!("{key}\nv1\n"));
        // Every member sees it (serializable reads eventually, linearizable at once).
        for other in &c.members {
            assert_eq!(ok(etcdctl(&other.endpoint(), &["get", &key]), "get elsewhere"), format!("{key}\nv1\n"));
        }
        let txn = format!("value(\"{key}\") = \"v1\"\n\nput {key} v2\n\nput {key} never\n\n");
        let out = ok(etcdctl_stdin(&ep, &["txn"], &txn), "txn");
        assert!(out.starts_with("SUCCESS"), "txn answered {out:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = ok(etcdctl(&ep, &["get", &key, "--consistency=s"]), "serializable get");
            if got == format!("{key}\nv2\n") {
                break;
            }
            assert!(Instant::now() < deadline, "serializable read on member {i} still answers {got:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(ok(etcdctl(&ep, &["del", &key]), "del").trim(), "1");
        assert_eq!(ok(etcdctl(&ep, &["get", &key]), "get deleted"), "");

        let status = ok(etcdctl(&ep, &["endpoint", "status", "-w", "json"]), "endpoint status");
        assert!(status.contains("\"leader\":") && status.contains("\"raftIndex\":"), "{status}");
        let list = ok(etcdctl(&ep, &["member", "list"]), "member list");
        for other in &c.members {
            assert!(list.contains(&other.name) && list.contains(&other.peer_url()), "member list on {i}: {list}");
        }
    }
    // Once every member has published itself, the list carries every client URL.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = ok(etcdctl(&c.members[0].endpoint(), &["member", "list"]), "member list");
        if c.members.iter().all(|m| list.contains(&m.client_url())) {
            break;
        }
        assert!(Instant::now() < deadline, "client URLs never all published: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn follower_writes_and_linearizable_reads_elsewhere() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(None);
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    rt().block_on(async {
        let mut a = c.kv(followers[0]).await;
        let mut b = c.kv(followers[1]).await;
        for n in 0..50 {
            let key = format!("key{n}");
            put(&mut a, &key, &n.to_string()).await.expect("put through a follower");
            // A linearizable read through the other follower sees the write at once.
            assert_eq!(
                get(&mut b, &key, false).await.unwrap(),
                Some(n.to_string()),
                "read {key} through the other follower"
            );
        }
    });
}

/// Acknowledged writes are all readable after the leader is killed, and the killed member
/// catches up when it returns.
#[test]
fn killed_leader_is_replaced_and_catches_up() {
    let mut c = Cluster::start(3, &["--snapshot-count", "40", "--snapshot-catchup-entries", "5"]);
    let leader = c.wait_leader(None);
    let mut acked = Vec::new();
    rt().block_on(async {
        let mut kv = c.kv((leader + 1) % 3).await;
        for n in 0..30 {
            let k = format!("before{n}");
            put(&mut kv, &k, "x").await.unwrap();
            acked.push(k);
        }
    });
    c.kill(leader);
    let new_leader = c.wait_leader(Some(leader));
    assert_ne!(new_leader, leader);
    rt().block_on(async {
        let mut kv = c.kv(new_leader).await;
        // Enough writes that the survivors snapshot and purge what the killed member lacks.
        for n in 0..200 {
            let k = format!("after{n}");
            put(&mut kv, &k, "y").await.expect("writes continue with a new leader");
            acked.push(k);
        }
        let survivor = (0..3).find(|&i| i != leader && i != new_leader).unwrap();
        let mut kv2 = c.kv(survivor).await;
        for k in &acked {
            assert!(get(&mut kv2, k, false).await.unwrap().is_some(), "acknowledged {k} lost");
        }
    });
    c.spawn(leader);
    c.wait_ready(leader);
    // The restarted member catches up: a serializable read of the last key on it finds it.
    let last = acked.last().unwrap().clone();
    rt().block_on(async {
        let mut kv = c.kv(leader).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&mut kv, &last, true).await.ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "restarted member never caught up; log:\n{}", c.log(leader));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for k in &acked {
            assert!(get(&mut kv, k, true).await.unwrap().is_some(), "{k} missing on the restarted member");
        }
    });
    assert!(
        c.log(leader).contains("snapshot installed"),
        "the restarted member should have caught up by snapshot (the log it missed was purged); log:\n{}",
        c.log(leader)
    );
}

#[test]
fn clean_restart_of_all_members_keeps_the_data() {
    let mut c = Cluster::start(3, &[]);
    rt().block_on(async {
        let mut kv = c.kv(0).await;
        for n in 0..20 {
            put(&mut kv, &format!("k{n}"), &format!("v{n}")).await.unwrap();
        }
    });
    for i in 0..3 {
        let s = c.terminate(i);
        assert!(s.success(), "member {i} exited with {s} on SIGTERM; log:\n{}", c.log(i));
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_ready(i);
    }
    rt().block_on(async {
        for i in 0..3 {
            let mut kv = c.kv(i).await;
            for n in 0..20 {
                assert_eq!(get(&mut kv, &format!("k{n}"), false).await.unwrap(), Some(format!("v{n}")), "member {i}");
            }
        }
    });
}
