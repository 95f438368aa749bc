//! Request heads from the network, parsed as Pingora does (httparse), then through the edge's
//! request checks: never a panic, and a head over the limit is always refused.
#![no_main]

use edgenet_http::request_check::{check, head_size, raw_has_content_length, Malformed};
use edgenet_http::host::host_without_port;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = raw_has_content_length(data);
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        return;
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return;
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let version = if version == 0 {
        http::Version::HTTP_10
    } else {
        http::Version::HTTP_11
    };
    let mut map = http::HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) else {
            return;
        };
        map.append(name, value);
    }
    let size = head_size(&method, path.len(), &map);
    for limit in [64, 1024, 32 * 1024] {
        let verdict = check(&method, path.len(), version, &map, limit);
        if size > limit {
            assert_eq!(verdict, Err(Malformed::HeadTooLarge));
        }
        if let Ok(()) = verdict {
            assert!(map.get_all(http::header::CONTENT_LENGTH).iter().count() <= 1);
        }
    }
    if let Some(host) = map.get(http::header::HOST).and_then(|h| h.to_str().ok()) {
        // The routed name is always a prefix of what the client sent.
        assert!(host.starts_with(host_without_port(host)));
    }
});
