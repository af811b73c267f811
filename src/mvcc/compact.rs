//! Physical compaction: remove versions no read at or above the compacted revision can see.
//! Runs off the apply path (the state machine hands it to a background thread); readers are
//! never paused. Snapshot builds and compaction exclude each other, so a snapshot always holds
//! every version its revisions need.

use std::sync::atomic::Ordering;

use crossbeam_epoch as epoch;

use std::sync::Arc;

use super::store::{KeyBuf, Store, VNode};

impl Store {
    /// Remove every version that is neither above the compacted revision nor the newest version
    /// at or below it (that one is kept unless it is a delete). Returns how many were removed.
    pub fn compact_physically(&self) -> usize {
        let _guard = self.compaction.lock();
        let upto = self.compacted_revision();
        if upto <= self.physically_compacted.load(Ordering::Acquire) {
            return 0;
        }
        let mut removed = 0usize;
        let mut freed = 0u64;
        // Walk the keys in chunks, re-pinning between them so cut versions can be reclaimed,
        // with apply held off only while a chunk is processed (keys may be removed).
        let mut resume: Option<KeyBuf> = None;
        loop {
            let _apply = self.apply_lock.lock();
            let guard = &epoch::pin();
            let mut cur = match &resume {
                None => self.map.front(guard),
                Some(k) => self.map.lower_bound(std::ops::Bound::Excluded(k.as_slice()), guard),
            };
            let mut steps = 0;
            while let Some(e) = cur {
                let chain = e.value();
                // The newest version at or below `upto` (the base) and the one before it.
                let mut pred: Option<Arc<VNode>> = None;
                let mut node = chain.head.load_full();
                while let Some(n) = node.clone() {
                    if n.rev <= upto {
                        break;
                    }
                    pred = Some(n.clone());
                    node = n.next.load_full();
                }
                if let Some(base) = node {
                    // Everything older than the base goes first...
                    let mut older = base.next.swap(None);
                    while let Some(o) = older {
                        removed += 1;
                        freed += Store::version_bytes(e.key().len(), o.v.value.len());
                        older = o.next.load_full();
                    }
                    // ...then the base itself, if it is a delete: the key did not exist then.
                    if base.v.tombstone {
                        removed += 1;
                        freed += Store::version_bytes(e.key().len(), base.v.value.len());
                        match pred {
                            Some(p) => p.next.store(None),
                            None => {
                                e.remove();
                            }
                        }
                    }
                }
                steps += 1;
                if steps >= 4096 {
                    resume = Some(e.key().clone());
                    break;
                }
                cur = e.next();
            }
            if steps < 4096 {
                break;
            }
        }
        self.versions.fetch_sub(removed as u64, Ordering::Relaxed);
        self.retained.fetch_sub(freed, Ordering::Relaxed);
        self.physically_compacted.store(upto, Ordering::Release);
        removed
    }
}
