//! The three listeners of a PoP as three roles over one pipeline: [`Client`] (the client
//! listeners: every stage), [`Backbone`] (other PoPs over mutual TLS: their pings and shared
//! measurements, relayed requests, and lower tiers' misses, which enter at the cache stage)
//! and [`Subrequest`] (workers' own requests on a Unix socket, which enter at the cache stage
//! so no shield, rule or worker runs on them again). A role decides how its requests enter:
//! the stages it runs before the cache, and the request's [`Source`], which the later phases
//! read.

use std::future::Future;
use std::net::IpAddr;

use pingora_core::protocols::Digest;
use pingora_error::Result;
use pingora_proxy::Session;

use super::ctx::{Ctx, Source};
use super::heads::{respond_body, respond_error, respond_limited};
use super::Shared;
use crate::stages::path::{self, header_scheme, LINKS_PATH, PING_PATH, RELAY_HEADER, TIER_HEADER};
use crate::stages::shield::{self, Screen};
use crate::stages::url;
use crate::stages::{request, waf, zone};

/// How a listener's requests enter the pipeline.
pub trait Role: Send + Sync + 'static {
    /// Stages 3 to 7 for a request on this listener (its snapshot and id are set): true when
    /// the request was answered, false when it goes on to the cache.
    fn admit(
        &self,
        p: &Shared,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// The client listeners.
pub struct Client;

/// The backbone listener: other PoPs, authenticated by their certificates.
pub struct Backbone;

/// The subrequest listener: the node's workers.
pub struct Subrequest;

impl Role for Client {
    async fn admit(&self, p: &Shared, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Over TLS the certificate was chosen by SNI: the Host must belong to the same zone.
        let sni = sni(session.digest());
        if p.check(session, ctx).await
            || p.challenge(session).await
            || p.route(session, ctx, sni.as_deref()).await
        {
            return Ok(true);
        }
        if p.screen(session, ctx).await {
            return Ok(true);
        }
        p.worker(session, ctx).await
    }
}

impl Role for Backbone {
    async fn admit(&self, p: &Shared, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let path = session.req_header().uri.path();
        if path == PING_PATH {
            respond_body(session, 200, "text/plain", b"pong\n".to_vec(), None).await;
            return Ok(true);
        }
        if path == LINKS_PATH {
            let links = p.core.backbone.own_links(&p.core.name);
            let body = serde_json::to_vec(&links).unwrap_or_default();
            respond_body(session, 200, "application/json", body, None).await;
            return Ok(true);
        }
        let headers = &session.req_header().headers;
        if let Some(target) = headers.get(RELAY_HEADER) {
            let snapshot = ctx.req.snapshot.clone().expect("set on entry");
            return match path::relay_target(&snapshot, target) {
                Ok((zone, server)) => {
                    ctx.req.source = Source::Relayed { zone, server };
                    Ok(false)
                }
                Err(r) => {
                    respond_error(&p.core, session, ctx, r.status, r.reason).await;
                    Ok(true)
                }
            };
        }
        if let Some(pop) = headers.get(TIER_HEADER).and_then(|v| v.to_str().ok()) {
            ctx.req.source = Source::LowerTier {
                pop: pop.to_string(),
                scheme: header_scheme(headers),
            };
        }
        // The backbone's server name is the PoP's own: no SNI check.
        if p.check(session, ctx).await || p.route(session, ctx, None).await {
            return Ok(true);
        }
        // A lower tier ran the shield, the rules and the worker already.
        if ctx.from_lower_tier() {
            return Ok(false);
        }
        if p.screen(session, ctx).await {
            return Ok(true);
        }
        p.worker(session, ctx).await
    }
}

impl Role for Subrequest {
    async fn admit(&self, p: &Shared, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // A worker's request: its scheme is part of the cache key.
        let scheme = header_scheme(&session.req_header().headers);
        ctx.req.source = Source::Subrequest { scheme };
        Ok(p.check(session, ctx).await || p.route(session, ctx, None).await)
    }
}

fn sni(digest: Option<&Digest>) -> Option<String> {
    let ssl = digest?.ssl_digest.as_ref()?;
    ssl.extension
        .get::<crate::adapter::Sni>()
        .and_then(|s| s.0.clone())
}

pub(crate) fn is_tls(digest: Option<&Digest>) -> bool {
    digest.is_some_and(|d| d.ssl_digest.is_some())
}

pub(crate) fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The steps the roles share, in pipeline order; each returns true when it answered.
impl Shared {
    /// Stage 3: the body timeouts, and the request head checks (400).
    async fn check(&self, session: &mut Session, ctx: &mut Ctx) -> bool {
        let snapshot = ctx.req.snapshot.clone().expect("set on entry");
        let limits = &snapshot.config.limits;
        // Pingora's read timeout applies per read of the body (nginx's client_body_timeout).
        session.set_read_timeout(Some(limits.body_timeout));
        session.set_total_drain_timeout(Some(limits.body_timeout));
        let req = session.req_header();
        let raw_head = || session.as_http1().map(|h1| h1.get_headers_raw_bytes());
        let checked = request::check(
            req,
            req.raw_path().len(),
            limits.max_request_header_bytes,
            raw_head,
        );
        match checked {
            Ok(()) => false,
            Err(r) => {
                respond_error(&self.core, session, ctx, r.status, r.reason).await;
                true
            }
        }
    }

    /// Stage 3b: an ACME HTTP-01 challenge the control plane streamed.
    async fn challenge(&self, session: &mut Session) -> bool {
        let challenges = self.core.challenges.load();
        if challenges.is_empty() {
            return false;
        }
        let req = session.req_header();
        let host = zone::authority(req)
            .0
            .map(edgenet_http::host::host_without_port);
        let Some(answer) = challenges.http01(host, req.uri.path()) else {
            return false;
        };
        let body = answer.as_bytes().to_vec();
        respond_body(session, 200, "text/plain", body, None).await;
        true
    }

    /// Stage 4: the zone (421, or 400 for an absolute-form target not served here), then its
    /// URL normalisation (400 for a path that cannot be normalised safely).
    async fn route(&self, session: &mut Session, ctx: &mut Ctx, sni: Option<&str>) -> bool {
        let snapshot = ctx.req.snapshot.clone().expect("set on entry");
        let routed = zone::route(&snapshot.router, session.req_header(), sni).and_then(|z| {
            ctx.req.zone = Some(z);
            // Stage 4b: every later stage reads the normalised path.
            let req = session.req_header();
            let n = &snapshot.zones[z].config.url_normalization;
            url::normalize(n, &req.uri, req.raw_path())
        });
        match routed {
            Ok(None) => false,
            Ok(Some((uri, original))) => {
                session.req_header_mut().set_uri(uri);
                ctx.req.original = Some(original);
                false
            }
            Err(r) => {
                respond_error(&self.core, session, ctx, r.status, r.reason).await;
                true
            }
        }
    }

    /// Stages 5 and 6: DDoS mitigation, the WAF, rate limits.
    async fn screen(&self, session: &mut Session, ctx: &mut Ctx) -> bool {
        let snapshot = ctx.req.snapshot.clone().expect("set on entry");
        let z = &snapshot.zones[ctx.req.zone.expect("routed")];
        if !shield::guarded(z) {
            return false;
        }
        let screened = {
            let req = session.req_header();
            let ssl = is_tls(session.digest());
            let ja4 = session
                .digest()
                .filter(|_| ssl)
                .and_then(|d| super::peers::hello_key(d.socket_digest.clone()))
                .and_then(|k| self.core.hellos.get(k));
            let host = zone::authority(req).0.unwrap_or("");
            let ip = client_ip(session).unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let mut view = waf::RequestView::new(req, req.raw_path(), host.as_bytes(), ip, ssl);
            view.ja4 = ja4.as_deref();
            view.original = ctx.req.original.as_ref();
            shield::screen(z, &view, &self.core.shield, &mut ctx.log.waf)
        };
        match screened {
            Screen::Pass => false,
            Screen::Mitigated { retry_after } => {
                ctx.log.rate_limit = Some("ddos:block".into());
                respond_limited(&self.core, session, "ddos", retry_after).await;
                true
            }
            Screen::Blocked(idx) => {
                let rule = &z.config.waf[idx];
                let ctype = "text/plain; charset=utf-8";
                let body = rule.body.clone().into_bytes();
                respond_body(session, rule.status, ctype, body, None).await;
                true
            }
            Screen::Limited(l) => {
                let id = &z.config.rate_limits[l.rule].id;
                ctx.log.rate_limit =
                    Some(format!("{id}:{}", if l.block { "block" } else { "log" }));
                if l.block {
                    respond_limited(&self.core, session, id, l.retry_after_secs).await;
                }
                l.block
            }
        }
    }

    /// Stage 7: a worker, if a route matches.
    async fn worker(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let snapshot = ctx.req.snapshot.clone().expect("set on entry");
        let z = &snapshot.zones[ctx.req.zone.expect("routed")];
        if z.workers.is_empty() {
            return Ok(false);
        }
        let req = session.req_header();
        let host = zone::authority(req).0.unwrap_or("");
        let host = edgenet_http::host::host_without_port(host).to_ascii_lowercase();
        let Some(w) = z.config.worker_for(&host, req.uri.path()) else {
            return Ok(false);
        };
        let scheme = super::client_scheme(session, ctx);
        let client = client_ip(session);
        super::worker::run(&self.core, session, ctx, z, w, &host, scheme, client).await?;
        Ok(true)
    }
}
