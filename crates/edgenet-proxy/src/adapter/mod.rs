//! The adapter: the only module that knows Pingora. Its `ProxyHttp` phases call the stages in
//! the order of DESIGN.md section 1 and carry their decisions to the engine:
//!
//! ```text
//! request_filter            role: 3 request, 4 zone, 5 shield, 6 waf, 7 worker
//! request_cache_filter      8 cache: admit (rule, enabled)
//! cache_key_callback        8 cache: the key
//! cache_hit_filter          8 cache: purged? revalidate?
//! upstream_peer             10 path (relayed, upper tier, relay) and 9 origin
//! connected_to_upstream     9 origin: the connection worked
//! fail_to_connect           10/9: tier or relay down -> direct; ejection, retries
//! error_while_proxy         10/9: what may be retried mid-request
//! upstream_request_filter   forwarding fields, the Host, request header rules, backbone marks
//! upstream_response_filter  a 304's fields (for the merge), time to the origin's head
//! response_cache_filter     8 cache: store it, and for how long
//! response_filter           11 respond: forwarding, header rules, invalidation, Age, Cache-Status
//! fail_to_proxy             11 respond: the failure as a status and an error page
//! logging                   11 respond: metrics and the access log line
//! ```
//!
//! A listener's proxy is `EdgeProxy<R>` for its [`roles::Role`]; the three share one
//! [`Shared`] core.

mod cache;
pub mod ctx;
mod heads;
pub mod peers;
pub mod roles;
mod worker;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use http::header::{HeaderValue, HOST};
use http::Version;
use pingora_cache::key::HashBinary;
use pingora_cache::storage::HitHandler;
use pingora_cache::{
    CacheKey, CacheMeta, CachePhase, ForcedFreshness, NoCacheReason, RespCacheable,
};
use pingora_core::protocols::Digest;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::access_log::{now_rfc3339, Entry};
use crate::core::Core;
use crate::forwarding::{prepare_downstream_response, prepare_upstream_request, ClientInfo};
use crate::header_rules::apply_header_rules;
use crate::stages::path::{RELAY_HEADER, SCHEME_HEADER, TIER_HEADER};
use crate::stages::respond::{self, CacheOutcome, Failure, REQUEST_ID};
use crate::stages::{self, origin, path, zone};
use ctx::{Ctx, Source, Via};
pub use peers::Peers;
use roles::{client_ip, is_tls, Role};

/// The SNI a client sent, attached to the connection's TLS digest by the listener.
#[derive(Debug, Clone)]
pub struct Sni(pub Option<String>);

/// What every listener's proxy shares: the pipeline's state and the engine's peers.
#[derive(Clone)]
pub struct Shared {
    /// The pipeline's state.
    pub core: Arc<Core>,
    /// Pingora's view of the backbone identity.
    pub peers: Arc<Peers>,
}

/// The proxy of one listener role.
pub struct EdgeProxy<R> {
    shared: Shared,
    role: R,
}

impl<R: Role> EdgeProxy<R> {
    /// The proxy of `role` over `shared`.
    pub fn new(shared: Shared, role: R) -> EdgeProxy<R> {
        EdgeProxy { shared, role }
    }

    fn core(&self) -> &Core {
        &self.shared.core
    }
}

/// The scheme the client used: the lower tier's client's for a tiered request, the worker's
/// for a worker's request, else the connection's.
fn client_scheme(session: &Session, ctx: &Ctx) -> &'static str {
    match &ctx.req.source {
        Source::LowerTier { scheme, .. } | Source::Subrequest { scheme } => scheme,
        Source::Client | Source::Relayed { .. } if is_tls(session.digest()) => "https",
        Source::Client | Source::Relayed { .. } => "http",
    }
}

fn client_info<'a>(core: &'a Core, session: &'a Session) -> ClientInfo<'a> {
    let req = session.req_header();
    ClientInfo {
        ip: client_ip(session),
        proto: if is_tls(session.digest()) {
            "https"
        } else {
            "http"
        },
        host: zone::authority(req).0,
        via: &core.via[respond::via_index(req.version)],
    }
}

