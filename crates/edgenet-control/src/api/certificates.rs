//! A zone's certificates in Cloudflare's shapes: custom certificates an account uploads (a PEM
//! chain and its private key) under `/v1/accounts/{account}/zones/{zone}/custom_certificates`,
//! and the edge certificates the control plane issues for the zone's hostnames under
//! `/ssl/certificate_packs`; the operator's zones have the same routes under `/v1/zones/{zone}`.
//!
//! An upload is checked in full before anything is stored (`edgenet-certs`: chain order and
//! signatures, key type and size, key match, validity, names), each problem with its field; the
//! key is sealed at rest at once and no answer, log or stream line ever holds it. Each view
//! shows the names, issuer, expiry, state (and why it failed) and what each PoP serves.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_config::ZoneSection;
use edgenet_interconnect::Problem;
use edgenet_protocol::{CertificateSource, Kind, ReportedKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::records::{found, if_match, new_id, parse, record_response};
use super::{decode, lock, ok, rfc3339, unix_ms, ApiError, ApiResult, App, JsonBody};
use crate::certificates::{self, edge_id, Issuer, Material, State as CertState, StoredCertificate};
use crate::store::{Owner, Record, RecordKind, StoreError};

/// An upload: `{certificate, private_key, hosts?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    /// The chain, PEM, leaf first.
    certificate: String,
    /// Its private key, PEM.
    private_key: String,
    /// The zone's hostnames to serve it for (default: every one it covers).
    #[serde(default)]
    hosts: Option<Vec<String>>,
    /// Cloudflare's bundle method: only `force` (the chain is served as uploaded).
    #[serde(default)]
    bundle_method: Option<String>,
}

/// The zone `zone` as `owner` sees it, and whose it is.
async fn zone_of(
    app: &App,
    owner: Owner<'_>,
    zone: &str,
) -> Result<(ZoneSection, Option<String>), ApiError> {
    let s = app
        .store
        .get(Kind::Zone, zone, owner)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("zone {zone:?} does not exist"),
            )
        })?;
    let z = serde_json::from_value(s.body).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored zone {zone:?}: {e}"),
        )
    })?;
    Ok((z, s.account))
}

/// What each PoP serves of certificate `id`, from their reports.
fn pops_view(app: &App, id: &str, version: i64) -> Value {
    let reports = lock(&app.reports);
    let s = crate::reports::status(&reports, ReportedKind::Certificate, id, version);
    json!(s.pops)
}

/// A certificate as the API shows it (never its key).
async fn view(app: &App, r: &Record) -> Value {
    let Ok(c) = parse::<StoredCertificate>(r) else {
        return json!({"id": r.id, "error": "the stored record does not decode"});
    };
    let streamed = app
        .store
        .get(Kind::Certificate, &r.id, Owner::Operator)
        .await
        .ok()
        .flatten()
        .map_or(0, |s| s.version);
    let mut v = json!({
        "id": r.id,
        "zone_id": c.zone,
        "type": match c.source { CertificateSource::Custom => "sni_custom", CertificateSource::Edge => "universal" },
        "status": c.state,
        "failure": c.failure,
        "uploaded_on": rfc3339(r.created_ms),
        "modified_on": rfc3339(c.modified_ms),
        "pops": pops_view(app, &r.id, streamed),
    });
    if c.attempts > 0 {
        v["next_attempt_on"] = rfc3339(c.next_attempt_ms);
    }
    if let Some(m) = &c.current {
        v["hosts"] = json!(m.hosts);
        v["names"] = json!(m.names);
        v["issuer"] = json!(m.issuer);
        v["signature"] = json!(m.key_type);
        v["serial_number"] = json!(m.serial);
        v["fingerprint_sha256"] = json!(m.sha256);
        v["expires_on"] = rfc3339(m.not_after * 1000);
        v["bundle_method"] = json!("force");
        if c.source == CertificateSource::Edge {
            v["renews_on"] = c.renew_at().map_or(Value::Null, |s| rfc3339(s * 1000));
        }
        v["ocsp"] = match (&c.ocsp, &c.ocsp_failure) {
            (Some(s), _) if s.serial == m.serial => json!({"stapled": true,
                "this_update": rfc3339(s.this_update * 1000),
                "next_update": s.next_update.map_or(Value::Null, |n| rfc3339(n * 1000))}),
            (_, Some(why)) => json!({"stapled": false, "failure": why}),
            _ => json!({"stapled": false}),
        };
    }
    v
}

