//! The anycast controller, pure: health check results, the operator's drain, SIGTERM and BGP
//! sessions going up and down come in as [`Event`]s with the time; what each peer is to have
//! from us (and what to log, count and wake for) comes out as [`Action`]s. No clock, no IO:
//! the driver (`super`) reads the time and applies the actions to the speaker.
//!
//! Prefixes are announced in groups, each with its own peers: the PoP's anycast prefixes to
//! every configured peer, and the customers' prefixes (Magic Transit) to the same peers. The
//! anycast group is announced while every check passes and the PoP is neither drained nor
//! shutting down; a group that does not follow the checks (the customers': the checks are of
//! the HTTP listeners, and the tunnels driver decides which customer prefixes have a path)
//! only while the PoP is neither drained nor shutting down. A group's prefixes may change
//! ([`Event::Prefixes`]), each with the AS that originates it behind ours. A failed check withdraws at once;
//! a planned withdrawal (drain, SIGTERM) first re-announces with GRACEFUL_SHUTDOWN (RFC 8326)
//! and withdraws `graceful_wait` later, so routers move traffic away before it stops.
//!
//! ```text
//!             checks pass, not drained              drain / terminate
//!  Withdrawn ─────────────────────────▶ Announced ───────────────────▶ GracefulShutdown
//!      ▲  ▲                                 │                               │
//!      │  └──────── a check fails ──────────┘        the wait is over       │
//!      └─────────────────────────────────────────────────────────────────────┘
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use edgenet_bgp::config::Export;
use edgenet_bgp::message::Prefix;
use edgenet_origin::{Tracker, Transition};

/// Prefixes announced together, to the same peers, under the same rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its name, for logs.
    pub name: String,
    /// The prefixes.
    pub prefixes: Vec<Prefix>,
    /// The peers it is announced to.
    pub peers: Vec<IpAddr>,
    /// Withdrawn while a check fails.
    pub follows_checks: bool,
    /// The AS originating a prefix behind ours, where it is not us.
    pub origins: BTreeMap<Prefix, u32>,
}

/// A health check the announcement depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// Its name.
    pub name: String,
    /// Consecutive passes to come back up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
}

/// Where a group's announcement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// Announced normally.
    Announced,
    /// Re-announced with GRACEFUL_SHUTDOWN; withdrawn once the wait is over.
    GracefulShutdown {
        /// When it is withdrawn.
        until: Instant,
    },
    /// Withdrawn.
    Withdrawn,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A check's result (checks are numbered in [`Controller::new`]'s order).
    Check {
        /// The check.
        check: usize,
        /// Passed.
        ok: bool,
        /// Why it failed.
        error: Option<String>,
    },
    /// The operator drained the PoP (`POST /anycast/drain`): withdraw gracefully, keep serving.
    Drain,
    /// The operator undrained it: announce again (when the checks pass).
    Undrain,
    /// SIGTERM: withdraw gracefully before the node stops.
    Terminate,
    /// Time passed: a GRACEFUL_SHUTDOWN wait may be over.
    Tick,
    /// A group's prefixes are now these, each with its origin AS when not ours.
    Prefixes {
        /// The group.
        group: usize,
        /// Its prefixes.
        prefixes: Vec<(Prefix, Option<u32>)>,
    },
    /// A BGP session reached Established.
    SessionUp(IpAddr),
    /// A BGP session left Established.
    SessionDown(IpAddr),
    /// The node stops: end the sessions.
    Shutdown,
}

/// Why a group was withdrawn, as the withdrawal metric counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A health check failed.
    Check,
    /// The operator drained the PoP.
    Drain,
    /// The node is shutting down.
    Shutdown,
}

