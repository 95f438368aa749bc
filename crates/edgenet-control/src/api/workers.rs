//! An account's workers in Cloudflare's shapes: scripts under
//! `/v1/accounts/{account}/workers/scripts/{name}` (PUT the component as the body: a new
//! version, refused unless it is a `wasi:http/proxy` component this engine links, with
//! wasmtime's reason; GET its metadata and versions; DELETE), its settings (`PATCH .../settings`:
//! variables, allowed hosts, limits) and write-only secrets (`PUT .../secrets`,
//! `GET .../secrets` lists names, `DELETE .../secrets/{secret}`), and routes under
//! `/workers/routes` binding a pattern of one of the account's zones to a script, optionally at
//! a pinned version (a rollback is a route pinned to an earlier one). PoPs fetch components by
//! hash from `GET /v1/workers/components/{sha256}`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use edgenet_interconnect::Problem;
use edgenet_protocol::Kind;
use serde::Deserialize;
use serde_json::{json, Value};

use super::records::{found, new_id, parse, record_response, to_value};
use super::{decode, ok, rfc3339, unix_ms, ApiError, ApiResult, App, JsonBody};
use crate::certificates::B64;
use crate::store::{Owner, Record, RecordKind, StoreError, Write, WriteOptions};
use crate::workers::{
    publish, script_id, secret_context, valid_name, ScriptVersion, Settings, StoredRoute,
    StoredScript, StoredSecret, MAX_COMPONENT, MAX_VERSIONS,
};

/// A script as the API shows it: versions, settings, its secrets' names, and what each PoP
/// reports it runs (`running versions [..]`, or what it waits for).
fn script_view(app: &App, r: &Record) -> Value {
    let Ok(s) = parse::<StoredScript>(r) else {
        return json!({"id": r.id, "error": "the stored record does not decode"});
    };
    let latest = s.latest();
    let pops = {
        let reports = super::lock(&app.reports);
        let status =
            crate::reports::status(&reports, edgenet_protocol::ReportedKind::Worker, &r.id, 0);
        json!(status.pops)
    };
    json!({
        "pops": pops,
        "id": s.name,
        "etag": latest.map(|v| v.sha256.clone()),
        "version": latest.map(|v| v.number),
        "size": latest.map(|v| v.size),
        "created_on": rfc3339(r.created_ms),
        "modified_on": latest.map_or(Value::Null, |v| rfc3339(v.uploaded_ms)),
        "versions": s.versions.iter().map(|v| json!({"number": v.number, "sha256": v.sha256,
            "size": v.size, "uploaded_on": rfc3339(v.uploaded_ms)})).collect::<Vec<_>>(),
        "settings": to_value(&s.settings),
        "secrets": s.secrets.keys().collect::<Vec<_>>(),
    })
}

fn route_view(r: &Record) -> Value {
    match parse::<StoredRoute>(r) {
        Ok(route) => json!({"id": r.id, "pattern": route.pattern, "script": route.script,
            "version": route.version, "zone": route.zone}),
        Err(_) => json!({"id": r.id, "error": "the stored record does not decode"}),
    }
}

fn problem(field: &str, reason: impl Into<String>) -> ApiError {
    StoreError::Invalid(vec![Problem::new(field, reason)]).into()
}

async fn script(app: &App, account: &str, name: &str) -> Result<Record, ApiError> {
    found(
        app,
        RecordKind::WorkerScript,
        &script_id(account, name),
        Owner::Account(account),
        "worker script",
    )
    .await
}

/// Uploads a version of a script: the body is the component (`application/wasm`), at most
/// 32 MiB. The script is made by its first upload.
#[utoipa::path(put, path = "/v1/accounts/{account}/workers/scripts/{name}",
    request_body(content = String, description = "the component (.wasm)", content_type = "application/wasm"),
    responses((status = 200, description = "`{id, etag (SHA-256), version, versions, ...}`"), (status = 400, description = "not a wasi:http/proxy component this engine links: wasmtime's reason"), (status = 413, description = "over 32 MiB")))]
