//! PoPs (the operator's): their records with what each applied, the backbone CA, and the
//! certificates PoPs ask it for.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_protocol::validate::FieldProblem;
use edgenet_protocol::{CertificateRequest, Issued, Kind};
use serde_json::{json, Value};

use super::{get_one, list, lock, ok, remove, write, ApiError, ApiResult, App, JsonBody, Params};
use crate::store::Owner;

/// PoPs with what each applied: version, lag, last seen, last error, connected.
#[utoipa::path(get, path = "/v1/pops", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_pops(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    list(&app, Kind::Pop, Owner::Operator, &p).await
}

pub(super) fn pop_view(app: &App, name: String, version: i64, config: Value) -> Value {
    let current = *app.version.borrow();
    let status = lock(&app.statuses).get(&name).cloned();
    let connected = lock(&app.connected).get(&name).copied().unwrap_or(0) > 0;
    let (objects, counters) = match lock(&app.reports).get(&name) {
        Some(r) => {
            let objects: Vec<Value> = r
                .objects
                .values()
                .map(|(o, at)| {
                    let mut v = json!(o);
                    v["at_ms"] = json!(at);
                    v
                })
                .collect();
            let counters = r
                .counters
                .as_ref()
                .map(|(c, at)| json!({"at_ms": at, "counters": c}));
            (objects, counters)
        }
        None => (Vec::new(), None),
    };
    json!({
        "name": name,
        "version": version,
        "config": config,
        "connected": connected,
        "applied_version": status.as_ref().map(|s| s.applied),
        "lag": status.as_ref().map_or(current, |s| current - s.applied),
        "last_seen_ms": status.as_ref().map(|s| s.last_seen_ms),
        "last_error": status.and_then(|s| s.last_error),
        "objects": objects,
        "counters": counters,
    })
}

/// Registers a PoP: `{name, latitude, longitude, addresses, role}`.
#[utoipa::path(post, path = "/v1/pops", request_body = edgenet_protocol::PopRecord, responses((status = 201, description = "registered")))]
pub(super) async fn create_pop(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    write(&app, Kind::Pop, None, body, &p, &headers, Owner::Operator).await
}

/// One PoP with its status.
#[utoipa::path(get, path = "/v1/pops/{name}", responses((status = 200, description = "the PoP")))]
pub(super) async fn get_pop(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    get_one(&app, Kind::Pop, &name, Owner::Operator).await
}

/// Replaces a PoP's record (If-Match honoured).
#[utoipa::path(put, path = "/v1/pops/{name}", request_body = edgenet_protocol::PopRecord, responses((status = 200, description = "replaced")))]
pub(super) async fn put_pop(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    write(
        &app,
        Kind::Pop,
        Some(&name),
        body,
        &p,
        &headers,
        Owner::Operator,
    )
    .await
}

/// Removes a PoP's record.
#[utoipa::path(delete, path = "/v1/pops/{name}", responses((status = 200, description = "deleted")))]
pub(super) async fn delete_pop(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    remove(&app, Kind::Pop, &name, &headers, Owner::Operator).await
}

/// The backbone CA's certificate (PEM), which PoPs trust for each other.
#[utoipa::path(get, path = "/v1/ca", responses((status = 200, description = "`{certificate}`")))]
pub(super) async fn ca_certificate(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    app.authorize(&headers, &["read", "pop"]).await?;
    let ca = app
        .ca
        .get()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no CA"))?;
    Ok(ok(StatusCode::OK, json!({"certificate": ca.cert_pem})))
}

/// Signs a registered PoP's backbone certificate from its CSR (`{csr: PEM}`); the certificate
/// names the PoP (`NAME.pop.edgenet`), for server and client authentication, for a year.
#[utoipa::path(post, path = "/v1/pops/{name}/certificate", request_body = CertificateRequest,
    responses((status = 200, description = "`{certificate, ca}`", body = Issued), (status = 404, description = "PoP not registered")))]
pub(super) async fn pop_certificate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["pop"]).await?;
    app.registered_pop(&name).await?;
    let problem = |message: String| {
        ApiError(
            StatusCode::BAD_REQUEST,
            vec![FieldProblem {
                field: Some("csr".into()),
                message,
            }],
        )
    };
    let request: CertificateRequest = serde_json::from_value(body)
        .map_err(|_| problem("a PEM certificate signing request is required".into()))?;
    let ca = app
        .ca
        .get()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no CA"))?;
    let certificate = ca.sign(&request.csr, &name).map_err(problem)?;
    tracing::info!(pop = %name, "signed a backbone certificate");
    let issued = Issued {
        certificate,
        ca: ca.cert_pem.clone(),
    };
    Ok(ok(StatusCode::OK, json!(issued)))
}
