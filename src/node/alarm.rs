//! What raises alarms, on top of the replicated alarm list (`crate::mvcc::alarm`):
//!
//! - the space quota ([`Core::check_quota`]): a request that adds data while the store's size
//!   plus what the request adds reaches `--quota-backend-bytes` raises NOSPACE and is refused, as
//!   etcd's quota check does before proposing;
//! - a full disk ([`report_full_disk`]): a member whose log engine was poisoned by ENOSPC cannot
//!   write its own log any more, so before it exits it asks the other members to raise NOSPACE
//!   for it (`docs/decisions.md`, "A full disk raises NOSPACE");
//! - the consistency check ([`spawn_corrupt_check`]): every `--corrupt-check-time` the leader
//!   compares its HashKV with every other member's at the same revision and raises CORRUPT for a
//!   member whose hash differs, as etcd's `--experimental-corrupt-check-time` does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tonic::Status;

use super::Core;
use super::peer::{self, ForwardReply, ForwardRequest};
use crate::mvcc::{AlarmAction, AlarmRequest, AlarmType, WriteRequest, quota_cost};
use crate::types::ApplyResult;

/// What a member asks another for in the consistency check.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HashKvRequest {
    /// The revision to hash at (the leader's current one).
    pub revision: u64,
}

/// A member's HashKV, for the consistency check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashKvReply {
    /// The member that computed it.
    pub member_id: u64,
    /// The hash.
    pub hash: u32,
    /// The compacted revision it starts from.
    pub compacted: u64,
}

/// The error a refused request gets while NOSPACE is raised (etcd's `ErrGRPCNoSpace`).
pub fn no_space() -> Status {
    Status::resource_exhausted("etcdserver: mvcc: database space exceeded")
}

/// How long a member waits to apply up to the revision the leader asks a hash at.
const HASH_CATCH_UP: Duration = Duration::from_secs(5);

