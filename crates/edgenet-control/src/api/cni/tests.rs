//! Interconnects through the router as clients call it: a site, a customer's direct
//! interconnect with its LOA and workflow to active, status from a PoP's link reports, CNIs
//! and their /31s, partners' requests, maintenance notices delivered to a real webhook
//! receiver on an injected clock, and the diversity warning.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use edgenet_interconnect::webhook;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::api::tests::{account, call};
use crate::api::{router, App};
use edgenet_protocol::Kind;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

struct World {
    app: Arc<App>,
    operator: String,
    a: String,
    a_admin: String,
}

/// A site `gru-b` in São Paulo with two v1 devices, one 10G port and one 100G port each,
/// pools for /31s and /127s, and an account `Acme` with an admin token.
async fn world() -> World {
    let store = crate::store::tests::memory().await;
    let app = App::new(store, None).await.unwrap();
    let (_, operator) = app.create_token("op", &["admin"], None).await.unwrap();
    let a = account(&app, "Acme Corp").await;
    let (_, a_admin) = app
        .create_token("acme admin", &["admin"], Some(&a))
        .await
        .unwrap();
    let (s, v) = call(&app, "POST", "/v1/cni/sites", &operator, Some(site())).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let settings = json!({"operator": "Edgenet Networks", "pool_v4": "100.64.0.0/30",
        "pool_v6": "2001:db8:ff::/126"});
    let (s, v) = call(&app, "PUT", "/v1/cni/settings", &operator, Some(settings)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    World {
        app,
        operator,
        a,
        a_admin,
    }
}

fn site() -> Value {
    let device = |name: &str, n: u8| {
        json!({"name": name, "dataplane": "v1", "ports": [
            {"slot": "et-0/0/1", "speed": "10G", "optic": "10GBASE-LR", "interface": format!("cni{n}a")},
            {"slot": "et-0/0/2", "speed": "100G", "optic": "100GBASE-LR", "interface": format!("cni{n}b")}]})
    };
    json!({"code": "gru-b", "pop": "pop-gru", "facility": {"name": "Equinix SP4", "address": "Rua Ricardo Prudente de Aquino 85, Santana de Parnaiba"},
        "timezone": "America/Sao_Paulo", "holidays": ["2026-12-25"], "dataplanes": ["v1"],
        "device_diversity": true, "devices": [device("edge01", 1), device("edge02", 2)]})
}

impl World {
    fn acct(&self, rest: &str) -> String {
        format!("/v1/accounts/{}/cni/{rest}", self.a)
    }

    /// A GET as the account's admin.
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        call(&self.app, "GET", path, &self.a_admin, None).await
    }

    async fn direct(&self, speed: &str) -> (StatusCode, Value) {
        let body = json!({"type": "direct", "site": "gru-b", "speed": speed, "name": "primary"});
        call(
            &self.app,
            "POST",
            &self.acct("interconnects"),
            &self.a_admin,
            Some(body),
        )
        .await
    }

    async fn step(&self, id: &str, token: &str, step: &str) -> (StatusCode, Value) {
        let path = self.acct(&format!("interconnects/{id}/steps"));
        call(
            &self.app,
            "POST",
            &path,
            token,
            Some(json!({ "step": step })),
        )
        .await
    }
}

/// A GET's status, content type and raw body.
async fn raw(app: &Arc<App>, path: &str, token: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, ct, bytes.to_vec())
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

