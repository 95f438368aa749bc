//! The built-in flood protections of a customer's prefixes, after its rules, pure: per-source
//! and per-destination packet rates of SYN, UDP and ICMP floods, each a sliding-window
//! estimate over count-min sketches (`edgenet-shield`), so memory is fixed however many
//! addresses a flood invents.
//!
//! A per-source limit alone does nothing against a flood from random spoofed sources, and a
//! per-destination limit alone would drop the legitimate clients' SYNs with the flood's. So
//! once a destination's SYN rate is over its limit, a SYN passes only from a source that has
//! shown it is real: one that completed a handshake through this PoP (a SYN, then an ACK from
//! the same address, within [`SEEN_MS`]), or one that retransmitted a SYN we dropped (SYN
//! authentication by retransmission: a spoofed flood does not repeat its random sources,
//! while every TCP stack retransmits its SYN after about a second). The first SYN of an
//! unknown source is dropped and the source remembered for [`CHALLENGE_MS`]; its retransmit
//! passes. Verified sources are remembered for [`VERIFIED_MS`] and are themselves bounded by
//! the destination's limit, so a flood that repeats its sources is bounded too. A retransmit
//! counts only [`RETRANSMIT_MIN_MS`] or more after its challenge. The sets of sources are
//! direct-mapped tables of 32-bit tags with the time each source was seen (`Recent`): a flood
//! can push a source out of one (it is challenged again), never make one look seen, so a
//! flood's sources do not become verified however many it invents (a Bloom filter, which this
//! replaced, filled up at a few hundred thousand sources a second and then let most through
//! as verified, crowding out the real clients under the destination's limit).

use std::net::IpAddr;

use edgenet_interconnect::Problem;
use edgenet_shield::window::SlidingWindow;
use serde::{Deserialize, Serialize};

use crate::firewall::Dropped;
use crate::packet::{protocol, tcp_flag, Header};

/// How long a SYN's source stays remembered for the handshake's ACK.
pub const SEEN_MS: u64 = 3_000;
/// How long a challenged source may retransmit (Linux retransmits after 1 s, then 3 s).
pub const CHALLENGE_MS: u64 = 4_000;
/// How long a source stays verified.
pub const VERIFIED_MS: u64 = 150_000;
/// The least time between a challenged SYN and its retransmission (every TCP stack waits
/// about a second; a flood that repeats a source at once is not retransmitting).
pub const RETRANSMIT_MIN_MS: u64 = 200;
/// Counters per row of each rate's sketch.
const WIDTH: usize = 8192;
/// Slots of the challenged sources (2^20, 8 MiB, allocated at the first challenge: at 250,000
/// spoofed SYNs a second a challenged source survives the second until its retransmission
/// with a chance of about 4 in 5, and is challenged again if not).
const CHALLENGED_BITS: u32 = 20;
/// Slots of the verified sources (2^18, 2 MiB), and of the SYNs awaiting their ACK (2^16,
/// 512 KiB): only real handshakes and retransmissions go in, at the clients' rate.
const VERIFIED_BITS: u32 = 18;
const SEEN_BITS: u32 = 16;

/// A kind of flood with limits of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flood {
    /// TCP SYN without ACK.
    Syn,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

impl Flood {
    /// The flood kind of a packet, if any.
    pub fn of(h: &Header) -> Option<Flood> {
        match h.protocol {
            protocol::TCP if h.is_syn() => Some(Flood::Syn),
            protocol::UDP => Some(Flood::Udp),
            protocol::ICMP | protocol::ICMPV6 => Some(Flood::Icmp),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The limits of one flood kind, in packets per second (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// To one destination address.
    pub per_destination_pps: u32,
    /// From one source address.
    pub per_source_pps: u32,
}

/// The settings of the protections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Protection {
    /// SYN floods (default 1,000 per destination and 100 per source a second).
    pub syn: Limits,
    /// UDP floods (default 200,000 and 100,000).
    pub udp: Limits,
    /// ICMP floods (default 1,000 and 100).
    pub icmp: Limits,
    /// Over a destination's SYN limit, let SYNs through from sources that completed a
    /// handshake or retransmitted (true by default); false: drop what is over the limit.
    pub syn_authentication: bool,
}

impl Default for Protection {
    fn default() -> Protection {
        Protection {
            syn: Limits {
                per_destination_pps: 1_000,
                per_source_pps: 100,
            },
            udp: Limits {
                per_destination_pps: 200_000,
                per_source_pps: 100_000,
            },
            icmp: Limits {
                per_destination_pps: 1_000,
                per_source_pps: 100,
            },
            syn_authentication: true,
        }
    }
}

impl Protection {
    /// Everything wrong with the settings.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (name, l) in [("syn", self.syn), ("udp", self.udp), ("icmp", self.icmp)] {
            if l.per_source_pps > 0
                && l.per_destination_pps > 0
                && l.per_source_pps > l.per_destination_pps
            {
                out.push(Problem::new(
                    format!("protection.{name}.per_source_pps"),
                    format!(
                        "{} is above per_destination_pps {}: a source could never reach it",
                        l.per_source_pps, l.per_destination_pps
                    ),
                ));
            }
        }
        out
    }

