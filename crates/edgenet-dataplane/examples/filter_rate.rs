//! How many packets a second one core runs through an account's firewall rules and the
//! built-in protections, as the PoP's `magic-rx` thread does for each packet: the header
//! parsed, the rules in order (ten rules that do not match the flood, as a customer's list
//! ends up), then the shield. The traffic is a SYN flood from random sources to one server (the
//! shape of bench/magic.sh's attack), with one packet in sixteen a clean 1500-byte UDP packet
//! from one client. Used by bench/magic.sh; prints one JSON object.
//!
//! `cargo run --release -p edgenet-dataplane --example filter_rate -- [SECONDS]`

use std::time::Instant;

use edgenet_dataplane::firewall::{Firewall, Ruleset};
use edgenet_dataplane::packet::Header;
use edgenet_dataplane::shield::Shield;

fn packet(src: [u8; 4], protocol: u8, sport: u16, flags: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&[203, 0, 113, 10]);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&80u16.to_be_bytes());
    if protocol == 6 {
        p[32] = 0x50;
        p[33] = flags;
    }
    p
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rules: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            serde_json::json!({
                "id": format!("r{i}"), "action": "drop",
                "match": {"source": [format!("198.51.{i}.0/24")], "protocol": "udp",
                          "destination_ports": ["53"]}
            })
        })
        .collect();
    let ruleset: Ruleset = serde_json::from_value(serde_json::json!({
        "rules": rules,
        "protection": {"udp": {"per_destination_pps": 10_000_000, "per_source_pps": 10_000_000}}
    }))
    .expect("the ruleset parses");
    assert!(ruleset.problems().is_empty(), "{:?}", ruleset.problems());
    // 4096 distinct packets, cycled: random spoofed sources (an LCG), a clean one in 16.
    let mut x: u32 = 0x1234_5678;
    let packets: Vec<Vec<u8>> = (0..4096)
        .map(|i| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if i % 16 == 0 {
                packet([100, 64, 0, 2], 17, 40000, 0, 1500)
            } else {
                packet(x.to_be_bytes(), 6, (x >> 16) as u16, 0x02, 40)
            }
        })
        .collect();
    let start = Instant::now();
    let mut firewall = Firewall::new(&ruleset, 7, 0);
    let mut shield = Shield::new(ruleset.protection, 7, 0);
    let (mut n, mut passed, mut dropped) = (0u64, 0u64, 0u64);
    loop {
        let now_ms = start.elapsed().as_millis() as u64;
        if now_ms as f64 >= seconds * 1000.0 {
            break;
        }
        for p in &packets {
            let Some(h) = Header::parse(p) else { continue };
            let verdict = firewall
                .check(&h, now_ms, |_, _| {})
                .and_then(|()| shield.check(&h, now_ms));
            match verdict {
                Ok(()) => passed += 1,
                Err(_) => dropped += 1,
            }
        }
        n += packets.len() as u64;
    }
    let wall = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "filter_mpps_per_core": (n as f64 / wall / 1e6 * 1000.0).round() / 1000.0,
            "packets": n, "passed": passed, "dropped": dropped, "seconds": wall,
            "rules": 10,
        })
    );
}
