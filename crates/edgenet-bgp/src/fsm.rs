//! The BGP finite state machine (RFC 4271 section 8), pure: events in (timer expiries, TCP
//! outcomes, decoded messages), actions out (connect, send, arm timers, session up/down). The
//! driver owns the socket and the clock; this owns the rules.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::message::{
    Capability, Codec, Family, Message, MessageError, Notification, Open, Update, AS_TRANS,
};

/// Session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not trying.
    Idle,
    /// Connecting out.
    Connect,
    /// Waiting for the peer to connect (or for the retry timer).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the first KEEPALIVE.
    OpenConfirm,
    /// Routes flow.
    Established,
}

impl State {
    /// The state's name in snake case (`open_sent`), as APIs show it.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "open_sent",
            State::OpenConfirm => "open_confirm",
            State::Established => "established",
        }
    }
}

/// The session's timers; the driver arms and fires them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// ConnectRetryTimer.
    ConnectRetry,
    /// HoldTimer.
    Hold,
    /// KeepaliveTimer.
    Keepalive,
    /// Wait before an automatic restart after an error (backs off).
    IdleHold,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The operator (or the node) starts the session.
    Start,
    /// The operator stops it (a Cease NOTIFICATION goes out if connected).
    Stop,
    /// A TCP connection is up (ours or the peer's).
    TcpConnected,
    /// Connecting failed or the connection dropped.
    TcpFailed,
    /// A timer fired.
    TimerExpired(Timer),
    /// A whole message arrived.
    Received(Message),
    /// Bytes arrived that are not a valid message.
    DecodeError(MessageError),
    /// Something outside the FSM ends the session: BFD saw the path fail, or the peer sent
    /// more prefixes than allowed. The NOTIFICATION, if any, goes out first.
    Fail {
        /// Why, for status and logs.
        reason: String,
        /// The NOTIFICATION to send.
        notification: Option<Notification>,
    },
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Close the connection.
    Disconnect,
    /// Send a message.
    Send(Message),
    /// Arm (or re-arm) a timer.
    StartTimer(Timer, Duration),
    /// Disarm a timer.
    StopTimer(Timer),
    /// The session reached Established; encode and decode with this codec.
    Up(Codec),
    /// The session left Established (or failed to get there), with the reason.
    Down(String),
    /// An UPDATE to apply to the Adj-RIB-In.
    Routes(Update),
    /// The peer asked for our routes again (RFC 2918).
    Refresh(Family),
}

/// The local side of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our AS.
    pub local_as: u32,
    /// The AS the peer must have.
    pub peer_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The hold time we offer (0, or at least 3 s).
    pub hold_time: Duration,
    /// The longest time between KEEPALIVEs; a third of the negotiated hold time when longer.
    pub keepalive: Option<Duration>,
    /// Wait for the peer to connect instead of connecting.
    pub passive: bool,
    /// Time between connection attempts.
    pub connect_retry: Duration,
    /// Families to negotiate.
    pub families: Vec<Family>,
}

/// A session's state machine.
#[derive(Debug)]
pub struct Session {
    config: Config,
    state: State,
    /// The negotiated hold time (after OPENs).
    hold: Duration,
    codec: Codec,
    /// Consecutive failures, for the restart backoff.
    failures: u32,
    /// The peer's OPEN, once received.
    peer_open: Option<Open>,
}

/// The hold time used until OPENs are exchanged (RFC 4271 suggests 4 minutes).
const LARGE_HOLD: Duration = Duration::from_secs(240);

impl Session {
    /// A session in Idle.
    pub fn new(config: Config) -> Session {
        Session {
            config,
            state: State::Idle,
            hold: Duration::ZERO,
            codec: Codec {
                four_octet_as: false,
            },
            failures: 0,
            peer_open: None,
        }
    }

    /// The peer's OPEN of the current (or last) session.
    pub fn peer_open(&self) -> Option<&Open> {
        self.peer_open.as_ref()
    }

    /// The negotiated hold time (zero before OPENs are exchanged, or when negotiated off).
    pub fn hold_time(&self) -> Duration {
        self.hold
    }

