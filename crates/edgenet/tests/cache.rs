//! The cache against a scripted origin: each test one RFC 9111 rule, asserting what the client
//! receives (status, body, Cache-Status) and how often the origin was asked.

mod support;

use std::time::Duration;

use support::*;

/// A PoP with one caching zone `c.test` in front of `origin`.
fn pop(origin: &Origin) -> Pop {
    Pop::start(&zone("c", &["c.test"], &[origin.addr()], ""))
}

/// `/obj/NAME` answering with `headers` (each `Name:Value`) and `extra` query parameters.
fn obj(name: &str, headers: &[&str], extra: &str) -> String {
    let mut q: Vec<String> = headers.iter().map(|h| format!("h={}", enc(h))).collect();
    if !extra.is_empty() {
        q.push(extra.to_string());
    }
    format!("/obj/{name}?{}", q.join("&"))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get(pop: &Pop, path: &str, extra: &[&str]) -> Resp {
    let url = pop.url(path);
    let mut args = vec!["-H", "Host: c.test"];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

fn cache_status(r: &Resp) -> &str {
    r.header("cache-status").unwrap_or("")
}

#[test]
fn max_age_makes_a_response_fresh_and_a_second_request_a_hit() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj("fresh", &["Cache-Control: max-age=60"], "body=hello");
    let first = get(&pop, &path, &[]);
    assert_eq!((first.status, first.body.as_str()), (200, "hello"));
    assert!(
        cache_status(&first).starts_with("test-pop; fwd=uri-miss; fwd-status=200; stored"),
        "{first:?}"
    );
    let second = get(&pop, &path, &[]);
    assert_eq!((second.status, second.body.as_str()), (200, "hello"));
    assert!(
        cache_status(&second).starts_with("test-pop; hit; ttl="),
        "{second:?}"
    );
    assert_eq!(o.hits_for("/obj/fresh"), 1);
}

#[test]
fn no_store_is_never_stored() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj("nostore", &["Cache-Control: no-store, max-age=60"], "");
    for _ in 0..3 {
        let r = get(&pop, &path, &[]);
        assert_eq!(r.status, 200);
        assert!(cache_status(&r).contains("detail=no-store"), "{r:?}");
    }
    assert_eq!(o.hits_for("/obj/nostore"), 3);
}

#[test]
fn concurrent_cold_misses_collapse_into_one_origin_fetch() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj(
        "cold",
        &["Cache-Control: max-age=60"],
        "delay=500&body=once",
    );
    let url = pop.url(&path);
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || curl(&["-H", "Host: c.test", &url]))
        })
        .collect();
    let responses: Vec<Resp> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for r in &responses {
        assert_eq!((r.status, r.body.as_str()), (200, "once"), "{r:?}");
    }
    assert_eq!(o.hits_for("/obj/cold"), 1, "exactly one origin fetch");
    let collapsed = responses
        .iter()
        .filter(|r| cache_status(r).contains("collapsed"))
        .count();
    assert!(collapsed >= 1, "waiters say collapsed");
}

#[test]
fn etag_revalidation_304_refreshes_the_stored_response() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj(
        "reval",
        &["Cache-Control: max-age=2", "ETag: \"v1\""],
        "body=stored",
    );
    assert_eq!(get(&pop, &path, &[]).body, "stored");
    // Past max-age whatever the Date header's one-second granularity took off as age.
    std::thread::sleep(Duration::from_millis(2100));
    let r = get(&pop, &path, &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "stored"));
    assert!(
        cache_status(&r).contains("fwd=stale; fwd-status=304"),
        "{r:?}"
    );
    let again = get(&pop, &path, &[]);
    assert!(cache_status(&again).contains("hit"), "{again:?}");
    assert_eq!(
        again.header("x-fetch"),
        Some("2"),
        "the 304's fields replaced the stored ones"
    );
    assert_eq!(o.hits_for("/obj/reval"), 2, "one fetch, one revalidation");
}

/// Sections 3.2 and 4.3.4: a 304 refreshes the stored response but not its ETag or
/// Content-MD5; its Set-Cookie goes to the client whose request revalidated, never to others.
#[test]
fn a_304_keeps_the_validators_and_its_cookie_goes_only_to_its_client() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = format!(
        "{}&h304={}&h304={}&h304={}",
        obj(
            "reval",
            &[
                "Cache-Control: max-age=1",
                "ETag: \"v1\"",
                "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
            ],
            "body=stored",
        ),
        enc("ETag: \"v2\""),
        enc("Content-MD5: b3RoZXI="),
        enc("Set-Cookie: s=for-you"),
    );
    let first = get(&pop, &path, &[]);
    assert_eq!(first.header("etag"), Some("\"v1\""));
    std::thread::sleep(Duration::from_millis(1100));
    let revalidated = get(&pop, &path, &[]);
    assert_eq!(
        (revalidated.status, revalidated.body.as_str()),
        (200, "stored"),
        "{revalidated:?}"
    );
    assert_eq!(
        revalidated.header("set-cookie"),
        Some("s=for-you"),
        "{revalidated:?}"
    );
    assert_eq!(revalidated.header("etag"), Some("\"v1\""));
    assert_eq!(
        revalidated.header("content-md5"),
        Some("Q2hlY2sgSW50ZWdyaXR5IQ==")
    );
    let hit = get(&pop, &path, &[]);
    assert!(cache_status(&hit).contains("hit"), "still stored: {hit:?}");
    assert_eq!(hit.header("set-cookie"), None, "{hit:?}");
    assert_eq!(hit.header("etag"), Some("\"v1\""));
    assert_eq!(o.hits_for("/obj/reval"), 2);
}

