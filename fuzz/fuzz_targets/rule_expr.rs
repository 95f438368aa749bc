//! Rule expressions from operators (Cloudflare Rules language): compiling never panics, a
//! refusal points inside the text, and a compiled expression evaluates against a request.
#![no_main]

use std::net::IpAddr;

use edgenet_rules::expr::{Expression, Request};
use libfuzzer_sys::fuzz_target;

struct Req;

impl Request for Req {
    fn method(&self) -> &[u8] {
        b"GET"
    }
    fn uri(&self) -> &[u8] {
        b"/a/b?c=%41+d"
    }
    fn path(&self) -> &[u8] {
        b"/a/b"
    }
    fn query(&self) -> &[u8] {
        b"c=%41+d"
    }
    fn host(&self) -> &[u8] {
        b"example.com"
    }
    fn version(&self) -> &[u8] {
        b"HTTP/2"
    }
    fn ip_src(&self) -> IpAddr {
        IpAddr::from([192, 0, 2, 1])
    }
    fn ssl(&self) -> bool {
        true
    }
    fn header(&self, name: &str, i: usize) -> Option<&[u8]> {
        match (name, i) {
            ("user-agent", 0) => Some(b"curl/8"),
            ("accept", 0) => Some(b"*/*"),
            ("accept", 1) => Some(b"text/html"),
            _ => None,
        }
    }
    fn header_name(&self, i: usize) -> Option<&[u8]> {
        [b"user-agent".as_slice(), b"accept", b"accept"].get(i).copied()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Expression::compile(text) {
        Ok(e) => {
            let _ = e.matches(&Req);
        }
        Err(err) => assert!(err.pos <= text.len(), "{err}"),
    }
});
