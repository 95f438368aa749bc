//! Tunnel health-check probes, pure: the inner IPv4 packet a PoP puts in a tunnel and the
//! echo reply that comes back. A probe is an ICMP echo (RFC 792) whose data says whose it is:
//! the magic `edgenet-probe`, the address of the PoP that sent it (so a PoP that receives
//! another PoP's returned probe, as anycast may arrange, can hand it on), the tunnel's key and
//! a sequence number.
//!
//! - `reply`: an echo reply from the probe target to our return address, which the customer's
//!   router, after decapsulating it, forwards on;
//! - `request`: an echo request from our return address to the target, which the router
//!   answers.
//!
//! Either way what comes back is an echo reply carrying the same data. The return address is
//! our side of the tunnel (bidirectional: back through the tunnel) or the PoP's own address
//! (unidirectional: back any way).

use std::net::Ipv4Addr;

use crate::gre::internet_checksum;
use crate::health::ProbeType;

/// The first bytes of a probe's ICMP data.
pub const MAGIC: &[u8; 13] = b"edgenet-probe";
/// The ICMP data's length: the magic, the origin address, the tunnel key, the sequence.
const DATA: usize = MAGIC.len() + 4 + 4 + 4;
/// ICMP echo reply.
const ECHO_REPLY: u8 = 0;
/// ICMP echo request.
const ECHO_REQUEST: u8 = 8;

/// What a probe says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The address of the PoP that sent it.
    pub origin: Ipv4Addr,
    /// The tunnel it probes (a key the PoP chooses).
    pub tunnel: u32,
    /// Its number.
    pub seq: u32,
}

/// The inner IPv4 packet of `probe`, of type `kind`, between `target` (the far side) and
/// `ours` (where it returns to), with TTL 64.
pub fn build(kind: ProbeType, ours: Ipv4Addr, target: Ipv4Addr, probe: Probe) -> Vec<u8> {
    let (src, dst, icmp_type) = match kind {
        ProbeType::Reply => (target, ours, ECHO_REPLY),
        ProbeType::Request => (ours, target, ECHO_REQUEST),
    };
    let mut icmp = Vec::with_capacity(8 + DATA);
    icmp.extend_from_slice(&[icmp_type, 0, 0, 0]);
    icmp.extend_from_slice(&(probe.tunnel as u16).to_be_bytes());
    icmp.extend_from_slice(&(probe.seq as u16).to_be_bytes());
    icmp.extend_from_slice(MAGIC);
    icmp.extend_from_slice(&probe.origin.octets());
    icmp.extend_from_slice(&probe.tunnel.to_be_bytes());
    icmp.extend_from_slice(&probe.seq.to_be_bytes());
    let c = internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut p = Vec::with_capacity(usize::from(total));
    let t = total.to_be_bytes();
    p.extend_from_slice(&[0x45, 0, t[0], t[1], 0, 0, 0x40, 0, 64, 1, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = internet_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&icmp);
    p
}

/// The probe an IPv4 packet returns, if it is a returned probe: an echo reply whose data is
/// a probe's.
pub fn returned(packet: &[u8]) -> Option<Probe> {
    if packet.len() < 20 || packet[0] >> 4 != 4 || packet[9] != 1 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0xf) * 4;
    if ihl < 20 {
        return None;
    }
    let icmp = packet.get(ihl..)?;
    if icmp.len() < 8 + DATA || icmp[0] != ECHO_REPLY || icmp[1] != 0 {
        return None;
    }
    let data = &icmp[8..8 + DATA];
    if &data[..MAGIC.len()] != MAGIC {
        return None;
    }
    let word = |at: usize| {
        let b = &data[MAGIC.len() + at..MAGIC.len() + at + 4];
        [b[0], b[1], b[2], b[3]]
    };
    Some(Probe {
        origin: Ipv4Addr::from(word(0)),
        tunnel: u32::from_be_bytes(word(4)),
        seq: u32::from_be_bytes(word(8)),
    })
}

/// `packet` (an IPv4 packet) with its destination changed to `to` and its header checksum
/// made again: a returned probe handed on to the PoP that sent it.
pub fn readdress(packet: &mut [u8], to: Ipv4Addr) {
    if packet.len() < 20 {
        return;
    }
    let ihl = (usize::from(packet[0] & 0xf) * 4).clamp(20, packet.len());
    packet[16..20].copy_from_slice(&to.octets());
    packet[10..12].copy_from_slice(&[0, 0]);
    let c = internet_checksum(&packet[..ihl]);
    packet[10..12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: Probe = Probe {
        origin: Ipv4Addr::new(198, 51, 100, 1),
        tunnel: 0x0102_0304,
        seq: 77,
    };

    /// An echo reply to `request` as a router makes one: addresses swapped, type 0.
    fn answer(request: &[u8]) -> Vec<u8> {
        let mut r = request.to_vec();
        r[12..16].copy_from_slice(&request[16..20]);
        r[16..20].copy_from_slice(&request[12..16]);
        r[20] = 0;
        r[22..24].copy_from_slice(&[0, 0]);
        let c = internet_checksum(&r[20..]);
        r[22..24].copy_from_slice(&c.to_be_bytes());
        r
    }

    #[test]
    fn a_reply_probe_comes_back_as_it_went_and_a_request_in_its_answer() {
        let ours: Ipv4Addr = "10.212.0.8".parse().unwrap();
        let target: Ipv4Addr = "10.212.0.9".parse().unwrap();
        let reply = build(ProbeType::Reply, ours, target, PROBE);
        assert_eq!(&reply[12..16], &target.octets());
        assert_eq!(&reply[16..20], &ours.octets());
        assert_eq!(internet_checksum(&reply[..20]), 0, "IPv4 header checksum");
        assert_eq!(internet_checksum(&reply[20..]), 0, "ICMP checksum");
        assert_eq!(returned(&reply), Some(PROBE));
        let request = build(ProbeType::Request, ours, target, PROBE);
        assert_eq!((request[20], &request[16..20]), (8, &target.octets()[..]));
        assert_eq!(returned(&request), None, "a request is not a return");
        assert_eq!(returned(&answer(&request)), Some(PROBE));
        let mut other = answer(&request);
        other[28] = b'x';
        assert_eq!(returned(&other), None, "not our magic");
        assert_eq!(returned(&reply[..40]), None, "truncated");
        // A header length under five words is not IPv4; found by the fuzzer, where such a
        // "header" overlapped the probe's data and re-addressing it changed the probe.
        let mut short = vec![0; 4 + 8 + DATA];
        short[0] = 0x41;
        short[9] = 1;
        short[12..].copy_from_slice(&reply[28..28 + DATA]);
        assert_eq!(returned(&short), None, "IHL 1");
    }

    #[test]
    fn a_readdressed_probe_keeps_a_valid_header() {
        let mut p = build(
            ProbeType::Reply,
            "10.212.0.8".parse().unwrap(),
            "10.212.0.9".parse().unwrap(),
            PROBE,
        );
        readdress(&mut p, PROBE.origin);
        assert_eq!(&p[16..20], &PROBE.origin.octets());
        assert_eq!(internet_checksum(&p[..20]), 0);
        assert_eq!(returned(&p), Some(PROBE));
    }
}
