#!/usr/bin/env python3
"""The anycast rig: network namespaces with a router, PoPs and a client, on this machine only.

    client ns --- router ns (BIRD, GoBGP or FRR) --- PoP ns 1..N (edgenet, or edgenet + BIRD)

Every PoP has the anycast addresses 192.0.2.1/32 and 2001:db8:1::1/128 on lo and announces
192.0.2.0/24 and 2001:db8:1::/48 to the router with a MED of 10 * its number (PoP 1 is
preferred). Each PoP runs the test origin (support/origin.py) on 127.0.0.1:8080, named after the
PoP, so a client learns which PoP answered from the X-Origin header.

Used by crates/edgenet/tests/anycast.rs (scenarios with assertions) and bench/anycast.sh
(timings). Run as root:  rig.py SCENARIO --edgenet PATH   (scenarios: see SCENARIOS below).
Everything it starts runs inside its namespaces, and everything is removed on exit.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from netns import delete_namespace, log, sh, stop_processes, until  # noqa: E402
ORIGIN = os.path.join(HERE, "..", "support", "origin.py")
ANYCAST_V4, ANYCAST_V6 = "192.0.2.1", "2001:db8:1::1"
PREFIX_V4, PREFIX_V6 = "192.0.2.0/24", "2001:db8:1::/48"
POP_AS, ROUTER_AS = 4200000001, 65000
HOST = "anycast.test"


class Rig:
    """Namespaces, links, router and PoPs. `speaker` is "edgenet" or "bird" (BIRD announces
    for an edgenet without [anycast]); `router` is "bird", "gobgp" or "frr"."""

    def __init__(self, edgenet, pops=3, speaker="edgenet", router="bird", bfd_ms=10,
                 md5=None, router_md5=None, check_ms=20, gshut_wait="0s", drain_time="1s",
                 v6=True):
        self.edgenet = edgenet
        self.n = pops
        self.speaker = speaker
        self.router = router
        self.bfd_ms = bfd_ms
        self.md5, self.router_md5 = md5, router_md5
        self.check_ms = check_ms
        self.gshut_wait, self.drain_time = gshut_wait, drain_time
        self.v6 = v6
        self.tag = f"{os.getpid() % 100000:05d}"
        self.dir = tempfile.mkdtemp(prefix="edgenet-rig-")
        self.namespaces = []
        self.procs = {}  # name -> Popen
        self.files = {}

    # ---------- namespaces and links ----------
    def ns(self, role):
        return f"en{self.tag}{role}"

    def add_ns(self, role):
        name = self.ns(role)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "link", "set", "lo", "up", ns=name)
        for k in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
            sh("sysctl", "-qw", f"{k}=0", ns=name)
        for k in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
            sh("sysctl", "-qw", f"{k}=0", ns=name)
        return name

    def link(self, a_role, a_if, b_role, b_if, a_addrs, b_addrs):
        a, b = self.ns(a_role), self.ns(b_role)
        tmp_a, tmp_b = f"t{self.tag}{a_if}"[:15], f"t{self.tag}{b_if}"[:15]
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        sh("ip", "link", "set", tmp_a, "netns", a)
        sh("ip", "link", "set", tmp_b, "netns", b)
        for ns_, tmp, name, addrs in ((a, tmp_a, a_if, a_addrs), (b, tmp_b, b_if, b_addrs)):
            sh("ip", "link", "set", tmp, "name", name, ns=ns_)
            for addr in addrs:
                fam = "-6" if ":" in addr else "-4"
                extra = ["nodad"] if ":" in addr else []
                sh("ip", fam, "addr", "add", addr, "dev", name, *extra, ns=ns_)
            sh("ip", "link", "set", name, "up", ns=ns_)

    def up(self):
        if os.geteuid() != 0:
            raise SystemExit("needs root (network namespaces)")
        self.add_ns("r")
        self.add_ns("c")
        for k in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
            sh("sysctl", "-qw", k, ns=self.ns("r"))
        self.link("c", "eth0", "r", "c0", ["10.0.100.2/24", "fd00:100::2/64"],
                  ["10.0.100.1/24", "fd00:100::1/64"])
        sh("ip", "route", "add", "default", "via", "10.0.100.1", ns=self.ns("c"))
        sh("ip", "-6", "route", "add", "default", "via", "fd00:100::1", ns=self.ns("c"))
        for i in range(1, self.n + 1):
            self.add_ns(f"p{i}")
            self.link(f"p{i}", "eth0", "r", f"p{i}",
                      [f"10.0.{i}.2/24", f"fd00:{i}::2/64"], [f"10.0.{i}.1/24", f"fd00:{i}::1/64"])
            sh("ip", "route", "add", "default", "via", f"10.0.{i}.1", ns=self.ns(f"p{i}"))
            sh("ip", "-6", "route", "add", "default", "via", f"fd00:{i}::1", ns=self.ns(f"p{i}"))
        self.start_router()
        for i in range(1, self.n + 1):
            self.start_pop(i)

    def down(self):
        stop_processes(self.procs.values())
        for ns_ in self.namespaces:
            delete_namespace(ns_)
        self.namespaces = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.dump_logs()
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump_logs()
        self.down()

    def dump_logs(self):
        for name, path in self.files.items():
            if name.endswith(".log") and os.path.exists(path):
                with open(path, errors="replace") as f:
                    tail = f.read()[-3000:]
                print(f"----- {name} -----\n{tail}", flush=True)

    def spawn(self, name, role, *cmd, stdout=None):
        logpath = os.path.join(self.dir, f"{name}.log")
        self.files[f"{name}.log"] = logpath
        out = open(logpath, "ab")
        p = subprocess.Popen(("ip", "netns", "exec", self.ns(role)) + cmd,
                             stdout=stdout or out, stderr=out, stdin=subprocess.DEVNULL)
        self.procs[name] = p
        return p

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        self.files[name] = path
        return path

    # ---------- the router ----------
    def start_router(self):
        getattr(self, f"start_router_{self.router}")()

    def start_router_bird(self):
        bfd = (f"protocol bfd {{ interface \"*\" {{ min rx interval {self.bfd_ms} ms; "
               f"min tx interval {self.bfd_ms} ms; idle tx interval 100 ms; multiplier 3; }}; }}"
               if self.bfd_ms else "")
        peers = []
        for i in range(1, self.n + 1):
            pw = f'password "{self.router_md5}";' if self.router_md5 else ""
            for fam, addr in (("ipv4", f"10.0.{i}.2"), ("ipv6", f"fd00:{i}::2")):
                if fam == "ipv6" and not self.v6:
                    continue
                peers.append(f"""
