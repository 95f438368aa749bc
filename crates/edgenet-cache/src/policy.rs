//! Whether a response may be stored, and for how long it stays fresh (RFC 9111 sections 3 and
//! 4.2, RFC 5861). Pure: headers and a clock reading in, a decision out.

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, Method, StatusCode};
use pingora_cache::cache_control::CacheControl;
use pingora_http::ResponseHeader;

/// Longest heuristic freshness (RFC 9111 section 4.2.2 suggests a fraction of the time since
/// Last-Modified; a cap keeps a years-old file from being cached for a month).
pub const MAX_HEURISTIC: Duration = Duration::from_secs(24 * 3600);

/// What a zone says about storing responses, beyond the origin's headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZonePolicy {
    /// Store responses that carry `Set-Cookie` (the cookie is stored and replayed to everyone).
    pub cache_set_cookie: bool,
}

/// The verdict on one response.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Store it. `fresh_for` is what remains of its freshness lifetime after its current age
    /// (zero: stored but revalidated before each use).
    Store {
        fresh_for: Duration,
        stale_while_revalidate: u32,
        stale_if_error: u32,
    },
    /// Do not store it, for this reason (shown in `Cache-Status` as `detail`).
    DoNotStore(&'static str),
}

/// Statuses a cache may store without explicit freshness (RFC 9110 section 15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Statuses we store at all: final, understood, and not partial (ranges are served from full
/// objects) and not 304 (which only refreshes a stored response).
fn storable_status(status: StatusCode) -> bool {
    heuristically_cacheable(status) || matches!(status.as_u16(), 302 | 307)
}

fn http_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let v = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(v.to_str().ok()?).ok()
}

/// The response's age when it arrived (RFC 9111 section 4.2.3, with no measurable delay).
pub fn age_on_arrival(resp: &HeaderMap, now: SystemTime) -> Duration {
    let apparent = http_date(resp, header::DATE)
        .and_then(|d| now.duration_since(d).ok())
        .unwrap_or_default();
    let age_value = resp
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    apparent.max(age_value)
}

/// Decides whether `resp`, the answer to a `method` request, may be stored by a shared cache.
/// `authorization` says whether the request carried `Authorization`.
pub fn decide(
    method: &Method,
    authorization: bool,
    resp: &http::response::Parts,
    policy: &ZonePolicy,
    now: SystemTime,
) -> Decision {
    use Decision::DoNotStore;
    if method != Method::GET && method != Method::HEAD {
        return DoNotStore("method");
    }
    if !storable_status(resp.status) {
        return DoNotStore("status");
    }
    let headers = &resp.headers;
    let cc = CacheControl::from_headers_named("cache-control", &resp.headers);
    if cc.as_ref().is_some_and(|c| c.no_store()) {
        return DoNotStore("no-store");
    }
    if cc.as_ref().is_some_and(|c| c.private()) {
        return DoNotStore("private");
    }
    let vary_any = headers.get_all(header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii() == b"*")
    });
    if vary_any {
        return DoNotStore("vary-star");
    }
    if headers.contains_key(header::SET_COOKIE) && !policy.cache_set_cookie {
        return DoNotStore("set-cookie");
    }
    // RFC 9111 section 3.5: only with must-revalidate, public or s-maxage.
    if authorization {
        let allowed = cc.as_ref().is_some_and(|c| {
            c.must_revalidate() || c.public() || matches!(c.s_maxage(), Ok(Some(_)))
        });
        if !allowed {
            return DoNotStore("authorization");
        }
    }

    // Freshness lifetime (section 4.2.1): s-maxage, then max-age, then Expires, then heuristic.
    // An invalid value makes the response stale, not uncacheable.
    let explicit = cc.as_ref().and_then(|c| {
        let directive = |r: pingora_error::Result<Option<u32>>| match r {
            Ok(Some(s)) => Some(Duration::from_secs(s.into())),
            Ok(None) => None,
            Err(_) => Some(Duration::ZERO),
        };
        directive(c.s_maxage()).or_else(|| directive(c.max_age()))
    });
    let lifetime = explicit
        .or_else(|| {
            if !headers.contains_key(header::EXPIRES) {
                return None;
            }
            // An Expires that is not a single valid date means "already expired".
            let Some(expires) = http_date(headers, header::EXPIRES) else {
                return Some(Duration::ZERO);
            };
            let date = http_date(headers, header::DATE).unwrap_or(now);
            Some(expires.duration_since(date).unwrap_or_default())
        })
        .or_else(|| {
            if !heuristically_cacheable(resp.status) {
                return None;
            }
            let modified = http_date(headers, header::LAST_MODIFIED)?;
            let date = http_date(headers, header::DATE).unwrap_or(now);
            let since = date.duration_since(modified).ok()?;
            Some((since / 10).min(MAX_HEURISTIC))
        });
    let Some(lifetime) = lifetime else {
        // Storable but with no freshness at all: without a validator it can never be reused.
        let has_validator =
            headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
        if !has_validator {
            return DoNotStore("no-freshness");
        }
        return Decision::Store {
            fresh_for: Duration::ZERO,
            stale_while_revalidate: 0,
            stale_if_error: 0,
        };
    };
    let no_cache = cc.as_ref().is_some_and(|c| c.no_cache());
    let fresh_for = if no_cache {
        Duration::ZERO
    } else {
        lifetime.saturating_sub(age_on_arrival(headers, now))
    };
    // must-revalidate / proxy-revalidate forbid serving stale (section 5.2.2.2 and 5.2.2.8).
    let revalidate = cc
        .as_ref()
        .is_some_and(|c| c.must_revalidate() || c.proxy_revalidate());
    let stale = |r: Option<pingora_error::Result<Option<u32>>>| {
        if revalidate || no_cache {
            0
        } else {
            r.and_then(|r| r.ok().flatten()).unwrap_or(0)
        }
    };
    Decision::Store {
        fresh_for,
        stale_while_revalidate: stale(cc.as_ref().map(|c| c.stale_while_revalidate())),
        stale_if_error: stale(cc.as_ref().map(|c| c.stale_if_error())),
    }
}

