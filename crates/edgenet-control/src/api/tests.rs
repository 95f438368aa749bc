//! Who may do what, through the router as a client calls it: account isolation on every
//! documented route (the table must name each one, so a new route cannot come without its
//! case), scopes, token minting, and the PoP tokens that go to PoPs.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::store::tests::zone;
use crate::store::Account;

struct World {
    app: Arc<App>,
    operator: String,
    /// Account A and its admin and read tokens.
    a: String,
    a_admin: String,
    a_read: String,
    /// Account B, its zone `zb` and the id of its token.
    b: String,
    b_admin: String,
    b_token_id: String,
}

pub(super) async fn call(
    app: &Arc<App>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let res = router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

pub(super) async fn account(app: &Arc<App>, name: &str) -> String {
    let a = Account {
        id: random_hex(16),
        name: name.into(),
        created: 0,
    };
    app.store.add_account(&a).await.unwrap();
    a.id
}

async fn world() -> World {
    let store = crate::store::tests::memory().await;
    let app = App::new(store, None).await.unwrap();
    let (_, operator) = app.create_token("op", &["admin"], None).await.unwrap();
    let a = account(&app, "a").await;
    let b = account(&app, "b").await;
    let (_, a_admin) = app
        .create_token("a admin", &["admin"], Some(&a))
        .await
        .unwrap();
    let (_, a_read) = app
        .create_token("a read", &["read"], Some(&a))
        .await
        .unwrap();
    let (b_info, b_admin) = app
        .create_token("b admin", &["admin"], Some(&b))
        .await
        .unwrap();
    let (s, _) = call(
        &app,
        "POST",
        &format!("/v1/accounts/{b}/zones"),
        &b_admin,
        Some(zone("zb")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    World {
        app,
        operator,
        a,
        a_admin,
        a_read,
        b,
        b_admin,
        b_token_id: b_info.id,
    }
}

/// What an account's token gets on a route.
enum Expect {
    /// One of another account's things: 404, as for a name nobody has.
    NotFound,
    /// An operator's route: 403, the same for every account.
    Operator,
    /// Open, or answered from the token's own account only (checked by its own test).
    Own,
    /// A connectivity partner's route (its requests): an account's token gets 403 as on an
    /// operator's route; a partner's token is let in.
    Partner,
}

/// Every documented route, with what account A's admin token gets when it names account B's
/// things (`{account}` = B, `{name}` = B's zone, `{id}` = B's token).
const ROUTES: &[(&str, &str, Expect)] = &[
    ("GET", "/v1/status", Expect::Operator),
    ("GET", "/v1/workers/components/{sha256}", Expect::Operator),
    ("GET", "/v1/kv/stream", Expect::Operator),
    ("GET", "/v1/kv/values/{namespace}/{key}", Expect::Operator),
    ("PUT", "/v1/kv/values/{namespace}/{key}", Expect::Operator),
    (
        "DELETE",
        "/v1/kv/values/{namespace}/{key}",
        Expect::Operator,
    ),
    (
        "POST",
        "/v1/kv/increment/{namespace}/{key}",
        Expect::Operator,
    ),
    (
        "GET",
        "/v1/accounts/{account}/storage/kv/namespaces",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/storage/kv/namespaces",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/storage/kv/namespaces/{id}",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/storage/kv/namespaces/{id}/values/{key}",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/storage/kv/namespaces/{id}/values/{key}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/storage/kv/namespaces/{id}/values/{key}",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/storage/kv/namespaces/{id}/keys",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/workers/scripts",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/workers/scripts/{name}",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/workers/scripts/{name}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/workers/scripts/{name}",
        Expect::NotFound,
    ),
    (
        "PATCH",
        "/v1/accounts/{account}/workers/scripts/{name}/settings",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/workers/scripts/{name}/secrets",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/workers/scripts/{name}/secrets",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/workers/scripts/{name}/secrets/{secret}",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/workers/routes",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/workers/routes",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/workers/routes/{id}",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/workers/routes/{id}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/workers/routes/{id}",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/zones/{zone}/custom_certificates",
        Expect::Operator,
    ),
    (
        "POST",
        "/v1/zones/{zone}/custom_certificates",
        Expect::Operator,
    ),
    (
        "GET",
        "/v1/zones/{zone}/custom_certificates/{id}",
        Expect::Operator,
    ),
    (
        "PATCH",
        "/v1/zones/{zone}/custom_certificates/{id}",
        Expect::Operator,
    ),
    (
        "DELETE",
        "/v1/zones/{zone}/custom_certificates/{id}",
        Expect::Operator,
    ),
    (
        "GET",
        "/v1/zones/{zone}/ssl/certificate_packs",
        Expect::Operator,
    ),
    (
        "GET",
        "/v1/accounts/{account}/zones/{zone}/custom_certificates",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/zones/{zone}/custom_certificates",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/zones/{zone}/custom_certificates/{id}",
        Expect::NotFound,
    ),
    (
        "PATCH",
        "/v1/accounts/{account}/zones/{zone}/custom_certificates/{id}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/zones/{zone}/custom_certificates/{id}",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/zones/{zone}/ssl/certificate_packs",
        Expect::NotFound,
    ),
    ("GET", "/v1/zones", Expect::Operator),
    ("POST", "/v1/zones", Expect::Operator),
    ("GET", "/v1/zones/{name}", Expect::Operator),
    ("PUT", "/v1/zones/{name}", Expect::Operator),
    ("DELETE", "/v1/zones/{name}", Expect::Operator),
    ("GET", "/v1/pops", Expect::Operator),
    ("POST", "/v1/pops", Expect::Operator),
    ("GET", "/v1/pops/{name}", Expect::Operator),
    ("PUT", "/v1/pops/{name}", Expect::Operator),
    ("DELETE", "/v1/pops/{name}", Expect::Operator),
    ("POST", "/v1/pops/{name}/ack", Expect::Operator),
    ("POST", "/v1/pops/{name}/reports", Expect::Operator),
    ("POST", "/v1/pops/{name}/certificate", Expect::Operator),
    ("GET", "/v1/ca", Expect::Operator),
    ("GET", "/v1/stream", Expect::Operator),
    ("GET", "/v1/tokens", Expect::Operator),
    ("POST", "/v1/tokens", Expect::Operator),
    ("DELETE", "/v1/tokens/{id}", Expect::Operator),
    ("GET", "/v1/accounts", Expect::Own),
    ("POST", "/v1/accounts", Expect::Operator),
    ("GET", "/v1/accounts/{account}", Expect::NotFound),
    ("DELETE", "/v1/accounts/{account}", Expect::NotFound),
    ("GET", "/v1/accounts/{account}/zones", Expect::NotFound),
    ("POST", "/v1/accounts/{account}/zones", Expect::NotFound),
    (
        "GET",
        "/v1/accounts/{account}/zones/{name}",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/zones/{name}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/zones/{name}",
        Expect::NotFound,
    ),
    ("GET", "/v1/accounts/{account}/tokens", Expect::NotFound),
    ("POST", "/v1/accounts/{account}/tokens", Expect::NotFound),
    (
        "DELETE",
        "/v1/accounts/{account}/tokens/{id}",
        Expect::NotFound,
    ),
    ("GET", "/v1/cni/sites", Expect::Operator),
    ("POST", "/v1/cni/sites", Expect::Operator),
    ("GET", "/v1/cni/sites/{code}", Expect::Operator),
    ("PUT", "/v1/cni/sites/{code}", Expect::Operator),
    ("DELETE", "/v1/cni/sites/{code}", Expect::Operator),
    ("GET", "/v1/cni/settings", Expect::Operator),
    ("PUT", "/v1/cni/settings", Expect::Operator),
    ("GET", "/v1/cni/partners", Expect::Operator),
    ("POST", "/v1/cni/partners", Expect::Operator),
    ("GET", "/v1/cni/partner-requests", Expect::Partner),
    ("POST", "/v1/cni/partner-requests", Expect::Partner),
    ("GET", "/v1/cni/partner-requests/{id}", Expect::Partner),
    (
        "POST",
        "/v1/cni/partner-requests/{id}/accept",
        Expect::Operator,
    ),
    (
        "POST",
        "/v1/cni/partner-requests/{id}/reject",
        Expect::Operator,
    ),
    ("GET", "/v1/cni/maintenance", Expect::Operator),
    ("POST", "/v1/cni/maintenance", Expect::Operator),
    ("PUT", "/v1/cni/maintenance/{id}", Expect::Operator),
    ("DELETE", "/v1/cni/maintenance/{id}", Expect::Operator),
    (
        "GET",
        "/v1/accounts/{account}/cni/interconnects",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/cni/interconnects",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/cni/interconnects/{id}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/cni/interconnects/{id}",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/cni/interconnects/{id}/steps",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/cni/interconnects/{id}/loa",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/cni/interconnects/{id}/status",
        Expect::NotFound,
    ),
    ("GET", "/v1/accounts/{account}/cni/slots", Expect::NotFound),
    (
        "GET",
        "/v1/accounts/{account}/cni/diversity",
        Expect::NotFound,
    ),
    ("GET", "/v1/accounts/{account}/cni/cnis", Expect::NotFound),
    ("POST", "/v1/accounts/{account}/cni/cnis", Expect::NotFound),
    (
        "GET",
        "/v1/accounts/{account}/cni/cnis/{id}",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/cni/cnis/{id}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/cni/cnis/{id}",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/cni/cnis/{id}/diagnostics",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/cni/settings",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/magic/gre_tunnels",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/magic/gre_tunnels",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/magic/gre_tunnels/{id}",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/magic/gre_tunnels/{id}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/magic/gre_tunnels/{id}",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/magic/routes",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/magic/routes",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/magic/routes/{id}",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/magic/routes/{id}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/magic/routes/{id}",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/addressing/loa_documents",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/addressing/loa_documents",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/addressing/loa_documents/{id}/download",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/addressing/prefixes",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/addressing/prefixes",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/addressing/prefixes/{id}",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/addressing/prefixes/{id}",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/addressing/prefixes/{id}",
        Expect::NotFound,
    ),
    (
        "PATCH",
        "/v1/accounts/{account}/addressing/prefixes/{id}/bgp/status",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/magic/firewall",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/magic/firewall",
        Expect::NotFound,
    ),
    (
        "PUT",
        "/v1/accounts/{account}/cni/settings",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/cni/maintenance",
        Expect::NotFound,
    ),
    (
        "GET",
        "/v1/accounts/{account}/cni/subscriptions",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/cni/subscriptions",
        Expect::NotFound,
    ),
    (
        "DELETE",
        "/v1/accounts/{account}/cni/subscriptions/{id}",
        Expect::NotFound,
    ),
    (
        "POST",
        "/v1/accounts/{account}/zones/{zone}/purge_cache",
        Expect::NotFound,
    ),
    ("POST", "/v1/zones/{zone}/purge_cache", Expect::Operator),
    (
        "GET",
        "/v1/accounts/{account}/cni/subscriptions/{id}/deliveries",
        Expect::NotFound,
    ),
];

#[test]
fn the_isolation_table_names_every_documented_route() {
    let (_, doc) = routes();
    let mut documented = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ];
        for (method, op) in ops {
            if op.is_some() {
                documented.insert((method, path.as_str()));
            }
        }
    }
    let tabled: BTreeSet<(&str, &str)> = ROUTES.iter().map(|(m, p, _)| (*m, *p)).collect();
    let missing: Vec<_> = documented.difference(&tabled).collect();
    let stale: Vec<_> = tabled.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes without an isolation case in ROUTES: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "ROUTES names routes that are gone: {stale:?}"
    );
}

