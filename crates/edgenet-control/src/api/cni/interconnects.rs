//! An account's interconnects (`/v1/accounts/{account}/cni/interconnects`): a direct one
//! takes a free port of the speed asked for, on the site's device where the account has the
//! fewest circuits, and gets its LOA at once; an AWS dedicated connection takes a 10G port
//! too; a Google VLAN attachment rides the partner port. Workflow steps are taken by whoever
//! the token is (the customer orders the cross-connect and approves the configuration
//! document; the operator does the rest). Also the free and occupied slots, the LOA as a PDF,
//! the status with its history, and the diversity warning.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use edgenet_interconnect::diversity::{self, Landing};
use edgenet_interconnect::loa::Loa;
use edgenet_interconnect::maintenance::Event;
use edgenet_interconnect::site::Device;
use edgenet_interconnect::workflow::{Flow, Refused, Stage, Step};
use serde_json::{json, Value};

use super::super::{decode, ok, ApiResult, JsonBody};
use super::*;
use crate::api::unix_ms;

/// An interconnect to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInterconnect {
    /// `direct` or `cloud` (partners submit theirs through `/v1/cni/partner-requests`).
    #[serde(rename = "type")]
    pub kind: InterconnectType,
    /// The site's code.
    pub site: String,
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
    /// The port speed (direct): `10G` or `100G`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "10G")]
    pub speed: Option<Speed>,
    /// The dataplane wanted, when the site offers both.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "v1")]
    pub dataplane: Option<Dataplane>,
    /// The cloud circuit (cloud): `{provider: aws, speed_mbps, aws_loa, vlan}` or
    /// `{provider: google, pairing_key, speed_mbps, mtu}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub cloud: Option<CloudCircuit>,
}

/// How an interconnect is shown: everything but its status history (at `/status`), with
/// the next steps and whose they are.
pub(super) fn view(r: &Record) -> Value {
    let Ok(ic) = serde_json::from_value::<Interconnect>(r.body.clone()) else {
        return json!({"id": r.id, "error": "the stored record does not decode"});
    };
    let next: Vec<Value> = ic
        .workflow
        .next()
        .into_iter()
        .map(|(step, by)| {
            let mut s = to_value(&step);
            s["by"] = to_value(&by);
            s
        })
        .collect();
    json!({
        "id": r.id,
        "name": ic.name,
        "type": ic.kind,
        "site": ic.site,
        "device": ic.device,
        "dataplane": ic.dataplane,
        "slot": ic.slot,
        "speed": ic.speed,
        "partner": ic.partner,
        "cloud": ic.cloud,
        "needs_static_routes": ic.cloud.as_ref().is_some_and(CloudCircuit::needs_static_routes),
        "loa": ic.loa,
        "stage": ic.workflow.stage,
        "next_steps": next,
        "history": ic.workflow.history,
        "status": ic.status.status,
        "operational": ic.status.operational,
        "created_ms": r.created_ms,
        "version": r.version,
    })
}

/// How many of `mine` (the account's interconnects) land on `device` of `site`.
fn load(site: &Site, device: &Device, mine: &[Record]) -> usize {
    mine.iter()
        .filter(|r| {
            r.body["site"] == site.code.as_str() && r.body["device"] == device.name.as_str()
        })
        .count()
}

/// The devices of `site` (of `dataplane` when given), those where the account has the fewest
/// circuits first; ties in the site's order.
fn by_load<'a>(site: &'a Site, mine: &[Record], dataplane: Option<Dataplane>) -> Vec<&'a Device> {
    let mut devices: Vec<&Device> = site
        .devices
        .iter()
        .filter(|d| dataplane.is_none_or(|dp| d.dataplane == dp))
        .collect();
    devices.sort_by_key(|d| load(site, d, mine));
    devices
}

/// The device of `site` where the account's interconnects land least.
pub(super) fn least_used_device<'a>(
    site: &'a Site,
    mine: &[Record],
    dataplane: Option<Dataplane>,
) -> Option<&'a Device> {
    by_load(site, mine, dataplane).into_iter().next()
}

