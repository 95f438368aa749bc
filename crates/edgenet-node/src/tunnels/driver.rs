//! The node's tunnels, running: on a thread of its own (a current-thread runtime), it keeps a
//! device per tunnel of every account the follower hands it (a TUN device, or a kernel GRE
//! device where [`kernel::choose`] picked the kernel; named `gt` and 12 hex digits of the
//! account and tunnel id, carrying our side of the /31 and /127 at the tunnel's MTU),
//! one passive BGP session per tunnel that asks for one in the PoP's speaker (the customer's
//! router connects to our side of the /31; the PoP its packets reach by anycast answers), the
//! accounts' tables in the packet path's snapshot (static routes and the routes learnt here,
//! with the health this PoP measures), and the report of every tunnel for the report channel,
//! waking the follower when a health or a session changed.
//!
//! For Magic Transit it also keeps every account's prefixes routed into the ingress device
//! (`ip route replace PREFIX dev edgenet-mt`), their firewalls in the snapshot, and hands the
//! anycast speaker the prefixes to announce: those `advertised` whose account has a path from
//! this PoP that is not down ([`edgenet_dataplane::prefix::has_path`]), each originated by
//! the customer's ASN behind ours. A tunnel going down wakes the driver at once, so the
//! withdrawal follows the down rule by milliseconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgenet_bgp::message::{Family, Prefix};
use edgenet_bgp::rib::{FilterEntry, PrefixFilter};
use edgenet_bgp::speaker::{PeerConfig, Speaker};
use edgenet_config::Tunnels as Config;
use edgenet_dataplane::firewall::Ruleset;
use edgenet_dataplane::health::Health;
use edgenet_dataplane::prefix::{has_path, PrefixMap};
use edgenet_dataplane::table::{self, NextHop, Route, Source, BGP_PRIORITY};
use edgenet_protocol::{
    CniSession, MagicProvision, PrefixState, RuleState, TunnelProvision, TunnelState,
};
use edgenet_proxy::lock;
use ipnet::IpNet;
use tokio::sync::{watch, Notify};

use super::cni::{Delivery, Port, RULE_PRIORITY};
use super::device::Tun;
use super::kernel::{self, Dataplane};
use super::magic::{Filters, PrefixCounters, Protected, RuleCounters, INGRESS};
use super::path::{health_of, Counters, Device, Path, Probes, Running, Snapshot, Table};
use crate::interconnect::netlink::{Netlink, RouteWriter};
use crate::interconnect::sessions::prefix;

/// The kernel's main routing table.
const MAIN: u32 = 254;

/// How often sessions and learnt routes are read.
const POLL: Duration = Duration::from_millis(500);

/// What the follower hands the driver: the PoP's name, every account's tunnels and routes,
/// and the v2 CNIs of this PoP that carry delivered traffic.
type Desired = (String, Vec<MagicProvision>, Vec<Port>);

/// Hands the anycast speaker the customer prefixes to announce now, each with its origin AS.
pub type Announce = Arc<dyn Fn(Vec<(Prefix, Option<u32>)>) + Send + Sync>;

/// The node's tunnels, shared with the follower.
pub struct Tunnels {
    desired: watch::Sender<Desired>,
    states: Mutex<Vec<TunnelState>>,
    /// The Magic Transit report: prefixes and firewall rules.
    magic: Mutex<(Vec<PrefixState>, Vec<RuleState>)>,
    changed: Arc<Notify>,
    metrics: super::metrics::MagicMetrics,
    /// The v2 CNIs delivered onto (for their metrics).
    cnis: Mutex<Vec<Arc<Delivery>>>,
}

