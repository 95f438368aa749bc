//! The report channel: one typed message stream from each PoP to the control plane, over
//! HTTP (`POST /v1/pops/NAME/reports`, one JSON [`Report`] per line, a batch per request) or
//! NATS at scale (`edgenet.reports.POP`, one [`Report`] per message). It carries what the PoP
//! runs: the acknowledgement of each configuration version, the state of each object (a zone
//! applied or refused; later an interconnect's link and BGP state, a tunnel's health, the
//! certificate served), and periodic counters. The control plane keeps the latest state per
//! object and PoP and derives each object's status from it.
//!
//! Kinds and states this version does not know (a newer PoP's) decode as `Other` and
//! `Unknown`, so a mixed fleet keeps reporting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Ack;

/// NATS subject prefix of reports: `edgenet.reports.POP`.
pub const REPORTS: &str = "edgenet.reports";

/// The subject a PoP reports on over NATS.
pub fn report_subject(pop: &str) -> String {
    format!("{REPORTS}.{pop}")
}

/// How often a PoP sends its counters (and its object states again, so a restarted control
/// plane learns them).
pub const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// One message of the report stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    /// A configuration version applied or refused.
    Ack(Ack),
    /// The state of objects the PoP runs; each replaces what it said of that object before.
    /// `complete`: these are all the objects of their kinds it runs (others it reported
    /// before are gone).
    Objects {
        /// Unix milliseconds.
        at_ms: i64,
        /// The objects.
        objects: Vec<ObjectReport>,
        /// Whether this is every object the PoP runs.
        #[serde(default)]
        complete: bool,
    },
    /// The links of interconnects whose ports the PoP carries.
    Links {
        /// Unix milliseconds.
        at_ms: i64,
        /// One per interconnect.
        links: Vec<LinkState>,
    },
    /// The health of every account's tunnels as this PoP probes them, and their BGP sessions
    /// here. Always every tunnel the PoP runs (one it no longer mentions is gone).
    Tunnels {
        /// Unix milliseconds.
        at_ms: i64,
        /// One per tunnel.
        tunnels: Vec<TunnelState>,
    },
    /// Magic Transit at this PoP: each customer prefix (announced here or not, and why) and
    /// the counters of its traffic, and each firewall rule's. Always every prefix and rule the
    /// PoP runs.
    Magic {
        /// Unix milliseconds.
        at_ms: i64,
        /// One per prefix.
        prefixes: Vec<PrefixState>,
        /// One per firewall rule.
        #[serde(default)]
        rules: Vec<RuleState>,
    },
    /// The PoP's public keys: its X25519 key that certificates' private keys are sealed to
    /// (base64 of 32 bytes). Sent when it connects and with the periodic reports; the control
    /// plane seals every certificate to it again when it changes.
    Keys {
        /// The X25519 public key.
        certificates: String,
    },
    /// Counters since the PoP started.
    Counters {
        /// Unix milliseconds.
        at_ms: i64,
        /// The counters.
        counters: Counters,
    },
    /// A message type this version does not know.
    #[serde(other)]
    Other,
}

/// What a PoP sees of one interconnect's link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkState {
    /// The interconnect's id.
    pub interconnect: String,
    /// The port's carrier is up.
    pub link_up: bool,
    /// The optic's receive level in dBm, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_dbm: Option<f64>,
    /// The CNI's BGP session is established (every CNI's, when the port carries several).
    #[serde(default)]
    pub bgp_established: bool,
    /// The BGP session of each CNI on the port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<CniSession>,
}

/// What a PoP sees of one CNI's BGP session, for its diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CniSession {
    /// The CNI's id.
    pub cni: String,
    /// The session's state (`idle`, `connect`, `active`, `open_sent`, `open_confirm`,
    /// `established`).
    pub state: String,
    /// Routes the customer sent that the PoP holds.
    #[serde(default)]
    pub received: u64,
    /// Of those, routes the CNI's filter accepted.
    #[serde(default)]
    pub accepted: u64,
    /// Prefixes the PoP announces to the customer.
    #[serde(default)]
    pub advertised: u64,
    /// Accepted routes in the PoP's kernel table (peering CNIs).
    #[serde(default)]
    pub installed: u64,
    /// Some of the refused prefixes, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedPrefix>,
    /// Why the session last went down or failed to come up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last NOTIFICATION sent or received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notification: Option<NotificationReport>,
    /// The BFD session's state, when BFD runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<String>,
}

/// What one PoP sees of one GRE tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TunnelState {
    /// The account.
    pub account: String,
    /// The tunnel's id.
    pub tunnel: String,
    /// `healthy`, `degraded` or `down` (by the health check rules; healthy without checks).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub health: edgenet_dataplane::health::Health,
    /// Unix milliseconds of the last change of health (0: none since the PoP started).
    #[serde(default)]
    pub since_ms: i64,
    /// The rule that made the last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Probes sent since the PoP started.
    #[serde(default)]
    pub probes_sent: u64,
    /// Of those, probes that failed.
    #[serde(default)]
    pub probes_failed: u64,
    /// Packets and bytes in and out of the tunnel since the PoP started.
    #[serde(default)]
    pub packets_in: u64,
    /// Bytes received (inner packets).
    #[serde(default)]
    pub bytes_in: u64,
    /// Packets sent.
    #[serde(default)]
    pub packets_out: u64,
    /// Bytes sent (inner packets).
    #[serde(default)]
    pub bytes_out: u64,
    /// The BGP session over the tunnel at this PoP, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<CniSession>,
    /// The prefixes this PoP learnt over the session and accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learnt: Vec<String>,
}

