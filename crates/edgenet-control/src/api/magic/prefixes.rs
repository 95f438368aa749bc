//! An account's own prefixes (Magic Transit) in Cloudflare's BYOIP shapes: Letters of Agency
//! under `/v1/accounts/{account}/addressing/loa_documents` (a PDF uploaded as the body, kept
//! with its SHA-256 and downloadable), and prefixes under `/addressing/prefixes` (the CIDR, the
//! origin ASN, the LOA that authorises it, the egress, and the `advertised` switch, also set
//! alone with `PATCH .../bgp/status`). No two prefixes overlap, in any account: each holds a
//! `prefix:` claim and a write checks the others' inside its transaction. A prefix's view
//! shows each PoP's last report of it: announced there or not and why, and its counters.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use edgenet_dataplane::prefix::PrefixSpec;
use edgenet_interconnect::Problem;
use ipnet::IpNet;
use serde_json::{json, Value};

use super::super::records::{
    found, if_match, new_id, page, put_plain, record_response, written, RecordParams,
};
use super::super::{decode, ok, ApiError, ApiResult, JsonBody};
use super::*;
use crate::api::unix_ms;

/// The largest LOA accepted.
const MAX_LOA: usize = 1 << 20;

/// A Letter of Agency as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredLoa {
    filename: String,
    size: usize,
    sha256: String,
    /// The PDF, in base64.
    pdf: String,
}

fn loa_view(r: &Record) -> Value {
    match parse::<StoredLoa>(r) {
        Ok(l) => json!({"id": r.id, "filename": l.filename, "size_bytes": l.size,
            "sha256": l.sha256, "created_ms": r.created_ms}),
        Err(_) => json!({"id": r.id, "error": "the stored record does not decode"}),
    }
}

/// Uploads a Letter of Agency: the body is the PDF (`?filename=` names it).
#[utoipa::path(post, path = "/v1/accounts/{account}/addressing/loa_documents",
    request_body(content = String, description = "the PDF", content_type = "application/pdf"),
    params(("filename" = Option<String>, Query, description = "the document's file name")),
    responses((status = 201, description = "`{id, filename, size_bytes, sha256}`"), (status = 400, description = "not a PDF, or over 1 MiB")))]
pub(super) async fn upload_loa(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    body: axum::body::Bytes,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    if body.len() > MAX_LOA {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the LOA is over 1 MiB",
        ));
    }
    if !body.starts_with(b"%PDF-") {
        return Err(StoreError::Invalid(vec![Problem::new(
            "body",
            "the LOA must be a PDF (it starts with %PDF-)",
        )])
        .into());
    }
    let filename = q
        .get("filename")
        .cloned()
        .unwrap_or_else(|| "loa.pdf".into());
    if filename.len() > 255 || filename.contains(['/', '"', '\n', '\r']) {
        return Err(StoreError::Invalid(vec![Problem::new(
            "filename",
            "at most 255 bytes, without / or quotes",
        )])
        .into());
    }
    let sha256 = ring::digest::digest(&ring::digest::SHA256, &body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let stored = StoredLoa {
        filename,
        size: body.len(),
        sha256,
        pdf: base64::engine::general_purpose::STANDARD.encode(&body),
    };
    let id = new_id();
    let r = put_plain(
        &app,
        RecordKind::LoaDocument,
        &id,
        Owner::Account(&account),
        WriteOptions::new(Write::Create, unix_ms()),
        to_value(&stored),
    )
    .await?;
    tracing::info!(%id, %account, size = stored.size, sha256 = %stored.sha256, "LOA uploaded");
    Ok(record_response(StatusCode::CREATED, &r, loa_view(&r)))
}

/// The account's Letters of Agency.
#[utoipa::path(get, path = "/v1/accounts/{account}/addressing/loa_documents", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_loas(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let records = app
        .store
        .records(RecordKind::LoaDocument, Owner::Account(&account))
        .await?;
    Ok(ok(StatusCode::OK, page(records, &p, loa_view)))
}

/// A Letter of Agency's PDF.
#[utoipa::path(get, path = "/v1/accounts/{account}/addressing/loa_documents/{id}/download",
    responses((status = 200, description = "the PDF", content_type = "application/pdf"), (status = 404, description = "no such document in the account")))]
pub(super) async fn download_loa(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = found(
        &app,
        RecordKind::LoaDocument,
        &id,
        Owner::Account(&account),
        "LOA document",
    )
    .await?;
    let l: StoredLoa = parse(&r)?;
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(&l.pdf)
        .map_err(|e| StoreError::Refused(format!("LOA {id:?} does not decode: {e}")))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", l.filename),
            ),
        ],
        pdf,
    )
        .into_response())
}

fn claim(cidr: &IpNet) -> String {
    format!("prefix:{}", cidr.trunc())
}

/// How a prefix is shown, with what each PoP last said of it.
fn view(app: &App, r: &Record) -> Value {
    let Ok(spec) = parse::<PrefixSpec>(r) else {
        return json!({"id": r.id, "error": "the stored record does not decode"});
    };
    let mut v = to_value(&spec);
    v["id"] = json!(r.id);
    v["pops"] = super::prefix_states(app, &r.id);
    v["version"] = json!(r.version);
    v["created_ms"] = json!(r.created_ms);
    v
}