impl Tunnels {
    /// Starts the packet path and the driver thread. `speaker` runs BGP over tunnels (none:
    /// tunnels that ask for BGP get none, said in the log); `changed` is woken when a report
    /// should go at once.
    /// `announce` gives the anycast speaker the customer prefixes to announce (none: they
    /// are carried but not announced, said in the log).
    pub fn start(
        config: &Config,
        speaker: Option<Arc<Speaker>>,
        changed: Arc<Notify>,
        announce: Option<Announce>,
        metrics: &edgenet_proxy::metrics::Metrics,
    ) -> anyhow::Result<Arc<Tunnels>> {
        let (desired, desired_rx) = watch::channel((String::new(), Vec::new(), Vec::new()));
        let shared = Arc::new(Tunnels {
            desired,
            states: Mutex::new(Vec::new()),
            magic: Mutex::new((Vec::new(), Vec::new())),
            changed,
            metrics: super::metrics::MagicMetrics::new(metrics),
            cnis: Mutex::new(Vec::new()),
        });
        let config = config.clone();
        let me = shared.clone();
        crate::own_thread::start("tunnels", move |ready| async move {
            match Driver::new(config, speaker, me, announce) {
                Ok(driver) => {
                    let _ = ready.send(Ok(()));
                    driver.run(desired_rx).await;
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        })?;
        Ok(shared)
    }

    /// Every account's tunnels and routes, from the control plane's latest version, as PoP
    /// `pop` runs them, and the ports of its CNIs that carry delivered traffic.
    pub fn set_magic(&self, pop: &str, magic: Vec<MagicProvision>, cnis: Vec<Port>) {
        self.desired.send_if_modified(|d| {
            let changed = d.0 != pop || d.1 != magic || d.2 != cnis;
            *d = (pop.to_string(), magic, cnis);
            changed
        });
    }

    /// Every tunnel's state now.
    pub fn states(&self) -> Vec<TunnelState> {
        lock(&self.states).clone()
    }

    /// Woken when a tunnel's health or session changed.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Every customer prefix's state and every firewall rule's counters now.
    pub fn magic_states(&self) -> (Vec<PrefixState>, Vec<RuleState>) {
        lock(&self.magic).clone()
    }

    /// Brings the Magic Transit metrics up to the counters (at scrape time).
    pub fn update_metrics(&self) {
        let (prefixes, rules) = self.magic_states();
        let cnis = lock(&self.cnis).clone();
        self.metrics
            .update(&prefixes, &rules, &self.states(), &cnis);
    }
}

/// The TUN device name of a tunnel: `gt` and 12 hex digits of a hash of the account and id.
pub fn device_name(account: &str, id: &str) -> String {
    format!("gt{:012x}", key64(account, id) & 0xffff_ffff_ffff)
}

fn key64(account: &str, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account.bytes().chain([0]).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One tunnel's BGP session as the speaker runs it.
struct Session {
    peer: IpAddr,
    config: PeerConfig,
}

/// One tunnel as the driver holds it.
struct Held {
    run: Arc<Running>,
    provision: TunnelProvision,
    session: Option<Session>,
    /// The prefixes learnt over its session and accepted.
    learnt: Vec<IpNet>,
}

struct Driver {
    dataplane: Dataplane,
    path: Arc<Path>,
    netlink: Netlink,
    speaker: Option<Arc<Speaker>>,
    shared: Arc<Tunnels>,
    held: BTreeMap<(String, String), Held>,
    /// Every account's tunnels, routes, prefixes and firewall, by account.
    magic: BTreeMap<String, MagicProvision>,
    pop: String,
    /// Each account's firewall as the snapshot holds it (a new one only when it changed).
    filters: HashMap<String, Arc<Filters>>,
    /// Counters by account and prefix id, and by account and rule id, kept across versions.
    prefix_counters: HashMap<(String, String), Arc<PrefixCounters>>,
    rule_counters: HashMap<(String, String), Arc<RuleCounters>>,
    /// The prefixes routed into the ingress device.
    routed: BTreeSet<IpNet>,
    announce: Option<Announce>,
    /// What the speaker was last told to announce.
    announced: Option<Vec<(Prefix, Option<u32>)>>,
    /// The prefixes with a path from this PoP that is not down, as the last publish found.
    with_path: BTreeSet<IpNet>,
    /// The v2 CNIs delivered onto, by id.
    cnis: BTreeMap<String, HeldCni>,
}

/// One v2 CNI as the driver holds it.
struct HeldCni {
    delivery: Arc<Delivery>,
    /// Its device, table and rules are in the kernel.
    installed: bool,
    /// The account's route prefixes in its table of what comes in ([`Port::table_in`]).
    routed_in: BTreeSet<IpNet>,
}

/// The session a tunnel asks for: routes accepted for the account's own prefixes and the
/// tunnel's extra prefixes (and longer ones, up to /24 and /48).
fn session_of(
    t: &TunnelProvision,
    account_prefixes: &[IpNet],
    local_as_hold: Duration,
) -> Option<Session> {
    let bgp = t.spec.bgp.as_ref()?;
    let ours = t.spec.our_address();
    let theirs = t.spec.customer_address();
    let entries = bgp
        .extra_prefixes
        .iter()
        .chain(account_prefixes)
        .map(|n| FilterEntry {
            prefix: prefix(&n.trunc()),
            ge: n.prefix_len(),
            le: match n {
                IpNet::V4(_) => 24.max(n.prefix_len()),
                IpNet::V6(_) => 48.max(n.prefix_len()),
            },
        })
        .collect();
    let config = PeerConfig {
        address: IpAddr::V4(theirs),
        port: 179,
        peer_as: bgp.customer_asn,
        local_address: Some(IpAddr::V4(ours)),
        passive: true,
        md5_key: t.md5_key.clone(),
        hold_time: local_as_hold,
        keepalive: None,
        connect_retry: Duration::from_secs(1),
        bfd: None,
        med: None,
        prepend: 0,
        communities: Vec::new(),
        large_communities: Vec::new(),
        next_hop_v4: Some(ours),
        next_hop_v6: None,
        import: PrefixFilter { entries },
        max_prefixes: Some(1000),
        families: vec![Family::Ipv4Unicast],
    };
    Some(Session {
        peer: IpAddr::V4(theirs),
        config,
    })
}

fn net(p: &Prefix) -> Option<IpNet> {
    match p {
        Prefix::V4(a, l) => ipnet::Ipv4Net::new(*a, *l).ok().map(IpNet::V4),
        Prefix::V6(a, l) => ipnet::Ipv6Net::new(*a, *l).ok().map(IpNet::V6),
    }
}

impl Driver {
    fn new(
        config: Config,
        speaker: Option<Arc<Speaker>>,
        shared: Arc<Tunnels>,
        announce: Option<Announce>,
    ) -> anyhow::Result<Driver> {
        let dataplane = kernel::choose(config.mode)?;
        tracing::info!(?dataplane, source = %config.source, endpoints = ?config.endpoints, "tunnels: dataplane chosen");
        let path = Path::start(config.source, config.endpoints.clone())
            .map_err(|e| anyhow::anyhow!("tunnels: raw sockets: {e}"))?;
        Ok(Driver {
            dataplane,
            netlink: Netlink::open()?,
            path,
            speaker,
            shared,
            held: BTreeMap::new(),
            magic: BTreeMap::new(),
            pop: String::new(),
            filters: HashMap::new(),
            prefix_counters: HashMap::new(),
            rule_counters: HashMap::new(),
            routed: BTreeSet::new(),
            announce,
            announced: None,
            with_path: BTreeSet::new(),
            cnis: BTreeMap::new(),
        })
    }

    async fn run(mut self, mut desired: watch::Receiver<Desired>) {
        use futures_util::StreamExt;
        let mut poll = tokio::time::interval(POLL);
        let health = self.path.health_changed.clone();
        // A CNI's carrier going down is seen at once, not at the next poll.
        let mut links: futures_util::stream::BoxStream<'static, String> = match Netlink::link_events(
        ) {
            Ok(s) => s.boxed(),
            Err(e) => {
                tracing::warn!(error = %e, "link notifications not followed: CNI carriers are read every {POLL:?}");
                futures_util::stream::pending().boxed()
            }
        };
        loop {
            tokio::select! {
                r = desired.changed() => {
                    if r.is_err() {
                        break;
                    }
                    let d = desired.borrow_and_update().clone();
                    self.reconcile(d).await;
                }
                _ = health.notified() => {}
                _ = poll.tick() => {}
                Some(_) = links.next() => {}
            }
            self.follow_cnis().await;
            self.learn();
            self.publish();
            self.report();
        }
        self.path.stop();
        for (_, c) in std::mem::take(&mut self.cnis) {
            self.uninstall(&c).await;
        }
        for net in std::mem::take(&mut self.routed) {
            let _ = self
                .netlink
                .device_route((net.addr(), net.prefix_len()), INGRESS, MAIN, false)
                .await;
        }
    }

    async fn reconcile(&mut self, (pop, magic, cnis): Desired) {
        self.pop = pop;
        self.reconcile_cnis(cnis).await;
        self.magic = magic
            .iter()
            .map(|m| (m.account.clone(), m.clone()))
            .collect();
        self.update_filters();
        self.route_prefixes().await;
        let wanted: BTreeMap<(String, String), TunnelProvision> = magic
            .iter()
            .flat_map(|m| {
                m.tunnels
                    .iter()
                    .map(|t| ((m.account.clone(), t.id.clone()), t.clone()))
            })
            .collect();
        let gone: Vec<(String, String)> = self
            .held
            .iter()
            .filter(|(k, h)| wanted.get(*k) != Some(&h.provision))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(h) = self.held.remove(&k) {
                self.end(h).await;
            }
        }
        for ((account, id), t) in wanted {
            if self.held.contains_key(&(account.clone(), id.clone())) {
                continue;
            }
            match self.begin(&account, t).await {
                Ok(h) => {
                    self.held.insert((account, id), h);
                }
                Err(e) => tracing::warn!(%account, tunnel = %id, error = %e, "tunnel not started"),
            }
        }
    }

    async fn begin(&mut self, account: &str, t: TunnelProvision) -> anyhow::Result<Held> {
        let name = device_name(account, &t.id);
        let device = match self.dataplane {
            Dataplane::Userspace => Device::Tun(
                Tun::open(&name).map_err(|e| anyhow::anyhow!("TUN device {name}: {e}"))?,
            ),
            Dataplane::Kernel => {
                // Any local address: the customer's packets come to an anycast endpoint, and
                // ours leave from the address the kernel's route to them picks (the PoP's own).
                let request = kernel::gre_link(
                    1,
                    &name,
                    std::net::Ipv4Addr::UNSPECIFIED,
                    t.spec.customer_gre_endpoint,
                    t.spec.ttl,
                );
                match RouteWriter::open()?.request(&request) {
                    // Ours from a run before (the name is ours): configured again below.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => anyhow::bail!(
                        "ip link add {name} type gre remote {} ttl {}: {e}",
                        t.spec.customer_gre_endpoint,
                        t.spec.ttl
                    ),
                    Ok(()) => {}
                }
                Device::Kernel(name.clone())
            }
        };
        let mut addresses = vec![(IpAddr::V4(t.spec.our_address()), 31)];
        addresses.extend(t.spec.addresses6().map(|(ours, _)| (IpAddr::V6(ours), 127)));
        self.netlink
            .configure(&name, &addresses, u32::from(t.spec.mtu))
            .await?;
        let own: Vec<IpNet> = self
            .magic
            .get(account)
            .map(|m| m.prefixes.iter().map(|p| p.spec.cidr).collect())
            .unwrap_or_default();
        let session = match (session_of(&t, &own, Duration::from_secs(90)), &self.speaker) {
            (Some(s), Some(speaker)) => match speaker.add_peer(s.config.clone(), false) {
                Ok(()) => Some(s),
                Err(e) => {
                    tracing::warn!(tunnel = %t.spec.name, error = %e, "BGP over the tunnel not started");
                    None
                }
            },
            (Some(_), None) => {
                tracing::warn!(tunnel = %t.spec.name, "the tunnel asks for BGP but the PoP has no speaker ([anycast] or [interconnect])");
                None
            }
            (None, _) => None,
        };
        tracing::info!(%account, tunnel = %t.spec.name, device = %name, customer = %t.spec.customer_gre_endpoint, bgp = session.is_some(), "tunnel up");
        let run = Arc::new(Running {
            account: account.to_string(),
            id: t.id.clone(),
            key: key64(account, &t.id) as u32,
            spec: t.spec.clone(),
            device,
            probes: Mutex::new(Probes::new(Instant::now())),
            counters: Counters::default(),
        });
        Ok(Held {
            run,
            provision: t,
            session,
            learnt: Vec::new(),
        })
    }

