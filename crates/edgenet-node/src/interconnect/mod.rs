//! Interconnects on the PoP: what the node does for each CNI the control plane streams to it
//! (`edgenet_protocol::CniProvision` for the sites this PoP runs). So far the kernel side of a
//! port through netlink ([`netlink`]): the CNI's /31 and /127 and the MTU on the interface the
//! site maps the port to, and the interface's link state; and the port's receive level
//! ([`optics`]).

pub mod netlink;
pub mod optics;