protocol bgp p{i}{fam[-2:]} from pops {{
  neighbor {addr} as {POP_AS};
  {pw}
  {fam} {{ import filter anycast_in{fam[-1]}; export none; }};
}}""")
        conf = f"""
router id 10.0.100.1;
log "{self.dir}/bird-router.trace" all;
protocol device {{ scan time 10; }}
protocol kernel k4 {{ ipv4 {{ import none; export all; }}; }}
protocol kernel k6 {{ ipv6 {{ import none; export all; }}; }}
{bfd}
# RFC 8326: honour GRACEFUL_SHUTDOWN by lowering the preference of tagged routes.
filter anycast_in4 {{
  if net ~ [ {PREFIX_V4}+ ] then {{
    if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
    accept;
  }}
  reject;
}}
filter anycast_in6 {{
  if net ~ [ {PREFIX_V6}+ ] then {{
    if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
    accept;
  }}
  reject;
}}
template bgp pops {{
  local as {ROUTER_AS};
  hold time 9; keepalive time 3;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  {"bfd on;" if self.bfd_ms else ""}
}}
{"".join(peers)}
"""
        path = self.write("bird-router.conf", conf)
        self.spawn("bird-router", "r", "bird", "-f", "-c", path, "-s", self.bird_sock("r"))
        until("BIRD router up", 10, lambda: "Daemon is up" in self.birdc("r", "show", "status"))

    def bird_sock(self, role):
        return os.path.join(self.dir, f"bird-{role}.ctl")

    def birdc(self, role, *cmd):
        return sh("birdc", "-s", self.bird_sock(role), *cmd, check=False)

    def start_router_gobgp(self):
        neighbors = []
        for i in range(1, self.n + 1):
            for fam, addr in (("ipv4-unicast", f"10.0.{i}.2"), ("ipv6-unicast", f"fd00:{i}::2")):
                if fam.startswith("ipv6") and not self.v6:
                    continue
                pw = f'auth-password = "{self.router_md5}"' if self.router_md5 else ""
                neighbors.append(f"""
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = {POP_AS}
    {pw}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{fam}"
""")
        conf = f"""
[global.config]
  as = {ROUTER_AS}
  router-id = "10.0.100.1"
{"".join(neighbors)}
"""
        path = self.write("gobgpd.toml", conf)
        self.spawn("gobgpd", "r", "gobgpd", "-f", path, "--api-hosts", "127.0.0.1:50051")
        until("gobgpd API", 15, lambda: sh("gobgp", "neighbor", ns=self.ns("r"), check=False))

    def start_router_frr(self):
        nbrs, afs4, afs6 = [], [], []
        for i in range(1, self.n + 1):
            for v6, addr in ((False, f"10.0.{i}.2"), (True, f"fd00:{i}::2")):
                if v6 and not self.v6:
                    continue
                nbrs.append(f" neighbor {addr} remote-as {POP_AS}\n neighbor {addr} timers 3 9\n"
                            f" neighbor {addr} timers connect 1\n")
                if self.router_md5:
                    nbrs.append(f" neighbor {addr} password {self.router_md5}\n")
                act = f"  neighbor {addr} activate\n  neighbor {addr} route-map ANY in\n" \
                      f"  neighbor {addr} route-map ANY out\n"
                (afs6 if v6 else afs4).append(act)
        conf = f"""