/// Checks an upload for `zone`: the material to store, or every problem by field.
fn checked(
    certs: &certificates::Certificates,
    id: &str,
    zone: &ZoneSection,
    u: &Upload,
) -> Result<Material, StoreError> {
    let now = unix_ms() / 1000;
    if let Some(m) = u.bundle_method.as_deref().filter(|m| *m != "force") {
        return Err(StoreError::Invalid(vec![Problem::new(
            "bundle_method",
            format!("{m:?}: only \"force\" (the chain is served as uploaded)"),
        )]));
    }
    let c = edgenet_certs::check(&u.certificate, &u.private_key, &[], now)
        .map_err(StoreError::Invalid)?;
    let mut problems = Vec::new();
    let hosts: Vec<String> = match &u.hosts {
        Some(hosts) => {
            for (i, h) in hosts.iter().enumerate() {
                if !edgenet_certs::covers(&zone.hostnames, h) && !zone.hostnames.contains(h) {
                    problems.push(Problem::new(
                        format!("hosts[{i}]"),
                        format!("{h:?} is not one of zone {:?}'s hostnames", zone.name),
                    ));
                } else if !edgenet_certs::covers(&c.names, h) {
                    problems.push(Problem::new(
                        format!("hosts[{i}]"),
                        format!(
                            "{h:?} is not named by the certificate (it names {:?})",
                            c.names
                        ),
                    ));
                }
            }
            hosts.clone()
        }
        None => {
            let covered: Vec<String> = zone
                .hostnames
                .iter()
                .filter(|h| edgenet_certs::covers(&c.names, h))
                .cloned()
                .collect();
            if covered.is_empty() {
                problems.push(Problem::new(
                    "certificate",
                    format!(
                        "names {:?}, none of zone {:?}'s hostnames {:?}",
                        c.names, zone.name, zone.hostnames
                    ),
                ));
            }
            covered
        }
    };
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems));
    }
    Material::new(certs, id, &u.certificate, &u.private_key, hosts, &c)
}

fn sealing(app: &App) -> Result<&certificates::Certificates, ApiError> {
    app.certs.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the control plane has no sealing key for certificates",
        )
    })
}

async fn upload(app: &App, owner: Owner<'_>, zone: &str, body: Value) -> ApiResult {
    let certs = sealing(app)?;
    let (z, account) = zone_of(app, owner, zone).await?;
    let u: Upload = decode(&body)?;
    let id = new_id();
    let material = checked(certs, &id, &z, &u)?;
    let stored = StoredCertificate::new(zone, CertificateSource::Custom, Some(material), unix_ms());
    let record_owner = account.as_deref().map_or(Owner::Operator, Owner::Account);
    let r = certificates::save(app, &id, record_owner, &stored).await?;
    tracing::info!(%id, %zone, "custom certificate uploaded");
    certs.wake.notify_one();
    Ok(record_response(
        StatusCode::CREATED,
        &r,
        view(app, &r).await,
    ))
}

/// A certificate of `zone` that `owner` sees, else a 404.
async fn certificate_of(
    app: &App,
    owner: Owner<'_>,
    zone: &str,
    id: &str,
) -> Result<Record, ApiError> {
    let r = found(app, RecordKind::Certificate, id, owner, "certificate").await?;
    let c: StoredCertificate = parse(&r)?;
    if c.zone != zone {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("certificate {id:?} does not exist in zone {zone:?}"),
        ));
    }
    Ok(r)
}

async fn list_custom(app: &App, owner: Owner<'_>, zone: &str) -> ApiResult {
    zone_of(app, owner, zone).await?;
    let mut items = Vec::new();
    for r in app.store.records(RecordKind::Certificate, owner).await? {
        if parse::<StoredCertificate>(&r)
            .is_ok_and(|c| c.zone == zone && c.source == CertificateSource::Custom)
        {
            items.push(view(app, &r).await);
        }
    }
    Ok(ok(StatusCode::OK, json!({"items": items, "next": null})))
}

