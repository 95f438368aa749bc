//! The report channel's server side: each PoP's [`Report`]s (`POST /v1/pops/NAME/reports`,
//! one per line, or NATS `edgenet.reports.POP`) are recorded: acknowledgements as the PoP's
//! applied version, object states as the latest state per object and PoP (kept in memory and,
//! when they change, in the store, so a restart knows them), counters in memory. Each object's
//! status is derived from its PoPs' states ([`status`]) and shown in the API beside it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use edgenet_protocol::{
    Counters, ObjectReport, ObjectState, PrefixState, Report, ReportedKind, RuleState,
};
use serde::Serialize;

use crate::api::{lock, unix_ms, ApiError, App};
use crate::store::StoreError;

/// What one PoP last said: each object's state (and when), and its counters.
#[derive(Debug, Clone, Default)]
pub struct PopReports {
    /// By kind and name: the state and the Unix milliseconds of the report.
    pub objects: BTreeMap<(ReportedKind, String), (ObjectReport, i64)>,
    /// The last counters and when.
    pub counters: Option<(Counters, i64)>,
    /// The last Magic Transit report: prefixes, firewall rules, and its Unix milliseconds.
    pub magic: Option<(Vec<PrefixState>, Vec<RuleState>, i64)>,
}

/// Every PoP's reports.
pub type Reports = HashMap<String, PopReports>;

/// The largest report batch read.
const MAX_BATCH: usize = 4 << 20;

/// A PoP's report batch: one JSON report per line.
#[utoipa::path(post, path = "/v1/pops/{name}/reports", request_body(content = String, description = "one JSON report per line: ack, objects, counters", content_type = "application/x-ndjson"),
    responses((status = 200, description = "recorded: `{reports}`"), (status = 400, description = "a line that is not a report, by number"), (status = 404, description = "PoP not registered")))]
pub async fn receive(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    app.authorize(&headers, &["pop"]).await?;
    if body.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a report batch over {MAX_BATCH} bytes"),
        ));
    }
    app.registered_pop(&name).await?;
    let reports = Report::parse_lines(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    let n = reports.len();
    for r in reports {
        record(&app, &name, r).await?;
    }
    Ok(Json(serde_json::json!({"success": true, "errors": [], "messages": [], "result": {"reports": n}}))
        .into_response())
}

/// Records one report from `pop` (over HTTP or NATS).
pub async fn record(app: &App, pop: &str, report: Report) -> Result<(), StoreError> {
    let now = unix_ms();
    match report {
        Report::Ack(ack) => crate::stream::record_ack(app, pop, ack).await,
        Report::Objects {
            objects, complete, ..
        } => {
            let (changed, gone) = {
                let mut all = lock(&app.reports);
                let mine = all.entry(pop.to_string()).or_default();
                let mut changed = Vec::new();
                let kinds: Vec<ReportedKind> = objects.iter().map(|o| o.kind).collect();
                let mut seen = std::collections::HashSet::new();
                for o in objects {
                    let key = (o.kind, o.name.clone());
                    seen.insert(key.clone());
                    let same = mine.objects.get(&key).is_some_and(|(had, _)| *had == o);
                    if !same {
                        changed.push(o.clone());
                    }
                    mine.objects.insert(key, (o, now));
                }
                // A complete report drops the objects of its kinds the PoP no longer runs.
                let mut gone = Vec::new();
                if complete {
                    mine.objects.retain(|key, _| {
                        let keep = seen.contains(key) || !kinds.contains(&key.0);
                        if !keep {
                            gone.push(key.clone());
                        }
                        keep
                    });
                }
                (changed, gone)
            };
            for o in &changed {
                app.store.set_object_report(pop, o, now).await?;
            }
            for (kind, name) in &gone {
                app.store.delete_object_report(pop, *kind, name).await?;
            }
            touch(app, pop, now);
            Ok(())
        }
        Report::Counters { counters, .. } => {
            lock(&app.reports)
                .entry(pop.to_string())
                .or_default()
                .counters = Some((counters, now));
            touch(app, pop, now);
            Ok(())
        }
        Report::Links { at_ms, links } => {
            crate::api::cni::observe_links(app, pop, at_ms, &links).await?;
            touch(app, pop, now);
            Ok(())
        }
        Report::Magic {
            at_ms,
            prefixes,
            rules,
        } => {
            lock(&app.reports).entry(pop.to_string()).or_default().magic =
                Some((prefixes, rules, at_ms));
            touch(app, pop, now);
            Ok(())
        }
        Report::Tunnels { at_ms, tunnels } => {
            crate::api::magic::observe_tunnels(app, pop, at_ms, &tunnels).await?;
            touch(app, pop, now);
            Ok(())
        }
        Report::Keys { certificates } => {
            crate::certificates::observe_keys(app, pop, &certificates).await?;
            touch(app, pop, now);
            Ok(())
        }
        Report::Other => Ok(()),
    }
}

/// A report is a sign of life: the PoP's last-seen time moves.
fn touch(app: &App, pop: &str, now: i64) {
    if let Some(s) = lock(&app.statuses).get_mut(pop) {
        s.last_seen_ms = now;
    }
}