    async fn end(&mut self, h: Held) {
        if let (Some(s), Some(speaker)) = (&h.session, &self.speaker) {
            speaker.remove_peer(s.peer, Duration::from_secs(1)).await;
        }
        if let Device::Kernel(name) = &h.run.device {
            if let Err(e) = self.netlink.delete_link(name).await {
                tracing::warn!(device = %name, error = %e, "GRE device not deleted");
            }
        }
        tracing::info!(account = %h.run.account, tunnel = %h.run.spec.name, "tunnel removed");
        // A TUN device goes with the last reference to it (the packet path's snapshot).
    }

    /// Keeps a [`Delivery`] per CNI wanted: the gone or changed ones' kernel routes and rules
    /// taken out, the new ones opened (installed by [`Driver::follow_cnis`]).
    async fn reconcile_cnis(&mut self, wanted: Vec<Port>) {
        let wanted: BTreeMap<String, Port> =
            wanted.into_iter().map(|p| (p.id.clone(), p)).collect();
        let gone: Vec<String> = self
            .cnis
            .iter()
            .filter(|(id, c)| wanted.get(*id) != Some(&c.delivery.port))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(c) = self.cnis.remove(&id) {
                self.uninstall(&c).await;
                tracing::info!(cni = %id, interface = %c.delivery.port.interface, "CNI no longer delivered onto");
            }
        }
        for (id, port) in wanted {
            if self.cnis.contains_key(&id) {
                continue;
            }
            match Delivery::open(port) {
                Ok(d) => {
                    let c = HeldCni {
                        delivery: Arc::new(d),
                        installed: false,
                        routed_in: BTreeSet::new(),
                    };
                    self.cnis.insert(id, c);
                }
                Err(e) => tracing::warn!(cni = %id, error = %e, "CNI delivery not opened"),
            }
        }
    }

    /// Reads each CNI's port: up when its carrier is, with its routes and rules in (put in,
    /// again, whenever the port comes up: the kernel takes a down device's routes out); and
    /// keeps its table of what comes in holding the account's route prefixes.
    async fn follow_cnis(&mut self) {
        let ids: Vec<String> = self.cnis.keys().cloned().collect();
        let mut changed = false;
        for id in ids {
            let Some(mut c) = self.cnis.remove(&id) else {
                continue;
            };
            let d = c.delivery.clone();
            let link = self.netlink.link(&d.port.interface).await;
            let carrier = link.as_ref().is_ok_and(|l| l.admin_up && l.carrier);
            c.installed &= carrier;
            if carrier && !c.installed {
                c.installed = self.install(&d.port).await;
                c.routed_in.clear();
            }
            let up = carrier && c.installed;
            if d.up.swap(up, std::sync::atomic::Ordering::Relaxed) != up {
                tracing::info!(cni = %id, interface = %d.port.interface, up, "CNI port");
                changed = true;
            }
            if c.installed {
                self.route_in(&mut c).await;
            }
            self.cnis.insert(id, c);
        }
        if changed {
            self.shared.changed.notify_one();
        }
    }

    /// Puts a CNI's TUN device, tables and rules in; false (logged) when the kernel refused.
    async fn install(&self, port: &Port) -> bool {
        let mark = port.mark();
        let done = async {
            self.netlink.configure(&port.device(), &[], 1500).await?;
            self.netlink
                .gateway_table(mark, port.customer, &port.interface, true)
                .await?;
            self.netlink
                .port_rules(mark, &port.interface, port.table_in(), RULE_PRIORITY, true)
                .await
        };
        // What the customer sends from its own prefix comes in on the port while the main
        // table routes that prefix into the ingress device: a strict reverse-path check would
        // drop it, a loose one (2) passes it.
        let rp = format!("/proc/sys/net/ipv4/conf/{}/rp_filter", port.interface);
        if std::fs::read_to_string(&rp).is_ok_and(|v| v.trim() == "1") {
            if let Err(e) = std::fs::write(&rp, "2") {
                tracing::warn!(interface = %port.interface, error = %e, "strict rp_filter on a CNI port not loosened: the customer's packets from its prefix are dropped");
            }
        }
        match done.await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(cni = %port.id, interface = %port.interface, error = %e, "CNI delivery routes not installed");
                false
            }
        }
    }

    /// Keeps the account's IPv4 route prefixes (static, and learnt on its tunnels) in the
    /// CNI's table of what comes in, each onto its TUN device.
    async fn route_in(&self, c: &mut HeldCni) {
        let port = &c.delivery.port;
        let mut wanted: BTreeSet<IpNet> = self
            .magic
            .get(&port.account)
            .map(|m| m.routes.iter().map(|r| r.prefix).collect())
            .unwrap_or_default();
        for h in self.held.values().filter(|h| h.run.account == port.account) {
            wanted.extend(h.learnt.iter().copied());
        }
        wanted.retain(|n| matches!(n, IpNet::V4(_)));
        let dev = port.device();
        for net in wanted.difference(&c.routed_in.clone()) {
            match self
                .netlink
                .device_route((net.addr(), net.prefix_len()), &dev, port.table_in(), true)
                .await
            {
                Ok(()) => {
                    c.routed_in.insert(*net);
                }
                Err(e) => {
                    tracing::warn!(cni = %port.id, prefix = %net, error = %e, "route of what comes in over the CNI not added")
                }
            }
        }
        for net in c.routed_in.difference(&wanted).copied().collect::<Vec<_>>() {
            let _ = self
                .netlink
                .device_route((net.addr(), net.prefix_len()), &dev, port.table_in(), false)
                .await;
            c.routed_in.remove(&net);
        }
    }

    async fn uninstall(&self, c: &HeldCni) {
        let port = &c.delivery.port;
        let mark = port.mark();
        if let Err(e) = self
            .netlink
            .port_rules(mark, &port.interface, port.table_in(), RULE_PRIORITY, false)
            .await
        {
            tracing::warn!(cni = %port.id, error = %e, "CNI delivery rules not removed");
        }
        // The interface may be gone, and its routes with it; the TUN device goes with the last
        // reference to the delivery, and its routes with it.
        let _ = self
            .netlink
            .gateway_table(mark, port.customer, &port.interface, false)
            .await;
    }

    /// Reads each session's accepted routes.
    fn learn(&mut self) {
        let Some(speaker) = &self.speaker else { return };
        for h in self.held.values_mut() {
            let Some(s) = &h.session else { continue };
            let mut learnt: Vec<IpNet> = speaker
                .received_routes(s.peer)
                .into_iter()
                .filter(|(_, _, ok)| *ok)
                .filter_map(|(p, _, _)| net(&p))
                .collect();
            learnt.sort();
            h.learnt = learnt;
        }
    }

    /// Keeps each account's firewall in the snapshot's form: a new [`Filters`] only when its
    /// ruleset changed (the packet path recompiles on a new one), each rule's counters kept
    /// by its id.
    fn update_filters(&mut self) {
        let mut filters = HashMap::new();
        for (account, m) in &self.magic {
            if m.firewall == Ruleset::default() && m.prefixes.is_empty() {
                continue;
            }
            let same = self
                .filters
                .get(account)
                .filter(|f| f.ruleset == m.firewall)
                .cloned();
            let f = same.unwrap_or_else(|| {
                let rules = m
                    .firewall
                    .rules
                    .iter()
                    .map(|r| {
                        self.rule_counters
                            .entry((account.clone(), r.id.clone()))
                            .or_default()
                            .clone()
                    })
                    .collect();
                tracing::info!(%account, rules = m.firewall.rules.len(), "firewall applied");
                Arc::new(Filters {
                    ruleset: m.firewall.clone(),
                    rules,
                })
            });
            filters.insert(account.clone(), f);
        }
        self.filters = filters;
        let live: BTreeSet<(String, String)> = self
            .magic
            .iter()
            .flat_map(|(a, m)| m.firewall.rules.iter().map(|r| (a.clone(), r.id.clone())))
            .collect();
        self.rule_counters.retain(|k, _| live.contains(k));
    }

    /// Routes every account's prefixes into the ingress device, and takes out the routes of
    /// prefixes that are gone.
    async fn route_prefixes(&mut self) {
        if self.path.ingress.is_none() {
            return;
        }
        let wanted: BTreeSet<IpNet> = self
            .magic
            .values()
            .flat_map(|m| m.prefixes.iter().map(|p| p.spec.cidr))
            .collect();
        if !wanted.is_empty() && self.routed.is_empty() {
            if let Err(e) = self.netlink.configure(INGRESS, &[], 1500).await {
                tracing::warn!(device = INGRESS, error = %e, "Magic Transit ingress device not brought up");
                return;
            }
            if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .is_ok_and(|v| v.trim() == "0")
            {
                tracing::warn!("net.ipv4.ip_forward is 0: the kernel will not forward customer prefixes' traffic into {INGRESS}");
            }
        }
        for net in wanted.difference(&self.routed.clone()) {
            match self
                .netlink
                .device_route((net.addr(), net.prefix_len()), INGRESS, MAIN, true)
                .await
            {
                Ok(()) => {
                    tracing::info!(prefix = %net, device = INGRESS, "customer prefix routed into the dataplane");
                    self.routed.insert(*net);
                }
                Err(e) => tracing::warn!(prefix = %net, error = %e, "customer prefix not routed"),
            }
        }
        for net in self.routed.difference(&wanted).copied().collect::<Vec<_>>() {
            if let Err(e) = self
                .netlink
                .device_route((net.addr(), net.prefix_len()), INGRESS, MAIN, false)
                .await
            {
                tracing::warn!(prefix = %net, error = %e, "customer prefix route not removed");
            }
            self.routed.remove(&net);
        }
    }

    /// Puts the tunnels, every account's table (static and learnt routes, with health now),
    /// prefixes and firewalls into the packet path, and announces the prefixes that have a
    /// path.
    fn publish(&mut self) {
        let mut snap = Snapshot::default();
        for account in self.magic.keys() {
            snap.tables.insert(account.clone(), Table::default());
        }
        for h in self.held.values() {
            let t = &h.run;
            snap.by_endpoint
                .entry(t.spec.customer_gre_endpoint)
                .or_default()
                .push(t.clone());
            snap.by_key.insert(t.key, t.clone());
            snap.all.push(t.clone());
            snap.tables
                .entry(t.account.clone())
                .or_insert_with(Table::default)
                .tunnels
                .insert(t.spec.name.clone(), t.clone());
        }
        for (id, c) in &self.cnis {
            let d = &c.delivery;
            snap.cnis.push(d.clone());
            snap.tables
                .entry(d.port.account.clone())
                .or_insert_with(Table::default)
                .cnis
                .insert(id.clone(), d.clone());
        }
        let accounts: Vec<String> = snap.tables.keys().cloned().collect();
        for account in accounts {
            let mut routes = self
                .magic
                .get(&account)
                .map(|m| m.routes.clone())
                .unwrap_or_default();
            for h in self.held.values().filter(|h| h.run.account == account) {
                routes.extend(h.learnt.iter().map(|p| Route {
                    prefix: *p,
                    next_hop: NextHop::Tunnel(h.run.spec.name.clone()),
                    priority: BGP_PRIORITY,
                    weight: 1,
                    scope: Default::default(),
                    source: Source::Bgp,
                    description: String::new(),
                }));
            }
            let table = snap.tables.get_mut(&account).expect("listed above");
            let (tunnels, cnis) = (&table.tunnels, &table.cnis);
            table.view = table::view(&routes, &self.pop, None, |hop| match hop {
                NextHop::Tunnel(name) => tunnels.get(name).map_or(Health::Down, |t| health_of(t)),
                // A CNI of another PoP is no path from here.
                NextHop::Cni(id) => match cnis.get(id) {
                    Some(d) if d.is_up() => Health::Healthy,
                    _ => Health::Down,
                },
            });
        }
        let mut prefixes = PrefixMap::default();
        let mut announce = Vec::new();
        let mut live = BTreeSet::new();
        let mut with_path = BTreeSet::new();
        for (account, m) in &self.magic {
            for p in &m.prefixes {
                let key = (account.clone(), p.id.clone());
                live.insert(key.clone());
                let counters = self.prefix_counters.entry(key).or_default().clone();
                prefixes.insert(
                    p.spec.cidr,
                    Arc::new(Protected {
                        account: account.clone(),
                        id: p.id.clone(),
                        spec: p.spec.clone(),
                        counters,
                    }),
                );
                let path = snap
                    .tables
                    .get(account)
                    .is_some_and(|t| has_path(&t.view, &p.spec.cidr));
                if path {
                    with_path.insert(p.spec.cidr);
                    if p.spec.advertised {
                        announce.push((prefix(&p.spec.cidr), Some(p.spec.asn)));
                    }
                }
            }
        }
        self.prefix_counters.retain(|k, _| live.contains(k));
        self.with_path = with_path;
        *lock(&self.shared.cnis) = snap.cnis.clone();
        snap.prefixes = prefixes;
        snap.filters = self.filters.clone();
        self.path.snapshot.store(Arc::new(snap));
        announce.sort();
        if self.announced.as_ref() != Some(&announce) {
            match &self.announce {
                Some(a) => {
                    tracing::info!(prefixes = ?announce.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>(), "customer prefixes announced from this PoP");
                    a(announce.clone());
                }
                None if !announce.is_empty() => {
                    tracing::warn!("customer prefixes have a path but this PoP has no [anycast] speaker: not announced")
                }
                None => {}
            }
            self.announced = Some(announce);
            self.shared.changed.notify_one();
        }
    }

    fn report(&self) {
        let states: Vec<TunnelState> = self
            .held
            .values()
            .map(|h| {
                let t = &h.run;
                let health = health_of(t);
                let probes = lock(&t.probes);
                let bgp: Option<CniSession> = h.session.as_ref().and_then(|s| {
                    let status = self.speaker.as_ref()?.peer_status(s.peer)?;
                    Some(crate::interconnect::driver::status_report(&t.id, &status))
                });
                let [packets_in, bytes_in, packets_out, bytes_out] = t.traffic();
                TunnelState {
                    account: t.account.clone(),
                    tunnel: t.id.clone(),
                    health,
                    since_ms: probes.since_ms,
                    reason: probes.reason.clone(),
                    probes_sent: probes.sent,
                    probes_failed: probes.failed,
                    packets_in,
                    bytes_in,
                    packets_out,
                    bytes_out,
                    bgp,
                    learnt: h.learnt.iter().map(|p| p.to_string()).collect(),
                }
            })
            .collect();
        *lock(&self.shared.magic) = self.magic_report();
        let mut held = lock(&self.shared.states);
        let changed = held.len() != states.len()
            || held.iter().zip(&states).any(|(a, b)| {
                a.health != b.health
                    || a.learnt != b.learnt
                    || a.bgp.as_ref().map(|s| &s.state) != b.bgp.as_ref().map(|s| &s.state)
            });
        *held = states;
        drop(held);
        if changed {
            self.shared.changed.notify_one();
        }
    }
}

