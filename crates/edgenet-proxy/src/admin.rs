//! The admin listener: `/metrics` (Prometheus text), `/health` (the process is alive) and
//! `/ready` (the node wants traffic: configured and not draining).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::state::Node;

/// The admin HTTP app.
pub struct Admin {
    /// The node.
    pub node: Arc<Node>,
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
        match path.as_str() {
            "/metrics" => text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.node.metrics.render(),
            ),
            "/health" => text(200, "text/plain", b"ok\n".to_vec()),
            "/ready" => {
                let snap = self.node.snapshot.load();
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
                b"not found: try /metrics, /health or /ready\n".to_vec(),
            ),
        }
    }
}
