//! The validated configuration: what the rest of the node sees.
//!
//! Every value here has been checked by [`crate::validate`]; code that holds a [`Config`] never
//! re-checks addresses, hostnames, header names or certificates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use serde::{Deserialize, Serialize};

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Settings of the node process.
    pub node: NodeSettings,
    /// Client listeners.
    pub listeners: Vec<Listener>,
    /// The admin listener.
    pub admin: Option<Admin>,
    /// The access log destination.
    pub access_log: AccessLog,
    /// Limits on client requests.
    pub limits: Limits,
    /// The node's cache.
    pub cache: CacheSettings,
    /// The zones, in file order.
    pub zones: Vec<Zone>,
    /// BGP anycast, when configured.
    pub anycast: Option<crate::anycast::Anycast>,
    /// Interconnects, when configured.
    pub interconnect: Option<crate::interconnect::Interconnect>,
    /// GRE tunnels, when configured.
    pub tunnels: Option<Tunnels>,
    /// The backbone listener's address, when configured.
    pub backbone: Option<SocketAddr>,
    /// The worker runtime.
    pub workers: WorkerRuntime,
}

/// The node's worker runtime settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRuntime {
    /// Where compiled components are cached.
    pub artifact_dir: PathBuf,
    /// Instances alive at once.
    pub instances: u32,
    /// The largest linear memory of any worker.
    pub max_memory: usize,
    /// Memory for the edge key-value store's values.
    pub kv_memory: usize,
}

/// A zone's worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// Its name, unique in the zone.
    pub name: String,
    /// The component file.
    pub component: PathBuf,
    /// Environment variables, secrets included (values never logged).
    pub env: Vec<(String, String)>,
    /// Hosts it may send requests to (lower case), each served by a zone here.
    pub allowed_hosts: Vec<String>,
    /// Limits per request.
    pub limits: WorkerLimits,
    /// Key-value namespaces by the name the worker opens them with, to their ids.
    pub kv_namespaces: std::collections::BTreeMap<String, String>,
}

/// A worker's limits per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLimits {
    /// CPU time.
    pub cpu_time: Duration,
    /// Linear memory in bytes.
    pub memory_bytes: usize,
    /// Wall time.
    pub wall_time: Duration,
    /// Requests it may send per request.
    pub subrequests: u32,
    /// Of those, at once.
    pub subrequests_in_flight: u32,
    /// The largest request body passed to it.
    pub request_body_bytes: usize,
    /// The largest response body it may produce.
    pub response_body_bytes: usize,
}

/// A route to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRoute {
    /// The host it matches; `None`: every hostname of the zone.
    pub host: Option<HostPattern>,
    /// The path, without the trailing `*` of a prefix.
    pub path: String,
    /// `path` is a prefix (the pattern ended in `*`).
    pub prefix: bool,
    /// The worker's index in [`Zone::workers`].
    pub worker: usize,
}

impl WorkerRoute {
    /// Whether this route matches a request for `host` (lower case, no port) and `path`.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(host))
            && if self.prefix {
                path.starts_with(self.path.as_str())
            } else {
                path == self.path
            }
    }
}

/// Settings of the node process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// The PoP's name.
    pub name: String,
    /// Proxy worker threads.
    pub threads: usize,
    /// The longest SIGTERM waits for in-flight requests.
    pub drain_timeout: Duration,
}

/// The admin listener (see [`crate::schema::AdminSection`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The TCP address.
    pub address: SocketAddr,
    /// A Unix socket for local tools (state changes without a token).
    pub socket: Option<PathBuf>,
    /// The PoP-local token's file.
    pub token_file: Option<PathBuf>,
    /// Whether state changes over TCP need a token.
    pub auth: crate::schema::AdminAuth,
}

/// One client listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The bound address.
    pub address: SocketAddr,
    /// HTTP or HTTPS.
    pub protocol: ListenerProtocol,
    /// HTTP/2 with prior knowledge on a plain listener.
    pub h2c: bool,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Standard output.
    Stdout,
    /// Appended to this file.
    File(PathBuf),
    /// Not written.
    Off,
}