async fn get_custom(app: &App, owner: Owner<'_>, zone: &str, id: &str) -> ApiResult {
    let r = certificate_of(app, owner, zone, id).await?;
    Ok(record_response(StatusCode::OK, &r, view(app, &r).await))
}

async fn replace_custom(
    app: &App,
    owner: Owner<'_>,
    zone: &str,
    id: &str,
    headers: &HeaderMap,
    body: Value,
) -> ApiResult {
    let certs = sealing(app)?;
    let r = certificate_of(app, owner, zone, id).await?;
    if let Some(expected) = if_match(headers)?.filter(|v| *v != r.version) {
        return Err(StoreError::Conflict {
            expected,
            actual: r.version,
        }
        .into());
    }
    let mut c: StoredCertificate = parse(&r)?;
    if c.source != CertificateSource::Custom {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "an edge certificate is issued by the control plane: upload a custom certificate instead",
        ));
    }
    let (z, _) = zone_of(app, owner, zone).await?;
    let u: Upload = decode(&body)?;
    c.current = Some(checked(certs, id, &z, &u)?);
    c.state = CertState::Active;
    c.ocsp = None;
    c.ocsp_failure = None;
    c.ocsp_attempts = 0;
    c.ocsp_next_attempt_ms = 0;
    c.modified_ms = unix_ms();
    let r = certificates::save(app, id, r.owner(), &c).await?;
    tracing::info!(%id, %zone, "custom certificate replaced");
    certs.wake.notify_one();
    Ok(record_response(StatusCode::OK, &r, view(app, &r).await))
}

async fn delete_custom(app: &App, owner: Owner<'_>, zone: &str, id: &str) -> ApiResult {
    let r = certificate_of(app, owner, zone, id).await?;
    if parse::<StoredCertificate>(&r)?.source != CertificateSource::Custom {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "an edge certificate goes with its zone's hostnames, not by itself",
        ));
    }
    certificates::delete(app, &r).await?;
    Ok(ok(StatusCode::OK, json!({"id": id})))
}

async fn packs(app: &App, owner: Owner<'_>, zone: &str) -> ApiResult {
    let (z, _) = zone_of(app, owner, zone).await?;
    let certs = app.certs.get();
    let issuer: Option<&Issuer> = certs.and_then(|c| c.issuer.as_ref());
    let Some(issuer) = issuer else {
        return Ok(ok(
            StatusCode::OK,
            json!({"items": [], "certificate_authority": null,
                "message": "the control plane has no issuer (--acme-directory or --local-ca): upload custom certificates"}),
        ));
    };
    let (wanted, refused) = certificates::issuable(issuer, &z);
    let not_covered: Vec<Value> = refused
        .iter()
        .map(|(h, why)| json!({"host": h, "reason": why}))
        .collect();
    let validation = match issuer {
        Issuer::Local(_) => "local",
        Issuer::Acme(a) => match a.challenge() {
            edgenet_protocol::ChallengeType::Http01 => "http",
            edgenet_protocol::ChallengeType::TlsAlpn01 => "tls-alpn",
        },
    };
    let mut items = Vec::new();
    if let Some(r) = app
        .store
        .record(RecordKind::Certificate, &edge_id(zone), owner)
        .await?
    {
        let mut v = view(app, &r).await;
        v["validation_method"] = json!(validation);
        v["certificate_authority"] = json!(issuer.describe());
        v["wanted_hosts"] = json!(wanted);
        items.push(v);
    }
    Ok(ok(
        StatusCode::OK,
        json!({"items": items, "certificate_authority": issuer.describe(),
            "hosts_not_covered": not_covered}),
    ))
}

/// The zone's custom certificates.
#[utoipa::path(get, path = "/v1/accounts/{account}/zones/{zone}/custom_certificates",
    responses((status = 200, description = "`{items, next}`: id, hosts, issuer, signature, status, expires_on, pops"), (status = 404, description = "no such zone in the account")))]
