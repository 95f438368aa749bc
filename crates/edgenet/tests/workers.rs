//! Workers at a PoP, against the real binary, the test origin and curl: routing by host and
//! path, a worker answering from the edge (Rust and JavaScript), one rewriting what the
//! origin answers through a subrequest that is then a cache hit, every limit giving its error
//! while the PoP keeps serving, and a bad component refused at deploy. Also: compiling in a
//! separate process (`edgenet worker-compile`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edgenet_workers::{Limits, Runtime};
use support::{
    curl, eventually, hello_rust, js_component, rust_component, zone, Origin, Pop, TempDir,
};

fn misbehave() -> PathBuf {
    rust_component(
        "crates/edgenet-workers/tests/components/misbehave",
        "misbehave",
    )
}

/// The zone `w` (hostnames w.test and other.w.test) with the two workers of these tests.
fn worker_zone(origin: &Origin, secret: &Path, edge: &Path, hello: &Path) -> String {
    let workers = format!(
        r#"
[[zones.response_headers]]
action = "set"
name = "x-zone-rule"
value = "applied"

[[zones.workers]]
name = "edge"
component = "{edge}"
routes = ["w.test/obj/*", "w.test/echo", "/loop", "/grow", "/trap", "/fetch", "/silent", "/env", "/ip", "/big"]
allowed_hosts = ["w.test"]
env = {{ PLAIN = "plain" }}
secrets = {{ GREETING = "{secret}" }}
[zones.workers.limits]
memory = "16MiB"
subrequests = 5
request_body = "1KiB"
response_body = "512KiB"

[[zones.workers]]
name = "big"
component = "{edge}"
routes = ["other.w.test/big"]

[[zones.workers]]
name = "hello"
component = "{hello}"
routes = ["/hello/*", "other.w.test/obj/*"]
"#,
        edge = edge.display(),
        hello = hello.display(),
        secret = secret.display(),
    );
    zone("w", &["w.test", "*.w.test"], &[origin.addr()], &workers)
}

fn get(pop: &Pop, host: &str, path: &str) -> support::Resp {
    curl(&["-H", &format!("Host: {host}"), &pop.url(path)])
}

#[test]
fn workers_route_rewrite_answer_and_fetch_through_the_cache() {
    let origin = Origin::start("o1");
    let dir = TempDir::new("workers");
    let secret = dir.0.join("greeting");
    std::fs::write(&secret, "hi from a secret\n").unwrap();
    let pop = Pop::start(&worker_zone(&origin, &secret, &misbehave(), &hello_rust()));

    // Answered at the edge: the origin sees nothing.
    let r = get(&pop, "w.test", "/hello/there?x=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "hello from wasm: /hello/there?x=1\n");
    assert!(r.header("x-request-id").is_some());
    assert_eq!(
        r.header("x-zone-rule"),
        Some("applied"),
        "response rules apply"
    );
    // The same over HTTP/2 and TLS.
    let r = curl(&[
        "-k",
        "--http2",
        "--resolve",
        &format!("w.test:{}:127.0.0.1", pop.https),
        &format!("https://w.test:{}/hello/h2", pop.https),
    ]);
    assert_eq!((r.status, r.http_version.as_str()), (200, "2"), "{r:?}");
    assert_eq!(r.body, "hello from wasm: /hello/h2\n");
    // Routes are by host too: other.w.test/obj/* is hello's, w.test/obj/* is edge's.
    let r = get(&pop, "other.w.test", "/obj/x");
    assert_eq!(r.body, "hello from wasm: /obj/x\n");
    assert_eq!(origin.hits(), 0, "no request reached the origin");
    // No route: proxied as usual.
    let r = get(&pop, "w.test", "/slow?ms=1");
    assert_eq!(r.status, 200);
    assert_eq!(origin.hits_for("/slow"), 1);

    // Rewriting: the worker adds a request header the origin sees, and a response header,
    // and upper-cases the body.
    let r = get(&pop, "w.test", "/echo");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-worker"), Some("rewritten"));
    assert!(r.body.contains("[\"X-FROM-WORKER\", \"1\"]"), "{}", r.body);
    assert!(
        r.body.contains("\"O1\""),
        "the origin's name, rewritten: {}",
        r.body
    );

    // The worker's fetch goes through the PoP's cache: the second is a hit, the origin
    // answered once.
    let path = "/obj/page?body=cached+text&h=Cache-Control:max-age=60";
    let first = get(&pop, "w.test", path);
    let second = get(&pop, "w.test", path);
    for r in [&first, &second] {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "CACHED TEXT");
        assert_eq!(r.header("x-worker"), Some("rewritten"));
    }
    assert!(
        second.header("cache-status").unwrap_or("").contains("hit"),
        "{:?}",
        second.headers
    );
    assert_eq!(origin.hits_for("/obj/page"), 1);
    // Over HTTPS the worker fetches https://: another cache key (the scheme is part of it),
    // fetched once, then a hit.
    let https = |path: &str| {
        curl(&[
            "-k",
            "--resolve",
            &format!("w.test:{}:127.0.0.1", pop.https),
            &format!("https://w.test:{}{path}", pop.https),
        ])
    };
    let first = https(path);
    let second = https(path);
    assert_eq!((first.status, first.body.as_str()), (200, "CACHED TEXT"));
    assert!(second.header("cache-status").unwrap_or("").contains("hit"));
    assert_eq!(origin.hits_for("/obj/page"), 2);

    // Environment and secrets reach the worker.
    assert_eq!(get(&pop, "w.test", "/env").body, "hi from a secret\n");
    // So does the client's address, whatever the client claims.
    let r = curl(&[
        "-H",
        "Host: w.test",
        "-H",
        "cf-connecting-ip: 6.6.6.6",
        &pop.url("/ip"),
    ]);
    assert_eq!(r.body, "127.0.0.1\n");

    // A request body over the worker's limit: 413, the worker never runs.
    let big = "x".repeat(4096);
    let r = curl(&[
        "-H",
        "Host: w.test",
        "--data-binary",
        &big,
        &pop.url("/echo"),
    ]);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.body.contains("worker edge"), "{}", r.body);

    let access = pop.access_log();
    assert!(access
        .iter()
        .any(|l| l["worker"] == "hello" && l["path"] == "/hello/there?x=1"));
    assert_eq!(
        pop.metric("edgenet_worker_requests_total{worker=\"edge\",zone=\"w\"}"),
        Some(8.0)
    );
}

