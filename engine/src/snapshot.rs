//! Snapshot files: a versioned, checksummed container around a zstd stream that the state
//! machine writes and reads as plain bytes. Format: `format::snapshot`, `docs/format.md`.
//!
//! A snapshot is written to a temporary name, fdatasync'd, renamed into place and the directory
//! synced; older snapshots are deleted only after the new one is durable. Reading checks the
//! header checksum, the trailer and the body checksum before the first body byte is handed out,
//! so a torn or damaged snapshot is refused before any state is replaced.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{CorruptionKind, Error, Result};
use crate::format::snapshot as fmt;
use crate::io::{Io, IoFile};

/// Name of the snapshot directory in the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// The snapshot directory of a data directory.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    io: Arc<dyn Io>,
}

/// A finished snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its path.
    pub path: PathBuf,
    /// Term of its last log id.
    pub term: u64,
    /// Index of its last log id.
    pub index: u64,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Uncompressed body bytes (known for snapshots written by this process, else 0).
    pub raw_bytes: u64,
}

impl Snapshots {
    /// The snapshot directory under data directory `data_dir` (created if missing); leftovers of
    /// unfinished writes are removed.
    ///
    /// # Errors
    /// I/O errors naming the directory.
    pub fn open(io: Arc<dyn Io>, data_dir: &Path) -> Result<Snapshots> {
        let dir = data_dir.join(SNAPSHOT_DIR);
        io.create_dir_all(&dir).map_err(|e| Error::io("create snapshot directory", &dir, e))?;
        // The directory entry itself must survive a power cut before any snapshot relies on it.
        io.sync_dir(data_dir).map_err(|e| Error::io("fsync directory", data_dir, e))?;
        for p in io.list_dir(&dir).map_err(|e| Error::io("list", &dir, e))? {
            if p.extension().is_some_and(|e| e == "partial") {
                io.remove_file(&p).map_err(|e| Error::io("remove unfinished snapshot", &p, e))?;
            }
        }
        Ok(Snapshots { dir, io })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All finished snapshots, oldest (lowest index) first.
    ///
    /// # Errors
    /// [`Error::ForeignFile`] for a file that is not a snapshot; I/O errors.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out = Vec::new();
        for p in self.io.list_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))? {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.ends_with(".partial") {
                continue;
            }
            let Some((term, index)) = fmt::parse_name(&name) else {
                return Err(Error::ForeignFile { path: p });
            };
            let f = self.io.open_read(&p).map_err(|e| Error::io("open", &p, e))?;
            let file_bytes = f.len().map_err(|e| Error::io("stat", &p, e))?;
            out.push(SnapshotInfo { path: p, term, index, file_bytes, raw_bytes: 0 });
        }
        out.sort_by_key(|s| (s.index, s.term));
        Ok(out)
    }

    /// The newest finished snapshot.
    ///
    /// # Errors
    /// As [`Snapshots::list`].
    pub fn latest(&self) -> Result<Option<SnapshotInfo>> {
        Ok(self.list()?.pop())
    }

    /// Start writing the snapshot of log id (`term`, `index`).
    ///
    /// # Errors
    /// I/O errors; [`Error::InvalidConfig`] for metadata over the size limit.
    pub fn create(
        &self,
        term: u64,
        index: u64,
        raft_meta: &[u8],
        app_meta: &[u8],
        level: i32,
    ) -> Result<SnapshotWriter> {
        if raft_meta.len() > fmt::MAX_META || app_meta.len() > fmt::MAX_META {
            return Err(Error::InvalidConfig(format!("snapshot metadata over {} bytes", fmt::MAX_META)));
        }
        let final_path = self.dir.join(fmt::file_name(term, index));
        let tmp = self.dir.join(format!("{}.{}.partial", fmt::file_name(term, index), std::process::id()));
        let file = self.io.open(&tmp, true).map_err(|e| Error::io("create snapshot", &tmp, e))?;
        file.set_len(0).map_err(|e| Error::io("truncate", &tmp, e))?;
        let header = fmt::encode_header(level, raft_meta, app_meta);
        crate::io::write_all_at(&*file, &header, 0).map_err(|e| Error::io("write snapshot header", &tmp, e))?;
        let sink = BodySink {
            file: file.clone(),
            offset: header.len() as u64,
            crc: 0,
            len: 0,
            buf: Vec::with_capacity(1 << 20),
        };
        let encoder = zstd::stream::write::Encoder::new(sink, level).map_err(|e| Error::io("start zstd", &tmp, e))?;
        Ok(SnapshotWriter {
            snapshots: self.clone(),
            tmp,
            final_path,
            file,
            encoder: Some(encoder),
            raw: 0,
            term,
            index,
        })
    }

    /// Open a snapshot file for reading, after checking it whole: header checksum, version,
    /// trailer, body checksum.
    ///
    /// # Errors
    /// [`Error::BadMagic`], [`Error::UnsupportedVersion`], [`Error::Corruption`] (naming the
    /// offset), I/O errors.
    pub fn open_reader(&self, path: &Path) -> Result<SnapshotReader> {
        SnapshotReader::open(&*self.io, path)
    }

    /// Delete every snapshot older than `keep` (call once `keep` is durable).
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn remove_older_than(&self, keep: &SnapshotInfo) -> Result<usize> {
        let mut n = 0;
        for s in self.list()? {
            if s.path != keep.path && (s.index, s.term) <= (keep.index, keep.term) {
                self.io.remove_file(&s.path).map_err(|e| Error::io("remove old snapshot", &s.path, e))?;
                n += 1;
            }
        }
        if n > 0 {
            self.io.sync_dir(&self.dir).map_err(|e| Error::io("fsync directory", &self.dir, e))?;
        }
        Ok(n)
    }

    /// Take a whole snapshot file received from elsewhere (its raw bytes, as another member's
    /// file holds them): written to a temporary name, checked whole, then renamed into place.
    ///
    /// # Errors
    /// As [`Snapshots::open_reader`] for a damaged file (which is then deleted); I/O errors.
    pub fn receive(&self, term: u64, index: u64, mut src: impl Read) -> Result<SnapshotInfo> {
        let final_path = self.dir.join(fmt::file_name(term, index));
        let tmp = self.dir.join(format!("{}.{}.partial", fmt::file_name(term, index), std::process::id()));
        let file = self.io.open(&tmp, true).map_err(|e| Error::io("create snapshot", &tmp, e))?;
        file.set_len(0).map_err(|e| Error::io("truncate", &tmp, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        loop {
            let n = src.read(&mut buf).map_err(|e| Error::io("receive snapshot", &tmp, e))?;
            if n == 0 {
                break;
            }
            crate::io::write_all_at(&*file, &buf[..n], off).map_err(|e| Error::io("write", &tmp, e))?;
            off += n as u64;
        }
        if let Err(e) = SnapshotReader::open(&*self.io, &tmp) {
            let _ = self.io.remove_file(&tmp);
            return Err(e);
        }
        file.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
        self.io.rename(&tmp, &final_path).map_err(|e| Error::io("rename snapshot into place", &final_path, e))?;
        self.io.sync_dir(&self.dir).map_err(|e| Error::io("fsync directory", &self.dir, e))?;
        Ok(SnapshotInfo { path: final_path, term, index, file_bytes: off, raw_bytes: 0 })
    }
}

/// Buffers compressed bytes and writes them at increasing offsets, keeping the body checksum.
struct BodySink {
    file: Arc<dyn IoFile>,
    offset: u64,
    crc: u32,
    len: u64,
    buf: Vec<u8>,
}

impl BodySink {
    fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            crate::io::write_all_at(&*self.file, &self.buf, self.offset)?;
            self.offset += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Write for BodySink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.len += b.len() as u64;
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 1 << 20 {
            self.drain()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}

/// Writes a snapshot body; [`SnapshotWriter::finish`] makes it durable and visible.
pub struct SnapshotWriter {
    snapshots: Snapshots,
    tmp: PathBuf,
    final_path: PathBuf,
    file: Arc<dyn IoFile>,
    encoder: Option<zstd::stream::write::Encoder<'static, BodySink>>,
    raw: u64,
    term: u64,
    index: u64,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter").field("tmp", &self.tmp).field("raw", &self.raw).finish()
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.encoder.as_mut().expect("not finished").write(b)?;
        self.raw += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.as_mut().expect("not finished").flush()
    }
}

impl SnapshotWriter {
    /// Finish the zstd stream, write the trailer, fdatasync, rename into place, sync the
    /// directory. Only then is the snapshot visible to [`Snapshots::latest`].
    ///
    /// # Errors
    /// I/O errors naming the file; the partial file is removed.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        let res = self.finish_inner();
        if res.is_err() {
            let _ = self.snapshots.io.remove_file(&self.tmp);
        }
        res
    }

    fn finish_inner(&mut self) -> Result<SnapshotInfo> {
        let tmp = self.tmp.clone();
        let encoder = self.encoder.take().expect("finish once");
        let mut sink = encoder.finish().map_err(|e| Error::io("finish zstd", &tmp, e))?;
        sink.drain().map_err(|e| Error::io("write snapshot", &tmp, e))?;
        let trailer = fmt::encode_trailer(sink.len, sink.crc);
        crate::io::write_all_at(&*self.file, &trailer, sink.offset).map_err(|e| Error::io("write trailer", &tmp, e))?;
        self.file.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
        let io = &self.snapshots.io;
        io.rename(&tmp, &self.final_path).map_err(|e| Error::io("rename snapshot into place", &self.final_path, e))?;
        let dir = self.snapshots.dir.clone();
        io.sync_dir(&dir).map_err(|e| Error::io("fsync directory", &dir, e))?;
        Ok(SnapshotInfo {
            path: self.final_path.clone(),
            term: self.term,
            index: self.index,
            file_bytes: sink.offset + fmt::TRAILER_LEN as u64,
            raw_bytes: self.raw,
        })
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.encoder.is_some() {
            // Abandoned before finish: leave no partial file behind.
            let _ = self.snapshots.io.remove_file(&self.tmp);
        }
    }
}

