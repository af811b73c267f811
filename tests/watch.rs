//! Watches on real `conflux` processes: etcdctl's `watch` (live, `--prefix`, `--prev-kv`,
//! `--rev` replay) following writes made through another member; the Watch stream's features
//! over gRPC (many watchers on one stream, filters, cancel, progress, compacted start
//! revisions, fragments); and a watcher that never reads, which must not slow writes nor other
//! watchers, and still gets every event exactly once, in order, when it reads again.

mod common;

use std::time::{Duration, Instant};

use common::*;
use conflux::node::proto::etcdserverpb::watch_client::WatchClient;
use conflux::node::proto::etcdserverpb::watch_create_request::FilterType;
use conflux::node::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse, request_op, watch_request::RequestUnion,
};
use conflux::node::proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tonic::Streaming;

#[test]
fn etcdctl_watch_follows_writes_made_through_another_member() {
    let c = Cluster::start(3, &[]);
    let (a, b) = (c.members[0].endpoint(), c.members[1].endpoint());
    let mut live = Background::etcdctl(&a, &["watch", "--prefix", "--prev-kv", "app/"]);
    // etcdctl prints nothing once the watch is set up: write until the first event shows.
    let deadline = Instant::now() + Duration::from_secs(20);
    while live.seen.is_empty() {
        ok(etcdctl(&b, &["put", "app/probe", "0"]), "put");
        live.drain_for(Duration::from_millis(300));
        assert!(Instant::now() < deadline, "etcdctl watch never reported a put");
    }
    let first = ok(etcdctl(&b, &["get", "app/probe", "-w", "json"]), "get");
    let rev: i64 = first
        .split("\"mod_revision\":")
        .nth(1)
        .unwrap()
        .split(|ch: char| !ch.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    ok(etcdctl(&b, &["put", "app/x", "1"]), "put");
    ok(etcdctl(&b, &["put", "app/x", "2"]), "put");
    ok(etcdctl(&c.members[2].endpoint(), &["del", "app/x"]), "del");
    ok(etcdctl(&b, &["put", "other", "z"]), "put outside the prefix");
    // PUT/key/value lines; with --prev-kv, etcdctl prints the previous key and value first (a
    // delete's new value is empty).
    let expected = ["PUT", "app/x", "1", "PUT", "app/x", "1", "app/x", "2", "DELETE", "app/x", "2", "app/x", ""];
    live.wait_for(Duration::from_secs(15), "the puts and the delete of app/x", |seen| {
        seen.windows(expected.len()).any(|w| w == expected)
    });
    live.drain_for(Duration::from_millis(500));
    assert!(!live.seen.iter().any(|l| l == "other"), "a key outside the prefix was reported: {:?}", live.seen);

    // --rev replays history: everything from the first probe on, deletes included.
    let mut replay =
        Background::etcdctl(&c.members[2].endpoint(), &["watch", "--prefix", "--rev", &rev.to_string(), "app/"]);
    replay.wait_for(Duration::from_secs(15), "the replayed delete", |seen| {
        seen.windows(2).any(|w| w == ["DELETE", "app/x"])
    });
    let puts = replay.seen.iter().filter(|l| *l == "PUT").count();
    assert!(puts >= 3, "replay from revision {rev}: {:?}", replay.seen);
}

/// One raw watch stream: requests in through a channel, answers out.
struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

impl Stream {
    async fn open(c: &Cluster, i: usize) -> Stream {
        let (tx, rx) = mpsc::channel(16);
        let mut client = WatchClient::new(channel(c, i).await);
        let rx = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.expect("watch").into_inner();
        Stream { tx, rx }
    }

    async fn send(&self, r: RequestUnion) {
        self.tx.send(WatchRequest { request_union: Some(r) }).await.expect("send");
    }

    async fn create(&self, c: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(c)).await;
    }

    async fn next(&mut self) -> WatchResponse {
        match tokio::time::timeout(Duration::from_secs(10), self.rx.message()).await {
            Ok(Ok(Some(r))) => r,
            other => panic!("no watch answer within 10 s: {other:?}"),
        }
    }
}

