//! Rules: the Cloudflare Rules language ([`expr`]) that WAF and rate-limiting rules are
//! written in, compiled once and evaluated per request. Header rules live with the proxy
//! (`edgenet-proxy/src/header_rules.rs`), which applies them. [`managed`] is the managed rule
//! set for common attacks, written in that language.

pub mod expr;
pub mod managed;
