//! An uploaded certificate chain and private key (PEM text, split at the first NUL byte)
//! through the checks: never a panic; what passes names at least the hosts it had to cover,
//! and a problem never quotes the private key's text (nor the parser's view of a broken line).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (chain, key) = text.split_once('\0').unwrap_or((text, ""));
    match edgenet_certs::check(chain, key, &["example.com"], 1_796_860_800) {
        Ok(c) => assert!(edgenet_certs::covers(&c.names, "example.com")),
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in problems {
                // Unless the chain itself holds it (then it is the chain's text).
                assert!(key.len() < 16 || chain.contains(key) || !p.reason.contains(key), "{p}");
            }
        }
    }
});
