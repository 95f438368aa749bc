//! A worker with state at the edge. It opens the KV namespace its script binds as `KV`
//! (`edgenet worker deploy kv_rust.wasm --kv KV=NAMESPACE ...`) and answers:
//!
//! - `GET /kv/KEY`: the value (200), or 404;
//! - `PUT /kv/KEY` with the value as the body: 204 once written (429 within a second of the
//!   last write to the key: one write per key per second);
//! - `DELETE /kv/KEY`: 204;
//! - `POST /kv/KEY/incr?by=N`: the counter's new value;
//! - `GET /keys?cursor=N`: the namespace's keys, one per line, then `cursor: N` when there
//!   are more;
//! - `GET /bench?key=KEY&n=N`: reads KEY N times and answers the nanoseconds one read took
//!   (the guest's view: the host call and the copy of the value in).
//!
//! Reads are the PoP's local copy; writes go through the control plane and reach every PoP
//! within about a second (eventually consistent: a read at another PoP may be older).

wit_bindgen::generate!({ world: "worker", path: "wit", generate_all });

use wasi::keyvalue::{atomics, store};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Kv);

struct Kv;

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(status);
    let outgoing = resp.body().unwrap();
    ResponseOutparam::set(out, Ok(resp));
    let stream = outgoing.write().unwrap();
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).unwrap();
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).unwrap();
}

/// The error's status and text: the per-key write limit is 429, the rest 503.
fn failed(e: store::Error) -> (u16, Vec<u8>) {
    match e {
        store::Error::NoSuchStore => (500, b"no KV namespace is bound as KV\n".to_vec()),
        store::Error::AccessDenied => (403, b"access denied\n".to_vec()),
        store::Error::Other(why) if why.contains("per key") => {
            (429, format!("{why}\n").into_bytes())
        }
        store::Error::Other(why) => (503, format!("{why}\n").into_bytes()),
    }
}

fn body_of(request: IncomingRequest) -> Vec<u8> {
    let Ok(body) = request.consume() else {
        return Vec::new();
    };
    let stream = body.stream().unwrap();
    let mut out = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    drop(stream);
    IncomingBody::finish(body);
    out
}

/// `%XX` escapes decoded.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn handle(request: IncomingRequest) -> Result<(u16, Vec<u8>), store::Error> {
    let target = request.path_with_query().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let method = request.method();
    if !(path == "/keys" || path == "/bench" || path.starts_with("/kv/")) {
        return Ok((404, b"try /kv/KEY, /keys or /bench\n".to_vec()));
    }
    let bucket = store::open("KV")?;
    if path == "/keys" {
        let cursor = param(query, "cursor").and_then(|c| c.parse().ok());
        let page = bucket.list_keys(cursor)?;
        let mut text = page.keys.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        if let Some(next) = page.cursor {
            text.push_str(&format!("cursor: {next}\n"));
        }
        return Ok((200, text.into_bytes()));
    }
    if path == "/bench" {
        let key = decode(param(query, "key").unwrap_or("bench"));
        let n: u64 = param(query, "n")
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000)
            .max(1);
        let start = wasip2::clocks::monotonic_clock::now();
        let mut found = 0;
        for _ in 0..n {
            found += u64::from(bucket.get(&key)?.is_some());
        }
        let ns = (wasip2::clocks::monotonic_clock::now() - start) / n;
        return Ok((
            200,
            format!("ns_per_read={ns} found={found}\n").into_bytes(),
        ));
    }
    let rest = path.strip_prefix("/kv/").unwrap_or_default();
    if let Some(key) = rest.strip_suffix("/incr") {
        let by = param(query, "by").and_then(|n| n.parse().ok()).unwrap_or(1);
        let n = atomics::increment(&bucket, &decode(key), by)?;
        return Ok((200, format!("{n}\n").into_bytes()));
    }
    let key = decode(rest);
    match method {
        Method::Get => Ok(match bucket.get(&key)? {
            Some(v) => (200, v),
            None => (404, format!("no key {key:?}\n").into_bytes()),
        }),
        Method::Put => {
            bucket.set(&key, &body_of(request))?;
            Ok((204, Vec::new()))
        }
        Method::Delete => {
            bucket.delete(&key)?;
            Ok((204, Vec::new()))
        }
        _ => Ok((405, b"GET, PUT or DELETE\n".to_vec())),
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Kv {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = handle(request).unwrap_or_else(failed);
        respond(out, status, &body);
    }
}
