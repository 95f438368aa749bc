//! Magic Transit: packets from the internet through a customer's firewall and the flood
//! protections, and the customer's own text (a firewall ruleset or a prefix, JSON) through
//! validation. Parsing never panics; a header that parses stays inside the packet (its
//! length is the IP header's, its addresses of one family); a ruleset or prefix that parses
//! and has no problems compiles and runs over the packet, and serializes back to itself.
#![no_main]

use edgenet_dataplane::firewall::{Firewall, Ruleset};
use edgenet_dataplane::packet::Header;
use edgenet_dataplane::prefix::PrefixSpec;
use edgenet_dataplane::shield::Shield;
use libfuzzer_sys::fuzz_target;

fn run(ruleset: &Ruleset, packet: &[u8]) {
    let Some(h) = Header::parse(packet) else {
        return;
    };
    assert_eq!(h.src.is_ipv4(), h.dst.is_ipv4(), "{h:?}");
    let mut firewall = Firewall::new(ruleset, 1, 0);
    let mut shield = Shield::new(ruleset.protection, 1, 0);
    for now_ms in [0, 1, 999, 1000, 60_000] {
        let mut hits = 0;
        let verdict = firewall
            .check(&h, now_ms, |i, _| {
                assert!(i < ruleset.rules.len());
                hits += 1;
            })
            .and_then(|()| shield.check(&h, now_ms));
        if verdict.is_err() {
            let _ = verdict.unwrap_err().as_str();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Network bytes through a ruleset that uses every kind of match.
    let fixed: Ruleset = serde_json::from_value(serde_json::json!({
        "rules": [
            {"id": "a", "action": "drop", "match": {"source": ["198.51.100.0/24", "2001:db8::/32"]}},
            {"id": "b", "action": "rate_limit", "rate_limit": {"packets_per_second": 10, "by": "source"},
             "match": {"protocol": "udp", "destination_ports": ["53", "1000-2000"]}},
            {"id": "c", "action": "drop", "match": {"protocol": "tcp",
             "tcp_flags": {"set": ["syn"], "unset": ["ack"]}, "length": {"min": 1000}}},
            {"id": "d", "action": "allow", "match": {"protocol": "icmp"}}
        ],
        "protection": {"syn": {"per_destination_pps": 5, "per_source_pps": 2}}
    }))
    .expect("the fixed ruleset parses");
    run(&fixed, data);
    // The customer's text: a ruleset, or a prefix; a packet after a NUL byte.
    let (text, packet) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(r) = serde_json::from_slice::<Ruleset>(text) {
        if r.problems().is_empty() {
            run(&r, packet);
            let again: Ruleset =
                serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
            assert_eq!(again, r);
        }
    }
    if let Ok(p) = serde_json::from_slice::<PrefixSpec>(text) {
        if p.problems().is_empty() {
            let again: PrefixSpec =
                serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
            assert_eq!(again, p);
        }
    }
});
