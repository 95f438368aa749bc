//! Stage 10, path: how a request that must leave this PoP travels. A zone with tiered cache
//! sends its misses to an upper-tier PoP (chosen by the cache key, so each object has one
//! home; with smart tiering, the PoP closest to the origin), which serves them from its own
//! cache or its origin and never sends them on to another tier: a request crosses the
//! backbone at most once. A fetch from the origin goes direct, or through the relay PoP the
//! backbone measured to be faster; a relay forwards only to an origin server of one of its
//! own zones, so it is never an open proxy.

use std::net::SocketAddr;

use http::HeaderValue;

use super::Reject;
use crate::backbone::PopDirectory;
use crate::core::Core;
use crate::snapshot::{Snapshot, ZoneRuntime};

/// The backbone's liveness endpoint (answered by the backbone listener).
pub const PING_PATH: &str = "/.edgenet/ping";
/// Where a PoP shares its measurements (answered by the backbone listener).
pub const LINKS_PATH: &str = "/.edgenet/links";
/// Sent with a relayed request: the origin address the relay forwards it to.
pub const RELAY_HEADER: &str = "x-edgenet-relay-to";

/// Marks a request sent by a lower tier; its value is the lower tier's name.
pub const TIER_HEADER: &str = "x-edgenet-tier";
/// The scheme the lower tier's client used, which is part of the cache key (the same header
/// carries a worker's scheme on the subrequest listener).
pub const SCHEME_HEADER: &str = edgenet_workers::SCHEME_HEADER;

/// The scheme a request's [`SCHEME_HEADER`] names (`http` unless it says `https`).
pub fn header_scheme(headers: &http::HeaderMap) -> &'static str {
    match headers.get(SCHEME_HEADER).map(|v| v.as_bytes()) {
        Some(b"https") => "https",
        _ => "http",
    }
}

/// The upper-tier PoP (name and backbone address) for a miss of `zone` keyed `key`: when the
/// zone has tiers, this PoP is not one of them, and the tier has an address. A request from a
/// lower tier never goes to another tier (the caller does not ask).
pub fn upper_tier(core: &Core, zone: &ZoneRuntime, key: &str) -> Option<(String, SocketAddr)> {
    let config = &zone.config;
    if !config.smart_tier && config.upper_tiers.is_empty() {
        return None;
    }
    let smart;
    let upper = if config.smart_tier {
        let origins: Vec<SocketAddr> = zone
            .pool
            .members()
            .iter()
            .map(|m| m.server.address)
            .collect();
        smart = vec![core.backbone.closest_to(&core.name, &origins)?];
        &smart
    } else {
        &config.upper_tiers
    };
    if upper.is_empty() || upper.contains(&core.name) {
        return None;
    }
    let pops = core.pops.load();
    choose_upper_tier(upper, &pops, key).map(|(name, addr)| (name.to_string(), addr))
}

/// The relay PoP (name and backbone address) a fetch from `origin` goes through, when the
/// backbone chose one.
pub fn relay(core: &Core, origin: SocketAddr) -> Option<(String, SocketAddr)> {
    let relays = core.backbone.relays.load();
    let relay = relays.get(&origin)?;
    let addr = *core.pops.load().get(relay)?;
    Some((relay.clone(), addr))
}

/// At a relay: the zone and origin server a relayed request names in [`RELAY_HEADER`], which
/// must be an origin server of one of this PoP's zones (403 otherwise).
pub fn relay_target(snapshot: &Snapshot, target: &HeaderValue) -> Result<(usize, usize), Reject> {
    let found = target
        .to_str()
        .ok()
        .and_then(|t| t.parse::<SocketAddr>().ok())
        .and_then(|addr| {
            snapshot.zones.iter().enumerate().find_map(|(z, zone)| {
                let idx = zone
                    .pool
                    .members()
                    .iter()
                    .position(|m| m.server.address == addr)?;
                Some((z, idx))
            })
        });
    found.ok_or(Reject::new(403, "relays only to origins of this network"))
}

