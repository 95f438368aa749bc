//! The stages of a request (DESIGN.md section 1), one module each, in order:
//!
//! ```text
//!  3 request  request head checks: what gets a 400 before anything reads the head
//! 3b challenge an ACME HTTP-01 challenge the control plane streamed, answered at once
//!  4 zone     Host (and SNI) to zone: 421 / 400 when none serves it
//!  4b url     the zone's URL normalisation: one spelling of the path for every later stage
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
pub mod challenge;
pub mod origin;
pub mod path;
pub mod request;
pub mod respond;
pub mod shield;
pub mod url;
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

#[cfg(test)]
pub(crate) mod test_support {
    //! What the stages' tests build on: a core, a snapshot of one zone, a request's parts.

    use std::sync::Arc;

    /// A snapshot (version 2) of one zone `z` for `z.test` with `zone_extra` (keys, then
    /// tables) in its table, and the origin server 127.0.0.1:2 last.
    pub(crate) fn snapshot(zone_extra: &str, parts_for: &crate::core::Core) -> crate::Snapshot {
        let text = format!(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\nprotocol = \"http\"\n\
             [[zones]]\nname = \"z\"\nhostnames = [\"z.test\"]\n{zone_extra}\n\
             [[zones.origins.servers]]\naddress = \"127.0.0.1:2\"\n"
        );
        let raw = edgenet_config::parse_toml(&text, "test").unwrap();
        let env = edgenet_config::env::Offline;
        let config = edgenet_config::validate(&raw, std::path::Path::new("."), &env).unwrap();
        parts_for.build(Arc::new(config), 2).unwrap()
    }

    /// A core around a configuration without zones (version 1).
    pub(crate) fn core() -> crate::core::Core {
        let raw = edgenet_config::parse_toml(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\nprotocol = \"http\"\n[access_log]\noutput = \"off\"\n",
            "test",
        )
        .unwrap();
        let env = edgenet_config::env::Offline;
        let config = edgenet_config::validate(&raw, std::path::Path::new("."), &env).unwrap();
        let metrics = crate::metrics::Metrics::new();
        let log = crate::access_log::AccessLogger::start(
            &config.access_log,
            metrics.access_log_dropped.clone(),
        )
        .unwrap();
        crate::core::Core::new(config, log, metrics, None).unwrap()
    }

    /// A GET of `path` for `z.test`.
    pub(crate) fn parts(path: &str) -> http::request::Parts {
        http::Request::builder()
            .uri(path)
            .header("host", "z.test")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }
}
