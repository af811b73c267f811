//! # conflux-bench
//!
//! Support shared by the criterion suites in `benches/`: a test type config for the engine,
//! entry builders, the benchmark data directory (on the real disk, never tmpfs), the raw-device
//! peer (`pwrite` + `fdatasync` on a preallocated file) and page-cache control for cold runs.
//!
//! Each suite is one file per component (`benches/append.rs`, `benches/read.rs`,
//! `benches/open.rs`); how to run them and the measured figures are in `docs/benchmarks.md`.
//!
//! Environment:
//! - `CONFLUX_BENCH_DIR`: where temporary data directories are created (default
//!   `<workspace>/target/bench-data`). Must not be tmpfs or ramfs: the suites measure fsync.
//! - `CONFLUX_BENCH_FULL=1`: also run the large (slow) sizes.
//!
//! Feature flags:
//! - `peers`: also measure tikv's `raft-engine` in the same groups (module `raft_engine_peer`). Off by default,
//!   so the default build does not compile raft-engine and its protobuf 2 / prometheus 0.13 stack.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conflux_engine::{LogStore, PostcardCodec, RaftCodec};
use openraft::EntryPayload;
use openraft::entry::RaftEntry;

#[cfg(feature = "peers")]
pub mod raft_engine_peer;

/// Application data for the benchmark type config [`TC`]: opaque bytes, serde-derived as in the
/// engine's tests. Serde sees a `Vec<u8>` as a sequence, so postcard encodes it byte by byte.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Blob(pub Vec<u8>);

impl std::fmt::Display for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

/// Application data for [`TCBytes`]: the same bytes, serialized with `serialize_bytes`, so postcard
/// writes a length and one copy (what `serde_bytes` does). Measures the engine without the cost
/// of a byte-by-byte payload encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BytesBlob(pub Vec<u8>);

impl std::fmt::Display for BytesBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BytesBlob({} bytes)", self.0.len())
    }
}

