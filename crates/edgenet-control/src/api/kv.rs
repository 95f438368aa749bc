//! Workers KV's shapes for an account's edge key-value store: namespaces under
//! `/v1/accounts/{account}/storage/kv/namespaces` (`{title}`), values under
//! `.../namespaces/{id}/values/{key}` (PUT the value as the body, `?expiration_ttl=SECONDS` or
//! `?expiration=UNIX`; GET it raw; DELETE), keys under `.../keys?prefix=&cursor=&limit=`.
//!
//! The semantics, stated as Workers KV states its own: eventually consistent (a write is
//! carried to every PoP over `GET /v1/kv/stream`; its propagation time is measured by
//! `bench/workers.sh`); the last write wins; at most one write per key per second
//! ([`WRITE_EVERY`], a 429 otherwise); keys up to [`MAX_KEY`] bytes, values up to
//! [`MAX_VALUE`]; a TTL of at least one second.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use edgenet_interconnect::Problem;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::records::{found, new_id, parse, record_response, to_value};
use super::{decode, lock, ok, unix_ms, ApiError, ApiResult, App, JsonBody};
use crate::store::{KvEntry, Owner, RecordKind, StoreError, Write, WriteOptions};
use edgenet_protocol::kv::{KvLine, KvStreamLine};

pub use edgenet_protocol::kv::{MAX_KEY, MAX_VALUE};
/// Writes to one key at most this often (as Workers KV).
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// A namespace as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// A title for people, unique in the account.
    pub title: String,
}

fn problem(field: &str, reason: impl Into<String>) -> ApiError {
    StoreError::Invalid(vec![Problem::new(field, reason)]).into()
}

async fn namespace(app: &App, account: &str, id: &str) -> Result<crate::store::Record, ApiError> {
    found(
        app,
        RecordKind::KvNamespace,
        id,
        Owner::Account(account),
        "namespace",
    )
    .await
}

/// Creates a namespace: `{title}`.
#[utoipa::path(post, path = "/v1/accounts/{account}/storage/kv/namespaces",
    request_body(content = Value, description = "`{title}`"),
    responses((status = 201, description = "`{id, title}`"), (status = 400, description = "the field and why")))]
pub(super) async fn create_namespace(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let ns: Namespace = decode(&body)?;
    if ns.title.is_empty() || ns.title.len() > 512 {
        return Err(problem("title", "1 to 512 bytes"));
    }
    let id = new_id();
    let claim = format!("kv_title:{account}:{}", ns.title);
    let value = to_value(&ns);
    let r = app
        .store
        .write_record(
            RecordKind::KvNamespace,
            &id,
            Owner::Account(&account),
            WriteOptions::new(Write::Create, unix_ms()),
            &|_, taken| {
                if taken.contains(&claim) {
                    return Err(StoreError::Invalid(vec![Problem::new(
                        "title",
                        "another namespace of the account has this title",
                    )]));
                }
                Ok((value.clone(), vec![claim.clone()]))
            },
        )
        .await?;
    Ok(record_response(
        StatusCode::CREATED,
        &r,
        json!({"id": id, "title": ns.title}),
    ))
}

/// The account's namespaces.
#[utoipa::path(get, path = "/v1/accounts/{account}/storage/kv/namespaces", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_namespaces(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let items: Vec<Value> = app
        .store
        .records(RecordKind::KvNamespace, Owner::Account(&account))
        .await?
        .iter()
        .filter_map(|r| Some(json!({"id": r.id, "title": parse::<Namespace>(r).ok()?.title})))
        .collect();
    Ok(ok(StatusCode::OK, json!({"items": items, "next": null})))
}

/// Deletes a namespace and every value in it (PoPs drop them too).
#[utoipa::path(delete, path = "/v1/accounts/{account}/storage/kv/namespaces/{id}", responses((status = 200, description = "deleted"), (status = 404, description = "no such namespace")))]
pub(super) async fn delete_namespace(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    namespace(&app, &account, &id).await?;
    let dropped = app.store.kv_drop_namespace(&id, unix_ms()).await?;
    app.store
        .delete_record(RecordKind::KvNamespace, &id, Owner::Account(&account), None)
        .await?;
    app.kv_written();
    tracing::info!(%account, namespace = %id, dropped, "KV namespace deleted");
    Ok(ok(StatusCode::OK, json!({"id": id})))
}