/// A response from cache keeps the stored Date (and one from the origin, the origin's); Age
/// says how old it is. A response the PoP makes itself gets the current time.
#[test]
fn a_hit_keeps_the_stored_date() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let dated = obj("dated", &["Cache-Control: max-age=600"], "");
    let miss = get(&pop, &dated, &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let hit = get(&pop, &dated, &[]);
    assert!(cache_status(&hit).contains("hit"), "{hit:?}");
    assert!(miss.header("date").is_some(), "{miss:?}");
    assert_eq!(hit.header("date"), miss.header("date"), "{miss:?}\n{hit:?}");
    assert_ne!(hit.header("age"), Some("0"), "{hit:?}");
    // Over HTTP/2 too.
    let url = pop.url(&dated);
    let h2 = curl(&["--http2-prior-knowledge", "-H", "Host: c.test", &url]);
    assert_eq!((h2.status, h2.http_version.as_str()), (200, "2"), "{h2:?}");
    assert_eq!(h2.header("date"), miss.header("date"), "{h2:?}");
    // The PoP's own answer (no zone for the host) is dated now, not in 1994.
    let own = curl(&["-H", "Host: nowhere.test", &pop.url("/")]);
    let date = own.header("date").expect("a Date");
    let at = httpdate::parse_http_date(date).unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(at)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(5), "{own:?}");
}

/// Section 4.3.2: If-Modified-Since to a stored response without Last-Modified is answered by
/// its Date.
#[test]
fn if_modified_since_without_last_modified_is_answered_by_the_date() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj("undated", &["Cache-Control: max-age=600"], "body=x");
    let first = get(&pop, &path, &[]);
    let date = first
        .header("date")
        .expect("the origin sends a Date")
        .to_string();
    let at = httpdate::parse_http_date(&date).unwrap();
    let ims =
        |t: std::time::SystemTime| format!("If-Modified-Since: {}", httpdate::fmt_http_date(t));
    let r = get(&pop, &path, &["-H", &ims(at)]);
    assert_eq!(r.status, 304, "not modified since its Date: {r:?}");
    let r = get(&pop, &path, &["-H", &ims(at + Duration::from_secs(60))]);
    assert_eq!(r.status, 304);
    let r = get(&pop, &path, &["-H", &ims(at - Duration::from_secs(60))]);
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "x"),
        "modified since then"
    );
    assert_eq!(o.hits_for("/obj/undated"), 1, "all from cache");
}

#[test]
fn vary_keeps_separate_variants() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj(
        "vary",
        &["Cache-Control: max-age=60", "Vary: Accept-Language"],
        "",
    );
    let mut statuses = Vec::new();
    for lang in ["en", "fr", "en", "fr"] {
        let h = format!("Accept-Language: {lang}");
        let r = get(&pop, &path, &["-H", &h]);
        assert_eq!(r.status, 200);
        statuses.push(cache_status(&r).to_string());
    }
    assert!(statuses[0].contains("fwd=uri-miss"), "{statuses:?}");
    assert!(statuses[1].contains("fwd=vary-miss"), "{statuses:?}");
    assert!(
        statuses[2].contains("hit") && statuses[3].contains("hit"),
        "{statuses:?}"
    );
    assert_eq!(o.hits_for("/obj/vary"), 2, "one fetch per variant");
    let path = obj("varystar", &["Cache-Control: max-age=60", "Vary: *"], "");
    get(&pop, &path, &[]);
    let r = get(&pop, &path, &[]);
    assert!(cache_status(&r).contains("detail=vary-star"), "{r:?}");
    assert_eq!(o.hits_for("/obj/varystar"), 2);

    // Equivalent values share a variant: whitespace, case, the order of the members.
    let path = obj(
        "varyeq",
        &[
            "Cache-Control: max-age=60",
            "Vary: Accept-Encoding, Accept-Language",
        ],
        "",
    );
    let first = get(
        &pop,
        &path,
        &[
            "-H",
            "Accept-Encoding: gzip, br",
            "-H",
            "Accept-Language: en-US, fr;q=0.5",
        ],
    );
    assert!(cache_status(&first).contains("fwd=uri-miss"), "{first:?}");
    for (ae, al) in [
        ("br,gzip", "fr; q=0.5,en-us"),
        ("  GZIP , BR ", "EN-us,FR;Q=0.5"),
    ] {
        let r = get(
            &pop,
            &path,
            &[
                "-H",
                &format!("Accept-Encoding: {ae}"),
                "-H",
                &format!("Accept-Language: {al}"),
            ],
        );
        assert!(cache_status(&r).contains("hit"), "{ae} / {al}: {r:?}");
    }
    let other = get(
        &pop,
        &path,
        &[
            "-H",
            "Accept-Encoding: br",
            "-H",
            "Accept-Language: en-US, fr;q=0.5",
        ],
    );
    assert!(cache_status(&other).contains("fwd=vary-miss"), "{other:?}");
    assert_eq!(o.hits_for("/obj/varyeq"), 2);
}

/// POSTs a purge to the admin API with the PoP's admin token and checks it was accepted.
fn purge(pop: &Pop, body: &str) {
    let r = purge_with(pop, body, &pop.admin_auth());
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["success"], true);
}

fn purge_with(pop: &Pop, body: &str, args: &[String]) -> support::Resp {
    let url = format!("http://127.0.0.1:{}/cache/purge", pop.admin);
    let mut all: Vec<&str> = vec!["-X", "POST", "--data-binary", body];
    all.extend(args.iter().map(String::as_str));
    all.push(&url);
    curl(&all)
}

#[test]
fn a_purge_needs_the_admin_token_or_the_admin_socket() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj("guarded", &["Cache-Control: max-age=600"], "");
    get(&pop, &path, &[]);
    let everything = r#"{"zone": "c", "everything": true}"#;
    let no_token = purge_with(&pop, everything, &[]);
    assert_eq!(no_token.status, 401, "{no_token:?}");
    assert!(
        no_token.body.contains("Authorization: Bearer"),
        "{}",
        no_token.body
    );
    let header = |r: &support::Resp, name: &str| r.header(name).map(str::to_string);
    assert_eq!(
        header(&no_token, "www-authenticate").as_deref(),
        Some("Bearer realm=\"edgenet admin\"")
    );
    let wrong = purge_with(
        &pop,
        everything,
        &["-H".into(), "Authorization: Bearer enp_guess".into()],
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("unknown or revoked"), "{}", wrong.body);
    assert!(
        cache_status(&get(&pop, &path, &[])).contains("hit"),
        "refused purges change nothing"
    );
    assert_eq!(o.hits_for("/obj/guarded"), 1);
    // Reading stays open.
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{}/metrics", pop.admin)]).status,
        200
    );

    // The token file is the node user's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(pop.dir.0.join("admin-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    purge(&pop, everything);
    assert!(cache_status(&get(&pop, &path, &[])).contains("fwd=uri-miss"));
    assert_eq!(o.hits_for("/obj/guarded"), 2);

    // The admin socket asks for no token; its mode decides.
    let socket = pop.dir.0.join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let r = curl(&[
        "--unix-socket",
        socket.to_str().unwrap(),
        "-X",
        "POST",
        "--data-binary",
        everything,
        "http://admin/cache/purge",
    ]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(cache_status(&get(&pop, &path, &[])).contains("fwd=uri-miss"));
    assert_eq!(o.hits_for("/obj/guarded"), 3);
}

