//! The node's shared state: the running configuration snapshot (swapped atomically on reload)
//! and what outlives a reload: health state, metrics, the access log, readiness.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use edgenet_config::{Config, Zone};
use edgenet_origin::{HealthRegistry, Pool};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::WrappedX509;

use crate::access_log::AccessLogger;
use crate::metrics::{Metrics, ZoneMetrics};
use crate::router::Router;
use crate::tls::SniResolver;

/// One zone at one configuration version.
pub struct ZoneRuntime {
    /// Its validated configuration.
    pub config: Zone,
    /// Its origin pool.
    pub pool: Pool,
    /// Its metric handles.
    pub metrics: ZoneMetrics,
    /// The CA bundle for TLS to its origins, parsed once.
    pub origin_ca: Option<Arc<[WrappedX509]>>,
    /// The match counter of each WAF rule, in rule order.
    pub waf_hits: Vec<prometheus::IntCounter>,
    /// The limiter of each rate limit, in rule order.
    pub limiters: Vec<Arc<std::sync::Mutex<edgenet_shield::limiter::Limiter>>>,
    /// The counter of requests each rate limit limited.
    pub rate_limit_hits: Vec<prometheus::IntCounter>,
    /// The DDoS detector, when the zone has one.
    pub ddos: Option<Arc<std::sync::Mutex<edgenet_shield::ddos::Detector>>>,
    /// Mitigations installed, by feature.
    pub ddos_mitigations: prometheus::IntCounterVec,
    /// Its deployed workers, in `config.workers` order.
    pub workers: Vec<crate::workers::ZoneWorker>,
}

impl ZoneRuntime {
    /// The Pingora peer for origin server `idx`, with the zone's timeouts and TLS settings.
    /// `host` is the Host sent upstream; without a configured SNI its name is the SNI.
    pub fn origin_peer(&self, idx: usize, host: Option<&str>) -> HttpPeer {
        let origins = &self.config.origins;
        let sni = match &origins.tls {
            Some(t) => t.sni.clone().unwrap_or_else(|| {
                host.map(|h| edgenet_http::host::host_without_port(h).to_string())
                    .unwrap_or_default()
            }),
            None => String::new(),
        };
        let address = self.pool.members()[idx].server.address;
        let mut peer = HttpPeer::new(address, origins.tls.is_some(), sni);
        peer.options.connection_timeout = Some(origins.connect_timeout);
        peer.options.total_connection_timeout = Some(origins.connect_timeout);
        peer.options.read_timeout = Some(origins.read_timeout);
        peer.options.write_timeout = Some(origins.read_timeout);
        peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        if let Some(t) = &origins.tls {
            peer.options.verify_cert = t.verify;
            peer.options.verify_hostname = t.verify;
            peer.options.ca = self.origin_ca.clone();
        }
        peer
    }
}

/// Everything a request needs from one configuration version. A request keeps the snapshot it
/// started with, so a reload never changes the rules under a request in flight.
pub struct Snapshot {
    /// Increases by one on each applied reload.
    pub version: u64,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Host to zone.
    pub router: Router,
    /// Zones by index.
    pub zones: Vec<ZoneRuntime>,
    /// Metrics of requests that matched no zone.
    pub no_zone: ZoneMetrics,
}

/// State shared by every part of the node for its whole life.
pub struct Node {
    /// The PoP's name (from the first configuration; changing it needs a restart).
    pub name: String,
    /// The running configuration.
    pub snapshot: ArcSwap<Snapshot>,
    /// Origin health across reloads.
    pub health: HealthRegistry,
    /// Rate limiters, kept across reloads.
    pub shield: crate::shield::ShieldRegistry,
    /// Open connections per client address.
    pub client_connections: crate::shield::ClientConnectionCounts,
    /// JA4 fingerprints of open TLS client connections.
    pub hellos: Arc<crate::tls::ClientHellos>,
    /// Metrics.
    pub metrics: Metrics,
    /// The access log.
    pub log: AccessLogger,
    /// The TLS certificate resolver.
    pub certs: Arc<SniResolver>,
    /// Set on SIGTERM: `/ready` answers 503 and the node drains.
    pub draining: AtomicBool,
    /// Zones from the control plane, when the node follows one (they replace the file's).
    pub control_zones: std::sync::Mutex<Option<Vec<edgenet_config::ZoneSection>>>,
    /// Other PoPs' backbone addresses, from the control plane.
    pub pops: ArcSwap<crate::backbone::PopDirectory>,
    /// Backbone measurements and the relays chosen per origin.
    pub backbone_state: crate::backbone::BackboneState,
    /// Our backbone identity, when the node has one (set once at start).
    pub backbone_tls: std::sync::OnceLock<crate::backbone::BackboneTls>,
    /// BGP anycast, when configured (set once at start).
    pub anycast: std::sync::OnceLock<Arc<crate::anycast::Anycast>>,
    /// This node's `Via` element for HTTP/1.0, HTTP/1.1 and HTTP/2 clients, built once.
    pub via: [http::HeaderValue; 3],
    /// The HTTP cache, shared by every zone and kept across reloads.
    pub cache: edgenet_cache::Cache,
    /// The worker runtime and the subrequest listener's socket.
    pub workers: crate::workers::WorkerHost,
    request_seq: AtomicU64,
    request_prefix: u32,
}