impl Cause {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Check => "check",
            Cause::Drain => "drain",
            Cause::Shutdown => "shutdown",
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set what `peer` is to have from us.
    Export {
        /// The peer.
        peer: IpAddr,
        /// Its routes.
        export: Export,
    },
    /// A check went up or down (`error`: why it failed).
    CheckChanged {
        /// The check.
        check: usize,
        /// Up now.
        up: bool,
        /// The failure, when it went down.
        error: Option<String>,
    },
    /// A group's announcement changed.
    Announcement {
        /// The group.
        group: usize,
        /// Its new state.
        state: Announcement,
        /// Why it is not announced (empty while it is).
        reason: String,
        /// Set when it was withdrawn.
        cause: Option<Cause>,
    },
    /// Call again with [`Event::Tick`] at this time at the latest.
    WakeAt(Instant),
    /// End every BGP session (Cease) and stop.
    Stop,
}

#[derive(Debug, Clone)]
struct CheckState {
    spec: CheckSpec,
    tracker: Tracker,
    last_error: Option<String>,
}

#[derive(Debug, Clone)]
struct GroupState {
    group: Group,
    announcement: Announcement,
    reason: String,
}

/// The controller's whole state.
#[derive(Debug, Clone)]
pub struct Controller {
    checks: Vec<CheckState>,
    groups: Vec<GroupState>,
    graceful_wait: Duration,
    drained: bool,
    terminating: bool,
    stopped: bool,
    /// Peers whose session is Established.
    established: BTreeMap<IpAddr, bool>,
    /// What each peer was last told to have.
    exported: BTreeMap<IpAddr, Export>,
}

impl Controller {
    /// A controller for `groups` depending on `checks`, every group withdrawn until the checks
    /// pass (a check starts down); a planned withdrawal waits `graceful_wait` with
    /// GRACEFUL_SHUTDOWN first (zero: withdraw at once).
    pub fn new(groups: Vec<Group>, checks: Vec<CheckSpec>, graceful_wait: Duration) -> Controller {
        let established = groups
            .iter()
            .flat_map(|g| g.peers.iter().map(|p| (*p, false)))
            .collect();
        Controller {
            checks: checks
                .into_iter()
                .map(|spec| CheckState {
                    spec,
                    tracker: Tracker::starting_down(),
                    last_error: None,
                })
                .collect(),
            groups: groups
                .into_iter()
                .map(|group| GroupState {
                    group,
                    announcement: Announcement::Withdrawn,
                    reason: "checks have not passed yet".into(),
                })
                .collect(),
            graceful_wait,
            drained: false,
            terminating: false,
            stopped: false,
            established,
            exported: BTreeMap::new(),
        }
    }

