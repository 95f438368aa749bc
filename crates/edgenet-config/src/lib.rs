//! The edgenet configuration schema and its validation, shared by the node, the control plane
//! and the CLI.
//!
//! A configuration goes through three steps: TOML text is parsed into [`RawConfig`] (serde, with
//! `deny_unknown_fields`), [`validate`] checks every value and collects every error with its field
//! path, and the result is a [`Config`] whose values the rest of the program never re-checks.
//! Validation reads no file and resolves no name itself: it asks the [`Environment`] it is
//! given ([`System`] on a real machine, a fake in tests). The crate depends on the pure part
//! of `edgenet-bgp` only (no tokio, no sockets).

mod anycast;
pub mod env;
mod error;
mod interconnect;
mod model;
mod schema;
mod validate;

pub use anycast::{Anycast, AnycastCheck, CheckTarget};
pub use env::{Environment, System};
pub use error::{ConfigError, FieldError};
pub use interconnect::Interconnect;
pub use model::*;
pub use schema::*;
pub use validate::{
    load, parse_certs, parse_host_pattern, parse_key, parse_toml, read_certs, read_key, read_raw,
    validate, validate_file,
};
