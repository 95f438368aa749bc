//! The operator's side: sites with their devices and ports (`/v1/cni/sites`), the operator's
//! settings (the name on LOAs, the point-to-point pools), connectivity partners, and the
//! partners' virtual-circuit requests, which a partner's token submits and follows and the
//! operator accepts or rejects.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_interconnect::site::Site;
use edgenet_interconnect::status::StatusHistory;
use edgenet_interconnect::workflow::{Flow, Step, Workflow};
use edgenet_interconnect::Problem;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::super::{decode, ok, ApiError, ApiResult, App, JsonBody};
use super::*;
use crate::api::unix_ms;

/// How a site is shown: as stored, with the ports interconnects hold.
fn site_view(r: &Record, claims: &BTreeSet<String>) -> Value {
    let mut v = r.body.clone();
    if let Some(devices) = v.get_mut("devices").and_then(Value::as_array_mut) {
        for d in devices {
            let device = d["name"].as_str().unwrap_or_default().to_string();
            if let Some(ports) = d.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    let slot = p["slot"].as_str().unwrap_or_default();
                    p["occupied"] = json!(claims.contains(&slot_claim(&r.id, &device, slot)));
                }
            }
        }
    }
    json!({"code": r.id, "version": r.version, "site": v})
}

fn decode_site(body: &Value, code: Option<&str>) -> Result<Site, ApiError> {
    let site: Site = decode(body)?;
    let mut problems = site.validate();
    if let Some(code) = code.filter(|c| *c != site.code) {
        problems.push(Problem::new(
            "code",
            format!("{:?} differs from the route's {code:?}", site.code),
        ));
    }
    if problems.is_empty() {
        Ok(site)
    } else {
        Err(StoreError::Invalid(problems).into())
    }
}

/// The ports of `site` that interconnects hold but the new version of the site lacks.
fn held_ports_gone(site: &Site, taken: &BTreeSet<String>) -> Vec<String> {
    let prefix = format!("slot:{}/", site.code);
    let kept: BTreeSet<String> = site
        .devices
        .iter()
        .flat_map(|d| {
            d.ports
                .iter()
                .map(|p| slot_claim(&site.code, &d.name, &p.slot))
        })
        .collect();
    taken
        .iter()
        .filter(|c| c.starts_with(&prefix) && !kept.contains(*c))
        .map(|c| c.trim_start_matches("slot:").to_string())
        .collect()
}

async fn write_site(
    app: &App,
    headers: &HeaderMap,
    p: &RecordParams,
    body: &Value,
    code: Option<&str>,
) -> ApiResult {
    app.authorize(headers, &["write"]).await?;
    let site = decode_site(body, code)?;
    let write = match code {
        None => Write::Create,
        Some(_) => Write::Replace(if_match(headers)?),
    };
    let options = p.write(write, unix_ms());
    let value = to_value(&site);
    let r = app
        .store
        .write_record(
            RecordKind::Site,
            &site.code,
            Owner::Operator,
            options,
            &|_, taken| {
                let gone = held_ports_gone(&site, taken);
                if !gone.is_empty() {
                    return Err(StoreError::Refused(format!(
                        "ports held by interconnects would be gone: {}",
                        gone.join(", ")
                    )));
                }
                Ok((value.clone(), vec![]))
            },
        )
        .await?;
    let view = site_view(&r, &app.store.claims().await?);
    if !p.validate_only {
        tracing::info!(site = %site.code, version = r.version, "site stored");
        // A port's interface, or the site's PoP, may have moved.
        cnis::republish_all(app).await?;
    }
    Ok(written(p, &r, view))
}

/// Every site, with which ports are occupied.
#[utoipa::path(get, path = "/v1/cni/sites", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_sites(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    let claims = app.store.claims().await?;
    let records = app.store.records(RecordKind::Site, Owner::Operator).await?;
    Ok(ok(
        StatusCode::OK,
        page(records, &p, |r| site_view(r, &claims)),
    ))
}

/// Adds a site: its facility, time zone and holidays, dataplanes, devices and ports (each
/// with the Linux interface that carries it on the PoP).
#[utoipa::path(post, path = "/v1/cni/sites", request_body(content = Value, description = "a site: code, pop, facility {name, address}, timezone, holidays, dataplanes, device_diversity, devices [{name, dataplane, ports [{slot, speed, optic, interface}]}]"),
    responses((status = 201, description = "stored"), (status = 400, description = "each problem with its field")))]
pub(super) async fn create_site(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    write_site(&app, &headers, &p, &body, None).await
}

