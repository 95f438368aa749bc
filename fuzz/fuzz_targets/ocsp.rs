//! OCSP responses as a responder sends them, checked against a fixed chain: never a panic,
//! and nothing but a signed, current `good` answer about that certificate passes (a random
//! input cannot forge the issuer's signature).
#![no_main]

use libfuzzer_sys::fuzz_target;

const CHAIN: &str = concat!(
    include_str!("../../crates/edgenet-certs/fixtures/ocsp/leaf.pem"),
    include_str!("../../crates/edgenet-certs/fixtures/ocsp/ca.pem")
);
const GOOD: &[u8] = include_bytes!("../../crates/edgenet-certs/fixtures/ocsp/leaf.ocsp");

fuzz_target!(|data: &[u8]| {
    if let Ok(fresh) = edgenet_certs::ocsp::check(data, CHAIN, 1_796_322_411) {
        // Only the responder's own answer verifies (re-encodings of it at most).
        let good = edgenet_certs::ocsp::check(GOOD, CHAIN, 1_796_322_411).unwrap();
        assert_eq!(fresh, good);
    }
});
