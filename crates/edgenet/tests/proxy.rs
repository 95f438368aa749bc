//! The PoP against real origins and curl: routing, TLS by SNI, proxy semantics, errors.

mod support;

use std::time::Duration;

use support::*;

fn resolve(host: &str, port: u16) -> String {
    format!("{host}:{port}:127.0.0.1")
}

#[test]
fn routes_by_host_and_sni_with_two_zones_and_two_certificates() {
    let a = Origin::start("origin-a");
    let b = Origin::start("origin-b");
    let zones = zone("a", &["a.test", "*.a.test"], &[a.addr()], "")
        + &zone("b", &["b.test"], &[b.addr()], "");
    let pop = Pop::start(&zones);
    let (ca_a, ca_b) = (pop.dir.0.join("a.pem"), pop.dir.0.join("b.pem"));

    // HTTP/1.1 by Host.
    let r = curl(&["-H", "Host: a.test", &pop.url("/echo")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["origin"], "origin-a");
    let r = curl(&["-H", "Host: www.a.test", &pop.url("/echo")]);
    assert_eq!(r.json()["origin"], "origin-a", "wildcard hostname");
    let r = curl(&["-H", "Host: b.test", &pop.url("/echo")]);
    assert_eq!(r.json()["origin"], "origin-b");

    // HTTP/2 over TLS: each zone's certificate verifies against its own file only.
    let url_a = format!("https://a.test:{}/echo", pop.https);
    let url_b = format!("https://b.test:{}/echo", pop.https);
    let r = curl(&[
        "--http2",
        "--resolve",
        &resolve("a.test", pop.https),
        "--cacert",
        ca_a.to_str().unwrap(),
        &url_a,
    ]);
    assert_eq!((r.status, r.http_version.as_str()), (200, "2"), "{r:?}");
    assert_eq!(r.json()["origin"], "origin-a");
    let r = curl(&[
        "--http2",
        "--resolve",
        &resolve("b.test", pop.https),
        "--cacert",
        ca_b.to_str().unwrap(),
        &url_b,
    ]);
    assert_eq!((r.status, r.http_version.as_str()), (200, "2"));
    assert_eq!(r.json()["origin"], "origin-b");
    let wrong = curl(&[
        "--http2",
        "--resolve",
        &resolve("b.test", pop.https),
        "--cacert",
        ca_a.to_str().unwrap(),
        &url_b,
    ]);
    assert_eq!(
        wrong.status, 0,
        "b.test must not be served with a.test's certificate"
    );

    // HTTP/1.1 over TLS.
    let r = curl(&[
        "--http1.1",
        "--resolve",
        &resolve("a.test", pop.https),
        "--cacert",
        ca_a.to_str().unwrap(),
        &url_a,
    ]);
    assert_eq!((r.status, r.http_version.as_str()), (200, "1.1"));

    // Host of another zone than the SNI: misdirected.
    let r = curl(&[
        "-k",
        "--http2",
        "--resolve",
        &resolve("a.test", pop.https),
        "-H",
        "Host: b.test",
        &url_a,
    ]);
    assert_eq!(r.status, 421);
    // Unknown Host: 421 with the PoP and request id in the body.
    let r = curl(&["-H", "Host: unknown.example", &pop.url("/echo")]);
    assert_eq!(r.status, 421);
    let id = r
        .header("x-request-id")
        .expect("request id header")
        .to_string();
    assert!(
        r.body.contains("test-pop") && r.body.contains(&id),
        "{}",
        r.body
    );
    // An unknown SNI fails the handshake instead of showing another zone's certificate.
    let r = curl(&[
        "-k",
        "--resolve",
        &resolve("c.test", pop.https),
        &format!("https://c.test:{}/", pop.https),
    ]);
    assert_eq!(r.status, 0);

    // Origins saw only their own zone's requests.
    assert_eq!(a.hits(), 4);
    assert_eq!(b.hits(), 2);
    // h2c with prior knowledge on the plain listener.
    let r = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: a.test",
        &pop.url("/echo"),
    ]);
    assert_eq!((r.status, r.http_version.as_str()), (200, "2"));
    let m = pop.metrics();
    assert!(
        m.contains("edgenet_requests_total{protocol=\"http2\",status_class=\"2xx\",zone=\"a\"} 2"),
        "{m}"
    );
    assert!(pop.metric("edgenet_tls_handshakes_total").unwrap() >= 4.0);
    assert!(pop.metric("edgenet_tls_handshake_failures_total").unwrap() >= 2.0);
}

