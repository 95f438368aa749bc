//! CNIs (`/v1/accounts/{account}/cni/cnis`): one per interconnect, binding it to a /31
//! (and, with `allocate_v6` or a given `p2p_v6`, a /127) allocated from the operator's pools
//! inside the write, so concurrent creates never share a pair; the customer's ASN (the
//! account's default when absent), MD5 key, BGP mode, prefixes, use case and link settings,
//! checked against the interconnect's dataplane. The MD5 key is write-only: a replace without
//! it keeps it, `""` removes it. Also the account's settings (`/cni/settings`: its default ASN).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_interconnect::addressing::{halves_v4, halves_v6, next_free_v4, next_free_v6};
use edgenet_interconnect::cni::{asn_problem, CniSpec};
use edgenet_interconnect::workflow::Stage;
use edgenet_protocol::{CniProvision, Kind};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{json, Value};

use super::super::{decode, ok, ApiResult, JsonBody};
use super::*;
use crate::api::unix_ms;

/// A CNI as stored: the spec, and its MD5 key beside it (the spec never serializes it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCni {
    spec: CniSpec,
    #[serde(default)]
    md5_key: Option<String>,
}

/// The claim that an interconnect has its CNI.
fn bound_claim(interconnect: &str) -> String {
    format!("cni-of:{interconnect}")
}

fn load(r: &Record) -> Result<CniSpec, StoreError> {
    let stored: StoredCni = parse(r)?;
    let mut spec = stored.spec;
    spec.md5_key = stored.md5_key;
    Ok(spec)
}

/// The CNI bound to an interconnect of the account, if any.
pub(super) async fn of_interconnect(
    app: &App,
    account: &str,
    interconnect: &str,
) -> Result<Option<Record>, StoreError> {
    Ok(app
        .store
        .records(RecordKind::Cni, Owner::Account(account))
        .await?
        .into_iter()
        .find(|r| r.body["spec"]["interconnect"] == interconnect))
}

/// What the PoP that runs the CNI's site provisions; none when its interconnect or site is
/// gone.
async fn provision(app: &App, cni: &Record) -> Result<Option<CniProvision>, StoreError> {
    let account = cni.account.clone().unwrap_or_default();
    let stored: StoredCni = parse(cni)?;
    let ic = app
        .store
        .record(
            RecordKind::Interconnect,
            &stored.spec.interconnect,
            Owner::Account(&account),
        )
        .await?;
    let Some(ic) = ic else { return Ok(None) };
    let ic: Interconnect = parse(&ic)?;
    let Some(site) = app
        .store
        .record(RecordKind::Site, &ic.site, Owner::Operator)
        .await?
    else {
        return Ok(None);
    };
    let site: Site = parse(&site)?;
    let interface = ic
        .slot
        .as_ref()
        .and_then(|slot| site.port(&ic.device, slot))
        .map(|(_, port)| port.interface.clone());
    Ok(Some(CniProvision {
        pop: site.pop_name().to_string(),
        site: site.code.clone(),
        device: ic.device,
        dataplane: ic.dataplane,
        interface,
        account,
        interconnect: stored.spec.interconnect.clone(),
        spec: stored.spec,
        md5_key: stored.md5_key,
    }))
}

/// Streams the CNI to the PoPs as a `cni` object (a new version only when what the PoP
/// provisions changed).
pub(super) async fn publish(app: &App, cni: &Record) -> Result<(), StoreError> {
    let account = cni.account.clone().unwrap_or_default();
    let Some(body) = provision(app, cni).await?.map(|p| to_value(&p)) else {
        return unpublish(app, &cni.id, &account).await;
    };
    let owner = Owner::Account(&account);
    let before = app.store.get(Kind::Cni, &cni.id, owner).await?;
    if before.as_ref().is_some_and(|b| b.body == body) {
        return Ok(());
    }
    let version = app
        .put(
            Kind::Cni,
            &cni.id,
            Some(&body),
            before.is_none(),
            None,
            owner,
        )
        .await?;
    tracing::info!(cni = %cni.id, pop = %body["pop"], interface = %body["interface"], version, "CNI streamed to its PoP");
    Ok(())
}

/// Takes a CNI off the stream.
async fn unpublish(app: &App, id: &str, account: &str) -> Result<(), StoreError> {
    let owner = Owner::Account(account);
    if app.store.get(Kind::Cni, id, owner).await?.is_some() {
        app.put(Kind::Cni, id, None, false, None, owner).await?;
    }
    Ok(())
}

/// Streams again every CNI whose provisioning changed (after a site changed).
pub(super) async fn republish_all(app: &App) -> Result<(), StoreError> {
    for cni in app.store.records(RecordKind::Cni, Owner::Operator).await? {
        publish(app, &cni).await?;
    }
    Ok(())
}

