//! Prometheus metrics of the node, with per-zone handles resolved once per configuration so the
//! request path never hashes label values.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Protocols a request can arrive over, as metric labels.
pub const PROTOCOLS: [&str; 3] = ["http1", "http2", "other"];
/// Status classes as metric labels; index = status / 100 - 1.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A zone's totals since start (see [`Metrics::zone_totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneTotals {
    /// Requests answered.
    pub requests: u64,
    /// Of which with a 5xx status.
    pub errors: u64,
    /// Served from the cache.
    pub cache_hits: u64,
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,
    /// Open client connections.
    pub open_connections: IntGauge,
    /// Client connections closed at once: the address was at its connection cap.
    pub connections_refused: IntCounterVec,
    /// Connections closed because a request head did not come in time.
    pub slow_heads: IntCounter,
    /// HTTP/2 connections ended for flooding control frames, by frame kind.
    pub h2_floods: IntCounterVec,
    /// Requests being processed.
    pub inflight: IntGauge,
    /// TLS handshakes completed.
    pub tls_handshakes: IntCounter,
    /// TLS handshakes started (ClientHello seen or connection accepted on a TLS listener).
    pub tls_started: IntCounter,
    /// The running configuration's version.
    pub config_version: IntGauge,
    reloads: IntCounterVec,
    /// Origin servers up (1) or down (0), by zone and server.
    pub origin_up: IntGaugeVec,
    /// When the certificate served for a zone expires (Unix seconds; the earliest when
    /// several are), by zone.
    pub tls_certificate_expiry: IntGaugeVec,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    cache_requests: IntCounterVec,
    cache_collapsed: IntCounterVec,
    cache_served_bytes: IntCounterVec,
    waf_matches: IntCounterVec,
    ddos_mitigations: IntCounterVec,
    rate_limited: IntCounterVec,
    /// Requests run by workers, by zone and worker.
    pub worker_requests: IntCounterVec,
    /// Worker failures, by zone, worker and cause.
    pub worker_errors: IntCounterVec,
    /// Bytes held by each cache tier (set at scrape time).
    pub cache_stored_bytes: IntGaugeVec,
    /// Objects held by each cache tier (set at scrape time).
    pub cache_objects: IntGaugeVec,
    /// Objects evicted from each cache tier to stay in budget.
    pub cache_evictions: IntCounterVec,
    /// Disk tier write errors (the first turns the tier off for writes).
    pub cache_disk_errors: IntCounter,
    /// Corrupt disk entries found and deleted.
    pub cache_disk_corrupt: IntCounter,
    /// 1 while the disk tier takes writes, 0 after an error.
    pub cache_disk_up: IntGauge,
}

/// How the cache handled a request, as metric labels.
pub use edgenet_cache::status::RESULTS as CACHE_RESULTS;

/// Metric handles of one zone.
pub struct ZoneMetrics {
    requests: Vec<IntCounter>,
    /// Total request duration.
    pub duration: Histogram,
    /// Time to the origin's response head.
    pub upstream_duration: Histogram,
    upstream_errors: Vec<IntCounter>,
    cache_requests: Vec<IntCounter>,
    cache_collapsed: IntCounter,
    cache_served_bytes: IntCounter,
}

/// Kinds of upstream failure, as metric labels.
pub const UPSTREAM_ERRORS: [&str; 4] = ["connect", "timeout", "read_write", "other"];

impl ZoneMetrics {
    /// Counts one request.
    pub fn request(&self, protocol: usize, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests[protocol * CLASSES.len() + class].inc();
    }

    /// Counts one upstream error of kind index `kind` (see [`UPSTREAM_ERRORS`]).
    pub fn upstream_error(&self, kind: usize) {
        self.upstream_errors[kind].inc();
    }

    /// Counts how the cache handled one request: `result` indexes [`CACHE_RESULTS`]; `served`
    /// is the body bytes sent from cache (0 when the body came from the origin).
    pub fn cache(&self, result: usize, collapsed: bool, served: u64) {
        self.cache_requests[result].inc();
        if collapsed {
            self.cache_collapsed.inc();
        }
        self.cache_served_bytes.inc_by(served);
    }
}

