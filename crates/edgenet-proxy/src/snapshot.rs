//! One configuration version as requests use it: each zone with its origin pool, metric
//! handles, limiters and deployed workers, built once when the version is loaded and swapped
//! whole (`Core::snapshot`), so a reload never changes the rules under a request in flight.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use edgenet_config::{Config, Zone};
use edgenet_origin::{HealthRegistry, Pool};
use rustls::pki_types::CertificateDer;

use crate::metrics::{Metrics, ZoneMetrics};
use crate::stages::shield::ShieldRegistry;
use crate::stages::worker::{WorkerHost, ZoneWorker};
use crate::stages::zone::Router;

/// One zone at one configuration version.
pub struct ZoneRuntime {
    /// Its validated configuration.
    pub config: Zone,
    /// Its origin pool.
    pub pool: Pool,
    /// Its metric handles.
    pub metrics: ZoneMetrics,
    /// The CA bundle for TLS to its origins, read once.
    pub origin_ca: Option<Arc<[CertificateDer<'static>]>>,
    /// What the HTTP engine's adapter derives from this zone once and keeps with it (its
    /// origin CA in the engine's own types): the snapshot does not know the engine.
    pub engine: OnceLock<Box<dyn Any + Send + Sync>>,
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
    pub workers: Vec<ZoneWorker>,
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

/// What outlives snapshots that a new one is built with.
pub struct SnapshotParts<'a> {
    /// Origin health.
    pub health: &'a HealthRegistry,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// Rate limiters and DDoS detectors.
    pub shield: &'a ShieldRegistry,
    /// The worker runtime.
    pub workers: &'a WorkerHost,
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
                Some(Arc::from(certs.into_boxed_slice()))
            }
            None => None,
        };
        zones.push(ZoneRuntime {
            workers: workers.deploy(zi, z, metrics)?,
            waf_hits: z
                .waf
                .iter()
                .map(|r| metrics.waf_counter(&z.name, &r.id, r.action.name()))
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
            engine: OnceLock::new(),
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
