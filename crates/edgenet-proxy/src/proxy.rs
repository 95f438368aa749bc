//! The request path on Pingora's `ProxyHttp` phases: this is where the stages are wired, in the
//! order of DESIGN.md section 1, and nothing else.
//!
//! request_filter: request checks (400), zone by Host/SNI (421) · upstream_peer: origin pool ·
//! fail_to_connect: passive ejection and retry on another origin · upstream_request_filter:
//! forwarding fields and request header rules · response_filter: response header rules ·
//! fail_to_proxy: 502/504 error pages · logging: metrics and the access log line.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::header_rules::apply_header_rules;
use async_trait::async_trait;
use bytes::Bytes;
use edgenet_cache::{CacheStatus, Decision, Forward, ZonePolicy};
use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::Version;
use http_body_util::BodyExt;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::storage::HitHandler;
use pingora_cache::{
    CacheKey, CacheMeta, CachePhase, ForcedFreshness, NoCacheReason, RespCacheable, VarianceBuilder,
};
use pingora_core::protocols::Digest;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::access_log::{now_rfc3339, Entry};
use crate::forwarding::{prepare_downstream_response, prepare_upstream_request, ClientInfo, Edit};
use crate::state::{Node, Snapshot, ZoneRuntime};
use crate::tls::Sni;
use edgenet_config::CacheRule;
use edgenet_http::request_check;

/// The header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// How much of a worker's response body is gathered before its head is sent.
const WORKER_BUFFER: usize = 64 * 1024;

/// The proxy: one per node, shared by every listener.
pub struct EdgeProxy {
    /// The node state.
    pub node: Arc<Node>,
    /// This instance serves the backbone listener (other PoPs, mutual TLS).
    pub backbone: bool,
    /// This instance serves the subrequest listener: workers' own requests, which enter at
    /// the cache stage (no shield, WAF or worker runs on them).
    pub subrequests: bool,
}

/// Counts a request in flight for as long as it lives.
pub struct InflightGuard(Arc<Node>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.metrics.inflight.dec();
    }
}

/// Per-request state.
pub struct Ctx {
    _inflight: InflightGuard,
    start: Instant,
    snapshot: Option<Arc<Snapshot>>,
    zone: Option<usize>,
    request_id: String,
    tried: Vec<usize>,
    current: Option<usize>,
    upstream_start: Option<Instant>,
    upstream_ms: Option<f64>,
    error: Option<String>,
    /// The cache was enabled for this request (zone policy and method allow it).
    cache_enabled: bool,
    /// Why the response was not stored, when it was not.
    not_stored: Option<&'static str>,
    /// The Cache-Status value sent, for the access log.
    cache_status: Option<String>,
    /// How the cache handled the request (an index into `metrics::CACHE_RESULTS`), whether it
    /// waited on another request's fetch, and whether the body came from the cache.
    cache_result: Option<(usize, bool, bool)>,
    /// The fields of an origin's 304 to a revalidation, to merge into the stored response.
    not_modified: Option<http::HeaderMap>,
    /// The request's own `no-cache` forced a revalidation (the zone honours it).
    revalidate_by_request: bool,
    /// The stored object was purged: this request refetches it.
    purged: bool,
    /// The index of the zone's cache rule for the request's path, if one matches.
    cache_rule: Option<usize>,
    /// The request's URL as keyed (set with the cache key).
    cache_url: Option<String>,
    /// The lower-tier PoP that sent this request over the backbone, and the scheme its client
    /// used (part of the cache key).
    from_lower_tier: Option<(String, &'static str)>,
    /// The upper-tier PoP this request's miss goes to.
    via_tier: Option<String>,
    /// The upper tier could not be reached: go to the origin.
    tier_failed: bool,
    /// The relay PoP this request's origin fetch goes through, and the origin.
    via_relay: Option<(String, SocketAddr)>,
    /// The relay could not be reached: go direct.
    relay_failed: bool,
    /// At a relay: the zone and origin server this relayed request goes to.
    relay_to: Option<(usize, usize)>,
    /// The WAF rules that matched (`id:action`, comma-separated), for the access log.
    waf: Option<String>,
    /// The rate limit that limited the request (`id:action`).
    rate_limit: Option<String>,
    /// The worker that handled the request.
    worker: Option<String>,
    /// On the subrequest listener: the scheme of the worker's request.
    subrequest_scheme: Option<&'static str>,
}

impl Ctx {
    fn zone(&self) -> Option<&ZoneRuntime> {
        Some(&self.snapshot.as_ref()?.zones[self.zone?])
    }

    /// The zone's cache rule for this request's path.
    fn cache_rule(&self) -> Option<&CacheRule> {
        Some(&self.zone()?.config.cache.rules[self.cache_rule?])
    }
}

fn is_tls(digest: Option<&Digest>) -> bool {
    digest.is_some_and(|d| d.ssl_digest.is_some())
}

fn sni(digest: Option<&Digest>) -> Option<String> {
    let ssl = digest?.ssl_digest.as_ref()?;
    ssl.extension.get::<Sni>().and_then(|s| s.0.clone())
}

fn protocol_index(version: Version) -> usize {
    match version {
        Version::HTTP_2 => 1,
        Version::HTTP_10 | Version::HTTP_11 | Version::HTTP_09 => 0,
        _ => 2,
    }
}

fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_11 => "http/1.1",
        Version::HTTP_10 => "http/1.0",
        _ => "other",
    }
}

/// The index into `Node::via` for a client's protocol version.
fn via_index(version: Version) -> usize {
    match version {
        Version::HTTP_10 | Version::HTTP_09 => 0,
        Version::HTTP_2 => 2,
        _ => 1,
    }
}

