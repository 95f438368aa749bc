//! The cache key of a request and its variance: what makes two requests the same object.
//!
//! The primary key is the zone, the scheme, the keyed URL (host, path and the query string as
//! the zone's cache rule says) and the rule's header and cookie values, each length-prefixed so
//! that no two different requests frame to the same bytes. The variance is the request's
//! values of the headers a stored response's `Vary` names.

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
            let value = request
                .get_all(name.as_str())
                .iter()
                .flat_map(|v| v.as_bytes().iter().copied().chain(*b","))
                .collect();
            variance.add_owned_name_value(name, value);
        }
    }
    variance.finalize()
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
}
