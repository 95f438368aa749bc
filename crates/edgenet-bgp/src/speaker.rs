//! The speaker: the tokio driver around the pure cores. One task per peer owns its TCP
//! connection, runs [`crate::fsm`], keeps the Adj-RIB-Out in step with the [`Export`] the node
//! sets, and feeds received UPDATEs to the shared [`crate::rib`]. One task per BFD peer runs
//! [`crate::bfd`]; when BFD sees the path fail, the BGP session goes down at once.
//!
//! A route change reaches the wire as soon as the node sets a new export: there is no MRAI
//! delay for our own few prefixes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::bfd::{self, BfdConfig, BfdState};
pub use crate::config::{Export, PeerConfig, Route, SpeakerConfig, GRACEFUL_SHUTDOWN};
use crate::fsm::{self, Action, Event, State, Timer};
use crate::message::{
    frame_len, Attribute, Capability, Codec, Family, Message, Notification, Origin, Prefix,
    Segment, Update,
};
use crate::rib::{BestRoute, PeerInfo, Rib};
use crate::socket;

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
    /// Prefixes we announce to the peer now.
    pub announced: usize,
    /// Routes the peer sent that we hold.
    pub received: usize,
    /// Of those, routes the import filter accepted.
    pub accepted: usize,
    /// The BFD session's state, when BFD is on.
    pub bfd: Option<BfdState>,
}

struct Shared {
    peers: Vec<Mutex<PeerStatus>>,
    rib: Mutex<Rib>,
}

/// A running speaker. Dropping it does not stop the tasks; call [`Speaker::stop`].
pub struct Speaker {
    shared: Arc<Shared>,
    /// Each peer's export, in configuration order.
    exports: Vec<(IpAddr, watch::Sender<Export>)>,
    stop: watch::Sender<bool>,
    /// The peer tasks, which end after sending their Cease.
    peer_tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Listeners and BFD, which run until aborted.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn random_u32() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() as u32
}

