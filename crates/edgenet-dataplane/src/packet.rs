//! What the filters and the routing table read of an IP packet, pure: addresses, protocol,
//! ports, TCP flags, ICMP type and length ([`Header::parse`]), the flow hash of its 5-tuple,
//! and the TTL decrement of a routed packet. IPv4 and IPv6; an IPv6 packet's extension
//! headers are not walked (its protocol is the first next-header, as most hardware filters
//! read it), and a non-first IPv4 fragment has no ports (it matches rules without ports).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::table;

/// IP protocol numbers the filters name.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// TCP flag bits, as in the header's 13th byte.
pub mod tcp_flag {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// An IP packet's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The IP protocol (IPv6: the first next header).
    pub protocol: u8,
    /// TCP, UDP or SCTP source port (0 where there is none).
    pub sport: u16,
    /// Destination port (0 where there is none).
    pub dport: u16,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// ICMP or ICMPv6 type (`None` for other protocols).
    pub icmp_type: Option<u8>,
    /// The packet's length in bytes, as the IP header gives it.
    pub length: u16,
}

impl Header {
    /// Reads the header of `p`; `None` for what is not a whole IPv4 or IPv6 header.
    pub fn parse(p: &[u8]) -> Option<Header> {
        let (src, dst, protocol, length, l4): (IpAddr, IpAddr, u8, u16, &[u8]) =
            match p.first()? >> 4 {
                4 => {
                    let ihl = usize::from(p[0] & 0xf) * 4;
                    if ihl < 20 || p.len() < ihl {
                        return None;
                    }
                    let length = u16::from_be_bytes([p[2], p[3]]);
                    // A fragment other than the first carries no transport header.
                    let offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
                    let l4 = if offset == 0 { &p[ihl..] } else { &[] };
                    (
                        Ipv4Addr::new(p[12], p[13], p[14], p[15]).into(),
                        Ipv4Addr::new(p[16], p[17], p[18], p[19]).into(),
                        p[9],
                        length,
                        l4,
                    )
                }
                6 if p.len() >= 40 => {
                    let s: [u8; 16] = p[8..24].try_into().ok()?;
                    let d: [u8; 16] = p[24..40].try_into().ok()?;
                    let payload = u16::from_be_bytes([p[4], p[5]]);
                    (
                        Ipv6Addr::from(s).into(),
                        Ipv6Addr::from(d).into(),
                        p[6],
                        payload.saturating_add(40),
                        &p[40..],
                    )
                }
                _ => return None,
            };
        let (sport, dport) = match (protocol, l4) {
            (protocol::TCP | protocol::UDP | protocol::SCTP, [a, b, c, d, ..]) => {
                (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))
            }
            _ => (0, 0),
        };
        let tcp_flags = match (protocol, l4.get(13)) {
            (protocol::TCP, Some(f)) => *f,
            _ => 0,
        };
        let icmp_type = match protocol {
            protocol::ICMP | protocol::ICMPV6 => l4.first().copied(),
            _ => None,
        };
        Some(Header {
            src,
            dst,
            protocol,
            sport,
            dport,
            tcp_flags,
            icmp_type,
            length,
        })
    }

    /// Whether it is a TCP packet with `flag` set.
    pub fn tcp(&self, flag: u8) -> bool {
        self.protocol == protocol::TCP && self.tcp_flags & flag != 0
    }

    /// A connection's first packet: SYN without ACK.
    pub fn is_syn(&self) -> bool {
        self.tcp(tcp_flag::SYN) && !self.tcp(tcp_flag::ACK)
    }

    /// Its flow hash ([`table::flow_hash`] of the 5-tuple).
    pub fn flow(&self) -> u64 {
        table::flow_hash(self.src, self.dst, self.protocol, self.sport, self.dport)
    }
}

/// An IP packet's destination.
pub fn destination(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => Some(IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]))),
        6 if p.len() >= 40 => {
            let b: [u8; 16] = p[24..40].try_into().ok()?;
            Some(IpAddr::V6(b.into()))
        }
        _ => None,
    }
}

/// A packet's flow hash (0 for what is not an IP packet).
pub fn flow(p: &[u8]) -> u64 {
    Header::parse(p).map_or(0, |h| h.flow())
}

