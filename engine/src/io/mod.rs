//! The I/O seam: every file, directory and mmap operation the engine performs goes through [`Io`]
//! and [`IoFile`], so tests can inject errors, short writes and power loss, and the io_uring
//! backend can take over the write path, without the engine noticing.
//!
//! Two implementations live here: [`StdIo`] (plain `pwritev` + `fdatasync`) and [`fault::FaultIo`]
//! (wraps another, injects faults, simulates losing what was not fdatasync'd).

pub mod fault;
mod std_io;
pub mod uring;

use std::fmt;
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use std_io::StdIo;
pub use uring::UringIo;

/// Which backend writes the log: `io = auto | uring | sync` in configuration and on the command
/// lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// Probe io_uring and use the backend measured faster here (see [`AUTO_PREFERS_URING`]),
    /// falling back to `sync` with one log line saying why when io_uring is unavailable.
    #[default]
    Auto,
    /// io_uring; fails where it is unavailable.
    Uring,
    /// `pwritev` + `fdatasync`.
    Sync,
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoMode::Auto),
            "uring" => Ok(IoMode::Uring),
            "sync" => Ok(IoMode::Sync),
            other => Err(format!("unknown I/O backend {other:?}: expected auto, uring or sync")),
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoMode::Auto => "auto",
            IoMode::Uring => "uring",
            IoMode::Sync => "sync",
        })
    }
}

/// Whether `auto` takes io_uring when it is available. Decided by the `append` benchmarks
/// (`io=uring` beside `io=sync`); see `docs/decisions.md`.
pub const AUTO_PREFERS_URING: bool = false;

/// The backend `mode` asks for, and which one it is (`Uring` or `Sync`).
///
/// # Errors
/// `uring` where io_uring is unavailable, with the reason.
pub fn backend(mode: IoMode) -> Result<(Arc<dyn Io>, IoMode), crate::Error> {
    backend_with(mode, Path::new(uring::IO_URING_DISABLED))
}

/// [`backend`], reading io_uring's sysctl from `disabled_path` (tests point it elsewhere to
/// force the probe to fail).
///
/// # Errors
/// `uring` where io_uring is unavailable, with the reason.
pub fn backend_with(mode: IoMode, disabled_path: &Path) -> Result<(Arc<dyn Io>, IoMode), crate::Error> {
    match mode {
        IoMode::Sync => Ok((Arc::new(StdIo), IoMode::Sync)),
        IoMode::Uring => match uring::probe(disabled_path) {
            Ok(()) => Ok((Arc::new(UringIo), IoMode::Uring)),
            Err(why) => Err(crate::Error::InvalidConfig(format!("io = uring, but io_uring is unavailable: {why}"))),
        },
        IoMode::Auto => match uring::probe(disabled_path) {
            Ok(()) if AUTO_PREFERS_URING => Ok((Arc::new(UringIo), IoMode::Uring)),
            Ok(()) => {
                tracing::info!("io = auto: io_uring is available; using sync, measured faster for appends here");
                Ok((Arc::new(StdIo), IoMode::Sync))
            }
            Err(why) => {
                tracing::warn!(reason = %why, "io = auto: io_uring is unavailable; using sync");
                Ok((Arc::new(StdIo), IoMode::Sync))
            }
        },
    }
}

/// A read-only memory map handed out by [`IoFile::map`].
pub type Map = memmap2::Mmap;
/// A writable memory map handed out by [`IoFile::map_raw`].
pub type MapRaw = memmap2::MmapRaw;

/// File-system operations the engine needs.
pub trait Io: Send + Sync + fmt::Debug + 'static {
    /// Open `path` for reading and writing, creating it when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>>;
    /// Open `path` read-only (the dump and verify tools).
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn IoFile>>;
    /// Rename a file (atomic on POSIX file systems; durable after [`Io::sync_dir`]).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Make creations, renames and removals in directory `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Create a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The entries of a directory (full paths), in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
}