impl Driver {
    /// Each prefix (announced here or why not, counters) and each rule's counters.
    fn magic_report(&self) -> (Vec<PrefixState>, Vec<RuleState>) {
        use std::sync::atomic::Ordering::Relaxed;
        let announced: BTreeSet<Prefix> =
            self.announced.iter().flatten().map(|(p, _)| *p).collect();
        let mut prefixes = Vec::new();
        let mut rules = Vec::new();
        for (account, m) in &self.magic {
            for p in &m.prefixes {
                let c = self.prefix_counters.get(&(account.clone(), p.id.clone()));
                let on = announced.contains(&prefix(&p.spec.cidr));
                let reason = (!on).then(|| {
                    if !p.spec.advertised {
                        "not advertised (PATCH .../bgp/status to turn it on)".to_string()
                    } else if self.announce.is_none() {
                        "this PoP has no [anycast] speaker".to_string()
                    } else if !self.with_path.contains(&p.spec.cidr) {
                        "no path to the customer from this PoP that is not down".to_string()
                    } else {
                        "not announced yet".to_string()
                    }
                });
                prefixes.push(PrefixState {
                    account: account.clone(),
                    prefix: p.id.clone(),
                    cidr: p.spec.cidr.to_string(),
                    announced: on,
                    reason,
                    packets: c.map_or(0, |c| c.packets.load(Relaxed)),
                    bytes: c.map_or(0, |c| c.bytes.load(Relaxed)),
                    delivered: c.map_or(0, |c| c.delivered.load(Relaxed)),
                    dropped: c
                        .map(|c| {
                            c.by_reason()
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            for r in &m.firewall.rules {
                let c = self.rule_counters.get(&(account.clone(), r.id.clone()));
                rules.push(RuleState {
                    account: account.clone(),
                    rule: r.id.clone(),
                    packets: c.map_or(0, |c| c.packets.load(Relaxed)),
                    bytes: c.map_or(0, |c| c.bytes.load(Relaxed)),
                    dropped: c.map_or(0, |c| c.dropped.load(Relaxed)),
                });
            }
        }
        (prefixes, rules)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.path.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_fit_an_interface_name_and_differ_by_account() {
        let a = device_name("acct-1", "t1");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("gt"));
        assert_ne!(a, device_name("acct-2", "t1"));
        assert_eq!(a, device_name("acct-1", "t1"));
    }
}
