//! The customer's L3/L4 rules (Magic Firewall's place in the path), pure: an ordered list of
//! rules, each matching on source and destination prefixes, protocol, ports, TCP flags and
//! packet length, with an action: `allow` (the packet skips the rules after it), `drop`, or
//! `rate_limit` (packets over the rate, counted per source, per destination or for the whole
//! rule, are dropped; those under it go on to the next rules). A packet no rule decides is
//! allowed. The built-in flood protections (`shield`) run after the rules either way.
//!
//! [`Ruleset`] is the account object as written (checked by [`Ruleset::problems`], each
//! problem with its field); [`Firewall`] is its compiled form with the rate-limit state, which
//! one packet thread owns. Time comes in as milliseconds on the caller's clock.

use std::net::IpAddr;

use edgenet_interconnect::Problem;
use edgenet_shield::window::SlidingWindow;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::packet::{protocol, tcp_flag, Header};
use crate::shield::{self, Protection};

/// The most rules an account has.
pub const MAX_RULES: usize = 1000;
/// Counters of a keyed rate limit (per row of its sketch).
const KEYED_WIDTH: usize = 8192;

/// An account's rules and the settings of its built-in protections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ruleset {
    /// The rules, in the order they are evaluated.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// The flood protections after the rules.
    #[serde(default)]
    pub protection: Protection,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its id (given by the control plane, kept across edits; counters are by id).
    #[serde(default)]
    pub id: String,
    /// For people.
    #[serde(default)]
    pub description: String,
    /// Evaluated (true by default).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What a matching packet gets.
    pub action: Action,
    /// The rate of a `rate_limit` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// What it matches (everything when empty).
    #[serde(default, rename = "match")]
    pub matches: Match,
}

fn yes() -> bool {
    true
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Pass, skipping the rules after it.
    Allow,
    /// Drop.
    Drop,
    /// Drop what is over the rate; the rest goes on to the next rules.
    RateLimit,
}

/// A rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Packets per second allowed.
    pub packets_per_second: u32,
    /// What the rate is counted by: `source`, `destination` or `rule` (the default).
    #[serde(default)]
    pub by: RateBy,
}

/// What a rate is counted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateBy {
    /// All the rule's packets together.
    #[default]
    Rule,
    /// Each source address.
    Source,
    /// Each destination address.
    Destination,
}

/// What a rule matches; an empty list or an absent field matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Source prefixes (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<IpNet>,
    /// Destination prefixes (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<IpNet>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `gre`, `sctp` or a protocol number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ProtocolName>,
    /// Source ports: `"53"` or `"1024-65535"` (TCP, UDP and SCTP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ports: Vec<Ports>,
    /// Destination ports, the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ports: Vec<Ports>,
    /// TCP flags that must be set and that must be clear (`syn`, `ack`, `fin`, `rst`, `psh`,
    /// `urg`, `ece`, `cwr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<TcpFlags>,
    /// The packet's length in bytes (IP header included), inclusive bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<Length>,
}

/// A protocol by name or number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProtocolName {
    /// A number (0 to 255).
    Number(u8),
    /// A name.
    Name(String),
}

impl ProtocolName {
    /// Its number; `None` for a name not known.
    pub fn number(&self) -> Option<u8> {
        match self {
            ProtocolName::Number(n) => Some(*n),
            ProtocolName::Name(n) => Some(match n.to_ascii_lowercase().as_str() {
                "icmp" => protocol::ICMP,
                "tcp" => protocol::TCP,
                "udp" => protocol::UDP,
                "gre" => protocol::GRE,
                "icmpv6" => protocol::ICMPV6,
                "sctp" => protocol::SCTP,
                _ => return None,
            }),
        }
    }
}

/// A port or a range of ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ports {
    /// One port.
    One(u16),
    /// `"N"` or `"LOW-HIGH"`.
    Text(String),
}

