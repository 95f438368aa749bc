//! The configuration file as written by an operator: serde structs that mirror the TOML.
//!
//! Values that need checking (addresses, hostnames, header names, files) stay strings here and
//! are turned into validated types by [`crate::validate`], so that one run reports every error.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::model::{
    HeaderAction, ListenerProtocol, QueryKey, RateLimitAction, TtlMode, WafAction,
};

/// The whole configuration of one PoP.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Settings of the node itself.
    #[serde(default)]
    pub node: NodeSection,
    /// Where the node accepts client traffic.
    #[serde(default)]
    pub listeners: Vec<ListenerSection>,
    /// The admin listener (metrics, health, readiness). Absent: no admin listener.
    #[serde(default)]
    pub admin: Option<AdminSection>,
    /// Where the access log goes.
    #[serde(default)]
    pub access_log: AccessLogSection,
    /// Limits on what a client may send.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The node's HTTP cache (every zone caches unless its `[zones.cache]` says otherwise).
    #[serde(default)]
    pub cache: CacheSection,
    /// The zones this node serves.
    #[serde(default)]
    pub zones: Vec<ZoneSection>,
    /// BGP anycast: announce the PoP's prefixes while healthy. Absent: no BGP.
    #[serde(default)]
    pub anycast: Option<AnycastSection>,
    /// The backbone listener (PoPs following a control plane). Absent: none.
    #[serde(default)]
    pub backbone: Option<BackboneSection>,
    /// Interconnects: what the PoP does for the CNIs the control plane streams it. Absent:
    /// CNIs are ignored (and said so in the log).
    #[serde(default)]
    pub interconnect: Option<InterconnectSection>,
    /// GRE tunnels: what the PoP does for the accounts' tunnels the control plane streams it.
    /// Absent: tunnels are ignored (and said so in the log).
    #[serde(default)]
    pub tunnels: Option<TunnelsSection>,
    /// The worker runtime (zones' workers are in `[[zones.workers]]`).
    #[serde(default)]
    pub workers: WorkersSection,
    /// Set by a PoP that follows a control plane (never read from a file): its zones'
    /// certificates come from there, so an https listener needs no `[zones.tls]`.
    #[serde(skip)]
    pub certificates_from_control: bool,
}

/// The node's worker runtime: fixed for the process's life (changing it needs a restart).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSection {
    /// Where compiled components are cached (relative to the config file); absent: a
    /// directory under the system's temporary directory. Artifacts are named by the
    /// component's SHA-256, wasmtime's version and the engine's settings.
    #[serde(default)]
    pub artifact_dir: Option<PathBuf>,
    /// Worker instances alive at once across all zones (one per request running a worker);
    /// a request past that gets 503.
    #[serde(default = "default_worker_instances")]
    pub instances: u32,
    /// The largest linear memory any worker may be given (`zones.workers.limits.memory` is
    /// at most this).
    #[serde(default = "default_worker_memory")]
    pub max_memory: ByteSize,
    /// Memory for the PoP's copy of the edge key-value store's values (the whole copy is on
    /// disk beside the state file; the values read most recently are kept in memory).
    #[serde(default = "default_kv_memory")]
    pub kv_memory: ByteSize,
}

impl Default for WorkersSection {
    fn default() -> Self {
        WorkersSection {
            artifact_dir: None,
            instances: default_worker_instances(),
            max_memory: default_worker_memory(),
            kv_memory: default_kv_memory(),
        }
    }
}

fn default_worker_instances() -> u32 {
    1000
}

fn default_worker_memory() -> ByteSize {
    ByteSize::Text("128MiB".into())
}

fn default_kv_memory() -> ByteSize {
    ByteSize::Text("64MiB".into())
}

/// A worker: a `wasi:http/proxy` WebAssembly component that handles the requests its routes
/// match, instead of the cache and origin (its own requests go to them).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerSection {
    /// A name, unique in the zone, for logs and metrics.
    pub name: String,
    /// The component's `.wasm` file (relative to the config file).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub component: PathBuf,
    /// `host/path` patterns (`"example.com/api/*"`, `"*.example.com/*"`) or a path alone for
    /// every hostname of the zone (`"/api/*"`); a trailing `*` matches any rest. The most
    /// specific match wins: an exact host over a wildcard, then the longer path.
    pub routes: Vec<String>,
    /// Environment variables the worker reads (`wasi:cli/environment`).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Secrets: environment variables whose values are read from files on the node
    /// (relative to the config file), so they are never in the configuration text.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub secrets: std::collections::BTreeMap<String, PathBuf>,
    /// Hosts the worker may send requests to. Each must be served by a zone of this node:
    /// the requests go through the node's own cache and origins.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits per request.
    #[serde(default)]
    pub limits: WorkerLimitsSection,
    /// Edge key-value namespaces the worker opens, by the name it opens them with
    /// (`wasi:keyvalue/store.open(NAME)`) to the namespace's id. Set by the control plane
    /// from a script's settings: a node that follows none has no key-value store.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub kv_namespaces: std::collections::BTreeMap<String, String>,
}

