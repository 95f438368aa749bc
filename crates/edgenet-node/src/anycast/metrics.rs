//! Prometheus metrics of anycast and BGP, most set at scrape time from the controller and the
//! speaker.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};

use edgenet_proxy::metrics::Metrics;

/// Prometheus metrics of anycast and BGP, set at scrape time.
pub struct AnycastMetrics {
    pub announced: IntGauge,
    pub drained: IntGauge,
    pub withdrawals: IntCounterVec,
    pub check_up: IntGaugeVec,
    pub established: IntGaugeVec,
    pub uptime: IntGaugeVec,
    pub flaps: IntCounterVec,
    pub announced_prefixes: IntGaugeVec,
    pub received_prefixes: IntGaugeVec,
    pub accepted_prefixes: IntGaugeVec,
    pub bfd_up: IntGaugeVec,
}

impl AnycastMetrics {
    pub fn new(metrics: &Metrics) -> AnycastMetrics {
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
