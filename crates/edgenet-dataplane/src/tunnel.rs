//! A GRE tunnel as an account object (Cloudflare's `magic/gre_tunnels` shape) and its checks.
//!
//! `interface_address` is the tunnel's /31 written as our side's address (`10.212.0.8/31`:
//! we are 10.212.0.8, the customer's router 10.212.0.9), as Cloudflare writes it; the
//! optional `interface_address6` is a /127 the same way. `cloudflare_gre_endpoint` is one of
//! the network's anycast GRE endpoints, so the customer's packets reach the nearest PoP; each
//! PoP sends to `customer_gre_endpoint` from its own address. The health check's `target` is
//! the inner address a probe is about (the customer's side of the /31 unless given). BGP over
//! the tunnel is optional: the customer's router connects to our side of the /31 (the PoP it
//! reaches answers), with the customer's ASN and MD5 key; its routes are accepted for the
//! account's prefixes and `extra_prefixes`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edgenet_interconnect::Problem;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::health::{Direction, ProbeType, Rate};

/// The longest tunnel name (an interface name's limit).
pub const MAX_NAME: usize = 15;
/// The default tunnel MTU: 1500 less the outer IPv4 and GRE headers.
pub const DEFAULT_MTU: u16 = 1476;
/// The smallest MTU (RFC 791's 576).
pub const MIN_MTU: u16 = 576;
/// The default TTL of the outer header.
pub const DEFAULT_TTL: u8 = 64;

/// A tunnel's health check settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Probes run (true by default); a tunnel without them counts as healthy.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The inner address a probe is about; the customer's side of the /31 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Ipv4Addr>,
    /// `reply` (the default) or `request`.
    #[serde(default, rename = "type")]
    pub kind: ProbeType,
    /// `low`, `mid` (the default) or `high`.
    #[serde(default)]
    pub rate: Rate,
    /// `unidirectional` (the default) or `bidirectional`.
    #[serde(default)]
    pub direction: Direction,
}

fn yes() -> bool {
    true
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheck {
            enabled: true,
            target: None,
            kind: ProbeType::default(),
            rate: Rate::default(),
            direction: Direction::default(),
        }
    }
}

/// BGP over a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelBgp {
    /// The customer router's ASN.
    pub customer_asn: u32,
    /// The TCP MD5 key (write-only: the API never shows it).
    #[serde(default, skip_serializing)]
    pub md5_key: Option<String>,
    /// Prefixes accepted from the customer besides the account's own.
    #[serde(default)]
    pub extra_prefixes: Vec<IpNet>,
}

/// A GRE tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreTunnelSpec {
    /// At most 15 letters, digits, `-` and `_`; unique in the account.
    pub name: String,
    /// For people.
    #[serde(default)]
    pub description: String,
    /// Our anycast endpoint.
    pub cloudflare_gre_endpoint: Ipv4Addr,
    /// The customer router's endpoint.
    pub customer_gre_endpoint: Ipv4Addr,
    /// The /31, as our side's address.
    pub interface_address: Ipv4Net,
    /// The /127, as our side's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_address6: Option<Ipv6Net>,
    /// The inner MTU (1476 by default, at least 576).
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// The outer TTL (64 by default).
    #[serde(default = "default_ttl")]
    pub ttl: u8,
    /// Health checks.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// BGP over the tunnel, when wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<TunnelBgp>,
}

fn default_mtu() -> u16 {
    DEFAULT_MTU
}

fn default_ttl() -> u8 {
    DEFAULT_TTL
}

/// The other half of a /31 or /127 pair.
fn other_v4(a: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) ^ 1)
}

fn other_v6(a: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(a) ^ 1)
}

impl GreTunnelSpec {
    /// Our side of the /31.
    pub fn our_address(&self) -> Ipv4Addr {
        self.interface_address.addr()
    }

    /// The customer's side of the /31.
    pub fn customer_address(&self) -> Ipv4Addr {
        other_v4(self.interface_address.addr())
    }

    /// Our and the customer's side of the /127.
    pub fn addresses6(&self) -> Option<(Ipv6Addr, Ipv6Addr)> {
        self.interface_address6
            .map(|n| (n.addr(), other_v6(n.addr())))
    }

    /// The inner address probes are about.
    pub fn probe_target(&self) -> Ipv4Addr {
        self.health_check
            .target
            .unwrap_or_else(|| self.customer_address())
    }

