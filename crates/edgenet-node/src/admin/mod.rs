//! The admin listener: `/metrics` (Prometheus text), `/health` (the process is alive),
//! `/ready` (the node wants traffic: configured and not draining), `POST /cache/purge`, and with
//! anycast configured `GET /anycast`, `POST /anycast/drain` and `POST /anycast/undrain`.
//!
//! Reading is open; every call that is not GET or HEAD changes state and needs a token over
//! TCP (`auth.rs`), or comes over the admin Unix socket.

pub mod auth;

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::node::Node;

/// The admin HTTP app.
pub struct Admin {
    /// The node.
    pub node: Arc<Node>,
    /// Serving the Unix socket, whose file mode decides who calls: no token is asked for.
    pub socket: bool,
}

fn text(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .expect("valid static response")
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let method = &session.req_header().method;
        if !self.socket && method != http::Method::GET && method != http::Method::HEAD {
            let authorization = session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION);
            if let Err(refusal) = self
                .node
                .admin_keys
                .check(authorization.map(|v| v.as_bytes()))
            {
                let client = session.client_addr().map(|a| a.to_string());
                tracing::warn!(%method, %path, client = ?client, %refusal, "admin: call refused");
                let mut r = json_error(401, refusal.to_string());
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"edgenet admin\""),
                );
                return r;
            }
        }
        match path.as_str() {
            "/metrics" => {
                self.update_cache_gauges();
                if let Some(a) = self.node.anycast.get() {
                    a.update_metrics();
                }
                if let Some(t) = self.node.tunnels.get() {
                    t.update_metrics();
                }
                text(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.node.core.metrics.render(),
                )
            }
            "/health" => text(200, "text/plain", b"ok\n".to_vec()),
            "/cache/purge" => self.purge(session).await,
            "/backbone" => json(
                200,
                serde_json::json!({"success": true, "result": self.node.core.backbone.status_json(&self.node.core.name)}),
            ),
            "/anycast" | "/anycast/drain" | "/anycast/undrain" => self.anycast(session, &path),
            "/ready" => {
                let snap = self.node.core.snapshot.load();
                if self.node.is_ready() {
                    text(
                        200,
                        "text/plain",
                        format!("ready, config version {}\n", snap.version).into_bytes(),
                    )
                } else {
                    text(503, "text/plain", b"draining\n".to_vec())
                }
            }
            _ => text(
                404,
                "text/plain",
                b"not found: try /metrics, /health, /ready, /anycast, POST /cache/purge\n".to_vec(),
            ),
        }
    }
}

/// The body of `POST /cache/purge`: a zone and exactly one of the purge kinds.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    zone: String,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    prefixes: Option<Vec<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    everything: bool,
}

/// The largest purge request body read.
const MAX_PURGE_BODY: usize = 1 << 20;

fn json(status: u16, value: serde_json::Value) -> Response<Vec<u8>> {
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    text(status, "application/json", body)
}

fn json_error(status: u16, message: String) -> Response<Vec<u8>> {
    json(
        status,
        serde_json::json!({"success": false, "errors": [{"message": message}]}),
    )
}

impl Admin {
    /// `GET /anycast` (status), `POST /anycast/drain`, `POST /anycast/undrain`.
    fn anycast(&self, session: &ServerSession, path: &str) -> Response<Vec<u8>> {
        let Some(a) = self.node.anycast.get() else {
            return json_error(404, "anycast is not configured on this node".into());
        };
        let method = &session.req_header().method;
        match (path, method == http::Method::POST) {
            ("/anycast", _) => json(
                200,
                serde_json::json!({"success": true, "result": a.status_json()}),
            ),
            ("/anycast/drain", true) | ("/anycast/undrain", true) => {
                let drain = path == "/anycast/drain";
                if drain {
                    a.drain();
                } else {
                    a.undrain();
                }
                tracing::info!(drain, "anycast: drain changed by the admin API");
                json(
                    200,
                    serde_json::json!({"success": true, "result": a.status_json()}),
                )
            }
            _ => json_error(405, "use POST".into()),
        }
    }

