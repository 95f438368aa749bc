//! API tokens: the operator's (`/v1/tokens`: every token of every account; new ones are the
//! operator's) and an account's (`/v1/accounts/{account}/tokens`). Both need the `admin`
//! scope, so a read or write token cannot mint one. The store keeps each secret's SHA-256; the
//! secret is in the creating answer only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_protocol::validate::FieldProblem;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{decode, ok, ApiError, ApiResult, App, JsonBody, ACCOUNT_SCOPES, SCOPES};
use crate::store::Owner;

/// A token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name for people.
    name: String,
    /// Some of `read`, `write`, `admin` (an account's), and `pop`, `pop-admin` (the
    /// operator's only); or `partner` alone, with `partner`.
    scopes: Vec<String>,
    /// The connectivity partner a `partner` token acts for (`GET /v1/cni/partners`).
    #[serde(default)]
    partner: Option<String>,
}

/// Decodes a token to create; an account's may only have the account scopes.
fn new_token(body: &Value, account: bool) -> Result<NewToken, ApiError> {
    let t: NewToken = decode(body)?;
    let allowed = if account { ACCOUNT_SCOPES } else { SCOPES };
    let mut bad: Vec<FieldProblem> = t
        .scopes
        .iter()
        .enumerate()
        .filter(|(_, s)| !allowed.contains(&s.as_str()))
        .map(|(i, s)| FieldProblem {
            field: Some(format!("scopes[{i}]")),
            message: if SCOPES.contains(&s.as_str()) {
                format!("{s:?} is an operator's scope; an account's token has some of {ACCOUNT_SCOPES:?}")
            } else {
                format!("{s:?} is not one of {allowed:?}")
            },
        })
        .collect();
    if t.scopes.is_empty() {
        bad.push(FieldProblem {
            field: Some("scopes".into()),
            message: "at least one scope is required".into(),
        });
    }
    if t.name.is_empty() {
        bad.push(FieldProblem {
            field: Some("name".into()),
            message: "must not be empty".into(),
        });
    }
    let partner_scope = t.scopes.iter().any(|s| s == "partner");
    if partner_scope && (t.scopes.len() != 1 || t.partner.is_none()) {
        bad.push(FieldProblem {
            field: Some("scopes".into()),
            message: "a partner's token has the scope partner alone, and names its partner".into(),
        });
    }
    if t.partner.is_some() && !partner_scope {
        bad.push(FieldProblem {
            field: Some("partner".into()),
            message: "only with the scope partner".into(),
        });
    }
    if bad.is_empty() {
        Ok(t)
    } else {
        Err(ApiError(StatusCode::BAD_REQUEST, bad))
    }
}

async fn create(app: &App, body: &Value, account: Option<&str>) -> ApiResult {
    let t = new_token(body, account.is_some())?;
    let scopes: Vec<&str> = t.scopes.iter().map(String::as_str).collect();
    let (info, secret) = match &t.partner {
        Some(partner) => {
            let known = super::cni::partners(app).await?;
            if !known.iter().any(|(id, _)| id == partner) {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    vec![FieldProblem {
                        field: Some("partner".into()),
                        message: format!("{partner:?} is not a partner (GET /v1/cni/partners)"),
                    }],
                ));
            }
            app.create_partner_token(&t.name, partner).await?
        }
        None => app.create_token(&t.name, &scopes, account).await?,
    };
    tracing::info!(id = %info.id, ?account, scopes = ?info.scopes, "token created");
    Ok(ok(
        StatusCode::CREATED,
        json!({"id": info.id, "name": info.name, "scopes": info.scopes, "created": info.created,
            "account": info.account, "partner": info.partner, "secret": secret}),
    ))
}

async fn revoke(app: &App, id: &str, owner: Owner<'_>) -> ApiResult {
    if !app.revoke_token(id, owner).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("token {id:?} does not exist"),
        ));
    }
    tracing::info!(%id, ?owner, "token revoked");
    Ok(ok(StatusCode::OK, json!({"id": id})))
}

/// Every token, of every account (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, description = "`{items, next: null}`")))]
pub(super) async fn list_tokens(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    let items = app.store.tokens(Owner::Operator).await?;
    Ok(ok(StatusCode::OK, json!({"items": items, "next": null})))
}

/// Creates an operator's token; the secret is in this response only.
#[utoipa::path(post, path = "/v1/tokens", request_body = NewToken, responses((status = 201, description = "`{id, name, scopes, account, secret}`")))]
pub(super) async fn create_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    create(&app, &body, None).await
}

/// Revokes any token at once (a `pop-admin` token on every PoP too).
#[utoipa::path(delete, path = "/v1/tokens/{id}", responses((status = 200, description = "revoked"), (status = 404, description = "no such token")))]
pub(super) async fn delete_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    revoke(&app, &id, Owner::Operator).await
}

/// The account's tokens.
#[utoipa::path(get, path = "/v1/accounts/{account}/tokens", responses((status = 200, description = "`{items, next: null}`"), (status = 404, description = "no such account (or not the token's)")))]
pub(super) async fn list_account_tokens(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["admin"])
        .await?;
    let items = app.store.tokens(Owner::Account(&account)).await?;
    Ok(ok(StatusCode::OK, json!({"items": items, "next": null})))
}

/// Creates a token of the account (scopes `read`, `write`, `admin`); the secret is in this
/// response only.
#[utoipa::path(post, path = "/v1/accounts/{account}/tokens", request_body = NewToken, responses((status = 201, description = "`{id, name, scopes, account, secret}`"), (status = 404, description = "no such account (or not the token's)")))]
pub(super) async fn create_account_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["admin"])
        .await?;
    create(&app, &body, Some(&account)).await
}

/// Revokes one of the account's tokens.
#[utoipa::path(delete, path = "/v1/accounts/{account}/tokens/{id}", responses((status = 200, description = "revoked"), (status = 404, description = "no such token in the account")))]
pub(super) async fn delete_account_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["admin"])
        .await?;
    revoke(&app, &id, Owner::Account(&account)).await
}
