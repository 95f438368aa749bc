//! Configuration text from an operator or the control plane: parsing and validation never
//! panic, and every refusal names a field.
#![no_main]

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
    // Validation reads certificate files and resolves origin names; keep the fuzzer to inputs
    // that touch neither the file system outside an empty directory nor DNS.
    let local_files = raw.zones.iter().all(|z| {
        let tls_ok = z.tls.as_ref().is_none_or(|t| plain_name(&t.cert) && plain_name(&t.key));
        let ca_ok = z
            .origins
            .tls
            .as_ref()
            .and_then(|t| t.ca.as_ref())
            .is_none_or(|ca| plain_name(ca));
        let ips = z
            .origins
            .servers
            .iter()
            .all(|s| s.address.parse::<std::net::SocketAddr>().is_ok() || !s.address.contains(':'));
        let workers_ok = z.workers.iter().all(|w| {
            plain_name(&w.component) && w.secrets.values().all(|p| plain_name(p))
        });
        tls_ok && ca_ok && ips && workers_ok
    }) && raw.workers.artifact_dir.as_ref().is_none_or(|p| plain_name(p));
    if local_files {
        let empty = std::env::temp_dir().join("edgenet-fuzz-empty");
        let _ = std::fs::create_dir_all(&empty);
        if let Err(errors) = edgenet_config::validate(&raw, &empty) {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(!e.path.is_empty() && !e.reason.is_empty(), "{e:?}");
            }
        }
    }
});

fn plain_name(p: &std::path::Path) -> bool {
    let s = p.to_string_lossy();
    !s.is_empty() && !s.contains('/') && s != "." && s != ".."
}
