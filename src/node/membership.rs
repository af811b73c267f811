//! Membership changes: etcd's MemberAdd, MemberPromote, MemberRemove and MemberUpdate as openraft
//! membership changes, and the publication of a started member's name and client URLs.
//!
//! Every change runs on the leader ([`change_locally`]): it reads the current membership and the
//! replication progress, checks the request against etcd's rules ([`plan`], a pure function), and
//! proposes the change guarded by the membership it checked against, so two concurrent changes
//! can never both pass a check only one of them may pass. A learner is an openraft learner. A
//! voter joins or leaves in one step, one voter at a time (Raft's single-server change, as etcd
//! makes it), not through a joint configuration: adding a voter to a 3-voter cluster then needs 3
//! of the 4 to commit the change, never the new member's vote. Members and their URLs live in
//! the membership entries (and every snapshot's metadata), so they survive restarts with the log.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Membership, Precondition, Raft};
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::member;
use super::peer::ForwardReply;
use crate::state_machine::StateMachine;
use crate::types::{Member, TypeConfig};

/// The most learners a cluster may have at once (etcd 3.4's limit).
pub const MAX_LEARNERS: usize = 1;
/// A learner may be promoted once it has matched this share of the leader's log (etcd's rule).
const PROMOTE_READY_SHARE: f64 = 0.9;
/// How long the leader keeps retrying a change another change got ahead of.
const RETRY_FOR: Duration = Duration::from_secs(5);

/// A change a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// Add a member (it has no name until it starts and publishes one).
    Add {
        /// Its peer URLs, checked and normalized.
        peer_urls: Vec<String>,
        /// Added as a learner (no vote) rather than a voter.
        learner: bool,
    },
    /// Remove a member, voter or learner.
    Remove {
        /// Member id.
        id: u64,
    },
    /// Replace a member's peer URLs.
    Update {
        /// Member id.
        id: u64,
        /// The new peer URLs, checked and normalized.
        peer_urls: Vec<String>,
    },
    /// Make a learner a voter.
    Promote {
        /// Member id.
        id: u64,
    },
    /// A started member records its name and client URLs (its peer URLs stay the cluster's).
    Publish {
        /// Member id.
        id: u64,
        /// Its `--name`.
        name: String,
        /// Its `--advertise-client-urls`.
        client_urls: Vec<String>,
    },
}

/// One member as listed: id, what is known of it, whether it is a learner.
pub type Listed = (u64, Member, bool);

/// What a change answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAnswer {
    /// The member the change was about (for MemberAdd: the id the cluster gave the new member).
    pub id: u64,
    /// Every member after the change.
    pub members: Vec<Listed>,
    /// The term the change committed in.
    pub term: u64,
    /// The change's log index (the member that took the request answers once it applied it, so
    /// its own member list shows the change, as etcd's does).
    pub index: u64,
}

/// Why a change was refused; the messages are etcd's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MemberError {
    /// A peer URL is malformed (the URL and why).
    #[error("etcdserver: given member URLs are invalid ({0})")]
    BadUrl(String),
    /// Another member already has one of the peer URLs.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// The id the new member would get is taken (two adds of the same URLs in one second).
    #[error("etcdserver: member ID already exist")]
    IdExists,
    /// No member has this id.
    #[error("etcdserver: member not found")]
    NotFound,
    /// Promoting a member that is already a voter.
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// Promoting a learner that has not caught up with the leader.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// Adding a learner while the cluster has [`MAX_LEARNERS`].
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// Too few started voters would remain for a quorum (removing the last voter, say).
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    /// A voter is unreachable, so adding a member, or removing a reachable voter, could leave the
    /// cluster without a working quorum.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
}

impl MemberError {
    /// The gRPC status etcd 3.4 answers with (checked side by side, `tests/etcd_compat.rs`).
    pub fn status(&self) -> Status {
        let text = self.to_string();
        match self {
            MemberError::BadUrl(_) => Status::invalid_argument(text),
            MemberError::NotFound => Status::not_found(text),
            MemberError::Unhealthy => Status::unavailable(text),
            // etcd 3.4 has no gRPC code for this one: its clients see `Unknown`.
            MemberError::NotEnoughStarted => Status::unknown(text),
            _ => Status::failed_precondition(text),
        }
    }
}

