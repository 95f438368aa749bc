//! GRE tunnels on two PoPs, in network namespaces: the real `edgenet control` and two
//! `edgenet pop`s, and a customer router made of an independent GRE endpoint written with
//! scapy and BIRD 2 (BGP with MD5 through one of the tunnels).
//!
//! `tests/tunnels/rig.py` sets it up through the API and asserts what a user sees: the TUN
//! devices with the /31s and MTU, each PoP's own health checks (a path broken to one PoP only
//! takes the tunnel down there alone), GRE on the wire byte for byte as RFC 2784 has it
//! (tcpdump), the BGP session and its route in the table as the PoP sees it, flows shared 1:3
//! by weight between equal-priority routes, a customer router that stops answering probes
//! taking its tunnel degraded then down and the route (and real packets) onto the next tunnel,
//! and back after recovery. It needs root, tcpdump and Debian's python3-scapy, and skips with
//! a printed reason without them (under CI=true it fails instead).

mod support;

#[test]
fn gre_tunnels_probe_route_and_fail_over_between_two_pops() {
    let test = "tunnels";
    if !(support::needs_tool(test, "tcpdump", &["--version"], "tcpdump")
        && support::needs_tool(
            test,
            "/usr/bin/python3",
            &["-c", "import scapy"],
            "python3-scapy",
        ))
    {
        return;
    }
    support::rig_scenario("tests/tunnels/rig.py", "gre");
}