/// A worker's limits per request.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerLimitsSection {
    /// CPU time (waiting for bodies and subrequests does not count).
    #[serde(default = "default_worker_cpu", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cpu_time: Duration,
    /// Linear memory; absent: 128 MiB, or `workers.max_memory` when that is smaller.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub memory: Option<ByteSize>,
    /// Wall time for the whole request, waiting included.
    #[serde(default = "default_worker_wall", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub wall_time: Duration,
    /// Requests the worker may send per request.
    #[serde(default = "default_worker_subrequests")]
    pub subrequests: u32,
    /// Of those, how many at once.
    #[serde(default = "default_worker_in_flight")]
    pub subrequests_in_flight: u32,
    /// The largest request body passed to the worker; larger gets 413.
    #[serde(default = "default_worker_body")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub request_body: ByteSize,
    /// The largest response body the worker may produce; larger gets 502.
    #[serde(default = "default_worker_body")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub response_body: ByteSize,
}

impl Default for WorkerLimitsSection {
    fn default() -> Self {
        WorkerLimitsSection {
            cpu_time: default_worker_cpu(),
            memory: None,
            wall_time: default_worker_wall(),
            subrequests: default_worker_subrequests(),
            subrequests_in_flight: default_worker_in_flight(),
            request_body: default_worker_body(),
            response_body: default_worker_body(),
        }
    }
}

fn default_worker_cpu() -> Duration {
    Duration::from_millis(50)
}

fn default_worker_wall() -> Duration {
    Duration::from_secs(30)
}

fn default_worker_subrequests() -> u32 {
    50
}

fn default_worker_in_flight() -> u32 {
    6
}

fn default_worker_body() -> ByteSize {
    ByteSize::Text("16MiB".into())
}

/// BGP anycast: the prefixes, the addresses on `lo`, the peers and the health checks.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnycastSection {
    /// Our AS number (1 to 4294967295).
    pub local_as: u32,
    /// The BGP identifier, an IPv4 address unique among the peers.
    pub router_id: String,
    /// Where to accept BGP connections (`"0.0.0.0:179"`, `"[::]:179"`); empty: connect only.
    #[serde(default = "default_bgp_listen")]
    pub listen: Vec<String>,
    /// The prefixes announced while the PoP is healthy (`"192.0.2.0/24"`, `"2001:db8::/48"`).
    pub prefixes: Vec<String>,
    /// Addresses the node puts on `lo` while it runs (`"192.0.2.1/32"`), inside the prefixes.
    #[serde(default)]
    pub lo_addresses: Vec<String>,
    /// Communities on every announcement (`"65001:100"`).
    #[serde(default)]
    pub communities: Vec<String>,
    /// Large communities on every announcement (`"65001:1:2"`).
    #[serde(default)]
    pub large_communities: Vec<String>,
    /// A planned withdrawal (drain, SIGTERM) first re-announces with the GRACEFUL_SHUTDOWN
    /// community (RFC 8326) and withdraws after this long.
    #[serde(default = "default_gshut_wait", with = "humantime_serde")]
    pub graceful_shutdown_wait: Duration,
    /// On SIGTERM, keep serving this long after the withdrawal before closing the listeners.
    #[serde(default = "default_withdraw_drain", with = "humantime_serde")]
    pub drain_time: Duration,
    /// How often the node checks its own listeners.
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub check_interval: Duration,
    /// The BGP peers (routers).
    #[serde(default)]
    pub peers: Vec<BgpPeerSection>,
    /// Extra health checks; every one must pass for the prefixes to be announced.
    #[serde(default)]
    pub checks: Vec<AnycastCheckSection>,
}

fn default_bgp_listen() -> Vec<String> {
    vec!["0.0.0.0:179".into(), "[::]:179".into()]
}

fn default_gshut_wait() -> Duration {
    Duration::from_secs(1)
}

fn default_withdraw_drain() -> Duration {
    Duration::from_secs(5)
}

