//! The backbone between PoPs: a listener with mutual TLS (certificates from the control
//! plane's CA, HTTP/2 offered) where other PoPs send their cache misses (tiered cache), and the
//! client side that sends a miss to an upper-tier PoP.
//!
//! A request that came over the backbone from a lower tier carries `x-edgenet-tier`; the upper
//! tier serves it through its own cache and goes to the origin itself, never to another tier,
//! so a request crosses the backbone at most once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use edgenet_backbone::paths::{Change, LinkEstimate, LinkState, Params, PathSelector};
use pingora_core::connectors::http::Connector;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::ALPN;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{CertKey, WrappedX509};
use pingora_http::RequestHeader;

use crate::lock;
use crate::state::Node;

/// Marks a request sent by a lower tier; its value is the lower tier's name.
pub const TIER_HEADER: &str = "x-edgenet-tier";
/// The scheme the lower tier's client used, which is part of the cache key (the same header
/// carries a worker's scheme on the subrequest listener).
pub const SCHEME_HEADER: &str = edgenet_workers::SCHEME_HEADER;

/// The scheme a request's [`SCHEME_HEADER`] names (`http` unless it says `https`).
pub fn header_scheme(headers: &http::HeaderMap) -> &'static str {
    match headers.get(SCHEME_HEADER).map(|v| v.as_bytes()) {
        Some(b"https") => "https",
        _ => "http",
    }
}

pub use edgenet_config::pop_dns_name;

/// Where a PoP's backbone identity is on disk.
#[derive(Debug, Clone)]
pub struct BackboneFiles {
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// The CA that signs every PoP's certificate (PEM).
    pub ca: PathBuf,
}

/// What the client side needs: our certificate and key, and the CA to verify peers with.
pub struct BackboneTls {
    client: Arc<CertKey>,
    ca: Arc<[WrappedX509]>,
}

fn wrap(der: &[u8]) -> WrappedX509 {
    WrappedX509::new(der.to_vec(), |raw| {
        pingora_core::utils::tls::parse_x509(raw)
    })
}

impl BackboneTls {
    /// Loads the identity.
    pub fn load(files: &BackboneFiles) -> anyhow::Result<BackboneTls> {
        let certs = edgenet_config::read_certs(&files.cert)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.cert.display()))?;
        let key = edgenet_config::read_key(&files.key)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.key.display()))?;
        let ca = edgenet_config::read_certs(&files.ca)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.ca.display()))?;
        let client = CertKey::new(
            certs.iter().map(|c| c.to_vec()).collect(),
            key.secret_der().to_vec(),
        );
        let ca: Vec<WrappedX509> = ca.iter().map(|c| wrap(c)).collect();
        Ok(BackboneTls {
            client: Arc::new(client),
            ca: Arc::from(ca.into_boxed_slice()),
        })
    }

    /// A peer for PoP `name` at `address`: TLS verified against the backbone CA for the
    /// PoP's name, our certificate offered, HTTP/2 preferred.
    pub fn peer(&self, name: &str, address: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(address, true, pop_dns_name(name));
        peer.client_cert_key = Some(self.client.clone());
        peer.options.ca = Some(self.ca.clone());
        peer.options.alpn = ALPN::H2H1;
        peer.options.connection_timeout = Some(std::time::Duration::from_secs(1));
        peer.options.total_connection_timeout = Some(std::time::Duration::from_secs(2));
        peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        peer
    }
}

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

/// PoP name → backbone address, from the control plane's PoP records.
pub type PopDirectory = HashMap<String, SocketAddr>;

/// The upper tier for a request: one of the zone's upper tiers, chosen by the cache key so
/// each object has one home, skipping PoPs without a known address.
pub fn choose_upper_tier<'a>(
    upper: &'a [String],
    pops: &PopDirectory,
    key: &str,
) -> Option<(&'a str, SocketAddr)> {
    let usable: Vec<(&str, SocketAddr)> = upper
        .iter()
        .filter_map(|n| pops.get(n).map(|a| (n.as_str(), *a)))
        .collect();
    if usable.is_empty() {
        return None;
    }
    // FNV-1a: stable across processes, so every lower tier picks the same upper tier.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Some(usable[(h % usable.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_object_has_one_upper_tier_and_unknown_pops_are_skipped() {
        let pops: PopDirectory = [
            ("a".to_string(), "127.0.0.1:1".parse().unwrap()),
            ("b".to_string(), "127.0.0.1:2".parse().unwrap()),
        ]
        .into();
        let upper = vec!["a".to_string(), "b".to_string(), "gone".to_string()];
        let mut seen = std::collections::HashSet::new();
        for i in 0..50 {
            let key = format!("http://x.test/{i}");
            let pick = choose_upper_tier(&upper, &pops, &key).unwrap();
            assert_eq!(
                choose_upper_tier(&upper, &pops, &key).unwrap(),
                pick,
                "stable"
            );
            assert_ne!(pick.0, "gone");
            seen.insert(pick.0);
        }
        assert_eq!(seen.len(), 2, "objects spread over the upper tiers");
        assert_eq!(choose_upper_tier(&upper, &PopDirectory::new(), "k"), None);
    }
}

