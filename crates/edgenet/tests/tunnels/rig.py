#!/usr/bin/env python3
"""The tunnels rig: two PoPs and a customer router, GRE between them, health checks and routes.

    PoP a (edgenet control + pop-a) ==veth== customer c ==veth== PoP b (pop-b)
          \\_______________ veth (the PoPs' own network) _______________/

Both PoPs hold the anycast GRE endpoint 192.0.2.100 on lo; the customer's router reaches it at
PoP a (its route), and each PoP sends from its own address (a: 198.51.100.1, b: 198.51.100.5).
The customer's router is tests/tunnels/endpoint.py (scapy) with three tunnel endpoints
(203.0.113.1-3) and BIRD 2, whose BGP session with MD5 runs through tunnel gre1's TUN device.
Everything is created through the control plane's API, which PoP b reaches over the PoPs' link.

Used by crates/edgenet/tests/tunnels.rs (scenario `gre`, with assertions) and bench/tunnels.sh
(scenario `bench`). Run as root: rig.py SCENARIO --edgenet PATH
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
import netns  # noqa: E402
from netns import check, cpu_seconds, log, sh, until  # noqa: E402

POP_AS, CUSTOMER_AS = 13335, 64700
ANYCAST = "192.0.2.100"
SOURCE = {"a": "198.51.100.1", "b": "198.51.100.5"}
CUSTOMER = {"a": "198.51.100.2", "b": "198.51.100.6"}
ENDPOINTS = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
PAIRS = ["10.212.0.8/31", "10.212.0.10/31", "10.212.0.12/31"]
KEY = "tunnel-md5-key"


class Rig(netns.Rig):
    def __init__(self, edgenet):
        super().__init__(edgenet, "gt", home="a")

    def add_ns(self, role):
        name = super().add_ns(role)
        for key in ("all", "default"):
            sh("sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0", ns=name)
        return name

    def veth(self, x, xname, xaddr, y, yname, yaddr):
        a, b = f"v{self.tag}{x}{y}", f"v{self.tag}{y}{x}"
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for dev, role, name, addr in ((a, x, xname, xaddr), (b, y, yname, yaddr)):
            sh("ip", "link", "set", dev, "netns", self.ns(role))
            sh("ip", "link", "set", dev, "name", name, ns=self.ns(role))
            sh("ip", "addr", "add", addr, "dev", name, ns=self.ns(role))
            sh("ip", "link", "set", name, "up", ns=self.ns(role))

    def up(self):
        for role in "abc":
            self.add_ns(role)
        self.veth("a", "to-c", f"{SOURCE['a']}/30", "c", "to-a", f"{CUSTOMER['a']}/30")
        self.veth("b", "to-c", f"{SOURCE['b']}/30", "c", "to-b", f"{CUSTOMER['b']}/30")
        self.veth("a", "to-b", "10.255.0.1/30", "b", "to-a", "10.255.0.2/30")
        for role in "ab":
            sh("ip", "addr", "add", f"{ANYCAST}/32", "dev", "lo", ns=self.ns(role))
            sh("ip", "route", "add", "203.0.113.0/24", "via", CUSTOMER[role], ns=self.ns(role))
        # The PoPs reach each other's own addresses over their link.
        sh("ip", "route", "add", "198.51.100.4/30", "via", "10.255.0.2", ns=self.ns("a"))
        sh("ip", "route", "add", "198.51.100.0/30", "via", "10.255.0.1", ns=self.ns("b"))
        for e in ENDPOINTS:
            sh("ip", "addr", "add", f"{e}/32", "dev", "lo", ns=self.ns("c"))
        # The customer's router reaches the anycast endpoint at PoP a.
        sh("ip", "route", "add", f"{ANYCAST}/32", "via", SOURCE["a"], ns=self.ns("c"))

    def start_control(self, role="a"):
        """The control plane in namespace `role` (the throughput bench runs one per side),
        reached from the other namespaces."""
        super().start_control(role, listen="0.0.0.0")

    def acct(self, method, path, body=None, expect=None):
        return self.api(method, f"/accounts/{self.account}{path}", body, self.customer, expect)

    def setup(self):
        self.api("PUT", "/cni/settings", {"gre_endpoints": [ANYCAST]}, expect=200)
        self.pop_tokens = {}
        for role in "ab":
            self.api("POST", "/pops", {"name": f"pop-{role}", "latitude": 0.0, "longitude": 0.0,
                                       "addresses": []}, expect=201)
            _, t = self.api("POST", "/tokens", {"name": f"pop-{role}", "scopes": ["pop"]},
                            expect=201)
            self.pop_tokens[role] = t["result"]["secret"]
        _, a = self.api("POST", "/accounts", {"name": "acme"}, expect=201)
        self.account = a["result"]["id"]
        _, t = self.api("POST", f"/accounts/{self.account}/tokens",
                        {"name": "acme", "scopes": ["admin"]}, expect=201)
        self.customer = t["result"]["secret"]
        self.tunnels = {}
        for i, (endpoint, pair) in enumerate(zip(ENDPOINTS, PAIRS)):
            body = {"name": f"gre{i + 1}", "cloudflare_gre_endpoint": ANYCAST,
                    "customer_gre_endpoint": endpoint, "interface_address": pair,
                    "health_check": {"type": "reply" if i != 2 else "request", "rate": "mid"}}
            if i == 0:
                body["bgp"] = {"customer_asn": CUSTOMER_AS, "md5_key": KEY,
                               "extra_prefixes": ["10.50.0.0/16"]}
            _, r = self.acct("POST", "/magic/gre_tunnels", body, expect=201)
            self.tunnels[f"gre{i + 1}"] = r["result"]["id"]
        # 10.9.0.0/24: gre2 first, gre3 as the fallback. 10.8.0.0/24: gre2 and gre3 at 1:3.
        for prefix, hop, priority, weight in (("10.9.0.0/24", "10.212.0.11", 100, 1),
                                              ("10.9.0.0/24", "10.212.0.13", 200, 1),
                                              ("10.8.0.0/24", "10.212.0.11", 100, 1),
                                              ("10.8.0.0/24", "10.212.0.13", 100, 3)):
            self.acct("POST", "/magic/routes", {"prefix": prefix, "nexthop": hop,
                                               "priority": priority, "weight": weight},
                      expect=201)

    # ---------- the PoPs ----------
    def start_pop(self, role, control=None, source=None, endpoint=ANYCAST, token=None):
        control = control or ("127.0.0.1" if role == "a" else "10.255.0.1")
        source = source or SOURCE[role]
        conf = self.write(f"pop-{role}.toml", f"""