/// The stored response head freshened by a 304 (RFC 9111 section 4.3.4): every field the 304
/// carries replaces the stored one, except those that describe the stored body's framing or
/// encoding (section 3.2), which a 304 cannot change.
pub fn merge_not_modified(stored: &ResponseHeader, not_modified: &HeaderMap) -> ResponseHeader {
    const KEEP: [header::HeaderName; 5] = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONTENT_ENCODING,
        header::CONTENT_RANGE,
        header::CONNECTION,
    ];
    let mut merged = stored.clone();
    let names: Vec<&header::HeaderName> = not_modified.keys().collect();
    for name in names {
        if KEEP.contains(name) {
            continue;
        }
        let _ = merged.remove_header(name);
        for value in not_modified.get_all(name) {
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn now() -> SystemTime {
        httpdate::parse_http_date("Mon, 23 Nov 2026 12:00:00 GMT").unwrap()
    }

    fn decide_get(r: &ResponseHeader) -> Decision {
        decide(&Method::GET, false, r, &ZonePolicy::default(), now())
    }

    fn fresh(d: &Decision) -> Option<u64> {
        match d {
            Decision::Store { fresh_for, .. } => Some(fresh_for.as_secs()),
            Decision::DoNotStore(_) => None,
        }
    }

    #[test]
    fn a_304_updates_stored_fields_but_not_framing() {
        let stored = resp(
            200,
            &[
                ("date", "Mon, 23 Nov 2026 11:00:00 GMT"),
                ("cache-control", "max-age=60"),
                ("content-length", "5"),
                ("x-kept", "1"),
            ],
        );
        let not_modified = resp(
            304,
            &[
                ("date", "Mon, 23 Nov 2026 12:00:00 GMT"),
                ("cache-control", "max-age=120"),
                ("content-length", "0"),
            ],
        );
        let merged = merge_not_modified(&stored, &not_modified.headers);
        assert_eq!(merged.status, 200);
        assert_eq!(merged.headers["date"], "Mon, 23 Nov 2026 12:00:00 GMT");
        assert_eq!(merged.headers["cache-control"], "max-age=120");
        assert_eq!(merged.headers["content-length"], "5");
        assert_eq!(merged.headers["x-kept"], "1");
        assert_eq!(fresh(&decide_get(&merged)), Some(120));
    }

    #[test]
    fn s_maxage_wins_over_max_age_and_expires() {
        let r = resp(
            200,
            &[
                ("cache-control", "max-age=10, s-maxage=100"),
                ("expires", "Mon, 23 Nov 2026 13:00:00 GMT"),
            ],
        );
        assert_eq!(fresh(&decide_get(&r)), Some(100));
        let r = resp(200, &[("cache-control", "max-age=10")]);
        assert_eq!(fresh(&decide_get(&r)), Some(10));
    }

    #[test]
    fn expires_counts_from_date() {
        let r = resp(
            200,
            &[
                ("date", "Mon, 23 Nov 2026 12:00:00 GMT"),
                ("expires", "Mon, 23 Nov 2026 12:05:00 GMT"),
            ],
        );
        assert_eq!(fresh(&decide_get(&r)), Some(300));
        let r = resp(200, &[("expires", "0"), ("etag", "\"x\"")]);
        assert_eq!(fresh(&decide_get(&r)), Some(0), "invalid Expires is stale");
    }

    #[test]
    fn heuristic_freshness_is_a_tenth_of_the_age_of_last_modified() {
        let r = resp(
            200,
            &[
                ("date", "Mon, 23 Nov 2026 12:00:00 GMT"),
                ("last-modified", "Mon, 23 Nov 2026 11:00:00 GMT"),
            ],
        );
        assert_eq!(fresh(&decide_get(&r)), Some(360));
        let r = resp(
            302,
            &[
                ("date", "Mon, 23 Nov 2026 12:00:00 GMT"),
                ("last-modified", "Mon, 23 Nov 2026 11:00:00 GMT"),
            ],
        );
        assert_eq!(
            fresh(&decide_get(&r)),
            Some(0),
            "302 is not heuristically cacheable"
        );
    }

    #[test]
    fn age_is_subtracted() {
        let r = resp(200, &[("cache-control", "max-age=100"), ("age", "30")]);
        assert_eq!(fresh(&decide_get(&r)), Some(70));
        let r = resp(
            200,
            &[
                ("cache-control", "max-age=100"),
                ("date", "Mon, 23 Nov 2026 11:59:00 GMT"),
            ],
        );
        assert_eq!(fresh(&decide_get(&r)), Some(40));
    }

    #[test]
    fn invalid_max_age_means_stale_not_a_crash() {
        for cc in ["max-age=abc", "max-age=", "max-age=-1", "max-age=1.5"] {
            let r = resp(200, &[("cache-control", cc), ("etag", "\"v\"")]);
            assert_eq!(fresh(&decide_get(&r)), Some(0), "{cc}");
        }
        // Section 1.2.2: an overflowing delta-seconds is taken as about 2^31.
        let r = resp(200, &[("cache-control", "max-age=99999999999999999999")]);
        assert!(fresh(&decide_get(&r)).unwrap() >= (1 << 31) - 1);
    }

    #[test]
    fn refusals() {
        let cases = [
            (
                resp(200, &[("cache-control", "no-store, max-age=60")]),
                "no-store",
            ),
            (
                resp(200, &[("cache-control", "private, max-age=60")]),
                "private",
            ),
            (
                resp(
                    200,
                    &[("cache-control", "max-age=60"), ("vary", "accept, *")],
                ),
                "vary-star",
            ),
            (
                resp(
                    200,
                    &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
                ),
                "set-cookie",
            ),
            (resp(500, &[("cache-control", "max-age=60")]), "status"),
            (resp(206, &[("cache-control", "max-age=60")]), "status"),
            (resp(200, &[]), "no-freshness"),
        ];
        for (r, why) in cases {
            assert_eq!(decide_get(&r), Decision::DoNotStore(why));
        }
        let r = resp(200, &[("cache-control", "max-age=60")]);
        assert_eq!(
            decide(&Method::POST, false, &r, &ZonePolicy::default(), now()),
            Decision::DoNotStore("method")
        );
    }

    #[test]
    fn set_cookie_is_stored_when_the_zone_says_so() {
        let r = resp(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
        );
        let policy = ZonePolicy {
            cache_set_cookie: true,
        };
        assert!(fresh(&decide(&Method::GET, false, &r, &policy, now())).is_some());
    }

    #[test]
    fn authorization_needs_public_s_maxage_or_must_revalidate() {
        let p = ZonePolicy::default();
        let r = resp(200, &[("cache-control", "max-age=60")]);
        assert_eq!(
            decide(&Method::GET, true, &r, &p, now()),
            Decision::DoNotStore("authorization")
        );
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "must-revalidate, max-age=60",
        ] {
            let r = resp(200, &[("cache-control", cc)]);
            assert!(
                fresh(&decide(&Method::GET, true, &r, &p, now())).is_some(),
                "{cc}"
            );
        }
    }

    #[test]
    fn no_cache_stores_but_always_revalidates_and_must_revalidate_forbids_stale() {
        let r = resp(
            200,
            &[(
                "cache-control",
                "no-cache, max-age=60, stale-while-revalidate=30",
            )],
        );
        assert_eq!(
            decide_get(&r),
            Decision::Store {
                fresh_for: Duration::ZERO,
                stale_while_revalidate: 0,
                stale_if_error: 0
            }
        );
        let r = resp(
            200,
            &[(
                "cache-control",
                "max-age=60, stale-while-revalidate=30, stale-if-error=90",
            )],
        );
        assert_eq!(
            decide_get(&r),
            Decision::Store {
                fresh_for: Duration::from_secs(60),
                stale_while_revalidate: 30,
                stale_if_error: 90
            }
        );
        let r = resp(
            200,
            &[(
                "cache-control",
                "max-age=60, must-revalidate, stale-if-error=90",
            )],
        );
        assert!(matches!(
            decide_get(&r),
            Decision::Store {
                stale_if_error: 0,
                ..
            }
        ));
    }
}
