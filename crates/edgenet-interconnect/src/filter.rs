//! A CNI's BGP policy, as the PoP's session applies it: the import filter built from the CNI's
//! prefix list (a listed prefix, or a longer one inside it, no longer than /24 for IPv4 and /48
//! for IPv6; nothing at all in `advertise_only`), the max-prefix limit (the session is stopped
//! with a Cease, RFC 4486 subcode 1, once the customer has sent more prefixes than allowed,
//! refused ones included: that bounds what one session can make a PoP hold), and what is
//! exported (`advertise_only`: the CNI's listed prefixes, announced as ours; `dynamic`: the
//! routes the PoP offers the customer).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::cni::{BgpMode, CniSpec, MAX_V4_PREFIX_LEN, MAX_V6_PREFIX_LEN};

/// Whether a received prefix is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// Into the RIB.
    Accept,
    /// Dropped, and why (the diagnostics show it).
    Refuse(String),
}

/// The import side of a CNI's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    mode: BgpMode,
    allowed: Vec<IpNet>,
    max_prefixes: u32,
}

impl Import {
    /// The policy of `spec`.
    pub fn of(spec: &CniSpec) -> Import {
        Import {
            mode: spec.bgp_mode,
            allowed: spec.prefixes.iter().map(IpNet::trunc).collect(),
            max_prefixes: spec.max_prefixes,
        }
    }

    /// Whether `prefix` is accepted.
    pub fn verdict(&self, prefix: &IpNet) -> Verdict {
        if self.mode == BgpMode::AdvertiseOnly {
            return Verdict::Refuse("the CNI is advertise_only: nothing is accepted".into());
        }
        let longest = match prefix {
            IpNet::V4(_) => MAX_V4_PREFIX_LEN,
            IpNet::V6(_) => MAX_V6_PREFIX_LEN,
        };
        if prefix.prefix_len() > longest {
            return Verdict::Refuse(format!("{prefix} is longer than /{longest}"));
        }
        if *prefix != prefix.trunc() {
            return Verdict::Refuse(format!("{prefix} has host bits set"));
        }
        if self.allowed.iter().any(|a| a.contains(prefix)) {
            Verdict::Accept
        } else {
            Verdict::Refuse(format!("{prefix} is not in the CNI's prefix list"))
        }
    }

    /// Whether `received` prefixes (accepted or refused) are more than the session allows (it
    /// is then stopped with Cease subcode 1, Maximum Number of Prefixes Reached).
    pub fn over_limit(&self, received: usize) -> bool {
        received > self.max_prefixes as usize
    }
}

/// What the PoP announces to the customer over the CNI: in `advertise_only`, the CNI's listed
/// prefixes (ours to announce for it); in `dynamic`, `offered` (the PoP's own routes).
pub fn exports(spec: &CniSpec, offered: &[IpNet]) -> Vec<IpNet> {
    match spec.bgp_mode {
        BgpMode::AdvertiseOnly => spec.prefixes.clone(),
        BgpMode::Dynamic => offered.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> CniSpec {
        let mut v = json!({"interconnect": "ic", "customer_asn": 64700, "use_case": "peering",
            "prefixes": ["203.0.113.0/24", "198.51.100.0/22", "2001:db8:100::/40"], "max_prefixes": 3});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn listed_prefixes_and_longer_ones_up_to_24_and_48_are_accepted() {
        let import = Import::of(&spec(json!({})));
        for ok in [
            "203.0.113.0/24",
            "198.51.100.0/22",
            "198.51.101.0/24",
            "2001:db8:100::/40",
            "2001:db8:1ff::/48",
        ] {
            assert_eq!(import.verdict(&net(ok)), Verdict::Accept, "{ok}");
        }
        for (bad, why) in [
            ("203.0.113.0/25", "longer than /24"),
            ("198.51.96.0/20", "not in the CNI's prefix list"),
            ("192.0.2.0/24", "not in the CNI's prefix list"),
            ("2001:db8:100::/49", "longer than /48"),
            ("2001:db8:200::/40", "not in the CNI's prefix list"),
            ("198.51.100.1/24", "host bits"),
        ] {
            match import.verdict(&net(bad)) {
                Verdict::Refuse(reason) => assert!(reason.contains(why), "{bad}: {reason}"),
                Verdict::Accept => panic!("{bad} accepted"),
            }
        }
    }

    #[test]
    fn advertise_only_accepts_nothing_and_exports_its_list() {
        let s = spec(json!({"bgp_mode": "advertise_only", "use_case": "magic_transit"}));
        assert!(matches!(
            Import::of(&s).verdict(&net("203.0.113.0/24")),
            Verdict::Refuse(_)
        ));
        assert_eq!(exports(&s, &[net("192.0.2.0/24")]), s.prefixes);
        let dynamic = spec(json!({}));
        assert_eq!(
            exports(&dynamic, &[net("192.0.2.0/24")]),
            [net("192.0.2.0/24")]
        );
    }

    #[test]
    fn the_limit_is_crossed_past_max_prefixes() {
        let import = Import::of(&spec(json!({})));
        assert!(!import.over_limit(3));
        assert!(import.over_limit(4));
    }
}
