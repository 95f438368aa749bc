#!/usr/bin/env python3
"""The interconnect rig: a PoP and a customer router joined by a veth "cross-connect".

    PoP ns (edgenet control + edgenet pop, port cni0) ==veth== customer ns (BIRD 2, eth0)

The control plane runs inside the PoP namespace on 127.0.0.1 (API calls go through
`ip netns exec ... curl`). Through its API the rig creates the operator's settings, a site whose
device has port et-0/0/1 on interface cni0 run by PoP `pop1`, an account, a direct
interconnect and its CNI; the PoP follows the control plane and does the rest: the /31 and MTU
on cni0, the BGP session with the customer's BIRD, the peering routes in kernel table 200, and
the link reports the status and diagnostics come from.

Used by crates/edgenet/tests/interconnect.rs (scenario `cni`, with assertions) and
bench/interconnect.sh (scenario `bench`, timings). Run as root:
    rig.py SCENARIO --edgenet PATH
Everything it starts runs inside its namespaces, and everything is removed on exit.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
import netns  # noqa: E402
from netns import check, log, median, sh, until  # noqa: E402

POP_AS, CUSTOMER_AS = 13335, 64700
OURS, THEIRS = "100.64.0.0", "100.64.0.1"
TABLE = 200
KEY = "cross-connect-key"


class Rig(netns.Rig):
    def __init__(self, edgenet, poll="200ms"):
        super().__init__(edgenet, "ic", home="p")
        self.poll = poll
        self.optics = os.path.join(self.dir, "optics")
        os.makedirs(self.optics)

    def up(self):
        p, c = self.add_ns("p"), self.add_ns("c")
        a, b = f"x{self.tag}a", f"x{self.tag}b"
        sh("ip", "link", "add", a, "mtu", "9000", "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", p)
        sh("ip", "link", "set", b, "netns", c)
        sh("ip", "link", "set", a, "name", "cni0", ns=p)
        sh("ip", "link", "set", b, "name", "eth0", ns=c)
        # The customer's side is the customer's business; the PoP's side is edgenet's.
        sh("ip", "addr", "add", f"{THEIRS}/31", "dev", "eth0", ns=c)
        sh("ip", "link", "set", "eth0", "up", ns=c)

    def setup(self):
        """Operator settings, the site, the PoP's registration and token, an account and its
        direct interconnect on port et-0/0/1 (interface cni0)."""
        self.api("PUT", "/cni/settings", {"operator": "Example Networks",
                                          "pool_v4": "100.64.0.0/24",
                                          "pool_v6": "2001:db8:ff::/64"}, expect=200)
        self.api("POST", "/cni/sites", {
            "code": "gru-b", "pop": "pop1", "timezone": "America/Sao_Paulo", "holidays": [],
            "facility": {"name": "Equinix SP4", "address": "Rua Ricardo Prudente de Aquino 85"},
            "dataplanes": ["v1"],
            "devices": [{"name": "edge01", "dataplane": "v1", "ports": [
                {"slot": "et-0/0/1", "speed": "10G", "optic": "10GBASE-LR",
                 "interface": "cni0"}]}]}, expect=201)
        self.api("POST", "/pops", {"name": "pop1", "latitude": -23.5, "longitude": -46.6,
                                   "addresses": []}, expect=201)
        _, t = self.api("POST", "/tokens", {"name": "pop1", "scopes": ["pop"]}, expect=201)
        self.pop_token = t["result"]["secret"]
        _, a = self.api("POST", "/accounts", {"name": "acme"}, expect=201)
        self.account = a["result"]["id"]
        _, t = self.api("POST", f"/accounts/{self.account}/tokens",
                        {"name": "acme", "scopes": ["admin"]}, expect=201)
        self.customer = t["result"]["secret"]
        _, ic = self.acct("POST", "/cni/interconnects",
                          {"type": "direct", "site": "gru-b", "speed": "10G", "name": "primary"},
                          expect=201)
        self.interconnect = ic["result"]["id"]

    def create_cni(self, prefixes=("203.0.113.0/24", "198.51.100.0/22"), max_prefixes=3,
                   vlan=None):
        """A peering CNI on the interconnect (always 100.64.0.0/31), on VLAN `vlan` of the
        port when given; its id."""
        body = {"interconnect": self.interconnect, "customer_asn": CUSTOMER_AS,
                "use_case": "peering", "prefixes": list(prefixes), "p2p_v4": f"{OURS}/31",
                "max_prefixes": max_prefixes, "md5_key": KEY, "allocate_v6": True, "bfd": True}
        if vlan is not None:
            body["vlan"] = vlan
        _, cni = self.acct("POST", "/cni/cnis", body, expect=201)
        self.cni = cni["result"]["id"]
        return self.cni

    def acct(self, method, path, body=None, expect=None):
        return self.api(method, f"/accounts/{self.account}{path}", body, self.customer, expect)

    def status(self):
        return self.acct("GET", f"/cni/interconnects/{self.interconnect}/status")[1]["result"]

    def diagnostics(self):
        return self.acct("GET", f"/cni/cnis/{self.cni}/diagnostics")[1]["result"]

    # ---------- the PoP ----------
    def start_pop(self):
        conf = self.write("pop.toml", f"""
