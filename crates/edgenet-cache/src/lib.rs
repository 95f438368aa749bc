//! HTTP caching for the PoP (DESIGN.md section 1, stage 8).
//!
//! pingora-cache runs the state machine (lookup, cache lock for collapsed forwarding,
//! revalidation, stale handling); this crate supplies what it leaves to its users: the storage
//! tiers (`memory`), the RFC 9111 decision of what to store and for how long (`policy`, pure),
//! and the `Cache-Status` header (`status`, pure).

pub mod memory;
pub mod policy;

pub use memory::MemoryStore;
pub use policy::{decide, Decision, ZonePolicy};
