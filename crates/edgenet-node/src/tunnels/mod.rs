//! GRE tunnels on the PoP: what the node does for every account's tunnels the control plane
//! streams (`edgenet_protocol::MagicProvision`). Every PoP runs every tunnel, since the
//! customer's endpoint reaches our anycast endpoint at whichever PoP is nearest; each probes
//! it from its own address and reports the health it measures.
//!
//! [`device`]: TUN devices and raw sockets. [`path`]: the packet path (GRE in and out, probes,
//! routing by the account's table) on threads of its own. [`kernel`]: the choice between the
//! kernel's devices and the userspace path. [`driver`]: keeps devices, BGP sessions and
//! tables in step with the streamed tunnels and reports their state. [`magic`]: customer
//! prefixes (Magic Transit): the ingress device, filters and counters. [`cni`]: delivery
//! onto v2 CNIs.

pub mod cni;
pub mod device;
pub mod driver;
pub mod kernel;
pub mod magic;
mod metrics;
pub mod path;

pub use driver::Tunnels;
