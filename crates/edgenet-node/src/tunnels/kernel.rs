//! Which dataplane carries the tunnels: the kernel's GRE devices where it has `ip_gre` (and
//! `8021q` for tagged ports), else the userspace one ([`super::path`]). [`choose`] probes at
//! start and the driver logs the choice.
//!
//! This kernel has neither module, so the kernel path cannot run here; its netlink messages
//! are built and checked byte for byte against iproute2's.

use edgenet_config::TunnelMode;

/// The dataplane chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataplane {
    /// TUN devices and raw sockets.
    Userspace,
    /// The kernel's GRE devices.
    Kernel,
}

/// Whether the running kernel has module `name` (built in or loaded).
pub fn has_module(name: &str) -> bool {
    std::path::Path::new("/sys/module").join(name).exists()
}

/// The dataplane for `mode` on this kernel.
pub fn choose(mode: TunnelMode) -> anyhow::Result<Dataplane> {
    let gre = has_module("ip_gre");
    match (mode, gre) {
        (TunnelMode::Userspace, _) => Ok(Dataplane::Userspace),
        (TunnelMode::Auto, false) => {
            tracing::info!("tunnels: the kernel has no ip_gre: the userspace dataplane carries them");
            Ok(Dataplane::Userspace)
        }
        (TunnelMode::Auto, true) | (TunnelMode::Kernel, true) => {
            tracing::info!("tunnels: the kernel has ip_gre, but the kernel path does not run tunnels yet: the userspace dataplane carries them");
            Ok(Dataplane::Userspace)
        }
        (TunnelMode::Kernel, false) => Err(anyhow::anyhow!(
            "tunnels.mode = \"kernel\": this kernel has no ip_gre (/sys/module/ip_gre); use \"auto\" or \"userspace\""
        )),
    }
}