impl Speaker {
    /// Binds the listeners and BFD sockets and starts every peer. Must run in a tokio runtime.
    pub async fn start(config: SpeakerConfig) -> io::Result<Speaker> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            peers: config
                .peers
                .iter()
                .map(|p| {
                    Mutex::new(PeerStatus {
                        address: p.address,
                        peer_as: p.peer_as,
                        state: State::Idle,
                        established_at: None,
                        flaps: 0,
                        last_error: None,
                        announced: 0,
                        received: 0,
                        accepted: 0,
                        bfd: p.bfd.map(|_| BfdState::Down),
                    })
                })
                .collect(),
            rib: Mutex::new(Rib::new()),
        });
        let mut tasks = Vec::new();
        let mut inboxes = HashMap::new();
        let mut inbox_rx = Vec::new();
        for p in &config.peers {
            let (tx, rx) = mpsc::channel::<TcpStream>(1);
            inboxes.insert(p.address, tx);
            inbox_rx.push(rx);
        }
        let keys: Vec<(IpAddr, &[u8])> = config
            .peers
            .iter()
            .filter_map(|p| p.md5_key.as_ref().map(|k| (p.address, k.as_bytes())))
            .collect();
        for addr in &config.listen {
            let listener = socket::listener(*addr, &keys).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen for BGP on {addr}: {e}"))
            })?;
            let inboxes = inboxes.clone();
            tasks.push(tokio::spawn(async move {
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
                    let ip = canonical(from.ip());
                    match inboxes.get(&ip) {
                        Some(tx) => {
                            let _ = stream.set_nodelay(true);
                            let _ = tx.try_send(stream);
                        }
                        None => {
                            tracing::warn!(%from, "BGP connection from an unknown peer refused")
                        }
                    }
                }
            }));
        }
        let bfd_views = start_bfd(&config, &shared, &mut tasks)?;
        let mut peer_tasks = Vec::new();
        let mut exports = Vec::new();
        for (idx, (p, inbox)) in config.peers.iter().zip(inbox_rx).enumerate() {
            let (export_tx, export_rx) = watch::channel(Export::default());
            exports.push((p.address, export_tx));
            let task = PeerTask {
                idx,
                config: p.clone(),
                local_as: config.local_as,
                shared: shared.clone(),
                fsm: fsm::Session::new(fsm::Config {
                    local_as: config.local_as,
                    peer_as: p.peer_as,
                    router_id: config.router_id,
                    hold_time: p.hold_time,
                    keepalive: p.keepalive,
                    passive: p.passive,
                    connect_retry: p.connect_retry,
                    families: p.families.clone(),
                }),
                timers: [None; 4],
                conn: None,
                connecting: None,
                adj_out: BTreeMap::new(),
                export: export_rx,
                stop: stop_rx.clone(),
                inbox,
                bfd: bfd_views.get(&idx).cloned(),
                bfd_up: false,
                skipped_logged: false,
            };
            peer_tasks.push(tokio::spawn(task.run()));
        }
        Ok(Speaker {
            shared,
            exports,
            stop: stop_tx,
            peer_tasks: Mutex::new(peer_tasks),
            tasks: Mutex::new(tasks),
        })
    }

    /// Sets what the peer at `peer` should have from us; its session sends the difference at
    /// once (or when it is next established). False when no such peer is configured.
    pub fn export(&self, peer: IpAddr, export: Export) -> bool {
        let Some((_, tx)) = self.exports.iter().find(|(a, _)| *a == peer) else {
            return false;
        };
        tx.send_if_modified(|e| {
            let changed = *e != export;
            *e = export;
            changed
        });
        true
    }

    /// What the peer at `peer` is to have from us.
    pub fn current_export(&self, peer: IpAddr) -> Option<Export> {
        let (_, tx) = self.exports.iter().find(|(a, _)| *a == peer)?;
        Some(tx.borrow().clone())
    }

    /// Every peer's status.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.shared.peers.iter().map(|p| lock(p).clone()).collect()
    }

    /// The best received route per prefix.
    pub fn best_routes(&self) -> Vec<BestRoute> {
        lock(&self.shared.rib).best_routes()
    }

    /// Ends every session with a Cease NOTIFICATION and stops the tasks, waiting at most
    /// `wait` for the NOTIFICATIONs to go out.
    pub async fn stop(&self, wait: Duration) {
        let _ = self.stop.send(true);
        let peers: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.peer_tasks));
        let deadline = tokio::time::Instant::now() + wait;
        for t in peers {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
        for t in std::mem::take(&mut *lock(&self.tasks)) {
            t.abort();
        }
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

/// Starts one BFD task per peer that wants BFD, plus a receiver per address family that
/// hands packets to them by discriminator (or by source address before it is known).
fn start_bfd(
    config: &SpeakerConfig,
    shared: &Arc<Shared>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> io::Result<HashMap<usize, watch::Receiver<BfdView>>> {
    let mut views = HashMap::new();
    let mut by_discr = HashMap::new();
    let mut by_addr = HashMap::new();
    let base = random_u32() & 0xffff_0000;
    for (idx, p) in config.peers.iter().enumerate() {
        let Some(bfd_config) = p.bfd else { continue };
        let discr = base | (idx as u32 + 1);
        let (tx, rx) = mpsc::channel::<bfd::Packet>(16);
        by_discr.insert(discr, tx.clone());
        by_addr.insert(p.address, tx);
        let (view_tx, view_rx) = watch::channel((BfdState::Down, false));
        views.insert(idx, view_rx);
        let sock = bfd_tx_socket(p, discr)?;
        let shared = shared.clone();
        let peer = SocketAddr::new(p.address, bfd::PORT);
        tasks.push(tokio::spawn(async move {
            run_bfd(bfd_config, discr, sock, peer, rx, view_tx, shared, idx).await
        }));
    }
    if by_addr.is_empty() {
        return Ok(views);
    }
    let by_discr = Arc::new(by_discr);
    let by_addr = Arc::new(by_addr);
    let families: BTreeSet<bool> = by_addr.keys().map(|a| a.is_ipv4()).collect();
    for v4 in families {
        let any: IpAddr = if v4 {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let addr = SocketAddr::new(any, bfd::PORT);
        let sock = socket::bfd_socket(addr).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen for BFD on {addr}: {e}"))
        })?;
        let (by_discr, by_addr) = (by_discr.clone(), by_addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 128];
            loop {
                let Ok((n, from, ttl)) = socket::recv_with_ttl(&sock, &mut buf).await else {
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
                let tx = if p.your_discr != 0 {
                    by_discr.get(&p.your_discr)
                } else {
                    by_addr.get(&canonical(from.ip()))
                };
                if let Some(tx) = tx {
                    let _ = tx.try_send(p);
                }
            }
        }));
    }
    Ok(views)
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