pub(super) async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    if !valid_name(&name) {
        return Err(problem(
            "name",
            format!("{name:?}: letters, digits, - and _, at most 63"),
        ));
    }
    if body.len() > MAX_COMPONENT {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the component is {} bytes: at most {MAX_COMPONENT}",
                body.len()
            ),
        ));
    }
    let workers = app
        .workers
        .get()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "workers are not set up"))?;
    // Checked in a file of its own, by a separate process, as a PoP will compile it.
    std::fs::create_dir_all(&workers.scratch)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let file = workers.scratch.join(format!("{}.wasm", new_id()));
    std::fs::write(&file, &body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let checked = {
        let file = file.clone();
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let validate = &app.workers.get().expect("checked above").validate;
            validate(&file)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    };
    let _ = std::fs::remove_file(&file);
    if let Err(why) = checked {
        return Err(problem(
            "body",
            format!("is not a wasi:http/proxy component this engine links: {why}"),
        ));
    }
    let now = unix_ms();
    let sha256 = app.store.put_blob(&body, now).await?;
    let size = body.len() as u64;
    let id = script_id(&account, &name);
    let owner = Owner::Account(&account);
    let pinned = pinned_versions(&app, &account, &name).await?;
    let r = app
        .store
        .write_record(
            RecordKind::WorkerScript,
            &id,
            owner,
            WriteOptions::new(Write::Upsert, now),
            &|before, _| {
                let mut s = match before {
                    Some(b) => parse::<StoredScript>(b)?,
                    None => StoredScript {
                        name: name.clone(),
                        versions: Vec::new(),
                        settings: Settings::default(),
                        secrets: Default::default(),
                    },
                };
                let number = s.latest().map_or(1, |v| v.number + 1);
                s.versions.push(ScriptVersion {
                    number,
                    sha256: sha256.clone(),
                    size,
                    uploaded_ms: now,
                });
                while s.versions.len() > MAX_VERSIONS {
                    match s.versions.iter().position(|v| !pinned.contains(&v.number)) {
                        Some(i) => {
                            s.versions.remove(i);
                        }
                        None => break,
                    }
                }
                Ok((to_value(&s), vec![]))
            },
        )
        .await?;
    publish(&app, &account, &name).await?;
    let v = parse::<StoredScript>(&r)?;
    tracing::info!(%account, script = %name, version = v.latest().map(|l| l.number), %sha256, size, "worker uploaded");
    Ok(record_response(StatusCode::OK, &r, script_view(&app, &r)))
}

/// Rewrites script record `r` (at the version read) with `change`, then streams the script.
async fn rewrite(
    app: &App,
    account: &str,
    r: &Record,
    change: impl FnOnce(&mut StoredScript),
) -> Result<Record, ApiError> {
    let mut s: StoredScript = parse(r)?;
    change(&mut s);
    let name = s.name.clone();
    let r = crate::api::records::put_plain(
        app,
        RecordKind::WorkerScript,
        &r.id,
        Owner::Account(account),
        WriteOptions::new(Write::Replace(Some(r.version)), unix_ms()),
        to_value(&s),
    )
    .await?;
    publish(app, account, &name).await?;
    Ok(r)
}

/// The versions routes of the account pin for script `name`.
async fn pinned_versions(
    app: &App,
    account: &str,
    name: &str,
) -> Result<BTreeSet<u32>, StoreError> {
    Ok(app
        .store
        .records(RecordKind::WorkerRoute, Owner::Account(account))
        .await?
        .iter()
        .filter_map(|r| parse::<StoredRoute>(r).ok())
        .filter(|r| r.script == name)
        .filter_map(|r| r.version)
        .collect())
}

/// The account's scripts.
#[utoipa::path(get, path = "/v1/accounts/{account}/workers/scripts", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let items: Vec<Value> = app
        .store
        .records(RecordKind::WorkerScript, Owner::Account(&account))
        .await?
        .iter()
        .map(|r| script_view(&app, r))
        .collect();
    Ok(ok(StatusCode::OK, json!({"items": items, "next": null})))
}

