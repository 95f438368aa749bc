//! A customer's own prefix, protected by every PoP (Magic Transit), pure: the account object
//! in Cloudflare's BYOIP shape (`addressing/prefixes`: the CIDR, the origin ASN, the Letter of
//! Agency that authorises us to announce it, and the `advertised` switch), its checks, and
//! [`PrefixMap`], the longest-prefix lookup the packet path uses to find whose traffic a
//! packet is.
//!
//! A prefix is announced by a PoP while it is `advertised` and the account has a path from
//! that PoP that is not down ([`has_path`]); `egress` says how the customer's replies leave:
//! `direct` (Direct Server Return: through the customer's own ISP) or `edge` (back through
//! the tunnel, and the PoP sends them on).

use std::collections::HashMap;
use std::net::IpAddr;

use edgenet_interconnect::Problem;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::health::Health;
use crate::table::Seen;

/// The longest IPv4 prefix announced (longer ones are filtered on the internet).
pub const MAX_V4: u8 = 24;
/// The longest IPv6 prefix announced.
pub const MAX_V6: u8 = 48;

/// How the customer's replies leave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Egress {
    /// Direct Server Return: through the customer's own ISP; replies arriving through a
    /// tunnel are dropped.
    #[default]
    Direct,
    /// Back through the tunnel or CNI: the PoP sends them on.
    Edge,
}

/// A customer's prefix as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixSpec {
    /// The prefix (no longer than /24 or /48).
    pub cidr: IpNet,
    /// The ASN that originates it on the internet.
    pub asn: u32,
    /// The Letter of Agency that authorises the announcement (a document of the account).
    pub loa_document_id: String,
    /// For people.
    #[serde(default)]
    pub description: String,
    /// Announced from the PoPs (false by default: the customer moves traffic on when ready).
    #[serde(default)]
    pub advertised: bool,
    /// How replies leave.
    #[serde(default)]
    pub egress: Egress,
}

impl PrefixSpec {
    /// Everything wrong with it on its own, each with its field.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let n = self.cidr;
        if n.trunc() != n {
            out.push(Problem::new(
                "cidr",
                format!("{n} has host bits set (did you mean {}?)", n.trunc()),
            ));
        }
        let (max, min, family) = match n {
            IpNet::V4(_) => (MAX_V4, 8, "IPv4"),
            IpNet::V6(_) => (MAX_V6, 16, "IPv6"),
        };
        if n.prefix_len() > max {
            out.push(Problem::new(
                "cidr",
                format!(
                    "{n} is longer than /{max}: networks filter {family} announcements longer than that"
                ),
            ));
        }
        if n.prefix_len() < min {
            out.push(Problem::new("cidr", format!("{n} is shorter than /{min}")));
        }
        let a = n.addr();
        if a.is_loopback() || a.is_multicast() || a.is_unspecified() || is_link_local(a) {
            out.push(Problem::new(
                "cidr",
                format!("{n} is not a unicast prefix that can be announced"),
            ));
        }
        if let Some(reason) = edgenet_interconnect::cni::asn_problem(self.asn) {
            out.push(Problem::new("asn", reason));
        }
        if self.loa_document_id.trim().is_empty() {
            out.push(Problem::new(
                "loa_document_id",
                "a Letter of Agency is required (POST /addressing/loa_documents)",
            ));
        }
        if self.description.len() > 256 {
            out.push(Problem::new("description", "longer than 256 bytes"));
        }
        out
    }
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Whether a PoP's table (its view) has a path for `prefix` that is not down: a route
/// covering it or inside it.
pub fn has_path(view: &[Seen], prefix: &IpNet) -> bool {
    view.iter().any(|s| {
        s.health != Health::Down
            && (s.route.prefix.contains(prefix) || prefix.contains(&s.route.prefix))
    })
}

/// The prefixes of one length: the masked network's bits to the prefix and its value.
type Level<K, T> = (u8, HashMap<K, (IpNet, T)>);

/// Values by prefix, found by longest match.
#[derive(Debug, Clone)]
pub struct PrefixMap<T> {
    /// By length, longest first.
    v4: Vec<Level<u32, T>>,
    v6: Vec<Level<u128, T>>,
}

