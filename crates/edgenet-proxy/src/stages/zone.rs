//! Stage 4, zone: the Host (or `:authority`, or an absolute-form target's authority) picks
//! the zone, exact names first, then the longest matching wildcard. Over TLS the Host must
//! belong to the zone the SNI chose (its certificate), or one zone's connection could reach
//! another zone's origin.
//!
//! Pure: the [`Router`] is built from the validated zones once per snapshot.

use std::collections::HashMap;

use edgenet_config::{HostPattern, Zone};
use edgenet_http::host::{host_without_port, wildcard_suffixes};
use http::request::Parts;
use http::Version;

use super::Reject;

/// The authority a request names, and whether it came as an absolute-form target: the
/// target's for absolute-form and HTTP/2, else the Host header.
pub fn authority(parts: &Parts) -> (Option<&str>, bool) {
    if let Some(a) = parts.uri.authority() {
        return (Some(a.as_str()), parts.version != Version::HTTP_2);
    }
    let host = parts.headers.get(http::header::HOST);
    (host.and_then(|h| h.to_str().ok()), false)
}

/// The zone of a request; `sni` is the TLS server name when the connection's certificate was
/// chosen by it.
pub fn route(router: &Router, parts: &Parts, sni: Option<&str>) -> Result<usize, Reject> {
    let (authority, absolute_form) = authority(parts);
    let Some(zone) = authority.and_then(|a| router.route(a)) else {
        return Err(if absolute_form {
            Reject::new(400, "absolute-form target for a host not served here")
        } else {
            Reject::new(421, "no zone serves this host at this PoP")
        });
    };
    if let Some(sni) = sni {
        if router.route(sni) != Some(zone) {
            return Err(Reject::new(
                421,
                "Host does not belong to the TLS server name",
            ));
        }
    }
    Ok(zone)
}

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

    fn parts(uri: &str, version: Version, host: Option<&str>) -> Parts {
        let mut b = http::Request::builder().uri(uri).version(version);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn authority_sni_and_absolute_form() {
        let r = router(&[&["a.test"], &["b.test"]]);
        let p = parts("/x", Version::HTTP_11, Some("A.test:80"));
        assert_eq!(route(&r, &p, None), Ok(0));
        assert_eq!(route(&r, &p, Some("a.test")), Ok(0));
        let e = route(&r, &p, Some("b.test")).unwrap_err();
        assert_eq!(
            (e.status, e.reason),
            (421, "Host does not belong to the TLS server name")
        );
        let p = parts("http://b.test/x", Version::HTTP_11, Some("a.test"));
        assert_eq!(route(&r, &p, None), Ok(1), "the target's authority wins");
        let p = parts("http://c.test/x", Version::HTTP_11, None);
        assert_eq!(route(&r, &p, None).unwrap_err().status, 400);
        let p = parts("https://c.test/x", Version::HTTP_2, None);
        assert_eq!(route(&r, &p, None).unwrap_err().status, 421, ":authority");
        let p = parts("/x", Version::HTTP_11, None);
        assert_eq!(route(&r, &p, None).unwrap_err().status, 421);
    }

    #[test]
    fn wildcard_needs_one_more_label() {
        let r = router(&[&["*.example.com"]]);
        assert_eq!(r.route("example.com"), None);
        assert_eq!(r.route(".example.com"), None);
    }
}