async fn write(
    app: &App,
    headers: &HeaderMap,
    account: &str,
    id: Option<&str>,
    p: &RecordParams,
    spec: PrefixSpec,
) -> ApiResult {
    let mut problems = spec.problems();
    if !spec.loa_document_id.trim().is_empty()
        && app
            .store
            .record(
                RecordKind::LoaDocument,
                &spec.loa_document_id,
                Owner::Account(account),
            )
            .await?
            .is_none()
    {
        problems.push(Problem::new(
            "loa_document_id",
            format!(
                "{:?} is not an LOA document of the account",
                spec.loa_document_id
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    let write = match id {
        None => Write::Create,
        Some(_) => Write::Replace(if_match(headers)?),
    };
    let id = id.map_or_else(new_id, String::from);
    let r = app
        .store
        .write_record(
            RecordKind::Prefix,
            &id,
            Owner::Account(account),
            p.write(write, unix_ms()),
            &|before, taken| plan(&spec, before, taken),
        )
        .await?;
    if !p.validate_only {
        tracing::info!(%id, %account, cidr = %spec.cidr, asn = spec.asn, advertised = spec.advertised, "prefix stored");
        publish(app, account).await?;
    }
    Ok(written(p, &r, view(app, &r)))
}

/// The prefix's claim, refused where it overlaps another account's or another of this one's.
fn plan(
    spec: &PrefixSpec,
    before: Option<&Record>,
    taken: &BTreeSet<String>,
) -> Result<(Value, Vec<String>), StoreError> {
    let mine = claim(&spec.cidr);
    let own = before.and_then(|b| parse::<PrefixSpec>(b).ok().map(|s| claim(&s.cidr)));
    let overlapping = taken
        .iter()
        .filter(|c| Some(*c) != own.as_ref())
        .filter_map(|c| c.strip_prefix("prefix:")?.parse::<IpNet>().ok())
        .find(|n| n.contains(&spec.cidr) || spec.cidr.contains(n));
    if let Some(n) = overlapping {
        return Err(StoreError::Invalid(vec![Problem::new(
            "cidr",
            format!("{} overlaps {n}, which is already protected", spec.cidr),
        )]));
    }
    Ok((to_value(spec), vec![mine]))
}

/// The account's prefixes.
#[utoipa::path(get, path = "/v1/accounts/{account}/addressing/prefixes", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_prefixes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let records = app
        .store
        .records(RecordKind::Prefix, Owner::Account(&account))
        .await?;
    Ok(ok(StatusCode::OK, page(records, &p, |r| view(&app, r))))
}

/// Adds a prefix (`?validate_only=true`: checks it and stores nothing).
#[utoipa::path(post, path = "/v1/accounts/{account}/addressing/prefixes", request_body(content = Object, description = "cidr (no longer than /24 or /48), asn, loa_document_id, description, advertised (false), egress (direct | edge)"),
    responses((status = 201, description = "the prefix"), (status = 400, description = "each problem with its field")))]
pub(super) async fn create_prefix(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    write(&app, &headers, &account, None, &p, decode(&body)?).await
}

async fn one(app: &App, account: &str, id: &str) -> Result<Record, ApiError> {
    found(
        app,
        RecordKind::Prefix,
        id,
        Owner::Account(account),
        "prefix",
    )
    .await
}

/// One prefix, with each PoP's announcement and counters.
#[utoipa::path(get, path = "/v1/accounts/{account}/addressing/prefixes/{id}", responses((status = 200, description = "the prefix"), (status = 404, description = "no such prefix in the account")))]
pub(super) async fn get_prefix(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let r = one(&app, &account, &id).await?;
    Ok(record_response(StatusCode::OK, &r, view(&app, &r)))
}

/// Replaces a prefix (If-Match).
#[utoipa::path(put, path = "/v1/accounts/{account}/addressing/prefixes/{id}", request_body(content = Object, description = "as for create"),
    responses((status = 200, description = "the prefix"), (status = 400, description = "each problem with its field"), (status = 412, description = "changed since the ETag")))]
pub(super) async fn put_prefix(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    one(&app, &account, &id).await?;
    write(&app, &headers, &account, Some(&id), &p, decode(&body)?).await
}

/// Turns the prefix's announcement on or off (`{"advertised": true}`), as Cloudflare's
/// `bgp/status`.
#[utoipa::path(patch, path = "/v1/accounts/{account}/addressing/prefixes/{id}/bgp/status", request_body(content = Object, description = "`{advertised}`"),
    responses((status = 200, description = "`{advertised, advertised_modified_ms}`"), (status = 404, description = "no such prefix in the account")))]
pub(super) async fn set_advertised(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let Some(advertised) = body.get("advertised").and_then(Value::as_bool) else {
        return Err(StoreError::Invalid(vec![Problem::new(
            "advertised",
            "true or false is required",
        )])
        .into());
    };
    let r = one(&app, &account, &id).await?;
    let mut spec: PrefixSpec = parse(&r)?;
    spec.advertised = advertised;
    let r = app
        .store
        .write_record(
            RecordKind::Prefix,
            &id,
            Owner::Account(&account),
            WriteOptions::new(Write::Replace(Some(r.version)), unix_ms()),
            &|before, taken| plan(&spec, before, taken),
        )
        .await?;
    tracing::info!(%id, %account, cidr = %spec.cidr, advertised, "prefix announcement switched");
    publish(&app, &account).await?;
    Ok(record_response(
        StatusCode::OK,
        &r,
        json!({"advertised": advertised, "advertised_modified_ms": unix_ms()}),
    ))
}

/// Deletes a prefix: every PoP withdraws it.
#[utoipa::path(delete, path = "/v1/accounts/{account}/addressing/prefixes/{id}", responses((status = 200, description = "deleted"), (status = 404, description = "no such prefix in the account")))]
pub(super) async fn delete_prefix(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    one(&app, &account, &id).await?;
    app.store
        .delete_record(
            RecordKind::Prefix,
            &id,
            Owner::Account(&account),
            if_match(&headers)?,
        )
        .await?;
    tracing::info!(%id, %account, "prefix deleted");
    publish(&app, &account).await?;
    Ok(ok(StatusCode::OK, json!({"id": id})))
}
