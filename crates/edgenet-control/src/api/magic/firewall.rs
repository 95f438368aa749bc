//! An account's firewall (`/v1/accounts/{account}/magic/firewall`): its ordered L3/L4 rules
//! and the settings of the flood protections after them, written whole (`PUT`, If-Match,
//! `validate_only`) as one ruleset, since the order is the meaning. A rule written without an
//! id gets one, and keeps it across edits, so its counters (by PoP, from the report channel)
//! follow it.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_dataplane::firewall::Ruleset;
use edgenet_interconnect::Problem;
use serde_json::{json, Value};

use super::super::records::{if_match, put_plain, record_response, written, RecordParams};
use super::super::{decode, ok, ApiResult, JsonBody};
use super::*;
use crate::api::unix_ms;

/// The record id of an account's ruleset.
pub(super) const RULESET: &str = "ruleset";

fn view(app: &App, account: &str, rules: &Ruleset, version: i64) -> Value {
    let counters = super::rule_counters(app, account);
    let mut v = to_value(rules);
    if let Some(items) = v["rules"].as_array_mut() {
        for item in items {
            let id = item["id"].as_str().unwrap_or_default().to_string();
            item["counters"] = counters.get(&id).cloned().unwrap_or_else(|| json!({}));
        }
    }
    v["version"] = json!(version);
    v
}

/// The account's ruleset (empty rules and default protections when never written).
pub(crate) async fn ruleset_of(app: &App, account: &str) -> Result<(Ruleset, i64), StoreError> {
    Ok(
        match app
            .store
            .record(RecordKind::Firewall, RULESET, Owner::Account(account))
            .await?
        {
            Some(r) => (parse(&r)?, r.version),
            None => (Ruleset::default(), 0),
        },
    )
}

/// The account's firewall rules (in order, each with its counters by PoP) and protections.
#[utoipa::path(get, path = "/v1/accounts/{account}/magic/firewall", responses((status = 200, description = "`{rules, protection, version}`")))]
pub(super) async fn get_firewall(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let (rules, version) = ruleset_of(&app, &account).await?;
    let mut response = ok(StatusCode::OK, view(&app, &account, &rules, version));
    if version > 0 {
        response = super::super::with_etag(response, version);
    }
    Ok(response)
}

/// Replaces the account's firewall: the rules in evaluation order and the protections.
#[utoipa::path(put, path = "/v1/accounts/{account}/magic/firewall", request_body(content = Object, description = "rules [{id, description, enabled, action (allow | drop | rate_limit), rate_limit {packets_per_second, by (rule | source | destination)}, match {source, destination, protocol, source_ports, destination_ports, tcp_flags {set, unset}, length {min, max}}}], protection {syn, udp, icmp: {per_destination_pps, per_source_pps}, syn_authentication}"),
    responses((status = 200, description = "the ruleset"), (status = 400, description = "each problem with its field"), (status = 412, description = "changed since the ETag")))]
pub(super) async fn put_firewall(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let mut rules: Ruleset = decode(&body)?;
    let mut problems = rules.problems();
    let mut seen = BTreeSet::new();
    for (i, r) in rules.rules.iter_mut().enumerate() {
        if r.id.is_empty() {
            r.id = super::super::random_hex(8);
        } else if r.id.len() > 64 || !r.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            problems.push(Problem::new(
                format!("rules[{i}].id"),
                "at most 64 letters, digits and -",
            ));
        }
        if !seen.insert(r.id.clone()) {
            problems.push(Problem::new(
                format!("rules[{i}].id"),
                format!("{:?} is the id of an earlier rule", r.id),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    let write = match if_match(&headers)? {
        Some(v) => Write::Replace(Some(v)),
        None => Write::Upsert,
    };
    let r = put_plain(
        &app,
        RecordKind::Firewall,
        RULESET,
        Owner::Account(&account),
        p.write(write, unix_ms()),
        to_value(&rules),
    )
    .await?;
    if !p.validate_only {
        tracing::info!(%account, rules = rules.rules.len(), "firewall stored");
        publish(&app, &account).await?;
    }
    let v = view(&app, &account, &rules, r.version);
    Ok(if p.validate_only {
        written(&p, &r, v)
    } else {
        record_response(StatusCode::OK, &r, v)
    })
}
