//! Magic Transit in the packet path: traffic to a customer's own prefix. Every PoP announces
//! the prefix (while it has a path to the customer), so the internet delivers packets for it
//! to the nearest PoP; there the kernel's route for the prefix puts them into one TUN device,
//! [`INGRESS`], and the `magic-rx` thread takes each one through:
//!
//! 1. whose it is: the longest customer prefix holding its destination ([`PrefixMap`]);
//! 2. the account's firewall rules in order (`edgenet_dataplane::firewall`), counted per rule;
//! 3. the built-in flood protections (`edgenet_dataplane::shield`): per-source and
//!    per-destination SYN, UDP and ICMP rates, SYNs authenticated while a destination is
//!    flooded;
//! 4. the account's routing table, and out by the tunnel it picks, TTL less one.
//!
//! Every drop is counted by reason on its prefix. The firewall and shield state of each account
//! is the thread's own (no lock per packet); it is rebuilt when the account's ruleset changes,
//! and the rate estimates start again then.
//!
//! The other direction (the customer's replies when its egress is through us) comes out of
//! the tunnel in `gre-rx` and is handed to the kernel, which routes it to the internet
//! ([`Path::egress`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use edgenet_dataplane::firewall::{Dropped, Firewall, Hit, Ruleset};
use edgenet_dataplane::packet::Header;
use edgenet_dataplane::prefix::PrefixSpec;
use edgenet_dataplane::shield::Shield;

use super::device::{readable, Tun};
use super::path::{Path, Snapshot, Unsent};

/// The TUN device customer prefixes are routed into.
pub const INGRESS: &str = "edgenet-mt";

/// Packets read per wake before polling again.
const BATCH: usize = 256;

/// One customer prefix as the packet path runs it.
pub struct Protected {
    /// The account.
    pub account: String,
    /// The prefix's id.
    pub id: String,
    /// The prefix.
    pub spec: PrefixSpec,
    /// Its traffic.
    pub counters: Arc<PrefixCounters>,
}

/// The traffic to one prefix at this PoP.
#[derive(Debug, Default)]
pub struct PrefixCounters {
    /// Packets received for it.
    pub packets: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Packets delivered to the customer.
    pub delivered: AtomicU64,
    /// Dropped, by [`Dropped::ALL`]'s order.
    pub drops: [AtomicU64; Dropped::ALL.len()],
}

impl PrefixCounters {
    /// Counts a drop.
    pub fn dropped(&self, why: Dropped) {
        self.drops[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The drops so far, by reason label (reasons with none left out).
    pub fn by_reason(&self) -> Vec<(&'static str, u64)> {
        Dropped::ALL
            .iter()
            .zip(&self.drops)
            .map(|(d, n)| (d.as_str(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// One firewall rule's counters at this PoP.
#[derive(Debug, Default)]
pub struct RuleCounters {
    /// Packets it matched.
    pub packets: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Of those, packets it dropped.
    pub dropped: AtomicU64,
}

/// An account's firewall as the snapshot holds it: the rules and protections, and each rule's
/// counters (kept by the driver across versions, by rule id).
pub struct Filters {
    /// The ruleset.
    pub ruleset: Ruleset,
    /// Counters, one per rule in order.
    pub rules: Vec<Arc<RuleCounters>>,
}

/// One account's compiled filters, owned by the `magic-rx` thread.
struct Compiled {
    from: Arc<Filters>,
    firewall: Firewall,
    shield: Shield,
}

/// Milliseconds on the thread's clock.
fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

impl Path {
    /// The `magic-rx` thread: every packet the kernel routes to a customer prefix.
    pub(super) fn magic_rx(&self) {
        let Some(ingress) = &self.ingress else {
            return;
        };
        let start = Instant::now();
        let seed = edgenet_dataplane::shield::address_key(
            std::net::IpAddr::V4(self.source),
            u64::from(std::process::id()) ^ start.elapsed().as_nanos() as u64,
        );
        let mut compiled: HashMap<String, Compiled> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        let mut out = Vec::with_capacity(65_536);
        while !self.stopped() {
            match readable(&[ingress.fd()]) {
                Ok(ready) if !ready.is_empty() => {}
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "poll of the Magic Transit device failed");
                    std::thread::sleep(super::device::WAIT);
                    continue;
                }
            }
            let snap = self.snapshot.load();
            for _ in 0..BATCH {
                let n = match ingress.read(&mut buf) {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                let now = ms_since(start);
                self.ingress_packet(&snap, &mut compiled, &mut buf[..n], &mut out, now, seed);
            }
        }
    }

    fn ingress_packet(
        &self,
        snap: &Snapshot,
        compiled: &mut HashMap<String, Compiled>,
        packet: &mut [u8],
        out: &mut Vec<u8>,
        now_ms: u64,
        seed: u64,
    ) {
        let Some(h) = Header::parse(packet) else {
            return;
        };
        let Some((_, p)) = snap.prefixes.get(h.dst) else {
            // The kernel routed it here, but no prefix of ours holds it (one just removed).
            return;
        };
        let c = &p.counters;
        c.packets.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
        if let Some(filters) = snap.filters.get(&p.account) {
            let entry = compiled
                .entry(p.account.clone())
                .or_insert_with(|| compile(filters, seed, now_ms));
            if !Arc::ptr_eq(&entry.from, filters) {
                *entry = compile(filters, seed, now_ms);
            }
            let rules = &entry.from.rules;
            let len = packet.len() as u64;
            let verdict = entry.firewall.check(&h, now_ms, |i, hit| {
                if let Some(r) = rules.get(i) {
                    r.packets.fetch_add(1, Ordering::Relaxed);
                    r.bytes.fetch_add(len, Ordering::Relaxed);
                    if hit == Hit::Dropped {
                        r.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            if let Err(why) = verdict.and_then(|()| entry.shield.check(&h, now_ms)) {
                c.dropped(why);
                return;
            }
        }
        let Some(table) = snap.tables.get(&p.account) else {
            c.dropped(Dropped::NoRoute);
            return;
        };
        let Ok(next) = table.next(h.dst, h.flow()) else {
            c.dropped(Dropped::NoRoute);
            return;
        };
        // The kernel took one off the TTL forwarding it into the ingress device (and answered
        // a TTL that ran out itself).
        match self.forward(next, packet, out) {
            Ok(()) => {}
            Err(Unsent::TooBig(mtu)) => {
                self.too_big(packet, mtu);
                c.dropped(Dropped::TooBig);
                return;
            }
            Err(Unsent::Failed) => {
                c.dropped(Dropped::SendFailed);
                return;
            }
        }
        c.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

fn compile(filters: &Arc<Filters>, seed: u64, now_ms: u64) -> Compiled {
    Compiled {
        from: filters.clone(),
        firewall: Firewall::new(&filters.ruleset, seed, now_ms),
        shield: Shield::new(filters.ruleset.protection, seed, now_ms),
    }
}

/// Opens the ingress device; `None` (logged) where it cannot be made.
pub fn open_ingress() -> Option<Tun> {
    match Tun::open(INGRESS) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(device = INGRESS, error = %e, "Magic Transit ingress device not made: customer prefixes are not carried");
            None
        }
    }
}
