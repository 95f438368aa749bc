//! The packet path of the userspace dataplane, on threads of its own (blocking reads, no
//! runtime: a packet costs a read and a send):
//!
//! - `gre-rx` reads every GRE packet the node receives (raw socket, protocol 47), finds the
//!   tunnel by the outer source (the customer's endpoint) and destination (one of our anycast
//!   endpoints, or our own address), and decapsulates it. A returned probe is counted (or, when
//!   another PoP sent it, handed on to that PoP's address); a packet to the tunnel's own
//!   addresses goes to the kernel through the tunnel's TUN device (BGP, ping); anything else is
//!   routed by the account's table and leaves, encapsulated, by the tunnel it picks (traffic
//!   between a customer's sites).
//! - `tun-rx` reads what the kernel sends into the TUN devices and encapsulates it to the
//!   customer's endpoint, from our own address, with the tunnel's TTL; and what comes in over
//!   a v2 CNI for the account's networks (the CNI's own device, [`super::cni`]), routed by the
//!   account's table.
//! - `icmp-rx` reads probes that come back outside the tunnel (unidirectional checks).
//! - `prober` sends each tunnel's probes at its rate and counts the ones that do not return
//!   within the timeout ([`edgenet_dataplane::health::PROBE_TIMEOUT`]).
//! - `magic-rx` reads what the kernel routes to customer prefixes (Magic Transit, in
//!   [`super::magic`]): filtered, then routed by the account's table into a tunnel or onto a
//!   CNI.
//!
//! A packet larger than its tunnel's MTU is fragmented, or refused with ICMP "fragmentation
//! needed" where it may not be ([`edgenet_dataplane::mtu`]).
//!
//! A packet out of a tunnel that no route of the account takes is the customer's reply to the
//! internet: handed to the kernel when its source is the account's prefix with egress through
//! us ([`Path::egress`]), else dropped.
//!
//! They share a [`Snapshot`] (swapped whole when tunnels, routes or health change).
//!
//! A tunnel on a kernel GRE device ([`Device::Kernel`], where the kernel has `ip_gre`) is
//! carried by the kernel: only its probes pass through here. Traffic between two such tunnels
//! follows the kernel's routes, not the account's table here (Magic Transit puts the tables
//! into the kernel for that path).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use edgenet_dataplane::firewall::Dropped;
use edgenet_dataplane::health::{Checker, Direction, Health, PROBE_TIMEOUT};
use edgenet_dataplane::mtu::{self, Fit};
use edgenet_dataplane::packet::{decrement_ttl, destination, flow, Header};
use edgenet_dataplane::prefix::{Egress, PrefixMap};
use edgenet_dataplane::table::{self, NextHop, Seen};
use edgenet_dataplane::tunnel::GreTunnelSpec;
use edgenet_dataplane::{gre, probe};
use edgenet_proxy::lock;
use tokio::sync::Notify;

use super::cni::Delivery;
use super::device::{readable, timed_out, Raw, Tun};
use super::magic::{Filters, Protected};

/// The largest packet read.
const BUF: usize = 65_536;

/// One tunnel as the packet path runs it.
pub struct Running {
    /// The account.
    pub account: String,
    /// The tunnel's id.
    pub id: String,
    /// The key its probes carry.
    pub key: u32,
    /// The tunnel.
    pub spec: GreTunnelSpec,
    /// What carries its inner packets to and from the kernel.
    pub device: Device,
    /// Its probes and health.
    pub probes: Mutex<Probes>,
    /// Traffic through it.
    pub counters: Counters,
}

/// What carries a tunnel's inner packets to and from the kernel.
pub enum Device {
    /// A TUN device: this packet path encapsulates and decapsulates.
    Tun(Tun),
    /// A kernel GRE device of this name: the kernel encapsulates, decapsulates and routes;
    /// this path only sends the probes and reads them back (a raw socket gets a copy of every
    /// GRE packet before the kernel's GRE handler takes it), and the traffic counters are the
    /// device's own.
    Kernel(String),
}

/// Packets and bytes through a tunnel (inner sizes).
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets received.
    pub packets_in: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Packets sent.
    pub packets_out: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Packets dropped: no route, a next hop this path cannot reach, a TTL run out.
    pub dropped: AtomicU64,
}

