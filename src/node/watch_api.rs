//! etcd's Watch service: one bidirectional gRPC stream carries any number of watchers.
//!
//! Each stream is one task. It reads the state machine's watch feed
//! ([`crate::watch_hub::WatchHub`]) at its own pace: every watcher keeps the next revision it
//! owes the client and, whenever the applied revision moves, takes its events from the feed's
//! ring (or, when it is behind the ring, rebuilds them from the store's retained versions). Apply
//! never waits for a watcher; a client that stops reading holds only its own stream's task (the
//! answers queue in a small bounded channel, then in HTTP/2 flow control). A watcher whose
//! revision was compacted away before it caught up is cancelled with etcd's compacted answer.
//! Events come from this member's applied state, so any member serves watches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::Core;
use super::api::spawn_stream;
use super::convert;
use super::proto::etcdserverpb::{self as pb, watch_server};
use super::proto::mvccpb;
use crate::mvcc::event::KeyRange;
use crate::mvcc::{Event, EventKind, MvccError};
use crate::watch_hub::WatcherGuard;

/// Most events in one answer (cut at a revision boundary; one revision is never split, except
/// by fragmenting).
const MAX_EVENTS_PER_RESPONSE: usize = 1000;
/// Answers are cut (at a revision boundary) once they hold this many bytes of events, so a
/// watcher catching up from history gets answers a client's default 4 MiB limit accepts.
const RESPONSE_BYTES: usize = 1 << 20;
/// etcd's id for answers that belong to no watcher (progress requested by the client).
const NO_WATCH_ID: i64 = -1;

/// The Watch service.
#[derive(Clone)]
pub struct WatchApi {
    core: Arc<Core>,
}

impl WatchApi {
    /// The service over `core`.
    pub fn new(core: Arc<Core>) -> WatchApi {
        WatchApi { core }
    }
}

type WatchStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl watch_server::Watch for WatchApi {
    type WatchStream = WatchStream;

    async fn watch(&self, r: Request<Streaming<pb::WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let core = self.core.clone();
        let input = r.into_inner();
        Ok(Response::new(spawn_stream(move |tx| async move {
            let mut s = WatchSession::new(core, tx);
            s.run(input).await;
        })))
    }
}

/// One watcher of a stream.
struct Watcher {
    range: KeyRange,
    /// The next revision to report.
    next: u64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    /// When the client last heard from this watcher.
    last_sent: Instant,
    /// Keeps apply collecting events.
    _guard: WatcherGuard,
}

/// The client went away.
struct Gone;

/// What woke a stream's task.
enum Wake {
    Request(Option<Result<pb::WatchRequest, Status>>),
    Revision,
    Progress,
}

struct WatchSession {
    core: Arc<Core>,
    tx: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
}

impl WatchSession {
    fn new(core: Arc<Core>, tx: mpsc::Sender<Result<pb::WatchResponse, Status>>) -> WatchSession {
        WatchSession { core, tx, watchers: BTreeMap::new(), next_id: 0 }
    }

