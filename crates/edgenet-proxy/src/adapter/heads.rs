//! Pingora's request and response heads for the stages (`HeaderEdit`, through Pingora's own
//! methods so its case-preserving header map stays in step), and the PoP's own answers written
//! to a session: a complete uncached response, an error page, a 429.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::ctx::Ctx;
use crate::core::Core;
use crate::header_rules::HeaderEdit;
use crate::stages::respond::{error_page, limited_page, via_index, REQUEST_ID};

macro_rules! impl_header_edit {
    ($t:ty) => {
        impl HeaderEdit for $t {
            fn values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a HeaderValue> {
                self.headers.get_all(name).iter()
            }
            fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
                // Insertion of a valid HeaderName and HeaderValue cannot fail.
                let _ = self.insert_header(name.clone(), value.clone());
            }
            fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
                let _ = self.append_header(name.clone(), value.clone());
            }
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
        }
    };
}

impl_header_edit!(RequestHeader);
impl_header_edit!(ResponseHeader);

/// A complete response that is not cached, with `Retry-After` when given.
pub async fn respond_body(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    retry_after: Option<u64>,
) {
    let Ok(mut resp) = ResponseHeader::build(status, Some(4)) else {
        return;
    };
    let _ = resp.insert_header(CONTENT_TYPE, content_type);
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string());
    let _ = resp.insert_header(http::header::CACHE_CONTROL, "no-store");
    if let Some(secs) = retry_after {
        let _ = resp.insert_header(http::header::RETRY_AFTER, secs.to_string());
    }
    let _ = session.write_response_header(Box::new(resp), false).await;
    let _ = session.write_response_body(Some(body.into()), true).await;
}

/// 429 with Retry-After, naming the limit.
pub async fn respond_limited(core: &Core, session: &mut Session, rule: &str, retry_after: u64) {
    let body = limited_page(rule, &core.name);
    let ctype = "text/plain; charset=utf-8";
    respond_body(session, 429, ctype, body.into_bytes(), Some(retry_after)).await;
}

/// Writes a short plain-text error page naming the PoP and the request id.
pub async fn respond_error(
    core: &Core,
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    reason: &str,
) {
    let body = error_page(status, reason, &core.name, &ctx.req.id);
    let mut resp = match ResponseHeader::build(status, Some(4)) {
        Ok(r) => r,
        Err(_) => return,
    };
    let _ = resp.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8");
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string());
    let _ = resp.insert_header(http::header::CACHE_CONTROL, "no-store");
    if let Ok(v) = HeaderValue::from_str(&ctx.req.id) {
        let _ = resp.insert_header(REQUEST_ID, v);
    }
    let via = &core.via[via_index(session.req_header().version)];
    let _ = resp.insert_header(http::header::VIA, via.clone());
    ctx.log.error.get_or_insert_with(|| reason.to_string());
    // A malformed or misrouted request may have a body we will not read: do not reuse.
    session.set_keepalive(None);
    let is_head = session.req_header().method == http::Method::HEAD;
    if session
        .write_response_header(Box::new(resp), is_head)
        .await
        .is_ok()
        && !is_head
    {
        let _ = session
            .write_response_body(Some(Bytes::from(body)), true)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use crate::forwarding::{prepare_downstream_response, prepare_upstream_request, ClientInfo};
    use http::HeaderValue;
    use pingora_http::{RequestHeader, ResponseHeader};

    fn client(via: &HeaderValue) -> ClientInfo<'_> {
        ClientInfo {
            ip: Some("192.0.2.7".parse().unwrap()),
            proto: "https",
            host: Some("example.com"),
            via,
        }
    }

    /// The forwarding rules on Pingora's own heads: the header map and the case-preserving
    /// map Pingora writes HTTP/1 from stay in step.
    #[test]
    fn pingora_heads_get_forwarding_fields_and_lose_hop_by_hop() {
        let via = crate::forwarding::via_value("1.1", "pop-a");
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("Host", "example.com").unwrap();
        req.insert_header("Connection", "keep-alive, X-Secret")
            .unwrap();
        req.insert_header("X-Secret", "1").unwrap();
        req.insert_header("X-Forwarded-For", "198.51.100.1")
            .unwrap();
        req.insert_header("Via", "1.1 other").unwrap();
        prepare_upstream_request(&mut req, &client(&via), false);
        for gone in ["connection", "x-secret"] {
            assert!(req.headers.get(gone).is_none(), "{gone} should be removed");
        }
        assert_eq!(req.headers["x-forwarded-for"], "198.51.100.1, 192.0.2.7");
        assert_eq!(req.headers["via"], "1.1 other, 1.1 pop-a");
        assert_eq!(req.headers["x-forwarded-proto"], "https");
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(!wire.to_ascii_lowercase().contains("x-secret"), "{wire}");
        assert!(
            wire.contains("Host: example.com"),
            "the client's case is kept: {wire}"
        );

        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-length", "5").unwrap();
        resp.insert_header("connection", "content-length, close")
            .unwrap();
        prepare_downstream_response(&mut resp, &client(&via), false);
        assert_eq!(resp.headers["content-length"], "5");
        assert!(resp.headers.get("connection").is_none());
        assert_eq!(resp.headers["via"], "1.1 pop-a");
    }
}
