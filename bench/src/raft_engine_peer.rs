//! tikv's [`raft-engine`](https://github.com/tikv/raft-engine) 0.4 as a peer, measured in the same
//! criterion groups as conflux (feature `peers`): `append/.../io=raft-engine`, `read/raft-engine/...`.
//!
//! # Configuration
//!
//! [`config`] is raft-engine's `Config::default()` with these fields set:
//!
//! | field                         | value          | why                                             |
//! |-------------------------------|----------------|-------------------------------------------------|
//! | `dir`                         | under [`crate::temp_dir`] | the data disk, as conflux's stores   |
//! | `batch_compression_threshold` | 0              | no LZ4: conflux does not compress either        |
//! | `target_file_size`            | 128 MiB        | the default, stated                             |
//! | `purge_threshold`             | 256 MiB        | two files, so [`RaftEnginePeer::recycle`] (untimed) can purge, as conflux's benches purge past two segments |
//!
//! Everything else is the default: `format_version` 2, `enable_log_recycle` true (purged files are
//! reused), `recovery_mode` tolerate-tail-corruption, `bytes_per_sync` unset, no memory limit.
//! Every timed write is `Engine::write(batch, sync = true)`: the write group's leader `fdatasync`s
//! the log file before any writer of the group returns.
//!
//! # Entries
//!
//! raft-engine stores protobuf 2 messages. [`PeerEntry`] is the part of `eraftpb::Entry` a normal
//! entry uses (term = 2, index = 3, data = 4: the same field numbers), encoded by hand because
//! generating it would need `protoc`. The payload is written once, as bytes.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use protobuf::rt::{bytes_size, read_singular_proto3_bytes_into, read_unknown_or_skip_group, value_size};
use protobuf::wire_format::WireType;
use protobuf::{CachedSize, CodedInputStream, CodedOutputStream, ProtobufResult, UnknownFields};
use raft_engine::internals::LogQueue;
use raft_engine::{Config, Engine, MessageExt, ReadableSize};

pub use raft_engine::LogBatch;

/// The region (raft group) id the single-group benchmarks write to.
pub const REGION: u64 = 1;

/// raft-engine's `target_file_size`: its default, 128 MiB, stated.
pub const TARGET_FILE_SIZE: u64 = 128 << 20;

/// raft-engine's `purge_threshold` here: two files of [`TARGET_FILE_SIZE`].
pub const PURGE_THRESHOLD: u64 = 2 * TARGET_FILE_SIZE;

/// The raft-engine configuration the suites use (see the module docs): defaults, except `dir`, no
/// compression and a purge threshold low enough for the benchmarks' untimed purges to take effect.
///
/// # Panics
/// When `dir` is not valid UTF-8 (raft-engine takes it as a `String`).
pub fn config(dir: &Path) -> Config {
    Config {
        dir: dir.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", dir.display())).to_owned(),
        batch_compression_threshold: ReadableSize(0),
        target_file_size: ReadableSize(TARGET_FILE_SIZE),
        purge_threshold: ReadableSize(PURGE_THRESHOLD),
        ..Config::default()
    }
}

/// A normal raft entry as raft-engine stores it: `eraftpb::Entry`'s term, index and data fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerEntry {
    /// Raft term (always 1 here).
    pub term: u64,
    /// Raft log index.
    pub index: u64,
    /// Application payload.
    pub data: Vec<u8>,
    unknown_fields: UnknownFields,
    cached_size: CachedSize,
}

impl PeerEntry {
    /// An entry at `index`, term 1, carrying `data`.
    pub fn new(index: u64, data: Vec<u8>) -> PeerEntry {
        PeerEntry { term: 1, index, data, ..PeerEntry::default() }
    }
}

/// `count` entries of `data`, indexes `first..first + count`.
pub fn entries(first: u64, count: u64, data: &[u8]) -> Vec<PeerEntry> {
    (first..first + count).map(|i| PeerEntry::new(i, data.to_vec())).collect()
}

const TERM_FIELD: u32 = 2;
const INDEX_FIELD: u32 = 3;
const DATA_FIELD: u32 = 4;

impl protobuf::Clear for PeerEntry {
    fn clear(&mut self) {
        self.term = 0;
        self.index = 0;
        self.data.clear();
        self.unknown_fields.clear();
    }
}

