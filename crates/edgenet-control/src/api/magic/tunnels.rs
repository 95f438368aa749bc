//! GRE tunnels (`/v1/accounts/{account}/magic/gre_tunnels`): checked by the pure crate's rules
//! and against the operator's GRE endpoints; the name and the /31 (and /127) are claims, so
//! two tunnels of an account never share one even when created at once. The BGP MD5 key is
//! write-only: a replace without it keeps it, `""` removes it. A tunnel's view shows its
//! health at each PoP.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_dataplane::tunnel::GreTunnelSpec;
use edgenet_interconnect::Problem;
use serde_json::{json, Value};

use super::super::cni::operator_settings;
use super::super::records::{
    found, if_match, new_id, page, record_response, written, RecordParams,
};
use super::super::{decode, ok, ApiError, ApiResult, JsonBody};
use super::*;
use crate::api::unix_ms;

/// The claims a tunnel holds in its account: its name (case-insensitively) and its pairs.
fn claims(account: &str, spec: &GreTunnelSpec) -> Vec<String> {
    let mut out = vec![
        format!("gre-name:{account}/{}", spec.name.to_ascii_lowercase()),
        format!("gre-v4:{account}/{}", spec.interface_address.trunc()),
    ];
    out.extend(
        spec.interface_address6
            .map(|n| format!("gre-v6:{account}/{}", n.trunc())),
    );
    out
}

/// How a tunnel is shown: never its MD5 key, only whether it has one; its health by PoP.
fn view(r: &Record, status: &TunnelStatus) -> Value {
    let Ok((spec, md5_key)) = load_tunnel(r) else {
        return json!({"id": r.id, "error": "the stored record does not decode"});
    };
    let mut v = to_value(&spec);
    v["id"] = json!(r.id);
    if let Some(bgp) = v.get_mut("bgp").filter(|b| b.is_object()) {
        bgp["md5_key_set"] = json!(md5_key.is_some());
    }
    v["customer_address"] = json!(spec.customer_address());
    v["health"] = status
        .pops
        .iter()
        .map(|(pop, seen)| {
            let s = &seen.state;
            (
                pop.clone(),
                json!({"health": s.health, "since_ms": s.since_ms, "reason": s.reason,
                    "probes_sent": s.probes_sent, "probes_failed": s.probes_failed,
                    "packets_in": s.packets_in, "packets_out": s.packets_out,
                    "bgp": s.bgp.as_ref().map(|b| &b.state), "learnt": s.learnt,
                    "reported_ms": seen.at_ms}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    v["version"] = json!(r.version);
    v["created_ms"] = json!(r.created_ms);
    v
}

/// The spec of a request, and whether it asks to remove the MD5 key (`"md5_key": ""`).
fn spec_of(body: &Value) -> Result<(GreTunnelSpec, bool), ApiError> {
    let mut body = body.clone();
    let clear = body.pointer("/bgp/md5_key") == Some(&json!(""));
    if clear {
        body["bgp"].as_object_mut().map(|o| o.remove("md5_key"));
    }
    Ok((decode(&body)?, clear))
}

async fn write(
    app: &App,
    headers: &HeaderMap,
    account: &str,
    id: Option<&str>,
    p: &RecordParams,
    body: &Value,
) -> ApiResult {
    let (spec, clear_md5) = spec_of(body)?;
    let endpoints = operator_settings(app).await?.gre_endpoints;
    let problems = spec.problems(&endpoints);
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    let write = match id {
        None => Write::Create,
        Some(_) => Write::Replace(if_match(headers)?),
    };
    let id = id.map_or_else(new_id, String::from);
    let r = app
        .store
        .write_record(
            RecordKind::GreTunnel,
            &id,
            Owner::Account(account),
            p.write(write, unix_ms()),
            &|before, taken| plan(account, spec.clone(), clear_md5, before, taken),
        )
        .await?;
    if !p.validate_only {
        // Never the key: whether it is set is all a log line says.
        tracing::info!(%id, %account, name = %spec.name, customer = %spec.customer_gre_endpoint, md5 = r.body["md5_key"].is_string(), "GRE tunnel stored");
        publish(app, account).await?;
    }
    let status = status_of(app, account, &id).await?;
    Ok(written(p, &r, view(&r, &status)))
}

/// The tunnel to store and its claims, computed inside the write from every other record's.
fn plan(
    account: &str,
    spec: GreTunnelSpec,
    clear_md5: bool,
    before: Option<&Record>,
    taken: &BTreeSet<String>,
) -> Result<(Value, Vec<String>), StoreError> {
    let mut md5_key = spec.bgp.as_ref().and_then(|b| b.md5_key.clone());
    if let Some(before) = before {
        if md5_key.is_none() && !clear_md5 && spec.bgp.is_some() {
            md5_key = load_tunnel(before)?.1;
        }
    }
    let mine = claims(account, &spec);
    let mut problems = Vec::new();
    if taken.contains(&mine[0]) {
        problems.push(Problem::new(
            "name",
            format!("{:?}: the account has a tunnel of that name", spec.name),
        ));
    }
    for (claim, field) in mine[1..]
        .iter()
        .zip(["interface_address", "interface_address6"])
    {
        if taken.contains(claim) {
            problems.push(Problem::new(
                field,
                format!(
                    "{}: another tunnel of the account has it",
                    claim.rsplit('/').take(2).collect::<Vec<_>>().join("/")
                ),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems));
    }
    Ok((to_value(&StoredTunnel { spec, md5_key }), mine))
}

/// The account's GRE tunnels.
#[utoipa::path(get, path = "/v1/accounts/{account}/magic/gre_tunnels", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_tunnels(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let owner = Owner::Account(&account);
    let records = app.store.records(RecordKind::GreTunnel, owner).await?;
    let statuses: BTreeMap<String, TunnelStatus> = app
        .store
        .records(RecordKind::TunnelStatus, owner)
        .await?
        .iter()
        .filter_map(|r| Some((r.id.clone(), parse(r).ok()?)))
        .collect();
    Ok(ok(
        StatusCode::OK,
        page(records, &p, |r| {
            view(r, statuses.get(&r.id).unwrap_or(&TunnelStatus::default()))
        }),
    ))
}

/// Creates a GRE tunnel (`?validate_only=true`: checks it and stores nothing).
#[utoipa::path(post, path = "/v1/accounts/{account}/magic/gre_tunnels", request_body(content = Object, description = "name, description, cloudflare_gre_endpoint, customer_gre_endpoint, interface_address (/31), interface_address6 (/127), mtu (1476), ttl (64), health_check {enabled, target, type (reply | request), rate (low | mid | high), direction (unidirectional | bidirectional)}, bgp {customer_asn, md5_key, extra_prefixes}"),
    responses((status = 201, description = "the tunnel (never its MD5 key)"), (status = 400, description = "each problem with its field")))]
pub(super) async fn create_tunnel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    write(&app, &headers, &account, None, &p, &body).await
}

async fn one(app: &App, account: &str, id: &str) -> Result<Record, ApiError> {
    found(
        app,
        RecordKind::GreTunnel,
        id,
        Owner::Account(account),
        "GRE tunnel",
    )
    .await
}

/// One GRE tunnel, with its health at each PoP.
#[utoipa::path(get, path = "/v1/accounts/{account}/magic/gre_tunnels/{id}", responses((status = 200, description = "the tunnel"), (status = 404, description = "no such tunnel in the account")))]
pub(super) async fn get_tunnel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = one(&app, &account, &id).await?;
    let status = status_of(&app, &account, &id).await?;
    Ok(record_response(StatusCode::OK, &r, view(&r, &status)))
}

