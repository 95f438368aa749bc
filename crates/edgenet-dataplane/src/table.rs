//! An account's routing table (Cloudflare's Magic routes), pure: static routes (prefix, next
//! hop over a tunnel or CNI, priority where lower wins, weight for ECMP between equal
//! priorities, scope to some PoPs or regions) and routes learnt over BGP on tunnels and CNIs
//! (priority [`BGP_PRIORITY`]; a static route wins at equal priority). A degraded tunnel adds
//! 500,000 to its routes' priority and a down one 1,000,000 ([`Health::priority_penalty`]), so
//! traffic moves to a healthy path by itself and comes back when it recovers.
//!
//! [`view`] is the table as one PoP sees it (scope applied, each route with the health behind
//! its priority); [`lookup`] the routes a destination takes there (longest prefix, then the
//! lowest effective priority, statics before BGP at a tie), and [`pick`] one of them for a flow,
//! in proportion to the weights, the same flow always the same path.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::health::Health;

/// The priority of routes learnt over BGP.
pub const BGP_PRIORITY: u32 = 100;
/// The largest ECMP weight.
pub const MAX_WEIGHT: u16 = 256;

/// Where a route's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum NextHop {
    /// A GRE tunnel, by name.
    Tunnel(String),
    /// A CNI, by id.
    Cni(String),
}

/// Where a route applies: everywhere when both lists are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// PoP names (Cloudflare's `colo_names`).
    #[serde(default, alias = "colo_names")]
    pub pops: Vec<String>,
    /// Region codes (Cloudflare's `colo_regions`).
    #[serde(default, alias = "colo_regions")]
    pub regions: Vec<String>,
}

impl Scope {
    /// Whether a PoP (in `region`) has the route.
    pub fn covers(&self, pop: &str, region: Option<&str>) -> bool {
        (self.pops.is_empty() && self.regions.is_empty())
            || self.pops.iter().any(|p| p == pop)
            || region.is_some_and(|r| self.regions.iter().any(|x| x == r))
    }
}

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Written by the customer (`/magic/routes`).
    Static,
    /// Learnt over BGP on the next hop's session.
    Bgp,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The destination.
    pub prefix: IpNet,
    /// Where it goes.
    pub next_hop: NextHop,
    /// Lower wins.
    pub priority: u32,
    /// Share among routes of equal priority (1 to 256).
    pub weight: u16,
    /// Where it applies.
    #[serde(default)]
    pub scope: Scope,
    /// Static or BGP.
    pub source: Source,
    /// For people.
    #[serde(default)]
    pub description: String,
}

/// The highest priority a static route may have: below a degraded path's penalty, so a
/// healthy path always wins over a degraded one.
pub const MAX_STATIC_PRIORITY: u32 = 499_999;

/// A static route as the customer writes it (Cloudflare's `magic/routes` shape): the next hop
/// is the customer's side of a tunnel's or CNI's point-to-point pair, which the control plane
/// resolves to that tunnel or CNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRouteSpec {
    /// The destination.
    pub prefix: IpNet,
    /// The customer's address on a tunnel or CNI of the account.
    pub nexthop: IpAddr,
    /// Lower wins (0 to 499,999).
    pub priority: u32,
    /// Share among routes of equal priority (1 to 256; 1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// Where it applies (everywhere by default).
    #[serde(default)]
    pub scope: Scope,
    /// For people.
    #[serde(default)]
    pub description: String,
}

impl StaticRouteSpec {
    /// Everything wrong with the route on its own, each with its field.
    pub fn problems(&self) -> Vec<edgenet_interconnect::Problem> {
        use edgenet_interconnect::Problem;
        let mut out = Vec::new();
        if self.prefix.trunc() != self.prefix {
            out.push(Problem::new(
                "prefix",
                format!(
                    "{} has host bits set (did you mean {}?)",
                    self.prefix,
                    self.prefix.trunc()
                ),
            ));
        }
        if self.prefix.addr().is_ipv4() != self.nexthop.is_ipv4() {
            out.push(Problem::new(
                "nexthop",
                format!(
                    "{} is not of the prefix's family ({})",
                    self.nexthop, self.prefix
                ),
            ));
        }
        if self.priority > MAX_STATIC_PRIORITY {
            out.push(Problem::new(
                "priority",
                format!(
                    "{} is above {MAX_STATIC_PRIORITY} (a degraded path adds 500,000)",
                    self.priority
                ),
            ));
        }
        if let Some(w) = self.weight {
            if w == 0 || w > MAX_WEIGHT {
                out.push(Problem::new(
                    "weight",
                    format!("{w} is outside 1..={MAX_WEIGHT}"),
                ));
            }
        }
        if self.description.len() > 256 {
            out.push(Problem::new("description", "longer than 256 bytes"));
        }
        out
    }