impl Ports {
    /// The inclusive range, or why the text is not one.
    pub fn range(&self) -> Result<(u16, u16), String> {
        match self {
            Ports::One(p) => Ok((*p, *p)),
            Ports::Text(t) => {
                let port = |s: &str| {
                    s.trim()
                        .parse::<u16>()
                        .map_err(|_| format!("{s:?} is not a port (0 to 65535)"))
                };
                let (lo, hi) = match t.split_once('-') {
                    Some((a, b)) => (port(a)?, port(b)?),
                    None => {
                        let p = port(t)?;
                        (p, p)
                    }
                };
                if lo > hi {
                    return Err(format!("{t:?}: the range runs backwards"));
                }
                Ok((lo, hi))
            }
        }
    }
}

/// TCP flags set and clear.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFlags {
    /// Flags that must be set.
    #[serde(default)]
    pub set: Vec<String>,
    /// Flags that must be clear.
    #[serde(default)]
    pub unset: Vec<String>,
}

fn flag_bit(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "fin" => tcp_flag::FIN,
        "syn" => tcp_flag::SYN,
        "rst" => tcp_flag::RST,
        "psh" => tcp_flag::PSH,
        "ack" => tcp_flag::ACK,
        "urg" => tcp_flag::URG,
        "ece" => tcp_flag::ECE,
        "cwr" => tcp_flag::CWR,
        _ => return None,
    })
}

/// Inclusive length bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Length {
    /// At least this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u16>,
    /// At most this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u16>,
}

impl Ruleset {
    /// Everything wrong with it, each with its field (`rules[2].match.destination_ports[0]`).
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.rules.len() > MAX_RULES {
            out.push(Problem::new(
                "rules",
                format!("{} rules; at most {MAX_RULES}", self.rules.len()),
            ));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = |f: &str| format!("rules[{i}].{f}");
            if r.description.len() > 256 {
                out.push(Problem::new(at("description"), "longer than 256 bytes"));
            }
            match (r.action, &r.rate_limit) {
                (Action::RateLimit, None) => out.push(Problem::new(
                    at("rate_limit"),
                    "a rate_limit rule needs its rate (packets_per_second)",
                )),
                (Action::RateLimit, Some(l)) if l.packets_per_second == 0 => out.push(
                    Problem::new(at("rate_limit.packets_per_second"), "must be at least 1"),
                ),
                (Action::Allow | Action::Drop, Some(_)) => out.push(Problem::new(
                    at("rate_limit"),
                    "only a rate_limit rule has a rate",
                )),
                _ => {}
            }
            let m = &r.matches;
            for (field, nets) in [("source", &m.source), ("destination", &m.destination)] {
                for (j, n) in nets.iter().enumerate() {
                    if n.trunc() != *n {
                        out.push(Problem::new(
                            at(&format!("match.{field}[{j}]")),
                            format!("{n} has host bits set (did you mean {}?)", n.trunc()),
                        ));
                    }
                }
            }
            let number = m.protocol.as_ref().map(|p| (p, p.number()));
            if let Some((p, None)) = &number {
                out.push(Problem::new(
                    at("match.protocol"),
                    format!("{p:?} is not tcp, udp, icmp, icmpv6, gre, sctp or a number"),
                ));
            }
            let number = number.and_then(|(_, n)| n);
            let has_ports = !m.source_ports.is_empty() || !m.destination_ports.is_empty();
            if has_ports
                && number
                    .is_some_and(|n| ![protocol::TCP, protocol::UDP, protocol::SCTP].contains(&n))
            {
                out.push(Problem::new(
                    at("match.protocol"),
                    "ports are only matched for tcp, udp and sctp",
                ));
            }
            for (field, ports) in [
                ("source_ports", &m.source_ports),
                ("destination_ports", &m.destination_ports),
            ] {
                for (j, p) in ports.iter().enumerate() {
                    if let Err(e) = p.range() {
                        out.push(Problem::new(at(&format!("match.{field}[{j}]")), e));
                    }
                }
            }
            if let Some(f) = &m.tcp_flags {
                if number.is_some_and(|n| n != protocol::TCP) {
                    out.push(Problem::new(
                        at("match.tcp_flags"),
                        "TCP flags need protocol tcp",
                    ));
                }
                for (field, names) in [("set", &f.set), ("unset", &f.unset)] {
                    for (j, name) in names.iter().enumerate() {
                        if flag_bit(name).is_none() {
                            out.push(Problem::new(
                                at(&format!("match.tcp_flags.{field}[{j}]")),
                                format!("{name:?} is not syn, ack, fin, rst, psh, urg, ece or cwr"),
                            ));
                        }
                    }
                }
                let both = f
                    .set
                    .iter()
                    .filter_map(|n| flag_bit(n))
                    .fold(0, |a, b| a | b)
                    & f.unset
                        .iter()
                        .filter_map(|n| flag_bit(n))
                        .fold(0, |a, b| a | b);
                if both != 0 {
                    out.push(Problem::new(
                        at("match.tcp_flags"),
                        "a flag cannot be both set and unset",
                    ));
                }
            }
            if let Some(Length {
                min: Some(lo),
                max: Some(hi),
            }) = &m.length
            {
                if lo > hi {
                    out.push(Problem::new(
                        at("match.length"),
                        format!("min {lo} is above max {hi}"),
                    ));
                }
            }
        }
        out.extend(self.protection.problems());
        out
    }
}