fn create(key: &str, end: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec().into(),
        range_end: end.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

/// (type, key, mod_revision) of each event.
fn events(r: &WatchResponse) -> Vec<(EventType, String, i64)> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (EventType::try_from(e.r#type).unwrap(), String::from_utf8_lossy(&kv.key).to_string(), kv.mod_revision)
        })
        .collect()
}

#[test]
fn one_stream_serves_many_watchers_with_filters_cancel_progress_and_compaction() {
    let c = Cluster::start(1, &["--watch-progress-notify-interval", "500", "--max-request-bytes", "1000000"]);
    rt().block_on(async {
        let mut kv = c.kv(0).await;
        let base = put(&mut kv, "s/seed", "0").await.unwrap();
        let mut s = Stream::open(&c, 0).await;
        s.create(create("s/a", "")).await; // id 0: one key
        s.create(WatchCreateRequest { prev_kv: true, ..create("s/", "s0") }).await; // id 1: prefix
        s.create(WatchCreateRequest { filters: vec![FilterType::Noput as i32], ..create("s/", "s0") }).await; // id 2
        s.create(WatchCreateRequest { watch_id: 7, filters: vec![FilterType::Nodelete as i32], ..create("s/", "s0") })
            .await;
        for id in [0, 1, 2, 7] {
            let r = s.next().await;
            assert!(r.created && !r.canceled && r.watch_id == id, "creation of {id}: {r:?}");
            assert_eq!(r.header.unwrap().revision, base);
        }
        let r1 = put(&mut kv, "s/a", "1").await.unwrap();
        let r2 = put(&mut kv, "s/b", "1").await.unwrap();
        let r3 = kv.delete_range(DeleteRangeRequest { key: "s/a".into(), ..Default::default() }).await.unwrap();
        let r3 = r3.into_inner().header.unwrap().revision;
        let mut got: std::collections::BTreeMap<i64, Vec<(EventType, String, i64)>> = Default::default();
        let mut prev_of_delete = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        let want = |got: &std::collections::BTreeMap<i64, Vec<_>>| {
            got.get(&0).map_or(0, Vec::len) == 2
                && got.get(&1).map_or(0, Vec::len) == 3
                && got.get(&2).map_or(0, Vec::len) == 1
                && got.get(&7).map_or(0, Vec::len) == 2
        };
        while !want(&got) {
            assert!(Instant::now() < deadline, "events so far: {got:?}");
            let r = s.next().await;
            if r.watch_id == 1 {
                for e in &r.events {
                    if e.r#type == EventType::Delete as i32 {
                        prev_of_delete = e.prev_kv.clone();
                    }
                }
            }
            got.entry(r.watch_id).or_default().extend(events(&r));
        }
        use EventType::{Delete, Put};
        let (a, b) = ("s/a".to_string(), "s/b".to_string());
        assert_eq!(got[&0], vec![(Put, a.clone(), r1), (Delete, a.clone(), r3)]);
        assert_eq!(got[&1], vec![(Put, a.clone(), r1), (Put, b.clone(), r2), (Delete, a.clone(), r3)]);
        assert_eq!(got[&2], vec![(Delete, a.clone(), r3)], "NOPUT");
        assert_eq!(got[&7], vec![(Put, a.clone(), r1), (Put, b.clone(), r2)], "NODELETE, with the id the client chose");
        let prev = prev_of_delete.expect("prev_kv on the delete");
        assert_eq!((prev.value.as_ref(), prev.mod_revision), (&b"1"[..], r1));

        // A duplicate id is refused, the stream goes on.
        s.create(WatchCreateRequest { watch_id: 7, ..create("x", "") }).await;
        let r = s.next().await;
        assert!(r.created && r.canceled && r.watch_id == -1, "{r:?}");
        assert_eq!(r.cancel_reason, "mvcc: duplicate watch ID provided on the WatchStream");

        // Cancel: answered once; the watcher is silent afterwards.
        for id in [1, 2, 7] {
            s.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: id })).await;
            let r = s.next().await;
            assert!(r.canceled && r.watch_id == id, "{r:?}");
        }
        put(&mut kv, "s/b", "2").await.unwrap();
        let now = put(&mut kv, "s/a", "again").await.unwrap();
        let r = s.next().await;
        assert_eq!((r.watch_id, events(&r)), (0, vec![(Put, a.clone(), now)]), "only watcher 0 is left");

        // Progress asked for by the client: watch id -1 and the current revision.
        s.send(RequestUnion::ProgressRequest(WatchProgressRequest {})).await;
        let r = s.next().await;
        assert!(r.watch_id == -1 && r.events.is_empty() && r.header.as_ref().unwrap().revision == now, "{r:?}");

        // progress_notify: an idle watcher hears the revision every interval (500 ms here).
        s.create(WatchCreateRequest { progress_notify: true, ..create("idle", "") }).await;
        let created = s.next().await;
        let r = s.next().await;
        assert!(r.watch_id == created.watch_id && r.events.is_empty() && !r.canceled, "progress notification: {r:?}");

        // A start revision that was compacted: created, then cancelled with the compacted revision.
        kv.compact(CompactionRequest { revision: now, physical: true }).await.unwrap();
        s.create(WatchCreateRequest { start_revision: 2, ..create("s/a", "") }).await;
        let r = s.next().await;
        assert!(r.created, "{r:?}");
        let mut r = s.next().await;
        while r.watch_id == created.watch_id {
            r = s.next().await; // progress notifications of the idle watcher
        }
        assert!(r.canceled && r.compact_revision == now, "{r:?}");
        // At the compacted revision itself, history is still there.
        s.create(WatchCreateRequest { start_revision: now, ..create("s/a", "") }).await;
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let r = s.next().await;
            if r.watch_id != created.watch_id {
                seen.push(r);
            }
        }
        assert!(seen[0].created, "{:?}", seen[0]);
        assert_eq!(events(&seen[1]), vec![(Put, a.clone(), now)]);

        // Fragments: one revision whose events are over --max-request-bytes (1 MB here) goes to a
        // watcher that asked for fragments in pieces, all but the last marked; without, whole.
        let value = "v".repeat(200 * 1024);
        for n in 0..4 {
            put(&mut kv, &format!("big/{n}"), &value).await.unwrap();
        }
        let puts = (0..4)
            .map(|n| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: format!("big/{n}").into_bytes().into(),
                    value: value.clone().into_bytes().into(),
                    ..Default::default()
                })),
            })
            .collect();
        let txn = kv.txn(TxnRequest { success: puts, ..Default::default() }).await.expect("txn of 800 KiB");
        let big = txn.into_inner().header.unwrap().revision;
        for fragment in [true, false] {
            let mut f = Stream::open(&c, 0).await;
            f.create(WatchCreateRequest { fragment, prev_kv: true, start_revision: big, ..create("big/", "big0") })
                .await;
            assert!(f.next().await.created);
            let mut answers = Vec::new();
            while answers.iter().map(|r: &WatchResponse| r.events.len()).sum::<usize>() < 4 {
                answers.push(f.next().await);
            }
            let keys: Vec<(String, i64)> =
                answers.iter().flat_map(|r| events(r).into_iter().map(|e| (e.1, e.2))).collect();
            assert_eq!(keys, (0..4).map(|n| (format!("big/{n}"), big)).collect::<Vec<_>>(), "every event once");
            if fragment {
                assert!(answers.len() > 1, "1.6 MB of events in one revision were not fragmented");
                assert!(
                    answers[..answers.len() - 1].iter().all(|r| r.fragment) && !answers.last().unwrap().fragment,
                    "fragment flags: {:?}",
                    answers.iter().map(|r| r.fragment).collect::<Vec<_>>()
                );
            } else {
                assert_eq!(answers.len(), 1, "without fragment, one answer");
            }
        }
    });
}

