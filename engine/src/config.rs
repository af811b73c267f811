//! Engine configuration.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::{Io, StdIo};

/// How a new segment's space is reserved before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocate {
    /// `fallocate`: blocks reserved, extents unwritten.
    Fallocate,
    /// Blocks written with zeros once, in the background, so appends never convert extents.
    ZeroFill,
}

/// Options for [`crate::LogStore::open`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Size of each segment file, header included. Default 64 MiB.
    pub segment_bytes: u64,
    /// Largest encoded entry accepted; larger ones are refused before anything is written.
    /// Default 16 MiB. Must fit in a segment.
    pub max_entry_bytes: usize,
    /// Bytes of recent entries kept decoded in memory for readers (entries not yet durable are
    /// always kept, whatever this says). Default 64 MiB.
    pub tail_cache_bytes: usize,
    /// Most bytes one group commit writes before it syncs and completes callbacks. Default 16 MiB.
    pub max_batch_bytes: usize,
    /// A large append is encoded into buffers of about this many bytes and handed to the writer
    /// one buffer at a time, so the writer copies and starts writing the first while the caller
    /// checksums the next. Default 1 MiB.
    pub append_chunk_bytes: usize,
    /// About how many bytes of entries one bounded read returns (`limited_get_log_entries`,
    /// each step of `entries_stream`). Default 4 MiB.
    pub read_batch_bytes: usize,
    /// How new segments are preallocated.
    pub preallocate: Preallocate,
    /// The I/O backend (the seam tests plug faults into).
    pub io: Arc<dyn Io>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segment_bytes: 64 << 20,
            max_entry_bytes: 16 << 20,
            tail_cache_bytes: 64 << 20,
            max_batch_bytes: 16 << 20,
            append_chunk_bytes: 1 << 20,
            read_batch_bytes: 4 << 20,
            preallocate: Preallocate::Fallocate,
            io: Arc::new(StdIo),
        }
    }
}

impl Config {
    /// Check the values against each other.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field that is out of range.
    pub fn validate(&self) -> Result<()> {
        let min_seg = 4096;
        if self.segment_bytes < min_seg || !self.segment_bytes.is_multiple_of(8) {
            return Err(Error::InvalidConfig(format!(
                "segment_bytes = {} must be a multiple of 8 and at least {min_seg}",
                self.segment_bytes
            )));
        }
        if self.segment_bytes > u32::MAX as u64 * 8 {
            return Err(Error::InvalidConfig(format!("segment_bytes = {} is too large", self.segment_bytes)));
        }
        let room = self.segment_bytes - crate::format::segment::HEADER_LEN as u64;
        if self.max_entry_bytes == 0 || crate::format::record::framed_len(self.max_entry_bytes) > room {
            return Err(Error::InvalidConfig(format!(
                "max_entry_bytes = {} must be at least 1 and fit in one segment (segment_bytes = {})",
                self.max_entry_bytes, self.segment_bytes
            )));
        }
        if self.append_chunk_bytes == 0 {
            return Err(Error::InvalidConfig("append_chunk_bytes must be at least 1".into()));
        }
        if self.max_entry_bytes > u32::MAX as usize - 8 {
            return Err(Error::InvalidConfig(format!("max_entry_bytes = {} is too large", self.max_entry_bytes)));
        }
        Ok(())
    }
}
