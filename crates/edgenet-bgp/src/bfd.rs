//! BFD (RFC 5880, single hop per RFC 5881), pure: the control packet codec and one session's
//! state machine in asynchronous mode. Packets and the current time go in; whether to send now,
//! state changes and the next deadline come out. The driver owns the UDP sockets.

use std::time::{Duration, Instant};

/// UDP port of single-hop control packets (RFC 5881).
pub const PORT: u16 = 3784;
/// The length of a control packet without authentication.
pub const PACKET_LEN: usize = 24;
/// While a session is not Up, packets go out at most once a second (RFC 5880 section 6.8.3).
const SLOW_TX: Duration = Duration::from_secs(1);

/// Session states (RFC 5880 section 4.1, `Sta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BfdState {
    /// AdminDown (0).
    AdminDown,
    /// Down (1).
    Down,
    /// Init (2).
    Init,
    /// Up (3).
    Up,
}

impl BfdState {
    fn from_bits(b: u8) -> BfdState {
        match b & 3 {
            0 => BfdState::AdminDown,
            1 => BfdState::Down,
            2 => BfdState::Init,
            _ => BfdState::Up,
        }
    }

    fn bits(self) -> u8 {
        self as u8
    }

    /// The lower-case name used in status output.
    pub fn name(self) -> &'static str {
        match self {
            BfdState::AdminDown => "admin-down",
            BfdState::Down => "down",
            BfdState::Init => "init",
            BfdState::Up => "up",
        }
    }
}

/// Diagnostic codes (RFC 5880 section 4.1, `Diag`) that this implementation sets.
pub mod diag {
    /// No diagnostic.
    pub const NONE: u8 = 0;
    /// Control detection time expired.
    pub const DETECTION_TIME_EXPIRED: u8 = 1;
    /// Neighbor signaled session down.
    pub const NEIGHBOR_DOWN: u8 = 3;
    /// Administratively down.
    pub const ADMIN_DOWN: u8 = 7;
}

/// A BFD control packet (RFC 5880 section 4.1). Intervals are in microseconds as on the wire.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       My Discriminator                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Your Discriminator                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Desired Min TX Interval                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   Required Min RX Interval                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Required Min Echo RX Interval                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Diagnostic code.
    pub diag: u8,
    /// The sender's state.
    pub state: BfdState,
    /// Poll (P).
    pub poll: bool,
    /// Final (F).
    pub fin: bool,
    /// Control plane independent (C).
    pub cpi: bool,
    /// Demand mode (D).
    pub demand: bool,
    /// Detection time multiplier.
    pub detect_mult: u8,
    /// My Discriminator.
    pub my_discr: u32,
    /// Your Discriminator.
    pub your_discr: u32,
    /// Desired Min TX Interval (µs).
    pub desired_min_tx: u32,
    /// Required Min RX Interval (µs).
    pub required_min_rx: u32,
    /// Required Min Echo RX Interval (µs).
    pub required_min_echo_rx: u32,
}

/// Why a received packet is discarded (RFC 5880 section 6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than 24 bytes or than its Length field.
    #[error("packet too short")]
    TooShort,
    /// Version is not 1.
    #[error("version is not 1")]
    Version,
    /// Length below 24, or below 26 with authentication.
    #[error("bad length field")]
    Length,
    /// Detect Mult is zero.
    #[error("detect multiplier is zero")]
    DetectMult,
    /// Multipoint bit set.
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator is zero.
    #[error("my discriminator is zero")]
    MyDiscr,
    /// Your Discriminator is zero in a state other than Down or AdminDown.
    #[error("your discriminator is zero outside Down")]
    YourDiscr,
    /// Authentication is present; no session here uses it.
    #[error("authentication present but not configured")]
    Auth,
}

impl Packet {
    /// Decodes and checks a packet as RFC 5880 section 6.8.6 says, up to the session lookup.
    pub fn decode(buf: &[u8]) -> Result<Packet, PacketError> {
        if buf.len() < PACKET_LEN {
            return Err(PacketError::TooShort);
        }
        if buf[0] >> 5 != 1 {
            return Err(PacketError::Version);
        }
        let flags = buf[1];
        let auth = flags & 0x04 != 0;
        let len = usize::from(buf[3]);
        if len < PACKET_LEN || (auth && len < PACKET_LEN + 2) {
            return Err(PacketError::Length);
        }
        if len > buf.len() {
            return Err(PacketError::TooShort);
        }
        if auth {
            return Err(PacketError::Auth);
        }
        let u32_at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let p = Packet {
            diag: buf[0] & 0x1f,
            state: BfdState::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            fin: flags & 0x10 != 0,
            cpi: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: buf[2],
            my_discr: u32_at(4),
            your_discr: u32_at(8),
            desired_min_tx: u32_at(12),
            required_min_rx: u32_at(16),
            required_min_echo_rx: u32_at(20),
        };
        if p.detect_mult == 0 {
            return Err(PacketError::DetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(PacketError::Multipoint);
        }
        if p.my_discr == 0 {
            return Err(PacketError::MyDiscr);
        }
        if p.your_discr == 0 && !matches!(p.state, BfdState::Down | BfdState::AdminDown) {
            return Err(PacketError::YourDiscr);
        }
        Ok(p)
    }

    /// Encodes the packet (24 bytes, no authentication).
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0] = (1 << 5) | (self.diag & 0x1f);
        b[1] = (self.state.bits() << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.fin) << 4)
            | (u8::from(self.cpi) << 3)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = PACKET_LEN as u8;
        for (i, v) in [
            self.my_discr,
            self.your_discr,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        ]
        .into_iter()
        .enumerate()
        {
            b[4 + i * 4..8 + i * 4].copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}

