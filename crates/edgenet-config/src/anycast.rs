//! The `[anycast]` section, validated: BGP speaker settings in `edgenet-bgp`'s own types, the
//! addresses for `lo`, and the health checks the announcement depends on.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use edgenet_bgp::bfd::BfdConfig;
use edgenet_bgp::config::{PeerConfig, SpeakerConfig, MD5_MAX_KEY};
use edgenet_bgp::message::{Family, Prefix};
use edgenet_bgp::rib::{FilterEntry, PrefixFilter};

use crate::schema::{AnycastCheckSection, AnycastSection, BfdSection, BgpPeerSection};
use crate::validate::Validator;

/// Validated anycast settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Anycast {
    /// The BGP speaker: AS, router id, listeners, peers with their export attributes.
    pub speaker: SpeakerConfig,
    /// The prefixes announced while healthy.
    pub prefixes: Vec<Prefix>,
    /// Addresses with prefix lengths to put on `lo`.
    pub lo_addresses: Vec<(IpAddr, u8)>,
    /// Between the GRACEFUL_SHUTDOWN re-announcement and the withdrawal of a planned drain.
    pub graceful_shutdown_wait: Duration,
    /// SIGTERM: serving time after the withdrawal, before the listeners close.
    pub drain_time: Duration,
    /// How often the node checks its own listeners.
    pub check_interval: Duration,
    /// The extra checks.
    pub checks: Vec<AnycastCheck>,
}

/// One health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnycastCheck {
    /// Its name.
    pub name: String,
    /// What is checked.
    pub target: CheckTarget,
    /// Time between checks.
    pub interval: Duration,
    /// Longest time for one check.
    pub timeout: Duration,
    /// Consecutive passes to come back.
    pub rise: u32,
    /// Consecutive failures to fail.
    pub fall: u32,
}

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckTarget {
    /// A GET that must answer 2xx or 3xx.
    Http {
        /// The address connected to.
        address: SocketAddr,
        /// TLS (https).
        tls: bool,
        /// Host header and SNI.
        host: String,
        /// Path and query.
        path: String,
    },
    /// A TCP connection that must open.
    Tcp(SocketAddr),
}

