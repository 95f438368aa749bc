//! The speaker: the tokio driver around the pure cores. One task per peer owns its TCP
//! connection, runs [`crate::fsm`], keeps the Adj-RIB-Out in step with the [`Export`] the node
//! sets, and feeds received UPDATEs to the shared [`crate::rib`]. One task per BFD peer runs
//! [`crate::bfd`]; when BFD sees the path fail, the BGP session goes down at once.
//!
//! Peers come from the configuration at start and can be added and removed while it runs
//! ([`Speaker::add_peer`], [`Speaker::remove_peer`]: a PoP's interconnect sessions come and go
//! with its CNIs); a removed peer's session ends with a Cease and its routes are forgotten. A
//! peer added with `follow_routes` keeps the prefixes whose accepted route changed, for a
//! consumer that installs them elsewhere ([`Speaker::take_route_changes`]).
//!
//! A route change reaches the wire as soon as the node sets a new export: there is no MRAI
//! delay for our own few prefixes.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::bfd::{self, BfdConfig, BfdState};
pub use crate::config::{Export, PeerConfig, Route, SpeakerConfig, GRACEFUL_SHUTDOWN};
use crate::fsm::{self, Action, Event, State, Timer};
use crate::message::{
    frame_len, Attribute, Capability, Codec, Family, Message, Notification, Origin, Prefix,
    Segment, Update,
};
pub use crate::rib::RouteChange;
use crate::rib::{BestRoute, Path, PeerInfo, Rib};
use crate::socket;

/// A NOTIFICATION a session sent or received, as the diagnostics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationSeen {
    /// We sent it (true) or the peer did.
    pub sent: bool,
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// When.
    pub at: SystemTime,
}

/// A peer as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's AS.
    pub peer_as: u32,
    /// The FSM state.
    pub state: State,
    /// When the session reached Established (while it is).
    pub established_at: Option<Instant>,
    /// Times the session left Established.
    pub flaps: u64,
    /// Why the session last went down or failed to come up.
    pub last_error: Option<String>,
    /// The last NOTIFICATION sent or received.
    pub last_notification: Option<NotificationSeen>,
    /// Prefixes we announce to the peer now.
    pub announced: usize,
    /// Routes the peer sent that we hold.
    pub received: usize,
    /// Of those, routes the import filter accepted.
    pub accepted: usize,
    /// The BFD session's state, when BFD is on.
    pub bfd: Option<BfdState>,
}

/// One running peer.
struct PeerEntry {
    address: IpAddr,
    status: Arc<Mutex<PeerStatus>>,
    export: watch::Sender<Export>,
    stop: watch::Sender<bool>,
    /// Woken when its accepted routes change (peers that follow their routes).
    routes_changed: Option<Arc<Notify>>,
    /// Ends the session now, with the reason (the link under it went down).
    fail: mpsc::UnboundedSender<String>,
    task: Option<JoinHandle<()>>,
    bfd: Option<BfdEntry>,
}

struct BfdEntry {
    discr: u32,
    task: JoinHandle<()>,
}

/// Where received BFD packets go: by our discriminator, or by source address until the peer
/// knows it.
#[derive(Default)]
struct BfdRoutes {
    by_discr: HashMap<u32, mpsc::Sender<bfd::Packet>>,
    by_addr: HashMap<IpAddr, mpsc::Sender<bfd::Packet>>,
    /// The receiving sockets' tasks, per family (true: IPv4), started with the first BFD peer
    /// of the family.
    receivers: HashMap<bool, JoinHandle<()>>,
}

