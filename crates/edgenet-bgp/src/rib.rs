//! Received routes, pure: an Adj-RIB-In per peer (with its import prefix filter and max-prefix
//! limit) and the best path per prefix across peers (RFC 4271 section 9.1).
//!
//! The Adj-RIB-In keeps every route received (pre-policy), marked accepted or filtered, so a
//! changed filter applies without a route refresh and the max-prefix limit counts what the peer
//! sent, not what we kept.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::message::{
    merge_as4_path, path_len, Attribute, Codec, Family, Origin, Prefix, Segment, Update,
};

impl Prefix {
    /// The family of the prefix.
    pub fn family(&self) -> Family {
        match self {
            Prefix::V4(..) => Family::Ipv4Unicast,
            Prefix::V6(..) => Family::Ipv6Unicast,
        }
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        match self {
            Prefix::V4(_, l) | Prefix::V6(_, l) => *l,
        }
    }

    /// Whether `other` lies within this prefix (same family, at least as long, same leading bits).
    pub fn contains(&self, other: &Prefix) -> bool {
        match (self, other) {
            (Prefix::V4(a, l), Prefix::V4(b, m)) => {
                m >= l
                    && mask(u128::from(u32::from(*a)), 32, *l)
                        == mask(u128::from(u32::from(*b)), 32, *l)
            }
            (Prefix::V6(a, l), Prefix::V6(b, m)) => {
                m >= l && mask(u128::from(*a), 128, *l) == mask(u128::from(*b), 128, *l)
            }
            _ => false,
        }
    }
}

fn mask(bits: u128, width: u8, len: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let keep = u128::MAX << (128 - u32::from(len.min(width)));
    (bits << (128 - u32::from(width))) & keep
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prefix::V4(a, l) => write!(f, "{a}/{l}"),
            Prefix::V6(a, l) => write!(f, "{a}/{l}"),
        }
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;

    /// `192.0.2.0/24` or `2001:db8::/32`; host bits must be zero.
    fn from_str(s: &str) -> Result<Prefix, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| "is not a prefix (address/length)".to_string())?;
        let len: u8 = len
            .parse()
            .map_err(|_| "has no valid prefix length".to_string())?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "has no valid IP address".to_string())?;
        let p = match addr {
            IpAddr::V4(a) if len <= 32 => Prefix::V4(a, len),
            IpAddr::V6(a) if len <= 128 => Prefix::V6(a, len),
            _ => return Err("has a prefix length longer than the address".into()),
        };
        if p.network() != p {
            return Err(format!(
                "has host bits set (the network is {})",
                p.network()
            ));
        }
        Ok(p)
    }
}

impl Prefix {
    /// The prefix with its host bits cleared.
    pub fn network(&self) -> Prefix {
        match *self {
            Prefix::V4(a, l) => {
                let m = if l == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(l))
                };
                Prefix::V4(Ipv4Addr::from(u32::from(a) & m), l)
            }
            Prefix::V6(a, l) => {
                let m = if l == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(l))
                };
                Prefix::V6(Ipv6Addr::from(u128::from(a) & m), l)
            }
        }
    }
}

/// One entry of an import filter: a prefix and the range of lengths allowed within it
/// (`10.0.0.0/8 le 24` is `{prefix: 10.0.0.0/8, ge: 8, le: 24}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterEntry {
    /// The covering prefix.
    pub prefix: Prefix,
    /// The shortest length accepted.
    pub ge: u8,
    /// The longest length accepted.
    pub le: u8,
}

/// An import filter: a route is accepted when an entry covers it. Empty accepts nothing
/// (RFC 8212: no eBGP route is used without a policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixFilter {
    /// Accepted ranges.
    pub entries: Vec<FilterEntry>,
}

impl PrefixFilter {
    /// Whether the filter accepts the prefix.
    pub fn permits(&self, p: &Prefix) -> bool {
        self.entries
            .iter()
            .any(|e| e.prefix.contains(p) && (e.ge..=e.le).contains(&p.prefix_len()))
    }
}

