//! The node's tunnels, running: on a thread of its own (a current-thread runtime), it keeps a
//! device per tunnel of every account the follower hands it (a TUN device, or a kernel GRE
//! device where [`kernel::choose`] picked the kernel; named `gt` and 12 hex digits of the
//! account and tunnel id, carrying our side of the /31 and /127 at the tunnel's MTU),
//! one passive BGP session per tunnel that asks for one in the PoP's speaker (the customer's
//! router connects to our side of the /31; the PoP its packets reach by anycast answers), the
//! accounts' tables in the packet path's snapshot (static routes and the routes learnt here,
//! with the health this PoP measures), and the report of every tunnel for the report channel,
//! waking the follower when a health or a session changed.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgenet_bgp::message::{Family, Prefix};
use edgenet_bgp::rib::{FilterEntry, PrefixFilter};
use edgenet_bgp::speaker::{PeerConfig, Speaker};
use edgenet_config::Tunnels as Config;
use edgenet_dataplane::table::{self, NextHop, Route, Source, BGP_PRIORITY};
use edgenet_protocol::{CniSession, MagicProvision, TunnelProvision, TunnelState};
use edgenet_proxy::lock;
use ipnet::IpNet;
use tokio::sync::{watch, Notify};

use super::device::Tun;
use super::kernel::{self, Dataplane};
use super::path::{health_of, Counters, Device, Path, Probes, Running, Snapshot, Table};
use crate::interconnect::netlink::{Netlink, RouteWriter};
use crate::interconnect::sessions::prefix;

/// How often sessions and learnt routes are read.
const POLL: Duration = Duration::from_millis(500);

/// What the follower hands the driver: the PoP's name and every account's tunnels and routes.
type Desired = (String, Vec<MagicProvision>);

/// The node's tunnels, shared with the follower.
pub struct Tunnels {
    desired: watch::Sender<Desired>,
    states: Mutex<Vec<TunnelState>>,
    changed: Arc<Notify>,
}

impl Tunnels {
    /// Starts the packet path and the driver thread. `speaker` runs BGP over tunnels (none:
    /// tunnels that ask for BGP get none, said in the log); `changed` is woken when a report
    /// should go at once.
    pub fn start(
        config: &Config,
        speaker: Option<Arc<Speaker>>,
        changed: Arc<Notify>,
    ) -> anyhow::Result<Arc<Tunnels>> {
        let (desired, desired_rx) = watch::channel((String::new(), Vec::new()));
        let shared = Arc::new(Tunnels {
            desired,
            states: Mutex::new(Vec::new()),
            changed,
        });
        let config = config.clone();
        let me = shared.clone();
        crate::own_thread::start("tunnels", move |ready| async move {
            match Driver::new(config, speaker, me) {
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
    /// `pop` runs them.
    pub fn set_magic(&self, pop: &str, magic: Vec<MagicProvision>) {
        self.desired.send_if_modified(|d| {
            let changed = d.0 != pop || d.1 != magic;
            *d = (pop.to_string(), magic);
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
    /// The accounts' static routes.
    routes: HashMap<String, Vec<Route>>,
    pop: String,
}

/// The session a tunnel asks for.
fn session_of(t: &TunnelProvision, local_as_hold: Duration) -> Option<Session> {
    let bgp = t.spec.bgp.as_ref()?;
    let ours = t.spec.our_address();
    let theirs = t.spec.customer_address();
    let entries = bgp
        .extra_prefixes
        .iter()
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
            routes: HashMap::new(),
            pop: String::new(),
        })
    }

    async fn run(mut self, mut desired: watch::Receiver<Desired>) {
        let mut poll = tokio::time::interval(POLL);
        let health = self.path.health_changed.clone();
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
            }
            self.learn();
            self.publish();
            self.report();
        }
        self.path.stop();
    }

    async fn reconcile(&mut self, (pop, magic): Desired) {
        self.pop = pop;
        self.routes = magic
            .iter()
            .map(|m| (m.account.clone(), m.routes.clone()))
            .collect();
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
        let session = match (session_of(&t, Duration::from_secs(90)), &self.speaker) {
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

    /// Puts the tunnels and every account's table (static and learnt routes, with health now)
    /// into the packet path.
    fn publish(&self) {
        let mut snap = Snapshot::default();
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
        let accounts: Vec<String> = snap.tables.keys().cloned().collect();
        for account in accounts {
            let mut routes = self.routes.get(&account).cloned().unwrap_or_default();
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
            let by_name = &table.tunnels;
            table.view = table::view(&routes, &self.pop, None, |hop| match hop {
                NextHop::Tunnel(name) => by_name
                    .get(name)
                    .map_or(edgenet_dataplane::health::Health::Down, |t| health_of(t)),
                // A CNI counts as healthy here; its link state moves it with Magic Transit.
                NextHop::Cni(_) => edgenet_dataplane::health::Health::Healthy,
            });
        }
        self.path.snapshot.store(Arc::new(snap));
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