/// What one PoP does with one customer prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrefixState {
    /// The account.
    pub account: String,
    /// The prefix's id.
    pub prefix: String,
    /// The CIDR.
    pub cidr: String,
    /// Whether this PoP announces it now.
    pub announced: bool,
    /// Why not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Packets to it that the PoP received since it started.
    #[serde(default)]
    pub packets: u64,
    /// Their bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Packets delivered to the customer.
    #[serde(default)]
    pub delivered: u64,
    /// Packets dropped, by reason (`rule`, `syn_challenge`, `udp_destination_rate`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dropped: BTreeMap<String, u64>,
}

/// One firewall rule's counters at one PoP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleState {
    /// The account.
    pub account: String,
    /// The rule's id.
    pub rule: String,
    /// Packets it matched.
    #[serde(default)]
    pub packets: u64,
    /// Their bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Of those, packets it dropped.
    #[serde(default)]
    pub dropped: u64,
}

/// A prefix the filter refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefusedPrefix {
    /// The prefix.
    pub prefix: String,
    /// Why.
    pub reason: String,
}

/// A BGP NOTIFICATION as the diagnostics show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationReport {
    /// `sent` by the PoP or `received` from the customer.
    pub direction: String,
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// What the code and subcode mean (RFC 4271, RFC 4486).
    pub meaning: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// The state of one object at a PoP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectReport {
    /// Its kind.
    pub kind: ReportedKind,
    /// Its name.
    pub name: String,
    /// What the PoP does with it.
    pub state: ObjectState,
    /// The configuration version the state is of.
    pub version: i64,
    /// Why, when it is not running as configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The kinds of object PoPs report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReportedKind {
    /// A zone.
    Zone,
    /// A certificate (by id): applied with the serial it serves as its detail, or refused
    /// with why (its key is not sealed to this PoP's key yet, say).
    Certificate,
    /// A worker script (`ACCOUNT/SCRIPT`): applied with the versions ready here as its detail,
    /// or refused with what is missing (a component not fetched yet, a secret not sealed here).
    Worker,
    /// A kind this version does not know.
    #[serde(other)]
    Other,
}

/// An object's state at a PoP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ObjectState {
    /// Running as configured at `version`.
    Applied,
    /// The configuration at `version` was refused; the PoP runs what it had before.
    Refused,
    /// A state this version does not know.
    #[serde(other)]
    Unknown,
}

/// A PoP's counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counters {
    /// Client connections open now.
    #[serde(default)]
    pub open_connections: u64,
    /// Per zone.
    #[serde(default)]
    pub zones: BTreeMap<String, ZoneCounters>,
}

/// A zone's counters at a PoP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneCounters {
    /// Requests answered.
    #[serde(default)]
    pub requests: u64,
    /// Of which with a 5xx status.
    #[serde(default)]
    pub errors: u64,
    /// Requests served from the cache.
    #[serde(default)]
    pub cache_hits: u64,
}

impl Report {
    /// The report lines of a batch (`POST /v1/pops/NAME/reports`): one JSON report per line;
    /// the first line that is not one is an error naming it.
    pub fn parse_lines(body: &[u8]) -> Result<Vec<Report>, String> {
        body.split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| serde_json::from_slice(l).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect()
    }

    /// A batch as the body of `POST /v1/pops/NAME/reports`.
    pub fn lines(reports: &[Report]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in reports {
            if let Ok(mut line) = serde_json::to_vec(r) {
                line.push(b'\n');
                out.extend_from_slice(&line);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_round_trip_and_unknown_things_from_newer_pops_are_kept_apart() {
        let reports = vec![
            Report::Ack(Ack {
                version: 3,
                ok: true,
                error: None,
            }),
            Report::Objects {
                at_ms: 10,
                complete: true,
                objects: vec![ObjectReport {
                    kind: ReportedKind::Zone,
                    name: "shop".into(),
                    state: ObjectState::Applied,
                    version: 3,
                    detail: None,
                }],
            },
            Report::Counters {
                at_ms: 11,
                counters: Counters::default(),
            },
        ];
        let body = Report::lines(&reports);
        assert_eq!(Report::parse_lines(&body).unwrap(), reports);
        let newer = [
            json!({"type": "tunnel_health", "x": 1}),
            json!({"type": "objects", "at_ms": 1, "objects": [
                {"kind": "tunnel", "name": "t", "state": "degraded", "version": 1}]}),
        ];
        let body: String = newer.iter().map(|l| format!("{l}\n")).collect();
        let parsed = Report::parse_lines(body.as_bytes()).unwrap();
        assert_eq!(parsed[0], Report::Other);
        let Report::Objects { objects, .. } = &parsed[1] else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            (objects[0].kind, objects[0].state),
            (ReportedKind::Other, ObjectState::Unknown)
        );
        let e = Report::parse_lines(b"{\"type\": \"ack\", \"version\": 1, \"ok\": true}\nnope\n")
            .unwrap_err();
        assert!(e.starts_with("line 2: "), "{e}");
    }
}