fn default_check_interval() -> Duration {
    Duration::from_millis(50)
}

/// One BGP peer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BgpPeerSection {
    /// The peer's IP address.
    pub address: String,
    /// The peer's AS; equal to `local_as` for iBGP.
    pub asn: u32,
    /// The peer's TCP port.
    #[serde(default = "default_bgp_port")]
    pub port: u16,
    /// Our source address towards the peer.
    #[serde(default)]
    pub local_address: Option<String>,
    /// Wait for the peer to connect; never connect out.
    #[serde(default)]
    pub passive: bool,
    /// TCP MD5 signature key (RFC 2385), at most 80 bytes.
    #[serde(default)]
    pub md5_password: Option<String>,
    /// The hold time offered: 0 (no keepalives) or at least 3 s.
    #[serde(default = "default_hold_time", with = "humantime_serde")]
    pub hold_time: Duration,
    /// The longest time between KEEPALIVEs; a third of the hold time when absent.
    #[serde(default, with = "humantime_serde")]
    pub keepalive: Option<Duration>,
    /// Time between connection attempts.
    #[serde(default = "default_connect_retry", with = "humantime_serde")]
    pub connect_retry: Duration,
    /// MULTI_EXIT_DISC sent to this peer (lower is preferred by the router).
    #[serde(default)]
    pub med: Option<u32>,
    /// Extra copies of our AS on eBGP announcements to this peer (0-16).
    #[serde(default)]
    pub prepend: u8,
    /// Next hop of IPv4 announcements; our session address when absent.
    #[serde(default)]
    pub next_hop_v4: Option<String>,
    /// Next hop of IPv6 announcements; our session address when absent.
    #[serde(default)]
    pub next_hop_v6: Option<String>,
    /// Routes accepted from the peer: `"10.0.0.0/8"`, `"10.0.0.0/8 le 24"`,
    /// `"10.0.0.0/8 ge 16 le 24"`. Empty accepts none (RFC 8212).
    #[serde(default)]
    pub import: Vec<String>,
    /// Most routes the peer may send; over it the session is reset (Cease 1).
    #[serde(default)]
    pub max_prefixes: Option<usize>,
    /// Address families: `"ipv4"`, `"ipv6"`.
    #[serde(default = "default_families")]
    pub families: Vec<String>,
    /// BFD towards the peer (RFC 5880/5881); absent: off.
    #[serde(default)]
    pub bfd: Option<BfdSection>,
}

fn default_bgp_port() -> u16 {
    179
}

fn default_hold_time() -> Duration {
    Duration::from_secs(90)
}

fn default_connect_retry() -> Duration {
    Duration::from_secs(5)
}

fn default_families() -> Vec<String> {
    vec!["ipv4".into(), "ipv6".into()]
}

/// Interconnects on the PoP: the BGP speaker's identity for CNI sessions (the anycast
/// speaker's when `[anycast]` is configured: one speaker per PoP), the kernel routing table
/// peering routes go into, and where per-port receive levels come from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterconnectSection {
    /// Our AS on CNI sessions; required without `[anycast]`, equal to `anycast.local_as` with.
    #[serde(default)]
    pub local_as: Option<u32>,
    /// The BGP identifier; required without `[anycast]`, which otherwise gives it.
    #[serde(default)]
    pub router_id: Option<String>,
    /// Where to accept BGP connections without `[anycast]` (with it, its listeners serve);
    /// empty: the PoP connects to each customer router.
    #[serde(default)]
    pub listen: Vec<String>,
    /// The kernel routing table that routes accepted over peering CNIs go into (1-4294967295
    /// but not 253-255: default, main and local are not ours to fill).
    #[serde(default = "default_peering_table")]
    pub table: u32,
    /// The priority of the policy rule (`ip rule`) that makes the PoP's own traffic consult
    /// `table` before the main table; 0: the node adds no rule (the operator has one).
    #[serde(default = "default_peering_rule")]
    pub rule_priority: u32,
    /// A directory of per-port receive levels: a file named after the interface holding the
    /// level in dBm, read when the port has no transceiver diagnostics (`ethtool -m`).
    #[serde(default = "default_optics_dir")]
    pub optics_dir: PathBuf,
    /// How often light levels and session counters are read.
    #[serde(default = "default_interconnect_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Time between connection attempts to a customer router.
    #[serde(default = "default_interconnect_retry", with = "humantime_serde")]
    pub connect_retry: Duration,
    /// The hold time offered on CNI sessions.
    #[serde(default = "default_interconnect_hold", with = "humantime_serde")]
    pub hold_time: Duration,
    /// BFD timers on v1 CNIs that ask for BFD.
    #[serde(default)]
    pub bfd: Option<BfdSection>,
}

