//! Zones: the operator's view of every zone (`/v1/zones`) and an account's of its own
//! (`/v1/accounts/{account}/zones`). A zone's body is a zone as in the TOML `[[zones]]`
//! table, as JSON; zone names are global, as domain names are.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use edgenet_protocol::Kind;

use super::{get_one, list, remove, write, ApiResult, App, JsonBody, Params};
use crate::store::Owner;

/// Every zone, by name. `?cursor=NAME&limit=N`.
#[utoipa::path(get, path = "/v1/zones", params(("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, description = "`{items: [{name, version, config, account}], next}`")))]
pub(super) async fn list_zones(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    list(&app, Kind::Zone, Owner::Operator, &p).await
}

/// Creates an operator's zone (no account).
#[utoipa::path(post, path = "/v1/zones", params(("validate_only" = Option<bool>, Query)), request_body = edgenet_config::ZoneSection,
    responses((status = 201, description = "created; ETag is its version"), (status = 400, description = "errors name the field"), (status = 409, description = "the name is taken")))]
pub(super) async fn create_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    write(&app, Kind::Zone, None, body, &p, &headers, Owner::Operator).await
}

/// One zone, of any account; its ETag is the version of its last change.
#[utoipa::path(get, path = "/v1/zones/{name}", responses((status = 200, description = "`{name, version, config, account}`"), (status = 404, description = "no such zone")))]
pub(super) async fn get_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    get_one(&app, Kind::Zone, &name, Owner::Operator).await
}

/// Replaces a zone. With `If-Match: "VERSION"` the write fails with 412 if it changed since.
#[utoipa::path(put, path = "/v1/zones/{name}", params(("validate_only" = Option<bool>, Query)), request_body = edgenet_config::ZoneSection,
    responses((status = 200, description = "replaced"), (status = 400, description = "errors name the field"), (status = 412, description = "changed since the ETag")))]
pub(super) async fn put_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    let owner = Owner::Operator;
    write(&app, Kind::Zone, Some(&name), body, &p, &headers, owner).await
}

/// Deletes a zone (If-Match honoured).
#[utoipa::path(delete, path = "/v1/zones/{name}", responses((status = 200, description = "deleted"), (status = 404, description = "no such zone")))]
pub(super) async fn delete_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    remove(&app, Kind::Zone, &name, &headers, Owner::Operator).await
}

/// The account's zones, by name. `?cursor=NAME&limit=N`.
#[utoipa::path(get, path = "/v1/accounts/{account}/zones", params(("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, description = "`{items, next}`"), (status = 404, description = "no such account (or not the token's)")))]
pub(super) async fn list_account_zones(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    list(&app, Kind::Zone, Owner::Account(&account), &p).await
}

/// Creates a zone in the account.
#[utoipa::path(post, path = "/v1/accounts/{account}/zones", params(("validate_only" = Option<bool>, Query)), request_body = edgenet_config::ZoneSection,
    responses((status = 201, description = "created"), (status = 400, description = "errors name the field"), (status = 409, description = "the name is taken")))]
pub(super) async fn create_account_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let owner = Owner::Account(&account);
    write(&app, Kind::Zone, None, body, &p, &headers, owner).await
}

/// One of the account's zones.
#[utoipa::path(get, path = "/v1/accounts/{account}/zones/{name}", responses((status = 200, description = "`{name, version, config, account}`"), (status = 404, description = "no such zone in the account")))]
pub(super) async fn get_account_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    get_one(&app, Kind::Zone, &name, Owner::Account(&account)).await
}

/// Replaces one of the account's zones (If-Match honoured).
#[utoipa::path(put, path = "/v1/accounts/{account}/zones/{name}", params(("validate_only" = Option<bool>, Query)), request_body = edgenet_config::ZoneSection,
    responses((status = 200, description = "replaced"), (status = 404, description = "no such zone in the account"), (status = 412, description = "changed since the ETag")))]
pub(super) async fn put_account_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name)): Path<(String, String)>,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let owner = Owner::Account(&account);
    write(&app, Kind::Zone, Some(&name), body, &p, &headers, owner).await
}

/// Deletes one of the account's zones.
#[utoipa::path(delete, path = "/v1/accounts/{account}/zones/{name}", responses((status = 200, description = "deleted"), (status = 404, description = "no such zone in the account")))]
pub(super) async fn delete_account_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    remove(&app, Kind::Zone, &name, &headers, Owner::Account(&account)).await
}