    /// Storage-level cache figures are read from the tiers when scraped.
    fn update_cache_gauges(&self) {
        let m = &self.node.core.metrics;
        let tier = |name: &str, stored: u64, objects: usize, evicted: u64| {
            m.cache_stored_bytes
                .with_label_values(&[name])
                .set(stored as i64);
            m.cache_objects
                .with_label_values(&[name])
                .set(objects as i64);
            let evictions = m.cache_evictions.with_label_values(&[name]);
            evictions.inc_by(evicted.saturating_sub(evictions.get()));
        };
        let memory = self.node.core.cache.memory;
        tier(
            "memory",
            memory.stored_bytes() as u64,
            memory.len(),
            memory.evictions(),
        );
        if let Some(disk) = self.node.core.cache.disk {
            tier("disk", disk.stored_bytes(), disk.len(), disk.evictions());
            let errors = &m.cache_disk_errors;
            errors.inc_by(disk.errors().saturating_sub(errors.get()));
            let corrupt = &m.cache_disk_corrupt;
            corrupt.inc_by(disk.corrupt().saturating_sub(corrupt.get()));
            m.cache_disk_up.set(i64::from(!disk.is_failed()));
        }
    }

    /// `POST /cache/purge` with `{"zone": "z", "urls": [...]}` (or `prefixes`, `tags`,
    /// `everything: true`). Effective for the next request.
    async fn purge(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            return json_error(405, "use POST with a JSON body".into());
        }
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_PURGE_BODY {
                        return json_error(413, format!("body over {MAX_PURGE_BODY} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return json_error(400, format!("reading the body: {e}")),
            }
        }
        let req: PurgeBody = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return json_error(400, format!("body: {e}")),
        };
        let snapshot = self.node.core.snapshot.load();
        let Some(zone) = snapshot.config.zones.iter().find(|z| z.name == req.zone) else {
            return json_error(
                404,
                format!("zone: {:?} is not served by this node", req.zone),
            );
        };
        let spec = edgenet_protocol::purge::PurgeSpec {
            files: req
                .urls
                .unwrap_or_default()
                .into_iter()
                .map(edgenet_protocol::purge::PurgeFile::Url)
                .collect(),
            prefixes: req.prefixes.unwrap_or_default(),
            tags: req.tags.unwrap_or_default(),
            hosts: Vec::new(),
            purge_everything: req.everything,
        };
        let named = [
            !spec.files.is_empty(),
            !spec.prefixes.is_empty(),
            !spec.tags.is_empty(),
            spec.purge_everything,
        ];
        let target = match spec.target() {
            Some(t) if named.iter().filter(|n| **n).count() == 1 => t,
            _ => {
                return json_error(
                    400,
                    "give exactly one of urls, prefixes, tags or everything: true".into(),
                )
            }
        };
        let purge = match edgenet_proxy::stages::cache::purge_request(zone, target) {
            Ok(p) => p,
            Err(e) => return json_error(400, e),
        };
        let rules =
            self.node
                .core
                .cache
                .purges
                .purge(&req.zone, &purge, std::time::SystemTime::now());
        tracing::info!(zone = %req.zone, ?purge, "cache purge");
        // Kept beside the disk tier before it is answered: a restart right after does not
        // bring the purged objects back.
        let core = self.node.core.clone();
        match tokio::task::spawn_blocking(move || core.cache.save_purges()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return json_error(
                    500,
                    format!("purge applied in memory, but the rules cannot be saved: {e}"),
                )
            }
            Err(e) => return json_error(500, format!("saving the purge rules: {e}")),
        }
        json(
            200,
            serde_json::json!({"success": true, "result": {"zone": req.zone, "rules": rules}}),
        )
    }
}