    /// Takes an event at `now`; returns what to do.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.stopped {
            return actions;
        }
        match event {
            Event::Check { check, ok, error } => {
                let Some(c) = self.checks.get_mut(check) else {
                    return actions;
                };
                let transition = c.tracker.observe(ok, c.spec.rise, c.spec.fall);
                // The error stays while the check fails; a pass clears it.
                c.last_error = if ok { None } else { error };
                if let Some(t) = transition {
                    let up = t == Transition::BecameUp;
                    let error = c.last_error.clone().filter(|_| !up);
                    actions.push(Action::CheckChanged { check, up, error });
                }
            }
            Event::Drain => self.drained = true,
            Event::Undrain => self.drained = false,
            Event::Terminate => self.terminating = true,
            Event::Tick => {}
            Event::Prefixes { group, prefixes } => {
                let Some(g) = self.groups.get_mut(group) else {
                    return actions;
                };
                g.group.prefixes = prefixes.iter().map(|(p, _)| *p).collect();
                g.group.origins = prefixes
                    .iter()
                    .filter_map(|(p, o)| Some((*p, (*o)?)))
                    .collect();
            }
            Event::SessionUp(peer) => {
                self.established.insert(peer, true);
                // Whatever the session had from us is gone with its last incarnation: tell
                // the speaker again what this peer is to have.
                self.exported.remove(&peer);
            }
            Event::SessionDown(peer) => {
                self.established.insert(peer, false);
            }
            Event::Shutdown => {
                self.stopped = true;
                actions.push(Action::Stop);
                return actions;
            }
        }
        self.evaluate(now, &mut actions);
        actions
    }

    fn evaluate(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| !c.tracker.is_up())
            .map(|c| c.spec.name.as_str())
            .collect();
        let healthy = failed.is_empty();
        let mut wake = None;
        for (idx, g) in self.groups.iter_mut().enumerate() {
            let healthy = healthy || !g.group.follows_checks;
            let (next, reason) = if healthy && !self.drained && !self.terminating {
                (Announcement::Announced, String::new())
            } else if !healthy {
                let reason = format!("failed checks: {}", failed.join(", "));
                (Announcement::Withdrawn, reason)
            } else {
                let reason = if self.terminating {
                    "shutting down"
                } else {
                    "drained by the operator"
                };
                let next = match g.announcement {
                    Announcement::Announced if !self.graceful_wait.is_zero() => {
                        Announcement::GracefulShutdown {
                            until: now + self.graceful_wait,
                        }
                    }
                    Announcement::GracefulShutdown { until } if now < until => g.announcement,
                    _ => Announcement::Withdrawn,
                };
                (next, reason.to_string())
            };
            if let Announcement::GracefulShutdown { until } = next {
                wake = Some(wake.map_or(until, |w: Instant| w.min(until)));
            }
            if next != g.announcement {
                let cause = if !healthy {
                    Cause::Check
                } else if self.terminating {
                    Cause::Shutdown
                } else {
                    Cause::Drain
                };
                let cause = (next == Announcement::Withdrawn).then_some(cause);
                actions.push(Action::Announcement {
                    group: idx,
                    state: next,
                    reason: reason.clone(),
                    cause,
                });
            }
            g.announcement = next;
            g.reason = reason;
        }
        // Each peer gets the union of the groups announced to it.
        let mut wanted: BTreeMap<IpAddr, Export> = self
            .established
            .keys()
            .map(|p| (*p, Export::default()))
            .collect();
        for g in &self.groups {
            let gshut = match g.announcement {
                Announcement::Announced => false,
                Announcement::GracefulShutdown { .. } => true,
                Announcement::Withdrawn => continue,
            };
            for peer in &g.group.peers {
                let export = wanted.entry(*peer).or_default();
                for p in &g.group.prefixes {
                    export.add_one(*p, gshut, g.group.origins.get(p).copied());
                }
            }
        }
        for (peer, export) in wanted {
            if self.exported.get(&peer) != Some(&export) {
                self.exported.insert(peer, export.clone());
                actions.push(Action::Export { peer, export });
            }
        }
        if let Some(at) = wake {
            actions.push(Action::WakeAt(at));
        }
    }

    /// A group's announcement and why it is not announced (empty while it is).
    pub fn announcement(&self, group: usize) -> (Announcement, &str) {
        let g = &self.groups[group];
        (g.announcement, &g.reason)
    }

    /// A group's prefixes now.
    pub fn prefixes(&self, group: usize) -> &[Prefix] {
        self.groups
            .get(group)
            .map_or(&[], |g| g.group.prefixes.as_slice())
    }

    /// Whether every group is withdrawn.
    pub fn withdrawn(&self) -> bool {
        self.groups
            .iter()
            .all(|g| g.announcement == Announcement::Withdrawn)
    }

    /// Whether the operator drained the PoP.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Each check: its name, whether it is up, and why it last failed while it fails.
    pub fn checks(&self) -> impl Iterator<Item = (&str, bool, Option<&str>)> {
        self.checks.iter().map(|c| {
            (
                c.spec.name.as_str(),
                c.tracker.is_up(),
                c.last_error.as_deref(),
            )
        })
    }

    /// Whether the session with `peer` is Established, as last reported.
    pub fn established(&self, peer: IpAddr) -> bool {
        self.established.get(&peer).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn peers() -> [IpAddr; 2] {
        ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()]
    }

    fn prefixes() -> Vec<Prefix> {
        vec![
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8:1::/48".parse().unwrap(),
        ]
    }

    /// One group to both peers; the node's listeners (rise 3, fall 1) and one more check
    /// (rise 1, fall 2).
    fn controller(wait: Duration) -> Controller {
        Controller::new(
            vec![Group {
                name: "anycast".into(),
                prefixes: prefixes(),
                peers: peers().to_vec(),
                follows_checks: true,
                origins: BTreeMap::new(),
            }],
            vec![
                CheckSpec {
                    name: "listeners".into(),
                    rise: 3,
                    fall: 1,
                },
                CheckSpec {
                    name: "origin".into(),
                    rise: 1,
                    fall: 2,
                },
            ],
            wait,
        )
    }

    fn check(check: usize, ok: bool) -> Event {
        Event::Check {
            check,
            ok,
            error: (!ok).then(|| "connect refused".to_string()),
        }
    }

    fn exports(actions: &[Action]) -> BTreeMap<IpAddr, Export> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Export { peer, export } => Some((*peer, export.clone())),
                _ => None,
            })
            .collect()
    }

    fn announcement(actions: &[Action]) -> Option<(Announcement, Option<Cause>)> {
        actions.iter().find_map(|a| match a {
            Action::Announcement { state, cause, .. } => Some((*state, *cause)),
            _ => None,
        })
    }

    /// A controller announced at `t`: every check passed enough times.
    fn announced(wait: Duration, t: Instant) -> Controller {
        let mut c = controller(wait);
        for _ in 0..3 {
            c.handle(check(0, true), t);
        }
        c.handle(check(1, true), t);
        assert_eq!(c.announcement(0).0, Announcement::Announced);
        c
    }

    #[test]
    fn starts_withdrawn_and_announces_once_every_check_has_risen() {
        let t = Instant::now();
        let mut c = controller(WAIT);
        assert_eq!(
            c.announcement(0),
            (Announcement::Withdrawn, "checks have not passed yet")
        );
        // The first event tells each peer it has nothing.
        let a = c.handle(check(0, true), t);
        assert_eq!(exports(&a).len(), 2);
        assert!(exports(&a).values().all(|e| e.routes.is_empty()));
        assert!(c.handle(check(0, true), t).is_empty());
        let a = c.handle(check(0, true), t);
        assert!(a.contains(&Action::CheckChanged {
            check: 0,
            up: true,
            error: None
        }));
        assert_eq!(announcement(&a), None, "the origin check has not passed");
        assert!(c.announcement(0).1.contains("origin"));
        let a = c.handle(check(1, true), t);
        assert_eq!(announcement(&a), Some((Announcement::Announced, None)));
        let e = exports(&a);
        assert_eq!(e.len(), 2, "to every peer of the group");
        for export in e.values() {
            assert_eq!(export, &Export::of(prefixes(), false));
        }
        assert_eq!(c.announcement(0).1, "");
    }

    #[test]
    fn a_failing_check_withdraws_at_once_and_its_error_stays_while_it_fails() {
        let t = Instant::now();
        let mut c = announced(WAIT, t);
        let a = c.handle(check(0, false), t);
        assert!(a.contains(&Action::CheckChanged {
            check: 0,
            up: false,
            error: Some("connect refused".into())
        }));
        assert_eq!(
            announcement(&a),
            Some((Announcement::Withdrawn, Some(Cause::Check)))
        );
        assert!(exports(&a).values().all(|e| e.routes.is_empty()));
        assert_eq!(c.announcement(0).1, "failed checks: listeners");
        assert!(!a.iter().any(|x| matches!(x, Action::WakeAt(_))), "no wait");
        let listed: Vec<_> = c.checks().collect();
        assert_eq!(listed[0], ("listeners", false, Some("connect refused")));
        // Back only after `rise` passes; a pass clears the error at once.
        c.handle(check(0, true), t);
        assert_eq!(c.checks().next().unwrap().2, None);
        c.handle(check(0, true), t);
        assert_eq!(c.announcement(0).0, Announcement::Withdrawn);
        let a = c.handle(check(0, true), t);
        assert_eq!(announcement(&a), Some((Announcement::Announced, None)));
        // One failure of a check with fall 2 changes nothing.
        assert!(c.handle(check(1, false), t).is_empty());
        assert_eq!(c.announcement(0).0, Announcement::Announced);
    }

    #[test]
    fn drain_announces_graceful_shutdown_then_withdraws_after_the_wait() {
        let t = Instant::now();
        let mut c = announced(WAIT, t);
        let a = c.handle(Event::Drain, t);
        assert_eq!(
            announcement(&a),
            Some((Announcement::GracefulShutdown { until: t + WAIT }, None))
        );
        for export in exports(&a).values() {
            assert_eq!(export, &Export::of(prefixes(), true), "GRACEFUL_SHUTDOWN");
        }
        assert!(a.contains(&Action::WakeAt(t + WAIT)));
        assert!(c.drained());
        assert_eq!(c.announcement(0).1, "drained by the operator");
        // Before the wait is over nothing changes, and the driver is told when to look again.
        let a = c.handle(Event::Tick, t + WAIT / 2);
        assert_eq!(a, vec![Action::WakeAt(t + WAIT)]);
        let a = c.handle(Event::Tick, t + WAIT);
        assert_eq!(
            announcement(&a),
            Some((Announcement::Withdrawn, Some(Cause::Drain)))
        );
        assert!(exports(&a).values().all(|e| e.routes.is_empty()));
        assert!(c.withdrawn());
    }

    #[test]
    fn without_a_wait_a_drain_withdraws_at_once() {
        let t = Instant::now();
        let mut c = announced(Duration::ZERO, t);
        let a = c.handle(Event::Drain, t);
        assert_eq!(
            announcement(&a),
            Some((Announcement::Withdrawn, Some(Cause::Drain)))
        );
    }

    #[test]
    fn undrain_announces_again_even_during_the_wait() {
        let t = Instant::now();
        let mut c = announced(WAIT, t);
        c.handle(Event::Drain, t);
        let a = c.handle(Event::Undrain, t + Duration::from_secs(1));
        assert_eq!(announcement(&a), Some((Announcement::Announced, None)));
        for export in exports(&a).values() {
            assert_eq!(export, &Export::of(prefixes(), false));
        }
        assert!(!c.drained());
        // Undrained while a check fails: stays withdrawn for the check.
        c.handle(Event::Drain, t);
        c.handle(Event::Tick, t + WAIT * 2);
        c.handle(check(0, false), t + WAIT * 2);
        let a = c.handle(Event::Undrain, t + WAIT * 2);
        assert_eq!(announcement(&a), None);
        assert_eq!(c.announcement(0).1, "failed checks: listeners");
    }

    #[test]
    fn terminate_withdraws_gracefully_for_good() {
        let t = Instant::now();
        let mut c = announced(WAIT, t);
        let a = c.handle(Event::Terminate, t);
        assert!(matches!(
            announcement(&a),
            Some((Announcement::GracefulShutdown { .. }, None))
        ));
        assert_eq!(c.announcement(0).1, "shutting down");
        c.handle(Event::Undrain, t);
        assert_ne!(
            c.announcement(0).0,
            Announcement::Announced,
            "undrain cannot undo it"
        );
        let a = c.handle(Event::Tick, t + WAIT);
        assert_eq!(
            announcement(&a),
            Some((Announcement::Withdrawn, Some(Cause::Shutdown)))
        );
        // A check failing while withdrawn changes the reason, not the state.
        let a = c.handle(check(0, false), t + WAIT);
        assert_eq!(announcement(&a), None);
    }

    #[test]
    fn shutdown_stops_and_then_nothing_happens() {
        let t = Instant::now();
        let mut c = announced(WAIT, t);
        assert_eq!(c.handle(Event::Shutdown, t), vec![Action::Stop]);
        assert!(c.handle(Event::Drain, t).is_empty());
        assert!(c.handle(check(0, false), t).is_empty());
    }

    #[test]
    fn a_session_that_comes_back_is_told_its_routes_again() {
        let t = Instant::now();
        let [v4, v6] = peers();
        let mut c = announced(WAIT, t);
        let a = c.handle(Event::SessionUp(v4), t);
        assert_eq!(exports(&a).keys().collect::<Vec<_>>(), [&v4]);
        assert!(c.established(v4) && !c.established(v6));
        // Down, nothing to send; the withdrawal while down reaches it when it is back.
        assert!(c.handle(Event::SessionDown(v4), t).is_empty());
        assert!(!c.established(v4));
        c.handle(check(0, false), t);
        let a = c.handle(Event::SessionUp(v4), t);
        let e = exports(&a);
        assert_eq!(e.len(), 1);
        assert!(e[&v4].routes.is_empty());
        assert!(c.handle(Event::Tick, t).is_empty(), "nothing new to send");
    }

    #[test]
    fn each_peer_gets_the_union_of_its_groups() {
        let [v4, v6] = peers();
        let customer: Prefix = "203.0.113.0/24".parse().unwrap();
        let mut c = Controller::new(
            vec![
                Group {
                    name: "anycast".into(),
                    prefixes: prefixes(),
                    peers: vec![v4, v6],
                    follows_checks: true,
                    origins: BTreeMap::new(),
                },
                Group {
                    name: "customer".into(),
                    prefixes: vec![customer],
                    peers: vec![v4],
                    follows_checks: true,
                    origins: BTreeMap::new(),
                },
            ],
            vec![],
            WAIT,
        );
        let a = c.handle(Event::Tick, Instant::now());
        let e = exports(&a);
        assert_eq!(e[&v4].routes.len(), 3);
        assert_eq!(e[&v6].routes.len(), 2);
        assert!(!e[&v6].routes.contains_key(&customer));
    }

    #[test]
    fn customer_prefixes_follow_their_paths_not_the_checks_and_carry_their_origin() {
        let [v4, _] = peers();
        let customer: Prefix = "203.0.113.0/24".parse().unwrap();
        let mut c = Controller::new(
            vec![
                Group {
                    name: "anycast".into(),
                    prefixes: prefixes(),
                    peers: vec![v4],
                    follows_checks: true,
                    origins: BTreeMap::new(),
                },
                Group {
                    name: "customer".into(),
                    prefixes: vec![],
                    peers: vec![v4],
                    follows_checks: false,
                    origins: BTreeMap::new(),
                },
            ],
            vec![CheckSpec {
                name: "listeners".into(),
                rise: 1,
                fall: 1,
            }],
            Duration::ZERO,
        );
        let t = Instant::now();
        c.handle(Event::SessionUp(v4), t);
        let a = c.handle(
            Event::Prefixes {
                group: 1,
                prefixes: vec![(customer, Some(64_512))],
            },
            t,
        );
        // The listeners' check has not passed: the anycast prefixes wait, the customer's go.
        let e = exports(&a);
        assert_eq!(e[&v4].routes.len(), 1);
        assert_eq!(e[&v4].routes[&customer].origin_as, Some(64_512));
        let a = c.handle(check(0, true), t);
        assert_eq!(exports(&a)[&v4].routes.len(), 3);
        // The last path went: the driver hands an empty list and the prefix is withdrawn.
        let a = c.handle(
            Event::Prefixes {
                group: 1,
                prefixes: vec![],
            },
            t,
        );
        let e = exports(&a);
        assert_eq!(e[&v4].routes.len(), 2);
        assert!(!e[&v4].routes.contains_key(&customer));
        // Drained, it goes with the rest.
        c.handle(
            Event::Prefixes {
                group: 1,
                prefixes: vec![(customer, None)],
            },
            t,
        );
        let a = c.handle(Event::Drain, t);
        assert!(exports(&a)[&v4].routes.is_empty());
    }
}