[node]
name = "pop-{role}"
threads = 1
drain_timeout = "1s"

[[listeners]]
address = "127.0.0.1:8080"
protocol = "http"

[interconnect]
local_as = {POP_AS}
router_id = "{source}"
listen = ["0.0.0.0:179"]
connect_retry = "1s"
hold_time = "9s"

[tunnels]
source = "{source}"
endpoints = ["{endpoint}"]
""")
        return self.spawn(f"pop-{role}", role, self.edgenet, "pop", "--config", conf,
                   "--control", f"http://{control}:7070", "--name", f"pop-{role}",
                   "--token", token or self.pop_tokens[role],
                   "--state", os.path.join(self.dir, f"state-{role}.json"))

    # ---------- the customer ----------
    def start_customer(self):
        args = []
        for i, (e, pair) in enumerate(zip(ENDPOINTS, PAIRS)):
            base, _ = pair.split("/")
            theirs = base[:base.rfind(".") + 1] + str(int(base.rsplit(".", 1)[1]) + 1)
            args += ["--tunnel", f"{e}={theirs}/31" + ("=tun" if i == 0 else "")]
        # Debian's python3-scapy is for Debian's python3 (a pyenv one in PATH would not see it).
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        self.spawn("endpoint", "c", python, os.path.join(HERE, "endpoint.py"),
                   "--dir", self.dir, "--remote", ANYCAST, *args)
        until("the scapy endpoint", 20,
              lambda: os.path.exists(os.path.join(self.dir, "endpoint.ready")))
        bird = self.write("bird.conf", f"""