// What protobuf-codegen 2 emits for these three proto3 fields, minus reflection (raft-engine never
// asks for a descriptor; the trait's default `descriptor_static` panics, as for lite-runtime types).
impl protobuf::Message for PeerEntry {
    fn descriptor(&self) -> &'static protobuf::reflect::MessageDescriptor {
        Self::descriptor_static()
    }

    fn is_initialized(&self) -> bool {
        true
    }

    fn merge_from(&mut self, is: &mut CodedInputStream<'_>) -> ProtobufResult<()> {
        while !is.eof()? {
            let (field, wire_type) = is.read_tag_unpack()?;
            match field {
                TERM_FIELD | INDEX_FIELD => {
                    if wire_type != WireType::WireTypeVarint {
                        return Err(protobuf::rt::unexpected_wire_type(wire_type));
                    }
                    let v = is.read_uint64()?;
                    if field == TERM_FIELD {
                        self.term = v;
                    } else {
                        self.index = v;
                    }
                }
                DATA_FIELD => read_singular_proto3_bytes_into(wire_type, is, &mut self.data)?,
                _ => read_unknown_or_skip_group(field, wire_type, is, &mut self.unknown_fields)?,
            }
        }
        Ok(())
    }

    fn write_to_with_cached_sizes(&self, os: &mut CodedOutputStream<'_>) -> ProtobufResult<()> {
        if self.term != 0 {
            os.write_uint64(TERM_FIELD, self.term)?;
        }
        if self.index != 0 {
            os.write_uint64(INDEX_FIELD, self.index)?;
        }
        if !self.data.is_empty() {
            os.write_bytes(DATA_FIELD, &self.data)?;
        }
        os.write_unknown_fields(&self.unknown_fields)
    }

    fn compute_size(&self) -> u32 {
        let mut size = 0;
        if self.term != 0 {
            size += value_size(TERM_FIELD, self.term, WireType::WireTypeVarint);
        }
        if self.index != 0 {
            size += value_size(INDEX_FIELD, self.index, WireType::WireTypeVarint);
        }
        if !self.data.is_empty() {
            size += bytes_size(DATA_FIELD, &self.data);
        }
        size += protobuf::rt::unknown_fields_size(&self.unknown_fields);
        self.cached_size.set(size);
        size
    }

    fn get_cached_size(&self) -> u32 {
        self.cached_size.get()
    }

    fn get_unknown_fields(&self) -> &UnknownFields {
        &self.unknown_fields
    }

    fn mut_unknown_fields(&mut self) -> &mut UnknownFields {
        &mut self.unknown_fields
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn new() -> PeerEntry {
        PeerEntry::default()
    }

    fn default_instance() -> &'static PeerEntry {
        static DEFAULT: std::sync::OnceLock<PeerEntry> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(PeerEntry::default)
    }
}

impl MessageExt for PeerEntry {
    type Entry = PeerEntry;

    fn index(e: &PeerEntry) -> u64 {
        e.index
    }
}

/// An open raft-engine [`Engine`] (shared: clones write to the same engine from other threads).
#[derive(Clone)]
pub struct RaftEnginePeer {
    engine: Arc<Engine>,
}

impl RaftEnginePeer {
    /// Open (or create) an engine in `dir` with [`config`].
    ///
    /// # Panics
    /// When raft-engine fails to open, with the path.
    pub fn open(dir: &Path) -> RaftEnginePeer {
        let engine = Engine::open(config(dir)).unwrap_or_else(|e| panic!("open raft-engine {}: {e}", dir.display()));
        RaftEnginePeer { engine: Arc::new(engine) }
    }

    /// Add `entries` of `region` to `batch` (protobuf-encoding them) and write it synced: returns
    /// once the write group it joined has been `fdatasync`ed and the entries are in the memtable.
    /// `batch` is left empty, ready for reuse.
    ///
    /// # Errors
    /// raft-engine's error, from encoding or from the write.
    pub fn append(&self, batch: &mut LogBatch, region: u64, entries: &[PeerEntry]) -> raft_engine::Result<usize> {
        batch.add_entries::<PeerEntry>(region, entries)?;
        self.engine.write(batch, true)
    }