#[test]
fn each_limit_gives_its_error_while_the_pop_keeps_serving() {
    let origin = Origin::start("o1");
    let dir = TempDir::new("workers-limits");
    let secret = dir.0.join("greeting");
    std::fs::write(&secret, "hi").unwrap();
    let pop = Pop::start(&worker_zone(&origin, &secret, &misbehave(), &hello_rust()));

    // A spinning worker: while it burns its 50 ms, other requests and workers are served.
    let url = pop.url("/loop");
    let spinning = std::thread::spawn(move || curl(&["-H", "Host: w.test", &url]));
    let started = Instant::now();
    let r = get(&pop, "w.test", "/hello/meanwhile");
    assert_eq!(r.status, 200);
    let r = spinning.join().unwrap();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.body
            .contains("worker edge exceeded its CPU time limit of 50ms"),
        "{}",
        r.body
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let cases = [
        (
            "/grow",
            503,
            "worker edge exceeded its memory limit of 16777216 bytes",
            "memory",
        ),
        ("/trap", 500, "worker edge trapped", "trap"),
        (
            "/silent",
            500,
            "worker edge returned without a response",
            "no_response",
        ),
        (
            "/fetch?to=w.test&n=8&strict=1",
            503,
            "worker edge exceeded its subrequest limit of 5",
            "subrequests",
        ),
    ];
    for (path, status, message, cause) in cases {
        let r = get(&pop, "w.test", path);
        assert_eq!(r.status, status, "{path}: {r:?}");
        assert!(r.body.contains(message), "{path}: {}", r.body);
        assert!(r.body.contains("request id: "), "{}", r.body);
        let series =
            format!("edgenet_worker_errors_total{{cause=\"{cause}\",worker=\"edge\",zone=\"w\"}}");
        assert_eq!(pop.metric(&series), Some(1.0), "{series}");
        // The same worker and the other one serve the next request.
        assert_eq!(get(&pop, "w.test", "/env").body, "hi\n");
        assert_eq!(get(&pop, "w.test", "/hello/x").status, 200);
    }
    // A body longer than what is gathered before the head streams as the worker writes it
    // (1 MiB, chunked) ...
    let r = get(&pop, "other.w.test", "/big");
    assert_eq!((r.status, r.body.len()), (200, 1 << 20), "{:?}", r.headers);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    // ... and past the response limit, once the head is out, it is cut off: the client sees
    // a truncated body, the log and the metric name the cause.
    let r = get(&pop, "w.test", "/big");
    assert_eq!(r.status, 200);
    assert!(r.body.len() < 1 << 20, "{}", r.body.len());
    assert!(
        r.stderr.contains("(18)"),
        "curl saw a partial body: {}",
        r.stderr
    );
    let series = "edgenet_worker_errors_total{cause=\"response_body\",worker=\"edge\",zone=\"w\"}";
    assert_eq!(pop.metric(series), Some(1.0));
    assert_eq!(get(&pop, "w.test", "/hello/after").status, 200);

    // Under the limit, the worker's requests go out, through the pipeline to the origin.
    let r = get(&pop, "w.test", "/fetch?to=w.test&n=5");
    assert_eq!(r.body, "200,200,200,200,200\n");
    // (the strict run above sent its first five too)
    assert_eq!(origin.hits_for("/"), 10);
    // A host outside allowed_hosts is refused in the worker.
    let r = get(&pop, "w.test", "/fetch?to=example.com&n=1");
    assert_eq!(r.body, "denied\n");
    // Each failure was logged with the worker and the cause.
    let stderr = pop.stderr();
    for cause in ["cpu_time", "memory", "trap", "no_response", "subrequests"] {
        assert!(
            stderr.lines().any(|l| l.contains("worker failed")
                && l.contains("worker=edge")
                && l.contains(&format!("cause=\"{cause}\""))),
            "no log line for {cause}:\n{stderr}"
        );
    }
}