/// `?expiration_ttl=SECONDS` or `?expiration=UNIX`.
#[derive(Debug, Deserialize)]
pub(super) struct PutParams {
    expiration_ttl: Option<i64>,
    expiration: Option<i64>,
}

/// Refuses a second write to `key` within [`WRITE_EVERY`] (429, saying when to try again).
fn once_a_second(app: &App, namespace: &str, key: &str) -> Result<(), ApiError> {
    let mut last = lock(&app.kv_writes);
    let now = std::time::Instant::now();
    let slot = (namespace.to_string(), key.to_string());
    if let Some(at) = last
        .get(&slot)
        .filter(|at| now.duration_since(**at) < WRITE_EVERY)
    {
        let wait = WRITE_EVERY - now.duration_since(*at);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("key {key:?} was written {:?} ago: one write per key per {WRITE_EVERY:?} (again in {wait:?})", now.duration_since(*at)),
        ));
    }
    last.insert(slot, now);
    // Forget writes older than the limit, so the map stays the size of one second's keys.
    if last.len() > 100_000 {
        last.retain(|_, at| now.duration_since(*at) < WRITE_EVERY);
    }
    Ok(())
}

/// Checks a key; writes `value` (none: deletes) as the account's, refusing a second write to
/// the key within [`WRITE_EVERY`].
pub async fn write(
    app: &App,
    namespace: &str,
    key: &str,
    value: Option<&[u8]>,
    expires_ms: Option<i64>,
) -> Result<KvEntry, ApiError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(problem("key", format!("1 to {MAX_KEY} bytes")));
    }
    if value.is_some_and(|v| v.len() > MAX_VALUE) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a value is at most {MAX_VALUE} bytes"),
        ));
    }
    once_a_second(app, namespace, key)?;
    let e = app
        .store
        .kv_write(namespace, key, value, expires_ms, unix_ms())
        .await?;
    app.kv_written();
    Ok(e)
}

/// Writes a value: the body, raw. `?expiration_ttl=SECONDS` (at least 1) or `?expiration=UNIX`.
#[utoipa::path(put, path = "/v1/accounts/{account}/storage/kv/namespaces/{id}/values/{key}",
    request_body(content = String, description = "the value", content_type = "application/octet-stream"),
    responses((status = 200, description = "written"), (status = 400, description = "the field and why"), (status = 413, description = "over 1 MiB"), (status = 429, description = "the key was written less than a second ago")))]
pub(super) async fn put_value(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id, key)): Path<(String, String, String)>,
    Query(p): Query<PutParams>,
    body: Bytes,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    namespace(&app, &account, &id).await?;
    let now = unix_ms();
    let expires_ms = match (p.expiration_ttl, p.expiration) {
        (Some(ttl), _) if ttl < 1 => return Err(problem("expiration_ttl", "at least 1 second")),
        (Some(ttl), _) => Some(now + ttl * 1000),
        (None, Some(at)) if at * 1000 <= now => {
            return Err(problem("expiration", "is not in the future"))
        }
        (None, Some(at)) => Some(at * 1000),
        (None, None) => None,
    };
    let e = write(&app, &id, &key, Some(&body), expires_ms).await?;
    Ok(ok(
        StatusCode::OK,
        json!({"key": key, "seq": e.seq, "expiration": e.expires_ms.map(|m| m / 1000)}),
    ))
}

/// A value, raw (404 when absent or expired).
#[utoipa::path(get, path = "/v1/accounts/{account}/storage/kv/namespaces/{id}/values/{key}",
    responses((status = 200, description = "the value", content_type = "application/octet-stream"), (status = 404, description = "no such key")))]
pub(super) async fn get_value(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id, key)): Path<(String, String, String)>,
) -> Result<axum::response::Response, ApiError> {
    app.authorize_account(&headers, &account, &["read"]).await?;
    namespace(&app, &account, &id).await?;
    let e = app
        .store
        .kv_get(&id, &key, unix_ms())
        .await?
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("key {key:?} does not exist"))
        })?;
    let mut resp = (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        e.value.unwrap_or_default(),
    )
        .into_response();
    if let Some(x) = e.expires_ms {
        if let Ok(v) = (x / 1000).to_string().parse() {
            resp.headers_mut().insert("expiration", v);
        }
    }
    Ok(resp)
}

