//! Errors the store answers with. Messages are etcd's, word for word, so clients that match on
//! them (and operators' scripts) keep working.

use serde::{Deserialize, Serialize};

/// A request the store refuses. Applying a refused request changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MvccError {
    /// The revision asked for was compacted away.
    #[error("mvcc: required revision has been compacted")]
    Compacted {
        /// The compacted revision (etcd's `compact_revision`).
        compacted: i64,
    },
    /// The revision asked for is after the current one.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A key was empty.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A transaction writes one key twice, or puts a key it also deletes.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A transaction holds more operations than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A lease that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant named a lease id already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A grant asked for a TTL above [`crate::mvcc::MAX_LEASE_TTL`].
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// The NOSPACE alarm is raised: requests that add data are refused.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is raised: writes are refused.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
}