/// A free port of `speed` at `site` (of `dataplane` when given), on the device where the
/// account has the fewest circuits: `(device, slot)`.
fn free_port<'a>(
    site: &'a Site,
    mine: &[Record],
    speed: Speed,
    dataplane: Option<Dataplane>,
    taken: &BTreeSet<String>,
) -> Option<(&'a Device, String)> {
    let devices = by_load(site, mine, dataplane);
    devices.into_iter().find_map(|d| {
        d.ports
            .iter()
            .find(|p| {
                p.speed == speed && !taken.contains(&slot_claim(&site.code, &d.name, &p.slot))
            })
            .map(|p| (d, p.slot.clone()))
    })
}

/// The LOA's dates: today at the site and `days` later.
fn loa_dates(site: &Site, now_ms: i64, days: u32) -> LoaDates {
    let tz = jiff::tz::TimeZoneDatabase::bundled()
        .get(&site.timezone)
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let today = jiff::Timestamp::from_millisecond(now_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(tz)
        .date();
    let until = today
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .unwrap_or(today);
    LoaDates {
        date: today.to_string(),
        valid_until: until.to_string(),
    }
}

/// The interconnect a request creates, and its port when it takes one.
fn plan(
    new: &NewInterconnect,
    site: &Site,
    mine: &[Record],
    taken: &BTreeSet<String>,
    settings: &OperatorSettings,
    now_ms: i64,
) -> Result<Interconnect, StoreError> {
    let mut problems = Vec::new();
    if let Some(dp) = new.dataplane.filter(|dp| !site.dataplanes.contains(dp)) {
        problems.push(Problem::new(
            "dataplane",
            format!("{} does not offer {}", site.code, dp.name()),
        ));
    }
    let (flow, speed) = match (new.kind, &new.cloud) {
        (InterconnectType::Direct, None) => match new.speed {
            Some(speed) => (Flow::Direct(Dataplane::V1), Some(speed)),
            None => {
                problems.push(Problem::new(
                    "speed",
                    "a direct interconnect needs a port speed: 10G or 100G",
                ));
                (Flow::Direct(Dataplane::V1), None)
            }
        },
        (InterconnectType::Direct, Some(_)) => {
            problems.push(Problem::new("cloud", "only for type cloud"));
            (Flow::Direct(Dataplane::V1), None)
        }
        (InterconnectType::Cloud, Some(c)) => {
            problems.extend(
                c.validate()
                    .into_iter()
                    .map(|p| Problem::new(format!("cloud.{}", p.field), p.reason)),
            );
            if new.speed.is_some() {
                problems.push(Problem::new(
                    "speed",
                    "a cloud circuit's speed is cloud.speed_mbps",
                ));
            }
            match c {
                // A dedicated connection is a cross-connect to one of our ports.
                CloudCircuit::Aws { .. } => (Flow::Aws, Some(Speed::G10)),
                CloudCircuit::Google { .. } => (Flow::Google, None),
            }
        }
        (InterconnectType::Cloud, None) => {
            problems.push(Problem::new(
                "cloud",
                "a cloud interconnect needs its circuit: {provider: aws | google, ...}",
            ));
            (Flow::Aws, None)
        }
        (InterconnectType::Partner, _) => {
            problems.push(Problem::new("type", "partner interconnects are submitted by the partner (POST /v1/cni/partner-requests)"));
            (Flow::Partner, None)
        }
    };
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems));
    }
    let (device, slot) = match speed {
        Some(speed) => {
            let (d, slot) =
                free_port(site, mine, speed, new.dataplane, taken).ok_or_else(|| {
                    StoreError::Refused(format!(
                        "no free {} port at {}{}",
                        speed.name(),
                        site.code,
                        new.dataplane
                            .map_or(String::new(), |dp| format!(" on a {} device", dp.name()))
                    ))
                })?;
            (d, Some(slot))
        }
        None => (
            least_used_device(site, mine, new.dataplane).ok_or_else(|| {
                StoreError::Invalid(vec![Problem::new(
                    "site",
                    format!("{} has no device", site.code),
                )])
            })?,
            None,
        ),
    };
    let flow = match flow {
        Flow::Direct(_) => Flow::Direct(device.dataplane),
        f => f,
    };
    let mut workflow = Workflow::start(flow);
    let mut loa = None;
    if let Flow::Direct(_) = flow {
        // The slot is assigned and its LOA issued as the interconnect is created.
        workflow
            .take(Step::IssueLoa, Party::Operator, "control plane", now_ms)
            .map_err(|e| StoreError::Refused(e.to_string()))?;
        loa = Some(loa_dates(site, now_ms, settings.loa_valid_days));
    }
    Ok(Interconnect {
        name: new.name.clone().unwrap_or_default(),
        kind: new.kind,
        site: site.code.clone(),
        device: device.name.clone(),
        dataplane: device.dataplane,
        slot,
        speed,
        partner: None,
        cloud: new.cloud.clone(),
        loa,
        workflow,
        status: StatusHistory::new(device.dataplane),
        last_report: None,
        sessions: Default::default(),
        events: Vec::new(),
    })
}