/// Limits on client requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest request head accepted, in bytes.
    pub max_request_header_bytes: usize,
    /// Most connections at once from one client address (0: no limit), while under
    /// pressure or for an abusive address.
    pub max_connections_per_client: u32,
    /// Open client connections from which the node is under pressure (`None`: half the
    /// open-file limit, found at start).
    pub pressure_connections: Option<u32>,
    /// Resident memory from which the node is under pressure, in bytes (`None`: 80% of what
    /// it may use, found at start).
    pub pressure_memory: Option<u64>,
    /// How long an address that failed a slow-client check stays capped.
    pub abusive_for: Duration,
    /// Time allowed for an HTTP/1 request head.
    pub header_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive HTTP/1 connection.
    pub keepalive_timeout: Duration,
    /// The longest wait between two reads of an HTTP/1 request body.
    pub body_timeout: Duration,
    /// HTTP/2 PING, SETTINGS and PRIORITY frames allowed per 10 s.
    pub h2_max_control_frames: u32,
}

/// The node's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// The memory tier's budget in bytes.
    pub memory_bytes: usize,
    /// The largest object the memory tier stores, in bytes.
    pub max_object_bytes: usize,
    /// How long collapsed misses wait for the fetching request.
    pub lock_timeout: std::time::Duration,
    /// The disk tier's directory (resolved against the config file) and budget in bytes.
    pub disk: Option<(PathBuf, usize)>,
}

/// A zone's caching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneCache {
    /// Whether the zone caches.
    pub enabled: bool,
    /// Whether responses with `Set-Cookie` are stored.
    pub cache_set_cookie: bool,
    /// Whether a request's `no-cache` forces revalidation.
    pub honor_request_no_cache: bool,
    /// Rules by path; the first whose pattern matches applies.
    pub rules: Vec<CacheRule>,
}

/// A validated cache rule (see `CacheRuleSection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    /// The path pattern (`*` matches any run of characters).
    pub path: String,
    /// Never use the cache.
    pub bypass: bool,
    /// The TTL mode and, for `override`/`minimum`, the edge TTL.
    pub ttl: Option<(TtlMode, std::time::Duration)>,
    /// What of the query string is keyed.
    pub query: QueryKey,
    /// The parameters `include`/`exclude` name.
    pub query_params: Vec<String>,
    /// Request headers keyed (lower case).
    pub key_headers: Vec<http::HeaderName>,
    /// Cookies keyed.
    pub key_cookies: Vec<String>,
    /// Edge TTLs by status: `(first, last, ttl)`, most specific (narrowest) first; a zero TTL
    /// does not store.
    pub status_ttl: Vec<(u16, u16, std::time::Duration)>,
}

impl CacheRule {
    /// The rule's TTL for a response of `status`, if it names one.
    pub fn status_ttl(&self, status: u16) -> Option<std::time::Duration> {
        self.status_ttl
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&status))
            .map(|(_, _, ttl)| *ttl)
    }
}

/// A hostname pattern of a zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Matches exactly this lower-case name.
    Exact(String),
    /// `*.example.com`: matches any name ending in `.example.com` with at least one more label;
    /// holds the suffix with its leading dot.
    Wildcard(String),
}

impl HostPattern {
    /// Whether `host` (lower case, no port) is this name, or one more labels under this
    /// wildcard's suffix.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// The DNS name in a PoP's backbone certificate: the control plane's CA issues it and PoPs
/// verify each other by it, so both sides take it from here.
pub fn pop_dns_name(pop: &str) -> String {
    format!("{pop}.pop.edgenet")
}

/// A compiled WAF rule.
#[derive(Debug, Clone)]
pub struct WafRule {
    /// Its id.
    pub id: String,
    /// The compiled expression.
    pub expression: std::sync::Arc<edgenet_rules::expr::Expression>,
    /// What a match does.
    pub action: WafAction,
    /// Block status.
    pub status: u16,
    /// Block body.
    pub body: String,
}

/// What makes a rate-limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Characteristic {
    /// The client address.
    IpSrc,
    /// The Host.
    Host,
    /// The path.
    Path,
    /// A request header (lower case).
    Header(String),
    /// A cookie by name.
    Cookie(String),
}

