//! The `Cache-Status` response header (RFC 9211): how this PoP's cache handled a request.
//! Pure: the caller says what happened ([`Observed`]: where pingora-cache's state machine
//! left the request and what the PoP noted), [`CacheStatus::observe`] decides the parameters
//! and [`CacheStatus::header_value`] writes the field value.

use std::fmt::{self, Write};

/// Why a request went forward to the origin (RFC 9211 section 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// No stored response for the URI.
    UriMiss,
    /// Stored responses for the URI, but none for this request's `Vary` headers.
    VaryMiss,
    /// The stored response was stale and had to be revalidated or refetched.
    Stale,
    /// The cache was not used for this request (method, zone policy, bypass rule).
    Bypass,
    /// The request's own directives (e.g. `Cache-Control: no-cache`) sent it forward.
    Request,
}

impl Forward {
    fn as_str(self) -> &'static str {
        match self {
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Stale => "stale",
            Forward::Bypass => "bypass",
            Forward::Request => "request",
        }
    }
}

/// What happened to one request in the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus<'a> {
    /// Served from the cache (fresh, or stale where allowed).
    pub hit: bool,
    /// Why it went to the origin, if it did.
    pub fwd: Option<Forward>,
    /// The origin's status, when it went forward.
    pub fwd_status: Option<u16>,
    /// The response was stored.
    pub stored: bool,
    /// The response waited for another request's fetch of the same key.
    pub collapsed: bool,
    /// Remaining freshness in seconds (negative when stale).
    pub ttl: Option<i64>,
    /// A short implementation detail (why it was not stored, stale-while-revalidate, ...).
    pub detail: Option<&'a str>,
}

impl CacheStatus<'_> {
    /// The field value for the cache named `node`.
    pub fn header_value(&self, node: &str) -> String {
        let mut out = String::with_capacity(64);
        self.write(node, &mut out).expect("writing to a String");
        out
    }

    fn write(&self, node: &str, out: &mut String) -> fmt::Result {
        out.push_str(node);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(f) = self.fwd {
            write!(out, "; fwd={}", f.as_str())?;
        }
        if let Some(s) = self.fwd_status {
            write!(out, "; fwd-status={s}")?;
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(t) = self.ttl {
            write!(out, "; ttl={t}")?;
        }
        if let Some(d) = self.detail {
            // A token when it can be one, else a quoted string (section 2.8 allows either).
            if d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
            {
                write!(out, "; detail={d}")?;
            } else {
                write!(out, "; detail=\"{}\"", d.replace(['"', '\\'], ""))?;
            }
        }
        Ok(())
    }
}

/// Where the cache's state machine left a request (pingora-cache's `CachePhase`, in this
/// crate's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Served fresh from the cache.
    Hit,
    /// Served stale: `updating` while a background refresh runs (stale-while-revalidate),
    /// else because the origin failed (stale-if-error).
    Stale {
        /// A background refresh is running.
        updating: bool,
    },
    /// Not stored: fetched from the origin.
    Miss,
    /// Stored but stale: refetched.
    Expired,
    /// Stored, stale, revalidated with a 304.
    Revalidated,
    /// Revalidated with a 304 whose response may not be stored.
    RevalidatedNoCache,
    /// The cache stepped aside for this request, with pingora-cache's reason.
    Disabled(&'static str),
    /// The cache was not used.
    Bypass,
}

/// How the cache handled requests, as the `result` label of the node's cache metrics.
pub const RESULTS: [&str; 7] = [
    "hit",
    "miss",
    "expired",
    "revalidated",
    "stale",
    "bypass",
    "uncacheable",
];

/// What is known about a request when its response head goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The zone and method let the cache be used.
    pub enabled: bool,
    /// Where the state machine left it.
    pub phase: Phase,
    /// It waited on another request's fetch of the same key.
    pub collapsed: bool,
    /// Remaining freshness of the stored response in seconds (negative when stale).
    pub ttl: Option<i64>,
    /// A miss while other variants of the URL are stored.
    pub vary_miss: bool,
    /// The request's own `no-cache` sent it forward.
    pub revalidate_by_request: bool,
    /// Why the response was not stored, when the PoP's policy said so.
    pub not_stored: Option<&'static str>,
    /// The status of the response.
    pub status: u16,
}

impl Observed {
    /// The index of [`RESULTS`] this request counts under.
    pub fn result(&self) -> usize {
        if !self.enabled {
            return 5;
        }
        match self.phase {
            Phase::Hit => 0,
            Phase::Miss => 1,
            Phase::Expired => 2,
            Phase::Revalidated | Phase::RevalidatedNoCache => 3,
            Phase::Stale { .. } => 4,
            Phase::Disabled(_) => 6,
            Phase::Bypass => 5,
        }
    }
}

