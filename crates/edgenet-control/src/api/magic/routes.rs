//! Static routes (`/v1/accounts/{account}/magic/routes`) and the routing table as one PoP sees
//! it (`GET ...?pop=NAME`). A route's `nexthop` must be the customer's side of one of the
//! account's tunnels or CNIs when it is written; the stream carries it resolved to that tunnel
//! or CNI. The table view holds the statics whose scope covers the PoP and the routes it learnt
//! over BGP on each tunnel, each with the health of its next hop there, the priority that
//! health makes, and whether traffic takes it now.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_dataplane::health::Health;
use edgenet_dataplane::table::{self, Source, BGP_PRIORITY};
use edgenet_interconnect::Problem;
use serde_json::{json, Value};

use super::super::cni::Interconnect;
use super::super::records::{
    found, if_match, new_id, page, put_plain, record_response, written, RecordParams,
};
use super::super::{decode, ok, ApiError, ApiResult, JsonBody};
use super::*;
use crate::api::unix_ms;

fn view(r: &Record, tunnels: &[Record], cnis: &[Record]) -> Value {
    let Ok(spec) = parse::<StaticRouteSpec>(r) else {
        return json!({"id": r.id, "error": "the stored record does not decode"});
    };
    let mut v = to_value(&spec);
    v["id"] = json!(r.id);
    v["weight"] = json!(spec.weight.unwrap_or(1));
    v["next_hop"] = json!(resolve(spec.nexthop, tunnels, cnis));
    v["version"] = json!(r.version);
    v["created_ms"] = json!(r.created_ms);
    v
}

/// The account's tunnels and CNIs, which next hops resolve to.
async fn next_hops(app: &App, account: &str) -> Result<(Vec<Record>, Vec<Record>), StoreError> {
    let owner = Owner::Account(account);
    Ok((
        app.store.records(RecordKind::GreTunnel, owner).await?,
        app.store.records(RecordKind::Cni, owner).await?,
    ))
}

async fn write(
    app: &App,
    headers: &HeaderMap,
    account: &str,
    id: Option<&str>,
    p: &RecordParams,
    body: &Value,
) -> ApiResult {
    let spec: StaticRouteSpec = decode(body)?;
    let mut problems = spec.problems();
    let (tunnels, cnis) = next_hops(app, account).await?;
    if resolve(spec.nexthop, &tunnels, &cnis).is_none() {
        problems.push(Problem::new(
            "nexthop",
            format!(
                "{} is not the customer's side of a tunnel or CNI of the account",
                spec.nexthop
            ),
        ));
    }
    let pops = app.store.all(Kind::Pop).await?;
    for (i, name) in spec.scope.pops.iter().enumerate() {
        if !pops.contains_key(name) {
            problems.push(Problem::new(
                format!("scope.colo_names[{i}]"),
                format!("{name:?} is not a PoP"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    let write = match id {
        None => Write::Create,
        Some(_) => Write::Replace(if_match(headers)?),
    };
    let id = id.map_or_else(new_id, String::from);
    let r = put_plain(
        app,
        RecordKind::MagicRoute,
        &id,
        Owner::Account(account),
        p.write(write, unix_ms()),
        to_value(&spec),
    )
    .await?;
    if !p.validate_only {
        tracing::info!(%id, %account, prefix = %spec.prefix, nexthop = %spec.nexthop, priority = spec.priority, "static route stored");
        publish(app, account).await?;
    }
    Ok(written(p, &r, view(&r, &tunnels, &cnis)))
}

/// The health of a CNI as a next hop: down while its interconnect's link is reported down.
async fn cni_health(app: &App, account: &str, cni: &Record) -> Result<Health, StoreError> {
    let Some(ic) = cni.body["spec"]["interconnect"].as_str() else {
        return Ok(Health::Down);
    };
    let ic = app
        .store
        .record(RecordKind::Interconnect, ic, Owner::Account(account))
        .await?;
    let up = ic
        .as_ref()
        .and_then(|r| parse::<Interconnect>(r).ok())
        .and_then(|ic| ic.last_report)
        .is_some_and(|l| l.link_up);
    Ok(if up { Health::Healthy } else { Health::Down })
}

/// The table as PoP `pop` sees it.
async fn table_at(app: &App, account: &str, pop: &str) -> Result<Value, ApiError> {
    let owner = Owner::Account(account);
    if app
        .store
        .get(Kind::Pop, pop, Owner::Operator)
        .await?
        .is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("PoP {pop:?} does not exist"),
        ));
    }
    let (tunnels, cnis) = next_hops(app, account).await?;
    let statics = app.store.records(RecordKind::MagicRoute, owner).await?;
    let mut routes = resolved(&statics, &tunnels, &cnis);
    let mut health: BTreeMap<NextHop, (Health, bool)> = BTreeMap::new();
    for t in &tunnels {
        let Ok((spec, _)) = load_tunnel(t) else {
            continue;
        };
        let hop = NextHop::Tunnel(spec.name.clone());
        let seen = status_of(app, account, &t.id).await?.pops.remove(pop);
        if let Some(seen) = &seen {
            routes.extend(seen.state.learnt.iter().filter_map(|p| {
                Some(Route {
                    prefix: p.parse().ok()?,
                    next_hop: hop.clone(),
                    priority: BGP_PRIORITY,
                    weight: 1,
                    scope: Default::default(),
                    source: Source::Bgp,
                    description: format!("learnt over BGP on {}", spec.name),
                })
            }));
        }
        health.insert(
            hop,
            seen.map_or((Health::Healthy, false), |s| (s.state.health, true)),
        );
    }
    for c in &cnis {
        health.insert(
            NextHop::Cni(c.id.clone()),
            (cni_health(app, account, c).await?, true),
        );
    }
    let seen = table::view(&routes, pop, None, |hop| {
        health.get(hop).map_or(Health::Down, |(h, _)| *h)
    });
    let items: Vec<Value> = seen
        .iter()
        .map(|s| {
            let best = seen
                .iter()
                .filter(|o| o.route.prefix == s.route.prefix)
                .map(|o| (o.effective_priority, o.route.source))
                .min();
            let mut v = to_value(s);
            v["active"] = json!(best == Some((s.effective_priority, s.route.source)));
            v["health_reported"] = json!(health.get(&s.route.next_hop).is_some_and(|h| h.1));
            v
        })
        .collect();
    Ok(json!({"pop": pop, "routes": items}))
}

/// The account's static routes; with `?pop=NAME`, the table as that PoP sees it (statics in
/// scope and routes learnt over BGP there, each with its next hop's health, effective
/// priority and whether it is active).
#[utoipa::path(get, path = "/v1/accounts/{account}/magic/routes", params(("pop" = Option<String>, Query, description = "a PoP's view of the table")),
    responses((status = 200, description = "`{items, next}`, or with `pop`, `{pop, routes}`"), (status = 404, description = "no such PoP")))]