/// A checked snapshot file: its metadata, and its body as a stream.
pub struct SnapshotReader {
    path: PathBuf,
    file: Arc<dyn IoFile>,
    raft_meta: Vec<u8>,
    app_meta: Vec<u8>,
    level: i32,
    body_start: u64,
    body_len: u64,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader").field("path", &self.path).field("body_len", &self.body_len).finish()
    }
}

impl SnapshotReader {
    fn open(io: &dyn Io, path: &Path) -> Result<SnapshotReader> {
        let corrupt = |off: u64, k: CorruptionKind| Error::corruption(path, off, k);
        let file = io.open_read(path).map_err(|e| Error::io("open snapshot", path, e))?;
        let len = file.len().map_err(|e| Error::io("stat", path, e))?;
        if len < (fmt::FIXED_LEN + 4 + fmt::TRAILER_LEN) as u64 {
            return Err(corrupt(0, CorruptionKind::Truncated { len }));
        }
        let mut fixed = [0u8; fmt::FIXED_LEN];
        crate::io::read_exact_at(&*file, &mut fixed, 0).map_err(|e| Error::io("read", path, e))?;
        if &fixed[..fmt::VERSION_OFF] != fmt::MAGIC {
            return Err(Error::BadMagic {
                path: path.to_path_buf(),
                kind: "snapshot",
                expected: "CFLXSNAP",
                found: fixed[..fmt::VERSION_OFF].to_vec(),
            });
        }
        let f = fmt::decode_fixed(&fixed);
        if f.version != crate::format::FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: f.version,
                supported: crate::format::FORMAT_VERSION,
            });
        }
        if f.raft_meta_len > fmt::MAX_META
            || f.app_meta_len > fmt::MAX_META
            || f.header_len() as u64 + fmt::TRAILER_LEN as u64 > len
        {
            return Err(corrupt(
                fmt::RAFT_META_LEN_OFF as u64,
                CorruptionKind::BadLength {
                    len: (f.raft_meta_len + f.app_meta_len) as u64,
                    why: "metadata longer than the file",
                },
            ));
        }
        let mut header = vec![0u8; f.header_len()];
        crate::io::read_exact_at(&*file, &mut header, 0).map_err(|e| Error::io("read", path, e))?;
        let crc_at = header.len() - 4;
        let stored = crate::format::u32_at(&header, crc_at);
        let computed = crc32c::crc32c(&header[..crc_at]);
        if stored != computed {
            return Err(corrupt(crc_at as u64, CorruptionKind::ChecksumMismatch { stored, computed }));
        }
        let mut trailer = [0u8; fmt::TRAILER_LEN];
        let trailer_at = len - fmt::TRAILER_LEN as u64;
        crate::io::read_exact_at(&*file, &mut trailer, trailer_at).map_err(|e| Error::io("read", path, e))?;
        let Some((body_len, body_crc)) = fmt::decode_trailer(&trailer) else {
            return Err(corrupt(
                trailer_at,
                CorruptionKind::Undecodable("no end marker: the snapshot was not finished or is truncated".into()),
            ));
        };
        let body_start = f.header_len() as u64;
        // Checked: a damaged trailer can hold any length, and the sum must not overflow.
        if body_start.checked_add(body_len) != Some(trailer_at) {
            return Err(corrupt(
                trailer_at,
                CorruptionKind::HeaderMismatch {
                    field: "body_len",
                    expected: trailer_at - body_start,
                    found: body_len,
                },
            ));
        }
        // Check the whole body before anyone consumes it.
        let mut crc = 0u32;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = body_start;
        while off < trailer_at {
            let n = ((trailer_at - off) as usize).min(buf.len());
            crate::io::read_exact_at(&*file, &mut buf[..n], off).map_err(|e| Error::io("read", path, e))?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            off += n as u64;
        }
        if crc != body_crc {
            return Err(corrupt(body_start, CorruptionKind::ChecksumMismatch { stored: body_crc, computed: crc }));
        }
        let raft_meta = header[fmt::FIXED_LEN..fmt::FIXED_LEN + f.raft_meta_len].to_vec();
        let app_meta = header[fmt::FIXED_LEN + f.raft_meta_len..crc_at].to_vec();
        Ok(SnapshotReader { path: path.to_path_buf(), file, raft_meta, app_meta, level: f.level, body_start, body_len })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Raft metadata, as the codec encoded it.
    pub fn raft_meta(&self) -> &[u8] {
        &self.raft_meta
    }

    /// The state machine's own metadata.
    pub fn app_meta(&self) -> &[u8] {
        &self.app_meta
    }

    /// zstd level the body was written with.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// Compressed body size.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// The whole file's length: what [`SnapshotReader::raw_file`] streams.
    pub fn file_len(&self) -> u64 {
        self.body_start + self.body_len + fmt::TRAILER_LEN as u64
    }

    /// The decompressed body, streamed.
    ///
    /// # Errors
    /// When zstd cannot start.
    pub fn body(&self) -> Result<impl Read + Send + 'static> {
        let raw =
            RangeReader { file: self.file.clone(), offset: self.body_start, end: self.body_start + self.body_len };
        zstd::stream::read::Decoder::new(raw).map_err(|e| Error::io("start zstd", &self.path, e))
    }

    /// The whole file's raw bytes, streamed (to send it to another member).
    pub fn raw_file(&self) -> impl Read + Send + 'static {
        RangeReader { file: self.file.clone(), offset: 0, end: self.file_len() }
    }
}