/// Deletes a value.
#[utoipa::path(delete, path = "/v1/accounts/{account}/storage/kv/namespaces/{id}/values/{key}", responses((status = 200, description = "deleted")))]
pub(super) async fn delete_value(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id, key)): Path<(String, String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    namespace(&app, &account, &id).await?;
    write(&app, &id, &key, None, None).await?;
    Ok(ok(StatusCode::OK, json!({"key": key})))
}

/// `?prefix=&cursor=&limit=`.
#[derive(Debug, Deserialize)]
pub(super) struct ListParams {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// Keys by prefix, in order, a page at a time (`result_info.cursor` for the next).
#[utoipa::path(get, path = "/v1/accounts/{account}/storage/kv/namespaces/{id}/keys", responses((status = 200, description = "`[{name, expiration}]` with `result_info: {cursor}`")))]
pub(super) async fn list_keys(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    Query(p): Query<ListParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    namespace(&app, &account, &id).await?;
    let limit = p.limit.unwrap_or(1000).clamp(1, 1000);
    let keys = app
        .store
        .kv_list(&id, &p.prefix, p.cursor.as_deref(), limit, unix_ms())
        .await?;
    let cursor = (keys.len() as i64 == limit)
        .then(|| keys.last().map(|e| e.key.clone()))
        .flatten();
    let items: Vec<Value> = keys
        .iter()
        .map(|e| json!({"name": e.key, "expiration": e.expires_ms.map(|m| m / 1000)}))
        .collect();
    Ok(axum::Json(
        json!({"success": true, "errors": [], "messages": [], "result": items,
        "result_info": {"count": items.len(), "cursor": cursor}}),
    )
    .into_response())
}

impl From<KvEntry> for KvLine {
    fn from(e: KvEntry) -> KvLine {
        use base64::Engine;
        KvLine {
            seq: e.seq,
            namespace: e.namespace,
            key: e.key,
            value: e.value.map(|v| crate::certificates::B64.encode(v)),
            expires_ms: e.expires_ms,
            written_ms: e.written_ms,
        }
    }
}

/// `?since=SEQ`.
#[derive(Debug, Deserialize)]
pub(super) struct StreamParams {
    #[serde(default)]
    since: i64,
}

/// The KV writes after `since`, then each new one as it is made (NDJSON of
/// [`KvStreamLine`]s), for PoPs (`pop` scope): a head line (`{"seq": N}`) once the writes
/// asked for are sent, then every few seconds when idle. A PoP that asks for writes after one
/// whose tombstone was pruned first gets `{"seq": 0, "reset": true}`, then every write kept.
#[utoipa::path(get, path = "/v1/kv/stream", params(("since" = Option<i64>, Query)),
    responses((status = 200, description = "`application/x-ndjson`: one write per line")))]
pub(super) async fn stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<StreamParams>,
) -> Result<axum::response::Response, ApiError> {
    app.authorize(&headers, &["pop"]).await?;
    let pruned = app.store.kv_pruned().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(16);
    let mut woken = app.kv_seq.subscribe();
    let line = |l: &KvStreamLine| {
        let mut v = serde_json::to_vec(l).unwrap_or_default();
        v.push(b'\n');
        Ok(Bytes::from(v))
    };
    tokio::spawn(async move {
        let reset = q.since > 0 && q.since < pruned;
        let mut since = if reset { 0 } else { q.since };
        if reset
            && tx
                .send(line(&KvStreamLine::Head { seq: 0, reset }))
                .await
                .is_err()
        {
            return;
        }
        let mut at_head = false;
        loop {
            let changes = match app.store.kv_changes_since(since, 1000).await {
                Ok(c) => c,
                Err(_) => break,
            };
            let full = changes.len() == 1000;
            for e in changes {
                since = since.max(e.seq);
                if tx.send(line(&KvStreamLine::Write(e.into()))).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            let head = line(&KvStreamLine::Head {
                seq: since,
                reset: false,
            });
            if !at_head {
                at_head = true;
                if tx.send(head).await.is_err() {
                    break;
                }
                continue;
            }
            tokio::select! {
                r = woken.changed() => if r.is_err() { break },
                _ = tokio::time::sleep(edgenet_protocol::PING_EVERY) => {
                    if tx.send(head).await.is_err() {
                        break;
                    }
                }
                _ = tx.closed() => break,
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// A namespace by id, whatever its account (for PoPs).
async fn any_namespace(app: &App, id: &str) -> Result<(), ApiError> {
    found(
        app,
        RecordKind::KvNamespace,
        id,
        Owner::Operator,
        "namespace",
    )
    .await?;
    Ok(())
}

fn written(e: KvEntry) -> ApiResult {
    Ok(ok(StatusCode::OK, to_value(&KvLine::from(e))))
}

/// A value as a PoP reads it when its copy does not have it yet (`pop` scope): the write, with
/// its number, or 404.
#[utoipa::path(get, path = "/v1/kv/values/{namespace}/{key}",
    responses((status = 200, description = "the write (`KvLine`)"), (status = 404, description = "no such key")))]
pub(super) async fn pop_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((ns, key)): Path<(String, String)>,
) -> ApiResult {
    app.authorize(&headers, &["pop"]).await?;
    any_namespace(&app, &ns).await?;
    match app.store.kv_get(&ns, &key, unix_ms()).await? {
        Some(e) => written(e),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("key {key:?} does not exist"),
        )),
    }
}

/// A worker's write, forwarded by its PoP (`pop` scope): the body, raw, with the limits of
/// the account's own writes. Answers the write, with its number.
#[utoipa::path(put, path = "/v1/kv/values/{namespace}/{key}",
    request_body(content = String, description = "the value", content_type = "application/octet-stream"),
    responses((status = 200, description = "the write (`KvLine`)"), (status = 413, description = "over 1 MiB"), (status = 429, description = "the key was written less than a second ago")))]
