//! Cloud circuits: AWS Dedicated Direct Connect (1 or 10 Gbps; the customer supplies AWS's
//! LOA and the VLAN id AWS assigned) and Google Cloud Interconnect through a partner VLAN
//! attachment (a pairing key, an interface speed from Google's list, an MTU that must match the
//! attachment's). Google's BGP session exchanges no routes, so traffic over it needs static
//! routes: [`CloudCircuit::needs_static_routes`].

use serde::{Deserialize, Serialize};

use crate::Problem;

/// The speeds of an AWS Dedicated Connection, in Mbit/s.
pub const AWS_SPEEDS_MBPS: &[u32] = &[1_000, 10_000];
/// The capacities of a Google partner VLAN attachment, in Mbit/s.
pub const GOOGLE_SPEEDS_MBPS: &[u32] = &[
    50, 100, 200, 300, 400, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000,
];
/// The MTUs a Google VLAN attachment may have.
pub const GOOGLE_MTUS: &[u16] = &[1440, 1460, 1500, 8896];

/// A cloud circuit as the customer requests it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum CloudCircuit {
    /// AWS Dedicated Direct Connect.
    Aws {
        /// The connection's speed in Mbit/s.
        speed_mbps: u32,
        /// The LOA-CFA AWS issued (a PDF's name or reference), naming our port.
        aws_loa: String,
        /// The VLAN id AWS assigned to the virtual interface.
        vlan: u16,
    },
    /// Google Cloud Interconnect, partner VLAN attachment.
    Google {
        /// The attachment's pairing key (`UUID/REGION/ZONE`).
        pairing_key: String,
        /// The interface speed in Mbit/s.
        speed_mbps: u32,
        /// The MTU, which must equal the attachment's.
        mtu: u16,
    },
}

impl CloudCircuit {
    /// Whether traffic needs static routes (Google's session carries none).
    pub fn needs_static_routes(&self) -> bool {
        matches!(self, CloudCircuit::Google { .. })
    }

    /// Every problem, each with its field path.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match self {
            CloudCircuit::Aws {
                speed_mbps,
                aws_loa,
                vlan,
            } => {
                if !AWS_SPEEDS_MBPS.contains(speed_mbps) {
                    out.push(Problem::new(
                        "speed_mbps",
                        format!("{speed_mbps} is not a Dedicated Connection speed (1000 or 10000)"),
                    ));
                }
                if aws_loa.trim().is_empty() {
                    out.push(Problem::new(
                        "aws_loa",
                        "AWS's Letter of Authorization is required: the cross-connect is ordered with it",
                    ));
                }
                if !(1..=4094).contains(vlan) {
                    out.push(Problem::new(
                        "vlan",
                        format!("{vlan} is not an 802.1Q VLAN id (1 to 4094)"),
                    ));
                }
            }
            CloudCircuit::Google {
                pairing_key,
                speed_mbps,
                mtu,
            } => {
                if let Err(e) = check_pairing_key(pairing_key) {
                    out.push(Problem::new("pairing_key", e));
                }
                if !GOOGLE_SPEEDS_MBPS.contains(speed_mbps) {
                    out.push(Problem::new(
                        "speed_mbps",
                        format!(
                            "{speed_mbps} is not a VLAN attachment capacity ({})",
                            GOOGLE_SPEEDS_MBPS
                                .iter()
                                .map(u32::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                if !GOOGLE_MTUS.contains(mtu) {
                    out.push(Problem::new(
                        "mtu",
                        format!("{mtu} is not an MTU a VLAN attachment has (1440, 1460, 1500, 8896): it must match the attachment's"),
                    ));
                }
            }
        }
        out
    }
}

/// A pairing key: a UUID, a region and an availability domain (`…/us-central1/2`).
fn check_pairing_key(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('/').collect();
    let uuid_ok = parts.first().is_some_and(|u| {
        u.len() == 36
            && u.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    });
    let region_ok = parts.get(1).is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    let domain_ok = parts.get(2).is_some_and(|d| matches!(*d, "1" | "2"));
    if parts.len() == 3 && uuid_ok && region_ok && domain_ok {
        Ok(())
    } else {
        Err(
            "is not a pairing key (UUID/REGION/1 or 2, as the Google Cloud console shows it)"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(v: serde_json::Value) -> Vec<String> {
        let c: CloudCircuit = serde_json::from_value(v).unwrap();
        c.validate().iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn aws_and_google_circuits_are_checked_against_the_providers_rules() {
        let key = "7e51371e-72a3-40b5-b844-2e3efefaee59/us-central1/2";
        assert!(problems(json!({"provider": "aws", "speed_mbps": 10000, "aws_loa": "dxcon-ffx1.pdf", "vlan": 101})).is_empty());
        assert!(problems(
            json!({"provider": "google", "pairing_key": key, "speed_mbps": 500, "mtu": 1500})
        )
        .is_empty());
        assert_eq!(
            problems(json!({"provider": "aws", "speed_mbps": 100, "aws_loa": " ", "vlan": 0})),
            [
                "speed_mbps: 100 is not a Dedicated Connection speed (1000 or 10000)",
                "aws_loa: AWS's Letter of Authorization is required: the cross-connect is ordered with it",
                "vlan: 0 is not an 802.1Q VLAN id (1 to 4094)",
            ]
        );
        assert_eq!(
            problems(json!({"provider": "google", "pairing_key": "nope/us-central1/3", "speed_mbps": 600, "mtu": 9000})),
            [
                "pairing_key: is not a pairing key (UUID/REGION/1 or 2, as the Google Cloud console shows it)",
                "speed_mbps: 600 is not a VLAN attachment capacity (50, 100, 200, 300, 400, 500, 1000, 2000, 5000, 10000, 20000, 50000)",
                "mtu: 9000 is not an MTU a VLAN attachment has (1440, 1460, 1500, 8896): it must match the attachment's",
            ]
        );
        let g: CloudCircuit = serde_json::from_value(
            json!({"provider": "google", "pairing_key": key, "speed_mbps": 50, "mtu": 1440}),
        )
        .unwrap();
        assert!(g.needs_static_routes());
        assert!(serde_json::from_value::<CloudCircuit>(json!({"provider": "azure"})).is_err());
    }
}
