//! Maintenance events per device and per site, and when their notices go out.
//!
//! - Routine work is announced at least two business days ahead: its window starts no
//!   earlier than the announcement plus two business days (Monday to Friday in the site's time
//!   zone, minus the site's holidays). Emergency work may be shorter and is marked so.
//! - Windows on redundant devices (two devices of one site) are at least 16 hours apart.
//! - Notices go out up to two weeks ahead, no earlier; a newly added routine event is held six
//!   hours first, so that a quick correction pages nobody (emergency events go out at once).
//!   Once an event's first notice is out, a change or a cancellation is notified at once; an
//!   event canceled during its hold is never notified.
//! - Subscribers filter by notice type and by PoP code (`gru` for `gru-b`).
//!
//! Time zones come from the tz database bundled into the binary (no file is read).

use serde::{Deserialize, Serialize};

use crate::site::Site;
use crate::Problem;

/// An hour, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// The least gap between windows on redundant devices.
pub const REDUNDANT_GAP_MS: i64 = 16 * HOUR_MS;
/// How long a new routine event is held before it is notified.
pub const HOLD_MS: i64 = 6 * HOUR_MS;
/// How far ahead notices go out at most.
pub const HORIZON_MS: i64 = 14 * 24 * HOUR_MS;
/// Business days of notice routine work needs.
pub const NOTICE_BUSINESS_DAYS: u32 = 2;

/// Routine or emergency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Planned work, with the full notice.
    Routine,
    /// Work that cannot wait.
    Emergency,
}

/// An event's state, and the type of the notice that tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeType {
    /// Announced.
    Scheduled,
    /// Its window moved.
    Changed,
    /// Called off.
    Canceled,
}

/// A maintenance event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its id.
    pub id: String,
    /// The site's data center code.
    pub site: String,
    /// The device, or none for the whole site.
    #[serde(default)]
    pub device: Option<String>,
    /// Routine or emergency.
    pub urgency: Urgency,
    /// The window's start, Unix milliseconds.
    pub start_ms: i64,
    /// The window's end, Unix milliseconds.
    pub end_ms: i64,
    /// When it was added.
    pub created_ms: i64,
    /// Scheduled, changed or canceled.
    pub state: NoticeType,
    /// When its first notice went out (none yet).
    #[serde(default)]
    pub notified_ms: Option<i64>,
    /// The state its last notice told.
    #[serde(default)]
    pub notified_state: Option<NoticeType>,
}

/// A notice to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The event.
    pub event: String,
    /// What it tells.
    pub kind: NoticeType,
    /// The PoP code of its site.
    pub pop: String,
    /// Whether it is emergency work.
    pub emergency: bool,
}

/// A subscription's filter: notice types and PoP codes (empty: all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Notice types wanted.
    #[serde(default)]
    pub types: Vec<NoticeType>,
    /// PoP codes wanted (`gru`).
    #[serde(default)]
    pub pops: Vec<String>,
}

impl Filter {
    /// Whether `n` passes.
    pub fn wants(&self, n: &Notice) -> bool {
        (self.types.is_empty() || self.types.contains(&n.kind))
            && (self.pops.is_empty() || self.pops.contains(&n.pop))
    }
}

/// The earliest start routine work announced at `at_ms` may have at `site`: two business days
/// later, at the same time of day in the site's zone.
pub fn earliest_routine_start(site: &Site, at_ms: i64) -> Result<i64, String> {
    let tz = zone(site)?;
    let at = jiff::Timestamp::from_millisecond(at_ms).map_err(|e| e.to_string())?;
    let mut t = at.to_zoned(tz);
    let mut counted = 0;
    while counted < NOTICE_BUSINESS_DAYS {
        t = t
            .checked_add(jiff::Span::new().days(1))
            .map_err(|e| e.to_string())?;
        if is_business_day(site, &t) {
            counted += 1;
        }
    }
    Ok(t.timestamp().as_millisecond())
}

fn zone(site: &Site) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZoneDatabase::bundled()
        .get(&site.timezone)
        .map_err(|_| format!("{:?} is not a time zone of the tz database", site.timezone))
}

fn is_business_day(site: &Site, t: &jiff::Zoned) -> bool {
    use jiff::civil::Weekday;
    let weekday = !matches!(t.weekday(), Weekday::Saturday | Weekday::Sunday);
    let date = t.date().to_string();
    weekday && !site.holidays.contains(&date)
}