pub(super) async fn pop_put(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((ns, key)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    app.authorize(&headers, &["pop"]).await?;
    any_namespace(&app, &ns).await?;
    written(write(&app, &ns, &key, Some(&body), None).await?)
}

/// A worker's delete, forwarded by its PoP (`pop` scope).
#[utoipa::path(delete, path = "/v1/kv/values/{namespace}/{key}",
    responses((status = 200, description = "the write (`KvLine`)"), (status = 429, description = "the key was written less than a second ago")))]
pub(super) async fn pop_delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((ns, key)): Path<(String, String)>,
) -> ApiResult {
    app.authorize(&headers, &["pop"]).await?;
    any_namespace(&app, &ns).await?;
    written(write(&app, &ns, &key, None, None).await?)
}

/// `?delta=N`.
#[derive(Debug, Deserialize)]
pub(super) struct IncrementParams {
    /// Optional here so that a token without the scope hears 403 first.
    delta: Option<u64>,
}

/// A worker's `increment`, forwarded by its PoP (`pop` scope): atomic here, where every PoP's
/// increments meet; a write like any other for the per-key limit.
#[utoipa::path(post, path = "/v1/kv/increment/{namespace}/{key}", params(("delta" = u64, Query)),
    responses((status = 200, description = "the write (`KvLine`), the new count its value"), (status = 400, description = "the value is not a counter")))]
