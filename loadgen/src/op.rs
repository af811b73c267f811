//! The operations loadgen issues and how each one ended.

use serde::{Deserialize, Serialize};

/// An operation type: what a report groups latencies by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Put of an existing (or any) key.
    Put,
    /// Range of one key.
    Get,
    /// DeleteRange of one key.
    Delete,
    /// Compare-and-swap: a Txn that puts a key if its mod revision is the one last read.
    Txn,
    /// Range of `scan_length` keys from a key (YCSB scan).
    Scan,
    /// Put of a new key, past the loaded key space (YCSB insert).
    Insert,
    /// Range then Put of the same key (YCSB read-modify-write), timed as one operation.
    #[serde(rename = "rmw")]
    ReadModifyWrite,
    /// Time from a Put to its Watch event.
    Watch,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 8] = [
        OpKind::Put,
        OpKind::Get,
        OpKind::Delete,
        OpKind::Txn,
        OpKind::Scan,
        OpKind::Insert,
        OpKind::ReadModifyWrite,
        OpKind::Watch,
    ];

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::Delete => "delete",
            OpKind::Txn => "txn",
            OpKind::Scan => "scan",
            OpKind::Insert => "insert",
            OpKind::ReadModifyWrite => "rmw",
            OpKind::Watch => "watch",
        }
    }

    /// Parse a name as [`OpKind::as_str`] prints it (`range` is accepted for `get`).
    pub fn parse(s: &str) -> Option<OpKind> {
        Some(match s {
            "put" | "update" => OpKind::Put,
            "get" | "range" | "read" => OpKind::Get,
            "delete" | "del" => OpKind::Delete,
            "txn" | "cas" => OpKind::Txn,
            "scan" => OpKind::Scan,
            "insert" => OpKind::Insert,
            "rmw" | "read-modify-write" => OpKind::ReadModifyWrite,
            "watch" => OpKind::Watch,
            _ => return None,
        })
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operation to issue, fully chosen (keys and values made) before it is timed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Put `key` = `value`.
    Put {
        /// Key.
        key: bytes::Bytes,
        /// Value.
        value: bytes::Bytes,
    },
    /// Get `key`.
    Get {
        /// Key.
        key: bytes::Bytes,
    },
    /// Delete `key`.
    Delete {
        /// Key.
        key: bytes::Bytes,
    },
    /// Read `key`'s mod revision, then put `value` if it is unchanged (one Range + one Txn;
    /// timed as one operation; a failed compare is a success with `succeeded=false`).
    Txn {
        /// Key.
        key: bytes::Bytes,
        /// Value.
        value: bytes::Bytes,
    },
    /// Range of at most `limit` keys from `key`.
    Scan {
        /// First key.
        key: bytes::Bytes,
        /// Most keys.
        limit: i64,
    },
    /// Put of a new key.
    Insert {
        /// Key.
        key: bytes::Bytes,
        /// Value.
        value: bytes::Bytes,
    },
    /// Get `key`, then put `value`.
    ReadModifyWrite {
        /// Key.
        key: bytes::Bytes,
        /// Value.
        value: bytes::Bytes,
    },
    /// Put `key` = `value` and time until a watcher sees it.
    Watch {
        /// Key.
        key: bytes::Bytes,
        /// Value.
        value: bytes::Bytes,
    },
}

impl Op {
    /// Its kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Put { .. } => OpKind::Put,
            Op::Get { .. } => OpKind::Get,
            Op::Delete { .. } => OpKind::Delete,
            Op::Txn { .. } => OpKind::Txn,
            Op::Scan { .. } => OpKind::Scan,
            Op::Insert { .. } => OpKind::Insert,
            Op::ReadModifyWrite { .. } => OpKind::ReadModifyWrite,
            Op::Watch { .. } => OpKind::Watch,
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The server answered with success.
    Ok,
    /// The server (or the transport) answered with this gRPC status code name (`Unavailable`,
    /// `DeadlineExceeded`, ...).
    Error(String),
}