/// Every problem with `event` at `site`, beside the site's other `events`.
pub fn validate(event: &Event, site: &Site, events: &[Event]) -> Vec<Problem> {
    let mut out = Vec::new();
    if event.end_ms <= event.start_ms {
        out.push(Problem::new("end", "must be after the start"));
    }
    if let Some(d) = &event.device {
        if !site.devices.iter().any(|x| x.name == *d) {
            out.push(Problem::new(
                "device",
                format!("{d:?} is not a device of {}", site.code),
            ));
        }
    }
    if event.urgency == Urgency::Routine {
        match earliest_routine_start(site, event.created_ms) {
            Ok(earliest) if event.start_ms < earliest => out.push(Problem::new(
                "start",
                format!(
                    "routine work needs {NOTICE_BUSINESS_DAYS} business days of notice in {} ({}): it may start at {} at the earliest; mark it emergency if it cannot wait",
                    site.code,
                    site.timezone,
                    jiff::Timestamp::from_millisecond(earliest).map_or(String::new(), |t| t.to_string())
                ),
            )),
            Ok(_) => {}
            Err(e) => out.push(Problem::new("site.timezone", e)),
        }
    }
    // Windows on the site's other devices keep 16 hours away.
    if let Some(device) = &event.device {
        for other in events.iter().filter(|o| {
            o.id != event.id
                && o.site == event.site
                && o.state != NoticeType::Canceled
                && o.device.as_ref().is_some_and(|d| d != device)
        }) {
            let gap = (event.start_ms - other.end_ms).max(other.start_ms - event.end_ms);
            if gap < REDUNDANT_GAP_MS {
                out.push(Problem::new(
                    "start",
                    format!(
                        "within 16 hours of event {} on the redundant device {}: circuits on both would be down together",
                        other.id,
                        other.device.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
    }
    out
}

/// The notices due at `now_ms`: for each event, its first notice once its hold is over and
/// it is within two weeks of its start (none for one canceled before that), then each change
/// of state at once.
pub fn due(events: &[Event], now_ms: i64) -> Vec<Notice> {
    let mut out = Vec::new();
    for e in events {
        let pop = e.site.split('-').next().unwrap_or(&e.site).to_string();
        let notice = |kind| Notice {
            event: e.id.clone(),
            kind,
            pop: pop.clone(),
            emergency: e.urgency == Urgency::Emergency,
        };
        match e.notified_ms {
            None => {
                let held_until = match e.urgency {
                    Urgency::Routine => e.created_ms + HOLD_MS,
                    Urgency::Emergency => e.created_ms,
                };
                let due_at = held_until.max(e.start_ms - HORIZON_MS);
                if e.state != NoticeType::Canceled && now_ms >= due_at && now_ms < e.end_ms {
                    // The first notice tells it as scheduled, whatever changed during the hold.
                    out.push(notice(NoticeType::Scheduled));
                }
            }
            Some(_) => {
                if e.notified_state != Some(e.state) {
                    out.push(notice(e.state));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn site() -> Site {
        serde_json::from_value(json!({
            "code": "gru-b", "facility": {"name": "SP4", "address": "Rua 85"},
            "timezone": "America/Sao_Paulo", "holidays": ["2026-12-25"],
            "dataplanes": ["v1"], "device_diversity": true,
            "devices": [{"name": "edge01", "dataplane": "v1"}, {"name": "edge02", "dataplane": "v1"}]
        }))
        .unwrap()
    }

    /// Unix milliseconds of a civil time in São Paulo (UTC-3).
    fn sp(civil: &str) -> i64 {
        let tz = jiff::tz::TimeZoneDatabase::bundled()
            .get("America/Sao_Paulo")
            .unwrap();
        let dt: jiff::civil::DateTime = civil.parse().unwrap();
        dt.to_zoned(tz).unwrap().timestamp().as_millisecond()
    }

    fn event(
        id: &str,
        device: &str,
        urgency: Urgency,
        created: &str,
        start: &str,
        hours: i64,
    ) -> Event {
        Event {
            id: id.into(),
            site: "gru-b".into(),
            device: Some(device.into()),
            urgency,
            start_ms: sp(start),
            end_ms: sp(start) + hours * HOUR_MS,
            created_ms: sp(created),
            state: NoticeType::Scheduled,
            notified_ms: None,
            notified_state: None,
        }
    }

    #[test]
    fn routine_work_needs_two_business_days_in_the_sites_zone() {
        let s = site();
        // Thursday 10:00 -> Monday 10:00 (Friday and Monday are the two business days).
        assert_eq!(
            earliest_routine_start(&s, sp("2026-12-03T10:00")).unwrap(),
            sp("2026-12-07T10:00")
        );
        // Wednesday 23 December -> Monday 28: Christmas is a holiday at the site.
        assert_eq!(
            earliest_routine_start(&s, sp("2026-12-23T09:00")).unwrap(),
            sp("2026-12-28T09:00")
        );
        let early = event(
            "m1",
            "edge01",
            Urgency::Routine,
            "2026-12-03T10:00",
            "2026-12-07T09:00",
            2,
        );
        let p = validate(&early, &s, &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "start");
        assert!(
            p[0].reason.contains("2 business days") && p[0].reason.contains("2026-12-07T13:00:00Z"),
            "{}",
            p[0].reason
        );
        let emergency = Event {
            urgency: Urgency::Emergency,
            ..early.clone()
        };
        assert!(
            validate(&emergency, &s, &[]).is_empty(),
            "emergency work may be shorter"
        );
        let ok = event(
            "m1",
            "edge01",
            Urgency::Routine,
            "2026-12-03T10:00",
            "2026-12-07T10:00",
            2,
        );
        assert!(validate(&ok, &s, &[]).is_empty());
    }

    #[test]
    fn windows_on_redundant_devices_stay_16_hours_apart() {
        let s = site();
        let a = event(
            "a",
            "edge01",
            Urgency::Routine,
            "2026-12-01T10:00",
            "2026-12-10T00:00",
            4,
        );
        let near = event(
            "b",
            "edge02",
            Urgency::Routine,
            "2026-12-01T10:00",
            "2026-12-10T19:00",
            2,
        );
        let p = validate(&near, &s, std::slice::from_ref(&a));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0]
            .reason
            .contains("within 16 hours of event a on the redundant device edge01"));
        let far = event(
            "b",
            "edge02",
            Urgency::Routine,
            "2026-12-01T10:00",
            "2026-12-10T20:00",
            2,
        );
        assert!(
            validate(&far, &s, std::slice::from_ref(&a)).is_empty(),
            "16 hours after a ends"
        );
        let same_device = event(
            "c",
            "edge01",
            Urgency::Routine,
            "2026-12-01T10:00",
            "2026-12-10T05:00",
            2,
        );
        assert!(
            validate(&same_device, &s, &[a]).is_empty(),
            "the same device is no redundancy question"
        );
    }

    #[test]
    fn notices_wait_for_the_hold_and_the_two_week_horizon() {
        let mut e = event(
            "m",
            "edge01",
            Urgency::Routine,
            "2026-12-01T10:00",
            "2026-12-04T10:00",
            2,
        );
        assert!(
            due(std::slice::from_ref(&e), sp("2026-12-01T15:59")).is_empty(),
            "held six hours"
        );
        assert_eq!(
            due(std::slice::from_ref(&e), sp("2026-12-01T16:00"))[0].kind,
            NoticeType::Scheduled
        );
        // Far ahead: the first notice waits until two weeks before the start.
        let far = event(
            "f",
            "edge01",
            Urgency::Routine,
            "2026-12-01T10:00",
            "2027-01-20T10:00",
            2,
        );
        assert!(due(std::slice::from_ref(&far), sp("2027-01-06T09:59")).is_empty());
        assert_eq!(due(&[far], sp("2027-01-06T10:00")).len(), 1);
        // An emergency goes out at once; a routine event canceled in its hold never does.
        let urgent = event(
            "u",
            "edge01",
            Urgency::Emergency,
            "2026-12-01T10:00",
            "2026-12-01T12:00",
            1,
        );
        let n = due(&[urgent], sp("2026-12-01T10:00"));
        assert!(n[0].emergency && n[0].pop == "gru", "{n:?}");
        let mut canceled = e.clone();
        canceled.state = NoticeType::Canceled;
        assert!(due(&[canceled], sp("2026-12-02T10:00")).is_empty());
        // After the first notice, a change goes out at once, once.
        e.notified_ms = Some(sp("2026-12-01T16:00"));
        e.notified_state = Some(NoticeType::Scheduled);
        assert!(due(std::slice::from_ref(&e), sp("2026-12-01T17:00")).is_empty());
        e.state = NoticeType::Changed;
        assert_eq!(
            due(std::slice::from_ref(&e), sp("2026-12-01T17:00"))[0].kind,
            NoticeType::Changed
        );
        e.notified_state = Some(NoticeType::Changed);
        assert!(due(&[e], sp("2026-12-01T17:01")).is_empty());
    }

    #[test]
    fn subscribers_filter_by_type_and_pop_code() {
        let n = Notice {
            event: "m".into(),
            kind: NoticeType::Canceled,
            pop: "gru".into(),
            emergency: false,
        };
        assert!(Filter::default().wants(&n));
        assert!(Filter {
            types: vec![NoticeType::Canceled],
            pops: vec!["gru".into()]
        }
        .wants(&n));
        assert!(!Filter {
            types: vec![NoticeType::Scheduled],
            pops: vec![]
        }
        .wants(&n));
        assert!(!Filter {
            types: vec![],
            pops: vec!["fra".into()]
        }
        .wants(&n));
    }
}