/// A session's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdConfig {
    /// The interval we would like to send at once Up.
    pub desired_min_tx: Duration,
    /// The fastest we accept packets.
    pub required_min_rx: Duration,
    /// Detection time multiplier.
    pub detect_mult: u8,
}

/// What [`Session::handle`] asks of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Output {
    /// Send a packet now (built by [`Session::packet`]).
    pub send: bool,
    /// The state changed from the first to the second.
    pub changed: Option<(BfdState, BfdState)>,
}

/// An input to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A valid packet for this session arrived.
    Packet(Packet),
    /// Time passed (the driver calls this at [`Session::deadline`]).
    Tick,
    /// The operator takes the session down (AdminDown) or back up (Down).
    Admin(bool),
}

/// One BFD session (RFC 5880 section 6.8.1 state variables).
#[derive(Debug, Clone)]
pub struct Session {
    config: BfdConfig,
    state: BfdState,
    remote_state: BfdState,
    local_discr: u32,
    remote_discr: u32,
    diag: u8,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_mult: u8,
    /// A Poll Sequence is running (timers changed; sending P until an F comes back).
    polling: bool,
    /// The next packet answers a Poll with F.
    send_final: bool,
    /// The desired TX interval advertised now (slow while not Up).
    desired_tx: Duration,
    next_tx: Instant,
    /// When the remote will be declared down (only while Init or Up).
    detect_at: Option<Instant>,
    /// Pseudo-random state for the transmit jitter.
    rng: u64,
}

impl Session {
    /// A session in Down with the given local discriminator (non-zero, unique on this node).
    pub fn new(config: BfdConfig, local_discr: u32, now: Instant) -> Session {
        Session {
            config,
            state: BfdState::Down,
            remote_state: BfdState::Down,
            local_discr: local_discr.max(1),
            remote_discr: 0,
            diag: diag::NONE,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_mult: 0,
            polling: false,
            send_final: false,
            desired_tx: config.desired_min_tx.max(SLOW_TX),
            next_tx: now,
            detect_at: None,
            rng: u64::from(local_discr) | 1,
        }
    }

    /// The current state.
    pub fn state(&self) -> BfdState {
        self.state
    }

    /// Our discriminator.
    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    /// The peer's discriminator (0 until known).
    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// The time the peer has to send within before it is declared down.
    pub fn detection_time(&self) -> Duration {
        self.config.required_min_rx.max(self.remote_desired_tx) * u32::from(self.remote_mult)
    }

    /// When [`Input::Tick`] is next due.
    pub fn deadline(&self) -> Instant {
        match self.detect_at {
            Some(d) => d.min(self.next_tx),
            None => self.next_tx,
        }
    }

    /// The packet to send now. Clears the Final flag it carries.
    pub fn packet(&mut self) -> Packet {
        let fin = std::mem::take(&mut self.send_final);
        Packet {
            diag: self.diag,
            state: self.state,
            poll: self.polling && !fin,
            fin,
            cpi: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx: micros(self.desired_tx),
            required_min_rx: micros(self.config.required_min_rx),
            required_min_echo_rx: 0,
        }
    }

