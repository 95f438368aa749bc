//! The configuration stream's server side: `GET /v1/stream?pop=NAME&since=VERSION` answers
//! with newline-delimited JSON [`StreamMessage`]s (`edgenet-protocol`'s) and stays open: the
//! changes after `since` (or a snapshot when the PoP is too far behind or ahead), then each new
//! version as it is stored, and a ping every few seconds so either side notices a dead
//! connection. PoPs report each version they applied or refused with
//! `POST /v1/pops/NAME/ack`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use edgenet_protocol::{Ack, Kind, ObjectSet, StreamMessage, PING_EVERY};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::{lock, unix_ms, ApiError, App, JsonBody};
use crate::store::PopStatus;
/// A PoP further behind than this gets a snapshot instead of the changes.
const MAX_DELTA: i64 = 10_000;
/// Changes per delta message.
const DELTA_CHUNK: i64 = 1_000;

/// `?pop=NAME&since=VERSION`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StreamParams {
    /// The PoP's name (registered with `POST /v1/pops`).
    pop: String,
    /// The last version it applied (0: none).
    #[serde(default)]
    since: i64,
}

/// Everything, as a snapshot message.
pub async fn snapshot(app: &App) -> Result<StreamMessage, crate::store::StoreError> {
    // The version first: objects read after it are at least as new, and changes re-sent from
    // that version on are idempotent.
    let version = app.store.version().await?;
    let mut objects = ObjectSet::default();
    for kind in Kind::ALL {
        for (name, s) in app.store.all(kind).await? {
            objects.set_json(kind, &name, Some(s.body));
        }
    }
    Ok(StreamMessage::Snapshot { version, objects })
}

/// What a PoP at `since` gets next while the store is at `current`: the changes since (in
/// chunks), or a snapshot when it is too far behind or ahead.
pub async fn next_message(
    app: &App,
    since: i64,
    current: i64,
) -> Result<StreamMessage, crate::store::StoreError> {
    if since > current || current - since > MAX_DELTA {
        return snapshot(app).await;
    }
    let changes = app.store.changes_since(since, DELTA_CHUNK).await?;
    let version = changes.last().map_or(since, |c| c.version);
    Ok(StreamMessage::Delta {
        from: since,
        version,
        changes,
    })
}

fn line(m: &StreamMessage) -> Result<Bytes, Infallible> {
    let mut v = serde_json::to_vec(m).unwrap_or_default();
    v.push(b'\n');
    Ok(Bytes::from(v))
}

/// The stream of configuration versions for one PoP (newline-delimited JSON).
#[utoipa::path(get, path = "/v1/stream", params(StreamParams),
    responses((status = 200, description = "`application/x-ndjson`: snapshot/delta/ping lines"), (status = 404, description = "PoP not registered")))]
pub async fn stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<StreamParams>,
) -> Result<Response, ApiError> {
    app.authorize(&headers, &["pop"]).await?;
    if app.store.get(Kind::Pop, &q.pop).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("pop {:?} is not registered (POST /v1/pops first)", q.pop),
        ));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    let mut versions = app.version.subscribe();
    let pop = q.pop.clone();
    *lock(&app.connected).entry(pop.clone()).or_default() += 1;
    tracing::info!(%pop, since = q.since, "PoP connected to the stream");
    let app2 = app.clone();
    tokio::spawn(async move {
        let mut since = q.since;
        'outer: loop {
            let current = *versions.borrow_and_update();
            while since != current {
                let msg = match next_message(&app2, since, current).await {
                    Ok(m) => m,
                    Err(_) => break 'outer,
                };
                since = msg.version();
                if tx.send(line(&msg)).await.is_err() {
                    break 'outer;
                }
                if since >= current {
                    break;
                }
            }
            tokio::select! {
                r = versions.changed() => if r.is_err() { break },
                _ = tokio::time::sleep(PING_EVERY) => {
                    if tx.send(line(&StreamMessage::Ping { version: since })).await.is_err() {
                        break;
                    }
                }
                _ = tx.closed() => break,
            }
        }
        if let Some(n) = lock(&app2.connected).get_mut(&pop) {
            *n = n.saturating_sub(1);
        }
        tracing::info!(%pop, "PoP left the stream");
    });
    Ok((
        [
            ("content-type", "application/x-ndjson"),
            ("cache-control", "no-store"),
        ],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}

/// A PoP reports that it applied (or refused, with the error) a version.
#[utoipa::path(post, path = "/v1/pops/{name}/ack", request_body = edgenet_protocol::Ack, responses((status = 200, description = "recorded")))]
pub async fn ack(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    app.authorize(&headers, &["pop"]).await?;
    let ack: Ack = serde_json::from_value(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    record_ack(&app, &name, ack).await?;
    Ok(
        Json(serde_json::json!({"success": true, "errors": [], "messages": [], "result": null}))
            .into_response(),
    )
}

/// Records a PoP's acknowledgement (from the HTTP API or NATS).
pub async fn record_ack(app: &App, name: &str, ack: Ack) -> Result<(), crate::store::StoreError> {
    let name = name.to_string();
    let mut status = lock(&app.statuses)
        .get(&name)
        .cloned()
        .unwrap_or(PopStatus {
            name: name.clone(),
            applied: 0,
            last_seen_ms: 0,
            last_error: None,
        });
    status.last_seen_ms = unix_ms();
    if ack.ok {
        status.applied = status.applied.max(ack.version);
        status.last_error = None;
    } else {
        let error = ack.error.unwrap_or_else(|| "refused".into());
        tracing::warn!(pop = %name, version = ack.version, %error, "PoP refused a version");
        status.last_error = Some(format!("version {}: {error}", ack.version));
    }
    app.store.set_pop_status(&status).await?;
    lock(&app.statuses).insert(name, status);
    Ok(())
}
