//! What the PoP checks on a request head before anything else looks at it (stage 3 of
//! DESIGN.md section 1), and the host names it routes by (stage 4).
//!
//! Pure functions of the parsed head, kept out of the proxy crate so that the fuzzers build
//! them without the proxy's runtime (Pingora, wasmtime).

pub mod host;
pub mod request_check;
