//! The io_uring backend ([`UringIo`]): the same files as [`super::StdIo`], but writes and
//! fdatasyncs are submitted to an io_uring ring owned by the calling thread (in practice the
//! writer thread; every other thread that writes gets its own small ring on first use). Each
//! operation is submitted and waited for before the call returns, so buffers only need to live
//! for the call and the group commit's ordering rules hold unchanged: a batch's writes complete
//! before its fdatasync is submitted, and the sync covers them. Reads stay on mmap and `pread`
//! (the engine reads through its maps; a ring round trip would only add work).
//!
//! [`probe`] tells whether io_uring can be used here (kernel support, `io_uring_disabled`,
//! permissions, seccomp filters, the opcodes we need), for `io = auto | uring`.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use io_uring::{IoUring, opcode, squeue, types};

use super::std_io::StdFile;
use super::{Io, IoFile, Map, MapRaw, StdIo};

/// Submission queue entries of each thread's ring: the engine has at most one operation in
/// flight per thread.
const RING_ENTRIES: u32 = 8;

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// Files opened as by [`StdIo`], with writes and syncs through io_uring.
#[derive(Debug, Default, Clone, Copy)]
pub struct UringIo;

#[derive(Debug)]
struct UringFile {
    inner: StdFile,
}

impl Io for UringIo {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        Ok(Arc::new(UringFile { inner: StdFile::open(path, create)? }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        Ok(Arc::new(UringFile { inner: StdFile::open_read(path)? }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdIo.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdIo.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = std::fs::File::open(dir)?;
        let sqe = opcode::Fsync::new(types::Fd(d.as_raw_fd())).build();
        // SAFETY: the entry refers to no memory; the descriptor stays open (`d`) until the
        // operation has completed, because `submit_one` returns only after its completion.
        unsafe { submit_one(sqe) }.map(|_| ())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdIo.create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        StdIo.list_dir(dir)
    }
}

impl IoFile for UringFile {
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        // A writev takes at most IOV_MAX slices; callers split (see `write_all_vectored_at`).
        let n = u32::try_from(bufs.len()).map_err(|_| io::Error::other("too many slices for one writev"))?;
        let sqe = opcode::Writev::new(types::Fd(self.inner.file.as_raw_fd()), bufs.as_ptr().cast::<libc::iovec>(), n)
            .offset(offset)
            .build();
        // SAFETY: `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix. The slice array
        // and the buffers it points to are borrowed for this call, and `submit_one` returns only
        // after the kernel has completed the operation, so they outlive it; the descriptor is
        // owned by `self`, which the caller holds across the call.
        unsafe { submit_one(sqe) }.map(|n| n as usize)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        let sqe = opcode::Fsync::new(types::Fd(self.inner.file.as_raw_fd())).flags(types::FsyncFlags::DATASYNC).build();
        // SAFETY: the entry refers to no memory; the descriptor is owned by `self`, held by the
        // caller until `submit_one` has seen the completion.
        unsafe { submit_one(sqe) }.map(|_| ())
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.start_writeback(offset, len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn map(&self) -> io::Result<Map> {
        self.inner.map()
    }

    fn map_raw(&self) -> io::Result<MapRaw> {
        self.inner.map_raw()
    }

    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }
}

/// Submit one operation on this thread's ring and wait for its completion; the completion's
/// result (bytes for a write), or the error it carries.
///
/// # Safety
/// Every buffer and descriptor `sqe` refers to must stay valid until this returns (it returns
/// only once the kernel has completed the operation, or when it was never submitted).
unsafe fn submit_one(sqe: squeue::Entry) -> io::Result<u32> {
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(IoUring::new(RING_ENTRIES)?);
        }
        let ring = slot.as_mut().expect("created above");
        // SAFETY: the caller keeps what `sqe` refers to alive until we return, and we return
        // only after its completion (below) or without submitting it (queue full: cannot happen
        // with one operation at a time on a ring of `RING_ENTRIES`).
        unsafe { ring.submission().push(&sqe) }.map_err(|_| io::Error::other("io_uring submission queue is full"))?;
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {}
                Err(e) => {
                    // The kernel may hold the operation and the memory it refers to; returning
                    // would let the caller free that memory under it. Stop the process instead:
                    // nothing acknowledged is lost by stopping.
                    tracing::error!(error = %e, "io_uring_enter failed with an operation in flight; aborting");
                    std::process::abort();
                }
            }
            if let Some(cqe) = ring.completion().next() {
                let res = cqe.result();
                return if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(res as u32) };
            }
        }
    })
}

/// Where the kernel says whether io_uring is allowed (0 = yes, 1 = privileged or a chosen group
/// only, 2 = no).
pub const IO_URING_DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

/// Check that io_uring works here: the sysctl at `disabled_path` (normally
/// [`IO_URING_DISABLED`]) does not forbid it, a ring can be created (kernel support,
/// permissions), the opcodes the backend uses are supported, and a no-op round trip completes
/// (seccomp filters that block `io_uring_enter`). Returns why not, in words.
pub fn probe(disabled_path: &Path) -> Result<(), String> {
    match std::fs::read_to_string(disabled_path) {
        Ok(v) if v.trim() == "2" => {
            return Err(format!("io_uring is disabled system-wide ({} = 2)", disabled_path.display()));
        }
        // 1: allowed for privileged processes or one group; creating a ring below tells.
        Ok(_) => {}
        // Kernels older than 6.6 have no such sysctl; creating a ring below tells.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", disabled_path.display())),
    }
    let mut ring = IoUring::new(RING_ENTRIES).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (io_uring_setup: ENOSYS)".to_string(),
        Some(libc::EPERM) => {
            format!("io_uring_setup is not permitted (EPERM; {} or a seccomp filter)", disabled_path.display())
        }
        _ => format!("io_uring_setup failed: {e}"),
    })?;
    let mut p = io_uring::Probe::new();
    ring.submitter().register_probe(&mut p).map_err(|e| format!("io_uring opcode probe failed: {e}"))?;
    for (code, name) in [(opcode::Writev::CODE, "WRITEV"), (opcode::Fsync::CODE, "FSYNC"), (opcode::Nop::CODE, "NOP")] {
        if !p.is_supported(code) {
            return Err(format!("the kernel's io_uring lacks IORING_OP_{name}"));
        }
    }
    let nop = opcode::Nop::new().build();
    // SAFETY: a no-op refers to no memory or descriptor.
    unsafe { ring.submission().push(&nop) }.map_err(|_| "io_uring submission queue is full".to_string())?;
    ring.submit_and_wait(1).map_err(|e| format!("io_uring_enter failed (a seccomp filter?): {e}"))?;
    match ring.completion().next() {
        Some(c) if c.result() >= 0 => Ok(()),
        Some(c) => Err(format!("io_uring no-op failed: {}", io::Error::from_raw_os_error(-c.result()))),
        None => Err("io_uring no-op did not complete".into()),
    }
}