struct Shared {
    local_as: u32,
    router_id: Ipv4Addr,
    runtime: tokio::runtime::Handle,
    peers: Mutex<Vec<PeerEntry>>,
    rib: Mutex<Rib>,
    /// Accepted connections go to the peer task of their source address.
    inboxes: Mutex<HashMap<IpAddr, mpsc::Sender<TcpStream>>>,
    listeners: Vec<Arc<TcpListener>>,
    bfd: Arc<Mutex<BfdRoutes>>,
    next_discr: AtomicU32,
    /// Listener accept loops, which run until stopped.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A running speaker. Dropping it does not stop the tasks; call [`Speaker::stop`].
pub struct Speaker {
    shared: Arc<Shared>,
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() as u32
}

impl Speaker {
    /// Binds the listeners and starts every configured peer. Must run in a tokio runtime; the
    /// speaker's tasks stay on it, and the methods may be called from any thread.
    pub async fn start(config: SpeakerConfig) -> io::Result<Speaker> {
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let listener = socket::listener(*addr, &[]).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen for BGP on {addr}: {e}"))
            })?;
            listeners.push(Arc::new(listener));
        }
        let shared = Arc::new(Shared {
            local_as: config.local_as,
            router_id: config.router_id,
            runtime: tokio::runtime::Handle::current(),
            peers: Mutex::new(Vec::new()),
            rib: Mutex::new(Rib::new()),
            inboxes: Mutex::new(HashMap::new()),
            listeners,
            bfd: Arc::new(Mutex::new(BfdRoutes::default())),
            next_discr: AtomicU32::new((random_u32() & 0xffff_0000) | 1),
            tasks: Mutex::new(Vec::new()),
        });
        for listener in &shared.listeners {
            let listener = listener.clone();
            let weak = Arc::downgrade(&shared);
            let task = tokio::spawn(async move {
                loop {
                    let (stream, from) = match listener.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: do not spin.
                            tracing::warn!(error = %e, "BGP accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Some(shared) = weak.upgrade() else { return };
                    let ip = canonical(from.ip());
                    let inbox = lock(&shared.inboxes).get(&ip).cloned();
                    match inbox {
                        Some(tx) => {
                            let _ = stream.set_nodelay(true);
                            let _ = tx.try_send(stream);
                        }
                        None => {
                            tracing::warn!(%from, "BGP connection from an unknown peer refused")
                        }
                    }
                }
            });
            lock(&shared.tasks).push(task);
        }
        let speaker = Speaker { shared };
        for p in config.peers {
            speaker.add(p, false)?;
        }
        Ok(speaker)
    }

    /// Starts a session with a new peer. `follow_routes`: keep the prefixes whose accepted
    /// route changes, for [`Speaker::take_route_changes`]. An error when a peer with that
    /// address exists, or its MD5 key or BFD sockets cannot be set up.
    pub fn add_peer(&self, config: PeerConfig, follow_routes: bool) -> io::Result<()> {
        self.add(config, follow_routes)
    }

    fn add(&self, p: PeerConfig, follow_routes: bool) -> io::Result<()> {
        let shared = &self.shared;
        let mut peers = lock(&shared.peers);
        if peers.iter().any(|e| e.address == p.address) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("BGP peer {} is already configured", p.address),
            ));
        }
        if let Some(key) = &p.md5_key {
            for l in &shared.listeners {
                if l.local_addr()
                    .is_ok_and(|a| a.is_ipv4() == p.address.is_ipv4())
                {
                    socket::set_md5(&**l, p.address, key.as_bytes())?;
                }
            }
        }
        let status = Arc::new(Mutex::new(PeerStatus {
            address: p.address,
            peer_as: p.peer_as,
            state: State::Idle,
            established_at: None,
            flaps: 0,
            last_error: None,
            last_notification: None,
            announced: 0,
            received: 0,
            accepted: 0,
            bfd: p.bfd.map(|_| BfdState::Down),
        }));
        let (bfd_entry, bfd_view) = match p.bfd {
            Some(c) => {
                let (e, v) = start_bfd(shared, &p, c, status.clone())?;
                (Some(e), Some(v))
            }
            None => (None, None),
        };
        let (inbox_tx, inbox) = mpsc::channel::<TcpStream>(1);
        lock(&shared.inboxes).insert(p.address, inbox_tx);
        let (export_tx, export_rx) = watch::channel(Export::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let routes_changed = follow_routes.then(|| Arc::new(Notify::new()));
        let (fail_tx, fail) = mpsc::unbounded_channel();
        let task = PeerTask {
            fail,
            status: status.clone(),
            fsm: fsm::Session::new(fsm::Config {
                local_as: shared.local_as,
                peer_as: p.peer_as,
                router_id: shared.router_id,
                hold_time: p.hold_time,
                keepalive: p.keepalive,
                passive: p.passive,
                connect_retry: p.connect_retry,
                families: p.families.clone(),
            }),
            config: p.clone(),
            local_as: shared.local_as,
            shared: shared.clone(),
            timers: [None; 4],
            conn: None,
            connecting: None,
            adj_out: BTreeMap::new(),
            export: export_rx,
            stop: stop_rx,
            inbox,
            bfd: bfd_view,
            bfd_up: false,
            skipped_logged: false,
            routes_changed: routes_changed.clone(),
        };
        let handle = shared.runtime.spawn(task.run());
        peers.push(PeerEntry {
            address: p.address,
            status,
            export: export_tx,
            stop: stop_tx,
            routes_changed,
            fail: fail_tx,
            task: Some(handle),
            bfd: bfd_entry,
        });
        Ok(())
    }

    /// Ends the session with the peer at `address` (a Cease, waiting at most `wait` for it
    /// to go out) and forgets the peer and its routes. False when there is no such peer.
    pub async fn remove_peer(&self, address: IpAddr, wait: Duration) -> bool {
        let entry = {
            let mut peers = lock(&self.shared.peers);
            let Some(i) = peers.iter().position(|e| e.address == address) else {
                return false;
            };
            peers.remove(i)
        };
        lock(&self.shared.inboxes).remove(&address);
        end_peer(entry, tokio::time::Instant::now() + wait, &self.shared).await;
        for l in &self.shared.listeners {
            if l.local_addr()
                .is_ok_and(|a| a.is_ipv4() == address.is_ipv4())
            {
                // An empty key removes the peer's key from the listener.
                let _ = socket::set_md5(&**l, address, b"");
            }
        }
        lock(&self.shared.rib).remove_peer(address);
        true
    }

    /// Takes the session with `peer` down at once, without a NOTIFICATION (it could not
    /// arrive: the link under it is down, as a router's fast external fallover does); it is
    /// tried again as after any failure. False when there is no such peer.
    pub fn fail_peer(&self, peer: IpAddr, reason: &str) -> bool {
        let peers = lock(&self.shared.peers);
        peers
            .iter()
            .find(|e| e.address == peer)
            .is_some_and(|e| e.fail.send(reason.to_string()).is_ok())
    }

    /// Sets what the peer at `peer` should have from us; its session sends the difference at
    /// once (or when it is next established). False when no such peer is configured.
    pub fn export(&self, peer: IpAddr, export: Export) -> bool {
        let peers = lock(&self.shared.peers);
        let Some(e) = peers.iter().find(|e| e.address == peer) else {
            return false;
        };
        e.export.send_if_modified(|current| {
            let changed = *current != export;
            *current = export;
            changed
        });
        true
    }

    /// What the peer at `peer` is to have from us.
    pub fn current_export(&self, peer: IpAddr) -> Option<Export> {
        let peers = lock(&self.shared.peers);
        let export = peers
            .iter()
            .find(|e| e.address == peer)
            .map(|e| e.export.borrow().clone());
        export
    }

    /// Every peer's status, in the order they were added.
    pub fn status(&self) -> Vec<PeerStatus> {
        lock(&self.shared.peers)
            .iter()
            .map(|e| lock(&e.status).clone())
            .collect()
    }

    /// One peer's status.
    pub fn peer_status(&self, peer: IpAddr) -> Option<PeerStatus> {
        let peers = lock(&self.shared.peers);
        let status = peers
            .iter()
            .find(|e| e.address == peer)
            .map(|e| lock(&e.status).clone());
        status
    }

    /// The best received route per prefix.
    pub fn best_routes(&self) -> Vec<BestRoute> {
        lock(&self.shared.rib).best_routes()
    }

    /// The routes held from `peer`: prefix, path, and whether the import filter accepted it.
    pub fn received_routes(&self, peer: IpAddr) -> Vec<(Prefix, Arc<Path>, bool)> {
        lock(&self.shared.rib)
            .peer(peer)
            .map_or_else(Vec::new, |t| {
                t.routes()
                    .map(|(p, path, ok)| (*p, path.clone(), ok))
                    .collect()
            })
    }

    /// What wakes when the accepted routes of `peer` change (a peer added with
    /// `follow_routes`); a wake-up is kept when nobody waits, so none is lost.
    pub fn route_changes(&self, peer: IpAddr) -> Option<Arc<Notify>> {
        let peers = lock(&self.shared.peers);
        peers
            .iter()
            .find(|e| e.address == peer)
            .and_then(|e| e.routes_changed.clone())
    }

    /// The accepted route of each prefix of `peer` that changed since the last call.
    pub fn take_route_changes(&self, peer: IpAddr) -> Vec<RouteChange> {
        lock(&self.shared.rib)
            .existing_peer_mut(peer)
            .map_or_else(Vec::new, |t| t.take_changes())
    }

    /// Ends every session with a Cease NOTIFICATION and stops the tasks, waiting at most
    /// `wait` for the NOTIFICATIONs to go out.
    pub async fn stop(&self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        let entries: Vec<PeerEntry> = std::mem::take(&mut *lock(&self.shared.peers));
        for e in &entries {
            let _ = e.stop.send(true);
        }
        for e in entries {
            end_peer(e, deadline, &self.shared).await;
        }
        for t in std::mem::take(&mut *lock(&self.shared.tasks)) {
            t.abort();
        }
        for (_, t) in std::mem::take(&mut lock(&self.shared.bfd).receivers) {
            t.abort();
        }
    }
}