/// The authority the request names: the target's for absolute-form and HTTP/2, else Host.
fn request_authority(req: &RequestHeader) -> (Option<&str>, bool) {
    if let Some(a) = req.uri.authority() {
        return (Some(a.as_str()), req.version != Version::HTTP_2);
    }
    (req.headers.get(HOST).and_then(|h| h.to_str().ok()), false)
}

/// The request's URL as the cache keys it and purges name it, under the zone's cache `rule`
/// for its path (`edgenet_cache::rules`).
fn cache_url(rule: Option<&CacheRule>, req: &RequestHeader) -> String {
    let host = request_authority(req)
        .0
        .map(edgenet_http::host::host_without_port)
        .unwrap_or("");
    edgenet_cache::rules::keyed_url(rule, host, req.uri.path(), req.uri.query())
}

/// The cache key: zone, scheme, keyed URL and the rule's header and cookie values, each
/// length-prefixed so that no two different requests frame to the same bytes.
fn cache_key(
    zone: &str,
    scheme: &str,
    url: &str,
    rule: Option<&CacheRule>,
    req: &RequestHeader,
) -> CacheKey {
    let extras = edgenet_cache::rules::key_extras(rule, &req.headers);
    let mut key = Vec::with_capacity(zone.len() + url.len() + extras.len() + 16);
    for part in [zone.as_bytes(), scheme.as_bytes(), url.as_bytes()] {
        key.extend_from_slice(&(part.len() as u32).to_be_bytes());
        key.extend_from_slice(part);
    }
    key.extend_from_slice(&extras);
    // pingora-cache rehashes the primary key (BLAKE2b) on every use: the predictor, the lookup,
    // the lock and the eviction manager each ask for it. Hash once; same value, so stored
    // entries keep their keys.
    let hash = pingora_cache::key::hash_key(&key);
    let mut key = CacheKey::new(key, "");
    key.set_primary_bin_override(hash);
    key
}

/// The `metrics::CACHE_RESULTS` index for this request.
fn cache_result(session: &Session, ctx: &Ctx) -> usize {
    if !ctx.cache_enabled {
        return 5;
    }
    match session.cache.phase() {
        CachePhase::Hit => 0,
        CachePhase::Miss => 1,
        CachePhase::Expired => 2,
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => 3,
        CachePhase::Stale | CachePhase::StaleUpdating => 4,
        CachePhase::Disabled(_) => 6,
        CachePhase::Bypass | CachePhase::Uninit | CachePhase::CacheKey => 5,
    }
}

/// What the cache did for this request, from pingora-cache's phase and our own notes.
fn cache_status(
    session: &Session,
    ctx: &Ctx,
    status: u16,
    storage: &edgenet_cache::TieredStore,
) -> CacheStatus<'static> {
    let cache = &session.cache;
    let ttl = || {
        cache.maybe_cache_meta().map(|m| {
            let now = SystemTime::now();
            match m.fresh_until().duration_since(now) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => -(e.duration().as_secs() as i64),
            }
        })
    };
    let collapsed = cache.lock_duration().is_some();
    let mut s = CacheStatus {
        collapsed,
        ..CacheStatus::default()
    };
    if !ctx.cache_enabled {
        s.fwd = Some(Forward::Bypass);
        s.fwd_status = Some(status);
        return s;
    }
    // Why a stored response went back to the origin: it was stale, or the client asked.
    let refetched = if ctx.revalidate_by_request {
        Forward::Request
    } else {
        Forward::Stale
    };
    match cache.phase() {
        CachePhase::Hit => {
            s.hit = true;
            s.ttl = ttl();
        }
        CachePhase::Stale | CachePhase::StaleUpdating => {
            s.hit = true;
            s.ttl = ttl();
            s.detail = Some(if cache.phase() == CachePhase::StaleUpdating {
                "stale-while-revalidate"
            } else {
                "stale-if-error"
            });
        }
        CachePhase::Miss => {
            // Other variants of this URL are stored (this one is not yet, until its body is
            // complete): the request missed on its Vary headers.
            let vary_miss = !ctx.purged
                && cache.maybe_cache_key().is_some_and(|k| {
                    k.get_variance_key().is_some() && storage.has_primary(&k.primary_bin())
                });
            s.fwd = Some(if vary_miss {
                Forward::VaryMiss
            } else {
                Forward::UriMiss
            });
            s.fwd_status = Some(status);
            s.stored = true;
            s.ttl = ttl();
        }
        CachePhase::Expired => {
            s.fwd = Some(refetched);
            s.fwd_status = Some(status);
            s.stored = true;
            s.ttl = ttl();
        }
        CachePhase::Revalidated => {
            s.hit = true;
            s.fwd = Some(refetched);
            s.fwd_status = Some(304);
            s.ttl = ttl();
        }
        CachePhase::RevalidatedNoCache(_) => {
            s.fwd = Some(Forward::Stale);
            s.fwd_status = Some(304);
            s.detail = ctx.not_stored;
        }
        CachePhase::Disabled(reason) => {
            s.fwd = Some(Forward::UriMiss);
            s.fwd_status = Some(status);
            s.detail = Some(ctx.not_stored.unwrap_or(reason.as_str()));
        }
        CachePhase::Bypass | CachePhase::Uninit | CachePhase::CacheKey => {
            s.fwd = Some(Forward::Bypass);
            s.fwd_status = Some(status);
        }
    }
    s
}

/// The scheme the client used: the lower tier's client's for a tiered request, the worker's
/// for a worker's request.
fn client_scheme(session: &Session, ctx: &Ctx) -> &'static str {
    match (&ctx.from_lower_tier, ctx.subrequest_scheme) {
        (Some((_, scheme)), _) => scheme,
        (None, Some(scheme)) => scheme,
        (None, None) if is_tls(session.digest()) => "https",
        (None, None) => "http",
    }
}

