//! The REST API (axum), shaped like Cloudflare's: `{success, errors, messages, result}`
//! envelopes, cursor lists `{items, next}`, `?validate_only=true` dry runs, ETag / If-Match on
//! writes, bearer tokens with scopes. Routes and the OpenAPI document are built together
//! (`utoipa-axum`), so no route goes undocumented.
//!
//! Who may do what: a token is the operator's (every account, the PoPs, the operator's routes
//! under `/v1/`) or one account's (only `/v1/accounts/ITS_ID/...`). Another account's objects,
//! and another account itself, do not exist for it: 404, as for a name nobody has. Scopes:
//! `read` (GET), `write` (and read), `admin` (everything the token reaches, tokens included),
//! `pop` (a PoP's stream, acks, certificate), `pop-admin` (PoPs accept it on their admin
//! listeners). `accounts.rs`, `zones.rs`, `pops.rs` and `tokens.rs` hold the handlers.

mod accounts;
mod certificates;
pub mod cni;
pub mod kv;
pub mod magic;
mod pops;
pub mod purge;
pub(crate) mod records;
mod tokens;
mod workers;
mod zones;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use utoipa::OpenApi;

use crate::store::{Owner, PopStatus, Store, StoreError, TokenInfo};
use edgenet_protocol::validate::{validate_pop, validate_zone, FieldProblem};
use edgenet_protocol::{token_hash, Kind, PopToken};

/// Token scopes.
pub const SCOPES: &[&str] = &["read", "write", "admin", "pop", "pop-admin", "partner"];
/// The scopes an account's token may have.
pub const ACCOUNT_SCOPES: &[&str] = &["read", "write", "admin"];

/// Whether a token with scope `have` may do what needs `need`: `admin` may do everything,
/// `write` may also read.
pub fn grants(have: &str, need: &str) -> bool {
    have == need || have == "admin" || (have == "write" && need == "read")
}

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
    /// PoP acknowledgements, kept in memory and written through to the store.
    pub statuses: Mutex<HashMap<String, PopStatus>>,
    /// Moves at each acknowledgement: waits for PoPs to apply a version wake on it.
    pub acks: watch::Sender<u64>,
    /// What each PoP reports it runs (written through to the store when it changes), and its
    /// counters.
    pub reports: Mutex<crate::reports::Reports>,
    /// The NATS JetStream bucket changes are mirrored into, when distribution runs over NATS.
    pub nats: Option<crate::nats::Publisher>,
    /// Writes to the store and the bucket happen one at a time, so the bucket sees versions in
    /// order.
    write_lock: tokio::sync::Mutex<()>,
    /// The certificate authority of the backbone (set when serving).
    pub ca: std::sync::OnceLock<crate::ca::Ca>,
    /// The certificates' sealing key and issuer (set when serving).
    pub certs: std::sync::OnceLock<crate::certificates::Certificates>,
    /// How worker uploads are checked (set when serving).
    pub workers: std::sync::OnceLock<crate::workers::Workers>,
    /// When each KV key was last written, for the per-key write limit.
    pub kv_writes: Mutex<HashMap<(String, String), std::time::Instant>>,
    /// Moves at each KV write: the KV streams wake on it.
    pub kv_seq: watch::Sender<i64>,
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
            StoreError::Invalid(problems) => return problems_error(problems),
            StoreError::Conflict { .. } => StatusCode::PRECONDITION_FAILED,
            StoreError::Exists(_) => StatusCode::CONFLICT,
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Owns(_) | StoreError::Refused(_) => StatusCode::CONFLICT,
            StoreError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Db(_) => {
                tracing::error!(error = %e, "store");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

/// A 400 listing each problem with its field.
pub(crate) fn problems_error(problems: &[edgenet_interconnect::Problem]) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        problems
            .iter()
            .map(|p| FieldProblem {
                field: Some(p.field.clone()),
                message: p.reason.clone(),
            })
            .collect(),
    )
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

/// A body decoded into `T`; a 400 naming the field where it does not fit.
fn decode<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            vec![FieldProblem {
                field: Some(e.path().to_string()),
                message: e.inner().to_string(),
            }],
        )
    })
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

