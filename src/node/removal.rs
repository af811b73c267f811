//! How a member learns it was removed from the cluster (etcd's "the member has been permanently
//! removed from the cluster"), so that it can stop instead of standing for election forever.
//!
//! openraft stops replicating to a removed member as soon as the leader appends the membership
//! without it, so the member may never receive that entry. Two signs are trusted:
//!
//! 1. Its own committed membership no longer lists it, after one that did during this run (a
//!    joining member replaying the log from the start sees memberships without itself first;
//!    those are not a removal).
//! 2. Another member's committed membership does not list it, and that membership is newer (a
//!    larger log id) than the newest membership this member has, which does list it. Committed
//!    memberships follow one another in log order on every member and a removed id is never
//!    given again, so nothing newer can list it again. A member that has not yet received the
//!    entry adding it compares against a membership that does not list it and never asks.
//!
//! Not covered: a removed member restarted from its data directory (its newest membership
//! already leaves it out, so neither sign applies); it then idles as a learner would.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;

use super::Core;
use super::peer::{self, ForwardReply, ForwardRequest};

/// How often a member that believes it is a member asks one other member.
const ASK_EVERY: Duration = Duration::from_secs(2);

/// Resolves once this member has been removed from the cluster.
pub async fn removed(core: Arc<Core>) {
    let me = core.member_id;
    let mut rx = core.raft.metrics();
    let mut listed_committed = false;
    let mut asked = 0usize;
    let mut tick = tokio::time::interval(ASK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (mine, committed, leader) = {
            let m = rx.borrow_watched();
            (m.membership_config.clone(), m.committed_membership_config.clone(), m.state.is_leader())
        };
        // Sign 1.
        if committed.membership().get_node(&me).is_some() {
            listed_committed = true;
        } else if listed_committed {
            return;
        }
        let ask = tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    return std::future::pending().await;
                }
                false
            }
            _ = tick.tick() => true,
        };
        if !ask || leader || mine.membership().get_node(&me).is_none() {
            continue;
        }
        // Sign 2, asking the other members in turn.
        let others: Vec<_> = mine.membership().nodes().filter(|(id, _)| **id != me).collect();
        if others.is_empty() {
            continue;
        }
        let (id, member) = others[asked % others.len()];
        asked += 1;
        let Ok(mut client) = core.peers.client(*id, member) else { continue };
        let call = client.forward(core.peers.request(peer::encode(&ForwardRequest::CommittedMembership)));
        let reply = match tokio::time::timeout(ASK_EVERY, call).await {
            Ok(Ok(r)) => peer::decode::<ForwardReply>(r.get_ref()),
            _ => continue,
        };
        if let Ok(ForwardReply::Committed { log_id, members }) = reply
            && log_id > *mine.log_id()
            && !members.contains(&me)
        {
            tracing::info!(
                asked = format!("{id:x}"),
                "a newer committed membership without this member: it was removed while cut off"
            );
            return;
        }
    }
}
