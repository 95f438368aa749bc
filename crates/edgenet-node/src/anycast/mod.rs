//! Anycast in the node: the BGP speaker announces the PoP's prefixes while every health check
//! passes and the operator has not drained the PoP, and withdraws them otherwise.
//!
//! The speaker, the checks and the controller run on a thread of their own with a
//! current-thread runtime, so a loaded proxy never delays a withdrawal or a BFD packet.
//! A failed check withdraws at once; a planned withdrawal (drain, SIGTERM) first re-announces
//! with GRACEFUL_SHUTDOWN (RFC 8326) and withdraws `graceful_shutdown_wait` later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgenet_bgp::speaker::{Export, Speaker};
use edgenet_config::{Anycast as AnycastConfig, AnycastCheck, CheckTarget};
use edgenet_origin::{Tracker, Transition};
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::sync::Notify;

use crate::lock;
use crate::metrics::Metrics;

/// Where the announcement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// Announced normally.
    Announced,
    /// Re-announced with GRACEFUL_SHUTDOWN; withdrawn once the wait is over.
    GracefulShutdown(Instant),
    /// Withdrawn.
    Withdrawn,
}

/// One health check's state.
#[derive(Debug, Clone)]
struct CheckState {
    name: String,
    tracker: Tracker,
    last_error: Option<String>,
}

/// What the controller decides from.
#[derive(Debug)]
struct Control {
    drained: bool,
    terminating: bool,
    checks: Vec<CheckState>,
    announcement: Announcement,
    /// Why the prefixes are not announced (empty while they are).
    reason: String,
}

/// The node's anycast state, shared by the controller thread, the admin API and signals.
pub struct Anycast {
    config: AnycastConfig,
    speaker: Speaker,
    control: Mutex<Control>,
    wake: Notify,
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    stopped: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    metrics: AnycastMetrics,
    /// Addresses this node put on `lo` (removed again on exit).
    added: Vec<(IpAddr, u8)>,
}

impl Anycast {
    /// Puts the addresses on `lo`, starts the speaker and the checks on a thread of their own.
    /// `listeners` are the node's own listeners, checked like any other check.
    pub fn start(
        config: &AnycastConfig,
        listeners: Vec<SocketAddr>,
        metrics: &Metrics,
    ) -> anyhow::Result<Arc<Anycast>> {
        let added = add_lo_addresses(&config.lo_addresses)?;
        let config = config.clone();
        let am = AnycastMetrics::new(metrics);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("anycast".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("anycast runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let speaker = match Speaker::start(config.speaker.clone()).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow::anyhow!("anycast: {e}")));
                            return;
                        }
                    };
                    let mut checks = vec![CheckState {
                        name: "listeners".into(),
                        tracker: Tracker::starting_down(),
                        last_error: None,
                    }];
                    checks.extend(config.checks.iter().map(|c| CheckState {
                        name: c.name.clone(),
                        tracker: Tracker::starting_down(),
                        last_error: None,
                    }));
                    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
                    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
                    let node = Arc::new(Anycast {
                        config,
                        speaker,
                        control: Mutex::new(Control {
                            drained: false,
                            terminating: false,
                            checks,
                            announcement: Announcement::Withdrawn,
                            reason: "checks have not passed yet".into(),
                        }),
                        wake: Notify::new(),
                        stop: Mutex::new(Some(stop_tx)),
                        stopped: Mutex::new(Some(stopped_rx)),
                        metrics: am,
                        added,
                    });
                    let _ = ready_tx.send(Ok(node.clone()));
                    node.run(listeners, stop_rx).await;
                    let _ = stopped_tx.send(());
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the anycast thread ended before starting"))?
    }

    async fn run(
        self: &Arc<Self>,
        listeners: Vec<SocketAddr>,
        stop: std::sync::mpsc::Receiver<()>,
    ) {
        let own = AnycastCheck {
            name: "listeners".into(),
            target: CheckTarget::Tcp(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)),
            interval: self.config.check_interval,
            timeout: self.config.check_interval.max(Duration::from_millis(200)),
            rise: 3,
            fall: 1,
        };
        let connector = Arc::new(Connector::new(None));
        {
            let me = self.clone();
            let connector = connector.clone();
            tokio::spawn(async move { me.check_loop(0, own, Some(listeners), connector).await });
        }
        for (i, c) in self.config.checks.clone().into_iter().enumerate() {
            let me = self.clone();
            let connector = connector.clone();
            tokio::spawn(async move { me.check_loop(i + 1, c, None, connector).await });
        }
        loop {
            let next = self.evaluate();
            let sleep = next.map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now())
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

