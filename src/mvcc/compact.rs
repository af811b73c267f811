//! Physical compaction: remove versions no read at or above the compacted revision can see.
//! Runs off the apply path (the state machine hands it to a background thread); readers are
//! never paused. Snapshot builds and compaction exclude each other, so a snapshot always holds
//! every version its revisions need.

use std::sync::atomic::Ordering;

use super::store::Store;

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
        let mut cur = self.map.front();
        let mut current_key: Option<bytes::Bytes> = None;
        let mut kept_base = false;
        // A delete that is the state at `upto` goes last, after the older versions under it:
        // while any older live version remains, the delete must still hide it from readers.
        let mut base_tombstone = None;
        while let Some(e) = cur {
            let vk = e.key();
            if current_key.as_ref() != Some(&vk.key) {
                if let Some(t) = base_tombstone.take() {
                    crossbeam_skiplist::map::Entry::remove(&t);
                    removed += 1;
                }
                current_key = Some(vk.key.clone());
                kept_base = false;
            }
            if vk.rev <= upto {
                // Versions of a key come newest first: the first one at or below `upto` is the
                // state at `upto`; it stays unless it is a delete. Everything older goes.
                if kept_base {
                    e.remove();
                    removed += 1;
                } else if e.value().tombstone {
                    base_tombstone = Some(e.clone());
                }
                kept_base = true;
            }
            cur = e.next();
        }
        if let Some(t) = base_tombstone.take() {
            t.remove();
            removed += 1;
        }
        self.physically_compacted.store(upto, Ordering::Release);
        removed
    }
}
