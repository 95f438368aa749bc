//! Checks on a request head before anything else looks at it (stage 3).
//!
//! Pingora's HTTP/1 parser already refuses invalid header bytes, differing `Content-Length`
//! values and `Content-Length` with `Transfer-Encoding`; these checks add what an edge must also
//! refuse, so that a request whose framing two parties could read differently never reaches an
//! origin (request smuggling).

use http::{HeaderMap, Method, Version};

/// Why a request head is refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The request line and headers are larger than the configured limit.
    HeadTooLarge,
    /// More than one `Content-Length` field.
    DuplicateContentLength,
    /// A `Content-Length` that is not a decimal number.
    InvalidContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthWithTransferEncoding,
    /// A `Transfer-Encoding` other than exactly `chunked`.
    UnsupportedTransferEncoding,
    /// HTTP/1.1 without a Host, or with more than one.
    BadHost,
}

impl Malformed {
    /// A short reason for the error body and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::HeadTooLarge => "request header too large",
            Malformed::DuplicateContentLength => "duplicate Content-Length",
            Malformed::InvalidContentLength => "invalid Content-Length",
            Malformed::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            Malformed::UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
            Malformed::BadHost => "missing or repeated Host",
        }
    }
}

/// The size of a request head as the limit counts it: request line plus `name: value\r\n` lines.
pub fn head_size(method: &Method, target_len: usize, headers: &HeaderMap) -> usize {
    let line = method.as_str().len() + 1 + target_len + 11;
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
        + 2
}

/// Checks a request head; `max_head` is the configured limit in bytes.
pub fn check(
    method: &Method,
    target_len: usize,
    version: Version,
    headers: &HeaderMap,
    max_head: usize,
) -> Result<(), Malformed> {
    if head_size(method, target_len, headers) > max_head {
        return Err(Malformed::HeadTooLarge);
    }
    let mut cls = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let cl = cls.next();
    if cls.next().is_some() {
        return Err(Malformed::DuplicateContentLength);
    }
    if let Some(cl) = cl {
        let b = cl.as_bytes();
        if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
            return Err(Malformed::InvalidContentLength);
        }
    }
    let mut tes = headers.get_all(http::header::TRANSFER_ENCODING).iter();
    if let Some(te) = tes.next() {
        if cl.is_some() {
            return Err(Malformed::ContentLengthWithTransferEncoding);
        }
        if tes.next().is_some() || !te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(Malformed::UnsupportedTransferEncoding);
        }
    }
    if version == Version::HTTP_11 {
        let mut hosts = headers.get_all(http::header::HOST).iter();
        if hosts.next().is_none() || hosts.next().is_some() {
            return Err(Malformed::BadHost);
        }
    } else if headers.get_all(http::header::HOST).iter().count() > 1 {
        return Err(Malformed::BadHost);
    }
    Ok(())
}

/// Whether a raw HTTP/1 request head has a `Content-Length` field. Pingora drops
/// `Content-Length` when `Transfer-Encoding` is present (RFC 9112 section 6.3 allows either),
/// so the raw bytes are the only place left to see that a client sent both.
pub fn raw_has_content_length(raw_head: &[u8]) -> bool {
    raw_head
        .split(|&b| b == b'\n')
        .skip(1)
        .any(|line| line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_content_length_is_found_in_any_case() {
        assert!(super::raw_has_content_length(
            b"POST / HTTP/1.1\r\nHost: a\r\ncOntent-Length: 4\r\n\r\n"
        ));
        assert!(!super::raw_has_content_length(
            b"POST / HTTP/1.1\r\nHost: a\r\nX-Content-Length: 4\r\n\r\n"
        ));
    }

    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn run(pairs: &[(&str, &str)]) -> Result<(), Malformed> {
        check(&Method::POST, 1, Version::HTTP_11, &h(pairs), 4096)
    }

    #[test]
    fn framing_checks() {
        assert_eq!(run(&[("host", "a")]), Ok(()));
        assert_eq!(run(&[("host", "a"), ("content-length", "5")]), Ok(()));
        assert_eq!(
            run(&[
                ("host", "a"),
                ("content-length", "5"),
                ("content-length", "5")
            ]),
            Err(Malformed::DuplicateContentLength)
        );
        assert_eq!(
            run(&[
                ("host", "a"),
                ("content-length", "5"),
                ("content-length", "6")
            ]),
            Err(Malformed::DuplicateContentLength)
        );
        assert_eq!(
            run(&[("host", "a"), ("content-length", "+5")]),
            Err(Malformed::InvalidContentLength)
        );
        assert_eq!(
            run(&[
                ("host", "a"),
                ("content-length", "5"),
                ("transfer-encoding", "chunked")
            ]),
            Err(Malformed::ContentLengthWithTransferEncoding)
        );
        assert_eq!(
            run(&[("host", "a"), ("transfer-encoding", "Chunked")]),
            Ok(())
        );
        assert_eq!(
            run(&[("host", "a"), ("transfer-encoding", "gzip, chunked")]),
            Err(Malformed::UnsupportedTransferEncoding)
        );
        assert_eq!(
            run(&[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            Err(Malformed::UnsupportedTransferEncoding)
        );
    }

    #[test]
    fn host_rules() {
        assert_eq!(run(&[]), Err(Malformed::BadHost));
        assert_eq!(
            run(&[("host", "a"), ("host", "b")]),
            Err(Malformed::BadHost)
        );
        let none = HeaderMap::new();
        assert_eq!(check(&Method::GET, 1, Version::HTTP_2, &none, 4096), Ok(()));
        assert_eq!(
            check(&Method::GET, 1, Version::HTTP_10, &none, 4096),
            Ok(())
        );
    }

    #[test]
    fn head_size_limit() {
        let big = "x".repeat(5000);
        assert_eq!(
            run(&[("host", "a"), ("x-big", &big)]),
            Err(Malformed::HeadTooLarge)
        );
        assert_eq!(
            check(
                &Method::GET,
                5000,
                Version::HTTP_11,
                &h(&[("host", "a")]),
                4096
            ),
            Err(Malformed::HeadTooLarge)
        );
    }
}