fn default_peering_table() -> u32 {
    200
}

fn default_peering_rule() -> u32 {
    1000
}

fn default_optics_dir() -> PathBuf {
    PathBuf::from("/run/edgenet/optics")
}

fn default_interconnect_poll() -> Duration {
    Duration::from_millis(500)
}

fn default_interconnect_retry() -> Duration {
    Duration::from_secs(1)
}

fn default_interconnect_hold() -> Duration {
    Duration::from_secs(90)
}

/// BFD timers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BfdSection {
    /// The interval we send at once Up.
    #[serde(default = "default_bfd_interval", with = "humantime_serde")]
    pub min_tx: Duration,
    /// The fastest we accept packets.
    #[serde(default = "default_bfd_interval", with = "humantime_serde")]
    pub min_rx: Duration,
    /// Missed packets before the path is declared down.
    #[serde(default = "default_bfd_multiplier")]
    pub multiplier: u8,
}

fn default_bfd_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_bfd_multiplier() -> u8 {
    3
}

/// A health check the prefixes depend on.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnycastCheckSection {
    /// A name for status and metrics.
    pub name: String,
    /// `http://host:port/path` (or `https://`): passes on a 2xx or 3xx answer.
    #[serde(default)]
    pub http: Option<String>,
    /// `host:port`: passes when a TCP connection opens.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Time between checks.
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive passes that bring a failed check back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that fail the check.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_check_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_rise() -> u32 {
    3
}

fn default_fall() -> u32 {
    1
}

/// Settings of the node process.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The PoP's name: shown in `Via`, error pages and logs.
    #[serde(default = "default_node_name")]
    pub name: String,
    /// Worker threads for the proxy; absent means one per CPU core.
    #[serde(default)]
    pub threads: Option<usize>,
    /// How long SIGTERM waits for in-flight requests before the process exits.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: default_node_name(),
            threads: None,
            drain_timeout: default_drain_timeout(),
        }
    }
}

fn default_node_name() -> String {
    "edgenet".to_string()
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

/// One client listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// `IP:port` to bind.
    pub address: String,
    /// `http` or `https`.
    pub protocol: ListenerProtocol,
    /// On `http` listeners: accept HTTP/2 with prior knowledge (h2c). Default on.
    #[serde(default = "default_true")]
    pub h2c: bool,
}

/// The admin listener. Metrics, health and readiness are open; calls that change state
/// (purges, anycast drain and undrain) need a token over TCP, or come over `socket`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `IP:port` to bind; keep it on a private address.
    pub address: String,
    /// A Unix socket serving the same calls; state changes over it need no token, its file
    /// mode (0600, the node's user) decides who may use it.
    #[serde(default)]
    pub socket: Option<String>,
    /// A file holding the PoP-local admin token (`Authorization: Bearer TOKEN`); created with
    /// a random token and mode 0600 when missing, refused when group or others may read it.
    #[serde(default)]
    pub token_file: Option<String>,
    /// `token` (default): state changes over TCP need the local token or a control-plane
    /// token with the `pop-admin` scope. `none`: they need nothing (loopback addresses only,
    /// unless `insecure_public`).
    #[serde(default)]
    pub auth: AdminAuth,
    /// With `auth = "none"`, allow an address that is not loopback: anyone who reaches it can
    /// purge caches and withdraw the PoP's routes.
    #[serde(default)]
    pub insecure_public: bool,
}

/// Whether the admin listener's state-changing calls need a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAuth {
    /// A bearer token: the PoP-local one or a control-plane `pop-admin` token.
    #[default]
    Token,
    /// None.
    None,
}

/// Where access log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogOutput {
    /// One JSON line per request on standard output.
    #[default]
    Stdout,
    /// One JSON line per request appended to `path`.
    File,
    /// No access log.
    Off,
}

