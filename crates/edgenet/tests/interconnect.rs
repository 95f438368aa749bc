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

/// A CNI on VLAN 100 of a v1 port: the PoP's userspace tagger (this kernel has no 8021q)
/// against the rig's own tagger on the customer's side (`tests/interconnect/vlan.py`): the
/// /31 on `cni0.100` with the port's hardware address, BGP with MD5 and BFD over tagged frames
/// (a tcpdump capture on the customer's port shows `8100 0064` after the addresses, and no BGP
/// frame untagged), the route over the VLAN, and the VLAN's device gone with the CNI.
#[test]
fn a_cni_on_a_tagged_v1_port_runs_its_session_over_802_1q() {
    if !support::needs_tool("interconnect vlan", "tcpdump", &["--version"], "tcpdump") {
        return;
    }
    support::rig_scenario("tests/interconnect/rig.py", "vlan");
}
