//! Magic Transit in network namespaces: the real `edgenet control` and two `edgenet pop`s
//! announcing a customer's prefix to an internet router (BIRD 2), a client and a flooder
//! (hping3) behind it, and the customer's router made of the scapy GRE endpoint with a real
//! HTTP server in the prefix behind it.
//!
//! `tests/magic/rig.py` sets it up through the API (LOA, prefix, tunnels, routes, firewall)
//! and asserts what a user sees: the prefix in the router's table from both PoPs with the
//! customer's origin AS, only once it is advertised; an HTTP request from the client served
//! with Direct Server Return (the replies counted leaving by the customer's own ISP); a
//! 1500-byte ping fragmented into the 1476-byte tunnel, or, with Don't Fragment, refused with
//! the MTU told to the client (ICMP "fragmentation needed", counted as too_big); a
//! source the firewall drops, counted by its rule (Prometheus and the report channel); a SYN
//! flood from random spoofed sources dropped and bounded while the client is served; traffic
//! between two sites through the PoP; replies back through the tunnel once the prefix's
//! egress is through us (dropped and counted before); and, with every path of PoP a down, PoP
//! a withdrawing the prefix and the client served through PoP b. Then a v2 CNI at PoP a whose
//! route wins: the client's packets reach the customer over it as they are, traffic crosses
//! between the CNI's site and site 2's tunnel both ways, PoP a keeps announcing with gre1 down
//! (the CNI is a path) and withdraws when the CNI's port goes down too. It needs root, BIRD,
//! hping3 and scapy, and skips with a printed reason without them (under CI=true it fails).

mod support;

#[test]
fn a_customer_prefix_is_announced_filtered_and_delivered_by_two_pops() {
    let test = "magic";
    if !(support::needs_tool(test, "bird", &["--version"], "bird2")
        && support::needs_tool(test, "hping3", &["--version"], "hping3")
        && support::needs_tool(
            test,
            "/usr/bin/python3",
            &["-c", "import scapy"],
            "python3-scapy",
        ))
    {
        return;
    }
    support::rig_scenario("tests/magic/rig.py", "magic");
}
