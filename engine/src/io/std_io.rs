//! The portable backend: `pwritev`, `pread`, `fdatasync`, `fallocate`, memmap2.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Io, IoFile, Map, MapRaw};

/// Plain POSIX file I/O.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdIo;

#[derive(Debug)]
pub(crate) struct StdFile {
    pub(crate) file: File,
}

impl StdFile {
    /// Open `path` for reading and writing (creating it when `create` is set).
    pub(crate) fn open(path: &Path, create: bool) -> io::Result<StdFile> {
        let file = OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)?;
        Ok(StdFile { file })
    }

    /// Open `path` read-only.
    pub(crate) fn open_read(path: &Path) -> io::Result<StdFile> {
        Ok(StdFile { file: OpenOptions::new().read(true).open(path)? })
    }
}

impl Io for StdIo {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        Ok(Arc::new(StdFile::open(path, create)?))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        Ok(Arc::new(StdFile::open_read(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
    }
}

impl IoFile for StdFile {
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        loop {
            match rustix::io::pwritev(&self.file, bufs, offset) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len)) else {
            return Ok(()); // beyond what the call can name: only a hint, skip it
        };
        // SAFETY: sync_file_range only reads its integer arguments; the descriptor is owned by
        // `self.file` and open for the duration of the call.
        let r = unsafe { libc::sync_file_range(self.file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE) };
        if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // File systems without fallocate (tmpfs on old kernels, some FUSE): extend instead.
            Err(rustix::io::Errno::OPNOTSUPP) => {
                if self.file.metadata()?.len() < len {
                    self.file.set_len(len)?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn map(&self) -> io::Result<Map> {
        // SAFETY: the engine never shrinks a file it has mapped (torn tails are zeroed, not cut),
        // and it only reads mapped ranges that hold complete, already written records, so no
        // read can fault or observe a concurrent write. Other processes are kept out by the
        // data directory's lock.
        unsafe { memmap2::Mmap::map(&self.file) }
    }

    fn map_raw(&self) -> io::Result<MapRaw> {
        // MmapRaw hands out raw pointers only, so concurrent atomic access to index slots never
        // creates aliasing references; no unsafe is needed to create it.
        memmap2::MmapRaw::map_raw(&self.file)
    }

    fn try_lock(&self) -> io::Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
