//! Stage 11, respond: the PoP's own answers (error pages naming the PoP and the request id,
//! the 429 of a limit), the status a failed proxy attempt becomes, and at the end of each
//! request its metrics (the access log line is `access_log::Entry`). Response header rules and `Cache-Status` are
//! applied by the adapter with `header_rules` and `edgenet_cache::status`.

use std::time::Duration;

use http::Version;

use crate::metrics::ZoneMetrics;

/// The header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// A short plain-text error page naming the PoP and the request id.
pub fn error_page(status: u16, reason: &str, pop: &str, request_id: &str) -> String {
    let canonical = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {canonical}\n{reason}\npop: {pop}\nrequest id: {request_id}\n")
}

/// The body of a 429 naming the limit (a rate limit's id, or `ddos`).
pub fn limited_page(rule: &str, pop: &str) -> String {
    format!("429 Too Many Requests\nrate limit: {rule}\npop: {pop}\n")
}

/// Why a proxied request failed, in the adapter's words for its engine's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The origin (or an upper tier) answered with an error status the engine turned into an
    /// error.
    Status(u16),
    /// The origin did not connect, answer or take the request in time.
    UpstreamTimeout,
    /// Connecting to or talking with the origin failed otherwise.
    Upstream,
    /// The client went away (or its connection broke).
    ClientGone,
    /// The client stopped sending its body (`limits.body_timeout`).
    ClientTimeout,
    /// The client sent something malformed.
    Client,
    /// Something failed inside the PoP.
    Internal,
}

/// What the client gets for a failure: the status (0: none, the client is gone), the kind of
/// upstream error for the zone's metrics (`metrics::UPSTREAM_ERRORS`), and the page's reason.
pub fn failure(f: Failure) -> (u16, usize, &'static str) {
    let (code, kind) = match f {
        Failure::Status(code) => (code, 3),
        Failure::UpstreamTimeout => (504, 1),
        Failure::Upstream => (502, 2),
        Failure::ClientGone => (0, 3),
        Failure::ClientTimeout => (408, 3),
        Failure::Client => (400, 3),
        Failure::Internal => (500, 3),
    };
    let reason = match code {
        502 => "the origin could not be reached or sent an invalid response",
        504 => "the origin did not answer in time",
        400 => "malformed request",
        408 => "the request body did not arrive in time",
        _ => "the request failed",
    };
    (code, kind, reason)
}

/// The index of a protocol in the request metrics (`metrics::PROTOCOLS`).
pub fn protocol_index(version: Version) -> usize {
    match version {
        Version::HTTP_2 => 1,
        Version::HTTP_10 | Version::HTTP_11 | Version::HTTP_09 => 0,
        _ => 2,
    }
}

/// A protocol as the access log names it.
pub fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_11 => "http/1.1",
        Version::HTTP_10 => "http/1.0",
        _ => "other",
    }
}

/// The index into `Core::via` for a client's protocol version.
pub fn via_index(version: Version) -> usize {
    match version {
        Version::HTTP_10 | Version::HTTP_09 => 0,
        Version::HTTP_2 => 2,
        _ => 1,
    }
}

/// How the cache handled a request, for its metrics: the result (`edgenet_cache::status::
/// RESULTS`), whether it waited on another request's fetch, whether the body came from the
/// cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOutcome {
    /// The result's index.
    pub result: usize,
    /// It waited on another request's fetch.
    pub collapsed: bool,
    /// The body came from the cache.
    pub from_cache: bool,
}

/// Counts a finished request in its zone's metrics (`status` 0: none was sent).
pub fn count(
    metrics: &ZoneMetrics,
    version: Version,
    status: u16,
    elapsed: Duration,
    cache: Option<CacheOutcome>,
    bytes_out: usize,
) {
    metrics.request(protocol_index(version), status);
    metrics.duration.observe(elapsed.as_secs_f64());
    if let Some(c) = cache {
        let served = if c.from_cache { bytes_out as u64 } else { 0 };
        metrics.cache(c.result, c.collapsed, served);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_name_the_pop_and_the_request() {
        assert_eq!(
            error_page(421, "no zone serves this host at this PoP", "p1", "abc"),
            "421 Misdirected Request\nno zone serves this host at this PoP\npop: p1\nrequest id: abc\n"
        );
        assert_eq!(
            limited_page("api", "p1"),
            "429 Too Many Requests\nrate limit: api\npop: p1\n"
        );
    }

    #[test]
    fn failures_become_statuses() {
        assert_eq!(failure(Failure::UpstreamTimeout).0, 504);
        assert_eq!(failure(Failure::Upstream).0, 502);
        assert_eq!(failure(Failure::ClientGone).0, 0, "nobody to answer");
        assert_eq!(failure(Failure::ClientTimeout).0, 408);
        assert_eq!(
            failure(Failure::Status(503)),
            (503, 3, "the request failed")
        );
    }
}