/// The access log.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    /// `stdout`, `file` or `off`.
    #[serde(default)]
    pub output: AccessLogOutput,
    /// The file to append to when `output = "file"`.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// Limits on client requests.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// The largest request head (request line and headers) accepted, in bytes; larger gets 400.
    #[serde(default = "default_max_header_bytes")]
    pub max_request_header_bytes: usize,
    /// Most connections open at once from one client address, enforced only while the node
    /// is under pressure (`pressure_connections`, `pressure_memory`) or for an address that
    /// failed a slow-client check (a request head started and not finished in time, an HTTP/2
    /// control-frame flood) in the last `abusive_for`; otherwise a carrier-grade NAT's thousands of users behind one
    /// address are all served. More are closed at once (0: no limit).
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: u32,
    /// Open client connections from which the node is under pressure. Default: half the
    /// node's open-file limit (which the node raises to its hard limit at start), so the
    /// per-address cap applies well before descriptors run out.
    #[serde(default)]
    pub pressure_connections: Option<u32>,
    /// The node's resident memory from which it is under pressure. Default: 80% of the
    /// memory it may use (its cgroup's limit, else the machine's).
    #[serde(default)]
    pub pressure_memory: Option<ByteSize>,
    /// How long an address that failed a slow-client check stays capped.
    #[serde(default = "default_abusive_for", with = "humantime_serde")]
    pub abusive_for: Duration,
    /// How long a client may take to send an HTTP/1 request head, counted from its first
    /// byte (from the connection's start for the first request), plain or TLS; a slower one
    /// (slowloris) is closed.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a kept-alive HTTP/1 connection may stay idle between requests.
    #[serde(default = "default_keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// The longest wait between two reads of an HTTP/1 request body; a slower client gets
    /// its connection closed.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// PING, SETTINGS and PRIORITY frames an HTTP/2 client may send in 10 s; past that the
    /// connection ends with GOAWAY (ENHANCE_YOUR_CALM).
    #[serde(default = "default_h2_max_control_frames")]
    pub h2_max_control_frames: u32,
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_h2_max_control_frames() -> u32 {
    200
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_request_header_bytes: default_max_header_bytes(),
            max_connections_per_client: default_max_connections_per_client(),
            pressure_connections: None,
            pressure_memory: None,
            abusive_for: default_abusive_for(),
            header_timeout: default_header_timeout(),
            keepalive_timeout: default_keepalive_timeout(),
            body_timeout: default_body_timeout(),
            h2_max_control_frames: default_h2_max_control_frames(),
        }
    }
}

fn default_abusive_for() -> Duration {
    Duration::from_secs(600)
}

fn default_max_connections_per_client() -> u32 {
    256
}

fn default_max_header_bytes() -> usize {
    32 * 1024
}

/// A size in bytes: an integer, or a string with a unit (`"256MiB"`, `"1GiB"`, `"512KiB"`,
/// `"100MB"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ByteSize {
    /// Bytes.
    Bytes(u64),
    /// A number and a unit.
    Text(String),
}

/// The node's HTTP cache.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// The memory tier's budget (bodies and headers); least recently used objects are evicted.
    #[serde(default = "default_cache_memory")]
    pub memory: ByteSize,
    /// The largest object the memory tier stores; larger responses stream through unstored.
    #[serde(default = "default_cache_max_object")]
    pub max_object: ByteSize,
    /// How long concurrent misses for one key wait for the one request fetching it before
    /// going to the origin themselves.
    #[serde(default = "default_cache_lock_timeout", with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// The disk tier's directory (relative to the config file); absent: memory only. Objects
    /// there survive restarts.
    #[serde(default)]
    pub disk_path: Option<PathBuf>,
    /// The disk tier's budget.
    #[serde(default = "default_cache_disk")]
    pub disk: ByteSize,
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            memory: default_cache_memory(),
            max_object: default_cache_max_object(),
            lock_timeout: default_cache_lock_timeout(),
            disk_path: None,
            disk: default_cache_disk(),
        }
    }
}

fn default_cache_memory() -> ByteSize {
    ByteSize::Text("256MiB".into())
}

fn default_cache_max_object() -> ByteSize {
    ByteSize::Text("16MiB".into())
}

fn default_cache_disk() -> ByteSize {
    ByteSize::Text("1GiB".into())
}

fn default_cache_lock_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A zone's caching.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneCacheSection {
    /// Cache responses as the origin's headers allow (RFC 9111). On by default.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Store responses that set cookies (the cookie is then replayed to every client).
    #[serde(default)]
    pub cache_set_cookie: bool,
    /// Revalidate with the origin when a request says `Cache-Control: no-cache` (or
    /// `Pragma: no-cache`, or `max-age=0`). Off by default: clients cannot force origin traffic.
    #[serde(default)]
    pub honor_request_no_cache: bool,
    /// Rules by path, first match wins: bypass, edge TTL, and what the cache key holds.
    #[serde(default)]
    pub rules: Vec<CacheRuleSection>,
}

