//! The node's openraft type configuration and the codec its log and snapshots use.

use serde::{Deserialize, Serialize};

use crate::mvcc::{MvccError, WriteRequest, WriteResponse};

/// What applying a log entry answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyResult {
    /// A client write: its answer, or etcd's error.
    Write(Result<WriteResponse, MvccError>),
    /// A blank or membership entry; the store's revision after it.
    Noop {
        /// Revision.
        revision: i64,
    },
}

/// What the cluster knows of a member (openraft's node type): etcd's `Member` without the id,
/// which is the Raft node id. Kept in membership entries, so every member and every snapshot
/// knows every member's URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `--name`.
    pub name: String,
    /// URLs peers reach it on (`--initial-advertise-peer-urls`).
    pub peer_urls: Vec<String>,
    /// URLs clients reach it on (`--advertise-client-urls`); empty until the member has started
    /// and published them.
    pub client_urls: Vec<String>,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

openraft::declare_raft_types!(
    /// conflux's Raft types: entries carry etcd write requests.
    pub TypeConfig:
        D = WriteRequest,
        R = ApplyResult,
        NodeId = u64,
        Node = Member,
);

/// The codec for log entries, votes, log ids and snapshot metadata.
pub type Codec = conflux_engine::PostcardCodec<TypeConfig>;
/// The node's log store.
pub type LogStore = conflux_engine::LogStore<TypeConfig, Codec>;
/// A log id.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// Membership as stored with its log id.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A log entry.
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