impl Metrics {
    /// Registers a collector owned by another part of the node (anycast).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        self.registry.register(c).expect("metric registered once");
    }

    /// Registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0,
        ];
        let requests = IntCounterVec::new(
            Opts::new(
                "edgenet_requests_total",
                "Requests by zone, status class and protocol",
            ),
            &["zone", "status_class", "protocol"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("edgenet_request_duration_seconds", "Total request duration")
                .buckets(buckets.clone()),
            &["zone"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "edgenet_upstream_response_seconds",
                "Time from choosing an origin to its response head",
            )
            .buckets(buckets),
            &["zone"],
        )
        .expect("valid metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "edgenet_upstream_errors_total",
                "Upstream failures by zone and kind",
            ),
            &["zone", "kind"],
        )
        .expect("valid metric");
        let open_connections =
            IntGauge::new("edgenet_open_connections", "Open client connections").expect("valid");
        let inflight =
            IntGauge::new("edgenet_inflight_requests", "Requests being processed").expect("valid");
        let tls_handshakes =
            IntCounter::new("edgenet_tls_handshakes_total", "TLS handshakes completed")
                .expect("valid");
        let tls_started = IntCounter::new(
            "edgenet_tls_connections_total",
            "Connections accepted on TLS listeners (each starts a handshake)",
        )
        .expect("valid");
        let config_version = IntGauge::new(
            "edgenet_config_version",
            "Version of the running configuration",
        )
        .expect("valid");
        let reloads = IntCounterVec::new(
            Opts::new(
                "edgenet_config_reloads_total",
                "Configuration reloads by result",
            ),
            &["result"],
        )
        .expect("valid");
        let tls_certificate_expiry = IntGaugeVec::new(
            Opts::new(
                "edgenet_tls_certificate_expiry_seconds",
                "When the certificate served for the zone expires, Unix seconds (the earliest of its certificates)",
            ),
            &["zone"],
        )
        .expect("valid");
        let origin_up = IntGaugeVec::new(
            Opts::new(
                "edgenet_origin_up",
                "Whether health checks count an origin server up",
            ),
            &["zone", "origin"],
        )
        .expect("valid");
        let access_log_dropped = IntCounter::new(
            "edgenet_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind",
        )
        .expect("valid");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "edgenet_cache_requests_total",
                "Requests by zone and how the cache handled them",
            ),
            &["zone", "result"],
        )
        .expect("valid");
        let cache_collapsed = IntCounterVec::new(
            Opts::new(
                "edgenet_cache_collapsed_total",
                "Requests that waited for another request's fetch of the same object",
            ),
            &["zone"],
        )
        .expect("valid");
        let waf_matches = IntCounterVec::new(
            Opts::new(
                "edgenet_waf_matches_total",
                "WAF rule matches by zone, rule and action",
            ),
            &["zone", "rule", "action"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "edgenet_rate_limited_total",
                "Requests over a rate limit, by zone and rule",
            ),
            &["zone", "rule"],
        )
        .expect("valid metric");
        let worker_requests = IntCounterVec::new(
            Opts::new(
                "edgenet_worker_requests_total",
                "Requests handled by a worker, by zone and worker",
            ),
            &["zone", "worker"],
        )
        .expect("valid metric");
        let worker_errors = IntCounterVec::new(
            Opts::new(
                "edgenet_worker_errors_total",
                "Worker requests that failed, by zone, worker and cause (cpu_time, memory, \
                 wall_time, subrequests, instances, trap, no_response, response_body, request_body)",
            ),
            &["zone", "worker", "cause"],
        )
        .expect("valid metric");
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "edgenet_connections_refused_total",
                "Client connections closed at once because their address was at limits.max_connections_per_client, by reason: pressure (the node under pressure) or abusive (the address failed a slow-client check)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let slow_heads = IntCounter::new(
            "edgenet_slow_request_heads_total",
            "Connections closed because a request head did not arrive within limits.header_timeout",
        )
        .expect("valid metric");
        let h2_floods = IntCounterVec::new(
            Opts::new(
                "edgenet_h2_floods_total",
                "HTTP/2 connections ended with GOAWAY for sending more than limits.h2_max_control_frames PING, SETTINGS or PRIORITY frames in 10 s, by frame kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let ddos_mitigations = IntCounterVec::new(
            Opts::new(
                "edgenet_ddos_mitigations_total",
                "Automatic DDoS mitigations installed, by zone and fingerprint feature",
            ),
            &["zone", "feature"],
        )
        .expect("valid metric");
        let cache_served_bytes = IntCounterVec::new(
            Opts::new(
                "edgenet_cache_served_bytes_total",
                "Body bytes served from the cache",
            ),
            &["zone"],
        )
        .expect("valid");
        let cache_stored_bytes = IntGaugeVec::new(
            Opts::new(
                "edgenet_cache_stored_bytes",
                "Bytes held by each cache tier",
            ),
            &["tier"],
        )
        .expect("valid");
        let cache_objects = IntGaugeVec::new(
            Opts::new("edgenet_cache_objects", "Objects held by each cache tier"),
            &["tier"],
        )
        .expect("valid");
        let cache_evictions = IntCounterVec::new(
            Opts::new(
                "edgenet_cache_evictions_total",
                "Objects evicted from each cache tier to stay within its budget",
            ),
            &["tier"],
        )
        .expect("valid");
        let cache_disk_errors = IntCounter::new(
            "edgenet_cache_disk_errors_total",
            "Disk tier write errors (the first turns the tier off for writes)",
        )
        .expect("valid");
        let cache_disk_corrupt = IntCounter::new(
            "edgenet_cache_disk_corrupt_total",
            "Corrupt disk tier entries found and deleted (never served)",
        )
        .expect("valid");
        let cache_disk_up = IntGauge::new(
            "edgenet_cache_disk_up",
            "1 while the disk tier takes writes, 0 after an error",
        )
        .expect("valid");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cache_disk_errors.clone()),
            Box::new(cache_disk_corrupt.clone()),
            Box::new(cache_disk_up.clone()),
            Box::new(cache_requests.clone()),
            Box::new(cache_collapsed.clone()),
            Box::new(cache_served_bytes.clone()),
            Box::new(waf_matches.clone()),
            Box::new(ddos_mitigations.clone()),
            Box::new(rate_limited.clone()),
            Box::new(worker_requests.clone()),
            Box::new(worker_errors.clone()),
            Box::new(connections_refused.clone()),
            Box::new(slow_heads.clone()),
            Box::new(h2_floods.clone()),
            Box::new(cache_stored_bytes.clone()),
            Box::new(cache_objects.clone()),
            Box::new(cache_evictions.clone()),
            Box::new(duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(open_connections.clone()),
            Box::new(inflight.clone()),
            Box::new(tls_handshakes.clone()),
            Box::new(tls_started.clone()),
            Box::new(config_version.clone()),
            Box::new(reloads.clone()),
            Box::new(origin_up.clone()),
            Box::new(tls_certificate_expiry.clone()),
            Box::new(access_log_dropped.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            duration,
            upstream_duration,
            upstream_errors,
            open_connections,
            inflight,
            tls_handshakes,
            tls_started,
            config_version,
            reloads,
            origin_up,
            tls_certificate_expiry,
            access_log_dropped,
            cache_requests,
            cache_collapsed,
            cache_served_bytes,
            waf_matches,
            ddos_mitigations,
            rate_limited,
            worker_requests,
            worker_errors,
            connections_refused,
            slow_heads,
            h2_floods,
            cache_stored_bytes,
            cache_objects,
            cache_evictions,
            cache_disk_errors,
            cache_disk_corrupt,
            cache_disk_up,
        }
    }

    /// Resolves the handles of zone `zone` (`-` for requests that matched no zone).
    /// DDoS mitigation counters (labelled with zone and feature when one is installed, which
    /// is rare enough to hash labels then).
    pub fn ddos_mitigations(&self) -> IntCounterVec {
        self.ddos_mitigations.clone()
    }

    /// The counter of one rate limit.
    pub fn rate_limit_counter(&self, zone: &str, rule: &str) -> IntCounter {
        self.rate_limited.with_label_values(&[zone, rule])
    }

    /// The match counter of one WAF rule.
    pub fn waf_counter(&self, zone: &str, rule: &str, action: &str) -> IntCounter {
        self.waf_matches.with_label_values(&[zone, rule, action])
    }

    pub fn zone(&self, zone: &str) -> ZoneMetrics {
        let mut requests = Vec::new();
        for p in PROTOCOLS {
            for c in CLASSES {
                requests.push(self.requests.with_label_values(&[zone, c, p]));
            }
        }
        ZoneMetrics {
            requests,
            duration: self.duration.with_label_values(&[zone]),
            upstream_duration: self.upstream_duration.with_label_values(&[zone]),
            upstream_errors: UPSTREAM_ERRORS
                .iter()
                .map(|k| self.upstream_errors.with_label_values(&[zone, k]))
                .collect(),
            cache_requests: CACHE_RESULTS
                .iter()
                .map(|r| self.cache_requests.with_label_values(&[zone, r]))
                .collect(),
            cache_collapsed: self.cache_collapsed.with_label_values(&[zone]),
            cache_served_bytes: self.cache_served_bytes.with_label_values(&[zone]),
        }
    }

    /// Per zone since start: requests answered, of which 5xx, and cache hits (for the PoP's
    /// reports to the control plane).
    pub fn zone_totals(&self) -> std::collections::BTreeMap<String, ZoneTotals> {
        use prometheus::core::Collector;
        let mut out: std::collections::BTreeMap<String, ZoneTotals> = Default::default();
        let label = |m: &prometheus::proto::Metric, name: &str| {
            m.get_label()
                .iter()
                .find(|l| l.name() == name)
                .map(|l| l.value().to_string())
                .unwrap_or_default()
        };
        for family in self.requests.collect() {
            for m in family.get_metric() {
                let n = m.get_counter().get_value() as u64;
                let t = out.entry(label(m, "zone")).or_default();
                t.requests += n;
                if label(m, "status_class") == "5xx" {
                    t.errors += n;
                }
            }
        }
        for family in self.cache_requests.collect() {
            for m in family.get_metric() {
                if label(m, "result") == "hit" {
                    let n = m.get_counter().get_value() as u64;
                    out.entry(label(m, "zone")).or_default().cache_hits += n;
                }
            }
        }
        out
    }

    /// Counts a reload attempt.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut out);
        // Handshake failures are derived: connections on TLS listeners that never completed one.
        let failed = self
            .tls_started
            .get()
            .saturating_sub(self.tls_handshakes.get());
        out.extend_from_slice(
            format!(
                "# HELP edgenet_tls_handshake_failures_total TLS connections whose handshake did not complete (includes those in progress)\n\
                 # TYPE edgenet_tls_handshake_failures_total counter\n\
                 edgenet_tls_handshake_failures_total {failed}\n"
            )
            .as_bytes(),
        );
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
