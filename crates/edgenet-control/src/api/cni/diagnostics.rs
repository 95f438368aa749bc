//! A CNI's diagnostics (`/v1/accounts/{account}/cni/cnis/{id}/diagnostics`): what a support
//! case needs. Its PoP reports the port's link and receive level and each CNI's session
//! (`edgenet_protocol::LinkState`); [`timeline`] turns two successive reports into events
//! (status, link, light and BGP changes, NOTIFICATIONs), kept with the interconnect, newest
//! [`KEPT_EVENTS`]; the route shows them with the session's counters and refused prefixes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_interconnect::status::{LinkReport, StatusChange, MIN_RX_DBM};
use edgenet_protocol::CniSession;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::{ok, ApiResult};
use super::*;

/// Events kept per interconnect.
pub const KEPT_EVENTS: usize = 200;

/// One event of an interconnect's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unix milliseconds (the PoP's report).
    pub at_ms: i64,
    /// `status`, `link`, `light`, `bgp` or `notification`.
    pub kind: String,
    /// The CNI it is about, for session events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<String>,
    /// What happened.
    pub detail: String,
}

fn event(at_ms: i64, kind: &str, cni: Option<&str>, detail: String) -> Event {
    Event {
        at_ms,
        kind: kind.into(),
        cni: cni.map(str::to_string),
        detail,
    }
}

fn dark(r: Option<&LinkReport>) -> Option<f64> {
    r.and_then(|r| r.rx_dbm).filter(|d| *d < MIN_RX_DBM)
}

/// The events between the last report (`before`, `sessions_before`) and this one; `status`
/// is the status change this report made, if any.
pub fn timeline(
    before: Option<&LinkReport>,
    sessions_before: &BTreeMap<String, CniSession>,
    now: &LinkReport,
    sessions: &[CniSession],
    status: Option<&StatusChange>,
) -> Vec<Event> {
    let at = now.at_ms;
    let mut out = Vec::new();
    if let Some(c) = status {
        out.push(event(
            at,
            "status",
            None,
            format!("{:?} to {:?}: {}", c.from, c.to, c.reason).to_lowercase(),
        ));
    }
    if before.is_none_or(|b| b.link_up != now.link_up) {
        let what = if now.link_up {
            "the link is up"
        } else {
            "the link is down"
        };
        out.push(event(at, "link", None, what.into()));
    }
    match (dark(before), dark(Some(now)), now.rx_dbm) {
        (None, Some(d), _) => out.push(event(
            at,
            "light",
            None,
            format!("the receive level is {d} dBm, below {MIN_RX_DBM} dBm"),
        )),
        (Some(_), None, Some(d)) => out.push(event(
            at,
            "light",
            None,
            format!("the receive level is back to {d} dBm"),
        )),
        _ => {}
    }
    for s in sessions {
        let last = sessions_before.get(&s.cni);
        if last.is_none_or(|l| l.state != s.state) {
            let detail = match (&s.state[..], &s.last_error) {
                ("established", _) => "BGP session established".to_string(),
                (state, Some(e)) if last.is_some_and(|l| l.state == "established") => {
                    format!("BGP session down ({state}): {e}")
                }
                (state, _) => format!("BGP session {state}"),
            };
            out.push(event(at, "bgp", Some(&s.cni), detail));
        }
        if let Some(n) = &s.last_notification {
            if last.is_none_or(|l| l.last_notification.as_ref() != Some(n)) {
                out.push(event(
                    n.at_ms,
                    "notification",
                    Some(&s.cni),
                    format!(
                        "NOTIFICATION {} {}/{}: {}",
                        n.direction, n.code, n.subcode, n.meaning
                    ),
                ));
            }
        }
    }
    for gone in sessions_before.keys() {
        if !sessions.iter().any(|s| &s.cni == gone) {
            out.push(event(at, "bgp", Some(gone), "BGP session removed".into()));
        }
    }
    out
}

/// Adds `events` to `kept`, keeping the newest [`KEPT_EVENTS`].
pub fn keep(kept: &mut Vec<Event>, events: Vec<Event>) {
    kept.extend(events);
    if kept.len() > KEPT_EVENTS {
        let extra = kept.len() - KEPT_EVENTS;
        kept.drain(..extra);
    }
}

/// A CNI's diagnostics: its interconnect's status and link, its session, its prefixes, and the
/// timeline of what happened to them.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/cnis/{id}/diagnostics",
    responses((status = 200, description = "`{cni, interconnect, status, operational, link: {up, rx_dbm, at_ms}, bgp: {state, bfd, last_error, last_notification}, prefixes: {received, accepted, refused, advertised, installed}, refused: [{prefix, reason}], timeline: [{at_ms, kind, cni, detail}]}`"),
        (status = 404, description = "no such CNI in the account")))]