impl Default for ZoneCacheSection {
    fn default() -> Self {
        ZoneCacheSection {
            enabled: true,
            cache_set_cookie: false,
            honor_request_no_cache: false,
            rules: Vec::new(),
        }
    }
}

/// A cache rule for the paths matching `path`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheRuleSection {
    /// A path pattern: `*` matches any run of characters (`/static/*`, `*.css`).
    pub path: String,
    /// Never use the cache for these paths.
    #[serde(default)]
    pub bypass: bool,
    /// The edge TTL used by `ttl_mode` `override` or `minimum`.
    #[serde(default, with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2s"))]
    pub edge_ttl: Option<Duration>,
    /// `respect` the origin's freshness (default), `override` it with `edge_ttl`, or use at
    /// least `edge_ttl` (`minimum`). No mode stores what the origin marks no-store or private.
    #[serde(default)]
    pub ttl_mode: TtlMode,
    /// The query string in the key: `all` (default), `ignore`, `include` only `query_params`,
    /// or `exclude` the `query_params`.
    #[serde(default)]
    pub query: QueryKey,
    /// The query parameters `include` or `exclude` name.
    #[serde(default)]
    pub query_params: Vec<String>,
    /// Request headers whose values become part of the key.
    #[serde(default)]
    pub key_headers: Vec<String>,
    /// Cookies whose values become part of the key.
    #[serde(default)]
    pub key_cookies: Vec<String>,
    /// Edge TTLs by response status, as Cloudflare's cache rules have them: a status (`"404"`),
    /// a range (`"200-299"`) or a class (`"5xx"`) to a duration; `"0s"` does not store. The
    /// most specific match wins. A status named here is stored for its TTL even without
    /// explicit freshness (and a 5xx, which is otherwise not stored); what the origin marks
    /// no-store or private still is not.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub status_ttl: std::collections::BTreeMap<String, String>,
}

/// One zone: a set of hostnames served from one origin pool.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneSection {
    /// A unique name for logs and metrics.
    pub name: String,
    /// Hostnames served: exact (`example.com`) or a leftmost wildcard (`*.example.com`).
    pub hostnames: Vec<String>,
    /// The certificate for HTTPS listeners, chosen by SNI.
    #[serde(default)]
    pub tls: Option<ZoneTlsSection>,
    /// The Host header sent to the origin; absent keeps the client's.
    #[serde(default)]
    pub host_header: Option<String>,
    /// The origin pool.
    pub origins: OriginPoolSection,
    /// Rules applied to the request before it goes to the origin, in order.
    #[serde(default)]
    pub request_headers: Vec<HeaderRuleSection>,
    /// Rules applied to the response before it goes to the client, in order.
    #[serde(default)]
    pub response_headers: Vec<HeaderRuleSection>,
    /// Caching for this zone.
    #[serde(default)]
    pub cache: ZoneCacheSection,
    /// Tiered cache: `"off"`, or the upper-tier PoPs (`["fra1"]`) a miss asks before the
    /// origin, over the backbone.
    #[serde(default)]
    pub tiered_cache: TieredCacheSection,
    /// Web application firewall rules.
    #[serde(default)]
    pub waf: ZoneWafSection,
    /// Rate-limiting rules.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitSection>,
    /// Automatic L7 DDoS mitigation.
    #[serde(default)]
    pub ddos: DdosSection,
    /// URL normalisation before any rule, route or cache key sees the path.
    #[serde(default)]
    pub url_normalization: UrlNormalizationSection,
    /// Workers, by route.
    #[serde(default)]
    pub workers: Vec<WorkerSection>,
}

/// URL normalisation, in Cloudflare's terms: on by default for incoming URLs, so that zone
/// rules, the WAF, rate limits, worker routes, cache keys and purges all see one spelling of a
/// path (`/%61dmin`, `/x/../admin` and `//admin` are `/admin`); a path that cannot be
/// normalised safely (an encoded NUL, dot segments above the root) gets a 400. Rules that want
/// the URL as sent read `raw.http.request.uri`, `raw.http.request.uri.path` and
/// `raw.http.request.uri.query`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UrlNormalizationSection {
    /// `cloudflare` (default: RFC 3986 section 6, back slashes to slashes, repeated slashes
    /// merged) or `rfc3986` (RFC 3986 section 6 only).
    #[serde(default, rename = "type")]
    pub kind: crate::model::NormalizationType,
    /// Normalise incoming URLs (default on).
    #[serde(default = "default_true")]
    pub incoming: bool,
    /// Send the normalised URL to the origin too (default off: the origin gets the URL as
    /// sent, as Cloudflare does).
    #[serde(default)]
    pub to_origin: bool,
}

