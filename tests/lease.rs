//! Leases on a 3-member cluster of real `conflux` processes: etcdctl's lease commands through
//! followers (keep-alive and time-to-live are answered by the leader), keys attached with
//! `put --lease`, expiry deleting every attached key on every member in one revision (as a
//! watcher on another member sees it too), and lease
//! state surviving a leader failover and a full restart (from a snapshot and the log after it).

mod common;

use std::time::{Duration, Instant};

use common::*;
use conflux::node::proto::etcdserverpb::lease_client::LeaseClient;
use conflux::node::proto::etcdserverpb::watch_client::WatchClient;
use conflux::node::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
    watch_request,
};
use conflux::node::proto::mvccpb::event::EventType;

fn lease_id(grant_output: &str) -> String {
    // "lease 694d7a3c0f4e2b12 granted with TTL(30s)"
    let id = grant_output.split_whitespace().nth(1).unwrap_or_else(|| panic!("grant printed {grant_output:?}"));
    assert!(grant_output.contains("granted with TTL("), "grant printed {grant_output:?}");
    id.to_string()
}

fn err_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn etcdctl_lease_commands_behave_as_with_etcd() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(None);
    let f: Vec<String> = (0..3).filter(|&i| i != leader).map(|i| c.members[i].endpoint()).collect();

    let id = lease_id(&ok(etcdctl(&f[0], &["lease", "grant", "30"]), "lease grant"));
    assert_eq!(ok(etcdctl(&f[1], &["put", "--lease", &id, "held", "v"]), "put --lease").trim(), "OK");
    let ttl = ok(etcdctl(&f[0], &["lease", "timetolive", &id, "--keys"]), "lease timetolive --keys");
    assert!(
        ttl.starts_with(&format!("lease {id} granted with TTL(30s), remaining("))
            && ttl.contains("attached keys([held])"),
        "timetolive printed {ttl:?}"
    );
    let remaining: i64 = ttl.split("remaining(").nth(1).and_then(|r| r.split('s').next()).unwrap().parse().unwrap();
    assert!((25..=30).contains(&remaining), "remaining {remaining} s of a 30 s lease just granted");
    assert_eq!(
        ok(etcdctl(&f[1], &["lease", "keep-alive", "--once", &id]), "keep-alive --once").trim(),
        format!("lease {id} keepalived with TTL(30)")
    );
    assert!(ok(etcdctl(&f[0], &["lease", "list"]), "lease list").contains(&id));
    let got = ok(etcdctl(&c.members[leader].endpoint(), &["get", "held", "-w", "json"]), "get -w json");
    assert!(got.contains(&format!("\"lease\":{}", i64::from_str_radix(&id, 16).unwrap())), "{got}");

    // Unknown leases, as etcd answers them.
    let out = etcdctl(&f[0], &["put", "--lease", "123", "other", "v"]);
    assert!(
        !out.status.success() && err_text(&out).contains("etcdserver: requested lease not found"),
        "{}",
        err_text(&out)
    );
    let out = etcdctl(&f[0], &["lease", "revoke", "999"]);
    assert!(
        !out.status.success() && err_text(&out).contains("etcdserver: requested lease not found"),
        "{}",
        err_text(&out)
    );
    assert_eq!(
        ok(etcdctl(&f[1], &["lease", "timetolive", "999"]), "timetolive of an unknown lease").trim(),
        "lease 0000000000000999 already expired"
    );
    let out = etcdctl(&f[1], &["lease", "keep-alive", "--once", "999"]);
    assert!(!out.status.success(), "keep-alive of an unknown lease must fail: {}", err_text(&out));

    rt().block_on(async {
        let mut lease = LeaseClient::new(channel(&c, leader).await);
        // A chosen id; the same id again is refused.
        let r = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0x1234 }).await.unwrap().into_inner();
        assert_eq!((r.id, r.ttl), (0x1234, 60));
        let e = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0x1234 }).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::FailedPrecondition, "etcdserver: lease already exists"));
        let r = lease.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x999, keys: true }).await.unwrap().into_inner();
        assert_eq!((r.id, r.ttl, r.granted_ttl), (0x999, -1, 0));
        // A txn put may attach a lease too.
        let mut kv = c.kv((leader + 1) % 3).await;
        use conflux::node::proto::etcdserverpb::{RequestOp, TxnRequest, request_op};
        let put = PutRequest { key: "txnheld".into(), value: "v".into(), lease: 0x1234, ..Default::default() };
        let t = TxnRequest {
            success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put)) }],
            ..Default::default()
        };
        kv.txn(t).await.expect("txn put with a lease");
        let r = lease.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x1234, keys: true }).await.unwrap().into_inner();
        assert_eq!(r.keys, vec![bytes::Bytes::from_static(b"txnheld")]);
    });

    assert_eq!(ok(etcdctl(&f[0], &["lease", "revoke", &id]), "lease revoke").trim(), format!("lease {id} revoked"));
    for m in &c.members {
        assert_eq!(ok(etcdctl(&m.endpoint(), &["get", "held"]), "get after revoke"), "", "member {}", m.name);
    }
    let ttl = ok(etcdctl(&f[1], &["lease", "timetolive", &id]), "timetolive after revoke");
    assert_eq!(ttl.trim(), format!("lease {id} already expired"));
}

