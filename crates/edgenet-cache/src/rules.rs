//! A zone's cache rules applied to a request: which rule matches its path, what of the request
//! goes into the cache key, and how a rule's edge TTL changes the origin's freshness. Pure.

use edgenet_config::{CacheRule, QueryKey, TtlMode};
use http::HeaderMap;

use crate::policy::Decision;

/// Whether `path` matches `pattern`, where `*` matches any run of characters (also `/`).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The index of the first rule whose pattern matches `path`.
pub fn find_rule(rules: &[CacheRule], path: &str) -> Option<usize> {
    rules.iter().position(|r| glob_match(&r.path, path))
}

/// The request target as keyed: the path, then the query string as the rule says.
pub fn key_target(rule: Option<&CacheRule>, path: &str, query: Option<&str>) -> String {
    let mode = rule.map_or(QueryKey::All, |r| r.query);
    let query = match (mode, query) {
        (_, None) | (QueryKey::Ignore, _) => None,
        (QueryKey::All, Some(q)) => Some(q.to_string()),
        (QueryKey::Include | QueryKey::Exclude, Some(q)) => {
            let params = &rule.map_or(&[][..], |r| &r.query_params[..]);
            let keep = |pair: &&str| {
                let name = pair.split('=').next().unwrap_or("");
                params.iter().any(|p| p == name) == (mode == QueryKey::Include)
            };
            let mut kept: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(keep)
                .collect();
            // Parameter order does not change the object.
            kept.sort_unstable();
            Some(kept.join("&"))
        }
    };
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

/// The URL as the cache keys it and purges name it: lower-case host without port, path, and
/// the query string as `rule` (the first matching the path, if any) says.
pub fn keyed_url(rule: Option<&CacheRule>, host: &str, path: &str, query: Option<&str>) -> String {
    let target = key_target(rule, path, query);
    let mut url = String::with_capacity(host.len() + target.len());
    url.push_str(&host.to_ascii_lowercase());
    url.push_str(&target);
    url
}

/// [`keyed_url`] for a URL given as text (`https://host/path?query`, scheme optional), as a
/// purge request names it.
pub fn keyed_url_of(rules: &[CacheRule], url: &str) -> String {
    let normalized = crate::purge::normalize_url(url);
    let (host, target) = normalized.split_at(normalized.find('/').unwrap_or(normalized.len()));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    let rule = find_rule(rules, path).map(|i| &rules[i]);
    keyed_url(rule, host, path, query)
}

/// The header and cookie values a rule adds to the key, framed so that values cannot run
/// into each other.
pub fn key_extras(rule: Option<&CacheRule>, headers: &HeaderMap) -> Vec<u8> {
    let Some(rule) = rule else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    for name in &rule.key_headers {
        for v in headers.get_all(name) {
            push(v.as_bytes());
        }
        push(b"\n");
    }
    for cookie in &rule.key_cookies {
        let value = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == cookie)
            .map(|(_, v)| v);
        push(value.unwrap_or("").as_bytes());
    }
    out
}

/// A storage decision for a response of `status` adjusted by the rule: its `status_ttl` for
/// that status first (zero: not stored; else that freshness, and stored even without explicit
/// freshness, or as a 5xx), else its edge TTL. Nothing the origin refuses to have stored
/// (no-store, private, ...) becomes storable; only freshness changes.
pub fn apply_edge_ttl(decision: Decision, rule: Option<&CacheRule>, status: u16) -> Decision {
    if let Some(ttl) = rule.and_then(|r| r.status_ttl(status)) {
        return match decision {
            _ if ttl.is_zero() => Decision::DoNotStore("status-ttl"),
            Decision::Store {
                stale_while_revalidate,
                stale_if_error,
                ..
            } => Decision::Store {
                fresh_for: ttl,
                stale_while_revalidate,
                stale_if_error,
            },
            Decision::DoNotStore(crate::policy::SERVER_ERROR | "no-freshness") => Decision::Store {
                fresh_for: ttl,
                stale_while_revalidate: 0,
                stale_if_error: 0,
            },
            other => other,
        };
    }
    let Some((mode, ttl)) = rule.and_then(|r| r.ttl) else {
        return decision;
    };
    match decision {
        Decision::Store {
            fresh_for,
            stale_while_revalidate,
            stale_if_error,
        } => Decision::Store {
            fresh_for: match mode {
                TtlMode::Override => ttl,
                TtlMode::Minimum => fresh_for.max(ttl),
                TtlMode::Respect => fresh_for,
            },
            stale_while_revalidate,
            stale_if_error,
        },
        // The origin gave no freshness at all: an edge TTL supplies it.
        Decision::DoNotStore("no-freshness") if mode != TtlMode::Respect => Decision::Store {
            fresh_for: ttl,
            stale_while_revalidate: 0,
            stale_if_error: 0,
        },
        other => other,
    }
}

