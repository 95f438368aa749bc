//! The smallest Pingora reverse proxy: one HTTP listener, one origin, no edge logic. Used by
//! `bench/proxy.sh BASELINE=1` to tell Pingora's own cost from edgenet's.
//!
//! Usage: plain_pingora LISTEN_ADDR ORIGIN_ADDR

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

struct Plain {
    origin: String,
}

#[async_trait]
impl ProxyHttp for Plain {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
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
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Plain { origin });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