pub(super) async fn get_diagnostics(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let cni = found(&app, RecordKind::Cni, &id, Owner::Account(&account), "CNI").await?;
    let ic_id = cni.body["spec"]["interconnect"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ic = app
        .store
        .record(RecordKind::Interconnect, &ic_id, Owner::Account(&account))
        .await?
        .map(|r| parse::<Interconnect>(&r))
        .transpose()?;
    let Some(ic) = ic else {
        return Ok(ok(
            StatusCode::OK,
            json!({"cni": id, "interconnect": ic_id, "status": null, "timeline": []}),
        ));
    };
    let session = ic.sessions.get(&id);
    let timeline: Vec<&Event> = ic
        .events
        .iter()
        .filter(|e| e.cni.as_ref().is_none_or(|c| *c == id))
        .collect();
    let link = ic
        .last_report
        .map(|r| json!({"up": r.link_up, "rx_dbm": r.rx_dbm, "at_ms": r.at_ms}));
    let bgp = session.map(|s| {
        json!({"state": s.state, "bfd": s.bfd, "last_error": s.last_error,
            "last_notification": s.last_notification})
    });
    let prefixes = session.map(|s| {
        json!({"received": s.received, "accepted": s.accepted,
            "refused": s.received.saturating_sub(s.accepted), "advertised": s.advertised,
            "installed": s.installed})
    });
    Ok(ok(
        StatusCode::OK,
        json!({"cni": id, "interconnect": ic_id, "status": ic.status.status,
            "operational": ic.status.operational, "link": link, "bgp": bgp,
            "prefixes": prefixes, "refused": session.map(|s| &s.refused), "timeline": timeline}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgenet_interconnect::status::Status;
    use edgenet_protocol::NotificationReport;

    fn report(up: bool, rx: Option<f64>, at_ms: i64) -> LinkReport {
        LinkReport {
            link_up: up,
            rx_dbm: rx,
            bgp_established: false,
            at_ms,
        }
    }

    fn session(state: &str, err: Option<&str>) -> CniSession {
        CniSession {
            cni: "c1".into(),
            state: state.into(),
            last_error: err.map(str::to_string),
            ..CniSession::default()
        }
    }

    #[test]
    fn changes_between_reports_become_events_and_repeats_do_not() {
        let first = report(true, Some(-3.0), 1);
        let change = StatusChange {
            from: Status::Pending,
            to: Status::Active,
            reason: "the link is up".into(),
            at_ms: 1,
        };
        let e = timeline(
            None,
            &BTreeMap::new(),
            &first,
            &[session("established", None)],
            Some(&change),
        );
        let kinds: Vec<&str> = e.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["status", "link", "bgp"]);
        assert_eq!(e[0].detail, "pending to active: the link is up");
        assert_eq!(e[2].detail, "BGP session established");

        let before = BTreeMap::from([("c1".to_string(), session("established", None))]);
        assert!(
            timeline(
                Some(&first),
                &before,
                &report(true, Some(-3.2), 2),
                &[session("established", None)],
                None
            )
            .is_empty(),
            "nothing changed"
        );

        let mut down = session("idle", Some("NOTIFICATION 6/1 sent"));
        down.last_notification = Some(NotificationReport {
            direction: "sent".into(),
            code: 6,
            subcode: 1,
            meaning: "Cease: Maximum Number of Prefixes Reached".into(),
            at_ms: 3,
        });
        let e = timeline(
            Some(&first),
            &before,
            &report(true, Some(-21.5), 3),
            &[down],
            None,
        );
        let details: Vec<&str> = e.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "the receive level is -21.5 dBm, below -20 dBm",
                "BGP session down (idle): NOTIFICATION 6/1 sent",
                "NOTIFICATION sent 6/1: Cease: Maximum Number of Prefixes Reached"
            ]
        );
        assert_eq!(e[1].cni.as_deref(), Some("c1"));

        let e = timeline(Some(&first), &before, &report(false, None, 4), &[], None);
        let details: Vec<&str> = e.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(details, ["the link is down", "BGP session removed"]);
    }

    #[test]
    fn only_the_newest_events_are_kept() {
        let mut kept = Vec::new();
        for i in 0..(KEPT_EVENTS as i64 + 5) {
            keep(&mut kept, vec![event(i, "link", None, "x".into())]);
        }
        assert_eq!(kept.len(), KEPT_EVENTS);
        assert_eq!(kept[0].at_ms, 5);
    }
}
