//! The control plane with real processes: `edgenet control` and `edgenet pop --control`,
//! driven with curl as an operator would. Zones created through the API are served by every
//! PoP; the PoPs keep serving with the control plane down, restart from their last-known-good
//! file, catch up when it returns; bad input and bad tokens get 4xx and change nothing.

mod support;

use std::time::{Duration, Instant};

use support::{curl, eventually, Control, Origin, Pop};

fn zone_json(name: &str, host: &str, origin: &str, header: &str) -> String {
    serde_json::json!({
        "name": name,
        "hostnames": [host],
        "origins": {"servers": [{"address": origin}]},
        "response_headers": [{"action": "set", "name": "x-rule", "value": header}],
    })
    .to_string()
}

fn get(pop: &Pop, host: &str) -> support::Resp {
    curl(&["-H", &format!("Host: {host}"), &pop.url("/echo")])
}

/// A control plane and `n` PoPs following it.
fn network(n: usize) -> (Control, Vec<Pop>, String) {
    let control = Control::start(None);
    let token = control.token(&["pop"]);
    let pops = (1..=n)
        .map(|i| {
            let name = format!("pop{i}");
            control.register_pop(&name);
            Pop::start_following(&control.url(), &name, &token)
        })
        .collect();
    (control, pops, token)
}