    fn keepalive(&self) -> Duration {
        let third = self.hold / 3;
        self.config.keepalive.map_or(third, |k| k.min(third))
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The OPEN we send.
    pub fn open(&self) -> Open {
        let mut capabilities: Vec<Capability> = self
            .config
            .families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::FourOctetAs(self.config.local_as));
        Open {
            version: 4,
            my_as: u16::try_from(self.config.local_as).unwrap_or(AS_TRANS),
            hold_time: self.config.hold_time.as_secs().min(u64::from(u16::MAX)) as u16,
            router_id: self.config.router_id,
            capabilities,
        }
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        // A start by an incoming connection may come before the restart wait is over.
        out.push(Action::StopTimer(Timer::IdleHold));
        out.push(Action::StartTimer(
            Timer::ConnectRetry,
            self.config.connect_retry,
        ));
        if self.config.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            out.push(Action::Connect);
        }
    }

    /// Goes to Idle after an error, with an automatic restart after a backoff.
    fn fail(&mut self, reason: String, notify: Option<Notification>, out: &mut Vec<Action>) {
        if let Some(n) = notify {
            out.push(Action::Send(Message::Notification(n)));
        }
        out.push(Action::Disconnect);
        for t in [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive] {
            out.push(Action::StopTimer(t));
        }
        out.push(Action::Down(reason));
        self.failures = self.failures.saturating_add(1);
        // 1 s, 2 s, 4 s ... up to 2 minutes between attempts.
        let backoff = Duration::from_secs(1 << self.failures.min(7).saturating_sub(1));
        out.push(Action::StartTimer(
            Timer::IdleHold,
            backoff.min(Duration::from_secs(120)),
        ));
        self.state = State::Idle;
    }

    fn on_open(&mut self, open: &Open, out: &mut Vec<Action>) {
        if open.asn() != self.config.peer_as {
            let data = open.my_as.to_be_bytes().to_vec();
            let reason = format!(
                "peer AS {} where {} was configured",
                open.asn(),
                self.config.peer_as
            );
            return self.fail(
                reason,
                Some(Notification {
                    code: 2,
                    subcode: 2,
                    data,
                }),
                out,
            );
        }
        let theirs = Duration::from_secs(u64::from(open.hold_time));
        self.hold = theirs.min(self.config.hold_time);
        let four = open
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)));
        self.codec = Codec {
            four_octet_as: four,
        };
        out.push(Action::Send(Message::Keepalive));
        if self.hold.is_zero() {
            out.push(Action::StopTimer(Timer::Hold));
        } else {
            out.push(Action::StartTimer(Timer::Hold, self.hold));
            out.push(Action::StartTimer(Timer::Keepalive, self.keepalive()));
        }
        self.peer_open = Some(open.clone());
        self.state = State::OpenConfirm;
    }

    /// Feeds one event; returns what to do.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        use State::*;
        match (self.state, event) {
            (Idle, Event::Start) | (Idle, Event::TimerExpired(Timer::IdleHold)) => {
                self.start(&mut out)
            }
            (Idle, _) => {}
            // The restart wait belongs to Idle; once started otherwise, it is moot.
            (_, Event::TimerExpired(Timer::IdleHold)) => {}
            (_, Event::Stop) => {
                if matches!(self.state, OpenSent | OpenConfirm | Established) {
                    out.push(Action::Send(Message::Notification(Notification {
                        code: 6,
                        subcode: 2,
                        data: Vec::new(),
                    })));
                }
                out.push(Action::Disconnect);
                for t in [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive] {
                    out.push(Action::StopTimer(t));
                }
                out.push(Action::Down("stopped".into()));
                self.state = Idle;
                self.failures = 0;
            }
            (Connect | Active, Event::TcpConnected) => {
                out.push(Action::StopTimer(Timer::ConnectRetry));
                out.push(Action::Send(Message::Open(self.open())));
                out.push(Action::StartTimer(Timer::Hold, LARGE_HOLD));
                self.state = OpenSent;
            }
            (Connect, Event::TcpFailed) => {
                out.push(Action::StartTimer(
                    Timer::ConnectRetry,
                    self.config.connect_retry,
                ));
                self.state = Active;
            }
            (Connect | Active, Event::TimerExpired(Timer::ConnectRetry)) => {
                out.push(Action::StartTimer(
                    Timer::ConnectRetry,
                    self.config.connect_retry,
                ));
                if !self.config.passive {
                    out.push(Action::Connect);
                    self.state = Connect;
                }
            }
            (Connect | Active, _) => {}
            (_, Event::DecodeError(e)) => {
                let n = Notification {
                    code: e.code,
                    subcode: e.subcode,
                    data: e.data.clone(),
                };
                self.fail(e.to_string(), Some(n), &mut out);
            }
            (_, Event::TcpFailed) => self.fail("connection lost".into(), None, &mut out),
            (
                _,
                Event::Fail {
                    reason,
                    notification,
                },
            ) => self.fail(reason, notification, &mut out),
            (_, Event::Received(Message::Notification(n))) => {
                let reason = format!("NOTIFICATION {}/{} from the peer", n.code, n.subcode);
                self.fail(reason, None, &mut out);
            }
            (_, Event::TimerExpired(Timer::Hold)) => {
                let n = Notification {
                    code: 4,
                    subcode: 0,
                    data: Vec::new(),
                };
                self.fail("hold timer expired".into(), Some(n), &mut out);
            }
            (OpenSent, Event::Received(Message::Open(open))) => self.on_open(&open, &mut out),
            (OpenConfirm, Event::Received(Message::Keepalive)) => {
                if !self.hold.is_zero() {
                    out.push(Action::StartTimer(Timer::Hold, self.hold));
                }
                out.push(Action::Up(self.codec));
                self.failures = 0;
                self.state = Established;
            }
            (OpenConfirm | Established, Event::TimerExpired(Timer::Keepalive)) => {
                out.push(Action::Send(Message::Keepalive));
                out.push(Action::StartTimer(Timer::Keepalive, self.keepalive()));
            }
            (Established, Event::Received(msg)) => {
                if !self.hold.is_zero() {
                    out.push(Action::StartTimer(Timer::Hold, self.hold));
                }
                match msg {
                    Message::Update(u) => out.push(Action::Routes(u)),
                    Message::RouteRefresh(f) => out.push(Action::Refresh(f)),
                    _ => {}
                }
            }
            // Anything else is a finite state machine error (RFC 4271 section 6.6).
            (_, ev) => {
                let subcode = match self.state {
                    OpenSent => 1,
                    OpenConfirm => 2,
                    _ => 3,
                };
                let n = Notification {
                    code: 5,
                    subcode,
                    data: Vec::new(),
                };
                self.fail(
                    format!("unexpected {ev:?} in {:?}", self.state),
                    Some(n),
                    &mut out,
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(passive: bool) -> Config {
        Config {
            local_as: 4_200_000_001,
            peer_as: 65000,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time: Duration::from_secs(9),
            keepalive: None,
            passive,
            connect_retry: Duration::from_secs(5),
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        }
    }

    fn peer_open(asn: u32, hold: u16) -> Message {
        Message::Open(Open {
            version: 4,
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time: hold,
            router_id: Ipv4Addr::new(192, 0, 2, 254),
            capabilities: vec![Capability::FourOctetAs(asn)],
        })
    }

    fn established(s: &mut Session) -> Vec<Action> {
        s.handle(Event::Start);
        s.handle(Event::TcpConnected);
        s.handle(Event::Received(peer_open(65000, 30)));
        s.handle(Event::Received(Message::Keepalive))
    }

    #[test]
    fn active_session_reaches_established() {
        let mut s = Session::new(config(false));
        let a = s.handle(Event::Start);
        assert!(a.contains(&Action::Connect));
        assert_eq!(s.state(), State::Connect);
        let a = s.handle(Event::TcpConnected);
        assert!(matches!(a[1], Action::Send(Message::Open(ref o)) if o.my_as == AS_TRANS));
        assert_eq!(s.state(), State::OpenSent);
        let a = s.handle(Event::Received(peer_open(65000, 30)));
        assert_eq!(s.state(), State::OpenConfirm);
        // Hold time is the smaller of the two offers: 9 s; keepalives every 3 s.
        assert!(a.contains(&Action::StartTimer(Timer::Hold, Duration::from_secs(9))));
        assert!(a.contains(&Action::StartTimer(
            Timer::Keepalive,
            Duration::from_secs(3)
        )));
        let a = s.handle(Event::Received(Message::Keepalive));
        assert_eq!(s.state(), State::Established);
        assert!(a.contains(&Action::Up(Codec {
            four_octet_as: true
        })));
    }

    #[test]
    fn passive_session_waits_for_the_peer() {
        let mut s = Session::new(config(true));
        let a = s.handle(Event::Start);
        assert!(!a.contains(&Action::Connect));
        assert_eq!(s.state(), State::Active);
        let a = s.handle(Event::TimerExpired(Timer::ConnectRetry));
        assert!(!a.contains(&Action::Connect), "passive never connects");
        s.handle(Event::TcpConnected);
        assert_eq!(s.state(), State::OpenSent);
    }

    #[test]
    fn wrong_peer_as_is_refused_with_bad_peer_as() {
        let mut s = Session::new(config(false));
        s.handle(Event::Start);
        s.handle(Event::TcpConnected);
        let a = s.handle(Event::Received(peer_open(65099, 30)));
        assert!(a.iter().any(|x| matches!(x,
            Action::Send(Message::Notification(n)) if n.code == 2 && n.subcode == 2)));
        assert_eq!(s.state(), State::Idle);
        assert!(a
            .iter()
            .any(|x| matches!(x, Action::StartTimer(Timer::IdleHold, _))));
    }

    #[test]
    fn hold_timer_expiry_sends_notification_and_goes_down() {
        let mut s = Session::new(config(false));
        established(&mut s);
        let a = s.handle(Event::TimerExpired(Timer::Hold));
        assert!(a.iter().any(|x| matches!(x,
            Action::Send(Message::Notification(n)) if n.code == 4)));
        assert!(a.iter().any(|x| matches!(x, Action::Down(_))));
        assert_eq!(s.state(), State::Idle);
    }

    #[test]
    fn updates_flow_and_refresh_the_hold_timer() {
        let mut s = Session::new(config(false));
        established(&mut s);
        let a = s.handle(Event::Received(Message::Update(Update::default())));
        assert_eq!(
            a,
            vec![
                Action::StartTimer(Timer::Hold, Duration::from_secs(9)),
                Action::Routes(Update::default())
            ]
        );
        let a = s.handle(Event::TimerExpired(Timer::Keepalive));
        assert_eq!(a[0], Action::Send(Message::Keepalive));
    }

    #[test]
    fn stop_sends_cease_and_unexpected_messages_are_fsm_errors() {
        let mut s = Session::new(config(false));
        established(&mut s);
        let a = s.handle(Event::Stop);
        assert!(a.iter().any(|x| matches!(x,
            Action::Send(Message::Notification(n)) if (n.code, n.subcode) == (6, 2))));
        assert_eq!(s.state(), State::Idle);

        let mut s = Session::new(config(false));
        s.handle(Event::Start);
        s.handle(Event::TcpConnected);
        let a = s.handle(Event::Received(Message::Keepalive));
        assert!(a.iter().any(|x| matches!(x,
            Action::Send(Message::Notification(n)) if (n.code, n.subcode) == (5, 1))));
    }

    #[test]
    fn a_restart_wait_that_fires_after_the_session_came_up_is_ignored() {
        let mut s = Session::new(config(true));
        s.handle(Event::Start);
        s.handle(Event::TcpConnected);
        let a = s.handle(Event::TcpFailed);
        assert!(a
            .iter()
            .any(|x| matches!(x, Action::StartTimer(Timer::IdleHold, _))));
        // The peer connects before the wait is over: the session starts at once.
        let a = s.handle(Event::Start);
        assert!(a.contains(&Action::StopTimer(Timer::IdleHold)));
        s.handle(Event::TcpConnected);
        s.handle(Event::Received(peer_open(65000, 30)));
        s.handle(Event::Received(Message::Keepalive));
        assert_eq!(s.state(), State::Established);
        assert!(s.handle(Event::TimerExpired(Timer::IdleHold)).is_empty());
        assert_eq!(s.state(), State::Established);
    }

    /// Drives a fresh session to `state`.
    fn session_in(state: State) -> Session {
        let mut s = Session::new(config(false));
        let steps: &[Event] = match state {
            State::Idle => &[],
            State::Connect => &[Event::Start],
            State::Active => &[Event::Start, Event::TcpFailed],
            State::OpenSent => &[Event::Start, Event::TcpConnected],
            State::OpenConfirm => &[
                Event::Start,
                Event::TcpConnected,
                Event::Received(peer_open(65000, 30)),
            ],
            State::Established => &[
                Event::Start,
                Event::TcpConnected,
                Event::Received(peer_open(65000, 30)),
                Event::Received(Message::Keepalive),
            ],
        };
        for e in steps {
            s.handle(e.clone());
        }
        assert_eq!(s.state(), state);
        s
    }

    /// RFC 4271 section 8.2.2, as a table: (state, event) -> next state, and the NOTIFICATION
    /// (code, subcode) sent, if any.
    #[test]
    fn transition_table() {
        use State::*;
        let notification = |a: &[Action]| {
            a.iter().find_map(|x| match x {
                Action::Send(Message::Notification(n)) => Some((n.code, n.subcode)),
                _ => None,
            })
        };
        let hold = Event::TimerExpired(Timer::Hold);
        let retry = Event::TimerExpired(Timer::ConnectRetry);
        let keepalive = Event::TimerExpired(Timer::Keepalive);
        let ka = Event::Received(Message::Keepalive);
        let open = Event::Received(peer_open(65000, 30));
        let update = Event::Received(Message::Update(Update::default()));
        let refresh = Event::Received(Message::RouteRefresh(Family::Ipv4Unicast));
        let cease = Event::Received(Message::Notification(Notification {
            code: 6,
            subcode: 2,
            data: vec![],
        }));
        let bad = Event::DecodeError(MessageError {
            code: 1,
            subcode: 1,
            data: vec![],
            reason: "bad marker",
        });
        type Row = (State, Event, State, Option<(u8, u8)>);
        let table: Vec<Row> = vec![
            (Idle, Event::Start, Connect, None),
            (Idle, Event::TcpConnected, Idle, None),
            (Idle, ka.clone(), Idle, None),
            (Connect, Event::TcpConnected, OpenSent, None),
            (Connect, Event::TcpFailed, Active, None),
            (Connect, retry.clone(), Connect, None),
            (Connect, Event::Stop, Idle, None),
            (Active, retry.clone(), Connect, None),
            (Active, Event::TcpConnected, OpenSent, None),
            (OpenSent, open.clone(), OpenConfirm, None),
            (OpenSent, ka.clone(), Idle, Some((5, 1))),
            (OpenSent, update.clone(), Idle, Some((5, 1))),
            (OpenSent, hold.clone(), Idle, Some((4, 0))),
            (OpenSent, Event::TcpFailed, Idle, None),
            (OpenSent, bad.clone(), Idle, Some((1, 1))),
            (OpenSent, Event::Stop, Idle, Some((6, 2))),
            (OpenConfirm, ka.clone(), Established, None),
            (OpenConfirm, keepalive.clone(), OpenConfirm, None),
            (OpenConfirm, update.clone(), Idle, Some((5, 2))),
            (OpenConfirm, open.clone(), Idle, Some((5, 2))),
            (OpenConfirm, cease.clone(), Idle, None),
            (OpenConfirm, hold.clone(), Idle, Some((4, 0))),
            (Established, update.clone(), Established, None),
            (Established, ka.clone(), Established, None),
            (Established, refresh.clone(), Established, None),
            (Established, keepalive.clone(), Established, None),
            (Established, hold.clone(), Idle, Some((4, 0))),
            (Established, cease.clone(), Idle, None),
            (Established, bad.clone(), Idle, Some((1, 1))),
            (Established, Event::TcpFailed, Idle, None),
            (Established, Event::Stop, Idle, Some((6, 2))),
            (
                Established,
                Event::Fail {
                    reason: "BFD session down".into(),
                    notification: None,
                },
                Idle,
                None,
            ),
        ];
        for (from, event, to, sent) in table {
            let mut s = session_in(from);
            let a = s.handle(event.clone());
            assert_eq!(s.state(), to, "{from:?} + {event:?}");
            assert_eq!(notification(&a), sent, "{from:?} + {event:?}: {a:?}");
        }
        // The routes and refresh requests reach the driver.
        let mut s = session_in(Established);
        assert!(s
            .handle(refresh)
            .contains(&Action::Refresh(Family::Ipv4Unicast)));
    }

    #[test]
    fn restarts_back_off() {
        let mut s = Session::new(config(false));
        let mut waits = Vec::new();
        for _ in 0..4 {
            s.handle(Event::Start);
            s.handle(Event::TimerExpired(Timer::IdleHold));
            s.handle(Event::TcpConnected);
            let a = s.handle(Event::TcpFailed);
            waits.extend(a.into_iter().filter_map(|x| match x {
                Action::StartTimer(Timer::IdleHold, d) => Some(d.as_secs()),
                _ => None,
            }));
        }
        assert_eq!(waits, vec![1, 2, 4, 8]);
    }
}
