//! Physical compaction: remove versions no read at or above the compacted revision can see.
//! Runs off the apply path (the state machine hands it to a background thread); readers are
//! never paused. Snapshot builds and compaction exclude each other, so a snapshot always holds
//! every version its revisions need.

use std::sync::atomic::Ordering;

use crossbeam_epoch as epoch;

use super::store::{Store, VKey};

impl Store {
    /// Remove every version that is neither above the compacted revision nor the newest version
    /// at or below it (that one is kept unless it is a delete). Returns how many were removed.
    pub fn compact_physically(&self) -> usize {
        let _guard = self.compaction.lock();
        let upto = self.compacted_revision();
        if upto <= self.physically_compacted.load(Ordering::Acquire) {
            return 0;
        }
        let mut removed = 0;
        let mut current_key: Option<super::store::KeyBuf> = None;
        let mut kept_base = false;
        // A delete that is the state at `upto` goes last, after the older versions under it:
        // while any older live version remains, the delete must still hide it from readers.
        let mut base_tombstone: Option<VKey> = None;
        // Walk in chunks, re-pinning between them, so removed nodes can be reclaimed as we go.
        let mut resume: Option<VKey> = None;
        loop {
            let guard = &epoch::pin();
            let mut cur = match &resume {
                None => self.map.front(guard),
                Some(k) => self.map.lower_bound(std::ops::Bound::Excluded(k), guard),
            };
            let mut steps = 0;
            while let Some(e) = cur {
                let vk = e.key();
                if current_key.as_ref() != Some(&vk.key) {
                    if let Some(t) = base_tombstone.take()
                        && self.map.remove(&t, guard).map(|r| r.release(guard)).is_some()
                    {
                        removed += 1;
                    }
                    current_key = Some(vk.key.clone());
                    kept_base = false;
                }
                if vk.rev <= upto {
                    // Versions of a key come newest first: the first one at or below `upto` is
                    // the state at `upto`; it stays unless it is a delete. Everything older goes.
                    if kept_base {
                        if e.remove() {
                            removed += 1;
                        }
                    } else if e.value().tombstone {
                        base_tombstone = Some(vk.clone());
                    }
                    kept_base = true;
                }
                steps += 1;
                if steps >= 4096 {
                    resume = Some(vk.clone());
                    break;
                }
                cur = e.next();
            }
            if steps < 4096 {
                break;
            }
        }
        if let Some(t) = base_tombstone.take() {
            let guard = &epoch::pin();
            if let Some(r) = self.map.remove(&t, guard) {
                r.release(guard);
                removed += 1;
            }
        }
        self.physically_compacted.store(upto, Ordering::Release);
        removed
    }
}
