//! A packet larger than the MTU of the link it leaves by (a tunnel's 1476 bytes inside GRE,
//! where the internet brings 1500), as a router treats it, pure: an IPv4 packet without Don't
//! Fragment is cut into fragments that fit ([`fragment_ipv4`], RFC 791: payload in multiples
//! of 8 bytes, offsets and More Fragments kept, only the options marked "copied" in every
//! fragment but the first); one with Don't Fragment is refused and its sender told the MTU
//! ([`fragmentation_needed`], ICMP type 3 code 4 with the next-hop MTU, RFC 1191), so path MTU
//! discovery works through the tunnel. IPv6 routers do not fragment: an IPv6 packet too big is
//! refused (ICMPv6 Packet Too Big is not sent from here).

use std::net::Ipv4Addr;

use crate::gre::internet_checksum;
use crate::packet::protocol;

/// What to do with a packet for a link of some MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// It fits as it is.
    Fits,
    /// These fragments fit.
    Fragments(Vec<Vec<u8>>),
    /// It may not be fragmented (IPv4 with Don't Fragment, IPv6) or cannot be.
    TooBig,
}

const DF: u16 = 0x4000;
const MF: u16 = 0x2000;

/// Whether `p` fits `mtu`, or the fragments that do.
pub fn fit(p: &[u8], mtu: u16) -> Fit {
    if p.len() <= usize::from(mtu) {
        return Fit::Fits;
    }
    match p.first().map(|b| b >> 4) {
        Some(4) => fragment_ipv4(p, mtu).map_or(Fit::TooBig, Fit::Fragments),
        _ => Fit::TooBig,
    }
}

/// The fragments of IPv4 packet `p`, each at most `mtu` bytes; none when it has Don't
/// Fragment, is not a whole IPv4 packet, or `mtu` leaves no room for 8 bytes of payload.
pub fn fragment_ipv4(p: &[u8], mtu: u16) -> Option<Vec<Vec<u8>>> {
    let ihl = usize::from(*p.first()? & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]));
    if ihl < 20 || total < ihl || total > p.len() {
        return None;
    }
    let flags = u16::from_be_bytes([p[6], p[7]]);
    if flags & DF != 0 {
        return None;
    }
    let (header, payload) = (&p[..ihl], &p[ihl..total]);
    let later = later_header(header);
    let mtu = usize::from(mtu);
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let h: &[u8] = if at == 0 { header } else { &later };
        let room = mtu.checked_sub(h.len())? & !7;
        if room == 0 {
            return None;
        }
        let end = (at + room).min(payload.len());
        let last = end == payload.len();
        let mut f = Vec::with_capacity(h.len() + end - at);
        f.extend_from_slice(h);
        f.extend_from_slice(&payload[at..end]);
        let len = f.len() as u16;
        f[2..4].copy_from_slice(&len.to_be_bytes());
        let offset = (flags & 0x1fff) + (at / 8) as u16;
        let mf = if last { flags & MF } else { MF };
        f[6..8].copy_from_slice(&(mf | offset).to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&f[..h.len()]);
        f[10..12].copy_from_slice(&sum.to_be_bytes());
        out.push(f);
        at = end;
    }
    Some(out)
}

/// The header of a fragment after the first: the fixed 20 bytes and only the options whose
/// "copied" bit is set, padded to a multiple of 4 with End of Options.
fn later_header(header: &[u8]) -> Vec<u8> {
    let mut h = header[..20].to_vec();
    let mut options = &header[20..];
    while let Some(&kind) = options.first() {
        let len = match kind {
            0 => break,
            1 => 1,
            _ => usize::from(*options.get(1).unwrap_or(&0)).max(2),
        };
        let Some(option) = options.get(..len) else {
            break;
        };
        if kind & 0x80 != 0 {
            h.extend_from_slice(option);
        }
        options = &options[len..];
    }
    while !h.len().is_multiple_of(4) {
        h.push(0);
    }
    h[0] = 0x40 | (h.len() / 4) as u8;
    h
}