/// One script's metadata: its versions, settings and the names of its secrets.
#[utoipa::path(get, path = "/v1/accounts/{account}/workers/scripts/{name}", responses((status = 200, description = "the script"), (status = 404, description = "no such script")))]
pub(super) async fn get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = script(&app, &account, &name).await?;
    Ok(record_response(StatusCode::OK, &r, script_view(&app, &r)))
}

/// Deletes a script (refused while a route binds it) and the components no other script uses.
#[utoipa::path(delete, path = "/v1/accounts/{account}/workers/scripts/{name}", responses((status = 200, description = "deleted"), (status = 409, description = "routes bind it")))]
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let r = script(&app, &account, &name).await?;
    let bound: Vec<String> = app
        .store
        .records(RecordKind::WorkerRoute, Owner::Account(&account))
        .await?
        .iter()
        .filter_map(|r| parse::<StoredRoute>(r).ok())
        .filter(|r| r.script == name)
        .map(|r| r.pattern)
        .collect();
    if !bound.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "routes bind script {name:?} ({}): delete them first",
                bound.join(", ")
            ),
        ));
    }
    app.store
        .delete_record(RecordKind::WorkerScript, &r.id, r.owner(), None)
        .await?;
    publish(&app, &account, &name).await?;
    let mut used = BTreeSet::new();
    for s in app
        .store
        .records(RecordKind::WorkerScript, Owner::Operator)
        .await?
    {
        if let Ok(s) = parse::<StoredScript>(&s) {
            used.extend(s.versions.into_iter().map(|v| v.sha256));
        }
    }
    let pruned = app.store.prune_blobs(&used).await?;
    tracing::info!(%account, script = %name, pruned, "worker deleted");
    Ok(ok(StatusCode::OK, json!({"id": name})))
}

/// Replaces a script's settings: `{vars, allowed_hosts, limits}` (each as a zone's
/// `[[zones.workers]]` has them) and `kv_namespaces` (binding to one of the account's KV
/// namespaces).
#[utoipa::path(patch, path = "/v1/accounts/{account}/workers/scripts/{name}/settings",
    request_body(content = Value, description = "`{vars?, allowed_hosts?, limits?, kv_namespaces?}`"),
    responses((status = 200, description = "the script"), (status = 400, description = "the field and why")))]
pub(super) async fn settings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let r = script(&app, &account, &name).await?;
    let settings: Settings = decode(&body)?;
    let namespaces = app
        .store
        .records(RecordKind::KvNamespace, Owner::Account(&account))
        .await?;
    let mut problems = Vec::new();
    for (binding, id) in &settings.kv_namespaces {
        if !valid_name(binding) {
            problems.push(Problem::new(
                format!("kv_namespaces.{binding}"),
                "a binding is letters, digits, - and _, at most 63",
            ));
        }
        if !namespaces.iter().any(|n| &n.id == id) {
            problems.push(Problem::new(
                format!("kv_namespaces.{binding}"),
                format!("{id:?} is not a KV namespace of the account"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    let r = rewrite(&app, &account, &r, |s| s.settings = settings).await?;
    Ok(record_response(StatusCode::OK, &r, script_view(&app, &r)))
}

/// A secret: `{name, text, type: "secret_text"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Secret {
    name: String,
    text: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// Writes a secret (write-only: sealed at rest at once, never shown again).
#[utoipa::path(put, path = "/v1/accounts/{account}/workers/scripts/{name}/secrets",
    request_body(content = Value, description = "`{name, text, type: \"secret_text\"}`"),
    responses((status = 200, description = "`{name, type}`"), (status = 400, description = "the field and why")))]
pub(super) async fn put_secret(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let r = script(&app, &account, &name).await?;
    let secret: Secret = decode(&body)?;
    if !valid_name(&secret.name) {
        return Err(problem(
            "name",
            format!("{:?}: letters, digits, - and _, at most 63", secret.name),
        ));
    }
    if secret.kind.as_deref().is_some_and(|k| k != "secret_text") {
        return Err(problem("type", "only \"secret_text\""));
    }
    if secret.text.len() > 5 << 10 {
        return Err(problem("text", "at most 5 KiB"));
    }
    let certs = app.certs.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no sealing key for secrets",
        )
    })?;
    let sealed = certs
        .sealing
        .seal(secret.text.as_bytes(), &secret_context(&r.id, &secret.name))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let stored = StoredSecret {
        sealed: B64.encode(sealed),
        revision: new_id(),
    };
    rewrite(&app, &account, &r, |s| {
        s.secrets.insert(secret.name.clone(), stored);
    })
    .await?;
    tracing::info!(%account, script = %name, secret = %secret.name, "worker secret written");
    Ok(ok(
        StatusCode::OK,
        json!({"name": secret.name, "type": "secret_text"}),
    ))
}