impl Running {
    /// Packets in, bytes in, packets out and bytes out since it started: this path's counters,
    /// or a kernel device's own statistics.
    pub fn traffic(&self) -> [u64; 4] {
        match &self.device {
            Device::Tun(_) => {
                let c = &self.counters;
                [&c.packets_in, &c.bytes_in, &c.packets_out, &c.bytes_out]
                    .map(|a| a.load(Ordering::Relaxed))
            }
            Device::Kernel(name) => ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"].map(|f| {
                std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/{f}"))
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            }),
        }
    }
}

/// A tunnel's probes: those in flight, the health they make, and the totals.
pub struct Probes {
    /// The health state machine.
    pub checker: Checker,
    /// Probes in flight: sequence number and when sent, oldest first.
    pending: VecDeque<(u32, Instant)>,
    next_seq: u32,
    next_at: Instant,
    /// Sent since start.
    pub sent: u64,
    /// Failed since start.
    pub failed: u64,
    /// Unix milliseconds of the last change of health (0: none).
    pub since_ms: i64,
    /// The rule that made it.
    pub reason: Option<String>,
}

impl Probes {
    /// A tunnel's probes from `now`.
    pub fn new(now: Instant) -> Probes {
        Probes {
            checker: Checker::new(now),
            pending: VecDeque::new(),
            next_seq: 1,
            next_at: now,
            sent: 0,
            failed: 0,
            since_ms: 0,
            reason: None,
        }
    }

    /// Takes one outcome; true when the health changed.
    fn record(&mut self, at: Instant, ok: bool) -> bool {
        if !ok {
            self.failed += 1;
        }
        match self.checker.record(at, ok) {
            Some(change) => {
                tracing::info!(from = ?change.from, to = ?change.to, reason = %change.reason, "tunnel health");
                self.since_ms = crate::unix_ms(SystemTime::now());
                self.reason = Some(change.reason);
                true
            }
            None => false,
        }
    }
}

/// One account's routing table at this PoP.
#[derive(Default)]
pub struct Table {
    /// The routes as this PoP sees them (scope applied, health's priorities).
    pub view: Vec<Seen>,
    /// Its tunnels by name.
    pub tunnels: HashMap<String, Arc<Running>>,
    /// Its v2 CNIs at this PoP, by id.
    pub cnis: HashMap<String, Arc<Delivery>>,
}

/// Why a packet did not leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// Larger than the tunnel's MTU (of this many bytes) and not to be fragmented.
    TooBig(u16),
    /// The kernel refused it, or it is not an IP packet the next hop carries.
    Failed,
}

/// Where a route's packets leave this PoP.
#[derive(Clone, Copy)]
pub enum Next<'a> {
    /// Into a tunnel.
    Tunnel(&'a Running),
    /// Onto a CNI.
    Cni(&'a Delivery),
}

/// Why a table gives a destination no way out of this PoP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoNext {
    /// No route holds it.
    NoRoute,
    /// The route picked has a next hop this PoP cannot reach (a CNI of another PoP).
    Unreachable,
}

impl Table {
    /// The route `dst` takes for `flow` and where it leaves, from one lookup.
    pub fn next(&self, dst: IpAddr, flow: u64) -> Result<Next<'_>, NoNext> {
        let routes = table::lookup(&self.view, dst);
        let hop = &table::pick(&routes, flow)
            .ok_or(NoNext::NoRoute)?
            .route
            .next_hop;
        match hop {
            NextHop::Tunnel(name) => self.tunnels.get(name).map(|t| Next::Tunnel(t)),
            NextHop::Cni(id) => self.cnis.get(id).map(|d| Next::Cni(d)),
        }
        .ok_or(NoNext::Unreachable)
    }
}

/// What the packet path runs now.
#[derive(Default)]
pub struct Snapshot {
    /// Tunnels by the customer's endpoint.
    pub by_endpoint: HashMap<Ipv4Addr, Vec<Arc<Running>>>,
    /// Tunnels by probe key.
    pub by_key: HashMap<u32, Arc<Running>>,
    /// Every tunnel, in one order (the TUN devices polled).
    pub all: Vec<Arc<Running>>,
    /// Every v2 CNI of this PoP (their TUN devices polled too).
    pub cnis: Vec<Arc<Delivery>>,
    /// Each account's table.
    pub tables: HashMap<String, Table>,
    /// Every account's customer prefixes.
    pub prefixes: PrefixMap<Arc<Protected>>,
    /// Each account's firewall rules and protections.
    pub filters: HashMap<String, Arc<Filters>>,
}

