//! A CNI binds an interconnect to addressing and routing: the point-to-point /31 (and
//! optional /127), the customer's ASN, an optional TCP MD5 key, the BGP mode, the customer's
//! prefixes, the use case and max-prefix, and the link settings its dataplane must carry.
//! [`CniSpec::validate`] refuses what the dataplane cannot carry, each with its field path.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::addressing::{check_pair_v4, check_pair_v6};
use crate::dataplane::Dataplane;
use crate::Problem;

/// How BGP runs on the CNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BgpMode {
    /// Routes are exchanged both ways.
    #[default]
    Dynamic,
    /// We announce the CNI's listed prefixes as ours and accept none.
    AdvertiseOnly,
}

/// What the customer uses the CNI for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UseCase {
    /// Peering with the edge network (v1 dataplanes only).
    Peering,
    /// Magic Transit: the customer's prefixes protected and delivered.
    MagicTransit,
    /// WAN: the customer's sites connected through the network.
    Wan,
}

/// The longest IPv4 prefix a customer may list (shorter is more addresses).
pub const MAX_V4_PREFIX_LEN: u8 = 24;
/// The longest IPv6 prefix a customer may list.
pub const MAX_V6_PREFIX_LEN: u8 = 48;
/// The longest TCP MD5 key (RFC 2385 as routers take it).
pub const MAX_MD5_KEY: usize = 80;

/// A CNI as the API receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniSpec {
    /// The interconnect it runs on.
    pub interconnect: String,
    /// Its /31 (ours is the lower address); allocated from the pool when absent.
    #[serde(default)]
    pub p2p_v4: Option<Ipv4Net>,
    /// Its /127, when the customer wants IPv6 on the link.
    #[serde(default)]
    pub p2p_v6: Option<Ipv6Net>,
    /// The customer's ASN.
    pub customer_asn: u32,
    /// The TCP MD5 key of the BGP session (write-only: never shown back).
    #[serde(default, skip_serializing)]
    pub md5_key: Option<String>,
    /// Dynamic or advertise-only.
    #[serde(default)]
    pub bgp_mode: BgpMode,
    /// The customer's prefixes: what we announce for it (advertise-only) or accept from it.
    #[serde(default)]
    pub prefixes: Vec<IpNet>,
    /// Its use.
    pub use_case: UseCase,
    /// The most prefixes the customer may send (accepted or refused) before the session is
    /// stopped with a Cease.
    #[serde(default = "default_max_prefixes")]
    pub max_prefixes: u32,
    /// The MTU the customer sends towards us (default: the dataplane's largest).
    #[serde(default)]
    pub mtu: Option<u16>,
    /// One 802.1Q VLAN on the port (v1 only).
    #[serde(default)]
    pub vlan: Option<u16>,
    /// BFD on the BGP session (v1 only).
    #[serde(default)]
    pub bfd: bool,
    /// Bundled with the interconnect's other ports by LACP (v1 only; v2 uses ECMP).
    #[serde(default)]
    pub lacp: bool,
}

fn default_max_prefixes() -> u32 {
    100
}

/// Why `asn` cannot be a peer's ASN, if it cannot.
pub fn asn_problem(asn: u32) -> Option<String> {
    match asn {
        0 | 23456 | 4_294_967_295 => Some(format!(
            "{asn} is reserved (0, 23456 AS_TRANS and 4294967295 cannot be a peer's ASN)"
        )),
        64496..=64511 | 65536..=65551 => {
            Some(format!("{asn} is reserved for documentation (RFC 5398)"))
        }
        _ => None,
    }
}

/// Bytes an MD5 key may not hold, beside non-printable ones.
const MD5_FORBIDDEN: &[u8] = b"\n\"\x0b\r\t\x0c?";