/// The names of a script's secrets (never their values).
#[utoipa::path(get, path = "/v1/accounts/{account}/workers/scripts/{name}/secrets", responses((status = 200, description = "`[{name, type}]`")))]
pub(super) async fn list_secrets(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let s: StoredScript = parse(&script(&app, &account, &name).await?)?;
    let items: Vec<Value> = s
        .secrets
        .keys()
        .map(|n| json!({"name": n, "type": "secret_text"}))
        .collect();
    Ok(ok(StatusCode::OK, json!(items)))
}

/// Deletes a secret.
#[utoipa::path(delete, path = "/v1/accounts/{account}/workers/scripts/{name}/secrets/{secret}", responses((status = 200, description = "deleted"), (status = 404, description = "no such secret")))]
pub(super) async fn delete_secret(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name, secret)): Path<(String, String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let r = script(&app, &account, &name).await?;
    if !parse::<StoredScript>(&r)?.secrets.contains_key(&secret) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("secret {secret:?} does not exist"),
        ));
    }
    rewrite(&app, &account, &r, |s| {
        s.secrets.remove(&secret);
    })
    .await?;
    Ok(ok(StatusCode::OK, json!({"name": secret})))
}

/// A route: `{pattern, script, version?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    pattern: String,
    script: String,
    #[serde(default)]
    version: Option<u32>,
}