router id 10.212.0.9;
log "{self.dir}/bird.trace" all;
protocol device {{ scan time 1; }}
protocol static sites {{ ipv4; route 10.50.0.0/24 blackhole; }}
protocol bgp pop {{
  local 10.212.0.9 as {CUSTOMER_AS};
  neighbor 10.212.0.8 as {POP_AS};
  password "{KEY}";
  hold time 9; keepalive time 3;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 {{ import all; export where source = RTS_STATIC; }};
}}
""")
        self.sock = os.path.join(self.dir, "bird.ctl")
        self.spawn("bird", "c", "bird", "-f", "-c", bird, "-s", self.sock)
        until("BIRD up", 10, lambda: "Daemon is up" in self.birdc("show", "status"))

    def birdc(self, *cmd):
        return sh("birdc", "-s", self.sock, *cmd, check=False)

    def mute(self, endpoint, on, only=""):
        path = os.path.join(self.dir, f"mute-{endpoint}")
        if on:
            self.write(f"mute-{endpoint}", only)
        elif os.path.exists(path):
            os.unlink(path)

    def send_flows(self, endpoint, dst, count):
        open(os.path.join(self.dir, "received.log"), "w").close()
        self.write(f"send-{endpoint}.tmp", f"{dst} {count}\n")
        os.rename(os.path.join(self.dir, f"send-{endpoint}.tmp"),
                  os.path.join(self.dir, f"send-{endpoint}"))

    def stream(self, endpoint, dst, every_ms):
        """The customer's router sends a packet into the tunnel of `endpoint` to `dst` every
        `every_ms` milliseconds from now on."""
        self.write(f"stream-{endpoint}", f"{dst} {every_ms}\n")

    def received(self):
        with open(os.path.join(self.dir, "received.log")) as f:
            return [line.split() for line in f if line.strip()]

    # ---------- what the API says ----------
    def health(self, tunnel, pop):
        """The tunnel's health at `pop`, once that PoP has probed it (None before)."""
        _, t = self.acct("GET", f"/magic/gre_tunnels/{self.tunnels[tunnel]}")
        seen = t["result"]["health"].get(pop, {})
        return seen.get("health") if seen.get("probes_sent") else None

    def active(self, pop, prefix):
        _, v = self.acct("GET", f"/magic/routes?pop={pop}")
        return sorted(r["next_hop"]["id"] for r in v["result"]["routes"]
                      if r["prefix"] == prefix and r["active"])


