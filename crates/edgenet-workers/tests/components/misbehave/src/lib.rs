//! A test worker that misbehaves on request (see Cargo.toml): it spins, hoards memory,
//! panics, answers nothing, reads slow bodies, reports its environment and sends requests.

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
            // /fetch?to=HOST:PORT&n=K: K requests to http://HOST:PORT/, one outcome each.
            let (mut to, mut n) = ("", 1);
            for kv in query.split('&') {
                match kv.split_once('=') {
                    Some(("to", v)) => to = v,
                    Some(("n", v)) => n = v.parse().unwrap_or(1),
                    _ => {}
                }
            }
            let outcomes: Vec<String> = (0..n).map(|_| fetch(to)).collect();
            format!("{}\n", outcomes.join(","))
        } else if path == "/env" {
            format!("{}\n", std::env::var("GREETING").unwrap_or_else(|_| "unset".into()))
        } else {
            "fine\n".to_string()
        };
        let resp = OutgoingResponse::new(Fields::new());
        let body = resp.body().unwrap();
        ResponseOutparam::set(out, Ok(resp));
        let stream = body.write().unwrap();
        stream.blocking_write_and_flush(text.as_bytes()).unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}