/// Revision of member `i` and the number of keys under `prefix` at `rev` (0 = now), read locally.
async fn keys_at(c: &Cluster, i: usize, prefix: &str, rev: i64) -> (i64, i64) {
    let mut kv = c.kv(i).await;
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let r = kv
        .range(RangeRequest {
            key: prefix.as_bytes().to_vec().into(),
            range_end: end.into(),
            revision: rev,
            serializable: true,
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (r.header.unwrap().revision, r.count)
}

#[test]
fn expiry_deletes_the_keys_on_every_member_in_one_revision() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(None);
    let follower = (leader + 1) % 3;
    rt().block_on(async {
        let mut lease = LeaseClient::new(channel(&c, follower).await);
        let g = lease.lease_grant(LeaseGrantRequest { ttl: 2, id: 0 }).await.unwrap().into_inner();
        let mut kv = c.kv(follower).await;
        for k in ["exp/a", "exp/b", "exp/c"] {
            kv.put(PutRequest { key: k.into(), value: "v".into(), lease: g.id, ..Default::default() }).await.unwrap();
        }
        // A key on no lease stays.
        put(&mut kv, "exp/keep", "v").await.unwrap();
        let (before, n) = keys_at(&c, follower, "exp/", 0).await;
        assert_eq!(n, 4);
        // A watcher on the third member sees the expiry as three deletes at one revision.
        let third = (0..3).find(|&i| i != leader && i != follower).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
                key: "exp/".into(),
                range_end: "exp0".into(),
                start_revision: before + 1,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let mut watch = WatchClient::new(channel(&c, third).await);
        let mut events = watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        let deadline = Instant::now() + Duration::from_secs(15);
        for i in 0..3 {
            loop {
                let (rev, n) = keys_at(&c, i, "exp/", 0).await;
                if n == 1 {
                    assert_eq!(rev, before + 1, "member {i}: the three deletes must take one revision");
                    assert_eq!(keys_at(&c, i, "exp/", before).await.1, 4, "member {i}: history before expiry");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "member {i} still holds {n} keys 15 s after a 2 s lease was granted"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut deletes = Vec::new();
        while deletes.len() < 3 {
            let r = tokio::time::timeout(Duration::from_secs(10), events.message())
                .await
                .expect("watch answer within 10 s")
                .unwrap()
                .expect("watch stream open");
            for e in r.events {
                let kv = e.kv.unwrap();
                assert_eq!(e.r#type, EventType::Delete as i32, "{kv:?}");
                deletes.push((String::from_utf8_lossy(&kv.key).to_string(), kv.mod_revision));
            }
        }
        drop(tx);
        let want: Vec<(String, i64)> =
            ["exp/a", "exp/b", "exp/c"].iter().map(|k| (k.to_string(), before + 1)).collect();
        assert_eq!(deletes, want, "the watcher on member {third}");
        let r = lease.lease_time_to_live(LeaseTimeToLiveRequest { id: g.id, keys: false }).await.unwrap().into_inner();
        assert_eq!(r.ttl, -1, "the expired lease is gone");
        let ka = lease_keep_alive_once(&mut lease, g.id).await;
        assert_eq!(ka, 0, "keep-alive of an expired lease answers TTL 0");
    });
    assert!(
        (0..3).any(|i| c.log(i).contains("lease expired: revoked")),
        "the leader should log the revoke of the expired lease"
    );
}

async fn lease_keep_alive_once(lease: &mut LeaseClient<tonic::transport::Channel>, id: i64) -> i64 {
    use conflux::node::proto::etcdserverpb::LeaseKeepAliveRequest;
    let reqs = futures_util::stream::iter(vec![LeaseKeepAliveRequest { id }]);
    let mut answers = lease.lease_keep_alive(reqs).await.unwrap().into_inner();
    let r = tokio::time::timeout(Duration::from_secs(10), answers.message()).await.expect("keep-alive answer in 10 s");
    r.unwrap().expect("one answer").ttl
}

#[test]
fn leases_survive_leader_failover_and_full_restart() {
    // Snapshots every 20 entries: the restart loads a snapshot holding the lease, then the log.
    let mut c = Cluster::start(3, &["--snapshot-count", "20"]);
    let leader = c.wait_leader(None);
    let other = (leader + 1) % 3;
    let id = rt().block_on(async {
        let mut lease = LeaseClient::new(channel(&c, other).await);
        let g = lease.lease_grant(LeaseGrantRequest { ttl: 30, id: 0 }).await.unwrap().into_inner();
        let mut kv = c.kv(other).await;
        kv.put(PutRequest { key: "survivor".into(), value: "v".into(), lease: g.id, ..Default::default() })
            .await
            .unwrap();
        for n in 0..50 {
            put(&mut kv, &format!("filler{n}"), "x").await.unwrap();
        }
        g.id
    });
    // Let most of the TTL run out on the old leader, then kill it: the new leader restarts the
    // clock at its full TTL, as etcd does.
    std::thread::sleep(Duration::from_secs(6));
    c.kill(leader);
    let new_leader = c.wait_leader(Some(leader));
    rt().block_on(async {
        let mut lease = LeaseClient::new(channel(&c, new_leader).await);
        let r = lease.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true }).await.unwrap().into_inner();
        assert_eq!(r.granted_ttl, 30);
        assert!(r.ttl >= 25, "a new leader restarts the lease's clock at the full TTL; remaining {}", r.ttl);
        assert_eq!(r.keys, vec![bytes::Bytes::from_static(b"survivor")]);
    });
    c.spawn(leader);
    c.wait_ready(leader);
    for i in 0..3 {
        let s = c.terminate(i);
        assert!(s.success(), "member {i} exited with {s}; log:\n{}", c.log(i));
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_ready(i);
    }
    assert!(
        (0..3).any(|i| c.log(i).matches("state loaded from snapshot").count() > 0),
        "some member should have restarted from a snapshot"
    );
    rt().block_on(async {
        for i in 0..3 {
            let mut lease = LeaseClient::new(channel(&c, i).await);
            let r = lease.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true }).await.unwrap().into_inner();
            assert_eq!((r.granted_ttl, r.keys.len()), (30, 1), "member {i} after the restart: {r:?}");
            assert!(lease_keep_alive_once(&mut lease, id).await == 30, "keep-alive through member {i}");
            let mut kv = c.kv(i).await;
            assert_eq!(get(&mut kv, "survivor", true).await.unwrap(), Some("v".to_string()), "member {i}");
        }
        let leases = LeaseClient::new(channel(&c, 0).await)
            .lease_leases(conflux::node::proto::etcdserverpb::LeaseLeasesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(leases.leases.iter().map(|l| l.id).collect::<Vec<_>>(), vec![id]);
    });
}