/// `n` random bytes in hex.
pub fn random_hex(n: usize) -> String {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source works");
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new token secret: `en_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    format!("en_{}", random_hex(32))
}

impl App {
    /// An app over a store.
    pub async fn new(
        store: Store,
        nats: Option<crate::nats::Publisher>,
    ) -> Result<Arc<App>, StoreError> {
        let version = store.version().await?;
        let statuses = store.pop_statuses().await?.into_iter().collect();
        let mut reports = crate::reports::Reports::new();
        for (pop, report, at) in store.object_reports().await? {
            let key = (report.kind, report.name.clone());
            reports
                .entry(pop)
                .or_default()
                .objects
                .insert(key, (report, at));
        }
        Ok(Arc::new(App {
            store,
            version: watch::channel(version).0,
            tokens: Mutex::new(HashMap::new()),
            connected: Mutex::new(HashMap::new()),
            statuses: Mutex::new(statuses),
            acks: watch::channel(0).0,
            reports: Mutex::new(reports),
            nats,
            write_lock: tokio::sync::Mutex::new(()),
            ca: std::sync::OnceLock::new(),
            certs: std::sync::OnceLock::new(),
            workers: std::sync::OnceLock::new(),
            kv_writes: Mutex::new(HashMap::new()),
            kv_seq: watch::channel(0).0,
        }))
    }

    /// Creates a token for `account` (`None`: the operator's) and returns its secret (shown
    /// once). A `pop-admin` token's hash goes to every PoP.
    pub async fn create_token(
        &self,
        name: &str,
        scopes: &[&str],
        account: Option<&str>,
    ) -> Result<(TokenInfo, String), StoreError> {
        self.mint(name, scopes, account, None).await
    }

    /// Creates a connectivity partner's token (scope `partner`): it submits and follows that
    /// partner's requests only.
    pub async fn create_partner_token(
        &self,
        name: &str,
        partner: &str,
    ) -> Result<(TokenInfo, String), StoreError> {
        self.mint(name, &["partner"], None, Some(partner)).await
    }

    async fn mint(
        &self,
        name: &str,
        scopes: &[&str],
        account: Option<&str>,
        partner: Option<&str>,
    ) -> Result<(TokenInfo, String), StoreError> {
        let secret = new_secret();
        let info = TokenInfo {
            id: secret[3..15].to_string(),
            name: name.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created: unix_ms() / 1000,
            account: account.map(String::from),
            partner: partner.map(String::from),
        };
        if scopes.contains(&"pop-admin") {
            let body = serde_json::to_value(PopToken {
                hash: token_hash(&secret),
            })
            .expect("a token hash serializes");
            self.put(
                Kind::PopToken,
                &info.id,
                Some(&body),
                true,
                None,
                Owner::Operator,
            )
            .await?;
        }
        self.store.add_token(&info, &token_hash(&secret)).await?;
        Ok((info, secret))
    }

    /// Revokes a token `owner` sees (at once, here and on the PoPs); false when there was none.
    pub async fn revoke_token(&self, id: &str, owner: Owner<'_>) -> Result<bool, StoreError> {
        let gone = self.store.delete_token(id, owner).await?;
        lock(&self.tokens).retain(|_, t| t.id != id);
        let distributed = self.store.get(Kind::PopToken, id, Owner::Operator).await?;
        if gone && distributed.is_some() {
            self.put(Kind::PopToken, id, None, false, None, Owner::Operator)
                .await?;
        }
        Ok(gone)
    }

    /// `Ok` when `name` is a registered PoP, else a 404 saying so (the stream, reports and
    /// certificates are for registered PoPs only).
    pub async fn registered_pop(&self, name: &str) -> Result<(), ApiError> {
        match self.store.get(Kind::Pop, name, Owner::Operator).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("pop {name:?} is not registered (POST /v1/pops first)"),
            )),
        }
    }

    /// Drops an account's tokens from the cache (its tokens were deleted with it).
    pub fn forget_tokens_of(&self, account: &str) {
        lock(&self.tokens).retain(|_, t| t.account.as_deref() != Some(account));
    }

    /// The request's token (401 without a known one).
    pub async fn token(&self, headers: &HeaderMap) -> Result<TokenInfo, ApiError> {
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
        match cached {
            Some(t) => Ok(t),
            None => {
                let t = self.store.token_by_hash(&hash).await?.ok_or_else(|| {
                    ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token")
                })?;
                lock(&self.tokens).insert(hash, t.clone());
                Ok(t)
            }
        }
    }

    /// For the operator's routes: the operator's token with a scope that grants one of
    /// `needs`. An account's token gets 403 (the route is the same for every account, so
    /// refusing it says nothing of anyone's objects).
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        needs: &[&str],
    ) -> Result<TokenInfo, ApiError> {
        let token = self.token(headers).await?;
        if let Some(partner) = &token.partner {
            return Err(partner_only(&token.name, partner));
        }
        if let Some(account) = &token.account {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token {:?} is account {account:?}'s; this route is the operator's (use /v1/accounts/{account}/...)",
                    token.name
                ),
            ));
        }
        check_scopes(token, needs)
    }

    /// For `/v1/accounts/{account}/...`: the account's own token or the operator's, with a
    /// scope that grants one of `needs`. Another account's token, like a name nobody has,
    /// gets 404, before its scopes are looked at.
    pub async fn authorize_account(
        &self,
        headers: &HeaderMap,
        account: &str,
        needs: &[&str],
    ) -> Result<TokenInfo, ApiError> {
        let token = self.token(headers).await?;
        let mine = token.partner.is_none() && token.account.as_deref().is_none_or(|a| a == account);
        if !mine || self.store.account(account).await?.is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("account {account:?} does not exist"),
            ));
        }
        check_scopes(token, needs)
    }

    /// Stores a change (see [`Store::put`]) and publishes it to the streams and the bucket.
    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        body: Option<&Value>,
        create: bool,
        if_match: Option<i64>,
        owner: Owner<'_>,
    ) -> Result<i64, StoreError> {
        let _one_at_a_time = self.write_lock.lock().await;
        let version = self
            .store
            .put(kind, name, body, create, if_match, owner)
            .await?;
        self.published(version);
        if let Some(nats) = &self.nats {
            if let (Kind::Worker, Some(body)) = (kind, body) {
                if let Err(e) = nats.put_components(&self.store, body).await {
                    tracing::warn!(error = %e, worker = %name, "could not put a worker's components in NATS");
                }
            }
            if let Err(e) = nats.publish(kind, name, version, body).await {
                // The periodic sync repairs the bucket once NATS is back.
                tracing::warn!(error = %e, version, "could not mirror a change to NATS");
            }
        }
        Ok(version)
    }

    /// Wakes the KV streams after a write.
    pub fn kv_written(&self) {
        self.kv_seq.send_modify(|n| *n += 1);
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

/// The refusal of a partner's token outside its requests.
fn partner_only(name: &str, partner: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!("token {name:?} is partner {partner:?}'s: it submits and follows that partner's requests (/v1/cni/partner-requests) and reaches no operator or account route"),
    )
}

fn check_scopes(token: TokenInfo, needs: &[&str]) -> Result<TokenInfo, ApiError> {
    if token
        .scopes
        .iter()
        .any(|have| needs.iter().any(|need| grants(have, need)))
    {
        Ok(token)
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} lacks the scope: needs one of {needs:?}",
                token.name
            ),
        ))
    }
}

/// Unix milliseconds as an RFC 3339 time (`2027-03-03T18:21:33Z`), as the API shows times.
pub(crate) fn rfc3339(ms: i64) -> Value {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| json!(t.to_string()))
        .unwrap_or(Value::Null)
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

/// The routes and, from the same handlers, the OpenAPI document.
pub fn routes() -> (Router<Arc<App>>, utoipa::openapi::OpenApi) {
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status))
        .routes(routes!(zones::list_zones, zones::create_zone))
        .routes(routes!(
            zones::get_zone,
            zones::put_zone,
            zones::delete_zone
        ))
        .routes(routes!(pops::list_pops, pops::create_pop))
        .routes(routes!(pops::get_pop, pops::put_pop, pops::delete_pop))
        .routes(routes!(crate::stream::ack))
        .routes(routes!(crate::reports::receive))
        .routes(routes!(pops::pop_certificate))
        .routes(routes!(pops::ca_certificate))
        .routes(routes!(crate::stream::stream))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::delete_token))
        .routes(routes!(accounts::list_accounts, accounts::create_account))
        .routes(routes!(accounts::get_account, accounts::delete_account))
        .routes(routes!(
            zones::list_account_zones,
            zones::create_account_zone
        ))
        .routes(routes!(
            zones::get_account_zone,
            zones::put_account_zone,
            zones::delete_account_zone
        ))
        .routes(routes!(purge::purge_account))
        .routes(routes!(purge::purge_operator))
        .routes(routes!(
            tokens::list_account_tokens,
            tokens::create_account_token
        ))
        .routes(routes!(tokens::delete_account_token))
        .routes(routes!(
            certificates::list_account,
            certificates::upload_account
        ))
        .routes(routes!(
            certificates::get_account,
            certificates::replace_account,
            certificates::delete_account
        ))
        .routes(routes!(certificates::packs_account))
        .routes(routes!(
            certificates::list_operator,
            certificates::upload_operator
        ))
        .routes(routes!(
            certificates::get_operator,
            certificates::replace_operator,
            certificates::delete_operator
        ))
        .routes(routes!(certificates::packs_operator))
        .routes(routes!(workers::list))
        .routes(routes!(workers::get, workers::delete))
        .routes(routes!(workers::settings))
        .routes(routes!(workers::put_secret, workers::list_secrets))
        .routes(routes!(workers::delete_secret))
        .routes(routes!(workers::list_routes, workers::create_route))
        .routes(routes!(
            workers::get_route,
            workers::put_route,
            workers::delete_route
        ))
        .routes(routes!(workers::component))
        .routes(routes!(kv::list_namespaces, kv::create_namespace))
        .routes(routes!(kv::delete_namespace))
        .routes(routes!(kv::put_value, kv::get_value, kv::delete_value))
        .routes(routes!(kv::list_keys))
        .routes(routes!(kv::stream))
        .routes(routes!(kv::pop_get, kv::pop_put, kv::pop_delete))
        .routes(routes!(kv::pop_increment))
        .merge(
            // The one route whose body is a component: up to 32 MiB (axum's default is 2).
            OpenApiRouter::new().routes(routes!(workers::upload)).layer(
                axum::extract::DefaultBodyLimit::max(crate::workers::MAX_COMPONENT + 1),
            ),
        );
    magic::routes(cni::routes(router)).split_for_parts()
}

/// The API's router: every route, and `/openapi.json` (open: it says nothing of anyone's
/// objects).
pub fn router(app: Arc<App>) -> Router {
    let (router, doc) = routes();
    router
        .route("/openapi.json", get(move || async move { Json(doc) }))
        .with_state(app)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "edgenet control plane",
        description = "Accounts, zones, PoPs, tokens and the configuration stream. Every call needs `Authorization: Bearer TOKEN`: the operator's token reaches every route, an account's token only `/v1/accounts/ITS_ID/...`."
    ),
    components(schemas(
        TokenInfo,
        PopStatus,
        crate::store::Account,
        edgenet_protocol::Ack,
        tokens::NewToken,
        accounts::NewAccount,
        edgenet_protocol::PopRecord,
        edgenet_protocol::CertificateRequest,
        edgenet_protocol::Issued,
        edgenet_config::ZoneSection,
        edgenet_protocol::purge::PurgeSpec,
        edgenet_protocol::purge::PurgeFile
    ))
)]
struct ApiDoc;

/// The current global configuration version.
#[utoipa::path(get, path = "/v1/status", responses((status = 200, description = "`{version}`")))]
async fn status(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    app.authorize(&headers, &["read", "pop"]).await?;
    Ok(ok(
        StatusCode::OK,
        json!({"version": *app.version.borrow()}),
    ))
}

/// A page of `{items, next}` from a page of objects and how each is shown.
fn page<T>(
    items: Vec<T>,
    limit: i64,
    name: impl Fn(&T) -> String,
    view: impl Fn(T) -> Value,
) -> Response {
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(&name))
        .flatten();
    let items: Vec<Value> = items.into_iter().map(view).collect();
    ok(StatusCode::OK, json!({"items": items, "next": next}))
}

fn limit(p: &Params) -> i64 {
    p.limit.unwrap_or(100).clamp(1, 1000)
}

/// How a stored object is shown: a zone with its status across the PoPs, a PoP with what it
/// applied and reports.
fn object_view(app: &App, kind: Kind, s: crate::store::Stored) -> Value {
    if kind == Kind::Pop {
        return pops::pop_view(app, s.name, s.version, s.body);
    }
    let mut v =
        json!({"name": s.name, "version": s.version, "config": s.body, "account": s.account});
    if kind == Kind::Zone {
        let reports = lock(&app.reports);
        let zone = edgenet_protocol::ReportedKind::Zone;
        v["status"] = json!(crate::reports::status(&reports, zone, &s.name, s.version));
    }
    v
}

async fn list(app: &App, kind: Kind, owner: Owner<'_>, p: &Params) -> ApiResult {
    let limit = limit(p);
    let items = app
        .store
        .list(kind, owner, p.cursor.as_deref(), limit)
        .await?;
    Ok(page(
        items,
        limit,
        |s| s.name.clone(),
        |s| object_view(app, kind, s),
    ))
}

fn not_found(kind: Kind, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("{kind} {name:?} does not exist"),
    )
}

async fn get_one(app: &App, kind: Kind, name: &str, owner: Owner<'_>) -> ApiResult {
    let s = app
        .store
        .get(kind, name, owner)
        .await?
        .ok_or_else(|| not_found(kind, name))?;
    let version = s.version;
    Ok(with_etag(
        ok(StatusCode::OK, object_view(app, kind, s)),
        version,
    ))
}

/// The name another account's zone has in a validation error: the clash shows, the name and
/// the owner do not.
const HIDDEN_ZONE: &str = "(another account's)";

/// Validates and (unless `validate_only`) stores a create (`name: None`) or replace, as
/// `owner`.
async fn write(
    app: &App,
    kind: Kind,
    name: Option<&str>,
    body: Value,
    p: &Params,
    headers: &HeaderMap,
    owner: Owner<'_>,
) -> ApiResult {
    let create = name.is_none();
    if let (Some(name), Owner::Account(_)) = (name, owner) {
        // What an account cannot see it cannot replace, and validation must not show it.
        if app.store.get(kind, name, owner).await?.is_none() {
            return Err(not_found(kind, name));
        }
    }
    let (name, body) = match kind {
        Kind::Zone => {
            // The stored zones, beside which a new one must not clash; others' zones are
            // nameless to an account.
            let others: Vec<edgenet_config::ZoneSection> = app
                .store
                .all(Kind::Zone)
                .await?
                .into_values()
                .filter_map(|s| {
                    let mut z: edgenet_config::ZoneSection = serde_json::from_value(s.body).ok()?;
                    if !owner.sees(s.account.as_deref()) {
                        z.name = HIDDEN_ZONE.into();
                    }
                    Some(z)
                })
                .collect();
            validate_zone(&body, name, &others, &edgenet_config::System)
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?
        }
        Kind::Pop => validate_pop(&body, name).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?,
        Kind::PopToken => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "PoP tokens are made with POST /v1/tokens and the pop-admin scope",
            ))
        }
        Kind::Cni => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "CNIs are made at /v1/accounts/ACCOUNT/cni/cnis",
            ))
        }
        Kind::Magic => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "tunnels and routes are made at /v1/accounts/ACCOUNT/magic/gre_tunnels and /magic/routes",
            ))
        }
        Kind::Worker => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "workers are uploaded at /v1/accounts/ACCOUNT/workers/scripts/NAME",
            ))
        }
        Kind::Purge => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "purges are made at /v1/accounts/ACCOUNT/zones/ZONE/purge_cache",
            ))
        }
        Kind::Certificate | Kind::Challenge => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "certificates are uploaded at /v1/accounts/ACCOUNT/zones/ZONE/custom_certificates and issued by the control plane",
            ))
        }
    };
    if p.validate_only {
        return Ok(ok(
            StatusCode::OK,
            json!({"name": name, "valid": true, "config": body}),
        ));
    }
    let version = app
        .put(kind, &name, Some(&body), create, if_match(headers)?, owner)
        .await?;
    tracing::info!(%kind, %name, version, ?owner, "stored");
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

async fn remove(
    app: &App,
    kind: Kind,
    name: &str,
    headers: &HeaderMap,
    owner: Owner<'_>,
) -> ApiResult {
    let version = app
        .put(kind, name, None, false, if_match(headers)?, owner)
        .await?;
    tracing::info!(%kind, %name, version, ?owner, "deleted");
    Ok(ok(
        StatusCode::OK,
        json!({"name": name, "version": version}),
    ))
}

#[cfg(test)]
mod tests;
