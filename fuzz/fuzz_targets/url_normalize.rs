//! URL normalisation of request paths from clients: never panics; a normalised path starts
//! with `/`, holds only bytes a path may hold, has no dot segment (nor, in Cloudflare's type,
//! a repeated slash or a back slash), and normalising it again changes nothing.
#![no_main]

use edgenet_http::normalize::{normalize_path, Normalization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [Normalization::Cloudflare, Normalization::Rfc3986] {
        let Ok(out) = normalize_path(data, kind) else {
            continue;
        };
        let out = out.unwrap_or_else(|| data.to_vec());
        assert_eq!(out.first(), Some(&b'/'));
        let text = std::str::from_utf8(&out).expect("ASCII");
        assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
        for seg in text.split('/') {
            assert!(seg != "." && seg != "..", "{text:?}");
        }
        if kind == Normalization::Cloudflare {
            assert!(!text.contains("//") && !text.contains('\\'), "{text:?}");
        }
        assert_eq!(normalize_path(&out, kind), Ok(None), "{text:?} is stable");
    }
});