impl Node {
    /// Creates the node state around the first configuration.
    pub fn new(
        config: Config,
        log: AccessLogger,
        metrics: Metrics,
        certs: Arc<SniResolver>,
    ) -> anyhow::Result<Node> {
        let health = HealthRegistry::default();
        let shield = crate::shield::ShieldRegistry::default();
        let workers = crate::workers::WorkerHost::new(&config.workers);
        let snapshot = build_snapshot(
            Arc::new(config),
            1,
            &SnapshotParts {
                health: &health,
                metrics: &metrics,
                shield: &shield,
                workers: &workers,
            },
        )?;
        metrics.config_version.set(1);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
            .unwrap_or(0)
            ^ std::process::id().rotate_left(16);
        let name = snapshot.config.node.name.clone();
        let c = &snapshot.config.cache;
        let disk = c.disk.as_ref().map(|(p, b)| (p.as_path(), *b));
        let cache =
            edgenet_cache::Cache::new(c.memory_bytes, c.max_object_bytes, disk, c.lock_timeout);
        let via = ["1.0", "1.1", "2"].map(|v| crate::forwarding::via_value(v, &name));
        Ok(Node {
            name,
            via,
            cache,
            workers,
            snapshot: ArcSwap::from_pointee(snapshot),
            health,
            shield,
            client_connections: crate::shield::ClientConnectionCounts::default(),
            hellos: Arc::new(crate::tls::ClientHellos::default()),
            metrics,
            log,
            certs,
            draining: AtomicBool::new(false),
            anycast: std::sync::OnceLock::new(),
            pops: ArcSwap::from_pointee(crate::backbone::PopDirectory::new()),
            backbone_tls: std::sync::OnceLock::new(),
            backbone_state: crate::backbone::BackboneState::default(),
            control_zones: std::sync::Mutex::new(None),
            request_seq: AtomicU64::new(0),
            request_prefix: seed,
        })
    }

    /// A new request id: unique per process start and request, 24 hex digits.
    pub fn next_request_id(&self) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}{:016x}", self.request_prefix, n)
    }

    /// Whether the node should get traffic.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }
}

/// What outlives snapshots that a new one is built with.
pub struct SnapshotParts<'a> {
    /// Origin health.
    pub health: &'a HealthRegistry,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// Rate limiters and DDoS detectors.
    pub shield: &'a crate::shield::ShieldRegistry,
    /// The worker runtime.
    pub workers: &'a crate::workers::WorkerHost,
}

/// Builds the runtime snapshot for `config`, reusing health state, limiters and the worker
/// runtime. Deploys the zones' workers (compiling new components in a separate process):
/// blocking, call it off the proxy's threads.
pub fn build_snapshot(
    config: Arc<Config>,
    version: u64,
    parts: &SnapshotParts<'_>,
) -> anyhow::Result<Snapshot> {
    let SnapshotParts {
        health,
        metrics,
        shield,
        workers,
    } = *parts;
    let now = Instant::now();
    let mut zones = Vec::with_capacity(config.zones.len());
    for (zi, z) in config.zones.iter().enumerate() {
        let origin_ca = match z.origins.tls.as_ref().and_then(|t| t.ca.as_ref()) {
            Some(path) => {
                let certs = edgenet_config::read_certs(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let wrapped: Vec<WrappedX509> = certs
                    .iter()
                    .map(|c| {
                        WrappedX509::new(c.to_vec(), |raw| {
                            pingora_core::utils::tls::parse_x509(raw)
                        })
                    })
                    .collect();
                Some(Arc::from(wrapped.into_boxed_slice()))
            }
            None => None,
        };
        zones.push(ZoneRuntime {
            workers: workers.deploy(zi, z, metrics)?,
            waf_hits: z
                .waf
                .iter()
                .map(|r| metrics.waf_counter(&z.name, &r.id, crate::waf::action_name(r.action)))
                .collect(),
            limiters: z
                .rate_limits
                .iter()
                .map(|r| shield.limiter(&z.name, r))
                .collect(),
            ddos: z.ddos.as_ref().map(|d| shield.detector(&z.name, d)),
            ddos_mitigations: metrics.ddos_mitigations(),
            rate_limit_hits: z
                .rate_limits
                .iter()
                .map(|r| metrics.rate_limit_counter(&z.name, &r.id))
                .collect(),
            pool: Pool::new(&z.name, &z.origins, health, now),
            metrics: metrics.zone(&z.name),
            config: z.clone(),
            origin_ca,
        });
    }
    health.retain(|zone, addr| {
        config
            .zones
            .iter()
            .any(|z| z.name == zone && z.origins.servers.iter().any(|s| s.address == addr))
    });
    Ok(Snapshot {
        version,
        router: Router::new(&config.zones),
        zones,
        no_zone: metrics.zone("-"),
        config,
    })
}
