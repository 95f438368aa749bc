use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

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
