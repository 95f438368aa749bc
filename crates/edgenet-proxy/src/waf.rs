//! The WAF stage: a zone's rules (Cloudflare Rules language, compiled at load) evaluated in
//! order against a view of the request; the first terminating match decides.

use std::net::IpAddr;

use edgenet_config::WafActionSection;
use edgenet_rules::expr::Request;
use pingora_http::RequestHeader;

use crate::state::ZoneRuntime;

/// The label of an action in metrics and logs.
pub fn action_name(a: WafActionSection) -> &'static str {
    match a {
        WafActionSection::Block => "block",
        WafActionSection::Log => "log",
        WafActionSection::Skip => "skip",
        WafActionSection::Allow => "allow",
    }
}

/// A request head as the Rules language sees it.
pub struct RequestView<'a> {
    /// The head.
    pub req: &'a RequestHeader,
    /// The Host (or :authority) without port handling: as sent.
    pub host: &'a [u8],
    /// The client address.
    pub ip: IpAddr,
    /// Over TLS.
    pub ssl: bool,
}

impl Request for RequestView<'_> {
    fn method(&self) -> &[u8] {
        self.req.method.as_str().as_bytes()
    }
    fn uri(&self) -> &[u8] {
        self.req.raw_path()
    }
    fn path(&self) -> &[u8] {
        self.req.uri.path().as_bytes()
    }
    fn query(&self) -> &[u8] {
        self.req.uri.query().unwrap_or("").as_bytes()
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
        self.req
            .headers
            .get_all(name)
            .iter()
            .nth(i)
            .map(|v| v.as_bytes())
    }
    fn header_name(&self, i: usize) -> Option<&[u8]> {
        self.req
            .headers
            .keys()
            .nth(i)
            .map(|k| k.as_str().as_bytes())
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
        let entry = format!("{}:{}", rule.id, action_name(rule.action));
        match matched {
            Some(m) => {
                m.push(',');
                m.push_str(&entry);
            }
            None => *matched = Some(entry),
        }
        match rule.action {
            WafActionSection::Block => return Verdict::Block(idx),
            WafActionSection::Log => {}
            WafActionSection::Skip => return Verdict::Pass { allowed: false },
            WafActionSection::Allow => return Verdict::Pass { allowed: true },
        }
    }
    Verdict::Pass { allowed: false }
}