/// Why a packet was dropped, as the counters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dropped {
    /// A `drop` rule matched.
    Rule,
    /// Over a `rate_limit` rule's rate.
    RuleRateLimit,
    /// Over the per-source rate of a flood kind.
    SourceRate(shield::Flood),
    /// Over the per-destination rate of a flood kind.
    DestinationRate(shield::Flood),
    /// A SYN from a source not yet seen to retransmit, while its destination is flooded.
    SynChallenge,
    /// No route in the account's table, or a next hop this PoP cannot reach.
    NoRoute,
    /// A packet from the customer to the internet, where the prefix's egress is direct.
    EgressNotEnabled,
    /// The kernel refused to send it on (a CNI's port without its route, a full queue).
    SendFailed,
    /// Larger than the tunnel's MTU and not to be fragmented (Don't Fragment, IPv6): the
    /// sender is told the MTU (ICMP "fragmentation needed", for IPv4).
    TooBig,
}

impl Dropped {
    /// The label of the drop counter.
    pub fn as_str(self) -> &'static str {
        use shield::Flood::*;
        match self {
            Dropped::Rule => "rule",
            Dropped::RuleRateLimit => "rule_rate_limit",
            Dropped::SourceRate(Syn) => "syn_source_rate",
            Dropped::SourceRate(Udp) => "udp_source_rate",
            Dropped::SourceRate(Icmp) => "icmp_source_rate",
            Dropped::DestinationRate(Syn) => "syn_destination_rate",
            Dropped::DestinationRate(Udp) => "udp_destination_rate",
            Dropped::DestinationRate(Icmp) => "icmp_destination_rate",
            Dropped::SynChallenge => "syn_challenge",
            Dropped::NoRoute => "no_route",
            Dropped::EgressNotEnabled => "egress_not_enabled",
            Dropped::SendFailed => "send_failed",
            Dropped::TooBig => "too_big",
        }
    }

    /// Its place in [`Dropped::ALL`].
    pub const fn index(self) -> usize {
        use shield::Flood::*;
        match self {
            Dropped::Rule => 0,
            Dropped::RuleRateLimit => 1,
            Dropped::SourceRate(Syn) => 2,
            Dropped::SourceRate(Udp) => 3,
            Dropped::SourceRate(Icmp) => 4,
            Dropped::DestinationRate(Syn) => 5,
            Dropped::DestinationRate(Udp) => 6,
            Dropped::DestinationRate(Icmp) => 7,
            Dropped::SynChallenge => 8,
            Dropped::NoRoute => 9,
            Dropped::EgressNotEnabled => 10,
            Dropped::SendFailed => 11,
            Dropped::TooBig => 12,
        }
    }

    /// Every reason.
    pub const ALL: [Dropped; 13] = {
        use shield::Flood::*;
        [
            Dropped::Rule,
            Dropped::RuleRateLimit,
            Dropped::SourceRate(Syn),
            Dropped::SourceRate(Udp),
            Dropped::SourceRate(Icmp),
            Dropped::DestinationRate(Syn),
            Dropped::DestinationRate(Udp),
            Dropped::DestinationRate(Icmp),
            Dropped::SynChallenge,
            Dropped::NoRoute,
            Dropped::EgressNotEnabled,
            Dropped::SendFailed,
            Dropped::TooBig,
        ]
    };
}