/// The customer's addresses on a CNI (its halves of the /31 and /127), where a static route
/// may point.
pub(crate) fn customer_side(r: &Record) -> Vec<std::net::IpAddr> {
    let Ok(spec) = load(r) else { return Vec::new() };
    let v4 = spec.p2p_v4.map(|n| halves_v4(n).1.into());
    let v6 = spec.p2p_v6.map(|n| halves_v6(n).1.into());
    v4.into_iter().chain(v6).collect()
}

/// How a CNI is shown: never its MD5 key, only whether it has one.
fn view(r: &Record) -> Value {
    let Ok(spec) = load(r) else {
        return json!({"id": r.id, "error": "the stored record does not decode"});
    };
    let mut v = to_value(&spec);
    v["id"] = json!(r.id);
    v["md5_key_set"] = json!(spec.md5_key.is_some());
    if let Some(n) = spec.p2p_v4 {
        let (ours, theirs) = halves_v4(n);
        v["our_address_v4"] = json!(ours);
        v["customer_address_v4"] = json!(theirs);
    }
    if let Some(n) = spec.p2p_v6 {
        let (ours, theirs) = halves_v6(n);
        v["our_address_v6"] = json!(ours);
        v["customer_address_v6"] = json!(theirs);
    }
    v["version"] = json!(r.version);
    v["created_ms"] = json!(r.created_ms);
    v
}

/// The configuration document of an interconnect and its CNI (what the customer approves on
/// v1): addressing, VLAN, MTU, BGP.
pub(super) fn configuration(cni: &Record, interconnect: &Record) -> Value {
    let (Ok(spec), Ok(ic)) = (load(cni), parse::<Interconnect>(interconnect)) else {
        return Value::Null;
    };
    let dp = ic.dataplane;
    let v4 = spec.p2p_v4.map(|n| {
        let (ours, theirs) = halves_v4(n);
        json!({"prefix": n, "ours": ours, "customer": theirs})
    });
    let v6 = spec.p2p_v6.map(|n| {
        let (ours, theirs) = halves_v6(n);
        json!({"prefix": n, "ours": ours, "customer": theirs})
    });
    json!({
        "cni": cni.id,
        "dataplane": dp,
        "gre": dp == Dataplane::V1,
        "port_mtu": dp.port_mtu(),
        "customer_mtu": spec.mtu.unwrap_or(dp.max_customer_mtu()),
        "vlan": spec.vlan.or(ic.partner.as_ref().map(|p| p.vlan)),
        "addressing": {"v4": v4, "v6": v6},
        "bgp": {"customer_asn": spec.customer_asn, "mode": spec.bgp_mode, "md5": spec.md5_key.is_some(),
            "bfd": spec.bfd, "max_prefixes": spec.max_prefixes, "prefixes": spec.prefixes},
        "lacp": spec.lacp,
        "static_routes_needed": ic.cloud.as_ref().is_some_and(CloudCircuit::needs_static_routes),
    })
}

/// The account's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// The ASN a new CNI has when it names none.
    #[serde(default)]
    pub default_asn: Option<u32>,
}

async fn account_settings(app: &App, account: &str) -> Result<AccountSettings, StoreError> {
    match app
        .store
        .record(RecordKind::Settings, account, Owner::Account(account))
        .await?
    {
        Some(r) => parse(&r),
        None => Ok(AccountSettings::default()),
    }
}

/// What a request asks beside the spec.
#[derive(Debug, Clone, Copy)]
struct Asks {
    /// Allocate a /127 when none is given.
    allocate_v6: bool,
    /// `"md5_key": ""`: remove the key.
    clear_md5: bool,
}

/// A CNI's spec from a request: `allocate_v6` and an empty key taken out, the account's
/// default ASN put in.
fn spec_of(body: &Value, settings: &AccountSettings) -> Result<(CniSpec, Asks), ApiError> {
    let mut body = body.clone();
    let clear_md5 = body.get("md5_key") == Some(&json!(""));
    if clear_md5 {
        body.as_object_mut().map(|o| o.remove("md5_key"));
    }
    let allocate_v6 = match body.as_object_mut().and_then(|o| o.remove("allocate_v6")) {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            return Err(StoreError::Invalid(vec![Problem::new(
                "allocate_v6",
                format!("{other} is not true or false"),
            )])
            .into())
        }
    };
    if let (Some(o), Some(asn)) = (body.as_object_mut(), settings.default_asn) {
        o.entry("customer_asn").or_insert(json!(asn));
    }
    Ok((
        decode(&body)?,
        Asks {
            allocate_v6,
            clear_md5,
        },
    ))
}

