//! The stages of a request (DESIGN.md section 1), one module each, in order:
//!
//! ```text
//!  3 request  request head checks: what gets a 400 before anything reads the head
//!  4 zone     Host (and SNI) to zone: 421 / 400 when none serves it
//!  5 shield   L7 DDoS mitigation and rate limits (429 with Retry-After)
//!  6 waf      the zone's rules in the Rules language: block, log, skip, allow
//!  7 worker   a WebAssembly component when a route matches
//!  8 cache    enable, key, hit, store, invalidate (with edgenet-cache)
//!  9 origin   the pool's choice, passive ejection, retries, the Host sent
//! 10 path     an upper tier, a relay PoP, or direct; what a relay may reach
//! 11 respond  error pages, Cache-Status, the access log line
//! ```
//!
//! A stage takes plain values (the `http` crate's request parts, a zone, the time) and
//! returns a decision; none knows the HTTP engine, so a stage is tested without a server and
//! the engine can change under it. The adapter (`crate::adapter`) calls them in this order.
//! Stages 1 and 2 (accept, TLS) are the node's listeners.

pub mod cache;
pub mod origin;
pub mod path;
pub mod request;
pub mod respond;
pub mod shield;
pub mod waf;
pub mod worker;
pub mod zone;

/// A request refused by a stage: the status to answer and a short reason for the error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// The status.
    pub status: u16,
    /// Why, in a few words.
    pub reason: &'static str,
}

impl Reject {
    /// A refusal with `status` and `reason`.
    pub const fn new(status: u16, reason: &'static str) -> Reject {
        Reject { status, reason }
    }
}
