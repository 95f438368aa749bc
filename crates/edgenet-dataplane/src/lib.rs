//! The dataplane of customer traffic (DESIGN.md section 5): tunnels and the per-account routing
//! table that chooses between them.
//!
//! The pure core builds without IO: `gre` is RFC 2784 encapsulation with the outer IPv4
//! header a raw socket hands over; `vlan` is 802.1Q tagging of Ethernet frames; `health` is
//! the tunnel health-check state machine (healthy, degraded, down by Cloudflare's rules,
//! time passed in); `probe` the probe packets; `table` is the routing table (static and BGP-learnt routes, priorities
//! moved by tunnel health, weighted ECMP by flow); `tunnel` is a GRE tunnel as an account
//! object and its checks. For Magic Transit: `packet` reads the header fields the filters
//! match; `prefix` is a customer's prefix as an account object and the longest-prefix map of
//! whose traffic a packet is; `firewall` the customer's ordered L3/L4 rules; `shield` the
//! built-in SYN, UDP and ICMP flood limits after them; `mtu` fragments what is larger than a
//! tunnel's MTU, or answers ICMP "fragmentation needed". The userspace devices (TUN, raw sockets, TAP and AF_PACKET) and the
//! kernel path through netlink are the node's (`edgenet-node/src/tunnels`).

pub mod firewall;
pub mod gre;
pub mod health;
pub mod mtu;
pub mod packet;
pub mod prefix;
pub mod probe;
pub mod shield;
pub mod table;
pub mod tunnel;
pub mod vlan;