/// One measured link as PoPs share it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkView {
    /// Smoothed RTT in milliseconds.
    pub rtt_ms: f64,
    /// Fraction of recent probes lost.
    pub loss: f64,
}

/// What one PoP measured: to other PoPs and to origins (`ip:port`). Served at
/// `/.edgenet/links` on the backbone listener.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Links {
    /// The PoP that measured.
    pub from: String,
    /// To other PoPs.
    pub pops: BTreeMap<String, LinkView>,
    /// To origins.
    pub origins: BTreeMap<String, LinkView>,
}

fn view(e: &LinkEstimate) -> LinkView {
    LinkView {
        rtt_ms: e.srtt.as_secs_f64() * 1000.0,
        loss: e.loss,
    }
}

fn estimate(v: &LinkView) -> LinkEstimate {
    LinkEstimate {
        srtt: Duration::from_secs_f64(v.rtt_ms.max(0.0) / 1000.0),
        loss: v.loss.clamp(0.0, 1.0),
        samples: 1,
    }
}

/// The backbone's view at this PoP: its own measurements, the others' and the routes chosen.
#[derive(Default)]
pub struct BackboneState {
    own_pops: Mutex<BTreeMap<String, LinkEstimate>>,
    own_origins: Mutex<BTreeMap<String, LinkEstimate>>,
    others: Mutex<HashMap<String, Links>>,
    selector: Mutex<PathSelector>,
    /// Origin address → the relay PoP to go through (absent: direct).
    pub relays: ArcSwap<HashMap<SocketAddr, String>>,
}

/// The path selection settings: one relay at most (the relay forwards straight to the origin).
pub const PATH_PARAMS: Params = Params {
    loss_penalty: 10.0,
    down_loss: 0.5,
    hop_cost_ms: 1.0,
    hysteresis: 0.1,
    min_gain_ms: 5.0,
    max_relays: 1,
};

impl BackboneState {
    /// Records a probe of another PoP (`None`: lost).
    pub fn observe_pop(&self, pop: &str, rtt: Option<Duration>) {
        let mut m = lock(&self.own_pops);
        match m.get_mut(pop) {
            Some(e) => e.update(rtt),
            None => {
                m.insert(pop.to_string(), LinkEstimate::first(rtt));
            }
        }
    }

    /// Records a probe of an origin.
    pub fn observe_origin(&self, origin: SocketAddr, rtt: Option<Duration>) {
        let mut m = lock(&self.own_origins);
        let key = origin.to_string();
        match m.get_mut(&key) {
            Some(e) => e.update(rtt),
            None => {
                m.insert(key, LinkEstimate::first(rtt));
            }
        }
    }

    /// What this PoP shares.
    pub fn own_links(&self, me: &str) -> Links {
        Links {
            from: me.to_string(),
            pops: lock(&self.own_pops)
                .iter()
                .map(|(k, e)| (k.clone(), view(e)))
                .collect(),
            origins: lock(&self.own_origins)
                .iter()
                .map(|(k, e)| (k.clone(), view(e)))
                .collect(),
        }
    }

    /// Keeps what another PoP shared.
    pub fn learned(&self, links: Links) {
        lock(&self.others).insert(links.from.clone(), links);
    }

    /// Forgets PoPs that are no longer in the directory.
    pub fn retain_pops(&self, pops: &PopDirectory) {
        lock(&self.others).retain(|k, _| pops.contains_key(k));
        lock(&self.own_pops).retain(|k, _| pops.contains_key(k));
    }

