//! The PoP process (`edgenet pop`): the node around the HTTP pipeline of `edgenet-proxy`.
//!
//! [`server`] starts it: the node's state ([`node`]) around its first configuration
//! ([`config`]), Pingora services for the client, backbone and subrequest listeners
//! ([`connections`], [`tls`], with the per-address cap under [`pressure`]) and the admin listener ([`admin`]), background services for
//! origin health checks ([`health`]), backbone probes ([`backbone`]) and SIGHUP reloads, and the
//! signal handling that drains it ([`signals`]). With `[anycast]` it runs a BGP speaker whose
//! announcements a pure controller decides ([`anycast`]); following a control plane, it
//! starts from its last-known-good file and applies each version it receives ([`follow`]).
//! With `[interconnect]` it runs the CNIs of the sites it runs ([`interconnect`]); both run on
//! threads of their own ([`own_thread`]). [`check`] is `edgenet check`.

pub mod admin;
pub mod anycast;
pub mod backbone;
pub mod check;
pub mod config;
pub mod connections;
pub mod follow;
pub mod health;
pub mod interconnect;
pub mod node;
pub mod own_thread;
pub mod pressure;
pub mod server;
pub mod signals;
pub mod tls;
pub mod tunnels;
pub mod upgrade;

pub use follow::pop::Following;

/// Unix milliseconds of `t` (0 before 1970), as reports carry times.
pub fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
pub use node::Node;
pub use server::{run, run_with, RunOptions};