#[tokio::test]
async fn an_accounts_token_sees_nothing_of_another_account_on_any_route() {
    let w = world().await;
    for (method, template, expect) in ROUTES {
        let path = template
            .replace("{account}", &w.b)
            .replace("{name}", "zb")
            .replace("{zone}", "zb")
            .replace("{sha256}", &"0".repeat(64))
            .replace("{secret}", "s")
            .replace("{key}", "k")
            .replace("{namespace}", "ns")
            .replace("{code}", "gru-b")
            .replace("{id}", &w.b_token_id);
        let path = if path == "/v1/stream" {
            "/v1/stream?pop=p1".into()
        } else {
            path
        };
        let body = matches!(*method, "POST" | "PUT" | "PATCH").then(|| {
            if path.ends_with("/tokens") {
                json!({"name": "sneaky", "scopes": ["admin"]})
            } else {
                zone("zb")
            }
        });
        let (status, value) = call(&w.app, method, &path, &w.a_admin, body).await;
        let text = value.to_string();
        match expect {
            Expect::NotFound => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {text}");
                assert!(
                    text.contains("does not exist") && !text.contains("\"zb.test\""),
                    "{method} {path}: {text}"
                );
            }
            Expect::Operator | Expect::Partner => {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {text}");
                assert!(text.contains("operator"), "{method} {path}: {text}");
            }
            Expect::Own => {
                assert_eq!(status, StatusCode::OK, "{method} {path}: {text}");
                assert!(!text.contains(&w.b), "{method} {path} shows B: {text}");
                assert!(text.contains(&w.a), "{method} {path}: {text}");
            }
        }
    }
    // Nothing of B changed: its zone is there and its token still works.
    let (s, v) = call(
        &w.app,
        "GET",
        &format!("/v1/accounts/{}/zones/zb", w.b),
        &w.b_admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["config"]["hostnames"], json!(["zb.test"]));
    let (s, v) = call(
        &w.app,
        "GET",
        &format!("/v1/accounts/{}/tokens", w.b),
        &w.b_admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["result"]["items"].as_array().unwrap().len(), 1, "{v}");
    assert!(w.app.store.account(&w.b).await.unwrap().is_some());
}