hostname router
log stdout informational
route-map ANY permit 10
!
router bgp {ROUTER_AS}
 bgp router-id 10.0.100.1
 no bgp default ipv4-unicast
 no bgp ebgp-requires-policy
{"".join(nbrs)} address-family ipv4 unicast
{"".join(afs4)} exit-address-family
 address-family ipv6 unicast
{"".join(afs6)} exit-address-family
!
"""
        path = self.write("frr-bgpd.conf", conf)
        vty = os.path.join(self.dir, "frr")
        os.makedirs(vty, exist_ok=True)
        self.frr_vty = vty
        self.spawn("frr-bgpd", "r", "/usr/lib/frr/bgpd", "-Z", "-n", "-S", "-f", path,
                   "-i", os.path.join(vty, "bgpd.pid"), "--vty_socket", vty, "-P", "0",
                   "-u", "root", "-g", "root")
        until("FRR bgpd vty", 15, lambda: os.path.exists(os.path.join(vty, "bgpd.vty")))

    def vtysh(self, cmd):
        return sh("vtysh", "--vty_socket", self.frr_vty, "-d", "bgpd", "-c", cmd,
                  ns=self.ns("r"), check=False)

    def router_established(self, i):
        """Whether the router's IPv4 session with PoP i is established."""
        if self.router == "bird":
            return "Established" in self.birdc("r", "show", "protocols", f"p{i}v4")
        if self.router == "gobgp":
            out = sh("gobgp", "neighbor", f"10.0.{i}.2", ns=self.ns("r"), check=False)
            return "bgp state = established" in out.lower()
        out = self.vtysh(f"show bgp neighbors 10.0.{i}.2 json")
        try:
            return json.loads(out)[f"10.0.{i}.2"]["bgpState"] == "Established"
        except (ValueError, KeyError):
            return False

    def router_has(self, prefix, pop=None):
        """Whether the router holds a route for `prefix` (from PoP `pop` when given)."""
        v6 = ":" in prefix
        nh = (f"fd00:{pop}::2" if v6 else f"10.0.{pop}.2") if pop else None
        if self.router == "bird":
            out = sh("ip", "-6" if v6 else "-4", "route", "show", prefix, ns=self.ns("r"))
            return bool(out.strip()) and (nh is None or f"via {nh} " in out + " ")
        if self.router == "gobgp":
            out = sh("gobgp", "global", "rib", "-a", "ipv6" if v6 else "ipv4", prefix, "-j",
                     ns=self.ns("r"), check=False)
            try:
                paths = json.loads(out or "{}").get(prefix, [])
            except ValueError:
                return False
            return any(nh is None or f'"{nh}"' in json.dumps(p) for p in paths)
        out = self.vtysh(f"show bgp {'ipv6' if v6 else 'ipv4'} unicast {prefix} json")
        try:
            paths = json.loads(out).get("paths", [])
        except ValueError:
            return False
        return any(nh is None or any(h.get("ip") == nh for h in p.get("nexthops", []))
                   for p in paths)

    def router_best(self, v6=False):
        """The PoP number the router's kernel forwards the anycast prefix to (BIRD router)."""
        out = sh("ip", "-6" if v6 else "-4", "route", "show", PREFIX_V6 if v6 else PREFIX_V4,
                 ns=self.ns("r"))
        m = re.search(r"via (?:10\.0\.(\d+)\.2|fd00:(\d+)::2)", out)
        return int(m.group(1) or m.group(2)) if m else None

    # ---------- the PoPs ----------
    def pop_config(self, i, anycast=True):
        bfd = (f"bfd = {{ min_tx = \"{self.bfd_ms}ms\", min_rx = \"{self.bfd_ms}ms\", "
               f"multiplier = 3 }}" if self.bfd_ms else "")
        md5 = f'md5_password = "{self.md5}"' if self.md5 else ""
        peers = ""
        fams = [("ipv4", f"10.0.{i}.1")] + ([("ipv6", f"fd00:{i}::1")] if self.v6 else [])
        for fam, addr in fams:
            peers += f"""
[[anycast.peers]]
address = "{addr}"
asn = {ROUTER_AS}
families = ["{fam}"]
med = {10 * i}
hold_time = "9s"
connect_retry = "1s"
import = ["10.99.0.0/16 le 24"]
max_prefixes = 100
{md5}
{bfd}
"""
        section = f"""
[anycast]
local_as = {POP_AS}
router_id = "10.0.{i}.2"
prefixes = ["{PREFIX_V4}", "{PREFIX_V6}"]
lo_addresses = ["{ANYCAST_V4}/32", "{ANYCAST_V6}/128"]
graceful_shutdown_wait = "{self.gshut_wait}"
drain_time = "{self.drain_time}"
check_interval = "{self.check_ms}ms"
{peers}
[[anycast.checks]]
name = "origin"
http = "http://127.0.0.1:8080/health"
interval = "{self.check_ms}ms"
timeout = "200ms"
rise = 2
fall = 1
""" if anycast else ""
        return f"""
[node]
name = "p{i}"
threads = 1
drain_timeout = "5s"

[[listeners]]
address = "0.0.0.0:80"
protocol = "http"

[[listeners]]
address = "[::]:80"
protocol = "http"

[admin]
address = "127.0.0.1:9000"
token_file = "{self.dir}/p{i}-admin-token"

[access_log]
output = "off"

[cache]
memory = "16MiB"

[[zones]]
name = "anycast"
hostnames = ["{HOST}"]
[zones.cache]
enabled = false
[zones.origins]
connect_timeout = "1s"
read_timeout = "5s"
[[zones.origins.servers]]
address = "127.0.0.1:8080"
{section}
"""

    def start_pop(self, i):
        role = f"p{i}"
        self.spawn(f"origin-{role}", role, sys.executable, ORIGIN, role, "8080",
                   stdout=subprocess.DEVNULL)
        if self.speaker == "bird":
            # BIRD announces; the addresses go on lo by hand.
            sh("ip", "addr", "add", f"{ANYCAST_V4}/32", "dev", "lo", ns=self.ns(role))
            sh("ip", "-6", "addr", "add", f"{ANYCAST_V6}/128", "dev", "lo", ns=self.ns(role))
            self.start_pop_bird(i)
        cfg = self.write(f"{role}.toml", self.pop_config(i, anycast=self.speaker == "edgenet"))
        self.spawn(f"edgenet-{role}", role, self.edgenet, "pop", "--config", cfg)
        until(f"{role} ready", 15, lambda: self.admin(i, "/ready")[0] == 200)

    def start_pop_bird(self, i):
        bfd = (f"protocol bfd {{ interface \"*\" {{ min rx interval {self.bfd_ms} ms; "
               f"min tx interval {self.bfd_ms} ms; idle tx interval 100 ms; multiplier 3; }}; }}"
               if self.bfd_ms else "")
        conf = f"""
router id 10.0.{i}.2;
protocol device {{ scan time 10; }}
{bfd}
protocol static anycast4 {{ ipv4; route {PREFIX_V4} unreachable; }}
protocol static anycast6 {{ ipv6; route {PREFIX_V6} unreachable; }}
template bgp up {{
  local as {POP_AS};
  hold time 9; keepalive time 3;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  {"bfd on;" if self.bfd_ms else ""}
}}
protocol bgp r4 from up {{
  neighbor 10.0.{i}.1 as {ROUTER_AS};
  ipv4 {{ import none; export filter {{ bgp_med = {10 * i}; accept; }}; }};
}}
protocol bgp r6 from up {{
  neighbor fd00:{i}::1 as {ROUTER_AS};
  ipv6 {{ import none; export filter {{ bgp_med = {10 * i}; accept; }}; }};
}}
"""
        path = self.write(f"bird-p{i}.conf", conf)
        self.spawn(f"bird-p{i}", f"p{i}", "bird", "-f", "-c", path, "-s", self.bird_sock(f"p{i}"))
        until(f"BIRD p{i} up", 10,
              lambda: "Daemon is up" in self.birdc(f"p{i}", "show", "status"))

    def admin(self, i, path, method="GET", token=None):
        """(status, body) of the PoP's admin API; calls that change state send the PoP's admin
        token unless token=False (reading needs none)."""
        auth = []
        if token is None:
            token = method != "GET"
        if token:
            with open(os.path.join(self.dir, f"p{i}-admin-token")) as f:
                auth = ["-H", f"Authorization: Bearer {f.read().strip()}"]
        out = sh("curl", "-s", "-m", "2", "-X", method, *auth, "-o", "-", "-w", "\n%{http_code}",
                 f"http://127.0.0.1:9000{path}", ns=self.ns(f"p{i}"), check=False)
        body, _, code = out.rpartition("\n")
        return int(code or 0), body

    def anycast_status(self, i):
        code, body = self.admin(i, "/anycast")
        return json.loads(body)["result"] if code == 200 else None

    def metrics(self, i):
        return self.admin(i, "/metrics")[1]

    # ---------- the client ----------
    def client_get(self, v6=False, timeout=1.0):
        """The PoP that answered a request to the anycast address (by X-Origin), or None."""
        addr = f"[{ANYCAST_V6}]" if v6 else ANYCAST_V4
        out = sh("curl", "-s", "-m", str(timeout), "-o", "/dev/null", "-D", "-", "-H",
                 f"Host: {HOST}", f"http://{addr}/echo", ns=self.ns("c"), check=False)
        m = re.search(r"(?im)^x-origin: p(\d+)", out)
        return int(m.group(1)) if m else None

    def pop_get(self, i):
        """The PoP that answered a request from the client to PoP i's own address."""
        out = sh("curl", "-s", "-m", "1", "-o", "/dev/null", "-D", "-", "-H", f"Host: {HOST}",
                 f"http://10.0.{i}.2/echo", ns=self.ns("c"), check=False)
        m = re.search(r"(?im)^x-origin: p(\d+)", out)
        return int(m.group(1)) if m else None

    def expect_client(self, pop, within=10, v6=False):
        until(f"the client to reach p{pop}{' over IPv6' if v6 else ''}", within,
              lambda: self.client_get(v6=v6, timeout=0.5) == pop, step=0.05)

    def silence(self, i, on=True):
        """Drops every packet in PoP i's namespace (a silent failure), or lifts the drop."""
        ns_ = self.ns(f"p{i}")
        if on:
            rules = ("table inet silence {\n chain in { type filter hook input priority -300; "
                     "policy drop; }\n chain out { type filter hook output priority -300; "
                     "policy drop; }\n}\n")
            path = self.write(f"silence-p{i}.nft", rules)
            sh("nft", "-f", path, ns=ns_)
        else:
            sh("nft", "delete", "table", "inet", "silence", ns=ns_)