fn shown(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl Validator<'_> {
    pub(crate) fn anycast(&mut self, raw: &AnycastSection) -> Anycast {
        if raw.local_as == 0 {
            self.err("anycast.local_as", "0", "must be between 1 and 4294967295");
        }
        let router_id = match raw.router_id.parse::<Ipv4Addr>() {
            Ok(a) if !a.is_unspecified() => a,
            _ => {
                self.err(
                    "anycast.router_id",
                    &raw.router_id,
                    "must be a non-zero IPv4 address (the BGP identifier)",
                );
                Ipv4Addr::new(0, 0, 0, 1)
            }
        };
        let listen = raw
            .listen
            .iter()
            .enumerate()
            .filter_map(|(i, l)| self.socket_addr(&format!("anycast.listen[{i}]"), l))
            .collect();
        if raw.prefixes.is_empty() {
            self.err("anycast.prefixes", "", "at least one prefix is required");
        }
        let prefixes: Vec<Prefix> = raw
            .prefixes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.prefix(&format!("anycast.prefixes[{i}]"), p))
            .collect();
        let mut lo_addresses = Vec::new();
        for (i, a) in raw.lo_addresses.iter().enumerate() {
            let path = format!("anycast.lo_addresses[{i}]");
            let parsed = a.split_once('/').and_then(|(ip, len)| {
                let ip: IpAddr = ip.parse().ok()?;
                let len: u8 = len.parse().ok()?;
                (len <= if ip.is_ipv4() { 32 } else { 128 }).then_some((ip, len))
            });
            let Some((ip, len)) = parsed else {
                self.err(
                    path,
                    a,
                    "is not an address with a prefix length (192.0.2.1/32)",
                );
                continue;
            };
            let host = match ip {
                IpAddr::V4(v) => Prefix::V4(v, 32),
                IpAddr::V6(v) => Prefix::V6(v, 128),
            };
            if !prefixes.iter().any(|p| p.contains(&host)) {
                self.err(path, a, "is in none of anycast.prefixes");
            }
            lo_addresses.push((ip, len));
        }
        let communities: Vec<u32> = raw
            .communities
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let parsed = c.split_once(':').and_then(|(a, b)| {
                    Some(
                        (u32::from(a.parse::<u16>().ok()?) << 16)
                            | u32::from(b.parse::<u16>().ok()?),
                    )
                });
                if parsed.is_none() {
                    self.err(
                        format!("anycast.communities[{i}]"),
                        c,
                        "is not ASN:value (two 16-bit numbers)",
                    );
                }
                parsed
            })
            .collect();
        let large_communities: Vec<(u32, u32, u32)> = raw
            .large_communities
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n: Vec<Option<u32>> = c.split(':').map(|x| x.parse().ok()).collect();
                match n.as_slice() {
                    [Some(a), Some(b), Some(c)] => Some((*a, *b, *c)),
                    _ => {
                        self.err(
                            format!("anycast.large_communities[{i}]"),
                            c,
                            "is not global:local1:local2 (three 32-bit numbers)",
                        );
                        None
                    }
                }
            })
            .collect();
        let mut seen = HashSet::new();
        let mut peers = Vec::new();
        for (i, p) in raw.peers.iter().enumerate() {
            let path = format!("anycast.peers[{i}]");
            if let Some(mut peer) = self.bgp_peer(&path, p) {
                if !seen.insert(peer.address) {
                    self.err(format!("{path}.address"), &p.address, "is listed twice");
                }
                peer.communities = communities.clone();
                peer.large_communities = large_communities.clone();
                peers.push(peer);
            }
        }
        if raw.peers.is_empty() {
            self.err("anycast.peers", "", "at least one peer is required");
        }
        for (what, d, max) in [
            ("graceful_shutdown_wait", raw.graceful_shutdown_wait, 600),
            ("drain_time", raw.drain_time, 3600),
        ] {
            if d > Duration::from_secs(max) {
                self.err(
                    format!("anycast.{what}"),
                    shown(d),
                    format!("must be at most {max}s"),
                );
            }
        }
        if raw.check_interval < Duration::from_millis(10)
            || raw.check_interval > Duration::from_secs(60)
        {
            self.err(
                "anycast.check_interval",
                shown(raw.check_interval),
                "must be between 10ms and 60s",
            );
        }
        let checks = raw
            .checks
            .iter()
            .enumerate()
            .filter_map(|(i, c)| self.anycast_check(&format!("anycast.checks[{i}]"), c))
            .collect();
        Anycast {
            speaker: SpeakerConfig {
                local_as: raw.local_as,
                router_id,
                listen,
                peers,
            },
            prefixes,
            lo_addresses,
            graceful_shutdown_wait: raw.graceful_shutdown_wait,
            drain_time: raw.drain_time,
            check_interval: raw.check_interval,
            checks,
        }
    }

    fn prefix(&mut self, path: &str, value: &str) -> Option<Prefix> {
        match value.parse::<Prefix>() {
            Ok(p) => Some(p),
            Err(reason) => {
                self.err(path, value, reason);
                None
            }
        }
    }

    fn ip(&mut self, path: &str, value: &str) -> Option<IpAddr> {
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(path, value, "is not an IP address");
                None
            }
        }
    }

    fn bgp_peer(&mut self, path: &str, p: &BgpPeerSection) -> Option<PeerConfig> {
        let address = self.ip(&format!("{path}.address"), &p.address);
        if p.asn == 0 {
            self.err(
                format!("{path}.asn"),
                "0",
                "must be between 1 and 4294967295",
            );
        }
        let local_address = p
            .local_address
            .as_ref()
            .and_then(|a| self.ip(&format!("{path}.local_address"), a));
        if let (Some(a), Some(l)) = (address, local_address) {
            if a.is_ipv4() != l.is_ipv4() {
                self.err(
                    format!("{path}.local_address"),
                    l.to_string(),
                    "is not in the peer address's family",
                );
            }
        }
        if let Some(k) = &p.md5_password {
            if k.is_empty() || k.len() > MD5_MAX_KEY {
                self.err(
                    format!("{path}.md5_password"),
                    "(hidden)",
                    format!("must be 1 to {MD5_MAX_KEY} bytes"),
                );
            }
        }
        let hold = p.hold_time;
        if !(hold.is_zero()
            || (Duration::from_secs(3)..=Duration::from_secs(65535)).contains(&hold))
            || hold.subsec_nanos() != 0
        {
            self.err(
                format!("{path}.hold_time"),
                shown(hold),
                "must be 0 or whole seconds from 3s to 65535s",
            );
        }
        if let Some(k) = p.keepalive {
            if k.is_zero() || (!hold.is_zero() && k > hold / 3) {
                self.err(
                    format!("{path}.keepalive"),
                    shown(k),
                    "must be longer than zero and at most a third of hold_time",
                );
            }
        }
        if p.connect_retry < Duration::from_millis(100)
            || p.connect_retry > Duration::from_secs(3600)
        {
            self.err(
                format!("{path}.connect_retry"),
                shown(p.connect_retry),
                "must be between 100ms and 1h",
            );
        }
        if p.prepend > 16 {
            self.err(
                format!("{path}.prepend"),
                p.prepend.to_string(),
                "must be at most 16",
            );
        }
        let next_hop_v4 = p.next_hop_v4.as_ref().and_then(|a| match a.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(format!("{path}.next_hop_v4"), a, "is not an IPv4 address");
                None
            }
        });
        let next_hop_v6 = p.next_hop_v6.as_ref().and_then(|a| match a.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(format!("{path}.next_hop_v6"), a, "is not an IPv6 address");
                None
            }
        });
        let mut import = PrefixFilter::default();
        for (j, entry) in p.import.iter().enumerate() {
            match parse_filter_entry(entry) {
                Ok(e) => import.entries.push(e),
                Err(reason) => self.err(format!("{path}.import[{j}]"), entry, reason),
            }
        }
        if p.max_prefixes == Some(0) {
            self.err(
                format!("{path}.max_prefixes"),
                "0",
                "must be at least 1 (leave it out for no limit)",
            );
        }
        let mut families = Vec::new();
        for (j, f) in p.families.iter().enumerate() {
            match f.as_str() {
                "ipv4" => families.push(Family::Ipv4Unicast),
                "ipv6" => families.push(Family::Ipv6Unicast),
                _ => self.err(
                    format!("{path}.families[{j}]"),
                    f,
                    "must be \"ipv4\" or \"ipv6\"",
                ),
            }
        }
        if p.families.is_empty() {
            self.err(
                format!("{path}.families"),
                "",
                "at least one family is required",
            );
        }
        let bfd = p.bfd.as_ref().map(|b| self.bfd(&format!("{path}.bfd"), b));
        Some(PeerConfig {
            address: address?,
            port: p.port,
            peer_as: p.asn,
            local_address,
            passive: p.passive,
            md5_key: p.md5_password.clone(),
            hold_time: hold,
            keepalive: p.keepalive,
            connect_retry: p.connect_retry,
            bfd,
            med: p.med,
            prepend: p.prepend,
            communities: Vec::new(),
            large_communities: Vec::new(),
            next_hop_v4,
            next_hop_v6,
            import,
            max_prefixes: p.max_prefixes,
            families,
        })
    }

    /// BFD timers at `path`.
    pub(crate) fn bfd(&mut self, path: &str, b: &BfdSection) -> BfdConfig {
        for (what, d) in [("min_tx", b.min_tx), ("min_rx", b.min_rx)] {
            if d < Duration::from_millis(1) || d > Duration::from_secs(60) {
                self.err(
                    format!("{path}.{what}"),
                    shown(d),
                    "must be between 1ms and 60s",
                );
            }
        }
        if b.multiplier == 0 {
            self.err(format!("{path}.multiplier"), "0", "must be at least 1");
        }
        BfdConfig {
            desired_min_tx: b.min_tx,
            required_min_rx: b.min_rx,
            detect_mult: b.multiplier.max(1),
        }
    }

    fn anycast_check(&mut self, path: &str, c: &AnycastCheckSection) -> Option<AnycastCheck> {
        if c.name.is_empty() {
            self.err(format!("{path}.name"), "", "must not be empty");
        }
        if c.interval < Duration::from_millis(10) || c.interval > Duration::from_secs(3600) {
            self.err(
                format!("{path}.interval"),
                shown(c.interval),
                "must be between 10ms and 1h",
            );
        }
        if c.timeout.is_zero() || c.timeout > Duration::from_secs(60) {
            self.err(
                format!("{path}.timeout"),
                shown(c.timeout),
                "must be longer than zero and at most 60s",
            );
        }
        for (what, n) in [("rise", c.rise), ("fall", c.fall)] {
            if n == 0 || n > 100 {
                self.err(
                    format!("{path}.{what}"),
                    n.to_string(),
                    "must be between 1 and 100",
                );
            }
        }
        let target = match (&c.http, &c.tcp) {
            (Some(url), None) => match self.check_url(url) {
                Ok(t) => t,
                Err(reason) => {
                    self.err(format!("{path}.http"), url, reason);
                    return None;
                }
            },
            (None, Some(addr)) => match self.resolve_origin(addr) {
                Ok(a) => CheckTarget::Tcp(a),
                Err(reason) => {
                    self.err(format!("{path}.tcp"), addr, reason);
                    return None;
                }
            },
            _ => {
                self.err(path, &c.name, "needs exactly one of http or tcp");
                return None;
            }
        };
        Some(AnycastCheck {
            name: c.name.clone(),
            target,
            interval: c.interval,
            timeout: c.timeout,
            rise: c.rise,
            fall: c.fall,
        })
    }
}

