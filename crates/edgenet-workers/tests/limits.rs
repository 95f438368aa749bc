//! Workers against real components built for wasm32-wasip2 (examples/workers/hello-rust and
//! tests/components/misbehave): a response from the edge, each limit exceeded giving its
//! error while the next request is served, a corrupt component refused at compile time, and
//! the artifact cache.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgenet_workers::{Limits, Pipeline, Runtime, WorkerError};
use http_body_util::{BodyExt, Empty};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

/// Builds a component crate for wasm32-wasip2 and returns the .wasm.
fn build(dir: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let out = std::process::Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building {name} (needs `rustup target add wasm32-wasip2`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(format!("target/wasm32-wasip2/release/{name}.wasm"))
}

fn get(path: &str) -> hyper::Request<impl hyper::body::Body<Data = Bytes, Error = ErrorCode>> {
    hyper::Request::builder()
        .uri(format!("http://w.test{path}"))
        .body(Empty::<Bytes>::new().map_err(|never| -> ErrorCode { match never {} }))
        .unwrap()
}

fn cache_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgenet-workers-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answers_from_the_edge_and_the_artifact_is_cached() {
    let wasm = std::fs::read(build("../../examples/workers/hello-rust", "hello_rust")).unwrap();
    let dir = cache_dir("hello");
    let rt = Runtime::new(&dir, 16, 64 << 20).unwrap();
    let artifact = rt.compile(&wasm).unwrap();
    assert_eq!(artifact, rt.artifact_path(&wasm));
    let modified = std::fs::metadata(&artifact).unwrap().modified().unwrap();
    assert_eq!(rt.compile(&wasm).unwrap(), artifact, "cached");
    assert_eq!(
        std::fs::metadata(&artifact).unwrap().modified().unwrap(),
        modified
    );
    let worker = rt.load(&artifact, Limits::default()).unwrap();
    let resp = worker.handle(get("/hi?x=1")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.body().as_ref(), b"hello from wasm: /hi?x=1\n");
    // A fresh instance per request: many in a row, concurrently.
    let t = Instant::now();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let w = worker.clone();
            tokio::spawn(async move { w.handle(get(&format!("/{i}"))).await.unwrap() })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(
            h.await.unwrap().body().as_ref(),
            format!("hello from wasm: /{i}\n").as_bytes()
        );
    }
    println!("200 requests in {:?}", t.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_gives_its_error_and_the_worker_keeps_serving() {
    let wasm = std::fs::read(build("tests/components/misbehave", "misbehave")).unwrap();
    let dir = cache_dir("limits");
    let rt = Runtime::new(&dir, 16, 64 << 20).unwrap();
    let limits = Limits {
        cpu_time: Duration::from_millis(50),
        memory_bytes: 16 << 20,
        wall_time: Duration::from_secs(5),
        ..Limits::default()
    };
    let worker = rt.load(&rt.compile(&wasm).unwrap(), limits).unwrap();
    let t = Instant::now();
    match worker.handle(get("/loop")).await {
        Err(WorkerError::CpuTime(d)) => assert_eq!(d, limits.cpu_time),
        other => panic!("infinite loop: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stopped after {:?}",
        t.elapsed()
    );
    match worker.handle(get("/grow")).await {
        Err(e @ WorkerError::Memory(_)) => assert_eq!(e.cause(), "memory"),
        other => panic!("memory bomb: {other:?}"),
    }
    assert!(matches!(
        worker.handle(get("/trap")).await,
        Err(WorkerError::Trap(_))
    ));
    assert!(matches!(
        worker.handle(get("/silent")).await,
        Err(WorkerError::NoResponse)
    ));
    // Waiting for a slow request body is not CPU time: 3 chunks 40 ms apart (120 ms in all,
    // over the 50 ms budget) are read to the end.
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, ErrorCode>::new(4);
    let slow = tokio::spawn(async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            tx.send_data(Bytes::from_static(b"0123456789"))
                .await
                .unwrap();
        }
    });
    let req = hyper::Request::builder()
        .method("POST")
        .uri("http://w.test/read")
        .body(body)
        .unwrap();
    let t = Instant::now();
    let read = worker.handle(req).await.unwrap();
    assert_eq!(read.body().as_ref(), b"read 30 bytes\n");
    assert!(t.elapsed() >= Duration::from_millis(100), "it waited");
    slow.await.unwrap();
    // A response body over the limit.
    let small = rt
        .load(
            &rt.compile(&wasm).unwrap(),
            Limits {
                response_body_bytes: 64 << 10,
                ..limits
            },
        )
        .unwrap();
    match small.handle(get("/big")).await {
        Err(e @ WorkerError::ResponseTooLarge(_)) => assert_eq!(e.cause(), "response_body"),
        other => panic!("large body: {:?}", other.map(|r| r.body().len())),
    }
    assert_eq!(
        worker.handle(get("/big")).await.unwrap().body().len(),
        1 << 20
    );
    // Unaffected: the next request is served.
    let ok = worker.handle(get("/ok")).await.unwrap();
    assert_eq!(
        (ok.status().as_u16(), ok.body().as_ref()),
        (200, &b"fine\n"[..])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_reach_the_worker() {
    let wasm = std::fs::read(build("tests/components/misbehave", "misbehave")).unwrap();
    let dir = cache_dir("env");
    let rt = Runtime::new(&dir, 4, 16 << 20).unwrap();
    let artifact = rt.compile(&wasm).unwrap();
    let plain = rt.load(&artifact, Limits::default()).unwrap();
    assert_eq!(
        plain.handle(get("/env")).await.unwrap().body().as_ref(),
        b"unset\n"
    );
    let greeting = vec![("GREETING".to_string(), "hello from the zone".to_string())];
    let configured = plain.with_env(greeting);
    let resp = configured.handle(get("/env")).await.unwrap();
    assert_eq!(resp.body().as_ref(), b"hello from the zone\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny HTTP/1.1 server on loopback answering 204 to every request; its address and how
/// many requests it has served.
async fn counting_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_requests_only_to_allowed_hosts_and_at_most_the_limit() {
    let wasm = std::fs::read(build("tests/components/misbehave", "misbehave")).unwrap();
    let dir = cache_dir("fetch");
    let rt = Runtime::new(&dir, 4, 16 << 20).unwrap();
    let (addr, hits) = counting_server().await;
    let limits = Limits {
        subrequests: 2,
        ..Limits::default()
    };
    let artifact = rt.compile(&wasm).unwrap();
    let to = format!("/fetch?to={addr}&n=3");
    // Not allowed: nothing is sent.
    let closed = rt.load(&artifact, limits).unwrap();
    let r = closed.handle(get(&to)).await.unwrap();
    assert_eq!(r.body().as_ref(), b"denied,denied,denied\n");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Allowed: two go out, the third is over the limit.
    let open = rt
        .load(&artifact, limits)
        .unwrap()
        .with_allowed_hosts(vec!["127.0.0.1".into()], Pipeline::Tcp(addr));
    let r = open.handle(get(&to)).await.unwrap();
    assert_eq!(r.body().as_ref(), b"204,204,denied\n");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_corrupt_or_foreign_component_is_refused_at_compile() {
    let dir = cache_dir("bad");
    let rt = Runtime::new(&dir, 4, 16 << 20).unwrap();
    let err = rt.compile(b"\0asm\x0d\0\x01\0garbage").unwrap_err();
    assert_eq!(err.cause(), "bad_component", "{err}");
    // A core module, not a component.
    let err = rt.compile(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("is not a usable wasi:http/proxy component"),
        "{err}"
    );
    assert!(
        !rt.artifact_path(b"\0asm\x01\0\0\0").exists(),
        "nothing cached"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request body that tells when the guest first reads it, and ends when `end` fires.
struct Held {
    reading: Option<tokio::sync::oneshot::Sender<()>>,
    end: tokio::sync::oneshot::Receiver<()>,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = ErrorCode;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, ErrorCode>>> {
        use std::future::Future;
        if let Some(tx) = self.reading.take() {
            let _ = tx.send(());
        }
        std::pin::Pin::new(&mut self.end).poll(cx).map(|_| None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_instance_pool_are_refused_as_busy() {
    let wasm = std::fs::read(build("tests/components/misbehave", "misbehave")).unwrap();
    let dir = cache_dir("busy");
    let rt = Runtime::new(&dir, 1, 16 << 20).unwrap();
    let worker = rt
        .load(&rt.compile(&wasm).unwrap(), Limits::default())
        .unwrap();
    // One request holds the only instance while it waits for its body.
    let (reading_tx, reading) = tokio::sync::oneshot::channel();
    let (end, end_rx) = tokio::sync::oneshot::channel();
    let req = hyper::Request::builder()
        .method("POST")
        .uri("http://w.test/read")
        .body(Held {
            reading: Some(reading_tx),
            end: end_rx,
        })
        .unwrap();
    let w = worker.clone();
    let held = tokio::spawn(async move { w.handle(req).await });
    reading.await.expect("the guest reads its body");
    let busy = worker.handle(get("/ok")).await.unwrap_err();
    assert!(matches!(busy, WorkerError::Busy), "{busy:?}");
    assert_eq!(busy.cause(), "instances");
    drop(end);
    assert_eq!(
        held.await.unwrap().unwrap().body().as_ref(),
        b"read 0 bytes\n"
    );
    // The slot is free again.
    assert_eq!(
        worker.handle(get("/ok")).await.unwrap().body().as_ref(),
        b"fine\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