# ---------- triggers and probes for timings ----------
class Trigger:
    """A process already running inside a PoP namespace that carries out one command per line,
    so an event starts within microseconds of its timestamp instead of after `ip netns exec`
    and a process start: `post URL` (an HTTP POST) or `birdc COMMAND` (written to a BIRD
    client kept open)."""

    def __init__(self, rig, i):
        script = os.path.join(rig.dir, "trigger.py")
        with open(script, "w") as f:
            f.write(TRIGGER)
        sock = rig.bird_sock(f"p{i}") if rig.speaker == "bird" else ""
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", rig.ns(f"p{i}"), sys.executable, "-u", script, sock],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def run(self, line):
        """Sends the command and returns the time it was sent (the event's time zero)."""
        t0 = time.time()
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = self.p.stdout.readline().strip()
        assert reply.startswith("ok"), reply
        return t0

    def close(self):
        self.p.kill()
        self.p.wait()


TRIGGER = r'''
import subprocess, sys, urllib.request
sock = sys.argv[1]
birdc = subprocess.Popen(["birdc", "-s", sock], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True) if sock else None
print("ready", flush=True)
for line in sys.stdin:
    verb, _, rest = line.strip().partition(" ")
    if verb == "post":
        urllib.request.urlopen(urllib.request.Request(rest, method="POST"), timeout=5).read()
    elif verb == "birdc":
        birdc.stdin.write(rest + "\n")
        birdc.stdin.flush()
    print("ok", flush=True)
'''


