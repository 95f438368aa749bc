//! A CNI's BGP session, as the PoP's speaker runs it: [`session_of`] turns a streamed CNI into
//! the peer's settings (the customer's half of the /31 as the peer, ours as the source, the
//! customer's ASN, the MD5 key, the import filter from the prefix list, max-prefix, BFD on v1
//! when asked) and what is exported to it (per `bgp_mode`); [`Installer`] keeps a peering
//! CNI's accepted routes in the node's kernel table, following the speaker's route changes in
//! batches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use edgenet_bgp::bfd::BfdConfig;
use edgenet_bgp::message::{Family, Prefix};
use edgenet_bgp::rib::{FilterEntry, PrefixFilter};
use edgenet_bgp::speaker::{Export, PeerConfig, RouteChange, Speaker};
use edgenet_interconnect::addressing::{halves_v4, halves_v6};
use edgenet_interconnect::cni::{BgpMode, UseCase, MAX_V4_PREFIX_LEN, MAX_V6_PREFIX_LEN};
use edgenet_interconnect::dataplane::Dataplane;
use edgenet_interconnect::filter;
use edgenet_protocol::CniProvision;
use ipnet::IpNet;

use super::netlink::{RouteOp, RouteWriter};

/// The speaker-side timers of CNI sessions (from `[interconnect]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timers {
    /// Between connection attempts.
    pub connect_retry: std::time::Duration,
    /// Offered hold time.
    pub hold_time: std::time::Duration,
    /// BFD, for v1 CNIs that ask for it.
    pub bfd: BfdConfig,
}

/// One CNI's session: the peer, what it is exported, and whether its routes go into the
/// kernel table.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The peer's settings.
    pub peer: PeerConfig,
    /// What the customer gets from us.
    pub export: Export,
    /// A peering CNI (v1): its accepted routes are installed in the PoP's table.
    pub peering: bool,
}

/// A prefix as the speaker names it.
pub(crate) fn prefix(n: &IpNet) -> Prefix {
    match n {
        IpNet::V4(n) => Prefix::V4(n.network(), n.prefix_len()),
        IpNet::V6(n) => Prefix::V6(n.network(), n.prefix_len()),
    }
}

/// The import filter of a CNI: each listed prefix and longer ones up to /24 (IPv4) or /48
/// (IPv6); nothing in `advertise_only` (as [`filter::Import`] decides).
pub fn import_filter(cni: &CniProvision) -> PrefixFilter {
    if cni.spec.bgp_mode == BgpMode::AdvertiseOnly {
        return PrefixFilter::default();
    }
    PrefixFilter {
        entries: cni
            .spec
            .prefixes
            .iter()
            .map(|n| {
                let longest = match n {
                    IpNet::V4(_) => MAX_V4_PREFIX_LEN,
                    IpNet::V6(_) => MAX_V6_PREFIX_LEN,
                };
                FilterEntry {
                    prefix: prefix(&n.trunc()),
                    ge: n.prefix_len(),
                    le: longest.max(n.prefix_len()),
                }
            })
            .collect(),
    }
}

/// The session of `cni`, or none when it has no point-to-point address to run one on.
/// `offered` is what a `dynamic` CNI is announced (the PoP's own prefixes).
pub fn session_of(cni: &CniProvision, timers: &Timers, offered: &[IpNet]) -> Option<Session> {
    let v4 = cni.spec.p2p_v4.map(halves_v4);
    let v6 = cni.spec.p2p_v6.map(halves_v6);
    let (ours, theirs): (IpAddr, IpAddr) = match (v4, v6) {
        (Some((o, t)), _) => (o.into(), t.into()),
        (None, Some((o, t))) => (o.into(), t.into()),
        (None, None) => return None,
    };
    let mut families = Vec::new();
    if v4.is_some() {
        families.push(Family::Ipv4Unicast);
    }
    if v6.is_some() {
        families.push(Family::Ipv6Unicast);
    }
    let v1 = cni.dataplane == Dataplane::V1;
    let peer = PeerConfig {
        address: theirs,
        port: 179,
        peer_as: cni.spec.customer_asn,
        local_address: Some(ours),
        passive: false,
        md5_key: cni.md5_key.clone(),
        hold_time: timers.hold_time,
        keepalive: None,
        connect_retry: timers.connect_retry,
        bfd: (v1 && cni.spec.bfd).then_some(timers.bfd),
        med: None,
        prepend: 0,
        communities: Vec::new(),
        large_communities: Vec::new(),
        next_hop_v4: v4.map(|(o, _)| o),
        next_hop_v6: v6.map(|(o, _)| o),
        import: import_filter(cni),
        max_prefixes: Some(cni.spec.max_prefixes as usize),
        families,
    };
    let export = Export::of(
        filter::exports(&cni.spec, offered).iter().map(prefix),
        false,
    );
    Some(Session {
        peer,
        export,
        peering: v1 && cni.spec.use_case == UseCase::Peering,
    })
}

/// Keeps one peering CNI's accepted routes in the kernel table; stopped, it takes them out.
pub struct Installer {
    task: tokio::task::JoinHandle<()>,
    stop: Arc<tokio::sync::Notify>,
    /// Routes in the table now.
    pub installed: Arc<AtomicU64>,
}