#[tokio::test]
async fn a_partners_token_reaches_its_requests_and_nothing_else() {
    let w = world().await;
    let (_, partner) = w
        .app
        .create_partner_token("megaport api", "megaport")
        .await
        .unwrap();
    for (method, template, expect) in ROUTES {
        let path = template
            .replace("{account}", &w.b)
            .replace("{name}", "zb")
            .replace("{zone}", "zb")
            .replace("{sha256}", &"0".repeat(64))
            .replace("{secret}", "s")
            .replace("{key}", "k")
            .replace("{code}", "gru-b")
            .replace("{id}", &w.b_token_id);
        let path = if path == "/v1/stream" {
            "/v1/stream?pop=p1".into()
        } else {
            path
        };
        let body = matches!(*method, "POST" | "PUT" | "PATCH").then(|| zone("zb"));
        let (status, value) = call(&w.app, method, &path, &partner, body).await;
        let text = value.to_string();
        match expect {
            Expect::NotFound => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {text}")
            }
            Expect::Operator | Expect::Own => {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {text}");
                assert!(text.contains("partner"), "{method} {path}: {text}");
            }
            Expect::Partner => assert!(
                !matches!(status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
                "{method} {path}: {status} {text}"
            ),
        }
    }
}

#[tokio::test]
async fn an_account_works_in_its_own_routes_and_the_operator_sees_every_account() {
    let w = world().await;
    let a_zones = format!("/v1/accounts/{}/zones", w.a);
    let (s, v) = call(&w.app, "POST", &a_zones, &w.a_admin, Some(zone("za"))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(&w.app, "GET", &a_zones, &w.a_read, None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v["result"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["za"], "A lists its own zones only");
    let (s, v) = call(&w.app, "GET", "/v1/zones", &w.operator, None).await;
    assert_eq!(s, StatusCode::OK);
    let owners: Vec<(&str, &str)> = v["result"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| (z["name"].as_str().unwrap(), z["account"].as_str().unwrap()))
        .collect();
    assert_eq!(owners, [("za", w.a.as_str()), ("zb", w.b.as_str())]);
    // The operator's token reaches an account's routes.
    let (s, _) = call(
        &w.app,
        "GET",
        &format!("/v1/accounts/{}/zones/zb", w.b),
        &w.operator,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // Names are global (as domain names): taken, without saying by whom.
    let mut taken = zone("zb");
    taken["hostnames"] = json!(["other.test"]);
    let (s, v) = call(&w.app, "POST", &a_zones, &w.a_admin, Some(taken)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // A hostname of B's zone: the clash shows, B's zone name does not.
    let mut clash = zone("zc");
    clash["hostnames"] = json!(["zb.test"]);
    let (s, v) = call(&w.app, "POST", &a_zones, &w.a_admin, Some(clash)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("already served") && !text.contains("\\\"zb\\\""),
        "{text}"
    );

    // An unknown account is a 404 for the operator too, and for A the same as B.
    let (s, nobody) = call(&w.app, "GET", "/v1/accounts/0123/zones", &w.a_admin, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, b) = call(
        &w.app,
        "GET",
        &format!("/v1/accounts/{}/zones", w.b),
        &w.a_admin,
        None,
    )
    .await;
    assert_eq!(
        nobody["errors"][0]["message"]
            .as_str()
            .unwrap()
            .replace("0123", "ID"),
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .replace(&w.b, "ID"),
        "another account answers like no account"
    );
    // Deleting an account that owns zones is refused; without them it goes with its tokens.
    let (s, _) = call(
        &w.app,
        "DELETE",
        &format!("/v1/accounts/{}", w.b),
        &w.operator,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    call(
        &w.app,
        "DELETE",
        &format!("/v1/accounts/{}/zones/zb", w.b),
        &w.operator,
        None,
    )
    .await;
    let (s, _) = call(
        &w.app,
        "DELETE",
        &format!("/v1/accounts/{}", w.b),
        &w.operator,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&w.app, "GET", "/v1/accounts", &w.b_admin, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "B's tokens went with it");
}

#[tokio::test]
async fn scopes_decide_and_a_read_token_cannot_mint_a_token() {
    let w = world().await;
    let a_zones = format!("/v1/accounts/{}/zones", w.a);
    let a_tokens = format!("/v1/accounts/{}/tokens", w.a);
    let (s, _) = call(&w.app, "GET", &a_zones, &w.a_read, None).await;
    assert_eq!(s, StatusCode::OK, "read lists");
    let (s, v) = call(&w.app, "POST", &a_zones, &w.a_read, Some(zone("za"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "read does not write: {v}");
    let (s, _) = call(
        &w.app,
        "POST",
        &a_tokens,
        &w.a_read,
        Some(json!({"name": "x", "scopes": ["admin"]})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "read cannot mint a token");
    let (s, _) = call(&w.app, "GET", &a_tokens, &w.a_read, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "read does not list tokens");
    let (_, pop) = w.app.create_token("pop", &["pop"], None).await.unwrap();
    let (s, _) = call(&w.app, "GET", "/v1/accounts", &pop, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a PoP's token lists no accounts");

    // A write token writes but cannot mint.
    let (s, v) = call(
        &w.app,
        "POST",
        &a_tokens,
        &w.a_admin,
        Some(json!({"name": "ci", "scopes": ["write"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let write = v["result"]["secret"].as_str().unwrap().to_string();
    assert_eq!(v["result"]["account"], json!(w.a));
    let (s, _) = call(&w.app, "POST", &a_zones, &write, Some(zone("za"))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &w.app,
        "POST",
        &a_tokens,
        &write,
        Some(json!({"name": "x", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "write cannot mint a token");

    // An account's token cannot have an operator's scope; secrets are shown once and kept
    // hashed.
    let (s, v) = call(
        &w.app,
        "POST",
        &a_tokens,
        &w.a_admin,
        Some(json!({"name": "x", "scopes": ["pop-admin"]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["field"], "scopes[0]");
    let (_, v) = call(&w.app, "GET", &a_tokens, &w.a_admin, None).await;
    assert!(!v.to_string().contains("en_"), "no secret is listed: {v}");
    assert!(w
        .app
        .store
        .token_by_hash(&token_hash(&write))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn pop_admin_tokens_go_to_the_pops_as_hashes_and_leave_when_revoked() {
    let w = world().await;
    let (s, v) = call(
        &w.app,
        "POST",
        "/v1/tokens",
        &w.operator,
        Some(json!({"name": "oncall", "scopes": ["pop-admin"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["result"]["secret"].as_str().unwrap().to_string();
    let id = v["result"]["id"].as_str().unwrap().to_string();
    let snapshot = crate::stream::snapshot(&w.app).await.unwrap();
    let edgenet_protocol::StreamMessage::Snapshot { objects, .. } = snapshot else {
        panic!()
    };
    let hashes: Vec<&str> = objects.pop_token_hashes().collect();
    assert_eq!(hashes, [token_hash(&secret).as_str()]);
    assert!(!serde_json::to_string(&objects).unwrap().contains(&secret));
    let (s, _) = call(
        &w.app,
        "DELETE",
        &format!("/v1/tokens/{id}"),
        &w.operator,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(w.app.store.all(Kind::PopToken).await.unwrap().is_empty());
    let (s, _) = call(&w.app, "GET", "/v1/status", &secret, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked at once");
}