/// Checks a route against the account's zones and scripts: the stored route, or each problem.
async fn checked_route(app: &App, account: &str, route: Route) -> Result<StoredRoute, ApiError> {
    let mut problems = Vec::new();
    let host = route
        .pattern
        .split_once('/')
        .map(|(h, _)| h.to_ascii_lowercase())
        .unwrap_or_default();
    if host.is_empty() {
        problems.push(Problem::new(
            "pattern",
            format!(
                "{:?} is not host/path (\"shop.example.com/api/*\")",
                route.pattern
            ),
        ));
    }
    let zone = app
        .store
        .list(Kind::Zone, Owner::Account(account), None, 10_000)
        .await?
        .into_iter()
        .find_map(|z| {
            let zone: edgenet_config::ZoneSection = serde_json::from_value(z.body).ok()?;
            let serves = zone.hostnames.iter().any(|h| {
                h.eq_ignore_ascii_case(&host)
                    || edgenet_certs::covers(std::slice::from_ref(h), &host)
            });
            serves.then_some(zone.name)
        });
    if zone.is_none() && !host.is_empty() {
        problems.push(Problem::new(
            "pattern",
            format!("{host:?} is not a hostname of one of the account's zones"),
        ));
    }
    match app
        .store
        .record(
            RecordKind::WorkerScript,
            &script_id(account, &route.script),
            Owner::Account(account),
        )
        .await?
    {
        None => problems.push(Problem::new(
            "script",
            format!("{:?} is not a script of the account", route.script),
        )),
        Some(r) => {
            let s: StoredScript = parse(&r)?;
            if let Some(n) = route.version.filter(|n| s.version(*n).is_none()) {
                let kept: Vec<u32> = s.versions.iter().map(|v| v.number).collect();
                problems.push(Problem::new(
                    "version",
                    format!(
                        "script {:?} has no version {n} (it has {kept:?})",
                        route.script
                    ),
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    Ok(StoredRoute {
        pattern: route.pattern,
        script: route.script,
        version: route.version,
        zone: zone.unwrap_or_default(),
    })
}

/// Writes route `id` (a new one when `write` is Create) and streams the scripts it touches.
async fn write_route(app: &App, account: &str, id: &str, write: Write, body: Value) -> ApiResult {
    let route: Route = decode(&body)?;
    let stored = checked_route(app, account, route).await?;
    let before = app
        .store
        .record(RecordKind::WorkerRoute, id, Owner::Account(account))
        .await?
        .and_then(|r| parse::<StoredRoute>(&r).ok());
    let claim = format!("worker_route:{}", stored.pattern);
    let value = to_value(&stored);
    let r = app
        .store
        .write_record(
            RecordKind::WorkerRoute,
            id,
            Owner::Account(account),
            WriteOptions::new(write, unix_ms()),
            &|_, taken| {
                if taken.contains(&claim) {
                    return Err(StoreError::Invalid(vec![Problem::new(
                        "pattern",
                        "another route has this pattern",
                    )]));
                }
                Ok((value.clone(), vec![claim.clone()]))
            },
        )
        .await?;
    publish(app, account, &stored.script).await?;
    if let Some(b) = before.filter(|b| b.script != stored.script) {
        publish(app, account, &b.script).await?;
    }
    let status = if r.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(record_response(status, &r, route_view(&r)))
}

/// Binds a pattern to a script: `{pattern: "shop.example.com/api/*", script, version?}`.
#[utoipa::path(post, path = "/v1/accounts/{account}/workers/routes",
    request_body(content = Value, description = "`{pattern, script, version?}`"),
    responses((status = 201, description = "the route"), (status = 400, description = "the field and why")))]
pub(super) async fn create_route(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    write_route(&app, &account, &new_id(), Write::Create, body).await
}

/// The account's routes.
#[utoipa::path(get, path = "/v1/accounts/{account}/workers/routes", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_routes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let items: Vec<Value> = app
        .store
        .records(RecordKind::WorkerRoute, Owner::Account(&account))
        .await?
        .iter()
        .map(route_view)
        .collect();
    Ok(ok(StatusCode::OK, json!({"items": items, "next": null})))
}

/// One route.
#[utoipa::path(get, path = "/v1/accounts/{account}/workers/routes/{id}", responses((status = 200, description = "the route"), (status = 404, description = "no such route")))]
pub(super) async fn get_route(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = found(
        &app,
        RecordKind::WorkerRoute,
        &id,
        Owner::Account(&account),
        "route",
    )
    .await?;
    Ok(record_response(StatusCode::OK, &r, route_view(&r)))
}

/// Replaces a route (to pin another version: a rollback).
#[utoipa::path(put, path = "/v1/accounts/{account}/workers/routes/{id}",
    request_body(content = Value, description = "`{pattern, script, version?}`"),
    responses((status = 200, description = "the route"), (status = 404, description = "no such route")))]
pub(super) async fn put_route(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    found(
        &app,
        RecordKind::WorkerRoute,
        &id,
        Owner::Account(&account),
        "route",
    )
    .await?;
    write_route(
        &app,
        &account,
        &id,
        Write::Replace(super::if_match(&headers)?),
        body,
    )
    .await
}

/// Deletes a route.
#[utoipa::path(delete, path = "/v1/accounts/{account}/workers/routes/{id}", responses((status = 200, description = "deleted"), (status = 404, description = "no such route")))]
pub(super) async fn delete_route(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let r = app
        .store
        .delete_record(RecordKind::WorkerRoute, &id, Owner::Account(&account), None)
        .await?;
    if let Ok(route) = parse::<StoredRoute>(&r) {
        publish(&app, &account, &route.script).await?;
    }
    Ok(ok(StatusCode::OK, json!({"id": id})))
}

