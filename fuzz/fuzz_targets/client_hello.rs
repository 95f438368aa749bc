//! The first bytes of TLS connections, before the handshake: JA4 fingerprinting never panics,
//! and a fingerprint it gives has JA4's shape (a_b_c, 10 + 12 + 12 characters); a server name
//! it reads is lower-case without a trailing dot.
#![no_main]

use edgenet_shield::ja4::{fingerprint, Hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Hello::Complete(h) = fingerprint(data) {
        let j = &h.ja4;
        if let Some(name) = &h.server_name {
            assert!(!name.ends_with('.') && *name == name.to_ascii_lowercase(), "{name}");
        }
        let parts: Vec<&str> = j.split('_').collect();
        assert_eq!(parts.len(), 3, "{j}");
        assert_eq!((parts[0].len(), parts[1].len(), parts[2].len()), (10, 12, 12), "{j}");
        assert!(j.is_ascii());
    }
});
