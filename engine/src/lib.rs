//! # conflux-engine
//!
//! The Raft log engine under conflux: an append-only, segmented log with mmap'd dense indexes and
//! group commit, implementing openraft's [`RaftLogStorage`](openraft::storage::RaftLogStorage)
//! for any [`RaftTypeConfig`](openraft::RaftTypeConfig) through a [`RaftCodec`].
//!
//! - File formats, byte by byte, and the recovery steps: `docs/format.md`.
//! - Threads, queues and the life of an append: `docs/architecture.md`.
//!
//! ```no_run
//! # use conflux_engine::{Config, LogStore, PostcardCodec};
//! # openraft::declare_raft_types!(pub TC: D = String, R = String);
//! let store: LogStore<TC, PostcardCodec<TC>> = LogStore::open("/var/lib/conflux", Config::default())?;
//! # Ok::<(), conflux_engine::Error>(())
//! ```
//!
//! All file access goes through the [`io`] seam; [`io::fault`] injects errors and simulates
//! power loss for tests. [`tools`] holds the `dump` and `verify` implementations behind
//! `conflux dump` and `conflux verify`.
//!
//! There are no cargo features yet.

pub mod codec;
pub mod config;
pub mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
pub mod snapshot;
pub mod stats;
pub mod tools;

mod buffers;
mod group_commit;
mod janitor;
mod recovery;
mod scan;
mod segment;
mod shared;
mod store;
mod tail;

pub use codec::{CodecError, PostcardCodec, RaftCodec};
pub use config::{Config, Preallocate};
pub use error::{CorruptionKind, Error, Result};
pub use recovery::{LOCK_FILE, LOG_DIR, META_FILE};
pub use stats::{Stats, StatsSnapshot};
pub use store::{LogReader, LogStore};