/// A route's attributes as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// ORIGIN.
    pub origin: Origin,
    /// The AS path (AS4_PATH already merged in).
    pub as_path: Vec<Segment>,
    /// The next hop (for IPv6, the global address).
    pub next_hop: IpAddr,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF (iBGP only).
    pub local_pref: Option<u32>,
    /// Communities.
    pub communities: Vec<u32>,
    /// Large communities.
    pub large_communities: Vec<(u32, u32, u32)>,
}

/// The peer a path came from, as best-path selection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's BGP identifier.
    pub router_id: Ipv4Addr,
    /// The peer's AS.
    pub peer_as: u32,
    /// Our AS (for loop detection and eBGP vs iBGP).
    pub local_as: u32,
}

impl PeerInfo {
    fn ebgp(&self) -> bool {
        self.peer_as != self.local_as
    }
}

/// The max-prefix limit was exceeded: the session must be reset (RFC 4486 Cease subcode 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the peer sent {received} prefixes, over the limit of {limit}")]
pub struct MaxPrefixExceeded {
    /// Routes held after the UPDATE.
    pub received: usize,
    /// The configured limit.
    pub limit: usize,
}

/// One peer's received routes.
#[derive(Debug, Clone)]
pub struct AdjRibIn {
    peer: PeerInfo,
    filter: PrefixFilter,
    max_prefixes: Option<usize>,
    /// Prefix to path and whether the import filter accepted it.
    routes: HashMap<Prefix, (Arc<Path>, bool)>,
    /// Prefixes whose route changed since [`AdjRibIn::take_changes`], when a consumer follows
    /// them (the node installing a peer's routes in a kernel table).
    changed: Option<HashSet<Prefix>>,
}

/// A prefix's accepted route after a change: its next hop, or none when it is gone (withdrawn,
/// refused by the filter, or the session went down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteChange {
    /// The prefix.
    pub prefix: Prefix,
    /// The accepted route's next hop, if one is left.
    pub next_hop: Option<IpAddr>,
}

impl AdjRibIn {
    /// An empty table for a peer.
    pub fn new(peer: PeerInfo, filter: PrefixFilter, max_prefixes: Option<usize>) -> AdjRibIn {
        AdjRibIn {
            peer,
            filter,
            max_prefixes,
            routes: HashMap::new(),
            changed: None,
        }
    }

    /// Starts keeping the prefixes that change, for [`AdjRibIn::take_changes`]; every route
    /// held counts as changed.
    pub fn track_changes(&mut self) {
        if self.changed.is_none() {
            self.changed = Some(self.routes.keys().copied().collect());
        }
    }

    /// The accepted route of each prefix that changed since the last call, sorted by prefix.
    pub fn take_changes(&mut self) -> Vec<RouteChange> {
        let Some(changed) = self.changed.as_mut() else {
            return Vec::new();
        };
        let mut out: Vec<RouteChange> = changed
            .drain()
            .map(|prefix| RouteChange {
                prefix,
                next_hop: self
                    .routes
                    .get(&prefix)
                    .filter(|(_, ok)| *ok)
                    .map(|(p, _)| p.next_hop),
            })
            .collect();
        out.sort_by_key(|c| c.prefix);
        out
    }

    /// Every route held: prefix, path, whether the filter accepted it.
    pub fn routes(&self) -> impl Iterator<Item = (&Prefix, &Arc<Path>, bool)> {
        self.routes.iter().map(|(p, (path, ok))| (p, path, *ok))
    }

    fn touch(&mut self, p: Prefix) {
        if let Some(c) = self.changed.as_mut() {
            c.insert(p);
        }
    }

    /// Routes held (accepted or not).
    pub fn received(&self) -> usize {
        self.routes.len()
    }

    /// Routes the import filter accepted.
    pub fn accepted(&self) -> usize {
        self.routes.values().filter(|(_, ok)| *ok).count()
    }

