//! The PoP's HTTP pipeline (DESIGN.md section 1): one module per stage under [`stages`], each
//! deciding from plain inputs (a request's parts, a zone, the time) and knowing nothing of the
//! HTTP engine, and one [`adapter`], the only module that knows Pingora, whose `ProxyHttp`
//! phases call the stages in order.
//!
//! Beside them: [`core`] (the state every request reads: the configuration snapshot, the
//! cache, the shield's counters, the backbone's view), [`snapshot`] (one configuration version,
//! built at load and swapped whole on reload), [`backbone`] (what the PoP measured and the
//! routes it chose), [`metrics`] and the [`access_log`]. Listeners, reloads, health checks and
//! anycast are the node's (`edgenet-node`).

pub mod access_log;
pub mod adapter;
pub mod backbone;
pub mod core;
pub mod forwarding;
pub mod header_rules;
pub mod metrics;
pub mod snapshot;
pub mod stages;

pub use crate::core::Core;
pub use snapshot::{Snapshot, ZoneRuntime};

/// Locks a mutex, taking the value even if a thread panicked while holding it: the node's
/// shared state stays usable (the data behind these locks is never left half-updated).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
