//! Client connections (stage 1): [`ClientConnections`] owns each one. It counts it (and
//! refuses an address over `limits.max_connections_per_client` while the node is under
//! pressure or the address is abusive: see `crate::pressure`), wraps it in a [`Guarded`]
//! stream, tells HTTP/2 prior knowledge from HTTP/1 on plain listeners with h2c, and for
//! HTTP/1 runs Pingora's keep-alive loop itself so every request head must arrive in time.
//!
//! The guard enforces what Pingora and the `h2` crate leave open:
//! - Request heads: [`Guarded::read_head`] waits for a complete HTTP/1 request head within
//!   `limits.header_timeout` (after at most `limits.keepalive_timeout` of idleness between
//!   requests), then replays the bytes to Pingora. Pingora's own read timeout is per read, so
//!   a slowloris client sending a byte every few seconds would otherwise hold a connection
//!   for ever; this covers plain and TLS connections and every request of a kept-alive one.
//!   While the node drains, an idle connection gets a moment for its next request (answered
//!   with `Connection: close`) before it closes, so a client in a run of requests is not reset.
//! - HTTP/2 control-frame floods: `edgenet_http::h2::H2Watch` follows the client's frame
//!   headers and, past `limits.h2_max_control_frames` PING, SETTINGS and PRIORITY frames in a
//!   10 s window, the guard sends GOAWAY (ENHANCE_YOUR_CALM) at a frame boundary and ends the
//!   connection. Rapid reset and CONTINUATION floods are `h2`'s own limits (see
//!   `server::h2_limits`).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use edgenet_http::h2::{goaway, Frames, H2Watch, H2_PREFACE};
use edgenet_proxy::adapter::peers::hello_key;
use edgenet_proxy::Core;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    l4::socket::SocketAddr, raw_connect::ProxyDigest, SocketDigest, TimingDigest,
};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::pressure::Pressure;

/// How waiting for a request head ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A complete head (or too many bytes for one) is buffered.
    Ready,
    /// The client closed, or the server is shutting down.
    Closed,
    /// No byte came within the idle time.
    Idle,
    /// The head started but did not finish within the deadline (slowloris).
    Slow,
}

/// Called once when a client floods control frames: the frame kind.
pub type OnFlood = Arc<dyn Fn(&'static str) + Send + Sync>;

/// A guarded client connection (see the module docs).
pub struct Guarded {
    inner: Stream,
    /// Bytes read ahead (a request head, the preface) that Pingora reads first.
    replay: Vec<u8>,
    replayed: usize,
    watch: H2Watch,
    out: Frames,
    /// The GOAWAY still to write, and how much of it is written.
    goaway: Option<(Vec<u8>, usize)>,
    /// A flood was found: reads end.
    closed: bool,
    /// A GOAWAY is to be sent at the next frame boundary.
    want_goaway: bool,
    on_flood: OnFlood,
}

impl fmt::Debug for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("replay", &(self.replay.len() - self.replayed))
            .finish()
    }
}

impl Guarded {
    /// Guards `inner`, allowing `h2_control_frames` control frames per 10 s on HTTP/2.
    pub fn new(inner: Stream, h2_control_frames: u32, on_flood: OnFlood) -> Guarded {
        Guarded {
            inner,
            replay: Vec::new(),
            replayed: 0,
            watch: H2Watch::new(h2_control_frames, Instant::now()),
            out: Frames::default(),
            goaway: None,
            closed: false,
            want_goaway: false,
            on_flood,
        }
    }

    /// The bytes read ahead and not yet handed on.
    fn pending(&self) -> &[u8] {
        &self.replay[self.replayed..]
    }