/// One of the packet path's threads.
type Thread = fn(&Path);

/// What the threads share.
pub struct Path {
    /// The PoP's own address.
    pub source: Ipv4Addr,
    /// Our anycast endpoints.
    pub endpoints: Vec<Ipv4Addr>,
    /// The running tunnels and tables.
    pub snapshot: ArcSwap<Snapshot>,
    gre: Raw,
    icmp: Raw,
    /// Where the kernel routes customer prefixes (none where it could not be made).
    pub ingress: Option<Tun>,
    stop: AtomicBool,
    /// Woken when a tunnel's health changed (its routes move; its report goes).
    pub health_changed: Arc<Notify>,
}

impl Path {
    /// Opens the raw sockets and starts the threads.
    pub fn start(source: Ipv4Addr, endpoints: Vec<Ipv4Addr>) -> std::io::Result<Arc<Path>> {
        let path = Arc::new(Path {
            source,
            endpoints,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            gre: Raw::open(i32::from(gre::IP_PROTOCOL), true)?,
            icmp: Raw::open(libc::IPPROTO_ICMP, false)?,
            ingress: super::magic::open_ingress(),
            stop: AtomicBool::new(false),
            health_changed: Arc::new(Notify::new()),
        });
        let threads: [(&str, Thread); 5] = [
            ("gre-rx", Path::gre_rx),
            ("tun-rx", Path::tun_rx),
            ("icmp-rx", Path::icmp_rx),
            ("prober", Path::prober),
            ("magic-rx", Path::magic_rx),
        ];
        for (name, run) in threads {
            let p = path.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&p))?;
        }
        Ok(path)
    }

    /// Ends the threads (within [`super::device::WAIT`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sends `inner` into tunnel `t`: GRE from our address to the customer's endpoint, in
    /// fragments of the tunnel's MTU where it is larger and may be cut ([`mtu::fit`]).
    pub(super) fn send(&self, t: &Running, inner: &[u8], out: &mut Vec<u8>) -> Result<(), Unsent> {
        match mtu::fit(inner, t.spec.mtu) {
            Fit::Fits => self.encapsulate(t, inner, out),
            Fit::Fragments(fragments) => fragments
                .iter()
                .try_for_each(|f| self.encapsulate(t, f, out)),
            Fit::TooBig => {
                t.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Err(Unsent::TooBig(t.spec.mtu))
            }
        }
    }

    fn encapsulate(&self, t: &Running, inner: &[u8], out: &mut Vec<u8>) -> Result<(), Unsent> {
        let Some(protocol) = gre::protocol_of(inner) else {
            return Err(Unsent::Failed);
        };
        out.clear();
        gre::push_outer_ipv4(
            self.source,
            t.spec.customer_gre_endpoint,
            t.spec.ttl,
            gre::HEADER + inner.len(),
            out,
        );
        gre::encapsulate(protocol, inner, false, out);
        match self.gre.send_to(out, t.spec.customer_gre_endpoint) {
            Ok(_) => {
                t.counters.packets_out.fetch_add(1, Ordering::Relaxed);
                t.counters
                    .bytes_out
                    .fetch_add(inner.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                t.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(tunnel = %t.spec.name, error = %e, "GRE send failed");
                Err(Unsent::Failed)
            }
        }
    }

    /// Tells the sender of IPv4 packet `p`, refused as larger than `mtu`, the MTU (ICMP
    /// "fragmentation needed" from our address), so its path MTU discovery finds it.
    pub(super) fn too_big(&self, p: &[u8], mtu: u16) {
        let (Some(icmp), Some(IpAddr::V4(src))) = (
            mtu::fragmentation_needed(p, mtu, self.source),
            Header::parse(p).map(|h| h.src),
        ) else {
            return;
        };
        let _ = self.gre.send_to(&icmp, src);
    }

    fn gre_rx(&self) {
        let mut buf = vec![0u8; BUF];
        let mut out = Vec::with_capacity(BUF);
        while !self.stopped() {
            let n = match self.gre.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if timed_out(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "GRE receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            self.on_gre(&mut buf[..n], &mut out);
        }
    }

    fn on_gre(&self, packet: &mut [u8], out: &mut Vec<u8>) {
        let Ok((src, dst, gre_bytes)) = gre::outer_ipv4(packet) else {
            return;
        };
        if dst != self.source && !self.endpoints.contains(&dst) {
            return;
        }
        let snap = self.snapshot.load();
        let Some(t) = snap.by_endpoint.get(&src).and_then(|ts| {
            ts.iter()
                .find(|t| t.spec.cloudflare_gre_endpoint == dst)
                .or_else(|| ts.first())
        }) else {
            return;
        };
        let Ok((_, inner)) = gre::decapsulate(gre_bytes) else {
            return;
        };
        let kernel = matches!(t.device, Device::Kernel(_));
        if kernel && probe::returned(inner).is_none() {
            // The kernel's GRE device has this packet too: it delivers or routes it.
            return;
        }
        t.counters.packets_in.fetch_add(1, Ordering::Relaxed);
        t.counters
            .bytes_in
            .fetch_add(inner.len() as u64, Ordering::Relaxed);
        if let Some(p) = probe::returned(inner) {
            if p.origin == self.source {
                self.returned(&snap, p);
            } else {
                // Another PoP's probe, brought here by anycast: on to the PoP that sent it.
                let mut copy = inner.to_vec();
                probe::readdress(&mut copy, p.origin);
                let _ = self.gre.send_to(&copy, p.origin);
            }
            return;
        }
        let Device::Tun(tun) = &t.device else {
            return;
        };
        let Some(inner_dst) = destination(inner) else {
            return;
        };
        if t.spec.holds(inner_dst) || inner_dst == IpAddr::V4(self.source) {
            let _ = tun.write(inner);
            return;
        }
        self.route(&snap, t, inner, out);
    }

    /// Routes a packet that came out of tunnel `from` by its account's table.
    fn route(&self, snap: &Snapshot, from: &Running, inner: &[u8], out: &mut Vec<u8>) {
        let Some(table) = snap.tables.get(&from.account) else {
            return;
        };
        let Some(dst) = destination(inner) else {
            return;
        };
        let next = match table.next(dst, flow(inner)) {
            Ok(next) => next,
            Err(NoNext::NoRoute) => {
                self.egress(snap, from, inner);
                return;
            }
            Err(NoNext::Unreachable) => {
                from.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let mut packet = inner.to_vec();
        // Too big between sites is dropped, not answered: the sender is behind a tunnel.
        if !decrement_ttl(&mut packet) || self.forward(next, &packet, out).is_err() {
            from.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends `packet` (TTL already less one) where a route picked.
    pub(super) fn forward(
        &self,
        next: Next,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Unsent> {
        match next {
            Next::Tunnel(t) => self.send(t, packet, out),
            Next::Cni(d) => match destination(packet) {
                Some(IpAddr::V4(dst)) if d.send(packet, dst) => Ok(()),
                // An IPv6 packet for a CNI (its delivery is IPv4), or the kernel refused it.
                _ => Err(Unsent::Failed),
            },
        }
    }

    /// A packet out of tunnel `from` to a destination outside the account's table: the
    /// customer's reply to the internet. Handed to the kernel through the tunnel's device (it
    /// forwards it, TTL less one) when its source is in one of the account's prefixes whose
    /// egress is through us; a source outside the account's prefixes is dropped (no spoofing
    /// through us).
    fn egress(&self, snap: &Snapshot, from: &Running, inner: &[u8]) {
        let (Some(h), Device::Tun(tun)) = (Header::parse(inner), &from.device) else {
            return;
        };
        match snap.prefixes.get(h.src) {
            Some((_, p)) if p.account == from.account => {
                if p.spec.egress == Egress::Edge {
                    let _ = tun.write(inner);
                } else {
                    p.counters.dropped(Dropped::EgressNotEnabled);
                }
            }
            _ => {
                from.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn returned(&self, snap: &Snapshot, p: probe::Probe) {
        let Some(t) = snap.by_key.get(&p.tunnel) else {
            return;
        };
        let now = Instant::now();
        let mut probes = lock(&t.probes);
        let Some(at) = probes.pending.iter().position(|(seq, _)| *seq == p.seq) else {
            return;
        };
        probes.pending.remove(at);
        if probes.record(now, true) {
            drop(probes);
            self.health_changed.notify_one();
        }
    }

    fn tun_rx(&self) {
        let mut buf = vec![0u8; BUF];
        let mut out = Vec::with_capacity(BUF);
        while !self.stopped() {
            let snap = self.snapshot.load_full();
            let mut from: Vec<(Next, &Tun)> = snap
                .all
                .iter()
                .filter_map(|t| match &t.device {
                    Device::Tun(tun) => Some((Next::Tunnel(t), tun)),
                    Device::Kernel(_) => None,
                })
                .collect();
            from.extend(snap.cnis.iter().map(|d| (Next::Cni(d), &d.ingress)));
            if from.is_empty() {
                std::thread::sleep(super::device::WAIT);
                continue;
            }
            let fds: Vec<_> = from.iter().map(|(_, tun)| tun.fd()).collect();
            let ready = match readable(&fds) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "poll of the TUN devices failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            for i in ready {
                let (source, tun) = from[i];
                // What is queued, up to a few packets per wake, so one busy device does not
                // starve the others (the device is non-blocking: an empty queue ends it).
                for _ in 0..64 {
                    match tun.read(&mut buf) {
                        Ok(n) if n > 0 => match source {
                            // The kernel's packets for the tunnel: into it.
                            // The device's MTU is the tunnel's: what the kernel sends fits.
                            Next::Tunnel(t) => {
                                let _ = self.send(t, &buf[..n], &mut out);
                            }
                            Next::Cni(d) => self.route_from_cni(&snap, d, &buf[..n], &mut out),
                        },
                        _ => break,
                    }
                }
            }
        }
    }

    /// Routes a packet that came in over CNI `d` for one of the account's networks by the
    /// account's table (the kernel, forwarding it into the CNI's device, took one off its TTL).
    fn route_from_cni(&self, snap: &Snapshot, d: &Delivery, packet: &[u8], out: &mut Vec<u8>) {
        let c = &d.counters;
        c.packets_in.fetch_add(1, Ordering::Relaxed);
        c.bytes_in.fetch_add(packet.len() as u64, Ordering::Relaxed);
        let next = snap.tables.get(&d.port.account).and_then(|table| {
            let dst = destination(packet)?;
            table.next(dst, flow(packet)).ok()
        });
        if next.is_none_or(|next| self.forward(next, packet, out).is_err()) {
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn icmp_rx(&self) {
        let mut buf = vec![0u8; BUF];
        while !self.stopped() {
            let n = match self.icmp.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if timed_out(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "ICMP receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if let Some(p) = probe::returned(&buf[..n]).filter(|p| p.origin == self.source) {
                self.returned(&self.snapshot.load(), p);
            }
        }
    }

    fn prober(&self) {
        let mut out = Vec::with_capacity(256);
        while !self.stopped() {
            let now = Instant::now();
            let snap = self.snapshot.load_full();
            let mut changed = false;
            for t in &snap.all {
                let check = &t.spec.health_check;
                if !check.enabled {
                    continue;
                }
                let mut probes = lock(&t.probes);
                while probes
                    .pending
                    .front()
                    .is_some_and(|(_, at)| now.duration_since(*at) >= PROBE_TIMEOUT)
                {
                    probes.pending.pop_front();
                    changed |= probes.record(now, false);
                }
                if now < probes.next_at {
                    continue;
                }
                let seq = probes.next_seq;
                probes.next_seq = seq.wrapping_add(1);
                probes.next_at = now + check.rate.interval();
                probes.pending.push_back((seq, now));
                probes.sent += 1;
                drop(probes);
                let ours = match check.direction {
                    Direction::Bidirectional => t.spec.our_address(),
                    Direction::Unidirectional => self.source,
                };
                let p = probe::Probe {
                    origin: self.source,
                    tunnel: t.key,
                    seq,
                };
                let inner = probe::build(check.kind, ours, t.spec.probe_target(), p);
                let _ = self.send(t, &inner, &mut out);
            }
            if changed {
                self.health_changed.notify_one();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The health of a tunnel now (healthy without health checks).
pub fn health_of(t: &Running) -> Health {
    if t.spec.health_check.enabled {
        lock(&t.probes).checker.health()
    } else {
        Health::Healthy
    }
}
