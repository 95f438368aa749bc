//! Hostnames: zone patterns from configuration and Host/SNI names from clients. Parsing never
//! panics; an accepted pattern is lowercase; routing a name walks only its own suffixes.
#![no_main]

use edgenet_config::{parse_host_pattern, HostPattern};
use edgenet_http::host::{host_without_port, wildcard_suffixes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match parse_host_pattern(s) {
        Ok(HostPattern::Exact(h)) => assert_eq!(h, h.to_ascii_lowercase()),
        Ok(HostPattern::Wildcard(suffix)) => assert!(suffix.starts_with('.')),
        Err(reason) => assert!(!reason.is_empty()),
    }
    let bare = host_without_port(s);
    for suffix in wildcard_suffixes(bare) {
        assert!(bare.ends_with(suffix), "{suffix:?} of {bare:?}");
    }
});