impl Default for UrlNormalizationSection {
    fn default() -> Self {
        UrlNormalizationSection {
            kind: Default::default(),
            incoming: true,
            to_origin: false,
        }
    }
}

/// Automatic L7 DDoS mitigation: when a second's requests exceed `sensitivity` × the smoothed
/// baseline and `floor_rps`, the most specific fingerprint carrying most of them (client
/// address, user agent, path, header order, client /24), and far more of them than it usually
/// does, is blocked for `mitigation`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DdosSection {
    /// On by default. A flash crowd is not mitigated: its fingerprints keep their usual
    /// shares. A load test from one address is a flood by this measure: turn it off for one.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The factor over the baseline that is an attack.
    #[serde(default = "default_ddos_k")]
    pub sensitivity: f64,
    /// Below this rate nothing is an attack.
    #[serde(default = "default_ddos_floor")]
    pub floor_rps: f64,
    /// How long a mitigation lasts.
    #[serde(default = "default_ddos_mitigation", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "60s"))]
    pub mitigation: Duration,
}

impl Default for DdosSection {
    fn default() -> Self {
        DdosSection {
            enabled: true,
            sensitivity: default_ddos_k(),
            floor_rps: default_ddos_floor(),
            mitigation: default_ddos_mitigation(),
        }
    }
}

fn default_ddos_k() -> f64 {
    3.0
}

fn default_ddos_floor() -> f64 {
    500.0
}

fn default_ddos_mitigation() -> Duration {
    Duration::from_secs(60)
}

/// One rate-limiting rule: requests that match `expression` are counted per key (the values of
/// `characteristics`); a key over `requests_per_period` in `period` is limited for
/// `mitigation_timeout`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitSection {
    /// A unique id, shown in metrics and the access log.
    pub id: String,
    /// Which requests count (Cloudflare Rules language).
    pub expression: String,
    /// What makes a key: `ip.src`, `http.host`, `http.request.uri.path`, `header:NAME`,
    /// `cookie:NAME`.
    pub characteristics: Vec<String>,
    /// The counting period.
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10s"))]
    pub period: Duration,
    /// Requests allowed per period and key.
    pub requests_per_period: u32,
    /// `block` (429 with Retry-After) or `log`.
    pub action: RateLimitAction,
    /// How long a key stays limited once over; the period when absent.
    #[serde(default, with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "60s"))]
    pub mitigation_timeout: Option<Duration>,
}

/// A zone's WAF: its own rules, evaluated in order before anything else.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneWafSection {
    /// The rules, first match of a terminating action wins.
    #[serde(default)]
    pub rules: Vec<WafRuleSection>,
    /// The managed rule set, evaluated after the zone's own rules (a `skip` or `allow` rule
    /// skips it too).
    #[serde(default)]
    pub managed: ManagedWafSection,
}

/// `[zones.waf.managed]`: edgenet's rules for common attacks (SQL injection, cross-site
/// scripting, path traversal, command injection, scanners).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManagedWafSection {
    /// Run the managed rules for this zone.
    #[serde(default)]
    pub enabled: bool,
    /// `block` (default) or `log`.
    #[serde(default)]
    pub action: Option<WafAction>,
    /// The status of a block (default 403).
    #[serde(default)]
    pub status: Option<u16>,
    /// Ids of managed rules to leave out, e.g. `["edgenet-sqli-comment"]`.
    #[serde(default)]
    pub disabled: Vec<String>,
}

/// One WAF rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WafRuleSection {
    /// A unique id, shown in metrics and the access log.
    pub id: String,
    /// An expression in the Cloudflare Rules language.
    pub expression: String,
    /// `block`, `log`, `skip` (the remaining WAF rules) or `allow` (the remaining WAF rules
    /// and the other security checks).
    pub action: WafAction,
    /// The status of a block (default 403).
    #[serde(default)]
    pub status: Option<u16>,
    /// The body of a block (default a short page naming the rule).
    #[serde(default)]
    pub body: Option<String>,
    /// Off: the rule is kept but not evaluated.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// `tiered_cache = "off" | "smart" | ["pop", ...]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TieredCacheSection {
    /// `"off"` or `"smart"`.
    Mode(String),
    /// Upper-tier PoPs by name.
    Upper(Vec<String>),
}

