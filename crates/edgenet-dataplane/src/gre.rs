//! GRE (RFC 2784): the 4-byte header (C bit, reserved bits, version 0, protocol type), with
//! the optional checksum, around an IPv4 or IPv6 packet; and the outer IPv4 header as a raw
//! IP protocol 47 socket delivers it. RFC 2784 rules on receipt: a packet with any of bits 1-5
//! set (RFC 1701's routing, key, sequence and strict source route flags) or a version other
//! than 0 is discarded; bits 6-12 are ignored; a checksum, when present, must verify.

use std::net::Ipv4Addr;

/// IP protocol number of GRE.
pub const IP_PROTOCOL: u8 = 47;
/// Protocol type of an IPv4 payload (its EtherType).
pub const IPV4: u16 = 0x0800;
/// Protocol type of an IPv6 payload.
pub const IPV6: u16 = 0x86dd;
/// Bytes GRE adds without the checksum.
pub const HEADER: usize = 4;
/// Bytes GRE and an outer IPv4 header (without options) add: 1500 - 24 = 1476, the tunnel
/// MTU of a 1500-byte path.
pub const OVERHEAD_V4: usize = 20 + HEADER;

/// Why a packet is not a GRE packet we take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GreError {
    /// Shorter than its headers say.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// Flags of RFC 1701 (routing, key, sequence, strict source route) are set.
    #[error("RFC 1701 flags set (bits 1-5: {0:#x}): discarded as RFC 2784 says")]
    Rfc1701Flags(u16),
    /// A version other than 0.
    #[error("GRE version {0}: only version 0 is GRE (1 is PPTP's)")]
    Version(u8),
    /// The checksum does not verify.
    #[error("checksum mismatch")]
    Checksum,
    /// The payload is neither IPv4 nor IPv6.
    #[error("protocol type {0:#06x} is neither IPv4 nor IPv6")]
    Protocol(u16),
    /// The outer IPv4 header is not one we take.
    #[error("outer IPv4 header: {0}")]
    Outer(&'static str),
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Appends the GRE packet carrying `payload` (of protocol type `protocol`) to `out`.
pub fn encapsulate(protocol: u16, payload: &[u8], checksum: bool, out: &mut Vec<u8>) {
    let start = out.len();
    let flags: u16 = if checksum { 0x8000 } else { 0 };
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&protocol.to_be_bytes());
    if checksum {
        out.extend_from_slice(&[0, 0, 0, 0]);
    }
    out.extend_from_slice(payload);
    if checksum {
        let c = internet_checksum(&out[start..]);
        out[start + 4..start + 6].copy_from_slice(&c.to_be_bytes());
    }
}

/// The protocol type and payload of a GRE packet (starting at the GRE header).
pub fn decapsulate(packet: &[u8]) -> Result<(u16, &[u8]), GreError> {
    if packet.len() < HEADER {
        return Err(GreError::Truncated("GRE header"));
    }
    let flags = u16::from_be_bytes([packet[0], packet[1]]);
    let protocol = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & 0x7c00 != 0 {
        return Err(GreError::Rfc1701Flags(flags & 0x7c00));
    }
    let version = (flags & 0x7) as u8;
    if version != 0 {
        return Err(GreError::Version(version));
    }
    let mut at = HEADER;
    if flags & 0x8000 != 0 {
        if packet.len() < HEADER + 4 {
            return Err(GreError::Truncated("GRE checksum"));
        }
        if internet_checksum(packet) != 0 {
            return Err(GreError::Checksum);
        }
        at += 4;
    }
    if protocol != IPV4 && protocol != IPV6 {
        return Err(GreError::Protocol(protocol));
    }
    Ok((protocol, &packet[at..]))
}

