//! An interconnect's status, derived from what its PoP reports of the link: `pending` until
//! the link first comes up; then `active`, or `unhealthy` while the link is down or the optical
//! receive level is below [`MIN_RX_DBM`]. A v1 CNI is operational only with its BGP session
//! established too. Every change is kept, with when and why.

use serde::{Deserialize, Serialize};

use crate::dataplane::Dataplane;

/// The lowest healthy receive light level, in dBm.
pub const MIN_RX_DBM: f64 = -20.0;

/// Whether two receive levels say the same (within half a dB, or both unknown): a PoP's
/// reports differ only by more than that.
pub fn same_level(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x - y).abs() < 0.5,
        (x, y) => x.is_none() && y.is_none(),
    }
}

/// What a PoP reports of an interconnect's link.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkReport {
    /// The link (carrier) is up.
    pub link_up: bool,
    /// The optical receive level, when the optic reports it.
    #[serde(default)]
    pub rx_dbm: Option<f64>,
    /// The CNI's BGP session is established.
    #[serde(default)]
    pub bgp_established: bool,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// An interconnect's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The link has not come up yet.
    Pending,
    /// Up, with light enough.
    Active,
    /// Down, or too little light.
    Unhealthy,
}

/// One change of status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Before.
    pub from: Status,
    /// After.
    pub to: Status,
    /// Why.
    pub reason: String,
    /// Unix milliseconds of the report that changed it.
    pub at_ms: i64,
}

/// An interconnect's status over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusHistory {
    /// The dataplane of its device.
    pub dataplane: Dataplane,
    /// Now.
    pub status: Status,
    /// Whether the CNI carries traffic: active and, on v1, its BGP session established.
    pub operational: bool,
    /// Every change, oldest first.
    pub changes: Vec<StatusChange>,
}

impl StatusHistory {
    /// A new interconnect: pending.
    pub fn new(dataplane: Dataplane) -> StatusHistory {
        StatusHistory {
            dataplane,
            status: Status::Pending,
            operational: false,
            changes: Vec::new(),
        }
    }

    /// Takes a report; the change it made, if any.
    pub fn observe(&mut self, r: &LinkReport) -> Option<&StatusChange> {
        let dark = r.rx_dbm.filter(|dbm| *dbm < MIN_RX_DBM);
        let (to, reason) = match (self.status, r.link_up, dark) {
            (Status::Pending, false, _) => (Status::Pending, String::new()),
            (_, false, _) => (Status::Unhealthy, "the link is down".to_string()),
            (_, true, Some(dbm)) => (
                Status::Unhealthy,
                format!("the receive level is {dbm} dBm, below {MIN_RX_DBM} dBm"),
            ),
            (_, true, None) => (Status::Active, "the link is up".to_string()),
        };
        self.operational =
            to == Status::Active && (self.dataplane != Dataplane::V1 || r.bgp_established);
        if to == self.status {
            return None;
        }
        self.changes.push(StatusChange {
            from: self.status,
            to,
            reason,
            at_ms: r.at_ms,
        });
        self.status = to;
        self.changes.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(link_up: bool, rx_dbm: Option<f64>, bgp: bool, at_ms: i64) -> LinkReport {
        LinkReport {
            link_up,
            rx_dbm,
            bgp_established: bgp,
            at_ms,
        }
    }

    #[test]
    fn pending_until_first_up_then_active_or_unhealthy_with_the_history_kept() {
        let mut h = StatusHistory::new(Dataplane::V1);
        assert!(
            h.observe(&report(false, None, false, 1)).is_none(),
            "still pending"
        );
        assert_eq!(h.status, Status::Pending);
        let c = h
            .observe(&report(true, Some(-3.1), false, 2))
            .unwrap()
            .clone();
        assert_eq!((c.from, c.to), (Status::Pending, Status::Active));
        assert!(!h.operational, "a v1 CNI needs its BGP session");
        h.observe(&report(true, Some(-3.1), true, 3));
        assert!(h.operational);
        let c = h
            .observe(&report(true, Some(-21.5), true, 4))
            .unwrap()
            .clone();
        assert_eq!(c.to, Status::Unhealthy);
        assert_eq!(c.reason, "the receive level is -21.5 dBm, below -20 dBm");
        assert!(!h.operational);
        h.observe(&report(false, None, false, 5));
        assert_eq!(
            h.changes.len(),
            2,
            "unhealthy for another reason is no change"
        );
        h.observe(&report(true, None, true, 6));
        let path: Vec<(Status, i64)> = h.changes.iter().map(|c| (c.to, c.at_ms)).collect();
        assert_eq!(
            path,
            [
                (Status::Active, 2),
                (Status::Unhealthy, 4),
                (Status::Active, 6)
            ]
        );
    }

    #[test]
    fn a_v2_cni_is_operational_without_bgp_and_down_after_up_is_unhealthy() {
        let mut h = StatusHistory::new(Dataplane::V2);
        h.observe(&report(true, None, false, 1));
        assert!(h.operational);
        let c = h.observe(&report(false, None, false, 2)).unwrap();
        assert_eq!(
            (c.to, c.reason.as_str()),
            (Status::Unhealthy, "the link is down")
        );
    }
}
