//! Bodies sent to the control plane's API (operator text), lines of its configuration stream
//! (network bytes at the PoP) and report batches (network bytes from PoPs): parsing and
//! validation never panic; a refused zone or PoP names at least one problem; a valid zone's
//! canonical form validates again; a batch that parses re-encodes to one that parses the same. Validation
//! runs against an environment without files or names (`Offline`).
#![no_main]

use edgenet_config::env::Offline;
use edgenet_protocol::validate::{validate_pop, validate_zone};
use edgenet_protocol::{Objects, Report, StreamMessage};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = Report::parse_lines(data) {
        let again = Report::parse_lines(&Report::lines(&batch)).unwrap();
        assert_eq!(again, batch);
    }
    if let Ok(msg) = serde_json::from_slice::<StreamMessage>(data) {
        // A line a PoP takes applies, and what it holds saves and reads back the same.
        let mut objects = Objects::default();
        objects.apply(msg);
        let saved = serde_json::to_vec(&objects).unwrap();
        let again: Objects = serde_json::from_slice(&saved).unwrap();
        assert_eq!(serde_json::to_vec(&again).unwrap(), saved);
        let _ = objects.objects.zones();
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match validate_pop(&v, None) {
        Ok((_, canonical)) => assert!(validate_pop(&canonical, None).is_ok()),
        Err(problems) => assert!(!problems.is_empty()),
    }
    match validate_zone(&v, None, &[], &Offline) {
        Ok((name, canonical)) => {
            let again = validate_zone(&canonical, Some(&name), &[], &Offline);
            assert!(again.is_ok(), "{canonical} -> {again:?}");
        }
        Err(problems) => assert!(!problems.is_empty()),
    }
});
