//! Two speakers on loopback addresses: sessions come up, announcements and withdrawals arrive,
//! graceful shutdown tags routes, MD5 keys must match, max-prefix resets the session.
//! (Interop with BIRD, GoBGP and FRR is in the node's namespace tests.)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use edgenet_bgp::fsm::State;
use edgenet_bgp::message::Family;
use edgenet_bgp::rib::{FilterEntry, PrefixFilter};
use edgenet_bgp::speaker::{Export, PeerConfig, Speaker, SpeakerConfig, GRACEFUL_SHUTDOWN};

fn peer(address: [u8; 4], port: u16, asn: u32, passive: bool) -> PeerConfig {
    PeerConfig {
        address: IpAddr::V4(Ipv4Addr::from(address)),
        port,
        peer_as: asn,
        local_address: None,
        passive,
        md5_key: None,
        hold_time: Duration::from_secs(9),
        keepalive: None,
        connect_retry: Duration::from_millis(300),
        bfd: None,
        med: None,
        prepend: 0,
        communities: vec![],
        large_communities: vec![],
        next_hop_v4: None,
        next_hop_v6: None,
        import: PrefixFilter {
            entries: vec![FilterEntry {
                prefix: "0.0.0.0/0".parse().unwrap(),
                ge: 0,
                le: 32,
            }],
        },
        max_prefixes: None,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
    }
}

/// A router-like speaker listening on 127.0.0.`router`:`port` and a PoP-like speaker
/// connecting to it from 127.0.0.`pop`.
async fn pair(
    port: u16,
    router: u8,
    pop: u8,
    tweak_router: impl FnOnce(&mut PeerConfig),
    tweak_pop: impl FnOnce(&mut PeerConfig),
) -> (Speaker, Speaker) {
    let mut rp = peer([127, 0, 0, pop], 179, 4_200_000_001, true);
    tweak_router(&mut rp);
    let r = Speaker::start(SpeakerConfig {
        local_as: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, router),
        listen: vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, router)),
            port,
        )],
        peers: vec![rp],
    })
    .await
    .unwrap();
    let mut pp = peer([127, 0, 0, router], port, 65000, false);
    pp.local_address = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, pop)));
    tweak_pop(&mut pp);
    let p = Speaker::start(SpeakerConfig {
        local_as: 4_200_000_001,
        router_id: Ipv4Addr::new(10, 0, 0, pop),
        listen: vec![],
        peers: vec![pp],
    })
    .await
    .unwrap();
    (r, p)
}

async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn export(prefixes: &[&str], gshut: bool) -> Export {
    Export::of(prefixes.iter().map(|p| p.parse().unwrap()), gshut)
}

/// Sets `e` as the export of the speaker's only peer.
fn send(speaker: &Speaker, e: Export) {
    let peer = speaker.status()[0].address;
    assert!(speaker.export(peer, e));
}