/// Check and normalize peer URLs given to MemberAdd or MemberUpdate (`scheme://host:port`).
///
/// # Errors
///
/// [`MemberError::BadUrl`] naming the first bad URL, or saying none was given.
pub fn peer_urls(raw: &[String]) -> Result<Vec<String>, MemberError> {
    if raw.is_empty() {
        return Err(MemberError::BadUrl("no peer URL given".into()));
    }
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let u = super::config::check_advertised_url(r.trim()).map_err(MemberError::BadUrl)?;
        let s = member::url_string(&u);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// What the leader knows when it checks a change.
#[derive(Debug, Clone)]
pub struct View {
    /// Voters (of the last voter set, when in a joint config).
    pub voters: BTreeSet<u64>,
    /// Every member.
    pub nodes: BTreeMap<u64, Member>,
    /// How far each member's log matches the leader's (index).
    pub matched: BTreeMap<u64, u64>,
    /// The leader's last log index.
    pub last_index: u64,
    /// Members the leader heard from within the longest election timeout (the leader among them).
    pub active: BTreeSet<u64>,
    /// `--initial-cluster-token` (part of a new member's id).
    pub token: String,
    /// Seconds since the epoch (part of a new member's id).
    pub now_secs: u64,
}

impl View {
    /// Every member, learners flagged.
    pub fn listed(&self) -> Vec<Listed> {
        self.nodes.iter().map(|(id, m)| (*id, m.clone(), !self.voters.contains(id))).collect()
    }

    fn started(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|m| !m.name.is_empty())
    }

    /// The membership with voter `add` added (its node `new` too, for a new member) or voter
    /// `remove` removed (its node too).
    fn voters_step(&self, add: Option<u64>, remove: Option<u64>, new: Option<Member>) -> Step {
        let mut voters = self.voters.clone();
        let mut nodes = self.nodes.clone();
        if let Some(id) = add {
            voters.insert(id);
            if let Some(n) = new {
                nodes.insert(id, n);
            }
        }
        if let Some(id) = remove {
            voters.remove(&id);
            nodes.remove(&id);
        }
        Step::Voters { voters, nodes }
    }

    fn url_taken(&self, urls: &[String], except: Option<u64>) -> bool {
        self.nodes.iter().any(|(id, m)| Some(*id) != except && m.peer_urls.iter().any(|u| urls.contains(u)))
    }
}

/// The openraft change a request becomes, and the member it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The member.
    pub id: u64,
    /// The change.
    pub step: Step,
}

/// How a change is written to the log: always one membership entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Learners and members' details, voters unchanged (openraft's `change_membership`).
    Nodes(ChangeMembers<u64, Member>),
    /// The voter set gains or loses one member: the whole new membership, appended as it is.
    Voters {
        /// The voters after the change.
        voters: BTreeSet<u64>,
        /// Every member after the change.
        nodes: BTreeMap<u64, Member>,
    },
}