    /// Decides what to announce now; returns when it must be looked at again.
    fn evaluate(&self) -> Option<Instant> {
        let mut c = lock(&self.control);
        let failed: Vec<&str> = c
            .checks
            .iter()
            .filter(|s| !s.tracker.is_up())
            .map(|s| s.name.as_str())
            .collect();
        let healthy = failed.is_empty();
        let now = Instant::now();
        let (next, reason, export, wake) = if healthy && !c.drained && !c.terminating {
            (
                Announcement::Announced,
                String::new(),
                self.export(false),
                None,
            )
        } else if !healthy {
            let reason = format!("failed checks: {}", failed.join(", "));
            (Announcement::Withdrawn, reason, Export::default(), None)
        } else {
            let reason = if c.terminating {
                "shutting down"
            } else {
                "drained by the operator"
            };
            match c.announcement {
                Announcement::Announced if !self.config.graceful_shutdown_wait.is_zero() => {
                    let until = now + self.config.graceful_shutdown_wait;
                    (
                        Announcement::GracefulShutdown(until),
                        reason.into(),
                        self.export(true),
                        Some(until),
                    )
                }
                Announcement::GracefulShutdown(until) if now < until => (
                    Announcement::GracefulShutdown(until),
                    reason.into(),
                    self.export(true),
                    Some(until),
                ),
                _ => (
                    Announcement::Withdrawn,
                    reason.into(),
                    Export::default(),
                    None,
                ),
            }
        };
        if next != c.announcement {
            let cause = match (next, healthy) {
                (Announcement::Announced, _) => None,
                (_, false) => Some("check"),
                _ if c.terminating => Some("shutdown"),
                _ => Some("drain"),
            };
            match next {
                Announcement::Announced => {
                    tracing::info!(prefixes = ?self.config.prefixes, "anycast: announcing")
                }
                Announcement::GracefulShutdown(_) => {
                    tracing::info!(%reason, "anycast: GRACEFUL_SHUTDOWN before withdrawing")
                }
                Announcement::Withdrawn => tracing::warn!(%reason, "anycast: withdrawn"),
            }
            if let (Some(cause), Announcement::Withdrawn) = (cause, next) {
                self.metrics.withdrawals.with_label_values(&[cause]).inc();
            }
        }
        c.announcement = next;
        c.reason = reason;
        drop(c);
        self.speaker.export(export);
        wake
    }

    fn export(&self, graceful_shutdown: bool) -> Export {
        Export {
            prefixes: self.config.prefixes.clone(),
            graceful_shutdown,
        }
    }

    async fn check_loop(
        self: Arc<Self>,
        idx: usize,
        check: AnycastCheck,
        listeners: Option<Vec<SocketAddr>>,
        connector: Arc<Connector>,
    ) {
        let mut tick = tokio::time::interval(check.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = match &listeners {
                Some(addrs) => {
                    let mut r = Ok(());
                    for a in addrs {
                        if let Err(e) = probe_tcp(local_target(*a), check.timeout).await {
                            r = Err(format!("listener {a}: {e}"));
                            break;
                        }
                    }
                    r
                }
                None => probe(&check, &connector).await,
            };
            let mut c = lock(&self.control);
            let s = &mut c.checks[idx];
            let transition = s.tracker.observe(result.is_ok(), check.rise, check.fall);
            // The error stays while the check fails; a pass clears it.
            s.last_error = result.err();
            let (name, up) = (s.name.clone(), s.tracker.is_up());
            let err = s.last_error.clone().unwrap_or_default();
            drop(c);
            self.metrics
                .check_up
                .with_label_values(&[&name])
                .set(i64::from(up));
            match transition {
                Some(Transition::BecameDown) => {
                    tracing::warn!(check = %name, error = %err, "anycast check failed");
                    self.wake.notify_one();
                }
                Some(Transition::BecameUp) => {
                    tracing::info!(check = %name, "anycast check passes");
                    self.wake.notify_one();
                }
                None => {}
            }
        }
    }

