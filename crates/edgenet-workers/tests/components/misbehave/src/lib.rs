//! A test worker that misbehaves on request (see Cargo.toml): it spins, hoards memory,
//! panics, answers nothing, reads slow bodies, reports its environment, sends requests, and
//! rewrites what its zone's origin answers.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

/// One GET to http://AUTHORITY/: the status, or `denied` / `error`.
fn fetch(authority: &str) -> String {
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_scheme(Some(&Scheme::Http));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some("/"));
    let future = match outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(ErrorCode::HttpRequestDenied) => return "denied".into(),
        Err(_) => return "error".into(),
    };
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(resp))) => resp.status().to_string(),
        Some(Ok(Err(ErrorCode::HttpRequestDenied))) => "denied".into(),
        _ => "error".into(),
    }
}

/// Fetches the same URL (scheme included) from the zone, through the PoP's pipeline, with an
/// `x-from-worker`
/// request header, and answers with its status and headers plus `x-worker: rewritten`, the
/// body in upper case.
fn rewrite(request: &IncomingRequest, out: ResponseOutparam) {
    let headers = Fields::new();
    let _ = headers.set("x-from-worker", &[b"1".to_vec()]);
    let req = OutgoingRequest::new(headers);
    let _ = req.set_scheme(request.scheme().as_ref());
    let _ = req.set_authority(request.authority().as_deref());
    let _ = req.set_path_with_query(request.path_with_query().as_deref());
    let future = outgoing_handler::handle(req, None).expect("allowed");
    future.subscribe().block();
    let resp = future.get().unwrap().unwrap().expect("a response");
    let mut body = Vec::new();
    let incoming = resp.consume().unwrap();
    let stream = incoming.stream().unwrap();
    while let Ok(chunk) = stream.blocking_read(65536) {
        body.extend_from_slice(&chunk);
    }
    drop(stream);
    let fields = Fields::new();
    for (name, value) in resp.headers().entries() {
        if name != "content-length" {
            let _ = fields.append(&name, &value);
        }
    }
    let _ = fields.set("x-worker", &[b"rewritten".to_vec()]);
    let answer = OutgoingResponse::new(fields);
    let _ = answer.set_status_code(resp.status());
    let out_body = answer.body().unwrap();
    ResponseOutparam::set(out, Ok(answer));
    let w = out_body.write().unwrap();
    for chunk in body.to_ascii_uppercase().chunks(4096) {
        w.blocking_write_and_flush(chunk).unwrap();
    }
    drop(w);
    OutgoingBody::finish(out_body, None).unwrap();
}

wasip2::http::proxy::export!(Misbehave);

struct Misbehave;

impl wasip2::exports::http::incoming_handler::Guest for Misbehave {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        match path.as_str() {
            "/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/trap" => panic!("asked to trap"),
            "/silent" => return,
            p if p.starts_with("/obj/") || p == "/echo" => return rewrite(&request, out),
            _ => {}
        }
        // /read: waits for the whole request body (waiting, not CPU time).
        let text = if path == "/read" {
            let body = request.consume().unwrap();
            let stream = body.stream().unwrap();
            let mut n = 0;
            while let Ok(chunk) = stream.blocking_read(65536) {
                n += chunk.len();
            }
            format!("read {n} bytes\n")
        } else if let Some(query) = path.strip_prefix("/fetch?") {
            // /fetch?to=HOST:PORT&n=K: K requests to http://HOST:PORT/, one outcome each;
            // with strict=1 a refused request is a panic (an uncaught error).
            let (mut to, mut n, mut strict) = ("", 1, false);
            for kv in query.split('&') {
                match kv.split_once('=') {
                    Some(("to", v)) => to = v,
                    Some(("n", v)) => n = v.parse().unwrap_or(1),
                    Some(("strict", v)) => strict = v == "1",
                    _ => {}
                }
            }
            let outcomes: Vec<String> = (0..n)
                .map(|_| fetch(to))
                .inspect(|o| assert!(!(strict && o == "denied"), "request refused"))
                .collect();
            format!("{}\n", outcomes.join(","))
        } else if path == "/big" {
            "x".repeat(1 << 20)
        } else if path == "/ip" {
            let ip = request.headers().get("cf-connecting-ip");
            format!(
                "{}\n",
                ip.first()
                    .map_or("none".into(), |v| String::from_utf8_lossy(v).into_owned())
            )
        } else if path == "/env" {
            format!(
                "{}\n",
                std::env::var("GREETING").unwrap_or_else(|_| "unset".into())
            )
        } else {
            "fine\n".to_string()
        };
        let resp = OutgoingResponse::new(Fields::new());
        let body = resp.body().unwrap();
        ResponseOutparam::set(out, Ok(resp));
        let stream = body.write().unwrap();
        for chunk in text.as_bytes().chunks(4096) {
            stream.blocking_write_and_flush(chunk).unwrap();
        }
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}
