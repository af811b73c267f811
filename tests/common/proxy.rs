//! A TCP proxy between cluster members that a test controls: one-way and two-way partitions
//! between chosen members, isolating a member, added delay, heal.
//!
//! **Wiring.** Member `j` listens on its real peer port; the proxy listens on a port of its own
//! for it ([`Proxy::port`]), which is what every member advertises and dials
//! (`--initial-advertise-peer-urls`, `--initial-cluster`). Each member dials from its own
//! loopback address (`--peer-local-address`, [`source_address`]), so the proxy knows a
//! connection's source member from the source IP and its destination from the port it came in
//! on. A connection from an address no member uses is forwarded without rules and counted
//! ([`Stats::unknown_sources`]; a test should expect none).
//!
//! **Directions, not connections.** A rule applies to the bytes flowing from member `a` to member
//! `b`, whichever of the two dialled: blocking `a → b` holds `a`'s requests on connections `a`
//! opened, and `a`'s answers on connections `b` opened. Members hear each other through answers
//! as much as through requests, so that is what "`b` cannot hear `a`" means.
//!
//! **Held, never torn.** A blocked direction is not read any more (the sender's socket buffer
//! fills and its writes stall, as behind a black hole where TCP keeps retransmitting); a chunk
//! already read is kept, not dropped. Each direction of a connection therefore delivers an
//! in-order prefix of what was sent, never a stream with a gap, so HTTP/2 framing is never
//! broken: a receiver sees either valid frames or a connection that stalls. Connections made
//! while a direction is blocked are accepted and held the same way (the TCP handshake with the
//! proxy succeeds, nothing gets through). [`Proxy::heal`] lifts every rule and closes every
//! connection that had a blocked direction — the held bytes are discarded, so each receiver saw
//! a prefix and then a closed connection — and the members reconnect on fresh connections. Held
//! bytes are never delivered late.
//!
//! **Delay** postpones each chunk by the direction's delay from when it was read, keeping the
//! order. **Duplicate** is not offered: TCP discards duplicate segments below the application, and
//! duplicating bytes inside a stream would only corrupt HTTP/2's framing. What members do see
//! twice are messages re-sent after a connection broke (openraft re-sends appends and votes on a
//! new connection), which [`Proxy::heal`] causes for every message in flight on a held
//! connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Bytes read from one side at a time.
const CHUNK: usize = 64 << 10;
/// Chunks in flight per direction (read, not yet written): bounds the proxy's memory under delay.
const IN_FLIGHT: usize = 64;

/// The loopback address member `i` dials other members from (`--peer-local-address`): all of
/// 127.0.0.0/8 reaches `lo` on Linux.
pub fn source_address(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + u8::try_from(i).expect("at most 245 members")))
}

/// What one direction (member `a` → member `b`) does to its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rule {
    /// Held: not read from the sender, not delivered.
    pub blocked: bool,
    /// Added to every chunk's delivery.
    pub delay: Duration,
}

/// Counters of what the proxy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections from an address no member dials from (forwarded without rules).
    pub unknown_sources: u64,
    /// Times a blocked direction stopped a connection's reader (no more bytes taken from the
    /// sender) or its writer (a chunk already read kept back).
    pub held: u64,
    /// Connections closed by [`Proxy::heal`].
    pub closed_on_heal: u64,
    /// Chunks delivered under a delay.
    pub delayed: u64,
}

/// One forwarded connection, as the controls see it.
struct Conn {
    from: usize,
    to: usize,
    /// A direction of it was blocked at some point: [`Proxy::heal`] closes it.
    tainted: Arc<AtomicBool>,
    abort: tokio::task::AbortHandle,
}

struct Shared {
    sources: HashMap<IpAddr, usize>,
    rules: Mutex<HashMap<(usize, usize), Rule>>,
    /// Bumped on every rule change, waking held directions.
    changed: watch::Sender<u64>,
    conns: Mutex<HashMap<u64, Conn>>,
    next_conn: AtomicU64,
    connections: AtomicU64,
    unknown_sources: AtomicU64,
    held: AtomicU64,
    closed_on_heal: AtomicU64,
    delayed: AtomicU64,
}

impl Shared {
    fn rule(&self, from: usize, to: usize) -> Rule {
        self.rules.lock().unwrap().get(&(from, to)).copied().unwrap_or_default()
    }

    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }
}

/// The proxy: a listener per member, on its own small runtime. Stops when dropped.
pub struct Proxy {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    ports: Vec<u16>,
}