#[test]
fn a_javascript_worker_answers_at_the_edge() {
    let origin = Origin::start("o1");
    let workers = format!(
        "\n[[zones.workers]]\nname = \"hello-js\"\ncomponent = \"{}\"\nroutes = [\"/js/*\"]\n",
        js_component().display()
    );
    let pop = Pop::start(&zone("j", &["j.test"], &[origin.addr()], &workers));
    for i in 0..3 {
        let r = get(&pop, "j.test", &format!("/js/{i}?q=1"));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, format!("hello from js: /js/{i}?q=1\n"));
        assert_eq!(r.header("x-worker"), Some("hello-js"));
    }
    assert_eq!(origin.hits(), 0);
}

#[test]
fn a_bad_component_is_refused_at_deploy() {
    let origin = Origin::start("o1");
    let dir = TempDir::new("workers-bad");
    let bad = dir.0.join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0").unwrap();
    let good = hello_rust();
    let with = |component: &Path| {
        format!(
            "\n[[zones.workers]]\nname = \"w1\"\ncomponent = \"{}\"\nroutes = [\"/*\"]\n",
            component.display()
        )
    };

    // At start: the node does not start, and says which worker and why.
    let config = dir.0.join("edgenet.toml");
    let zones = zone("b", &["b.test"], &[origin.addr()], &with(&bad));
    let text = support::config_text(
        support::free_port(),
        support::free_port(),
        support::free_port(),
        &dir.0.join("access.log"),
        &zones,
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgenet"))
        .args(["pop", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("zones[0].workers[0] (\"w1\")")
            && stderr.contains("is not a usable wasi:http/proxy component"),
        "{stderr}"
    );

    // On reload: refused, the running worker keeps serving.
    let pop = Pop::start(&zone("b", &["b.test"], &[origin.addr()], &with(&good)));
    assert_eq!(get(&pop, "b.test", "/a").body, "hello from wasm: /a\n");
    let text = std::fs::read_to_string(&pop.config).unwrap();
    let text = text.replace(&good.display().to_string(), &bad.display().to_string());
    std::fs::write(&pop.config, text).unwrap();
    pop.signal("HUP");
    assert!(
        eventually(Duration::from_secs(30), || pop
            .stderr()
            .contains("is not a usable wasi:http/proxy component")),
        "{}",
        pop.stderr()
    );
    assert_eq!(get(&pop, "b.test", "/a").body, "hello from wasm: /a\n");
}

#[test]
fn a_component_is_compiled_in_another_process_and_loads_here() {
    let wasm = hello_rust();
    let cache = TempDir::new("worker-compile");
    let rt = Runtime::new(&cache.0, 8, 32 << 20).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_edgenet"));

    let artifact = rt.compile_elsewhere(exe, &wasm).unwrap();
    assert_eq!(artifact, rt.artifact_path(&std::fs::read(&wasm).unwrap()));
    assert!(artifact.exists());
    rt.load(&artifact, Limits::default())
        .expect("an artifact from the compile process loads in the node's engine");

    let bad = cache.0.join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0").unwrap();
    let err = rt.compile_elsewhere(exe, &bad).unwrap_err();
    assert_eq!(err.cause(), "bad_component");
    assert!(
        err.to_string()
            .starts_with("is not a usable wasi:http/proxy component: "),
        "{err}"
    );
}
