//! The per-request context the adapter carries through Pingora's phases, in typed parts: who
//! sent the request and which zone serves it, what the cache did, where the request went
//! upstream, and what the access log line reports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::core::Core;
use crate::snapshot::{Snapshot, ZoneRuntime};

/// Who sent a request into the pipeline, as its listener told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A client: on a client listener, or a PoP's plain request on the backbone.
    Client,
    /// A lower-tier PoP sending its miss over the backbone: its name, and the scheme its
    /// client used (part of the cache key). Served from this PoP's cache or its origin, never
    /// sent on to another tier; no shield, rules or worker run again.
    LowerTier {
        /// The lower tier's name.
        pop: String,
        /// Its client's scheme.
        scheme: &'static str,
    },
    /// A request relayed for another PoP: straight to this origin server of one of our zones,
    /// as the sending PoP prepared it.
    Relayed {
        /// The zone's index in the snapshot.
        zone: usize,
        /// The server's index in its pool.
        server: usize,
    },
    /// A worker's own request, with the scheme it named; it enters at the cache stage.
    Subrequest {
        /// The worker's scheme.
        scheme: &'static str,
    },
}

/// Where a request's upstream attempt goes, when it does not go straight to an origin server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// To this upper-tier PoP.
    Tier(String),
    /// Through this relay PoP, to this origin.
    Relay(String, SocketAddr),
}

/// Counts a request in flight for as long as it lives.
pub struct InflightGuard(Arc<Core>);

impl InflightGuard {
    pub(crate) fn new(core: &Arc<Core>) -> InflightGuard {
        core.metrics.inflight.inc();
        InflightGuard(core.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.metrics.inflight.dec();
    }
}

/// The request itself: when it started, its id, the snapshot it keeps, its zone and source.
pub struct RequestState {
    _inflight: InflightGuard,
    /// When the request started.
    pub start: Instant,
    /// Its id (`x-request-id`).
    pub id: String,
    /// The configuration it is served under, loaded once at its start.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Its zone's index in the snapshot.
    pub zone: Option<usize>,
    /// Who sent it.
    pub source: Source,
    /// The target as sent, when the zone's URL normalisation changed it.
    pub original: Option<crate::stages::url::Original>,
}

/// What the cache did with the request.
#[derive(Default)]
pub struct CacheState {
    /// The cache was enabled for it (zone policy and method allow it).
    pub enabled: bool,
    /// The index of the zone's cache rule for its path.
    pub rule: Option<usize>,
    /// Its URL as keyed (set with the cache key).
    pub url: Option<String>,
    /// Why the response was not stored, when it was not.
    pub not_stored: Option<&'static str>,
    /// The fields of an origin's 304 to a revalidation, to merge into the stored response.
    pub not_modified: Option<http::HeaderMap>,
    /// The `Set-Cookie` fields of that 304: for this client, never stored.
    pub not_modified_cookies: Vec<http::HeaderValue>,
    /// The request's own `no-cache` forced a revalidation (the zone honours it).
    pub revalidate_by_request: bool,
    /// The stored object was purged: this request refetches it.
    pub purged: bool,
    /// How it counts in the cache metrics.
    pub outcome: Option<crate::stages::respond::CacheOutcome>,
    /// The Cache-Status value sent, for the access log.
    pub status: Option<String>,
}

/// Where the request went upstream.
#[derive(Default)]
pub struct UpstreamState {
    /// Origin servers tried (indexes into the pool).
    pub tried: Vec<usize>,
    /// The origin server of the current attempt.
    pub current: Option<usize>,
    /// When the current attempt started.
    pub start: Option<Instant>,
    /// Time to the response head of the attempt that answered.
    pub ms: Option<f64>,
    /// The current attempt goes to an upper tier or through a relay.
    pub via: Option<Via>,
    /// The upper tier could not be reached: go to the origin.
    pub tier_failed: bool,
    /// The relay could not be reached: go direct.
    pub relay_failed: bool,
}

/// What the access log line reports beyond the exchange itself.
#[derive(Default)]
pub struct LogState {
    /// The error, if the request failed.
    pub error: Option<String>,
    /// The WAF rules that matched (`id:action`, comma-separated).
    pub waf: Option<String>,
    /// The rate limit that limited the request (`id:action`).
    pub rate_limit: Option<String>,
    /// The worker that handled the request.
    pub worker: Option<String>,
}

/// Per-request state.
pub struct Ctx {
    /// The request.
    pub req: RequestState,
    /// The cache.
    pub cache: CacheState,
    /// Upstream.
    pub upstream: UpstreamState,
    /// The log line.
    pub log: LogState,
}

impl Ctx {
    pub(crate) fn new(core: &Arc<Core>) -> Ctx {
        Ctx {
            req: RequestState {
                _inflight: InflightGuard::new(core),
                start: Instant::now(),
                id: String::new(),
                snapshot: None,
                zone: None,
                source: Source::Client,
                original: None,
            },
            cache: CacheState::default(),
            upstream: UpstreamState::default(),
            log: LogState::default(),
        }
    }

    /// The request's zone.
    pub fn zone(&self) -> Option<&ZoneRuntime> {
        Some(&self.req.snapshot.as_ref()?.zones[self.req.zone?])
    }

    /// The zone's cache rule for the request's path.
    pub fn cache_rule(&self) -> Option<&edgenet_config::CacheRule> {
        Some(&self.zone()?.config.cache.rules[self.cache.rule?])
    }

    /// Whether the request came from a lower tier (which applies the zone's rules itself).
    pub fn from_lower_tier(&self) -> bool {
        matches!(self.req.source, Source::LowerTier { .. })
    }
}
