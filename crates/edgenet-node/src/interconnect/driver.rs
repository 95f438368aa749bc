//! The node's interconnects, running: on a thread of its own (a current-thread runtime, so a
//! loaded proxy never delays a link event), it keeps the kernel in step with the CNIs the
//! follower hands it ([`super::provision`]), runs one BGP session per CNI in the PoP's speaker
//! ([`super::sessions`]), follows the ports' link state through netlink notifications and
//! their receive levels ([`super::optics`]), and keeps the report of every interconnect's link
//! and sessions for the report channel, waking the follower when something a status depends on
//! changed. A port whose carrier goes down takes its sessions down at once (a router's fast
//! external fallover), so their routes leave the kernel table without waiting for a hold timer.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgenet_bgp::fsm::State;
use edgenet_bgp::message::{notification_meaning, Prefix};
use edgenet_bgp::speaker::{PeerStatus, Speaker, SpeakerConfig};
use edgenet_config::Interconnect as Config;
use edgenet_interconnect::filter::{Import, Verdict};
use edgenet_interconnect::status::same_level;
use edgenet_protocol::{CniProvision, CniSession, LinkState, NotificationReport, RefusedPrefix};
use edgenet_proxy::lock;
use futures_util::StreamExt;
use ipnet::IpNet;
use tokio::sync::{watch, Notify};

use super::netlink::{Netlink, RouteOp, RouteWriter};
use super::provision::Provisioner;
use super::sessions::{session_of, Installer, Session, Timers};
use super::tagger::{vlan_name, Tagger};

/// How long a transceiver's level (`ethtool -m`) is kept before it is read again.
const MODULE_READ_EVERY: Duration = Duration::from_secs(10);

/// How long a list of refused prefixes with unchanged counts is kept.
const REFUSED_RELIST: Duration = Duration::from_secs(10);

/// Refused prefixes shown per CNI.
const REFUSED_SHOWN: usize = 20;

/// The node's interconnects, shared with the follower.
pub struct Interconnects {
    desired: watch::Sender<BTreeMap<String, CniProvision>>,
    links: Mutex<Vec<LinkState>>,
    changed: Arc<Notify>,
    speaker: std::sync::OnceLock<Arc<Speaker>>,
}