def capture_gre(rig, count=6):
    """GRE packets on the customer's link to PoP a, from a tcpdump capture: (outer, gre) bytes."""
    pcap = os.path.join(rig.dir, "gre.pcap")
    dump = subprocess.Popen(("ip", "netns", "exec", rig.ns("c"), "tcpdump", "-i", "to-a", "-n",
                             "-U", "-c", str(count), "-w", pcap, "ip proto 47"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        dump.wait(timeout=15)
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    with open(pcap, "rb") as f:
        data = f.read()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4, hex(magic)
    at, out = 24, []
    while at + 16 <= len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + incl]
        at += 16 + incl
        ip = frame[14:] if linktype == 1 else frame
        ihl = (ip[0] & 0xF) * 4
        out.append((ip[:ihl], ip[ihl:]))
    return out


def scenario_gre(rig):
    rig.start_control()
    rig.setup()
    # The customer's router first, so no probe is lost to a router not yet there.
    rig.start_customer()
    rig.start_pop("a")
    rig.start_pop("b")

    # Each PoP has a TUN device per tunnel carrying our side of the /31.
    for role in "ab":
        until(f"the TUN devices at pop-{role}", 20,
              lambda: all(a in sh("ip", "-4", "addr", ns=rig.ns(role)) for a in
                          ("10.212.0.8/31", "10.212.0.10/31", "10.212.0.12/31")))
    check("TUN devices at both PoPs carry the /31s and MTU 1476",
          "mtu 1476" in sh("ip", "link", ns=rig.ns("a")))

    # Both PoPs probe every tunnel and report it healthy.
    for role in "ab":
        for t in rig.tunnels:
            until(f"{t} healthy at pop-{role}", 20, lambda: rig.health(t, f"pop-{role}") == "healthy")
    # Each PoP runs its own checks: gre3's router stops answering pop-b only (`request`
    # probes, answered into the tunnel), and only pop-b sees it down.
    rig.mute(ENDPOINTS[2], True, only=SOURCE["b"])
    until("gre3 down at pop-b", 10, lambda: rig.health("gre3", "pop-b") == "down", step=0.05)
    check("gre3 still healthy at pop-a", rig.health("gre3", "pop-a") == "healthy")
    rig.mute(ENDPOINTS[2], False)
    until("gre3 healthy at pop-b again", 20, lambda: rig.health("gre3", "pop-b") == "healthy",
          step=0.1)

    # GRE on the wire, byte for byte as RFC 2784 has it.
    packets = capture_gre(rig)
    check("tcpdump saw GRE", len(packets) >= 3, len(packets))
    for outer, gre in packets:
        src, dst = outer[12:16], outer[16:20]
        check("outer: IPv4, protocol 47, TTL 64", outer[0] == 0x45 and outer[9] == 47 and
              outer[8] == 64, outer.hex())
        direction = (socket_ntoa(src), socket_ntoa(dst))
        check("from PoP a's own address or to the anycast endpoint",
              direction[0] in (SOURCE["a"], *ENDPOINTS) and
              direction[1] in (ANYCAST, *ENDPOINTS), direction)
        check("GRE header: C=0, reserved 0, version 0, protocol 0x0800",
              gre[:4] == b"\x00\x00\x08\x00", gre[:4].hex())
        inner = gre[4:]
        check("the payload is a whole IPv4 packet",
              inner[0] >> 4 == 4 and struct.unpack("!H", inner[2:4])[0] == len(inner),
              inner[:4].hex())

    # BGP with MD5 through tunnel gre1: BIRD establishes with the PoP it reaches (a).
    until("BIRD established through the tunnel", 30,
          lambda: "Established" in rig.birdc("show", "protocols", "all", "pop"))
    until("10.50.0.0/24 learnt at pop-a", 20, lambda: rig.active("pop-a", "10.50.0.0/24") == ["gre1"])
    _, v = rig.acct("GET", "/magic/routes?pop=pop-a")
    bgp = [r for r in v["result"]["routes"] if r["prefix"] == "10.50.0.0/24"]
    check("the learnt route is BGP at priority 100", bgp[0]["source"] == "bgp" and
          bgp[0]["priority"] == 100, bgp)
    check("pop-b learnt nothing (the customer reaches pop-a)",
          rig.active("pop-b", "10.50.0.0/24") == [], rig.active("pop-b", "10.50.0.0/24"))

    # Equal priorities share flows by weight: 10.8.0.0/24 over gre2 and gre3 at 1:3 (once
    # both are healthy: probes lost before the customer's router was up degraded them).
    until("gre2 and gre3 both active at pop-a", 20,
          lambda: rig.active("pop-a", "10.8.0.0/24") == ["gre2", "gre3"], step=0.1)
    rig.send_flows(ENDPOINTS[0], "10.8.0.7", 400)
    got = until("400 flows through pop-a", 20, lambda: (lambda r: r if len(r) >= 400 else None)(rig.received()))
    by = {e: sum(1 for r in got if r[0] == e) for e in ENDPOINTS}
    check("flows split about 1:3 between gre2 and gre3",
          by[ENDPOINTS[0]] == 0 and 60 <= by[ENDPOINTS[1]] <= 140 and by[ENDPOINTS[1]] + by[ENDPOINTS[2]] == 400, by)

    # 10.9.0.0/24 goes over gre2; gre2's router stops answering probes.
    check("10.9.0.0/24 over gre2", rig.active("pop-a", "10.9.0.0/24") == ["gre2"])
    rig.mute(ENDPOINTS[1], True)
    t0 = time.time()
    until("gre2 degraded at pop-a", 5, lambda: rig.health("gre2", "pop-a") in ("degraded", "down"), step=0.05)
    until("gre2 down at pop-a", 5, lambda: rig.health("gre2", "pop-a") == "down", step=0.05)
    log(f"gre2 down after {time.time() - t0:.2f}s")
    check("10.9.0.0/24 moved to gre3", rig.active("pop-a", "10.9.0.0/24") == ["gre3"])
    rig.send_flows(ENDPOINTS[0], "10.9.0.7", 20)
    got = until("20 flows", 20, lambda: (lambda r: r if len(r) >= 20 else None)(rig.received()))
    check("packets to 10.9.0.0/24 now leave by gre3", all(r[0] == ENDPOINTS[2] for r in got), got)
    _, t = rig.acct("GET", f"/magic/gre_tunnels/{rig.tunnels['gre2']}")
    check("the reason names the rule", "second" in (t["result"]["health"]["pop-a"]["reason"] or ""),
          t["result"]["health"]["pop-a"])

    # Recovery: down -> degraded after 3 answers, healthy after 30 in a row; the route returns.
    rig.mute(ENDPOINTS[1], False)
    until("gre2 degraded again", 5, lambda: rig.health("gre2", "pop-a") == "degraded", step=0.05)
    until("gre2 healthy again", 20, lambda: rig.health("gre2", "pop-a") == "healthy", step=0.1)
    until("10.9.0.0/24 back on gre2", 5, lambda: rig.active("pop-a", "10.9.0.0/24") == ["gre2"])
    rig.send_flows(ENDPOINTS[0], "10.9.0.7", 20)
    got = until("20 flows", 20, lambda: (lambda r: r if len(r) >= 20 else None)(rig.received()))
    check("packets to 10.9.0.0/24 leave by gre2 again", all(r[0] == ENDPOINTS[1] for r in got), got)


def scenario_reroute(rig, runs):
    """The reroute time, `runs` times: from the moment gre2's router stops answering probes to
    the first packet of a steady stream (one every 5 ms into gre1, to 10.9.0.7) that PoP a
    delivers over gre3. The median and every run, as JSON."""
    rig.start_control()
    rig.setup()
    rig.start_customer()
    rig.start_pop("a")
    for t in rig.tunnels:
        until(f"{t} healthy at pop-a", 30, lambda: rig.health(t, "pop-a") == "healthy", step=0.1)
    until("10.9.0.0/24 over gre2", 20, lambda: rig.active("pop-a", "10.9.0.0/24") == ["gre2"])
    rig.stream(ENDPOINTS[0], "10.9.0.7", 5)
    times = []
    for run in range(runs):
        until("the stream over gre2", 10, lambda: any(r[0] == ENDPOINTS[1] for r in rig.received()))
        open(os.path.join(rig.dir, "received.log"), "w").close()
        muted = time.time()
        rig.mute(ENDPOINTS[1], True)
        first = until("a packet over gre3", 10,
                      lambda: next((float(r[4]) for r in rig.received()
                                    if r[0] == ENDPOINTS[2] and len(r) > 4), None))
        times.append(round((first - muted) * 1000, 1))
        log(f"run {run + 1}: rerouted after {times[-1]} ms")
        rig.mute(ENDPOINTS[1], False)
        until("gre2 healthy again", 30, lambda: rig.health("gre2", "pop-a") == "healthy", step=0.1)
        until("10.9.0.0/24 back on gre2", 10, lambda: rig.active("pop-a", "10.9.0.0/24") == ["gre2"])
    print(json.dumps({"probe_loss_to_rerouted_ms": sorted(times)[len(times) // 2], "runs": times}),
          flush=True)


def scenario_throughput(rig, seconds, runs):
    """One tunnel between two edgenet GRE endpoints, each a PoP with its control plane (two
    operators' networks): iperf3 UDP of 1500-byte outer packets (1448 bytes of payload) from
    x's side of the tunnel to y's, the bytes y receives counted by an nftables counter on the
    TUN device, and each PoP's CPU from /proc. Prints JSON."""
    x, y = "x", "y"
    rig.add_ns(x)
    rig.add_ns(y)
    rig.veth(x, "to-y", "198.51.100.9/30", y, "to-x", "198.51.100.10/30")
    ends = {x: "192.0.2.1", y: "192.0.2.2"}
    # Each PoP sends from its own address, and the other side knows it by that (a PoP takes
    # GRE to its own address too): the pair is each other's customer endpoint.
    own = {x: "198.51.100.9", y: "198.51.100.10"}
    inner = {x: "10.0.0.0/31", y: "10.0.0.1/31"}
    sh("ip", "addr", "add", f"{ends[x]}/32", "dev", "lo", ns=rig.ns(x))
    sh("ip", "addr", "add", f"{ends[y]}/32", "dev", "lo", ns=rig.ns(y))
    sh("ip", "route", "add", f"{ends[y]}/32", "via", "198.51.100.10", ns=rig.ns(x))
    sh("ip", "route", "add", f"{ends[x]}/32", "via", "198.51.100.9", ns=rig.ns(y))
    pids = {}
    for me, other in ((x, y), (y, x)):
        rig.start_control(me)
        api = lambda *a, **k: rig.api(*a, at=me, **k)
        api("PUT", "/cni/settings", {"gre_endpoints": [ends[me]]}, expect=200)
        api("POST", "/pops", {"name": f"pop-{me}", "latitude": 0.0, "longitude": 0.0,
                              "addresses": []}, expect=201)
        _, t = api("POST", "/tokens", {"name": f"pop-{me}", "scopes": ["pop"]}, expect=201)
        pop_token = t["result"]["secret"]
        _, a = api("POST", "/accounts", {"name": "acme"}, expect=201)
        account = a["result"]["id"]
        _, t = api("POST", f"/accounts/{account}/tokens", {"name": "acme", "scopes": ["admin"]},
                   expect=201)
        api("POST", f"/accounts/{account}/magic/gre_tunnels",
            {"name": "bench", "cloudflare_gre_endpoint": ends[me],
             "customer_gre_endpoint": own[other], "interface_address": inner[me],
             "health_check": {"enabled": True}}, token=t["result"]["secret"], expect=201)
        # `ip netns exec` execs edgenet: the pid is the PoP's.
        pids[me] = rig.start_pop(me, control="127.0.0.1", source=own[me], endpoint=ends[me],
                                 token=pop_token).pid
    for me in (x, y):
        until(f"the tunnel's TUN device at pop-{me}", 30,
              lambda: inner[me] in sh("ip", "-4", "addr", ns=rig.ns(me)))
    sh("nft", "-f", rig.write("count.nft", """
table inet bench {
  chain input {
    type filter hook input priority 0;
    iifname "gt*" udp dport 5201 counter name received
  }
  counter received {}
}
"""), ns=rig.ns(y))
    until("a ping through the tunnel", 20, lambda: subprocess.run(
        ("ip", "netns", "exec", rig.ns(x), "ping", "-c1", "-W1", "10.0.0.1"),
        capture_output=True).returncode == 0)

    def received():
        out = sh("nft", "-j", "list", "counter", "inet", "bench", "received", ns=rig.ns(y))
        return next(o["counter"]["bytes"] for o in json.loads(out)["nftables"] if "counter" in o)

    results = []
    for run in range(runs):
        server = subprocess.Popen(("ip", "netns", "exec", rig.ns(y), "taskset", "-c", "1",
                                   "iperf3", "-s", "-1", "-B", "10.0.0.1"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        bytes0, cpu0, t0 = received(), {m: cpu_seconds(pids[m]) for m in (x, y)}, time.time()
        sh("ip", "netns", "exec", rig.ns(x), "taskset", "-c", "0", "iperf3", "-c", "10.0.0.1",
           "-u", "-b", "0", "-l", "1448", "-t", str(seconds), timeout=seconds + 30)
        bytes1, cpu1, t1 = received(), {m: cpu_seconds(pids[m]) for m in (x, y)}, time.time()
        server.wait(timeout=10)
        wall = t1 - t0
        gbps = (bytes1 - bytes0) * 8 / wall / 1e9
        cores = {m: (cpu1[m] - cpu0[m]) / wall for m in (x, y)}
        busiest = max(cores.values())
        results.append({"gbps": round(gbps, 3), "sender_cores": round(cores[x], 3),
                        "receiver_cores": round(cores[y], 3),
                        "gbps_per_core": round(gbps / busiest, 3) if busiest else 0})
        log(f"run {run + 1}: {results[-1]}")
    mid = sorted(results, key=lambda r: r["gbps_per_core"])[len(results) // 2]
    print(json.dumps({"gre_gbps_per_core": mid["gbps_per_core"], "median_run": mid,
                      "runs": results}), flush=True)


def socket_ntoa(b):
    return ".".join(str(x) for x in b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["gre", "reroute", "throughput"])
    ap.add_argument("--edgenet", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    with Rig(args.edgenet) as rig:
        if args.scenario == "gre":
            scenario_gre(rig)
        elif args.scenario == "reroute":
            scenario_reroute(rig, args.runs)
        else:
            scenario_throughput(rig, args.seconds, args.runs)
    print(f"scenario {args.scenario}: passed", flush=True)


if __name__ == "__main__":
    main()
