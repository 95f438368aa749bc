//! Deployment diversity: a customer whose circuits all land on one device, or all in a site
//! without device diversity, is warned, with the maintenance windows that would cut it off.

use serde::{Deserialize, Serialize};

use crate::maintenance::{Event, NoticeType};
use crate::site::Site;

/// Where one of the customer's circuits lands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landing {
    /// The interconnect.
    pub interconnect: String,
    /// The site's code.
    pub site: String,
    /// The device.
    pub device: String,
}

/// A diversity warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// What single thing every circuit depends on.
    pub reason: String,
    /// The maintenance events (ids) that would take every circuit down.
    pub windows: Vec<String>,
}

/// The warning for a customer's `circuits`, if every one depends on one device or one site
/// without device diversity; `events` are the maintenance events to name.
pub fn check(circuits: &[Landing], sites: &[Site], events: &[Event]) -> Option<Warning> {
    let first = circuits.first()?;
    let live = |e: &&Event| e.state != NoticeType::Canceled;
    if circuits
        .iter()
        .all(|c| c.site == first.site && c.device == first.device)
    {
        let windows = events
            .iter()
            .filter(live)
            .filter(|e| {
                e.site == first.site && e.device.as_ref().is_none_or(|d| *d == first.device)
            })
            .map(|e| e.id.clone())
            .collect();
        return Some(Warning {
            reason: format!(
                "all {} circuit(s) land on device {} at {}: one device's maintenance takes them all down",
                circuits.len(),
                first.device,
                first.site
            ),
            windows,
        });
    }
    let one_site = circuits.iter().all(|c| c.site == first.site);
    let diverse = sites
        .iter()
        .find(|s| s.code == first.site)
        .is_some_and(|s| s.device_diversity);
    if one_site && !diverse {
        let windows = events
            .iter()
            .filter(live)
            .filter(|e| e.site == first.site && e.device.is_none())
            .map(|e| e.id.clone())
            .collect();
        return Some(Warning {
            reason: format!(
                "all {} circuit(s) are at {}, which has no device diversity",
                circuits.len(),
                first.site
            ),
            windows,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::Urgency;
    use serde_json::json;

    fn site(code: &str, diverse: bool) -> Site {
        serde_json::from_value(
            json!({"code": code, "facility": {"name": "f", "address": "a"},
            "timezone": "UTC", "dataplanes": ["v1"], "device_diversity": diverse,
            "devices": [{"name": "d1", "dataplane": "v1"}, {"name": "d2", "dataplane": "v1"}]}),
        )
        .unwrap()
    }

    fn landing(ic: &str, site: &str, device: &str) -> Landing {
        Landing {
            interconnect: ic.into(),
            site: site.into(),
            device: device.into(),
        }
    }

    fn event(id: &str, site: &str, device: Option<&str>, state: NoticeType) -> Event {
        Event {
            id: id.into(),
            site: site.into(),
            device: device.map(String::from),
            urgency: Urgency::Routine,
            start_ms: 0,
            end_ms: 1,
            created_ms: 0,
            state,
            notified_ms: None,
            notified_state: None,
        }
    }

    #[test]
    fn a_customer_on_one_device_is_warned_with_the_windows_that_cut_it_off() {
        let sites = [site("gru-b", true), site("fra-a", false)];
        let events = [
            event("m1", "gru-b", Some("d1"), NoticeType::Scheduled),
            event("m2", "gru-b", Some("d2"), NoticeType::Scheduled),
            event("m3", "gru-b", None, NoticeType::Changed),
            event("m4", "gru-b", Some("d1"), NoticeType::Canceled),
        ];
        let w = check(
            &[landing("a", "gru-b", "d1"), landing("b", "gru-b", "d1")],
            &sites,
            &events,
        )
        .unwrap();
        assert_eq!(w.reason, "all 2 circuit(s) land on device d1 at gru-b: one device's maintenance takes them all down");
        assert_eq!(
            w.windows,
            ["m1", "m3"],
            "the device's and the site's, not a canceled one"
        );
        assert_eq!(
            check(
                &[landing("a", "gru-b", "d1"), landing("b", "gru-b", "d2")],
                &sites,
                &events
            ),
            None,
            "two devices of a diverse site"
        );
        let w = check(
            &[landing("a", "fra-a", "d1"), landing("b", "fra-a", "d2")],
            &sites,
            &[],
        )
        .unwrap();
        assert!(
            w.reason.contains("fra-a, which has no device diversity"),
            "{}",
            w.reason
        );
        assert_eq!(
            check(
                &[landing("a", "gru-b", "d1"), landing("b", "fra-a", "d1")],
                &sites,
                &[]
            ),
            None
        );
        assert_eq!(check(&[], &sites, &[]), None);
    }
}