    fn limits(&self, f: Flood) -> Limits {
        match f {
            Flood::Syn => self.syn,
            Flood::Udp => self.udp,
            Flood::Icmp => self.icmp,
        }
    }
}

/// A key for an address in the sketches and filters, keyed by `seed` (so an attacker cannot
/// choose addresses that collide).
pub fn address_key(a: IpAddr, seed: u64) -> u64 {
    let x = match a {
        IpAddr::V4(v) => u64::from(u32::from(v)),
        IpAddr::V6(v) => {
            let b = u128::from(v);
            (b as u64) ^ ((b >> 64) as u64).rotate_left(17)
        }
    };
    // splitmix64 of the address under the seed.
    let mut z = x ^ seed;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Sources seen recently, each with when: a direct-mapped table of `2^bits` slots (allocated
/// at the first insert), each holding a 32-bit tag of the key and the time it was put in. A
/// key is found while its slot still holds its tag and it is at most `keep_ms` old; another
/// key landing in the slot takes it (that source is forgotten, not confused with another: a
/// wrong match needs the 32-bit tag to collide, about 1 in 4 billion).
#[derive(Clone)]
struct Recent {
    keep_ms: u64,
    bits: u32,
    slots: Vec<u64>,
}

impl Recent {
    fn new(keep_ms: u64, bits: u32) -> Recent {
        Recent {
            keep_ms,
            bits,
            slots: Vec::new(),
        }
    }

    fn slot(&self, key: u64) -> (usize, u64) {
        // The tag is never 0, so an empty slot matches nothing.
        let tag = (key >> 32) | 1;
        ((key as usize) & ((1 << self.bits) - 1), tag)
    }

    fn insert(&mut self, key: u64, now_ms: u64) {
        if self.slots.is_empty() {
            self.slots = vec![0; 1 << self.bits];
        }
        let (i, tag) = self.slot(key);
        self.slots[i] = (tag << 32) | (now_ms & 0xffff_ffff);
    }

    /// How long ago `key` was put in, if it is still held and at most `keep_ms` old.
    fn age(&self, key: u64, now_ms: u64) -> Option<u64> {
        let (i, tag) = self.slot(key);
        let v = *self.slots.get(i)?;
        if v >> 32 != tag {
            return None;
        }
        let age = u64::from((now_ms as u32).wrapping_sub(v as u32));
        (age <= self.keep_ms).then_some(age)
    }

    fn contains(&self, key: u64, now_ms: u64) -> bool {
        self.age(key, now_ms).is_some()
    }
}

/// The protections of one account's prefixes, owned by one packet thread.
pub struct Shield {
    settings: Protection,
    seed: u64,
    by_source: [SlidingWindow; 3],
    by_destination: [SlidingWindow; 3],
    /// SYNs that passed under a flood, by destination (bounded by the same limit).
    verified_by_destination: SlidingWindow,
    syn_seen: Recent,
    challenged: Recent,
    verified: Recent,
}

impl Shield {
    /// Protections with `settings` from `now_ms`; `seed` keys the address hashes.
    pub fn new(settings: Protection, seed: u64, now_ms: u64) -> Shield {
        let window = || SlidingWindow::new(1000, WIDTH, now_ms);
        Shield {
            settings,
            seed,
            by_source: [window(), window(), window()],
            by_destination: [window(), window(), window()],
            verified_by_destination: window(),
            syn_seen: Recent::new(SEEN_MS, SEEN_BITS),
            challenged: Recent::new(CHALLENGE_MS, CHALLENGED_BITS),
            verified: Recent::new(VERIFIED_MS, VERIFIED_BITS),
        }
    }

    /// The settings it runs.
    pub fn settings(&self) -> &Protection {
        &self.settings
    }

    /// Takes a packet that passed the rules at `now_ms`: `Err` when a protection drops it.
    pub fn check(&mut self, h: &Header, now_ms: u64) -> Result<(), Dropped> {
        let src = address_key(h.src, self.seed);
        let Some(flood) = Flood::of(h) else {
            if h.tcp(tcp_flag::ACK)
                && !h.tcp(tcp_flag::SYN)
                && self.syn_seen.contains(src, now_ms)
                && !self.verified.contains(src, now_ms)
            {
                // The handshake's ACK from a source whose SYN passed: it is real.
                self.verified.insert(src, now_ms);
            }
            return Ok(());
        };
        let limits = self.settings.limits(flood);
        let dst = address_key(h.dst, self.seed);
        let i = flood.index();
        let from_source = self.by_source[i].observe(src, now_ms);
        let to_destination = self.by_destination[i].observe(dst, now_ms);
        if limits.per_source_pps > 0 && from_source > f64::from(limits.per_source_pps) {
            return Err(Dropped::SourceRate(flood));
        }
        let flooded = limits.per_destination_pps > 0
            && to_destination > f64::from(limits.per_destination_pps);
        if !flooded {
            if flood == Flood::Syn {
                self.syn_seen.insert(src, now_ms);
            }
            return Ok(());
        }
        if flood != Flood::Syn || !self.settings.syn_authentication {
            return Err(Dropped::DestinationRate(flood));
        }
        let known = self.verified.contains(src, now_ms);
        let retransmitted = self
            .challenged
            .age(src, now_ms)
            .is_some_and(|age| age >= RETRANSMIT_MIN_MS);
        if !known && !retransmitted {
            self.challenged.insert(src, now_ms);
            return Err(Dropped::SynChallenge);
        }
        if self.verified_by_destination.observe(dst, now_ms) > f64::from(limits.per_destination_pps)
        {
            return Err(Dropped::DestinationRate(flood));
        }
        if !known {
            // It retransmitted: real. Its ACK would verify it too.
            self.verified.insert(src, now_ms);
        }
        self.syn_seen.insert(src, now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::ipv4;
    use std::net::Ipv4Addr;

    fn syn(src: &str) -> Header {
        Header::parse(&ipv4(src, "203.0.113.10", 6, (40000, 80), tcp_flag::SYN, 0)).unwrap()
    }

    fn ack(src: &str) -> Header {
        Header::parse(&ipv4(src, "203.0.113.10", 6, (40000, 80), tcp_flag::ACK, 0)).unwrap()
    }

    fn random_source(i: u32) -> String {
        // Spread over the whole space like a spoofing flood.
        Ipv4Addr::from(i.wrapping_mul(2_654_435_761) | 1).to_string()
    }

    fn settings() -> Protection {
        Protection {
            syn: Limits {
                per_destination_pps: 100,
                per_source_pps: 10,
            },
            ..Protection::default()
        }
    }

    /// A flood of `n` SYNs from random sources in one second from `at_ms`; how many passed.
    fn flood(s: &mut Shield, n: u32, at_ms: u64) -> usize {
        (0..n)
            .filter(|i| {
                s.check(
                    &syn(&random_source(*i + at_ms as u32 * 100)),
                    at_ms + u64::from(*i) * 1000 / u64::from(n),
                )
                .is_ok()
            })
            .count()
    }

    #[test]
    fn a_spoofed_flood_is_bounded_and_a_new_client_passes_by_retransmitting() {
        let mut s = Shield::new(settings(), 7, 0);
        let passed = flood(&mut s, 20_000, 0);
        // Up to the limit before the flood is seen, then nothing unknown.
        assert!(passed <= 110, "{passed} of a spoofed flood passed");
        // A new client during the flood: its first SYN is challenged, its retransmit a
        // second later passes.
        let client = syn("198.51.100.20");
        assert_eq!(s.check(&client, 1_000), Err(Dropped::SynChallenge));
        assert!(flood(&mut s, 20_000, 1_000) <= 2, "the flood goes on");
        assert_eq!(s.check(&client, 2_000), Ok(()));
        // Verified now: its next connection passes at once.
        assert_eq!(s.check(&client, 2_500), Ok(()));
    }

    #[test]
    fn a_client_that_completed_a_handshake_before_the_flood_is_not_challenged() {
        let mut s = Shield::new(settings(), 7, 0);
        let client = syn("198.51.100.20");
        assert_eq!(s.check(&client, 0), Ok(()));
        assert_eq!(s.check(&ack("198.51.100.20"), 10), Ok(()));
        flood(&mut s, 20_000, 1_000);
        assert_eq!(s.check(&client, 1_500), Ok(()));
        // A source that never completed one is challenged.
        assert_eq!(
            s.check(&syn("198.51.100.21"), 1_500),
            Err(Dropped::SynChallenge)
        );
    }

    #[test]
    fn a_flood_that_retransmits_is_still_bounded_by_the_destination_limit() {
        let mut s = Shield::new(settings(), 7, 0);
        let mut passed = 0;
        for round in 0..2u64 {
            for i in 0..5_000u32 {
                if s.check(&syn(&random_source(i)), round * 1000 + u64::from(i) / 5)
                    .is_ok()
                {
                    passed += 1;
                }
            }
        }
        assert!(passed <= 2 * 110, "{passed}");
    }

    #[test]
    fn one_loud_source_is_held_to_its_own_rate() {
        let mut s = Shield::new(settings(), 7, 0);
        let udp = Header::parse(&ipv4("192.0.2.1", "203.0.113.10", 17, (1, 53), 0, 0)).unwrap();
        let mut settings = settings();
        settings.udp = Limits {
            per_destination_pps: 1000,
            per_source_pps: 50,
        };
        let mut u = Shield::new(settings, 7, 0);
        let passed = (0..200).filter(|i| u.check(&udp, *i).is_ok()).count();
        assert_eq!(passed, 50);
        let syns = (0..50)
            .filter(|i| s.check(&syn("192.0.2.9"), *i).is_ok())
            .count();
        assert_eq!(syns, 10);
        assert_eq!(
            s.check(&syn("192.0.2.9"), 60),
            Err(Dropped::SourceRate(Flood::Syn))
        );
    }

    #[test]
    fn without_authentication_a_flooded_destination_drops_what_is_over() {
        let mut p = settings();
        p.syn_authentication = false;
        let mut s = Shield::new(p, 7, 0);
        let passed = flood(&mut s, 1_000, 0);
        assert_eq!(passed, 100);
        assert_eq!(
            s.check(&syn("198.51.100.1"), 999),
            Err(Dropped::DestinationRate(Flood::Syn))
        );
    }

    #[test]
    fn memories_fade() {
        let mut r = Recent::new(1000, 4);
        assert!(!r.contains(5, 0), "nothing before the first insert");
        r.insert(5, 100);
        assert_eq!(r.age(5, 1500), None, "older than it keeps");
        assert_eq!(r.age(5, 1100), Some(1000));
        // Another key in the same slot takes it; neither is confused with the other.
        let other = 5 + (1 << 40);
        r.insert(other, 1200);
        assert!(!r.contains(5, 1200));
        assert!(r.contains(other, 1200));
    }

    #[test]
    fn a_retransmit_counts_only_after_a_while() {
        let mut s = Shield::new(settings(), 7, 0);
        flood(&mut s, 20_000, 0);
        let client = syn("198.51.100.20");
        assert_eq!(s.check(&client, 1_000), Err(Dropped::SynChallenge));
        assert_eq!(
            s.check(&client, 1_010),
            Err(Dropped::SynChallenge),
            "10 ms later is a repeat, not a retransmission"
        );
        assert_eq!(s.check(&client, 1_300), Ok(()));
    }

    #[test]
    fn a_flood_of_hundreds_of_thousands_of_sources_does_not_crowd_out_a_verified_client() {
        // The default limits: 1,000 SYNs a second to a destination, 100 from a source (which
        // the flood's many sources must not seem to reach, sharing the sketch's counters).
        let mut s = Shield::new(Protection::default(), 7, 0);
        let client = syn("198.51.100.20");
        assert_eq!(s.check(&client, 0), Ok(()));
        assert_eq!(s.check(&ack("198.51.100.20"), 10), Ok(()));
        let mut passed = 0;
        let mut served = 0;
        for second in 1..4u64 {
            // Fresh sources every second: a flood that repeated them a second later would
            // retransmit, as far as anyone can tell, and share the destination's limit.
            passed += (0..300_000u32)
                .filter(|i| {
                    let src = random_source(*i + second as u32 * 1_000_000);
                    s.check(&syn(&src), second * 1000 + u64::from(*i) / 300)
                        .is_ok()
                })
                .count();
            served += (0..10)
                .filter(|i| s.check(&client, second * 1000 + i * 100).is_ok())
                .count();
        }
        assert!(passed <= 1_100, "{passed} of 900,000 spoofed SYNs passed");
        assert_eq!(served, 30, "the verified client is served throughout");
    }
}
