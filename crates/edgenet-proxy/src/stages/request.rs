//! Stage 3, request checks: a head that could be read two ways (smuggling-prone framing), is
//! too large, or breaks the Host rules gets a 400 before any other stage reads it. The rules
//! are `edgenet_http::request_check`'s; this stage applies them to a request's parts.

use edgenet_http::request_check::{self, Malformed};
use http::request::Parts;

use super::Reject;

/// Checks a request head: its parts, the length of its request target as sent, the largest
/// head accepted, and (HTTP/1 only, asked only when the head has `Transfer-Encoding`) the head
/// as received, where a `Content-Length` beside `Transfer-Encoding` is looked for by name in
/// any case.
pub fn check<B: AsRef<[u8]>>(
    parts: &Parts,
    target_len: usize,
    max_head_bytes: usize,
    raw_head: impl FnOnce() -> Option<B>,
) -> Result<(), Reject> {
    request_check::check(
        &parts.method,
        target_len,
        parts.version,
        &parts.headers,
        max_head_bytes,
    )
    .map_err(|m| Reject::new(400, m.reason()))?;
    let smuggled = parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        && raw_head().is_some_and(|raw| request_check::raw_has_content_length(raw.as_ref()));
    if smuggled {
        let m = Malformed::ContentLengthWithTransferEncoding;
        return Err(Reject::new(400, m.reason()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri("/x");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn transfer_encoding_beside_a_raw_content_length_is_refused() {
        let p = parts(&[("host", "a.test"), ("transfer-encoding", "chunked")]);
        let raw = b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        let r = check(&p, 2, 8192, || Some(&raw[..])).unwrap_err();
        assert_eq!(r.status, 400);
        assert_eq!(
            r.reason,
            Malformed::ContentLengthWithTransferEncoding.reason()
        );
        // HTTP/2 has no raw head to look in.
        assert_eq!(check(&p, 2, 8192, || None::<&[u8]>), Ok(()));
    }

    #[test]
    fn the_raw_head_is_read_only_when_transfer_encoding_is_present() {
        let p = parts(&[("host", "a.test")]);
        let asked = std::cell::Cell::new(false);
        assert_eq!(
            check(&p, 2, 8192, || {
                asked.set(true);
                None::<&[u8]>
            }),
            Ok(())
        );
        assert!(!asked.get());
        let r = check(&parts(&[]), 2, 8192, || None::<&[u8]>).unwrap_err();
        assert_eq!(r.status, 400, "HTTP/1.1 without Host");
    }
}
