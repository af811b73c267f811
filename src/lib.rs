//! # conflux
//!
//! A Raft storage node speaking the etcd v3 API, on its own segmented log engine
//! (`conflux-engine`). This crate holds the node: the MVCC state machine ([`mvcc`],
//! [`state_machine`]), its Raft type configuration ([`types`]), and the operator tools of the
//! `conflux` binary. Design: `docs/architecture.md`; file formats: `docs/format.md`.
#![forbid(unsafe_code)]

pub mod backup;
pub mod compactor;
#[cfg(feature = "failpoints")]
pub mod failpoints;
#[doc(hidden)]
pub mod fuzzing;
pub mod mvcc;
pub mod node;
pub mod state_machine;
pub mod types;
pub mod watch_hub;
