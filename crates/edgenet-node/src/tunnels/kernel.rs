//! Which dataplane carries the tunnels: the kernel's GRE devices where it has `ip_gre` (and
//! its 802.1Q devices where it has `8021q`, for tagged ports), else the userspace one
//! ([`super::path`]). [`choose`] probes at start and the driver logs the choice.
//!
//! This kernel has neither module, so the kernel path cannot run here; its netlink messages
//! ([`gre_link`], [`vlan_link`]: `RTM_NEWLINK` with the attributes iproute2 sends, in its
//! order) are built and checked byte for byte against what `ip link add ... type gre` and
//! `type vlan` send (taken with `strace -e write=3`; iproute2 builds the message even where
//! the kernel then refuses it).

use std::net::Ipv4Addr;

use edgenet_config::TunnelMode;

/// The dataplane chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataplane {
    /// TUN devices and raw sockets.
    Userspace,
    /// The kernel's GRE devices.
    Kernel,
}

/// Whether the running kernel has module `name` loaded (or built in with parameters).
fn has_module(name: &str) -> bool {
    std::path::Path::new("/sys/module").join(name).exists()
}

/// Whether the kernel has GRE devices: `ip_gre` is loaded, or its fallback device `gre0`,
/// which it makes in every namespace, is here (a built-in module need not show in
/// `/sys/module`).
pub fn has_gre() -> bool {
    has_module("ip_gre") || std::path::Path::new("/sys/class/net/gre0").exists()
}

/// Whether the kernel has 802.1Q devices: `8021q` is loaded, or its `/proc/net/vlan` is here.
pub fn has_vlan() -> bool {
    has_module("8021q") || std::path::Path::new("/proc/net/vlan").exists()
}

/// The dataplane for `mode` on this kernel.
pub fn choose(mode: TunnelMode) -> anyhow::Result<Dataplane> {
    match (mode, has_gre()) {
        (TunnelMode::Userspace, _) => Ok(Dataplane::Userspace),
        (TunnelMode::Auto, false) => {
            tracing::info!("tunnels: the kernel has no ip_gre: the userspace dataplane carries them");
            Ok(Dataplane::Userspace)
        }
        (TunnelMode::Auto, true) | (TunnelMode::Kernel, true) => {
            tracing::info!("tunnels: the kernel has ip_gre: its GRE devices carry them");
            Ok(Dataplane::Kernel)
        }
        (TunnelMode::Kernel, false) => Err(anyhow::anyhow!(
            "tunnels.mode = \"kernel\": this kernel has no ip_gre (/sys/module/ip_gre, /sys/class/net/gre0); use \"auto\" or \"userspace\""
        )),
    }
}

/// `RTM_NEWLINK`.
const RTM_NEWLINK: u16 = 16;
/// `NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE`.
const CREATE_FLAGS: u16 = 0x0001 | 0x0004 | 0x0200 | 0x0400;
const IFLA_LINK: u16 = 5;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;

/// Netlink attributes, appended with their 4-byte alignment (a link kind goes without the NUL
/// that names carry, as iproute2 sends it).
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
    }

    fn nest(&mut self, kind: u16, inner: Attrs) {
        self.put(kind, &inner.0);
    }

    fn name(&mut self, kind: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(kind, &v);
    }
}

/// An `RTM_NEWLINK` request that creates a link with `attrs`.
fn new_link(seq: u32, attrs: Attrs) -> Vec<u8> {
    let len = 16 + 16 + attrs.0.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&CREATE_FLAGS.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifinfomsg: family AF_UNSPEC, type, index, flags, change: all zero.
    m.extend_from_slice(&[0; 16]);
    m.extend_from_slice(&attrs.0);
    m
}