#[allow(clippy::too_many_arguments)]
async fn run_bfd(
    config: BfdConfig,
    discr: u32,
    sock: UdpSocket,
    peer: SocketAddr,
    mut rx: mpsc::Receiver<bfd::Packet>,
    view: watch::Sender<BfdView>,
    shared: Arc<Shared>,
    idx: usize,
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
            lock(&shared.peers[idx]).bfd = Some(to);
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
    Stop,
}

type Connecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<TcpStream>> + Send>>;

struct PeerTask {
    idx: usize,
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

    fn status(&self, f: impl FnOnce(&mut PeerStatus)) {
        f(&mut lock(&self.shared.peers[self.idx]));
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
                Ok(m) => self.feed(Event::Received(m)).await,
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
            Action::Send(m) => self.send(&[m]).await,
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
                let was_up = lock(&self.shared.peers[self.idx]).established_at.is_some();
                if was_up || reason != "connection lost" {
                    tracing::warn!(peer = %self.config.address, %reason, "BGP session down");
                }
                lock(&self.shared.rib).clear_peer(self.config.address);
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
        let result = table.apply(update, codec);
        let (received, accepted) = (table.received(), table.accepted());
        drop(rib);
        self.status(|s| {
            s.received = received;
            s.accepted = accepted;
        });
        match result {
            Ok(()) => None,
            Err(e) => {
                // RFC 4486: Cease, Maximum Number of Prefixes Reached; the data is AFI, SAFI
                // and the limit.
                let mut data = vec![0, 1, 1];
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
        // One UPDATE carries one set of attributes: routes with and without GRACEFUL_SHUTDOWN
        // go in separate ones.
        for gshut in [false, true] {
            let (a4, a6): (Vec<Prefix>, Vec<Prefix>) = announce
                .iter()
                .filter(|(_, r)| r.graceful_shutdown == gshut)
                .map(|(p, _)| *p)
                .partition(|p| matches!(p, Prefix::V4(..)));
            for chunk in a4.chunks(400) {
                let mut attributes = self.attributes(conn.codec, gshut);
                attributes.insert(2, Attribute::NextHop(nh4.expect("filtered above")));
                msgs.push(Message::Update(Update {
                    attributes,
                    nlri: chunk.to_vec(),
                    ..Update::default()
                }));
            }
            for chunk in a6.chunks(200) {
                let mut attributes = self.attributes(conn.codec, gshut);
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

    /// The path attributes of our announcements, without the next hop.
    fn attributes(&self, codec: Codec, gshut: bool) -> Vec<Attribute> {
        let ebgp = self.config.peer_as != self.local_as;
        let path = if ebgp {
            vec![Segment::Sequence(vec![
                self.local_as;
                1 + usize::from(self.config.prepend)
            ])]
        } else {
            Vec::new()
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
        if !codec.four_octet_as && self.local_as > u32::from(u16::MAX) && !path.is_empty() {
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