/// A Pingora error as the respond stage classifies failures.
fn failure(e: &Error) -> Failure {
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(code), _) => Failure::Status(*code),
        (
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ErrorSource::Upstream,
        ) => Failure::UpstreamTimeout,
        (_, ErrorSource::Upstream) => Failure::Upstream,
        (
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => Failure::ClientGone,
        // limits.body_timeout: the client stopped sending its body.
        (ErrorType::ReadTimedout, ErrorSource::Downstream) => Failure::ClientTimeout,
        (_, ErrorSource::Downstream) => Failure::Client,
        (_, ErrorSource::Internal | ErrorSource::Unset) => Failure::Internal,
    }
}

#[async_trait]
impl<R: Role> ProxyHttp for EdgeProxy<R> {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(&self.shared.core)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // The request keeps this snapshot: a reload never changes the rules under it.
        ctx.req.snapshot = Some(self.core().snapshot.load_full());
        ctx.req.id = self.core().next_request_id();
        self.role.admit(&self.shared, session, ctx).await
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let Some(zone) = ctx.zone() else {
            return Ok(());
        };
        let (rule, enabled) = stages::cache::admit(zone, session.req_header());
        ctx.cache.rule = rule;
        if enabled {
            cache::enable(self.core(), session);
            ctx.cache.enabled = true;
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        let zone = ctx
            .zone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "cache without a zone"))?;
        let scheme = client_scheme(session, ctx);
        let req = session.req_header();
        let rule = ctx.cache_rule();
        let url = stages::cache::url(rule, req);
        let key =
            edgenet_cache::key::cache_key(&zone.config.name, scheme, &url, rule, &req.headers);
        ctx.cache.url = Some(url);
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
        let (Some(zone), Some(url)) = (ctx.zone(), ctx.cache.url.as_deref()) else {
            return Ok(None);
        };
        let request = &session.req_header().headers;
        let hit = stages::cache::hit(
            &self.core().cache,
            zone,
            url,
            meta.headers(),
            meta.created(),
            request,
        );
        Ok(match hit {
            stages::cache::Hit::Serve => None,
            stages::cache::Hit::Purged => {
                ctx.cache.purged = true;
                Some(ForcedFreshness::ForceMiss)
            }
            stages::cache::Hit::Revalidate => {
                ctx.cache.revalidate_by_request = true;
                Some(ForcedFreshness::ForceExpired)
            }
        })
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        // pingora-cache merges only a few fields of a 304, and takes its ETag; RFC 9111
        // section 4.3.4 wants them all (Date and Age above all, or the refreshed response would
        // still look old), and section 3.2 keeps the stored ETag: merge into what was stored.
        let merged = ctx.cache.not_modified.take().map(|fields| {
            let stored = session
                .cache
                .maybe_cache_meta()
                .map_or(resp, |m| m.response_header());
            edgenet_cache::merge_not_modified(stored, &fields)
        });
        let Some(zone) = ctx.zone() else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
        };
        let now = SystemTime::now();
        let resp = merged.as_ref().unwrap_or(resp);
        let decision =
            stages::cache::storage(zone, ctx.cache_rule(), session.req_header(), resp, now);
        if let edgenet_cache::Decision::DoNotStore(reason) = decision {
            ctx.cache.not_stored = Some(reason);
        }
        Ok(cache::cacheable(decision, resp, now))
    }

    fn cache_not_modified_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<bool> {
        // pingora's own check ignores If-Modified-Since when there is no Last-Modified.
        let received = session
            .cache
            .maybe_cache_meta()
            .map_or_else(SystemTime::now, |m| m.created());
        let req = session.req_header();
        Ok(edgenet_cache::policy::not_modified(
            &req.method,
            &req.headers,
            &resp.headers,
            received,
        ))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut Ctx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        edgenet_cache::key::variance(meta.headers(), &req.headers)
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
        let snapshot = ctx.req.snapshot.clone().expect("set in request_filter");
        if let Source::Relayed { zone, server } = ctx.req.source {
            // At a relay: straight to the origin the sending PoP chose, with its zone's settings.
            let host = zone::authority(session.req_header()).0;
            ctx.upstream.start = Some(Instant::now());
            return Ok(Box::new(peers::origin_peer(
                &snapshot.zones[zone],
                server,
                host,
            )));
        }
        let zone = ctx
            .zone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no zone chosen"))?;
        // Stage 10: a miss of a tiered zone goes to its upper tier, once (not for a lower
        // tier's own request, and not after the tier failed).
        let peers = &self.shared.peers;
        if !ctx.from_lower_tier() && !ctx.upstream.tier_failed && peers.has_backbone() {
            let key = ctx.cache.url.as_deref().unwrap_or(&ctx.req.id);
            if let Some((name, address)) = path::upper_tier(self.core(), zone, key) {
                let peer = peers.backbone(&name, address).expect("has a backbone");
                ctx.upstream.via = Some(Via::Tier(name));
                ctx.upstream.start = Some(Instant::now());
                return Ok(Box::new(peer));
            }
        }
        let Some(idx) = origin::select(zone, &ctx.upstream.tried, Instant::now()) else {
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "every origin of the zone has been tried",
            )
            .into_up());
        };
        let host = origin::host(zone, zone::authority(session.req_header()).0);
        let mut peer = peers::origin_peer(zone, idx, host);
        let origin = zone.pool.members()[idx].server.address;
        // Without a backbone identity there are no relays: skip the lookup.
        if !ctx.upstream.relay_failed && peers.has_backbone() {
            if let Some((relay, addr)) = path::relay(self.core(), origin) {
                peer = peers.backbone(&relay, addr).expect("has a backbone");
                ctx.upstream.via = Some(Via::Relay(relay, origin));
            }
        }
        ctx.upstream.tried.push(idx);
        ctx.upstream.current = Some(idx);
        ctx.upstream.start = Some(Instant::now());
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
        if let (Some(zone), Some(idx)) = (ctx.zone(), ctx.upstream.current) {
            origin::connected(zone, idx);
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
        if let Some(Via::Relay(relay, origin)) = &ctx.upstream.via {
            // The relay failed mid-request: go direct, unless the client already has part of a
            // response (a second one would corrupt it) or the body cannot be replayed.
            let fresh = session.as_ref().response_written().is_none();
            tracing::warn!(%relay, %origin, error = %e, retry = fresh && replayable, "relay failed mid-request");
            ctx.upstream.via = None;
            ctx.upstream.relay_failed = true;
            ctx.upstream.tried.pop();
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
        match ctx.upstream.via.take() {
            Some(Via::Relay(relay, origin)) => {
                // The relay is down: this request goes direct (the same origin may be chosen).
                tracing::warn!(%relay, %origin, error = %e, "relay unreachable; fetching direct");
                ctx.upstream.relay_failed = true;
                ctx.upstream.tried.pop();
                e.set_retry(true);
                return e;
            }
            Some(Via::Tier(tier)) => {
                // The upper tier is down: this request goes to the origin itself.
                tracing::warn!(upper_tier = %tier, error = %e, "upper tier unreachable; fetching from the origin");
                ctx.upstream.tier_failed = true;
                e.set_retry(true);
                return e;
            }
            None => {}
        }
        if let (Some(zone), Some(idx)) = (ctx.zone(), ctx.upstream.current) {
            let idempotent = session.req_header().method.is_idempotent();
            let tried = ctx.upstream.tried.len();
            if origin::connect_failed(zone, idx, idempotent, tried, Instant::now(), &e) {
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
        if let Source::Relayed { .. } = ctx.req.source {
            // A relay is a transport: the sending PoP prepared the request for the origin.
            upstream.remove_header(RELAY_HEADER);
            return Ok(());
        }
        let upgrade = session.is_upgrade_req();
        prepare_upstream_request(upstream, &client_info(self.core(), session), upgrade);
        let Some(zone) = ctx.zone() else {
            return Ok(());
        };
        // The origin (and an upper tier, which normalises again) gets the target as sent
        // unless the zone sends it normalised.
        if let Some(original) = &ctx.req.original {
            if !zone.config.url_normalization.to_origin {
                upstream.set_raw_path(original.target())?;
            }
        }
        match &ctx.req.source {
            Source::LowerTier { .. } => {
                upstream.remove_header(TIER_HEADER);
                upstream.remove_header(SCHEME_HEADER);
            }
            Source::Subrequest { .. } => {
                upstream.remove_header(SCHEME_HEADER);
            }
            Source::Client | Source::Relayed { .. } => {}
        }
        if let Some(Via::Tier(_)) = ctx.upstream.via {
            // The upper tier routes by the client's Host and applies the zone's request rules
            // itself when it goes to the origin.
            upstream.insert_header(TIER_HEADER, self.core().name.as_str())?;
            upstream.insert_header(SCHEME_HEADER, client_scheme(session, ctx))?;
            if let Ok(v) = HeaderValue::from_str(&ctx.req.id) {
                upstream.insert_header(REQUEST_ID, v)?;
            }
            return Ok(());
        }
        if let Some(h) = &zone.config.host_header {
            upstream.insert_header(HOST, h.clone())?;
        } else if upstream.headers.get(HOST).is_none() {
            // HTTP/2 clients send :authority instead of Host; HTTP/1.1 origins need Host.
            if let Some(a) = zone::authority(session.req_header()).0 {
                upstream.insert_header(HOST, a.to_owned())?;
            }
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.req.id) {
            upstream.insert_header(REQUEST_ID, v)?;
        }
        apply_header_rules(&zone.config.request_headers, upstream);
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
        match &ctx.upstream.via {
            // The relay is reached over HTTP/2 when it offers it: Pingora sets the version for
            // the connection it got; the relay speaks HTTP/1.1 to the origin.
            Some(Via::Relay(_, origin)) => {
                upstream.insert_header(RELAY_HEADER, origin.to_string())?;
            }
            _ => upstream.set_version(Version::HTTP_11),
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
            ctx.cache.not_modified = Some(upstream_response.headers.clone());
            ctx.cache.not_modified_cookies = upstream_response
                .headers
                .get_all(http::header::SET_COOKIE)
                .iter()
                .cloned()
                .collect();
        }
        if let (Some(start), None) = (ctx.upstream.start, ctx.upstream.ms) {
            let elapsed = start.elapsed();
            ctx.upstream.ms = Some(elapsed.as_secs_f64() * 1000.0);
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
        // Draining (SIGTERM, or handing over to a new process): this response is the
        // connection's last, and says so, so the client does not send another into a close.
        if session.is_process_shutting_down() {
            session.set_keepalive(None);
        }
        // An HTTP/1.0 origin must not turn the client's HTTP/1.1 connection into HTTP/1.0.
        if session.req_header().version == Version::HTTP_11 {
            resp.set_version(Version::HTTP_11);
        }
        prepare_downstream_response(resp, &client_info(self.core(), session), upgrade);
        // A lower tier applies the zone's response rules itself, and reads the fields only
        // this cache reads (Edgenet-CDN-Cache-Control, Surrogate-Control); a client never
        // sees them. CDN-Cache-Control goes on, for CDNs further down (as Cloudflare does).
        if !ctx.from_lower_tier() {
            for field in edgenet_cache::policy::OWN_FIELDS {
                resp.remove_header(field);
            }
            if let Some(zone) = ctx.zone() {
                apply_header_rules(&zone.config.response_headers, resp);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.req.id) {
            resp.insert_header(REQUEST_ID, v)?;
        }
        // A 304 that refreshed the stored response set cookies for this client alone.
        for cookie in std::mem::take(&mut ctx.cache.not_modified_cookies) {
            resp.append_header(http::header::SET_COOKIE, cookie)?;
        }
        let Some(zone) = ctx.zone() else {
            return Ok(());
        };
        let status = resp.status.as_u16();
        let req = session.req_header();
        let cache = &self.core().cache;
        stages::cache::invalidate_after(
            cache,
            zone,
            ctx.cache_rule(),
            req,
            &resp.headers,
            status,
            SystemTime::now(),
        );
        // Age of a response from cache (RFC 9111 section 4.2.3): the age it arrived with plus
        // the time it has been stored. pingora-cache counts only the latter.
        if cache::from_storage(session) {
            if let Some(meta) = session.cache.maybe_cache_meta() {
                let initial = edgenet_cache::policy::age_on_arrival(meta.headers(), meta.epoch());
                let age = (initial + meta.age()).as_secs();
                resp.insert_header(http::header::AGE, age.to_string())?;
            }
        }
        let observed = cache::observe(self.core(), session, ctx, status);
        let s = edgenet_cache::CacheStatus::observe(&observed);
        ctx.cache.outcome = Some(CacheOutcome {
            result: observed.result(),
            collapsed: s.collapsed,
            from_cache: s.hit,
        });
        let value = s.header_value(&self.core().name);
        let upstream = resp
            .headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok());
        let full = edgenet_cache::status::append(upstream, &value);
        if let Ok(v) = HeaderValue::from_str(&full) {
            resp.insert_header("cache-status", v)?;
        }
        ctx.cache.status = Some(value);
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (code, kind, reason) = respond::failure(failure(e));
        let connect_failure = matches!(
            e.etype(),
            ErrorType::ConnectTimedout
                | ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError
                | ErrorType::TLSHandshakeFailure
        );
        // Connect failures were counted when they happened (fail_to_connect).
        if e.esource() == &ErrorSource::Upstream && !connect_failure {
            if let Some(zone) = ctx.zone() {
                zone.metrics.upstream_error(kind.min(3));
            }
        }
        ctx.log.error = Some(e.to_string());
        if code > 0 && session.response_written().is_none() {
            heads::respond_error(self.core(), session, ctx, code, reason).await;
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
        let elapsed = ctx.req.start.elapsed();
        if ctx.log.error.is_none() {
            ctx.log.error = e.map(|e| e.to_string());
        }
        let error = ctx.log.error.take();
        let zone = ctx.zone();
        let metrics = match (zone, &ctx.req.snapshot) {
            (Some(z), _) => Some(&z.metrics),
            (None, Some(s)) => Some(&s.no_zone),
            (None, None) => None,
        };
        if let Some(m) = metrics {
            let sent = session.body_bytes_sent();
            respond::count(m, req.version, status, elapsed, ctx.cache.outcome, sent);
        }
        if !self.core().log.enabled() {
            return;
        }
        let origin = match (zone, ctx.upstream.current) {
            (Some(z), Some(i)) => Some(z.pool.members()[i].server.name.as_str()),
            _ => None,
        };
        let client = session
            .client_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let entry = Entry {
            time: now_rfc3339(),
            request_id: &ctx.req.id,
            zone: zone.map_or("-", |z| z.config.name.as_str()),
            client,
            protocol: respond::protocol_name(req.version),
            scheme: client_scheme(session, ctx),
            method: req.method.as_str(),
            host: zone::authority(req).0.unwrap_or(""),
            // As sent: what the client asked for, before normalisation.
            path: std::str::from_utf8(
                ctx.req
                    .original
                    .as_ref()
                    .map_or(req.raw_path(), |o| o.target()),
            )
            .unwrap_or("<non-utf8>"),
            status,
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            upstream_ms: ctx.upstream.ms,
            origin,
            attempts: ctx.upstream.tried.len() as u32,
            error,
            cache: ctx.cache.status.clone(),
            waf: ctx.log.waf.clone(),
            rate_limit: ctx.log.rate_limit.clone(),
            worker: ctx.log.worker.clone(),
        };
        self.core().log.log(&entry);
    }
}
