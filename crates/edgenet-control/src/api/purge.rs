//! Purges for the whole network, as Cloudflare's API has them:
//! `POST /v1/accounts/{account}/zones/{zone}/purge_cache` (and the operator's
//! `/v1/zones/{zone}/purge_cache`) with `files`, `prefixes`, `tags`, `hosts` or
//! `purge_everything`. A purge is an object of the configuration stream, stamped with the
//! control plane's time, so every PoP applies it (a PoP that was away applies it when it
//! comes back, before it serves its cache again); the call is answered once every connected
//! PoP has reported the version applied, or after [`PURGE_WAIT`] with the PoPs still pending
//! (`202`). Purges are kept a day ([`PURGE_KEPT`]): a PoP keeps the rules it applied beside
//! its disk cache, and one away for longer gets a snapshot.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_protocol::purge::{validate_purge, PurgeProvision};
use edgenet_protocol::Kind;
use serde_json::json;

use super::{not_found, ok, random_hex, ApiError, ApiResult, App, JsonBody};
use crate::store::Owner;

/// How long a purge call waits for the connected PoPs to apply it.
pub const PURGE_WAIT: Duration = Duration::from_secs(5);

/// How long a purge is kept in the store and streamed to PoPs that come back.
pub const PURGE_KEPT: Duration = Duration::from_secs(86_400);

/// Purges an account's zone on every PoP. The body is one of `{"files": [URL, ...]}`,
/// `{"prefixes": ["host/path", ...]}`, `{"tags": [...]}`, `{"hosts": [...]}` or
/// `{"purge_everything": true}`.
#[utoipa::path(post, path = "/v1/accounts/{account}/zones/{zone}/purge_cache",
    request_body = edgenet_protocol::purge::PurgeSpec,
    responses((status = 200, description = "`{id, zone, version, applied, pending: []}`: every connected PoP applied it"),
        (status = 202, description = "stored, but the PoPs in `pending` did not report it applied within 5 s"),
        (status = 400, description = "errors name the field"), (status = 404, description = "no such zone in the account")))]
pub(super) async fn purge_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, zone)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    purge(&app, &zone, &body, Owner::Account(&account)).await
}

/// Purges any zone on every PoP (the operator's route; the body as for an account's zone).
#[utoipa::path(post, path = "/v1/zones/{zone}/purge_cache",
    request_body = edgenet_protocol::purge::PurgeSpec,
    responses((status = 200, description = "every connected PoP applied it"),
        (status = 202, description = "stored; `pending` lists the PoPs that did not report it applied within 5 s"),
        (status = 400, description = "errors name the field"), (status = 404, description = "no such zone")))]
pub(super) async fn purge_operator(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(zone): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    purge(&app, &zone, &body, Owner::Operator).await
}

/// Now in unix microseconds, rounded up: an object stored before the call is never after it.
fn now_us_ceil() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as u64 + u64::from(d.subsec_nanos() % 1000 != 0)
}

async fn purge(app: &App, zone: &str, body: &serde_json::Value, owner: Owner<'_>) -> ApiResult {
    let stored = app
        .store
        .get(Kind::Zone, zone, owner)
        .await?
        .ok_or_else(|| not_found(Kind::Zone, zone))?;
    let section: edgenet_config::ZoneSection =
        serde_json::from_value(stored.body).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("zone {zone:?} as stored: {e}"),
            )
        })?;
    let spec = validate_purge(body, &section).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let id = random_hex(16);
    let provision = PurgeProvision {
        zone: zone.to_string(),
        at_us: now_us_ceil(),
        spec,
    };
    let value = serde_json::to_value(&provision).expect("a purge serializes");
    // The purge is the zone's account's, whoever made it.
    let belongs = match &stored.account {
        Some(a) => Owner::Account(a),
        None => Owner::Operator,
    };
    let version = app
        .put(Kind::Purge, &id, Some(&value), true, None, belongs)
        .await?;
    let started = std::time::Instant::now();
    let outcome = crate::stream::wait_applied(app, version, PURGE_WAIT).await?;
    tracing::info!(%zone, %id, version, took = ?started.elapsed(), pending = ?outcome.pending, "purge");
    let status = if outcome.pending.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(ok(
        status,
        json!({"id": id, "zone": zone, "version": version, "applied": outcome.applied, "pending": outcome.pending}),
    ))
}

/// Deletes the purges made before `before_us` (unix microseconds). Returns how many.
pub async fn prune(app: &App, before_us: u64) -> Result<usize, crate::store::StoreError> {
    let mut pruned = 0;
    for (id, s) in app.store.all(Kind::Purge).await? {
        let old =
            serde_json::from_value::<PurgeProvision>(s.body).map_or(true, |p| p.at_us < before_us);
        if old {
            app.put(Kind::Purge, &id, None, false, None, Owner::Operator)
                .await?;
            pruned += 1;
        }
    }
    Ok(pruned)
}
