//! Stage 8, cache: whether a request uses the cache and under which of the zone's rules, the
//! URL it is keyed by, what a hit on a stored object means (serve it, refetch a purged one,
//! revalidate when the client asked), and whether a response is stored and for how long.
//!
//! The state machine (lookup, the lock that collapses concurrent misses, revalidation, stale
//! serving) is pingora-cache's, driven by the adapter; the policy is `edgenet-cache`'s. This
//! stage puts the zone's settings to both.

use std::time::SystemTime;

use edgenet_cache::{Cache, Decision, ZonePolicy};
use edgenet_config::CacheRule;
use http::request::Parts;

use crate::snapshot::ZoneRuntime;

/// The zone's cache rule for the request's path (its index), and whether the request uses the
/// cache: the zone caches, the method is GET or HEAD, and the rule does not bypass it.
pub fn admit(zone: &ZoneRuntime, parts: &Parts) -> (Option<usize>, bool) {
    let cache = &zone.config.cache;
    let rule = edgenet_cache::rules::find_rule(&cache.rules, parts.uri.path());
    let method = &parts.method;
    let enabled = cache.enabled
        && (method == http::Method::GET || method == http::Method::HEAD)
        && !rule.is_some_and(|r| cache.rules[r].bypass);
    (rule, enabled)
}

/// The request's URL as the cache keys it and purges name it, under `rule`.
pub fn url(rule: Option<&CacheRule>, parts: &Parts) -> String {
    let host = super::zone::authority(parts)
        .0
        .map(edgenet_http::host::host_without_port)
        .unwrap_or("");
    edgenet_cache::rules::keyed_url(rule, host, parts.uri.path(), parts.uri.query())
}

/// What a hit on a stored object means for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Serve it (fresh or, where allowed, stale).
    Serve,
    /// It was purged since it was stored: fetch it again.
    Purged,
    /// The client's `no-cache` (which the zone honours) asks for a revalidation.
    Revalidate,
}

/// Checks a hit on the object stored at `created` with the response headers `stored`, for the
/// keyed `url`.
pub fn hit(
    cache: &Cache,
    zone: &ZoneRuntime,
    url: &str,
    stored: &http::HeaderMap,
    created: SystemTime,
    request: &http::HeaderMap,
) -> Hit {
    if cache.is_purged(&zone.config.name, url, stored, created) {
        return Hit::Purged;
    }
    if zone.config.cache.honor_request_no_cache && edgenet_cache::rules::request_no_cache(request) {
        return Hit::Revalidate;
    }
    Hit::Serve
}

/// Whether a response (`resp`, already freshened by a 304 where there was one) to the request
/// may be stored and for how long: RFC 9111 with the zone's policy, then the rule's edge TTL.
pub fn storage(
    zone: &ZoneRuntime,
    rule: Option<&CacheRule>,
    request: &Parts,
    resp: &http::response::Parts,
    now: SystemTime,
) -> Decision {
    let policy = ZonePolicy {
        cache_set_cookie: zone.config.cache.cache_set_cookie,
    };
    let authorization = request.headers.contains_key(http::header::AUTHORIZATION);
    let decision = edgenet_cache::decide(&request.method, authorization, resp, &policy, now);
    edgenet_cache::rules::apply_edge_ttl(decision, rule)
}

/// RFC 9111 section 4.4: a successful unsafe request invalidates what is stored for its URL.
pub fn invalidate_after(
    cache: &Cache,
    zone: &ZoneRuntime,
    rule: Option<&CacheRule>,
    request: &Parts,
    status: u16,
    now: SystemTime,
) {
    if request.method.is_safe() || status >= 400 {
        return;
    }
    let url = url(rule, request);
    cache.invalidate(&zone.config.name, &url, rule, &request.headers, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::test_support::{core, parts, snapshot};

    #[test]
    fn gets_and_heads_use_the_cache_unless_a_rule_bypasses_it() {
        let core = core();
        let rules = "[[zones.cache.rules]]\npath = \"/api/*\"\nbypass = true\n\
                     [[zones.cache.rules]]\npath = \"/static/*\"\nedge_ttl = \"1h\"\nttl_mode = \"override\"\n";
        let snap = snapshot(rules, &core);
        let zone = &snap.zones[0];
        assert_eq!(admit(zone, &parts("/static/a.css")), (Some(1), true));
        assert_eq!(admit(zone, &parts("/api/x")), (Some(0), false), "bypass");
        assert_eq!(admit(zone, &parts("/other")), (None, true));
        let mut post = parts("/static/a.css");
        post.method = http::Method::POST;
        assert_eq!(admit(zone, &post), (Some(1), false));
        let off = snapshot("[zones.cache]\nenabled = false\n", &core);
        assert_eq!(admit(&off.zones[0], &parts("/x")), (None, false));
    }

    #[test]
    fn keyed_urls_lower_case_the_host_and_drop_the_port() {
        let parts = http::Request::builder()
            .uri("/p?q=1")
            .header("host", "A.test:8080")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(url(None, &parts), "a.test/p?q=1");
    }
}