/// `10.0.0.0/8`, `10.0.0.0/8 le 24`, `10.0.0.0/8 ge 16 le 24`.
fn parse_filter_entry(s: &str) -> Result<FilterEntry, String> {
    let mut words = s.split_whitespace();
    let prefix: Prefix = words.next().unwrap_or_default().parse()?;
    let max = if matches!(prefix, Prefix::V4(..)) {
        32
    } else {
        128
    };
    let (mut ge, mut le) = (prefix.prefix_len(), prefix.prefix_len());
    let mut le_set = false;
    while let Some(w) = words.next() {
        let n: u8 = words
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("needs a length up to {max} after {w:?}"))?;
        match w {
            "ge" => {
                ge = n;
                if !le_set {
                    le = max;
                }
            }
            "le" => {
                le = n;
                le_set = true;
            }
            _ => return Err(format!("has {w:?} where \"ge\" or \"le\" was expected")),
        }
    }
    if ge < prefix.prefix_len() || le < ge {
        return Err("needs prefix length <= ge <= le".into());
    }
    Ok(FilterEntry { prefix, ge, le })
}

impl Validator<'_> {
    /// An `http://` or `https://` check URL; a host name is resolved through the environment.
    fn check_url(&self, url: &str) -> Result<CheckTarget, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("must start with http:// or https://".into()),
        };
        let host = uri
            .host()
            .ok_or("has no host")?
            .trim_matches(|c| c == '[' || c == ']');
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let address = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => self.resolve_origin(&format!("{host}:{port}"))?,
        };
        Ok(CheckTarget::Http {
            address,
            tls,
            host: host.to_string(),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_entries() {
        let e = parse_filter_entry("10.0.0.0/8 le 24").unwrap();
        assert_eq!((e.ge, e.le), (8, 24));
        let e = parse_filter_entry("10.0.0.0/8 ge 16").unwrap();
        assert_eq!((e.ge, e.le), (16, 32));
        let e = parse_filter_entry("2001:db8::/32").unwrap();
        assert_eq!((e.ge, e.le), (32, 32));
        assert!(parse_filter_entry("10.0.0.0/8 le 4").is_err());
        assert!(parse_filter_entry("10.0.0.0/8 lt 24").is_err());
        assert!(parse_filter_entry("10.0.0.0/8 le").is_err());
        assert!(parse_filter_entry("10.0.0.1/8").is_err());
    }

    #[test]
    fn check_urls() {
        let mut env = crate::env::fake::Fake::default();
        env.hosts
            .insert("health.test".into(), vec!["192.0.2.9".parse().unwrap()]);
        let v = Validator::new(std::path::Path::new("."), &env);
        let t = v.check_url("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!(
            t,
            CheckTarget::Http {
                address: "127.0.0.1:8080".parse().unwrap(),
                tls: false,
                host: "127.0.0.1".into(),
                path: "/health?x=1".into()
            }
        );
        assert!(v.check_url("ftp://x/").is_err());
        assert!(
            matches!(v.check_url("https://[::1]/").unwrap(), CheckTarget::Http { tls: true, address, .. } if address.port() == 443)
        );
        // A name goes through the environment's resolver.
        let t = v.check_url("https://health.test/ok").unwrap();
        assert!(
            matches!(t, CheckTarget::Http { address, ref host, .. } if address == "192.0.2.9:443".parse().unwrap() && host == "health.test")
        );
        let e = v.check_url("http://unknown.test/").unwrap_err();
        assert!(e.contains("cannot be resolved"), "{e}");
    }
}