/// The account's interconnects, filtered by `site` and `type`.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/interconnects", params(("site" = Option<String>, Query), ("type" = Option<String>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, description = "`{items, next}`"), (status = 404, description = "no such account (or not the token's)")))]
pub(super) async fn list_interconnects(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let records: Vec<Record> = app
        .store
        .records(RecordKind::Interconnect, Owner::Account(&account))
        .await?
        .into_iter()
        .filter(|r| p.site.as_deref().is_none_or(|s| r.body["site"] == s))
        .filter(|r| p.kind.is_none_or(|k| r.body["type"] == to_value(&k)))
        .collect();
    Ok(ok(StatusCode::OK, page(records, &p, view)))
}

/// Creates a direct interconnect (a free port is assigned and its LOA issued) or a cloud one.
#[utoipa::path(post, path = "/v1/accounts/{account}/cni/interconnects", request_body = NewInterconnect,
    responses((status = 201, description = "the interconnect"), (status = 400, description = "each problem with its field"), (status = 409, description = "no free port")))]
pub(super) async fn create_interconnect(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let new: NewInterconnect = decode(&body)?;
    let site = site(&app, &new.site).await?;
    let settings = operator_settings(&app).await?;
    let owner = Owner::Account(&account);
    let mine = app.store.records(RecordKind::Interconnect, owner).await?;
    let now = unix_ms();
    let options = p.write(Write::Create, now);
    let r = app
        .store
        .write_record(
            RecordKind::Interconnect,
            &new_id(),
            owner,
            options,
            &|_, taken| {
                let ic = plan(&new, &site, &mine, taken, &settings, now)?;
                Ok((to_value(&ic), claims_of(&ic)))
            },
        )
        .await?;
    if !p.validate_only {
        tracing::info!(id = %r.id, %account, site = %site.code, device = %r.body["device"], slot = %r.body["slot"], "interconnect created");
    }
    Ok(written(&p, &r, view(&r)))
}

async fn one(app: &App, account: &str, id: &str) -> Result<Record, ApiError> {
    found(
        app,
        RecordKind::Interconnect,
        id,
        Owner::Account(account),
        "interconnect",
    )
    .await
}

/// One interconnect, with its configuration (addressing, VLAN, MTU, BGP) once a CNI binds it.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/interconnects/{id}", responses((status = 200, description = "the interconnect"), (status = 404, description = "no such interconnect in the account")))]
pub(super) async fn get_interconnect(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = one(&app, &account, &id).await?;
    let mut v = view(&r);
    v["configuration"] = match cnis::of_interconnect(&app, &account, &id).await? {
        Some(cni) => cnis::configuration(&cni, &r),
        None => Value::Null,
    };
    Ok(record_response(StatusCode::OK, &r, v))
}

