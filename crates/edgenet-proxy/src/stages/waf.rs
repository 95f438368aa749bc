//! Stage 6, WAF: a zone's rules (Cloudflare Rules language, compiled at load) evaluated in
//! order against a view of the request; the first terminating match decides.

use std::net::IpAddr;

use edgenet_config::WafAction;
use edgenet_rules::expr::Request;
use http::request::Parts;

use crate::snapshot::ZoneRuntime;

/// Headers indexed per request; a request with more falls back to the header map's lookups.
const INDEXED_HEADERS: usize = 32;

/// A request head as the Rules language sees it.
///
/// Rules read headers by name many times per request (a hundred rules may ask for the
/// User-Agent twenty times); the header map would parse and hash the name each time, so the
/// view indexes the headers once, in order, and answers by comparing names.
pub struct RequestView<'a> {
    /// The head.
    pub req: &'a Parts,
    /// The request target as sent (`http.request.full_uri`'s path and query).
    pub target: &'a [u8],
    /// The Host (or :authority) without port handling: as sent.
    pub host: &'a [u8],
    /// The client address.
    pub ip: IpAddr,
    /// Over TLS.
    pub ssl: bool,
    /// The TLS client's JA4 fingerprint.
    pub ja4: Option<&'a str>,
    /// The target as sent, when normalisation changed it (`raw.http.request.*`).
    pub original: Option<&'a super::url::Original>,
    /// (name, value, first value of its name), in order.
    headers: [(&'a [u8], &'a [u8], bool); INDEXED_HEADERS],
    indexed: usize,
    /// More headers than the index holds: use the header map.
    overflow: bool,
}

impl<'a> RequestView<'a> {
    /// The view of `req` (its target as sent: `target`) from `ip`.
    pub fn new(req: &'a Parts, target: &'a [u8], host: &'a [u8], ip: IpAddr, ssl: bool) -> Self {
        let mut headers = [(&b""[..], &b""[..], false); INDEXED_HEADERS];
        let mut indexed = 0;
        let mut overflow = false;
        let mut previous: Option<&http::HeaderName> = None;
        for (name, value) in req.headers.iter() {
            if indexed == INDEXED_HEADERS {
                overflow = true;
                break;
            }
            let first = previous != Some(name);
            headers[indexed] = (name.as_str().as_bytes(), value.as_bytes(), first);
            previous = Some(name);
            indexed += 1;
        }
        RequestView {
            req,
            target,
            host,
            ip,
            ssl,
            ja4: None,
            original: None,
            headers,
            indexed,
            overflow,
        }
    }

    fn indexed(&self) -> &[(&'a [u8], &'a [u8], bool)] {
        &self.headers[..self.indexed]
    }
}

impl Request for RequestView<'_> {
    fn method(&self) -> &[u8] {
        self.req.method.as_str().as_bytes()
    }
    fn uri(&self) -> &[u8] {
        self.target
    }
    fn path(&self) -> &[u8] {
        self.req.uri.path().as_bytes()
    }
    fn query(&self) -> &[u8] {
        self.req.uri.query().unwrap_or("").as_bytes()
    }
    fn raw_uri(&self) -> &[u8] {
        self.original.map_or(self.target, |o| o.target())
    }
    fn raw_path(&self) -> &[u8] {
        self.original.map_or_else(|| self.path(), |o| o.path())
    }
    fn raw_query(&self) -> &[u8] {
        self.original.map_or_else(|| self.query(), |o| o.query())
    }
    fn host(&self) -> &[u8] {
        self.host
    }
    fn version(&self) -> &[u8] {
        match self.req.version {
            http::Version::HTTP_10 => b"HTTP/1.0",
            http::Version::HTTP_2 => b"HTTP/2",
            http::Version::HTTP_3 => b"HTTP/3",
            _ => b"HTTP/1.1",
        }
    }
    fn ip_src(&self) -> IpAddr {
        self.ip
    }
    fn ssl(&self) -> bool {
        self.ssl
    }
    fn header(&self, name: &str, i: usize) -> Option<&[u8]> {
        if self.overflow {
            return self
                .req
                .headers
                .get_all(name)
                .iter()
                .nth(i)
                .map(|v| v.as_bytes());
        }
        let name = name.as_bytes();
        self.indexed()
            .iter()
            .filter(|(n, _, _)| n.len() == name.len() && *n == name)
            .nth(i)
            .map(|(_, v, _)| *v)
    }
    fn ja4(&self) -> &[u8] {
        self.ja4.unwrap_or("").as_bytes()
    }
    fn header_name(&self, i: usize) -> Option<&[u8]> {
        if self.overflow {
            return self
                .req
                .headers
                .keys()
                .nth(i)
                .map(|k| k.as_str().as_bytes());
        }
        self.indexed()
            .iter()
            .filter(|(_, _, first)| *first)
            .nth(i)
            .map(|(n, _, _)| *n)
    }
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on (`allow`: skip the other security checks too).
    Pass {
        /// An `allow` rule matched.
        allowed: bool,
    },
    /// Answer with rule `idx`'s block.
    Block(usize),
}

/// Evaluates the zone's rules in order; `matched` gets `id:action` of each match (for the
/// access log).
pub fn evaluate(
    zone: &ZoneRuntime,
    view: &RequestView<'_>,
    matched: &mut Option<String>,
) -> Verdict {
    for (idx, rule) in zone.config.waf.iter().enumerate() {
        if !rule.expression.matches(view) {
            continue;
        }
        zone.waf_hits[idx].inc();
        let entry = format!("{}:{}", rule.id, rule.action.name());
        match matched {
            Some(m) => {
                m.push(',');
                m.push_str(&entry);
            }
            None => *matched = Some(entry),
        }
        match rule.action {
            WafAction::Block => return Verdict::Block(idx),
            WafAction::Log => {}
            WafAction::Skip => return Verdict::Pass { allowed: false },
            WafAction::Allow => return Verdict::Pass { allowed: true },
        }
    }
    Verdict::Pass { allowed: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().uri("/a?b=c");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn headers_by_name_in_order_with_repeated_names() {
        let req = head(&[
            ("User-Agent", "ua"),
            ("X-Tag", "one"),
            ("Accept", "*/*"),
            ("X-Tag", "two"),
        ]);
        let v = RequestView::new(&req, b"/a?b=c", b"h", IpAddr::from([127, 0, 0, 1]), false);
        assert_eq!(v.header("user-agent", 0), Some(&b"ua"[..]));
        assert_eq!(v.header("x-tag", 0), Some(&b"one"[..]));
        assert_eq!(v.header("x-tag", 1), Some(&b"two"[..]));
        assert_eq!(v.header("x-tag", 2), None);
        assert_eq!(v.header("cookie", 0), None);
        let names: Vec<_> = (0..).map_while(|i| v.header_name(i)).collect();
        assert_eq!(names, [&b"user-agent"[..], b"x-tag", b"accept"]);
    }

    #[test]
    fn more_headers_than_the_index_holds_use_the_map() {
        let many: Vec<(String, String)> = (0..INDEXED_HEADERS + 5)
            .map(|i| (format!("x-h{i}"), format!("v{i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let req = head(&pairs);
        let v = RequestView::new(&req, b"/a?b=c", b"h", IpAddr::from([127, 0, 0, 1]), false);
        let last = format!("x-h{}", INDEXED_HEADERS + 4);
        assert_eq!(
            v.header(&last, 0),
            Some(format!("v{}", INDEXED_HEADERS + 4).as_bytes())
        );
        assert_eq!(
            (0..).map_while(|i| v.header_name(i)).count(),
            INDEXED_HEADERS + 5
        );
    }
}