impl Proxy {
    /// Listen on a free loopback port for each member, forwarding to `peer_ports[j]` on
    /// 127.0.0.1; member `i` is recognised by [`source_address`]`(i)`.
    pub fn start(peer_ports: &[u16]) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        let shared = Arc::new(Shared {
            sources: (0..peer_ports.len()).map(|i| (source_address(i), i)).collect(),
            rules: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            unknown_sources: AtomicU64::new(0),
            held: AtomicU64::new(0),
            closed_on_heal: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
        });
        let mut ports = Vec::new();
        for (to, &upstream) in peer_ports.iter().enumerate() {
            let listener = rt.block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).expect("proxy listener");
            ports.push(listener.local_addr().expect("proxy port").port());
            rt.spawn(accept_loop(shared.clone(), listener, to, upstream));
        }
        Proxy { rt, shared, ports }
    }

    /// The port member `j` is reached at through the proxy (what it advertises).
    pub fn port(&self, j: usize) -> u16 {
        self.ports[j]
    }

    /// Hold the bytes member `from` sends to member `to` (one-way partition).
    pub fn block(&self, from: usize, to: usize) {
        self.set(from, to, |r| r.blocked = true);
    }

    /// Hold the bytes between `a` and `b` both ways (two-way partition).
    pub fn block_both(&self, a: usize, b: usize) {
        self.block(a, b);
        self.block(b, a);
    }

    /// Cut member `m` off from every other member, both ways.
    pub fn isolate(&self, m: usize) {
        for other in 0..self.ports.len() {
            if other != m {
                self.block_both(m, other);
            }
        }
    }

    /// Deliver what `from` sends to `to` `delay` late.
    pub fn delay(&self, from: usize, to: usize, delay: Duration) {
        self.set(from, to, |r| r.delay = delay);
    }

    /// Lift every rule; close every connection that had a blocked direction (their held bytes
    /// are discarded), so members reconnect on fresh connections.
    pub fn heal(&self) {
        self.shared.rules.lock().unwrap().clear();
        let mut conns = self.shared.conns.lock().unwrap();
        conns.retain(|_, c| {
            if c.tainted.load(Ordering::SeqCst) {
                c.abort.abort();
                self.shared.closed_on_heal.fetch_add(1, Ordering::Relaxed);
                false
            } else {
                true
            }
        });
        drop(conns);
        self.shared.bump();
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            connections: s.connections.load(Ordering::Relaxed),
            unknown_sources: s.unknown_sources.load(Ordering::Relaxed),
            held: s.held.load(Ordering::Relaxed),
            closed_on_heal: s.closed_on_heal.load(Ordering::Relaxed),
            delayed: s.delayed.load(Ordering::Relaxed),
        }
    }

    fn set(&self, from: usize, to: usize, change: impl FnOnce(&mut Rule)) {
        assert!(from != to && from < self.ports.len() && to < self.ports.len(), "no link {from} -> {to}");
        let blocked = {
            let mut rules = self.shared.rules.lock().unwrap();
            let rule = rules.entry((from, to)).or_default();
            change(rule);
            rule.blocked
        };
        if blocked {
            // Live connections between the two now carry a held direction.
            for c in self.shared.conns.lock().unwrap().values() {
                if (c.from, c.to) == (from, to) || (c.from, c.to) == (to, from) {
                    c.tainted.store(true, Ordering::SeqCst);
                }
            }
        }
        self.shared.bump();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for c in self.shared.conns.lock().unwrap().values() {
            c.abort.abort();
        }
        // The runtime shuts down after this, closing the listeners and every socket.
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, to: usize, upstream: u16) {
    loop {
        let Ok((inbound, peer)) = listener.accept().await else { continue };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let from = shared.sources.get(&peer.ip()).copied();
        let Some(from) = from.filter(|&f| f != to) else {
            shared.unknown_sources.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(forward(shared.clone(), inbound, upstream, None, Arc::new(AtomicBool::new(false))));
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let tainted = Arc::new(AtomicBool::new(shared.rule(from, to).blocked || shared.rule(to, from).blocked));
        // Registered before it runs, so a heal or block sees it; it removes itself when done.
        let mut conns = shared.conns.lock().unwrap();
        let task = tokio::spawn({
            let (shared, tainted) = (shared.clone(), tainted.clone());
            async move {
                forward(shared.clone(), inbound, upstream, Some((from, to)), tainted).await;
                shared.conns.lock().unwrap().remove(&id);
            }
        });
        conns.insert(id, Conn { from, to, tainted, abort: task.abort_handle() });
    }
}

/// Forward one connection (`link`: dialling member, dialled member) until both directions end;
/// an error on either side closes both.
async fn forward(
    shared: Arc<Shared>,
    inbound: TcpStream,
    upstream: u16,
    link: Option<(usize, usize)>,
    tainted: Arc<AtomicBool>,
) {
    let Ok(outbound) = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, upstream))).await else {
        return; // the member is down: the dialler sees its connection close
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let up = pump(&shared, in_read, out_write, link, &tainted);
    let down = pump(&shared, out_read, in_write, link.map(|(a, b)| (b, a)), &tainted);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            clean = &mut up, if !up_done => if clean { up_done = true } else { return },
            clean = &mut down, if !down_done => if clean { down_done = true } else { return },
        }
    }
}

/// Copy one direction (`dir`: sending member, receiving member) under its rule, in order, until
/// the sender's EOF (passed on as a write shutdown: true) or a write error (false).
async fn pump(
    shared: &Shared,
    mut src: tokio::net::tcp::OwnedReadHalf,
    mut dst: tokio::net::tcp::OwnedWriteHalf,
    dir: Option<(usize, usize)>,
    tainted: &AtomicBool,
) -> bool {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        loop {
            wait_open(shared, dir, tainted).await;
            let mut buf = vec![0u8; CHUNK];
            // A read error counts as the end of the stream: what was read is still delivered.
            let n = tokio::select! {
                r = src.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                _ = tx.closed() => return,
            };
            buf.truncate(n);
            let delay = dir.map(|(a, b)| shared.rule(a, b).delay).unwrap_or_default();
            if !delay.is_zero() {
                shared.delayed.fetch_add(1, Ordering::Relaxed);
            }
            if tx.send((Instant::now() + delay, buf)).await.is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            wait_open(shared, dir, tainted).await;
            if dst.write_all(&chunk).await.is_err() {
                return false;
            }
        }
        let _ = dst.shutdown().await;
        true
    };
    tokio::join!(read, write).1
}

/// Return once direction `dir` is not blocked (at once for connections without rules).
async fn wait_open(shared: &Shared, dir: Option<(usize, usize)>, tainted: &AtomicBool) {
    let Some((a, b)) = dir else { return };
    let mut changed = shared.changed.subscribe();
    let mut counted = false;
    while shared.rule(a, b).blocked {
        tainted.store(true, Ordering::SeqCst);
        if !counted {
            shared.held.fetch_add(1, Ordering::Relaxed);
            counted = true;
        }
        if changed.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