#[tokio::test]
async fn a_direct_interconnect_gets_a_port_and_its_loa_and_goes_to_active_step_by_step() {
    let w = world().await;
    let (s, ic) = w.direct("10G").await;
    assert_eq!(s, StatusCode::CREATED, "{ic}");
    let id = ic["result"]["id"].as_str().unwrap().to_string();
    let r = &ic["result"];
    assert_eq!(
        (
            r["device"].as_str(),
            r["slot"].as_str(),
            r["stage"].as_str()
        ),
        (Some("edge01"), Some("et-0/0/1"), Some("loa_issued"))
    );
    assert_eq!(
        r["next_steps"][0],
        json!({"step": "order_cross_connect", "by": "customer"})
    );

    // The LOA is a real PDF naming facility, device, port and customer.
    let (s, ct, pdf) = raw(
        &w.app,
        &w.acct(&format!("interconnects/{id}/loa")),
        &w.a_admin,
    )
    .await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/pdf"));
    assert!(pdf.starts_with(b"%PDF-1.4"));
    match which("pdftotext") {
        Some(tool) => {
            let dir = std::env::temp_dir().join(format!("edgenet-loa-{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("loa.pdf"), &pdf).unwrap();
            let out = std::process::Command::new(tool)
                .arg(dir.join("loa.pdf"))
                .arg("-")
                .output()
                .unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            for want in [
                "Equinix SP4",
                "Device: edge01",
                "Port: et-0/0/1",
                "Customer: Acme Corp",
                "Edgenet Networks",
            ] {
                assert!(text.contains(want), "the LOA lacks {want:?}:\n{text}");
            }
        }
        None if std::env::var_os("CI").is_some() => {
            panic!("pdftotext is missing (apt-get install poppler-utils)")
        }
        None => eprintln!(
            "skipping the LOA's text: pdftotext is missing (apt-get install poppler-utils)"
        ),
    }

    // The customer's step; the operator's steps refused to the customer, and out of order.
    let (s, v) = w.step(&id, &w.a_admin, "configure").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let dry = w.acct(&format!("interconnects/{id}/steps?validate_only=true"));
    let (s, v) = call(
        &w.app,
        "POST",
        &dry,
        &w.a_admin,
        Some(json!({"step": "order_cross_connect"})),
    )
    .await;
    assert_eq!(
        (s, v["result"]["result"]["stage"].as_str()),
        (StatusCode::OK, Some("cross_connect_ordered")),
        "{v}"
    );
    let (_, v) = w.get(&w.acct(&format!("interconnects/{id}"))).await;
    assert_eq!(
        v["result"]["stage"], "loa_issued",
        "the dry run took no step"
    );
    let (s, v) = w.step(&id, &w.a_admin, "order_cross_connect").await;
    assert_eq!(
        (s, v["result"]["stage"].as_str()),
        (StatusCode::OK, Some("cross_connect_ordered")),
        "{v}"
    );
    let (s, v) = w.step(&id, &w.a_admin, "propose_configuration").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v.to_string().contains("Operator"), "{v}");
    // v1: the configuration document comes from the CNI, which must exist first.
    let (s, v) = w.step(&id, &w.operator, "propose_configuration").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let cni = json!({"interconnect": id, "customer_asn": 64700, "use_case": "magic_transit",
        "prefixes": ["203.0.113.0/24"], "vlan": 100, "md5_key": "s3cret-Key", "allocate_v6": true});
    let (s, v) = call(&w.app, "POST", &w.acct("cnis"), &w.a_admin, Some(cni)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["result"]["p2p_v4"], "100.64.0.0/31");
    assert_eq!(v["result"]["our_address_v4"], "100.64.0.0");
    assert_eq!(v["result"]["customer_address_v4"], "100.64.0.1");
    assert_eq!(v["result"]["p2p_v6"], "2001:db8:ff::/127");
    assert_eq!(v["result"]["md5_key_set"], true);
    assert!(
        !v.to_string().contains("s3cret-Key"),
        "the key is write-only: {v}"
    );
    for (token, step) in [
        (&w.operator, "propose_configuration"),
        (&w.a_admin, "approve_configuration"),
        (&w.operator, "configure"),
        (&w.operator, "test"),
        (&w.operator, "activate"),
    ] {
        let (s, v) = w.step(&id, token, step).await;
        assert_eq!(s, StatusCode::OK, "{step}: {v}");
    }
    let (s, v) = w.get(&w.acct(&format!("interconnects/{id}"))).await;
    assert_eq!(s, StatusCode::OK);
    let r = &v["result"];
    assert_eq!(r["stage"], "active");
    let who: Vec<(&str, &str)> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["to"].as_str().unwrap(), t["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        who,
        [
            ("loa_issued", "operator"),
            ("cross_connect_ordered", "customer"),
            ("configuration_proposed", "operator"),
            ("configuration_approved", "customer"),
            ("configured", "operator"),
            ("tested", "operator"),
            ("active", "operator")
        ]
    );
    // Its configuration, which Cloudflare's dashboard does not show.
    let c = &r["configuration"];
    assert_eq!(
        (
            c["vlan"].as_u64(),
            c["customer_mtu"].as_u64(),
            c["gre"].as_bool()
        ),
        (Some(100), Some(1476), Some(true)),
        "{c}"
    );
    assert_eq!(c["addressing"]["v4"]["customer"], "100.64.0.1");
    assert!(!v.to_string().contains("s3cret-Key"));
    let (s, v) = w.step(&id, &w.operator, "cancel").await;
    assert_eq!(s, StatusCode::CONFLICT, "active is final: {v}");
    // A CNI holds its interconnect.
    let (s, v) = call(
        &w.app,
        "DELETE",
        &w.acct(&format!("interconnects/{id}")),
        &w.a_admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

#[tokio::test]
async fn status_follows_the_pops_link_reports_with_its_history() {
    let w = world().await;
    let (_, ic) = w.direct("100G").await;
    let id = ic["result"]["id"].as_str().unwrap().to_string();
    w.app
        .store
        .put(
            Kind::Pop,
            "pop-gru",
            Some(&json!({"name": "pop-gru"})),
            true,
            None,
            crate::store::Owner::Operator,
        )
        .await
        .unwrap();
    w.app
        .store
        .put(
            Kind::Pop,
            "pop-other",
            Some(&json!({"name": "pop-other"})),
            true,
            None,
            crate::store::Owner::Operator,
        )
        .await
        .unwrap();
    let (_, pop) = w.app.create_token("pop", &["pop"], None).await.unwrap();
    let report = |pop_name: &str, at: i64, up: bool, dbm: f64| {
        let line = json!({"type": "links", "at_ms": at, "links": [{"interconnect": id, "link_up": up, "rx_dbm": dbm, "bgp_established": up}]});
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("/v1/pops/{pop_name}/reports"))
            .header("authorization", format!("Bearer {pop}"))
            .body(Body::from(format!("{line}\n")))
            .unwrap();
        router(w.app.clone()).oneshot(req)
    };
    let status_path = w.acct(&format!("interconnects/{id}/status"));
    let status = || call(&w.app, "GET", &status_path, &w.a_admin, None);
    let (_, v) = status().await;
    assert_eq!(v["result"]["status"], "pending");
    assert_eq!(
        report("pop-gru", 1_000, false, -40.0)
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        status().await.1["result"]["status"],
        "pending",
        "pending until the link first comes up"
    );
    report("pop-gru", 2_000, true, -3.1).await.unwrap();
    let (_, v) = status().await;
    assert_eq!(
        (
            v["result"]["status"].as_str(),
            v["result"]["operational"].as_bool()
        ),
        (Some("active"), Some(true)),
        "{v}"
    );
    report("pop-gru", 2_500, true, -3.3).await.unwrap();
    let (_, v) = status().await;
    assert_eq!(
        v["result"]["last_report"]["at_ms"], 2_000,
        "a repeated state is not written again"
    );
    report("pop-gru", 3_000, true, -24.5).await.unwrap();
    // Another PoP cannot speak for this site.
    report("pop-other", 4_000, true, -2.0).await.unwrap();
    let (_, v) = status().await;
    assert_eq!(v["result"]["status"], "unhealthy", "{v}");
    let changes: Vec<(&str, i64)> = v["result"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["to"].as_str().unwrap(), c["at_ms"].as_i64().unwrap()))
        .collect();
    assert_eq!(changes, [("active", 2_000), ("unhealthy", 3_000)]);
    assert!(v["result"]["changes"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("-24.5 dBm"));
}

#[tokio::test]
async fn ports_spread_over_devices_and_run_out_and_slots_show_it() {
    let w = world().await;
    let (_, first) = w.direct("10G").await;
    let (_, second) = w.direct("10G").await;
    assert_eq!(first["result"]["device"], "edge01");
    assert_eq!(
        second["result"]["device"], "edge02",
        "the second circuit goes to the other device"
    );
    let (s, v) = w.direct("10G").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("no free 10G port at gru-b"), "{v}");
    let (_, v) = w.get(&w.acct("slots?occupied=true")).await;
    let ids: Vec<&str> = v["result"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gru-b/edge01/et-0/0/1", "gru-b/edge02/et-0/0/1"]);
    let (_, v) = w
        .get(&w.acct("slots?speed=100G&occupied=false&site=gru-b"))
        .await;
    assert_eq!(v["result"]["items"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        !v.to_string().contains("cni1"),
        "interfaces are the operator's: {v}"
    );
    // Filters and the cursor of the list.
    let (_, v) = w.get(&w.acct("interconnects?type=direct&limit=1")).await;
    let next = v["result"]["next"].as_str().unwrap().to_string();
    let (_, v2) = w
        .get(&w.acct(&format!("interconnects?cursor={next}")))
        .await;
    assert_eq!(
        v["result"]["items"].as_array().unwrap().len()
            + v2["result"]["items"].as_array().unwrap().len(),
        2
    );
    let (_, v) = w.get(&w.acct("interconnects?type=cloud")).await;
    assert_eq!(v["result"]["items"], json!([]));
    // Deleting frees the port; validate_only takes nothing.
    let id = first["result"]["id"].as_str().unwrap();
    let (s, _) = call(
        &w.app,
        "DELETE",
        &w.acct(&format!("interconnects/{id}")),
        &w.a_admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let body = json!({"type": "direct", "site": "gru-b", "speed": "10G"});
    let (s, v) = call(
        &w.app,
        "POST",
        &w.acct("interconnects?validate_only=true"),
        &w.a_admin,
        Some(body),
    )
    .await;
    assert_eq!(
        (s, v["result"]["valid"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    let (s, _) = w.direct("10G").await;
    assert_eq!(s, StatusCode::CREATED, "the dry run held no port");
}

#[tokio::test]
async fn cnis_are_checked_against_their_dataplane_with_every_field_named() {
    let w = world().await;
    let mut v2 = site();
    v2["code"] = json!("mia-a");
    v2["pop"] = json!(null);
    v2["dataplanes"] = json!(["v2"]);
    v2["device_diversity"] = json!(false);
    v2["devices"] = json!([{"name": "edge01", "dataplane": "v2", "ports": [
        {"slot": "p1", "speed": "100G", "optic": "100GBASE-LR4", "interface": "mia1"}]}]);
    let (s, v) = call(&w.app, "POST", "/v1/cni/sites", &w.operator, Some(v2)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let body = json!({"type": "direct", "site": "mia-a", "speed": "100G"});
    let (_, ic) = call(
        &w.app,
        "POST",
        &w.acct("interconnects"),
        &w.a_admin,
        Some(body),
    )
    .await;
    let id = ic["result"]["id"].as_str().unwrap();
    assert_eq!(ic["result"]["next_steps"][0]["step"], "order_cross_connect");
    let cni = json!({"interconnect": id, "customer_asn": 64700, "use_case": "peering", "vlan": 10,
        "bfd": true, "lacp": true, "mtu": 1600, "p2p_v4": "100.64.0.1/31"});
    let (s, v) = call(&w.app, "POST", &w.acct("cnis"), &w.a_admin, Some(cni)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let errors: Vec<String> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["field"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            "p2p_v4: 100.64.0.1/31 is not a pair: a /31 starts at an even address (100.64.0.0/31)",
            "use_case: peering is not offered on v2 dataplanes: use a v1 device",
            "mtu: 1600 is above the v2 dataplane's 1500",
            "vlan: the v2 dataplane carries no VLAN (nor QinQ)",
            "bfd: the v2 dataplane runs no BFD",
            "lacp: the v2 dataplane shares traffic by ECMP, not LACP bundles",
        ]
    );
    // The account's default ASN fills in; a bad default is refused by its field.
    let (s, v) = call(
        &w.app,
        "PUT",
        &w.acct("settings"),
        &w.a_admin,
        Some(json!({"default_asn": 0})),
    )
    .await;
    assert_eq!(
        (s, v["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("default_asn"))
    );
    let (s, _) = call(
        &w.app,
        "PUT",
        &w.acct("settings"),
        &w.a_admin,
        Some(json!({"default_asn": 64999})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let cni = json!({"interconnect": id, "use_case": "wan", "md5_key": "write-only-key"});
    let (s, v) = call(
        &w.app,
        "POST",
        &w.acct("cnis"),
        &w.a_admin,
        Some(cni.clone()),
    )
    .await;
    assert_eq!(
        (s, v["result"]["customer_asn"].as_u64()),
        (StatusCode::CREATED, Some(64999)),
        "{v}"
    );
    let cni_id = v["result"]["id"].as_str().unwrap().to_string();
    let (s, v) = call(&w.app, "POST", &w.acct("cnis"), &w.a_admin, Some(cni)).await;
    assert_eq!(s, StatusCode::CONFLICT, "one CNI per interconnect: {v}");
    // A replace without the key keeps it; "" removes it; no answer shows it.
    let replace = json!({"interconnect": id, "use_case": "wan", "max_prefixes": 5});
    let stale = Request::builder()
        .method(Method::PUT)
        .uri(w.acct(&format!("cnis/{cni_id}")))
        .header("authorization", format!("Bearer {}", w.a_admin))
        .header("if-match", "\"7\"")
        .body(Body::from(replace.to_string()))
        .unwrap();
    let res = router(w.app.clone()).oneshot(stale).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::PRECONDITION_FAILED,
        "If-Match of another version"
    );
    let (s, v) = call(
        &w.app,
        "PUT",
        &w.acct(&format!("cnis/{cni_id}")),
        &w.a_admin,
        Some(replace),
    )
    .await;
    assert_eq!(
        (s, v["result"]["md5_key_set"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    assert_eq!(v["result"]["p2p_v4"], "100.64.0.0/31", "the pair stays");
    let (_, list) = w.get(&w.acct("cnis")).await;
    assert!(!list.to_string().contains("write-only-key"), "{list}");
    let clear = json!({"interconnect": id, "use_case": "wan", "md5_key": ""});
    let (_, v) = call(
        &w.app,
        "PUT",
        &w.acct(&format!("cnis/{cni_id}")),
        &w.a_admin,
        Some(clear),
    )
    .await;
    assert_eq!(v["result"]["md5_key_set"], false, "{v}");
}

#[tokio::test]
async fn concurrent_cni_creates_never_share_a_pair_and_the_pool_runs_out() {
    let w = world().await;
    // A /30 holds two /31s; six Google attachments (no port needed) race for them.
    let mut ids = Vec::new();
    for i in 0..6 {
        let body = json!({"type": "cloud", "site": "gru-b", "name": format!("gcp{i}"),
            "cloud": {"provider": "google", "pairing_key": "7e51371e-72a3-40b5-b844-2e3efefaee59/us-central1/2", "speed_mbps": 1000, "mtu": 1460}});
        let (s, v) = call(
            &w.app,
            "POST",
            &w.acct("interconnects"),
            &w.a_admin,
            Some(body),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["result"]["needs_static_routes"], true);
        ids.push(v["result"]["id"].as_str().unwrap().to_string());
    }
    let creates = ids.iter().map(|id| {
        let (app, token, path) = (w.app.clone(), w.a_admin.clone(), w.acct("cnis"));
        let body =
            json!({"interconnect": id, "customer_asn": 64700, "use_case": "wan", "mtu": 1460});
        tokio::spawn(async move { call(&app, "POST", &path, &token, Some(body)).await })
    });
    let mut pairs = Vec::new();
    let mut full = 0;
    for c in creates {
        let (s, v) = c.await.unwrap();
        match s {
            StatusCode::CREATED => pairs.push(v["result"]["p2p_v4"].as_str().unwrap().to_string()),
            StatusCode::CONFLICT => {
                assert!(v.to_string().contains("has no free /31"), "{v}");
                full += 1;
            }
            _ => panic!("{s}: {v}"),
        }
    }
    pairs.sort();
    assert_eq!(pairs, ["100.64.0.0/31", "100.64.0.2/31"]);
    assert_eq!(full, 4);
    // A Google attachment's MTU must match.
    let body =
        json!({"interconnect": ids[5], "customer_asn": 64700, "use_case": "wan", "mtu": 1500});
    let (s, v) = call(&w.app, "POST", &w.acct("cnis"), &w.a_admin, Some(body)).await;
    assert_eq!(
        (s, v["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mtu")),
        "{v}"
    );
}

#[tokio::test]
async fn a_partner_submits_and_follows_only_its_requests_and_the_operator_decides() {
    let w = world().await;
    let mint = |partner: &str| {
        let body =
            json!({"name": format!("{partner} api"), "scopes": ["partner"], "partner": partner});
        call(&w.app, "POST", "/v1/tokens", &w.operator, Some(body))
    };
    let (s, v) = mint("megaport").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let megaport = v["result"]["secret"].as_str().unwrap().to_string();
    let (s, v) = mint("nobody-fabric").await;
    assert_eq!(
        (s, v["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("partner"))
    );
    // The operator adds a partner of its own.
    let (s, _) = call(
        &w.app,
        "POST",
        "/v1/cni/partners",
        &w.operator,
        Some(json!({"id": "acme-fabric", "name": "Acme Fabric"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, v) = mint("acme-fabric").await;
    let acme = v["result"]["secret"].as_str().unwrap().to_string();

    let request = |reference: &str| json!({"account": w.a, "site": "gru-b", "reference": reference, "speed_mbps": 500, "vlan": 2001});
    let (s, v) = call(
        &w.app,
        "POST",
        "/v1/cni/partner-requests",
        &megaport,
        Some(request("MP-1")),
    )
    .await;
    assert_eq!(
        (s, v["result"]["stage"].as_str()),
        (StatusCode::CREATED, Some("submitted")),
        "{v}"
    );
    let first = v["result"]["id"].as_str().unwrap().to_string();
    let (_, v) = call(
        &w.app,
        "POST",
        "/v1/cni/partner-requests",
        &megaport,
        Some(request("MP-2")),
    )
    .await;
    let second = v["result"]["id"].as_str().unwrap().to_string();
    let mut bad = request("");
    bad["vlan"] = json!(0);
    bad["account"] = json!("0123");
    let (s, v) = call(
        &w.app,
        "POST",
        "/v1/cni/partner-requests",
        &megaport,
        Some(bad),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["account", "reference", "vlan"]);
    // An account cannot submit, another partner sees none of Megaport's.
    let (s, _) = call(
        &w.app,
        "POST",
        "/v1/cni/partner-requests",
        &w.a_admin,
        Some(request("X")),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, v) = call(&w.app, "GET", "/v1/cni/partner-requests", &acme, None).await;
    assert_eq!(v["result"]["items"], json!([]));
    let (s, _) = call(
        &w.app,
        "GET",
        &format!("/v1/cni/partner-requests/{first}"),
        &acme,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, v) = call(&w.app, "GET", "/v1/cni/partner-requests", &megaport, None).await;
    assert_eq!(v["result"]["items"].as_array().unwrap().len(), 2);
    // Deciding is the operator's.
    let (s, _) = call(
        &w.app,
        "POST",
        &format!("/v1/cni/partner-requests/{first}/accept"),
        &megaport,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = call(
        &w.app,
        "POST",
        &format!("/v1/cni/partner-requests/{first}/accept"),
        &w.operator,
        None,
    )
    .await;
    assert_eq!(
        (s, v["result"]["stage"].as_str()),
        (StatusCode::OK, Some("accepted")),
        "{v}"
    );
    let (s, v) = call(
        &w.app,
        "POST",
        &format!("/v1/cni/partner-requests/{second}/reject"),
        &w.operator,
        Some(json!({"reason": "no capacity on the partner port"})),
    )
    .await;
    assert_eq!(
        (s, v["result"]["stage"].as_str()),
        (StatusCode::OK, Some("rejected")),
        "{v}"
    );
    let (s, _) = call(
        &w.app,
        "POST",
        &format!("/v1/cni/partner-requests/{second}/accept"),
        &w.operator,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "rejected is final");
    let (_, v) = call(
        &w.app,
        "GET",
        &format!("/v1/cni/partner-requests/{second}"),
        &megaport,
        None,
    )
    .await;
    assert_eq!(
        v["result"]["history"][0]["step"]["reason"],
        "no capacity on the partner port"
    );
    // The customer sees both, as partner interconnects.
    let (_, v) = w.get(&w.acct("interconnects?type=partner")).await;
    assert_eq!(v["result"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(v["result"]["items"][0]["partner"]["partner"], "megaport");
}

/// A webhook receiver on loopback that answers 500 to its first `failures` requests.
async fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let sig = headers
                    .get(webhook::SIGNATURE_HEADER)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let mut seen = seen.lock().unwrap();
                seen.push((sig, body));
                if seen.len() <= failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

#[tokio::test]
async fn maintenance_notices_wait_for_the_hold_and_reach_a_signed_retried_webhook() {
    let w = world().await;
    let now = crate::api::unix_ms();
    // Routine work tomorrow has too little notice; emergency work may.
    let event = |start: i64, urgency: &str| {
        json!({"site": "gru-b", "device": "edge01", "urgency": urgency,
        "start": rfc3339(start), "end": rfc3339(start + 4 * HOUR), "description": "optic swap"})
    };
    let (s, v) = call(
        &w.app,
        "POST",
        "/v1/cni/maintenance",
        &w.operator,
        Some(event(now + DAY, "routine")),
    )
    .await;
    assert_eq!(
        (s, v["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("start")),
        "{v}"
    );
    assert!(v.to_string().contains("business days"), "{v}");
    let (s, _) = call(
        &w.app,
        "POST",
        "/v1/cni/maintenance",
        &w.a_admin,
        Some(event(now + 10 * DAY, "routine")),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "maintenance is the operator's");
    let (s, v) = call(
        &w.app,
        "POST",
        "/v1/cni/maintenance",
        &w.operator,
        Some(event(now + 10 * DAY, "routine")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let soon = v["result"]["id"].as_str().unwrap().to_string();
    // Beyond the two-week horizon, and 16 hours from the other device's window.
    let (s, v) = call(
        &w.app,
        "POST",
        "/v1/cni/maintenance",
        &w.operator,
        Some(event(now + 20 * DAY, "routine")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let later = v["result"]["id"].as_str().unwrap().to_string();
    let mut close = event(now + 10 * DAY + 6 * HOUR, "routine");
    close["device"] = json!("edge02");
    let (s, v) = call(
        &w.app,
        "POST",
        "/v1/cni/maintenance",
        &w.operator,
        Some(close),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v.to_string().contains("within 16 hours"), "{v}");

    let (url, got) = receiver(2).await;
    let (s, v) = call(
        &w.app,
        "POST",
        &w.acct("subscriptions"),
        &w.a_admin,
        Some(json!({"url": url, "types": ["scheduled"], "pops": ["gru"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["result"]["secret"].as_str().unwrap().to_string();
    let sub = v["result"]["id"].as_str().unwrap().to_string();
    let (other_url, other) = receiver(0).await;
    let (s, _) = call(
        &w.app,
        "POST",
        &w.acct("subscriptions"),
        &w.a_admin,
        Some(json!({"url": other_url, "pops": ["mia"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, list) = w.get(&w.acct("subscriptions")).await;
    assert!(!list.to_string().contains(&secret), "the secret shows once");

    let client = reqwest::Client::new();
    let tick = |at: i64| super::deliver_notices(&w.app, &client, at);
    // Held six hours: a quick correction pages nobody.
    let round = tick(now + 5 * HOUR).await.unwrap();
    assert_eq!((round.notices, round.attempts), (0, 0));
    // Then due; the receiver fails twice, and each retry waits longer.
    // (The event was created a few milliseconds after `now`.)
    let t1 = now + 6 * HOUR + 1_000;
    let round = tick(t1).await.unwrap();
    assert_eq!((round.notices, round.attempts, round.delivered), (1, 1, 0));
    assert_eq!(
        tick(t1 + 29_000).await.unwrap().attempts,
        0,
        "the first retry waits 30 s"
    );
    assert_eq!(tick(t1 + 30_000).await.unwrap().attempts, 1);
    assert_eq!(
        tick(t1 + 60_000).await.unwrap().attempts,
        0,
        "the second waits 60 s more"
    );
    let round = tick(t1 + 90_000).await.unwrap();
    assert_eq!((round.attempts, round.delivered), (1, 1));
    assert_eq!(
        tick(t1 + 200_000).await.unwrap(),
        super::Round::default(),
        "nothing more to send"
    );

    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    let (sig, body) = &got[2];
    webhook::verify(
        secret.as_bytes(),
        sig,
        body.as_bytes(),
        (t1 + 90_000) / 1000,
        300,
    )
    .unwrap();
    assert!(webhook::verify(
        b"another secret",
        sig,
        body.as_bytes(),
        (t1 + 90_000) / 1000,
        300
    )
    .is_err());
    let notice: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (notice["type"].as_str(), notice["event"]["id"].as_str()),
        (Some("maintenance.scheduled"), Some(soon.as_str()))
    );
    assert_eq!(notice["event"]["pop"], "gru");
    assert!(
        other.lock().unwrap().is_empty(),
        "the mia subscription hears nothing of gru"
    );

    let (_, v) = w
        .get(&w.acct(&format!("subscriptions/{sub}/deliveries")))
        .await;
    let d = &v["result"]["items"][0];
    let statuses: Vec<u64> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        (d["state"].as_str(), statuses),
        (Some("delivered"), vec![500, 500, 200]),
        "{v}"
    );

    // The later event goes out two weeks ahead, not before.
    assert_eq!(
        tick(now + 20 * DAY - 14 * DAY - HOUR)
            .await
            .unwrap()
            .notices,
        0
    );
    assert_eq!(tick(now + 20 * DAY - 14 * DAY).await.unwrap().notices, 1);
    // A cancellation after the notice is a notice too (this subscription wants only
    // scheduled ones: due, but not sent to it).
    let (s, v) = call(
        &w.app,
        "DELETE",
        &format!("/v1/cni/maintenance/{later}"),
        &w.operator,
        None,
    )
    .await;
    assert_eq!(
        (s, v["result"]["state"].as_str()),
        (StatusCode::OK, Some("canceled"))
    );
    let round = tick(now + 20 * DAY - 14 * DAY + 1000).await.unwrap();
    assert_eq!((round.notices, round.attempts), (1, 0));
    let (_, v) = w.get(&w.acct("maintenance")).await;
    assert_eq!(v["result"]["items"].as_array().unwrap().len(), 2);
    // Finished deliveries (the later event's scheduled notice made the second) are listed for
    // a month, then forgotten.
    let deliveries = w.acct(&format!("subscriptions/{sub}/deliveries"));
    tick(t1 + 29 * DAY).await.unwrap();
    assert_eq!(
        w.get(&deliveries).await.1["result"]["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    tick(now + 6 * DAY + 31 * DAY).await.unwrap();
    assert_eq!(w.get(&deliveries).await.1["result"]["items"], json!([]));
    // The account goes once its subscriptions do (its settings and deliveries go with it).
    let account = format!("/v1/accounts/{}", w.a);
    let (s, v) = call(&w.app, "DELETE", &account, &w.operator, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("subscription"), "{v}");
    let (_, subs) = w.get(&w.acct("subscriptions")).await;
    for s in subs["result"]["items"].as_array().unwrap() {
        let path = w.acct(&format!("subscriptions/{}", s["id"].as_str().unwrap()));
        let (status, _) = call(&w.app, "DELETE", &path, &w.a_admin, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (s, v) = call(&w.app, "DELETE", &account, &w.operator, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_customer_on_one_device_is_warned_until_it_has_a_second() {
    let w = world().await;
    let (_, v) = w.get(&w.acct("diversity")).await;
    assert_eq!(
        v["result"]["warning"],
        Value::Null,
        "no circuits, no warning"
    );
    let (_, first) = w.direct("10G").await;
    let now = crate::api::unix_ms();
    let event = json!({"site": "gru-b", "device": "edge01", "urgency": "emergency",
        "start": rfc3339(now + HOUR), "end": rfc3339(now + 2 * HOUR)});
    let (_, e) = call(
        &w.app,
        "POST",
        "/v1/cni/maintenance",
        &w.operator,
        Some(event),
    )
    .await;
    let (_, v) = w.get(&w.acct("diversity")).await;
    let warning = &v["result"]["warning"];
    assert!(
        warning["reason"]
            .as_str()
            .unwrap()
            .contains("device edge01 at gru-b"),
        "{v}"
    );
    assert_eq!(warning["windows"], json!([e["result"]["id"]]));
    let (_, v) = w.get(&w.acct("maintenance")).await;
    assert_eq!(
        v["result"]["items"][0]["affects"],
        json!([first["result"]["id"]])
    );
    w.direct("10G").await;
    let (_, v) = w.get(&w.acct("diversity")).await;
    assert_eq!(v["result"]["warning"], Value::Null, "{v}");
}

#[tokio::test]
async fn a_site_keeps_the_ports_interconnects_hold() {
    let w = world().await;
    w.direct("10G").await;
    let mut smaller = site();
    smaller["devices"][0]["ports"] = json!([]);
    let (s, v) = call(
        &w.app,
        "PUT",
        "/v1/cni/sites/gru-b",
        &w.operator,
        Some(smaller),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("gru-b/edge01/et-0/0/1"), "{v}");
    let (s, _) = call(&w.app, "DELETE", "/v1/cni/sites/gru-b", &w.operator, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, v) = call(&w.app, "GET", "/v1/cni/sites/gru-b", &w.operator, None).await;
    assert_eq!(
        v["result"]["site"]["devices"][0]["ports"][0]["occupied"],
        true
    );
    let mut bad = site();
    bad["code"] = json!("GRU");
    let (s, v) = call(&w.app, "POST", "/v1/cni/sites", &w.operator, Some(bad)).await;
    assert_eq!(
        (s, v["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("code"))
    );
}

/// The `cni` objects of the configuration stream, by version: (CNI id, what is provisioned).
async fn streamed(app: &App) -> Vec<(String, Option<edgenet_protocol::CniProvision>)> {
    use edgenet_protocol::{Decoded, ObjectChange};
    app.store
        .changes_since(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| match c.object {
            ObjectChange::Cni { name, body } => Some((
                name,
                body.map(|b| match b {
                    Decoded::Ok(p) => p,
                    Decoded::Invalid { reason, .. } => panic!("{reason}"),
                }),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_cni_is_streamed_to_the_pop_that_runs_its_site_with_its_key() {
    let w = world().await;
    let (_, ic) = w.direct("10G").await;
    let ic = ic["result"]["id"].as_str().unwrap().to_string();
    let cni = json!({"interconnect": ic, "customer_asn": 64700, "use_case": "peering",
        "prefixes": ["203.0.113.0/24"], "md5_key": "streamed-key"});
    let (s, v) = call(&w.app, "POST", &w.acct("cnis"), &w.a_admin, Some(cni)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["result"]["id"].as_str().unwrap().to_string();
    let all = streamed(&w.app).await;
    assert_eq!(all.len(), 1);
    let (name, Some(p)) = &all[0] else {
        panic!("{all:?}")
    };
    assert_eq!(name, &id);
    assert_eq!(
        (
            p.pop.as_str(),
            p.site.as_str(),
            p.device.as_str(),
            p.interface.as_deref()
        ),
        ("pop-gru", "gru-b", "edge01", Some("cni1a"))
    );
    assert_eq!(
        p.md5_key.as_deref(),
        Some("streamed-key"),
        "the PoP needs the key"
    );
    assert_eq!(p.spec.p2p_v4.unwrap().to_string(), "100.64.0.0/31");
    assert_eq!(
        (p.account.as_str(), p.interconnect.as_str()),
        (w.a.as_str(), ic.as_str())
    );
    // The same site again streams nothing; the port on another interface streams it again.
    let (s, _) = call(
        &w.app,
        "PUT",
        "/v1/cni/sites/gru-b",
        &w.operator,
        Some(site()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        streamed(&w.app).await.len(),
        1,
        "nothing changed for the PoP"
    );
    let mut moved = site();
    moved["devices"][0]["ports"][0]["interface"] = json!("cni9");
    let (s, _) = call(
        &w.app,
        "PUT",
        "/v1/cni/sites/gru-b",
        &w.operator,
        Some(moved),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let all = streamed(&w.app).await;
    assert_eq!(
        all[1].1.as_ref().unwrap().interface.as_deref(),
        Some("cni9")
    );
    // Deleted: it leaves the stream.
    let (s, _) = call(
        &w.app,
        "DELETE",
        &w.acct(&format!("cnis/{id}")),
        &w.a_admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let all = streamed(&w.app).await;
    assert_eq!((all.len(), &all[2]), (3, &(id, None)));
}

#[tokio::test]
async fn diagnostics_show_the_session_its_prefixes_and_the_timeline() {
    let w = world().await;
    let (_, ic) = w.direct("10G").await;
    let ic = ic["result"]["id"].as_str().unwrap().to_string();
    let cni = json!({"interconnect": ic, "customer_asn": 64700, "use_case": "peering",
        "prefixes": ["203.0.113.0/24"], "max_prefixes": 2});
    let (s, v) = call(&w.app, "POST", &w.acct("cnis"), &w.a_admin, Some(cni)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["result"]["id"].as_str().unwrap().to_string();
    w.app
        .store
        .put(
            Kind::Pop,
            "pop-gru",
            Some(&json!({"name": "pop-gru"})),
            true,
            None,
            crate::store::Owner::Operator,
        )
        .await
        .unwrap();
    let (_, pop) = w.app.create_token("pop", &["pop"], None).await.unwrap();
    let report = |at: i64, up: bool, session: Value| {
        let line = json!({"type": "links", "at_ms": at, "links": [{"interconnect": ic,
            "link_up": up, "rx_dbm": -2.5, "bgp_established": session["state"] == "established",
            "sessions": [session]}]});
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/pops/pop-gru/reports")
            .header("authorization", format!("Bearer {pop}"))
            .body(Body::from(format!("{line}\n")))
            .unwrap();
        router(w.app.clone()).oneshot(req)
    };
    let up = json!({"cni": id, "state": "established", "received": 2, "accepted": 1,
        "advertised": 1, "installed": 1,
        "refused": [{"prefix": "203.0.113.0/25", "reason": "203.0.113.0/25 is longer than /24"}]});
    assert_eq!(
        report(1_000, true, up).await.unwrap().status(),
        StatusCode::OK
    );
    let down = json!({"cni": id, "state": "idle", "last_error": "the peer sent 3 prefixes, over the limit of 2",
        "last_notification": {"direction": "sent", "code": 6, "subcode": 1,
            "meaning": "Cease: Maximum Number of Prefixes Reached", "at_ms": 1_900}});
    report(2_000, true, down).await.unwrap();
    let (s, v) = w.get(&w.acct(&format!("cnis/{id}/diagnostics"))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["result"];
    assert_eq!(
        (d["status"].as_str(), d["operational"].as_bool()),
        (Some("active"), Some(false)),
        "{d}"
    );
    assert_eq!(d["link"]["up"], true);
    assert_eq!(d["link"]["rx_dbm"], -2.5);
    assert_eq!(d["bgp"]["state"], "idle");
    assert_eq!(d["bgp"]["last_notification"]["subcode"], 1);
    assert_eq!(
        d["prefixes"]["received"], 0,
        "the reset session holds nothing"
    );
    let timeline: Vec<(i64, &str, &str)> = d["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["at_ms"].as_i64().unwrap(),
                e["kind"].as_str().unwrap(),
                e["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        timeline,
        [
            (1_000, "status", "pending to active: the link is up"),
            (1_000, "link", "the link is up"),
            (1_000, "bgp", "BGP session established"),
            (
                2_000,
                "bgp",
                "BGP session down (idle): the peer sent 3 prefixes, over the limit of 2"
            ),
            (
                1_900,
                "notification",
                "NOTIFICATION sent 6/1: Cease: Maximum Number of Prefixes Reached"
            ),
        ],
        "{d}"
    );
    let (s, _) = w.get(&w.acct("cnis/nope/diagnostics")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