    /// `POST /anycast/drain`: withdraw (gracefully) and keep serving.
    pub fn drain(&self) {
        lock(&self.control).drained = true;
        self.wake.notify_one();
    }

    /// `POST /anycast/undrain`: announce again (when the checks pass).
    pub fn undrain(&self) {
        lock(&self.control).drained = false;
        self.wake.notify_one();
    }

    /// SIGTERM: withdraws (gracefully), waits for the withdrawal, then serves on for the
    /// configured drain time so traffic already on its way still lands.
    pub async fn terminate(&self) {
        lock(&self.control).terminating = true;
        self.wake.notify_one();
        let deadline = Instant::now() + self.config.graceful_shutdown_wait + Duration::from_secs(2);
        while lock(&self.control).announcement != Announcement::Withdrawn
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(
            drain = %humantime::format_duration(self.config.drain_time),
            "anycast withdrawn; serving on before closing the listeners"
        );
        tokio::time::sleep(self.config.drain_time).await;
    }

    /// Ends the BGP sessions with a Cease and removes the addresses this node put on `lo`.
    /// Blocks for at most about a second.
    pub fn shutdown(&self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
            self.wake.notify_one();
            if let Some(rx) = lock(&self.stopped).take() {
                let _ = rx.recv_timeout(Duration::from_millis(1500));
            }
        }
        remove_lo_addresses(&self.added);
    }

    /// The status for `GET /anycast`.
    pub fn status_json(&self) -> serde_json::Value {
        let c = lock(&self.control);
        let now = Instant::now();
        let state = match c.announcement {
            Announcement::Announced => "announced",
            Announcement::GracefulShutdown(_) => "graceful-shutdown",
            Announcement::Withdrawn => "withdrawn",
        };
        let checks: Vec<serde_json::Value> = c
            .checks
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name, "up": s.tracker.is_up(), "last_error": s.last_error,
                })
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
            "reason": c.reason,
            "drained": c.drained,
            "prefixes": self.config.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "checks": checks,
            "peers": peers,
            "best_routes": routes,
        })
    }

    /// Sets the scrape-time gauges.
    pub fn update_metrics(&self) {
        let m = &self.metrics;
        let c = lock(&self.control);
        m.announced
            .set(i64::from(c.announcement == Announcement::Announced));
        m.drained.set(i64::from(c.drained));
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

/// A wildcard listener is checked on loopback.
fn local_target(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v) if v.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port())
        }
        IpAddr::V6(v) if v.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), a.port())
        }
        _ => a,
    }
}