/// Stops a peer's task (it sends its Cease), aborting it at `deadline`, and its BFD.
async fn end_peer(mut e: PeerEntry, deadline: tokio::time::Instant, shared: &Shared) {
    let _ = e.stop.send(true);
    if let Some(t) = e.task.take() {
        let abort = t.abort_handle();
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            abort.abort();
        }
    }
    if let Some(b) = e.bfd.take() {
        b.task.abort();
        let mut routes = lock(&shared.bfd);
        routes.by_discr.remove(&b.discr);
        routes.by_addr.remove(&e.address);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What BFD tells a BGP session: the state, and whether the peer itself went AdminDown
/// (which must not take the BGP session down, RFC 5882 section 3.2).
type BfdView = (BfdState, bool);

/// Starts the BFD session of a peer, and the receiving socket of its family if it is the
/// first: that socket hands packets to the sessions by discriminator (or by source address
/// before the peer knows ours).
fn start_bfd(
    shared: &Arc<Shared>,
    p: &PeerConfig,
    config: BfdConfig,
    status: Arc<Mutex<PeerStatus>>,
) -> io::Result<(BfdEntry, watch::Receiver<BfdView>)> {
    let discr = shared.next_discr.fetch_add(1, Ordering::Relaxed);
    let sock = bfd_tx_socket(p, discr)?;
    let v4 = p.address.is_ipv4();
    let mut routes = lock(&shared.bfd);
    if let std::collections::hash_map::Entry::Vacant(slot) = routes.receivers.entry(v4) {
        let any: IpAddr = if v4 {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let addr = SocketAddr::new(any, bfd::PORT);
        let rx_sock = socket::bfd_socket(addr).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen for BFD on {addr}: {e}"))
        })?;
        let table = shared.bfd.clone();
        let task = shared.runtime.spawn(async move {
            let mut buf = [0u8; 128];
            loop {
                let Ok((n, from, ttl)) = socket::recv_with_ttl(&rx_sock, &mut buf).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // RFC 5881 section 5 (GTSM): a single-hop packet must arrive with TTL 255.
                if ttl.is_some_and(|t| t != 255) {
                    tracing::debug!(%from, ?ttl, "BFD packet with TTL below 255 discarded");
                    continue;
                }
                let Ok(p) = bfd::Packet::decode(&buf[..n]) else {
                    continue;
                };
                let table = lock(&table);
                let tx = if p.your_discr != 0 {
                    table.by_discr.get(&p.your_discr)
                } else {
                    table.by_addr.get(&canonical(from.ip()))
                };
                if let Some(tx) = tx {
                    let _ = tx.try_send(p);
                }
            }
        });
        slot.insert(task);
    }
    let (tx, rx) = mpsc::channel::<bfd::Packet>(16);
    routes.by_discr.insert(discr, tx.clone());
    routes.by_addr.insert(p.address, tx);
    drop(routes);
    let (view_tx, view_rx) = watch::channel((BfdState::Down, false));
    let peer = SocketAddr::new(p.address, bfd::PORT);
    let task = shared
        .runtime
        .spawn(async move { run_bfd(config, discr, sock, peer, rx, view_tx, status).await });
    Ok((BfdEntry { discr, task }, view_rx))
}

