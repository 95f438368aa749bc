//! The client connection guard: a stream between the socket (or TLS session) and Pingora that
//! enforces what Pingora and the `h2` crate leave open.
//!
//! - Request heads: [`Guarded::read_head`] waits for a complete HTTP/1 request head within
//!   `limits.header_timeout` (after at most `limits.keepalive_timeout` of idleness between
//!   requests), then replays the bytes to Pingora. Pingora's own read timeout is per read, so
//!   a slowloris client sending a byte every few seconds would otherwise hold a connection
//!   for ever; this covers plain and TLS connections and every request of a kept-alive one.
//! - HTTP/2 control-frame floods: `h2` answers every PING and SETTINGS frame (one at a time,
//!   so memory stays bounded) but never gives up on a client that keeps sending them, which
//!   costs a write per frame. [`H2Watch`] follows the client's frame headers and, past
//!   `limits.h2_max_control_frames` PING, SETTINGS and PRIORITY frames in a 10 s window,
//!   the guard sends GOAWAY (ENHANCE_YOUR_CALM) and ends the connection. Rapid reset and
//!   CONTINUATION floods are `h2`'s own limits (see `server::h2_limits`).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    l4::socket::SocketAddr, raw_connect::ProxyDigest, SocketDigest, TimingDigest,
};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The window control frames are counted over.
const WINDOW: Duration = Duration::from_secs(10);

/// Frame types counted as control frames.
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const PRIORITY: u8 = 0x2;
const HEADERS: u8 = 0x1;
const ACK: u8 = 0x1;

/// Follows the frames a client sends on an HTTP/2 connection (pure: bytes and time in).
#[derive(Debug)]
pub struct H2Watch {
    state: WatchState,
    frames: Frames,
    limit: u32,
    window_start: Instant,
    in_window: u32,
    /// The highest client stream id seen in HEADERS (GOAWAY's last stream id).
    pub last_stream: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchState {
    /// Reading the preface; `n` bytes of it matched so far.
    Preface(usize),
    Frames,
    /// Not HTTP/2: nothing to follow.
    Off,
}

/// A flood: the frame kind and where in the fed bytes its header began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood {
    /// `ping`, `settings` or `priority`.
    pub kind: &'static str,
    /// Bytes of the fed slice before the frame that went over the limit.
    pub at: usize,
}

impl H2Watch {
    /// A watch allowing `limit` control frames per 10 s.
    pub fn new(limit: u32, now: Instant) -> H2Watch {
        H2Watch {
            state: WatchState::Preface(0),
            frames: Frames::default(),
            limit,
            window_start: now,
            in_window: 0,
            last_stream: 0,
        }
    }

    /// Feeds bytes the client sent, in order; returns the first flood found in them.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Option<Flood> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                WatchState::Off => return None,
                WatchState::Preface(n) => {
                    let take = (H2_PREFACE.len() - n).min(bytes.len() - i);
                    if bytes[i..i + take] != H2_PREFACE[n..n + take] {
                        self.state = WatchState::Off;
                        return None;
                    }
                    i += take;
                    self.state = if n + take == H2_PREFACE.len() {
                        WatchState::Frames
                    } else {
                        WatchState::Preface(n + take)
                    };
                }
                WatchState::Frames => {
                    let (used, header) = self.frames.step(&bytes[i..]);
                    i += used;
                    let Some(h) = header else { continue };
                    let (kind, flags) = (h[3], h[4]);
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    let control = match kind {
                        PING if flags & ACK == 0 => Some("ping"),
                        SETTINGS if flags & ACK == 0 => Some("settings"),
                        PRIORITY => Some("priority"),
                        HEADERS => {
                            self.last_stream = self.last_stream.max(stream);
                            None
                        }
                        _ => None,
                    };
                    if let Some(kind) = control {
                        if now.duration_since(self.window_start) >= WINDOW {
                            self.window_start = now;
                            self.in_window = 0;
                        }
                        self.in_window += 1;
                        if self.in_window > self.limit {
                            // The header may have begun in an earlier read.
                            return Some(Flood {
                                kind,
                                at: i.saturating_sub(9),
                            });
                        }
                    }
                }
            }
        }
        None
    }
}

/// Follows HTTP/2 frames in a byte stream fed in pieces: their 9-byte headers, and where
/// each frame ends. Reads the client's frames for [`H2Watch`] and the server's for the guard
/// (GOAWAY may only be put between frames).
#[derive(Debug, Default)]
struct Frames {
    /// The frame header being read, and how much of it has come.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: usize,
}