#[test]
fn purge_by_url_prefix_tag_and_zone_takes_effect_at_once() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let cc = "Cache-Control: max-age=600";
    let paths = [
        obj("url", &[cc], ""),
        obj("img-1", &[cc], ""),
        obj("tagged", &[cc, "Cache-Tag: home, product-7"], ""),
        obj("other", &[cc], ""),
    ];
    let warm = |p: &str| cache_status(&get(&pop, p, &[])).to_string();
    for p in &paths {
        warm(p);
        assert!(warm(p).contains("hit"), "{p} cached");
    }
    let url = format!("http://c.test{}", paths[0]);
    purge(&pop, &format!(r#"{{"zone": "c", "urls": ["{url}"]}}"#));
    assert!(
        warm(&paths[0]).contains("fwd=uri-miss"),
        "purged URL refetched"
    );
    assert!(warm(&paths[3]).contains("hit"), "other URLs stay");
    purge(&pop, r#"{"zone": "c", "prefixes": ["c.test/obj/img-"]}"#);
    assert!(warm(&paths[1]).contains("fwd=uri-miss"));
    purge(&pop, r#"{"zone": "c", "tags": ["product-7"]}"#);
    assert!(warm(&paths[2]).contains("fwd=uri-miss"));
    assert!(warm(&paths[3]).contains("hit"));
    purge(&pop, r#"{"zone": "c", "everything": true}"#);
    assert!(warm(&paths[3]).contains("fwd=uri-miss"));
    assert_eq!(o.hits_for("/obj/url"), 2);
    assert_eq!(o.hits_for("/obj/other"), 2);
    // Bad requests name what is wrong.
    let r = purge_with(
        &pop,
        r#"{"zone": "nope", "everything": true}"#,
        &pop.admin_auth(),
    );
    assert_eq!(r.status, 404);
    assert!(r.body.contains("nope"), "{}", r.body);
}

#[test]
fn a_successful_unsafe_request_invalidates_the_stored_response() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj("item", &["Cache-Control: max-age=600"], "");
    get(&pop, &path, &[]);
    assert!(cache_status(&get(&pop, &path, &[])).contains("hit"));
    let r = get(&pop, &path, &["-X", "POST", "--data-binary", "x"]);
    assert_eq!(r.status, 200);
    assert!(cache_status(&r).contains("fwd=bypass"), "{r:?}");
    assert!(cache_status(&get(&pop, &path, &[])).contains("fwd=uri-miss"));
    assert_eq!(o.hits_for("/obj/item"), 3);
}

/// Section 4.4: the same-host URLs of a successful unsafe response's Location and
/// Content-Location are invalidated too, for extension methods as well.
#[test]
fn location_and_content_location_of_an_unsafe_response_are_invalidated() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let fresh = ["Cache-Control: max-age=600"];
    let (a, b, c) = (
        obj("a", &fresh, ""),
        obj("b", &fresh, ""),
        obj("c", &fresh, ""),
    );
    for p in [&a, &b, &c] {
        get(&pop, p, &[]);
        assert!(cache_status(&get(&pop, p, &[])).contains("hit"), "{p}");
    }
    let location = format!("Location: {a}");
    let content_location = format!("Content-Location: http://C.test{b}");
    let elsewhere = format!("Link: <http://other.test{c}>");
    let writer = obj("writer", &[&location, &content_location, &elsewhere], "");
    for method in ["POST", "REPORTIT"] {
        let r = get(&pop, &writer, &["-X", method, "--data-binary", "x"]);
        assert_eq!(r.status, 200, "{method}: {r:?}");
        assert!(
            cache_status(&get(&pop, &a, &[])).contains("fwd=uri-miss"),
            "{method}: Location"
        );
        assert!(
            cache_status(&get(&pop, &b, &[])).contains("fwd=uri-miss"),
            "{method}: Content-Location"
        );
        assert!(
            cache_status(&get(&pop, &c, &[])).contains("hit"),
            "{method}: not named"
        );
    }
    // Another host's URL is not this zone's.
    let other = format!("Location: http://other.test{c}");
    let writer = obj("writer2", &[&other], "");
    assert_eq!(
        get(&pop, &writer, &["-X", "PUT", "--data-binary", "x"]).status,
        200
    );
    assert!(cache_status(&get(&pop, &c, &[])).contains("hit"));
    // A failed unsafe request invalidates nothing.
    let failing = obj("failing", &[&location], "status=500");
    get(&pop, &failing, &["-X", "DELETE"]);
    assert!(cache_status(&get(&pop, &a, &[])).contains("hit"));
}

#[test]
fn head_is_answered_from_a_cached_get() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj("head", &["Cache-Control: max-age=600"], "body=twelve_bytes");
    get(&pop, &path, &[]);
    let r = get(&pop, &path, &["-I"]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some("12"));
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(o.hits_for("/obj/head"), 1);
}

#[test]
fn ranges_are_served_from_the_cached_full_object() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj("range", &["Cache-Control: max-age=600"], "body=0123456789");
    get(&pop, &path, &[]);
    let r = get(&pop, &path, &["-H", "Range: bytes=2-5"]);
    assert_eq!((r.status, r.body.as_str()), (206, "2345"), "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes 2-5/10"));
    let r = get(&pop, &path, &["-H", "Range: bytes=50-60"]);
    assert_eq!(r.status, 416, "{r:?}");
    assert_eq!(o.hits_for("/obj/range"), 1);
}