class Probe(threading.Thread):
    """Watches, from the router, the kernel route of the anycast prefix (`ip -ts monitor`), and
    from the client, which PoP answers a request (one new connection every ~2 ms)."""

    def __init__(self, rig):
        super().__init__(daemon=True)
        self.rig = rig
        self.answers = []  # (time, pop)
        self.stop_flag = False
        script = os.path.join(rig.dir, "client_probe.py")
        with open(script, "w") as f:
            f.write(CLIENT_PROBE)
        self.client = subprocess.Popen(
            ["ip", "netns", "exec", rig.ns("c"), sys.executable, script, ANYCAST_V4, HOST],
            stdout=subprocess.PIPE, text=True)
        self.monitor = subprocess.Popen(
            ["ip", "netns", "exec", rig.ns("r"), "ip", "-ts", "-4", "monitor", "route"],
            stdout=subprocess.PIPE, text=True)
        self.routes = []  # (time, line)
        threading.Thread(target=self.read_monitor, daemon=True).start()

    def read_monitor(self):
        # "[2026-11-23T15:03:32.123456] 192.0.2.0/24 via ...": ip stamps each change when it
        # receives it from the kernel, so late reads of the pipe do not skew the time.
        for line in self.monitor.stdout:
            m = re.match(r"\[(\S+)\]\s*(.*)", line)
            if m and PREFIX_V4 in line:
                t = datetime.datetime.fromisoformat(m.group(1)).timestamp()
                self.routes.append((t, m.group(2).strip()))

    def run(self):
        for line in self.client.stdout:
            t, pop = line.split()
            self.answers.append((float(t), int(pop)))

    def route_change_after(self, t0, to_pop):
        for t, line in self.routes:
            if t >= t0 and f"via 10.0.{to_pop}.2 " in line + " " and not line.startswith("Deleted"):
                return (t - t0) * 1000
        return None

    def answer_after(self, t0, pop):
        for t, p in self.answers:
            if t >= t0 and p == pop:
                return (t - t0) * 1000
        return None

    def close(self):
        for p in (self.client, self.monitor):
            p.kill()
            p.wait()


# The probe runs inside the client namespace: new connection, GET, read X-Origin; prints
# "time pop" for every answer. Connections that hang (to a PoP that went silent) time out after
# 20 ms, so the probe keeps probing.
CLIENT_PROBE = r'''
import re, socket, sys, time
addr, host = sys.argv[1], sys.argv[2]
req = ("GET /echo HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode()
end = time.time() + 600
while time.time() < end:
    try:
        s = socket.create_connection((addr, 80), timeout=0.02)
        s.settimeout(0.05)
        s.sendall(req)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        m = re.search(rb"(?i)x-origin: p(\d+)", data)
        if m:
            print("%.6f %s" % (time.time(), m.group(1).decode()), flush=True)
    except OSError:
        pass
    time.sleep(0.002)
'''


