//! Whether a response may be stored, and for how long it stays fresh (RFC 9111 sections 3 and
//! 4.2, RFC 5861). Pure: headers and a clock reading in, a decision out.
//!
//! The cache directives come from the first of these fields the response carries
//! ([`Directives::of`]): `Edgenet-CDN-Cache-Control` (this cache's own target) and then
//! `CDN-Cache-Control` (RFC 9213; each an RFC 8941 dictionary, ignored when it does not parse
//! as one), `Surrogate-Control` (the Edge Architecture specification: directives without a
//! target or targeted `;edgenet`), then `Cache-Control`. `s-maxage` implies `proxy-revalidate`
//! (RFC 9111 section 5.2.2.10): a response carrying it, `must-revalidate`, `proxy-revalidate`
//! or `no-cache` is never served stale.

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

/// Statuses we store at all (RFC 9111 section 3): final, and not partial (ranges are served
/// from full objects) and not 304 (which only refreshes a stored response). A 5xx is left to a
/// zone's `status_ttl` ([`SERVER_ERROR`]).
fn storable_status(status: StatusCode) -> bool {
    let s = status.as_u16();
    (200..500).contains(&s) && s != 206 && s != 304
}

/// Why a 5xx is not stored: unless a cache rule's `status_ttl` names it.
pub const SERVER_ERROR: &str = "5xx";

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

/// Fields only this cache reads, removed before a response leaves for a client (a lower tier,
/// another edgenet cache, is given them).
pub const OWN_FIELDS: [&str; 2] = ["edgenet-cdn-cache-control", "surrogate-control"];

/// The name a `Surrogate-Control` directive targets this cache with (`max-age=60;edgenet`).
pub const SURROGATE_TARGET: &str = "edgenet";

/// The cache directives that apply to this cache, from the first field that carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// The field they came from; none: the response has none of them.
    pub source: Option<&'static str>,
    /// `no-store` (or, from `Surrogate-Control`, `no-store-remote`: an edge is remote).
    pub no_store: bool,
    /// `private`.
    pub private: bool,
    /// `no-cache`.
    pub no_cache: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: never served stale.
    pub revalidate: bool,
    /// `must-revalidate` alone (section 3.5 lets it store an answer to `Authorization`).
    pub must_revalidate: bool,
    /// `s-maxage` (an invalid value: zero).
    pub s_maxage: Option<Duration>,
    /// `max-age` (an invalid value: zero).
    pub max_age: Option<Duration>,
    /// `stale-while-revalidate` seconds.
    pub stale_while_revalidate: u32,
    /// `stale-if-error` seconds.
    pub stale_if_error: u32,
}

impl Directives {
    /// The directives of `headers` for this cache.
    pub fn of(headers: &HeaderMap) -> Directives {
        for field in ["edgenet-cdn-cache-control", "cdn-cache-control"] {
            if let Some(d) = targeted(headers, field) {
                return d;
            }
        }
        if let Some(d) = surrogate(headers) {
            return d;
        }
        let Some(c) = CacheControl::from_headers_named("cache-control", headers) else {
            return Directives::default();
        };
        let seconds = |r: pingora_error::Result<Option<u32>>| match r {
            Ok(Some(s)) => Some(Duration::from_secs(s.into())),
            Ok(None) => None,
            Err(_) => Some(Duration::ZERO),
        };
        let window = |r: pingora_error::Result<Option<u32>>| r.ok().flatten().unwrap_or(0);
        let s_maxage = seconds(c.s_maxage());
        Directives {
            source: Some("cache-control"),
            no_store: c.no_store(),
            private: c.private(),
            no_cache: c.no_cache(),
            public: c.public(),
            revalidate: c.must_revalidate() || c.proxy_revalidate() || s_maxage.is_some(),
            must_revalidate: c.must_revalidate(),
            s_maxage,
            max_age: seconds(c.max_age()),
            stale_while_revalidate: window(c.stale_while_revalidate()),
            stale_if_error: window(c.stale_if_error()),
        }
    }

