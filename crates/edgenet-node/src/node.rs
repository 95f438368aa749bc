//! The node's state: the pipeline's [`Core`] and what only the node has beside it: the TLS
//! certificate table, the engine's peers, readiness, anycast, interconnects, and where its configuration
//! comes from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use edgenet_proxy::adapter::{Peers, Shared};
use edgenet_proxy::Core;

use crate::admin::auth::AdminKeys;
use crate::anycast::Anycast;
use crate::config::ConfigSource;
use crate::interconnect::Interconnects;
use crate::tls::SniResolver;

/// Everything of one running node.
pub struct Node {
    /// What the pipeline shares.
    pub core: Arc<Core>,
    /// The engine's view of the backbone identity.
    pub peers: Arc<Peers>,
    /// The TLS certificate resolver, swapped on reload.
    pub certs: Arc<SniResolver>,
    /// Set on SIGTERM: `/ready` answers 503 and the node drains.
    pub draining: AtomicBool,
    /// BGP anycast, when configured (set once at start).
    pub anycast: OnceLock<Arc<Anycast>>,
    /// Interconnects, when configured (set once at start).
    pub interconnect: OnceLock<Arc<Interconnects>>,
    /// GRE tunnels, when `[tunnels]` is configured.
    pub tunnels: OnceLock<Arc<crate::tunnels::Tunnels>>,
    /// The file and, when the node follows a control plane, its zones.
    pub source: ConfigSource,
    /// Who may change the node's state through the admin listener.
    pub admin_keys: AdminKeys,
}

impl Node {
    /// The pipeline's state and peers, for the listeners' proxies.
    pub fn shared(&self) -> Shared {
        Shared {
            core: self.core.clone(),
            peers: self.peers.clone(),
        }
    }

    /// Whether the node should get traffic.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }
}
