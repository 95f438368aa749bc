//! What the record-backed routes (interconnects, CNIs, tunnels, routes, prefixes, firewall
//! rules) share: decoding a stored record, the query parameters (`validate_only`, paging,
//! filters), pages of `{items, next}`, and the answers to reads and writes with their ETags.

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cni::InterconnectType;
use super::ApiError;
use crate::store::{Owner, Record, RecordKind, StoreError, Write, WriteOptions};
use edgenet_interconnect::site::Speed;

use super::App;

pub(crate) fn parse<T: serde::de::DeserializeOwned>(r: &Record) -> Result<T, StoreError> {
    serde_json::from_value(r.body.clone())
        .map_err(|e| StoreError::Refused(format!("stored record {:?} does not decode: {e}", r.id)))
}

pub(crate) fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("records serialize")
}

/// Record `id` of `kind` that `owner` sees, else a 404 naming it as `what`.
pub(crate) async fn found(
    app: &App,
    kind: RecordKind,
    id: &str,
    owner: Owner<'_>,
    what: &str,
) -> Result<Record, ApiError> {
    app.store.record(kind, id, owner).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{what} {id:?} does not exist"),
        )
    })
}

/// A random id: 32 hex digits.
pub(crate) fn new_id() -> String {
    super::random_hex(16)
}

/// `?validate_only=`, paging and the list filters of the record routes.
#[derive(Debug, Deserialize, Default)]
pub struct RecordParams {
    #[serde(default)]
    pub(crate) validate_only: bool,
    cursor: Option<String>,
    limit: Option<i64>,
    /// Interconnects and slots at one site.
    pub(crate) site: Option<String>,
    /// Interconnects of one type.
    #[serde(rename = "type")]
    pub(crate) kind: Option<InterconnectType>,
    /// Slots of one speed.
    pub(crate) speed: Option<Speed>,
    /// Slots taken or free.
    pub(crate) occupied: Option<bool>,
    /// The PoP whose view of the routing table is asked (`/magic/routes`).
    pub(crate) pop: Option<String>,
}

impl RecordParams {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000) as usize
    }

    /// A write at `now_ms`, a dry run under `validate_only`.
    pub(crate) fn write(&self, write: Write, now_ms: i64) -> WriteOptions {
        WriteOptions {
            write,
            now_ms,
            dry_run: self.validate_only,
        }
    }
}

/// The answer to a write of `r`: under `validate_only`, `{valid, result}` (nothing was
/// stored); else the view with its ETag, 201 when the write made the record.
pub(crate) fn written(p: &RecordParams, r: &Record, view: Value) -> axum::response::Response {
    if p.validate_only {
        return validated(view);
    }
    let status = if r.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    record_response(status, r, view)
}

/// A page of records after the cursor (ids are ordered), as `{items, next}`.
pub(crate) fn page(
    records: Vec<Record>,
    p: &RecordParams,
    view: impl Fn(&Record) -> Value,
) -> Value {
    page_of(records.iter().map(|r| (r.id.clone(), view(r))), p)
}

/// A page of `(id, item)` in id order after the cursor, as `{items, next}`.
pub(crate) fn page_of(items: impl Iterator<Item = (String, Value)>, p: &RecordParams) -> Value {
    let limit = p.limit();
    let after: Vec<(String, Value)> = items
        .filter(|(id, _)| p.cursor.as_deref().is_none_or(|c| id.as_str() > c))
        .take(limit)
        .collect();
    let next = (after.len() == limit)
        .then(|| after.last().map(|(id, _)| id.clone()))
        .flatten();
    let items: Vec<Value> = after.into_iter().map(|(_, v)| v).collect();
    serde_json::json!({"items": items, "next": next})
}

/// The request's `If-Match` version.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    super::if_match(headers)
}

/// A 200 (or `status`) with the record's version as its ETag.
pub(crate) fn record_response(
    status: StatusCode,
    r: &Record,
    view: Value,
) -> axum::response::Response {
    super::with_etag(super::ok(status, view), r.version)
}

/// `validate_only`: what would be stored, unstored.
pub(crate) fn validated(view: Value) -> axum::response::Response {
    super::ok(
        StatusCode::OK,
        serde_json::json!({"valid": true, "result": view}),
    )
}

/// Stores `value` as record `id`, which claims nothing.
pub(crate) async fn put_plain(
    app: &App,
    kind: RecordKind,
    id: &str,
    owner: Owner<'_>,
    options: WriteOptions,
    value: Value,
) -> Result<Record, StoreError> {
    app.store
        .write_record(kind, id, owner, options, &|_, _| {
            Ok((value.clone(), vec![]))
        })
        .await
}