struct RangeReader {
    file: Arc<dyn IoFile>,
    offset: u64,
    end: u64,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = ((self.end - self.offset) as usize).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.offset)?;
        self.offset += got as u64;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn roundtrip_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(Arc::new(StdIo), dir.path()).unwrap();
        let data = body(3 << 20);
        let mut w = snaps.create(2, 100, b"raft-meta", b"app", 3).unwrap();
        for chunk in data.chunks(70_000) {
            w.write_all(chunk).unwrap();
        }
        let info = w.finish().unwrap();
        assert_eq!(info.raw_bytes, data.len() as u64);
        assert_eq!(snaps.latest().unwrap().unwrap().path, info.path);
        let r = snaps.open_reader(&info.path).unwrap();
        assert_eq!((r.raft_meta(), r.app_meta(), r.level()), (&b"raft-meta"[..], &b"app"[..], 3));
        let mut back = Vec::new();
        r.body().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, data);

        // Every kind of damage is refused before the body is handed out.
        let orig = std::fs::read(&info.path).unwrap();
        let len = orig.len();
        for (what, pos) in [("header", 12usize), ("meta", 26), ("body", len / 2), ("trailer", len - 20)] {
            let mut b = orig.clone();
            b[pos] ^= 0x01;
            std::fs::write(&info.path, &b).unwrap();
            assert!(matches!(snaps.open_reader(&info.path), Err(Error::Corruption { .. })), "{what}");
        }
        for cut in [10, len / 3, len - 1] {
            std::fs::write(&info.path, &orig[..cut]).unwrap();
            assert!(snaps.open_reader(&info.path).is_err(), "truncated at {cut}");
        }
        // A trailer whose body length overflows when added to the header's (found by the
        // snapshot fuzz target: a panic in builds with overflow checks).
        let mut b = orig.clone();
        b[len - fmt::TRAILER_LEN..len - fmt::TRAILER_LEN + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&info.path, &b).unwrap();
        assert!(matches!(snaps.open_reader(&info.path), Err(Error::Corruption { .. })), "overflowing body length");
        let mut b = orig.clone();
        b[8] = 9;
        std::fs::write(&info.path, &b).unwrap();
        assert!(matches!(snaps.open_reader(&info.path), Err(Error::UnsupportedVersion { found: 9, .. })));
        std::fs::write(&info.path, &orig).unwrap();

        // A newer snapshot replaces the older one once it is finished; a received copy is checked.
        let mut w = snaps.create(2, 200, b"m", b"", 1).unwrap();
        w.write_all(&data[..1000]).unwrap();
        let newer = w.finish().unwrap();
        assert_eq!(snaps.remove_older_than(&newer).unwrap(), 1);
        assert_eq!(snaps.list().unwrap().len(), 1);
        let other = tempfile::tempdir().unwrap();
        let remote = Snapshots::open(Arc::new(StdIo), other.path()).unwrap();
        let got = remote.receive(2, 200, snaps.open_reader(&newer.path).unwrap().raw_file()).unwrap();
        assert!(remote.open_reader(&got.path).is_ok());
        let mut bad = std::fs::read(&newer.path).unwrap();
        let l = bad.len();
        bad[l / 2] ^= 4;
        assert!(remote.receive(2, 300, &bad[..]).is_err());
        assert_eq!(remote.list().unwrap().len(), 1, "a damaged incoming snapshot is not kept");
    }

    #[test]
    fn abandoned_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(Arc::new(StdIo), dir.path()).unwrap();
        let mut w = snaps.create(1, 1, b"", b"", 1).unwrap();
        w.write_all(b"half").unwrap();
        drop(w);
        assert!(std::fs::read_dir(snaps.dir()).unwrap().next().is_none());
    }
}