/// The CNI to store and its claims, computed inside the write from every other record's
/// claims.
fn plan(
    mut spec: CniSpec,
    asks: Asks,
    before: Option<&Record>,
    taken: &BTreeSet<String>,
    pools: &OperatorSettings,
) -> Result<(Value, Vec<String>), StoreError> {
    let before = before.map(load).transpose()?;
    if let Some(b) = &before {
        // A replace keeps what it does not name: the pair, and the write-only key.
        spec.p2p_v4 = spec.p2p_v4.or(b.p2p_v4);
        spec.p2p_v6 = spec.p2p_v6.or(b.p2p_v6);
        if spec.md5_key.is_none() && !asks.clear_md5 {
            spec.md5_key = b.md5_key.clone();
        }
    }
    let bound = bound_claim(&spec.interconnect);
    if taken.contains(&bound) {
        return Err(StoreError::Refused(format!(
            "interconnect {} has a CNI already",
            spec.interconnect
        )));
    }
    let taken_v4: BTreeSet<Ipv4Net> = taken
        .iter()
        .filter_map(|c| c.strip_prefix("v4:")?.parse().ok())
        .collect();
    let taken_v6: BTreeSet<Ipv6Net> = taken
        .iter()
        .filter_map(|c| c.strip_prefix("v6:")?.parse().ok())
        .collect();
    let mut problems = Vec::new();
    match spec.p2p_v4 {
        Some(n) if taken_v4.iter().any(|t| t.contains(&n.network()) || n.contains(&t.network())) => {
            problems.push(Problem::new("p2p_v4", format!("{n} overlaps another CNI's pair")));
        }
        Some(_) => {}
        None => match pools.pool_v4 {
            None => problems.push(Problem::new(
                "p2p_v4",
                "none given and the operator has no pool to allocate from (PUT /v1/cni/settings pool_v4)",
            )),
            Some(pool) => match next_free_v4(pool, &taken_v4) {
                Some(n) => spec.p2p_v4 = Some(n),
                None => {
                    return Err(StoreError::Refused(format!(
                        "the pool {pool} has no free /31"
                    )))
                }
            },
        },
    }
    match spec.p2p_v6 {
        Some(n)
            if taken_v6
                .iter()
                .any(|t| t.contains(&n.network()) || n.contains(&t.network())) =>
        {
            problems.push(Problem::new(
                "p2p_v6",
                format!("{n} overlaps another CNI's pair"),
            ));
        }
        Some(_) => {}
        None if asks.allocate_v6 => match pools.pool_v6 {
            None => problems.push(Problem::new(
                "allocate_v6",
                "the operator has no IPv6 pool to allocate from (PUT /v1/cni/settings pool_v6)",
            )),
            Some(pool) => match next_free_v6(pool, &taken_v6) {
                Some(n) => spec.p2p_v6 = Some(n),
                None => {
                    return Err(StoreError::Refused(format!(
                        "the pool {pool} has no free /127"
                    )))
                }
            },
        },
        None => {}
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems));
    }
    let mut claims = vec![bound];
    claims.extend(spec.p2p_v4.map(|n| format!("v4:{n}")));
    claims.extend(spec.p2p_v6.map(|n| format!("v6:{n}")));
    let md5_key = spec.md5_key.clone();
    Ok((to_value(&StoredCni { spec, md5_key }), claims))
}