/// What one rule did to a packet, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// It matched and the packet went on (allowed, or under the rate).
    Passed,
    /// It matched and dropped the packet.
    Dropped,
}

struct Compiled {
    action: Action,
    source: Vec<IpNet>,
    destination: Vec<IpNet>,
    protocol: Option<u8>,
    source_ports: Vec<(u16, u16)>,
    destination_ports: Vec<(u16, u16)>,
    set: u8,
    unset: u8,
    length: (u16, u16),
    limit: Option<(f64, RateBy, SlidingWindow)>,
}

impl Compiled {
    fn matches(&self, h: &Header) -> bool {
        fn any_net(nets: &[IpNet], a: IpAddr) -> bool {
            nets.is_empty() || nets.iter().any(|n| n.contains(&a))
        }
        fn any_port(ranges: &[(u16, u16)], p: u16, has_ports: bool) -> bool {
            ranges.is_empty()
                || (has_ports && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p)))
        }
        let has_ports = matches!(h.protocol, protocol::TCP | protocol::UDP | protocol::SCTP);
        self.protocol.is_none_or(|p| p == h.protocol)
            && (self.length.0..=self.length.1).contains(&h.length)
            && ((self.set | self.unset) == 0
                || (h.protocol == protocol::TCP
                    && h.tcp_flags & self.set == self.set
                    && h.tcp_flags & self.unset == 0))
            && any_port(&self.destination_ports, h.dport, has_ports)
            && any_port(&self.source_ports, h.sport, has_ports)
            && any_net(&self.destination, h.dst)
            && any_net(&self.source, h.src)
    }
}

/// An account's rules compiled, with their rate-limit state.
pub struct Firewall {
    rules: Vec<Compiled>,
    seed: u64,
}

impl Firewall {
    /// Compiles the enabled rules of `ruleset` (checked before: a rule with problems matches
    /// nothing) at `now_ms`; `seed` keys the hashes of rate-limit keys.
    pub fn new(ruleset: &Ruleset, seed: u64, now_ms: u64) -> Firewall {
        let rules = ruleset
            .rules
            .iter()
            .map(|r| {
                let m = &r.matches;
                let ranges = |ports: &[Ports]| -> Vec<(u16, u16)> {
                    ports.iter().filter_map(|p| p.range().ok()).collect()
                };
                let bits = |names: &[String]| {
                    names
                        .iter()
                        .filter_map(|n| flag_bit(n))
                        .fold(0u8, |a, b| a | b)
                };
                let (set, unset) = m
                    .tcp_flags
                    .as_ref()
                    .map_or((0, 0), |f| (bits(&f.set), bits(&f.unset)));
                let length = m.length.as_ref().map_or((0, u16::MAX), |l| {
                    (l.min.unwrap_or(0), l.max.unwrap_or(u16::MAX))
                });
                let limit = r.rate_limit.as_ref().map(|l| {
                    let width = if l.by == RateBy::Rule { 1 } else { KEYED_WIDTH };
                    (
                        f64::from(l.packets_per_second),
                        l.by,
                        SlidingWindow::new(1000, width, now_ms),
                    )
                });
                let broken = !r.enabled
                    || m.protocol.as_ref().is_some_and(|p| p.number().is_none())
                    || (r.action == Action::RateLimit && limit.is_none());
                Compiled {
                    action: r.action,
                    source: m.source.clone(),
                    destination: m.destination.clone(),
                    protocol: m.protocol.as_ref().and_then(ProtocolName::number),
                    source_ports: ranges(&m.source_ports),
                    destination_ports: ranges(&m.destination_ports),
                    set,
                    unset,
                    // A disabled or broken rule matches no length.
                    length: if broken { (1, 0) } else { length },
                    limit,
                }
            })
            .collect();
        Firewall { rules, seed }
    }

