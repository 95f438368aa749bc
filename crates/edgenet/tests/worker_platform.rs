//! Workers deployed through the control plane's API, with real processes: `edgenet control`
//! (which checks each upload by compiling it with `edgenet worker-compile`), two
//! `edgenet pop --control` that fetch components by hash and run them, the test origin and
//! curl. A component is served by every PoP once uploaded and routed; a new version swaps in
//! under load with no failed request; a rollback is a route pinned to an earlier version; a
//! secret reaches the worker and no API answer; a PoP restarted with the control plane down
//! still runs it.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{curl, eventually, hello_rust, rust_component, Control, Origin, Pop};

fn misbehave() -> std::path::PathBuf {
    rust_component(
        "crates/edgenet-workers/tests/components/misbehave",
        "misbehave",
    )
}

/// `PUT` of a component file as script `name`.
fn upload(control: &Control, account: &str, name: &str, wasm: &std::path::Path) -> support::Resp {
    let url = format!(
        "{}/v1/accounts/{account}/workers/scripts/{name}",
        control.url()
    );
    let auth = format!("Authorization: Bearer {}", control.admin_token);
    let body = format!("@{}", wasm.display());
    curl(&[
        "-X",
        "PUT",
        "-H",
        &auth,
        "-H",
        "content-type: application/wasm",
        "--data-binary",
        &body,
        &url,
    ])
}

