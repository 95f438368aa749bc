//! What the PoP checks on the bytes and heads clients send, before anything else looks at
//! them (stage 3 of DESIGN.md section 1), and the host names it routes by (stage 4).
//!
//! Pure functions and state machines of the bytes and the parsed head, kept out of the proxy
//! crate so that the fuzzers build them without the proxy's runtime (Pingora, wasmtime):
//! `request_check` (what gets a 400), `host` (Host and SNI names), `normalize` (the one
//! spelling of a path every later stage sees), `h2` (HTTP/2 control-frame floods).

pub mod h2;
pub mod host;
pub mod normalize;
pub mod request_check;