    /// The number of rules (counters are by index).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether it has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules over a packet at `now_ms`: `Err` when one dropped it. `hit` is told of
    /// every rule that matched, by index.
    pub fn check(
        &mut self,
        h: &Header,
        now_ms: u64,
        mut hit: impl FnMut(usize, Hit),
    ) -> Result<(), Dropped> {
        for (i, r) in self.rules.iter_mut().enumerate() {
            if !r.matches(h) {
                continue;
            }
            match r.action {
                Action::Allow => {
                    hit(i, Hit::Passed);
                    return Ok(());
                }
                Action::Drop => {
                    hit(i, Hit::Dropped);
                    return Err(Dropped::Rule);
                }
                Action::RateLimit => {
                    let Some((rate, by, window)) = &mut r.limit else {
                        continue;
                    };
                    let key = match by {
                        RateBy::Rule => 0,
                        RateBy::Source => shield::address_key(h.src, self.seed),
                        RateBy::Destination => shield::address_key(h.dst, self.seed),
                    };
                    if window.observe(key, now_ms) > *rate {
                        hit(i, Hit::Dropped);
                        return Err(Dropped::RuleRateLimit);
                    }
                    hit(i, Hit::Passed);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::ipv4;

    fn ruleset(json: serde_json::Value) -> Ruleset {
        let r: Ruleset = serde_json::from_value(json).unwrap();
        assert_eq!(r.problems(), vec![], "{r:?}");
        r
    }

    fn verdicts(fw: &mut Firewall, packets: &[Vec<u8>], now_ms: u64) -> Vec<Result<(), Dropped>> {
        packets
            .iter()
            .map(|p| fw.check(&Header::parse(p).unwrap(), now_ms, |_, _| {}))
            .collect()
    }

    #[test]
    fn rules_run_in_order_and_the_first_allow_or_drop_decides() {
        let rs = ruleset(serde_json::json!({"rules": [
            {"action": "allow", "match": {"source": ["198.51.100.0/24"], "protocol": "tcp", "destination_ports": ["80", "443"]}},
            {"action": "drop", "match": {"destination": ["203.0.113.0/24"], "protocol": "tcp"}},
            {"action": "drop", "match": {"protocol": "udp", "destination_ports": ["1000-2000"], "length": {"min": 100}}},
        ]}));
        let mut fw = Firewall::new(&rs, 1, 0);
        let web = ipv4("198.51.100.9", "203.0.113.5", 6, (40000, 443), 0x02, 0);
        let ssh = ipv4("198.51.100.9", "203.0.113.5", 6, (40000, 22), 0x02, 0);
        let small_udp = ipv4("192.0.2.1", "203.0.113.5", 17, (5, 1500), 0, 10);
        let big_udp = ipv4("192.0.2.1", "203.0.113.5", 17, (5, 1500), 0, 200);
        let other_port = ipv4("192.0.2.1", "203.0.113.5", 17, (5, 2001), 0, 200);
        let mut hits = Vec::new();
        fw.check(&Header::parse(&ssh).unwrap(), 0, |i, h| hits.push((i, h)))
            .unwrap_err();
        assert_eq!(hits, vec![(1, Hit::Dropped)]);
        assert_eq!(
            verdicts(&mut fw, &[web, ssh, small_udp, big_udp, other_port], 0),
            vec![
                Ok(()),
                Err(Dropped::Rule),
                Ok(()),
                Err(Dropped::Rule),
                Ok(())
            ]
        );
    }

    #[test]
    fn tcp_flags_match_set_and_unset_bits() {
        let rs = ruleset(serde_json::json!({"rules": [
            {"action": "drop", "match": {"protocol": "tcp", "tcp_flags": {"set": ["syn"], "unset": ["ack"]}}},
        ]}));
        let mut fw = Firewall::new(&rs, 1, 0);
        let syn = ipv4("192.0.2.1", "203.0.113.5", 6, (1, 80), 0x02, 0);
        let syn_ack = ipv4("192.0.2.1", "203.0.113.5", 6, (1, 80), 0x12, 0);
        assert_eq!(
            verdicts(&mut fw, &[syn, syn_ack], 0),
            vec![Err(Dropped::Rule), Ok(())]
        );
    }

    #[test]
    fn a_rate_limit_by_source_drops_only_the_source_over_its_rate() {
        let rs = ruleset(serde_json::json!({"rules": [
            {"action": "rate_limit", "rate_limit": {"packets_per_second": 10, "by": "source"}, "match": {"protocol": "udp"}},
            {"action": "drop", "match": {"source": ["192.0.2.66/32"]}},
        ]}));
        let mut fw = Firewall::new(&rs, 1, 0);
        let loud = ipv4("192.0.2.1", "203.0.113.5", 17, (1, 53), 0, 0);
        let quiet = ipv4("192.0.2.2", "203.0.113.5", 17, (1, 53), 0, 0);
        let v = verdicts(&mut fw, &vec![loud.clone(); 15], 100);
        assert_eq!(v.iter().filter(|v| v.is_ok()).count(), 10);
        assert_eq!(v[14], Err(Dropped::RuleRateLimit));
        assert_eq!(verdicts(&mut fw, &[quiet], 100), vec![Ok(())]);
        // Under the rate the packet goes on to the next rules.
        let banned = ipv4("192.0.2.66", "203.0.113.5", 17, (1, 53), 0, 0);
        assert_eq!(verdicts(&mut fw, &[banned], 100), vec![Err(Dropped::Rule)]);
        // Two seconds on, the source is under its rate again.
        assert_eq!(verdicts(&mut fw, &[loud], 2100), vec![Ok(())]);
    }

    #[test]
    fn disabled_rules_match_nothing_and_no_rule_means_allow() {
        let rs = ruleset(serde_json::json!({"rules": [
            {"action": "drop", "enabled": false},
        ]}));
        let mut fw = Firewall::new(&rs, 1, 0);
        let p = ipv4("192.0.2.1", "203.0.113.5", 17, (1, 53), 0, 0);
        assert_eq!(verdicts(&mut fw, &[p], 0), vec![Ok(())]);
    }

    #[test]
    fn problems_name_the_field() {
        let rs: Ruleset = serde_json::from_value(serde_json::json!({"rules": [
            {"action": "rate_limit"},
            {"action": "drop", "rate_limit": {"packets_per_second": 1}},
            {"action": "drop", "match": {"protocol": "icmp", "destination_ports": ["80"]}},
            {"action": "drop", "match": {"protocol": "tcp", "destination_ports": ["90-80", "x"], "source": ["10.0.0.1/8"]}},
            {"action": "drop", "match": {"protocol": "ospf", "tcp_flags": {"set": ["syn", "bogus"], "unset": ["syn"]}, "length": {"min": 9, "max": 1}}},
        ]}))
        .unwrap();
        let fields: Vec<String> = rs.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec![
                "rules[0].rate_limit",
                "rules[1].rate_limit",
                "rules[2].match.protocol",
                "rules[3].match.source[0]",
                "rules[3].match.destination_ports[0]",
                "rules[3].match.destination_ports[1]",
                "rules[4].match.protocol",
                "rules[4].match.tcp_flags.set[1]",
                "rules[4].match.tcp_flags",
                "rules[4].match.length",
            ]
        );
    }

    #[test]
    fn every_reason_sits_at_its_index_with_its_own_label() {
        let labels: std::collections::BTreeSet<&str> =
            Dropped::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(labels.len(), Dropped::ALL.len());
        for (i, d) in Dropped::ALL.iter().enumerate() {
            assert_eq!(d.index(), i, "{d:?}");
        }
    }
}
