//! Tunnels and routes through the router as clients call them: checks with field paths,
//! `validate_only`, names and pairs unique in an account, the write-only MD5 key (streamed to
//! PoPs, never shown), routes resolved to their tunnel, and the table as a PoP sees it moving
//! with that PoP's health reports.

use std::sync::Arc;

use axum::http::StatusCode;
use edgenet_dataplane::health::Health;
use edgenet_dataplane::table::NextHop;
use edgenet_protocol::{Kind, MagicProvision, TunnelState};
use serde_json::{json, Value};

use crate::api::tests::{account, call};
use crate::api::App;
use crate::store::Owner;

struct World {
    app: Arc<App>,
    a: String,
    admin: String,
}

async fn world() -> World {
    let store = crate::store::tests::memory().await;
    let app = App::new(store, None).await.unwrap();
    let (_, operator) = app.create_token("op", &["admin"], None).await.unwrap();
    let a = account(&app, "Acme Corp").await;
    let (_, admin) = app
        .create_token("acme admin", &["admin"], Some(&a))
        .await
        .unwrap();
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/cni/settings",
        &operator,
        Some(json!({"gre_endpoints": ["192.0.2.100"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for pop in ["pop-a", "pop-b"] {
        let body = json!({"name": pop, "latitude": 0.0, "longitude": 0.0});
        let (s, v) = call(&app, "POST", "/v1/pops", &operator, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    World { app, a, admin }
}

fn tunnel(name: &str, customer: &str, pair: &str) -> Value {
    json!({"name": name, "cloudflare_gre_endpoint": "192.0.2.100",
        "customer_gre_endpoint": customer, "interface_address": pair})
}

impl World {
    fn path(&self, rest: &str) -> String {
        format!("/v1/accounts/{}/magic/{rest}", self.a)
    }

    /// A call as the account's admin: the `result` of a success, the whole answer of a failure.
    async fn call(&self, method: &str, rest: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (s, v) = call(&self.app, method, &self.path(rest), &self.admin, body).await;
        match v["success"] == true {
            true => (s, v["result"].clone()),
            false => (s, v),
        }
    }

    async fn create(&self, body: Value) -> String {
        let (s, v) = self.call("POST", "gre_tunnels", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// The account's `magic` object as streamed.
    async fn streamed(&self) -> Option<MagicProvision> {
        let owner = Owner::Account(&self.a);
        let stored = self
            .app
            .store
            .get(Kind::Magic, &self.a, owner)
            .await
            .unwrap()?;
        Some(serde_json::from_value(stored.body).unwrap())
    }

    async fn report(&self, pop: &str, tunnel: &str, health: Health, learnt: &[&str]) {
        let state = TunnelState {
            account: self.a.clone(),
            tunnel: tunnel.into(),
            health,
            since_ms: 1,
            reason: Some("test".into()),
            probes_sent: 10,
            probes_failed: 0,
            packets_in: 0,
            bytes_in: 0,
            packets_out: 0,
            bytes_out: 0,
            bgp: None,
            learnt: learnt.iter().map(|s| s.to_string()).collect(),
        };
        super::observe_tunnels(&self.app, pop, crate::api::unix_ms(), &[state])
            .await
            .unwrap();
    }
}

fn fields(v: &Value) -> Vec<&str> {
    v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_tunnel_is_checked_field_by_field_and_validate_only_stores_nothing() {
    let w = world().await;
    let mut bad = tunnel("far-too-long-name", "203.0.113.1", "10.0.0.0/30");
    bad["cloudflare_gre_endpoint"] = json!("192.0.2.7");
    bad["mtu"] = json!(1500);
    let (s, v) = w.call("POST", "gre_tunnels", Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        fields(&v),
        [
            "name",
            "cloudflare_gre_endpoint",
            "interface_address",
            "mtu"
        ]
    );
    let (s, v) = w
        .call(
            "POST",
            "gre_tunnels?validate_only=true",
            Some(tunnel("gre1", "203.0.113.1", "10.212.0.8/31")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["result"]["mtu"], 1476);
    assert_eq!(v["result"]["customer_address"], "10.212.0.9");
    let (_, list) = w.call("GET", "gre_tunnels", None).await;
    assert_eq!(list["items"], json!([]), "validate_only stored nothing");
    assert!(w.streamed().await.is_none());
}

#[tokio::test]
async fn names_and_pairs_are_unique_in_the_account_and_the_key_is_write_only() {
    let w = world().await;
    let mut body = tunnel("gre1", "203.0.113.1", "10.212.0.8/31");
    body["bgp"] = json!({"customer_asn": 65001, "md5_key": "tunnel-secret"});
    let id = w.create(body).await;
    let (s, v) = w
        .call(
            "POST",
            "gre_tunnels",
            Some(tunnel("GRE1", "203.0.113.2", "10.212.0.9/31")),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(fields(&v), ["name", "interface_address"]);
    let (s, v) = w.call("GET", &format!("gre_tunnels/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!v.to_string().contains("tunnel-secret"), "{v}");
    assert_eq!(v["bgp"]["md5_key_set"], true);
    let streamed = w.streamed().await.unwrap();
    assert_eq!(
        streamed.tunnels[0].md5_key.as_deref(),
        Some("tunnel-secret")
    );
    // A replace without the key keeps it; "" removes it.
    let mut again = tunnel("gre1", "203.0.113.9", "10.212.0.8/31");
    again["bgp"] = json!({"customer_asn": 65001});
    let (s, v) = w
        .call("PUT", &format!("gre_tunnels/{id}"), Some(again.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let streamed = w.streamed().await.unwrap();
    assert_eq!(
        streamed.tunnels[0].md5_key.as_deref(),
        Some("tunnel-secret")
    );
    assert_eq!(
        streamed.tunnels[0].spec.customer_gre_endpoint.to_string(),
        "203.0.113.9"
    );
    again["bgp"]["md5_key"] = json!("");
    let (s, v) = w
        .call("PUT", &format!("gre_tunnels/{id}"), Some(again))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["bgp"]["md5_key_set"], false);
    assert_eq!(w.streamed().await.unwrap().tunnels[0].md5_key, None);
}

#[tokio::test]
async fn routes_resolve_to_tunnels_and_the_table_moves_with_a_pops_health() {
    let w = world().await;
    let t1 = w
        .create(tunnel("gre1", "203.0.113.1", "10.212.0.8/31"))
        .await;
    let t2 = w
        .create(tunnel("gre2", "203.0.113.2", "10.212.0.10/31"))
        .await;
    let (s, v) = w
        .call(
            "POST",
            "routes",
            Some(
                json!({"prefix": "10.1.0.0/24", "nexthop": "10.99.0.1", "priority": 100,
                "scope": {"colo_names": ["nowhere"]}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(fields(&v), ["nexthop", "scope.colo_names[0]"]);
    for (hop, priority) in [("10.212.0.9", 100), ("10.212.0.11", 200)] {
        let (s, v) = w
            .call(
                "POST",
                "routes",
                Some(json!({"prefix": "10.1.0.0/24", "nexthop": hop, "priority": priority})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let streamed = w.streamed().await.unwrap();
    let mut hops: Vec<&NextHop> = streamed.routes.iter().map(|r| &r.next_hop).collect();
    hops.sort();
    assert_eq!(
        hops,
        [
            &NextHop::Tunnel("gre1".into()),
            &NextHop::Tunnel("gre2".into())
        ]
    );
    let active = |v: &Value| -> Vec<String> {
        v["routes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["active"] == true)
            .map(|r| {
                format!(
                    "{} {}",
                    r["prefix"].as_str().unwrap(),
                    r["next_hop"]["id"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (s, v) = w.call("GET", "routes?pop=pop-a", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(active(&v), ["10.1.0.0/24 gre1"]);
    // gre1 goes down at pop-a only: pop-a uses gre2, pop-b still gre1.
    w.report("pop-a", &t1, Health::Down, &[]).await;
    w.report("pop-b", &t1, Health::Healthy, &["10.2.0.0/24"])
        .await;
    w.report("pop-a", &t2, Health::Healthy, &[]).await;
    let (_, v) = w.call("GET", "routes?pop=pop-a", None).await;
    assert_eq!(active(&v), ["10.1.0.0/24 gre2"], "{v}");
    let gre1 = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["next_hop"]["id"] == "gre1")
        .unwrap();
    assert_eq!(
        (gre1["health"].as_str(), gre1["effective_priority"].as_u64()),
        (Some("down"), Some(1_000_100))
    );
    let (_, v) = w.call("GET", "routes?pop=pop-b", None).await;
    assert_eq!(active(&v), ["10.1.0.0/24 gre1", "10.2.0.0/24 gre1"], "{v}");
    let (_, v) = w.call("GET", &format!("gre_tunnels/{t1}"), None).await;
    assert_eq!(v["health"]["pop-a"]["health"], "down");
    assert_eq!(v["health"]["pop-b"]["learnt"], json!(["10.2.0.0/24"]));
    let (s, _) = w.call("GET", "routes?pop=pop-zz", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A tunnel a route points at cannot go; once the route is gone it can.
    let (s, v) = w.call("DELETE", &format!("gre_tunnels/{t1}"), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, list) = w.call("GET", "routes", None).await;
    for r in list["items"].as_array().unwrap() {
        if r["nexthop"] == "10.212.0.9" {
            let (s, _) = w
                .call(
                    "DELETE",
                    &format!("routes/{}", r["id"].as_str().unwrap()),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
    }
    let (s, v) = w.call("DELETE", &format!("gre_tunnels/{t1}"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let streamed = w.streamed().await.unwrap();
    assert_eq!(streamed.tunnels.len(), 1);
    assert_eq!(streamed.routes.len(), 1);
}

/// Uploads `pdf` as an LOA of the account; its id.
async fn upload_loa(w: &World, pdf: &[u8]) -> (StatusCode, Value) {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(format!(
            "/v1/accounts/{}/addressing/loa_documents?filename=acme-loa.pdf",
            w.a
        ))
        .header("authorization", format!("Bearer {}", w.admin))
        .header("content-type", "application/pdf")
        .body(Body::from(pdf.to_vec()))
        .unwrap();
    let res = crate::api::router(w.app.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

impl World {
    async fn addressing(
        &self,
        method: &str,
        rest: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let path = format!("/v1/accounts/{}/addressing/{rest}", self.a);
        let (s, v) = call(&self.app, method, &path, &self.admin, body).await;
        match v["success"] == true {
            true => (s, v["result"].clone()),
            false => (s, v),
        }
    }
}

#[tokio::test]
async fn a_prefix_needs_its_loa_is_no_longer_than_24_and_overlaps_nothing() {
    let w = world().await;
    let (s, v) = upload_loa(&w, b"not a pdf").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(fields(&v), ["body"]);
    let pdf = b"%PDF-1.4\n% the customer's signed letter\n%%EOF\n";
    let (s, v) = upload_loa(&w, pdf).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let loa = v["result"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["result"]["size_bytes"], pdf.len());
    let (s, v) = w
        .addressing(
            "POST",
            "prefixes",
            Some(json!({"cidr": "203.0.113.0/25", "asn": 0, "loa_document_id": "nope"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(fields(&v), ["cidr", "asn", "loa_document_id"]);
    let body = json!({"cidr": "203.0.113.0/24", "asn": 64512, "loa_document_id": loa});
    let (s, v) = w.addressing("POST", "prefixes", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["advertised"], false, "off until the customer turns it on");
    assert_eq!(v["egress"], "direct");
    // Overlapping prefixes are refused, whoever asks.
    let wide = json!({"cidr": "203.0.112.0/22", "asn": 64512, "loa_document_id": loa});
    let (s, v) = w.addressing("POST", "prefixes", Some(wide)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("overlaps 203.0.113.0/24"), "{v}");
    // The switch, and the stream.
    let (s, v) = w
        .addressing(
            "PATCH",
            &format!("prefixes/{id}/bgp/status"),
            Some(json!({"advertised": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let streamed = w.streamed().await.expect("streamed");
    assert_eq!(streamed.prefixes.len(), 1);
    assert!(streamed.prefixes[0].spec.advertised);
    assert_eq!(streamed.prefixes[0].spec.cidr.to_string(), "203.0.113.0/24");
    // The LOA comes back as uploaded.
    let path = format!(
        "/v1/accounts/{}/addressing/loa_documents/{loa}/download",
        w.a
    );
    let (s, _) = call(&w.app, "GET", &path, &w.admin, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = w
        .addressing("DELETE", &format!("prefixes/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(w.streamed().await.is_none_or(|m| m.prefixes.is_empty()));
}

#[tokio::test]
async fn the_firewall_is_written_whole_rules_keep_their_ids_and_bad_fields_are_named() {
    let w = world().await;
    let bad = json!({"rules": [
        {"action": "rate_limit", "match": {"protocol": "icmp", "destination_ports": ["80"]}},
    ], "protection": {"udp": {"per_destination_pps": 10, "per_source_pps": 20}}});
    let (s, v) = w.call("PUT", "firewall", Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        fields(&v),
        [
            "rules[0].rate_limit",
            "rules[0].match.protocol",
            "protection.udp.per_source_pps"
        ]
    );
    let good = json!({"rules": [
        {"action": "drop", "description": "no telnet", "match": {"protocol": "tcp", "destination_ports": ["23"]}},
        {"id": "dns-limit", "action": "rate_limit", "rate_limit": {"packets_per_second": 1000, "by": "source"}, "match": {"protocol": "udp", "destination_ports": [53]}},
    ]});
    let (s, v) = w.call("PUT", "firewall", Some(good)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let first = v["rules"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(first.len(), 16, "an id was given: {v}");
    assert_eq!(v["rules"][1]["id"], "dns-limit");
    let streamed = w.streamed().await.expect("streamed");
    assert_eq!(streamed.firewall.rules.len(), 2);
    assert_eq!(streamed.firewall.rules[0].id, first);
    let dup = json!({"rules": [{"id": "x", "action": "drop"}, {"id": "x", "action": "allow"}]});
    let (s, v) = w.call("PUT", "firewall", Some(dup)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(fields(&v), ["rules[1].id"]);
}