impl<T> Default for PrefixMap<T> {
    fn default() -> PrefixMap<T> {
        PrefixMap {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (!0u32 << (32 - u32::from(len)))
    }
}

fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (!0u128 << (128 - u32::from(len)))
    }
}

impl<T> PrefixMap<T> {
    /// Puts `value` at `net` (replacing what was there).
    pub fn insert(&mut self, net: IpNet, value: T) {
        let net = net.trunc();
        let len = net.prefix_len();
        fn slot<K, V>(levels: &mut Vec<(u8, HashMap<K, V>)>, len: u8) -> &mut HashMap<K, V> {
            let at = match levels.iter().position(|(l, _)| *l <= len) {
                Some(i) if levels[i].0 == len => i,
                Some(i) => {
                    levels.insert(i, (len, HashMap::new()));
                    i
                }
                None => {
                    levels.push((len, HashMap::new()));
                    levels.len() - 1
                }
            };
            &mut levels[at].1
        }
        match net {
            IpNet::V4(n) => {
                slot(&mut self.v4, len).insert(mask4(u32::from(n.addr()), len), (net, value));
            }
            IpNet::V6(n) => {
                slot(&mut self.v6, len).insert(mask6(u128::from(n.addr()), len), (net, value));
            }
        }
    }

    /// The longest prefix holding `a`, and its value.
    pub fn get(&self, a: IpAddr) -> Option<&(IpNet, T)> {
        match a {
            IpAddr::V4(v) => {
                let a = u32::from(v);
                self.v4.iter().find_map(|(len, m)| m.get(&mask4(a, *len)))
            }
            IpAddr::V6(v) => {
                let a = u128::from(v);
                self.v6.iter().find_map(|(len, m)| m.get(&mask6(a, *len)))
            }
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Every prefix and value.
    pub fn iter(&self) -> impl Iterator<Item = &(IpNet, T)> {
        self.v4
            .iter()
            .flat_map(|(_, m)| m.values())
            .chain(self.v6.iter().flat_map(|(_, m)| m.values()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cidr: &str) -> PrefixSpec {
        PrefixSpec {
            cidr: cidr.parse().unwrap(),
            asn: 64_512,
            loa_document_id: "loa-1".into(),
            description: String::new(),
            advertised: true,
            egress: Egress::Direct,
        }
    }

    #[test]
    fn prefixes_longer_than_24_or_48_are_refused() {
        assert_eq!(spec("203.0.113.0/24").problems(), vec![]);
        assert_eq!(spec("2001:db8::/48").problems(), vec![]);
        let p = spec("203.0.113.0/25").problems();
        assert_eq!(p[0].field, "cidr");
        assert!(p[0].reason.contains("longer than /24"), "{}", p[0].reason);
        assert!(spec("2001:db8::/56").problems()[0]
            .reason
            .contains("longer than /48"));
        assert!(spec("203.0.113.1/24").problems()[0]
            .reason
            .contains("host bits"));
        assert!(!spec("127.0.0.0/8").problems().is_empty());
        let mut s = spec("198.51.100.0/24");
        s.asn = 0;
        s.loa_document_id = " ".into();
        let fields: Vec<String> = s.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, vec!["asn", "loa_document_id"]);
    }

    #[test]
    fn the_longest_prefix_wins() {
        let mut m = PrefixMap::default();
        m.insert("203.0.112.0/22".parse().unwrap(), "wide");
        m.insert("203.0.113.0/24".parse().unwrap(), "narrow");
        m.insert("2001:db8::/32".parse().unwrap(), "six");
        m.insert("0.0.0.0/0".parse().unwrap(), "default");
        let get = |a: &str| m.get(a.parse().unwrap()).map(|(_, v)| *v);
        assert_eq!(get("203.0.113.77"), Some("narrow"));
        assert_eq!(get("203.0.114.1"), Some("wide"));
        assert_eq!(get("192.0.2.1"), Some("default"));
        assert_eq!(get("2001:db8:5::1"), Some("six"));
        assert_eq!(get("2001:db9::1"), None);
        assert_eq!(m.iter().count(), 4);
    }
}