    /// Entries `range` of `region`, read back through raft-engine's memtable index and log file.
    ///
    /// # Panics
    /// When raft-engine fails, or the range is not all there.
    pub fn read(&self, region: u64, range: Range<u64>) -> Vec<PeerEntry> {
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let n = self
            .engine
            .fetch_entries_to::<PeerEntry>(region, range.start, range.end, None, &mut out)
            .unwrap_or_else(|e| panic!("raft-engine read {region}/{range:?}: {e}"));
        assert_eq!(n as u64, range.end - range.start, "raft-engine read {region}/{range:?}: short");
        out
    }

    /// Write `count` entries of `data` to `region` from index `first`, `per_write` entries per
    /// [`LogBatch`] (each one block in the log file), then sync once. The block layout is what
    /// later reads see; per-write syncs would not change it, only slow the fill down.
    ///
    /// # Panics
    /// When raft-engine fails.
    pub fn fill(&self, region: u64, first: u64, count: u64, data: &[u8], per_write: u64) {
        let mut batch = LogBatch::default();
        let mut i = first;
        while i < first + count {
            let n = per_write.min(first + count - i);
            batch.add_entries::<PeerEntry>(region, &entries(i, n, data)).expect("raft-engine encode");
            self.engine.write(&mut batch, false).expect("raft-engine write");
            i += n;
        }
        self.engine.sync().expect("raft-engine sync");
    }

    /// Keep an append benchmark in a steady state (call it outside the timed region): once the log
    /// files exceed [`PURGE_THRESHOLD`], compact `regions` below `next` and let raft-engine purge
    /// (recycle) the files that no longer hold live entries. The counterpart of [`crate::recycle`].
    ///
    /// # Panics
    /// When the purge fails.
    pub fn recycle(&self, regions: Range<u64>, next: u64) {
        // raft-engine's own test (`needs_rewrite_log_files`): append-queue files × target size.
        // (`Engine::get_used_size` would also count the rewrite queue's always-open file.)
        let (first, last) = self.engine.file_span(LogQueue::Append);
        if (last - first + 1) * TARGET_FILE_SIZE > PURGE_THRESHOLD {
            for region in regions {
                self.engine.compact_to(region, next);
            }
            self.engine.purge_expired_files().expect("raft-engine purge");
        }
    }
}

/// Process-wide raft-engine write counters, from its prometheus metrics (the default registry).
/// Subtract two snapshots to see how one benchmark's writes were grouped.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerStats {
    /// `Engine::write` calls that completed (including the benches' untimed compactions).
    pub writes: u64,
    /// Write groups (one leader each; a synced group is one `fdatasync`).
    pub groups: u64,
    /// `fdatasync` calls on log files (write groups, plus new files' headers).
    pub syncs: u64,
    /// Seconds spent in those `fdatasync` calls.
    pub sync_seconds: f64,
}

impl PeerStats {
    /// The counters now.
    pub fn snapshot() -> PeerStats {
        let mut s = PeerStats::default();
        for family in prometheus::default_registry().gather() {
            let Some(h) = family.get_metric().first().map(|m| m.get_histogram()) else { continue };
            match family.get_name() {
                "raft_engine_write_duration_seconds" => s.writes = h.get_sample_count(),
                "raft_engine_write_leader_duration_seconds" => s.groups = h.get_sample_count(),
                "raft_engine_sync_log_duration_seconds" => {
                    s.syncs = h.get_sample_count();
                    s.sync_seconds = h.get_sample_sum();
                }
                _ => {}
            }
        }
        s
    }

    /// One line for stderr: what happened between `before` and `self`.
    pub fn report_since(&self, before: &PeerStats) -> String {
        let writes = self.writes - before.writes;
        let groups = self.groups - before.groups;
        let syncs = self.syncs - before.syncs;
        let sync_seconds = self.sync_seconds - before.sync_seconds;
        format!(
            "{writes} writes, {groups} write groups ({:.2} writes/group), {syncs} fdatasyncs, mean fdatasync {:.3} ms",
            writes as f64 / groups.max(1) as f64,
            sync_seconds * 1e3 / syncs.max(1) as f64,
        )
    }
}