    /// Whether `a` is one of the tunnel's inner addresses (either side).
    pub fn holds(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.interface_address.trunc().contains(&a),
            IpAddr::V6(a) => self
                .interface_address6
                .is_some_and(|n| n.trunc().contains(&a)),
        }
    }

    /// Everything wrong with the tunnel on its own; `endpoints` are the network's GRE
    /// endpoints (none known: any address is taken).
    pub fn problems(&self, endpoints: &[Ipv4Addr]) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(reason) = name_problem(&self.name) {
            out.push(Problem::new("name", reason));
        }
        if self.description.len() > 256 {
            out.push(Problem::new("description", "longer than 256 bytes"));
        }
        if !endpoints.is_empty() && !endpoints.contains(&self.cloudflare_gre_endpoint) {
            out.push(Problem::new(
                "cloudflare_gre_endpoint",
                format!(
                    "{} is not one of the network's GRE endpoints ({})",
                    self.cloudflare_gre_endpoint,
                    endpoints
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(reason) = public_problem(self.customer_gre_endpoint) {
            out.push(Problem::new("customer_gre_endpoint", reason));
        }
        if self.customer_gre_endpoint == self.cloudflare_gre_endpoint {
            out.push(Problem::new(
                "customer_gre_endpoint",
                "is the same as cloudflare_gre_endpoint",
            ));
        }
        if self.interface_address.prefix_len() != 31 {
            out.push(Problem::new(
                "interface_address",
                format!("{} is not a /31", self.interface_address),
            ));
        }
        if let Some(n) = self.interface_address6 {
            if n.prefix_len() != 127 {
                out.push(Problem::new(
                    "interface_address6",
                    format!("{n} is not a /127"),
                ));
            }
        }
        if self.mtu < MIN_MTU || self.mtu > DEFAULT_MTU {
            out.push(Problem::new(
                "mtu",
                format!(
                    "{} is outside {MIN_MTU}..={DEFAULT_MTU} (1500 less 24 bytes of outer IPv4 and GRE)",
                    self.mtu
                ),
            ));
        }
        if self.ttl == 0 {
            out.push(Problem::new("ttl", "0 would never leave the PoP"));
        }
        if let Some(bgp) = &self.bgp {
            if bgp.customer_asn == 0 || bgp.customer_asn == 23456 || bgp.customer_asn == u32::MAX {
                out.push(Problem::new(
                    "bgp.customer_asn",
                    format!("{} is reserved", bgp.customer_asn),
                ));
            }
            if let Some(key) = &bgp.md5_key {
                if key.is_empty() || key.len() > 80 {
                    out.push(Problem::new(
                        "bgp.md5_key",
                        "must be 1 to 80 bytes (TCP MD5's limit)",
                    ));
                }
            }
            for (i, p) in bgp.extra_prefixes.iter().enumerate() {
                if p.trunc() != *p {
                    out.push(Problem::new(
                        format!("bgp.extra_prefixes[{i}]"),
                        format!("{p} has host bits set (did you mean {}?)", p.trunc()),
                    ));
                }
            }
        }
        out
    }
}

/// Why a tunnel name is refused, if it is.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_NAME {
        return Some(format!(
            "{name:?} is {} characters, more than {MAX_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Some(format!(
            "{name:?} has {c:?}: only letters, digits, '-' and '_'"
        ));
    }
    None
}

/// Why an address cannot be a customer's GRE endpoint on the internet, if it cannot.
fn public_problem(a: Ipv4Addr) -> Option<String> {
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
        return Some(format!("{a} is not a unicast address"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel() -> GreTunnelSpec {
        serde_json::from_value(serde_json::json!({
            "name": "GRE_1",
            "cloudflare_gre_endpoint": "192.0.2.100",
            "customer_gre_endpoint": "203.0.113.1",
            "interface_address": "10.212.0.8/31",
        }))
        .unwrap()
    }

    #[test]
    fn defaults_are_cloudflares() {
        let t = tunnel();
        assert_eq!(t.mtu, 1476);
        assert_eq!(t.ttl, 64);
        assert!(t.health_check.enabled);
        assert_eq!(t.health_check.kind, ProbeType::Reply);
        assert_eq!(t.health_check.rate, Rate::Mid);
        assert_eq!(t.health_check.direction, Direction::Unidirectional);
        assert_eq!(t.our_address(), Ipv4Addr::new(10, 212, 0, 8));
        assert_eq!(t.customer_address(), Ipv4Addr::new(10, 212, 0, 9));
        assert_eq!(t.probe_target(), t.customer_address());
        assert!(t.problems(&["192.0.2.100".parse().unwrap()]).is_empty());
        let odd = GreTunnelSpec {
            interface_address: "10.212.0.9/31".parse().unwrap(),
            ..t
        };
        assert_eq!(odd.customer_address(), Ipv4Addr::new(10, 212, 0, 8));
        assert!(odd.holds("10.212.0.8".parse().unwrap()));
        assert!(!odd.holds("10.212.0.10".parse().unwrap()));
    }

    #[test]
    fn each_problem_names_its_field() {
        let t = GreTunnelSpec {
            name: "a-name-far-too-long".into(),
            cloudflare_gre_endpoint: "192.0.2.7".parse().unwrap(),
            customer_gre_endpoint: "224.0.0.1".parse().unwrap(),
            interface_address: "10.212.0.8/30".parse().unwrap(),
            interface_address6: Some("2001:db8::/64".parse().unwrap()),
            mtu: 575,
            ttl: 0,
            bgp: Some(TunnelBgp {
                customer_asn: 23456,
                md5_key: Some(String::new()),
                extra_prefixes: vec!["198.51.100.1/24".parse().unwrap()],
            }),
            ..tunnel()
        };
        let fields: Vec<String> = t
            .problems(&["192.0.2.100".parse().unwrap()])
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "name",
                "cloudflare_gre_endpoint",
                "customer_gre_endpoint",
                "interface_address",
                "interface_address6",
                "mtu",
                "ttl",
                "bgp.customer_asn",
                "bgp.md5_key",
                "bgp.extra_prefixes[0]"
            ]
        );
        assert_eq!(
            name_problem("gre 1").unwrap(),
            "\"gre 1\" has ' ': only letters, digits, '-' and '_'"
        );
        assert!(name_problem("gre-1_A").is_none());
        assert!(serde_json::from_value::<GreTunnelSpec>(serde_json::json!({
            "name": "x", "cloudflare_gre_endpoint": "192.0.2.100",
            "customer_gre_endpoint": "203.0.113.1", "interface_address": "10.0.0.0/31",
            "colour": "red"
        }))
        .is_err());
    }

    #[test]
    fn the_md5_key_is_never_serialized() {
        let mut t = tunnel();
        t.bgp = Some(TunnelBgp {
            customer_asn: 65001,
            md5_key: Some("secret".into()),
            extra_prefixes: vec![],
        });
        let json = serde_json::to_string(&t).unwrap();
        assert!(!json.contains("secret"), "{json}");
    }
}