/// The ICMP "fragmentation needed" (type 3 code 4) from `from` to the sender of IPv4 packet
/// `p`, with next-hop MTU `mtu` and `p`'s header and first 8 bytes of payload; none where no
/// ICMP error may be sent (not IPv4, a fragment but the first, or an ICMP error itself).
pub fn fragmentation_needed(p: &[u8], mtu: u16, from: Ipv4Addr) -> Option<Vec<u8>> {
    let ihl = usize::from(*p.first()? & 0xf) * 4;
    if p[0] >> 4 != 4 || ihl < 20 || p.len() < ihl {
        return None;
    }
    let offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
    if offset != 0 {
        return None;
    }
    if p[9] == protocol::ICMP && p.get(ihl).is_some_and(|t| matches!(t, 3 | 4 | 5 | 11 | 12)) {
        return None;
    }
    let quoted = &p[..(ihl + 8).min(p.len())];
    let total = 20 + 8 + quoted.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 64, protocol::ICMP, 0, 0]);
    out.extend_from_slice(&from.octets());
    out.extend_from_slice(&p[12..16]);
    let sum = internet_checksum(&out[..20]);
    out[10..12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&mtu.to_be_bytes());
    out.extend_from_slice(quoted);
    let sum = internet_checksum(&out[20..]);
    out[22..24].copy_from_slice(&sum.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::ipv4;
    use crate::packet::Header;

    fn with_df(mut p: Vec<u8>) -> Vec<u8> {
        p[6] |= 0x40;
        p[10..12].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p
    }

    #[test]
    fn a_packet_that_fits_is_left_alone() {
        let p = ipv4("192.0.2.1", "203.0.113.10", 17, (1, 9), 0, 1448);
        assert_eq!(p.len(), 1476);
        assert_eq!(fit(&p, 1476), Fit::Fits);
    }

    #[test]
    fn a_1500_byte_packet_becomes_fragments_that_reassemble_to_it() {
        let p = ipv4("192.0.2.1", "203.0.113.10", 17, (1, 9), 0, 1472);
        let Fit::Fragments(fs) = fit(&p, 1476) else {
            panic!("not fragmented")
        };
        assert_eq!(fs.len(), 2);
        assert!(fs.iter().all(|f| f.len() <= 1476));
        // Payload in multiples of 8, More Fragments on the first, offsets in 8-byte units.
        assert_eq!((fs[0].len() - 20) % 8, 0);
        assert_eq!(u16::from_be_bytes([fs[0][6], fs[0][7]]), MF);
        let second = u16::from_be_bytes([fs[1][6], fs[1][7]]);
        assert_eq!(second, ((fs[0].len() - 20) / 8) as u16);
        for f in &fs {
            assert_eq!(internet_checksum(&f[..20]), 0, "header checksum");
            assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
        }
        let mut whole = fs[0][20..].to_vec();
        whole.extend_from_slice(&fs[1][20..]);
        assert_eq!(whole, p[20..]);
        // The first has the ports; the rest is a non-first fragment.
        assert_eq!(Header::parse(&fs[0]).unwrap().dport, 9);
        assert_eq!(Header::parse(&fs[1]).unwrap().dport, 0);
    }

    #[test]
    fn a_fragment_fragmented_again_keeps_its_place_and_its_last_flag() {
        let p = ipv4("192.0.2.1", "203.0.113.10", 17, (1, 9), 0, 1000);
        let fs = fragment_ipv4(&p, 600).unwrap();
        let again = fragment_ipv4(&fs[1], 300).unwrap();
        let first = u16::from_be_bytes([again[0][6], again[0][7]]);
        let last = u16::from_be_bytes([again.last().unwrap()[6], again.last().unwrap()[7]]);
        let base = u16::from_be_bytes([fs[1][6], fs[1][7]]) & 0x1fff;
        assert_eq!(first, MF | base);
        assert_eq!(last & MF, 0, "the original's last fragment stays last");
    }

    #[test]
    fn only_copied_options_go_into_later_fragments() {
        let mut p = ipv4("192.0.2.1", "203.0.113.10", 17, (1, 9), 0, 100);
        // Options: record route (7, not copied; 7 bytes) and a copied one (0x83, 3 bytes), EOL.
        let opts = [7, 7, 4, 0, 0, 0, 0, 0x83, 3, 9, 0, 0];
        p.splice(20..20, opts);
        p[0] = 0x40 | 8;
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let fs = fragment_ipv4(&p, 80).unwrap();
        assert_eq!(fs[0][0] & 0xf, 8);
        assert_eq!(&fs[1][20..24], &[0x83, 3, 9, 0]);
        assert_eq!(fs[1][0] & 0xf, 6);
    }

    #[test]
    fn dont_fragment_is_refused_and_the_sender_told_the_mtu() {
        let p = with_df(ipv4(
            "198.51.100.7",
            "203.0.113.10",
            6,
            (40000, 80),
            0x10,
            1460,
        ));
        assert_eq!(fit(&p, 1476), Fit::TooBig);
        let icmp = fragmentation_needed(&p, 1476, "192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(internet_checksum(&icmp[..20]), 0);
        assert_eq!(internet_checksum(&icmp[20..]), 0);
        assert_eq!(&icmp[16..20], &[198, 51, 100, 7], "back to the sender");
        assert_eq!(&icmp[20..22], &[3, 4]);
        assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1476);
        assert_eq!(&icmp[28..], &p[..28], "its header and 8 bytes");
        // No error about an ICMP error.
        let mut err = icmp.clone();
        err[6] |= 0x40;
        assert_eq!(
            fragmentation_needed(&err, 576, "192.0.2.1".parse().unwrap()),
            None
        );
    }

    #[test]
    fn what_is_not_ipv4_or_is_broken_is_too_big() {
        let mut v6 = vec![0x60; 1600];
        v6[4..6].copy_from_slice(&1560u16.to_be_bytes());
        assert_eq!(fit(&v6, 1476), Fit::TooBig);
        let mut short = ipv4("192.0.2.1", "203.0.113.10", 17, (1, 9), 0, 1472);
        short[2..4].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(fit(&short, 1476), Fit::TooBig);
        assert_eq!(fragment_ipv4(&[0x45], 100), None);
    }
}
