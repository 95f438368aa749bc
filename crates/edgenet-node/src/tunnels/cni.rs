//! Delivery onto v2 CNIs: the Magic Transit and WAN traffic the account's table sends to a
//! CNI of this PoP leaves, as it is (no GRE: v2 carries 1500 bytes both ways), through the
//! CNI's port to the customer's router (its half of the CNI's /31).
//!
//! Each such CNI gets a firewall mark and a routing table of its own, both [`mark_of`] its id:
//! `default via CUSTOMER dev PORT table T`, and the rules `fwmark T lookup T` with
//! `fwmark T unreachable` after it, so a marked packet can only leave by that port (the main
//! table routes customer prefixes back into the dataplane's ingress device). The packet path
//! sends the packet, TTL already less one, on a raw socket (`IPPROTO_RAW`, our own header)
//! that carries the mark: the kernel resolves the customer's router (ARP) and counts it on the
//! port; a packet over the port's MTU is refused by the kernel (counted, `send_failed`). The CNI's health here is its port's
//! carrier: a carrier that goes down makes its routes' next hop down, at once (link
//! notifications), and a customer prefix whose last path it was is withdrawn.
//!
//! What the customer sends in over the CNI reaches the PoP's kernel on the port. To the
//! account's own networks (WAN: another site, behind a tunnel or another CNI) it finds the
//! rule `iif PORT lookup IN` and the account's route prefixes in table IN ([`Port::table_in`]),
//! each onto the CNI's TUN device ([`Port::device`]), from which the packet path routes it by
//! the account's table, as it routes what comes out of a tunnel; anything else falls through
//! to the main table and is forwarded to the internet (egress through us; a strict
//! reverse-path check on the port is loosened, since the main table routes the customer's own
//! prefix into the ingress device). v1 CNIs carry Magic Transit inside GRE tunnels, which
//! [`super::path`] runs.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};

use edgenet_interconnect::addressing::halves_v4;
use edgenet_interconnect::cni::UseCase;
use edgenet_interconnect::dataplane::Dataplane;
use edgenet_protocol::CniProvision;

use super::device::{Raw, Tun};
use super::path::Counters;

/// The priority of the first rule of a CNI's mark (its `unreachable` rule is one after, the
/// rule of what comes in on its port two after).
pub const RULE_PRIORITY: u32 = 900;

/// Where a CNI's deliveries go, as the control plane provisions it for this PoP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The CNI's id.
    pub id: String,
    /// The account.
    pub account: String,
    /// The interface its port maps to.
    pub interface: String,
    /// The customer's router: its half of the CNI's /31.
    pub customer: Ipv4Addr,
}

impl Port {
    /// The port of `cni` when it carries delivered traffic here: a v2 CNI for Magic Transit or
    /// WAN on a port of this PoP, with its /31. None otherwise.
    pub fn of(id: &str, cni: &CniProvision) -> Option<Port> {
        if cni.dataplane != Dataplane::V2
            || !matches!(cni.spec.use_case, UseCase::MagicTransit | UseCase::Wan)
        {
            return None;
        }
        Some(Port {
            id: id.to_string(),
            account: cni.account.clone(),
            interface: cni.interface.clone()?,
            customer: halves_v4(cni.spec.p2p_v4?).1,
        })
    }

    /// Its firewall mark and routing table.
    pub fn mark(&self) -> u32 {
        mark_of(&self.id)
    }

    /// The routing table of what comes in on its port for the account's networks: `0xec` in
    /// the top byte, the mark's 24 bits below.
    pub fn table_in(&self) -> u32 {
        self.mark() ^ 0x0100_0000
    }

    /// The TUN device what comes in on its port for the account's networks is routed into:
    /// `cn` and the mark's 24 bits in hex.
    pub fn device(&self) -> String {
        format!("cn{:06x}", self.mark() & 0x00ff_ffff)
    }
}

/// The firewall mark and routing table number of CNI `id`: `0xed` in the top byte, 24 bits of
/// a hash of the id below (never one of the kernel's reserved tables).
pub fn mark_of(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    0xed00_0000 | (h & 0x00ff_ffff)
}

/// One CNI as the packet path delivers onto it and reads from it.
pub struct Delivery {
    /// Where it goes.
    pub port: Port,
    socket: Raw,
    /// What comes in on the port for the account's networks.
    pub ingress: Tun,
    /// Its port's carrier is up.
    pub up: AtomicBool,
    /// What was sent onto it (`_out`), what came in for the account's networks (`_in`), and
    /// what could not go on (`dropped`: no route, refused by the kernel).
    pub counters: Counters,
}

impl Delivery {
    /// The raw socket that carries the port's mark, and the TUN device of what comes in.
    pub fn open(port: Port) -> std::io::Result<Delivery> {
        let socket = Raw::open(libc::IPPROTO_RAW, true)?;
        socket.set_mark(port.mark())?;
        let ingress = Tun::open(&port.device())?;
        Ok(Delivery {
            port,
            socket,
            ingress,
            up: AtomicBool::new(false),
            counters: Counters::default(),
        })
    }

    /// Sends `packet` (an IPv4 packet to `dst`, TTL already less one) onto the CNI; false
    /// when the kernel refused it (counted).
    pub fn send(&self, packet: &[u8], dst: Ipv4Addr) -> bool {
        let c = &self.counters;
        match self.socket.send_to(packet, dst) {
            Ok(_) => {
                c.packets_out.fetch_add(1, Ordering::Relaxed);
                c.bytes_out
                    .fetch_add(packet.len() as u64, Ordering::Relaxed);
                true
            }
            Err(e) => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(cni = %self.port.id, error = %e, "CNI send failed");
                false
            }
        }
    }

    /// Its port's carrier is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_ours_and_differ_by_cni() {
        let a = mark_of("cni-1");
        assert_eq!(a >> 24, 0xed);
        assert_ne!(a, mark_of("cni-2"));
        assert_eq!(a, mark_of("cni-1"));
        let port = Port {
            id: "cni-1".into(),
            account: "acct".into(),
            interface: "eth1".into(),
            customer: Ipv4Addr::new(10, 0, 0, 1),
        };
        assert_eq!(port.table_in() >> 24, 0xec);
        assert_eq!(port.device().len(), 8);
    }
}