impl Installer {
    /// Follows `peer`'s route changes on `speaker` into `table`, written in batches
    /// ([`RouteWriter`], on tokio's blocking threads).
    pub fn start(
        speaker: Arc<Speaker>,
        writer: RouteWriter,
        peer: IpAddr,
        table: u32,
    ) -> Installer {
        let installed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(tokio::sync::Notify::new());
        let count = installed.clone();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let Some(changed) = speaker.route_changes(peer) else {
                return;
            };
            let mut routes: HashMap<Prefix, IpAddr> = HashMap::new();
            let mut writer = Some(writer);
            loop {
                tokio::select! {
                    _ = changed.notified() => {}
                    _ = stopped.notified() => break,
                }
                let changes = speaker.take_route_changes(peer);
                write(&mut writer, table, &mut routes, changes).await;
                count.store(routes.len() as u64, Ordering::Relaxed);
            }
            let gone = routes
                .keys()
                .map(|p| RouteChange {
                    prefix: *p,
                    next_hop: None,
                })
                .collect();
            write(&mut writer, table, &mut routes, gone).await;
            count.store(routes.len() as u64, Ordering::Relaxed);
        });
        Installer {
            task,
            stop,
            installed,
        }
    }

    /// Takes its routes out of the table and ends.
    pub async fn stop(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

fn destination(p: Prefix) -> (IpAddr, u8) {
    match p {
        Prefix::V4(a, l) => (IpAddr::V4(a), l),
        Prefix::V6(a, l) => (IpAddr::V6(a), l),
    }
}

/// Writes `changes` to the kernel, keeping `routes` as what the table holds (a route the
/// kernel refused is logged and tried again at its next change).
async fn write(
    writer: &mut Option<RouteWriter>,
    table: u32,
    routes: &mut HashMap<Prefix, IpAddr>,
    changes: Vec<RouteChange>,
) {
    let todo: Vec<RouteChange> = changes
        .into_iter()
        .filter(|c| routes.get(&c.prefix).copied() != c.next_hop)
        .collect();
    if todo.is_empty() {
        return;
    }
    let ops: Vec<RouteOp> = todo
        .iter()
        .map(|c| match c.next_hop {
            Some(gateway) => RouteOp::Replace {
                dst: destination(c.prefix),
                gateway,
            },
            None => RouteOp::Delete {
                dst: destination(c.prefix),
            },
        })
        .collect();
    let Some(mut w) = writer.take() else { return };
    let Ok((w, failed)) = tokio::task::spawn_blocking(move || {
        let failed = w.write(table, &ops);
        (w, failed)
    })
    .await
    else {
        tracing::error!("the peering route writer panicked");
        return;
    };
    *writer = Some(w);
    let mut refused = vec![false; todo.len()];
    for (i, e) in &failed {
        refused[*i] = true;
        tracing::warn!(prefix = %todo[*i].prefix, error = %e, "peering route not written");
    }
    for (c, refused) in todo.into_iter().zip(refused) {
        match (c.next_hop, refused) {
            (Some(nh), false) => {
                routes.insert(c.prefix, nh);
            }
            (None, false) => {
                routes.remove(&c.prefix);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn cni(extra: serde_json::Value) -> CniProvision {
        let mut spec = json!({"interconnect": "i", "customer_asn": 64700, "use_case": "peering",
            "p2p_v4": "100.64.0.2/31", "p2p_v6": "2001:db8:ff::/127", "bfd": true,
            "prefixes": ["203.0.113.0/24", "198.51.100.0/22", "2001:db8:100::/40"],
            "max_prefixes": 5});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"pop": "p", "site": "gru-b", "device": "edge01",
            "dataplane": "v1", "interface": "cni0", "account": "a", "interconnect": "i",
            "spec": spec, "md5_key": "k"}))
        .unwrap()
    }

    const TIMERS: Timers = Timers {
        connect_retry: Duration::from_secs(1),
        hold_time: Duration::from_secs(90),
        bfd: BfdConfig {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
        },
    };

    #[test]
    fn a_peering_cni_peers_with_the_customers_half_and_filters_by_its_list() {
        let offered: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        let s = session_of(&cni(json!({})), &TIMERS, &offered).unwrap();
        assert_eq!(s.peer.address, "100.64.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(
            s.peer.local_address,
            Some("100.64.0.2".parse::<IpAddr>().unwrap())
        );
        assert_eq!(s.peer.peer_as, 64700);
        assert_eq!(s.peer.md5_key.as_deref(), Some("k"));
        assert_eq!(s.peer.max_prefixes, Some(5));
        assert!(s.peer.bfd.is_some() && s.peering);
        assert_eq!(s.peer.families, [Family::Ipv4Unicast, Family::Ipv6Unicast]);
        assert_eq!(s.peer.next_hop_v6, Some("2001:db8:ff::".parse().unwrap()));
        let f = &s.peer.import;
        for ok in ["203.0.113.0/24", "198.51.101.0/24", "2001:db8:1ff::/48"] {
            assert!(f.permits(&ok.parse().unwrap()), "{ok}");
        }
        for no in ["203.0.113.0/25", "198.51.96.0/20", "2001:db8:100::/49"] {
            assert!(!f.permits(&no.parse().unwrap()), "{no}");
        }
        assert_eq!(
            s.export.routes.keys().copied().collect::<Vec<_>>(),
            ["192.0.2.0/24".parse().unwrap()],
            "dynamic: the PoP's own prefixes"
        );

        let mt = session_of(
            &cni(json!({"use_case": "magic_transit", "bgp_mode": "advertise_only", "bfd": false})),
            &TIMERS,
            &offered,
        )
        .unwrap();
        assert!(
            mt.peer.import.entries.is_empty(),
            "advertise_only accepts nothing"
        );
        assert_eq!(mt.export.routes.len(), 3, "its own list is announced");
        assert!(!mt.peering && mt.peer.bfd.is_none());
        assert!(session_of(
            &cni(json!({"p2p_v4": null, "p2p_v6": null})),
            &TIMERS,
            &offered
        )
        .is_none());
    }
}
