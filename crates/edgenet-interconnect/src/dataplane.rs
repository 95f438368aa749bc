//! What each dataplane carries. v1: GRE to the customer's virtual network, MTU 1500 on the
//! port and 1476 inside GRE (the customer's traffic towards us), optionally one 802.1Q VLAN per
//! port, BFD, LACP bundles. v2: MTU 1500 both ways without GRE, no VLAN (and no QinQ), no BFD,
//! ECMP instead of LACP.

use serde::{Deserialize, Serialize};

/// A device's dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataplane {
    /// GRE, 802.1Q, BFD, LACP.
    V1,
    /// Plain 1500 both ways, ECMP.
    V2,
}

/// The GRE header and outer IPv4 header: 24 bytes.
pub const GRE_OVERHEAD: u16 = 24;

impl Dataplane {
    /// The MTU on the port.
    pub fn port_mtu(self) -> u16 {
        1500
    }

    /// The largest packet the customer may send towards us: inside GRE on v1.
    pub fn max_customer_mtu(self) -> u16 {
        match self {
            Dataplane::V1 => self.port_mtu() - GRE_OVERHEAD,
            Dataplane::V2 => self.port_mtu(),
        }
    }

    /// Whether a port may carry one 802.1Q VLAN.
    pub fn vlan(self) -> bool {
        self == Dataplane::V1
    }

    /// Whether BFD runs on its BGP sessions.
    pub fn bfd(self) -> bool {
        self == Dataplane::V1
    }

    /// Whether ports bundle with LACP (v1) or share traffic by ECMP (v2).
    pub fn lacp(self) -> bool {
        self == Dataplane::V1
    }

    /// Its name in documents and errors.
    pub fn name(self) -> &'static str {
        match self {
            Dataplane::V1 => "v1",
            Dataplane::V2 => "v2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dataplane_carries_what_the_product_says() {
        assert_eq!(Dataplane::V1.max_customer_mtu(), 1476);
        assert_eq!(Dataplane::V2.max_customer_mtu(), 1500);
        assert!(Dataplane::V1.vlan() && Dataplane::V1.bfd() && Dataplane::V1.lacp());
        assert!(!Dataplane::V2.vlan() && !Dataplane::V2.bfd() && !Dataplane::V2.lacp());
        let v: Dataplane = serde_json::from_str("\"v2\"").unwrap();
        assert_eq!(v, Dataplane::V2);
    }
}
