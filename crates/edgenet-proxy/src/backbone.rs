//! The backbone as this PoP sees it: where the other PoPs are ([`PopDirectory`], from the
//! control plane), what this PoP measured to them and to the origins, what they shared, and
//! the relay chosen per origin ([`BackboneState`], decided by `edgenet_backbone::paths`). The
//! node's prober fills it; the path stage (`stages::path`) reads it per request.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use edgenet_backbone::paths::{Change, LinkEstimate, LinkState, Params, PathSelector};

use crate::lock;

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

/// PoP name → backbone address, from the control plane's PoP records.
pub type PopDirectory = HashMap<String, SocketAddr>;

/// One measured link as PoPs share it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkView {
    /// Smoothed RTT in milliseconds.
    pub rtt_ms: f64,
    /// Fraction of recent probes lost.
    pub loss: f64,
    /// Probes seen (PoPs that do not send it count as having too few to act on).
    #[serde(default)]
    pub samples: u32,
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
        samples: e.samples,
    }
}

fn estimate(v: &LinkView) -> LinkEstimate {
    LinkEstimate {
        srtt: Duration::from_secs_f64(v.rtt_ms.max(0.0) / 1000.0),
        loss: v.loss.clamp(0.0, 1.0),
        samples: v.samples,
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
    min_samples: 4,
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