/// Whether the request asks not to be served from cache without revalidation.
pub fn request_no_cache(headers: &HeaderMap) -> bool {
    let cc = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .any(|d| d == "no-cache" || d == "max-age=0");
    let pragma = headers
        .get_all(http::header::PRAGMA)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
    cc || pragma
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rule(path: &str) -> CacheRule {
        CacheRule {
            path: path.into(),
            bypass: false,
            ttl: None,
            query: QueryKey::All,
            query_params: vec![],
            key_headers: vec![],
            key_cookies: vec![],
            status_ttl: vec![],
        }
    }

    #[test]
    fn purge_urls_key_like_requests() {
        let mut r = rule("/img/*");
        r.query = QueryKey::Ignore;
        let rules = vec![r];
        assert_eq!(
            keyed_url_of(&rules, "https://A.test/img/1.png?v=3"),
            "a.test/img/1.png"
        );
        assert_eq!(
            keyed_url(Some(&rules[0]), "A.test", "/img/1.png", Some("v=9")),
            "a.test/img/1.png"
        );
        assert_eq!(keyed_url_of(&rules, "a.test/other?q=1"), "a.test/other?q=1");
    }

    #[test]
    fn globs() {
        assert!(glob_match("/static/*", "/static/a/b.css"));
        assert!(glob_match("*.css", "/x/y.css"));
        assert!(glob_match("/a/*/c", "/a/b/c"));
        assert!(!glob_match("/a/*/c", "/a/b/d"));
        assert!(glob_match("/exact", "/exact"));
        assert!(!glob_match("/exact", "/exact/more"));
        assert!(glob_match("*", "/anything"));
    }

    #[test]
    fn query_modes() {
        let mut r = rule("/*");
        assert_eq!(key_target(Some(&r), "/p", Some("b=2&a=1")), "/p?b=2&a=1");
        r.query = QueryKey::Ignore;
        assert_eq!(key_target(Some(&r), "/p", Some("b=2&a=1")), "/p");
        r.query = QueryKey::Include;
        r.query_params = vec!["a".into(), "c".into()];
        assert_eq!(
            key_target(Some(&r), "/p", Some("b=2&c=3&a=1")),
            "/p?a=1&c=3"
        );
        r.query = QueryKey::Exclude;
        assert_eq!(key_target(Some(&r), "/p", Some("b=2&c=3&a=1")), "/p?b=2");
        assert_eq!(key_target(None, "/p", None), "/p");
    }

    #[test]
    fn headers_and_cookies_in_the_key() {
        let mut r = rule("/*");
        r.key_headers = vec![http::HeaderName::from_static("x-device")];
        r.key_cookies = vec!["lang".into()];
        let mut h = HeaderMap::new();
        h.insert("x-device", "mobile".parse().unwrap());
        h.insert("cookie", "a=1; lang=fr".parse().unwrap());
        let fr = key_extras(Some(&r), &h);
        h.insert("cookie", "lang=en".parse().unwrap());
        assert_ne!(fr, key_extras(Some(&r), &h));
        h.insert("cookie", "lang=fr; b=2".parse().unwrap());
        assert_eq!(fr, key_extras(Some(&r), &h));
    }

    #[test]
    fn edge_ttl_modes() {
        let store = |s| Decision::Store {
            fresh_for: Duration::from_secs(s),
            stale_while_revalidate: 0,
            stale_if_error: 0,
        };
        let mut r = rule("/*");
        r.ttl = Some((TtlMode::Override, Duration::from_secs(100)));
        assert_eq!(apply_edge_ttl(store(5), Some(&r), 200), store(100));
        assert_eq!(
            apply_edge_ttl(Decision::DoNotStore("no-freshness"), Some(&r), 200),
            store(100)
        );
        assert_eq!(
            apply_edge_ttl(Decision::DoNotStore("no-store"), Some(&r), 200),
            Decision::DoNotStore("no-store")
        );
        r.ttl = Some((TtlMode::Minimum, Duration::from_secs(100)));
        assert_eq!(apply_edge_ttl(store(500), Some(&r), 200), store(500));
        assert_eq!(apply_edge_ttl(store(5), Some(&r), 200), store(100));
    }

    #[test]
    fn status_ttls_by_the_most_specific_match() {
        let store = |s| Decision::Store {
            fresh_for: Duration::from_secs(s),
            stale_while_revalidate: 0,
            stale_if_error: 0,
        };
        let mut r = rule("/*");
        // As validation leaves them: narrowest first.
        r.status_ttl = vec![
            (404, 404, Duration::from_secs(60)),
            (200, 299, Duration::from_secs(3600)),
            (400, 499, Duration::from_secs(5)),
            (500, 599, Duration::ZERO),
        ];
        r.ttl = Some((TtlMode::Override, Duration::from_secs(7)));
        assert_eq!(apply_edge_ttl(store(10), Some(&r), 200), store(3600));
        assert_eq!(apply_edge_ttl(store(10), Some(&r), 404), store(60));
        assert_eq!(
            apply_edge_ttl(Decision::DoNotStore("no-freshness"), Some(&r), 403),
            store(5)
        );
        assert_eq!(
            apply_edge_ttl(store(10), Some(&r), 301),
            store(7),
            "the edge TTL for the rest"
        );
        assert_eq!(
            apply_edge_ttl(Decision::DoNotStore("5xx"), Some(&r), 503),
            Decision::DoNotStore("status-ttl")
        );
        assert_eq!(
            apply_edge_ttl(Decision::DoNotStore("private"), Some(&r), 200),
            Decision::DoNotStore("private"),
            "never over the origin's refusal"
        );
        r.status_ttl = vec![(500, 599, Duration::from_secs(10))];
        assert_eq!(
            apply_edge_ttl(Decision::DoNotStore("5xx"), Some(&r), 502),
            store(10)
        );
        assert_eq!(
            apply_edge_ttl(Decision::DoNotStore("status"), Some(&r), 206),
            Decision::DoNotStore("status")
        );
    }

    #[test]
    fn request_no_cache_forms() {
        let mut h = HeaderMap::new();
        assert!(!request_no_cache(&h));
        h.insert("cache-control", "No-Cache".parse().unwrap());
        assert!(request_no_cache(&h));
        let mut h = HeaderMap::new();
        h.insert("pragma", "no-cache".parse().unwrap());
        assert!(request_no_cache(&h));
        let mut h = HeaderMap::new();
        h.insert("cache-control", "max-age=0".parse().unwrap());
        assert!(request_no_cache(&h));
    }
}