#[test]
fn set_cookie_and_authorization_responses_are_not_shared() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj(
        "cookie",
        &["Cache-Control: max-age=600", "Set-Cookie: s=1"],
        "",
    );
    get(&pop, &path, &[]);
    let r = get(&pop, &path, &[]);
    assert!(cache_status(&r).contains("detail=set-cookie"), "{r:?}");
    assert_eq!(o.hits_for("/obj/cookie"), 2);

    let path = obj("auth", &["Cache-Control: max-age=600"], "");
    get(&pop, &path, &["-H", "Authorization: Bearer x"]);
    get(&pop, &path, &["-H", "Authorization: Bearer x"]);
    assert_eq!(o.hits_for("/obj/auth"), 2, "section 3.5: not stored");
    let path = obj("authpublic", &["Cache-Control: public, max-age=600"], "");
    get(&pop, &path, &["-H", "Authorization: Bearer x"]);
    get(&pop, &path, &["-H", "Authorization: Bearer x"]);
    assert_eq!(o.hits_for("/obj/authpublic"), 1, "public allows it");
}

#[test]
fn last_modified_gives_heuristic_freshness() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj(
        "heuristic",
        &["Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT"],
        "",
    );
    get(&pop, &path, &[]);
    let r = get(&pop, &path, &[]);
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(o.hits_for("/obj/heuristic"), 1);
}

#[test]
fn a_hit_carries_its_age() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj("age", &["Cache-Control: max-age=600", "Age: 100"], "");
    get(&pop, &path, &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let r = get(&pop, &path, &[]);
    let age: u64 = r.header("age").expect("Age on a hit").parse().unwrap();
    assert!((101..=103).contains(&age), "age {age}: {r:?}");
}

#[test]
fn stale_while_revalidate_serves_stale_at_once_and_refreshes_in_the_background() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj(
        "swr",
        &["Cache-Control: max-age=1, stale-while-revalidate=60"],
        "delay=300",
    );
    get(&pop, &path, &[]);
    std::thread::sleep(Duration::from_millis(2100));
    let started = std::time::Instant::now();
    let r = get(&pop, &path, &[]);
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "served without waiting for the 300 ms origin"
    );
    assert!(
        cache_status(&r).contains("hit") && cache_status(&r).contains("stale-while-revalidate"),
        "{r:?}"
    );
    assert!(
        eventually(Duration::from_secs(3), || o.hits_for("/obj/swr") == 2),
        "refreshed in the background"
    );
    let r = get(&pop, &path, &[]);
    assert!(cache_status(&r).contains("hit; ttl="), "{r:?}");
}

#[test]
fn stale_if_error_serves_stale_when_the_origin_fails() {
    let mut o = Origin::start("o");
    let pop = pop(&o);
    let path = obj(
        "sie",
        &["Cache-Control: max-age=1, stale-if-error=60"],
        "body=kept",
    );
    get(&pop, &path, &[]);
    o.stop();
    std::thread::sleep(Duration::from_millis(2100));
    let r = get(&pop, &path, &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "kept"), "{r:?}");
    assert!(cache_status(&r).contains("hit"), "{r:?}");

    // Without stale-if-error, a stale object is not served when the origin is down.
    let o2 = Origin::start("o2");
    let pop2 = Pop::start(&zone("c", &["c.test"], &[o2.addr()], ""));
    let path = obj("strict", &["Cache-Control: max-age=1"], "");
    get(&pop2, &path, &[]);
    drop(o2);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(get(&pop2, &path, &[]).status, 502);
}

/// Stale is served on an origin error or a closed connection only where the directives allow
/// it: stale-if-error, without must-revalidate, proxy-revalidate, no-cache or s-maxage.
#[test]
fn stale_on_error_only_where_the_directives_allow_it() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let cases = [
        ("allowed", "max-age=1, stale-if-error=60", true),
        (
            "must",
            "max-age=1, must-revalidate, stale-if-error=60",
            false,
        ),
        (
            "proxy",
            "max-age=1, proxy-revalidate, stale-if-error=60",
            false,
        ),
        ("smax", "s-maxage=1, stale-if-error=60", false),
        ("targeted", "max-age=60", true),
    ];
    let path = |name: &str, cc: &str| {
        let mut h = vec![format!("Cache-Control: {cc}")];
        if name == "targeted" {
            // The targeted field decides for this cache: stale-if-error there counts.
            h.push("CDN-Cache-Control: max-age=1, stale-if-error=60".into());
        }
        let h: Vec<&str> = h.iter().map(String::as_str).collect();
        obj(name, &h, "body=kept")
    };
    for (name, cc, _) in cases {
        let r = get(&pop, &path(name, cc), &[]);
        assert_eq!(r.status, 200, "{name}: {r:?}");
    }
    std::thread::sleep(Duration::from_millis(2100));
    for mode in ["500", "close"] {
        o.fail(mode);
        for (name, cc, stale_ok) in cases {
            let r = get(&pop, &path(name, cc), &[]);
            if stale_ok {
                assert_eq!(
                    (r.status, r.body.as_str()),
                    (200, "kept"),
                    "{mode} {name}: {r:?}"
                );
            } else {
                assert_ne!(r.status, 200, "{mode} {name}: served stale: {r:?}");
                assert_ne!(r.body, "kept", "{mode} {name}");
            }
        }
    }
}