impl Default for TieredCacheSection {
    fn default() -> Self {
        TieredCacheSection::Mode("off".into())
    }
}

/// The backbone listener: mutual TLS (certificates from the control plane's CA) and HTTP/2,
/// where other PoPs send tiered-cache and relayed requests.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneSection {
    /// Its address (`0.0.0.0:7443`); register it as the PoP's address at the control plane.
    pub listen: String,
}

/// A zone's certificate.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneTlsSection {
    /// PEM file with the certificate chain, leaf first. Relative to the config file.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cert: PathBuf,
    /// PEM file with the private key. Relative to the config file.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key: PathBuf,
    /// When both files are missing, create a self-signed certificate for the zone's hostnames.
    #[serde(default)]
    pub generate_if_missing: bool,
}

/// The origin pool of a zone.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OriginPoolSection {
    /// The origin servers.
    pub servers: Vec<OriginServerSection>,
    /// TLS to the origins; absent means plain HTTP/1.1.
    #[serde(default)]
    pub tls: Option<OriginTlsSection>,
    /// How long to wait for a TCP (and TLS) connection to an origin.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2s"))]
    pub connect_timeout: Duration,
    /// How long to wait for each read from an origin; exceeded gives 504.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2s"))]
    pub read_timeout: Duration,
    /// How many other origins an idempotent request tries after a connect failure.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Active health checks; absent means only passive ejection.
    #[serde(default)]
    pub health_check: Option<HealthCheckSection>,
    /// Passive ejection on connect errors.
    #[serde(default)]
    pub passive: PassiveSection,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_retries() -> u32 {
    1
}

/// One origin server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OriginServerSection {
    /// `host:port`; a hostname is resolved when the config loads.
    pub address: String,
    /// Share of requests relative to the other servers (1..=1000).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// TLS from the node to the origins.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OriginTlsSection {
    /// The server name sent in SNI and verified; absent uses the Host sent to the origin.
    #[serde(default)]
    pub sni: Option<String>,
    /// Verify the origin's certificate. Default on.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// A PEM bundle of CA certificates to verify against instead of the system's.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub ca: Option<PathBuf>,
}

/// Active health checks of each origin server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheckSection {
    /// The path requested with GET.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// The Host header of the check; absent uses the zone's first exact hostname.
    #[serde(default)]
    pub host: Option<String>,
    /// Time between checks of one server.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2s"))]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2s"))]
    pub timeout: Duration,
    /// Consecutive successes that mark a down server up.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that mark an up server down.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

fn default_health_path() -> String {
    "/".to_string()
}

fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_healthy_threshold() -> u32 {
    2
}

fn default_unhealthy_threshold() -> u32 {
    3
}

/// Passive ejection: a server that fails to connect repeatedly is skipped for a while.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PassiveSection {
    /// Consecutive connect failures that eject a server; 0 turns passive ejection off.
    #[serde(default = "default_passive_failures")]
    pub max_failures: u32,
    /// How long an ejected server is skipped.
    #[serde(default = "default_eject_for", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2s"))]
    pub eject_for: Duration,
}

impl Default for PassiveSection {
    fn default() -> Self {
        PassiveSection {
            max_failures: default_passive_failures(),
            eject_for: default_eject_for(),
        }
    }
}

fn default_passive_failures() -> u32 {
    1
}

fn default_eject_for() -> Duration {
    Duration::from_secs(10)
}

/// One header rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeaderRuleSection {
    /// `set`, `add` or `remove`.
    pub action: HeaderAction,
    /// The header name.
    pub name: String,
    /// The value, for `set` and `add`.
    #[serde(default)]
    pub value: Option<String>,
}

fn default_true() -> bool {
    true
}

/// `[tunnels]`: the PoP's end of every account's GRE tunnels.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelsSection {
    /// The PoP's own IPv4 address: it sends to customers' endpoints from it, and
    /// unidirectional probes come back to it.
    pub source: String,
    /// The anycast GRE endpoints it answers on (the node puts them on `lo` when missing).
    pub endpoints: Vec<String>,
    /// `auto` (kernel GRE devices through netlink where the kernel has `ip_gre`, else the
    /// userspace dataplane), `userspace` or `kernel`.
    #[serde(default)]
    pub mode: TunnelMode,
}

/// How tunnels are carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelMode {
    /// Probe at start: the kernel's devices where it has them, else userspace.
    #[default]
    Auto,
    /// TUN devices and a raw GRE socket.
    Userspace,
    /// The kernel's GRE devices (refused at start where the kernel has none).
    Kernel,
}