/// The sending socket of one BFD session: a source port in 49152-65535 (RFC 5881 section 4).
fn bfd_tx_socket(p: &PeerConfig, discr: u32) -> io::Result<UdpSocket> {
    let local = p.local_address.unwrap_or(if p.address.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    });
    let mut last = None;
    for i in 0..64u32 {
        let port = 49152 + ((discr.wrapping_add(i * 257)) % 16384) as u16;
        match socket::bfd_socket(SocketAddr::new(local, port)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no BFD source port free")))
}

async fn run_bfd(
    config: BfdConfig,
    discr: u32,
    sock: UdpSocket,
    peer: SocketAddr,
    mut rx: mpsc::Receiver<bfd::Packet>,
    view: watch::Sender<BfdView>,
    status: Arc<Mutex<PeerStatus>>,
) {
    let mut s = bfd::Session::new(config, discr, Instant::now());
    let mut remote_admin = false;
    loop {
        let deadline = tokio::time::Instant::from_std(s.deadline());
        let input = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => {
                    remote_admin = p.state == BfdState::AdminDown;
                    bfd::Input::Packet(p)
                }
                None => return,
            },
            _ = tokio::time::sleep_until(deadline) => bfd::Input::Tick,
        };
        let out = s.handle(input, Instant::now());
        if out.send {
            let _ = sock.send_to(&s.packet().encode(), peer).await;
        }
        if let Some((from, to)) = out.changed {
            tracing::info!(peer = %peer.ip(), from = from.name(), to = to.name(), "BFD session");
            lock(&status).bfd = Some(to);
            let _ = view.send((to, remote_admin));
        }
    }
}