impl Interconnects {
    /// Starts the driver thread. `speaker` is the PoP's anycast speaker when it has one (else
    /// the driver starts its own from `config`); `offered` what `dynamic` CNIs are announced.
    pub fn start(
        config: &Config,
        speaker: Option<Arc<Speaker>>,
        offered: Vec<IpNet>,
    ) -> anyhow::Result<Arc<Interconnects>> {
        let (desired, desired_rx) = watch::channel(BTreeMap::new());
        let shared = Arc::new(Interconnects {
            desired,
            links: Mutex::new(Vec::new()),
            changed: Arc::new(Notify::new()),
            speaker: std::sync::OnceLock::new(),
        });
        let config = config.clone();
        let me = shared.clone();
        crate::own_thread::start("interconnect", move |ready| async move {
            match Driver::new(config, speaker, offered, me).await {
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

    /// The CNIs this PoP runs now (by id), from the control plane's latest version.
    pub fn set_cnis(&self, cnis: BTreeMap<String, CniProvision>) {
        self.desired.send_if_modified(|c| {
            let changed = *c != cnis;
            *c = cnis;
            changed
        });
    }

    /// Every interconnect's link and sessions now (empty when the PoP carries none).
    pub fn links(&self) -> Vec<LinkState> {
        lock(&self.links).clone()
    }

    /// Woken when a link, a receive level or a session changed.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// The speaker that runs the CNIs' sessions (the PoP's one speaker).
    pub fn speaker(&self) -> Option<Arc<Speaker>> {
        self.speaker.get().cloned()
    }
}

/// One CNI as the driver runs it.
struct Running {
    cni: CniProvision,
    session: Option<Session>,
    installer: Option<Installer>,
    /// The refused prefixes last listed, for the received and accepted counts they were
    /// listed at, and when: listing them reads every route the session holds, so it is done
    /// again only when the counts move or [`REFUSED_RELIST`] has passed.
    refused: Option<(usize, usize, Instant, Vec<RefusedPrefix>)>,
}

struct Driver {
    config: Config,
    netlink: Netlink,
    provisioner: Provisioner,
    speaker: Arc<Speaker>,
    offered: Vec<IpNet>,
    shared: Arc<Interconnects>,
    running: BTreeMap<String, Running>,
    /// Each port's carrier as last seen (by interface).
    carrier: BTreeMap<String, bool>,
    /// Each port's module level and when it was read.
    module_levels: BTreeMap<String, (Instant, Option<f64>)>,
    /// The untagged side of each VLAN (by port and VLAN id) a CNI rides.
    vlans: BTreeMap<(String, u16), VlanSide>,
    /// Whether the kernel tags VLANs itself (it has `8021q`); else [`Tagger`] does.
    kernel_vlans: bool,
}

/// A VLAN's untagged side, where its CNIs' addresses go.
enum VlanSide {
    /// A kernel VLAN device of this name.
    Kernel(String),
    /// A TAP device tagged in userspace.
    User(Tagger),
}

impl VlanSide {
    fn name(&self) -> &str {
        match self {
            VlanSide::Kernel(name) => name,
            VlanSide::User(t) => t.name(),
        }
    }
}

/// The port and VLAN id of a CNI that rides a tagged port of this PoP.
fn vlan_of(cni: &CniProvision) -> Option<(String, u16)> {
    Some((cni.interface.clone()?, cni.spec.vlan?))
}

impl Driver {
    async fn new(
        config: Config,
        speaker: Option<Arc<Speaker>>,
        offered: Vec<IpNet>,
        shared: Arc<Interconnects>,
    ) -> anyhow::Result<Driver> {
        let netlink = Netlink::open()?;
        let speaker = match speaker {
            Some(s) => s,
            None => Arc::new(
                Speaker::start(SpeakerConfig {
                    local_as: config.local_as,
                    router_id: config.router_id,
                    listen: config.listen.clone(),
                    peers: Vec::new(),
                })
                .await
                .map_err(|e| anyhow::anyhow!("interconnect: {e}"))?,
            ),
        };
        if let Some(priority) = config.rule_priority {
            netlink
                .ensure_rule(config.table, priority)
                .await
                .map_err(|e| anyhow::anyhow!("interconnect.rule_priority: {e}"))?;
        }
        // Addresses and routes a previous run left (it did not stop cleanly, or CNIs went while
        // it was down) are stale: the CNIs of the first version are configured again.
        match netlink.remove_owned().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(addresses = n, "removed CNI addresses a previous run left"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for CNI addresses a previous run left")
            }
        }
        // Routes a previous run left in the table (it did not stop cleanly) are stale.
        match netlink.bgp_routes(config.table).await {
            Ok(stale) if !stale.is_empty() => {
                tracing::warn!(
                    table = config.table,
                    routes = stale.len(),
                    "removing peering routes a previous run left"
                );
                let ops: Vec<RouteOp> = stale
                    .into_iter()
                    .map(|(dst, _)| RouteOp::Delete { dst })
                    .collect();
                for (i, e) in RouteWriter::open()?.write(config.table, &ops) {
                    tracing::warn!(route = ?ops[i], error = %e, "a stale peering route stays");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the peering table"),
        }
        let _ = shared.speaker.set(speaker.clone());
        let kernel_vlans = crate::tunnels::kernel::has_vlan();
        if kernel_vlans {
            tracing::info!("interconnect: VLANs on ports are kernel devices (8021q)");
        } else {
            tracing::info!(
                "interconnect: the kernel has no 8021q: VLANs on ports are tagged in userspace"
            );
        }
        Ok(Driver {
            provisioner: Provisioner::new(netlink.clone()),
            netlink,
            speaker,
            offered,
            shared,
            running: BTreeMap::new(),
            carrier: BTreeMap::new(),
            module_levels: BTreeMap::new(),
            vlans: BTreeMap::new(),
            kernel_vlans,
            config,
        })
    }

    fn timers(&self) -> Timers {
        Timers {
            connect_retry: self.config.connect_retry,
            hold_time: self.config.hold_time,
            bfd: self.config.bfd,
        }
    }

    async fn run(mut self, mut desired: watch::Receiver<BTreeMap<String, CniProvision>>) {
        let mut events = match Netlink::link_events() {
            Ok(e) => Some(Box::pin(e)),
            Err(e) => {
                tracing::warn!(error = %e, "no netlink link notifications: links are polled");
                None
            }
        };
        let mut tick = tokio::time::interval(self.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sent: Option<Vec<LinkState>> = None;
        loop {
            tokio::select! {
                r = desired.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let cnis = desired.borrow_and_update().clone();
                    self.reconcile(cnis).await;
                }
                Some(name) = async {
                    match events.as_mut() {
                        Some(e) => e.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if !self.carrier.contains_key(&name) {
                        continue;
                    }
                }
                _ = tick.tick() => {
                    // A CNI whose port was missing or refused is tried again.
                    let cnis: Vec<(String, CniProvision)> = self
                        .running
                        .iter()
                        .map(|(id, r)| (id.clone(), r.cni.clone()))
                        .collect();
                    let pending = cnis
                        .iter()
                        .any(|(id, _)| !self.provisioner.configured().contains_key(id));
                    if pending {
                        self.provision(&cnis).await;
                    }
                }
            }
            let links = self.observe().await;
            // Counters alone do not wake the follower: they go with the periodic report.
            let wake = last_sent.as_ref().is_none_or(|l| !same_state(l, &links));
            *lock(&self.shared.links) = links.clone();
            if wake {
                last_sent = Some(links);
                self.shared.changed.notify_one();
            }
        }
    }

    /// Brings the kernel to `cnis`: a CNI on a tagged port gets its addresses on its VLAN's
    /// untagged side (made here when new); VLANs no CNI rides any more go after their
    /// addresses.
    async fn provision(&mut self, cnis: &[(String, CniProvision)]) {
        let mut list = Vec::with_capacity(cnis.len());
        for (id, cni) in cnis {
            let mut cni = cni.clone();
            if let Some(key) = vlan_of(&cni) {
                if !self.vlans.contains_key(&key) {
                    let mtu = u32::from(cni.dataplane.port_mtu());
                    match self.vlan_side(&key.0, key.1, mtu).await {
                        Ok(side) => {
                            tracing::info!(cni = %id, port = %key.0, vlan = key.1, device = side.name(), kernel = self.kernel_vlans, "VLAN set up");
                            self.vlans.insert(key.clone(), side);
                        }
                        Err(e) => {
                            tracing::warn!(cni = %id, port = %key.0, vlan = key.1, error = %e, "VLAN not set up; trying again");
                            continue;
                        }
                    }
                }
                cni.interface = Some(self.vlans[&key].name().to_string());
            }
            list.push((id.clone(), cni));
        }
        for (id, e) in self
            .provisioner
            .apply(list.iter().map(|(id, c)| (id.as_str(), c)))
            .await
        {
            tracing::warn!(cni = %id, error = %e, "CNI not configured; trying again");
        }
        let ridden: Vec<(String, u16)> = cnis.iter().filter_map(|(_, c)| vlan_of(c)).collect();
        let gone: Vec<(String, u16)> = self
            .vlans
            .keys()
            .filter(|k| !ridden.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(VlanSide::Kernel(name)) = self.vlans.remove(&key) {
                if let Err(e) = self.netlink.delete_link(&name).await {
                    tracing::warn!(device = %name, error = %e, "VLAN device not deleted");
                }
            }
            tracing::info!(port = %key.0, vlan = key.1, "VLAN removed");
        }
    }

    /// Makes the untagged side of VLAN `vid` on `port`: a kernel VLAN device where the kernel
    /// has `8021q`, else a TAP device with the port's hardware address and its tagger. The
    /// port itself comes up at `mtu` (the dataplane's port MTU), as it does for an untagged CNI.
    async fn vlan_side(&self, port: &str, vid: u16, mtu: u32) -> anyhow::Result<VlanSide> {
        let link = self.netlink.configure(port, &[], mtu).await?;
        let name = vlan_name(port, link.index, vid);
        if self.kernel_vlans {
            let request = crate::tunnels::kernel::vlan_link(1, link.index, &name, vid);
            match RouteWriter::open()?.request(&request) {
                // Ours from a run before (the name is ours): configured again as it is.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    anyhow::bail!("ip link add link {port} name {name} type vlan id {vid}: {e}")
                }
                Ok(()) => {}
            }
            return Ok(VlanSide::Kernel(name));
        }
        let tagger = Tagger::start(&name, link.index, vid)
            .map_err(|e| anyhow::anyhow!("TAP device {name}: {e}"))?;
        self.netlink.set_mac(&name, &link.mac).await?;
        Ok(VlanSide::User(tagger))
    }

    /// Brings the kernel and the sessions to `cnis`.
    async fn reconcile(&mut self, cnis: BTreeMap<String, CniProvision>) {
        // Sessions that are gone or changed end first (their routes leave the table).
        let timers = self.timers();
        let wanted: BTreeMap<String, Option<Session>> = cnis
            .iter()
            .map(|(id, c)| (id.clone(), session_of(c, &timers, &self.offered)))
            .collect();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            let keep = wanted
                .get(&id)
                .is_some_and(|s| *s == self.running[&id].session);
            if !keep {
                let r = self.running.remove(&id).expect("listed");
                self.end(&id, r).await;
            }
        }
        let list: Vec<(String, CniProvision)> =
            cnis.iter().map(|(i, c)| (i.clone(), c.clone())).collect();
        self.provision(&list).await;
        for (id, cni) in cnis {
            if let Some(r) = self.running.get_mut(&id) {
                r.cni = cni;
                continue;
            }
            let session = wanted.get(&id).cloned().flatten();
            let mut installer = None;
            if let Some(s) = &session {
                match self.speaker.add_peer(s.peer.clone(), s.peering) {
                    Ok(()) => {
                        self.speaker.export(s.peer.address, s.export.clone());
                        if s.peering {
                            match RouteWriter::open() {
                                Ok(w) => {
                                    installer = Some(Installer::start(
                                        self.speaker.clone(),
                                        w,
                                        s.peer.address,
                                        self.config.table,
                                    ))
                                }
                                Err(e) => {
                                    tracing::error!(cni = %id, error = %e, "no route socket: the CNI's routes stay out of the table")
                                }
                            }
                        }
                        tracing::info!(cni = %id, peer = %s.peer.address, peer_as = s.peer.peer_as, "CNI session added");
                    }
                    Err(e) => tracing::warn!(cni = %id, error = %e, "CNI session not started"),
                }
            }
            if let Some(iface) = &cni.interface {
                self.carrier.entry(iface.clone()).or_insert(false);
            }
            self.running.insert(
                id,
                Running {
                    cni,
                    session,
                    installer,
                    refused: None,
                },
            );
        }
        let ports: Vec<String> = self
            .running
            .values()
            .filter_map(|r| r.cni.interface.clone())
            .collect();
        self.carrier.retain(|iface, _| ports.contains(iface));
    }

    /// Ends a CNI's session: its routes leave the table, the peer is removed with a Cease.
    async fn end(&mut self, id: &str, r: Running) {
        if let Some(s) = &r.session {
            self.speaker
                .remove_peer(s.peer.address, Duration::from_secs(1))
                .await;
            tracing::info!(cni = %id, peer = %s.peer.address, "CNI session removed");
        }
        if let Some(i) = r.installer {
            i.stop().await;
        }
    }

    /// Reads every port and session; takes down the sessions of a port that lost its carrier.
    async fn observe(&mut self) -> Vec<LinkState> {
        let mut by_interconnect: BTreeMap<String, LinkState> = BTreeMap::new();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            let Some(iface) = self.running[&id].cni.interface.clone() else {
                continue;
            };
            let rx_dbm = self.rx_dbm(&iface);
            let r = &self.running[&id];
            let carrier = match self.netlink.link(&iface).await {
                Ok(l) => l.admin_up && l.carrier,
                Err(_) => false,
            };
            let was = self.carrier.insert(iface.clone(), carrier);
            // Once, as the carrier goes: the session's own retries then find no path, and its
            // backoff does not grow for as long as the link stays down.
            if was == Some(true) && !carrier {
                tracing::warn!(cni = %id, interface = %iface, "CNI port down");
                if let Some(s) = &r.session {
                    self.speaker.fail_peer(s.peer.address, "the link is down");
                    // Let the session take it before it is read below.
                    tokio::task::yield_now().await;
                }
            }
            let r = self.running.get_mut(&id).expect("listed");
            let session = session_report(&self.speaker, &id, r);
            let link = by_interconnect
                .entry(r.cni.interconnect.clone())
                .or_insert_with(|| LinkState {
                    interconnect: r.cni.interconnect.clone(),
                    link_up: carrier,
                    rx_dbm,
                    bgp_established: true,
                    sessions: Vec::new(),
                });
            if let Some(s) = session {
                link.bgp_established &= s.state == State::Established.name();
                link.sessions.push(s);
            }
        }
        by_interconnect
            .into_values()
            .map(|mut l| {
                l.bgp_established &= !l.sessions.is_empty();
                l
            })
            .collect()
    }

    /// A port's receive level: its file at every read, else its module's diagnostics, read
    /// again only after [`MODULE_READ_EVERY`].
    fn rx_dbm(&mut self, iface: &str) -> Option<f64> {
        match super::optics::from_file(&self.config.optics_dir, iface) {
            Ok(Some(level)) => return Some(level),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "receive level unreadable");
                return None;
            }
        }
        let now = Instant::now();
        match self.module_levels.get(iface) {
            Some((at, level)) if now.duration_since(*at) < MODULE_READ_EVERY => *level,
            _ => {
                let level = super::optics::from_module(iface);
                self.module_levels.insert(iface.to_string(), (now, level));
                level
            }
        }
    }
}

/// What the speaker says of a CNI's session, for its report.
fn session_report(speaker: &Speaker, id: &str, r: &mut Running) -> Option<CniSession> {
    let s = r.session.as_ref()?;
    let status: PeerStatus = speaker.peer_status(s.peer.address)?;
    let counts = (status.received, status.accepted);
    let refused = match &r.refused {
        _ if counts.0 <= counts.1 => Vec::new(),
        Some((rx, ok, at, list)) if (*rx, *ok) == counts && at.elapsed() < REFUSED_RELIST => {
            list.clone()
        }
        _ => {
            let list = refused(speaker, s.peer.address, &r.cni);
            r.refused = Some((counts.0, counts.1, Instant::now(), list.clone()));
            list
        }
    };
    Some(CniSession {
        installed: r
            .installer
            .as_ref()
            .map_or(0, |i| i.installed.load(Ordering::Relaxed)),
        refused,
        ..status_report(id, &status)
    })
}

/// What a session's status says, for a report (no refused prefixes, none installed).
pub(crate) fn status_report(id: &str, status: &PeerStatus) -> CniSession {
    CniSession {
        cni: id.to_string(),
        state: status.state.name().into(),
        received: status.received as u64,
        accepted: status.accepted as u64,
        advertised: status.announced as u64,
        installed: 0,
        refused: Vec::new(),
        last_error: status.last_error.clone(),
        last_notification: status
            .last_notification
            .as_ref()
            .map(|n| NotificationReport {
                direction: if n.sent { "sent" } else { "received" }.into(),
                code: n.code,
                subcode: n.subcode,
                meaning: notification_meaning(n.code, n.subcode),
                at_ms: crate::unix_ms(n.at),
            }),
        bfd: status.bfd.map(|b| b.name().to_string()),
    }
}

/// The first refused prefixes of a session, each with why.
fn refused(speaker: &Speaker, peer: IpAddr, cni: &CniProvision) -> Vec<RefusedPrefix> {
    let import = Import::of(&cni.spec);
    let mut out: Vec<(Prefix, String)> = speaker
        .received_routes(peer)
        .into_iter()
        .filter(|(_, _, ok)| !ok)
        .map(|(p, _, _)| {
            let net: Option<IpNet> = p.to_string().parse().ok();
            let reason = match net.map(|n| import.verdict(&n)) {
                Some(Verdict::Refuse(why)) => why,
                _ => "its AS path has our AS or does not start with the customer's".into(),
            };
            (p, reason)
        })
        .collect();
    out.sort();
    out.into_iter()
        .take(REFUSED_SHOWN)
        .map(|(p, reason)| RefusedPrefix {
            prefix: p.to_string(),
            reason,
        })
        .collect()
}

/// Whether two reports say the same of what a status depends on: the links, the receive
/// levels (within half a dB), the sessions' states and their last NOTIFICATION.
fn same_state(a: &[LinkState], b: &[LinkState]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.interconnect == y.interconnect
                && x.link_up == y.link_up
                && x.bgp_established == y.bgp_established
                && same_level(x.rx_dbm, y.rx_dbm)
                && x.sessions.len() == y.sessions.len()
                && x.sessions.iter().zip(&y.sessions).all(|(s, t)| {
                    s.cni == t.cni
                        && s.state == t.state
                        && s.last_notification == t.last_notification
                        && s.bfd == t.bfd
                })
        })
}