    /// Applies one directive of a targeted or surrogate field: `value` its integer, `flag`
    /// whether it was given as a flag (a directive of the wrong kind is ignored).
    fn set(&mut self, name: &str, value: Option<i64>, flag: bool) {
        let secs =
            |v: Option<i64>| v.map(|n| Duration::from_secs(n.clamp(0, i64::from(u32::MAX)) as u64));
        let window = |v: Option<i64>| v.map_or(0, |n| n.clamp(0, i64::from(u32::MAX)) as u32);
        match name {
            "no-store" if flag => self.no_store = true,
            "private" if flag => self.private = true,
            "no-cache" if flag => self.no_cache = true,
            "public" if flag => self.public = true,
            "must-revalidate" if flag => {
                self.must_revalidate = true;
                self.revalidate = true;
            }
            "proxy-revalidate" if flag => self.revalidate = true,
            "s-maxage" if value.is_some() => {
                self.s_maxage = secs(value);
                self.revalidate = true;
            }
            "max-age" if value.is_some() => self.max_age = secs(value),
            "stale-while-revalidate" if value.is_some() => {
                self.stale_while_revalidate = window(value)
            }
            "stale-if-error" if value.is_some() => self.stale_if_error = window(value),
            _ => {}
        }
    }
}

/// An RFC 9213 targeted field: its directives, or none when absent or not a dictionary.
/// A directive with a value of the wrong type is ignored (section 2.1).
fn targeted(headers: &HeaderMap, field: &'static str) -> Option<Directives> {
    let mut joined = Vec::new();
    for (i, v) in headers.get_all(field).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if joined.is_empty() {
        return None;
    }
    let dict = sfv::Parser::parse_dictionary(&joined).ok()?;
    let mut d = Directives {
        source: Some(field),
        ..Directives::default()
    };
    for (name, entry) in &dict {
        let (value, flag) = match entry {
            sfv::ListEntry::Item(item) => match &item.bare_item {
                sfv::BareItem::Integer(n) => (Some(*n), false),
                sfv::BareItem::Boolean(b) => (None, *b),
                // `private="set-cookie"` and the like: the whole response, to be safe.
                sfv::BareItem::String(_) | sfv::BareItem::Token(_) => (None, true),
                _ => (None, false),
            },
            sfv::ListEntry::InnerList(_) => (None, true),
        };
        d.set(name, value, flag);
    }
    Some(d)
}

/// `Surrogate-Control`: comma-separated directives, each `name[=value][;target]`; only those
/// without a target or targeted at [`SURROGATE_TARGET`] count. `max-age=N+M` is N seconds
/// fresh, then M more served stale when the origin fails.
fn surrogate(headers: &HeaderMap) -> Option<Directives> {
    let mut d = Directives {
        source: Some("surrogate-control"),
        ..Directives::default()
    };
    let mut any = false;
    for v in headers.get_all("surrogate-control") {
        let Ok(text) = v.to_str() else {
            continue;
        };
        for part in text.split(',') {
            let (directive, target) = match part.split_once(';') {
                Some((d, t)) => (d.trim(), Some(t.trim())),
                None => (part.trim(), None),
            };
            if directive.is_empty()
                || target.is_some_and(|t| !t.eq_ignore_ascii_case(SURROGATE_TARGET))
            {
                continue;
            }
            any = true;
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (
                    n.trim().to_ascii_lowercase(),
                    Some(v.trim().trim_matches('"')),
                ),
                None => (directive.to_ascii_lowercase(), None),
            };
            match (name.as_str(), value) {
                ("no-store-remote", None) => d.no_store = true,
                ("max-age", Some(v)) => {
                    let (fresh, stale) = match v.split_once('+') {
                        Some((f, s)) => (f, Some(s)),
                        None => (v, None),
                    };
                    let n = fresh.parse::<i64>().unwrap_or(0);
                    d.set("max-age", Some(n), false);
                    if let Some(s) = stale.and_then(|s| s.parse::<i64>().ok()) {
                        d.set("stale-if-error", Some(s), false);
                    }
                }
                (name, None) => d.set(name, None, true),
                (name, Some(v)) => d.set(name, Some(v.parse::<i64>().unwrap_or(0)), false),
            }
        }
    }
    any.then_some(d)
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
    if resp.status.is_server_error() {
        return DoNotStore(SERVER_ERROR);
    }
    if !storable_status(resp.status) {
        return DoNotStore("status");
    }
    let headers = &resp.headers;
    let d = Directives::of(headers);
    if d.no_store {
        return DoNotStore("no-store");
    }
    if d.private {
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
    if authorization && !(d.must_revalidate || d.public || d.s_maxage.is_some()) {
        return DoNotStore("authorization");
    }

    // Freshness lifetime (section 4.2.1): s-maxage, then max-age, then Expires, then heuristic.
    // An invalid value makes the response stale, not uncacheable.
    let lifetime = d
        .s_maxage
        .or(d.max_age)
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
        // Section 3: without explicit freshness only a heuristically cacheable status (or a
        // public response) may be stored.
        if !heuristically_cacheable(resp.status) && !d.public {
            return DoNotStore("no-freshness");
        }
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
    let fresh_for = if d.no_cache {
        Duration::ZERO
    } else {
        lifetime.saturating_sub(age_on_arrival(headers, now))
    };
    // must-revalidate, proxy-revalidate (and s-maxage, which implies it) and no-cache forbid
    // serving stale (sections 5.2.2.2, 5.2.2.8, 5.2.2.10, 5.2.2.4).
    let never_stale = d.revalidate || d.no_cache;
    let window = |w: u32| if never_stale { 0 } else { w };
    Decision::Store {
        fresh_for,
        stale_while_revalidate: window(d.stale_while_revalidate),
        stale_if_error: window(d.stale_if_error),
    }
}

