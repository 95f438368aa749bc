//! Proxy semantics on the way to the origin and back (RFC 9110 section 7.6, RFC 7239).
//!
//! Removes hop-by-hop fields, adds `Via`, `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded`,
//! and applies the zone's Host and header rules. Framing fields (`Content-Length`,
//! `Transfer-Encoding`) are left to Pingora, which re-frames bodies for each hop itself.

use std::net::IpAddr;

use edgenet_rules::HeaderEdit;
use http::header::{HeaderName, HeaderValue, CONNECTION, UPGRADE};
use pingora_http::{RequestHeader, ResponseHeader};

/// Hop-by-hop fields that never cross the proxy (besides those `Connection` names).
const HOP_BY_HOP: &[&str] = &["keep-alive", "proxy-connection", "te", "trailer"];

/// Removes hop-by-hop fields from `headers` in place. An HTTP/1.1 upgrade (WebSocket) keeps
/// `Connection: upgrade` and `Upgrade` so that it can pass.
fn strip_hop_by_hop(h: &mut impl HeaderEditExt, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = h
        .values(&CONNECTION)
        .flat_map(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|n| !is_framing(n))
        .collect();
    for name in listed {
        if keep_upgrade && name == UPGRADE {
            continue;
        }
        h.remove(&name);
    }
    h.remove(&CONNECTION);
    for name in HOP_BY_HOP {
        h.remove(&HeaderName::from_static(name));
    }
    if keep_upgrade {
        h.set(&CONNECTION, &HeaderValue::from_static("upgrade"));
    } else {
        h.remove(&UPGRADE);
    }
}

/// `Connection: content-length` must not make the proxy drop framing information.
fn is_framing(n: &HeaderName) -> bool {
    n == http::header::CONTENT_LENGTH
        || n == http::header::TRANSFER_ENCODING
        || n == http::header::HOST
}

/// What the request path knows about the client when forwarding.
pub struct ClientInfo<'a> {
    /// The client's IP, if known.
    pub ip: Option<IpAddr>,
    /// `https` or `http`.
    pub proto: &'static str,
    /// The Host the client asked for.
    pub host: Option<&'a str>,
    /// The node's name, for `Via` and `Forwarded: by`.
    pub node: &'a str,
    /// The protocol version the client used, as in `Via` (`1.1`, `2`).
    pub version: &'static str,
}

/// Prepares a request head for the origin.
pub fn prepare_upstream_request(req: &mut RequestHeader, client: &ClientInfo<'_>, upgrade: bool) {
    strip_hop_by_hop(req, upgrade);
    append_via(req, client);
    if let Some(ip) = client.ip {
        let ip_str = ip.to_string();
        append_list(req, "x-forwarded-for", &ip_str);
        let for_ = match ip {
            IpAddr::V4(_) => ip_str,
            IpAddr::V6(_) => format!("\"[{ip_str}]\""),
        };
        let mut fwd = format!("for={for_};proto={}", client.proto);
        if let Some(host) = client.host.filter(|h| is_token_safe(h)) {
            fwd.push_str(";host=");
            fwd.push_str(host);
        }
        append_list(req, "forwarded", &fwd);
    }
    // Set, not appended: the edge is where the client's scheme is known, and a client-sent value
    // must not make an origin believe a plain request was encrypted.
    HeaderEditExt::set(
        req,
        &HeaderName::from_static("x-forwarded-proto"),
        &HeaderValue::from_static(client.proto),
    );
}

/// Prepares a response head for the client.
pub fn prepare_downstream_response(
    resp: &mut ResponseHeader,
    client: &ClientInfo<'_>,
    upgrade: bool,
) {
    strip_hop_by_hop(resp, upgrade);
    append_via(resp, client);
}

fn append_via(h: &mut impl HeaderEditExt, client: &ClientInfo<'_>) {
    append_list(h, "via", &format!("{} {}", client.version, client.node));
}

/// Appends `value` to a comma-separated list field, as one more element.
fn append_list(h: &mut impl HeaderEditExt, name: &'static str, value: &str) {
    let name = HeaderName::from_static(name);
    let existing: Vec<&[u8]> = h.values(&name).map(|v| v.as_bytes()).collect();
    let joined = if existing.is_empty() {
        value.as_bytes().to_vec()
    } else {
        let mut out = existing.join(&b", "[..]);
        out.extend_from_slice(b", ");
        out.extend_from_slice(value.as_bytes());
        out
    };
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.set(&name, &v);
    }
}