/// An established TCP connection and what has been read from it.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    codec: Codec,
    local: SocketAddr,
}

/// What woke a peer task.
enum Wake {
    Read(io::Result<usize>),
    Connected(io::Result<TcpStream>),
    Incoming(TcpStream),
    Timer,
    Export,
    Bfd,
    Fail(String),
    Stop,
}

type Connecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<TcpStream>> + Send>>;

struct PeerTask {
    fail: mpsc::UnboundedReceiver<String>,
    status: Arc<Mutex<PeerStatus>>,
    config: PeerConfig,
    local_as: u32,
    shared: Arc<Shared>,
    fsm: fsm::Session,
    timers: [Option<tokio::time::Instant>; 4],
    conn: Option<Conn>,
    connecting: Option<Connecting>,
    /// What the peer has from us (Adj-RIB-Out), each route as it was announced.
    adj_out: BTreeMap<Prefix, Route>,
    export: watch::Receiver<Export>,
    stop: watch::Receiver<bool>,
    inbox: mpsc::Receiver<TcpStream>,
    bfd: Option<watch::Receiver<BfdView>>,
    bfd_up: bool,
    skipped_logged: bool,
    routes_changed: Option<Arc<Notify>>,
}

fn timer_index(t: Timer) -> usize {
    match t {
        Timer::ConnectRetry => 0,
        Timer::Hold => 1,
        Timer::Keepalive => 2,
        Timer::IdleHold => 3,
    }
}

const TIMERS: [Timer; 4] = [
    Timer::ConnectRetry,
    Timer::Hold,
    Timer::Keepalive,
    Timer::IdleHold,
];

impl PeerTask {
    async fn run(mut self) {
        self.feed(Event::Start).await;
        loop {
            let wake = self.wait().await;
            match wake {
                Wake::Read(Ok(0)) | Wake::Read(Err(_)) => self.feed(Event::TcpFailed).await,
                Wake::Read(Ok(_)) => self.read_messages().await,
                Wake::Connected(Ok(stream)) => {
                    self.connecting = None;
                    self.attach(stream);
                    self.feed(Event::TcpConnected).await;
                }
                Wake::Connected(Err(e)) => {
                    self.connecting = None;
                    self.status(|s| s.last_error = Some(format!("connect: {e}")));
                    self.feed(Event::TcpFailed).await;
                }
                Wake::Incoming(stream) => {
                    if matches!(
                        self.fsm.state(),
                        State::Idle | State::Connect | State::Active
                    ) {
                        if self.fsm.state() == State::Idle {
                            self.feed(Event::Start).await;
                        }
                        self.connecting = None;
                        self.attach(stream);
                        self.feed(Event::TcpConnected).await;
                    }
                }
                Wake::Timer => {
                    let now = tokio::time::Instant::now();
                    for t in TIMERS {
                        if self.timers[timer_index(t)].is_some_and(|d| d <= now) {
                            self.timers[timer_index(t)] = None;
                            self.feed(Event::TimerExpired(t)).await;
                        }
                    }
                }
                Wake::Export => self.sync_routes(false).await,
                Wake::Bfd => {
                    let (state, remote_admin) =
                        *self.bfd.as_mut().expect("bfd").borrow_and_update();
                    let was_up = std::mem::replace(&mut self.bfd_up, state == BfdState::Up);
                    if was_up && state != BfdState::Up && !remote_admin {
                        self.feed(Event::Fail {
                            reason: "BFD session down".into(),
                            notification: None,
                        })
                        .await;
                    }
                }
                Wake::Fail(reason) => {
                    if self.conn.is_some() || self.connecting.is_some() {
                        self.feed(Event::Fail {
                            reason,
                            notification: None,
                        })
                        .await;
                    }
                }
                Wake::Stop => {
                    self.feed(Event::Stop).await;
                    return;
                }
            }
        }
    }

