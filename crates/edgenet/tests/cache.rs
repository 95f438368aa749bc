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
    assert_eq!(o.hits_for("/obj/reval"), 2, "one fetch, one revalidation");
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
    for lang in ["en", "fr", "en", "fr"] {
        let h = format!("Accept-Language: {lang}");
        assert_eq!(get(&pop, &path, &["-H", &h]).status, 200);
    }
    assert_eq!(o.hits_for("/obj/vary"), 2, "one fetch per variant");
    let path = obj("varystar", &["Cache-Control: max-age=60", "Vary: *"], "");
    get(&pop, &path, &[]);
    let r = get(&pop, &path, &[]);
    assert!(cache_status(&r).contains("detail=vary-star"), "{r:?}");
    assert_eq!(o.hits_for("/obj/varystar"), 2);
}
