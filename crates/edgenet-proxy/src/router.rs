//! Host to zone routing (stage 4): exact names first, then the longest matching wildcard.
//!
//! Pure: built from the validated zones, queried with the request's Host (or `:authority`).

use std::collections::HashMap;

use edgenet_config::{HostPattern, Zone};
use edgenet_http::host::{host_without_port, wildcard_suffixes};

/// Maps hostnames to zone indexes.
#[derive(Debug, Default, Clone)]
pub struct Router {
    exact: HashMap<String, usize>,
    /// Suffix with its leading dot (`.example.com`) to zone index.
    wildcard: HashMap<String, usize>,
}

impl Router {
    /// Builds the router for `zones` (validation guarantees each pattern is used once).
    pub fn new(zones: &[Zone]) -> Router {
        let mut r = Router::default();
        for (i, z) in zones.iter().enumerate() {
            for h in &z.hostnames {
                match h {
                    HostPattern::Exact(name) => r.exact.insert(name.clone(), i),
                    HostPattern::Wildcard(suffix) => r.wildcard.insert(suffix.clone(), i),
                };
            }
        }
        r
    }

    /// The zone serving `host` (a Host header value: any port is ignored, case does not matter).
    pub fn route(&self, host: &str) -> Option<usize> {
        let name = host_without_port(host);
        if name.is_empty() {
            return None;
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        if let Some(&z) = self.exact.get(name) {
            return Some(z);
        }
        let zone = wildcard_suffixes(name).find_map(|suffix| self.wildcard.get(suffix).copied());
        zone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgenet_config::parse_host_pattern;

    fn router(zones: &[&[&str]]) -> Router {
        let mut r = Router::default();
        for (i, hosts) in zones.iter().enumerate() {
            for h in *hosts {
                match parse_host_pattern(h).unwrap() {
                    HostPattern::Exact(n) => r.exact.insert(n, i),
                    HostPattern::Wildcard(s) => r.wildcard.insert(s, i),
                };
            }
        }
        r
    }

    #[test]
    fn exact_beats_wildcard_and_longest_wildcard_wins() {
        let r = router(&[
            &["example.com", "*.example.com"],
            &["api.example.com"],
            &["*.eu.example.com"],
        ]);
        assert_eq!(r.route("example.com"), Some(0));
        assert_eq!(r.route("www.example.com"), Some(0));
        assert_eq!(r.route("api.example.com"), Some(1));
        assert_eq!(r.route("x.eu.example.com"), Some(2));
        assert_eq!(r.route("a.b.eu.example.com"), Some(2));
        assert_eq!(r.route("eu.example.com"), Some(0));
        assert_eq!(r.route("example.org"), None);
        assert_eq!(r.route("notexample.com"), None);
    }

    #[test]
    fn ports_case_and_trailing_dot_are_ignored() {
        let r = router(&[&["localhost", "127.0.0.1", "[::1]"]]);
        assert_eq!(r.route("LocalHost:8080"), Some(0));
        assert_eq!(r.route("localhost."), Some(0));
        assert_eq!(r.route("127.0.0.1:8080"), Some(0));
        assert_eq!(r.route("[::1]:8443"), Some(0));
        assert_eq!(r.route(""), None);
        assert_eq!(r.route(":80"), None);
    }

    #[test]
    fn wildcard_needs_one_more_label() {
        let r = router(&[&["*.example.com"]]);
        assert_eq!(r.route("example.com"), None);
        assert_eq!(r.route(".example.com"), None);
    }
}
