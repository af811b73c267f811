//! The engine's one error type.

use std::io;
use std::path::PathBuf;

/// Everything the engine can report. Variants name the file (and offset, where one applies) so an
/// operator can find the bytes with `conflux dump`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call on a file failed.
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        /// What was being done ("open", "write", "fdatasync", ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The error the OS returned.
        #[source]
        source: io::Error,
    },

    /// Another process (or another store in this process) holds the data directory's lock.
    #[error("data directory {path} is locked by another process (lock file {lock})", path = path.display(), lock = lock.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The lock file that is held.
        lock: PathBuf,
    },

    /// A file in the data directory that the engine did not write.
    #[error("foreign file in data directory: {path} (not a conflux log file; move it away)", path = path.display())]
    ForeignFile {
        /// The unexpected file.
        path: PathBuf,
    },

    /// A file starts with the wrong magic bytes: it is not a conflux file of the expected kind.
    #[error("{path}: bad magic {found:02x?}, expected {expected:?} (not a conflux {kind} file)", path = path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What kind of file it should be ("segment", "index", "meta").
        kind: &'static str,
        /// The magic expected.
        expected: &'static str,
        /// The bytes found.
        found: Vec<u8>,
    },

    /// A file was written by a format version this build does not read.
    #[error("{path}: format version {found} is not supported (this build reads version {supported})", path = path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file's header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// Bytes that fail their checksum or framing checks: data damaged at rest.
    #[error("corruption in {file} at offset {offset}: {reason}", file = file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged header or record.
        offset: u64,
        /// What check failed.
        reason: CorruptionKind,
    },

    /// An entry's encoded size is over the configured maximum; nothing was written.
    #[error("entry {index} encodes to {size} bytes, more than the maximum of {max} bytes (max_entry_bytes)")]
    EntryTooLarge {
        /// Raft index of the entry.
        index: u64,
        /// Its encoded size.
        size: usize,
        /// The configured limit.
        max: usize,
    },

    /// The caller appended an entry at an index that does not follow the log.
    #[error("append at index {got} does not follow the log (expected index {expected})")]
    NonContiguousAppend {
        /// The next index the log expects.
        expected: u64,
        /// The index that was appended.
        got: u64,
    },

    /// The entry codec could not encode or decode.
    #[error("codec: {0}")]
    Codec(#[from] crate::codec::CodecError),

    /// An earlier write or fdatasync failed; the store refuses all further writes because the
    /// kernel may have dropped the dirty pages. Reopen the store to recover from what is on disk.
    #[error("store is poisoned by an earlier I/O failure: {0}")]
    Poisoned(String),

    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// The store's background threads have stopped.
    #[error("the store's writer thread has stopped")]
    WriterGone,
}

/// The check that failed when the engine reports [`Error::Corruption`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptionKind {
    /// The stored crc32c does not match the bytes.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        /// Checksum in the file.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// A record's length field is zero, or runs past the end of the segment or the configured maximum.
    #[error("record length {len} is impossible here ({why})")]
    BadLength {
        /// The length field.
        len: u64,
        /// Why it is impossible.
        why: &'static str,
    },
    /// The record holds a different Raft index than its position says.
    #[error("record holds index {found}, expected {expected}")]
    IndexMismatch {
        /// Index expected at this position.
        expected: u64,
        /// Index stored in the record.
        found: u64,
    },
    /// The record does not continue the checksum chain of the record before it.
    #[error("record does not chain to the previous record (prev_crc {found:#010x}, expected {expected:#010x})")]
    BrokenChain {
        /// The checksum of the previous record.
        expected: u32,
        /// The prev_crc stored in this record.
        found: u32,
    },
    /// An unknown record kind.
    #[error("unknown record kind {0}")]
    BadKind(u32),
    /// A sealed segment ends before the entry the next segment's name says follows it.
    #[error("segment ends at index {found}, but the next segment starts at {expected}: entries are missing")]
    MissingEntries {
        /// The first index the next segment holds.
        expected: u64,
        /// One past the last whole record found.
        found: u64,
    },
    /// The header's fields contradict the file's name or size.
    #[error("header field {field} is {found}, expected {expected}")]
    HeaderMismatch {
        /// The field.
        field: &'static str,
        /// The value expected.
        expected: u64,
        /// The value found.
        found: u64,
    },
    /// The payload did not decode as an entry.
    #[error("payload does not decode: {0}")]
    Undecodable(String),
    /// The file is too short to hold its header.
    #[error("file too short ({len} bytes) to hold a header")]
    Truncated {
        /// The file's length.
        len: u64,
    },
    /// Neither meta slot holds a valid record.
    #[error("no valid meta slot")]
    NoValidMeta,
    /// The log ends before an entry the meta file records as committed. Meta is written after
    /// the records before it are synced, so that entry's record was durable here: what looks
    /// like a torn tail (or a torn newest header) is damage.
    #[error(
        "the log ends at index {found}, but the meta file records entries up to {committed} as committed \
         (they were synced here, so this is damage, not a torn tail)"
    )]
    CommittedMissing {
        /// The committed index in the meta file.
        committed: u64,
        /// One past the last whole record found.
        found: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn corruption(file: impl Into<PathBuf>, offset: u64, reason: CorruptionKind) -> Self {
        Error::Corruption { file: file.into(), offset, reason }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io { source, .. } => source.kind(),
            Error::Corruption { .. } | Error::BadMagic { .. } | Error::UnsupportedVersion { .. } => {
                io::ErrorKind::InvalidData
            }
            Error::EntryTooLarge { .. } | Error::NonContiguousAppend { .. } | Error::InvalidConfig(_) => {
                io::ErrorKind::InvalidInput
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Shorthand for the engine's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