pub(super) async fn list_routes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    if let Some(pop) = &p.pop {
        return Ok(ok(StatusCode::OK, table_at(&app, &account, pop).await?));
    }
    let records = app
        .store
        .records(RecordKind::MagicRoute, Owner::Account(&account))
        .await?;
    let (tunnels, cnis) = next_hops(&app, &account).await?;
    Ok(ok(
        StatusCode::OK,
        page(records, &p, |r| view(r, &tunnels, &cnis)),
    ))
}

/// Creates a static route (`?validate_only=true`: checks it and stores nothing).
#[utoipa::path(post, path = "/v1/accounts/{account}/magic/routes", request_body(content = Object, description = "prefix, nexthop (the customer's side of a tunnel or CNI), priority (lower wins), weight (1 to 256), scope {colo_names, colo_regions}, description"),
    responses((status = 201, description = "the route, with the tunnel or CNI its next hop is"), (status = 400, description = "each problem with its field")))]
pub(super) async fn create_route(
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
        RecordKind::MagicRoute,
        id,
        Owner::Account(account),
        "route",
    )
    .await
}

/// One static route.
#[utoipa::path(get, path = "/v1/accounts/{account}/magic/routes/{id}", responses((status = 200, description = "the route"), (status = 404, description = "no such route in the account")))]
pub(super) async fn get_route(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = one(&app, &account, &id).await?;
    let (tunnels, cnis) = next_hops(&app, &account).await?;
    Ok(record_response(
        StatusCode::OK,
        &r,
        view(&r, &tunnels, &cnis),
    ))
}

/// Replaces a static route (If-Match).
#[utoipa::path(put, path = "/v1/accounts/{account}/magic/routes/{id}", request_body(content = Object, description = "as for create"),
    responses((status = 200, description = "the route"), (status = 400, description = "each problem with its field"), (status = 412, description = "changed since the ETag")))]
pub(super) async fn put_route(
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

/// Deletes a static route.
#[utoipa::path(delete, path = "/v1/accounts/{account}/magic/routes/{id}", responses((status = 200, description = "deleted"), (status = 404, description = "no such route in the account")))]
pub(super) async fn delete_route(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    one(&app, &account, &id).await?;
    app.store
        .delete_record(
            RecordKind::MagicRoute,
            &id,
            Owner::Account(&account),
            if_match(&headers)?,
        )
        .await?;
    tracing::info!(%id, %account, "static route deleted");
    publish(&app, &account).await?;
    Ok(ok(StatusCode::OK, json!({"id": id})))
}
