//! The backup framing: payload = snapshot container + zero padding to a multiple of
//! [`ALIGN`] bytes; file = payload + SHA-256 of the payload ([`HASH_LEN`] bytes). So a backup
//! file's length is `k * 512 + 32`, the test etcd's restore uses to tell a file with a checksum
//! from one without. Format: `docs/format.md`, "Backup stream and file".

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// The payload (container plus padding) is a multiple of this many bytes.
pub const ALIGN: u64 = 512;
/// Length of the SHA-256 trailer.
pub const HASH_LEN: usize = 32;
/// Bytes per `SnapshotResponse` message (etcd sends 32 KiB chunks too).
pub const CHUNK: usize = 32 * 1024;

/// Payload length for a container of `container_len` bytes: rounded up to [`ALIGN`].
pub fn payload_len(container_len: u64) -> u64 {
    container_len.div_ceil(ALIGN) * ALIGN
}

/// Whether a file of `len` bytes can hold a payload and its checksum (etcd's test).
pub fn has_hash_trailer(len: u64) -> bool {
    len >= ALIGN + HASH_LEN as u64 && len % ALIGN == HASH_LEN as u64
}

/// Reads a payload as chunks, hashing as it goes; [`Chunks::finish`] gives the checksum.
pub struct Chunks<R> {
    inner: io::Chain<R, io::Take<io::Repeat>>,
    total: u64,
    sent: u64,
    hash: Sha256,
}

impl<R: Read> Chunks<R> {
    /// The payload of the container `container` (its `container_len` bytes, then padding).
    pub fn new(container: R, container_len: u64) -> Chunks<R> {
        let total = payload_len(container_len);
        let padding = io::repeat(0).take(total - container_len);
        Chunks { inner: container.chain(padding), total, sent: 0, hash: Sha256::new() }
    }

    /// Payload bytes in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The next chunk (at most [`CHUNK`] bytes) and the payload bytes left after it; `None` at
    /// the end.
    ///
    /// # Errors
    /// Read errors, and [`io::ErrorKind::UnexpectedEof`] when the container is shorter than said.
    pub fn next_chunk(&mut self) -> io::Result<Option<(Vec<u8>, u64)>> {
        let want = (self.total - self.sent).min(CHUNK as u64) as usize;
        if want == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; want];
        self.inner.read_exact(&mut buf)?;
        self.hash.update(&buf);
        self.sent += want as u64;
        Ok(Some((buf, self.total - self.sent)))
    }

    /// The SHA-256 of the payload sent (call after the last chunk).
    pub fn finish(self) -> [u8; HASH_LEN] {
        self.hash.finalize().into()
    }
}

/// SHA-256 of the first `len` bytes of `r`.
///
/// # Errors
/// Read errors; [`io::ErrorKind::UnexpectedEof`] when `r` is shorter.
pub fn sha256_prefix(r: &mut impl Read, len: u64) -> io::Result<[u8; HASH_LEN]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        r.read_exact(&mut buf[..n])?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.finalize().into())
}

/// Lower-case hex, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(container: &[u8]) -> (Vec<u8>, Vec<u64>, [u8; HASH_LEN]) {
        let mut c = Chunks::new(container, container.len() as u64);
        let (mut out, mut left) = (Vec::new(), Vec::new());
        while let Some((b, l)) = c.next_chunk().unwrap() {
            out.extend_from_slice(&b);
            left.push(l);
        }
        (out, left, c.finish())
    }

    #[test]
    fn payload_is_padded_to_512_and_hashed() {
        for len in [1usize, 511, 512, 513, CHUNK, CHUNK + 7, 3 * CHUNK] {
            let container: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            let (out, left, sha) = payload(&container);
            assert_eq!(out.len() as u64, payload_len(len as u64));
            assert_eq!(out.len() % 512, 0);
            assert_eq!(&out[..len], &container[..]);
            assert!(out[len..].iter().all(|&b| b == 0));
            assert_eq!(*left.last().unwrap(), 0);
            assert!(left.windows(2).all(|w| w[0] > w[1]));
            assert_eq!(sha, sha256_prefix(&mut &out[..], out.len() as u64).unwrap());
            assert!(has_hash_trailer(out.len() as u64 + HASH_LEN as u64));
            assert!(!has_hash_trailer(out.len() as u64 + HASH_LEN as u64 - 1));
        }
    }

    #[test]
    fn a_short_container_is_an_error_not_padding() {
        let mut c = Chunks::new(&b"abc"[..], 600);
        assert_eq!(c.next_chunk().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
