//! Backups: the byte stream the Maintenance `Snapshot` RPC sends (what `etcdctl snapshot save`
//! writes to a file) and `conflux restore`, which builds a new member's data directory from such a
//! file. The stream is the member's newest snapshot file (the engine's container around the
//! store's body), zero-padded to a multiple of 512 bytes, then the SHA-256 of everything before
//! it: etcd's integrity rule, which `etcdctl snapshot restore` and `conflux restore` check.
//! Byte by byte: `docs/format.md`, "Backup stream and file"; operating it: `docs/operations.md`,
//! "Backup and restore".

pub mod framing;
pub mod restore;

pub use restore::{RestoreError, RestoreOptions, RestoreReport, restore};