/// A watcher whose client never reads: writes keep completing, another watcher on another
/// connection keeps up, and when the stalled client finally reads it gets every event exactly
/// once, in revision order (rebuilt from history: the feed keeps only 64 events here). A second
/// stalled watcher whose position is compacted away meanwhile is cancelled with the compacted
/// revision once it reads, after the events it was owed before that.
#[test]
fn a_watcher_that_never_reads_does_not_slow_writes() {
    let c = Cluster::start(3, &["--watch-ring-events", "64"]);
    let leader = c.wait_leader(None);
    let watched = (leader + 1) % 3;
    rt().block_on(async {
        let mut kv = c.kv(leader).await;
        let start = put(&mut kv, "slow/start", "0").await.unwrap() + 1;
        // The stalled client: its own connection, a watch on everything under slow/, never polled.
        let mut stalled = Stream::open(&c, watched).await;
        stalled.create(WatchCreateRequest { start_revision: start, ..create("slow/", "slow0") }).await;
        // A reader on another connection, counting as it goes.
        let mut reader = Stream::open(&c, watched).await;
        reader.create(WatchCreateRequest { start_revision: start, ..create("slow/", "slow0") }).await;
        assert!(reader.next().await.created);
        let (count_tx, mut count_rx) = tokio::sync::watch::channel(0i64);
        let reading = tokio::spawn(async move {
            let mut last = 0;
            loop {
                let r = reader.next().await;
                for (_, _, rev) in events(&r) {
                    assert!(rev > last, "reader: revision {rev} after {last}");
                    last = rev;
                }
                count_tx.send_replace(last);
            }
        });
        // 64 KiB values: the stalled stream's HTTP/2 windows fill after a few dozen events.
        let value = "w".repeat(64 * 1024);
        let n = 600;
        let mut slowest = Duration::ZERO;
        let began = Instant::now();
        let mut last = 0;
        for i in 0..n {
            let t = Instant::now();
            last = tokio::time::timeout(Duration::from_secs(5), put(&mut kv, &format!("slow/{}", i % 50), &value))
                .await
                .unwrap_or_else(|_| panic!("put {i} did not complete within 5 s while a watcher lags"))
                .unwrap();
            slowest = slowest.max(t.elapsed());
        }
        // Each put above had 5 s to complete: a watcher holding apply would have failed one.
        eprintln!("{n} puts of 64 KiB with a stalled watcher: {:?}, slowest {slowest:?}", began.elapsed());
        // The other watcher keeps up.
        let deadline = Instant::now() + Duration::from_secs(20);
        while *count_rx.borrow_and_update() < last {
            assert!(Instant::now() < deadline, "the reading watcher stopped at {} of {last}", *count_rx.borrow());
            let _ = tokio::time::timeout(Duration::from_millis(200), count_rx.changed()).await;
        }
        reading.abort();
        // Now the stalled client reads: everything, once, in order.
        let mut revs = Vec::new();
        let r = stalled.next().await;
        assert!(r.created, "{r:?}");
        while revs.last() != Some(&last) {
            let r = stalled.next().await;
            assert!(!r.canceled, "the lagging watcher was cancelled: {r:?}");
            revs.extend(events(&r).into_iter().map(|e| e.2));
        }
        assert_eq!(revs, (start..=last).collect::<Vec<_>>(), "the lagging watcher's events");
        drop(stalled);

        // Fallen behind, then compacted past: cancelled with the reason, as etcd does.
        let mut behind = Stream::open(&c, watched).await;
        behind.create(WatchCreateRequest { start_revision: last + 1, ..create("slow/", "slow0") }).await;
        for i in 0..n {
            put(&mut kv, &format!("slow/{}", i % 50), &value).await.unwrap();
        }
        let compacted = put(&mut kv, "slow/end", "0").await.unwrap();
        kv.compact(CompactionRequest { revision: compacted, physical: true }).await.unwrap();
        assert!(behind.next().await.created);
        let mut revs = Vec::new();
        let cancel = loop {
            let r = behind.next().await;
            if r.canceled {
                break r;
            }
            revs.extend(events(&r).into_iter().map(|e| e.2));
        };
        assert_eq!(cancel.compact_revision, compacted, "{cancel:?}");
        assert!(revs.len() < n, "the watcher was meant to fall behind, yet got all {} events", revs.len());
        assert_eq!(revs, (last + 1..last + 1 + revs.len() as i64).collect::<Vec<_>>(), "events before the cancel");
    });
}
