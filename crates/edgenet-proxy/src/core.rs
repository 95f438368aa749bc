//! The state every request reads, shared by the pipeline's three listeners (clients, the
//! backbone, workers' subrequests) and the node: the running configuration snapshot and what
//! outlives a reload (origin health, the shield's counters, the cache, the backbone's view,
//! metrics, the access log).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use edgenet_config::Config;
use edgenet_origin::HealthRegistry;

use crate::access_log::AccessLogger;
use crate::backbone::{BackboneState, PopDirectory};
use crate::metrics::Metrics;
use crate::snapshot::{build_snapshot, Snapshot, SnapshotParts};
use crate::stages::shield::{ClientConnectionCounts, ShieldRegistry};
use crate::stages::worker::WorkerHost;

/// What the pipeline shares.
pub struct Core {
    /// The PoP's name (from the first configuration; changing it needs a restart).
    pub name: String,
    /// The running configuration.
    pub snapshot: ArcSwap<Snapshot>,
    /// Origin health across reloads.
    pub health: HealthRegistry,
    /// Rate limiters and DDoS detectors, kept across reloads.
    pub shield: ShieldRegistry,
    /// Open connections per client address.
    pub client_connections: ClientConnectionCounts,
    /// JA4 fingerprints of open TLS client connections.
    pub hellos: Arc<ClientHellos>,
    /// Metrics.
    pub metrics: Metrics,
    /// The access log.
    pub log: AccessLogger,
    /// Other PoPs' backbone addresses, from the control plane.
    pub pops: ArcSwap<PopDirectory>,
    /// Backbone measurements and the relays chosen per origin.
    pub backbone: BackboneState,
    /// This node's `Via` element for HTTP/1.0, HTTP/1.1 and HTTP/2 clients, built once.
    pub via: [http::HeaderValue; 3],
    /// The HTTP cache, shared by every zone and kept across reloads.
    pub cache: edgenet_cache::Cache,
    /// The worker runtime and the subrequest listener's socket.
    pub workers: WorkerHost,
    /// The ACME challenges the control plane streamed.
    pub challenges: ArcSwap<crate::stages::challenge::Challenges>,
    request_seq: AtomicU64,
    request_prefix: u32,
}

impl Core {
    /// The core around the first configuration (version 1), its workers' namespaces in `kv`
    /// (a PoP following a control plane has one). Deploys its workers: blocking.
    pub fn new(
        config: Config,
        log: AccessLogger,
        metrics: Metrics,
        kv: Option<Arc<dyn edgenet_workers::KvBackend>>,
    ) -> anyhow::Result<Core> {
        let health = HealthRegistry::default();
        let shield = ShieldRegistry::default();
        let workers = WorkerHost::new(&config.workers, kv);
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
        Ok(Core {
            name,
            via,
            cache,
            workers,
            snapshot: ArcSwap::from_pointee(snapshot),
            health,
            shield,
            client_connections: ClientConnectionCounts::default(),
            hellos: Arc::new(ClientHellos::default()),
            metrics,
            log,
            pops: ArcSwap::from_pointee(PopDirectory::new()),
            backbone: BackboneState::default(),
            challenges: ArcSwap::from_pointee(Default::default()),
            request_seq: AtomicU64::new(0),
            request_prefix: seed,
        })
    }

    /// Builds the snapshot of `config` as `version`, with what outlives snapshots (health,
    /// limiters, the worker runtime). Deploys the zones' workers (compiling new components in
    /// a separate process): blocking, call it off the proxy's threads.
    pub fn build(&self, config: Arc<Config>, version: u64) -> anyhow::Result<Snapshot> {
        build_snapshot(
            config,
            version,
            &SnapshotParts {
                health: &self.health,
                metrics: &self.metrics,
                shield: &self.shield,
                workers: &self.workers,
            },
        )
    }

    /// A new request id: unique per process start and request, 24 hex digits.
    pub fn next_request_id(&self) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}{:016x}", self.request_prefix, n)
    }
}

/// A connection's key in [`ClientHellos`]: the client's and the listener's address, which
/// name one open TCP connection.
pub type HelloKey = (SocketAddr, SocketAddr);

/// The JA4 fingerprints of open TLS connections, by connection: filed when the ClientHello is
/// read (before the handshake), read by the shield and the rules, forgotten on close.
#[derive(Default)]
pub struct ClientHellos {
    by_connection: std::sync::Mutex<HashMap<HelloKey, Arc<str>>>,
}

impl ClientHellos {
    /// Files a connection's fingerprint.
    pub fn insert(&self, key: HelloKey, ja4: String) {
        crate::lock(&self.by_connection).insert(key, ja4.into());
    }

    /// The fingerprint of a connection.
    pub fn get(&self, key: HelloKey) -> Option<Arc<str>> {
        crate::lock(&self.by_connection).get(&key).cloned()
    }

    /// Forgets a closed connection.
    pub fn remove(&self, key: HelloKey) {
        crate::lock(&self.by_connection).remove(&key);
    }
}