/// Takes one off an IPv4 packet's TTL (or an IPv6 packet's hop limit), fixing the IPv4
/// checksum (RFC 1624); false when it ran out.
pub fn decrement_ttl(p: &mut [u8]) -> bool {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            if p[8] <= 1 {
                return false;
            }
            p[8] -= 1;
            let sum = u32::from(u16::from_be_bytes([p[10], p[11]])) + 0x0100;
            let sum = (sum & 0xffff) + (sum >> 16);
            p[10..12].copy_from_slice(&(sum as u16).to_be_bytes());
            true
        }
        Some(6) if p.len() >= 40 => {
            if p[7] <= 1 {
                return false;
            }
            p[7] -= 1;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gre::internet_checksum;

    /// An IPv4 packet of `protocol` from `src:sport` to `dst:dport`, `payload` bytes long after
    /// a transport header (TCP with `flags`, else 8 bytes), checksummed.
    pub(crate) fn ipv4(
        src: &str,
        dst: &str,
        protocol: u8,
        ports: (u16, u16),
        flags: u8,
        payload: usize,
    ) -> Vec<u8> {
        let l4 = if protocol == protocol::TCP { 20 } else { 8 };
        let total = 20 + l4 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = protocol;
        p[12..16].copy_from_slice(&src.parse::<Ipv4Addr>().unwrap().octets());
        p[16..20].copy_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
        let sum = internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p[20..22].copy_from_slice(&ports.0.to_be_bytes());
        p[22..24].copy_from_slice(&ports.1.to_be_bytes());
        if protocol == protocol::TCP {
            p[32] = 0x50;
            p[33] = flags;
        }
        p
    }

    #[test]
    fn reads_a_tcp_syn() {
        let p = ipv4(
            "198.51.100.7",
            "203.0.113.10",
            protocol::TCP,
            (40000, 80),
            tcp_flag::SYN,
            0,
        );
        let h = Header::parse(&p).unwrap();
        assert_eq!(h.src, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(h.dst, "203.0.113.10".parse::<IpAddr>().unwrap());
        assert_eq!((h.protocol, h.sport, h.dport, h.length), (6, 40000, 80, 40));
        assert!(h.is_syn());
        assert_eq!(h.icmp_type, None);
        let mut ack = p.clone();
        ack[33] = tcp_flag::SYN | tcp_flag::ACK;
        assert!(!Header::parse(&ack).unwrap().is_syn());
    }

    #[test]
    fn a_later_fragment_has_no_ports_and_short_headers_are_refused() {
        let mut p = ipv4("192.0.2.1", "192.0.2.2", protocol::UDP, (53, 5353), 0, 10);
        p[6] = 0x00;
        p[7] = 0x10;
        let h = Header::parse(&p).unwrap();
        assert_eq!((h.sport, h.dport), (0, 0));
        assert!(Header::parse(&p[..19]).is_none());
        let mut short_ihl = p.clone();
        short_ihl[0] = 0x44;
        assert!(Header::parse(&short_ihl).is_none());
        assert!(Header::parse(&[0x60; 39]).is_none());
        assert!(Header::parse(&[]).is_none());
    }

    #[test]
    fn reads_icmp_and_ipv6() {
        let mut p = ipv4("192.0.2.1", "192.0.2.2", protocol::ICMP, (0, 0), 0, 0);
        p[20] = 8;
        assert_eq!(Header::parse(&p).unwrap().icmp_type, Some(8));
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&8u16.to_be_bytes());
        v6[6] = protocol::UDP;
        v6[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6[24..40].copy_from_slice(&"2001:db8:1::2".parse::<Ipv6Addr>().unwrap().octets());
        v6[40..42].copy_from_slice(&1234u16.to_be_bytes());
        v6[42..44].copy_from_slice(&53u16.to_be_bytes());
        let h = Header::parse(&v6).unwrap();
        assert_eq!(h.dst, "2001:db8:1::2".parse::<IpAddr>().unwrap());
        assert_eq!((h.protocol, h.sport, h.dport, h.length), (17, 1234, 53, 48));
    }

    #[test]
    fn a_routed_packet_loses_one_ttl_and_keeps_a_valid_checksum() {
        let mut p = ipv4("10.0.0.1", "10.0.0.2", protocol::UDP, (1, 2), 0, 0);
        assert!(decrement_ttl(&mut p));
        assert_eq!(p[8], 63);
        assert_eq!(internet_checksum(&p[..20]), 0);
        p[8] = 1;
        assert!(!decrement_ttl(&mut p));
        assert_eq!(destination(&p), Some("10.0.0.2".parse().unwrap()));
        let a = flow(&p);
        p[20] = 9;
        assert_ne!(a, flow(&p), "the source port is in the hash");
    }
}
