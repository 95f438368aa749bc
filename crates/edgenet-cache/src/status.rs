//! The `Cache-Status` response header (RFC 9211): how this PoP's cache handled a request.
//! Pure: the caller says what happened, this writes the field value.

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

#[cfg(test)]
mod tests {
    use super::*;

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