fn is_token_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

/// Reading and editing Pingora's request and response heads through their own methods, so the
/// case-preserving map that Pingora keeps for HTTP/1 stays in step with the header map.
pub trait HeaderEditExt {
    /// Every value of `name`.
    fn values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a HeaderValue>;
    /// Replaces every value of `name`.
    fn set(&mut self, name: &HeaderName, value: &HeaderValue);
    /// Appends a value of `name`.
    fn add(&mut self, name: &HeaderName, value: &HeaderValue);
    /// Removes `name`.
    fn remove(&mut self, name: &HeaderName);
}

macro_rules! impl_header_edit {
    ($t:ty) => {
        impl HeaderEditExt for $t {
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

/// Adapts a Pingora head to `edgenet_rules::HeaderEdit`, for the zone's header rules.
pub struct Edit<'a, T: HeaderEditExt>(pub &'a mut T);

impl<T: HeaderEditExt> HeaderEdit for Edit<'_, T> {
    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.0.set(name, value)
    }
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.0.add(name, value)
    }
    fn remove(&mut self, name: &HeaderName) {
        self.0.remove(name)
    }
}

impl_header_edit!(RequestHeader);
impl_header_edit!(ResponseHeader);

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientInfo<'static> {
        ClientInfo {
            ip: Some("192.0.2.7".parse().unwrap()),
            proto: "https",
            host: Some("example.com"),
            node: "pop-a",
            version: "1.1",
        }
    }

    #[test]
    fn request_gets_forwarding_fields_and_loses_hop_by_hop() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("host", "example.com").unwrap();
        req.insert_header("connection", "keep-alive, x-secret")
            .unwrap();
        req.insert_header("x-secret", "1").unwrap();
        req.insert_header("keep-alive", "timeout=5").unwrap();
        req.insert_header("te", "trailers").unwrap();
        req.insert_header("upgrade", "h2c").unwrap();
        req.insert_header("x-forwarded-for", "198.51.100.1")
            .unwrap();
        req.insert_header("x-forwarded-proto", "https").unwrap();
        req.insert_header("via", "1.1 other").unwrap();
        prepare_upstream_request(&mut req, &client(), false);
        for gone in ["connection", "x-secret", "keep-alive", "te", "upgrade"] {
            assert!(req.headers.get(gone).is_none(), "{gone} should be removed");
        }
        assert_eq!(req.headers["x-forwarded-for"], "198.51.100.1, 192.0.2.7");
        assert_eq!(req.headers["via"], "1.1 other, 1.1 pop-a");
        assert_eq!(req.headers["x-forwarded-proto"], "https");
        assert_eq!(
            req.headers["forwarded"],
            "for=192.0.2.7;proto=https;host=example.com"
        );
        assert_eq!(req.headers["host"], "example.com");
    }

    #[test]
    fn ipv6_forwarded_is_quoted_and_spoofed_proto_is_replaced() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-proto", "https").unwrap();
        let c = ClientInfo {
            ip: Some("2001:db8::1".parse().unwrap()),
            proto: "http",
            ..client()
        };
        prepare_upstream_request(&mut req, &c, false);
        assert_eq!(
            req.headers["forwarded"],
            "for=\"[2001:db8::1]\";proto=http;host=example.com"
        );
        assert_eq!(req.headers["x-forwarded-proto"], "http");
    }

    #[test]
    fn upgrade_keeps_connection_upgrade() {
        let mut req = RequestHeader::build("GET", b"/ws", None).unwrap();
        req.insert_header("connection", "Upgrade").unwrap();
        req.insert_header("upgrade", "websocket").unwrap();
        prepare_upstream_request(&mut req, &client(), true);
        assert_eq!(req.headers["connection"], "upgrade");
        assert_eq!(req.headers["upgrade"], "websocket");
    }

    #[test]
    fn connection_cannot_remove_framing() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-length", "5").unwrap();
        resp.insert_header("connection", "content-length, close")
            .unwrap();
        prepare_downstream_response(&mut resp, &client(), false);
        assert_eq!(resp.headers["content-length"], "5");
        assert!(resp.headers.get("connection").is_none());
        assert_eq!(resp.headers["via"], "1.1 pop-a");
    }
}
