//! Anycast interop in network namespaces: the real `edgenet pop` binary in PoP namespaces
//! announcing to a real router (BIRD 2, GoBGP, FRR) and a client reaching the anycast address.
//!
//! The namespaces, links and daemons are set up by `tests/anycast/rig.py` (shared with
//! `bench/anycast.sh`); each scenario there asserts what a user sees (which PoP answers, the
//! router's table, the admin API) and exits non-zero on the first failure. These tests need root
//! (network namespaces) and skip with a printed reason without it.

mod support;

fn scenario(name: &str) {
    support::rig_scenario("tests/anycast/rig.py", name);
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
