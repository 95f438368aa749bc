//! The PoP's HTTP pipeline on Pingora (DESIGN.md section 1): listeners, TLS termination,
//! zone routing, workers, origin pools with health checks, header rules, error pages, the admin
//! listener, metrics, the access log, reloads and draining.
//!
//! `proxy` wires the stages into Pingora's phases; the stages themselves (`router`,
//! `forwarding`, and the crates `edgenet-http`, `edgenet-origin` and `edgenet-rules`) decide
//! from their inputs and do no IO.

pub mod access_log;
pub mod admin;
pub mod anycast;
pub mod backbone;
pub mod forwarding;
pub mod guard;
pub mod header_rules;
pub mod health_check;
pub mod metrics;
pub mod proxy;
pub mod router;
pub mod server;
pub mod shield;
pub mod state;
pub mod tls;
pub mod waf;
pub mod workers;

/// Locks a mutex, taking the value even if a thread panicked while holding it: the node's
/// shared state stays usable (the data behind these locks is never left half-updated).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub use server::{apply_control_zones, load_config, load_config_with, run, run_with, RunOptions};
