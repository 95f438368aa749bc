//! The smallest Pingora reverse proxy: one HTTP listener, one origin, no edge logic beyond the
//! headers the benchmark's proxies add (X-Forwarded-For, X-Forwarded-Proto, X-Request-Id).
//! `bench/engines.sh` runs it beside `plain_hyper` and edgenet to tell the engine's own cost
//! from edgenet's.
//!
//! With a TLS address, certificate and key it also listens for TLS (rustls, ALPN `h2`).
//!
//! Usage: plain_pingora LISTEN_ADDR ORIGIN_ADDR [TLS_ADDR CERT_PEM KEY_PEM]

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: plain_pingora LISTEN_ADDR ORIGIN_ADDR [TLS_ADDR CERT_PEM KEY_PEM]");
        std::process::exit(2);
    }
    let (listen, origin) = (args[0].clone(), args[1].clone());
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        // As edgenet's: Pingora's default (128) closes upstream connections beyond it, which
        // at 1,000 client connections means a new origin connection per request.
        upstream_keepalive_pool_size: 1024,
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
    if let [addr, cert, key] = &args[2.min(args.len())..] {
        let mut tls = pingora_core::listeners::tls::TlsSettings::intermediate(cert, key)
            .expect("CERT_PEM and KEY_PEM");
        tls.enable_h2();
        proxy.add_tls_with_settings(addr, None, tls);
    }
    server.add_service(proxy);
    server.run_forever();
}