/// A compiled rate limit.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Its id.
    pub id: String,
    /// Which requests count.
    pub expression: std::sync::Arc<edgenet_rules::expr::Expression>,
    /// What makes a key.
    pub characteristics: Vec<Characteristic>,
    /// The counting period.
    pub period: Duration,
    /// Requests allowed per period and key.
    pub requests: u32,
    /// Block or log.
    pub action: RateLimitAction,
    /// How long a key stays limited.
    pub mitigation_timeout: Duration,
}

/// A zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Its unique name.
    pub name: String,
    /// The hostnames it serves.
    pub hostnames: Vec<HostPattern>,
    /// Its certificate, when it has one.
    pub tls: Option<ZoneTls>,
    /// The Host sent to the origin; `None` keeps the client's.
    pub host_header: Option<HeaderValue>,
    /// The origin pool.
    pub origins: OriginPool,
    /// Request header rules.
    pub request_headers: Vec<HeaderRule>,
    /// Response header rules.
    pub response_headers: Vec<HeaderRule>,
    /// Caching.
    pub cache: ZoneCache,
    /// The upper-tier PoPs a cache miss asks before the origin (empty: tiered cache off).
    pub upper_tiers: Vec<String>,
    /// Smart tiering: the upper tier is the PoP with the lowest measured RTT to the origin.
    pub smart_tier: bool,
    /// WAF rules, in order (disabled rules left out).
    pub waf: Vec<WafRule>,
    /// Rate limits, in order.
    pub rate_limits: Vec<RateLimit>,
    /// Automatic DDoS mitigation settings (`None`: off).
    pub ddos: Option<Ddos>,
    /// URL normalisation.
    pub url_normalization: UrlNormalization,
    /// Workers.
    pub workers: Vec<Worker>,
    /// Routes to them, most specific first.
    pub worker_routes: Vec<WorkerRoute>,
}

impl Zone {
    /// The worker whose route matches `host` (lower case, no port) and `path`, if any.
    pub fn worker_for(&self, host: &str, path: &str) -> Option<usize> {
        self.worker_routes
            .iter()
            .find(|r| r.matches(host, path))
            .map(|r| r.worker)
    }
}

/// Automatic L7 DDoS mitigation of a zone (see `DdosSection`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ddos {
    /// The factor over the baseline that is an attack.
    pub sensitivity: f64,
    /// Below this rate nothing is an attack.
    pub floor_rps: f64,
    /// How long a mitigation lasts.
    pub mitigation: Duration,
}

/// A zone's certificate.
#[derive(Debug, Clone)]
pub struct ZoneTls {
    /// The certificate chain file.
    pub cert_path: PathBuf,
    /// The private key file.
    pub key_path: PathBuf,
    /// What was found on disk.
    pub material: CertMaterial,
}

/// A zone's certificate material as found when the config was validated.
#[derive(Debug)]
pub enum CertMaterial {
    /// Parsed from the files.
    Loaded {
        /// The chain, leaf first.
        chain: Vec<CertificateDer<'static>>,
        /// The private key.
        key: PrivateKeyDer<'static>,
    },
    /// Both files are missing and the zone asks for a generated self-signed certificate.
    Generate,
}

impl Clone for CertMaterial {
    fn clone(&self) -> Self {
        match self {
            CertMaterial::Loaded { chain, key } => CertMaterial::Loaded {
                chain: chain.clone(),
                key: key.clone_key(),
            },
            CertMaterial::Generate => CertMaterial::Generate,
        }
    }
}

/// A zone's origin pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPool {
    /// The servers.
    pub servers: Vec<OriginServer>,
    /// TLS to the origins.
    pub tls: Option<OriginTls>,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Per-read timeout.
    pub read_timeout: Duration,
    /// Further origins tried after a connect failure of an idempotent request.
    pub retries: u32,
    /// Active health checks.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection.
    pub passive: Passive,
}

