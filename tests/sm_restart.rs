//! A one-node Raft (openraft itself, no network needed) over the log engine and the MVCC state
//! machine: writes, a snapshot mid-way, more writes, restart. The state comes back from the
//! snapshot plus the log after it, and equals what was there before.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conflux::mvcc::*;
use conflux::state_machine::{SmConfig, SnapshotFile, StateMachine};
use conflux::types::Member;
use conflux::types::{LogStore, TypeConfig};
use openraft::Raft;
use openraft::error::{RPCError, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};

/// One node has no peers: any RPC is a bug.
struct NoPeers;

impl RaftNetworkV2<TypeConfig> for NoPeers {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        _: AppendEntriesRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(Unreachable::from_string("single-node test has no peers")))
    }

    async fn vote(
        &mut self,
        _: VoteRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(Unreachable::from_string("single-node test has no peers")))
    }

    async fn full_snapshot(
        &mut self,
        _: openraft::alias::VoteOf<TypeConfig>,
        _: openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>,
        _: impl std::future::Future<Output = openraft::error::ReplicationClosed> + Send + 'static,
        _: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(Unreachable::from_string("single-node test has no peers")))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;
    async fn new_client(&mut self, _: u64, _: &Member) -> NoPeers {
        NoPeers
    }
}

async fn start(dir: &std::path::Path) -> (Raft<TypeConfig, StateMachine>, StateMachine) {
    // openraft's tasks may still hold a log reader (and so the directory lock) for a moment after
    // `shutdown` returns: wait for it, bounded.
    let log_config =
        conflux_engine::Config { segment_bytes: 256 << 10, max_entry_bytes: 64 << 10, ..Default::default() };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        match LogStore::open(dir, log_config.clone()) {
            Ok(l) => break l,
            Err(conflux_engine::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("reopen {}: {e}", dir.display()),
        }
    };
    let sm = StateMachine::open(dir, Arc::new(conflux_engine::io::StdIo), SmConfig::default()).unwrap();
    let config = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        ..Default::default()
    };
    let raft = Raft::new(1, Arc::new(config.validate().unwrap()), NoPeers, log, sm.clone()).await.unwrap();
    (raft, sm)
}

fn put(k: &str, v: &str) -> WriteRequest {
    WriteRequest::Put(PutRequest {
        key: Bytes::from(k.to_string()),
        value: Bytes::from(v.to_string()),
        ..Default::default()
    })
}

fn everything(sm: &StateMachine) -> (u64, Vec<KeyValue>) {
    let store = sm.store();
    let r = store
        .range(&RangeRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            ..Default::default()
        })
        .unwrap();
    (store.revision(), r.kvs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_snapshot_plus_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let t = Some(Duration::from_secs(20));
    let (before, last_index, old_rev_read) = {
        let (raft, sm) = start(dir.path()).await;
        raft.initialize(BTreeMap::from([(1u64, Member { name: "local".into(), ..Default::default() })])).await.unwrap();
        raft.wait(t).current_leader(1, "leader").await.unwrap();
        for i in 0..200 {
            let r = raft.client_write(put(&format!("k{:03}", i % 50), &format!("v{i}"))).await.unwrap();
            assert!(matches!(r.data, conflux::types::ApplyResult::Write(Ok(_))));
        }
        let del = WriteRequest::DeleteRange(DeleteRangeRequest {
            key: Bytes::from("k010"),
            range_end: Bytes::from("k020"),
            prev_kv: false,
        });
        raft.client_write(del).await.unwrap();
        // Snapshot now, then write more: the restart needs both.
        raft.trigger().snapshot().await.unwrap();
        let m = raft.wait(t).metrics(|m| m.snapshot.is_some(), "snapshot built").await.unwrap();
        let snap_index = m.snapshot.unwrap().index;
        raft.trigger().purge_log(snap_index).await.unwrap();
        raft.wait(t).metrics(|m| m.purged.is_some(), "log purged").await.unwrap();
        for i in 200..260 {
            raft.client_write(put(&format!("k{:03}", i % 70), &format!("v{i}"))).await.unwrap();
        }
        let m = raft.wait(t).metrics(|_| true, "metrics").await.unwrap();
        let last = m.last_applied.unwrap().index;
        // A read at an old revision still inside the snapshot's retained history.
        let old =
            sm.store().range(&RangeRequest { key: Bytes::from("k001"), revision: 100, ..Default::default() }).unwrap();
        raft.shutdown().await.unwrap();
        (everything(&sm), last, old)
    };
    assert!(before.1.len() > 50);

    let (raft, sm) = start(dir.path()).await;
    raft.wait(t).applied_index_at_least(Some(last_index), "re-applied the log tail").await.unwrap();
    assert_eq!(everything(&sm), before, "state after restart");
    let old =
        sm.store().range(&RangeRequest { key: Bytes::from("k001"), revision: 100, ..Default::default() }).unwrap();
    assert_eq!(old, old_rev_read, "history survives the snapshot");
    let m = raft.wait(t).metrics(|_| true, "metrics").await.unwrap();
    assert!(m.purged.is_some(), "the log before the snapshot is gone: the state really came from the snapshot");
    // And it keeps working.
    raft.client_write(put("after", "restart")).await.unwrap();
    raft.shutdown().await.unwrap();
}