/// Deletes an interconnect without a CNI, freeing its port.
#[utoipa::path(delete, path = "/v1/accounts/{account}/cni/interconnects/{id}", responses((status = 200, description = "deleted"), (status = 409, description = "a CNI is bound to it")))]
pub(super) async fn delete_interconnect(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    one(&app, &account, &id).await?;
    if let Some(cni) = cnis::of_interconnect(&app, &account, &id).await? {
        return Err(StoreError::Refused(format!(
            "CNI {} is bound to interconnect {id}: delete it first",
            cni.id
        ))
        .into());
    }
    app.store
        .delete_record(
            RecordKind::Interconnect,
            &id,
            Owner::Account(&account),
            if_match(&headers)?,
        )
        .await?;
    tracing::info!(%id, %account, "interconnect deleted");
    Ok(ok(StatusCode::OK, json!({"id": id})))
}

/// Takes a workflow step as `token`'s party: checked first (a step of another party is a
/// 403, one out of order a 409), then taken inside the write.
pub(super) async fn step(
    app: &App,
    token: &TokenInfo,
    owner: Owner<'_>,
    id: &str,
    step: Step,
    if_match: Option<i64>,
    dry_run: bool,
) -> Result<Record, ApiError> {
    let (by, who) = party(token);
    let now = unix_ms();
    let r = found(app, RecordKind::Interconnect, id, owner, "interconnect").await?;
    let ic: Interconnect = parse(&r)?;
    if let Err(e) = ic.workflow.clone().take(step.clone(), by, &who, now) {
        let status = match e {
            Refused::NotYours { .. } => StatusCode::FORBIDDEN,
            Refused::OutOfOrder { .. } => StatusCode::CONFLICT,
        };
        return Err(ApiError::new(status, e.to_string()));
    }
    if step == Step::ProposeConfiguration {
        let account = r.account.clone().unwrap_or_default();
        if cnis::of_interconnect(app, &account, id).await?.is_none() {
            return Err(StoreError::Refused(format!(
                "the configuration document comes from the interconnect's CNI: create one first (POST /v1/accounts/{account}/cni/cnis)"
            ))
            .into());
        }
    }
    let r = app
        .store
        .write_record(
            RecordKind::Interconnect,
            id,
            owner,
            WriteOptions {
                write: Write::Replace(if_match),
                now_ms: now,
                dry_run,
            },
            &|before, _| {
                let before = before.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
                let mut ic: Interconnect = parse(before)?;
                ic.workflow
                    .take(step.clone(), by, &who, now)
                    .map_err(|e| StoreError::Refused(e.to_string()))?;
                Ok((to_value(&ic), claims_of(&ic)))
            },
        )
        .await?;
    if !dry_run {
        tracing::info!(%id, step = ?step, by = ?by, %who, stage = %r.body["workflow"]["stage"], "workflow step");
    }
    Ok(r)
}

/// Takes a workflow step: `{"step": "order_cross_connect"}` (the customer),
/// `approve_configuration` (the customer), `propose_configuration`, `configure`, `test`,
/// `activate` (the operator), `cancel` (either).
#[utoipa::path(post, path = "/v1/accounts/{account}/cni/interconnects/{id}/steps", request_body(content = Object, description = "`{step}`"),
    responses((status = 200, description = "the interconnect at its new stage"), (status = 403, description = "another party's step"), (status = 409, description = "not a step from its stage")))]
pub(super) async fn take_step(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let token = app
        .authorize_account(&headers, &account, &["write"])
        .await?;
    let s: Step = decode(&body)?;
    let owner = Owner::Account(&account);
    let r = step(
        &app,
        &token,
        owner,
        &id,
        s,
        if_match(&headers)?,
        p.validate_only,
    )
    .await?;
    Ok(written(&p, &r, view(&r)))
}