/// RFC 9213: Edgenet-CDN-Cache-Control, then CDN-Cache-Control, then Surrogate-Control decide
/// for this cache over Cache-Control; ours and Surrogate-Control never reach the client,
/// CDN-Cache-Control and Cache-Control go on.
#[test]
fn targeted_cache_control_decides_for_this_cache_and_ours_is_stripped() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let cases: [(&str, &[&str]); 4] = [
        (
            "cdn",
            &["Cache-Control: no-store", "CDN-Cache-Control: max-age=60"],
        ),
        (
            "ours",
            &[
                "Cache-Control: max-age=0",
                "CDN-Cache-Control: no-store",
                "Edgenet-CDN-Cache-Control: max-age=60",
            ],
        ),
        (
            "surrogate",
            &["Cache-Control: no-cache", "Surrogate-Control: max-age=60"],
        ),
        (
            "surrogate-other",
            &[
                "Cache-Control: max-age=60",
                "Surrogate-Control: no-store;elsewhere",
            ],
        ),
    ];
    for (name, headers) in cases {
        let path = obj(name, headers, "body=x");
        let first = get(&pop, &path, &[]);
        let second = get(&pop, &path, &[]);
        assert!(cache_status(&second).contains("hit"), "{name}: {second:?}");
        assert_eq!(o.hits_for(&format!("/obj/{name}")), 1, "{name}");
        for r in [&first, &second] {
            assert_eq!(r.header("edgenet-cdn-cache-control"), None, "{name}: {r:?}");
            assert_eq!(r.header("surrogate-control"), None, "{name}: {r:?}");
            assert!(r.header("cache-control").is_some(), "{name}: passed on");
        }
    }
    let cdn = get(&pop, &obj("cdn", cases[0].1, "body=x"), &[]);
    assert_eq!(cdn.header("cdn-cache-control"), Some("max-age=60"));
    // Ours says no-store: not stored, whatever Cache-Control says.
    let path = obj(
        "ours-no",
        &[
            "Cache-Control: max-age=60",
            "Edgenet-CDN-Cache-Control: no-store",
        ],
        "body=x",
    );
    get(&pop, &path, &[]);
    get(&pop, &path, &[]);
    assert_eq!(o.hits_for("/obj/ours-no"), 2);
}

#[test]
fn metrics_count_hits_misses_bypasses_bytes_and_evictions() {
    let o = Origin::start("o");
    // A 64 KiB memory budget: 20 objects of 10 KB cannot all stay.
    let zones = zone("c", &["c.test"], &[o.addr()], "")
        .replace("[[zones]]", "[cache]\nmemory = \"64KiB\"\n\n[[zones]]");
    let pop = Pop::start(&zones);
    let big = "x".repeat(10_000);
    let path = obj("m", &["Cache-Control: max-age=600"], &format!("body={big}"));
    get(&pop, &path, &[]);
    get(&pop, &path, &[]);
    get(&pop, &path, &["-X", "POST"]);
    // Twice each: once the tier is near its budget, an object is stored from its second miss.
    for i in 0..20 {
        let p = obj(
            &format!("e{i}"),
            &["Cache-Control: max-age=600"],
            &format!("body={big}"),
        );
        get(&pop, &p, &[]);
        get(&pop, &p, &[]);
    }
    let m = |s: &str| pop.metric(s).unwrap_or(0.0);
    let result = |r: &str| {
        m(&format!(
            "edgenet_cache_requests_total{{result=\"{r}\",zone=\"c\"}}"
        ))
    };
    assert_eq!(result("bypass"), 1.0, "the POST");
    assert_eq!(result("hit") + result("miss") + result("uncacheable"), 42.0);
    assert!(result("miss") >= 21.0, "every object missed at least once");
    assert!(
        result("uncacheable") >= 1.0,
        "first misses deferred when full"
    );
    let hits = result("hit");
    assert!(hits >= 1.0);
    assert_eq!(
        m("edgenet_cache_served_bytes_total{zone=\"c\"}"),
        hits * 10_000.0
    );
    let stored = m("edgenet_cache_stored_bytes{tier=\"memory\"}");
    assert!(stored > 0.0 && stored <= 65536.0, "within budget: {stored}");
    assert!(m("edgenet_cache_evictions_total{tier=\"memory\"}") >= 10.0);
}

/// A PoP whose zone `c.test` has `cache` (TOML of the `[zones.cache]` table and its rules).
fn pop_with(origin: &Origin, cache: &str) -> Pop {
    Pop::start(&(zone("c", &["c.test"], &[origin.addr()], "") + cache))
}

/// Section 3: any final status with explicit freshness may be stored, 5xx only by a rule; a
/// rule's status_ttl gives a status its TTL, stored even without explicit freshness, or not
/// stored at "0s".
#[test]
fn status_ttls_and_which_statuses_are_stored() {
    let o = Origin::start("o");
    let plain = pop(&o);
    let fresh = ["Cache-Control: max-age=60"];
    let twice = |pop: &Pop, path: &str| {
        get(pop, path, &[]);
        get(pop, path, &[])
    };
    let r = twice(&plain, &obj("forbidden", &fresh, "status=403"));
    assert!(
        cache_status(&r).contains("hit"),
        "a 403 with max-age: {r:?}"
    );
    let r = twice(&plain, &obj("unavailable", &fresh, "status=503"));
    assert!(
        cache_status(&r).contains("detail=5xx"),
        "a 5xx by default: {r:?}"
    );
    assert_eq!(o.hits_for("/obj/unavailable"), 2);

    let ruled = pop_with(
        &o,
        r#"
[zones.cache]
[[zones.cache.rules]]
path = "/obj/*"
status_ttl = { "404" = "1m", "400-499" = "0s", "5xx" = "10s", "200-299" = "1h" }
"#,
    );
    let ttl = |r: &Resp| -> u64 {
        cache_status(r)
            .split("ttl=")
            .nth(1)
            .and_then(|t| t.split(';').next())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ttl: {r:?}"))
    };
    let r = twice(&ruled, &obj("missing", &[], "status=404"));
    assert!(cache_status(&r).contains("hit; ttl="), "404 for 1m: {r:?}");
    assert!((50..=60).contains(&ttl(&r)), "{r:?}");
    let r = twice(&ruled, &obj("teapot", &fresh, "status=418"));
    assert!(
        cache_status(&r).contains("detail=status-ttl"),
        "400-499 = 0s: {r:?}"
    );
    let r = twice(&ruled, &obj("down", &[], "status=502"));
    assert!(cache_status(&r).contains("hit"), "5xx for 10s: {r:?}");
    let r = twice(&ruled, &obj("ok", &["Cache-Control: max-age=5"], ""));
    let ttl = cache_status(&r)
        .split("ttl=")
        .nth(1)
        .unwrap_or("")
        .to_string();
    assert!(
        ttl.starts_with("35") || ttl.starts_with("359"),
        "200 for 1h: {r:?}"
    );
    let r = twice(
        &ruled,
        &obj("secret", &["Cache-Control: private"], "status=404"),
    );
    assert!(
        cache_status(&r).contains("detail=private"),
        "never over private: {r:?}"
    );
    assert_eq!(o.hits_for("/obj/missing"), 1);
    assert_eq!(o.hits_for("/obj/down"), 1);
}