/// An object's status across the PoPs, derived from their reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// `active` (every PoP that reported it runs its current version), `pending` (some do
    /// not yet), `failed` (a PoP refused its current version) or `unknown` (no PoP reported
    /// it).
    pub state: &'static str,
    /// Each PoP's state.
    pub pops: Vec<PopState>,
}

/// One PoP's state of an object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PopState {
    /// The PoP.
    pub pop: String,
    /// `applied`, `refused` or `unknown`.
    pub state: ObjectState,
    /// The configuration version its state is of.
    pub version: i64,
    /// Why, when it does not run the object as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Unix milliseconds of the report.
    pub at_ms: i64,
}

/// The status of the object `kind`/`name` whose current version is `version`.
pub fn status(reports: &Reports, kind: ReportedKind, name: &str, version: i64) -> Status {
    let key = (kind, name.to_string());
    let mut pops: Vec<PopState> = reports
        .iter()
        .filter_map(|(pop, r)| {
            let (o, at) = r.objects.get(&key)?;
            Some(PopState {
                pop: pop.clone(),
                state: o.state,
                version: o.version,
                detail: o.detail.clone(),
                at_ms: *at,
            })
        })
        .collect();
    pops.sort_by(|a, b| a.pop.cmp(&b.pop));
    let current = |p: &PopState| p.version >= version;
    let state = if pops.is_empty() {
        "unknown"
    } else if pops
        .iter()
        .any(|p| p.state == ObjectState::Refused && current(p))
    {
        "failed"
    } else if pops
        .iter()
        .all(|p| p.state == ObjectState::Applied && current(p))
    {
        "active"
    } else {
        "pending"
    };
    Status { state, pops }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: ObjectState, version: i64) -> ObjectReport {
        ObjectReport {
            kind: ReportedKind::Zone,
            name: "shop".into(),
            state,
            version,
            detail: (state == ObjectState::Refused).then(|| "bad origin".into()),
        }
    }

    fn reports(states: &[(&str, ObjectState, i64)]) -> Reports {
        let mut all = Reports::new();
        for (pop, state, version) in states {
            all.entry(pop.to_string()).or_default().objects.insert(
                (ReportedKind::Zone, "shop".into()),
                (report(*state, *version), 1),
            );
        }
        all
    }

    #[test]
    fn an_objects_status_comes_from_its_pops_states() {
        use ObjectState::*;
        let s = |r: &Reports, v| status(r, ReportedKind::Zone, "shop", v).state;
        assert_eq!(s(&Reports::new(), 5), "unknown");
        assert_eq!(
            s(&reports(&[("p1", Applied, 5), ("p2", Applied, 7)]), 5),
            "active"
        );
        assert_eq!(
            s(&reports(&[("p1", Applied, 5), ("p2", Applied, 4)]), 5),
            "pending",
            "p2 runs an older version"
        );
        assert_eq!(
            s(&reports(&[("p1", Applied, 5), ("p2", Refused, 5)]), 5),
            "failed"
        );
        assert_eq!(
            s(&reports(&[("p1", Applied, 5), ("p2", Refused, 4)]), 5),
            "pending",
            "a refusal of an older version is not this version's"
        );
        let full = status(
            &reports(&[("p2", Refused, 5), ("p1", Applied, 5)]),
            ReportedKind::Zone,
            "shop",
            5,
        );
        assert_eq!(full.pops[0].pop, "p1", "in PoP order");
        assert_eq!(full.pops[1].detail.as_deref(), Some("bad origin"));
    }

    #[tokio::test]
    async fn a_complete_report_replaces_the_pops_objects_and_survives_a_restart() {
        let store = crate::store::tests::memory().await;
        let app = App::new(store.clone(), None).await.unwrap();
        let zone = |name: &str, version| ObjectReport {
            name: name.into(),
            ..report(ObjectState::Applied, version)
        };
        let objects = |list: Vec<ObjectReport>| Report::Objects {
            at_ms: 0,
            objects: list,
            complete: true,
        };
        record(&app, "p1", objects(vec![zone("a", 3), zone("b", 3)]))
            .await
            .unwrap();
        record(&app, "p1", objects(vec![zone("a", 4)]))
            .await
            .unwrap();
        let names: Vec<String> = lock(&app.reports)["p1"]
            .objects
            .keys()
            .map(|k| k.1.clone())
            .collect();
        assert_eq!(names, ["a"], "b is gone from p1");
        record(
            &app,
            "p1",
            Report::Counters {
                at_ms: 0,
                counters: Counters {
                    open_connections: 3,
                    ..Counters::default()
                },
            },
        )
        .await
        .unwrap();
        // A new control plane on the same store knows the states (not the counters).
        let again = App::new(store, None).await.unwrap();
        let st = status(&lock(&again.reports), ReportedKind::Zone, "a", 4);
        assert_eq!(st.state, "active");
        assert_eq!(
            status(&lock(&again.reports), ReportedKind::Zone, "b", 3).state,
            "unknown"
        );
    }
}