impl CacheStatus<'static> {
    /// The status of a request from what was observed.
    pub fn observe(o: &Observed) -> CacheStatus<'static> {
        let mut s = CacheStatus {
            collapsed: o.collapsed,
            ..CacheStatus::default()
        };
        if !o.enabled {
            s.fwd = Some(Forward::Bypass);
            s.fwd_status = Some(o.status);
            return s;
        }
        // Why a stored response went back to the origin: it was stale, or the client asked.
        let refetched = if o.revalidate_by_request {
            Forward::Request
        } else {
            Forward::Stale
        };
        match o.phase {
            Phase::Hit => {
                s.hit = true;
                s.ttl = o.ttl;
            }
            Phase::Stale { updating } => {
                s.hit = true;
                s.ttl = o.ttl;
                s.detail = Some(if updating {
                    "stale-while-revalidate"
                } else {
                    "stale-if-error"
                });
            }
            Phase::Miss => {
                // Other variants of this URL are stored (this one is not yet, until its body
                // is complete): the request missed on its Vary headers.
                s.fwd = Some(if o.vary_miss {
                    Forward::VaryMiss
                } else {
                    Forward::UriMiss
                });
                s.fwd_status = Some(o.status);
                s.stored = true;
                s.ttl = o.ttl;
            }
            Phase::Expired => {
                s.fwd = Some(refetched);
                s.fwd_status = Some(o.status);
                s.stored = true;
                s.ttl = o.ttl;
            }
            Phase::Revalidated => {
                s.hit = true;
                s.fwd = Some(refetched);
                s.fwd_status = Some(304);
                s.ttl = o.ttl;
            }
            Phase::RevalidatedNoCache => {
                s.fwd = Some(Forward::Stale);
                s.fwd_status = Some(304);
                s.detail = o.not_stored;
            }
            Phase::Disabled(reason) => {
                s.fwd = Some(Forward::UriMiss);
                s.fwd_status = Some(o.status);
                s.detail = Some(o.not_stored.unwrap_or(reason));
            }
            Phase::Bypass => {
                s.fwd = Some(Forward::Bypass);
                s.fwd_status = Some(o.status);
            }
        }
        s
    }
}

/// The `Cache-Status` value to send: this cache's entry appended to those of the caches nearer
/// the origin (an upper tier's, or the origin's own), as RFC 9211 section 2 orders them.
pub fn append(upstream: Option<&str>, ours: &str) -> String {
    match upstream {
        Some(u) if !u.is_empty() => format!("{u}, {ours}"),
        _ => ours.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(phase: Phase) -> Observed {
        Observed {
            enabled: true,
            phase,
            collapsed: false,
            ttl: Some(60),
            vary_miss: false,
            revalidate_by_request: false,
            not_stored: None,
            status: 200,
        }
    }

    #[test]
    fn each_phase_reads_as_rfc_9211_says() {
        let v = |o: Observed| CacheStatus::observe(&o).header_value("p");
        assert_eq!(v(observed(Phase::Hit)), "p; hit; ttl=60");
        assert_eq!(
            v(observed(Phase::Miss)),
            "p; fwd=uri-miss; fwd-status=200; stored; ttl=60"
        );
        assert_eq!(
            v(Observed {
                vary_miss: true,
                ..observed(Phase::Miss)
            }),
            "p; fwd=vary-miss; fwd-status=200; stored; ttl=60"
        );
        assert_eq!(
            v(observed(Phase::Expired)),
            "p; fwd=stale; fwd-status=200; stored; ttl=60"
        );
        assert_eq!(
            v(Observed {
                revalidate_by_request: true,
                ..observed(Phase::Revalidated)
            }),
            "p; hit; fwd=request; fwd-status=304; ttl=60"
        );
        assert_eq!(
            v(observed(Phase::Stale { updating: true })),
            "p; hit; ttl=60; detail=stale-while-revalidate"
        );
        assert_eq!(
            v(Observed {
                not_stored: Some("set-cookie"),
                ..observed(Phase::Disabled("uncacheable"))
            }),
            "p; fwd=uri-miss; fwd-status=200; detail=set-cookie"
        );
        assert_eq!(
            v(Observed {
                enabled: false,
                collapsed: true,
                ..observed(Phase::Hit)
            }),
            "p; fwd=bypass; fwd-status=200; collapsed"
        );
        assert_eq!(observed(Phase::Stale { updating: false }).result(), 4);
        assert_eq!(
            Observed {
                enabled: false,
                ..observed(Phase::Hit)
            }
            .result(),
            5
        );
    }

    #[test]
    fn entries_append_towards_the_client() {
        assert_eq!(
            append(Some("up; hit"), "low; fwd=uri-miss"),
            "up; hit, low; fwd=uri-miss"
        );
        assert_eq!(append(Some(""), "low"), "low");
        assert_eq!(append(None, "low"), "low");
    }

    #[test]
    fn formats_as_rfc_9211_examples() {
        let hit = CacheStatus {
            hit: true,
            ttl: Some(376),
            ..Default::default()
        };
        assert_eq!(hit.header_value("pop-a"), "pop-a; hit; ttl=376");
        let miss = CacheStatus {
            fwd: Some(Forward::UriMiss),
            fwd_status: Some(200),
            stored: true,
            collapsed: false,
            ttl: Some(60),
            ..Default::default()
        };
        assert_eq!(
            miss.header_value("pop-a"),
            "pop-a; fwd=uri-miss; fwd-status=200; stored; ttl=60"
        );
        let bypass = CacheStatus {
            fwd: Some(Forward::Bypass),
            detail: Some("no store"),
            ..Default::default()
        };
        assert_eq!(
            bypass.header_value("p"),
            "p; fwd=bypass; detail=\"no store\""
        );
    }
}