    async fn run(&mut self, mut input: Streaming<pb::WatchRequest>) {
        let hub = self.core.sm.hub().clone();
        let mut revisions = hub.subscribe();
        let mut stopping = self.core.stopping.clone();
        let interval = self.core.watch_progress_interval;
        let mut progress = tokio::time::interval_at((Instant::now() + interval).into(), interval);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A watcher catching up from history gets one batch per turn, so requests on the
            // stream are still served between batches.
            let behind = match self.deliver().await {
                Ok(behind) => behind,
                Err(Gone) => return,
            };
            let wake = tokio::select! {
                _ = std::future::ready(()), if behind => Wake::Revision,
                req = input.next() => Wake::Request(req),
                changed = revisions.changed() => if changed.is_err() { return } else { Wake::Revision },
                _ = progress.tick() => Wake::Progress,
                _ = stopping.wait_for(|s| *s) => return,
            };
            let sent = match wake {
                Wake::Request(Some(Ok(req))) => self.handle(req).await,
                Wake::Request(Some(Err(e))) => {
                    tracing::debug!(error = %e, "watch stream broke");
                    return;
                }
                Wake::Request(None) => return,
                Wake::Revision => Ok(()),
                Wake::Progress => self.notify_progress(interval).await,
            };
            if sent.is_err() {
                return;
            }
        }
    }

    fn header(&self, revision: i64) -> pb::ResponseHeader {
        self.core.header().header(revision)
    }

    async fn send(&self, resp: pb::WatchResponse) -> Result<(), Gone> {
        self.tx.send(Ok(resp)).await.map_err(|_| Gone)
    }

    async fn handle(&mut self, req: pb::WatchRequest) -> Result<(), Gone> {
        use pb::watch_request::RequestUnion as U;
        match req.request_union {
            Some(U::CreateRequest(c)) => self.create(c).await,
            Some(U::CancelRequest(c)) => {
                // etcd answers only the cancel of a watcher that exists.
                if self.watchers.remove(&c.watch_id).is_some() {
                    let resp = pb::WatchResponse {
                        header: Some(self.header(self.core.revision())),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(resp).await?;
                }
                Ok(())
            }
            Some(U::ProgressRequest(_)) => {
                // Deliver what is owed first, so the revision reported is one every watcher has
                // been told everything up to.
                while self.deliver().await? {}
                let resp = pb::WatchResponse {
                    header: Some(self.header(self.core.revision())),
                    watch_id: NO_WATCH_ID,
                    ..Default::default()
                };
                self.send(resp).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> Result<(), Gone> {
        let store = self.core.sm.store();
        let current = store.revision();
        let refuse = |reason: &str| pb::WatchResponse {
            header: Some(self.header(current as i64)),
            watch_id: NO_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        let end_is_key_range = !c.range_end.is_empty() && c.range_end.as_ref() != [0];
        if end_is_key_range && c.key.as_ref() >= c.range_end.as_ref() {
            return self.send(refuse("mvcc: watcher range is empty")).await;
        }
        let id = if c.watch_id != 0 {
            if self.watchers.contains_key(&c.watch_id) {
                return self.send(refuse("mvcc: duplicate watch ID provided on the WatchStream")).await;
            }
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if c.watch_id == 0 {
            self.next_id += 1;
        }
        let start = if c.start_revision > 0 { c.start_revision as u64 } else { current + 1 };
        let no_put = c.filters.contains(&(pb::watch_create_request::FilterType::Noput as i32));
        let no_delete = c.filters.contains(&(pb::watch_create_request::FilterType::Nodelete as i32));
        let created = pb::WatchResponse {
            header: Some(self.header(current as i64)),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        self.send(created).await?;
        let compacted = store.compacted_revision();
        if start < compacted {
            return self.send(compacted_answer(self.header(0), id, compacted)).await;
        }
        let watcher = Watcher {
            range: KeyRange::new(c.key, &c.range_end),
            next: start,
            prev_kv: c.prev_kv,
            no_put,
            no_delete,
            progress_notify: c.progress_notify,
            fragment: c.fragment,
            last_sent: Instant::now(),
            _guard: self.core.sm.hub().register(),
        };
        self.watchers.insert(id, watcher);
        Ok(())
    }

    /// Send every watcher what it is owed up to the published revision (a watcher catching up
    /// from history: one batch of it). True when some watcher is still behind.
    async fn deliver(&mut self) -> Result<bool, Gone> {
        let mut behind = false;
        let hub = self.core.sm.hub().clone();
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let store = self.core.sm.store();
            let Some(w) = self.watchers.get(&id) else { continue };
            if w.next > store.revision() {
                continue;
            }
            match hub.fetch(&store, &w.range, w.next) {
                Ok(f) => {
                    let events: Vec<mvccpb::Event> =
                        f.events.into_iter().filter(|e| keep(w, e)).map(|e| convert::event(e, w.prev_kv)).collect();
                    let (fragment, limit) = (w.fragment, self.core.max_request_bytes);
                    if let Some(w) = self.watchers.get_mut(&id) {
                        w.next = f.next;
                    }
                    behind |= f.next <= store.revision();
                    if f.from_history {
                        tracing::debug!(watch = id, upto = f.next - 1, "watcher caught up from history");
                    }
                    if events.is_empty() {
                        continue;
                    }
                    for resp in self.responses(id, events, fragment, limit) {
                        self.send(resp).await?;
                    }
                    if let Some(w) = self.watchers.get_mut(&id) {
                        w.last_sent = Instant::now();
                    }
                }
                Err(MvccError::Compacted { compacted }) => {
                    self.watchers.remove(&id);
                    self.send(compacted_answer(self.header(0), id, compacted as u64)).await?;
                }
                Err(e) => {
                    tracing::warn!(watch = id, error = %e, "watch cancelled");
                    self.watchers.remove(&id);
                    let resp = pb::WatchResponse {
                        header: Some(self.header(self.core.revision())),
                        watch_id: id,
                        canceled: true,
                        cancel_reason: e.to_string(),
                        ..Default::default()
                    };
                    self.send(resp).await?;
                }
            }
        }
        Ok(behind)
    }

    /// Answers for `events` of watcher `id`: at most [`MAX_EVENTS_PER_RESPONSE`] each, cut
    /// between revisions; with `fragment`, an answer over `limit` bytes is split into fragments.
    fn responses(&self, id: i64, events: Vec<mvccpb::Event>, fragment: bool, limit: usize) -> Vec<pb::WatchResponse> {
        let rev = |e: &mvccpb::Event| e.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
        let mut out = Vec::new();
        let mut chunk: Vec<mvccpb::Event> = Vec::new();
        let h = self.core.header();
        let flush = |chunk: Vec<mvccpb::Event>, out: &mut Vec<pb::WatchResponse>| {
            let last = chunk.last().map(rev).unwrap_or(0);
            let resp =
                pb::WatchResponse { header: Some(h.header(last)), watch_id: id, events: chunk, ..Default::default() };
            if fragment && resp.encoded_len() > limit {
                out.extend(fragments(resp, limit));
            } else {
                out.push(resp);
            }
        };
        let mut bytes = 0;
        for e in events {
            let full = chunk.len() >= MAX_EVENTS_PER_RESPONSE || bytes >= RESPONSE_BYTES;
            if full && chunk.last().map(rev) != Some(rev(&e)) {
                flush(std::mem::take(&mut chunk), &mut out);
                bytes = 0;
            }
            bytes += e.encoded_len();
            chunk.push(e);
        }
        if !chunk.is_empty() {
            flush(chunk, &mut out);
        }
        out
    }

    /// Tell idle watchers that asked for progress notifications where the store is.
    async fn notify_progress(&mut self, interval: std::time::Duration) -> Result<(), Gone> {
        let now = Instant::now();
        let revision = self.core.revision();
        let due: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.progress_notify && now.duration_since(w.last_sent) >= interval)
            // Only a watcher that is caught up may report the current revision.
            .filter(|(_, w)| w.next > revision as u64)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let resp = pb::WatchResponse { header: Some(self.header(revision)), watch_id: id, ..Default::default() };
            self.send(resp).await?;
            if let Some(w) = self.watchers.get_mut(&id) {
                w.last_sent = now;
            }
        }
        Ok(())
    }
}

fn keep(w: &Watcher, e: &Event) -> bool {
    match e.kind {
        EventKind::Put => !w.no_put,
        EventKind::Delete => !w.no_delete,
    }
}

/// etcd's answer to a watcher whose next revision was compacted: cancelled, with the compacted
/// revision (clients turn it into "required revision has been compacted"). etcd's header there
/// carries revision 0.
fn compacted_answer(h: pb::ResponseHeader, id: i64, compacted: u64) -> pb::WatchResponse {
    pb::WatchResponse {
        header: Some(h),
        watch_id: id,
        canceled: true,
        compact_revision: compacted as i64,
        ..Default::default()
    }
}

/// Split `resp` into answers of at most about `limit` bytes each (at least one event each), all
/// but the last marked `fragment`, as etcd does for watchers created with `fragment`.
fn fragments(resp: pb::WatchResponse, limit: usize) -> Vec<pb::WatchResponse> {
    let base = pb::WatchResponse { events: Vec::new(), ..resp.clone() };
    let overhead = base.encoded_len();
    let mut out = Vec::new();
    let mut cur = base.clone();
    let mut size = overhead;
    for e in resp.events {
        let n = e.encoded_len() + 4;
        if !cur.events.is_empty() && size + n > limit {
            let mut full = std::mem::replace(&mut cur, base.clone());
            full.fragment = true;
            out.push(full);
            size = overhead;
        }
        size += n;
        cur.events.push(e);
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rev: i64, value_len: usize) -> mvccpb::Event {
        mvccpb::Event {
            kv: Some(mvccpb::KeyValue {
                key: bytes::Bytes::from_static(b"k"),
                mod_revision: rev,
                value: vec![b'x'; value_len].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fragments_stay_under_the_limit_and_mark_all_but_the_last() {
        let resp =
            pb::WatchResponse { watch_id: 3, events: (1..=10).map(|r| ev(r, 100)).collect(), ..Default::default() };
        let parts = fragments(resp, 350);
        assert!(parts.len() >= 4, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.encoded_len() <= 350 && !p.events.is_empty() && p.watch_id == 3));
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment));
        assert!(!parts.last().unwrap().fragment);
        let revs: Vec<i64> =
            parts.iter().flat_map(|p| p.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision)).collect();
        assert_eq!(revs, (1..=10).collect::<Vec<_>>(), "every event once, in order");
    }
}