    /// Applies an UPDATE. RFC 7606: an UPDATE marked treat-as-withdraw, or one announcing
    /// routes without ORIGIN, AS_PATH or a next hop, withdraws its prefixes instead.
    pub fn apply(&mut self, update: &Update, codec: Codec) -> Result<(), MaxPrefixExceeded> {
        let mut withdrawn = update.withdrawn.clone();
        let mut origin = None;
        let mut as_path = None;
        let mut as4_path = None;
        let mut next_hop_v4 = None;
        let mut med = None;
        let mut local_pref = None;
        let mut communities = Vec::new();
        let mut large_communities = Vec::new();
        let mut mp: Option<(Vec<Prefix>, Option<IpAddr>)> = None;
        for a in &update.attributes {
            match a {
                Attribute::Origin(o) => origin = Some(*o),
                Attribute::AsPath(p) => as_path = Some(p.clone()),
                Attribute::As4Path(p) => as4_path = Some(p.clone()),
                Attribute::NextHop(n) => next_hop_v4 = Some(IpAddr::V4(*n)),
                Attribute::Med(m) => med = Some(*m),
                Attribute::LocalPref(l) => local_pref = Some(*l),
                Attribute::Communities(c) => communities = c.clone(),
                Attribute::LargeCommunities(c) => large_communities = c.clone(),
                Attribute::MpReach { next_hop, nlri, .. } => {
                    // 4 octets (IPv4), 16 (IPv6 global) or 32 (global + link-local): the
                    // global address comes first.
                    let nh = match next_hop.len() {
                        4 => Some(IpAddr::V4(Ipv4Addr::new(
                            next_hop[0],
                            next_hop[1],
                            next_hop[2],
                            next_hop[3],
                        ))),
                        16 | 32 => {
                            let mut b = [0u8; 16];
                            b.copy_from_slice(&next_hop[..16]);
                            Some(IpAddr::V6(Ipv6Addr::from(b)))
                        }
                        _ => None,
                    };
                    mp = Some((nlri.clone(), nh));
                }
                Attribute::MpUnreach { withdrawn: w, .. } => withdrawn.extend_from_slice(w),
                Attribute::Unknown { .. } => {}
            }
        }
        let mut announced: Vec<(Prefix, Option<IpAddr>)> =
            update.nlri.iter().map(|p| (*p, next_hop_v4)).collect();
        if let Some((nlri, nh)) = mp {
            announced.extend(nlri.into_iter().map(|p| (p, nh)));
        }
        for p in &withdrawn {
            if self.routes.remove(p).is_some() {
                self.touch(*p);
            }
        }
        if announced.is_empty() {
            return Ok(());
        }
        let (Some(origin), Some(as_path), false) = (origin, as_path, update.treat_as_withdraw)
        else {
            for (p, _) in &announced {
                if self.routes.remove(p).is_some() {
                    self.touch(*p);
                }
            }
            return Ok(());
        };
        let as_path = match (codec.four_octet_as, as4_path) {
            (false, Some(p4)) => merge_as4_path(&as_path, &p4),
            _ => as_path,
        };
        // A route with our own AS in its path is a loop (RFC 4271 section 9.1.2); an eBGP route
        // must carry the peer's AS first.
        let looped = as_path.iter().any(|s| match s {
            Segment::Set(a) | Segment::Sequence(a) => a.contains(&self.peer.local_as),
        });
        let first_ok = !self.peer.ebgp()
            || matches!(as_path.first(), Some(Segment::Sequence(a)) if a.first() == Some(&self.peer.peer_as));
        for (prefix, nh) in announced {
            self.touch(prefix);
            let Some(next_hop) = nh else {
                self.routes.remove(&prefix);
                continue;
            };
            let path = Arc::new(Path {
                origin,
                as_path: as_path.clone(),
                next_hop,
                med,
                local_pref: if self.peer.ebgp() { None } else { local_pref },
                communities: communities.clone(),
                large_communities: large_communities.clone(),
            });
            let ok = !looped && first_ok && self.filter.permits(&prefix);
            self.routes.insert(prefix, (path, ok));
        }
        match self.max_prefixes {
            Some(limit) if self.routes.len() > limit => Err(MaxPrefixExceeded {
                received: self.routes.len(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Drops every route (the session went down).
    pub fn clear(&mut self) {
        if let Some(c) = self.changed.as_mut() {
            c.extend(self.routes.keys().copied());
        }
        self.routes.clear();
    }
}

/// A best route: the prefix, the peer it came from and its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestRoute {
    /// The prefix.
    pub prefix: Prefix,
    /// The peer it was learned from.
    pub peer: IpAddr,
    /// Its attributes.
    pub path: Arc<Path>,
}

/// Every peer's Adj-RIB-In, and best-path selection over them.
#[derive(Debug, Clone, Default)]
pub struct Rib {
    peers: BTreeMap<IpAddr, AdjRibIn>,
}

impl Rib {
    /// An empty RIB.
    pub fn new() -> Rib {
        Rib::default()
    }

    /// The table of a peer, created on first use.
    pub fn peer_mut(
        &mut self,
        info: PeerInfo,
        filter: &PrefixFilter,
        max: Option<usize>,
    ) -> &mut AdjRibIn {
        let t = self
            .peers
            .entry(info.address)
            .or_insert_with(|| AdjRibIn::new(info.clone(), filter.clone(), max));
        t.peer = info;
        t
    }

    /// Forgets a peer's routes.
    pub fn clear_peer(&mut self, address: IpAddr) {
        if let Some(t) = self.peers.get_mut(&address) {
            t.clear();
        }
    }

    /// The table of a peer, if any.
    pub fn peer(&self, address: IpAddr) -> Option<&AdjRibIn> {
        self.peers.get(&address)
    }

    /// The table of a peer, if any, to change.
    pub fn existing_peer_mut(&mut self, address: IpAddr) -> Option<&mut AdjRibIn> {
        self.peers.get_mut(&address)
    }

    /// Forgets a peer altogether (it was removed from the configuration).
    pub fn remove_peer(&mut self, address: IpAddr) {
        self.peers.remove(&address);
    }

    /// The best route of every prefix with at least one accepted route, sorted by prefix.
    pub fn best_routes(&self) -> Vec<BestRoute> {
        let mut candidates: BTreeMap<Prefix, Vec<(&PeerInfo, &Arc<Path>)>> = BTreeMap::new();
        for t in self.peers.values() {
            for (prefix, (path, ok)) in &t.routes {
                if *ok {
                    candidates.entry(*prefix).or_default().push((&t.peer, path));
                }
            }
        }
        candidates
            .into_iter()
            .filter_map(|(prefix, c)| {
                best(c).map(|(peer, path)| BestRoute {
                    prefix,
                    peer: peer.address,
                    path: path.clone(),
                })
            })
            .collect()
    }
}

/// The AS a route was learned from, for MED comparison: the first AS of the path, or our own
/// for iBGP routes without one.
fn neighbor_as(peer: &PeerInfo, path: &Path) -> u32 {
    match path.as_path.first() {
        Some(Segment::Sequence(a)) if !a.is_empty() => a[0],
        _ => peer.local_as,
    }
}

/// RFC 4271 section 9.1.2.2, step by step: each step keeps only the candidates that tie best.
fn best<'a>(mut c: Vec<(&'a PeerInfo, &'a Arc<Path>)>) -> Option<(&'a PeerInfo, &'a Arc<Path>)> {
    fn keep_min<'a, K: Ord>(
        c: &mut Vec<(&'a PeerInfo, &'a Arc<Path>)>,
        key: impl Fn(&PeerInfo, &Path) -> K,
    ) {
        if let Some(m) = c.iter().map(|(i, p)| key(i, p)).min() {
            c.retain(|(i, p)| key(i, p) == m);
        }
    }
    // (a) Highest degree of preference: LOCAL_PREF for iBGP, 100 for eBGP.
    keep_min(&mut c, |i, p| {
        std::cmp::Reverse(if i.ebgp() {
            100
        } else {
            p.local_pref.unwrap_or(100)
        })
    });
    // (b) Shortest AS path; (c) lowest ORIGIN.
    keep_min(&mut c, |_, p| path_len(&p.as_path));
    keep_min(&mut c, |_, p| p.origin as u8);
    // (d) MED, compared only among routes from the same neighbouring AS; missing is 0.
    let snapshot = c.clone();
    c.retain(|(i, p)| {
        !snapshot.iter().any(|(j, q)| {
            neighbor_as(j, q) == neighbor_as(i, p) && q.med.unwrap_or(0) < p.med.unwrap_or(0)
        })
    });
    // (e) eBGP over iBGP; (f) interior cost is not known here; (g) lowest BGP identifier;
    // then the lowest peer address.
    keep_min(&mut c, |i, _| !i.ebgp());
    keep_min(&mut c, |i, _| i.router_id);
    keep_min(&mut c, |i, _| i.address);
    c.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOUR: Codec = Codec {
        four_octet_as: true,
    };

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn peer(last: u8, asn: u32) -> PeerInfo {
        PeerInfo {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            router_id: Ipv4Addr::new(10, 0, 0, last),
            peer_as: asn,
            local_as: 65000,
        }
    }

    fn announce(prefixes: &[&str], path: Vec<u32>, med: Option<u32>) -> Update {
        let mut attributes = vec![
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(vec![Segment::Sequence(path)]),
            Attribute::NextHop(Ipv4Addr::new(10, 0, 0, 9)),
        ];
        if let Some(m) = med {
            attributes.push(Attribute::Med(m));
        }
        Update {
            nlri: prefixes.iter().map(|s| p(s)).collect(),
            attributes,
            ..Update::default()
        }
    }

    fn all() -> PrefixFilter {
        PrefixFilter {
            entries: vec![
                FilterEntry {
                    prefix: p("0.0.0.0/0"),
                    ge: 0,
                    le: 32,
                },
                FilterEntry {
                    prefix: p("::/0"),
                    ge: 0,
                    le: 128,
                },
            ],
        }
    }

    #[test]
    fn prefixes_parse_and_refuse_host_bits() {
        assert_eq!(p("192.0.2.0/24").to_string(), "192.0.2.0/24");
        assert_eq!(p("2001:db8::/32").to_string(), "2001:db8::/32");
        assert!("192.0.2.1/24"
            .parse::<Prefix>()
            .unwrap_err()
            .contains("host bits"));
        assert!("192.0.2.0/33".parse::<Prefix>().is_err());
        assert!("192.0.2.0".parse::<Prefix>().is_err());
        assert!(p("10.0.0.0/8").contains(&p("10.1.0.0/16")));
        assert!(!p("10.0.0.0/8").contains(&p("11.0.0.0/16")));
        assert!(!p("10.0.0.0/16").contains(&p("10.0.0.0/8")));
        assert!(p("::/0").contains(&p("2001:db8::/32")));
    }

    #[test]
    fn import_filter_ranges() {
        let f = PrefixFilter {
            entries: vec![FilterEntry {
                prefix: p("10.0.0.0/8"),
                ge: 16,
                le: 24,
            }],
        };
        assert!(f.permits(&p("10.1.0.0/16")));
        assert!(f.permits(&p("10.1.2.0/24")));
        assert!(!f.permits(&p("10.0.0.0/8")), "shorter than ge");
        assert!(!f.permits(&p("10.1.2.128/25")), "longer than le");
        assert!(!f.permits(&p("192.0.2.0/24")));
        assert!(
            !PrefixFilter::default().permits(&p("10.1.0.0/16")),
            "RFC 8212"
        );
    }

    #[test]
    fn announce_withdraw_and_filtered_routes() {
        let f = PrefixFilter {
            entries: vec![FilterEntry {
                prefix: p("10.0.0.0/8"),
                ge: 8,
                le: 24,
            }],
        };
        let mut t = AdjRibIn::new(peer(1, 65001), f, None);
        t.apply(
            &announce(&["10.1.0.0/16", "192.0.2.0/24"], vec![65001], None),
            FOUR,
        )
        .unwrap();
        assert_eq!((t.received(), t.accepted()), (2, 1));
        t.apply(
            &Update {
                withdrawn: vec![p("10.1.0.0/16")],
                ..Update::default()
            },
            FOUR,
        )
        .unwrap();
        assert_eq!((t.received(), t.accepted()), (1, 0));
    }

    #[test]
    fn treat_as_withdraw_and_missing_attributes_withdraw() {
        let mut t = AdjRibIn::new(peer(1, 65001), all(), None);
        t.apply(&announce(&["10.1.0.0/16"], vec![65001], None), FOUR)
            .unwrap();
        let mut bad = announce(&["10.1.0.0/16"], vec![65001], None);
        bad.treat_as_withdraw = true;
        t.apply(&bad, FOUR).unwrap();
        assert_eq!(t.received(), 0);
        t.apply(&announce(&["10.1.0.0/16"], vec![65001], None), FOUR)
            .unwrap();
        let mut no_origin = announce(&["10.1.0.0/16"], vec![65001], None);
        no_origin.attributes.remove(0);
        t.apply(&no_origin, FOUR).unwrap();
        assert_eq!(
            t.received(),
            0,
            "missing ORIGIN is treat-as-withdraw (RFC 7606 3.d)"
        );
    }

    #[test]
    fn loops_and_wrong_first_as_are_not_accepted() {
        let mut t = AdjRibIn::new(peer(1, 65001), all(), None);
        t.apply(&announce(&["10.1.0.0/16"], vec![65001, 65000], None), FOUR)
            .unwrap();
        t.apply(&announce(&["10.2.0.0/16"], vec![65002], None), FOUR)
            .unwrap();
        assert_eq!((t.received(), t.accepted()), (2, 0));
    }

    #[test]
    fn followed_changes_give_each_prefix_its_accepted_next_hop_once() {
        let only_16s = PrefixFilter {
            entries: vec![FilterEntry {
                prefix: p("10.0.0.0/8"),
                ge: 16,
                le: 16,
            }],
        };
        let mut t = AdjRibIn::new(peer(1, 65001), only_16s, None);
        t.apply(&announce(&["10.1.0.0/16"], vec![65001], None), FOUR)
            .unwrap();
        assert!(t.take_changes().is_empty(), "not followed yet");
        t.track_changes();
        let nh = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(
            t.take_changes(),
            [RouteChange {
                prefix: p("10.1.0.0/16"),
                next_hop: nh
            }],
            "what was held counts as changed"
        );
        t.apply(
            &announce(&["10.2.0.0/16", "10.3.0.0/24"], vec![65001], None),
            FOUR,
        )
        .unwrap();
        t.apply(&announce(&["10.2.0.0/16"], vec![65001], None), FOUR)
            .unwrap();
        let c = t.take_changes();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!((c[0].prefix, c[0].next_hop), (p("10.2.0.0/16"), nh));
        assert_eq!(c[1].next_hop, None, "refused by the filter");
        assert!(t.take_changes().is_empty());
        t.apply(
            &Update {
                withdrawn: vec![p("10.1.0.0/16")],
                ..Update::default()
            },
            FOUR,
        )
        .unwrap();
        t.clear();
        let c = t.take_changes();
        assert!(c.iter().all(|c| c.next_hop.is_none()), "{c:?}");
        assert_eq!(c.len(), 3, "the withdrawn one and all the session held");
    }

    #[test]
    fn max_prefix_counts_received_routes() {
        let mut t = AdjRibIn::new(peer(1, 65001), PrefixFilter::default(), Some(2));
        t.apply(
            &announce(&["10.1.0.0/16", "10.2.0.0/16"], vec![65001], None),
            FOUR,
        )
        .unwrap();
        let e = t
            .apply(&announce(&["10.3.0.0/16"], vec![65001], None), FOUR)
            .unwrap_err();
        assert_eq!(
            e,
            MaxPrefixExceeded {
                received: 3,
                limit: 2
            }
        );
    }

    #[test]
    fn mp_reach_with_32_byte_next_hop_uses_the_global_address() {
        let mut t = AdjRibIn::new(peer(1, 65001), all(), None);
        let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut nh = global.octets().to_vec();
        nh.extend_from_slice(&ll.octets());
        let u = Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(vec![Segment::Sequence(vec![65001])]),
                Attribute::MpReach {
                    family: Family::Ipv6Unicast,
                    next_hop: nh,
                    nlri: vec![p("2001:db8:1::/48")],
                },
            ],
            ..Update::default()
        };
        t.apply(&u, FOUR).unwrap();
        let mut rib = Rib::new();
        *rib.peer_mut(peer(1, 65001), &all(), None) = t;
        let best = rib.best_routes();
        assert_eq!(best[0].path.next_hop, IpAddr::V6(global));
    }

