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
    d.as_micros() as u64 + u64::from(!d.subsec_nanos().is_multiple_of(1000))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::{account, call};
    use crate::store::tests::zone;
    use edgenet_protocol::Ack;

    async fn app_with_zone() -> (Arc<App>, String, String) {
        let store = crate::store::tests::memory().await;
        let app = App::new(store, None).await.unwrap();
        let a = account(&app, "a").await;
        let (_, token) = app.create_token("a", &["admin"], Some(&a)).await.unwrap();
        let (s, v) = call(
            &app,
            "POST",
            &format!("/v1/accounts/{a}/zones"),
            &token,
            Some(zone("za")),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (app, a, token)
    }

    fn connect(app: &App, pop: &str) {
        lock(&app.connected).insert(pop.to_string(), 1);
    }

    async fn register(app: &App, pop: &str) {
        let body = json!({"name": pop, "latitude": 0.0, "longitude": 0.0});
        app.put(Kind::Pop, pop, Some(&body), true, None, Owner::Operator)
            .await
            .unwrap();
    }

    use crate::api::lock;

    #[tokio::test]
    async fn a_bad_purge_names_its_field_and_stores_nothing() {
        let (app, a, token) = app_with_zone().await;
        let path = format!("/v1/accounts/{a}/zones/za/purge_cache");
        let cases = [
            (
                json!({"files": ["https://za.test/a", "https://other.test/b"]}),
                "files[1]",
            ),
            (json!({"files": [""]}), "files[0]"),
            (json!({"prefixes": ["elsewhere.test/x"]}), "prefixes[0]"),
            (json!({"hosts": ["za.test", "evil.test"]}), "hosts[1]"),
            (json!({"tags": ["a\nb"]}), "tags[0]"),
            (json!({"files": 7}), "files"),
            (json!({"tags": ["a"], "hosts": ["za.test"]}), "exactly one"),
            (json!({}), "exactly one"),
        ];
        for (body, named) in cases {
            let (s, v) = call(&app, "POST", &path, &token, Some(body.clone())).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
            assert!(v.to_string().contains(named), "{body} names {named}: {v}");
        }
        assert!(app.store.all(Kind::Purge).await.unwrap().is_empty());
        let (s, v) = call(
            &app,
            "POST",
            &format!("/v1/accounts/{a}/zones/nope/purge_cache"),
            &token,
            Some(json!({"purge_everything": true})),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    }

    #[tokio::test]
    async fn a_purge_waits_for_connected_pops_and_names_those_that_lag() {
        let (app, a, token) = app_with_zone().await;
        let path = format!("/v1/accounts/{a}/zones/za/purge_cache");
        // No PoP connected: applied everywhere there is to apply it, at once.
        register(&app, "away").await;
        let (s, v) = call(&app, "POST", &path, &token, Some(json!({"tags": ["t"]}))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["result"]["applied"], json!([]));
        assert_eq!(v["result"]["pending"], json!([]));
        assert_eq!(v["result"]["zone"], "za");
        let stored = app.store.all(Kind::Purge).await.unwrap();
        let p: PurgeProvision =
            serde_json::from_value(stored[v["result"]["id"].as_str().unwrap()].body.clone())
                .unwrap();
        assert_eq!(
            (p.zone.as_str(), p.spec.tags.clone()),
            ("za", vec!["t".to_string()])
        );
        assert!(p.at_us <= now_us_ceil());

        // A connected PoP that acknowledges the version: 200 naming it.
        register(&app, "p1").await;
        connect(&app, "p1");
        let acker = {
            let app = app.clone();
            tokio::spawn(async move {
                let before = app.store.version().await.unwrap();
                loop {
                    let v = app.store.version().await.unwrap();
                    if v > before {
                        let ack = Ack {
                            version: v,
                            ok: true,
                            error: None,
                        };
                        crate::stream::record_ack(&app, "p1", ack).await.unwrap();
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let (s, v) = call(
            &app,
            "POST",
            &path,
            &token,
            Some(json!({"purge_everything": true})),
        )
        .await;
        acker.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["result"]["applied"], json!(["p1"]));
        assert_eq!(v["result"]["pending"], json!([]));

        // PoPs that never do: 202 after the wait, naming it pending; the purge is stored.
        register(&app, "p2").await;
        connect(&app, "p2");
        let started = std::time::Instant::now();
        let (s, v) = call(
            &app,
            "POST",
            &path,
            &token,
            Some(json!({"hosts": ["za.test"]})),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert!(started.elapsed() >= PURGE_WAIT);
        // p1 acknowledged the last purge, not this one: it is pending as well.
        let mut pending: Vec<String> =
            serde_json::from_value(v["result"]["pending"].clone()).unwrap();
        pending.sort();
        assert_eq!(pending, ["p1", "p2"]);
        assert_eq!(app.store.all(Kind::Purge).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn the_operator_purges_any_zone_and_old_purges_are_pruned() {
        let (app, _, _) = app_with_zone().await;
        let (_, op) = app.create_token("op", &["admin"], None).await.unwrap();
        let (s, v) = call(
            &app,
            "POST",
            "/v1/zones/za/purge_cache",
            &op,
            Some(json!({"prefixes": ["za.test/img/"]})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let first = v["result"]["id"].as_str().unwrap().to_string();
        let cut = now_us_ceil();
        let (s, v) = call(
            &app,
            "POST",
            "/v1/zones/za/purge_cache",
            &op,
            Some(json!({"files": ["https://za.test/a.css"]})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(prune(&app, cut).await.unwrap(), 1);
        let left = app.store.all(Kind::Purge).await.unwrap();
        assert!(!left.contains_key(&first), "the older purge is gone");
        assert!(left.contains_key(v["result"]["id"].as_str().unwrap()));
    }
}