/// Check `change` against etcd's rules on the leader's `view`.
///
/// A started member is one that has published its name (members of the initial cluster are named
/// from the start). Like etcd with `--strict-reconfig-check` (its default), a change is refused
/// when the started voters would not make a quorum of the voters after it.
///
/// # Errors
///
/// The [`MemberError`] etcd answers with.
pub fn plan(view: &View, change: &MemberChange) -> Result<Plan, MemberError> {
    let quorum = |voters: usize| voters / 2 + 1;
    match change {
        MemberChange::Add { peer_urls, learner } => {
            // etcd's order: quorum checks before the request is proposed, the rest when applied.
            if !learner {
                // The new voter is not started; a lone started voter may still add a second one.
                let started = view.voters.iter().filter(|v| view.started(**v)).count();
                let after = view.voters.len() + 1;
                if !(started == 1 && after == 2) && started < quorum(after) {
                    return Err(MemberError::NotEnoughStarted);
                }
            }
            if !view.voters.is_subset(&view.active) {
                return Err(MemberError::Unhealthy);
            }
            let id = member::added_member_id(peer_urls, &view.token, view.now_secs);
            if view.nodes.contains_key(&id) {
                return Err(MemberError::IdExists);
            }
            if view.url_taken(peer_urls, None) {
                return Err(MemberError::PeerUrlExists);
            }
            let node = Member { name: String::new(), peer_urls: peer_urls.clone(), client_urls: Vec::new() };
            if *learner {
                let learners = view.nodes.keys().filter(|n| !view.voters.contains(n)).count();
                if learners >= MAX_LEARNERS {
                    return Err(MemberError::TooManyLearners);
                }
                return Ok(Plan { id, step: Step::Nodes(ChangeMembers::AddNodes(BTreeMap::from([(id, node)]))) });
            }
            Ok(Plan { id, step: view.voters_step(Some(id), None, Some(node)) })
        }
        MemberChange::Remove { id } => {
            if !view.nodes.contains_key(id) {
                return Err(MemberError::NotFound);
            }
            if !view.voters.contains(id) {
                return Ok(Plan { id: *id, step: Step::Nodes(ChangeMembers::RemoveNodes(BTreeSet::from([*id]))) });
            }
            let rest: Vec<u64> = view.voters.iter().copied().filter(|v| v != id).collect();
            let started = rest.iter().filter(|v| view.started(**v)).count();
            if rest.is_empty() || started < quorum(rest.len()) {
                return Err(MemberError::NotEnoughStarted);
            }
            // Removing an unreachable voter never costs a working member; removing a reachable
            // one must leave a quorum of the voters reachable.
            let reachable = view.voters.intersection(&view.active).count();
            if view.active.contains(id) && reachable - 1 < quorum(view.voters.len() - 1) {
                return Err(MemberError::Unhealthy);
            }
            Ok(Plan { id: *id, step: view.voters_step(None, Some(*id), None) })
        }
        MemberChange::Update { id, peer_urls } => {
            let Some(old) = view.nodes.get(id) else { return Err(MemberError::NotFound) };
            if view.url_taken(peer_urls, Some(*id)) {
                return Err(MemberError::PeerUrlExists);
            }
            let node = Member { peer_urls: peer_urls.clone(), ..old.clone() };
            Ok(Plan { id: *id, step: Step::Nodes(ChangeMembers::SetNodes(BTreeMap::from([(*id, node)]))) })
        }
        MemberChange::Promote { id } => {
            if !view.nodes.contains_key(id) {
                return Err(MemberError::NotFound);
            }
            if view.voters.contains(id) {
                return Err(MemberError::NotLearner);
            }
            let matched = view.matched.get(id).copied().unwrap_or(0);
            if matched == 0 || (matched as f64) < view.last_index as f64 * PROMOTE_READY_SHARE {
                return Err(MemberError::LearnerNotReady);
            }
            // The learner counts as started: it has caught up.
            let started = 1 + view.voters.iter().filter(|v| view.started(**v)).count();
            if started < quorum(view.voters.len() + 1) {
                return Err(MemberError::NotEnoughStarted);
            }
            Ok(Plan { id: *id, step: view.voters_step(Some(*id), None, None) })
        }
        MemberChange::Publish { id, name, client_urls } => {
            let Some(old) = view.nodes.get(id) else { return Err(MemberError::NotFound) };
            let node = Member { name: name.clone(), client_urls: client_urls.clone(), ..old.clone() };
            Ok(Plan { id: *id, step: Step::Nodes(ChangeMembers::SetNodes(BTreeMap::from([(*id, node)]))) })
        }
    }
}

/// The leader's view now, or `None` when this member does not lead.
fn view(raft: &Raft<TypeConfig, StateMachine>) -> Option<(View, openraft::alias::StoredMembershipOf<TypeConfig>)> {
    let m = raft.metrics().borrow_watched().clone();
    let me = m.id;
    if m.current_leader != Some(me) || !m.state.is_leader() {
        return None;
    }
    let stored = (*m.membership_config).clone();
    let membership = stored.membership();
    let voters: BTreeSet<u64> = membership.get_joint_config().last().cloned().unwrap_or_default();
    let nodes: BTreeMap<u64, Member> = membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
    let last_index = m.last_log_index.unwrap_or(0);
    let mut matched: BTreeMap<u64, u64> = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, l)| (*id, l.as_ref().map_or(0, |l| l.index))).collect())
        .unwrap_or_default();
    matched.insert(me, last_index);
    let window = Duration::from_millis(raft.config().election_timeout_max);
    let mut active: BTreeSet<u64> = m
        .heartbeat
        .as_ref()
        .map(|h| {
            h.iter().filter(|(_, t)| t.as_ref().is_some_and(|t| t.elapsed() <= window)).map(|(id, _)| *id).collect()
        })
        .unwrap_or_default();
    active.insert(me);
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let token = raft.config().cluster_name.clone();
    Some((View { voters, nodes, matched, last_index, active, token, now_secs }, stored))
}