impl EdgeProxy {
    /// The upper-tier PoP for this request's miss, when the zone has tiers, this PoP is not
    /// one of them, the request did not come from a lower tier and the tier has not failed.
    fn upper_tier_peer(&self, ctx: &mut Ctx) -> Option<HttpPeer> {
        let tiered = ctx
            .zone()
            .is_some_and(|z| z.config.smart_tier || !z.config.upper_tiers.is_empty());
        if !tiered {
            return None;
        }
        let snapshot = ctx.snapshot.clone()?;
        let zone = &snapshot.zones[ctx.zone?];
        let smart;
        let upper = if zone.config.smart_tier {
            let origins: Vec<SocketAddr> = zone
                .pool
                .members()
                .iter()
                .map(|m| m.server.address)
                .collect();
            smart = vec![self
                .node
                .backbone_state
                .closest_to(&self.node.name, &origins)?];
            &smart
        } else {
            &zone.config.upper_tiers
        };
        if upper.is_empty()
            || ctx.from_lower_tier.is_some()
            || ctx.tier_failed
            || upper.contains(&self.node.name)
        {
            return None;
        }
        let tls = self.node.backbone_tls.get()?;
        let pops = self.node.pops.load();
        let key = ctx.cache_url.as_deref().unwrap_or(&ctx.request_id);
        let (name, address) = crate::backbone::choose_upper_tier(upper, &pops, key)?;
        ctx.via_tier = Some(name.to_string());
        ctx.upstream_start = Some(Instant::now());
        Some(tls.peer(name, address))
    }

    fn client_ip(session: &Session) -> Option<IpAddr> {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    }

    /// Requests only PoPs send, on the backbone listener: the ping, the shared measurements,
    /// and relayed requests (which must name an origin server of one of our zones). Returns
    /// true when it answered.
    async fn backbone_request(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snapshot: &Snapshot,
    ) -> bool {
        use crate::backbone::{LINKS_PATH, PING_PATH, RELAY_HEADER};
        let path = session.req_header().uri.path().to_owned();
        if path == PING_PATH {
            self.respond_body(session, 200, "text/plain", b"pong\n".to_vec(), None)
                .await;
            return true;
        }
        if path == LINKS_PATH {
            let links = self.node.backbone_state.own_links(&self.node.name);
            let body = serde_json::to_vec(&links).unwrap_or_default();
            self.respond_body(session, 200, "application/json", body, None)
                .await;
            return true;
        }
        let Some(target) = session.req_header().headers.get(RELAY_HEADER) else {
            return false;
        };
        let found = target
            .to_str()
            .ok()
            .and_then(|t| t.parse::<SocketAddr>().ok())
            .and_then(|addr| {
                snapshot.zones.iter().enumerate().find_map(|(z, zone)| {
                    let idx = zone
                        .pool
                        .members()
                        .iter()
                        .position(|m| m.server.address == addr)?;
                    Some((z, idx))
                })
            });
        match found {
            Some(t) => {
                ctx.relay_to = Some(t);
                false
            }
            None => {
                self.respond_error(session, ctx, 403, "relays only to origins of this network")
                    .await;
                true
            }
        }
    }

    /// 429 with Retry-After, naming the rule.
    async fn respond_limited(&self, session: &mut Session, rule: &str, retry_after: u64) {
        let body = format!(
            "429 Too Many Requests\nrate limit: {rule}\npop: {}\n",
            self.node.name
        );
        let ctype = "text/plain; charset=utf-8";
        self.respond_body(session, 429, ctype, body.into_bytes(), Some(retry_after))
            .await;
    }

