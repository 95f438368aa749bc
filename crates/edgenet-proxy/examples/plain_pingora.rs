//! The smallest Pingora reverse proxy: one HTTP listener, one origin, no edge logic beyond the
//! headers the benchmark's proxies add (X-Forwarded-For, X-Forwarded-Proto, X-Request-Id).
//! `bench/engines.sh` runs it beside `plain_hyper` and edgenet to tell the engine's own cost
//! from edgenet's.
//!
//! Usage: plain_pingora LISTEN_ADDR ORIGIN_ADDR

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};

struct Plain {
    origin: String,
    ids: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl ProxyHttp for Plain {
    /// The request id.
    type CTX = String;
    fn new_ctx(&self) -> String {
        let n = self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{n:016x}")
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        id: &mut String,
    ) -> pingora_error::Result<()> {
        req.remove_header("connection");
        let ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        req.append_header("x-forwarded-for", ip)?;
        req.insert_header("x-forwarded-proto", "http")?;
        req.insert_header("x-request-id", id.as_str())?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        id: &mut String,
    ) -> pingora_error::Result<()> {
        resp.insert_header("x-request-id", id.as_str())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut String,
    ) -> pingora_error::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.origin.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (listen, origin) = match (args.next(), args.next()) {
        (Some(l), Some(o)) => (l, o),
        _ => {
            eprintln!("usage: plain_pingora LISTEN_ADDR ORIGIN_ADDR");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(
        &server.configuration,
        Plain {
            origin,
            ids: Default::default(),
        },
    );
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