/// A component by its SHA-256, for PoPs (`pop` scope).
#[utoipa::path(get, path = "/v1/workers/components/{sha256}", responses((status = 200, description = "the .wasm", content_type = "application/wasm"), (status = 404, description = "no such component")))]
pub(super) async fn component(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(sha256): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    app.authorize(&headers, &["pop"]).await?;
    let body = app.store.blob(&sha256).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("component {sha256:?} does not exist"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], body).into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use base64::Engine;
    use edgenet_protocol::{Kind, WorkerProvision};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use crate::api::tests::{account, call};
    use crate::api::{router, App};
    use crate::certificates::{Certificates, B64};
    use crate::store::Owner;
    use crate::workers::Workers;

    /// PUTs `body` as script `name`; the status and the answer.
    async fn upload(
        app: &Arc<App>,
        a: &str,
        token: &str,
        name: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method("PUT")
            .uri(format!("/v1/accounts/{a}/workers/scripts/{name}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/wasm")
            .body(Body::from(body.to_vec()))
            .unwrap();
        let res = router(app.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn streamed(app: &Arc<App>, a: &str, name: &str) -> Option<WorkerProvision> {
        let s = app
            .store
            .get(Kind::Worker, &format!("{a}/{name}"), Owner::Operator)
            .await
            .unwrap()?;
        Some(serde_json::from_value(s.body).unwrap())
    }

    #[tokio::test]
    async fn versions_routes_rollback_secrets_and_components_by_hash() {
        let store = crate::store::tests::memory().await;
        let app = App::new(store, None).await.unwrap();
        let sealing = edgenet_certs::seal::SealingKey::new(&[9; 32]).unwrap();
        let _ = app.certs.set(Certificates::new(sealing, None));
        // The check stands in for `edgenet worker-compile` (the integration tests run that):
        // a component starts with the Wasm magic and the component layer.
        let scratch = std::env::temp_dir().join(format!("edgenet-workers-{}", std::process::id()));
        let _ = app.workers.set(Workers {
            validate: Box::new(|f| {
                let b = std::fs::read(f).map_err(|e| e.to_string())?;
                if b.starts_with(b"\0asm\x0d\0\x01\0") {
                    Ok(())
                } else {
                    Err("failed to parse WebAssembly module".into())
                }
            }),
            scratch: scratch.clone(),
        });
        let a = account(&app, "a").await;
        let (_, token) = app.create_token("a", &["admin"], Some(&a)).await.unwrap();
        let zone = json!({"name": "shop", "hostnames": ["shop.test"],
            "origins": {"servers": [{"address": "127.0.0.1:8000"}]}});
        let (s, _) = call(
            &app,
            "POST",
            &format!("/v1/accounts/{a}/zones"),
            &token,
            Some(zone),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);

        let (s, v) = upload(&app, &a, &token, "api", b"not wasm").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errors"][0]["field"], "body");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("failed to parse WebAssembly"),
            "{v}"
        );
        let one = b"\0asm\x0d\0\x01\0 version one".to_vec();
        let two = b"\0asm\x0d\0\x01\0 version two".to_vec();
        let (s, v) = upload(&app, &a, &token, "api", &one).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["result"]["version"], 1);
        let sha1 = v["result"]["etag"].as_str().unwrap().to_string();
        let (_, v) = upload(&app, &a, &token, "api", &two).await;
        assert_eq!(v["result"]["version"], 2);
        let sha2 = v["result"]["etag"].as_str().unwrap().to_string();
        assert!(streamed(&app, &a, "api").await.unwrap().routes.is_empty());

        // Routes: only on the account's zones; the latest version unless pinned.
        let routes = format!("/v1/accounts/{a}/workers/routes");
        let (s, v) = call(
            &app,
            "POST",
            &routes,
            &token,
            Some(json!({"pattern": "blog.test/*", "script": "api"})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errors"][0]["field"], "pattern");
        let (s, v) = call(
            &app,
            "POST",
            &routes,
            &token,
            Some(json!({"pattern": "shop.test/api/*", "script": "api", "version": 7})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errors"][0]["field"], "version");
        let (s, v) = call(
            &app,
            "POST",
            &routes,
            &token,
            Some(json!({"pattern": "shop.test/api/*", "script": "api"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let route = v["result"]["id"].as_str().unwrap().to_string();
        let w = streamed(&app, &a, "api").await.unwrap();
        assert_eq!(
            (w.routes[0].zone.as_str(), w.routes[0].version),
            ("shop", 2)
        );
        assert_eq!(w.versions[&2].sha256, sha2);
        let (s, _) = call(
            &app,
            "POST",
            &routes,
            &token,
            Some(json!({"pattern": "shop.test/api/*", "script": "api"})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "a pattern is bound once");
        // Rollback: the route pinned to version 1.
        let (s, v) = call(
            &app,
            "PUT",
            &format!("{routes}/{route}"),
            &token,
            Some(json!({"pattern": "shop.test/api/*", "script": "api", "version": 1})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let w = streamed(&app, &a, "api").await.unwrap();
        assert_eq!(w.routes[0].version, 1);
        assert_eq!(w.versions.keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(w.versions[&1].sha256, sha1);

        // Settings: a KV binding must name one of the account's namespaces.
        let settings = format!("/v1/accounts/{a}/workers/scripts/api/settings");
        let (s, v) = call(
            &app,
            "PATCH",
            &settings,
            &token,
            Some(json!({"kv_namespaces": {"CACHE": "nope"}})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errors"][0]["field"], "kv_namespaces.CACHE");
        let (_, v) = call(
            &app,
            "POST",
            &format!("/v1/accounts/{a}/storage/kv/namespaces"),
            &token,
            Some(json!({"title": "cache"})),
        )
        .await;
        let ns = v["result"]["id"].as_str().unwrap().to_string();
        let body = json!({"vars": {"MODE": "prod"}, "kv_namespaces": {"CACHE": ns}});
        let (s, v) = call(&app, "PATCH", &settings, &token, Some(body)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let w = streamed(&app, &a, "api").await.unwrap();
        assert_eq!(
            (w.vars["MODE"].as_str(), w.kv_namespaces["CACHE"].as_str()),
            ("prod", ns.as_str())
        );

        // A PoP fetches a component by its hash.
        let (_, pop) = app.create_token("pop", &["pop"], None).await.unwrap();
        let req = Request::builder()
            .uri(format!("/v1/workers/components/{sha1}"))
            .header("authorization", format!("Bearer {pop}"))
            .body(Body::empty())
            .unwrap();
        let res = router(app.clone()).oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes().to_vec(),
            one
        );

        // Secrets: write-only, sealed to each PoP.
        let p1 = json!({"name": "p1", "latitude": 0.0, "longitude": 0.0});
        app.put(Kind::Pop, "p1", Some(&p1), true, None, Owner::Operator)
            .await
            .unwrap();
        let key = edgenet_certs::to_pop::PopKey::generate().unwrap();
        crate::certificates::observe_keys(&app, "p1", &B64.encode(key.public()))
            .await
            .unwrap();
        let secrets = format!("/v1/accounts/{a}/workers/scripts/api/secrets");
        let (s, v) = call(
            &app,
            "PUT",
            &secrets,
            &token,
            Some(json!({"name": "API_KEY", "text": "hunter2", "type": "secret_text"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for (_, v) in [
            call(&app, "GET", &secrets, &token, None).await,
            call(
                &app,
                "GET",
                &format!("/v1/accounts/{a}/workers/scripts/api"),
                &token,
                None,
            )
            .await,
        ] {
            assert!(!v.to_string().contains("hunter2"), "{v}");
            assert!(v.to_string().contains("API_KEY"), "{v}");
        }
        let w = streamed(&app, &a, "api").await.unwrap();
        let sealed = &w.secrets["API_KEY"].pops["p1"];
        let context = WorkerProvision::seal_context("p1", &format!("{a}/api"), "API_KEY");
        let opened = key
            .open(
                &base64::engine::general_purpose::STANDARD
                    .decode(&sealed.sealed)
                    .unwrap(),
                &context,
            )
            .unwrap();
        assert_eq!(opened, b"hunter2");

        // A script a route binds is not deleted; once free, it goes with its components.
        let script = format!("/v1/accounts/{a}/workers/scripts/api");
        let (s, _) = call(&app, "DELETE", &script, &token, None).await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, _) = call(&app, "DELETE", &format!("{routes}/{route}"), &token, None).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = call(&app, "DELETE", &script, &token, None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(streamed(&app, &a, "api").await.is_none());
        assert!(app.store.blob(&sha1).await.unwrap().is_none());
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