async fn probe_tcp(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
        Err(_) => Err(format!(
            "connect {addr}: no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

async fn probe(check: &AnycastCheck, connector: &Connector) -> Result<(), String> {
    let (address, tls, host, path) = match &check.target {
        CheckTarget::Tcp(a) => return probe_tcp(*a, check.timeout).await,
        CheckTarget::Http {
            address,
            tls,
            host,
            path,
        } => (address, tls, host, path),
    };
    let mut peer = HttpPeer::new(*address, *tls, host.clone());
    peer.options.connection_timeout = Some(check.timeout);
    peer.options.total_connection_timeout = Some(check.timeout);
    peer.options.read_timeout = Some(check.timeout);
    let mut req = RequestHeader::build("GET", path.as_bytes(), Some(3))
        .map_err(|e| format!("request: {e}"))?;
    let _ = req.insert_header("host", host.as_str());
    let _ = req.insert_header("user-agent", "edgenet-anycast-check");
    let _ = req.insert_header("connection", "close");
    let exchange = async {
        crate::health_check::exchange(connector, &peer, Box::new(req), false)
            .await
            .map(|(status, _, _)| status)
    };
    match tokio::time::timeout(check.timeout, exchange).await {
        Ok(Ok(s)) if (200..400).contains(&s) => Ok(()),
        Ok(Ok(s)) => Err(format!("status {s}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(check.timeout)
        )),
    }
}

/// Adds each address to `lo` unless it is there already; returns the ones added.
fn add_lo_addresses(addrs: &[(IpAddr, u8)]) -> anyhow::Result<Vec<(IpAddr, u8)>> {
    let mut added = Vec::new();
    for (ip, len) in addrs {
        let family = if ip.is_ipv4() { "-4" } else { "-6" };
        let shown = format!("{ip}/{len}");
        let present = Command::new("ip")
            .args([family, "-o", "addr", "show", "dev", "lo", "to", &shown])
            .output()
            .map_err(|e| anyhow::anyhow!("anycast.lo_addresses: cannot run ip(8): {e}"))?;
        if String::from_utf8_lossy(&present.stdout).contains(&ip.to_string()) {
            continue;
        }
        let out = Command::new("ip")
            .args([family, "addr", "add", &shown, "dev", "lo"])
            .output()
            .map_err(|e| anyhow::anyhow!("anycast.lo_addresses: cannot run ip(8): {e}"))?;
        if !out.status.success() {
            remove_lo_addresses(&added);
            anyhow::bail!(
                "anycast.lo_addresses: cannot add {shown} to lo (needs CAP_NET_ADMIN): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        tracing::info!(address = %shown, "anycast address added to lo");
        added.push((*ip, *len));
    }
    Ok(added)
}

fn remove_lo_addresses(addrs: &[(IpAddr, u8)]) {
    for (ip, len) in addrs {
        let family = if ip.is_ipv4() { "-4" } else { "-6" };
        let _ = Command::new("ip")
            .args([family, "addr", "del", &format!("{ip}/{len}"), "dev", "lo"])
            .output();
    }
}

/// Prometheus metrics of anycast and BGP, set at scrape time.
struct AnycastMetrics {
    announced: IntGauge,
    drained: IntGauge,
    withdrawals: IntCounterVec,
    check_up: IntGaugeVec,
    established: IntGaugeVec,
    uptime: IntGaugeVec,
    flaps: IntCounterVec,
    announced_prefixes: IntGaugeVec,
    received_prefixes: IntGaugeVec,
    accepted_prefixes: IntGaugeVec,
    bfd_up: IntGaugeVec,
}

impl AnycastMetrics {
    fn new(metrics: &Metrics) -> AnycastMetrics {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let per_peer = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["peer"]).expect("valid metric")
        };
        let m = AnycastMetrics {
            announced: gauge(
                "edgenet_anycast_announced",
                "1 while the anycast prefixes are announced normally",
            ),
            drained: gauge(
                "edgenet_anycast_drained",
                "1 while the operator has drained the PoP",
            ),
            withdrawals: IntCounterVec::new(
                Opts::new(
                    "edgenet_anycast_withdrawals_total",
                    "Withdrawals by cause (check, drain, shutdown)",
                ),
                &["cause"],
            )
            .expect("valid metric"),
            check_up: IntGaugeVec::new(
                Opts::new("edgenet_anycast_check_up", "1 while a health check passes"),
                &["check"],
            )
            .expect("valid metric"),
            established: per_peer(
                "edgenet_bgp_session_established",
                "1 while the BGP session is Established",
            ),
            uptime: per_peer(
                "edgenet_bgp_session_uptime_seconds",
                "Seconds since the session was established",
            ),
            flaps: IntCounterVec::new(
                Opts::new(
                    "edgenet_bgp_session_flaps_total",
                    "Times the session left Established",
                ),
                &["peer"],
            )
            .expect("valid metric"),
            announced_prefixes: per_peer(
                "edgenet_bgp_prefixes_announced",
                "Prefixes announced to the peer",
            ),
            received_prefixes: per_peer(
                "edgenet_bgp_prefixes_received",
                "Routes received from the peer",
            ),
            accepted_prefixes: per_peer(
                "edgenet_bgp_prefixes_accepted",
                "Received routes the import filter accepted",
            ),
            bfd_up: per_peer(
                "edgenet_bfd_up",
                "1 while the BFD session to the peer is Up",
            ),
        };
        for c in [
            Box::new(m.announced.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.drained.clone()),
            Box::new(m.withdrawals.clone()),
            Box::new(m.check_up.clone()),
            Box::new(m.established.clone()),
            Box::new(m.uptime.clone()),
            Box::new(m.flaps.clone()),
            Box::new(m.announced_prefixes.clone()),
            Box::new(m.received_prefixes.clone()),
            Box::new(m.accepted_prefixes.clone()),
            Box::new(m.bfd_up.clone()),
        ] {
            metrics.register(c);
        }
        m
    }
}