pub(super) async fn list_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, zone)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    list_custom(&app, Owner::Account(&account), &zone).await
}

/// Uploads a custom certificate: `{certificate: PEM chain, private_key: PEM, hosts?}`.
#[utoipa::path(post, path = "/v1/accounts/{account}/zones/{zone}/custom_certificates",
    request_body(content = Value, description = "`{certificate, private_key, hosts?, bundle_method?}`"),
    responses((status = 201, description = "stored and streamed (never the key)"), (status = 400, description = "each problem with its field: `private_key` that does not match, `certificate[1]` out of order, ...")))]
pub(super) async fn upload_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, zone)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    upload(&app, Owner::Account(&account), &zone, body).await
}

/// One custom certificate.
#[utoipa::path(get, path = "/v1/accounts/{account}/zones/{zone}/custom_certificates/{id}",
    responses((status = 200, description = "the certificate; ETag its version"), (status = 404, description = "no such certificate")))]
pub(super) async fn get_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, zone, id)): Path<(String, String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    get_custom(&app, Owner::Account(&account), &zone, &id).await
}

/// Replaces a custom certificate's chain and key (a renewal), checked as an upload is;
/// PoPs swap it in without dropping a connection.
#[utoipa::path(patch, path = "/v1/accounts/{account}/zones/{zone}/custom_certificates/{id}",
    request_body(content = Value, description = "`{certificate, private_key, hosts?}`"),
    responses((status = 200, description = "replaced"), (status = 400, description = "problems by field"), (status = 412, description = "changed since the ETag")))]
pub(super) async fn replace_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, zone, id)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    replace_custom(&app, Owner::Account(&account), &zone, &id, &headers, body).await
}

/// Deletes a custom certificate.
#[utoipa::path(delete, path = "/v1/accounts/{account}/zones/{zone}/custom_certificates/{id}",
    responses((status = 200, description = "deleted"), (status = 404, description = "no such certificate")))]
pub(super) async fn delete_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, zone, id)): Path<(String, String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    delete_custom(&app, Owner::Account(&account), &zone, &id).await
}

/// The zone's edge certificate: its names, issuer, state, renewal, and the hostnames it
/// cannot cover with why (a wildcard: upload a certificate).
#[utoipa::path(get, path = "/v1/accounts/{account}/zones/{zone}/ssl/certificate_packs",
    responses((status = 200, description = "`{items, certificate_authority, hosts_not_covered}`")))]
pub(super) async fn packs_account(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, zone)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    packs(&app, Owner::Account(&account), &zone).await
}

/// Any zone's custom certificates (the operator's view).
#[utoipa::path(get, path = "/v1/zones/{zone}/custom_certificates", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_operator(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(zone): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    list_custom(&app, Owner::Operator, &zone).await
}

/// Uploads a custom certificate to any zone.
#[utoipa::path(post, path = "/v1/zones/{zone}/custom_certificates",
    request_body(content = Value, description = "`{certificate, private_key, hosts?}`"),
    responses((status = 201, description = "stored and streamed"), (status = 400, description = "problems by field")))]
pub(super) async fn upload_operator(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(zone): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    upload(&app, Owner::Operator, &zone, body).await
}

/// One custom certificate of any zone.
#[utoipa::path(get, path = "/v1/zones/{zone}/custom_certificates/{id}", responses((status = 200, description = "the certificate")))]
pub(super) async fn get_operator(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((zone, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    get_custom(&app, Owner::Operator, &zone, &id).await
}

/// Replaces a custom certificate of any zone.
#[utoipa::path(patch, path = "/v1/zones/{zone}/custom_certificates/{id}",
    request_body(content = Value, description = "`{certificate, private_key, hosts?}`"),
    responses((status = 200, description = "replaced")))]
