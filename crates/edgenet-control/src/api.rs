//! The REST API (axum), shaped like Cloudflare's: `{success, errors, messages, result}`
//! envelopes, cursor lists `{items, next}`, `?validate_only=true` dry runs, ETag / If-Match on
//! writes, bearer tokens with scopes. The OpenAPI document is generated from these handlers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use utoipa::OpenApi;

use crate::store::{PopStatus, Store, StoreError, TokenInfo};
use edgenet_protocol::validate::{validate_pop, validate_zone, FieldProblem};
use edgenet_protocol::{CertificateRequest, Issued, Kind};

/// Token scopes.
pub const SCOPES: &[&str] = &["read", "write", "admin", "pop"];

/// Shared by every handler.
pub struct App {
    /// The database.
    pub store: Store,
    /// The current global version; the stream wakes on changes.
    pub version: watch::Sender<i64>,
    /// Token hash to token, so a request does not hit the database to authenticate.
    tokens: Mutex<HashMap<String, TokenInfo>>,
    /// Open streams per PoP.
    pub connected: Mutex<HashMap<String, usize>>,
    /// PoP reports, kept in memory and written through to the store.
    pub statuses: Mutex<HashMap<String, PopStatus>>,
    /// The NATS JetStream bucket changes are mirrored into, when distribution runs over NATS.
    pub nats: Option<crate::nats::Publisher>,
    /// Writes to the store and the bucket happen one at a time, so the bucket sees versions in
    /// order.
    write_lock: tokio::sync::Mutex<()>,
    /// The certificate authority of the backbone (set when serving).
    pub ca: std::sync::OnceLock<crate::ca::Ca>,
}