    /// Feeds an input at time `now`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Output {
        let before = self.state;
        let mut out = Output::default();
        match input {
            Input::Packet(p) => self.receive(&p, now, &mut out),
            Input::Tick => {
                if self.detect_at.is_some_and(|d| now >= d) {
                    self.go(BfdState::Down, diag::DETECTION_TIME_EXPIRED);
                    self.remote_discr = 0;
                }
                if now >= self.next_tx {
                    out.send = self.remote_min_rx > Duration::ZERO;
                    self.schedule_tx(now);
                }
            }
            Input::Admin(down) => {
                if down {
                    self.go(BfdState::AdminDown, diag::ADMIN_DOWN);
                } else if self.state == BfdState::AdminDown {
                    self.go(BfdState::Down, diag::NONE);
                }
            }
        }
        if self.state != before {
            out.changed = Some((before, self.state));
            // Tell the peer at once instead of at the next interval.
            out.send = true;
            self.schedule_tx(now);
        }
        out
    }

    fn receive(&mut self, p: &Packet, now: Instant, out: &mut Output) {
        if p.your_discr != 0 && p.your_discr != self.local_discr {
            return;
        }
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_min_rx = Duration::from_micros(u64::from(p.required_min_rx));
        self.remote_desired_tx = Duration::from_micros(u64::from(p.desired_min_tx));
        self.remote_mult = p.detect_mult;
        if p.fin {
            self.polling = false;
        }
        if p.poll {
            self.send_final = true;
            out.send = true;
        }
        if self.state == BfdState::AdminDown {
            return;
        }
        match (self.state, p.state) {
            (BfdState::Init | BfdState::Up, BfdState::AdminDown)
            | (BfdState::Up, BfdState::Down) => self.go(BfdState::Down, diag::NEIGHBOR_DOWN),
            (BfdState::Down, BfdState::Down) => self.go(BfdState::Init, diag::NONE),
            (BfdState::Down | BfdState::Init, BfdState::Init | BfdState::Up) => {
                if self.state == BfdState::Down && p.state == BfdState::Up {
                    // RFC 5880 6.8.6: Down ignores a peer in Up.
                } else {
                    self.go(BfdState::Up, diag::NONE)
                }
            }
            _ => {}
        }
        if matches!(self.state, BfdState::Init | BfdState::Up) {
            self.detect_at = Some(now + self.detection_time());
        }
    }

    fn go(&mut self, to: BfdState, diag: u8) {
        self.state = to;
        self.diag = diag;
        let desired = if to == BfdState::Up {
            self.config.desired_min_tx
        } else {
            self.config.desired_min_tx.max(SLOW_TX)
        };
        if desired != self.desired_tx {
            // Changing the advertised interval starts a Poll Sequence (RFC 5880 6.8.3).
            self.desired_tx = desired;
            self.polling = to == BfdState::Up;
        }
        if !matches!(to, BfdState::Init | BfdState::Up) {
            self.detect_at = None;
        }
    }

    /// The next periodic transmission: the larger of our desired and the peer's required
    /// interval, less 0-25% jitter (RFC 5880 section 6.8.7).
    fn schedule_tx(&mut self, now: Instant) {
        let interval = self.desired_tx.max(self.remote_min_rx);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let max_jitter = if self.config.detect_mult == 1 { 10 } else { 25 };
        let pct = 100 - (self.rng % (max_jitter + 1)) as u32;
        self.next_tx = now + interval * pct / 100;
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> BfdConfig {
        BfdConfig {
            desired_min_tx: 10 * MS,
            required_min_rx: 10 * MS,
            detect_mult: 3,
        }
    }

    /// A packet in Down: 1 s desired TX (slow while not Up), 100 ms required RX, multiplier 3.
    const BIRD_DOWN: [u8; 24] = [
        0x20, 0x40, 0x03, 0x18, 0x5e, 0x1d, 0x2b, 0x9c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x42,
        0x40, 0x00, 0x01, 0x86, 0xa0, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn packet_round_trips_byte_exact() {
        let p = Packet::decode(&BIRD_DOWN).unwrap();
        assert_eq!(p.state, BfdState::Down);
        assert_eq!(p.detect_mult, 3);
        assert_eq!(p.my_discr, 0x5e1d2b9c);
        assert_eq!(p.your_discr, 0);
        assert_eq!(p.desired_min_tx, 1_000_000);
        assert_eq!(p.required_min_rx, 100_000);
        assert_eq!(p.encode(), BIRD_DOWN);
        let mut up = p.clone();
        up.state = BfdState::Up;
        up.your_discr = 7;
        up.poll = true;
        up.diag = diag::NEIGHBOR_DOWN;
        let b = up.encode();
        assert_eq!(b[0], 0x23);
        assert_eq!(b[1], 0xe0);
        assert_eq!(Packet::decode(&b).unwrap(), up);
    }

    #[test]
    fn invalid_packets_are_discarded() {
        let mut b = BIRD_DOWN;
        b[0] = 0x40;
        assert_eq!(Packet::decode(&b), Err(PacketError::Version));
        let mut b = BIRD_DOWN;
        b[2] = 0;
        assert_eq!(Packet::decode(&b), Err(PacketError::DetectMult));
        let mut b = BIRD_DOWN;
        b[1] = 0xc0; // Up with Your Discriminator 0
        assert_eq!(Packet::decode(&b), Err(PacketError::YourDiscr));
        let mut b = BIRD_DOWN;
        b[1] |= 0x01;
        assert_eq!(Packet::decode(&b), Err(PacketError::Multipoint));
        assert_eq!(Packet::decode(&BIRD_DOWN[..20]), Err(PacketError::TooShort));
        let mut b = BIRD_DOWN;
        b[3] = 30;
        assert_eq!(Packet::decode(&b), Err(PacketError::TooShort));
        for i in 0..=255u8 {
            let mut b = BIRD_DOWN;
            b[1] = i;
            let _ = Packet::decode(&b);
        }
    }

    /// Two sessions wired back to back: every packet one sends, the other receives.
    fn exchange(a: &mut Session, b: &mut Session, now: Instant) {
        let pa = a.packet();
        b.handle(Input::Packet(pa), now);
        let pb = b.packet();
        a.handle(Input::Packet(pb), now);
    }

    #[test]
    fn three_way_handshake_reaches_up_and_polls_to_fast_timers() {
        let t0 = Instant::now();
        let mut a = Session::new(config(), 11, t0);
        let mut b = Session::new(config(), 22, t0);
        // a Down -> b sees Down: b Init; b Init -> a: a Up; a Up -> b: b Up.
        let pa = a.packet();
        assert!(!pa.poll);
        assert_eq!(pa.desired_min_tx, 1_000_000, "slow while not Up");
        let o = b.handle(Input::Packet(pa), t0);
        assert_eq!(o.changed, Some((BfdState::Down, BfdState::Init)));
        let o = a.handle(Input::Packet(b.packet()), t0);
        assert_eq!(o.changed, Some((BfdState::Down, BfdState::Up)));
        let pa = a.packet();
        assert!(pa.poll, "going Up lowers the TX interval: Poll");
        assert_eq!(pa.desired_min_tx, 10_000);
        let o = b.handle(Input::Packet(pa), t0);
        assert_eq!(o.changed, Some((BfdState::Init, BfdState::Up)));
        assert!(o.send);
        let pb = b.packet();
        assert!(pb.fin, "the Poll is answered with Final");
        a.handle(Input::Packet(pb), t0);
        assert!(!a.packet().poll, "Final ends the Poll Sequence");
        exchange(&mut a, &mut b, t0);
        assert_eq!((a.state(), b.state()), (BfdState::Up, BfdState::Up));
        assert_eq!(a.detection_time(), 30 * MS);
    }

    #[test]
    fn silence_for_the_detection_time_brings_the_session_down() {
        let t0 = Instant::now();
        let mut a = Session::new(config(), 11, t0);
        let mut b = Session::new(config(), 22, t0);
        for _ in 0..3 {
            exchange(&mut a, &mut b, t0);
        }
        assert_eq!(a.state(), BfdState::Up);
        assert_eq!(a.deadline().min(t0 + 30 * MS), a.deadline());
        let o = a.handle(Input::Tick, t0 + 29 * MS);
        assert_eq!(o.changed, None);
        let o = a.handle(Input::Tick, t0 + 30 * MS);
        assert_eq!(o.changed, Some((BfdState::Up, BfdState::Down)));
        let p = a.packet();
        assert_eq!((p.diag, p.your_discr), (diag::DETECTION_TIME_EXPIRED, 0));
        // The peer hears Down and goes Down too (neighbor signaled session down).
        let o = b.handle(Input::Packet(p), t0 + 30 * MS);
        assert_eq!(o.changed, Some((BfdState::Up, BfdState::Down)));
        assert_eq!(b.packet().diag, diag::NEIGHBOR_DOWN);
    }

    #[test]
    fn transmit_interval_honours_the_peer_and_jitters_down_only() {
        let t0 = Instant::now();
        let mut a = Session::new(config(), 11, t0);
        let mut slow = Session::new(
            BfdConfig {
                desired_min_tx: 10 * MS,
                required_min_rx: 50 * MS,
                detect_mult: 3,
            },
            22,
            t0,
        );
        for _ in 0..3 {
            exchange(&mut a, &mut slow, t0);
        }
        let mut now = t0;
        for _ in 0..50 {
            a.handle(Input::Tick, now);
            let gap = a.next_tx - now;
            assert!(gap >= 37 * MS && gap <= 50 * MS, "{gap:?}");
            now = a.next_tx;
            // Keep the session alive.
            a.handle(Input::Packet(slow.packet()), now);
        }
    }

    #[test]
    fn admin_down_is_sent_and_the_peer_goes_down() {
        let t0 = Instant::now();
        let mut a = Session::new(config(), 11, t0);
        let mut b = Session::new(config(), 22, t0);
        for _ in 0..3 {
            exchange(&mut a, &mut b, t0);
        }
        let o = a.handle(Input::Admin(true), t0);
        assert_eq!(o.changed, Some((BfdState::Up, BfdState::AdminDown)));
        let o = b.handle(Input::Packet(a.packet()), t0);
        assert_eq!(o.changed, Some((BfdState::Up, BfdState::Down)));
    }
}
