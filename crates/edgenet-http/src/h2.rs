//! Following a client's HTTP/2 frames for control-frame floods (pure: bytes and time in).
//!
//! `h2` answers every PING and SETTINGS frame (one at a time, so memory stays bounded) but never
//! gives up on a client that keeps sending them, which costs a write per frame. [`H2Watch`]
//! follows the frame headers a client sends and reports the frame that takes PING, SETTINGS
//! and PRIORITY frames past a limit per 10 s window; the PoP's connection guard then sends
//! [`goaway`] (ENHANCE_YOUR_CALM) at a frame boundary of its own output ([`Frames`]) and ends
//! the connection.
//!
//! ```text
//!  +-----------------------------------------------+
//!  |                 Length (24)                   |
//!  +---------------+---------------+---------------+
//!  |   Type (8)    |   Flags (8)   |
//!  +-+-------------+---------------+-------------------------------+
//!  |R|                 Stream Identifier (31)                      |
//!  +=+=============================================================+
//!  |                   Frame Payload (0...)                      ...
//!  +---------------------------------------------------------------+
//! ```
//! (RFC 9113 section 4.1)

use std::time::{Duration, Instant};

/// The HTTP/2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The window control frames are counted over.
pub const WINDOW: Duration = Duration::from_secs(10);

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

    /// Whether the client's bytes were the HTTP/2 preface and frames follow (false while the
    /// preface is incomplete and once the bytes turned out not to be HTTP/2).
    pub fn following_frames(&self) -> bool {
        self.state == WatchState::Frames
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
/// each frame ends. Reads the client's frames for [`H2Watch`] and the server's for a guard
/// that must put a GOAWAY between frames.
#[derive(Debug, Default)]
pub struct Frames {
    /// The frame header being read, and how much of it has come.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: usize,
}

impl Frames {
    /// Consumes bytes up to the end of a frame header or of a payload: how many, and the
    /// header when one was completed.
    pub fn step(&mut self, bytes: &[u8]) -> (usize, Option<[u8; 9]>) {
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
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = &bytes[self.step(bytes).0..];
        }
    }

    /// Whether the bytes fed so far end at a frame boundary.
    pub fn between_frames(&self) -> bool {
        self.have == 0 && self.left == 0
    }
}

/// A GOAWAY frame with ENHANCE_YOUR_CALM (RFC 9113 section 6.8, error code 0xb).
pub fn goaway(last_stream: u32) -> Vec<u8> {
    let mut f = vec![0, 0, 8, 0x7, 0, 0, 0, 0, 0];
    f.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&0xbu32.to_be_bytes());
    f
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
