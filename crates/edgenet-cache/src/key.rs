//! The cache key of a request and its variance: what makes two requests the same object.
//!
//! The primary key is the zone, the scheme, the keyed URL (host, path and the query string as
//! the zone's cache rule says) and the rule's header and cookie values, each length-prefixed so
//! that no two different requests frame to the same bytes. The variance is the request's
//! values of the headers a stored response's `Vary` names, normalised ([`vary_value`]) so that
//! equivalent requests share a variant.

use edgenet_config::CacheRule;
use http::HeaderMap;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, VarianceBuilder};

use crate::rules::key_extras;

/// The cache key of a request of `zone` for the keyed `url`, over `scheme`, under `rule`.
pub fn cache_key(
    zone: &str,
    scheme: &str,
    url: &str,
    rule: Option<&CacheRule>,
    headers: &HeaderMap,
) -> CacheKey {
    let extras = key_extras(rule, headers);
    let mut key = Vec::with_capacity(zone.len() + url.len() + extras.len() + 16);
    for part in [zone.as_bytes(), scheme.as_bytes(), url.as_bytes()] {
        key.extend_from_slice(&(part.len() as u32).to_be_bytes());
        key.extend_from_slice(part);
    }
    key.extend_from_slice(&extras);
    // pingora-cache rehashes the primary key (BLAKE2b) on every use: the predictor, the lookup,
    // the lock and the eviction manager each ask for it. Hash once; same value, so stored
    // entries keep their keys.
    let hash = pingora_cache::key::hash_key(&key);
    let mut key = CacheKey::new(key, "");
    key.set_primary_bin_override(hash);
    key
}

/// The variance of a request against a stored response whose headers are `stored`: the
/// request's values of each header its `Vary` names (`None` when it names none).
pub fn variance(stored: &HeaderMap, request: &HeaderMap) -> Option<HashBinary> {
    let mut variance = VarianceBuilder::new();
    for value in stored.get_all(http::header::VARY) {
        let Ok(names) = value.to_str() else { continue };
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.to_ascii_lowercase();
            let value = vary_value(&name, request);
            variance.add_owned_name_value(name, value);
        }
    }
    variance.finalize()
}

/// Request fields that are lists whose members compare without regard to case.
const CASELESS_LISTS: [&str; 4] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
];
/// Of those, the ones whose members' order means nothing (q-values carry the preference).
const UNORDERED_LISTS: [&str; 2] = ["accept-encoding", "accept-language"];

/// The request's value of field `name` as a variant is told by: its lines joined; for the
/// `Accept` family, each member without the whitespace around it and its parameters, in lower
/// case, and for `Accept-Encoding` and `Accept-Language` in a fixed order; for any other field,
/// each line trimmed. Absent and empty are the same.
pub fn vary_value(name: &str, request: &HeaderMap) -> Vec<u8> {
    let lines = request
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes().trim_ascii());
    if !CASELESS_LISTS.contains(&name) {
        let mut out = Vec::new();
        for (i, line) in lines.filter(|l| !l.is_empty()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(line);
        }
        return out;
    }
    let mut members: Vec<Vec<u8>> = lines
        .flat_map(|l| l.split(|&b| b == b','))
        .map(|m| {
            let mut member = Vec::with_capacity(m.len());
            for (i, part) in m.split(|&b| b == b';').enumerate() {
                if i > 0 {
                    member.push(b';');
                }
                member.extend(part.trim_ascii().iter().map(u8::to_ascii_lowercase));
            }
            member
        })
        .filter(|m| !m.is_empty())
        .collect();
    if UNORDERED_LISTS.contains(&name) {
        members.sort();
    }
    members.join(&b","[..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::CacheHashKey;

    #[test]
    fn the_precomputed_primary_hash_is_pingoras_own() {
        let headers = HeaderMap::new();
        let key = cache_key("z", "https", "a.test/p?q=1", None, &headers);
        let plain = CacheKey::new(key.primary_key().to_vec(), "");
        assert_eq!(key.primary_bin(), plain.primary_bin());
        assert_eq!(
            key.primary_key_str().map(|s| s.contains("a.test/p?q=1")),
            Some(true)
        );
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let h = HeaderMap::new();
        let a = cache_key("ab", "http", "c/", None, &h);
        let b = cache_key("a", "bhttp", "c/", None, &h);
        assert_ne!(a.primary_bin(), b.primary_bin());
        assert_ne!(
            cache_key("z", "http", "a/", None, &h).primary_bin(),
            cache_key("z", "https", "a/", None, &h).primary_bin(),
            "the scheme is part of the key"
        );
    }

    #[test]
    fn variance_follows_vary() {
        let mut stored = HeaderMap::new();
        assert_eq!(variance(&stored, &HeaderMap::new()), None);
        stored.insert(http::header::VARY, "Accept-Encoding".parse().unwrap());
        let mut gzip = HeaderMap::new();
        gzip.insert("accept-encoding", "gzip".parse().unwrap());
        let mut br = HeaderMap::new();
        br.insert("accept-encoding", "br".parse().unwrap());
        let g = variance(&stored, &gzip).unwrap();
        assert_eq!(Some(g), variance(&stored, &gzip));
        assert_ne!(Some(g), variance(&stored, &br));
    }

    #[test]
    fn equivalent_requests_share_a_variant() {
        let stored = |vary: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::VARY, vary.parse().unwrap());
            h
        };
        let req = |fields: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in fields {
                h.append(
                    http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            h
        };
        let same = |vary: &str, a: &[(&str, &str)], b: &[(&str, &str)]| {
            variance(&stored(vary), &req(a)) == variance(&stored(vary), &req(b))
        };
        let ae = "accept-encoding";
        assert!(same(ae, &[(ae, "gzip, br")], &[(ae, "br,gzip")]), "order");
        assert!(
            same(ae, &[(ae, "GZIP;q=0.5 , br")], &[(ae, "br, gzip; q=0.5")]),
            "case, spaces"
        );
        assert!(
            same(ae, &[(ae, "gzip"), (ae, "br")], &[(ae, "br, gzip")]),
            "lines"
        );
        assert!(!same(ae, &[(ae, "gzip")], &[(ae, "br")]));
        let al = "accept-language";
        assert!(same(
            al,
            &[(al, "en-US, fr;q=0.5")],
            &[(al, "fr; q=0.5,en-us")]
        ));
        assert!(same(
            "Accept",
            &[("accept", "Text/HTML")],
            &[("accept", "text/html")]
        ));
        assert!(
            !same(
                "accept",
                &[("accept", "text/html, */*")],
                &[("accept", "*/*, text/html")]
            ),
            "Accept's order is kept"
        );
        // Other fields: only the whitespace around each line goes; case counts.
        assert!(same("x-v", &[("x-v", "  A ")], &[("x-v", "A")]));
        assert!(!same("x-v", &[("x-v", "A")], &[("x-v", "a")]));
        assert!(same(ae, &[], &[(ae, " ")]), "absent and empty");
    }
}