#[test]
fn zone_rules_bypass_override_ttl_and_shape_the_key() {
    let o = Origin::start("o");
    let pop = pop_with(
        &o,
        r#"
[zones.cache]
[[zones.cache.rules]]
path = "/obj/private*"
bypass = true
[[zones.cache.rules]]
path = "/obj/static-*"
ttl_mode = "override"
edge_ttl = "1h"
query = "include"
query_params = ["v"]
[[zones.cache.rules]]
path = "/obj/device*"
ttl_mode = "minimum"
edge_ttl = "1h"
key_headers = ["x-device"]
key_cookies = ["lang"]
"#,
    );
    // Bypass: never stored even with max-age.
    let p = obj("private-1", &["Cache-Control: max-age=600"], "");
    get(&pop, &p, &[]);
    let r = get(&pop, &p, &[]);
    assert!(cache_status(&r).contains("fwd=bypass"), "{r:?}");
    assert_eq!(o.hits_for("/obj/private-1"), 2);

    // Override: no freshness from the origin, cached for the edge TTL; only `v` is keyed.
    let base = "/obj/static-1?h=ETag:x";
    get(&pop, &format!("{base}&v=1&utm=a"), &[]);
    let r = get(&pop, &format!("{base}&utm=b&v=1"), &[]);
    assert!(cache_status(&r).contains("hit; ttl=3"), "{r:?}");
    let r = get(&pop, &format!("{base}&v=2"), &[]);
    assert!(
        cache_status(&r).contains("fwd=uri-miss"),
        "another v: {r:?}"
    );
    assert_eq!(o.hits_for("/obj/static-1"), 2);

    // Minimum TTL plus a header and a cookie in the key.
    let p = obj("device", &["Cache-Control: max-age=5"], "");
    let as_ = |dev: &str, lang: &str| {
        let (d, c) = (
            format!("X-Device: {dev}"),
            format!("Cookie: lang={lang}; t=1"),
        );
        cache_status(&get(&pop, &p, &["-H", &d, "-H", &c])).to_string()
    };
    assert!(as_("phone", "fr").contains("fwd=uri-miss"));
    let hit = as_("phone", "fr");
    assert!(hit.contains("hit; ttl=3"), "minimum 1h: {hit}");
    assert!(as_("desktop", "fr").contains("fwd=uri-miss"));
    assert!(as_("phone", "en").contains("fwd=uri-miss"));
    assert_eq!(o.hits_for("/obj/device"), 3);
}

#[test]
fn request_no_cache_is_honoured_only_when_the_zone_says_so() {
    let o = Origin::start("o");
    let ignoring = pop(&o);
    let p = obj("nc", &["Cache-Control: max-age=600", "ETag: \"1\""], "");
    get(&ignoring, &p, &[]);
    let r = get(&ignoring, &p, &["-H", "Cache-Control: no-cache"]);
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(o.hits_for("/obj/nc"), 1);

    let o2 = Origin::start("o2");
    let honouring = pop_with(&o2, "[zones.cache]\nhonor_request_no_cache = true\n");
    get(&honouring, &p, &[]);
    let r = get(&honouring, &p, &["-H", "Cache-Control: no-cache"]);
    assert_eq!(r.status, 200);
    assert!(cache_status(&r).contains("fwd=request"), "{r:?}");
    assert_eq!(o2.hits_for("/obj/nc"), 2, "revalidated with the origin");
}

#[test]
fn purging_a_url_follows_the_zone_key_rules() {
    let o = Origin::start("o");
    let pop = pop_with(
        &o,
        "[zones.cache]\n[[zones.cache.rules]]\npath = \"/obj/*\"\nquery = \"ignore\"\n",
    );
    let p = obj("q", &["Cache-Control: max-age=600"], "");
    get(&pop, &p, &[]);
    assert!(cache_status(&get(&pop, &p, &[])).contains("hit"));
    purge(
        &pop,
        r#"{"zone": "c", "urls": ["http://c.test/obj/q?anything=1"]}"#,
    );
    assert!(cache_status(&get(&pop, &p, &[])).contains("fwd=uri-miss"));
}

/// A PoP with a disk tier in `disk` under its directory (memory tier `memory`).
fn pop_with_disk(origin: &Origin, memory: &str) -> Pop {
    let cache = format!("[cache]\nmemory = \"{memory}\"\nmax_object = \"1MiB\"\ndisk_path = \"cache\"\ndisk = \"4GiB\"\n\n");
    Pop::start(&(cache + &zone("c", &["c.test"], &[origin.addr()], "")))
}

/// The disk tier reads off the proxy's threads: with one thread and a disk that takes 2 s per
/// read (a debug build's injected delay), a hit from memory is served while a hit from disk
/// is still being read.
#[test]
fn a_slow_disk_read_does_not_hold_up_hits_from_memory() {
    let o = Origin::start("o");
    let cache = "[cache]\nmemory = \"64MiB\"\nmax_object = \"1MiB\"\ndisk_path = \"cache\"\ndisk = \"1GiB\"\n\n";
    let zones = cache.to_string() + &zone("c", &["c.test"], &[o.addr()], "");
    let mut pop = Pop::start_with(&zones, 1, &[("EDGENET_TEST_DISK_READ_DELAY", "2000")]);
    let on_disk = obj("on-disk", &["Cache-Control: max-age=600"], "body=from-disk");
    let in_memory = obj(
        "in-memory",
        &["Cache-Control: max-age=600"],
        "body=from-memory",
    );
    get(&pop, &on_disk, &[]);
    // After a restart the first is only on disk; the second is fetched again into memory.
    pop.restart();
    get(&pop, &in_memory, &[]);
    assert!(cache_status(&get(&pop, &in_memory, &[])).contains("hit"));
    let slow = {
        let url = pop.url(&on_disk);
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let r = curl(&["-H", "Host: c.test", &url]);
            (r, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let fast = get(&pop, &in_memory, &[]);
    let took = started.elapsed();
    assert_eq!((fast.status, fast.body.as_str()), (200, "from-memory"));
    assert!(cache_status(&fast).contains("hit"), "{fast:?}");
    assert!(!slow.is_finished(), "the disk read was still going on");
    assert!(
        took < Duration::from_millis(1000),
        "a memory hit took {took:?} beside a slow disk read"
    );
    let (r, slow_took) = slow.join().unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "from-disk"), "{r:?}");
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert!(
        slow_took >= Duration::from_millis(2000),
        "the injected delay applied: {slow_took:?}"
    );
    assert_eq!(o.hits_for("/obj/on-disk"), 1);
}

