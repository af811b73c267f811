//! Fault injection and simulated power loss through the I/O seam.
//!
//! [`FaultIo`] wraps another [`Io`]. Tests arm one-shot faults on it ([`FaultHandle::inject`]):
//! a failing write, a short write, ENOSPC, a failing or slow fdatasync. It also remembers, per
//! open file, every write made since that file's last fdatasync, so [`FaultHandle::power_loss`]
//! can put the files back to what a machine would find after losing power: everything after the
//! last sync dropped, or torn at a random byte. SIGKILL cannot test this, because the page cache
//! survives the process.
//!
//! What is not simulated: writes through writable maps (the engine only writes its index, which
//! is derived data, that way) and directory operations, which are taken as durable at once.

use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{Io, IoFile, Map, MapRaw};

/// A fault to inject once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The write fails with EIO and writes nothing.
    WriteError,
    /// The write writes at most `max` bytes and reports that (a short write).
    ShortWrite {
        /// Bytes it lets through.
        max: usize,
    },
    /// The write fails with ENOSPC and writes nothing.
    NoSpace,
    /// fdatasync fails with EIO.
    SyncError,
    /// fdatasync takes this long, then succeeds.
    SlowSync(Duration),
}

/// How power loss treats what was written but not fdatasync'd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// Every unsynced byte is lost.
    DropUnsynced,
    /// Each file keeps a prefix of its unsynced writes, cut at a byte chosen from `seed`.
    Tear {
        /// Seed for the cut points.
        seed: u64,
    },
}

#[derive(Debug)]
struct Armed {
    fault: Fault,
    path_contains: String,
    skip: u64,
}

#[derive(Debug)]
struct Undo {
    offset: u64,
    old: Vec<u8>,
    old_len: u64,
    new: Vec<u8>,
}

/// The unsynced writes of one open file. The registry holds the file weakly, so closing a file
/// (and its lock) works as it would without the wrapper.
#[derive(Debug)]
struct Tracked {
    path: PathBuf,
    inner: std::sync::Weak<dyn IoFile>,
    unsynced: Mutex<Vec<Undo>>,
}

#[derive(Debug, Default)]
struct State {
    armed: Mutex<Vec<Armed>>,
    files: Mutex<Vec<Arc<Tracked>>>,
    crashed: std::sync::atomic::AtomicBool,
    fired: std::sync::atomic::AtomicU64,
    /// Held shared by every operation and exclusively by power loss, so no write or sync is
    /// half-way through when the files are reverted.
    gate: parking_lot::RwLock<()>,
}

impl State {
    /// Take the first armed fault that matches this operation, counting down skips.
    fn take(&self, path: &Path, is_sync: bool) -> Option<Fault> {
        let mut armed = self.armed.lock();
        let p = path.to_string_lossy();
        let pos = armed.iter_mut().position(|a| {
            let kind_matches = matches!(a.fault, Fault::SyncError | Fault::SlowSync(_)) == is_sync;
            if !kind_matches || !p.contains(a.path_contains.as_str()) {
                return false;
            }
            if a.skip > 0 {
                a.skip -= 1;
                return false;
            }
            true
        })?;
        self.fired.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(armed.remove(pos).fault)
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.crashed.load(std::sync::atomic::Ordering::SeqCst) {
            Err(io::Error::other("simulated power loss: the machine is off"))
        } else {
            Ok(())
        }
    }
}

/// An [`Io`] that injects faults and can simulate power loss.
#[derive(Debug, Clone)]
pub struct FaultIo {
    inner: Arc<dyn Io>,
    state: Arc<State>,
}

/// Controls a [`FaultIo`] from a test.
#[derive(Debug, Clone)]
pub struct FaultHandle {
    state: Arc<State>,
    inner: Arc<dyn Io>,
}

impl FaultIo {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Io>) -> (FaultIo, FaultHandle) {
        let state = Arc::new(State::default());
        (FaultIo { inner: inner.clone(), state: state.clone() }, FaultHandle { state, inner })
    }
}

impl FaultHandle {
    /// Arm `fault` for the first matching operation on a file whose path contains
    /// `path_contains`, after letting `skip` matching operations through.
    pub fn inject(&self, fault: Fault, path_contains: &str, skip: u64) {
        self.state.armed.lock().push(Armed { fault, path_contains: path_contains.to_string(), skip });
    }