impl CniSpec {
    /// Every problem with the CNI on a `dataplane` device, each with its field path.
    pub fn validate(&self, dataplane: Dataplane) -> Vec<Problem> {
        let mut out = Vec::new();
        let dp = dataplane.name();
        if self.interconnect.trim().is_empty() {
            out.push(Problem::new("interconnect", "must not be empty"));
        }
        if let Some(n) = &self.p2p_v4 {
            if let Err(e) = check_pair_v4(n) {
                out.push(Problem::new("p2p_v4", e));
            }
        }
        if let Some(n) = &self.p2p_v6 {
            if let Err(e) = check_pair_v6(n) {
                out.push(Problem::new("p2p_v6", e));
            }
        }
        if let Some(reason) = asn_problem(self.customer_asn) {
            out.push(Problem::new("customer_asn", reason));
        }
        if let Some(key) = &self.md5_key {
            // The key itself is never put in an error: it is a secret.
            if key.is_empty() || key.len() > MAX_MD5_KEY {
                out.push(Problem::new(
                    "md5_key",
                    format!("must be 1 to {MAX_MD5_KEY} characters"),
                ));
            } else if let Some(b) = key
                .bytes()
                .find(|b| !(0x20..0x7f).contains(b) || MD5_FORBIDDEN.contains(b))
            {
                let what = match b {
                    b'"' => "a double quote".to_string(),
                    b'?' => "a question mark".to_string(),
                    _ => format!("the byte 0x{b:02x}"),
                };
                out.push(Problem::new(
                    "md5_key",
                    format!(
                        "holds {what}: printable ASCII only, without \" ? and no white space but the space"
                    ),
                ));
            }
        }
        for (i, p) in self.prefixes.iter().enumerate() {
            let (len, max, fam) = match p {
                IpNet::V4(n) => (n.prefix_len(), MAX_V4_PREFIX_LEN, "IPv4"),
                IpNet::V6(n) => (n.prefix_len(), MAX_V6_PREFIX_LEN, "IPv6"),
            };
            if len > max {
                out.push(Problem::new(
                    format!("prefixes[{i}]"),
                    format!("{p} is too long: {fam} prefixes are /{max} or shorter"),
                ));
            } else if p.addr() != p.network() {
                out.push(Problem::new(
                    format!("prefixes[{i}]"),
                    format!("{p} has host bits set (the prefix is {})", p.trunc()),
                ));
            }
        }
        if self.bgp_mode == BgpMode::AdvertiseOnly && self.prefixes.is_empty() {
            out.push(Problem::new(
                "prefixes",
                "advertise_only announces the listed prefixes: list at least one",
            ));
        }
        if self.max_prefixes == 0 {
            out.push(Problem::new("max_prefixes", "must be at least 1"));
        }
        if self.use_case == UseCase::Peering && dataplane == Dataplane::V2 {
            out.push(Problem::new(
                "use_case",
                "peering is not offered on v2 dataplanes: use a v1 device",
            ));
        }
        if let Some(mtu) = self.mtu {
            let max = dataplane.max_customer_mtu();
            if mtu > max {
                out.push(Problem::new(
                    "mtu",
                    format!("{mtu} is above the {dp} dataplane's {max}"),
                ));
            } else if mtu < 1280 {
                out.push(Problem::new(
                    "mtu",
                    format!("{mtu} is below 1280, the least IPv6 needs"),
                ));
            }
        }
        if let Some(vlan) = self.vlan {
            if !dataplane.vlan() {
                out.push(Problem::new(
                    "vlan",
                    format!("the {dp} dataplane carries no VLAN (nor QinQ)"),
                ));
            } else if !(1..=4094).contains(&vlan) {
                out.push(Problem::new(
                    "vlan",
                    format!("{vlan} is not an 802.1Q VLAN id (1 to 4094)"),
                ));
            }
        }
        if self.bfd && !dataplane.bfd() {
            out.push(Problem::new(
                "bfd",
                format!("the {dp} dataplane runs no BFD"),
            ));
        }
        if self.lacp && !dataplane.lacp() {
            out.push(Problem::new(
                "lacp",
                format!("the {dp} dataplane shares traffic by ECMP, not LACP bundles"),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> CniSpec {
        let mut v = json!({"interconnect": "ic-1", "customer_asn": 65010, "use_case": "magic_transit",
            "prefixes": ["203.0.113.0/24"]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn problems(s: &CniSpec, dp: Dataplane) -> Vec<String> {
        s.validate(dp).iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_v1_cni_with_everything_v1_carries_is_valid() {
        let s = spec(
            json!({"p2p_v4": "100.64.0.0/31", "p2p_v6": "2001:db8::/127", "md5_key": "s3cret key",
            "vlan": 100, "bfd": true, "lacp": true, "mtu": 1476, "use_case": "peering"}),
        );
        assert_eq!(problems(&s, Dataplane::V1), Vec::<String>::new());
        let shown = serde_json::to_string(&s).unwrap();
        assert!(!shown.contains("s3cret"), "the key is write-only: {shown}");
    }

    #[test]
    fn what_v2_cannot_carry_is_refused_by_field() {
        let s = spec(
            json!({"vlan": 100, "bfd": true, "lacp": true, "mtu": 1500, "use_case": "peering"}),
        );
        assert_eq!(
            problems(&s, Dataplane::V2),
            [
                "use_case: peering is not offered on v2 dataplanes: use a v1 device",
                "vlan: the v2 dataplane carries no VLAN (nor QinQ)",
                "bfd: the v2 dataplane runs no BFD",
                "lacp: the v2 dataplane shares traffic by ECMP, not LACP bundles",
            ]
        );
        assert_eq!(
            problems(&s, Dataplane::V1),
            ["mtu: 1500 is above the v1 dataplane's 1476"]
        );
    }

    #[test]
    fn addressing_asns_keys_and_prefixes_are_checked() {
        let s = spec(
            json!({"p2p_v4": "100.64.0.1/31", "p2p_v6": "2001:db8::/126", "customer_asn": 23456,
            "md5_key": "a?b", "prefixes": ["203.0.113.0/25", "2001:db8::/56", "198.51.100.1/24"],
            "max_prefixes": 0, "vlan": 4095}),
        );
        assert_eq!(
            problems(&s, Dataplane::V1),
            [
                "p2p_v4: 100.64.0.1/31 is not a pair: a /31 starts at an even address (100.64.0.0/31)",
                "p2p_v6: 2001:db8::/126 is not a /127",
                "customer_asn: 23456 is reserved (0, 23456 AS_TRANS and 4294967295 cannot be a peer's ASN)",
                "md5_key: holds a question mark: printable ASCII only, without \" ? and no white space but the space",
                "prefixes[0]: 203.0.113.0/25 is too long: IPv4 prefixes are /24 or shorter",
                "prefixes[1]: 2001:db8::/56 is too long: IPv6 prefixes are /48 or shorter",
                "prefixes[2]: 198.51.100.1/24 has host bits set (the prefix is 198.51.100.0/24)",
                "max_prefixes: must be at least 1",
                "vlan: 4095 is not an 802.1Q VLAN id (1 to 4094)",
            ]
        );
        for key in ["tab\there", "new\nline", "quote\"d", "\u{e9}"] {
            let s = spec(json!({ "md5_key": key }));
            let p = problems(&s, Dataplane::V1);
            assert_eq!(p.len(), 1, "{key:?}: {p:?}");
            assert!(
                p[0].starts_with("md5_key: holds ") && !p[0].contains(key),
                "{p:?}"
            );
        }
        let s = spec(json!({"bgp_mode": "advertise_only", "prefixes": []}));
        assert_eq!(
            problems(&s, Dataplane::V2),
            ["prefixes: advertise_only announces the listed prefixes: list at least one"]
        );
    }
}
