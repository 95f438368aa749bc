//! The configuration stream's server side: `GET /v1/stream?pop=NAME&since=VERSION` answers
//! with newline-delimited JSON [`StreamMessage`]s (`edgenet-protocol`'s) and stays open: the
//! changes after `since` (or a snapshot when the PoP is too far behind or ahead), then each new
//! version as it is stored, and a ping every few seconds so either side notices a dead
//! connection. PoPs report each version they applied or refused with
//! `POST /v1/pops/NAME/ack`.

use std::convert::Infallible;
use std::sync::Arc;
#[cfg(test)]
use std::time::Duration;

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
    app.registered_pop(&q.pop).await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    let mut versions = app.version.subscribe();
    let pop = q.pop.clone();
    *lock(&app.connected).entry(pop.clone()).or_default() += 1;
    tracing::info!(%pop, since = q.since, "PoP connected to the stream");
    let app2 = app.clone();
    tokio::spawn(async move {
        let mut since = q.since;
        let mut caught_up = false;
        'outer: loop {
            let current = *versions.borrow_and_update();
            while since != current {
                let msg = match next_message(&app2, since, current).await {
                    Ok(m) => m,
                    Err(_) => break 'outer,
                };
                since = msg.version();
                if tx.send(line(&msg.for_pop(&pop))).await.is_err() {
                    break 'outer;
                }
                if since >= current {
                    break;
                }
            }
            if !caught_up {
                // A ping at once says the PoP has everything there was when it connected
                // (one that was away serves its cache again only after this).
                caught_up = true;
                if tx
                    .send(line(&StreamMessage::Ping { version: since }))
                    .await
                    .is_err()
                {
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
    app.acks.send_modify(|n| *n += 1);
    Ok(())
}

/// Which PoPs applied a version: of those connected, the ones that did and the ones still
/// behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Connected PoPs that applied it (or a later version).
    pub applied: Vec<String>,
    /// Connected PoPs that have not yet.
    pub pending: Vec<String>,
}

/// How recently a PoP must have been heard from to count as connected without a stream open
/// here: one following the NATS bucket, or one whose stream is being re-established (this
/// control plane just restarted, or the PoP reconnects).
const LIVE: std::time::Duration = edgenet_protocol::report::REPORT_EVERY.saturating_mul(3);

/// Waits until every connected PoP has applied `version`, or `within` has passed. A PoP is
/// connected while it holds a stream open, or while it was heard from within three report
/// intervals (so a control plane that just restarted waits for the PoPs that are
/// reconnecting); a registered PoP that is neither is not waited for (it applies the version
/// when it comes back).
pub async fn wait_applied(
    app: &App,
    version: i64,
    within: std::time::Duration,
) -> Result<Applied, crate::store::StoreError> {
    let until = tokio::time::Instant::now() + within;
    let pops: Vec<String> = app.store.all(Kind::Pop).await?.into_keys().collect();
    loop {
        let mut acks = app.acks.subscribe();
        let now = unix_ms();
        let mut outcome = Applied {
            applied: Vec::new(),
            pending: Vec::new(),
        };
        {
            let statuses = lock(&app.statuses);
            let streams = lock(&app.connected);
            for p in &pops {
                let status = statuses.get(p);
                let connected = streams.get(p).is_some_and(|n| *n > 0)
                    || status.is_some_and(|s| now - s.last_seen_ms <= LIVE.as_millis() as i64);
                if !connected {
                    continue;
                }
                if status.is_some_and(|s| s.applied >= version) {
                    outcome.applied.push(p.clone());
                } else {
                    outcome.pending.push(p.clone());
                }
            }
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if outcome.pending.is_empty() || left.is_zero() {
            return Ok(outcome);
        }
        // An acknowledgement wakes it; a PoP that leaves meanwhile is seen within 100 ms.
        let _ = tokio::time::timeout(
            left.min(std::time::Duration::from_millis(100)),
            acks.changed(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::zone;
    use crate::store::Owner;
    use axum::body::Body;
    use axum::http::Request;
    use edgenet_protocol::{Decoded, ObjectChange};
    use http_body_util::BodyExt;
    use serde_json::json;
    use tower::ServiceExt;

    async fn app() -> Arc<App> {
        let store = crate::store::tests::memory().await;
        App::new(store, None).await.unwrap()
    }

    #[tokio::test]
    async fn a_pop_gets_the_changes_since_its_version_or_a_snapshot_when_ahead() {
        let app = app().await;
        app.put(
            Kind::Zone,
            "a",
            Some(&zone("a")),
            true,
            None,
            Owner::Operator,
        )
        .await
        .unwrap();
        app.put(
            Kind::Zone,
            "b",
            Some(&zone("b")),
            true,
            None,
            Owner::Operator,
        )
        .await
        .unwrap();
        let current = app.store.version().await.unwrap();
        let StreamMessage::Delta {
            from,
            version,
            changes,
        } = next_message(&app, 1, current).await.unwrap()
        else {
            panic!("a delta")
        };
        assert_eq!((from, version, changes.len()), (1, 2, 1));
        assert!(matches!(&changes[0].object, ObjectChange::Zone { name, .. } if name == "b"));
        // A PoP claiming a version the store never had (a restored database) starts over.
        let StreamMessage::Snapshot { version, objects } =
            next_message(&app, current + 5, current).await.unwrap()
        else {
            panic!("a snapshot")
        };
        assert_eq!(version, current);
        assert_eq!(objects.zone.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(matches!(objects.zone["a"], Decoded::Ok(_)));
    }

    /// Reads the next whole line of a streaming body.
    async fn line(body: &mut Body, buf: &mut Vec<u8>) -> StreamMessage {
        loop {
            if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = buf.drain(..=end).collect();
                return serde_json::from_slice(&l).unwrap();
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .expect("a line within 5 s")
                .expect("the stream goes on")
                .unwrap();
            buf.extend_from_slice(&frame.into_data().unwrap());
        }
    }

    #[tokio::test]
    async fn the_stream_sends_each_new_version_and_acks_are_recorded() {
        let app = app().await;
        let (_, secret) = app.create_token("pop", &["pop"], None).await.unwrap();
        let auth = format!("Bearer {secret}");
        let pop = json!({"name": "p1", "latitude": 0.0, "longitude": 0.0});
        app.put(Kind::Pop, "p1", Some(&pop), true, None, Owner::Operator)
            .await
            .unwrap();
        app.put(
            Kind::Zone,
            "a",
            Some(&zone("a")),
            true,
            None,
            Owner::Operator,
        )
        .await
        .unwrap();
        let router = crate::api::router(app.clone());

        let unknown = Request::get("/v1/stream?pop=nope&since=0")
            .header("authorization", &auth)
            .body(Body::empty())
            .unwrap();
        let r = router.clone().oneshot(unknown).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "an unregistered PoP");

        let req = Request::get("/v1/stream?pop=p1&since=0")
            .header("authorization", &auth)
            .body(Body::empty())
            .unwrap();
        let r = router.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        let mut body = r.into_body();
        let mut buf = Vec::new();
        let first = line(&mut body, &mut buf).await;
        assert_eq!(first.version(), 2, "{first:?}");
        assert!(matches!(first, StreamMessage::Delta { from: 0, .. }));
        // Then a ping at once: the PoP has caught up (it lowers its purge fence on it).
        let caught_up = line(&mut body, &mut buf).await;
        assert!(
            matches!(caught_up, StreamMessage::Ping { version: 2 }),
            "{caught_up:?}"
        );
        assert_eq!(*lock(&app.connected).get("p1").unwrap(), 1);

        // A write while the PoP is connected reaches it as the next line.
        app.put(
            Kind::Zone,
            "b",
            Some(&zone("b")),
            true,
            None,
            Owner::Operator,
        )
        .await
        .unwrap();
        let StreamMessage::Delta { from, changes, .. } = line(&mut body, &mut buf).await else {
            panic!("a delta")
        };
        assert_eq!(from, 2);
        assert!(matches!(&changes[0].object, ObjectChange::Zone { name, .. } if name == "b"));

        let ack = Request::post("/v1/pops/p1/ack")
            .header("authorization", &auth)
            .body(Body::from(
                r#"{"version": 3, "ok": false, "error": "zones[0]: bad"}"#,
            ))
            .unwrap();
        assert_eq!(
            router.clone().oneshot(ack).await.unwrap().status(),
            StatusCode::OK
        );
        let status = app.store.pop_statuses().await.unwrap()["p1"].clone();
        assert_eq!(
            status.last_error.as_deref(),
            Some("version 3: zones[0]: bad")
        );
        assert_eq!(status.applied, 0, "a refusal applies nothing");
        let ack = Request::post("/v1/pops/p1/ack")
            .header("authorization", &auth)
            .body(Body::from(r#"{"version": 3, "ok": true}"#))
            .unwrap();
        router.oneshot(ack).await.unwrap();
        let status = lock(&app.statuses)["p1"].clone();
        assert_eq!((status.applied, status.last_error), (3, None));

        drop(body);
        // The PoP left: its stream task notices and counts it out.
        let left = async {
            while lock(&app.connected).get("p1").copied() != Some(0) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), left)
            .await
            .expect("the disconnect is noticed");
    }
}