# ---------- scenarios ----------
def scenario_bird(args):
    """Three edgenet PoPs and a BIRD router: preference, drain/undrain, IPv6, health check,
    silent failure (BFD), killed node, SIGTERM, status and metrics."""
    with Rig(args.edgenet, pops=3, gshut_wait="200ms") as rig:
        for i in (1, 2, 3):
            until(f"router sessions with p{i}", 20, lambda i=i: rig.router_established(i))
        rig.expect_client(1)
        rig.expect_client(1, v6=True)
        log("ok: the client reaches the preferred PoP (lowest MED) over IPv4 and IPv6")
        st = rig.anycast_status(1)
        assert st["state"] == "announced", st
        assert all(p["state"] == "Established" for p in st["peers"]), st["peers"]
        assert {p["bfd"] for p in st["peers"]} == {"up"}, st["peers"]
        assert all(p["prefixes_announced"] == 1 for p in st["peers"]), st["peers"]
        m = rig.metrics(1)
        assert 'edgenet_bgp_session_established{peer="10.0.1.1"} 1' in m, m
        assert "edgenet_anycast_announced 1" in m
        assert 'edgenet_bfd_up{peer="10.0.1.1"} 1' in m
        log("ok: status JSON and metrics show sessions, BFD and announcements")
        # A 4-octet AS path as the router sees it, and the MED.
        out = rig.birdc("r", "show", "route", PREFIX_V4, "all")
        assert str(POP_AS) in out and "BGP.med: 10" in out, out

        # Without the admin token a drain is refused and the routes stay announced.
        code, body = rig.admin(1, "/anycast/drain", "POST", token=False)
        assert code == 401, (code, body)
        code, _ = rig.admin(1, "/anycast/undrain", "POST", token=False)
        assert code == 401
        assert rig.anycast_status(1)["state"] == "announced", rig.anycast_status(1)
        assert rig.router_best() == 1 and rig.client_get() == 1
        log("ok: a drain without the admin token gets 401 and changes nothing")

        # Drain: graceful shutdown then withdrawal; in-flight and new requests to p1 still work.
        code, _ = rig.admin(1, "/anycast/drain", "POST")
        assert code == 200
        rig.expect_client(2, within=5)
        until("p1 withdrawn", 5, lambda: rig.anycast_status(1)["state"] == "withdrawn")
        # The router's kernel follows BIRD's new best path a moment after the withdrawal.
        until("the router forwards to p2", 5, lambda: rig.router_best() == 2)
        assert rig.pop_get(1) == 1, "a drained PoP keeps serving traffic that reaches it"
        code, _ = rig.admin(1, "/anycast/undrain", "POST")
        assert code == 200
        rig.expect_client(1, within=5)
        log("ok: drain moves traffic to p2, undrain brings it back")

        # Service dead while the host lives: the origin's health check fails.
        sh("curl", "-s", "-X", "POST", "http://127.0.0.1:8080/control/health?status=503",
           ns=rig.ns("p1"))
        rig.expect_client(2, within=5)
        st = rig.anycast_status(1)
        assert st["state"] == "withdrawn" and "origin" in st["reason"], st
        sh("curl", "-s", "-X", "POST", "http://127.0.0.1:8080/control/health?status=200",
           ns=rig.ns("p1"))
        rig.expect_client(1, within=5)
        log("ok: a failing health check withdraws, a passing one re-announces")

        # Silent failure: everything in p1's namespace is dropped; BFD takes the session down.
        t0 = time.time()
        rig.silence(1)
        rig.expect_client(2, within=5)
        moved = time.time() - t0
        assert "Established" not in rig.birdc("r", "show", "protocols", "p1v4")
        log(f"ok: a silent failure moves traffic in {moved * 1000:.0f} ms (BFD 3 x {rig.bfd_ms} ms)")
        rig.silence(1, on=False)
        until("p1 back", 20, lambda: rig.router_established(1))
        rig.expect_client(1, within=10)
        log("ok: p1 comes back after the drop is lifted")

        # The node killed: the kernel closes the TCP session, the router withdraws.
        rig.procs["edgenet-p1"].kill()
        rig.expect_client(2, within=5)
        log("ok: killing p1's node moves traffic to p2")

        # SIGTERM on p2: withdraw, serve on for drain_time, exit 0.
        p2 = rig.procs["edgenet-p2"]
        t0 = time.time()
        p2.send_signal(signal.SIGTERM)
        rig.expect_client(3, within=5)
        assert rig.pop_get(2) == 2, "p2 serves on during its drain time"
        assert p2.wait(timeout=15) == 0
        took = time.time() - t0
        assert took >= 1.0, f"exited {took:.2f}s after SIGTERM, before the 1s drain time"
        until("p2's session closed", 5, lambda: not rig.router_established(2))
        out = sh("ip", "-o", "addr", "show", "dev", "lo", ns=rig.ns("p2"))
        assert ANYCAST_V4 not in out, f"anycast address left on lo: {out}"
        log("ok: SIGTERM withdraws, keeps serving, exits 0 and removes its lo addresses")


def scenario_md5(args):
    """TCP MD5: a matching key gives a session, a mismatch none."""
    with Rig(args.edgenet, pops=1, md5="s3cret", router_md5="s3cret", bfd_ms=0, v6=False) as rig:
        until("session with MD5", 20, lambda: rig.router_established(1))
        rig.expect_client(1)
        log("ok: matching MD5 keys: session up, traffic flows")
    with Rig(args.edgenet, pops=1, md5="s3cret", router_md5="other", bfd_ms=0, v6=False) as rig:
        time.sleep(4)
        assert not rig.router_established(1), "a session came up with mismatched MD5 keys"
        st = rig.anycast_status(1)
        assert st["peers"][0]["state"] != "Established", st
        assert rig.client_get(timeout=0.5) is None
        log("ok: mismatched MD5 keys: no session; error: " + str(st["peers"][0]["last_error"]))


