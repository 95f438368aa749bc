//! The probes behind the anycast checks: the node's own listeners (a TCP connect on each,
//! on loopback for a wildcard address), and the configured HTTP and TCP checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use edgenet_config::{AnycastCheck, CheckTarget};
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;

/// Every listener in `addrs` accepts a connection within `timeout`.
pub async fn probe_listeners(addrs: &[SocketAddr], timeout: Duration) -> Result<(), String> {
    for a in addrs {
        if let Err(e) = probe_tcp(local_target(*a), timeout).await {
            return Err(format!("listener {a}: {e}"));
        }
    }
    Ok(())
}

/// A wildcard listener is checked on loopback.
fn local_target(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v) if v.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port())
        }
        IpAddr::V6(v) if v.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), a.port())
        }
        _ => a,
    }
}

async fn probe_tcp(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
        Err(_) => Err(format!(
            "connect {addr}: no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

pub async fn probe(check: &AnycastCheck, connector: &Connector) -> Result<(), String> {
    let (address, tls, host, path) = match &check.target {
        CheckTarget::Tcp(a) => return probe_tcp(*a, check.timeout).await,
        CheckTarget::Http {
            address,
            tls,
            host,
            path,
        } => (address, tls, host, path),
    };
    let mut peer = HttpPeer::new(*address, *tls, host.clone());
    peer.options.connection_timeout = Some(check.timeout);
    peer.options.total_connection_timeout = Some(check.timeout);
    peer.options.read_timeout = Some(check.timeout);
    let mut req = RequestHeader::build("GET", path.as_bytes(), Some(3))
        .map_err(|e| format!("request: {e}"))?;
    let _ = req.insert_header("host", host.as_str());
    let _ = req.insert_header("user-agent", "edgenet-anycast-check");
    let _ = req.insert_header("connection", "close");
    let exchange = async {
        crate::health::exchange(connector, &peer, Box::new(req), false)
            .await
            .map(|(status, _, _)| status)
    };
    match tokio::time::timeout(check.timeout, exchange).await {
        Ok(Ok(s)) if (200..400).contains(&s) => Ok(()),
        Ok(Ok(s)) => Err(format!("status {s}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(check.timeout)
        )),
    }
}