#[test]
fn forwards_with_proxy_semantics_and_header_rules() {
    let o = Origin::start("o");
    let rules = r#"
[[zones.request_headers]]
action = "set"
name = "x-zone"
value = "site"
[[zones.request_headers]]
action = "remove"
name = "x-drop-me"
[[zones.response_headers]]
action = "add"
name = "x-edge"
value = "yes"
[[zones.response_headers]]
action = "remove"
name = "x-origin"
"#;
    let zones = zone("site", &["site.test"], &[o.addr()], rules).replace(
        "[zones.tls]",
        "host_header = \"backend.internal\"\n[zones.tls]",
    );
    let pop = Pop::start(&zones);
    let r = curl(&[
        "-H",
        "Host: site.test",
        "-H",
        "Connection: keep-alive, x-hop",
        "-H",
        "X-Hop: secret",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "X-Drop-Me: 1",
        "-H",
        "X-Forwarded-For: 198.51.100.9",
        "-H",
        "X-Forwarded-Proto: https",
        &pop.url("/echo?q=1"),
    ]);
    assert_eq!(r.status, 200);
    let echo = r.json();
    let headers: Vec<(String, String)> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(echo["path"], "/echo?q=1");
    assert_eq!(
        get("host"),
        Some("backend.internal"),
        "host rewritten per zone"
    );
    assert_eq!(get("x-forwarded-for"), Some("198.51.100.9, 127.0.0.1"));
    assert_eq!(
        get("x-forwarded-proto"),
        Some("http"),
        "a client cannot claim https"
    );
    assert_eq!(
        get("forwarded"),
        Some("for=127.0.0.1;proto=http;host=site.test")
    );
    assert_eq!(get("via"), Some("1.1 test-pop"));
    assert_eq!(get("x-zone"), Some("site"));
    assert_eq!(get("x-request-id"), r.header("x-request-id"));
    for hop in ["x-hop", "keep-alive", "x-drop-me"] {
        assert_eq!(get(hop), None, "{hop} must not reach the origin");
    }
    assert_eq!(r.header("x-edge"), Some("yes"));
    assert_eq!(r.header("x-origin"), None);
    assert_eq!(r.header("via"), Some("1.1 test-pop"));

    // Expect: 100-continue with a body.
    let r = curl(&[
        "-H",
        "Host: site.test",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        "hello",
        &pop.url("/upload"),
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["bytes"], 5);

    // The access log has a JSON line per request with the fields operators need.
    assert!(eventually(Duration::from_secs(3), || pop
        .access_log()
        .len()
        >= 2));
    let line = &pop.access_log()[0];
    for field in [
        "time",
        "request_id",
        "zone",
        "client",
        "protocol",
        "method",
        "host",
        "path",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream_ms",
        "origin",
        "error",
    ] {
        assert!(
            line.get(field).is_some(),
            "access log lacks {field}: {line}"
        );
    }
    assert_eq!(line["zone"], "site");
    assert_eq!(line["status"], 200);
    assert_eq!(line["origin"], o.addr());
}

#[test]
fn origin_failures_give_502_and_504_with_pop_and_request_id() {
    let slow = Origin::start("slow");
    let dead = format!("127.0.0.1:{}", free_port());
    let zones = zone("down", &["down.test"], &[dead], "")
        + &zone("slow", &["slow.test"], &[slow.addr()], "")
            .replace("read_timeout = \"5s\"", "read_timeout = \"300ms\"");
    let pop = Pop::start(&zones);

    let r = curl(&["-H", "Host: down.test", &pop.url("/")]);
    assert_eq!(r.status, 502);
    let id = r.header("x-request-id").unwrap();
    assert!(
        r.body.contains("test-pop") && r.body.contains(id),
        "{}",
        r.body
    );

    let r = curl(&["-H", "Host: slow.test", &pop.url("/slow?ms=2000")]);
    assert_eq!(r.status, 504);
    let id = r.header("x-request-id").unwrap().to_string();
    assert!(
        r.body.contains("test-pop") && r.body.contains(&id),
        "{}",
        r.body
    );
    assert!(eventually(Duration::from_secs(3), || pop
        .access_log()
        .iter()
        .any(|l| l["request_id"] == id.as_str()
            && l["status"] == 504
            && l["error"].is_string())));
    let m = pop.metrics();
    assert!(
        m.contains("edgenet_upstream_errors_total{kind=\"connect\",zone=\"down\"}"),
        "{m}"
    );
    assert!(
        m.contains("edgenet_upstream_errors_total{kind=\"timeout\",zone=\"slow\"} 1"),
        "{m}"
    );
}

#[test]
fn fails_over_when_an_origin_is_down_and_health_checks_mark_it() {
    let live = Origin::start("live");
    let mut dying = Origin::start("dying");
    let health = r#"
[zones.origins.health_check]
path = "/health"
interval = "200ms"
timeout = "150ms"
healthy_threshold = 1
unhealthy_threshold = 2
"#;
    let pop = Pop::start(&zone(
        "f",
        &["f.test"],
        &[live.addr(), dying.addr()],
        health,
    ));
    let dying_up = format!(
        "edgenet_origin_up{{origin=\"{}\",zone=\"f\"}}",
        dying.addr()
    );
    assert!(eventually(Duration::from_secs(2), || pop.metric(&dying_up)
        == Some(1.0)));

    dying.stop();
    // Idempotent requests never see the dead origin: connect failures retry on the live one.
    for _ in 0..20 {
        let r = curl(&["-H", "Host: f.test", &pop.url("/echo")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["origin"], "live");
    }
    // Health checks mark it down within interval × unhealthy_threshold (plus slack).
    assert!(
        eventually(Duration::from_secs(2), || pop.metric(&dying_up)
            == Some(0.0)),
        "{}",
        pop.metrics()
    );
    // And back up when it returns on the same port.
    let _back = Origin::start_on("dying", dying.port);
    assert!(eventually(Duration::from_secs(3), || pop.metric(&dying_up)
        == Some(1.0)));
    let origins: std::collections::HashSet<String> = (0..10)
        .map(|_| {
            curl(&["-H", "Host: f.test", &pop.url("/echo")]).json()["origin"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        origins.contains("dying") && origins.contains("live"),
        "{origins:?}"
    );
}

#[test]
fn malformed_requests_get_400_and_never_reach_the_origin() {
    let o = Origin::start("o");
    let pop = Pop::start(&zone("m", &["m.test"], &[o.addr()], ""));
    let big = "a".repeat(40 * 1024);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid header bytes", b"GET / HTTP/1.1\r\nHost: m.test\r\nX-Bad\x01Name: v\r\n\r\n".to_vec()),
        ("NUL in a header value", b"GET / HTTP/1.1\r\nHost: m.test\r\nX-Bad: a\x00b\r\n\r\n".to_vec()),
        ("headers over the limit", format!("GET / HTTP/1.1\r\nHost: m.test\r\nX-Big: {big}\r\n\r\n").into_bytes()),
        ("Content-Length and Transfer-Encoding", b"POST /upload HTTP/1.1\r\nHost: m.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()),
        ("duplicate Content-Length", b"POST /upload HTTP/1.1\r\nHost: m.test\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd".to_vec()),
        ("differing Content-Length", b"POST /upload HTTP/1.1\r\nHost: m.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde".to_vec()),
        ("invalid Content-Length", b"POST /upload HTTP/1.1\r\nHost: m.test\r\nContent-Length: 4x\r\n\r\nabcd".to_vec()),
        ("absolute-form for a host not served", b"GET http://evil.example/ HTTP/1.1\r\nHost: m.test\r\n\r\n".to_vec()),
        ("missing Host", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n".to_vec()),
        // Shorter than the HTTP/2 preface: must not wait for more bytes on an h2c listener.
        ("no header at all", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
    ];
    for (what, req) in &cases {
        let resp = raw(pop.http, req);
        assert!(resp.starts_with("HTTP/1.1 400"), "{what}: {resp}");
    }
    assert_eq!(o.hits(), 0, "no malformed request reached the origin");
    // A bad chunk size is only seen once the body streams, after the head went to the origin:
    // the client still gets 400 and the origin never gets a complete request.
    // Open problem (issue 2 note): validate the first chunk before connecting upstream.
    let resp = raw(
        pop.http,
        b"POST /upload HTTP/1.1\r\nHost: m.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n0\r\n\r\n",
    );
    assert!(
        resp.starts_with("HTTP/1.1 400"),
        "invalid chunk size: {resp}"
    );
    // Absolute-form naming a served host is served.
    let resp = raw(
        pop.http,
        b"GET http://m.test/echo HTTP/1.1\r\nHost: m.test\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(o.hits(), 2);
}