[node]
name = "pop1"
threads = 1
drain_timeout = "1s"

[[listeners]]
address = "127.0.0.1:8080"
protocol = "http"

[admin]
address = "127.0.0.1:9090"
token_file = "admin-token"

[interconnect]
local_as = {POP_AS}
router_id = "10.0.0.1"
listen = ["0.0.0.0:179"]
table = {TABLE}
optics_dir = "{self.optics}"
poll_interval = "{self.poll}"
connect_retry = "1s"
hold_time = "9s"
""")
        self.spawn("pop", "p", self.edgenet, "pop", "--config", conf,
                   "--control", f"http://127.0.0.1:{self.API_PORT}", "--name", "pop1",
                   "--token", self.pop_token)

    def table(self):
        return sh("ip", "-4", "route", "show", "table", str(TABLE), ns=self.ns("p"), check=False)

    def port(self, name="cni0"):
        return sh("ip", "addr", "show", name, ns=self.ns("p"), check=False)

    # ---------- the customer's BIRD ----------
    def bird_conf(self, key, bulk=0, iface="eth0"):
        routes = "".join(f"  route {bulk_prefix(i)} blackhole;\n" for i in range(bulk))
        return f"""
router id {THEIRS};
log "{self.dir}/bird-customer.trace" all;
protocol device {{ scan time 1; }}
protocol static listed {{
  ipv4;
  route 203.0.113.0/24 blackhole;
  route 203.0.113.0/25 blackhole;
}}
protocol static bulk {{
  disabled;
  ipv4;
{routes}}}
protocol static more {{
  disabled;
  ipv4;
  route 198.51.100.0/24 blackhole;
  route 198.51.101.0/24 blackhole;
  route 198.51.102.0/24 blackhole;
}}
protocol bfd {{ interface "{iface}" {{ min rx interval 100 ms; min tx interval 100 ms; }}; }}
protocol bgp pop {{
  bfd on;
  local {THEIRS} as {CUSTOMER_AS};
  neighbor {OURS} as {POP_AS};
  password "{key}";
  hold time 9; keepalive time 3;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 {{ import all; export where source = RTS_STATIC; }};
}}
"""

    def start_bird(self, key, iface="eth0"):
        self.bird_path = self.write("bird-customer.conf", self.bird_conf(key, iface=iface))
        self.sock = os.path.join(self.dir, "bird-customer.ctl")
        self.logs["bird-customer.trace"] = os.path.join(self.dir, "bird-customer.trace")
        self.spawn("bird", "c", "bird", "-f", "-c", self.bird_path, "-s", self.sock)
        until("BIRD up", 10, lambda: "Daemon is up" in self.birdc("show", "status"))

    def rekey_bird(self, key, bulk=0):
        self.write("bird-customer.conf", self.bird_conf(key, bulk))
        out = self.birdc("configure")
        assert "Reconfigured" in out or "Reconfiguration" in out, out

    def birdc(self, *cmd):
        return sh("birdc", "-s", self.sock, *cmd, check=False)

    def bird_session(self):
        return self.birdc("show", "protocols", "all", "pop")

    def bird_established(self):
        return "Established" in self.bird_session()


def bulk_prefix(i):
    """The i-th /24 of 10.0.0.0/8 and 11.0.0.0/8."""
    return f"{10 + i // 65536}.{(i // 256) % 256}.{i % 256}.0/24"


def scenario_cni(rig):
    """Everything the issue's tests name, in order, against one customer router."""
    rig.start_control()
    rig.setup()
    rig.create_cni()
    # BIRD with the wrong key first: the session must never come up.
    rig.start_bird("not-the-key")
    rig.start_pop()
    until("the /31 on cni0", 20, lambda: f"{OURS}/31" in rig.port())
    port = rig.port()
    check("MTU 1500 on the port", "mtu 1500" in port, port)
    check("the CNI's /127 on the port", "2001:db8:ff::/127" in port, port)
    time.sleep(4)
    check("a wrong MD5 key never establishes", not rig.bird_established(), rig.bird_session())
    rig.rekey_bird(KEY)
    until("BIRD's session established with MD5", 15, rig.bird_established)

    until("the /24 in the PoP's table", 10, lambda: "203.0.113.0/24" in rig.table())
    table = rig.table()
    check("the peering route goes over the CNI",
          f"203.0.113.0/24 via {THEIRS} dev cni0 proto bgp" in table, table)
    check("the /25 is refused by the filter", "203.0.113.0/25" not in table, table)
    rules = sh("ip", "rule", "show", ns=rig.ns("p"))
    check("the PoP's policy rule consults the table", f"1000:\tfrom all lookup {TABLE}" in rules, rules)
    route = sh("ip", "route", "get", "203.0.113.77", ns=rig.ns("p"))
    check("the PoP's own traffic to the prefix goes over the CNI",
          f"via {THEIRS} dev cni0" in route and f"table {TABLE}" in route, route)
    d = until("diagnostics with the session", 10,
              lambda: (lambda d: d if (d.get("prefixes") or {}).get("accepted") == 1 else None)(
                  rig.diagnostics()))
    check("one accepted, one refused", (d["prefixes"]["received"], d["prefixes"]["refused"]) == (2, 1), d)
    check("the refusal says why", d["refused"] and "longer than /24" in d["refused"][0]["reason"], d)
    check("the PoP advertises nothing to a peering customer without anycast",
          d["prefixes"]["advertised"] == 0, d)
    until("status active", 10, lambda: rig.status()["status"] == "active")
    d = until("BFD up on the v1 CNI", 10,
              lambda: (lambda d: d if d["bgp"]["bfd"] == "up" else None)(rig.diagnostics()))
    bfd = rig.birdc("show", "bfd", "sessions")
    check("BIRD's BFD session with the PoP is up", OURS in bfd and "Up" in bfd, bfd)

    # Withdrawals remove the route.
    rig.birdc("disable", "listed")
    until("the withdrawn /24 leaves the table", 10, lambda: "203.0.113.0/24" not in rig.table())
    rig.birdc("enable", "listed")
    until("the /24 again", 10, lambda: "203.0.113.0/24" in rig.table())

    # Past max-prefix (3): five routes, the session is torn down with Cease subcode 1.
    rig.birdc("enable", "more")
    until("BIRD sees the Cease", 10,
          lambda: "maximum number of prefixes reached" in rig.bird_session().lower())
    d = until("the NOTIFICATION in the diagnostics", 10,
              lambda: (lambda d: d if (d.get("bgp") or {}).get("last_notification") else None)(
                  rig.diagnostics()))
    n = d["bgp"]["last_notification"]
    check("Cease 6/1 sent", (n["direction"], n["code"], n["subcode"]) == ("sent", 6, 1), n)
    rig.birdc("disable", "more")
    until("re-established under the limit", 20, rig.bird_established)
    until("the /24 back after the reset", 10, lambda: "203.0.113.0/24" in rig.table())

    # The cross-connect goes down: Unhealthy, session down, routes gone.
    t0 = time.time()
    sh("ip", "link", "set", "eth0", "down", ns=rig.ns("c"))
    until("unhealthy after link down", 5, lambda: rig.status()["status"] == "unhealthy")
    log(f"link down to unhealthy: {(time.time() - t0) * 1000:.0f} ms")
    until("routes withdrawn after link down", 5, lambda: "203.0.113.0/24" not in rig.table())
    d = until("the session down with the link", 5,
              lambda: (lambda d: d if d["bgp"]["state"] != "established" else None)(rig.diagnostics()))
    check("the diagnostics show the link down", d["link"]["up"] is False, d)
    check("and why the session went", "link is down" in (d["bgp"]["last_error"] or ""), d)
    sh("ip", "link", "set", "eth0", "up", ns=rig.ns("c"))
    until("active again", 10, lambda: rig.status()["status"] == "active")
    until("established again", 20, rig.bird_established)

    # Too little light with the link up.
    with open(os.path.join(rig.optics, "cni0"), "w") as f:
        f.write("rx_dbm = -25.0\n")
    until("unhealthy below -20 dBm", 5, lambda: rig.status()["status"] == "unhealthy")
    d = rig.diagnostics()
    check("the link is up while the light is low", d["link"]["up"] is True and d["link"]["rx_dbm"] == -25.0, d)
    with open(os.path.join(rig.optics, "cni0"), "w") as f:
        f.write("rx_dbm = -3.1\n")
    until("active with light again", 5, lambda: rig.status()["status"] == "active")
    kinds = [e["kind"] for e in rig.diagnostics()["timeline"]]
    for k in ("status", "link", "light", "bgp", "notification"):
        check(f"the timeline has {k} events", k in kinds, kinds)

    # Deleting the CNI takes its address and session, and nothing else.
    rig.acct("DELETE", f"/cni/cnis/{rig.cni}", expect=200)
    until("the /31 leaves the port", 10, lambda: f"{OURS}/31" not in rig.port())
    until("BIRD's session goes", 10, lambda: not rig.bird_established())
    check("the table is empty", "203.0.113.0" not in rig.table(), rig.table())
    check("the port itself stays", "cni0" in rig.port())

    # A CNI deleted while its PoP is down: the PoP finds what it left when it starts again.
    rig.create_cni()
    until("the new CNI's /31", 20, lambda: f"{OURS}/31" in rig.port())
    until("established again", 20, rig.bird_established)
    rig.procs["pop"].kill()
    rig.procs["pop"].wait()
    rig.acct("DELETE", f"/cni/cnis/{rig.cni}", expect=200)
    check("the dead PoP left its address", f"{OURS}/31" in rig.port())
    rig.start_pop()
    until("the restarted PoP removes it", 20, lambda: f"{OURS}/31" not in rig.port())
    until("and the routes it left", 10, lambda: "203.0.113.0" not in rig.table())


