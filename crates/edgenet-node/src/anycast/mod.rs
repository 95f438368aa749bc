//! Anycast in the node: the driver around the pure [`controller`]. It runs the BGP speaker and
//! the health checks on a thread of their own with a current-thread runtime, so a loaded proxy
//! never delays a withdrawal or a BFD packet; feeds the controller the checks' results, the
//! operator's drain, SIGTERM and the sessions' state with the time; and applies what it
//! decides: each peer's export to the speaker, logs and metrics.

mod checks;
pub mod controller;
mod lo;
mod metrics;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgenet_bgp::fsm::State as SessionState;
use edgenet_bgp::message::Prefix;
use edgenet_bgp::speaker::Speaker;
use edgenet_config::{Anycast as AnycastConfig, AnycastCheck};
use edgenet_proxy::lock;
use edgenet_proxy::metrics::Metrics;
use pingora_core::connectors::http::Connector;
use tokio::sync::Notify;

use controller::{Action, Announcement, CheckSpec, Controller, Event, Group};
use metrics::AnycastMetrics;

/// The controller's group of customer prefixes.
const CUSTOMERS: usize = 1;

/// The node's anycast, shared by the driver's thread, the admin API and the signal handler.
pub struct Anycast {
    config: AnycastConfig,
    speaker: Arc<Speaker>,
    controller: Mutex<Controller>,
    /// When the controller wants to be asked again (a GRACEFUL_SHUTDOWN wait).
    next_wake: Mutex<Option<Instant>>,
    wake: Notify,
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    stopped: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    metrics: AnycastMetrics,
    /// Addresses this node put on `lo` (removed again on exit).
    added: Vec<(IpAddr, u8)>,
    /// Set once the sessions and addresses went to a new process (`hand_over`).
    handed_over: AtomicBool,
}

/// The controller's checks: the node's own listeners first (up after 3 passes, down at the
/// first failure), then the configured ones.
fn check_specs(config: &AnycastConfig) -> Vec<CheckSpec> {
    let own = CheckSpec {
        name: "listeners".into(),
        rise: 3,
        fall: 1,
    };
    std::iter::once(own)
        .chain(config.checks.iter().map(|c| CheckSpec {
            name: c.name.clone(),
            rise: c.rise,
            fall: c.fall,
        }))
        .collect()
}

