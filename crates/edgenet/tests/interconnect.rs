//! Interconnects on a PoP, in network namespaces: the real `edgenet control` and `edgenet pop`
//! in a PoP namespace, a customer router (BIRD 2) in another, joined by a veth cross-connect.
//!
//! `tests/interconnect/rig.py` (shared with `bench/interconnect.sh`) sets it up and asserts what
//! a user sees at each step: the /31 and MTU on the port (`ip -n`), BIRD's session with MD5 (a
//! wrong key never establishes), the filter's accepted and refused routes, the Cease on
//! max-prefix as BIRD logs it, BFD, the status through the API when the veth goes down or the
//! light is low, the peering routes in the PoP's kernel table, the diagnostics, and what a
//! deleted CNI leaves. It needs root (network namespaces) and skips with a printed reason
//! without it.

mod support;

#[test]
fn a_cni_gets_its_address_session_routes_and_status_on_the_pop() {
    support::rig_scenario("tests/interconnect/rig.py", "cni");
}