/// Compute this member's HashKV at `revision`, once it has applied that far (within
/// [`HASH_CATCH_UP`]).
///
/// # Errors
/// A message when the member is still behind, or the revision was compacted.
pub async fn local_hash(
    sm: &crate::state_machine::StateMachine,
    member_id: u64,
    revision: u64,
) -> Result<HashKvReply, String> {
    let deadline = Instant::now() + HASH_CATCH_UP;
    while sm.store().revision() < revision {
        if Instant::now() >= deadline {
            return Err(format!(
                "still at revision {} after {HASH_CATCH_UP:?}, asked for {revision}",
                sm.store().revision()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store = sm.store();
    let h = tokio::task::spawn_blocking(move || store.hash_kv(revision))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(HashKvReply { member_id, hash: h.hash, compacted: h.compacted })
}

impl Core {
    fn alarm_raised(&self, member_id: Option<u64>, alarm: AlarmType) -> bool {
        self.sm.store().alarms().iter().any(|a| a.alarm == alarm && member_id.is_none_or(|m| m == a.member_id))
    }

    /// Raise `alarm` for `member_id` through Raft (unless it is raised already).
    pub async fn raise_alarm(&self, member_id: u64, alarm: AlarmType) -> Result<(), Status> {
        if self.alarm_raised(Some(member_id), alarm) {
            return Ok(());
        }
        let req = AlarmRequest { action: AlarmAction::Activate, member_id, alarm };
        self.write(WriteRequest::Alarm(req)).await?;
        tracing::warn!(member = format!("{member_id:x}"), %alarm, "alarm raised");
        Ok(())
    }

    /// etcd's quota check before proposing a Put, Txn or LeaseGrant: when the store's size (as
    /// Status reports it) plus what `req` adds reaches the quota, raise NOSPACE and refuse.
    ///
    /// # Errors
    /// ResourceExhausted, etcd's "database space exceeded".
    pub async fn check_quota(&self, req: &WriteRequest) -> Result<(), Status> {
        let Some(quota) = self.quota_backend_bytes else { return Ok(()) };
        let size = self.sm.store().retained_bytes();
        if size.saturating_add(quota_cost(req)) < quota {
            return Ok(());
        }
        if !self.alarm_raised(None, AlarmType::NoSpace) {
            tracing::warn!(size, quota, "space quota exceeded; raising the NOSPACE alarm");
            if let Err(e) = self.raise_alarm(self.member_id, AlarmType::NoSpace).await {
                tracing::warn!(error = %e, "raising the NOSPACE alarm");
            }
        }
        Err(no_space())
    }

    /// One round of the consistency check (leader only): this member's HashKV at its current
    /// revision against every other member's at the same revision.
    async fn check_hashes(&self) {
        let store = self.sm.store();
        let mine = match tokio::task::spawn_blocking(move || store.hash_kv(0)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return tracing::debug!(error = %e, "consistency check: own hash"),
            Err(e) => return tracing::warn!(error = %e, "consistency check: own hash"),
        };
        for (id, member, _) in self.members() {
            if id == self.member_id {
                continue;
            }
            let theirs = async {
                let mut client = self.peers.client(id, &member).map_err(|e| e.message().to_string())?;
                let req = self.peers.request(peer::encode(&HashKvRequest { revision: mine.revision }));
                let call = tokio::time::timeout(self.request_timeout + HASH_CATCH_UP, client.hash_kv(req));
                let reply = call.await.map_err(|_| "no answer".to_string())?.map_err(|e| e.message().to_string())?;
                peer::decode::<Result<HashKvReply, String>>(reply.get_ref()).map_err(|e| e.message().to_string())?
            };
            let theirs = match theirs.await {
                Ok(h) => h,
                Err(e) => {
                    tracing::debug!(member = %member.name, error = %e, revision = mine.revision, "consistency check: no hash");
                    continue;
                }
            };
            if theirs.compacted != mine.compacted {
                // A compaction between the two hashes: compare next time.
                tracing::debug!(member = %member.name, "consistency check: compacted revisions differ; skipped");
                continue;
            }
            if theirs.hash == mine.hash {
                tracing::debug!(member = %member.name, revision = mine.revision, hash = mine.hash, "consistency check: hashes match");
                continue;
            }
            tracing::error!(
                leader = %self.name,
                leader_id = format!("{:x}", self.member_id),
                leader_hash = mine.hash,
                member = %member.name,
                member_id = format!("{id:x}"),
                member_hash = theirs.hash,
                revision = mine.revision,
                compacted = mine.compacted,
                "found hash mismatch: member's store differs from the leader's; raising the CORRUPT alarm"
            );
            if let Err(e) = self.raise_alarm(id, AlarmType::Corrupt).await {
                tracing::warn!(error = %e, "raising the CORRUPT alarm");
            }
        }
    }
}

/// Run the consistency check every `period` while this member leads, until `stop`.
pub fn spawn_corrupt_check(core: Arc<Core>, period: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let leads = {
                let m = openraft::async_runtime::WatchReceiver::borrow_watched(&core.raft.metrics()).clone();
                m.current_leader == Some(core.member_id) && m.state.is_leader()
            };
            if leads {
                core.check_hashes().await;
            }
        }
    });
}

/// This member's log hit ENOSPC and Raft stopped: ask the other members, one after another,
/// to raise NOSPACE for it, until one of them (the leader) commits it or `within` passes. If
/// this member was the leader, the others elect a new one first; the request is retried until
/// then.
pub async fn report_full_disk(core: &Core, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let req = ForwardRequest::Write(WriteRequest::Alarm(AlarmRequest {
        action: AlarmAction::Activate,
        member_id: core.member_id,
        alarm: AlarmType::NoSpace,
    }));
    while Instant::now() < deadline {
        for (id, member, _) in core.members() {
            if id == core.member_id {
                continue;
            }
            let Ok(mut client) = core.peers.client(id, &member) else { continue };
            let call = client.forward(core.peers.request(peer::encode(&req)));
            let Ok(Ok(reply)) = tokio::time::timeout(core.request_timeout, call).await else { continue };
            if let Ok(ForwardReply::Done { result: ApplyResult::Write(Ok(_)), .. }) = peer::decode(reply.get_ref()) {
                tracing::error!(through = %member.name, "disk full: NOSPACE alarm raised for this member");
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::error!("disk full: could not raise the NOSPACE alarm through another member within {within:?}");
    false
}