def interop(args, router):
    """Session, announce, withdraw (drain) and a route received from the router."""
    with Rig(args.edgenet, pops=1, router=router, bfd_ms=0) as rig:
        until(f"{router} session", 30, lambda: rig.router_established(1))
        until(f"{router} has our IPv4 route", 10, lambda: rig.router_has(PREFIX_V4, 1))
        until(f"{router} has our IPv6 route", 10, lambda: rig.router_has(PREFIX_V6, 1))
        log(f"ok: {router} established and received our IPv4 and IPv6 prefixes")
        rig.admin(1, "/anycast/drain", "POST")
        until(f"{router} withdrew", 10, lambda: not rig.router_has(PREFIX_V4))
        rig.admin(1, "/anycast/undrain", "POST")
        until(f"{router} re-learned", 10, lambda: rig.router_has(PREFIX_V4, 1))
        log(f"ok: drain withdraws at {router}, undrain re-announces")
        # A route the router sends us lands in our RIB (the import filter allows 10.99/16 le 24).
        r = rig.ns("r")
        if router == "gobgp":
            sh("gobgp", "global", "rib", "add", "10.99.1.0/24", "origin", "igp", "-a", "ipv4", ns=r)
            sh("gobgp", "global", "rib", "add", "10.98.0.0/24", "origin", "igp", "-a", "ipv4", ns=r)
        else:
            sh("ip", "route", "add", "blackhole", "10.99.1.0/24", ns=r)
            sh("ip", "route", "add", "blackhole", "10.98.0.0/24", ns=r)
            sh("vtysh", "--vty_socket", rig.frr_vty, "-d", "bgpd", "-c", "configure terminal",
               "-c", "router bgp 65000", "-c", "address-family ipv4 unicast",
               "-c", "network 10.99.1.0/24", "-c", "network 10.98.0.0/24", ns=r)

        def best():
            st = rig.anycast_status(1)
            return [x["prefix"] for x in st["best_routes"]], st["peers"][0]
        until("the router's route in our RIB", 10, lambda: best()[0] == ["10.99.1.0/24"])
        routes, peer = best()
        # Received counts what the router sent (some routers send our own route back: it has
        # our AS in its path and is not accepted); accepted is what the import filter let in.
        assert peer["prefixes_received"] >= 2 and peer["prefixes_accepted"] == 1, peer
        log(f"ok: a route from {router} is received; the import filter rejects the other")


def scenario_gobgp(args):
    interop(args, "gobgp")


def scenario_frr(args):
    interop(args, "frr")


def measure(rig, probe, trigger, to_pop, restore, settle):
    """Runs `trigger` (which returns the event's time zero), returns (ms to the router's route
    change, ms to the client's first answer from `to_pop`), then `restore` and waits for
    traffic to return to p1."""
    time.sleep(0.5)
    t0 = trigger()
    until(f"traffic on p{to_pop}", 10, lambda: probe.answer_after(t0, to_pop) is not None, 0.01)
    try:
        until("the route change", 3, lambda: probe.route_change_after(t0, to_pop) is not None,
              0.01)
    except AssertionError:
        for t, line in probe.routes[-6:]:
            log(f"route change at {(t - t0) * 1000:+.1f} ms: {line}")
        raise
    route_ms, answer_ms = probe.route_change_after(t0, to_pop), probe.answer_after(t0, to_pop)
    restore()
    settle()
    return route_ms, answer_ms