/// An IPv4 packet's source, destination, and the payload after its header: what a raw IPv4
/// socket of protocol 47 receives (the header included). Fragments are refused (a tunnel's
/// MTU keeps its packets whole; reassembly is the kernel's when it has it).
pub fn outer_ipv4(packet: &[u8]) -> Result<(Ipv4Addr, Ipv4Addr, &[u8]), GreError> {
    if packet.len() < 20 {
        return Err(GreError::Outer("shorter than 20 bytes"));
    }
    if packet[0] >> 4 != 4 {
        return Err(GreError::Outer("not version 4"));
    }
    let ihl = usize::from(packet[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if ihl < 20 || total < ihl || packet.len() < total {
        return Err(GreError::Outer("lengths do not fit"));
    }
    let frag = u16::from_be_bytes([packet[6], packet[7]]);
    if frag & 0x3fff != 0 {
        return Err(GreError::Outer("a fragment"));
    }
    if packet[9] != IP_PROTOCOL {
        return Err(GreError::Outer("not GRE"));
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Ok((src, dst, &packet[ihl..total]))
}

/// Appends the outer IPv4 header of a GRE packet of `gre_len` bytes from `src` to `dst`, for a
/// raw socket with `IP_HDRINCL`: no options, DF clear (a path narrower than the tunnel
/// fragments rather than drops), identification and checksum zero, which the kernel fills.
pub fn push_outer_ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, gre_len: usize, out: &mut Vec<u8>) {
    let total = (20 + gre_len).min(usize::from(u16::MAX)) as u16;
    let t = total.to_be_bytes();
    out.extend_from_slice(&[0x45, 0, t[0], t[1], 0, 0, 0, 0, ttl, IP_PROTOCOL, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
}

/// The protocol type of an inner IP packet by its version nibble, if it is IPv4 or IPv6.
pub fn protocol_of(inner: &[u8]) -> Option<u16> {
    match inner.first().map(|b| b >> 4) {
        Some(4) => Some(IPV4),
        Some(6) => Some(IPV6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (20 bytes) of a GRE packet from 192.0.2.1 to 198.51.100.1 around
    /// `gre`, as tcpdump shows one (checksum left zero: raw sockets fill it).
    fn outer(gre: &[u8]) -> Vec<u8> {
        let total = (20 + gre.len()) as u16;
        let mut p = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 47, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1,
        ];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(gre);
        p
    }

    #[test]
    fn the_header_is_rfc_2784s_four_bytes_and_round_trips() {
        let inner = [
            0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let mut p = Vec::new();
        encapsulate(IPV4, &inner, false, &mut p);
        assert_eq!(
            &p[..4],
            &[0x00, 0x00, 0x08, 0x00],
            "C=0, reserved 0, version 0, IPv4"
        );
        assert_eq!(decapsulate(&p), Ok((IPV4, &inner[..])));
        let mut c = Vec::new();
        encapsulate(IPV6, &[0x60, 0, 0, 0], true, &mut c);
        assert_eq!(&c[..2], &[0x80, 0x00], "the C bit");
        assert_eq!(c.len(), 8 + 4);
        assert_eq!(
            internet_checksum(&c),
            0,
            "the checksum covers header and payload"
        );
        assert_eq!(decapsulate(&c), Ok((IPV6, &[0x60u8, 0, 0, 0][..])));
        c[9] ^= 1;
        assert_eq!(decapsulate(&c), Err(GreError::Checksum));
        let packet = outer(&p);
        let (src, dst, gre) = outer_ipv4(&packet).unwrap();
        assert_eq!(
            (src, dst),
            (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 1))
        );
        assert_eq!(gre, &p[..]);
        assert_eq!(OVERHEAD_V4, 1500 - 1476);
        let mut built = Vec::new();
        push_outer_ipv4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 1),
            64,
            p.len(),
            &mut built,
        );
        built.extend_from_slice(&p);
        let (src, dst, gre) = outer_ipv4(&built).unwrap();
        assert_eq!((src.octets()[0], dst.octets()[0], gre), (192, 198, &p[..]));
        assert_eq!(&built[..12], &[0x45, 0, 0, 44, 0, 0, 0, 0, 64, 47, 0, 0]);
    }

    #[test]
    fn what_rfc_2784_discards_is_refused_with_why() {
        // Key present (RFC 2890's K bit, bit 2).
        assert!(matches!(
            decapsulate(&[0x20, 0, 0x08, 0, 0, 0, 0, 1]),
            Err(GreError::Rfc1701Flags(_))
        ));
        assert_eq!(
            decapsulate(&[0x00, 0x01, 0x88, 0x0b]),
            Err(GreError::Version(1))
        );
        // Bits 6-12 are ignored.
        assert!(decapsulate(&[0x02, 0x00, 0x08, 0x00, 0x45]).is_ok());
        assert_eq!(
            decapsulate(&[0, 0, 0x65, 0x58]),
            Err(GreError::Protocol(0x6558))
        );
        assert_eq!(decapsulate(&[0, 0]), Err(GreError::Truncated("GRE header")));
        let mut frag = outer(&[0, 0, 8, 0]);
        frag[6] = 0x20;
        assert_eq!(outer_ipv4(&frag), Err(GreError::Outer("a fragment")));
        let mut udp = outer(&[0, 0, 8, 0]);
        udp[9] = 17;
        assert_eq!(outer_ipv4(&udp), Err(GreError::Outer("not GRE")));
        assert_eq!(protocol_of(&[0x45]), Some(IPV4));
        assert_eq!(protocol_of(&[0x60]), Some(IPV6));
        assert_eq!(protocol_of(&[]), None);
    }
}