pub(super) async fn replace_operator(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((zone, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    replace_custom(&app, Owner::Operator, &zone, &id, &headers, body).await
}

/// Deletes a custom certificate of any zone.
#[utoipa::path(delete, path = "/v1/zones/{zone}/custom_certificates/{id}", responses((status = 200, description = "deleted")))]
pub(super) async fn delete_operator(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((zone, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    delete_custom(&app, Owner::Operator, &zone, &id).await
}

/// Any zone's edge certificate.
#[utoipa::path(get, path = "/v1/zones/{zone}/ssl/certificate_packs", responses((status = 200, description = "`{items, certificate_authority, hosts_not_covered}`")))]
pub(super) async fn packs_operator(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(zone): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    packs(&app, Owner::Operator, &zone).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use base64::Engine;
    use edgenet_protocol::{CertificateProvision, Kind, ObjectSet, StreamMessage};
    use serde_json::json;

    use crate::api::tests::{account, call};
    use crate::api::App;
    use crate::certificates::{Certificates, B64};

    /// A self-signed certificate for `names` and its key, PEM.
    fn self_signed(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    async fn app_with_zone() -> (Arc<App>, String, String) {
        let store = crate::store::tests::memory().await;
        let app = App::new(store, None).await.unwrap();
        let sealing = edgenet_certs::seal::SealingKey::new(&[7; 32]).unwrap();
        let _ = app.certs.set(Certificates::new(sealing, None));
        let a = account(&app, "a").await;
        let (_, token) = app.create_token("a", &["admin"], Some(&a)).await.unwrap();
        let zone = json!({"name": "shop", "hostnames": ["shop.test", "www.shop.test"],
            "origins": {"servers": [{"address": "127.0.0.1:8000"}]}});
        let (s, v) = call(
            &app,
            "POST",
            &format!("/v1/accounts/{a}/zones"),
            &token,
            Some(zone),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (app, a, token)
    }

    #[tokio::test]
    async fn an_upload_is_checked_by_field_sealed_at_rest_and_its_key_never_shown() {
        let (app, a, token) = app_with_zone().await;
        let path = format!("/v1/accounts/{a}/zones/shop/custom_certificates");
        let (cert, key) = self_signed(&["shop.test"]);
        let (_, other_key) = self_signed(&["shop.test"]);

        let (s, v) = call(
            &app,
            "POST",
            &path,
            &token,
            Some(json!({"certificate": cert, "private_key": other_key})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errors"][0]["field"], "private_key", "{v}");
        assert!(!v.to_string().contains("PRIVATE KEY"), "{v}");

        let (elsewhere, elsewhere_key) = self_signed(&["other.test"]);
        let (s, v) = call(
            &app,
            "POST",
            &path,
            &token,
            Some(json!({"certificate": elsewhere, "private_key": elsewhere_key})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errors"][0]["field"], "certificate", "{v}");
        let (s, v) = call(
            &app,
            "POST",
            &path,
            &token,
            Some(json!({"certificate": cert, "private_key": key, "hosts": ["www.shop.test"]})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errors"][0]["field"], "hosts[0]", "{v}");
        let (_, v) = call(&app, "GET", &path, &token, None).await;
        assert_eq!(
            v["result"]["items"],
            json!([]),
            "a refused upload stores nothing"
        );

        let (s, v) = call(
            &app,
            "POST",
            &path,
            &token,
            Some(json!({"certificate": cert, "private_key": key})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["result"]["id"].as_str().unwrap().to_string();
        assert_eq!(v["result"]["hosts"], json!(["shop.test"]));
        assert_eq!(v["result"]["status"], "active");
        assert_eq!(v["result"]["signature"], "ecdsa-p256");
        let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        for (s, v) in [
            call(&app, "GET", &path, &token, None).await,
            call(&app, "GET", &format!("{path}/{id}"), &token, None).await,
        ] {
            assert_eq!(s, StatusCode::OK, "{v}");
            let text = v.to_string();
            assert!(
                !text.contains("PRIVATE KEY") && !text.contains(&key_body[..40]),
                "{text}"
            );
        }
        // At rest: the record holds the key sealed, and the stream (and so a NATS bucket)
        // only what is sealed to PoPs.
        let r = app
            .store
            .record(
                crate::store::RecordKind::Certificate,
                &id,
                crate::store::Owner::Operator,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(!r.body.to_string().contains("PRIVATE KEY"));
        let streamed = app
            .store
            .get(Kind::Certificate, &id, crate::store::Owner::Operator)
            .await
            .unwrap()
            .unwrap();
        assert!(!streamed.body.to_string().contains("PRIVATE KEY"));
        assert_eq!(streamed.body["keys"], json!({}), "no PoP has a key yet");

        // A PoP registers its key: the certificate is sealed to it, for it alone.
        let pop = json!({"name": "p1", "latitude": 0.0, "longitude": 0.0});
        app.put(
            Kind::Pop,
            "p1",
            Some(&pop),
            true,
            None,
            crate::store::Owner::Operator,
        )
        .await
        .unwrap();
        let pop_key = edgenet_certs::to_pop::PopKey::generate().unwrap();
        crate::certificates::observe_keys(&app, "p1", &B64.encode(pop_key.public()))
            .await
            .unwrap();
        let streamed = app
            .store
            .get(Kind::Certificate, &id, crate::store::Owner::Operator)
            .await
            .unwrap()
            .unwrap();
        let p: CertificateProvision = serde_json::from_value(streamed.body.clone()).unwrap();
        let sealed = B64.decode(&p.keys["p1"].sealed).unwrap();
        let opened = pop_key
            .open(&sealed, &CertificateProvision::seal_context("p1", &id))
            .unwrap();
        assert_eq!(String::from_utf8(opened).unwrap(), key);
        assert!(pop_key
            .open(&sealed, &CertificateProvision::seal_context("p2", &id))
            .is_err());
        let mut objects = ObjectSet::default();
        objects.set_json(Kind::Certificate, &id, Some(streamed.body));
        let StreamMessage::Snapshot { objects, .. } = (StreamMessage::Snapshot {
            version: 1,
            objects,
        })
        .for_pop("p2") else {
            panic!()
        };
        assert!(
            objects.certificate[&id].get().unwrap().keys.is_empty(),
            "p2 gets no one's key"
        );
        // The same key again changes nothing.
        let before = app.store.version().await.unwrap();
        crate::certificates::observe_keys(&app, "p1", &B64.encode(pop_key.public()))
            .await
            .unwrap();
        assert_eq!(app.store.version().await.unwrap(), before);

        let (s, _) = call(&app, "DELETE", &format!("{path}/{id}"), &token, None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(app
            .store
            .get(Kind::Certificate, &id, crate::store::Owner::Operator)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn without_an_issuer_the_packs_say_so_and_wildcards_are_upload_only() {
        let (app, a, token) = app_with_zone().await;
        let (_, v) = call(
            &app,
            "GET",
            &format!("/v1/accounts/{a}/zones/shop/ssl/certificate_packs"),
            &token,
            None,
        )
        .await;
        assert!(
            v["result"]["message"]
                .as_str()
                .unwrap()
                .contains("no issuer"),
            "{v}"
        );
        let dir = std::env::temp_dir().join(format!("edgenet-packs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = crate::ca::Ca::load_or_create_named(&dir, "zones-ca", "test CA").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let local = crate::certificates::Issuer::Local(Box::new(ca));
        let acme = crate::certificates::Issuer::Acme(crate::certificates::acme::Acme::new(
            crate::certificates::acme::AcmeOptions {
                directory: "https://acme.test/dir".into(),
                directory_ca: None,
                account: dir.join("account.json"),
                contact: vec![],
                challenge: edgenet_protocol::ChallengeType::Http01,
            },
        ));
        let zone: edgenet_config::ZoneSection = serde_json::from_value(json!({"name": "z",
            "hostnames": ["a.test", "*.a.test", "localhost", "127.0.0.1"],
            "origins": {"servers": [{"address": "127.0.0.1:1"}]}}))
        .unwrap();
        let (ok, refused) = crate::certificates::issuable(&acme, &zone);
        assert_eq!(ok, ["a.test"]);
        let refused: Vec<&str> = refused.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(refused, ["*.a.test", "localhost", "127.0.0.1"]);
        let (_, why) = &crate::certificates::issuable(&acme, &zone).1[0];
        assert!(why.contains("DNS-01"), "{why}");
        let (ok, refused) = crate::certificates::issuable(&local, &zone);
        assert_eq!(
            (ok.len(), refused.len()),
            (4, 0),
            "the local CA issues for any name"
        );
    }
}
