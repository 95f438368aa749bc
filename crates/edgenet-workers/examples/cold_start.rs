//! The cold-start figures of bench/workers.sh, in-process: a fresh instance per request
//! (instantiate from the pre-linked template, handle one GET, collect the response), timed one
//! after another; then private memory per live instance, with `LIVE` requests held open inside
//! a worker that waits for its request body.
//!
//! Usage: cold_start HELLO.wasm WAITER.wasm [REQUESTS] [LIVE]
//! Prints one JSON object: {"median_us", "p99_us", "private_kib_per_instance", ...}.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgenet_workers::{Limits, Runtime};
use http_body_util::BodyExt;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

/// A body that counts the instances reading it and ends when `end` fires.
struct Held {
    first: bool,
    reading: Arc<AtomicUsize>,
    end: tokio::sync::oneshot::Receiver<()>,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = ErrorCode;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, ErrorCode>>> {
        if self.first {
            self.first = false;
            self.reading.fetch_add(1, Ordering::SeqCst);
        }
        match Pin::new(&mut self.end).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Private (unshared) memory of this process in KiB, from /proc/self/smaps_rollup.
fn private_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    text.lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

fn get(path: &str) -> hyper::Request<edgenet_workers::RequestBody> {
    hyper::Request::builder()
        .uri(format!("http://bench.test{path}"))
        .body(edgenet_workers::request_body(Bytes::new()))
        .unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let hello = std::fs::read(&args[1]).unwrap();
    let waiter = std::fs::read(&args[2]).unwrap();
    let requests: usize = args.get(3).map_or(5000, |a| a.parse().unwrap());
    let live: usize = args.get(4).map_or(1000, |a| a.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("edgenet-cold-start-{}", std::process::id()));
    let rt = Runtime::new(&dir, live as u32 + 16, 128 << 20).unwrap();
    let worker = rt
        .load(&rt.compile(&hello).unwrap(), Limits::default())
        .unwrap();

    // Cold start: every request is a new instance.
    for _ in 0..200 {
        worker.handle(get("/warm")).await.unwrap();
    }
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests {
        let t = Instant::now();
        let resp = worker.handle(get(&format!("/{i}"))).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(resp.status(), 200);
    }
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let median = us(times[times.len() / 2]);
    let p99 = us(times[times.len() * 99 / 100]);

    // Memory: `live` instances at once, each blocked reading its request body.
    let waiter = rt
        .load(&rt.compile(&waiter).unwrap(), Limits::default())
        .unwrap();
    let warm = waiter.handle(get("/read")).await.unwrap();
    assert_eq!(warm.status(), 200);
    let before = private_kib();
    let reading = Arc::new(AtomicUsize::new(0));
    let mut ends = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..live {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ends.push(tx);
        let body = Held {
            first: true,
            reading: reading.clone(),
            end: rx,
        };
        let req = hyper::Request::builder()
            .method("POST")
            .uri("http://bench.test/read")
            .body(body.boxed())
            .unwrap();
        let w = waiter.clone();
        tasks.push(tokio::spawn(async move { w.handle(req).await }));
    }
    while reading.load(Ordering::SeqCst) < live {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = private_kib();
    drop(ends);
    for t in tasks {
        let resp = t.await.unwrap().unwrap();
        assert_eq!(resp.body().as_ref(), b"read 0 bytes\n");
    }
    let per_instance = (during.saturating_sub(before)) as f64 / live as f64;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{{\"median_us\": {median:.1}, \"p99_us\": {p99:.1}, \"private_kib_per_instance\": {per_instance:.1}, \"requests\": {requests}, \"live\": {live}}}"
    );
}
