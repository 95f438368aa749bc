//! Proxy semantics on the way to the origin and back (RFC 9110 section 7.6, RFC 7239), for
//! stages 9 to 11: removes hop-by-hop fields, adds `Via`, `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `Forwarded`. Framing fields (`Content-Length`,
//! `Transfer-Encoding`) are left to the HTTP engine, which re-frames bodies for each hop.
//!
//! Heads are edited through `header_rules::HeaderEdit`, which the adapter implements for its
//! engine's heads, so these rules know no engine.

use std::net::IpAddr;

use crate::header_rules::HeaderEdit;
use http::header::{HeaderName, HeaderValue, CONNECTION, FORWARDED, UPGRADE, VIA};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Hop-by-hop fields that never cross the proxy (besides those `Connection` names).
const HOP_BY_HOP: [HeaderName; 4] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
];

/// Removes hop-by-hop fields from `headers` in place. An HTTP/1.1 upgrade (WebSocket) keeps
/// `Connection: upgrade` and `Upgrade` so that it can pass.
fn strip_hop_by_hop(h: &mut impl HeaderEdit, keep_upgrade: bool) {
    if h.values(&CONNECTION).next().is_some() {
        let listed: Vec<HeaderName> = h
            .values(&CONNECTION)
            .flat_map(|v| v.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii))
            .filter(|t| !t.is_empty())
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .filter(|n| !is_framing(n))
            .collect();
        for name in listed {
            if keep_upgrade && name == UPGRADE {
                continue;
            }
            h.remove(&name);
        }
        h.remove(&CONNECTION);
    }
    for name in &HOP_BY_HOP {
        h.remove(name);
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
    /// This hop's `Via` element: the client's protocol version and the node's name (`1.1 pop-a`).
    pub via: &'a HeaderValue,
}

/// The `Via` element of a node for a protocol version as `Via` writes it (`1.0`, `1.1`, `2`).
pub fn via_value(version: &str, node: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{version} {node}"))
        .unwrap_or_else(|_| HeaderValue::from_static("1.1 edgenet"))
}

/// Prepares the request head that goes to the origin (a copy of the client's).
pub fn prepare_upstream_request(req: &mut impl HeaderEdit, client: &ClientInfo<'_>, upgrade: bool) {
    strip_hop_by_hop(req, upgrade);
    append_list(req, &VIA, client.via);
    if let Some(ip) = client.ip {
        let ip_str = ip.to_string();
        if let Ok(v) = HeaderValue::from_str(&ip_str) {
            append_list(req, &X_FORWARDED_FOR, &v);
        }
        let mut fwd = String::with_capacity(64);
        fwd.push_str("for=");
        match ip {
            IpAddr::V4(_) => fwd.push_str(&ip_str),
            IpAddr::V6(_) => {
                fwd.push_str("\"[");
                fwd.push_str(&ip_str);
                fwd.push_str("]\"");
            }
        }
        fwd.push_str(";proto=");
        fwd.push_str(client.proto);
        if let Some(host) = client.host.filter(|h| is_token_safe(h)) {
            fwd.push_str(";host=");
            fwd.push_str(host);
        }
        if let Ok(v) = HeaderValue::from_str(&fwd) {
            append_list(req, &FORWARDED, &v);
        }
    }
    // Set, not appended: the edge is where the client's scheme is known, and a client-sent value
    // must not make an origin believe a plain request was encrypted.
    req.set(&X_FORWARDED_PROTO, &HeaderValue::from_static(client.proto));
}

/// Prepares a response head for the client.
pub fn prepare_downstream_response(
    resp: &mut impl HeaderEdit,
    client: &ClientInfo<'_>,
    upgrade: bool,
) {
    strip_hop_by_hop(resp, upgrade);
    append_list(resp, &VIA, client.via);
}

/// Appends `value` to a comma-separated list field, as one more element.
fn append_list(h: &mut impl HeaderEdit, name: &HeaderName, value: &HeaderValue) {
    if h.values(name).next().is_none() {
        h.set(name, value);
        return;
    }
    let mut joined = Vec::with_capacity(128);
    for v in h.values(name) {
        joined.extend_from_slice(v.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.set(name, &v);
    }
}

fn is_token_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientInfo<'static> {
        static VIA: std::sync::LazyLock<HeaderValue> =
            std::sync::LazyLock::new(|| via_value("1.1", "pop-a"));
        ClientInfo {
            ip: Some("192.0.2.7".parse().unwrap()),
            proto: "https",
            host: Some("example.com"),
            via: &VIA,
        }
    }

    #[test]
    fn request_gets_forwarding_fields_and_loses_hop_by_hop() {
        let mut req = http::HeaderMap::new();
        req.insert("host", "example.com".parse().unwrap());
        req.insert("connection", "keep-alive, x-secret".parse().unwrap());
        req.insert("x-secret", "1".parse().unwrap());
        req.insert("keep-alive", "timeout=5".parse().unwrap());
        req.insert("te", "trailers".parse().unwrap());
        req.insert("upgrade", "h2c".parse().unwrap());
        req.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        req.insert("x-forwarded-proto", "https".parse().unwrap());
        req.insert("via", "1.1 other".parse().unwrap());
        prepare_upstream_request(&mut req, &client(), false);
        for gone in ["connection", "x-secret", "keep-alive", "te", "upgrade"] {
            assert!(req.get(gone).is_none(), "{gone} should be removed");
        }
        assert_eq!(req["x-forwarded-for"], "198.51.100.1, 192.0.2.7");
        assert_eq!(req["via"], "1.1 other, 1.1 pop-a");
        assert_eq!(req["x-forwarded-proto"], "https");
        assert_eq!(
            req["forwarded"],
            "for=192.0.2.7;proto=https;host=example.com"
        );
        assert_eq!(req["host"], "example.com");
    }

    #[test]
    fn ipv6_forwarded_is_quoted_and_spoofed_proto_is_replaced() {
        let mut req = http::HeaderMap::new();
        req.insert("x-forwarded-proto", "https".parse().unwrap());
        let c = ClientInfo {
            ip: Some("2001:db8::1".parse().unwrap()),
            proto: "http",
            ..client()
        };
        prepare_upstream_request(&mut req, &c, false);
        assert_eq!(
            req["forwarded"],
            "for=\"[2001:db8::1]\";proto=http;host=example.com"
        );
        assert_eq!(req["x-forwarded-proto"], "http");
    }

    #[test]
    fn upgrade_keeps_connection_upgrade() {
        let mut req = http::HeaderMap::new();
        req.insert("connection", "Upgrade".parse().unwrap());
        req.insert("upgrade", "websocket".parse().unwrap());
        prepare_upstream_request(&mut req, &client(), true);
        assert_eq!(req["connection"], "upgrade");
        assert_eq!(req["upgrade"], "websocket");
    }

    #[test]
    fn connection_cannot_remove_framing() {
        let mut resp = http::HeaderMap::new();
        resp.insert("content-length", "5".parse().unwrap());
        resp.insert("connection", "content-length, close".parse().unwrap());
        prepare_downstream_response(&mut resp, &client(), false);
        assert_eq!(resp["content-length"], "5");
        assert!(resp.get("connection").is_none());
        assert_eq!(resp["via"], "1.1 pop-a");
    }
}
