//! Accounts: the operator creates and deletes them; an account's token sees its own only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_protocol::validate::FieldProblem;
use serde::Deserialize;
use serde_json::json;

use super::{check_scopes, decode, ok, random_hex, unix_ms, ApiError, ApiResult, App, JsonBody};
use crate::store::Account;

/// An account to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// A name for people.
    name: String,
}

/// The accounts the token sees: every account for the operator's, its own for an account's.
#[utoipa::path(get, path = "/v1/accounts", responses((status = 200, description = "`{items, next: null}`")))]
pub(super) async fn list_accounts(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let token = app.token(&headers).await?;
    if let Some(partner) = &token.partner {
        return Err(super::partner_only(&token.name, partner));
    }
    let token = check_scopes(token, &["read"])?;
    let mut items = app.store.accounts().await?;
    if let Some(mine) = &token.account {
        items.retain(|a| &a.id == mine);
    }
    Ok(ok(StatusCode::OK, json!({"items": items, "next": null})))
}

/// Creates an account (`{name}`); its id is in the answer. Operator, `admin`.
#[utoipa::path(post, path = "/v1/accounts", request_body = NewAccount, responses((status = 201, description = "`{id, name, created}`", body = Account)))]
pub(super) async fn create_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    let new: NewAccount = decode(&body)?;
    if new.name.trim().is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            vec![FieldProblem {
                field: Some("name".into()),
                message: "must not be empty".into(),
            }],
        ));
    }
    let account = Account {
        id: random_hex(16),
        name: new.name,
        created: unix_ms() / 1000,
    };
    app.store.add_account(&account).await?;
    tracing::info!(id = %account.id, name = %account.name, "account created");
    Ok(ok(StatusCode::CREATED, json!(account)))
}

/// One account.
#[utoipa::path(get, path = "/v1/accounts/{account}", responses((status = 200, description = "`{id, name, created}`", body = Account), (status = 404, description = "no such account (or not the token's)")))]
pub(super) async fn get_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let found = app.store.account(&account).await?;
    Ok(ok(StatusCode::OK, json!(found)))
}

/// Deletes an account and its tokens; refused (409) while it owns zones. Operator, `admin`.
#[utoipa::path(delete, path = "/v1/accounts/{account}", responses((status = 200, description = "deleted"), (status = 404, description = "no such account"), (status = 409, description = "it still owns objects")))]
pub(super) async fn delete_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> ApiResult {
    let token = app
        .authorize_account(&headers, &account, &["admin"])
        .await?;
    if token.account.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "deleting an account is the operator's",
        ));
    }
    app.store.delete_account(&account).await?;
    app.forget_tokens_of(&account);
    tracing::info!(id = %account, "account deleted");
    Ok(ok(StatusCode::OK, json!({"id": account})))
}
