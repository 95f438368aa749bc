//! Bodies sent to the control plane's API (operator text) and lines of its configuration
//! stream (network bytes at the PoP): parsing and validation never panic; a refused zone or
//! PoP names at least one problem; a valid zone's canonical form validates again.
#![no_main]

use std::collections::BTreeMap;

use edgenet_control::stream::StreamMessage;
use edgenet_control::validate::{validate_pop, validate_zone};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Validation resolves origin names and reads certificate files; keep to bodies that need
/// neither DNS nor the file system.
fn offline(v: &Value) -> bool {
    if v.get("tls").is_some() || v.pointer("/origins/tls").is_some() {
        return false;
    }
    match v.pointer("/origins/servers").and_then(Value::as_array) {
        Some(servers) => servers.iter().all(|s| {
            s.get("address")
                .and_then(Value::as_str)
                .is_none_or(|a| a.parse::<std::net::SocketAddr>().is_ok())
        }),
        None => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<StreamMessage>(data);
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match validate_pop(&v, None) {
        Ok((_, canonical)) => assert!(validate_pop(&canonical, None).is_ok()),
        Err(problems) => assert!(!problems.is_empty()),
    }
    if offline(&v) {
        match validate_zone(&v, None, &BTreeMap::new()) {
            Ok((name, canonical)) => {
                let again = validate_zone(&canonical, Some(&name), &BTreeMap::new());
                assert!(again.is_ok(), "{canonical} -> {again:?}");
            }
            Err(problems) => assert!(!problems.is_empty()),
        }
    }
});