def scenario_vlan(rig):
    """A CNI on VLAN 100 of the v1 port: its address on the VLAN's untagged side, BGP with MD5
    over tagged frames (a capture on the customer's port shows the tags), and the VLAN's
    device gone with the CNI."""
    c = rig.ns("c")
    # The customer's sub-interface eth0.100 (the harness's own tagger); its address moves there.
    sh("ip", "addr", "flush", "dev", "eth0", ns=c)
    rig.spawn("customer-vlan", "c", sys.executable, os.path.join(HERE, "vlan.py"),
              "--port", "eth0", "--vid", "100", "--name", "eth0.100")
    until("the customer's eth0.100", 10,
          lambda: "eth0.100" in sh("ip", "link", "show", ns=c, check=False))
    sh("ip", "addr", "add", f"{THEIRS}/31", "dev", "eth0.100", ns=c)
    sh("ip", "link", "set", "eth0.100", "up", ns=c)
    capture = os.path.join(rig.dir, "vlan.pcap")
    tcpdump = rig.spawn("tcpdump", "c", "tcpdump", "-i", "eth0", "-U", "-s", "256", "-w", capture)
    rig.start_control()
    rig.setup()
    rig.create_cni(vlan=100)
    rig.start_bird(KEY, iface="eth0.100")
    rig.start_pop()
    until("the /31 on cni0.100", 20, lambda: f"{OURS}/31" in rig.port("cni0.100"))
    side, port = rig.port("cni0.100"), rig.port("cni0")
    check("not on the port itself", f"{OURS}/31" not in port, port)
    mac = lambda text: text.split("link/ether ")[1].split()[0]
    check("the VLAN's side carries the port's hardware address", mac(side) == mac(port), side)
    check("MTU 1500 on the VLAN's side", "mtu 1500" in side, side)
    until("BIRD's session established with MD5 over VLAN 100", 20, rig.bird_established)
    until("the /24 in the PoP's table", 10, lambda: "203.0.113.0/24" in rig.table())
    table = rig.table()
    check("the peering route goes over the VLAN",
          f"203.0.113.0/24 via {THEIRS} dev cni0.100 proto bgp" in table, table)
    until("status active", 10, lambda: rig.status()["status"] == "active")
    until("BFD up over the VLAN", 10, lambda: rig.diagnostics()["bgp"]["bfd"] == "up")

    # What the wire carried: every frame of the session tagged 100; none untagged. The
    # capture is read as it is written (-U) until both directions are in it: tcpdump may lag
    # behind the kernel on a loaded machine.
    def tagged_bgp():
        out = sh("tcpdump", "-r", capture, "-nn", "-e", "vlan", check=False)
        frames = [f for f in out.split("\n") if " > " in f and not f.startswith("\t")]
        tagged = [f for f in frames if "802.1Q (0x8100)" in f and "vlan 100" in f]
        bgp = [f for f in tagged if f"{OURS}.179" in f or f"{THEIRS}.179" in f]
        both = any(f", {OURS}." in f for f in bgp) and any(f", {THEIRS}." in f for f in bgp)
        return out if both else None
    until("tagged BGP frames on the wire, both ways", 15, tagged_bgp, step=0.2)
    tcpdump.terminate()
    tcpdump.wait(timeout=5)
    untagged = sh("tcpdump", "-r", capture, "-nn", "tcp port 179", check=False)
    check("no BGP frame untagged", untagged.strip() == "", untagged)
    # Bytes 12-15 of a tagged frame: TPID 0x8100 and TCI 0x0064 (priority 0, VLAN 100).
    hexdump = sh("tcpdump", "-r", capture, "-nn", "-xx", "-c", "1", "vlan 100 and tcp port 179",
                 check=False)
    words = "".join(l.split(":", 1)[1] for l in hexdump.splitlines() if l.startswith("\t0x0000"))
    check("the tag is 8100 0064 after the addresses", words.split()[6:8] == ["8100", "0064"], hexdump)

    rig.acct("DELETE", f"/cni/cnis/{rig.cni}", expect=200)
    until("the VLAN's side goes with the CNI", 10, lambda: "cni0.100" not in
          sh("ip", "link", "show", ns=rig.ns("p"), check=False))
    until("BIRD's session goes", 10, lambda: not rig.bird_established())
    check("the port itself stays", "cni0" in rig.port())