/// One site.
#[utoipa::path(get, path = "/v1/cni/sites/{code}", responses((status = 200, description = "the site"), (status = 404, description = "no such site")))]
pub(super) async fn get_site(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    let r = app
        .store
        .record(RecordKind::Site, &code, Owner::Operator)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site {code}")))?;
    let view = site_view(&r, &app.store.claims().await?);
    Ok(record_response(StatusCode::OK, &r, view))
}

/// Replaces a site (If-Match); a port an interconnect holds cannot go.
#[utoipa::path(put, path = "/v1/cni/sites/{code}", request_body(content = Value, description = "the site"),
    responses((status = 200, description = "stored"), (status = 409, description = "a held port would go"), (status = 412, description = "changed since the ETag")))]
pub(super) async fn put_site(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(code): Path<String>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    write_site(&app, &headers, &p, &body, Some(&code)).await
}

/// Deletes a site no interconnect uses.
#[utoipa::path(delete, path = "/v1/cni/sites/{code}", responses((status = 200, description = "deleted"), (status = 409, description = "interconnects use it")))]
pub(super) async fn delete_site(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    let using: Vec<String> = app
        .store
        .records(RecordKind::Interconnect, Owner::Operator)
        .await?
        .into_iter()
        .filter(|r| r.body["site"] == code.as_str())
        .map(|r| r.id)
        .collect();
    if !using.is_empty() {
        return Err(StoreError::Refused(format!(
            "site {code} has interconnects: {}",
            using.join(", ")
        ))
        .into());
    }
    app.store
        .delete_record(
            RecordKind::Site,
            &code,
            Owner::Operator,
            if_match(&headers)?,
        )
        .await?;
    tracing::info!(site = %code, "site deleted");
    Ok(ok(StatusCode::OK, json!({"code": code})))
}

/// The operator's settings.
#[utoipa::path(get, path = "/v1/cni/settings", responses((status = 200, body = OperatorSettings)))]
pub(super) async fn get_operator_settings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    Ok(ok(
        StatusCode::OK,
        to_value(&operator_settings(&app).await?),
    ))
}

/// Replaces the operator's settings: the name on LOAs, the /31 and /127 pools, how long an
/// LOA is valid. A pool must hold every pair already allocated from it.
#[utoipa::path(put, path = "/v1/cni/settings", request_body = OperatorSettings, responses((status = 200, body = OperatorSettings), (status = 400, description = "each problem with its field")))]
pub(super) async fn put_operator_settings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    let s: OperatorSettings = decode(&body)?;
    let mut problems = Vec::new();
    if s.operator.trim().is_empty() {
        problems.push(Problem::new("operator", "must not be empty"));
    }
    if let Some(pool) = s.pool_v4.filter(|n| n.prefix_len() > 31) {
        problems.push(Problem::new("pool_v4", format!("{pool} holds no /31")));
    }
    if let Some(pool) = s.pool_v6.filter(|n| n.prefix_len() > 127) {
        problems.push(Problem::new("pool_v6", format!("{pool} holds no /127")));
    }
    if !(1..=365).contains(&s.loa_valid_days) {
        problems.push(Problem::new("loa_valid_days", "must be 1 to 365"));
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    let value = to_value(&s);
    let options = p.write(Write::Upsert, unix_ms());
    let r = put_plain(
        &app,
        RecordKind::Settings,
        OPERATOR_SETTINGS,
        Owner::Operator,
        options,
        value,
    )
    .await?;
    if p.validate_only {
        return Ok(validated(r.body));
    }
    Ok(record_response(StatusCode::OK, &r, r.body.clone()))
}

/// A partner the operator adds.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPartner {
    /// Its id: lower-case letters, digits and `-` (`acme-fabric`).
    pub id: String,
    /// Its name for people.
    pub name: String,
}

/// Every partner: the built-in ones and those the operator added, as `(id, name)`.
pub(crate) async fn partners(app: &App) -> Result<Vec<(String, String)>, StoreError> {
    let mut all: Vec<(String, String)> = PARTNERS
        .iter()
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect();
    for r in app
        .store
        .records(RecordKind::Partner, Owner::Operator)
        .await?
    {
        let p: NewPartner = parse(&r)?;
        all.push((p.id, p.name));
    }
    Ok(all)
}

