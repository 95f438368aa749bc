//! Smart routing on an emulated topology: network namespaces with userspace delay relays
//! (`tests/network/smart.py`, shared with `bench/network.sh`). A PoP whose direct path to the
//! origin is slow (200 ms) relays through another PoP (20 ms + 60 ms) once the backbone has
//! measured it, returns to direct when the relay's path slows, and survives the relay dying.
//! Needs root for the namespaces: without it, it skips with a printed reason, and under
//! `CI=true` fails.

mod support;

#[test]
fn smart_routing_picks_the_relay_and_returns_to_direct() {
    support::rig_scenario("tests/network/smart.py", "test");
}
