//! Auto-compaction on a timer against a live store: history older than the retention goes,
//! newer history stays readable.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conflux::compactor::{AutoCompaction, spawn};
use conflux::mvcc::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_keeps_the_window() {
    let store = Arc::new(Store::new());
    let mode = AutoCompaction::parse("periodic", "1s").unwrap().unwrap();
    let (s1, s2) = (store.clone(), store.clone());
    let task = spawn(
        mode,
        move || (s1.revision(), s1.compacted_revision()),
        move |rev| {
            let s = s2.clone();
            async move {
                s.apply(&WriteRequest::Compact(CompactionRequest { revision: rev as i64, physical: false })).unwrap();
                s.compact_physically();
                true
            }
        },
    );
    let start = std::time::Instant::now();
    let mut revs_at = Vec::new();
    while start.elapsed() < Duration::from_millis(2500) {
        store
            .apply(&WriteRequest::Put(PutRequest {
                key: Bytes::from("k"),
                value: Bytes::from(format!("{:?}", start.elapsed())),
                ..Default::default()
            }))
            .unwrap();
        revs_at.push((start.elapsed(), store.revision()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    let compacted = store.compacted_revision();
    assert!(compacted > 1, "compacted something");
    // Nothing younger than the retention (1 s, give or take one 100 ms check) was compacted.
    let young =
        revs_at.iter().find(|(t, _)| *t >= start.elapsed().saturating_sub(Duration::from_millis(800))).unwrap().1;
    assert!(compacted < young, "compacted {compacted} is inside the retention window (revision {young})");
    let r =
        store.range(&RangeRequest { key: Bytes::from("k"), revision: compacted as i64, ..Default::default() }).unwrap();
    assert_eq!(r.kvs.len(), 1);
    assert!(matches!(
        store.range(&RangeRequest { key: Bytes::from("k"), revision: compacted as i64 - 1, ..Default::default() }),
        Err(MvccError::Compacted { .. })
    ));
}
