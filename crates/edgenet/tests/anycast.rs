//! Anycast interop in network namespaces: the real `edgenet pop` binary in PoP namespaces
//! announcing to a real router (BIRD 2, GoBGP, FRR) and a client reaching the anycast address.
//!
//! The namespaces, links and daemons are set up by `tests/anycast/rig.py` (shared with
//! `bench/anycast.sh`); each scenario there asserts what a user sees (which PoP answers, the
//! router's table, the admin API) and exits non-zero on the first failure. These tests need root
//! (network namespaces) and skip with a printed reason without it.

mod support;

use std::path::Path;
use std::process::Command;

fn scenario(name: &str) {
    if !support::needs_root(&format!("anycast::{name}"), "network namespaces") {
        return;
    }
    let rig = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/anycast/rig.py");
    let out = Command::new("python3")
        .arg(&rig)
        .arg(name)
        .arg("--edgenet")
        .arg(env!("CARGO_BIN_EXE_edgenet"))
        .env("RUST_LOG", "info")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "scenario {name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("scenario {name}: passed")),
        "scenario {name} did not finish:\n{stdout}"
    );
}

/// Three PoPs and BIRD: preferred PoP by MED over IPv4 and IPv6 with a 4-octet AS, drain and
/// undrain, a failing health check, a silent failure caught by BFD, a killed node, SIGTERM.
#[test]
fn bird_router_moves_traffic_between_pops() {
    scenario("bird");
}

/// TCP MD5 against BIRD: matching keys give a session, mismatched keys none.
#[test]
fn md5_keys_against_bird() {
    scenario("md5");
}

/// GoBGP as the router: session, announce, withdraw, a received route through the filter.
#[test]
fn gobgp_router_interop() {
    scenario("gobgp");
}

/// FRR as the router: session, announce, withdraw, a received route through the filter.
#[test]
fn frr_router_interop() {
    scenario("frr");
}