/// One origin server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginServer {
    /// The address as the operator wrote it (for logs).
    pub name: String,
    /// The resolved address.
    pub address: SocketAddr,
    /// Its weight.
    pub weight: u32,
}

/// TLS to origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginTls {
    /// The SNI name; `None` uses the Host sent upstream.
    pub sni: Option<String>,
    /// Whether the certificate is verified.
    pub verify: bool,
    /// A CA bundle replacing the system roots.
    pub ca: Option<PathBuf>,
}

/// Active health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path requested.
    pub path: String,
    /// The Host header sent.
    pub host: String,
    /// Time between checks.
    pub interval: Duration,
    /// Timeout of one check.
    pub timeout: Duration,
    /// Successes to mark up.
    pub healthy_threshold: u32,
    /// Failures to mark down.
    pub unhealthy_threshold: u32,
}

/// Passive ejection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passive {
    /// Consecutive connect failures that eject; 0 disables.
    pub max_failures: u32,
    /// How long an ejected server is skipped.
    pub eject_for: Duration,
}

/// One header rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    /// Set, add or remove.
    pub action: HeaderAction,
    /// The header.
    pub name: HeaderName,
    /// The value for set and add.
    pub value: Option<HeaderValue>,
}

// Leaf values written the same way in the TOML and kept as they are in the validated model;
// the schema (`schema.rs`) uses them too.

/// The protocol a client listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// Plain text: HTTP/1.1, and HTTP/2 with prior knowledge (h2c) when enabled.
    Http,
    /// TLS 1.2/1.3 with ALPN choosing HTTP/2 or HTTP/1.1; the certificate is chosen by SNI.
    Https,
}

/// Which URL normalisation a zone applies (see `edgenet_http::normalize`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NormalizationType {
    /// RFC 3986 section 6, back slashes to slashes, repeated slashes merged (Cloudflare's
    /// default).
    #[default]
    Cloudflare,
    /// RFC 3986 section 6 only.
    Rfc3986,
}

/// A zone's URL normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlNormalization {
    /// The normalisation every stage sees; `None` when incoming URLs are left as sent.
    pub incoming: Option<NormalizationType>,
    /// The origin (and an upper tier) receives the normalised URL, not the one sent.
    pub to_origin: bool,
}

/// How a cache rule treats the origin's freshness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TtlMode {
    /// Follow the origin's headers.
    #[default]
    Respect,
    /// Use `edge_ttl` whatever the origin says about freshness.
    Override,
    /// Use the origin's freshness, but at least `edge_ttl`.
    Minimum,
}

/// What of the query string goes into the cache key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum QueryKey {
    /// The whole query string, as sent.
    #[default]
    All,
    /// None of it.
    Ignore,
    /// Only the parameters named in `query_params`.
    Include,
    /// All but the parameters named in `query_params`.
    Exclude,
}

/// What a rate limit does to a key over its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RateLimitAction {
    /// Answer 429 with Retry-After.
    Block,
    /// Count and log only.
    Log,
}

/// What a matching WAF rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WafAction {
    /// Answer with the rule's status and body.
    Block,
    /// Count and log, and go on.
    Log,
    /// Skip the remaining WAF rules.
    Skip,
    /// Skip the remaining WAF rules and the other security checks.
    Allow,
}

impl WafAction {
    /// Its name in metrics and logs (as written in the configuration).
    pub fn name(self) -> &'static str {
        match self {
            WafAction::Block => "block",
            WafAction::Log => "log",
            WafAction::Skip => "skip",
            WafAction::Allow => "allow",
        }
    }
}

/// What a header rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HeaderAction {
    /// Replace every value of the header with `value`.
    Set,
    /// Append `value` as another value of the header.
    Add,
    /// Remove the header.
    Remove,
}

/// Validated `[tunnels]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnels {
    /// The PoP's own address.
    pub source: std::net::Ipv4Addr,
    /// The anycast GRE endpoints.
    pub endpoints: Vec<std::net::Ipv4Addr>,
    /// Kernel or userspace.
    pub mode: crate::schema::TunnelMode,
}