    fn rib_with(routes: &[(PeerInfo, Update)]) -> Rib {
        let mut rib = Rib::new();
        for (info, u) in routes {
            rib.peer_mut(info.clone(), &all(), None)
                .apply(u, FOUR)
                .unwrap();
        }
        rib
    }

    #[test]
    fn best_path_prefers_shorter_as_path_then_lower_med_then_router_id() {
        let rib = rib_with(&[
            (
                peer(1, 65001),
                announce(&["10.9.0.0/16"], vec![65001, 65001], None),
            ),
            (
                peer(2, 65002),
                announce(&["10.9.0.0/16"], vec![65002], Some(50)),
            ),
            (
                peer(3, 65002),
                announce(&["10.9.0.0/16"], vec![65002], Some(10)),
            ),
        ]);
        assert_eq!(
            rib.best_routes()[0].peer,
            peer(3, 0).address,
            "lower MED, same AS"
        );
        // MED is not compared across neighbour ASes: then the lowest router id wins.
        let rib = rib_with(&[
            (
                peer(4, 65004),
                announce(&["10.9.0.0/16"], vec![65004], Some(10)),
            ),
            (
                peer(2, 65002),
                announce(&["10.9.0.0/16"], vec![65002], Some(50)),
            ),
        ]);
        assert_eq!(rib.best_routes()[0].peer, peer(2, 0).address);
        let rib = rib_with(&[
            (
                peer(1, 65001),
                announce(&["10.9.0.0/16"], vec![65001, 65001], None),
            ),
            (
                peer(2, 65002),
                announce(&["10.9.0.0/16"], vec![65002, 65002, 65002], None),
            ),
        ]);
        assert_eq!(
            rib.best_routes()[0].peer,
            peer(1, 0).address,
            "shorter path"
        );
    }

    #[test]
    fn best_path_prefers_ebgp_and_ibgp_local_pref() {
        let mut ibgp = announce(&["10.9.0.0/16"], vec![], None);
        ibgp.attributes[1] = Attribute::AsPath(vec![]);
        ibgp.attributes.push(Attribute::LocalPref(200));
        let rib = rib_with(&[
            (
                peer(1, 65001),
                announce(&["10.9.0.0/16"], vec![65001], None),
            ),
            (peer(2, 65000), ibgp.clone()),
        ]);
        assert_eq!(
            rib.best_routes()[0].peer,
            peer(2, 0).address,
            "LOCAL_PREF 200 wins"
        );
        ibgp.attributes[3] = Attribute::LocalPref(100);
        let rib = rib_with(&[
            (peer(2, 65000), ibgp.clone()),
            (
                peer(1, 65001),
                announce(&["10.9.0.0/16"], vec![65001], None),
            ),
        ]);
        // Equal preference; the iBGP path is shorter (empty): it wins at step (b).
        assert_eq!(rib.best_routes()[0].peer, peer(2, 0).address);
    }
}