/// The upper tier for a request: one of the zone's upper tiers, chosen by the cache key so
/// each object has one home, skipping PoPs without a known address.
pub fn choose_upper_tier<'a>(
    upper: &'a [String],
    pops: &PopDirectory,
    key: &str,
) -> Option<(&'a str, SocketAddr)> {
    let usable: Vec<(&str, SocketAddr)> = upper
        .iter()
        .filter_map(|n| pops.get(n).map(|a| (n.as_str(), *a)))
        .collect();
    if usable.is_empty() {
        return None;
    }
    // FNV-1a: stable across processes, so every lower tier picks the same upper tier.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Some(usable[(h % usable.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::test_support::{core, snapshot};
    use std::sync::Arc;

    #[test]
    fn a_relay_reaches_only_origins_of_its_zones() {
        let core = core();
        let snap = snapshot("", &core);
        let ok = HeaderValue::from_static("127.0.0.1:2");
        assert_eq!(relay_target(&snap, &ok), Ok((0, 0)));
        for bad in ["127.0.0.1:9", "example.com:80", "not an address"] {
            let r = relay_target(&snap, &HeaderValue::from_static(bad)).unwrap_err();
            assert_eq!(r.status, 403, "{bad}");
        }
    }

    #[test]
    fn misses_go_to_an_upper_tier_with_an_address_that_is_not_this_pop() {
        let core = core();
        let pops: PopDirectory = [
            ("up".to_string(), "127.0.0.1:9001".parse().unwrap()),
            (core.name.clone(), "127.0.0.1:9002".parse().unwrap()),
        ]
        .into();
        core.pops.store(Arc::new(pops));
        let tiered = snapshot("tiered_cache = [\"up\"]\n", &core);
        assert_eq!(
            upper_tier(&core, &tiered.zones[0], "z.test/a"),
            Some(("up".to_string(), "127.0.0.1:9001".parse().unwrap()))
        );
        let me = format!("tiered_cache = [\"{}\"]\n", core.name);
        let own = snapshot(&me, &core);
        assert_eq!(
            upper_tier(&core, &own.zones[0], "z.test/a"),
            None,
            "this PoP is the tier"
        );
        let gone = snapshot("tiered_cache = [\"gone\"]\n", &core);
        assert_eq!(
            upper_tier(&core, &gone.zones[0], "z.test/a"),
            None,
            "no address"
        );
        let off = snapshot("", &core);
        assert_eq!(upper_tier(&core, &off.zones[0], "z.test/a"), None);
        // Smart tiering without measurements has no upper tier yet.
        let smart = snapshot("tiered_cache = \"smart\"\n", &core);
        assert_eq!(upper_tier(&core, &smart.zones[0], "z.test/a"), None);
        assert_eq!(
            relay(&core, "127.0.0.1:2".parse().unwrap()),
            None,
            "no route chosen"
        );
    }

    #[test]
    fn each_object_has_one_upper_tier_and_unknown_pops_are_skipped() {
        let pops: PopDirectory = [
            ("a".to_string(), "127.0.0.1:1".parse().unwrap()),
            ("b".to_string(), "127.0.0.1:2".parse().unwrap()),
        ]
        .into();
        let upper = vec!["a".to_string(), "b".to_string(), "gone".to_string()];
        let mut seen = std::collections::HashSet::new();
        for i in 0..50 {
            let key = format!("http://x.test/{i}");
            let pick = choose_upper_tier(&upper, &pops, &key).unwrap();
            assert_eq!(
                choose_upper_tier(&upper, &pops, &key).unwrap(),
                pick,
                "stable"
            );
            assert_ne!(pick.0, "gone");
            seen.insert(pick.0);
        }
        assert_eq!(seen.len(), 2, "objects spread over the upper tiers");
        assert_eq!(choose_upper_tier(&upper, &PopDirectory::new(), "k"), None);
    }
}
