//! Interconnect objects as the API receives them (operator and customer text): sites, CNIs,
//! cloud circuits and maintenance events, and the optics levels a PoP reads (a level file,
//! `ethtool -m` output), parse or are refused without a panic; validation
//! names a field for every problem (an event's times anywhere in i64 milliseconds, against a
//! site with holidays in a real time zone), and a valid object's JSON parses back to the same
//! object.
#![no_main]

use edgenet_interconnect::cloud::CloudCircuit;
use edgenet_interconnect::cni::CniSpec;
use edgenet_interconnect::dataplane::Dataplane;
use edgenet_interconnect::maintenance::{self, Event};
use edgenet_interconnect::optics;
use edgenet_interconnect::site::Site;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // A level file and `ethtool -m` output: a level in range, or a reason.
        let in_range = |v: f64| (optics::MIN_DBM..=optics::MAX_DBM).contains(&v);
        if let Ok(v) = optics::parse_level_file(text) {
            assert!(in_range(v));
        }
        assert!(optics::parse_ethtool_module(text).is_none_or(in_range));
    }
    if let Ok(site) = serde_json::from_slice::<Site>(data) {
        let problems = site.validate();
        assert!(problems.iter().all(|p| !p.field.is_empty()));
        let again: Site = serde_json::from_slice(&serde_json::to_vec(&site).unwrap()).unwrap();
        assert_eq!(again, site);
    }
    if let Ok(cni) = serde_json::from_slice::<CniSpec>(data) {
        for dp in [Dataplane::V1, Dataplane::V2] {
            let problems = cni.validate(dp);
            assert!(problems.iter().all(|p| !p.field.is_empty()));
            if let Some(key) = &cni.md5_key {
                // A key is never echoed in an error.
                assert!(key.len() < 3 || problems.iter().all(|p| !p.reason.contains(key.as_str())));
            }
        }
    }
    if let Ok(c) = serde_json::from_slice::<CloudCircuit>(data) {
        assert!(c.validate().iter().all(|p| !p.field.is_empty()));
    }
    if let Ok(event) = serde_json::from_slice::<Event>(data) {
        let site: Site = serde_json::from_str(SITE).unwrap();
        let others = [event.clone()];
        assert!(maintenance::validate(&event, &site, &others)
            .iter()
            .all(|p| !p.field.is_empty()));
        let _ = maintenance::earliest_routine_start(&site, event.created_ms);
        let _ = maintenance::due(&others, event.start_ms);
    }
});

const SITE: &str = r#"{"code": "gru-b", "facility": {"name": "SP4", "address": "Rua 85"},
    "timezone": "America/Sao_Paulo", "holidays": ["2026-12-25"], "dataplanes": ["v1"],
    "device_diversity": true, "devices": [{"name": "edge01", "dataplane": "v1"},
    {"name": "edge02", "dataplane": "v1"}]}"#;