fn pops_view(control: &Control) -> Vec<serde_json::Value> {
    let r = control.api("GET", "/v1/pops", None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["result"]["items"].as_array().unwrap().clone()
}

#[test]
fn a_zone_created_through_the_api_is_served_by_every_pop_and_rule_changes_apply() {
    let origin = Origin::start("o1");
    let (control, pops, _) = network(3);
    for p in &pops {
        assert_eq!(get(p, "shop.test").status, 421, "no zone yet: misdirected");
    }
    let r = control.api(
        "POST",
        "/v1/zones",
        Some(&zone_json("shop", "shop.test", &origin.addr(), "v1")),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let etag = r.header("etag").unwrap().to_string();
    let created = Instant::now();
    let everywhere = eventually(Duration::from_secs(1), || {
        pops.iter()
            .all(|p| get(p, "shop.test").header("x-rule") == Some("v1"))
    });
    assert!(everywhere, "not served by every PoP within 1 s");
    eprintln!(
        "served by 3 PoPs {:?} after the API answered",
        created.elapsed()
    );

    // A header rule change, with the ETag of what we read: every PoP applies it.
    let r = control.api(
        "PUT",
        "/v1/zones/shop",
        Some(&zone_json("shop", "shop.test", &origin.addr(), "v2")),
        &["-H", &format!("If-Match: {etag}")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(eventually(Duration::from_secs(1), || {
        pops.iter()
            .all(|p| get(p, "shop.test").header("x-rule") == Some("v2"))
    }));
    // The stale ETag is refused now, and nothing changes.
    let r = control.api(
        "PUT",
        "/v1/zones/shop",
        Some(&zone_json("shop", "shop.test", &origin.addr(), "v3")),
        &["-H", &format!("If-Match: {etag}")],
    );
    assert_eq!(r.status, 412, "{}", r.body);
    assert_eq!(get(&pops[0], "shop.test").header("x-rule"), Some("v2"));

    // The control plane shows each PoP at the current version.
    let version = control.version();
    assert!(eventually(Duration::from_secs(2), || {
        pops_view(&control)
            .iter()
            .all(|p| p["applied_version"] == version && p["lag"] == 0 && p["connected"] == true)
    }));

    // Each PoP holds a backbone certificate from the control plane's CA, naming it.
    for (i, p) in pops.iter().enumerate() {
        let name = format!("pop{}", i + 1);
        let file = |suffix: &str| p.dir.0.join(format!("{name}.{suffix}"));
        assert!(eventually(Duration::from_secs(5), || file("backbone.pem").exists()));
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(file("backbone-ca.pem"))
            .arg(file("backbone.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::process::Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-ext",
                "subjectAltName,extendedKeyUsage",
                "-in",
            ])
            .arg(file("backbone.pem"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains(&format!("DNS:{name}.pop.edgenet")), "{text}");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        let ca = std::fs::read_to_string(control.dir.0.join("data/ca.pem")).unwrap();
        assert_eq!(
            std::fs::read_to_string(file("backbone-ca.pem")).unwrap(),
            ca
        );
    }

    // Deleting the zone removes it everywhere.
    let r = control.api("DELETE", "/v1/zones/shop", None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(eventually(Duration::from_secs(1), || {
        pops.iter().all(|p| get(p, "shop.test").status == 421)
    }));
}

#[test]
fn pops_serve_through_control_plane_outages_restarts_and_refusals() {
    let origin = Origin::start("o1");
    let (mut control, mut pops, token) = network(2);
    let r = control.api(
        "POST",
        "/v1/zones",
        Some(&zone_json("a", "a.test", &origin.addr(), "a1")),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(eventually(Duration::from_secs(2), || {
        pops.iter().all(|p| get(p, "a.test").status == 200)
    }));

    // Control plane down: PoPs keep serving.
    control.stop();
    for p in &pops {
        assert_eq!(get(p, "a.test").header("x-rule"), Some("a1"));
    }
    // A PoP restarted while it is down serves its last-known-good configuration.
    pops[1].restart();
    assert_eq!(get(&pops[1], "a.test").header("x-rule"), Some("a1"));
    assert!(
        pops[1].stderr().contains("last-known-good"),
        "{}",
        pops[1].stderr()
    );

    // The control plane returns (with the CA it made at first start); a change made now
    // reaches both (they reconnect).
    control.spawn();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["ignored.test".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let r = control.api_as(
        &token,
        "POST",
        "/v1/pops/pop1/certificate",
        Some(&serde_json::json!({"csr": csr}).to_string()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let cert = control.dir.0.join("reissued.pem");
    std::fs::write(&cert, r.json()["result"]["certificate"].as_str().unwrap()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(control.dir.0.join("data/ca.pem"))
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "signed by the reloaded CA: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = control.api(
        "POST",
        "/v1/zones",
        Some(&zone_json("b", "b.test", &origin.addr(), "b1")),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        eventually(Duration::from_secs(10), || {
            pops.iter().all(|p| get(p, "b.test").status == 200)
        }),
        "PoPs did not catch up"
    );

    // A version a PoP cannot apply: the certificate file exists where the control plane
    // validated it, not on the PoPs. Each PoP refuses it, keeps serving the previous version,
    // and the control plane shows the error.
    let cert = rcgen::generate_simple_self_signed(vec!["c.test".into()]).unwrap();
    std::fs::write(control.dir.0.join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(control.dir.0.join("c.key"), cert.key_pair.serialize_pem()).unwrap();
    let mut zone: serde_json::Value =
        serde_json::from_str(&zone_json("c", "c.test", &origin.addr(), "c1")).unwrap();
    zone["tls"] = serde_json::json!({"cert": "c.pem", "key": "c.key"});
    let r = control.api("POST", "/v1/zones", Some(&zone.to_string()), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(eventually(Duration::from_secs(5), || {
        pops_view(&control).iter().all(|p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("c.pem"))
        })
    }));
    for p in &pops {
        assert_eq!(get(p, "c.test").status, 421);
        assert_eq!(
            get(p, "b.test").header("x-rule"),
            Some("b1"),
            "previous version kept"
        );
    }
    // The report channel: each PoP refused zone c (and says why) and runs zone b.
    let status = |zone: &str| {
        let r = control.api("GET", &format!("/v1/zones/{zone}"), None, &[]);
        r.json()["result"]["status"].clone()
    };
    assert!(eventually(Duration::from_secs(5), || status("c")["state"] == "failed"));
    let c = status("c");
    assert_eq!(c["pops"].as_array().unwrap().len(), pops.len(), "{c}");
    for p in c["pops"].as_array().unwrap() {
        assert_eq!(p["state"], "refused", "{c}");
        assert!(p["detail"].as_str().unwrap().contains("c.pem"), "{c}");
    }
    assert_eq!(status("b")["state"], "active", "{}", status("b"));
    // Removing the bad zone lets the next version apply again.
    assert_eq!(control.api("DELETE", "/v1/zones/c", None, &[]).status, 200);
    let version = control.version();
    assert!(eventually(Duration::from_secs(5), || {
        pops_view(&control)
            .iter()
            .all(|p| p["applied_version"] == version && p["last_error"].is_null())
    }));
    pops[0].restart();
    assert_eq!(get(&pops[0], "b.test").status, 200);
}

/// A purge through the control plane's API is answered once every connected PoP applied it;
/// a PoP that does not acknowledge it is named pending (202); one with a disk tier restarted
/// meanwhile, with the control plane down, serves nothing it stored before the restart until
/// it has caught up, and then serves its disk again.
#[test]
fn a_network_purge_reaches_every_pop_and_one_that_was_away_catches_up_before_serving() {
    let origin = Origin::start("o1");
    let (mut control, mut pops, _) = network(3);
    // pop3 keeps its cache on disk across restarts.
    let mut text = std::fs::read_to_string(&pops[2].config).unwrap();
    text.push_str("\n[cache]\nmemory = \"64MiB\"\ndisk_path = \"cache\"\ndisk = \"1GiB\"\n");
    std::fs::write(&pops[2].config, text).unwrap();
    pops[2].restart();
    let r = control.api(
        "POST",
        "/v1/zones",
        Some(&zone_json("pz", "pz.test", &origin.addr(), "p")),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let obj = |name: &str| format!("/obj/{name}?h=Cache-Control:max-age%3D600&body={name}");
    let fetch = |p: &Pop, name: &str| {
        let r = curl(&["-H", "Host: pz.test", &p.url(&obj(name))]);
        assert_eq!((r.status, r.body.as_str()), (200, name), "{r:?}");
        r.header("cache-status").unwrap_or_default().to_string()
    };
    assert!(eventually(Duration::from_secs(5), || {
        pops.iter().all(|p| get(p, "pz.test").status == 200)
    }));
    for p in &pops {
        fetch(p, "a");
        assert!(fetch(p, "a").contains("hit"));
    }
    assert_eq!(origin.hits_for("/obj/a"), 3);

    // By URL: answered once all three applied it; the next request is a miss at each.
    let purge = |body: serde_json::Value| {
        let started = Instant::now();
        let r = control.api(
            "POST",
            "/v1/zones/pz/purge_cache",
            Some(&body.to_string()),
            &[],
        );
        (r, started.elapsed())
    };
    let url = format!("http://pz.test{}", obj("a"));
    let (r, took) = purge(serde_json::json!({"files": [url]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let result = &r.json()["result"];
    let mut applied: Vec<String> = serde_json::from_value(result["applied"].clone()).unwrap();
    applied.sort();
    assert_eq!(applied, ["pop1", "pop2", "pop3"], "{result}");
    assert_eq!(result["pending"], serde_json::json!([]));
    eprintln!("purge applied by 3 PoPs in {took:?}");
    for p in &pops {
        assert!(fetch(p, "a").contains("fwd=uri-miss"));
    }
    assert_eq!(origin.hits_for("/obj/a"), 6);

    // pop3 stopped (connected, silent): the purge is answered 202 naming it.
    for name in ["b", "c", "d"] {
        fetch(&pops[2], name);
    }
    fetch(&pops[0], "b");
    pops[2].signal("STOP");
    let (r, took) = purge(serde_json::json!({"prefixes": ["pz.test/obj/b"]}));
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["result"]["pending"], serde_json::json!(["pop3"]));
    assert!(took >= Duration::from_secs(5), "{took:?}");
    assert!(fetch(&pops[0], "b").contains("fwd=uri-miss"));
    assert_eq!(origin.hits_for("/obj/b"), 3);

    // pop3 restarts with the control plane down: it has not seen that purge, so nothing
    // stored before the restart is served (not b, not c) while it cannot catch up.
    control.stop();
    pops[2].restart();
    assert!(!fetch(&pops[2], "b").contains("hit"));
    assert!(!fetch(&pops[2], "c").contains("hit"));
    assert_eq!(origin.hits_for("/obj/b"), 4);
    assert_eq!(origin.hits_for("/obj/c"), 2);
    // What it fetched since is served.
    assert!(fetch(&pops[2], "c").contains("hit"));
    // The control plane back: pop3 applies the purge, and its disk is served again.
    control.spawn();
    let version = control.version();
    assert!(
        eventually(Duration::from_secs(10), || {
            pops_view(&control)
                .iter()
                .all(|p| p["applied_version"] == version)
        }),
        "{}",
        pops[2].stderr()
    );
    assert!(eventually(Duration::from_secs(2), || pops[2]
        .stderr()
        .contains("caught up with the control plane's purges")));
    let d = fetch(&pops[2], "d");
    assert!(
        d.contains("hit"),
        "stored before the restart, never purged: {d}"
    );
    assert_eq!(origin.hits_for("/obj/d"), 1);
    assert!(
        fetch(&pops[2], "b").contains("hit"),
        "refetched after the purge"
    );
    assert_eq!(origin.hits_for("/obj/b"), 4);
}

#[test]
fn bad_input_and_bad_tokens_get_4xx_and_change_nothing() {
    let control = Control::start(None);
    let read = control.token(&["read"]);
    let before = control.version();

    let r = control.api_as("", "GET", "/v1/zones", None, &[]);
    assert_eq!(r.status, 401);
    let r = control.api_as("en_nope", "GET", "/v1/zones", None, &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["success"], false);
    let r = control.api_as(&read, "GET", "/v1/zones", None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = control.api_as(
        &read,
        "POST",
        "/v1/zones",
        Some(&zone_json("z", "z.test", "127.0.0.1:9", "x")),
        &[],
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // Every problem, with its field path.
    let bad = serde_json::json!({
        "name": "z",
        "hostnames": ["ok.test", "bad..name"],
        "origins": {"servers": [{"address": "nowhere"}], "connect_timeout": "0s"},
    });
    let r = control.api("POST", "/v1/zones", Some(&bad.to_string()), &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    let fields: Vec<String> = r.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(fields.contains(&"hostnames[1]".to_string()), "{fields:?}");
    assert!(
        fields.contains(&"origins.servers[0].address".to_string()),
        "{fields:?}"
    );
    let r = control.api(
        "POST",
        "/v1/zones",
        Some(r#"{"name": "z", "hostnames": ["z.test"], "origins": {"servers": []}, "colour": 1}"#),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("colour"), "{}", r.body);
    let r = control.api("POST", "/v1/zones", Some("{not json"), &[]);
    assert_eq!(r.status, 400);

    // A dry run validates and stores nothing.
    let good = zone_json("z", "z.test", "127.0.0.1:9", "x");
    let r = control.api("POST", "/v1/zones?validate_only=true", Some(&good), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"]["valid"], true);
    assert_eq!(control.api("GET", "/v1/zones/z", None, &[]).status, 404);
    assert_eq!(control.version(), before, "nothing stored");

    // A name in the URL that is not the body's, a duplicate, a bad token request.
    assert_eq!(
        control.api("POST", "/v1/zones", Some(&good), &[]).status,
        201
    );
    assert_eq!(
        control.api("POST", "/v1/zones", Some(&good), &[]).status,
        409
    );
    let r = control.api("PUT", "/v1/zones/other", Some(&good), &[]);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["field"], "name");
    let r = control.api(
        "POST",
        "/v1/tokens",
        Some(r#"{"name": "t", "scopes": ["root"]}"#),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["field"], "scopes[0]");

    // Revoked tokens stop working at once.
    let tokens = control.api("GET", "/v1/tokens", None, &[]).json();
    let id = tokens["result"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scopes"] == serde_json::json!(["read"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !tokens.to_string().contains(&read),
        "secrets are never listed"
    );
    assert_eq!(
        control
            .api("DELETE", &format!("/v1/tokens/{id}"), None, &[])
            .status,
        200
    );
    assert_eq!(
        control.api_as(&read, "GET", "/v1/zones", None, &[]).status,
        401
    );

    // Cursor lists.
    for i in 0..3 {
        let z = zone_json(&format!("p{i}"), &format!("p{i}.test"), "127.0.0.1:9", "x");
        assert_eq!(control.api("POST", "/v1/zones", Some(&z), &[]).status, 201);
    }
    let page = control.api("GET", "/v1/zones?limit=2", None, &[]).json();
    let next = page["result"]["next"].as_str().unwrap().to_string();
    assert_eq!(page["result"]["items"].as_array().unwrap().len(), 2);
    let page2 = control
        .api(
            "GET",
            &format!("/v1/zones?limit=2&cursor={next}"),
            None,
            &[],
        )
        .json();
    let names: Vec<&str> = page2["result"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["p2", "z"]);
}

#[test]
fn the_openapi_document_describes_the_api() {
    let control = Control::start(None);
    let r = curl(&[&format!("{}/openapi.json", control.url())]);
    assert_eq!(r.status, 200);
    let doc = r.json();
    for path in [
        "/v1/zones",
        "/v1/zones/{name}",
        "/v1/pops",
        "/v1/tokens",
        "/v1/stream",
        "/v1/cni/sites",
        "/v1/cni/partner-requests",
        "/v1/accounts/{account}/cni/interconnects",
        "/v1/accounts/{account}/cni/interconnects/{id}/loa",
        "/v1/accounts/{account}/cni/cnis",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/v1/zones"]["post"]["responses"]["400"].is_object());
    // The zone body is the configuration schema itself, documented field by field.
    let zone = &doc["components"]["schemas"]["ZoneSection"];
    assert!(zone["properties"]["hostnames"].is_object(), "{zone}");
    assert!(zone["properties"]["tiered_cache"].is_object(), "{zone}");
    assert!(zone["properties"]["origins"].is_object(), "{zone}");
}

/// The same code on PostgreSQL (a real server started for the test): zones stored there reach
/// a PoP, and survive a control plane restart with the version continuing.
#[test]
fn postgresql_store() {
    let pg = support::Postgres::start();
    let origin = Origin::start("o1");
    let mut control = Control::start(Some(&pg.url()));
    let token = control.token(&["pop"]);
    control.register_pop("pg1");
    let pop = Pop::start_following(&control.url(), "pg1", &token);
    let r = control.api(
        "POST",
        "/v1/zones",
        Some(&zone_json("a", "a.test", &origin.addr(), "pg")),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(eventually(Duration::from_secs(2), || get(&pop, "a.test")
        .header("x-rule")
        == Some("pg")));
    let version = control.version();
    control.stop();
    control.spawn();
    assert_eq!(control.version(), version, "the state lives in PostgreSQL");
    let r = control.api(
        "POST",
        "/v1/zones",
        Some(&zone_json("b", "b.test", &origin.addr(), "pg2")),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(control.version(), version + 1);
    assert!(eventually(Duration::from_secs(10), || get(&pop, "b.test")
        .status
        == 200));
}

/// Interconnects on PostgreSQL, where writes run at once: CNIs created from many clients at
/// the same time get distinct /31s until the pool is out, concurrent replaces of one CNI each
/// take a version of their own, and the MD5 key is in no answer and no log line.
#[test]
fn concurrent_cnis_on_postgresql_never_share_a_pair() {
    let pg = support::Postgres::start();
    let control = Control::start(Some(&pg.url()));
    let settings = r#"{"pool_v4": "100.64.0.0/29"}"#;
    let r = control.api("PUT", "/v1/cni/settings", Some(settings), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let site = serde_json::json!({"code": "fra-a", "facility": {"name": "Interxion FRA1", "address": "Hanauer Landstrasse 298, Frankfurt"},
        "timezone": "Europe/Berlin", "dataplanes": ["v2"], "devices": [{"name": "edge01", "dataplane": "v2"}]});
    let r = control.api("POST", "/v1/cni/sites", Some(&site.to_string()), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = control.api("POST", "/v1/accounts", Some(r#"{"name": "Acme"}"#), &[]);
    let account = r.json()["result"]["id"].as_str().unwrap().to_string();
    let r = control.api(
        "POST",
        &format!("/v1/accounts/{account}/tokens"),
        Some(r#"{"name": "acme", "scopes": ["write"]}"#),
        &[],
    );
    let token = r.json()["result"]["secret"].as_str().unwrap().to_string();
    let interconnects: Vec<String> = (0..8)
        .map(|i| {
            let body = serde_json::json!({"type": "cloud", "site": "fra-a", "name": format!("gcp{i}"),
                "cloud": {"provider": "google", "pairing_key": "7e51371e-72a3-40b5-b844-2e3efefaee59/europe-west3/1", "speed_mbps": 1000, "mtu": 1500}});
            let r = control.api_as(&token, "POST", &format!("/v1/accounts/{account}/cni/interconnects"), Some(&body.to_string()), &[]);
            assert_eq!(r.status, 201, "{}", r.body);
            r.json()["result"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    let results: Vec<support::Resp> = std::thread::scope(|s| {
        let calls: Vec<_> = interconnects
            .iter()
            .map(|id| {
                let (control, token, account) = (&control, &token, &account);
                s.spawn(move || {
                    let body = serde_json::json!({"interconnect": id, "customer_asn": 64700,
                        "use_case": "wan", "md5_key": "pg-secret-md5"});
                    control.api_as(
                        token,
                        "POST",
                        &format!("/v1/accounts/{account}/cni/cnis"),
                        Some(&body.to_string()),
                        &[],
                    )
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut pairs: Vec<String> = results
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| r.json()["result"]["p2p_v4"].as_str().unwrap().to_string())
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            "100.64.0.0/31",
            "100.64.0.2/31",
            "100.64.0.4/31",
            "100.64.0.6/31"
        ],
        "{:?}",
        results
            .iter()
            .map(|r| (r.status, &r.body))
            .collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status != 201) {
        assert_eq!(r.status, 409, "{}", r.body);
        assert!(r.body.contains("has no free /31"), "{}", r.body);
    }
    let r = control.api_as(
        &token,
        "GET",
        &format!("/v1/accounts/{account}/cni/cnis"),
        None,
        &[],
    );
    assert_eq!(r.json()["result"]["items"].as_array().unwrap().len(), 4);
    assert!(!r.body.contains("pg-secret-md5"), "{}", r.body);
    // Concurrent replaces of one CNI each take their own version: none is lost.
    let cni = r.json()["result"]["items"][0].clone();
    let (id, interconnect) = (
        cni["id"].as_str().unwrap(),
        cni["interconnect"].as_str().unwrap(),
    );
    let mut versions: Vec<i64> = std::thread::scope(|s| {
        let calls: Vec<_> = (1..=6)
            .map(|n| {
                let (control, token, account) = (&control, &token, &account);
                s.spawn(move || {
                    let body = serde_json::json!({"interconnect": interconnect, "customer_asn": 64700,
                        "use_case": "wan", "max_prefixes": 100 + n});
                    control.api_as(token, "PUT", &format!("/v1/accounts/{account}/cni/cnis/{id}"), Some(&body.to_string()), &[])
                })
            })
            .collect();
        calls
            .into_iter()
            .map(|c| {
                let r = c.join().unwrap();
                assert_eq!(r.status, 200, "{}", r.body);
                r.json()["result"]["version"].as_i64().unwrap()
            })
            .collect()
    });
    versions.sort();
    assert_eq!(versions, [2, 3, 4, 5, 6, 7]);
    let log = control.stderr();
    assert!(log.contains("CNI stored"), "{log}");
    assert!(
        !log.contains("pg-secret-md5"),
        "the MD5 key is in a log line"
    );
}

/// Distribution over NATS JetStream: the control plane mirrors changes into a bucket on a hub
/// `nats-server`; the PoP follows through its own leaf node; acknowledgements come back over
/// NATS; a restarted PoP resumes from the bucket revision it had; a worker's component comes
/// from the object store beside the bucket.
#[test]
fn nats_distribution_through_a_leaf_node() {
    let hub = support::Nats::hub();
    let leaf = support::Nats::leaf_of(&hub);
    let origin = Origin::start("o1");
    let control = Control::start_with_nats(&hub.url());
    control.register_pop("n1");
    let r = control.api(
        "POST",
        "/v1/zones",
        Some(&zone_json("a", "a.test", &origin.addr(), "n1")),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // No token: the PoP talks only to its NATS leaf node.
    let mut pop = Pop::start_following(&format!("{}?domain=hub", leaf.url()), "n1", "");
    assert!(
        eventually(Duration::from_secs(10), || get(&pop, "a.test")
            .header("x-rule")
            == Some("n1")),
        "the snapshot from the bucket did not apply: {}",
        pop.stderr()
    );
    let r = control.api(
        "POST",
        "/v1/zones",
        Some(&zone_json("b", "b.test", &origin.addr(), "n2")),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(eventually(Duration::from_secs(2), || get(&pop, "b.test")
        .status
        == 200));
    let version = control.version();
    assert!(
        eventually(Duration::from_secs(5), || pops_view(&control)[0]
            ["applied_version"]
            == version),
        "acknowledgement over NATS: {:?}",
        pops_view(&control)
    );
    let zone_b = || control.api("GET", "/v1/zones/b", None, &[]).json()["result"]["status"].clone();
    assert!(
        eventually(Duration::from_secs(5), || zone_b()["state"] == "active"),
        "zone state over NATS: {}",
        zone_b()
    );
    // A restart resumes from the saved revision; a deletion while it was down arrives.
    pop.child.kill().unwrap();
    pop.child.wait().unwrap();
    assert_eq!(control.api("DELETE", "/v1/zones/a", None, &[]).status, 200);
    pop.restart();
    assert!(eventually(Duration::from_secs(10), || get(&pop, "a.test")
        .status
        == 421));
    assert_eq!(get(&pop, "b.test").header("x-rule"), Some("n2"));
    assert!(pop.stderr().contains("following the configuration bucket"));
    // Caught up through the bucket, it serves its cache again; a purge over NATS is answered
    // once the PoP acknowledged it there.
    assert!(eventually(Duration::from_secs(5), || pop
        .stderr()
        .contains("caught up with the control plane's purges")));
    let cached = "/obj/n?h=Cache-Control:max-age%3D600&body=n";
    let fetch = || support::curl(&["-H", "Host: b.test", &pop.url(cached)]);
    fetch();
    assert!(fetch()
        .header("cache-status")
        .unwrap_or_default()
        .contains("hit"));
    let r = control.api(
        "POST",
        "/v1/zones/b/purge_cache",
        Some(r#"{"hosts": ["b.test"]}"#),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"]["applied"], serde_json::json!(["n1"]));
    let after = fetch();
    assert!(
        after
            .header("cache-status")
            .unwrap_or_default()
            .contains("fwd=uri-miss"),
        "{after:?}"
    );
    assert_eq!(origin.hits_for("/obj/n"), 2);

    // A worker deployed through the API: its component reaches the PoP through NATS.
    let hello = support::hello_rust();
    let r = control.api("POST", "/v1/accounts", Some(r#"{"name": "c inc"}"#), &[]);
    let account = r.json()["result"]["id"].as_str().unwrap().to_string();
    let zone = zone_json("c", "c.test", &origin.addr(), "n3");
    let r = control.api(
        "POST",
        &format!("/v1/accounts/{account}/zones"),
        Some(&zone),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = support::curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Authorization: Bearer {}", control.admin_token),
        "-H",
        "content-type: application/wasm",
        "--data-binary",
        &format!("@{}", hello.display()),
        &format!(
            "{}/v1/accounts/{account}/workers/scripts/hello",
            control.url()
        ),
    ]);
    assert_eq!(r.status, 200, "{}", r.body);
    let route = r#"{"pattern": "c.test/hello", "script": "hello"}"#;
    let r = control.api(
        "POST",
        &format!("/v1/accounts/{account}/workers/routes"),
        Some(route),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let hello_at_pop = || support::curl(&["-H", "Host: c.test", &pop.url("/hello")]).body;
    assert!(
        eventually(Duration::from_secs(30), || hello_at_pop()
            == "hello from wasm: /hello\n"),
        "{:?}\n{}",
        hello_at_pop(),
        pop.stderr()
    );
}

/// Tiered cache over the backbone (mutual TLS with certificates from the control plane's CA):
/// one object requested at three PoPs is fetched from the origin once, by the upper tier;
/// Cache-Status shows both tiers; when the upper tier is down, the lower tiers go to the
/// origin themselves.
#[test]
fn tiered_cache_fetches_once_for_all_pops() {
    let origin = Origin::start("o1");
    let control = Control::start(None);
    let token = control.token(&["pop"]);
    let ports: Vec<u16> = (0..3).map(|_| support::free_port()).collect();
    for (i, port) in ports.iter().enumerate() {
        control.register_pop_at(&format!("t{}", i + 1), Some(*port));
    }
    let mut zone: serde_json::Value =
        serde_json::from_str(&zone_json("tiered", "tiered.test", &origin.addr(), "t")).unwrap();
    zone["tiered_cache"] = serde_json::json!(["t1"]);
    let r = control.api("POST", "/v1/zones", Some(&zone.to_string()), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    let mut pops: Vec<Pop> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Pop::start_following_with(&control.url(), &format!("t{}", i + 1), &token, Some(*p))
        })
        .collect();
    let path = "/obj/tiered?h=Cache-Control:max-age%3D300&body=tiered";
    let fetch = |p: &Pop| curl(&["-H", "Host: tiered.test", &p.url(path)]);
    assert!(
        eventually(Duration::from_secs(5), || fetch(&pops[1]).status == 200),
        "{}",
        pops[1].stderr()
    );
    let second = fetch(&pops[2]);
    assert_eq!(second.status, 200);
    assert_eq!(second.body, "tiered");
    let status = second
        .header("cache-status")
        .unwrap_or_default()
        .to_string();
    assert!(
        status.starts_with("t1; hit"),
        "the upper tier served it: {status}"
    );
    assert!(status.contains("t3; fwd=uri-miss"), "{status}");
    let third = fetch(&pops[0]);
    assert_eq!(third.status, 200);
    assert_eq!(
        origin.hits_for("/obj/tiered"),
        1,
        "one origin fetch for three PoPs; at t1: {:?}",
        third.header("cache-status")
    );
    assert_eq!(
        second.header("x-rule"),
        Some("t"),
        "response rules applied once, at the edge"
    );

    // Concurrent misses at two lower tiers collapse at the upper tier: one origin fetch.
    let slow = "/obj/slow-tier?h=Cache-Control:max-age%3D300&delay=500&body=slow";
    let handles: Vec<_> = [pops[1].url(slow), pops[2].url(slow), pops[1].url(slow)]
        .into_iter()
        .map(|u| std::thread::spawn(move || curl(&["-H", "Host: tiered.test", &u])))
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "slow"));
    }
    assert_eq!(
        origin.hits_for("/obj/slow-tier"),
        1,
        "concurrent misses collapsed"
    );

    // The backbone listener wants a certificate from the control plane's CA.
    let url = format!("https://t1.pop.edgenet:{}/.edgenet/ping", ports[0]);
    let resolve = format!("t1.pop.edgenet:{}:127.0.0.1", ports[0]);
    let anonymous = curl(&["-k", "--resolve", &resolve, &url]);
    assert_eq!(anonymous.status, 0, "no client certificate: no TLS session");
    let file = |s: &str| pops[1].dir.0.join(format!("t2.{s}")).display().to_string();
    let (cert, key, ca) = (
        file("backbone.pem"),
        file("backbone.key"),
        file("backbone-ca.pem"),
    );
    let with_cert = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        &url,
    ]);
    assert_eq!((with_cert.status, with_cert.body.as_str()), (200, "pong\n"));

    // The backbone measures itself: each PoP probes the others and the origin, and shares it.
    let backbone = |p: &Pop| {
        curl(&[&format!("http://127.0.0.1:{}/backbone", p.admin)]).json()["result"].clone()
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            let b = backbone(&pops[1]);
            b["own"]["pops"]["t1"]["rtt_ms"]
                .as_f64()
                .is_some_and(|r| r > 0.0)
                && b["own"]["pops"]["t3"]["loss"] == 0.0
                && b["own"]["origins"][origin.addr()]["rtt_ms"]
                    .as_f64()
                    .is_some()
                && b["others"]["t3"]["pops"]["t1"].is_object()
        }),
        "{}",
        backbone(&pops[1])
    );
    assert_eq!(
        backbone(&pops[1])["relays"],
        serde_json::json!({}),
        "direct is best on loopback"
    );

    // The upper tier down: a lower tier fetches from the origin itself.
    pops[0].child.kill().unwrap();
    pops[0].child.wait().unwrap();
    let r = curl(&[
        "-H",
        "Host: tiered.test",
        &pops[1].url("/obj/other?body=direct"),
    ]);
    assert_eq!(r.status, 200, "{}", pops[1].stderr());
    assert_eq!(r.body, "direct");
    assert_eq!(origin.hits_for("/obj/other"), 1);
    pops.truncate(3);
}

#[test]
fn accounts_own_their_zones_and_pop_admin_tokens_reach_the_pops() {
    let origin = Origin::start("o1");
    let (control, pops, _) = network(1);
    let pop = &pops[0];
    let account = |name: &str| {
        let r = control.api(
            "POST",
            "/v1/accounts",
            Some(&format!(r#"{{"name": "{name}"}}"#)),
            &[],
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["result"]["id"].as_str().unwrap().to_string()
    };
    let (a, b) = (account("shop inc"), account("blog ltd"));
    let token_of = |account: &str, scopes: &str| {
        let body = format!(r#"{{"name": "t", "scopes": {scopes}}}"#);
        let r = control.api(
            "POST",
            &format!("/v1/accounts/{account}/tokens"),
            Some(&body),
            &[],
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["result"]["secret"].as_str().unwrap().to_string()
    };
    let (a_token, b_token) = (token_of(&a, r#"["write"]"#), token_of(&b, r#"["admin"]"#));

    // A's token creates a zone in A; every PoP serves it; B sees nothing of it.
    let zone = serde_json::json!({"name": "shop", "hostnames": ["shop.test"],
        "origins": {"servers": [{"address": origin.addr()}]},
        "cache": {"rules": [{"path": "/*", "ttl_mode": "override", "edge_ttl": "10m"}]}})
    .to_string();
    let r = control.api_as(
        &a_token,
        "POST",
        &format!("/v1/accounts/{a}/zones"),
        Some(&zone),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(eventually(Duration::from_secs(2), || get(pop, "shop.test")
        .status
        == 200));
    // The PoP reports the zone applied, and its account sees the status.
    let zone_status = || {
        let path = format!("/v1/accounts/{a}/zones/shop");
        let r = control.api_as(&a_token, "GET", &path, None, &[]);
        r.json()["result"]["status"].clone()
    };
    assert!(eventually(Duration::from_secs(3), || zone_status()
        ["state"]
        == "active"));
    let st = zone_status();
    assert_eq!(st["pops"][0]["pop"], "pop1", "{st}");
    assert_eq!(st["pops"][0]["state"], "applied", "{st}");
    for path in [
        format!("/v1/accounts/{a}/zones"),
        format!("/v1/accounts/{a}/zones/shop"),
    ] {
        let r = control.api_as(&b_token, "GET", &path, None, &[]);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    let r = control.api_as(
        &b_token,
        "GET",
        &format!("/v1/accounts/{b}/zones"),
        None,
        &[],
    );
    assert_eq!(r.json()["result"]["items"], serde_json::json!([]));
    let r = control.api_as(&a_token, "GET", "/v1/zones", None, &[]);
    assert_eq!(r.status, 403, "the operator's list is not an account's");

    // A control-plane pop-admin token purges on the PoP; revoked, it is refused there.
    let cached = |p: &Pop| {
        let r = get(p, "shop.test");
        r.header("cache-status").unwrap_or_default().to_string()
    };
    cached(pop);
    assert!(cached(pop).contains("hit"));
    let purge = |token: &str| {
        curl(&[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "--data-binary",
            r#"{"zone": "shop", "everything": true}"#,
            &format!("http://127.0.0.1:{}/cache/purge", pop.admin),
        ])
        .status
    };
    let r = control.api(
        "POST",
        "/v1/tokens",
        Some(r#"{"name": "oncall", "scopes": ["pop-admin"]}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let oncall = r.json()["result"]["secret"].as_str().unwrap().to_string();
    let id = r.json()["result"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        purge(&a_token),
        401,
        "an API token is not a PoP admin token"
    );
    assert!(eventually(Duration::from_secs(2), || purge(&oncall) == 200));
    assert!(cached(pop).contains("fwd=uri-miss"), "purged");
    let r = control.api("DELETE", &format!("/v1/tokens/{id}"), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(eventually(Duration::from_secs(2), || purge(&oncall) == 401));
    assert!(
        cached(pop).contains("hit"),
        "the refused purge changed nothing"
    );

    // Counters come on the same channel, every 10 s.
    let counted = eventually(Duration::from_secs(15), || {
        let r = control.api("GET", "/v1/pops/pop1", None, &[]);
        let zones = &r.json()["result"]["counters"]["counters"]["zones"];
        zones["shop"]["requests"].as_u64().unwrap_or(0) >= 5
            && zones["shop"]["cache_hits"].as_u64().unwrap_or(0) >= 2
    });
    let pop1 = control.api("GET", "/v1/pops/pop1", None, &[]).body;
    assert!(counted, "{pop1}");
}