    /// The route over `next_hop` (what `nexthop` resolved to).
    pub fn route(&self, next_hop: NextHop) -> Route {
        Route {
            prefix: self.prefix,
            next_hop,
            priority: self.priority,
            weight: self.weight.unwrap_or(1),
            scope: self.scope.clone(),
            source: Source::Static,
            description: self.description.clone(),
        }
    }
}

/// A route as one PoP sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// The route.
    #[serde(flatten)]
    pub route: Route,
    /// The health of its next hop at this PoP (a CNI counts as healthy while it is up).
    pub health: Health,
    /// Its priority with the health's penalty.
    pub effective_priority: u32,
}

/// The table at `pop` (in `region`): the routes whose scope covers it, each with the health of
/// its next hop there (`health_of`), sorted by prefix, then effective priority.
pub fn view(
    routes: &[Route],
    pop: &str,
    region: Option<&str>,
    health_of: impl Fn(&NextHop) -> Health,
) -> Vec<Seen> {
    let mut out: Vec<Seen> = routes
        .iter()
        .filter(|r| r.scope.covers(pop, region))
        .map(|r| {
            let health = health_of(&r.next_hop);
            Seen {
                route: r.clone(),
                health,
                effective_priority: r.priority.saturating_add(health.priority_penalty()),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (
            a.route.prefix,
            a.effective_priority,
            a.route.source,
            &a.route.next_hop,
        )
            .cmp(&(
                b.route.prefix,
                b.effective_priority,
                b.route.source,
                &b.route.next_hop,
            ))
    });
    out
}

/// The routes `dst` takes in a view: those of the longest matching prefix with the lowest
/// effective priority (static routes only, when statics and BGP routes tie).
pub fn lookup(view: &[Seen], dst: IpAddr) -> Vec<&Seen> {
    let Some(longest) = view
        .iter()
        .filter(|s| s.route.prefix.contains(&dst))
        .map(|s| s.route.prefix.prefix_len())
        .max()
    else {
        return Vec::new();
    };
    let matching: Vec<&Seen> = view
        .iter()
        .filter(|s| s.route.prefix.prefix_len() == longest && s.route.prefix.contains(&dst))
        .collect();
    let best = matching
        .iter()
        .map(|s| (s.effective_priority, s.route.source))
        .min()
        .expect("one at least");
    matching
        .into_iter()
        .filter(|s| (s.effective_priority, s.route.source) == best)
        .collect()
}

/// One of `routes` for the flow whose hash is `flow`, each in proportion to its weight; the
/// same hash always gives the same route.
pub fn pick<'a>(routes: &[&'a Seen], flow: u64) -> Option<&'a Seen> {
    let total: u64 = routes
        .iter()
        .map(|s| u64::from(s.route.weight.max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut at = flow % total;
    for s in routes {
        let w = u64::from(s.route.weight.max(1));
        if at < w {
            return Some(s);
        }
        at -= w;
    }
    None
}

/// A flow's hash from its 5-tuple (FNV-1a: stable across runs and PoPs, so a flow keeps its
/// path wherever the table is the same).
pub fn flow_hash(src: IpAddr, dst: IpAddr, protocol: u8, sport: u16, dport: u16) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for a in [src, dst] {
        match a {
            IpAddr::V4(v) => eat(&v.octets()),
            IpAddr::V6(v) => eat(&v.octets()),
        }
    }
    eat(&[protocol]);
    eat(&sport.to_be_bytes());
    eat(&dport.to_be_bytes());
    // Spread the low bits, which `pick` takes modulo the total weight.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, hop: &str, priority: u32, weight: u16, source: Source) -> Route {
        Route {
            prefix: prefix.parse().unwrap(),
            next_hop: NextHop::Tunnel(hop.into()),
            priority,
            weight,
            scope: Scope::default(),
            source,
            description: String::new(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn health_moves_traffic_to_the_healthy_tunnel_and_back() {
        let routes = vec![
            route("10.0.0.0/24", "gre1", 100, 1, Source::Static),
            route("10.0.0.0/24", "gre2", 200, 1, Source::Static),
        ];
        let all_well = view(&routes, "p1", None, |_| Health::Healthy);
        assert_eq!(
            lookup(&all_well, ip("10.0.0.9"))[0].route.next_hop,
            NextHop::Tunnel("gre1".into())
        );
        let gre1 = |h: Health| {
            move |n: &NextHop| {
                if *n == NextHop::Tunnel("gre1".into()) {
                    h
                } else {
                    Health::Healthy
                }
            }
        };
        for sick in [Health::Degraded, Health::Down] {
            let v = view(&routes, "p1", None, gre1(sick));
            let got = lookup(&v, ip("10.0.0.9"));
            assert_eq!(got.len(), 1);
            assert_eq!(
                got[0].route.next_hop,
                NextHop::Tunnel("gre2".into()),
                "{sick:?}"
            );
        }
        let v = view(&routes, "p1", None, gre1(Health::Down));
        let gre1_seen = v
            .iter()
            .find(|s| s.route.next_hop == NextHop::Tunnel("gre1".into()))
            .unwrap();
        assert_eq!(
            (gre1_seen.health, gre1_seen.effective_priority),
            (Health::Down, 1_000_100)
        );
        // Both down: the lower configured priority is still the one used.
        let v = view(&routes, "p1", None, |_| Health::Down);
        assert_eq!(
            lookup(&v, ip("10.0.0.9"))[0].route.next_hop,
            NextHop::Tunnel("gre1".into())
        );
    }

    #[test]
    fn the_longest_prefix_wins_then_priority_then_statics_over_bgp() {
        let routes = vec![
            route("10.0.0.0/16", "wide", 1, 1, Source::Static),
            route("10.0.1.0/24", "bgp", BGP_PRIORITY, 1, Source::Bgp),
            route("10.0.1.0/24", "static", BGP_PRIORITY, 1, Source::Static),
        ];
        let v = view(&routes, "p1", None, |_| Health::Healthy);
        let got = lookup(&v, ip("10.0.1.5"));
        assert_eq!(got.len(), 1, "a static route wins at equal priority");
        assert_eq!(got[0].route.next_hop, NextHop::Tunnel("static".into()));
        assert_eq!(
            lookup(&v, ip("10.0.2.5"))[0].route.next_hop,
            NextHop::Tunnel("wide".into())
        );
        assert!(lookup(&v, ip("192.0.2.1")).is_empty());
    }

    #[test]
    fn scope_limits_a_route_to_its_pops_and_regions() {
        let mut r = route("10.0.0.0/24", "gre1", 100, 1, Source::Static);
        r.scope = Scope {
            pops: vec!["gru".into()],
            regions: vec!["eu".into()],
        };
        let routes = vec![r];
        assert_eq!(view(&routes, "gru", None, |_| Health::Healthy).len(), 1);
        assert_eq!(
            view(&routes, "fra", Some("eu"), |_| Health::Healthy).len(),
            1
        );
        assert!(view(&routes, "iad", Some("us"), |_| Health::Healthy).is_empty());
    }

    #[test]
    fn a_static_route_is_checked_field_by_field_and_takes_cloudflares_scope_names() {
        let spec: StaticRouteSpec = serde_json::from_value(serde_json::json!({
            "prefix": "10.1.0.0/24", "nexthop": "10.212.0.9", "priority": 100,
            "scope": {"colo_names": ["gru"], "colo_regions": ["sam"]}
        }))
        .unwrap();
        assert!(spec.problems().is_empty());
        let r = spec.route(NextHop::Tunnel("gre1".into()));
        assert_eq!((r.weight, r.source), (1, Source::Static));
        assert_eq!(r.scope.pops, ["gru"]);
        let bad = StaticRouteSpec {
            prefix: "10.1.0.1/24".parse().unwrap(),
            nexthop: ip("2001:db8::1"),
            priority: 500_000,
            weight: Some(257),
            ..spec
        };
        let fields: Vec<String> = bad.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["prefix", "nexthop", "priority", "weight"]);
    }

    #[test]
    fn equal_priorities_share_flows_by_weight_and_a_flow_keeps_its_path() {
        let routes = vec![
            route("10.0.0.0/24", "a", 100, 3, Source::Static),
            route("10.0.0.0/24", "b", 100, 1, Source::Static),
        ];
        let v = view(&routes, "p1", None, |_| Health::Healthy);
        let set = lookup(&v, ip("10.0.0.1"));
        assert_eq!(set.len(), 2);
        let mut to_a = 0;
        for port in 0..10_000u16 {
            let h = flow_hash(ip("198.51.100.7"), ip("10.0.0.1"), 6, 1024 + port, 443);
            let hop = &pick(&set, h).unwrap().route.next_hop;
            to_a += usize::from(*hop == NextHop::Tunnel("a".into()));
            assert_eq!(&pick(&set, h).unwrap().route.next_hop, hop, "stable");
        }
        assert!(
            (7_200..7_800).contains(&to_a),
            "3:1 by weight, got {to_a} of 10,000"
        );
    }
}