    /// Reads more bytes ahead; false at the end of the stream or on an error.
    async fn read_ahead(&mut self) -> bool {
        if self.replayed > 0 {
            self.replay.drain(..self.replayed);
            self.replayed = 0;
        }
        let mut chunk = [0u8; 4096];
        match self.inner.read(&mut chunk).await {
            Ok(n) if n > 0 => {
                self.replay.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// On a plain listener with h2c: reads until the first bytes either differ from the
    /// HTTP/2 preface or complete it. `None` when the client leaves first.
    pub async fn sniff_h2c(&mut self) -> Option<bool> {
        loop {
            let got = self.pending();
            let n = got.len().min(H2_PREFACE.len());
            if got[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            if !self.read_ahead().await {
                return None;
            }
        }
    }

    /// Waits for a complete request head (or `max` bytes, for Pingora to refuse): its first
    /// byte within `idle`, all of it within `deadline` of that. An idle connection ends
    /// quietly when the server shuts down or the idle time passes.
    pub async fn read_head(
        &mut self,
        idle: Duration,
        deadline: Duration,
        max: usize,
        shutdown: &ShutdownWatch,
    ) -> Head {
        if self.pending().is_empty() {
            let mut shutdown = shutdown.clone();
            let idle_until = tokio::time::Instant::now() + idle;
            if !*shutdown.borrow() {
                tokio::select! {
                    r = tokio::time::timeout_at(idle_until, self.read_ahead()) => match r {
                        Ok(true) => {}
                        Ok(false) => return Head::Closed,
                        // A first request that never starts is a slow client; an idle
                        // kept-alive connection just ends.
                        Err(_) => return Head::Idle,
                    },
                    _ = shutdown.changed() => {}
                }
            }
            // Draining: a client in the middle of a run of requests sends its next one within
            // moments, and closing under it would reset that request. Wait a little for it
            // (it is answered with `Connection: close`); only a connection idle past that
            // closes, as every HTTP/1.1 server's drain must.
            if self.pending().is_empty() {
                let until = idle_until.min(tokio::time::Instant::now() + DRAIN_GRACE);
                match tokio::time::timeout_at(until, self.read_ahead()).await {
                    Ok(true) => {}
                    Ok(false) | Err(_) => return Head::Closed,
                }
            }
        }
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let got = self.pending();
            if memchr::memmem::find(got, b"\r\n\r\n").is_some() || got.len() >= max {
                return Head::Ready;
            }
            match tokio::time::timeout_at(until, self.read_ahead()).await {
                Ok(true) => {}
                Ok(false) => return Head::Closed,
                Err(_) => return Head::Slow,
            }
        }
    }

    /// Puts the wanted GOAWAY in line once the server is between frames.
    fn queue_goaway(&mut self) {
        if self.want_goaway && self.out.between_frames() {
            self.want_goaway = false;
            self.goaway = Some((goaway(self.watch.last_stream), 0));
        }
    }

    /// Writes what is left of a GOAWAY.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((frame, written)) = &mut self.goaway {
            if *written == frame.len() {
                self.goaway = None;
                return Pin::new(&mut self.inner).poll_flush(cx);
            }
            match Pin::new(&mut self.inner).poll_write(cx, &frame[*written..]) {
                Poll::Ready(Ok(0)) => self.goaway = None,
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed {
            // Send the GOAWAY (if it could be put between frames), then end the stream.
            if this.goaway.is_some() {
                let _ = std::task::ready!(this.poll_goaway(cx));
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        if !this.pending().is_empty() {
            let n = this.pending().len().min(buf.remaining());
            buf.put_slice(&this.replay[this.replayed..this.replayed + n]);
            this.replayed += n;
        } else {
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        }
        let new = &buf.filled()[before..];
        if let Some(flood) = this.watch.feed(new, Instant::now()) {
            (this.on_flood)(flood.kind);
            this.closed = true;
            this.want_goaway = true;
            this.queue_goaway();
            // Hand on the frames before the flooding one; the next read ends the stream.
            buf.set_filled(before + flood.at);
            if flood.at == 0 && this.goaway.is_some() {
                let _ = std::task::ready!(this.poll_goaway(cx));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.goaway.is_some() {
            std::task::ready!(this.poll_goaway(cx))?;
        }
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
        if this.watch.following_frames() {
            this.out.feed(&data[..n]);
            this.queue_goaway();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.goaway.is_some() {
            std::task::ready!(this.poll_goaway(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if self.pending().len() >= buf.len() {
            buf.copy_from_slice(&self.pending()[..buf.len()]);
            return Ok(true);
        }
        if !self.pending().is_empty() {
            // Peeking across read-ahead bytes and the socket is not supported.
            return Ok(false);
        }
        self.inner.try_peek(buf).await
    }
}

/// The connection-level app of a listener: counts open client connections and, on plain
/// listeners with h2c, tells HTTP/2 prior knowledge from HTTP/1 by the first bytes.
pub struct ClientConnections<A> {
    /// The HTTP/1 app (with ALPN, the TLS listener's HTTP/2 too).
    pub http1: Arc<A>,
    /// The HTTP/2 app for h2c; `None` where h2c is off or the listener is TLS.
    pub h2c: Option<Arc<A>>,
    /// The open-connection gauge.
    pub open: IntGauge,
    /// The core whose `[limits]` client listeners enforce (connections per client, the head
    /// timeout); none on the backbone and subrequest listeners, whose clients are PoPs and
    /// the node's own workers.
    pub core: Option<Arc<Core>>,
    /// Whether the node is under pressure (client listeners).
    pub pressure: Option<Arc<Pressure>>,
}

/// How long a draining node waits on an idle HTTP/1 connection for its next request before
/// closing it (`Guarded::read_head`).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Refusals of one address are logged at most this often.
const LOG_REFUSALS_EVERY: Duration = Duration::from_secs(60);

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ClientConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let client = client_ip(&session);
        let _slot = match (&self.core, &self.pressure, client) {
            (Some(core), Some(pressure), Some(ip)) => {
                let snapshot = core.snapshot.load();
                let limits = &snapshot.config.limits;
                let cap = limits.max_connections_per_client;
                let under = |open| pressure.under(limits, open);
                let now = Instant::now();
                match core.client_connections.acquire(ip, cap, under, now) {
                    Ok(slot) => Some(slot),
                    Err(refused) => {
                        let reason = refused.label();
                        core.metrics
                            .connections_refused
                            .with_label_values(&[reason])
                            .inc();
                        if core
                            .client_connections
                            .should_log(ip, now, LOG_REFUSALS_EVERY)
                        {
                            tracing::warn!(client = %ip, reason, cap, open = core.client_connections.total(),
                                "connections refused: the address is at limits.max_connections_per_client (logged once a minute per address)");
                        }
                        // Over the cap: close without reading a byte.
                        return None;
                    }
                }
            }
            _ => None,
        };
        // Only client TLS connections have a ClientHello on file.
        let hello = (self.core.is_some() && session.get_ssl_digest().is_some())
            .then(|| hello_key(session.get_socket_digest()))
            .flatten();
        self.open.inc();
        self.serve(session, client, shutdown).await;
        self.open.dec();
        if let (Some(core), Some(key)) = (&self.core, hello) {
            core.hellos.remove(key);
        }
        None
    }

    async fn cleanup(&self) {
        self.http1.cleanup().await;
        if let Some(h2c) = &self.h2c {
            h2c.cleanup().await;
        }
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> ClientConnections<A> {
    /// Serves one client connection to its end, keep-alive requests included.
    async fn serve(
        &self,
        session: Stream,
        client: Option<std::net::IpAddr>,
        shutdown: &ShutdownWatch,
    ) {
        let Some(core) = &self.core else {
            // The backbone: PoPs, trusted by their certificates.
            let mut stream = session;
            while let Some(s) = self.http1.process_new(stream, shutdown).await {
                stream = s;
            }
            return;
        };
        let limits = core.snapshot.load().config.limits.clone();
        let flood_core = core.clone();
        let abusive_for = limits.abusive_for;
        let on_flood: OnFlood = Arc::new(move |kind| {
            flood_core
                .metrics
                .h2_floods
                .with_label_values(&[kind])
                .inc();
            if let Some(ip) = client {
                let until = Instant::now() + abusive_for;
                flood_core.client_connections.mark_abusive(ip, until);
            }
            tracing::warn!(client = ?client, kind, "HTTP/2 control frame flood: GOAWAY");
        });
        // A head that started and did not finish in time (slowloris) marks its address
        // abusive: its connections are capped from now on. A connection that never sent a
        // byte does not: browsers behind a NAT open connections ahead of need.
        let slow = |started: bool| {
            core.metrics.slow_heads.inc();
            if let (true, Some(ip)) = (started, client) {
                let until = Instant::now() + abusive_for;
                core.client_connections.mark_abusive(ip, until);
            }
        };
        let h2_alpn = session.selected_alpn_proto() == Some(pingora_core::protocols::ALPN::H2);
        let mut guarded = Guarded::new(session, limits.h2_max_control_frames, on_flood);
        if let Some(h2c) = &self.h2c {
            // The first bytes must come within the header timeout too, or a client that
            // connects and sends nothing would hold the connection here for ever.
            match tokio::time::timeout(limits.header_timeout, guarded.sniff_h2c()).await {
                Ok(Some(true)) => {
                    h2c.process_new(Box::new(guarded), shutdown).await;
                    return;
                }
                Ok(Some(false)) => {}
                Ok(None) => return,
                Err(_) => return slow(false),
            }
        }
        if h2_alpn {
            self.http1.process_new(Box::new(guarded), shutdown).await;
            return;
        }
        // HTTP/1, Pingora's keep-alive loop (`ServerApp for HttpServerApp`) with each request
        // head read first: within the header timeout, after the keep-alive idle time between
        // requests.
        let max = limits.max_request_header_bytes;
        let (header, keepalive) = (limits.header_timeout, limits.keepalive_timeout);
        match guarded.read_head(header, header, max, shutdown).await {
            Head::Ready => {}
            Head::Closed => return,
            Head::Idle => return slow(false),
            Head::Slow => return slow(true),
        }
        let mut session = ServerSession::new_http1(Box::new(guarded));
        session.set_keepalive((!*shutdown.borrow()).then_some(keepalive.as_secs().max(1)));
        session.set_keepalive_reuses_remaining(
            self.http1
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        let mut result = self.http1.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = result.map(|r| r.consume()) {
            let Ok(mut guarded) = stream.into_any().downcast::<Guarded>() else {
                return;
            };
            match guarded.read_head(keepalive, header, max, shutdown).await {
                Head::Ready => {}
                Head::Closed | Head::Idle => return,
                Head::Slow => return slow(true),
            }
            let mut session = ServerSession::new_http1(guarded);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            if *shutdown.borrow() {
                // The last request of a draining connection: answered with `Connection: close`.
                session.set_keepalive(None);
            }
            result = self.http1.process_new_http(session, shutdown).await;
        }
    }
}

/// The client address of a stream, if it is an Internet socket.
pub fn client_ip(stream: &Stream) -> Option<std::net::IpAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(SocketAddr::as_inet).map(|a| a.ip()))
}