    async fn wait(&mut self) -> Wake {
        let deadline = self.timers.iter().flatten().min().copied();
        let conn = &mut self.conn;
        let connecting = &mut self.connecting;
        let bfd = &mut self.bfd;
        tokio::select! {
            r = async {
                match conn {
                    Some(c) => {
                        if c.buf.capacity() - c.buf.len() < 4096 {
                            c.buf.reserve(8192);
                        }
                        c.stream.read_buf(&mut c.buf).await
                    }
                    None => std::future::pending().await,
                }
            } => Wake::Read(r),
            r = async {
                match connecting {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            } => Wake::Connected(r),
            Some(s) = self.inbox.recv() => Wake::Incoming(s),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => Wake::Timer,
            Ok(()) = self.export.changed() => Wake::Export,
            Ok(()) = async {
                match bfd {
                    Some(b) => b.changed().await,
                    None => std::future::pending().await,
                }
            } => Wake::Bfd,
            Some(reason) = self.fail.recv() => Wake::Fail(reason),
            _ = self.stop.changed() => Wake::Stop,
        }
    }

    fn attach(&mut self, stream: TcpStream) {
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0));
        self.conn = Some(Conn {
            stream,
            buf: Vec::with_capacity(8192),
            codec: Codec {
                four_octet_as: false,
            },
            local,
        });
    }

    fn noted(&self, n: &Notification, sent: bool) {
        let seen = NotificationSeen {
            sent,
            code: n.code,
            subcode: n.subcode,
            at: SystemTime::now(),
        };
        self.status(|s| s.last_notification = Some(seen));
    }

    fn status(&self, f: impl FnOnce(&mut PeerStatus)) {
        f(&mut lock(&self.status));
    }

    /// Decodes every whole message in the buffer and feeds it to the FSM.
    async fn read_messages(&mut self) {
        loop {
            let Some(conn) = &mut self.conn else { return };
            let msg = match frame_len(&conn.buf) {
                Ok(None) => return,
                Ok(Some(len)) if len > conn.buf.len() => return,
                Ok(Some(len)) => {
                    let m = Message::decode(&conn.buf[..len], conn.codec);
                    conn.buf.drain(..len);
                    m
                }
                Err(e) => Err(e),
            };
            match msg {
                Ok(m) => {
                    if let Message::Notification(n) = &m {
                        self.noted(n, false);
                    }
                    self.feed(Event::Received(m)).await
                }
                Err(e) => {
                    tracing::warn!(peer = %self.config.address, error = %e, "bad BGP message");
                    self.feed(Event::DecodeError(e)).await;
                    return;
                }
            }
        }
    }

    /// Feeds an event and carries out the actions, including events they cause.
    async fn feed(&mut self, event: Event) {
        let mut events = std::collections::VecDeque::from([event]);
        while let Some(ev) = events.pop_front() {
            for action in self.fsm.handle(ev) {
                if let Some(next) = self.act(action).await {
                    events.push_back(next);
                }
            }
        }
        self.status(|s| s.state = self.fsm.state());
    }

    async fn act(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Connect => {
                if self.connecting.is_some() {
                    self.status(|s| {
                        s.last_error = Some(
                            "connect: no answer within the connect-retry time (a missing or \
                             wrong TCP MD5 key looks like this)"
                                .into(),
                        )
                    });
                }
                let peer = SocketAddr::new(self.config.address, self.config.port);
                let local = self.config.local_address;
                let key = self.config.md5_key.clone();
                self.connecting = Some(Box::pin(async move {
                    let f = socket::connect(peer, local, key.as_deref().map(str::as_bytes));
                    match tokio::time::timeout(Duration::from_secs(5), f).await {
                        Ok(r) => r,
                        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
                    }
                }));
                None
            }
            Action::Disconnect => {
                if let Some(mut c) = self.conn.take() {
                    let _ = c.stream.shutdown().await;
                }
                self.connecting = None;
                None
            }
            Action::Send(m) => {
                if let Message::Notification(n) = &m {
                    self.noted(n, true);
                }
                self.send(&[m]).await
            }
            Action::StartTimer(t, d) => {
                self.timers[timer_index(t)] = Some(tokio::time::Instant::now() + d);
                None
            }
            Action::StopTimer(t) => {
                self.timers[timer_index(t)] = None;
                None
            }
            Action::Up(codec) => {
                if let Some(c) = &mut self.conn {
                    c.codec = codec;
                }
                tracing::info!(peer = %self.config.address, peer_as = self.config.peer_as, "BGP session established");
                self.status(|s| {
                    s.established_at = Some(Instant::now());
                    s.last_error = None;
                });
                self.adj_out.clear();
                self.sync_routes(true).await;
                None
            }
            Action::Down(reason) => {
                let was_up = lock(&self.status).established_at.is_some();
                if was_up || reason != "connection lost" {
                    tracing::warn!(peer = %self.config.address, %reason, "BGP session down");
                }
                lock(&self.shared.rib).clear_peer(self.config.address);
                if let Some(n) = &self.routes_changed {
                    n.notify_one();
                }
                self.adj_out.clear();
                self.status(|s| {
                    if s.established_at.take().is_some() {
                        s.flaps += 1;
                    }
                    s.last_error = Some(reason);
                    s.announced = 0;
                    s.received = 0;
                    s.accepted = 0;
                });
                None
            }
            Action::Routes(update) => self.receive(&update),
            Action::Refresh(_) => {
                self.adj_out.clear();
                self.sync_routes(true).await;
                None
            }
        }
    }

    async fn send(&mut self, msgs: &[Message]) -> Option<Event> {
        let conn = self.conn.as_mut()?;
        let mut bytes = Vec::new();
        for m in msgs {
            bytes.extend_from_slice(&m.encode(conn.codec));
        }
        match tokio::time::timeout(Duration::from_secs(5), conn.stream.write_all(&bytes)).await {
            Ok(Ok(())) => None,
            _ => Some(Event::TcpFailed),
        }
    }

    fn receive(&mut self, update: &Update) -> Option<Event> {
        let codec = self.conn.as_ref()?.codec;
        let open = self.fsm.peer_open()?;
        let info = PeerInfo {
            address: self.config.address,
            router_id: open.router_id,
            peer_as: self.config.peer_as,
            local_as: self.local_as,
        };
        let mut rib = lock(&self.shared.rib);
        let table = rib.peer_mut(info, &self.config.import, self.config.max_prefixes);
        if self.routes_changed.is_some() {
            table.track_changes();
        }
        let result = table.apply(update, codec);
        let (received, accepted) = (table.received(), table.accepted());
        drop(rib);
        if let Some(n) = &self.routes_changed {
            n.notify_one();
        }
        self.status(|s| {
            s.received = received;
            s.accepted = accepted;
        });
        match result {
            Ok(()) => None,
            Err(e) => {
                // RFC 4486: Cease, Maximum Number of Prefixes Reached; the data is AFI, SAFI
                // (of the UPDATE that crossed the limit) and the limit.
                let v6 = update.attributes.iter().any(|a| {
                    matches!(
                        a,
                        Attribute::MpReach {
                            family: Family::Ipv6Unicast,
                            ..
                        }
                    )
                });
                let mut data = vec![0, if v6 { 2 } else { 1 }, 1];
                data.extend_from_slice(&(e.limit as u32).to_be_bytes());
                Some(Event::Fail {
                    reason: e.to_string(),
                    notification: Some(Notification {
                        code: 6,
                        subcode: 1,
                        data,
                    }),
                })
            }
        }
    }

    /// The families both sides announced (IPv4 unicast alone when the peer sent no
    /// multiprotocol capability, RFC 4760 section 8).
    fn negotiated(&self) -> Vec<Family> {
        let Some(open) = self.fsm.peer_open() else {
            return Vec::new();
        };
        let theirs: Vec<Family> = open
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        self.config
            .families
            .iter()
            .copied()
            .filter(|f| theirs.contains(f) || (theirs.is_empty() && *f == Family::Ipv4Unicast))
            .collect()
    }

    /// Sends the UPDATEs that bring the peer's view of our routes to the current export.
    async fn sync_routes(&mut self, force: bool) {
        if self.fsm.state() != State::Established {
            return;
        }
        let Some(conn) = &self.conn else { return };
        let export = self.export.borrow_and_update().clone();
        let families = self.negotiated();
        let nh4 = self.config.next_hop_v4.or(match conn.local.ip() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => a.to_ipv4_mapped(),
        });
        let nh6 = self.config.next_hop_v6.or(match conn.local.ip() {
            IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => Some(a),
            _ => None,
        });
        let mut skipped = Vec::new();
        let wanted: BTreeMap<Prefix, Route> = export
            .routes
            .iter()
            .filter(|(p, _)| {
                let ok = families.contains(&p.family())
                    && match p {
                        Prefix::V4(..) => nh4.is_some(),
                        Prefix::V6(..) => nh6.is_some(),
                    };
                if !ok {
                    skipped.push(**p);
                }
                ok
            })
            .map(|(p, r)| (*p, *r))
            .collect();
        if !skipped.is_empty() && !self.skipped_logged {
            self.skipped_logged = true;
            tracing::warn!(peer = %self.config.address, ?skipped, "prefixes not announced to this peer: family not negotiated or no next hop for it");
        }
        let withdraw: Vec<Prefix> = self
            .adj_out
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        // New routes, and routes whose attributes changed (GRACEFUL_SHUTDOWN on or off).
        let announce: Vec<(Prefix, Route)> = wanted
            .iter()
            .filter(|(p, r)| force || self.adj_out.get(p) != Some(r))
            .map(|(p, r)| (*p, *r))
            .collect();
        let mut msgs = Vec::new();
        let (w4, w6): (Vec<Prefix>, Vec<Prefix>) =
            withdraw.iter().partition(|p| matches!(p, Prefix::V4(..)));
        for chunk in w4.chunks(400) {
            msgs.push(Message::Update(Update {
                withdrawn: chunk.to_vec(),
                ..Update::default()
            }));
        }
        for chunk in w6.chunks(200) {
            msgs.push(Message::Update(Update {
                attributes: vec![Attribute::MpUnreach {
                    family: Family::Ipv6Unicast,
                    withdrawn: chunk.to_vec(),
                }],
                ..Update::default()
            }));
        }
        // One UPDATE carries one set of attributes: routes with and without GRACEFUL_SHUTDOWN,
        // and of each origin, go in separate ones.
        let kinds: std::collections::BTreeSet<(bool, Option<u32>)> = announce
            .iter()
            .map(|(_, r)| (r.graceful_shutdown, r.origin_as))
            .collect();
        for (gshut, origin) in kinds {
            let (a4, a6): (Vec<Prefix>, Vec<Prefix>) = announce
                .iter()
                .filter(|(_, r)| (r.graceful_shutdown, r.origin_as) == (gshut, origin))
                .map(|(p, _)| *p)
                .partition(|p| matches!(p, Prefix::V4(..)));
            for chunk in a4.chunks(400) {
                let mut attributes = self.attributes(conn.codec, gshut, origin);
                attributes.insert(2, Attribute::NextHop(nh4.expect("filtered above")));
                msgs.push(Message::Update(Update {
                    attributes,
                    nlri: chunk.to_vec(),
                    ..Update::default()
                }));
            }
            for chunk in a6.chunks(200) {
                let mut attributes = self.attributes(conn.codec, gshut, origin);
                attributes.push(Attribute::MpReach {
                    family: Family::Ipv6Unicast,
                    next_hop: nh6.expect("filtered above").octets().to_vec(),
                    nlri: chunk.to_vec(),
                });
                msgs.push(Message::Update(Update {
                    attributes,
                    ..Update::default()
                }));
            }
        }
        self.adj_out = wanted;
        let announced = self.adj_out.len();
        self.status(|s| s.announced = announced);
        if msgs.is_empty() {
            return;
        }
        tracing::debug!(peer = %self.config.address, announce = announce.len(), withdraw = withdraw.len(), "sending UPDATEs");
        if let Some(ev) = self.send(&msgs).await {
            Box::pin(self.feed(ev)).await;
        }
    }

    /// The path attributes of our announcements, without the next hop; `origin`: the AS
    /// that originates the prefix behind us.
    fn attributes(&self, codec: Codec, gshut: bool, origin: Option<u32>) -> Vec<Attribute> {
        let ebgp = self.config.peer_as != self.local_as;
        let mut asns = if ebgp {
            vec![self.local_as; 1 + usize::from(self.config.prepend)]
        } else {
            Vec::new()
        };
        asns.extend(origin);
        let wide = asns.iter().any(|a| *a > u32::from(u16::MAX));
        let path = if asns.is_empty() {
            Vec::new()
        } else {
            vec![Segment::Sequence(asns)]
        };
        let mut a = vec![
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(path.clone()),
        ];
        if let Some(m) = self.config.med {
            a.push(Attribute::Med(m));
        }
        if !ebgp {
            a.push(Attribute::LocalPref(if gshut { 0 } else { 100 }));
        }
        let mut communities = self.config.communities.clone();
        if gshut {
            communities.push(GRACEFUL_SHUTDOWN);
        }
        if !communities.is_empty() {
            a.push(Attribute::Communities(communities));
        }
        if !codec.four_octet_as && wide {
            a.push(Attribute::As4Path(path));
        }
        if !self.config.large_communities.is_empty() {
            a.push(Attribute::LargeCommunities(
                self.config.large_communities.clone(),
            ));
        }
        a
    }
}
