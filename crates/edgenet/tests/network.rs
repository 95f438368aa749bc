//! Smart routing on an emulated topology: network namespaces with userspace delay relays
//! (`tests/network/smart.py`, shared with `bench/network.sh`). A PoP whose direct path to the
//! origin is slow (200 ms) relays through another PoP (20 ms + 60 ms) once the backbone has
//! measured it, returns to direct when the relay's path slows, and survives the relay dying.
//! Needs root for the namespaces: without it, it skips with a printed reason, and under
//! `CI=true` fails.

mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn smart_routing_picks_the_relay_and_returns_to_direct() {
    if !support::needs_root("network::smart_routing", "network namespaces") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/network/smart.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["test", "--edgenet", env!("CARGO_BIN_EXE_edgenet")])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("scenario test: passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