#[tokio::test]
async fn announce_graceful_shutdown_and_withdraw_reach_the_router() {
    let (router, pop) = pair(
        17901,
        11,
        12,
        |_| {},
        |p| {
            p.med = Some(20);
            p.prepend = 2;
            p.communities = vec![(65000 << 16) | 7];
            p.large_communities = vec![(4_200_000_001, 1, 2)];
        },
    )
    .await;
    until("established", Duration::from_secs(5), || {
        router.status()[0].state == State::Established
            && pop.status()[0].state == State::Established
    })
    .await;
    send(&pop, export(&["192.0.2.0/24", "198.51.100.0/24"], false));
    until("two routes", Duration::from_secs(2), || {
        router.best_routes().len() == 2
    })
    .await;
    let best = router.best_routes();
    let path = &best[0].path;
    assert_eq!(path.med, Some(20));
    assert_eq!(
        format!("{:?}", path.as_path),
        "[Sequence([4200000001, 4200000001, 4200000001])]",
        "four-octet AS, prepended twice"
    );
    assert_eq!(path.next_hop, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12)));
    assert_eq!(path.communities, vec![(65000 << 16) | 7]);
    assert_eq!(path.large_communities, vec![(4_200_000_001, 1, 2)]);
    assert_eq!(pop.status()[0].announced, 2);
    assert_eq!(router.status()[0].accepted, 2);

    send(&pop, export(&["192.0.2.0/24", "198.51.100.0/24"], true));
    until(
        "GRACEFUL_SHUTDOWN community",
        Duration::from_secs(2),
        || {
            router
                .best_routes()
                .iter()
                .all(|r| r.path.communities.contains(&GRACEFUL_SHUTDOWN))
        },
    )
    .await;
    // Two prefix groups in one export: one back to normal, one still draining. Each prefix
    // carries its own attributes.
    let mut mixed = export(&["192.0.2.0/24"], false);
    mixed.add(&["198.51.100.0/24".parse().unwrap()], true);
    send(&pop, mixed);
    let tagged = |prefix: &str| {
        router
            .best_routes()
            .iter()
            .find(|r| r.prefix.to_string() == prefix)
            .map(|r| r.path.communities.contains(&GRACEFUL_SHUTDOWN))
    };
    until("one prefix tagged, one not", Duration::from_secs(2), || {
        tagged("192.0.2.0/24") == Some(false) && tagged("198.51.100.0/24") == Some(true)
    })
    .await;
    assert!(
        !pop.export("127.0.0.99".parse().unwrap(), Export::default()),
        "no such peer"
    );
    send(&pop, export(&["198.51.100.0/24"], true));
    until("one withdrawn", Duration::from_secs(2), || {
        router.best_routes().len() == 1
    })
    .await;
    send(&pop, Export::default());
    until("all withdrawn", Duration::from_secs(2), || {
        router.best_routes().is_empty()
    })
    .await;
    assert_eq!(
        router.status()[0].state,
        State::Established,
        "withdrawing keeps the session"
    );

    pop.stop(Duration::from_secs(1)).await;
    until("router sees the Cease", Duration::from_secs(2), || {
        router.status()[0].state != State::Established
    })
    .await;
    let s = router.status()[0].clone();
    assert_eq!(s.flaps, 1);
    assert!(s.last_error.unwrap().contains("NOTIFICATION 6/2"));
    router.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn md5_keys_must_match() {
    let (router, pop) = pair(
        17902,
        21,
        22,
        |p| p.md5_key = Some("s3cret".into()),
        |p| p.md5_key = Some("s3cret".into()),
    )
    .await;
    until("established with MD5", Duration::from_secs(5), || {
        router.status()[0].state == State::Established
    })
    .await;
    pop.stop(Duration::from_secs(1)).await;
    router.stop(Duration::from_secs(1)).await;

    let (router, pop) = pair(
        17903,
        23,
        24,
        |p| p.md5_key = Some("s3cret".into()),
        |p| p.md5_key = Some("wrong".into()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(router.status()[0].state, State::Established);
    assert_ne!(pop.status()[0].state, State::Established);
    let err = pop.status()[0].last_error.clone().unwrap_or_default();
    assert!(err.contains("connect"), "the SYN is dropped: {err}");
    pop.stop(Duration::from_secs(1)).await;
    router.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn max_prefix_resets_the_session_with_cease_1() {
    let (router, pop) = pair(17904, 31, 32, |p| p.max_prefixes = Some(2), |_| {}).await;
    until("established", Duration::from_secs(5), || {
        router.status()[0].state == State::Established
    })
    .await;
    send(
        &pop,
        export(
            &["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"],
            false,
        ),
    );
    until("reset", Duration::from_secs(2), || {
        pop.status()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("NOTIFICATION 6/1"))
    })
    .await;
    let r = router.status()[0].clone();
    assert!(r.last_error.unwrap().contains("over the limit of 2"));
    assert!(
        router.best_routes().is_empty(),
        "routes of a reset session are gone"
    );
    pop.stop(Duration::from_secs(1)).await;
    router.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn ibgp_sends_local_pref_and_zeroes_it_for_graceful_shutdown() {
    // Both sides in AS 65000: the router's peer is configured with our own AS.
    let mut rp = peer([127, 0, 0, 42], 179, 65000, true);
    rp.local_address = None;
    let router = Speaker::start(SpeakerConfig {
        local_as: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 41),
        listen: vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 41)),
            17905,
        )],
        peers: vec![rp],
    })
    .await
    .unwrap();
    let mut pp = peer([127, 0, 0, 41], 17905, 65000, false);
    pp.local_address = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 42)));
    pp.prepend = 3;
    let pop = Speaker::start(SpeakerConfig {
        local_as: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 42),
        listen: vec![],
        peers: vec![pp],
    })
    .await
    .unwrap();
    send(&pop, export(&["192.0.2.0/24"], false));
    until("the iBGP route", Duration::from_secs(5), || {
        router.best_routes().len() == 1
    })
    .await;
    let path = router.best_routes()[0].path.clone();
    assert_eq!(path.local_pref, Some(100));
    assert!(
        path.as_path.is_empty(),
        "no AS added (or prepended) on iBGP"
    );
    send(&pop, export(&["192.0.2.0/24"], true));
    until("LOCAL_PREF 0", Duration::from_secs(2), || {
        router.best_routes()[0].path.local_pref == Some(0)
    })
    .await;
    pop.stop(Duration::from_secs(1)).await;
    router.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_peer_added_at_run_time_follows_its_routes_and_leaves_with_a_cease() {
    // The router knows the PoP from the start; the PoP adds the router later, as a PoP adds a
    // CNI's session, with MD5 and its routes followed.
    let mut rp = peer([127, 0, 0, 52], 179, 4_200_000_001, true);
    rp.md5_key = Some("k3y".into());
    let router = Speaker::start(SpeakerConfig {
        local_as: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 51),
        listen: vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 51)),
            17906,
        )],
        peers: vec![rp],
    })
    .await
    .unwrap();
    let pop = Speaker::start(SpeakerConfig {
        local_as: 4_200_000_001,
        router_id: Ipv4Addr::new(10, 0, 0, 52),
        listen: vec![],
        peers: vec![],
    })
    .await
    .unwrap();
    assert!(pop.status().is_empty());
    let addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 51));
    let mut pp = peer([127, 0, 0, 51], 17906, 65000, false);
    pp.local_address = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 52)));
    pp.md5_key = Some("k3y".into());
    pp.import = PrefixFilter {
        entries: vec![FilterEntry {
            prefix: "192.0.2.0/24".parse().unwrap(),
            ge: 24,
            le: 24,
        }],
    };
    pop.add_peer(pp.clone(), true).unwrap();
    assert!(
        pop.add_peer(pp, true).is_err(),
        "one session per peer address"
    );
    let changed = pop.route_changes(addr).expect("followed");
    until("established", Duration::from_secs(5), || {
        pop.peer_status(addr)
            .is_some_and(|s| s.state == State::Established)
    })
    .await;
    send(&router, export(&["192.0.2.0/24", "192.0.2.0/25"], false));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        tokio::time::timeout(Duration::from_secs(2), changed.notified())
            .await
            .expect("a change is signalled");
        seen.extend(pop.take_route_changes(addr));
    }
    let next_hop = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 51)));
    assert_eq!(seen[0].prefix, "192.0.2.0/24".parse().unwrap());
    assert_eq!(seen[0].next_hop, next_hop, "accepted");
    assert_eq!(seen[1].next_hop, None, "the /25 is refused by the filter");
    let held = pop.received_routes(addr);
    assert_eq!(held.len(), 2);
    assert_eq!(held.iter().filter(|(_, _, ok)| *ok).count(), 1);

    send(&router, export(&["192.0.2.0/25"], false));
    tokio::time::timeout(Duration::from_secs(2), changed.notified())
        .await
        .expect("the withdrawal is signalled");
    let gone = pop.take_route_changes(addr);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].next_hop, None, "withdrawn");

    assert!(pop.remove_peer(addr, Duration::from_secs(1)).await);
    assert!(pop.status().is_empty());
    assert!(!pop.remove_peer(addr, Duration::from_secs(1)).await);
    until("the router sees the Cease", Duration::from_secs(2), || {
        router.status()[0]
            .last_notification
            .as_ref()
            .is_some_and(|n| !n.sent && n.code == 6)
    })
    .await;
    pop.stop(Duration::from_secs(1)).await;
    router.stop(Duration::from_secs(1)).await;
}