/// The test origin, a control plane, two PoPs following it (`PREFIX1`, `PREFIX2`) and an
/// account whose zone serves shop.test from the origin.
fn shop(prefix: &str) -> (Origin, Control, Vec<Pop>, String) {
    let origin = Origin::start("o1");
    let control = Control::start(None);
    let token = control.token(&["pop"]);
    let pops: Vec<Pop> = (1..=2)
        .map(|i| {
            let name = format!("{prefix}{i}");
            control.register_pop(&name);
            Pop::start_following(&control.url(), &name, &token)
        })
        .collect();
    let r = control.api("POST", "/v1/accounts", Some(r#"{"name": "shop inc"}"#), &[]);
    let a = r.json()["result"]["id"].as_str().unwrap().to_string();
    let zone = json!({"name": "shop", "hostnames": ["shop.test"],
        "origins": {"servers": [{"address": origin.addr()}]}})
    .to_string();
    let r = control.api("POST", &format!("/v1/accounts/{a}/zones"), Some(&zone), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    (origin, control, pops, a)
}

/// `edgenet worker deploy WASM ARGS` for account `a`; what it printed.
fn deploy(control: &Control, a: &str, wasm: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgenet"))
        .args(["worker", "deploy"])
        .arg(wasm)
        .args(args)
        .args(["--account", a, "--control", &control.url()])
        .env("EDGENET_TOKEN", &control.admin_token)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

fn get_env(pop: &Pop) -> support::Resp {
    curl(&["-H", "Host: shop.test", &pop.url("/env")])
}

#[test]
fn a_worker_deployed_through_the_api_runs_at_every_pop_swaps_rolls_back_and_keeps_its_secret() {
    let hello = hello_rust();
    let second = misbehave();
    let (_origin, mut control, mut pops, a) = shop("w");

    // Not a component: refused at upload with wasmtime's reason.
    let junk = std::env::temp_dir().join(format!("edgenet-junk-{}.wasm", std::process::id()));
    std::fs::write(&junk, b"just some bytes").unwrap();
    let r = upload(&control, &a, "api", &junk);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["errors"][0]["field"], "body", "{}", r.body);
    let why = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(why.contains("wasi:http/proxy"), "{why}");
    let _ = std::fs::remove_file(&junk);

    // Version 1 and its route with one command: every PoP runs it.
    let started = Instant::now();
    let printed = deploy(
        &control,
        &a,
        &hello,
        &["--name", "api", "--route", "shop.test/env"],
    );
    assert!(printed.contains("as api version 1"), "{printed}");
    assert!(printed.contains("route shop.test/env -> api"), "{printed}");
    let routes = format!("/v1/accounts/{a}/workers/routes");
    let r = control.api("GET", &routes, None, &[]);
    let route = r.json()["result"]["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for p in &pops {
        let ok = eventually(Duration::from_secs(30), || {
            get_env(p).body == "hello from wasm: /env\n"
        });
        assert!(ok, "{:?}\n{}", get_env(p), p.stderr());
    }
    println!(
        "version 1 at both PoPs {:?} after its route",
        started.elapsed()
    );

    // A secret, then version 2 under load: every answer is version 1's or version 2's whole,
    // never an error; then every PoP runs version 2, which reads the secret.
    let secrets = format!("/v1/accounts/{a}/workers/scripts/api/secrets");
    let r = control.api(
        "PUT",
        &secrets,
        Some(r#"{"name": "GREETING", "text": "hunter2", "type": "secret_text"}"#),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let url = pops[0].url("/env");
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = curl(&["-H", "Host: shop.test", &url]);
                seen.push((r.status, r.body));
            }
            seen
        })
    };
    let started = Instant::now();
    let r = upload(&control, &a, "api", &second);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"]["version"], 2);
    let uploaded = started.elapsed();
    for p in &pops {
        let ok = eventually(Duration::from_secs(30), || get_env(p).body == "hunter2\n");
        assert!(ok, "{:?}", get_env(p));
    }
    println!(
        "version 2 at both PoPs {:?} after the upload began ({uploaded:?} to check it)",
        started.elapsed()
    );
    // Each PoP says what it runs.
    let script = format!("/v1/accounts/{a}/workers/scripts/api");
    let reported = eventually(Duration::from_secs(15), || {
        let v = control.api("GET", &script, None, &[]).json();
        let pops = v["result"]["pops"].as_array().cloned().unwrap_or_default();
        pops.len() == 2
            && pops.iter().all(|p| {
                p["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("running versions [2]"))
            })
    });
    assert!(reported, "{}", control.api("GET", &script, None, &[]).body);
    stop.store(true, Ordering::Relaxed);
    let seen = load.join().unwrap();
    let bad: Vec<&(u16, String)> = seen
        .iter()
        .filter(|(s, b)| *s != 200 || (b != "hello from wasm: /env\n" && b != "hunter2\n"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} answers: {bad:?}",
        bad.len(),
        seen.len()
    );
    assert!(
        seen.iter().any(|(_, b)| b == "hunter2\n"),
        "the swap was seen"
    );
    println!("{} requests across the swap, none failed", seen.len());

    // The secret is in no answer of the API.
    for path in [
        format!("/v1/accounts/{a}/workers/scripts/api"),
        secrets.clone(),
        format!("/v1/accounts/{a}/workers/scripts"),
    ] {
        let r = control.api("GET", &path, None, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(!r.body.contains("hunter2"), "{path}: {}", r.body);
    }

    // Rollback: the route pinned to version 1.
    let r = control.api(
        "PUT",
        &format!("{routes}/{route}"),
        Some(r#"{"pattern": "shop.test/env", "script": "api", "version": 1}"#),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for p in &pops {
        let ok = eventually(Duration::from_secs(30), || {
            get_env(p).body == "hello from wasm: /env\n"
        });
        assert!(ok, "{:?}", get_env(p));
    }

    // With the control plane down, a restarted PoP runs the version it last had.
    control.stop();
    pops[1].restart();
    assert_eq!(get_env(&pops[1]).body, "hello from wasm: /env\n");
    assert_eq!(
        curl(&["-H", "Host: shop.test", &pops[1].url("/other")]).status,
        200,
        "the rest of the zone still goes to the origin"
    );
}

/// `edgenet kv ...` against `control` for account `a`; its output, or the failure's.
fn kv(control: &Control, a: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgenet"))
        .args([
            "kv",
            "--namespace",
            "cache",
            "--account",
            a,
            "--control",
            &control.url(),
        ])
        .args(args)
        .env("EDGENET_TOKEN", &control.admin_token)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_kv_command_writes_reads_lists_expires_and_is_limited_per_key() {
    let control = Control::start(None);
    let r = control.api("POST", "/v1/accounts", Some(r#"{"name": "shop inc"}"#), &[]);
    let a = r.json()["result"]["id"].as_str().unwrap().to_string();
    let r = control.api(
        "POST",
        &format!("/v1/accounts/{a}/storage/kv/namespaces"),
        Some(r#"{"title": "cache"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        kv(&control, &a, &["put", "user:1", "ann"]),
        (true, "user:1 written\n".into())
    );
    let (ok, text) = kv(&control, &a, &["put", "user:1", "again"]);
    assert!(
        !ok && text.contains("429"),
        "one write per key per second: {text}"
    );
    assert!(kv(&control, &a, &["put", "user:2", "bob", "--ttl", "1"]).0);
    assert!(kv(&control, &a, &["put", "users/all", "x"]).0);
    assert_eq!(kv(&control, &a, &["get", "user:1"]), (true, "ann\n".into()));
    assert_eq!(
        kv(&control, &a, &["list", "--prefix", "user:"]),
        (true, "user:1\nuser:2\n".into())
    );
    std::thread::sleep(Duration::from_millis(1100));
    let (ok, text) = kv(&control, &a, &["get", "user:2"]);
    assert!(!ok && text.contains("404"), "expired: {text}");
    assert_eq!(
        kv(&control, &a, &["list"]),
        (true, "user:1\nusers/all\n".into())
    );
    assert!(kv(&control, &a, &["delete", "users/all"]).0);
    assert_eq!(kv(&control, &a, &["list"]), (true, "user:1\n".into()));
}

/// examples/workers/kv-rust, built.
fn kv_rust() -> std::path::PathBuf {
    rust_component("examples/workers/kv-rust", "kv_rust")
}

/// A request to the worker at `pop`: `method path` with `body`.
fn at(pop: &Pop, method: &str, path: &str, body: &str) -> support::Resp {
    let url = pop.url(path);
    let mut args = vec!["-X", method, "-H", "Host: shop.test", &url];
    if !body.is_empty() {
        args.extend(["--data-binary", body]);
    }
    curl(&args)
}

#[test]
fn a_worker_writes_kv_at_one_pop_and_reads_it_at_another_with_ttls_limits_and_the_control_plane_down(
) {
    let wasm = kv_rust();
    let (_origin, mut control, mut pops, a) = shop("k");
    let r = control.api(
        "POST",
        &format!("/v1/accounts/{a}/storage/kv/namespaces"),
        Some(r#"{"title": "cache"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);

    let printed = deploy(
        &control,
        &a,
        &wasm,
        &[
            "--name",
            "state",
            "--kv",
            "KV=cache",
            "--route",
            "shop.test/kv/*",
            "--route",
            "shop.test/keys",
        ],
    );
    assert!(printed.contains("bound as KV"), "{printed}");
    for p in &pops {
        let ok = eventually(Duration::from_secs(30), || {
            at(p, "GET", "/kv/greeting", "").body == "no key \"greeting\"\n"
        });
        assert!(ok, "{:?}\n{}", at(p, "GET", "/kv/greeting", ""), p.stderr());
    }

    // Written by the worker at one PoP: read there at once, at the other once propagated,
    // and through the API.
    let r = at(&pops[0], "PUT", "/kv/greeting", "hello");
    assert_eq!(r.status, 204, "{r:?}");
    let written = Instant::now();
    assert_eq!(
        at(&pops[0], "GET", "/kv/greeting", "").body,
        "hello",
        "read your writes"
    );
    let seen = eventually(Duration::from_secs(5), || {
        at(&pops[1], "GET", "/kv/greeting", "").body == "hello"
    });
    assert!(seen, "{:?}", at(&pops[1], "GET", "/kv/greeting", ""));
    println!(
        "a worker's write read at the other PoP {:?} after it returned",
        written.elapsed()
    );
    assert_eq!(
        kv(&control, &a, &["get", "greeting"]),
        (true, "hello\n".into())
    );

    // One write per key per second, wherever it comes from.
    let r = at(&pops[1], "PUT", "/kv/greeting", "again");
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("per key"), "{r:?}");

    // Increments from both PoPs count once each, at the control plane.
    assert_eq!(at(&pops[0], "POST", "/kv/hits/incr?by=2", "").body, "2\n");
    std::thread::sleep(Duration::from_millis(1050));
    assert_eq!(at(&pops[1], "POST", "/kv/hits/incr?by=1", "").body, "3\n");
    let counted = eventually(Duration::from_secs(5), || {
        at(&pops[0], "GET", "/kv/hits", "").body == "3"
    });
    assert!(counted, "{:?}", at(&pops[0], "GET", "/kv/hits", ""));

    // A TTL set through the API: served at the PoPs until it expires there.
    assert!(kv(&control, &a, &["put", "flash", "sale", "--ttl", "2"]).0);
    let served = eventually(Duration::from_secs(2), || {
        at(&pops[1], "GET", "/kv/flash", "").body == "sale"
    });
    assert!(served, "{:?}", at(&pops[1], "GET", "/kv/flash", ""));
    let expired = eventually(Duration::from_secs(5), || {
        at(&pops[1], "GET", "/kv/flash", "").status == 404
    });
    assert!(expired, "{:?}", at(&pops[1], "GET", "/kv/flash", ""));
    assert_eq!(at(&pops[1], "GET", "/keys", "").body, "greeting\nhits\n");

    // A delete by the worker reaches the other PoP too.
    let r = at(&pops[1], "DELETE", "/kv/hits", "");
    assert_eq!(r.status, 204, "{r:?}");
    let gone = eventually(Duration::from_secs(5), || {
        at(&pops[0], "GET", "/kv/hits", "").status == 404
    });
    assert!(gone);

    // With the control plane down, a restarted PoP still serves the worker's reads; a write
    // says why it cannot be made.
    control.stop();
    pops[1].restart();
    assert_eq!(at(&pops[1], "GET", "/kv/greeting", "").body, "hello");
    assert_eq!(at(&pops[1], "GET", "/kv/hits", "").status, 404);
    let r = at(&pops[1], "PUT", "/kv/later", "x");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("control plane"), "{r:?}");
}