impl Frames {
    /// Consumes bytes up to the end of a frame header or of a payload: how many, and the
    /// header when one was completed.
    fn step(&mut self, bytes: &[u8]) -> (usize, Option<[u8; 9]>) {
        if self.left > 0 {
            let take = self.left.min(bytes.len());
            self.left -= take;
            return (take, None);
        }
        let take = (9 - self.have).min(bytes.len());
        self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
        self.have += take;
        if self.have < 9 {
            return (take, None);
        }
        self.have = 0;
        let h = self.header;
        self.left = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        (take, Some(h))
    }

    /// Consumes all of `bytes`.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = &bytes[self.step(bytes).0..];
        }
    }

    fn between_frames(&self) -> bool {
        self.have == 0 && self.left == 0
    }
}

/// A GOAWAY frame with ENHANCE_YOUR_CALM.
fn goaway(last_stream: u32) -> Vec<u8> {
    let mut f = vec![0, 0, 8, 0x7, 0, 0, 0, 0, 0];
    f.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&0xbu32.to_be_bytes());
    f
}

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
            if *shutdown.borrow() {
                return Head::Closed;
            }
            tokio::select! {
                r = tokio::time::timeout(idle, self.read_ahead()) => match r {
                    Ok(true) => {}
                    Ok(false) => return Head::Closed,
                    // A first request that never starts is a slow client; an idle
                    // kept-alive connection just ends.
                    Err(_) => return Head::Idle,
                },
                _ = shutdown.changed() => return Head::Closed,
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
        if this.watch.state == WatchState::Frames {
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

/// The client address of a stream, if it is an Internet socket.
pub fn client_ip(stream: &Stream) -> Option<std::net::IpAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(SocketAddr::as_inet).map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(0u8, len));
        f
    }

    #[test]
    fn counts_control_frames_across_split_reads_and_finds_the_flooding_one() {
        let t = Instant::now();
        let mut w = H2Watch::new(3, t);
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, 6));
        bytes.extend(frame(SETTINGS, ACK, 0, 0));
        bytes.extend(frame(HEADERS, 0x4, 5, 20));
        bytes.extend(frame(PING, ACK, 0, 8));
        bytes.extend(frame(PING, 0, 0, 8));
        bytes.extend(frame(PRIORITY, 0, 3, 5));
        let flooding_at = bytes.len();
        bytes.extend(frame(PING, 0, 0, 8));
        // Byte by byte: headers split across reads.
        let mut found = None;
        for (i, b) in bytes.iter().enumerate() {
            if let Some(f) = w.feed(std::slice::from_ref(b), t) {
                found = Some((i, f.kind));
                break;
            }
        }
        // The ninth byte of the flooding frame's header completes it.
        assert_eq!(found, Some((flooding_at + 8, "ping")));
        assert_eq!(w.last_stream, 5);

        // In one read: the offset of the flooding frame.
        let mut w = H2Watch::new(3, t);
        assert_eq!(
            w.feed(&bytes, t),
            Some(Flood {
                kind: "ping",
                at: flooding_at
            })
        );
    }

    #[test]
    fn the_window_resets_and_http1_is_not_followed() {
        let t = Instant::now();
        let mut w = H2Watch::new(2, t);
        let mut b = H2_PREFACE.to_vec();
        b.extend(frame(PING, 0, 0, 8));
        b.extend(frame(PING, 0, 0, 8));
        assert_eq!(w.feed(&b, t), None);
        assert_eq!(w.feed(&frame(PING, 0, 0, 8), t + WINDOW), None);
        assert!(w.feed(&frame(PING, 0, 0, 8), t + WINDOW).is_none());
        assert!(w.feed(&frame(PING, 0, 0, 8), t + WINDOW).is_some());

        let mut w = H2Watch::new(0, t);
        assert_eq!(w.feed(b"GET / HTTP/1.1\r\n\r\n", t), None);
        assert_eq!(w.feed(&frame(PING, 0, 0, 8), t), None);
    }

    #[test]
    fn frame_boundaries_of_written_frames() {
        let mut b = Frames::default();
        assert!(b.between_frames());
        let f = frame(0x0, 0, 1, 100);
        b.feed(&f[..50]);
        assert!(!b.between_frames());
        b.feed(&f[50..]);
        assert!(b.between_frames());
        assert_eq!(goaway(7)[9..13], [0, 0, 0, 7]);
    }
}