pub(super) async fn pop_increment(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((ns, key)): Path<(String, String)>,
    Query(p): Query<IncrementParams>,
) -> ApiResult {
    app.authorize(&headers, &["pop"]).await?;
    any_namespace(&app, &ns).await?;
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(problem("key", format!("1 to {MAX_KEY} bytes")));
    }
    let delta = p.delta.ok_or_else(|| problem("delta", "is required"))?;
    once_a_second(&app, &ns, &key)?;
    let e = app.store.kv_increment(&ns, &key, delta, unix_ms()).await?;
    app.kv_written();
    written(e)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use crate::api::tests::{account, call};
    use crate::api::{router, App};

    async fn raw(
        app: &Arc<App>,
        method: &str,
        path: &str,
        token: &str,
        body: &[u8],
    ) -> (StatusCode, Vec<u8>) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_vec()))
            .unwrap();
        let res = router(app.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        (
            status,
            res.into_body().collect().await.unwrap().to_bytes().to_vec(),
        )
    }

    #[tokio::test]
    async fn values_are_written_once_a_second_expire_list_by_prefix_and_stream_in_order() {
        let store = crate::store::tests::memory().await;
        let app = App::new(store, None).await.unwrap();
        let a = account(&app, "a").await;
        let (_, token) = app.create_token("a", &["admin"], Some(&a)).await.unwrap();
        let nss = format!("/v1/accounts/{a}/storage/kv/namespaces");
        let (s, v) = call(&app, "POST", &nss, &token, Some(json!({"title": "cache"}))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let ns = v["result"]["id"].as_str().unwrap().to_string();
        let (s, v) = call(&app, "POST", &nss, &token, Some(json!({"title": "cache"}))).await;
        assert_eq!(
            (s, v["errors"][0]["field"].clone()),
            (StatusCode::BAD_REQUEST, json!("title"))
        );

        let values = format!("{nss}/{ns}/values");
        let (s, _) = raw(&app, "PUT", &format!("{values}/user:1"), &token, b"ann").await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = raw(&app, "PUT", &format!("{values}/user:1"), &token, b"again").await;
        assert_eq!(
            s,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let (s, body) = raw(&app, "GET", &format!("{values}/user:1"), &token, b"").await;
        assert_eq!((s, body), (StatusCode::OK, b"ann".to_vec()));
        let (s, _) = raw(
            &app,
            "PUT",
            &format!("{values}/user:2?expiration_ttl=0"),
            &token,
            b"x",
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = raw(
            &app,
            "PUT",
            &format!("{values}/user:2?expiration_ttl=1"),
            &token,
            b"bob",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = raw(
            &app,
            "PUT",
            &format!("{values}/other"),
            &token,
            &vec![0u8; super::MAX_VALUE + 1],
        )
        .await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        let (_, v) = call(
            &app,
            "GET",
            &format!("{nss}/{ns}/keys?prefix=user:&limit=1"),
            &token,
            None,
        )
        .await;
        assert_eq!(v["result"][0]["name"], "user:1", "{v}");
        let cursor = v["result_info"]["cursor"].as_str().unwrap().to_string();
        let (_, v) = call(
            &app,
            "GET",
            &format!("{nss}/{ns}/keys?prefix=user:&cursor={cursor}"),
            &token,
            None,
        )
        .await;
        assert_eq!(v["result"][0]["name"], "user:2", "{v}");
        assert!(v["result"][0]["expiration"].is_i64(), "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (s, _) = raw(&app, "GET", &format!("{values}/user:2"), &token, b"").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "expired after its TTL");

        // A PoP's stream: every write in order, then the next as it happens.
        let (_, pop) = app.create_token("pop", &["pop"], None).await.unwrap();
        let req = Request::builder()
            .uri("/v1/kv/stream?since=0")
            .header("authorization", format!("Bearer {pop}"))
            .body(Body::empty())
            .unwrap();
        let res = router(app.clone()).oneshot(req).await.unwrap();
        let mut body = res.into_body();
        let mut text = String::new();
        // The two writes, then the head: the PoP is caught up.
        while text.lines().count() < 3 {
            let frame = body.frame().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
        }
        let head: Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        assert_eq!(head.as_object().unwrap().len(), 1, "{head}");
        let (s, _) = raw(&app, "PUT", &format!("{values}/user:3"), &token, b"cy").await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = raw(&app, "DELETE", &format!("{values}/user:3"), &token, b"").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "a delete is a write too");
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        let (s, _) = raw(&app, "DELETE", &format!("{values}/user:3"), &token, b"").await;
        assert_eq!(s, StatusCode::OK);
        while text.lines().count() < 5 {
            let frame = body.frame().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
        }
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|l| l.get("key").is_some())
            .collect();
        assert_eq!(lines[0]["key"], "user:1");
        assert_eq!(lines[1]["key"], "user:2");
        assert!(lines[1]["expires_ms"].is_i64());
        // Written while the stream was open, then deleted: both reach the PoP, in order.
        assert_eq!(
            (lines[2]["key"].clone(), lines[2]["value"].clone()),
            (json!("user:3"), json!("Y3k="))
        );
        assert_eq!(
            (lines[3]["key"].clone(), lines[3]["value"].clone()),
            (json!("user:3"), Value::Null)
        );
        assert!(lines[0]["seq"].as_i64() < lines[1]["seq"].as_i64());
    }

    /// The first lines of a PoP's stream from `since` (up to and with the first head).
    async fn stream_head(app: &Arc<App>, pop: &str, since: i64) -> Vec<Value> {
        let req = Request::builder()
            .uri(format!("/v1/kv/stream?since={since}"))
            .header("authorization", format!("Bearer {pop}"))
            .body(Body::empty())
            .unwrap();
        let mut body = router(app.clone()).oneshot(req).await.unwrap().into_body();
        let mut text = String::new();
        loop {
            let frame = body.frame().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if text.ends_with('\n')
                && lines
                    .last()
                    .is_some_and(|l| l.get("key").is_none() && l.get("reset").is_none())
            {
                return lines;
            }
        }
    }

    #[tokio::test]
    async fn pops_forward_writes_and_increments_read_cold_and_start_over_after_a_prune() {
        let store = crate::store::tests::memory().await;
        let app = App::new(store, None).await.unwrap();
        let a = account(&app, "a").await;
        let (_, token) = app.create_token("a", &["admin"], Some(&a)).await.unwrap();
        let (_, pop) = app.create_token("pop", &["pop"], None).await.unwrap();
        let nss = format!("/v1/accounts/{a}/storage/kv/namespaces");
        let (_, v) = call(&app, "POST", &nss, &token, Some(json!({"title": "t"}))).await;
        let ns = v["result"]["id"].as_str().unwrap().to_string();

        // An account's token cannot use the PoPs' routes.
        let (s, _) = raw(&app, "PUT", &format!("/v1/kv/values/{ns}/k"), &token, b"x").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, body) = raw(
            &app,
            "PUT",
            &format!("/v1/kv/values/{ns}/a%2Fb"),
            &pop,
            b"v1",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let line: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            line["result"]["key"], "a/b",
            "the key is decoded from the path"
        );
        let (s, _) = raw(
            &app,
            "PUT",
            &format!("/v1/kv/values/{ns}/a%2Fb"),
            &pop,
            b"v2",
        )
        .await;
        assert_eq!(
            s,
            StatusCode::TOO_MANY_REQUESTS,
            "the per-key limit holds for PoPs too"
        );
        let (s, body) = raw(&app, "GET", &format!("/v1/kv/values/{ns}/a%2Fb"), &pop, b"").await;
        let line: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (s, line["result"]["value"].clone()),
            (StatusCode::OK, json!("djE="))
        );
        let (s, _) = raw(&app, "GET", &format!("/v1/kv/values/{ns}/none"), &pop, b"").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = raw(&app, "GET", "/v1/kv/values/nope/k", &pop, b"").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "no such namespace");
        let (_, body) = raw(
            &app,
            "POST",
            &format!("/v1/kv/increment/{ns}/hits?delta=3"),
            &pop,
            b"",
        )
        .await;
        let line: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            line["result"]["value"], "Mw==",
            "3, in decimal, in base64: {line}"
        );
        let (s, body) = raw(
            &app,
            "POST",
            &format!("/v1/kv/increment/{ns}/a%2Fb?delta=1"),
            &pop,
            b"",
        )
        .await;
        assert_eq!(
            s,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        let (s, body) = raw(
            &app,
            "POST",
            &format!("/v1/kv/increment/{ns}/a%2Fb?delta=1"),
            &pop,
            b"",
        )
        .await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "v1 is no counter: {}",
            String::from_utf8_lossy(&body)
        );
        let (s, _) = raw(
            &app,
            "DELETE",
            &format!("/v1/kv/values/{ns}/hits"),
            &pop,
            b"",
        )
        .await;
        assert_eq!(s, StatusCode::OK);

        // Caught up at the head; a PoP that followed to before a pruned delete starts over.
        let lines = stream_head(&app, &pop, 0).await;
        let head = lines.last().unwrap()["seq"].as_i64().unwrap();
        assert_eq!(
            lines.len(),
            3,
            "a/b, then hits' tombstone, then the head: {lines:?}"
        );
        let first = lines[0]["seq"].as_i64().unwrap();
        assert_eq!(
            stream_head(&app, &pop, head).await.len(),
            1,
            "nothing new: the head"
        );
        app.store
            .kv_prune(crate::api::unix_ms(), i64::MAX)
            .await
            .unwrap();
        let lines = stream_head(&app, &pop, first).await;
        assert_eq!(lines[0], json!({"seq": 0, "reset": true}), "{lines:?}");
        assert_eq!(
            lines[1]["key"], "a/b",
            "every live value follows: {lines:?}"
        );
        assert_eq!(lines.len(), 3);
        assert_eq!(
            stream_head(&app, &pop, head).await.len(),
            1,
            "not behind: no reset"
        );
    }
}
