#!/usr/bin/env python3
"""Smart routing on an emulated topology (network namespaces, this machine only).

    hub ns (control plane, origin) --veth-- pop1 ns, pop2 ns

This kernel has no `tc netem`, so delay is added in userspace: inside each PoP namespace the
origin's address (10.9.9.9:80) and the other PoP's backbone address (10.8.0.N:7443) are local
addresses served by a delay relay (a TCP relay that holds each chunk for half the configured
RTT in each direction) that forwards to the real destination. The RTT of each relay is read
from a file, so a test can change the topology while it runs.

Scenarios (run as root):  smart.py test --edgenet PATH   |   smart.py bench --edgenet PATH
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from netns import delete_namespace, log, sh, stop_processes, until  # noqa: E402
ORIGIN = os.path.join(HERE, "..", "support", "origin.py")
ORIGIN_VIP = "10.9.9.9"


# A TCP relay that delays every chunk by half the RTT in the file given, in each direction,
# keeping order. Arguments: listen_ip listen_port target_ip target_port rtt_file.
DELAY_RELAY = r'''
import asyncio, sys, time
lip, lport, tip, tport, rtt_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
state = {"half": 0.0, "read": 0.0}
def half():
    now = time.monotonic()
    if now - state["read"] > 0.1:
        state["read"] = now
        try:
            state["half"] = float(open(rtt_file).read().strip()) / 2000.0
        except (OSError, ValueError):
            pass
    return state["half"]
async def pump(reader, writer):
    q = asyncio.Queue()
    async def sender():
        while True:
            due, data = await q.get()
            if data is None:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except OSError:
            pass
    task = asyncio.ensure_future(sender())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await q.put((time.monotonic() + half(), data))
    except OSError:
        pass
    await q.put((0, None))
    try:
        await task
    except OSError:
        pass
async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection(tip, tport)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pump(cr, uw), pump(ur, cw), return_exceptions=True)
    for w in (cw, uw):
        w.close()
async def main():
    server = await asyncio.start_server(handle, lip, lport)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
'''


class Topology:
    def __init__(self, edgenet, direct_ms, relay_ms, pop_link_ms, smart=True):
        """direct_ms: pop1→origin RTT; relay_ms: pop2→origin RTT; pop_link_ms: pop1↔pop2."""
        self.edgenet = edgenet
        self.tag = f"{os.getpid() % 100000:05d}"
        self.dir = tempfile.mkdtemp(prefix="edgenet-smart-")
        self.namespaces, self.procs, self.named = [], [], {}
        self.rtt = {}
        self.smart = smart
        self.initial = {"origin1": direct_ms, "origin2": relay_ms, "link12": pop_link_ms,
                        "link21": pop_link_ms}

    def ns(self, role):
        return f"sm{self.tag}{role}"

    def set_rtt(self, name, ms):
        with open(os.path.join(self.dir, f"{name}.rtt"), "w") as f:
            f.write(str(ms))

    def spawn(self, role, *cmd, env=None, name=None):
        out = open(os.path.join(self.dir, f"{name or role}.log"), "ab")
        p = subprocess.Popen(("ip", "netns", "exec", self.ns(role)) + cmd, stdout=out,
                             stderr=out, stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        self.named[name or role] = p
        return p

    def relay(self, role, listen, target, rtt_name):
        script = os.path.join(self.dir, "relay.py")
        with open(script, "w") as f:
            f.write(DELAY_RELAY)
        lip, lport = listen.rsplit(":", 1)
        tip, tport = target.rsplit(":", 1)
        self.spawn(role, sys.executable, script, lip, lport, tip, tport,
                   os.path.join(self.dir, f"{rtt_name}.rtt"), name=f"relay-{rtt_name}")

    def up(self):
        for k, v in self.initial.items():
            self.set_rtt(k, v)
        for role in ("hub", "p1", "p2"):
            name = self.ns(role)
            sh("ip", "netns", "add", name)
            self.namespaces.append(name)
            sh("ip", "link", "set", "lo", "up", ns=name)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.ns("hub"))
        for i in (1, 2):
            a, b = f"s{self.tag}h{i}", f"s{self.tag}p{i}"
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            sh("ip", "link", "set", a, "netns", self.ns("hub"))
            sh("ip", "link", "set", b, "netns", self.ns(f"p{i}"))
            sh("ip", "addr", "add", f"10.1.{i}.1/24", "dev", a, ns=self.ns("hub"))
            sh("ip", "link", "set", a, "up", ns=self.ns("hub"))
            sh("ip", "addr", "add", f"10.1.{i}.2/24", "dev", b, ns=self.ns(f"p{i}"))
            sh("ip", "link", "set", b, "up", ns=self.ns(f"p{i}"))
            sh("ip", "route", "add", "default", "via", f"10.1.{i}.1", ns=self.ns(f"p{i}"))
            # The origin's address and the other PoP's backbone address are local addresses of
            # delay relays in each PoP (a PoP never connects to its own backbone address).
            sh("ip", "addr", "add", f"{ORIGIN_VIP}/32", "dev", "lo", ns=self.ns(f"p{i}"))
            sh("ip", "addr", "add", f"10.8.0.{3 - i}/32", "dev", "lo", ns=self.ns(f"p{i}"))
        # The origin and the control plane live in the hub.
        self.spawn("hub", sys.executable, ORIGIN, "origin", "8000", name="origin",
                   env=dict(os.environ, ORIGIN_BIND="0.0.0.0"))
        data = os.path.join(self.dir, "control")
        self.spawn("hub", self.edgenet, "control", "--data", data, "--listen", "0.0.0.0:7070",
                   name="control")
        until("control plane", 20, lambda: os.path.exists(os.path.join(data, "admin-token")), 0.1)
        time.sleep(0.3)
        self.admin = open(os.path.join(data, "admin-token")).read().strip()
        for i in (1, 2):
            # pop i reaches the origin through its own delay relay ...
            self.relay(f"p{i}", f"{ORIGIN_VIP}:80", f"10.1.{i}.1:8000", f"origin{i}")
            # ... and the other PoP's backbone through another.
            j = 3 - i
            self.relay(f"p{i}", f"10.8.0.{j}:7443", f"10.1.{j}.2:7443", f"link{i}{j}")
        pop_token = self.api("POST", "/v1/tokens", {"name": "pops", "scopes": ["pop"]})["result"]["secret"]
        for i in (1, 2):
            self.api("POST", "/v1/pops", {"name": f"p{i}", "latitude": 0, "longitude": 0,
                                           "addresses": [f"10.8.0.{i}:7443"]})
        self.api("POST", "/v1/zones", {"name": "z", "hostnames": ["smart.test"],
                                        "origins": {"servers": [{"address": f"{ORIGIN_VIP}:80"}],
                                                    "read_timeout": "10s"},
                                        "cache": {"enabled": False}})
        self.api("POST", "/v1/zones", {"name": "t", "hostnames": ["tiered.test"],
                                        "origins": {"servers": [{"address": f"{ORIGIN_VIP}:80"}]},
                                        "tiered_cache": "smart"})
        for i in (1, 2):
            cfg = os.path.join(self.dir, f"p{i}.toml")
            backbone = f'\n[backbone]\nlisten = "10.1.{i}.2:7443"\n' if self.smart else ""
            with open(cfg, "w") as f:
                f.write(f'[node]\nname = "p{i}"\nthreads = 1\n\n[[listeners]]\naddress = "127.0.0.1:80"\n'
                        f'protocol = "http"\n\n[admin]\naddress = "127.0.0.1:9000"\n\n[access_log]\noutput = "off"\n'
                        f'{backbone}')
            env = dict(os.environ, EDGENET_TOKEN=pop_token)
            self.spawn(f"p{i}", self.edgenet, "pop", "--config", cfg, "--control",
                       f"http://10.1.{i}.1:7070", "--name", f"p{i}", env=env, name=f"pop{i}")
        for i in (1, 2):
            until(f"p{i} serving", 30, lambda i=i: self.fetch(i)[0] == 200, 0.3)

    def api(self, method, path, body=None):
        out = sh("curl", "-s", "-X", method, "-H", f"Authorization: Bearer {self.admin}",
                 *(["-d", json.dumps(body)] if body is not None else []),
                 f"http://127.0.0.1:7070{path}", ns=self.ns("hub"))
        return json.loads(out)

    def fetch(self, i, path="/echo"):
        """(status, seconds) of one request through PoP i."""
        out = sh("curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-m", "10",
                 "-H", "Host: smart.test", f"http://127.0.0.1:80{path}", ns=self.ns(f"p{i}"),
                 check=False)
        code, t = (out.split() + ["0", "0"])[:2]
        return int(code), float(t)

    def cache_status(self, i, path):
        out = sh("curl", "-s", "-o", "/dev/null", "-D", "-", "-m", "10", "-H", "Host: tiered.test",
                 f"http://127.0.0.1:80{path}", ns=self.ns(f"p{i}"), check=False)
        m = re.search(r"(?im)^cache-status: (.*)$", out)
        return m.group(1).strip() if m else None

    def origin_hits(self, path):
        return int(sh("curl", "-s", f"http://127.0.0.1:8000/hits?path={path}", ns=self.ns("hub")))

    def relays(self, i):
        out = sh("curl", "-s", "http://127.0.0.1:9000/backbone", ns=self.ns(f"p{i}"), check=False)
        try:
            return json.loads(out)["result"]["relays"]
        except (ValueError, KeyError):
            return None

    def median_fetch_ms(self, i, n=9):
        """Median time of n fetches through PoP i, each of which must succeed."""
        results = [self.fetch(i, f"/echo?n={k}") for k in range(n)]
        assert all(code == 200 for code, _ in results), f"fetches through p{i}: {results}"
        times = sorted(t for _, t in results)
        return times[n // 2] * 1000

    def down(self):
        stop_processes(self.procs)
        for name in self.namespaces:
            delete_namespace(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def dump(self):
        for f in sorted(os.listdir(self.dir)):
            if f.startswith("pop") and f.endswith(".log"):
                print(f"----- {f} -----\n" + open(os.path.join(self.dir, f), errors="replace").read()[-2500:])

    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.dump()
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump()
        self.down()


def scenario_test(args):
    with Topology(args.edgenet, direct_ms=200, relay_ms=60, pop_link_ms=20) as t:
        until("p1 to route the origin through p2", 20,
              lambda: (t.relays(1) or {}).get(f"{ORIGIN_VIP}:80") == "p2", 0.1)
        relayed = t.median_fetch_ms(1)
        log(f"ok: p1 relays through p2; fetch {relayed:.0f} ms (direct path 200 ms RTT)")
        assert relayed < 150, f"a relayed fetch took {relayed:.0f} ms"
        # Smart tiering: the upper tier is the PoP nearest the origin (p2).
        obj = "/obj/smart?h=Cache-Control:max-age%3D300&body=s"
        first = t.cache_status(1, obj)
        assert first and first.startswith("p2; fwd=uri-miss") and "p1; fwd=uri-miss" in first, first
        second = t.cache_status(2, obj)
        assert second and second.startswith("p2; hit"), second
        assert t.origin_hits("/obj/smart") == 1
        log(f"ok: smart tiering sends p1's miss to p2 ({first}); p2 then hits")
        # The relay's path to the origin gets slow: p1 goes back to direct within a few rounds.
        t.set_rtt("origin2", 400)
        until("p1 back to direct", 20, lambda: t.relays(1) == {}, 0.1)
        direct = t.median_fetch_ms(1)
        log(f"ok: back to direct when the relay path slows; fetch {direct:.0f} ms")
        assert direct >= 190, f"a direct fetch took {direct:.0f} ms"
        # The relay dies mid-stream: requests still succeed (one retry, direct).
        t.set_rtt("origin2", 60)
        until("p1 relaying again", 20, lambda: (t.relays(1) or {}).get(f"{ORIGIN_VIP}:80") == "p2", 0.1)
        # The relay dies while a request is in flight through it: p1 retries direct.
        slow = subprocess.Popen(
            ["ip", "netns", "exec", t.ns("p1"), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
             "-m", "10", "-H", "Host: smart.test", "http://127.0.0.1:80/slow?ms=800"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        t.named["pop2"].kill()
        code = slow.communicate(timeout=15)[0].strip()
        assert code == "200", f"the in-flight request got {code}"
        pop1_log = open(os.path.join(t.dir, "pop1.log"), errors="replace").read()
        assert "relay failed mid-request" in pop1_log, "the request was not in flight at the relay"
        codes = [t.fetch(1, f"/echo?after-kill={k}")[0] for k in range(5)]
        assert codes == [200] * 5, f"requests after the relay died: {codes}"
        log("ok: a relay dying mid-request costs a retry (direct), not a failure")


def scenario_bench(args):
    # Each case once without the backbone (every fetch direct) and once with it.
    with Topology(args.edgenet, direct_ms=200, relay_ms=60, pop_link_ms=20, smart=False) as t:
        direct = t.median_fetch_ms(1, 15)
    with Topology(args.edgenet, direct_ms=200, relay_ms=60, pop_link_ms=20) as t:
        until("relay chosen", 30, lambda: (t.relays(1) or {}).get(f"{ORIGIN_VIP}:80") == "p2", 0.1)
        relayed = t.median_fetch_ms(1, 15)
    with Topology(args.edgenet, direct_ms=60, relay_ms=200, pop_link_ms=20, smart=False) as t:
        plain = t.median_fetch_ms(1, 15)
    with Topology(args.edgenet, direct_ms=60, relay_ms=200, pop_link_ms=20) as t:
        time.sleep(5)  # several probe rounds
        assert t.relays(1) == {}, t.relays(1)
        smart = t.median_fetch_ms(1, 15)
    print(f"relay case: direct {direct:.1f} ms, smart {relayed:.1f} ms")
    print(f"direct-best case: without backbone {plain:.1f} ms, smart {smart:.1f} ms")
    print(json.dumps({"smart_routing_gain": round(1 - relayed / direct, 3),
                      "smart_routing_loss_when_direct_best": round(smart / plain - 1, 3),
                      "direct_ms": round(direct, 1), "relayed_ms": round(relayed, 1),
                      "direct_best_plain_ms": round(plain, 1), "direct_best_smart_ms": round(smart, 1)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["test", "bench"])
    ap.add_argument("--edgenet", required=True)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(1))
    {"test": scenario_test, "bench": scenario_bench}[a.scenario](a)
    log(f"scenario {a.scenario}: passed")


if __name__ == "__main__":
    main()
