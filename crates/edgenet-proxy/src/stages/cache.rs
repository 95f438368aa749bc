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
use edgenet_http::normalize::{normalize_path, Normalization};
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

/// The purge `target` names in `zone`: URLs and prefixes normalised as the zone normalises
/// requests, and URLs keyed as requests are, so a rule that ignores the query string purges
/// every query of the path. The admin listener's purges and the network's go through here.
pub fn purge_request(
    zone: &edgenet_config::Zone,
    target: edgenet_protocol::purge::PurgeTarget<'_>,
) -> Result<edgenet_cache::PurgeRequest, String> {
    use edgenet_cache::PurgeRequest;
    use edgenet_protocol::purge::PurgeTarget;
    let normalized = |u: &str| {
        super::url::normalize_purge(&zone.url_normalization, u)
            .map_err(|r| format!("{u:?}: {}", r.reason))
    };
    Ok(match target {
        PurgeTarget::Urls(urls) => PurgeRequest::Urls(
            urls.into_iter()
                .map(|u| {
                    normalized(u).map(|u| edgenet_cache::rules::keyed_url_of(&zone.cache.rules, &u))
                })
                .collect::<Result<_, _>>()?,
        ),
        PurgeTarget::Prefixes(prefixes) => PurgeRequest::Prefixes(
            prefixes
                .iter()
                .map(|p| normalized(p))
                .collect::<Result<_, _>>()?,
        ),
        PurgeTarget::Tags(tags) => PurgeRequest::Tags(tags.to_vec()),
        PurgeTarget::Everything => PurgeRequest::Everything,
    })
}

/// The purge `target` names for a zone not served here: URLs and prefixes as given.
pub fn raw_purge_request(
    target: edgenet_protocol::purge::PurgeTarget<'_>,
) -> edgenet_cache::PurgeRequest {
    use edgenet_cache::PurgeRequest;
    use edgenet_protocol::purge::PurgeTarget;
    match target {
        PurgeTarget::Urls(urls) => PurgeRequest::Urls(urls.into_iter().map(String::from).collect()),
        PurgeTarget::Prefixes(prefixes) => PurgeRequest::Prefixes(prefixes),
        PurgeTarget::Tags(tags) => PurgeRequest::Tags(tags.to_vec()),
        PurgeTarget::Everything => PurgeRequest::Everything,
    }
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
    edgenet_cache::rules::apply_edge_ttl(decision, rule, resp.status.as_u16())
}

/// RFC 9111 section 4.4: a successful unsafe request (any method but the safe ones, extension
/// methods included) invalidates what is stored for its URL, and for the URLs of its
/// response's `Location` and `Content-Location` that have the same host.
pub fn invalidate_after(
    cache: &Cache,
    zone: &ZoneRuntime,
    rule: Option<&CacheRule>,
    request: &Parts,
    response: &http::HeaderMap,
    status: u16,
    now: SystemTime,
) {
    if request.method.is_safe() || status >= 400 {
        return;
    }
    let name = &zone.config.name;
    cache.invalidate(name, &url(rule, request), rule, &request.headers, now);
    let host = super::zone::authority(request)
        .0
        .map(edgenet_http::host::host_without_port)
        .unwrap_or("")
        .to_ascii_lowercase();
    let named = [http::header::LOCATION, http::header::CONTENT_LOCATION];
    for value in named.iter().flat_map(|f| response.get_all(f)) {
        let Some(target) = value
            .to_str()
            .ok()
            .and_then(|v| same_host_target(&host, request.uri.path(), v))
        else {
            continue;
        };
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q)),
            None => (target.clone(), None),
        };
        // The request's path was normalised (stage 4b) before it was keyed: so is this one.
        let kind = match zone.config.url_normalization.incoming {
            Some(edgenet_config::NormalizationType::Cloudflare) => Normalization::Cloudflare,
            _ => Normalization::Rfc3986,
        };
        let path = match normalize_path(path.as_bytes(), kind) {
            Ok(Some(p)) => String::from_utf8_lossy(&p).into_owned(),
            Ok(None) => path,
            Err(_) => continue,
        };
        let rules = &zone.config.cache.rules;
        let rule = edgenet_cache::rules::find_rule(rules, &path).map(|i| &rules[i]);
        let keyed = edgenet_cache::rules::keyed_url(rule, &host, &path, query);
        cache.invalidate(name, &keyed, rule, &request.headers, now);
    }
}

/// The target (path and query) `reference` names when it is on `host`: an absolute `http` or
/// `https` URL, a network-path reference (`//host/...`), an absolute path, or a path relative
/// to the request's `base` (RFC 3986 section 5.2, dot segments left to normalisation).
fn same_host_target(host: &str, base: &str, reference: &str) -> Option<String> {
    let reference = reference.split('#').next()?.trim();
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|s| {
            reference
                .get(..s.len())
                .filter(|p| p.eq_ignore_ascii_case(s))
                .map(|_| &reference[s.len()..])
        })
        .or_else(|| reference.strip_prefix("//"));
    let target = match rest {
        Some(rest) => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, target) = rest.split_at(end);
            let named = edgenet_http::host::host_without_port(authority);
            if !named.eq_ignore_ascii_case(host) {
                return None;
            }
            match target.strip_prefix('?') {
                Some(q) => format!("/?{q}"),
                None if target.is_empty() => "/".to_string(),
                None => target.to_string(),
            }
        }
        None if reference.starts_with('/') => reference.to_string(),
        // Another scheme (`mailto:`, ...) is not a URL of this zone.
        None if reference
            .split(['/', '?'])
            .next()
            .is_some_and(|first| first.contains(':')) =>
        {
            return None
        }
        None if reference.is_empty() => return None,
        None => {
            let dir = &base[..=base.rfind('/').unwrap_or(0)];
            format!("{dir}{reference}")
        }
    };
    Some(target)
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

    #[test]
    fn location_targets_on_the_same_host_are_found() {
        let t = |r: &str| same_host_target("c.test", "/a/b/c", r);
        assert_eq!(t("http://c.test/x?y=1").as_deref(), Some("/x?y=1"));
        assert_eq!(t("HTTPS://C.TEST:8443/x").as_deref(), Some("/x"));
        assert_eq!(t("https://c.test").as_deref(), Some("/"));
        assert_eq!(t("//c.test/n").as_deref(), Some("/n"));
        assert_eq!(t("/abs#frag").as_deref(), Some("/abs"));
        assert_eq!(t("rel").as_deref(), Some("/a/b/rel"));
        assert_eq!(t("../up").as_deref(), Some("/a/b/../up"));
        assert_eq!(t("http://other.test/x"), None);
        assert_eq!(t("//other.test/x"), None);
        assert_eq!(t("mailto:a@c.test"), None);
        assert_eq!(t(""), None);
    }
}
