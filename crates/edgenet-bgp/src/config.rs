//! The speaker's settings and what it announces, as plain values: the configuration crate
//! builds them and the node sets them, without either needing the speaker's sockets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::bfd::BfdConfig;
use crate::message::{Family, Prefix};
use crate::rib::PrefixFilter;

/// Longest MD5 key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY: usize = 80;

/// The well-known GRACEFUL_SHUTDOWN community (RFC 8326), 65535:0.
pub const GRACEFUL_SHUTDOWN: u32 = 0xffff_0000;

/// One configured peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's TCP port (179).
    pub port: u16,
    /// The peer's AS; equal to ours for iBGP.
    pub peer_as: u32,
    /// Our source address towards the peer; the kernel's choice when absent.
    pub local_address: Option<IpAddr>,
    /// Only accept the peer's connection; never connect.
    pub passive: bool,
    /// TCP MD5 key (RFC 2385).
    pub md5_key: Option<String>,
    /// The hold time we offer.
    pub hold_time: Duration,
    /// The longest time between our KEEPALIVEs.
    pub keepalive: Option<Duration>,
    /// Time between connection attempts.
    pub connect_retry: Duration,
    /// BFD for this peer, when wanted.
    pub bfd: Option<BfdConfig>,
    /// MULTI_EXIT_DISC on our announcements.
    pub med: Option<u32>,
    /// Extra copies of our AS prepended on eBGP announcements.
    pub prepend: u8,
    /// Communities on our announcements.
    pub communities: Vec<u32>,
    /// Large communities on our announcements.
    pub large_communities: Vec<(u32, u32, u32)>,
    /// Next hop for IPv4 routes; our session address when absent and the session is IPv4.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes; our session address when absent and the session is IPv6.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Routes accepted from the peer.
    pub import: PrefixFilter,
    /// Most routes the peer may send before the session is reset.
    pub max_prefixes: Option<usize>,
    /// Families to negotiate.
    pub families: Vec<Family>,
}

/// The speaker's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerConfig {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Addresses to accept BGP connections on (empty: only connect out).
    pub listen: Vec<SocketAddr>,
    /// The peers.
    pub peers: Vec<PeerConfig>,
}

/// What the node wants one peer to have from us: each prefix, and whether it carries the
/// GRACEFUL_SHUTDOWN community (with LOCAL_PREF 0 on iBGP) before a planned withdrawal.
/// Each peer has its own, so prefix groups with their own announce rules (the PoP's anycast
/// prefixes, a customer's) can go to different sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// Prefix to its route's settings; empty withdraws everything.
    pub routes: BTreeMap<Prefix, Route>,
}

/// How one exported prefix is announced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route {
    /// Tagged with GRACEFUL_SHUTDOWN (RFC 8326) ahead of its withdrawal.
    pub graceful_shutdown: bool,
    /// The AS that originates the prefix behind ours (a customer's own prefix, announced
    /// as `our-as customer-as`); `None`: we originate it.
    pub origin_as: Option<u32>,
}

impl Export {
    /// `prefixes`, all announced the same way.
    pub fn of(prefixes: impl IntoIterator<Item = Prefix>, graceful_shutdown: bool) -> Export {
        let route = Route {
            graceful_shutdown,
            origin_as: None,
        };
        Export {
            routes: prefixes.into_iter().map(|p| (p, route)).collect(),
        }
    }

    /// Adds `prefixes` (a prefix already present keeps GRACEFUL_SHUTDOWN only if both ask
    /// for it: a normal announcement wins).
    pub fn add(&mut self, prefixes: &[Prefix], graceful_shutdown: bool) {
        for p in prefixes {
            self.add_one(*p, graceful_shutdown, None);
        }
    }

    /// Adds one prefix, originated by `origin_as` behind us when given (as [`Export::add`]).
    pub fn add_one(&mut self, prefix: Prefix, graceful_shutdown: bool, origin_as: Option<u32>) {
        let r = self.routes.entry(prefix).or_insert(Route {
            graceful_shutdown,
            origin_as,
        });
        r.graceful_shutdown &= graceful_shutdown;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_announcement_wins_over_graceful_shutdown() {
        let a: Prefix = "192.0.2.0/24".parse().unwrap();
        let b: Prefix = "198.51.100.0/24".parse().unwrap();
        let mut e = Export::of([a], true);
        e.add(&[a, b], false);
        assert!(!e.routes[&a].graceful_shutdown);
        assert!(!e.routes[&b].graceful_shutdown);
        e.add(&[b], true);
        assert!(
            !e.routes[&b].graceful_shutdown,
            "already announced normally"
        );
        assert_eq!(e.routes.len(), 2);
    }
}
