//! Bytes a client sends on an HTTP/2 connection, fed to the frame watcher in pieces of any
//! size: it never panics, finds the same flood wherever the bytes are cut, and a flood's offset
//! lies inside the bytes fed; the frame follower of the server's output ends at frame
//! boundaries exactly where a whole-slice read does.
#![no_main]

use std::time::{Duration, Instant};

use edgenet_http::h2::{Frames, H2Watch, H2_PREFACE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = H2_PREFACE.to_vec();
    bytes.extend_from_slice(rest);
    let t = Instant::now();
    let limit = 10;
    let mut whole = H2Watch::new(limit, t);
    let flood = whole.feed(&bytes, t);
    if let Some(f) = flood {
        assert!(f.at < bytes.len());
    }
    // The same bytes in pieces of `cut` bytes (at least one) find the same flood, at the same
    // place in the stream.
    let step = usize::from(cut).max(1);
    let mut pieces = H2Watch::new(limit, t);
    let mut found = None;
    for (i, chunk) in bytes.chunks(step).enumerate() {
        if let Some(f) = pieces.feed(chunk, t + Duration::from_millis(1)) {
            found = Some((f.kind, (i * step + f.at).min(bytes.len())));
            break;
        }
    }
    match (flood, found) {
        (Some(a), Some((kind, _))) => assert_eq!(a.kind, kind),
        (None, None) => {}
        (a, b) => panic!("whole: {a:?}, in pieces: {b:?}"),
    }
    let mut a = Frames::default();
    a.feed(rest);
    let mut b = Frames::default();
    for chunk in rest.chunks(step) {
        b.feed(chunk);
    }
    assert_eq!(a.between_frames(), b.between_frames());
});
