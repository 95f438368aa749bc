//! Packets from a tunnel's wire: an outer IPv4 header and GRE (RFC 2784) from a raw socket, and
//! Ethernet frames that may carry an 802.1Q tag. Parsing never panics; what decapsulates
//! encapsulates again to the same GRE bytes (without a checksum when it had none); a tag that
//! comes off goes back on to the same frame; a returned probe that parses is found again after
//! it is handed on to another address.
#![no_main]

use edgenet_dataplane::{gre, probe, vlan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let gre_bytes = match gre::outer_ipv4(data) {
        Ok((_, _, g)) => g,
        Err(_) => data,
    };
    if let Ok((protocol, inner)) = gre::decapsulate(gre_bytes) {
        let checksum = gre_bytes[0] & 0x80 != 0;
        let mut again = Vec::new();
        gre::encapsulate(protocol, inner, checksum, &mut again);
        assert_eq!(gre::decapsulate(&again), Ok((protocol, inner)));
        if !checksum && gre_bytes[0] == 0 && gre_bytes[1] == 0 {
            assert_eq!(&again[..], gre_bytes);
        }
    }
    if let Some(p) = probe::returned(data) {
        let mut copy = data.to_vec();
        probe::readdress(&mut copy, p.origin);
        assert_eq!(probe::returned(&copy), Some(p));
    }
    if let Ok(Some((tci, frame))) = vlan::untag(data) {
        if (1..=4094).contains(&tci.vid) {
            let tagged = vlan::tag(&frame, tci);
            // A frame whose inner EtherType is a tag again (Q-in-Q) is refused.
            if let Ok(t) = tagged {
                assert_eq!(&t[..], data);
            }
        }
    }
});
