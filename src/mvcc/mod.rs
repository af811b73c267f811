//! The MVCC key-value store: etcd v3's data model (a global revision; per key its create and mod
//! revisions, version, value and lease; deletes as tombstones until compaction), lock-free for
//! readers. The design is in `docs/architecture.md#state-machine`.

pub mod alarm;
mod compact;
mod error;
pub mod event;
mod hash;
mod lease;
mod read;
pub mod request;
pub mod snapshot;
mod store;
mod write;

pub use alarm::{AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, quota_cost};
pub use error::MvccError;
pub use event::{Event, EventKind};
pub use hash::HashKv;
pub use lease::{LeaseInfo, MAX_LEASE_TTL};
pub use request::*;
pub use store::{INITIAL_REVISION, Store};
pub use write::DEFAULT_MAX_TXN_OPS;
