//! Interconnect objects as the API will receive them (operator and customer text): sites,
//! CNIs and cloud circuits parse or are refused without a panic; validation names a field for
//! every problem, and a valid object's JSON parses back to the same object.
#![no_main]

use edgenet_interconnect::cloud::CloudCircuit;
use edgenet_interconnect::cni::CniSpec;
use edgenet_interconnect::dataplane::Dataplane;
use edgenet_interconnect::site::Site;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