/// The connectivity partners.
#[utoipa::path(get, path = "/v1/cni/partners", responses((status = 200, description = "`{items: [{id, name, built_in}]}`")))]
pub(super) async fn list_partners(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    let items: Vec<Value> = partners(&app)
        .await?
        .into_iter()
        .map(|(id, name)| {
            let built_in = PARTNERS.iter().any(|(b, _)| *b == id);
            json!({"id": id, "name": name, "built_in": built_in})
        })
        .collect();
    Ok(ok(StatusCode::OK, json!({"items": items, "next": null})))
}

/// Adds a connectivity partner (then `POST /v1/tokens` with scope `partner` and its id makes
/// its token).
#[utoipa::path(post, path = "/v1/cni/partners", request_body = NewPartner, responses((status = 201, description = "added"), (status = 409, description = "the id is taken")))]
pub(super) async fn add_partner(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    let new: NewPartner = decode(&body)?;
    let mut problems = Vec::new();
    let well_formed = !new.id.is_empty()
        && new
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !well_formed {
        problems.push(Problem::new(
            "id",
            format!("{:?}: lower-case letters, digits and -", new.id),
        ));
    }
    if new.name.trim().is_empty() {
        problems.push(Problem::new("name", "must not be empty"));
    }
    if PARTNERS.iter().any(|(id, _)| *id == new.id) {
        return Err(StoreError::Exists(new.id).into());
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    let value = to_value(&new);
    let options = p.write(Write::Create, unix_ms());
    let r = put_plain(
        &app,
        RecordKind::Partner,
        &new.id,
        Owner::Operator,
        options,
        value,
    )
    .await?;
    Ok(written(&p, &r, r.body.clone()))
}

/// A partner's virtual-circuit request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerRequest {
    /// The customer's account (its id, which the customer gives the partner).
    pub account: String,
    /// The site's code.
    pub site: String,
    /// The partner's reference of the order.
    pub reference: String,
    /// The bandwidth, Mbit/s.
    pub speed_mbps: u32,
    /// The VLAN the partner hands the circuit over on.
    pub vlan: u16,
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
}

/// The partner a partner's token acts for, or `None` for the operator's token with one of
/// `operator_needs`; anyone else is refused.
async fn partner_or_operator(
    app: &App,
    headers: &HeaderMap,
    operator_needs: &[&str],
) -> Result<Option<String>, ApiError> {
    match app.token(headers).await?.partner {
        Some(partner) => Ok(Some(partner)),
        None => app.authorize(headers, operator_needs).await.map(|_| None),
    }
}

fn request_view(r: &Record) -> Value {
    let mut v = interconnects::view(r);
    v["account"] = json!(r.account);
    v
}

/// Partner requests: a partner's token sees its own, the operator every partner's.
#[utoipa::path(get, path = "/v1/cni/partner-requests", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_partner_requests(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    let partner = partner_or_operator(&app, &headers, &["read"]).await?;
    let records: Vec<Record> = app
        .store
        .records(RecordKind::Interconnect, Owner::Operator)
        .await?
        .into_iter()
        .filter(
            |r| match (&partner, r.body["partner"]["partner"].as_str()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(mine), Some(theirs)) => mine == theirs,
            },
        )
        .collect();
    Ok(ok(StatusCode::OK, page(records, &p, request_view)))
}