    /// How many armed faults have fired so far.
    pub fn fired(&self) -> u64 {
        self.state.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Unsynced bytes currently remembered across all files.
    pub fn unsynced_bytes(&self) -> usize {
        self.state.files.lock().iter().map(|f| f.unsynced.lock().iter().map(|u| u.new.len()).sum::<usize>()).sum()
    }

    /// Cut the power: from now on every operation through this [`FaultIo`] fails, and every file
    /// is put back to its last fdatasync'd content (or torn, see [`PowerLoss`]). Reopen the data
    /// directory with a fresh [`Io`] afterwards.
    pub fn power_loss(&self, mode: PowerLoss) -> io::Result<()> {
        let _gate = self.state.gate.write();
        self.state.crashed.store(true, std::sync::atomic::Ordering::SeqCst);
        let files = std::mem::take(&mut *self.state.files.lock());
        let mut rng = mode_seed(mode);
        for f in files {
            let undo = std::mem::take(&mut *f.unsynced.lock());
            if undo.is_empty() {
                continue;
            }
            let file = match f.inner.upgrade() {
                Some(file) => file,
                None => match self.inner.open(&f.path, false) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
            };
            // Put back the synced state, newest write first.
            for u in undo.iter().rev() {
                super::write_all_at(&*file, &u.old, u.offset)?;
                if u.offset + u.new.len() as u64 > u.old_len {
                    file.set_len(u.old_len)?;
                }
            }
            if let PowerLoss::Tear { .. } = mode {
                let total: usize = undo.iter().map(|u| u.new.len()).sum();
                let mut keep = (next(&mut rng) % (total as u64 + 1)) as usize;
                for u in &undo {
                    if keep == 0 {
                        break;
                    }
                    let n = keep.min(u.new.len());
                    super::write_all_at(&*file, &u.new[..n], u.offset)?;
                    keep -= n;
                }
            }
            tracing::debug!(path = %f.path.display(), "simulated power loss reverted unsynced writes");
        }
        Ok(())
    }
}

fn mode_seed(mode: PowerLoss) -> u64 {
    match mode {
        PowerLoss::DropUnsynced => 1,
        PowerLoss::Tear { seed } => seed | 1,
    }
}

/// xorshift64: a few random cut points do not need a crate.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[derive(Debug)]
struct FaultFile {
    file: Arc<dyn IoFile>,
    tracked: Arc<Tracked>,
    state: Arc<State>,
    read_only: bool,
}

impl Io for FaultIo {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        let file = self.inner.open(path, create)?;
        let tracked = Arc::new(Tracked {
            path: path.to_path_buf(),
            inner: Arc::downgrade(&file),
            unsynced: Mutex::new(Vec::new()),
        });
        let mut files = self.state.files.lock();
        // Forget closed files that have nothing left to revert.
        files.retain(|t| t.inner.strong_count() > 0 || !t.unsynced.lock().is_empty());
        files.push(tracked.clone());
        Ok(Arc::new(FaultFile { file, tracked, state: self.state.clone(), read_only: false }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        let file = self.inner.open_read(path)?;
        let tracked = Arc::new(Tracked {
            path: path.to_path_buf(),
            inner: Arc::downgrade(&file),
            unsynced: Mutex::new(Vec::new()),
        });
        Ok(Arc::new(FaultFile { file, tracked, state: self.state.clone(), read_only: true }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.inner.sync_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.inner.create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.inner.list_dir(dir)
    }
}

impl IoFile for FaultFile {
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        let mut limit = usize::MAX;
        match self.state.take(&self.tracked.path, false) {
            Some(Fault::WriteError) => return Err(io::Error::from_raw_os_error(libc_eio())),
            Some(Fault::NoSpace) => return Err(io::Error::from_raw_os_error(libc_enospc())),
            Some(Fault::ShortWrite { max }) => limit = max,
            _ => {}
        }
        let mut data: Vec<u8> = Vec::new();
        for b in bufs {
            data.extend_from_slice(b);
            if data.len() >= limit {
                break;
            }
        }
        data.truncate(limit);
        if self.read_only {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "file opened read-only"));
        }
        // Remember what these bytes replace, so power loss can put it back.
        let old_len = self.file.len()?;
        let mut old = vec![0u8; data.len()];
        let mut got = 0;
        while got < old.len() {
            let n = self.file.read_at(&mut old[got..], offset + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        old.truncate(got);
        super::write_all_at(&*self.file, &data, offset)?;
        self.tracked.unsynced.lock().push(Undo { offset, old, old_len, new: data.clone() });
        Ok(data.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.file.read_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        match self.state.take(&self.tracked.path, true) {
            Some(Fault::SyncError) => return Err(io::Error::from_raw_os_error(libc_eio())),
            Some(Fault::SlowSync(d)) => std::thread::sleep(d),
            _ => {}
        }
        self.file.sync_data()?;
        self.tracked.unsynced.lock().clear();
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.file.allocate(len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.file.len()
    }

    fn map(&self) -> io::Result<Map> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.file.map()
    }

    fn map_raw(&self) -> io::Result<MapRaw> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.file.map_raw()
    }

    fn try_lock(&self) -> io::Result<bool> {
        let _gate = self.state.gate.read();
        self.state.check_alive()?;
        self.file.try_lock()
    }
}

const fn libc_eio() -> i32 {
    5
}

const fn libc_enospc() -> i32 {
    28
}
