//! Reused append buffers. A fresh multi-megabyte buffer per append costs a page fault per 4 KiB
//! touched (large allocations are fresh mappings); measured on the 256 × 16 KiB append bench, that
//! was more than the encoding itself. Buffers go back to the pool when the writer drops the last
//! slice of them, after they are written.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// Buffers kept for reuse at most.
const KEEP: usize = 16;
/// Larger buffers are not kept.
const MAX_KEPT_CAPACITY: usize = 64 << 20;

#[derive(Debug, Default)]
pub(crate) struct BufPool {
    free: Mutex<Vec<Vec<u8>>>,
}

struct Pooled {
    vec: Vec<u8>,
    pool: Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.vec
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.vec);
        if v.capacity() <= MAX_KEPT_CAPACITY {
            v.clear();
            let mut free = self.pool.free.lock();
            if free.len() < KEEP {
                free.push(v);
            }
        }
    }
}

impl BufPool {
    /// An empty buffer with room for at least `hint` bytes.
    pub fn take(&self, hint: usize) -> Vec<u8> {
        let mut free = self.free.lock();
        match free.iter().position(|v| v.capacity() >= hint) {
            Some(i) => free.swap_remove(i),
            None => {
                drop(free);
                Vec::with_capacity(hint)
            }
        }
    }

    /// Freeze `vec` into `Bytes` that return it to the pool when the last slice is dropped.
    pub fn freeze(self: &Arc<Self>, vec: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { vec, pool: self.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_after_the_last_slice() {
        let pool = Arc::new(BufPool::default());
        let mut v = pool.take(1000);
        v.extend_from_slice(&[7u8; 1000]);
        let ptr = v.as_ptr();
        let b = pool.freeze(v);
        let s1 = b.slice(0..10);
        drop(b);
        assert!(pool.free.lock().is_empty(), "a slice still holds it");
        assert_eq!(&s1[..], &[7u8; 10]);
        drop(s1);
        let again = pool.take(500);
        assert_eq!(again.as_ptr(), ptr, "the same buffer is reused");
        assert!(again.is_empty());
    }
}
