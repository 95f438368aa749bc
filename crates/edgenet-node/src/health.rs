//! Active health checks of origin servers: the IO around `edgenet_origin`'s state machine.
//!
//! One background task walks the running configuration every 100 ms and starts, for each
//! server whose check is due, a GET of the zone's health path over a fresh connection (TLS when
//! the zone talks TLS to its origins). Results feed [`edgenet_origin::OriginHealth`], which the
//! request path reads without locks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use edgenet_config::HealthCheck;
use edgenet_origin::Transition;
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;

use edgenet_proxy::adapter::peers::origin_peer;
use edgenet_proxy::{Core, ZoneRuntime};

/// The background service running every health check.
pub struct HealthChecker {
    /// The pipeline's state: its snapshot and metrics.
    pub core: Arc<Core>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let connector = Arc::new(Connector::new(None));
        let mut due: HashMap<(String, SocketAddr), Instant> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.core.snapshot.load_full();
            let now = Instant::now();
            for zone in &snapshot.zones {
                let Some(check) = &zone.config.origins.health_check else {
                    continue;
                };
                for (idx, member) in zone.pool.members().iter().enumerate() {
                    let key = (zone.config.name.clone(), member.server.address);
                    let next = due.entry(key).or_insert(now);
                    if *next > now {
                        continue;
                    }
                    *next = now + check.interval.max(check.timeout);
                    let peer = check_peer(zone, idx, check);
                    let req = check_request(check);
                    let connector = connector.clone();
                    let core = self.core.clone();
                    let zone_name = zone.config.name.clone();
                    let health = member.health.clone();
                    let origin = member.server.name.clone();
                    let (timeout, healthy, unhealthy) = (
                        check.timeout,
                        check.healthy_threshold,
                        check.unhealthy_threshold,
                    );
                    tokio::spawn(async move {
                        let result =
                            tokio::time::timeout(timeout, exchange(&connector, &peer, req, false))
                                .await
                                .map(|r| r.map(|(status, _, _)| status));
                        let outcome = match result {
                            Ok(Ok(status)) if (200..400).contains(&status) => Ok(status),
                            Ok(Ok(status)) => Err(format!("status {status}")),
                            Ok(Err(e)) => Err(e),
                            Err(_) => Err(format!(
                                "no answer within {}",
                                humantime::format_duration(timeout)
                            )),
                        };
                        let transition = health.observe_check(outcome.is_ok(), healthy, unhealthy);
                        if outcome.is_ok() {
                            // A passing check proves the server accepts connections again.
                            health.connect_succeeded();
                        }
                        core.metrics
                            .origin_up
                            .with_label_values(&[&zone_name, &origin])
                            .set(health.is_up() as i64);
                        match (transition, &outcome) {
                            (Some(Transition::BecameDown), Err(reason)) => tracing::warn!(
                                zone = %zone_name, %origin, %reason, "origin marked down by health checks"),
                            (Some(Transition::BecameUp), _) => tracing::info!(
                                zone = %zone_name, %origin, "origin marked up by health checks"),
                            _ => {}
                        }
                    });
                }
            }
            // Forget servers that left the configuration.
            due.retain(|(zone, addr), _| {
                snapshot.zones.iter().any(|z| {
                    &z.config.name == zone
                        && z.config.origins.health_check.is_some()
                        && z.config.origins.servers.iter().any(|s| s.address == *addr)
                })
            });
        }
    }
}

fn check_peer(zone: &ZoneRuntime, idx: usize, check: &HealthCheck) -> HttpPeer {
    let mut peer = origin_peer(zone, idx, Some(&check.host));
    peer.options.connection_timeout = Some(zone.config.origins.connect_timeout.min(check.timeout));
    peer.options.total_connection_timeout = peer.options.connection_timeout;
    peer.options.read_timeout = Some(check.timeout);
    peer
}

fn check_request(check: &HealthCheck) -> Box<RequestHeader> {
    let mut req = RequestHeader::build("GET", check.path.as_bytes(), Some(3))
        .expect("validated health check path");
    let _ = req.insert_header("host", check.host.as_str());
    let _ = req.insert_header("user-agent", "edgenet-health-check");
    let _ = req.insert_header("connection", "close");
    Box::new(req)
}

/// One request: the response status, the body (up to 1 MiB kept) and the time from sending
/// the head to the response head. With `reuse` the connection goes back to the pool, so a
/// repeated probe measures one round trip rather than a handshake; without it every request
/// opens a connection (a health check must see that new connections work).
pub async fn exchange(
    connector: &Connector,
    peer: &HttpPeer,
    req: Box<RequestHeader>,
    reuse: bool,
) -> Result<(u16, Vec<u8>, Duration), String> {
    let (mut session, _) = connector
        .get_http_session(peer)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let started = Instant::now();
    session
        .write_request_header(req)
        .await
        .map_err(|e| format!("write: {e}"))?;
    session
        .finish_request_body()
        .await
        .map_err(|e| format!("write: {e}"))?;
    session
        .read_response_header()
        .await
        .map_err(|e| format!("read: {e}"))?;
    let rtt = started.elapsed();
    let status = session
        .response_header()
        .map(|r| r.status.as_u16())
        .ok_or("no response")?;
    let mut body = Vec::new();
    if reuse {
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| format!("read: {e}"))?
        {
            if body.len() < 1 << 20 {
                body.extend_from_slice(&chunk);
            }
        }
        connector
            .release_http_session(session, peer, Some(Duration::from_secs(60)))
            .await;
    }
    Ok((status, body, rtt))
}