/// One open file.
#[expect(clippy::len_without_is_empty, reason = "a file's length is an I/O call; emptiness is never asked")]
pub trait IoFile: Send + Sync + fmt::Debug {
    /// Write `bufs` in order at `offset`; may write less than all of them (a short write).
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize>;
    /// Read into `buf` from `offset`; returns how many bytes were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// Start writing the dirty pages of `[offset, offset + len)` to the device without waiting
    /// (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`). A hint that makes a later
    /// [`IoFile::sync_data`] shorter; it makes nothing durable. The default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Reserve blocks so the file is at least `len` bytes long (fallocate).
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Set the file's length.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Map the whole file read-only.
    fn map(&self) -> io::Result<Map>;
    /// Map the whole file read-write (shared), as a raw pointer: writers and readers go through atomics.
    fn map_raw(&self) -> io::Result<MapRaw>;
    /// Take an exclusive advisory lock without waiting; `false` when someone else holds it.
    fn try_lock(&self) -> io::Result<bool>;
}

/// Write all of `bufs` at `offset`, continuing after short writes.
pub fn write_all_vectored_at(file: &dyn IoFile, bufs: &[IoSlice<'_>], mut offset: u64) -> io::Result<()> {
    // IOV_MAX on Linux.
    const MAX_IOV: usize = 1024;
    let mut idx = 0;
    let mut skip = 0usize; // bytes of bufs[idx] already written
    while idx < bufs.len() {
        let end = (idx + MAX_IOV).min(bufs.len());
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(end - idx);
        slices.push(IoSlice::new(&bufs[idx][skip..]));
        slices.extend(bufs[idx + 1..end].iter().map(|b| IoSlice::new(b)));
        let mut n = file.write_vectored_at(&slices, offset)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes"));
        }
        offset += n as u64;
        // Advance over what was written.
        while n > 0 && idx < bufs.len() {
            let left = bufs[idx].len() - skip;
            if n >= left {
                n -= left;
                idx += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
        while idx < bufs.len() && bufs[idx].len() == skip {
            idx += 1;
            skip = 0;
        }
    }
    Ok(())
}

/// Write all of `buf` at `offset`.
pub fn write_all_at(file: &dyn IoFile, buf: &[u8], offset: u64) -> io::Result<()> {
    write_all_vectored_at(file, &[IoSlice::new(buf)], offset)
}

/// Read exactly `buf.len()` bytes at `offset`, or fail with `UnexpectedEof`.
pub fn read_exact_at(file: &dyn IoFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = file.read_at(buf, offset)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file is shorter than expected"));
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that accepts at most `chunk` bytes per call, to exercise the short-write loop.
    #[derive(Debug)]
    struct Chunky {
        data: parking_lot::Mutex<Vec<u8>>,
        chunk: usize,
    }

    impl IoFile for Chunky {
        fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
            let mut d = self.data.lock();
            let mut off = offset as usize;
            let mut left = self.chunk;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                if d.len() < off + take {
                    d.resize(off + take, 0);
                }
                d[off..off + take].copy_from_slice(&b[..take]);
                off += take;
                n += take;
                left -= take;
                if left == 0 {
                    break;
                }
            }
            Ok(n)
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
            unimplemented!()
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn allocate(&self, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn set_len(&self, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> io::Result<u64> {
            Ok(self.data.lock().len() as u64)
        }
        fn map(&self) -> io::Result<Map> {
            Err(io::Error::other("no map"))
        }
        fn map_raw(&self) -> io::Result<MapRaw> {
            Err(io::Error::other("no map"))
        }
        fn try_lock(&self) -> io::Result<bool> {
            Ok(true)
        }
    }

    #[test]
    fn short_writes_are_continued() {
        for chunk in [1, 3, 7, 64] {
            let f = Chunky { data: Default::default(), chunk };
            let parts: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; (i as usize) % 5]).collect();
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            write_all_vectored_at(&f, &slices, 10).unwrap();
            let want: Vec<u8> = parts.concat();
            assert_eq!(&f.data.lock()[10..], &want[..], "chunk {chunk}");
        }
    }
}