def scenario_bench(args):
    """Timings for bench/anycast.sh: drain, BFD failover and (edgenet only) service failure,
    with edgenet and then BIRD as the PoP speaker. Prints one JSON object last."""
    results = {}
    runs = args.runs
    for speaker in ("edgenet", "bird"):
        with Rig(args.edgenet, pops=2, speaker=speaker, bfd_ms=10, check_ms=10,
                 gshut_wait="500ms") as rig:
            for i in (1, 2):
                until(f"sessions p{i}", 30, lambda i=i: rig.router_established(i))
            rig.expect_client(1, within=15)
            probe = Probe(rig)
            probe.start()
            until("probe answers", 10, lambda: probe.answers)

            def back_to_1():
                until("p1 sessions", 30, lambda: rig.router_established(1))
                rig.expect_client(1, within=15)

            trig = Trigger(rig, 1)

            def silence():
                t0 = time.time()
                rig.silence(1)
                return t0

            kinds = {
                "drain": (
                    (lambda: trig.run("post http://127.0.0.1:9000/anycast/drain"))
                    if speaker == "edgenet" else (lambda: trig.run("birdc disable anycast4")),
                    (lambda: trig.run("post http://127.0.0.1:9000/anycast/undrain"))
                    if speaker == "edgenet" else (lambda: trig.run("birdc enable anycast4")),
                ),
                # `nft -f` runs in a new process; the drop starts when it returns, so time zero
                # is taken before it starts (this counts the few ms nft takes against us).
                "bfd_failover": (silence, lambda: rig.silence(1, on=False)),
            }
            if speaker == "edgenet":
                kinds["service_failure"] = (
                    lambda: trig.run("post http://127.0.0.1:8080/control/health?status=503"),
                    lambda: trig.run("post http://127.0.0.1:8080/control/health?status=200"),
                )
            for kind, (trigger, restore) in kinds.items():
                rows = []
                for _ in range(runs):
                    rows.append(measure(rig, probe, trigger, 2, restore, back_to_1))
                route = sorted(r for r, _ in rows if r is not None)
                answer = sorted(a for _, a in rows if a is not None)
                med = lambda xs: xs[len(xs) // 2] if xs else None
                results[(speaker, kind)] = (med(route), med(answer), rows)
                log(f"{speaker:8} {kind:16} route change ms {route}  first answer ms {answer}")
            probe.close()
            trig.close()
    print()
    print(f"{'speaker':10}{'event':18}{'route change (median ms)':>26}{'first answer (median ms)':>26}")
    for (speaker, kind), (route, answer, _) in results.items():
        fmt = lambda x: f"{x:.1f}" if x is not None else "-"
        print(f"{speaker:10}{kind:18}{fmt(route):>26}{fmt(answer):>26}")
    pick = lambda s, k: round(results[(s, k)][0], 1) if results[(s, k)][0] is not None else None
    print(json.dumps({
        "drain_ms": pick("edgenet", "drain"),
        "bfd_failover_ms": pick("edgenet", "bfd_failover"),
        "service_failure_ms": pick("edgenet", "service_failure"),
        "bird_drain_ms": pick("bird", "drain"),
        "bird_bfd_failover_ms": pick("bird", "bfd_failover"),
    }))


RECORDER = r'''
import socket, struct, sys, time
# A passive BGP peer that answers OPEN with OPEN + KEEPALIVE, keeps the session alive and
# prints every message it receives as "type hex".
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("10.0.1.1", 179)); ls.listen(1)
c, _ = ls.accept()
caps = bytes([1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1, 2, 0, 65, 4]) + struct.pack("!I", 65000)
params = bytes([2, len(caps)]) + caps
body = bytes([4]) + struct.pack("!HH", 65000, 90) + bytes([10, 0, 1, 1, len(params)]) + params
msg = lambda t, b: b"\xff" * 16 + struct.pack("!HB", 19 + len(b), t) + b
c.sendall(msg(1, body) + msg(4, b""))
c.settimeout(0.5)
buf, end = b"", time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        data = c.recv(65536)
    except socket.timeout:
        c.sendall(msg(4, b""))
        continue
    if not data:
        break
    buf += data
    while len(buf) >= 19 and len(buf) >= struct.unpack("!H", buf[16:18])[0]:
        n = struct.unpack("!H", buf[16:18])[0]
        print(buf[18], buf[:n].hex(), flush=True)
        buf = buf[n:]
'''


def scenario_capture(args):
    """Records the messages BIRD and GoBGP send when they announce 192.0.2.0/24 and
    2001:db8:1::/48 with MED 10 to a peer (the source of the codec's capture test vectors)."""
    for who in ("bird", "gobgp"):
        rig = Rig(args.edgenet, pops=0)
        try:
            rig.add_ns("r")
            rig.add_ns("p1")
            rig.link("p1", "eth0", "r", "p1", ["10.0.1.2/24", "fd00:1::2/64"],
                     ["10.0.1.1/24", "fd00:1::1/64"])
            script = rig.write("recorder.py", RECORDER)
            rec = subprocess.Popen(["ip", "netns", "exec", rig.ns("r"), sys.executable, script,
                                    "4"], stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)
            if who == "bird":
                conf = f"""
router id 10.0.1.2;
protocol device {{ }}
protocol static s4 {{ ipv4; route {PREFIX_V4} unreachable; }}
protocol static s6 {{ ipv6; route {PREFIX_V6} unreachable; }}
protocol bgp r {{
  local 10.0.1.2 as {POP_AS}; neighbor 10.0.1.1 as {ROUTER_AS};
  ipv4 {{ import none; export filter {{ bgp_med = 10; accept; }}; }};
  ipv6 {{ import none; export filter {{ bgp_med = 10; accept; }}; next hop address fd00:1::2; }};
}}
"""
                path = rig.write("bird.conf", conf)
                rig.spawn("bird", "p1", "bird", "-f", "-c", path, "-s", rig.bird_sock("p1"))
            else:
                conf = f"""
[global.config]
  as = {POP_AS}
  router-id = "10.0.1.2"
  port = -1
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.1.1"
    peer-as = {ROUTER_AS}
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"""
                path = rig.write("gobgpd.toml", conf)
                rig.spawn("gobgpd", "p1", "gobgpd", "-f", path, "--api-hosts", "127.0.0.1:50051")
                until("gobgpd API", 15, lambda: sh("gobgp", "neighbor", ns=rig.ns("p1"),
                                                   check=False))
                for pfx, fam, nh in ((PREFIX_V4, "ipv4", "10.0.1.2"),
                                     (PREFIX_V6, "ipv6", "fd00:1::2")):
                    sh("gobgp", "global", "rib", "add", pfx, "origin", "igp", "med", "10",
                       "nexthop", nh, "-a", fam, ns=rig.ns("p1"))
            out, _ = rec.communicate(timeout=20)
            print(f"# {who}")
            print(out.strip())
        finally:
            rig.down()


SCENARIOS = {
    "capture": scenario_capture,
    "bird": scenario_bird,
    "md5": scenario_md5,
    "gobgp": scenario_gobgp,
    "frr": scenario_frr,
    "bench": scenario_bench,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("scenario", choices=SCENARIOS)
    ap.add_argument("--edgenet", required=True)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(1))
    SCENARIOS[args.scenario](args)
    log(f"scenario {args.scenario}: passed")


if __name__ == "__main__":
    main()