/// Whether a conditional `method` request with `request` headers is answered 304 from a stored
/// response with `stored` headers (RFC 9111 section 4.3.2, RFC 9110 section 13.2.2):
/// `If-None-Match` against its `ETag` (weak comparison) and, only without one,
/// `If-Modified-Since` of a GET or HEAD against its `Last-Modified`, or its `Date` where it has
/// no `Last-Modified`. `received` is when it was stored, for a response without either.
pub fn not_modified(
    method: &Method,
    request: &HeaderMap,
    stored: &HeaderMap,
    received: SystemTime,
) -> bool {
    if request.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = stored.get(header::ETAG) else {
            return false;
        };
        return request.get_all(header::IF_NONE_MATCH).iter().any(|inm| {
            pingora_core::protocols::http::conditional_filter::weak_validate_etag(
                inm.as_bytes(),
                etag.as_bytes(),
            )
        });
    }
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let Some(since) = http_date(request, header::IF_MODIFIED_SINCE) else {
        return false;
    };
    let modified = http_date(stored, header::LAST_MODIFIED)
        .or_else(|| http_date(stored, header::DATE))
        .unwrap_or(received);
    since >= modified
}

/// The stored response head freshened by a 304 (RFC 9111 section 4.3.4): every field the 304
/// carries replaces the stored one, except those that describe the stored body's framing or
/// encoding or identify it (section 3.2: `ETag`, `Content-MD5`), which a 304 cannot change,
/// and `Set-Cookie`, which is for the client that made this request only (the caller gives it
/// that client) and never stored for others.
pub fn merge_not_modified(stored: &ResponseHeader, not_modified: &HeaderMap) -> ResponseHeader {
    const KEEP: [header::HeaderName; 7] = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONTENT_ENCODING,
        header::CONTENT_RANGE,
        header::CONNECTION,
        header::ETAG,
        header::SET_COOKIE,
    ];
    let mut merged = stored.clone();
    let names: Vec<&header::HeaderName> = not_modified.keys().collect();
    for name in names {
        if KEEP.contains(name) || name == "content-md5" {
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
    fn a_304_keeps_the_stored_validators_and_stores_no_cookie() {
        let stored = resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"v1\""),
                ("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ=="),
            ],
        );
        let not_modified = resp(
            304,
            &[
                ("etag", "\"other\""),
                ("content-md5", "b3RoZXI="),
                ("set-cookie", "session=for-this-client"),
                ("x-new", "2"),
            ],
        );
        let merged = merge_not_modified(&stored, &not_modified.headers);
        assert_eq!(merged.headers["etag"], "\"v1\"");
        assert_eq!(merged.headers["content-md5"], "Q2hlY2sgSW50ZWdyaXR5IQ==");
        assert!(merged.headers.get("set-cookie").is_none(), "never stored");
        assert_eq!(merged.headers["x-new"], "2");
        assert_eq!(fresh(&decide_get(&merged)), Some(60), "still storable");
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
            decide_get(&r),
            Decision::DoNotStore("no-freshness"),
            "302 is not heuristically cacheable: not stored without explicit freshness"
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
            (resp(500, &[("cache-control", "max-age=60")]), "5xx"),
            (resp(302, &[("etag", "\"e\"")]), "no-freshness"),
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

    #[test]
    fn any_final_status_with_explicit_freshness_may_be_stored() {
        for status in [201, 202, 302, 303, 307, 400, 403, 409, 451] {
            let r = resp(status, &[("cache-control", "max-age=60")]);
            assert_eq!(fresh(&decide_get(&r)), Some(60), "{status}");
        }
        for status in [206, 304] {
            let r = resp(status, &[("cache-control", "max-age=60")]);
            assert_eq!(decide_get(&r), Decision::DoNotStore("status"), "{status}");
        }
        let r = resp(503, &[("cache-control", "max-age=60")]);
        assert_eq!(
            decide_get(&r),
            Decision::DoNotStore(SERVER_ERROR),
            "5xx: off by default"
        );
    }

    #[test]
    fn s_maxage_implies_proxy_revalidate_so_nothing_is_served_stale() {
        let r = resp(
            200,
            &[(
                "cache-control",
                "s-maxage=60, stale-while-revalidate=30, stale-if-error=90",
            )],
        );
        assert_eq!(
            decide_get(&r),
            Decision::Store {
                fresh_for: Duration::from_secs(60),
                stale_while_revalidate: 0,
                stale_if_error: 0
            }
        );
        for cc in ["proxy-revalidate", "must-revalidate", "no-cache"] {
            let r = resp(
                200,
                &[(
                    "cache-control",
                    &format!("max-age=60, {cc}, stale-if-error=90"),
                )],
            );
            assert!(
                matches!(
                    decide_get(&r),
                    Decision::Store {
                        stale_if_error: 0,
                        stale_while_revalidate: 0,
                        ..
                    }
                ),
                "{cc}"
            );
        }
    }

    /// Each row: the response's fields, then this cache's decision (seconds fresh, the two
    /// stale windows) or the reason it is not stored.
    #[test]
    fn targeted_fields_take_precedence_in_their_order() {
        type Row<'a> = (
            &'a [(&'a str, &'a str)],
            Result<(u64, u32, u32), &'static str>,
        );
        let rows: &[Row] = &[
            (
                &[
                    ("cache-control", "max-age=10"),
                    ("cdn-cache-control", "max-age=600"),
                ],
                Ok((600, 0, 0)),
            ),
            (
                &[
                    ("cache-control", "max-age=10"),
                    ("cdn-cache-control", "max-age=600"),
                    (
                        "edgenet-cdn-cache-control",
                        "max-age=3600, stale-if-error=60",
                    ),
                ],
                Ok((3600, 0, 60)),
            ),
            // The targeted field replaces Cache-Control whole: its no-store does not count.
            (
                &[
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=60"),
                ],
                Ok((60, 0, 0)),
            ),
            (
                &[
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "no-store"),
                ],
                Err("no-store"),
            ),
            (
                &[
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "private"),
                ],
                Err("private"),
            ),
            // Not a dictionary: ignored, Cache-Control applies.
            (
                &[
                    ("cache-control", "max-age=10"),
                    ("cdn-cache-control", "max-age=("),
                ],
                Ok((10, 0, 0)),
            ),
            // A value of the wrong type: that directive is ignored.
            (
                &[("cdn-cache-control", "max-age=\"60\""), ("etag", "\"e\"")],
                Ok((0, 0, 0)),
            ),
            (
                &[(
                    "cdn-cache-control",
                    "max-age=60, must-revalidate, stale-while-revalidate=9",
                )],
                Ok((60, 0, 0)),
            ),
            (
                &[("cdn-cache-control", "max-age=60, stale-while-revalidate=9")],
                Ok((60, 9, 0)),
            ),
            // Surrogate-Control: untargeted or ours, after the targeted fields.
            (
                &[
                    ("cache-control", "max-age=10"),
                    ("surrogate-control", "max-age=300+60"),
                ],
                Ok((300, 0, 60)),
            ),
            (
                &[
                    ("cache-control", "max-age=10"),
                    ("surrogate-control", "max-age=300;other"),
                ],
                Ok((10, 0, 0)),
            ),
            (
                &[
                    ("cache-control", "max-age=10"),
                    ("surrogate-control", "max-age=300;edgenet, no-store;other"),
                ],
                Ok((300, 0, 0)),
            ),
            (
                &[
                    ("cache-control", "max-age=10"),
                    ("surrogate-control", "no-store-remote"),
                ],
                Err("no-store"),
            ),
            (
                &[
                    ("cache-control", "max-age=10"),
                    ("surrogate-control", "no-store"),
                ],
                Err("no-store"),
            ),
            (
                &[
                    ("surrogate-control", "max-age=5"),
                    ("cdn-cache-control", "max-age=50"),
                ],
                Ok((50, 0, 0)),
            ),
        ];
        for (headers, want) in rows {
            let got = match decide_get(&resp(200, headers)) {
                Decision::Store {
                    fresh_for,
                    stale_while_revalidate,
                    stale_if_error,
                } => Ok((fresh_for.as_secs(), stale_while_revalidate, stale_if_error)),
                Decision::DoNotStore(why) => Err(why),
            };
            assert_eq!(&got, want, "{headers:?}");
        }
        let d = Directives::of(&resp(200, &[("cdn-cache-control", "max-age=5")]).headers);
        assert_eq!(d.source, Some("cdn-cache-control"));
    }

    #[test]
    fn a_conditional_request_is_answered_304_by_etag_then_last_modified_then_date() {
        let h = |fields: &[(&str, &str)]| resp(200, fields).headers.clone();
        let at = |t: &str| httpdate::parse_http_date(t).unwrap();
        let received = at("Mon, 23 Nov 2026 12:00:00 GMT");
        let get = Method::GET;
        let stored = h(&[
            ("etag", "W/\"v1\""),
            ("last-modified", "Mon, 23 Nov 2026 10:00:00 GMT"),
        ]);
        assert!(not_modified(
            &get,
            &h(&[("if-none-match", "\"v0\", \"v1\"")]),
            &stored,
            received
        ));
        assert!(!not_modified(
            &get,
            &h(&[("if-none-match", "\"v2\"")]),
            &stored,
            received
        ));
        assert!(
            !not_modified(
                &get,
                &h(&[
                    ("if-none-match", "\"v2\""),
                    ("if-modified-since", "Mon, 23 Nov 2026 11:00:00 GMT")
                ]),
                &stored,
                received
            ),
            "If-Modified-Since is ignored beside If-None-Match"
        );
        let ims = |t: &str| h(&[("if-modified-since", t)]);
        assert!(not_modified(
            &get,
            &ims("Mon, 23 Nov 2026 10:00:00 GMT"),
            &stored,
            received
        ));
        assert!(!not_modified(
            &get,
            &ims("Mon, 23 Nov 2026 09:59:59 GMT"),
            &stored,
            received
        ));
        // No Last-Modified: its Date decides, then when it was received.
        let dated = h(&[("date", "Mon, 23 Nov 2026 11:00:00 GMT")]);
        assert!(not_modified(
            &get,
            &ims("Mon, 23 Nov 2026 11:00:00 GMT"),
            &dated,
            received
        ));
        assert!(!not_modified(
            &get,
            &ims("Mon, 23 Nov 2026 10:59:00 GMT"),
            &dated,
            received
        ));
        assert!(not_modified(
            &get,
            &ims("Mon, 23 Nov 2026 12:00:00 GMT"),
            &h(&[]),
            received
        ));
        assert!(!not_modified(
            &get,
            &ims("Mon, 23 Nov 2026 11:00:00 GMT"),
            &h(&[]),
            received
        ));
        assert!(!not_modified(
            &Method::POST,
            &ims("Mon, 23 Nov 2026 12:00:00 GMT"),
            &dated,
            received
        ));
        assert!(!not_modified(&get, &ims("not a date"), &dated, received));
    }
}