/// The request for a kernel GRE device `name` from `local` to `remote` with `ttl`, as
/// `ip link add NAME type gre local LOCAL remote REMOTE ttl TTL` sends it (keys, flags, TOS,
/// fwmark and encapsulation zero; path MTU discovery on).
pub fn gre_link(seq: u32, name: &str, local: Ipv4Addr, remote: Ipv4Addr, ttl: u8) -> Vec<u8> {
    const IKEY: u16 = 4;
    const OKEY: u16 = 5;
    const IFLAGS: u16 = 2;
    const OFLAGS: u16 = 3;
    const LOCAL: u16 = 6;
    const REMOTE: u16 = 7;
    const PMTUDISC: u16 = 10;
    const TOS: u16 = 9;
    const TTL: u16 = 8;
    const FWMARK: u16 = 20;
    const ENCAP_TYPE: u16 = 14;
    const ENCAP_FLAGS: u16 = 15;
    const ENCAP_SPORT: u16 = 16;
    const ENCAP_DPORT: u16 = 17;
    let mut data = Attrs(Vec::new());
    data.put(IKEY, &0u32.to_be_bytes());
    data.put(OKEY, &0u32.to_be_bytes());
    data.put(IFLAGS, &0u16.to_be_bytes());
    data.put(OFLAGS, &0u16.to_be_bytes());
    data.put(LOCAL, &local.octets());
    data.put(REMOTE, &remote.octets());
    data.put(PMTUDISC, &[1]);
    data.put(TOS, &[0]);
    data.put(TTL, &[ttl]);
    data.put(FWMARK, &0u32.to_ne_bytes());
    data.put(ENCAP_TYPE, &0u16.to_ne_bytes());
    data.put(ENCAP_FLAGS, &0u16.to_ne_bytes());
    data.put(ENCAP_SPORT, &0u16.to_be_bytes());
    data.put(ENCAP_DPORT, &0u16.to_be_bytes());
    let mut info = Attrs(Vec::new());
    info.put(IFLA_INFO_KIND, b"gre");
    info.nest(IFLA_INFO_DATA, data);
    let mut attrs = Attrs(Vec::new());
    attrs.name(IFLA_IFNAME, name);
    attrs.nest(IFLA_LINKINFO, info);
    new_link(seq, attrs)
}

/// The request for an 802.1Q device `name` with VLAN `vid` on the link of index `parent`, as
/// `ip link add link PARENT name NAME type vlan id VID` sends it.
pub fn vlan_link(seq: u32, parent: u32, name: &str, vid: u16) -> Vec<u8> {
    const IFLA_VLAN_ID: u16 = 1;
    let mut data = Attrs(Vec::new());
    data.put(IFLA_VLAN_ID, &vid.to_ne_bytes());
    let mut info = Attrs(Vec::new());
    info.put(IFLA_INFO_KIND, b"vlan");
    info.nest(IFLA_INFO_DATA, data);
    let mut attrs = Attrs(Vec::new());
    attrs.put(IFLA_LINK, &parent.to_ne_bytes());
    attrs.name(IFLA_IFNAME, name);
    attrs.nest(IFLA_LINKINFO, info);
    new_link(seq, attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes from a hex dump (whitespace ignored).
    fn hex(s: &str) -> Vec<u8> {
        let digits: String = s.split_whitespace().collect();
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    }

    /// What iproute2 6.x sent, from `strace -e trace=sendmsg -e write=3 ip link add gre1 type
    /// gre local 198.51.100.1 remote 203.0.113.1 ttl 64` (sequence number 0x6b103dc0).
    const IP_LINK_ADD_GRE: &str = "
        ac 00 00 00 10 00 05 06  c0 3d 10 6b 00 00 00 00
        00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00
        09 00 03 00 67 72 65 31  00 00 00 00 80 00 12 00
        07 00 01 00 67 72 65 00  74 00 02 00 08 00 04 00
        00 00 00 00 08 00 05 00  00 00 00 00 06 00 02 00
        00 00 00 00 06 00 03 00  00 00 00 00 08 00 06 00
        c6 33 64 01 08 00 07 00  cb 00 71 01 05 00 0a 00
        01 00 00 00 05 00 09 00  00 00 00 00 05 00 08 00
        40 00 00 00 08 00 14 00  00 00 00 00 06 00 0e 00
        00 00 00 00 06 00 0f 00  00 00 00 00 06 00 10 00
        00 00 00 00 06 00 11 00  00 00 00 00";

    /// From `ip link add link veth0 name veth0.100 type vlan id 100` (veth0 of index 3).
    const IP_LINK_ADD_VLAN: &str = "
        50 00 00 00 10 00 05 06  c0 3d 10 6b 00 00 00 00
        00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00
        08 00 05 00 03 00 00 00  0e 00 03 00 76 65 74 68
        30 2e 31 30 30 00 00 00  18 00 12 00 08 00 01 00
        76 6c 61 6e 0c 00 02 00  06 00 01 00 64 00 00 00";

    #[test]
    fn the_kernel_paths_messages_are_iproute2s_byte_for_byte() {
        let seq = 0x6b10_3dc0;
        let gre = gre_link(
            seq,
            "gre1",
            "198.51.100.1".parse().unwrap(),
            "203.0.113.1".parse().unwrap(),
            64,
        );
        assert_eq!(gre, hex(IP_LINK_ADD_GRE));
        assert_eq!(vlan_link(seq, 3, "veth0.100", 100), hex(IP_LINK_ADD_VLAN));
    }

    #[test]
    fn kernel_mode_is_refused_without_ip_gre() {
        if has_gre() {
            eprintln!("this kernel has ip_gre: nothing to refuse");
            return;
        }
        let e = choose(TunnelMode::Kernel).unwrap_err().to_string();
        assert!(e.contains("no ip_gre"), "{e}");
        assert_eq!(choose(TunnelMode::Auto).unwrap(), Dataplane::Userspace);
    }
}