impl serde::Serialize for BytesBlob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for BytesBlob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BytesBlob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<BytesBlob, E> {
                Ok(BytesBlob(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<BytesBlob, E> {
                Ok(BytesBlob(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<BytesBlob, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(BytesBlob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

openraft::declare_raft_types!(
    /// The benchmark type config, as in the engine's tests: [`Blob`] entries, `u64` responses.
    pub TC:
        D = Blob,
        R = u64,
);

openraft::declare_raft_types!(
    /// [`TC`] with [`BytesBlob`] entries (payload serialized as bytes).
    pub TCBytes:
        D = BytesBlob,
        R = u64,
);

/// A type config the suites can build entries for.
pub trait BenchTypes: openraft::RaftTypeConfig<Entry: Clone> {
    /// Label for benchmark ids (`""` for the default [`TC`]).
    const BLOB: &'static str;
    /// A normal entry at `index` (term 1, leader node 1) carrying `data`.
    fn entry(index: u64, data: Vec<u8>) -> Self::Entry;
    /// The log id of the entry [`BenchTypes::entry`] builds at `index`.
    fn log_id(index: u64) -> openraft::alias::LogIdOf<Self>;
}

fn log_id<C>(index: u64) -> openraft::LogId<C::LeaderId>
where
    C: openraft::RaftTypeConfig<LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, u64>>,
{
    openraft::LogId::new(openraft::impls::leader_id_adv::LeaderId { term: 1, node_id: 1 }, index)
}

impl BenchTypes for TC {
    const BLOB: &'static str = "";
    fn entry(index: u64, data: Vec<u8>) -> Entry {
        Entry::new(log_id::<TC>(index), EntryPayload::Normal(Blob(data)))
    }
    fn log_id(index: u64) -> openraft::alias::LogIdOf<Self> {
        log_id::<TC>(index)
    }
}

impl BenchTypes for TCBytes {
    const BLOB: &'static str = "/blob=bytes";
    fn entry(index: u64, data: Vec<u8>) -> Self::Entry {
        let payload = EntryPayload::Normal(BytesBlob(data));
        <Self as openraft::RaftTypeConfig>::Entry::new(log_id::<TCBytes>(index), payload)
    }
    fn log_id(index: u64) -> openraft::alias::LogIdOf<Self> {
        log_id::<TCBytes>(index)
    }
}

/// The store under test, for type config `C`, with the codec the node uses.
pub type StoreOf<C> = LogStore<C, PostcardCodec<C>>;
/// The codec for [`TC`].
pub type Codec = PostcardCodec<TC>;
/// The store for [`TC`].
pub type Store = StoreOf<TC>;
/// A log entry of [`TC`].
pub type Entry = <TC as openraft::RaftTypeConfig>::Entry;

/// `len` pseudo-random bytes (xorshift), so nothing below us can shortcut zeros.
pub fn payload(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// `count` entries of `data`, indexes `first..first + count`.
pub fn entries<C: BenchTypes>(first: u64, count: u64, data: &[u8]) -> Vec<C::Entry> {
    (first..first + count).map(|i| C::entry(i, data.to_vec())).collect()
}

/// Bytes the engine writes for `entries`: each encoded, framed and 8-byte aligned. The raw peer
/// writes exactly this many bytes, so both sides move the same data.
pub fn framed_bytes<C: BenchTypes>(entries: &[C::Entry]) -> u64
where
    PostcardCodec<C>: RaftCodec<C>,
{
    let mut buf = Vec::new();
    entries
        .iter()
        .map(|e| {
            buf.clear();
            PostcardCodec::<C>::encode_entry(e, &mut buf).expect("encode entry");
            conflux_engine::format::record::framed_len(buf.len())
        })
        .sum()
}

/// A size as it appears in benchmark ids: `64B`, `1KiB`, `16KiB`, `4MiB`, `1GiB`.
pub fn size_label(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

/// Whether `CONFLUX_BENCH_FULL=1` asks for the large sizes.
pub fn full_run() -> bool {
    std::env::var("CONFLUX_BENCH_FULL").is_ok_and(|v| v == "1")
}

const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// The directory benchmark data goes in: `CONFLUX_BENCH_DIR`, or `<workspace>/target/bench-data`.
///
/// # Panics
/// When it cannot be created, or when it is on tmpfs or ramfs (fsync there costs nothing, so
/// every figure would be a lie).
pub fn bench_root() -> PathBuf {
    let dir = match std::env::var_os("CONFLUX_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("bench-data"),
    };
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create bench directory {}: {e}", dir.display()));
    let fs = rustix::fs::statfs(&dir).unwrap_or_else(|e| panic!("statfs {}: {e}", dir.display()));
    let magic = fs.f_type as u64;
    if magic == TMPFS_MAGIC || magic == RAMFS_MAGIC {
        panic!(
            "benchmark directory {} is on tmpfs/ramfs, where fsync is free and the figures would be \
             meaningless; point CONFLUX_BENCH_DIR at a directory on the real data disk",
            dir.display()
        );
    }
    dir
}

/// A fresh temporary directory under [`bench_root`], removed when dropped.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(bench_root())
        .unwrap_or_else(|e| panic!("create temp dir under {}: {e}", bench_root().display()))
}

/// Open (or create) a store, panicking with the path on failure.
pub fn open_store<C: BenchTypes>(dir: &Path, config: conflux_engine::Config) -> StoreOf<C>
where
    PostcardCodec<C>: RaftCodec<C>,
{
    StoreOf::<C>::open(dir, config).unwrap_or_else(|e| panic!("open store {}: {e}", dir.display()))
}

/// Keep a long-running append benchmark in a steady state: once the store holds more than
/// `keep_segments` segments, purge every entry before `next` (outside the caller's timed region).
/// The engine deletes the purged segments in the background, so disk use and page-cache
/// footprint stay bounded, as on a node that snapshots and purges, and as for [`RawPeer`], which
/// recycles its file. Without this the page cache grows by the whole benchmark's writes, and on
/// a VM whose memory is backed lazily every new page-cache page costs a host fault.
pub fn recycle<C: BenchTypes>(store: &mut StoreOf<C>, next: u64, keep_segments: usize)
where
    PostcardCodec<C>: RaftCodec<C>,
{
    use openraft::storage::RaftLogStorage;
    if next > 1 && store.segment_count() > keep_segments {
        block_on(store.purge(C::log_id(next - 1))).expect("purge");
    }
}

/// Run a future to completion on this thread (the engine's futures only wait for its own
/// writer thread, so no runtime is needed).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Fill a store with `count` entries of `data` starting at index `first`, keeping a bounded
/// number of appends in flight (faster than waiting for each, and what openraft does).
pub fn fill<C: BenchTypes>(store: &mut StoreOf<C>, first: u64, count: u64, data: &[u8])
where
    PostcardCodec<C>: RaftCodec<C>,
{
    const CHUNK: u64 = 256;
    const IN_FLIGHT: usize = 16;
    let (tx, rx) = mpsc::channel();
    let mut pending = 0usize;
    let mut i = first;
    while i < first + count {
        let n = CHUNK.min(first + count - i);
        let tx = tx.clone();
        store
            .append_with(entries::<C>(i, n, data), Box::new(move |r| tx.send(r).expect("filler waits")))
            .expect("append");
        i += n;
        pending += 1;
        if pending >= IN_FLIGHT {
            rx.recv().expect("callback").expect("append durable");
            pending -= 1;
        }
    }
    for _ in 0..pending {
        rx.recv().expect("callback").expect("append durable");
    }
}

/// The physical-limit peer: `pwrite` of a buffer at the next offset of a file preallocated with
/// `fallocate` (as the engine's segments are), then `fdatasync`. When the file is full it is
/// replaced by a fresh preallocated one, outside the timed region (the engine prepares its next
/// segment off the append path too).
#[derive(Debug)]
pub struct RawPeer {
    path: PathBuf,
    file: File,
    len: u64,
    offset: u64,
    /// Calls, and time spent in `pwrite` and in `fdatasync`, for [`RawPeer::report`].
    calls: u64,
    write_time: Duration,
    sync_time: Duration,
}

impl RawPeer {
    /// A peer writing to `raw-peer.dat` in `dir`, preallocated `len` bytes at a time (use the
    /// engine's segment size).
    pub fn new(dir: &Path, len: u64) -> RawPeer {
        let path = dir.join("raw-peer.dat");
        let file = Self::prepare(&path, len);
        RawPeer { path, file, len, offset: 0, calls: 0, write_time: Duration::ZERO, sync_time: Duration::ZERO }
    }

    fn prepare(path: &Path, len: u64) -> File {
        let _ = std::fs::remove_file(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len)
            .unwrap_or_else(|e| panic!("fallocate {}: {e}", path.display()));
        file.sync_all().unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
        if let Some(parent) = path.parent() {
            File::open(parent).and_then(|d| d.sync_all()).expect("fsync bench directory");
        }
        file
    }

    /// Write `buf` at the next offset and `fdatasync`; returns the time of those two calls only.
    pub fn write_sync(&mut self, buf: &[u8]) -> Duration {
        assert!(buf.len() as u64 <= self.len, "raw peer write larger than its file");
        if self.offset + buf.len() as u64 > self.len {
            self.file = Self::prepare(&self.path, self.len);
            self.offset = 0;
        }
        let start = Instant::now();
        let mut done = 0;
        while done < buf.len() {
            match rustix::io::pwrite(&self.file, &buf[done..], self.offset + done as u64) {
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => panic!("pwrite {}: {e}", self.path.display()),
            }
        }
        let written = start.elapsed();
        rustix::fs::fdatasync(&self.file).unwrap_or_else(|e| panic!("fdatasync {}: {e}", self.path.display()));
        let took = start.elapsed();
        self.calls += 1;
        self.write_time += written;
        self.sync_time += took - written;
        // Keep the engine's 8-byte record alignment.
        self.offset += conflux_engine::format::align8(buf.len() as u64);
        took
    }

    /// How many timed writes the peer has done.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// One line for stderr: mean time in `pwrite` and in `fdatasync` so far.
    pub fn report(&self) -> String {
        let n = self.calls.max(1) as f64;
        format!(
            "{} calls, mean pwrite {:.3} ms, mean fdatasync {:.3} ms",
            self.calls,
            self.write_time.as_secs_f64() * 1e3 / n,
            self.sync_time.as_secs_f64() * 1e3 / n
        )
    }
}

/// Write back dirty pages and drop the clean page cache (`echo 1 > /proc/sys/vm/drop_caches`).
///
/// # Errors
/// When `/proc/sys/vm/drop_caches` is not writable (not root, or a container that hides it).
pub fn drop_page_cache() -> std::io::Result<()> {
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", b"1\n")
}