/// Every problem of `spec` on the account's interconnect (its dataplane and circuit).
async fn check(app: &App, account: &str, spec: &CniSpec) -> Result<(), ApiError> {
    let ic = app
        .store
        .record(
            RecordKind::Interconnect,
            &spec.interconnect,
            Owner::Account(account),
        )
        .await?;
    let Some(ic) = ic else {
        return Err(StoreError::Invalid(vec![Problem::new(
            "interconnect",
            format!(
                "{:?} is not an interconnect of the account",
                spec.interconnect
            ),
        )])
        .into());
    };
    let ic: Interconnect = parse(&ic)?;
    let mut problems = spec.validate(ic.dataplane);
    if matches!(ic.workflow.stage, Stage::Canceled | Stage::Rejected) {
        problems.push(Problem::new(
            "interconnect",
            format!("{} is {:?}", spec.interconnect, ic.workflow.stage),
        ));
    }
    if let (Some(CloudCircuit::Google { mtu, .. }), Some(want)) = (&ic.cloud, spec.mtu) {
        if want != *mtu {
            problems.push(Problem::new(
                "mtu",
                format!(
                    "{want} differs from the Google VLAN attachment's MTU {mtu}: they must match"
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(problems).into())
    }
}

async fn write(
    app: &App,
    headers: &HeaderMap,
    account: &str,
    id: Option<&str>,
    p: &RecordParams,
    body: &Value,
) -> ApiResult {
    let settings = account_settings(app, account).await?;
    let (spec, asks) = spec_of(body, &settings)?;
    check(app, account, &spec).await?;
    let pools = operator_settings(app).await?;
    let write = match id {
        None => Write::Create,
        Some(_) => Write::Replace(if_match(headers)?),
    };
    let options = p.write(write, unix_ms());
    let id = id.map_or_else(new_id, String::from);
    let r = app
        .store
        .write_record(
            RecordKind::Cni,
            &id,
            Owner::Account(account),
            options,
            &|before, taken| plan(spec.clone(), asks, before, taken, &pools),
        )
        .await?;
    if !p.validate_only {
        // Never the key: whether it is set is all a log line says.
        tracing::info!(%id, %account, interconnect = %r.body["spec"]["interconnect"], p2p_v4 = %r.body["spec"]["p2p_v4"], md5 = r.body["md5_key"].is_string(), "CNI stored");
        publish(app, &r).await?;
        // Static routes may point at the CNI.
        crate::api::magic::publish(app, account).await?;
    }
    Ok(written(p, &r, view(&r)))
}

/// The account's CNIs.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/cnis", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_cnis(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let records = app
        .store
        .records(RecordKind::Cni, Owner::Account(&account))
        .await?;
    Ok(ok(StatusCode::OK, page(records, &p, view)))
}

/// Creates a CNI on one of the account's interconnects; its /31 is allocated when not given.
#[utoipa::path(post, path = "/v1/accounts/{account}/cni/cnis", request_body(content = Object, description = "interconnect, customer_asn, md5_key, bgp_mode (dynamic | advertise_only), prefixes, use_case (peering | magic_transit | wan), max_prefixes, mtu, vlan, bfd, lacp, p2p_v4, p2p_v6, allocate_v6"),
    responses((status = 201, description = "the CNI (never its MD5 key)"), (status = 400, description = "each problem with its field"), (status = 409, description = "the interconnect has a CNI, or the pool is full")))]
pub(super) async fn create_cni(
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
    found(app, RecordKind::Cni, id, Owner::Account(account), "CNI").await
}

/// One CNI.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/cnis/{id}", responses((status = 200, description = "the CNI"), (status = 404, description = "no such CNI in the account")))]
pub(super) async fn get_cni(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = one(&app, &account, &id).await?;
    Ok(record_response(StatusCode::OK, &r, view(&r)))
}

/// Replaces a CNI (If-Match); its pair and MD5 key stay unless given.
#[utoipa::path(put, path = "/v1/accounts/{account}/cni/cnis/{id}", request_body(content = Object, description = "as for create"),
    responses((status = 200, description = "the CNI"), (status = 400, description = "each problem with its field"), (status = 412, description = "changed since the ETag")))]
pub(super) async fn put_cni(
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

/// Deletes a CNI, freeing its addresses.
#[utoipa::path(delete, path = "/v1/accounts/{account}/cni/cnis/{id}", responses((status = 200, description = "deleted"), (status = 404, description = "no such CNI in the account")))]
pub(super) async fn delete_cni(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    app.store
        .delete_record(
            RecordKind::Cni,
            &id,
            Owner::Account(&account),
            if_match(&headers)?,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("CNI {id:?} does not exist"))
            }
            e => e.into(),
        })?;
    tracing::info!(%id, %account, "CNI deleted");
    unpublish(&app, &id, &account).await?;
    crate::api::magic::publish(&app, &account).await?;
    Ok(ok(StatusCode::OK, json!({"id": id})))
}

/// The account's settings.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/settings", responses((status = 200, body = AccountSettings)))]
pub(super) async fn get_settings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    Ok(ok(
        StatusCode::OK,
        to_value(&account_settings(&app, &account).await?),
    ))
}

/// Replaces the account's settings: its default ASN.
#[utoipa::path(put, path = "/v1/accounts/{account}/cni/settings", request_body = AccountSettings, responses((status = 200, body = AccountSettings), (status = 400, description = "each problem with its field")))]
pub(super) async fn put_settings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let s: AccountSettings = decode(&body)?;
    if let Some(reason) = s.default_asn.and_then(asn_problem) {
        return Err(StoreError::Invalid(vec![Problem::new("default_asn", reason)]).into());
    }
    let value = to_value(&s);
    let options = p.write(Write::Upsert, unix_ms());
    let r = put_plain(
        &app,
        RecordKind::Settings,
        &account,
        Owner::Account(&account),
        options,
        value,
    )
    .await?;
    if p.validate_only {
        return Ok(validated(r.body));
    }
    Ok(record_response(StatusCode::OK, &r, r.body.clone()))
}