def table_size(rig):
    out = subprocess.run(("ip", "netns", "exec", rig.ns("p"), "ip", "-4", "route", "show",
                          "table", str(TABLE)), capture_output=True, text=True).stdout
    return out.count("\n")


def bulk_rate(rig, routes, who):
    """Enables the customer's bulk routes (time zero) and waits for all of them in the PoP's
    kernel table (beside the one /24 already there); routes per second."""
    # RIG_PERF=FILE: the PoP's edgenet profiled through the load (perf record -g).
    perf = None
    if os.environ.get("RIG_PERF") and who == "edgenet":
        perf = subprocess.Popen(("perf", "record", "-F", "1999", "-g", "-o", os.environ["RIG_PERF"],
                                 "-p", str(rig.procs["pop"].pid)), stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    t0 = time.perf_counter()
    rig.birdc("enable", "bulk")
    until(f"every route in the table ({who})", 300, lambda: table_size(rig) >= routes + 1, step=0.05)
    rate = routes / (time.perf_counter() - t0)
    if perf:
        perf.send_signal(2)
        perf.wait()
    log(f"{who}: {routes} routes in {routes / rate:.2f} s, {rate:.0f}/s")
    return rate


def scenario_bench(rig, runs, routes):
    """The figures of bench/interconnect.sh: medians over `runs` CNIs created, cut and deleted,
    then `routes` accepted routes into the PoP's kernel table, edgenet's speaker against
    BIRD's as the PoP's speaker."""
    timers = ("BIRD (customer): connect delay 1 s, connect retry 1 s, error wait 1-2 s; "
              f"edgenet: connect_retry 1 s, hold 9 s, poll_interval {rig.poll}")
    log("timers:", timers)
    rig.start_control()
    rig.setup()
    rig.start_bird(KEY)
    rig.start_pop()
    established, unhealthy, withdrawn = [], [], []
    for run in range(runs):
        t0 = time.perf_counter()
        rig.create_cni()
        until("established", 30, rig.bird_established, step=0.005)
        established.append((time.perf_counter() - t0) * 1000)
        until("active", 10, lambda: rig.status()["status"] == "active")
        until("the route in the table", 10, lambda: "203.0.113.0/24" in rig.table())
        t0 = time.perf_counter()
        sh("ip", "link", "set", "eth0", "down", ns=rig.ns("c"))
        # Both are watched from the moment of the cut, each by its own poller.
        done = {}

        def watch(name, f):
            until(name, 10, f, step=0.002)
            done[name] = (time.perf_counter() - t0) * 1000
        threads = [threading.Thread(target=watch, args=("unhealthy", lambda: rig.status()["status"] == "unhealthy")),
                   threading.Thread(target=watch, args=("withdrawn", lambda: "203.0.113.0/24" not in rig.table()))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        unhealthy.append(done["unhealthy"])
        withdrawn.append(done["withdrawn"])
        sh("ip", "link", "set", "eth0", "up", ns=rig.ns("c"))
        until("active again", 10, lambda: rig.status()["status"] == "active")
        rig.acct("DELETE", f"/cni/cnis/{rig.cni}", expect=200)
        until("the session gone", 10, lambda: not rig.bird_established())
        until("the /31 gone", 10, lambda: f"{OURS}/31" not in rig.port())
        log(f"run {run + 1}: established {established[-1]:.0f} ms, unhealthy {unhealthy[-1]:.0f} ms, "
            f"withdrawn {withdrawn[-1]:.0f} ms")

    # Accepted routes per second: the customer's BIRD holds `routes` static /24s inside the
    # CNI's list, disabled; enabling them is time zero, the table holding them all the end.
    rig.rekey_bird(KEY, bulk=routes)
    rig.create_cni(prefixes=("10.0.0.0/8", "11.0.0.0/8", "203.0.113.0/24"), max_prefixes=routes + 100)
    until("established for the bulk", 30, rig.bird_established)
    until("the small route first", 10, lambda: "203.0.113.0/24" in rig.table())
    ours = bulk_rate(rig, routes, "edgenet")
    d = until("the RIB count", 30, lambda: (lambda d: d if d["prefixes"]["accepted"] >= routes + 1 else None)(rig.diagnostics()))
    log(f"edgenet's RIB accepted {d['prefixes']['accepted']}")
    rig.birdc("disable", "bulk")
    until("the table drained", 120, lambda: table_size(rig) <= 1, step=0.1)

    # The same with BIRD as the PoP's speaker, in front of the same kernel table.
    rig.procs["pop"].kill()
    rig.procs["pop"].wait()
    sh("ip", "route", "flush", "table", str(TABLE), ns=rig.ns("p"), check=False)
    sock = os.path.join(rig.dir, "bird-pop.ctl")
    conf = rig.write("bird-pop.conf", f"""
router id 10.0.0.1;
protocol device {{ scan time 1; }}
ipv4 table peering;
protocol kernel {{ kernel table {TABLE}; ipv4 {{ table peering; import none; export all; }}; }}
protocol bgp cust {{
  local {OURS} as {POP_AS};
  neighbor {THEIRS} as {CUSTOMER_AS};
  password "{KEY}";
  hold time 9; keepalive time 3; connect delay time 1; connect retry time 1;
  ipv4 {{ table peering; import where net ~ [ 10.0.0.0/8{{8,24}}, 11.0.0.0/8{{8,24}}, 203.0.113.0/24{{24,24}} ];
          receive limit {routes + 100} action restart; export none; }};
}}
""")
    rig.spawn("bird-pop", "p", "bird", "-f", "-c", conf, "-s", sock)
    until("BIRD PoP up", 10, lambda: "Daemon is up" in sh("birdc", "-s", sock, "show", "status", check=False))
    until("BIRD-BIRD established", 30, rig.bird_established)
    until("the small route via BIRD", 10, lambda: "203.0.113.0/24" in rig.table())
    bird = bulk_rate(rig, routes, "BIRD")
    figures = {
        "provision_to_established_ms": round(median(established), 1),
        "link_down_to_unhealthy_ms": round(median(unhealthy), 1),
        "link_down_to_routes_withdrawn_ms": round(median(withdrawn), 1),
        "routes_accepted_per_s": round(ours),
        "routes_accepted_per_s_bird": round(bird),
        "routes": routes,
        "runs": runs,
        "timers": timers,
    }
    print(json.dumps(figures), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["cni", "vlan", "bench"])
    ap.add_argument("--edgenet", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--routes", type=int, default=100_000)
    args = ap.parse_args()
    with Rig(args.edgenet) as rig:
        if args.scenario == "cni":
            scenario_cni(rig)
        elif args.scenario == "vlan":
            scenario_vlan(rig)
        else:
            scenario_bench(rig, args.runs, args.routes)
    print(f"scenario {args.scenario}: passed", flush=True)


if __name__ == "__main__":
    main()