    /// A complete response that is not cached, with `Retry-After` when given.
    async fn respond_body(
        &self,
        session: &mut Session,
        status: u16,
        content_type: &str,
        body: Vec<u8>,
        retry_after: Option<u64>,
    ) {
        let Ok(mut resp) = ResponseHeader::build(status, Some(4)) else {
            return;
        };
        let _ = resp.insert_header(CONTENT_TYPE, content_type);
        let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string());
        let _ = resp.insert_header(http::header::CACHE_CONTROL, "no-store");
        if let Some(secs) = retry_after {
            let _ = resp.insert_header(http::header::RETRY_AFTER, secs.to_string());
        }
        let _ = session.write_response_header(Box::new(resp), false).await;
        let _ = session.write_response_body(Some(body.into()), true).await;
    }

    /// Writes a short plain-text error page naming the PoP and the request id.
    async fn respond_error(&self, session: &mut Session, ctx: &mut Ctx, status: u16, reason: &str) {
        let body = format!(
            "{status} {}\n{reason}\npop: {}\nrequest id: {}\n",
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or(""),
            self.node.name,
            ctx.request_id,
        );
        let mut resp = match ResponseHeader::build(status, Some(4)) {
            Ok(r) => r,
            Err(_) => return,
        };
        let _ = resp.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8");
        let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string());
        let _ = resp.insert_header(http::header::CACHE_CONTROL, "no-store");
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            let _ = resp.insert_header(REQUEST_ID, v);
        }
        let via = &self.node.via[via_index(session.req_header().version)];
        let _ = resp.insert_header(http::header::VIA, via.clone());
        ctx.error.get_or_insert_with(|| reason.to_string());
        // A malformed or misrouted request may have a body we will not read: do not reuse.
        session.set_keepalive(None);
        let is_head = session.req_header().method == http::Method::HEAD;
        if session
            .write_response_header(Box::new(resp), is_head)
            .await
            .is_ok()
            && !is_head
        {
            let _ = session
                .write_response_body(Some(Bytes::from(body)), true)
                .await;
        }
    }

    /// Runs worker `idx` of `zone` on the request and writes its response, or an error page
    /// naming the worker and the cause (with a log line and a metric). A failure after the
    /// head went out is an error: the connection (HTTP/1) or stream (HTTP/2) is cut, so the
    /// client can tell a truncated body from a whole one.
    async fn run_worker(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        zone: &ZoneRuntime,
        idx: usize,
        host: &str,
    ) -> Result<()> {
        let w = &zone.workers[idx];
        w.requests.inc();
        ctx.worker = Some(w.name.clone());
        let fail = |cause: &str| {
            self.node
                .metrics
                .worker_errors
                .with_label_values(&[&zone.config.name, &w.name, cause])
                .inc();
        };
        let body = match self.read_body(session, w.request_body_bytes).await {
            Ok(b) => b,
            Err(status) => {
                fail("request_body");
                let reason = format!(
                    "worker {}: the request body is over its limit of {} bytes",
                    w.name, w.request_body_bytes
                );
                self.respond_error(session, ctx, status, &reason).await;
                return Ok(());
            }
        };
        let scheme = client_scheme(session, ctx);
        let client = Self::client_ip(session);
        let req = crate::workers::worker_request(session.req_header(), scheme, host, client, body);
        let Some(req) = req else {
            self.respond_error(session, ctx, 400, "the request URI is not valid")
                .await;
            return Ok(());
        };
        let report = |e: &edgenet_workers::WorkerError, request_id: &str| {
            let cause = e.cause();
            fail(cause);
            tracing::warn!(
                zone = %zone.config.name,
                worker = %w.name,
                cause,
                error = %e,
                request_id,
                "worker failed"
            );
        };
        // Up to WORKER_BUFFER bytes are gathered before the head goes out: a short body gets a
        // Content-Length, and a worker that fails early still gets an error page. A longer
        // body streams as the worker writes it.
        let gathered = async {
            let (parts, mut body) = w.worker.stream(req).await?.into_parts();
            let mut buffered = bytes::BytesMut::new();
            while buffered.len() < WORKER_BUFFER {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buffered.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Ok((parts, body, buffered, true)),
                }
            }
            Ok((parts, body, buffered, false))
        };
        let (parts, mut body, buffered, ended) = match gathered.await {
            Ok(g) => g,
            Err(e) => {
                report(&e, &ctx.request_id);
                let reason = format!("worker {} {e}", w.name);
                let status = crate::workers::error_status(&e);
                self.respond_error(session, ctx, status, &reason).await;
                return Ok(());
            }
        };
        let length = ended.then_some(buffered.len());
        let mut head = self.worker_head(&parts, zone, ctx, length);
        if length.is_none() && session.req_header().version == Version::HTTP_11 {
            // Chunked keeps the connection reusable and tells a cut-off body from a whole one.
            let _ = head.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        }
        let is_head = session.req_header().method == http::Method::HEAD;
        let done = is_head || length == Some(0);
        session.write_response_header(Box::new(head), done).await?;
        if done {
            return Ok(());
        }
        session
            .write_response_body(Some(buffered.freeze()), ended)
            .await?;
        if ended {
            return Ok(());
        }
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    // If the client went, dropping the body stops the worker.
                    session.write_response_body(Some(data), false).await?;
                }
                Some(Err(e)) => {
                    report(&e, &ctx.request_id);
                    let why = format!("worker {} {e} after its response began", w.name);
                    return Err(Error::explain(ErrorType::InternalError, why));
                }
                None => return session.write_response_body(None, true).await,
            }
        }
    }

    /// The request body, read in full: 413 when it is over `max`, 400 when it cannot be read.
    async fn read_body(&self, session: &mut Session, max: usize) -> Result<Bytes, u16> {
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(413);
        }
        let mut body = bytes::BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        return Err(413);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body.freeze()),
                Err(_) => return Err(400),
            }
        }
    }

    /// The head of a worker's response: its status and headers but the framing ones (the
    /// proxy's), the zone's response header rules, the request id, and `Content-Length` when
    /// the whole body is known.
    fn worker_head(
        &self,
        parts: &http::response::Parts,
        zone: &ZoneRuntime,
        ctx: &Ctx,
        length: Option<usize>,
    ) -> ResponseHeader {
        let mut head = ResponseHeader::build(parts.status, Some(parts.headers.len() + 3))
            .expect("a status from a valid response");
        for (name, value) in parts.headers.iter() {
            if !crate::workers::is_hop_header(name) {
                let _ = head.append_header(name.clone(), value.clone());
            }
        }
        if let Some(n) = length {
            let _ = head.insert_header(http::header::CONTENT_LENGTH, n.to_string());
        }
        apply_header_rules(&zone.config.response_headers, &mut Edit(&mut head));
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            let _ = head.insert_header(REQUEST_ID, v);
        }
        head
    }

    fn client_info<'a>(&'a self, session: &'a Session) -> ClientInfo<'a> {
        let req = session.req_header();
        ClientInfo {
            ip: Self::client_ip(session),
            proto: if is_tls(session.digest()) {
                "https"
            } else {
                "http"
            },
            host: request_authority(req).0,
            via: &self.node.via[via_index(req.version)],
        }
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        self.node.metrics.inflight.inc();
        Ctx {
            _inflight: InflightGuard(self.node.clone()),
            start: Instant::now(),
            snapshot: None,
            zone: None,
            request_id: String::new(),
            tried: Vec::new(),
            current: None,
            upstream_start: None,
            upstream_ms: None,
            error: None,
            cache_enabled: false,
            not_stored: None,
            cache_status: None,
            cache_result: None,
            not_modified: None,
            revalidate_by_request: false,
            purged: false,
            cache_rule: None,
            cache_url: None,
            from_lower_tier: None,
            via_tier: None,
            tier_failed: false,
            via_relay: None,
            relay_failed: false,
            relay_to: None,
            waf: None,
            rate_limit: None,
            worker: None,
            subrequest_scheme: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let snapshot = self.node.snapshot.load_full();
        ctx.request_id = self.node.next_request_id();
        if self.backbone && self.backbone_request(session, ctx, &snapshot).await {
            ctx.snapshot = Some(snapshot);
            return Ok(true);
        }
        if ctx.relay_to.is_some() {
            ctx.snapshot = Some(snapshot);
            return Ok(false);
        }
        if self.subrequests {
            // A worker's request: its scheme is part of the cache key.
            let headers = &session.req_header().headers;
            ctx.subrequest_scheme = Some(crate::backbone::header_scheme(headers));
        }
        if self.backbone {
            let headers = &session.req_header().headers;
            let scheme = crate::backbone::header_scheme(headers);
            ctx.from_lower_tier = headers
                .get(crate::backbone::TIER_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|t| (t.to_string(), scheme));
        }
        // Pingora's read timeout applies per read of the body (nginx's client_body_timeout).
        session.set_read_timeout(Some(snapshot.config.limits.body_timeout));
        session.set_total_drain_timeout(Some(snapshot.config.limits.body_timeout));
        let req = session.req_header();
        let target_len = req.raw_path().len();
        if let Err(m) = request_check::check(
            &req.method,
            target_len,
            req.version,
            &req.headers,
            snapshot.config.limits.max_request_header_bytes,
        ) {
            ctx.snapshot = Some(snapshot);
            self.respond_error(session, ctx, 400, m.reason()).await;
            return Ok(true);
        }
        let smuggled = req.headers.contains_key(http::header::TRANSFER_ENCODING)
            && session.as_http1().is_some_and(|h1| {
                request_check::raw_has_content_length(&h1.get_headers_raw_bytes())
            });
        if smuggled {
            ctx.snapshot = Some(snapshot);
            let reason = request_check::Malformed::ContentLengthWithTransferEncoding.reason();
            self.respond_error(session, ctx, 400, reason).await;
            return Ok(true);
        }
        let req = session.req_header();
        let (authority, absolute_form) = request_authority(req);
        let zone = authority.and_then(|a| snapshot.router.route(a));
        let Some(zone) = zone else {
            ctx.snapshot = Some(snapshot);
            if absolute_form {
                self.respond_error(
                    session,
                    ctx,
                    400,
                    "absolute-form target for a host not served here",
                )
                .await;
            } else {
                self.respond_error(session, ctx, 421, "no zone serves this host at this PoP")
                    .await;
            }
            return Ok(true);
        };
        // Over TLS the certificate was chosen by SNI; a Host from another zone would let one
        // zone's connection reach another zone's origin, so it is misdirected.
        // (The backbone listener's server name is the PoP's own, and its clients are PoPs.)
        if let Some(sni) = sni(session.digest()).filter(|_| !self.backbone) {
            if snapshot.router.route(&sni) != Some(zone) {
                ctx.snapshot = Some(snapshot);
                self.respond_error(
                    session,
                    ctx,
                    421,
                    "Host does not belong to the TLS server name",
                )
                .await;
                return Ok(true);
            }
        }
        ctx.zone = Some(zone);
        ctx.snapshot = Some(snapshot.clone());
        // The WAF, then rate limits, unless a lower tier (which ran them) sent the request.
        let z = &snapshot.zones[zone];
        let guarded =
            z.ddos.is_some() || !(z.config.waf.is_empty() && z.config.rate_limits.is_empty());
        if ctx.from_lower_tier.is_none() && !self.subrequests && guarded {
            let (ddos, verdict, limited) = {
                let req = session.req_header();
                let ssl = is_tls(session.digest());
                let ja4 = session
                    .digest()
                    .filter(|_| ssl)
                    .and_then(|d| crate::tls::ClientHellos::key(d.socket_digest.clone()))
                    .and_then(|k| self.node.hellos.get(k));
                let mut view = crate::waf::RequestView::new(
                    req,
                    request_authority(req).0.unwrap_or("").as_bytes(),
                    Self::client_ip(session).unwrap_or(IpAddr::from([0, 0, 0, 0])),
                    ssl,
                );
                view.ja4 = ja4.as_deref();
                // Mitigated attack traffic is the cheapest to refuse: before any rule runs.
                let ddos = crate::shield::ddos_check(z, &view, &self.node.shield);
                let verdict = if ddos.is_some() {
                    crate::waf::Verdict::Pass { allowed: true }
                } else {
                    crate::waf::evaluate(z, &view, &mut ctx.waf)
                };
                let limited = match verdict {
                    crate::waf::Verdict::Pass { allowed: false } => {
                        crate::shield::check(z, &view, &self.node.shield)
                    }
                    _ => None,
                };
                (ddos, verdict, limited)
            };
            if let Some(retry) = ddos {
                ctx.rate_limit = Some("ddos:block".into());
                self.respond_limited(session, "ddos", retry).await;
                return Ok(true);
            }
            if let crate::waf::Verdict::Block(idx) = verdict {
                let rule = &z.config.waf[idx];
                self.respond_body(
                    session,
                    rule.status,
                    "text/plain; charset=utf-8",
                    rule.body.clone().into_bytes(),
                    None,
                )
                .await;
                return Ok(true);
            }
            if let Some(l) = limited {
                let id = &z.config.rate_limits[l.rule].id;
                ctx.rate_limit = Some(format!("{id}:{}", if l.block { "block" } else { "log" }));
                if l.block {
                    self.respond_limited(session, id, l.retry_after_secs).await;
                    return Ok(true);
                }
            }
        }
        // Stage 7: a worker, if a route matches (never for a lower tier's or a worker's own
        // request).
        if !z.workers.is_empty() && ctx.from_lower_tier.is_none() && !self.subrequests {
            let req = session.req_header();
            let host = request_authority(req).0.unwrap_or("");
            let host = edgenet_http::host::host_without_port(host).to_ascii_lowercase();
            if let Some(w) = z.config.worker_for(&host, req.uri.path()) {
                self.run_worker(session, ctx, &snapshot.zones[zone], w, &host)
                    .await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let Some(zone) = ctx.zone() else {
            return Ok(());
        };
        let req = session.req_header();
        let enabled = zone.config.cache.enabled;
        ctx.cache_rule = edgenet_cache::rules::find_rule(&zone.config.cache.rules, req.uri.path());
        if !enabled
            || (req.method != http::Method::GET && req.method != http::Method::HEAD)
            || ctx.cache_rule().is_some_and(|r| r.bypass)
        {
            return Ok(());
        }
        let c = &self.node.cache;
        session.cache.enable(
            c.storage,
            Some(c.eviction),
            Some(c.predictor),
            Some(c.lock),
            None,
        );
        session.cache.set_admission_policy(c.admission);
        ctx.cache_enabled = true;
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        let zone = ctx
            .zone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "cache without a zone"))?;
        let scheme = client_scheme(session, ctx);
        let req = session.req_header();
        let rule = ctx.cache_rule();
        let url = cache_url(rule, req);
        let key = cache_key(&zone.config.name, scheme, &url, rule, req);
        ctx.cache_url = Some(url);
        Ok(key)
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        _hit: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<ForcedFreshness>> {
        let Some(zone) = ctx.zone() else {
            return Ok(None);
        };
        let Some(url) = ctx.cache_url.as_deref() else {
            return Ok(None);
        };
        let tags = meta
            .headers()
            .get_all("cache-tag")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(edgenet_cache::purge::split_tags);
        let purges = &self.node.cache.purges;
        if purges.is_purged(&zone.config.name, url, tags, meta.created()) {
            ctx.purged = true;
            return Ok(Some(ForcedFreshness::ForceMiss));
        }
        if zone.config.cache.honor_request_no_cache
            && edgenet_cache::rules::request_no_cache(&session.req_header().headers)
        {
            ctx.revalidate_by_request = true;
            return Ok(Some(ForcedFreshness::ForceExpired));
        }
        Ok(None)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        // pingora-cache merges only a few fields of a 304; RFC 9111 section 4.3.4 wants them all
        // (Date and Age above all, or the refreshed response would still look old).
        let merged = ctx
            .not_modified
            .take()
            .map(|fields| edgenet_cache::merge_not_modified(resp, &fields));
        let Some(zone) = ctx.zone() else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
        };
        let req = session.req_header();
        let policy = ZonePolicy {
            cache_set_cookie: zone.config.cache.cache_set_cookie,
        };
        let authorization = req.headers.contains_key(http::header::AUTHORIZATION);
        let now = SystemTime::now();
        let resp = merged.as_ref().unwrap_or(resp);
        let decision = edgenet_cache::decide(&req.method, authorization, resp, &policy, now);
        match edgenet_cache::rules::apply_edge_ttl(decision, ctx.cache_rule()) {
            Decision::Store {
                fresh_for,
                stale_while_revalidate,
                stale_if_error,
            } => Ok(RespCacheable::Cacheable(CacheMeta::new(
                now + fresh_for,
                now,
                stale_while_revalidate,
                stale_if_error,
                resp.clone(),
            ))),
            Decision::DoNotStore(reason) => {
                ctx.not_stored = Some(reason);
                Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(reason)))
            }
        }
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut Ctx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        let mut variance = VarianceBuilder::new();
        for value in meta.headers().get_all(http::header::VARY) {
            let Ok(names) = value.to_str() else { continue };
            for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let name = name.to_ascii_lowercase();
                let value = req
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .flat_map(|v| v.as_bytes().iter().copied().chain(*b","))
                    .collect();
                variance.add_owned_name_value(name, value);
            }
        }
        variance.finalize()
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        match error {
            // stale-while-revalidate: pingora-cache has checked the stored response's window.
            None => true,
            // stale-if-error (RFC 5861 section 4): unreachable origins and 500, 502, 503, 504.
            Some(e) => {
                e.esource() == &ErrorSource::Upstream
                    || matches!(e.etype(), ErrorType::HTTPStatus(500 | 502 | 503 | 504))
            }
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if let Some((z, idx)) = ctx.relay_to {
            // At a relay: straight to the origin the sending PoP chose, with its zone's settings.
            let snapshot = ctx.snapshot.clone().expect("set in request_filter");
            let host = request_authority(session.req_header()).0;
            ctx.upstream_start = Some(Instant::now());
            return Ok(Box::new(snapshot.zones[z].origin_peer(idx, host)));
        }
        if let Some(peer) = self.upper_tier_peer(ctx) {
            return Ok(Box::new(peer));
        }
        let zone = ctx
            .zone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no zone chosen"))?;
        let pool = &zone.pool;
        let Some(idx) = pool.select(&ctx.tried, Instant::now()) else {
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "every origin of the zone has been tried",
            )
            .into_up());
        };
        let host = zone
            .config
            .host_header
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .or_else(|| request_authority(session.req_header()).0);
        let mut peer = zone.origin_peer(idx, host);
        let origin = zone.pool.members()[idx].server.address;
        // Without a backbone identity there are no relays: skip the lookup.
        if !ctx.relay_failed && self.node.backbone_tls.get().is_some() {
            if let Some(relay) = self.node.backbone_state.relays.load().get(&origin) {
                let pops = self.node.pops.load();
                if let (Some(tls), Some(addr)) = (self.node.backbone_tls.get(), pops.get(relay)) {
                    peer = tls.peer(relay, *addr);
                    ctx.via_relay = Some((relay.clone(), origin));
                }
            }
        }
        ctx.tried.push(idx);
        ctx.current = Some(idx);
        ctx.upstream_start = Some(Instant::now());
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        _digest: Option<&Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(zone), Some(idx)) = (ctx.zone(), ctx.current) {
            zone.pool.members()[idx].health.connect_succeeded();
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        if let Some((relay, origin)) = ctx.via_relay.take() {
            // The relay failed mid-request: go direct, unless the client already has part of a
            // response (a second one would corrupt it) or the body cannot be replayed.
            let fresh = session.as_ref().response_written().is_none();
            tracing::warn!(%relay, %origin, error = %e, retry = fresh && replayable, "relay failed mid-request");
            ctx.relay_failed = true;
            ctx.tried.pop();
            e.set_retry(fresh && replayable);
            return e;
        }
        if replayable {
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        e
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some((relay, origin)) = ctx.via_relay.take() {
            // The relay is down: this request goes direct (the same origin may be chosen).
            tracing::warn!(%relay, %origin, error = %e, "relay unreachable; fetching direct");
            ctx.relay_failed = true;
            ctx.tried.pop();
            e.set_retry(true);
            return e;
        }
        if let Some(tier) = ctx.via_tier.take() {
            // The upper tier is down: this request goes to the origin itself.
            tracing::warn!(upper_tier = %tier, error = %e, "upper tier unreachable; fetching from the origin");
            ctx.tier_failed = true;
            e.set_retry(true);
            return e;
        }
        if let (Some(zone), Some(idx)) = (ctx.zone(), ctx.current) {
            let passive = &zone.config.origins.passive;
            let member = &zone.pool.members()[idx];
            if member
                .health
                .connect_failed(Instant::now(), passive.max_failures, passive.eject_for)
            {
                tracing::warn!(zone = %zone.config.name, origin = %member.server.name, error = %e,
                    "origin ejected after connect failures");
            }
            zone.metrics.upstream_error(0);
            let retries = zone.config.origins.retries as usize;
            let idempotent = session.req_header().method.is_idempotent();
            let more = ctx.tried.len() < zone.pool.members().len();
            if idempotent && ctx.tried.len() <= retries && more {
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.relay_to.is_some() {
            // A relay is a transport: the sending PoP prepared the request for the origin.
            upstream.remove_header(crate::backbone::RELAY_HEADER);
            return Ok(());
        }
        let upgrade = session.is_upgrade_req();
        prepare_upstream_request(upstream, &self.client_info(session), upgrade);
        let Some(zone) = ctx.zone() else {
            return Ok(());
        };
        if ctx.from_lower_tier.is_some() {
            upstream.remove_header(crate::backbone::TIER_HEADER);
        }
        if ctx.from_lower_tier.is_some() || ctx.subrequest_scheme.is_some() {
            upstream.remove_header(crate::backbone::SCHEME_HEADER);
        }
        if ctx.via_tier.is_some() {
            // The upper tier routes by the client's Host and applies the zone's request rules
            // itself when it goes to the origin.
            upstream.insert_header(crate::backbone::TIER_HEADER, self.node.name.as_str())?;
            upstream.insert_header(crate::backbone::SCHEME_HEADER, client_scheme(session, ctx))?;
            if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
                upstream.insert_header(REQUEST_ID, v)?;
            }
            return Ok(());
        }
        if let Some(h) = &zone.config.host_header {
            upstream.insert_header(HOST, h.clone())?;
        } else if upstream.headers.get(HOST).is_none() {
            // HTTP/2 clients send :authority instead of Host; HTTP/1.1 origins need Host.
            if let Some(a) = request_authority(session.req_header()).0 {
                upstream.insert_header(HOST, a.to_owned())?;
            }
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            upstream.insert_header(REQUEST_ID, v)?;
        }
        apply_header_rules(&zone.config.request_headers, &mut Edit(upstream));
        // The origin always gets origin-form over HTTP/1.1 whatever the client used.
        if upstream.uri.authority().is_some() {
            let pq = upstream
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into());
            if let Ok(uri) = pq.parse() {
                upstream.set_uri(uri);
            }
        }
        match &ctx.via_relay {
            // The relay is reached over HTTP/2 when it offers it: Pingora sets the version for
            // the connection it got; the relay speaks HTTP/1.1 to the origin.
            Some((_, origin)) => {
                upstream.insert_header(crate::backbone::RELAY_HEADER, origin.to_string())?;
            }
            None => upstream.set_version(Version::HTTP_11),
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if upstream_response.status == http::StatusCode::NOT_MODIFIED
            && session.cache.phase() == CachePhase::Stale
        {
            ctx.not_modified = Some(upstream_response.headers.clone());
        }
        if let (Some(start), None) = (ctx.upstream_start, ctx.upstream_ms) {
            let elapsed = start.elapsed();
            ctx.upstream_ms = Some(elapsed.as_secs_f64() * 1000.0);
            if let Some(zone) = ctx.zone() {
                zone.metrics
                    .upstream_duration
                    .observe(elapsed.as_secs_f64());
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let upgrade = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
        // An HTTP/1.0 origin must not turn the client's HTTP/1.1 connection into HTTP/1.0.
        if session.req_header().version == Version::HTTP_11 {
            resp.set_version(Version::HTTP_11);
        }
        prepare_downstream_response(resp, &self.client_info(session), upgrade);
        // A lower tier applies the zone's response rules itself.
        if let (Some(zone), None) = (ctx.zone(), &ctx.from_lower_tier) {
            apply_header_rules(&zone.config.response_headers, &mut Edit(resp));
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            resp.insert_header(REQUEST_ID, v)?;
        }
        // RFC 9111 section 4.4: a successful unsafe request invalidates the stored responses
        // for its target URI. A rule is only recorded when something is stored for it.
        let method = &session.req_header().method;
        if !method.is_safe() && resp.status.as_u16() < 400 {
            if let Some(zone) = ctx.zone() {
                let req = session.req_header();
                let storage = self.node.cache.storage;
                let (rule, name) = (ctx.cache_rule(), &zone.config.name);
                let url = cache_url(rule, req);
                let stored = ["http", "https"].iter().any(|scheme| {
                    storage.has_primary(&cache_key(name, scheme, &url, rule, req).primary_bin())
                });
                if stored {
                    let purge = edgenet_cache::PurgeRequest::Urls(vec![url]);
                    self.node
                        .cache
                        .purges
                        .purge(&zone.config.name, &purge, SystemTime::now());
                }
            }
        }
        // Age of a response from cache (RFC 9111 section 4.2.3): the age it arrived with plus
        // the time it has been stored. pingora-cache counts only the latter.
        if matches!(
            session.cache.phase(),
            CachePhase::Hit
                | CachePhase::Stale
                | CachePhase::StaleUpdating
                | CachePhase::Revalidated
        ) {
            if let Some(meta) = session.cache.maybe_cache_meta() {
                let initial = edgenet_cache::policy::age_on_arrival(meta.headers(), meta.epoch());
                let age = (initial + meta.age()).as_secs();
                resp.insert_header(http::header::AGE, age.to_string())?;
            }
        }
        if ctx.zone.is_some() {
            let status = cache_status(session, ctx, resp.status.as_u16(), self.node.cache.storage);
            ctx.cache_result = Some((cache_result(session, ctx), status.collapsed, status.hit));
            let value = status.header_value(&self.node.name);
            // RFC 9211: each cache appends its entry to those of the caches nearer the origin
            // (an upper tier's, or the origin's own).
            let full = match resp
                .headers
                .get("cache-status")
                .and_then(|v| v.to_str().ok())
            {
                Some(upstream) if !upstream.is_empty() => format!("{upstream}, {value}"),
                _ => value.clone(),
            };
            if let Ok(v) = HeaderValue::from_str(&full) {
                resp.insert_header("cache-status", v)?;
            }
            ctx.cache_status = Some(value);
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (code, kind) = match e.etype() {
            ErrorType::HTTPStatus(code) => (*code, 3),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                (504, 1)
            }
            _ => match e.esource() {
                ErrorSource::Upstream => (502, 2),
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (0, 3)
                    }
                    // limits.body_timeout: the client stopped sending its body.
                    ErrorType::ReadTimedout => (408, 3),
                    _ => (400, 3),
                },
                ErrorSource::Internal | ErrorSource::Unset => (500, 3),
            },
        };
        let connect_failure = matches!(
            e.etype(),
            ErrorType::ConnectTimedout
                | ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError
                | ErrorType::TLSHandshakeFailure
        );
        if e.esource() == &ErrorSource::Upstream && !connect_failure {
            if let Some(zone) = ctx.zone() {
                zone.metrics.upstream_error(kind.min(3));
            }
        }
        ctx.error = Some(e.to_string());
        if code > 0 {
            let reason = match code {
                502 => "the origin could not be reached or sent an invalid response",
                504 => "the origin did not answer in time",
                400 => "malformed request",
                408 => "the request body did not arrive in time",
                _ => "the request failed",
            };
            if session.response_written().is_none() {
                self.respond_error(session, ctx, code, reason).await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let req = session.req_header();
        let elapsed = ctx.start.elapsed();
        if ctx.error.is_none() {
            ctx.error = e.map(|e| e.to_string());
        }
        let error = ctx.error.take();
        let zone = ctx.zone();
        let metrics = match (zone, &ctx.snapshot) {
            (Some(z), _) => Some(&z.metrics),
            (None, Some(s)) => Some(&s.no_zone),
            (None, None) => None,
        };
        if let Some(m) = metrics {
            m.request(protocol_index(req.version), status);
            m.duration.observe(elapsed.as_secs_f64());
            if let Some((result, collapsed, from_cache)) = ctx.cache_result {
                let served = if from_cache {
                    session.body_bytes_sent() as u64
                } else {
                    0
                };
                m.cache(result, collapsed, served);
            }
        }
        if !self.node.log.enabled() {
            return;
        }
        let origin = match (zone, ctx.current) {
            (Some(z), Some(i)) => Some(z.pool.members()[i].server.name.as_str()),
            _ => None,
        };
        let client = session
            .client_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let path = std::str::from_utf8(req.raw_path()).unwrap_or("<non-utf8>");
        self.node.log.log(&Entry {
            time: now_rfc3339(),
            request_id: &ctx.request_id,
            zone: zone.map(|z| z.config.name.as_str()).unwrap_or("-"),
            client,
            protocol: protocol_name(req.version),
            scheme: client_scheme(session, ctx),
            method: req.method.as_str(),
            host: request_authority(req).0.unwrap_or(""),
            path,
            status,
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            upstream_ms: ctx.upstream_ms,
            origin,
            attempts: ctx.tried.len() as u32,
            error,
            cache: ctx.cache_status.clone(),
            waf: ctx.waf.clone(),
            rate_limit: ctx.rate_limit.clone(),
            worker: ctx.worker.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precomputed_primary_hash_is_pingoras_own() {
        let config = edgenet_config::parse_toml(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\nprotocol = \"http\"\n[[zones]]\nname = \"z\"\nhostnames = [\"a.test\"]\n[[zones.origins.servers]]\naddress = \"127.0.0.1:1\"\n",
            "<test>",
        )
        .unwrap();
        let config = edgenet_config::validate(&config, std::path::Path::new(".")).unwrap();
        let mut req = RequestHeader::build("GET", b"/p?q=1", None).unwrap();
        req.insert_header("host", "A.test:8080").unwrap();
        let url = cache_url(None, &req);
        let key = cache_key(&config.zones[0].name, "https", &url, None, &req);
        let plain = CacheKey::new(key.primary_key().to_vec(), "");
        assert_eq!(key.primary_bin(), plain.primary_bin());
        assert_eq!(
            key.primary_key_str().map(|s| s.contains("a.test/p?q=1")),
            Some(true)
        );
    }
}
