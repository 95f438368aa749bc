//! Origin response headers and purge/rule text through the cache's pure decisions: storage
//! policy, the 304 merge, key rules and purge URL normalization never panic, and a decision to
//! store never outlives the freshness the headers allow by more than the 2^31 s cap.
#![no_main]

use std::time::{Duration, SystemTime};

use edgenet_cache::policy::{decide, merge_not_modified, Decision, ZonePolicy};
use edgenet_cache::purge::normalize_url;
use edgenet_cache::rules::{glob_match, keyed_url_of};
use libfuzzer_sys::fuzz_target;
use pingora_http::ResponseHeader;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let status = lines
        .next()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(200);
    let Ok(mut resp) = ResponseHeader::build(status.clamp(100, 599), None) else {
        return;
    };
    for line in lines.by_ref().take(16) {
        if let Some((k, v)) = line.split_once(':') {
            let _ = resp.append_header(k.trim().to_string(), v.trim());
        }
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for auth in [false, true] {
        if let Decision::Store { fresh_for, .. } =
            decide(&http::Method::GET, auth, &resp, &ZonePolicy::default(), now)
        {
            assert!(fresh_for <= Duration::from_secs(1 << 32));
        }
    }
    let merged = merge_not_modified(&resp, &resp.headers.clone());
    assert_eq!(merged.status, resp.status);
    let rest: Vec<&str> = lines.collect();
    if let [pattern, url, ..] = rest.as_slice() {
        let _ = glob_match(pattern, url);
        let _ = normalize_url(url);
        let _ = keyed_url_of(&[], url);
    }
});
