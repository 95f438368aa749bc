//! Configuration text from an operator or the control plane: parsing and validation never
//! panic, and every refusal names a field. Validation runs against an environment without
//! files or names (`Offline`), so every input is fuzzed and nothing touches the machine.
#![no_main]

use edgenet_config::env::Offline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let raw = match edgenet_config::parse_toml(text, "<fuzz>") {
        Ok(raw) => raw,
        Err(e) => {
            assert!(!e.lines().is_empty());
            return;
        }
    };
    if let Err(errors) = edgenet_config::validate(&raw, std::path::Path::new("/fuzz"), &Offline) {
        assert!(!errors.is_empty());
        for e in errors {
            assert!(!e.path.is_empty() && !e.reason.is_empty(), "{e:?}");
        }
    }
});