impl Anycast {
    /// Puts the addresses on `lo`, starts the speaker and the checks on a thread of their own.
    /// `listeners` are the node's own listeners, checked like any other check. On an upgrade
    /// (`take_over`) the addresses already on `lo` are the old node's, now this one's.
    pub fn start(
        config: &AnycastConfig,
        listeners: Vec<SocketAddr>,
        metrics: &Metrics,
        take_over: bool,
    ) -> anyhow::Result<Arc<Anycast>> {
        let added = lo::add_lo_addresses(&config.lo_addresses, take_over)?;
        let config = config.clone();
        let am = AnycastMetrics::new(metrics);
        crate::own_thread::start("anycast", move |ready| async move {
            let speaker = match Speaker::start(config.speaker.clone()).await {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    let _ = ready.send(Err(anyhow::anyhow!("anycast: {e}")));
                    return;
                }
            };
            let peers: Vec<IpAddr> = config.speaker.peers.iter().map(|p| p.address).collect();
            let group = Group {
                name: "anycast".into(),
                prefixes: config.prefixes.clone(),
                peers: peers.clone(),
                follows_checks: true,
                origins: Default::default(),
            };
            // Customers' prefixes (Magic Transit), set by the tunnels driver while it has a
            // path to the customer.
            let customers = Group {
                name: "customers".into(),
                prefixes: Vec::new(),
                peers,
                follows_checks: false,
                origins: Default::default(),
            };
            let controller = Controller::new(
                vec![group, customers],
                check_specs(&config),
                config.graceful_shutdown_wait,
            );
            let (stop_tx, stop_rx) = std::sync::mpsc::channel();
            let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
            let node = Arc::new(Anycast {
                config,
                speaker,
                controller: Mutex::new(controller),
                next_wake: Mutex::new(None),
                wake: Notify::new(),
                stop: Mutex::new(Some(stop_tx)),
                stopped: Mutex::new(Some(stopped_rx)),
                metrics: am,
                added,
                handed_over: AtomicBool::new(false),
            });
            let _ = ready.send(Ok(node.clone()));
            node.run(listeners, stop_rx).await;
            let _ = stopped_tx.send(());
        })
    }

    /// Takes an event now and applies the controller's actions.
    fn feed(&self, event: Event) {
        let mut c = lock(&self.controller);
        let actions = c.handle(event, Instant::now());
        for action in actions {
            match action {
                Action::Export { peer, export } => {
                    self.speaker.export(peer, export);
                }
                Action::CheckChanged { check, up, error } => {
                    let name = c.checks().nth(check).map_or("?", |(n, _, _)| n);
                    if up {
                        tracing::info!(check = %name, "anycast check passes");
                    } else {
                        let error = error.unwrap_or_default();
                        tracing::warn!(check = %name, %error, "anycast check failed");
                    }
                }
                Action::Announcement {
                    group,
                    state,
                    reason,
                    cause,
                } => {
                    let name = if group == CUSTOMERS {
                        "customers"
                    } else {
                        "anycast"
                    };
                    match state {
                        Announcement::Announced => {
                            tracing::info!(group = name, prefixes = ?c.prefixes(group), "anycast: announcing")
                        }
                        Announcement::GracefulShutdown { .. } => {
                            tracing::info!(group = name, %reason, "anycast: GRACEFUL_SHUTDOWN before withdrawing")
                        }
                        Announcement::Withdrawn => {
                            tracing::warn!(group = name, %reason, "anycast: withdrawn")
                        }
                    }
                    if let Some(cause) = cause {
                        self.metrics
                            .withdrawals
                            .with_label_values(&[cause.as_str()])
                            .inc();
                    }
                }
                Action::WakeAt(at) => {
                    *lock(&self.next_wake) = Some(at);
                    self.wake.notify_one();
                }
                Action::Stop => {
                    if let Some(tx) = lock(&self.stop).take() {
                        let _ = tx.send(());
                    }
                    self.wake.notify_one();
                }
            }
        }
    }

    async fn run(
        self: &Arc<Self>,
        listeners: Vec<SocketAddr>,
        stop: std::sync::mpsc::Receiver<()>,
    ) {
        let own = AnycastCheck {
            name: "listeners".into(),
            target: edgenet_config::CheckTarget::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            interval: self.config.check_interval,
            timeout: self.config.check_interval.max(Duration::from_millis(200)),
            rise: 3,
            fall: 1,
        };
        let connector = Arc::new(Connector::new(None));
        let listeners = Arc::new(listeners);
        let all = std::iter::once(own).chain(self.config.checks.clone());
        for (idx, check) in all.enumerate() {
            let (me, connector, listeners) = (self.clone(), connector.clone(), listeners.clone());
            let own = idx == 0;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(check.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let result = if own {
                        checks::probe_listeners(&listeners, check.timeout).await
                    } else {
                        checks::probe(&check, &connector).await
                    };
                    me.feed(Event::Check {
                        check: idx,
                        ok: result.is_ok(),
                        error: result.err(),
                    });
                    let up = lock(&me.controller).checks().nth(idx).is_some_and(|c| c.1);
                    me.metrics
                        .check_up
                        .with_label_values(&[&check.name])
                        .set(i64::from(up));
                }
            });
        }
        loop {
            self.feed(Event::Tick);
            self.follow_sessions();
            let sleep = lock(&self.next_wake)
                .take()
                .map_or(Duration::from_millis(100), |at| {
                    at.saturating_duration_since(Instant::now())
                });
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep.min(Duration::from_millis(100))) => {}
            }
            if stop.try_recv().is_ok() {
                self.speaker.stop(Duration::from_secs(1)).await;
                return;
            }
        }
    }

    /// The customer prefixes this PoP announces now (each with its origin AS), from the
    /// tunnels driver: those with a path from here.
    pub fn set_customer_prefixes(&self, prefixes: Vec<(Prefix, Option<u32>)>) {
        self.feed(Event::Prefixes {
            group: CUSTOMERS,
            prefixes,
        });
    }

    /// The PoP's speaker, which the interconnects' sessions share.
    pub fn speaker(&self) -> Arc<Speaker> {
        self.speaker.clone()
    }

    /// Tells the controller about sessions that came up or went down since last asked (only
    /// the anycast peers': CNI sessions share the speaker but not the announcement).
    fn follow_sessions(&self) {
        let ours = &self.config.speaker.peers;
        for p in self.speaker.status() {
            if !ours.iter().any(|o| o.address == p.address) {
                continue;
            }
            let up = p.state == SessionState::Established;
            if up != lock(&self.controller).established(p.address) {
                self.feed(if up {
                    Event::SessionUp(p.address)
                } else {
                    Event::SessionDown(p.address)
                });
            }
        }
    }

    /// `POST /anycast/drain`: withdraw (gracefully) and keep serving.
    pub fn drain(&self) {
        self.feed(Event::Drain);
    }

    /// `POST /anycast/undrain`: announce again (when the checks pass).
    pub fn undrain(&self) {
        self.feed(Event::Undrain);
    }

    /// SIGTERM: withdraws (gracefully), waits for the withdrawal, then serves on for the
    /// configured drain time so traffic already on its way still lands.
    pub async fn terminate(&self) {
        self.feed(Event::Terminate);
        let deadline = Instant::now() + self.config.graceful_shutdown_wait + Duration::from_secs(2);
        while !lock(&self.controller).withdrawn() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(
            drain = %humantime::format_duration(self.config.drain_time),
            "anycast withdrawn; serving on before closing the listeners"
        );
        tokio::time::sleep(self.config.drain_time).await;
    }

    /// Ends the BGP sessions with a Cease and removes the addresses this node put on `lo`
    /// (unless it handed them over). Blocks for at most about a second.
    pub fn shutdown(&self) {
        self.end_sessions();
        if !self.handed_over.load(Ordering::Relaxed) {
            lo::remove_lo_addresses(&self.added);
        }
    }

    /// An upgrade: ends the BGP sessions (with a Cease, so the new process's speaker can open
    /// them again at once) and leaves the addresses on `lo` to the new process. Peers drop the
    /// routes for the seconds until the new sessions are up: there is no BGP graceful restart
    /// (RFC 4724) yet to keep them.
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Relaxed);
        self.end_sessions();
    }

    fn end_sessions(&self) {
        let stopping = lock(&self.stop).is_some();
        if stopping {
            self.feed(Event::Shutdown);
            if let Some(rx) = lock(&self.stopped).take() {
                let _ = rx.recv_timeout(Duration::from_millis(1500));
            }
        }
    }

    /// The status for `GET /anycast`.
    pub fn status_json(&self) -> serde_json::Value {
        let c = lock(&self.controller);
        let now = Instant::now();
        let (announcement, reason) = c.announcement(0);
        let state = match announcement {
            Announcement::Announced => "announced",
            Announcement::GracefulShutdown { .. } => "graceful-shutdown",
            Announcement::Withdrawn => "withdrawn",
        };
        let checks: Vec<serde_json::Value> = c
            .checks()
            .map(|(name, up, last_error)| {
                serde_json::json!({"name": name, "up": up, "last_error": last_error})
            })
            .collect();
        let peers: Vec<serde_json::Value> = self
            .speaker
            .status()
            .iter()
            .map(|p| {
                serde_json::json!({
                    "address": p.address.to_string(),
                    "asn": p.peer_as,
                    "state": format!("{:?}", p.state),
                    "uptime_seconds": p.established_at.map(|t| now.duration_since(t).as_secs_f64()),
                    "flaps": p.flaps,
                    "last_error": p.last_error,
                    "prefixes_announced": p.announced,
                    "prefixes_received": p.received,
                    "prefixes_accepted": p.accepted,
                    "bfd": p.bfd.map(|b| b.name()),
                })
            })
            .collect();
        let routes: Vec<serde_json::Value> = self
            .speaker
            .best_routes()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "prefix": r.prefix.to_string(),
                    "peer": r.peer.to_string(),
                    "next_hop": r.path.next_hop.to_string(),
                    "as_path": format!("{:?}", r.path.as_path),
                })
            })
            .collect();
        serde_json::json!({
            "state": state,
            "reason": reason,
            "drained": c.drained(),
            "prefixes": self.config.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "checks": checks,
            "peers": peers,
            "best_routes": routes,
        })
    }

    /// Sets the scrape-time gauges.
    pub fn update_metrics(&self) {
        let m = &self.metrics;
        let c = lock(&self.controller);
        m.announced
            .set(i64::from(c.announcement(0).0 == Announcement::Announced));
        m.drained.set(i64::from(c.drained()));
        drop(c);
        let now = Instant::now();
        for p in self.speaker.status() {
            let peer = p.address.to_string();
            let l = &[peer.as_str()];
            m.established
                .with_label_values(l)
                .set(i64::from(p.established_at.is_some()));
            m.uptime.with_label_values(l).set(
                p.established_at
                    .map_or(0, |t| now.duration_since(t).as_secs() as i64),
            );
            let flaps = m.flaps.with_label_values(l);
            flaps.inc_by(p.flaps.saturating_sub(flaps.get()));
            m.announced_prefixes
                .with_label_values(l)
                .set(p.announced as i64);
            m.received_prefixes
                .with_label_values(l)
                .set(p.received as i64);
            m.accepted_prefixes
                .with_label_values(l)
                .set(p.accepted as i64);
            if let Some(b) = p.bfd {
                m.bfd_up
                    .with_label_values(l)
                    .set(i64::from(b == edgenet_bgp::bfd::BfdState::Up));
            }
        }
    }
}
