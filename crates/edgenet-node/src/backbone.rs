//! The backbone in the node: the listener's TLS (client certificates required and verified
//! against the control plane's CA), and the [`Prober`], which every second measures the other
//! PoPs (`/.edgenet/ping` over the mutually authenticated backbone) and every origin server
//! (`HEAD`, with the zone's connection settings) over pooled connections, pulls what the other
//! PoPs measured (`/.edgenet/links`), and re-decides each origin's route with
//! `edgenet_backbone::paths` (at most one relay).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edgenet_proxy::adapter::peers::origin_peer;
use edgenet_proxy::backbone::{pop_dns_name, BackboneFiles, Links};
use edgenet_proxy::stages::path::{LINKS_PATH, PING_PATH};
use pingora_core::connectors::http::Connector;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;

use crate::node::Node;

/// The listener's TLS: our certificate, client certificates required and verified against
/// the backbone CA, HTTP/2 offered.
pub fn server_tls(files: &BackboneFiles) -> anyhow::Result<TlsSettings> {
    let path = |p: &Path| {
        p.to_str()
            .map(String::from)
            .ok_or_else(|| anyhow::anyhow!("{}: not UTF-8", p.display()))
    };
    let mut tls = TlsSettings::intermediate(&path(&files.cert)?, &path(&files.key)?)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in edgenet_config::read_certs(&files.ca)
        .map_err(|e| anyhow::anyhow!("{}: {e}", files.ca.display()))?
    {
        roots
            .add(c)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.ca.display()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| anyhow::anyhow!("backbone client verifier: {e}"))?;
    tls.set_client_cert_verifier(verifier);
    tls.enable_h2();
    Ok(tls)
}
/// A GET (or HEAD) with the backbone's headers, over a pooled connection.
async fn backbone_get(
    connector: &Connector,
    peer: &HttpPeer,
    method: &str,
    path: &str,
    host: &str,
) -> Result<(u16, Vec<u8>, Duration), String> {
    let mut req =
        RequestHeader::build(method, path.as_bytes(), None).map_err(|e| format!("request: {e}"))?;
    let _ = req.insert_header("host", host);
    let _ = req.insert_header("user-agent", "edgenet-backbone");
    let work = crate::health::exchange(connector, peer, Box::new(req), true);
    tokio::time::timeout(PROBE_EVERY, work)
        .await
        .map_err(|_| format!("no answer within {PROBE_EVERY:?}"))?
}

/// Probes the other PoPs and the origins, pulls what the other PoPs measured, and re-decides
/// the route to each origin, every second.
pub struct Prober {
    /// The node.
    pub node: Arc<Node>,
}

/// Time between probe rounds.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let connector = Arc::new(Connector::new(None));
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            self.round(&connector).await;
        }
    }
}

impl Prober {
    async fn round(&self, connector: &Arc<Connector>) {
        let core = &self.node.core;
        if !self.node.peers.has_backbone() {
            return;
        }
        let me = core.name.clone();
        let pops = core.pops.load_full();
        let state = &core.backbone;
        state.retain_pops(&pops);
        let mut tasks = tokio::task::JoinSet::new();
        for (name, addr) in pops.iter().filter(|(n, _)| **n != me) {
            let Some(peer) = self.node.peers.backbone(name, *addr) else {
                continue;
            };
            let (name, connector, core) = (name.clone(), connector.clone(), core.clone());
            tasks.spawn(async move {
                let host = pop_dns_name(&name);
                let rtt = backbone_get(&connector, &peer, "GET", PING_PATH, &host)
                    .await
                    .ok()
                    .map(|(_, _, rtt)| rtt);
                core.backbone.observe_pop(&name, rtt);
                if let Ok((200, body, _)) =
                    backbone_get(&connector, &peer, "GET", LINKS_PATH, &host).await
                {
                    if let Ok(links) = serde_json::from_slice::<Links>(&body) {
                        core.backbone.learned(links);
                    }
                }
            });
        }
        // Each origin server once, probed with its zone's connection settings.
        let snapshot = core.snapshot.load_full();
        let mut origins = Vec::new();
        for zone in &snapshot.zones {
            for (idx, m) in zone.pool.members().iter().enumerate() {
                let addr = m.server.address;
                if origins.contains(&addr) {
                    continue;
                }
                origins.push(addr);
                let host = zone
                    .config
                    .hostnames
                    .iter()
                    .find_map(|h| match h {
                        edgenet_config::HostPattern::Exact(n) => Some(n.clone()),
                        edgenet_config::HostPattern::Wildcard(_) => None,
                    })
                    .unwrap_or_else(|| addr.ip().to_string());
                let peer = origin_peer(zone, idx, Some(&host));
                let path = zone
                    .config
                    .origins
                    .health_check
                    .as_ref()
                    .map_or("/".to_string(), |h| h.path.clone());
                let (connector, core) = (connector.clone(), core.clone());
                tasks.spawn(async move {
                    let rtt = backbone_get(&connector, &peer, "HEAD", &path, &host)
                        .await
                        .ok()
                        .map(|(_, _, rtt)| rtt);
                    core.backbone.observe_origin(addr, rtt);
                });
            }
        }
        while tasks.join_next().await.is_some() {}
        for c in state.decide(&me, &origins) {
            let to = if c.to.is_direct() {
                "direct".to_string()
            } else {
                format!("via {}", c.to.relays.join(" → "))
            };
            tracing::info!(origin = %c.origin, route = %to, cost_ms = c.cost, "backbone route");
        }
    }
}