/// An API error: status, and the errors of the envelope.
pub struct ApiError(StatusCode, Vec<FieldProblem>);

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(
            status,
            vec![FieldProblem {
                field: None,
                message: message.into(),
            }],
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors: Vec<Value> = self
            .1
            .iter()
            .map(|p| {
                let mut e = json!({"code": self.0.as_u16(), "message": p.message});
                if let Some(f) = &p.field {
                    e["field"] = json!(f);
                }
                e
            })
            .collect();
        (
            self.0,
            Json(json!({"success": false, "errors": errors, "messages": [], "result": null})),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::Conflict { .. } => StatusCode::PRECONDITION_FAILED,
            StoreError::Exists(_) => StatusCode::CONFLICT,
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Db(_) => {
                tracing::error!(error = %e, "store");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

/// A JSON request body, whatever its Content-Type (`curl -d` sends a form type), at most
/// 1 MiB; a body that is not JSON is a 400 in the API's envelope.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
        if bytes.len() > 1 << 20 {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body over 1 MiB",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))
    }
}

fn ok(status: StatusCode, result: Value) -> Response {
    (
        status,
        Json(json!({"success": true, "errors": [], "messages": [], "result": result})),
    )
        .into_response()
}

fn with_etag(mut r: Response, version: i64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert("etag", v);
    }
    r
}

/// The SHA-256 of a token secret, hex: what the store keeps.
pub fn token_hash(secret: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A new token secret: `en_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source works");
    format!(
        "en_{}",
        b.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl App {
    /// An app over a store.
    pub async fn new(
        store: Store,
        nats: Option<crate::nats::Publisher>,
    ) -> Result<Arc<App>, StoreError> {
        let version = store.version().await?;
        let statuses = store.pop_statuses().await?.into_iter().collect();
        Ok(Arc::new(App {
            store,
            version: watch::channel(version).0,
            tokens: Mutex::new(HashMap::new()),
            connected: Mutex::new(HashMap::new()),
            statuses: Mutex::new(statuses),
            nats,
            write_lock: tokio::sync::Mutex::new(()),
            ca: std::sync::OnceLock::new(),
        }))
    }

    /// Creates a token and returns its secret (shown once).
    pub async fn create_token(
        &self,
        name: &str,
        scopes: &[&str],
    ) -> Result<(TokenInfo, String), StoreError> {
        let secret = new_secret();
        let info = TokenInfo {
            id: secret[3..15].to_string(),
            name: name.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created: unix_ms() / 1000,
        };
        self.store.add_token(&info, &token_hash(&secret)).await?;
        Ok((info, secret))
    }

    /// The token of the request, if it has one of `scopes` (`admin` has every scope).
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        scopes: &[&str],
    ) -> Result<TokenInfo, ApiError> {
        let secret = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing bearer token (Authorization: Bearer ...)",
                )
            })?;
        let hash = token_hash(secret.trim());
        let cached = lock(&self.tokens).get(&hash).cloned();
        let token = match cached {
            Some(t) => t,
            None => {
                let t = self.store.token_by_hash(&hash).await?.ok_or_else(|| {
                    ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token")
                })?;
                lock(&self.tokens).insert(hash, t.clone());
                t
            }
        };
        if token
            .scopes
            .iter()
            .any(|s| s == "admin" || scopes.contains(&s.as_str()))
        {
            Ok(token)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token {:?} lacks the scope: needs one of {scopes:?}",
                    token.name
                ),
            ))
        }
    }

    /// Stores a change (see [`Store::put`]) and publishes it to the streams and the bucket.
    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        body: Option<&Value>,
        create: bool,
        if_match: Option<i64>,
    ) -> Result<i64, StoreError> {
        let _one_at_a_time = self.write_lock.lock().await;
        let version = self.store.put(kind, name, body, create, if_match).await?;
        self.published(version);
        if let Some(nats) = &self.nats {
            if let Err(e) = nats.publish(kind, name, version, body).await {
                // The periodic sync repairs the bucket once NATS is back.
                tracing::warn!(error = %e, version, "could not mirror a change to NATS");
            }
        }
        Ok(version)
    }

    /// Publishes a new version to the streams.
    pub fn published(&self, version: i64) {
        self.version.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `?cursor=&limit=` of lists, `?validate_only=` of writes.
#[derive(Debug, Deserialize, Default)]
pub struct Params {
    cursor: Option<String>,
    limit: Option<i64>,
    #[serde(default)]
    validate_only: bool,
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    match headers.get("if-match").and_then(|v| v.to_str().ok()) {
        None | Some("*") => Ok(None),
        Some(v) => v
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse()
            .map(Some)
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("If-Match: {v:?} is not an ETag of this API"),
                )
            }),
    }
}

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/status", get(status))
        .route("/v1/zones", get(list_zones).post(create_zone))
        .route(
            "/v1/zones/{name}",
            get(get_zone).put(put_zone).delete(delete_zone),
        )
        .route("/v1/pops", get(list_pops).post(create_pop))
        .route(
            "/v1/pops/{name}",
            get(get_pop).put(put_pop).delete(delete_pop),
        )
        .route("/v1/pops/{name}/ack", post(crate::stream::ack))
        .route("/v1/pops/{name}/certificate", post(pop_certificate))
        .route("/v1/ca", get(ca_certificate))
        .route("/v1/stream", get(crate::stream::stream))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(delete_token))
        .with_state(app)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "edgenet control plane",
        description = "Zones, PoPs, tokens and the configuration stream. Every call needs `Authorization: Bearer TOKEN`."
    ),
    paths(
        status,
        list_zones,
        create_zone,
        get_zone,
        put_zone,
        delete_zone,
        list_pops,
        create_pop,
        get_pop,
        put_pop,
        delete_pop,
        list_tokens,
        create_token,
        delete_token,
        crate::stream::stream,
        crate::stream::ack,
        pop_certificate,
        ca_certificate
    ),
    components(schemas(
        TokenInfo,
        PopStatus,
        edgenet_protocol::Ack,
        NewToken,
        edgenet_protocol::PopRecord,
        CertificateRequest,
        Issued,
        edgenet_config::ZoneSection
    ))
)]
struct ApiDoc;

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The current global configuration version.
#[utoipa::path(get, path = "/v1/status", responses((status = 200, description = "`{version}`")))]
async fn status(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    app.authorize(&headers, &["read", "pop"]).await?;
    Ok(ok(
        StatusCode::OK,
        json!({"version": *app.version.borrow()}),
    ))
}

async fn list(app: &App, kind: Kind, p: &Params) -> ApiResult {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let items = app.store.list(kind, p.cursor.as_deref(), limit).await?;
    let next = (items.len() as i64 == limit).then(|| items.last().map(|s| s.name.clone()));
    let items: Vec<Value> = items
        .into_iter()
        .map(|s| json!({"name": s.name, "version": s.version, "config": s.body}))
        .collect();
    Ok(ok(
        StatusCode::OK,
        json!({"items": items, "next": next.flatten()}),
    ))
}

async fn get_one(app: &App, kind: Kind, name: &str) -> ApiResult {
    let s = app.store.get(kind, name).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{kind} {name:?} does not exist"),
        )
    })?;
    Ok(with_etag(
        ok(
            StatusCode::OK,
            json!({"name": s.name, "version": s.version, "config": s.body}),
        ),
        s.version,
    ))
}

/// Validates and (unless `validate_only`) stores a create or replace.
async fn write(
    app: &App,
    kind: Kind,
    name: Option<&str>,
    body: Value,
    p: &Params,
    headers: &HeaderMap,
) -> ApiResult {
    let create = name.is_none();
    let (name, body) = match kind {
        Kind::Zone => {
            // The stored zones, beside which a new one must not clash.
            let others: Vec<edgenet_config::ZoneSection> = app
                .store
                .all(Kind::Zone)
                .await?
                .into_values()
                .filter_map(|s| serde_json::from_value(s.body).ok())
                .collect();
            validate_zone(&body, name, &others, &edgenet_config::System)
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?
        }
        Kind::Pop => validate_pop(&body, name).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?,
    };
    if p.validate_only {
        return Ok(ok(
            StatusCode::OK,
            json!({"name": name, "valid": true, "config": body}),
        ));
    }
    let version = app
        .put(kind, &name, Some(&body), create, if_match(headers)?)
        .await?;
    tracing::info!(%kind, %name, version, "stored");
    let status = if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(
        ok(
            status,
            json!({"name": name, "version": version, "config": body}),
        ),
        version,
    ))
}

async fn remove(app: &App, kind: Kind, name: &str, headers: &HeaderMap) -> ApiResult {
    let version = app.put(kind, name, None, false, if_match(headers)?).await?;
    tracing::info!(%kind, %name, version, "deleted");
    Ok(ok(
        StatusCode::OK,
        json!({"name": name, "version": version}),
    ))
}

/// Zones, by name. `?cursor=NAME&limit=N`.
#[utoipa::path(get, path = "/v1/zones", params(("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, description = "`{items: [{name, version, config}], next}`")))]
async fn list_zones(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> ApiResult {
    app.authorize(&headers, &["read", "write"]).await?;
    list(&app, Kind::Zone, &p).await
}

/// Creates a zone (the body is a zone as in the TOML `[[zones]]` table, as JSON).
#[utoipa::path(post, path = "/v1/zones", params(("validate_only" = Option<bool>, Query)), request_body = edgenet_config::ZoneSection,
    responses((status = 201, description = "created; ETag is its version"), (status = 400, description = "errors name the field"), (status = 409, description = "exists")))]
async fn create_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    write(&app, Kind::Zone, None, body, &p, &headers).await
}

/// One zone; its ETag is the version of its last change.
#[utoipa::path(get, path = "/v1/zones/{name}", responses((status = 200, description = "`{name, version, config}`"), (status = 404, description = "no such zone")))]
async fn get_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["read", "write"]).await?;
    get_one(&app, Kind::Zone, &name).await
}

/// Replaces a zone. With `If-Match: "VERSION"` the write fails with 412 if it changed since.
#[utoipa::path(put, path = "/v1/zones/{name}", params(("validate_only" = Option<bool>, Query)), request_body = edgenet_config::ZoneSection,
    responses((status = 200, description = "replaced"), (status = 400, description = "errors name the field"), (status = 412, description = "changed since the ETag")))]
async fn put_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    write(&app, Kind::Zone, Some(&name), body, &p, &headers).await
}

/// Deletes a zone (If-Match honoured).
#[utoipa::path(delete, path = "/v1/zones/{name}", responses((status = 200, description = "deleted"), (status = 404, description = "no such zone")))]
async fn delete_zone(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    remove(&app, Kind::Zone, &name, &headers).await
}

/// PoPs with what each applied: version, lag, last seen, last error, connected.
#[utoipa::path(get, path = "/v1/pops", responses((status = 200, description = "`{items, next}`")))]
async fn list_pops(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> ApiResult {
    app.authorize(&headers, &["read", "write"]).await?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let items = app
        .store
        .list(Kind::Pop, p.cursor.as_deref(), limit)
        .await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|s| s.name.clone()))
        .flatten();
    let items: Vec<Value> = items
        .into_iter()
        .map(|s| pop_view(&app, s.name, s.version, s.body))
        .collect();
    Ok(ok(StatusCode::OK, json!({"items": items, "next": next})))
}

fn pop_view(app: &App, name: String, version: i64, config: Value) -> Value {
    let current = *app.version.borrow();
    let status = lock(&app.statuses).get(&name).cloned();
    let connected = lock(&app.connected).get(&name).copied().unwrap_or(0) > 0;
    json!({
        "name": name,
        "version": version,
        "config": config,
        "connected": connected,
        "applied_version": status.as_ref().map(|s| s.applied),
        "lag": status.as_ref().map_or(current, |s| current - s.applied),
        "last_seen_ms": status.as_ref().map(|s| s.last_seen_ms),
        "last_error": status.and_then(|s| s.last_error),
    })
}

/// Registers a PoP: `{name, latitude, longitude, addresses, role}`.
#[utoipa::path(post, path = "/v1/pops", request_body = edgenet_protocol::PopRecord, responses((status = 201, description = "registered")))]
async fn create_pop(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    write(&app, Kind::Pop, None, body, &p, &headers).await
}

/// One PoP with its status.
#[utoipa::path(get, path = "/v1/pops/{name}", responses((status = 200, description = "the PoP")))]
async fn get_pop(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["read", "write"]).await?;
    let s = app.store.get(Kind::Pop, &name).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("pop {name:?} does not exist"),
        )
    })?;
    let version = s.version;
    Ok(with_etag(
        ok(StatusCode::OK, pop_view(&app, s.name, s.version, s.body)),
        version,
    ))
}

/// Replaces a PoP's record (If-Match honoured).
#[utoipa::path(put, path = "/v1/pops/{name}", request_body = edgenet_protocol::PopRecord, responses((status = 200, description = "replaced")))]
async fn put_pop(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(p): Query<Params>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    write(&app, Kind::Pop, Some(&name), body, &p, &headers).await
}

/// Removes a PoP's record.
#[utoipa::path(delete, path = "/v1/pops/{name}", responses((status = 200, description = "deleted")))]
async fn delete_pop(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    remove(&app, Kind::Pop, &name, &headers).await
}

/// The backbone CA's certificate (PEM), which PoPs trust for each other.
#[utoipa::path(get, path = "/v1/ca", responses((status = 200, description = "`{certificate}`")))]
async fn ca_certificate(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
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
async fn pop_certificate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["pop"]).await?;
    if app.store.get(Kind::Pop, &name).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("pop {name:?} is not registered"),
        ));
    }
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

/// A token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name for people.
    name: String,
    /// Some of `read`, `write`, `admin`, `pop`.
    scopes: Vec<String>,
}

/// Tokens (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, description = "`{items, next: null}`")))]
async fn list_tokens(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    let items = app.store.tokens().await?;
    Ok(ok(StatusCode::OK, json!({"items": items, "next": null})))
}

/// Creates a token; the secret is in this response only (the store keeps its SHA-256).
#[utoipa::path(post, path = "/v1/tokens", request_body = NewToken, responses((status = 201, description = "`{id, name, scopes, secret}`")))]
async fn create_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    let t: NewToken = serde_path_to_error::deserialize(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            vec![FieldProblem {
                field: Some(e.path().to_string()),
                message: e.inner().to_string(),
            }],
        )
    })?;
    let bad: Vec<FieldProblem> = t
        .scopes
        .iter()
        .enumerate()
        .filter(|(_, s)| !SCOPES.contains(&s.as_str()))
        .map(|(i, s)| FieldProblem {
            field: Some(format!("scopes[{i}]")),
            message: format!("{s:?} is not one of {SCOPES:?}"),
        })
        .collect();
    if !bad.is_empty() || t.scopes.is_empty() || t.name.is_empty() {
        let mut bad = bad;
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
        return Err(ApiError(StatusCode::BAD_REQUEST, bad));
    }
    let scopes: Vec<&str> = t.scopes.iter().map(String::as_str).collect();
    let (info, secret) = app.create_token(&t.name, &scopes).await?;
    Ok(ok(
        StatusCode::CREATED,
        json!({"id": info.id, "name": info.name, "scopes": info.scopes, "created": info.created, "secret": secret}),
    ))
}

/// Revokes a token at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", responses((status = 200, description = "revoked"), (status = 404, description = "no such token")))]
async fn delete_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["admin"]).await?;
    if !app.store.delete_token(&id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("token {id:?} does not exist"),
        ));
    }
    lock(&app.tokens).retain(|_, t| t.id != id);
    Ok(ok(StatusCode::OK, json!({"id": id})))
}