    /// Re-decides the route to each origin; returns the changes.
    pub fn decide(&self, me: &str, origins: &[SocketAddr]) -> Vec<Change> {
        let mut state = LinkState::default();
        for (to, e) in lock(&self.own_pops).iter() {
            state.pops.insert((me.to_string(), to.clone()), *e);
        }
        for (to, e) in lock(&self.own_origins).iter() {
            state.origins.insert((me.to_string(), to.clone()), *e);
        }
        for (from, links) in lock(&self.others).iter() {
            if from == me {
                continue;
            }
            for (to, v) in &links.pops {
                state.pops.insert((from.clone(), to.clone()), estimate(v));
            }
            for (to, v) in &links.origins {
                state
                    .origins
                    .insert((from.clone(), to.clone()), estimate(v));
            }
        }
        let mut selector = lock(&self.selector);
        let mut changes = Vec::new();
        let mut relays = HashMap::new();
        for o in origins {
            let key = o.to_string();
            if let Some(c) = selector.decide(&state, me, &key, &PATH_PARAMS) {
                changes.push(c);
            }
            if let Some(relay) = selector.route(&key).relays.first() {
                relays.insert(*o, relay.clone());
            }
        }
        self.relays.store(Arc::new(relays));
        changes
    }

    /// The PoP (this one included) with the cheapest measured path to any of `origins`: the
    /// upper tier of smart tiering. Ties go to the first name, so PoPs agree.
    pub fn closest_to(&self, me: &str, origins: &[SocketAddr]) -> Option<String> {
        let keys: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
        let mut best: Option<(f64, String)> = None;
        let mut consider = |pop: &str, cost: Option<f64>| {
            if let Some(c) = cost {
                let better = best
                    .as_ref()
                    .is_none_or(|(b, name)| c < *b || (c == *b && pop < name.as_str()));
                if better {
                    best = Some((c, pop.to_string()));
                }
            }
        };
        let own = lock(&self.own_origins);
        let cost_of = |e: &LinkEstimate| e.cost(&PATH_PARAMS);
        let mine = keys
            .iter()
            .filter_map(|k| own.get(k).and_then(cost_of))
            .reduce(f64::min);
        consider(me, mine);
        drop(own);
        for (pop, links) in lock(&self.others).iter() {
            let c = keys
                .iter()
                .filter_map(|k| {
                    links
                        .origins
                        .get(k)
                        .map(estimate)
                        .as_ref()
                        .and_then(cost_of)
                })
                .reduce(f64::min);
            consider(pop, c);
        }
        best.map(|(_, name)| name)
    }

    /// The status for the admin API: what we measured, what others shared, the relays used.
    pub fn status_json(&self, me: &str) -> serde_json::Value {
        let others: BTreeMap<String, Links> = lock(&self.others)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let relays: BTreeMap<String, String> = self
            .relays
            .load()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        serde_json::json!({"own": self.own_links(me), "others": others, "relays": relays})
    }
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
    let work = crate::health_check::exchange(connector, peer, Box::new(req), true);
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
        let Some(tls) = self.node.backbone_tls.get() else {
            return;
        };
        let me = self.node.name.clone();
        let pops = self.node.pops.load_full();
        let state = &self.node.backbone_state;
        state.retain_pops(&pops);
        let mut tasks = tokio::task::JoinSet::new();
        for (name, addr) in pops.iter().filter(|(n, _)| **n != me) {
            let peer = tls.peer(name, *addr);
            let (name, connector, node) = (name.clone(), connector.clone(), self.node.clone());
            tasks.spawn(async move {
                let host = pop_dns_name(&name);
                let rtt = backbone_get(&connector, &peer, "GET", PING_PATH, &host)
                    .await
                    .ok()
                    .map(|(_, _, rtt)| rtt);
                node.backbone_state.observe_pop(&name, rtt);
                if let Ok((200, body, _)) =
                    backbone_get(&connector, &peer, "GET", LINKS_PATH, &host).await
                {
                    if let Ok(links) = serde_json::from_slice::<Links>(&body) {
                        node.backbone_state.learned(links);
                    }
                }
            });
        }
        // Each origin server once, probed with its zone's connection settings.
        let snapshot = self.node.snapshot.load_full();
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
                let peer = zone.origin_peer(idx, Some(&host));
                let path = zone
                    .config
                    .origins
                    .health_check
                    .as_ref()
                    .map_or("/".to_string(), |h| h.path.clone());
                let (connector, node) = (connector.clone(), self.node.clone());
                tasks.spawn(async move {
                    let rtt = backbone_get(&connector, &peer, "HEAD", &path, &host)
                        .await
                        .ok()
                        .map(|(_, _, rtt)| rtt);
                    node.backbone_state.observe_origin(addr, rtt);
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

/// The backbone's liveness endpoint (answered by the backbone listener).
pub const PING_PATH: &str = "/.edgenet/ping";
/// Where a PoP shares its measurements (answered by the backbone listener).
pub const LINKS_PATH: &str = "/.edgenet/links";
/// Sent with a relayed request: the origin address the relay forwards it to.
pub const RELAY_HEADER: &str = "x-edgenet-relay-to";
