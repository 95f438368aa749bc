//! BFD control packets from the network: decoding never panics, whatever decodes re-encodes to
//! the same packet, and a session fed any packet stays within its states.
#![no_main]

use std::time::{Duration, Instant};

use edgenet_bgp::bfd::{BfdConfig, Input, Packet, Session};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        assert_eq!(Packet::decode(&p.encode()), Ok(p.clone()));
        let now = Instant::now();
        let mut s = Session::new(
            BfdConfig {
                desired_min_tx: Duration::from_millis(10),
                required_min_rx: Duration::from_millis(10),
                detect_mult: 3,
            },
            7,
            now,
        );
        s.handle(Input::Packet(p), now);
        let _ = s.packet();
        assert!(s.deadline() >= now);
    }
});