/// Run a membership change on this member (which the sender believes is the leader).
pub async fn change_locally(raft: &Raft<TypeConfig, StateMachine>, change: MemberChange) -> ForwardReply {
    let give_up = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        let Some((view, stored)) = view(raft) else {
            return ForwardReply::NotLeader { leader: raft.metrics().borrow_watched().current_leader };
        };
        let plan = match plan(&view, &change) {
            Ok(p) => p,
            Err(e) => return ForwardReply::Member(Err(e)),
        };
        let guard = Precondition::LastMembershipLogId { last_membership_log_id: *stored.log_id() };
        let res = match plan.step {
            Step::Nodes(change) => raft.change_membership_if(change, true, [guard]).await,
            Step::Voters { voters, nodes } => match Membership::new(vec![voters], nodes) {
                Ok(m) => raft.append_membership(m, openraft::EntryPayload::Blank, [guard]).await,
                Err(e) => return ForwardReply::Failed(format!("membership change: {e}")),
            },
        };
        let retry = match res {
            Ok(r) => {
                let members = match &r.membership {
                    Some(m) => {
                        let voters: BTreeSet<u64> = m.get_joint_config().last().cloned().unwrap_or_default();
                        m.nodes().map(|(id, n)| (*id, n.clone(), !voters.contains(id))).collect()
                    }
                    None => view.listed(),
                };
                let answer =
                    MemberAnswer { id: plan.id, members, term: r.log_id.leader_id.term, index: r.log_id.index };
                return ForwardReply::Member(Ok(answer));
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                return ForwardReply::NotLeader { leader: f.leader_id };
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => return ForwardReply::Unknown,
            // Another change got in first (or is still committing): check again against it.
            Err(RaftError::APIError(ClientWriteError::PreconditionFailed(e))) => e.to_string(),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                e @ (ChangeMembershipError::InProgress(_) | ChangeMembershipError::UncommittedLeaderLog(_)),
            ))) => e.to_string(),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::EmptyMembership(_),
            ))) => return ForwardReply::Member(Err(MemberError::NotEnoughStarted)),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::LearnerNotFound(_),
            ))) => return ForwardReply::Member(Err(MemberError::NotFound)),
            Err(e) => return ForwardReply::Failed(e.to_string()),
        };
        if tokio::time::Instant::now() >= give_up {
            return ForwardReply::Failed(format!("membership change kept being overtaken: {retry}"));
        }
        tracing::debug!(reason = %retry, "membership change retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, url: &str) -> Member {
        Member { name: name.into(), peer_urls: vec![url.into()], client_urls: Vec::new() }
    }

    /// Voters 1, 2, 3 (started), optionally learner 4 matched up to `learner_at`.
    fn view(learner_at: Option<u64>) -> View {
        let mut nodes: BTreeMap<u64, Member> =
            (1..=3).map(|i| (i, named(&format!("m{i}"), &format!("http://10.0.0.{i}:2380")))).collect();
        let mut matched: BTreeMap<u64, u64> = (1..=3).map(|i| (i, 100)).collect();
        if let Some(at) = learner_at {
            nodes.insert(4, named("", "http://10.0.0.4:2380"));
            matched.insert(4, at);
        }
        View {
            voters: BTreeSet::from([1, 2, 3]),
            nodes,
            matched,
            last_index: 100,
            active: BTreeSet::from([1, 2, 3, 4]),
            token: "t".into(),
            now_secs: 1_700_000_000,
        }
    }

    fn add(url: &str, learner: bool) -> MemberChange {
        MemberChange::Add { peer_urls: vec![url.into()], learner }
    }

    #[test]
    fn add_learner_then_promote_when_caught_up() {
        let p = plan(&view(None), &add("http://10.0.0.4:2380", true)).unwrap();
        assert_eq!(p.id, member::added_member_id(&["http://10.0.0.4:2380".into()], "t", 1_700_000_000));
        assert!(matches!(p.step, Step::Nodes(ChangeMembers::AddNodes(_))));
        assert_eq!(plan(&view(Some(10)), &MemberChange::Promote { id: 4 }), Err(MemberError::LearnerNotReady));
        assert_eq!(plan(&view(Some(0)), &MemberChange::Promote { id: 4 }), Err(MemberError::LearnerNotReady));
        let p = plan(&view(Some(95)), &MemberChange::Promote { id: 4 }).unwrap();
        let Step::Voters { voters, nodes } = p.step else { panic!("a promotion changes voters") };
        assert_eq!(voters, BTreeSet::from([1, 2, 3, 4]));
        assert_eq!(nodes.len(), 4);
    }

    #[test]
    fn etcds_refusals() {
        let v = view(Some(100));
        assert_eq!(plan(&v, &add("http://10.0.0.2:2380", false)), Err(MemberError::PeerUrlExists));
        assert_eq!(plan(&v, &add("http://10.0.0.5:2380", true)), Err(MemberError::TooManyLearners));
        assert!(plan(&v, &add("http://10.0.0.5:2380", false)).is_ok());
        assert_eq!(plan(&v, &MemberChange::Promote { id: 2 }), Err(MemberError::NotLearner));
        assert_eq!(plan(&v, &MemberChange::Promote { id: 9 }), Err(MemberError::NotFound));
        assert_eq!(plan(&v, &MemberChange::Remove { id: 9 }), Err(MemberError::NotFound));
        let update = MemberChange::Update { id: 1, peer_urls: vec!["http://10.0.0.3:2380".into()] };
        assert_eq!(plan(&v, &update), Err(MemberError::PeerUrlExists));
        // A member may keep its own URL among its new ones.
        let update =
            MemberChange::Update { id: 1, peer_urls: vec!["http://10.0.0.1:2380".into(), "http://h1:2380".into()] };
        assert!(matches!(plan(&v, &update).unwrap().step, Step::Nodes(ChangeMembers::SetNodes(_))));
    }

    #[test]
    fn quorum_of_started_voters() {
        let mut v = view(None);
        v.voters = BTreeSet::from([1]);
        v.nodes.retain(|id, _| *id == 1);
        // The last voter stays.
        assert_eq!(plan(&v, &MemberChange::Remove { id: 1 }), Err(MemberError::NotEnoughStarted));
        // A single member may add a second (unstarted) voter, not a third.
        let p = plan(&v, &add("http://10.0.0.2:2380", false)).unwrap();
        let Step::Voters { voters, nodes } = p.step else { panic!("adding a voter changes voters") };
        assert_eq!((voters.len(), nodes.len()), (2, 2));
        v.voters.insert(2);
        v.nodes.insert(2, named("", "http://10.0.0.2:2380"));
        assert_eq!(plan(&v, &add("http://10.0.0.3:2380", false)), Err(MemberError::NotEnoughStarted));
        // Removing the unstarted voter leaves the started one: allowed.
        assert!(plan(&v, &MemberChange::Remove { id: 2 }).is_ok());
        // Three started voters lose one: allowed; a learner always goes.
        let v = view(Some(0));
        let Step::Voters { voters, nodes } = plan(&v, &MemberChange::Remove { id: 3 }).unwrap().step else {
            panic!("removing a voter changes voters")
        };
        assert_eq!(voters, BTreeSet::from([1, 2]));
        assert!(!nodes.contains_key(&3) && nodes.contains_key(&4));
        let p = plan(&v, &MemberChange::Remove { id: 4 }).unwrap();
        assert_eq!(p.step, Step::Nodes(ChangeMembers::RemoveNodes([4].into())));
    }

    #[test]
    fn an_unreachable_voter_blocks_adds_and_removals_of_reachable_voters() {
        let mut v = view(None);
        v.active.remove(&3);
        assert_eq!(plan(&v, &add("http://10.0.0.5:2380", true)), Err(MemberError::Unhealthy));
        assert_eq!(plan(&v, &add("http://10.0.0.5:2380", false)), Err(MemberError::Unhealthy));
        assert_eq!(MemberError::Unhealthy.status().code(), tonic::Code::Unavailable);
        // Removing reachable 2 would leave 1 of 2 reachable; removing unreachable 3 is fine.
        assert_eq!(plan(&v, &MemberChange::Remove { id: 2 }), Err(MemberError::Unhealthy));
        assert!(plan(&v, &MemberChange::Remove { id: 3 }).is_ok());
        // Updates, promotions and learner removals are not held up.
        let update = MemberChange::Update { id: 3, peer_urls: vec!["http://10.0.0.9:2380".into()] };
        assert!(plan(&v, &update).is_ok());
    }

    #[test]
    fn urls_are_checked_and_named() {
        assert_eq!(peer_urls(&["http://10.0.0.9:2380/".into()]).unwrap(), vec!["http://10.0.0.9:2380".to_string()]);
        assert_eq!(peer_urls(&[]), Err(MemberError::BadUrl("no peer URL given".into())));
        let e = peer_urls(&["10.0.0.9:2380".into()]).unwrap_err();
        assert!(matches!(&e, MemberError::BadUrl(why) if why.contains("10.0.0.9:2380")), "{e}");
        assert_eq!(e.status().code(), tonic::Code::InvalidArgument);
        let e = peer_urls(&["http://10.0.0.9".into()]).unwrap_err().to_string();
        assert!(e.contains("given member URLs are invalid") && e.contains("no port"), "{e}");
    }
}