/// A disk hit is promoted into the memory tier (admitted: the cache has room): the next hit is
/// from memory, without the disk's delay; a range request is not copied.
#[test]
fn a_disk_hit_is_promoted_into_memory() {
    let o = Origin::start("o");
    let cache = "[cache]\nmemory = \"64MiB\"\nmax_object = \"1MiB\"\ndisk_path = \"cache\"\ndisk = \"1GiB\"\n\n";
    let zones = cache.to_string() + &zone("c", &["c.test"], &[o.addr()], "");
    let mut pop = Pop::start_with(&zones, 1, &[("EDGENET_TEST_DISK_READ_DELAY", "700")]);
    let whole = obj("whole", &["Cache-Control: max-age=600"], "body=promoted");
    let ranged = obj("ranged", &["Cache-Control: max-age=600"], "body=0123456789");
    get(&pop, &whole, &[]);
    get(&pop, &ranged, &[]);
    pop.restart();
    let timed = |path: &str, extra: &[&str]| {
        let started = std::time::Instant::now();
        let r = get(&pop, path, extra);
        assert!(cache_status(&r).contains("hit"), "{r:?}");
        (r, started.elapsed())
    };
    let (r, from_disk) = timed(&whole, &[]);
    assert_eq!(r.body, "promoted");
    assert!(
        from_disk >= Duration::from_millis(700),
        "from disk: {from_disk:?}"
    );
    let (r, from_memory) = timed(&whole, &[]);
    assert_eq!(r.body, "promoted");
    assert!(
        from_memory < Duration::from_millis(500),
        "promoted into memory: {from_memory:?}"
    );
    let (r, _) = timed(&ranged, &["-r", "2-4"]);
    assert_eq!((r.status, r.body.as_str()), (206, "234"));
    let (r, again) = timed(&ranged, &[]);
    assert_eq!(r.body, "0123456789");
    assert!(
        again >= Duration::from_millis(700),
        "a range is not promoted: {again:?}"
    );
    assert_eq!(o.hits(), 2);
}

#[test]
fn fresh_objects_on_disk_are_hits_after_a_restart() {
    let o = Origin::start("o");
    let mut pop = pop_with_disk(&o, "64MiB");
    let path = obj(
        "persist",
        &["Cache-Control: max-age=600"],
        "body=kept-on-disk",
    );
    get(&pop, &path, &[]);
    pop.restart();
    let r = get(&pop, &path, &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "kept-on-disk"));
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(o.hits_for("/obj/persist"), 1);
}

/// A purge answered by the admin API is kept beside the disk tier before the answer: a PoP
/// killed right after it does not serve the purged object from disk, and serves the rest.
#[test]
fn a_purge_outlives_a_restart_that_follows_it_at_once() {
    let o = Origin::start("o");
    let mut pop = pop_with_disk(&o, "64MiB");
    let purged = obj("gone", &["Cache-Control: max-age=600"], "body=old");
    let kept = obj("kept", &["Cache-Control: max-age=600"], "body=kept");
    get(&pop, &purged, &[]);
    get(&pop, &kept, &[]);
    purge(&pop, r#"{"zone": "c", "prefixes": ["c.test/obj/gone"]}"#);
    assert!(pop.dir.0.join("cache/purges.json").exists());
    pop.restart();
    let r = get(&pop, &purged, &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "old"));
    assert!(cache_status(&r).contains("fwd=uri-miss"), "{r:?}");
    assert_eq!(o.hits_for("/obj/gone"), 2, "refetched after the restart");
    let r = get(&pop, &kept, &[]);
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(o.hits_for("/obj/kept"), 1);
}

#[test]
fn a_corrupt_disk_entry_is_a_miss() {
    let o = Origin::start("o");
    let mut pop = pop_with_disk(&o, "64MiB");
    let path = obj("rot", &["Cache-Control: max-age=600"], "body=original");
    get(&pop, &path, &[]);
    // Restart so the object can only come from disk, then flip a byte of every stored file.
    pop.restart();
    let objects = pop.dir.0.join("cache/objects");
    let mut flipped = 0;
    for shard in std::fs::read_dir(&objects).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let mut bytes = std::fs::read(&p).unwrap();
            let i = bytes.len() - 6;
            bytes[i] ^= 0x55;
            std::fs::write(&p, bytes).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 1);
    let r = get(&pop, &path, &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "original"));
    assert!(cache_status(&r).contains("fwd=uri-miss"), "{r:?}");
    assert_eq!(o.hits_for("/obj/rot"), 2);
    assert_eq!(pop.metric("edgenet_cache_disk_corrupt_total"), Some(1.0));
}

#[test]
fn an_unwritable_disk_leaves_the_memory_tier_serving() {
    let o = Origin::start("o");
    let pop = pop_with_disk(&o, "64MiB");
    // The tier's scratch directory disappears: every disk write fails from now on.
    std::fs::remove_dir_all(pop.dir.0.join("cache/tmp")).unwrap();
    let path = obj("mem-only", &["Cache-Control: max-age=600"], "");
    get(&pop, &path, &[]);
    let r = get(&pop, &path, &[]);
    assert!(
        cache_status(&r).contains("hit"),
        "memory still caches: {r:?}"
    );
    assert_eq!(o.hits_for("/obj/mem-only"), 1);
    assert_eq!(pop.metric("edgenet_cache_disk_up"), Some(0.0));
    assert!(pop.metric("edgenet_cache_disk_errors_total").unwrap() >= 1.0);
    let logged = pop
        .stderr()
        .matches("serving from the memory tier only")
        .count();
    assert_eq!(logged, 1, "logged once: {}", pop.stderr());
}