/// Submits a virtual-circuit request for a customer's account (a partner's token).
#[utoipa::path(post, path = "/v1/cni/partner-requests", request_body = PartnerRequest, responses((status = 201, description = "submitted: the interconnect, stage `submitted`"), (status = 400, description = "each problem with its field"), (status = 403, description = "not a partner's token")))]
pub(super) async fn submit_partner_request(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let token = app.token(&headers).await?;
    let Some(partner) = token.partner.clone() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} is not a partner's: requests are submitted by a connectivity partner's token (the operator accepts them)",
                token.name
            ),
        ));
    };
    let req: PartnerRequest = decode(&body)?;
    let mut problems = Vec::new();
    if app.store.account(&req.account).await?.is_none() {
        problems.push(Problem::new(
            "account",
            format!("{:?} is not an account", req.account),
        ));
    }
    if req.reference.trim().is_empty() {
        problems.push(Problem::new("reference", "must not be empty"));
    }
    if !(1..=4094).contains(&req.vlan) {
        problems.push(Problem::new(
            "vlan",
            format!("{} is not 1 to 4094", req.vlan),
        ));
    }
    if req.speed_mbps == 0 || req.speed_mbps > 100_000 {
        problems.push(Problem::new(
            "speed_mbps",
            format!("{} is not 1 to 100000", req.speed_mbps),
        ));
    }
    let site = match site(&app, &req.site).await {
        Ok(s) => Some(s),
        Err(_) => {
            problems.push(Problem::new(
                "site",
                format!("{:?} is not a site", req.site),
            ));
            None
        }
    };
    let (Some(site), true) = (site, problems.is_empty()) else {
        return Err(StoreError::Invalid(problems).into());
    };
    // A partner's circuits ride its port at the site; the customer's lands on the device
    // where it has the fewest circuits.
    let mine = app
        .store
        .records(RecordKind::Interconnect, Owner::Account(&req.account))
        .await?;
    let device = interconnects::least_used_device(&site, &mine, None).ok_or_else(|| {
        StoreError::Invalid(vec![Problem::new(
            "site",
            format!("{} has no device", site.code),
        )])
    })?;
    let ic = Interconnect {
        name: req.name.clone().unwrap_or_else(|| req.reference.clone()),
        kind: InterconnectType::Partner,
        site: site.code.clone(),
        device: device.name.clone(),
        dataplane: device.dataplane,
        slot: None,
        speed: None,
        partner: Some(PartnerCircuit {
            partner: partner.clone(),
            reference: req.reference.clone(),
            speed_mbps: req.speed_mbps,
            vlan: req.vlan,
        }),
        cloud: None,
        loa: None,
        workflow: Workflow::start(Flow::Partner),
        status: StatusHistory::new(device.dataplane),
        last_report: None,
        sessions: Default::default(),
        events: Vec::new(),
    };
    let value = to_value(&ic);
    let options = p.write(Write::Create, unix_ms());
    let r = put_plain(
        &app,
        RecordKind::Interconnect,
        &new_id(),
        Owner::Account(&req.account),
        options,
        value,
    )
    .await?;
    if !p.validate_only {
        tracing::info!(id = %r.id, %partner, account = %req.account, site = %ic.site, "partner request submitted");
    }
    Ok(written(&p, &r, request_view(&r)))
}

/// The partner's request `id` (a partner's own, or any for the operator).
async fn partner_request(app: &App, id: &str, partner: Option<&str>) -> Result<Record, ApiError> {
    let r = app
        .store
        .record(RecordKind::Interconnect, id, Owner::Operator)
        .await?
        .filter(|r| {
            let theirs = r.body["partner"]["partner"].as_str();
            theirs.is_some() && partner.is_none_or(|p| theirs == Some(p))
        });
    r.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("partner request {id:?} does not exist"),
        )
    })
}

/// One partner request.
#[utoipa::path(get, path = "/v1/cni/partner-requests/{id}", responses((status = 200, description = "the request and its workflow"), (status = 404, description = "no such request of this partner")))]
pub(super) async fn get_partner_request(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let partner = partner_or_operator(&app, &headers, &["read"]).await?;
    let r = partner_request(&app, &id, partner.as_deref()).await?;
    Ok(record_response(StatusCode::OK, &r, request_view(&r)))
}

/// A reason to reject.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// Why, for the partner and the customer.
    pub reason: String,
}

async fn decide(
    app: &App,
    headers: &HeaderMap,
    p: &RecordParams,
    id: &str,
    step: Step,
) -> ApiResult {
    let token = app.authorize(headers, &["write"]).await?;
    let r = partner_request(app, id, None).await?;
    let account = r.account.clone().unwrap_or_default();
    let owner = Owner::Account(&account);
    let r = interconnects::step(
        app,
        &token,
        owner,
        id,
        step,
        if_match(headers)?,
        p.validate_only,
    )
    .await?;
    Ok(written(p, &r, request_view(&r)))
}

/// Accepts a partner's request (the operator).
#[utoipa::path(post, path = "/v1/cni/partner-requests/{id}/accept", responses((status = 200, description = "accepted"), (status = 409, description = "not a step from its stage")))]
pub(super) async fn accept_partner_request(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    decide(&app, &headers, &p, &id, Step::Accept).await
}

/// Rejects a partner's request, saying why (the operator).
#[utoipa::path(post, path = "/v1/cni/partner-requests/{id}/reject", request_body = Rejection, responses((status = 200, description = "rejected"), (status = 409, description = "not a step from its stage")))]
pub(super) async fn reject_partner_request(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    let rejection: Rejection = decode(&body)?;
    if rejection.reason.trim().is_empty() {
        return Err(StoreError::Invalid(vec![Problem::new("reason", "must not be empty")]).into());
    }
    decide(
        &app,
        &headers,
        &p,
        &id,
        Step::Reject {
            reason: rejection.reason,
        },
    )
    .await
}