/// The Letter of Authorization of a direct interconnect, as a PDF.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/interconnects/{id}/loa", responses((status = 200, description = "the LOA", content_type = "application/pdf"), (status = 409, description = "not a direct interconnect")))]
pub(super) async fn get_loa(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = one(&app, &account, &id).await?;
    let ic: Interconnect = parse(&r)?;
    let (Some(dates), Some(slot)) = (&ic.loa, &ic.slot) else {
        return Err(
            StoreError::Refused(format!("interconnect {id} is not direct: it has no LOA")).into(),
        );
    };
    let site = site(&app, &ic.site).await?;
    let Some((device, port)) = site.port(&ic.device, slot) else {
        return Err(StoreError::Refused(format!(
            "port {}/{slot} is no longer at {}",
            ic.device, ic.site
        ))
        .into());
    };
    let customer = app
        .store
        .account(&account)
        .await?
        .map(|a| a.name)
        .unwrap_or_default();
    let settings = operator_settings(&app).await?;
    let pdf = Loa {
        operator: &settings.operator,
        customer: &customer,
        interconnect: &id,
        site: &site,
        device,
        port,
        date: &dates.date,
        valid_until: &dates.valid_until,
    }
    .pdf();
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"loa-{id}.pdf\""),
            ),
        ],
        pdf,
    )
        .into_response())
}

/// The interconnect's status as its PoP reports it, with every change.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/interconnects/{id}/status", responses((status = 200, description = "`{status, operational, changes, last_report}`")))]
pub(super) async fn get_status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = one(&app, &account, &id).await?;
    let ic: Interconnect = parse(&r)?;
    Ok(ok(
        StatusCode::OK,
        json!({"id": id, "status": ic.status.status, "operational": ic.status.operational,
            "changes": ic.status.changes, "last_report": ic.last_report}),
    ))
}

/// Every port of every site, filtered by `site`, `speed` and `occupied`.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/slots", params(("site" = Option<String>, Query), ("speed" = Option<String>, Query), ("occupied" = Option<bool>, Query)),
    responses((status = 200, description = "`{items: [{id, site, facility, device, dataplane, slot, speed, optic, occupied}], next}`")))]
pub(super) async fn list_slots(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let claims = app.store.claims().await?;
    let mut items = Vec::new();
    for s in sites(&app).await? {
        if p.site.as_deref().is_some_and(|want| want != s.code) {
            continue;
        }
        for d in &s.devices {
            for port in &d.ports {
                let occupied = claims.contains(&slot_claim(&s.code, &d.name, &port.slot));
                if p.speed.is_some_and(|want| want != port.speed)
                    || p.occupied.is_some_and(|want| want != occupied)
                {
                    continue;
                }
                let id = format!("{}/{}/{}", s.code, d.name, port.slot);
                items.push((id.clone(), json!({"id": id, "site": s.code, "facility": s.facility.name,
                    "device": d.name, "dataplane": d.dataplane, "slot": port.slot, "speed": port.speed,
                    "optic": port.optic, "occupied": occupied})));
            }
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ok(StatusCode::OK, page_of(items.into_iter(), &p)))
}

/// Whether one device's or one site's maintenance would cut every circuit of the account,
/// naming the windows that would.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/diversity", responses((status = 200, description = "`{warning: {reason, windows} | null, landings}`")))]
pub(super) async fn get_diversity(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let landings: Vec<Landing> = app
        .store
        .records(RecordKind::Interconnect, Owner::Account(&account))
        .await?
        .iter()
        .filter_map(|r| {
            let ic: Interconnect = parse(r).ok()?;
            let live = !matches!(ic.workflow.stage, Stage::Canceled | Stage::Rejected);
            live.then(|| Landing {
                interconnect: r.id.clone(),
                site: ic.site,
                device: ic.device,
            })
        })
        .collect();
    let events: Vec<Event> = app
        .store
        .records(RecordKind::Maintenance, Owner::Operator)
        .await?
        .iter()
        .filter_map(|r| parse(r).ok())
        .collect();
    let warning = diversity::check(&landings, &sites(&app).await?, &events);
    Ok(ok(
        StatusCode::OK,
        json!({"warning": warning, "landings": landings}),
    ))
}