#[test]
fn a_gib_object_streams_through_the_cache_with_bounded_memory() {
    let o = Origin::start("o");
    // Larger than the memory tier's 1 MiB object limit: stored on disk only. The test origin's
    // /bytes sends no freshness, so a rule gives it an edge TTL.
    let cache = "[cache]\nmemory = \"64MiB\"\nmax_object = \"1MiB\"\ndisk_path = \"cache\"\ndisk = \"4GiB\"\n\n";
    let rules = "[zones.cache]\n[[zones.cache.rules]]\npath = \"/bytes\"\nttl_mode = \"override\"\nedge_ttl = \"10m\"\n";
    let zones = zone("c", &["c.test"], &[o.addr()], rules)
        .replace("read_timeout = \"5s\"", "read_timeout = \"60s\"");
    let pop = Pop::start(&(cache.to_string() + &zones));
    let n = 1u64 << 30;
    let fetch = || {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-S",
                "--max-time",
                "300",
                "-o",
                "/dev/null",
                "-D",
                "-",
            ])
            .args(["-H", "Host: c.test", "-w", "%{http_code} %{size_download}"])
            .arg(pop.url(&format!("/bytes?n={n}")))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = fetch();
    assert!(first.ends_with(&format!("200 {n}")), "{first}");
    assert!(first.contains("stored"), "{first}");
    let second = fetch();
    assert!(second.ends_with(&format!("200 {n}")), "{second}");
    assert!(
        second
            .to_lowercase()
            .contains("cache-status: test-pop; hit"),
        "{second}"
    );
    assert_eq!(o.hits(), 1, "the second GiB came from disk");
    let peak_mib = pop.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 256,
        "peak RSS {peak_mib} MiB for 2 GiB through the cache"
    );
    eprintln!("peak RSS after a GiB stored and served from the cache: {peak_mib} MiB");
}

/// Two requests for `path`; returns the second response and how often the origin was asked.
fn twice(pop: &Pop, o: &Origin, name: &str, headers: &[&str]) -> (Resp, u64) {
    let path = obj(name, headers, "");
    get(pop, &path, &[]);
    let second = get(pop, &path, &[]);
    (second, o.hits_for(&format!("/obj/{name}")))
}

#[test]
fn freshness_comes_from_s_maxage_max_age_or_expires() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let (r, n) = twice(
        &pop,
        &o,
        "smaxage",
        &["Cache-Control: max-age=0, s-maxage=600"],
    );
    assert!(
        cache_status(&r).contains("hit; ttl=59"),
        "s-maxage wins for a shared cache: {r:?}"
    );
    assert_eq!(n, 1);
    let expires = httpdate(std::time::SystemTime::now() + Duration::from_secs(300));
    let (r, n) = twice(&pop, &o, "expires", &[&format!("Expires: {expires}")]);
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(n, 1);
}

fn httpdate(t: std::time::SystemTime) -> String {
    // RFC 9110 IMF-fixdate, from the system's `date` (the tests avoid a date crate).
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{secs}"),
            "+%a, %d %b %Y %H:%M:%S GMT",
        ])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn private_no_cache_and_malformed_directives_follow_rfc_9111() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let (r, n) = twice(
        &pop,
        &o,
        "private",
        &["Cache-Control: private, max-age=600"],
    );
    assert!(cache_status(&r).contains("detail=private"), "{r:?}");
    assert_eq!(n, 2, "a shared cache never stores private");
    // no-cache: stored, but revalidated before every use (a 304 here).
    let (r, n) = twice(
        &pop,
        &o,
        "nocache",
        &["Cache-Control: no-cache", "ETag: \"n\""],
    );
    assert_eq!(r.status, 200);
    assert!(
        cache_status(&r).contains("fwd=stale; fwd-status=304"),
        "{r:?}"
    );
    assert_eq!(n, 2);
    // An invalid max-age makes the response stale, not a crash nor a long-lived object.
    let (r, n) = twice(
        &pop,
        &o,
        "badmaxage",
        &["Cache-Control: max-age=soon", "ETag: \"b\""],
    );
    assert_eq!(r.status, 200);
    assert!(cache_status(&r).contains("fwd=stale"), "{r:?}");
    assert_eq!(n, 2);
}

#[test]
fn last_modified_revalidation_uses_if_modified_since() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let lm = "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT";
    let (r, n) = twice(&pop, &o, "lm", &["Cache-Control: max-age=0", lm]);
    assert_eq!(r.status, 200);
    assert!(
        cache_status(&r).contains("fwd=stale; fwd-status=304"),
        "{r:?}"
    );
    assert_eq!(n, 2);
}

#[test]
fn must_revalidate_forbids_serving_stale_when_the_origin_is_down() {
    let mut o = Origin::start("o");
    let pop = pop(&o);
    let path = obj(
        "mustreval",
        &["Cache-Control: max-age=1, must-revalidate, stale-if-error=600"],
        "",
    );
    get(&pop, &path, &[]);
    o.stop();
    std::thread::sleep(Duration::from_millis(2100));
    let r = get(&pop, &path, &[]);
    assert_eq!(r.status, 502, "{r:?}");
}

#[test]
fn set_cookie_responses_are_stored_when_the_zone_allows_it() {
    let o = Origin::start("o");
    let pop = pop_with(&o, "[zones.cache]\ncache_set_cookie = true\n");
    let (r, n) = twice(
        &pop,
        &o,
        "cookie-ok",
        &["Cache-Control: max-age=600", "Set-Cookie: s=1"],
    );
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(r.header("set-cookie"), Some("s=1"));
    assert_eq!(n, 1);
}

#[test]
fn error_statuses_are_not_stored_even_with_max_age() {
    let o = Origin::start("o");
    let pop = pop(&o);
    let path = obj("err", &["Cache-Control: max-age=600"], "status=500");
    get(&pop, &path, &[]);
    let r = get(&pop, &path, &[]);
    assert_eq!(r.status, 500);
    assert!(!cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(o.hits_for("/obj/err"), 2);
    // 404 is cacheable (RFC 9110 section 15.1).
    let path = obj("gone", &["Cache-Control: max-age=600"], "status=404");
    get(&pop, &path, &[]);
    let r = get(&pop, &path, &[]);
    assert_eq!(r.status, 404);
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(o.hits_for("/obj/gone"), 1);
}