/// Replaces a GRE tunnel (If-Match); its MD5 key stays unless given.
#[utoipa::path(put, path = "/v1/accounts/{account}/magic/gre_tunnels/{id}", request_body(content = Object, description = "as for create"),
    responses((status = 200, description = "the tunnel"), (status = 400, description = "each problem with its field"), (status = 412, description = "changed since the ETag")))]
pub(super) async fn put_tunnel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    one(&app, &account, &id).await?;
    write(&app, &headers, &account, Some(&id), &p, &body).await
}

/// Deletes a GRE tunnel; refused while a static route points at it.
#[utoipa::path(delete, path = "/v1/accounts/{account}/magic/gre_tunnels/{id}", responses((status = 200, description = "deleted"), (status = 404, description = "no such tunnel in the account"), (status = 409, description = "routes point at it")))]
pub(super) async fn delete_tunnel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let owner = Owner::Account(&account);
    let r = one(&app, &account, &id).await?;
    let (spec, _) = load_tunnel(&r)?;
    let users: Vec<String> = app
        .store
        .records(RecordKind::MagicRoute, owner)
        .await?
        .iter()
        .filter(|route| {
            parse::<StaticRouteSpec>(route)
                .is_ok_and(|s| spec.holds(s.nexthop) && s.nexthop != IpAddr::V4(spec.our_address()))
        })
        .map(|route| route.id.clone())
        .collect();
    if !users.is_empty() {
        return Err(StoreError::Refused(format!(
            "static routes {} point at tunnel {:?}: delete or move them first",
            users.join(", "),
            spec.name
        ))
        .into());
    }
    app.store
        .delete_record(RecordKind::GreTunnel, &id, owner, if_match(&headers)?)
        .await?;
    if app
        .store
        .record(RecordKind::TunnelStatus, &id, owner)
        .await?
        .is_some()
    {
        app.store
            .delete_record(RecordKind::TunnelStatus, &id, owner, None)
            .await?;
    }
    tracing::info!(%id, %account, name = %spec.name, "GRE tunnel deleted");
    publish(&app, &account).await?;
    Ok(ok(StatusCode::OK, json!({"id": id})))
}
