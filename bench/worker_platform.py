#!/usr/bin/env python3
"""Workers as a platform, measured on `edgenet up` (a control plane and three PoPs):

  deploy    the time from a worker upload's answer until every PoP serves the new version.
            Each round uploads a component never seen before (a copy with a custom section of
            its own, so the control plane checks it and the PoPs load it as a new version),
            alternating between two components that answer differently, so a PoP's answer
            says which version it runs. Rust components, then JavaScript ones.
  KV        a worker at pop1 writes a key (PUT /kv/KEY); the time from its answer until the
            workers at pop2 and pop3 read the value. And the guest's own time for one read
            of a key from the PoP's copy (GET /bench, timed inside the worker).

Usage: worker_platform.py EDGENET HELLO_RUST KV_RUST HELLO_JS WORK
Prints its figures as one JSON object on the last line.
"""

import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

EDGENET, HELLO, KV, JS, WORK = sys.argv[1:6]
ROUNDS = int(os.environ.get("DEPLOY_ROUNDS", "6"))
JS_ROUNDS = int(os.environ.get("DEPLOY_JS_ROUNDS", "2"))
WRITES = int(os.environ.get("KV_WRITES", "100"))


def free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def pick_port():
    while True:
        p = random.randrange(20000, 28000)
        offsets = [0, -70] + [o + i for i in (1, 2, 3) for o in (10, 373, 1000, 2020)]
        if all(free(p + o) for o in offsets):
            return p


PORT = pick_port()
CONTROL = f"http://127.0.0.1:{PORT}"
POPS = [f"http://127.0.0.1:{PORT + 10 + i}" for i in (1, 2, 3)]


def request(method, url, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout):
        return 0, b""


def api(method, path, body=None, ctype="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    status, out = request(method, CONTROL + path, data,
                          {"authorization": f"Bearer {TOKEN}", "content-type": ctype}, timeout=120)
    if status >= 300:
        sys.exit(f"{method} {path}: {status} {out[:500]!r}")
    return json.loads(out)["result"]


def at(pop, path, method="GET", body=None):
    return request(method, pop + path, body, {"host": "shop.test"}, timeout=5)


def wait(what, cond, timeout=60.0, every=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(every)
    sys.exit(f"timed out: {what}")


def variant(path, n):
    """The component at `path` with a custom section `edgenet-bench-N` appended (a new SHA-256,
    the same behaviour)."""
    wasm = open(path, "rb").read()
    name = f"edgenet-bench-{n}-{random.random()}".encode()
    payload = bytes([len(name)]) + name
    section = b"\x00" + leb(len(payload)) + payload
    out = os.path.join(WORK, f"variant-{n}.wasm")
    open(out, "wb").write(wasm + section)
    return out


def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


up = subprocess.Popen([EDGENET, "up", "--data", os.path.join(WORK, "up"), "--port", str(PORT)],
                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "up.err"), "w"))
try:
    token_file = os.path.join(WORK, "up", "control", "admin-token")
    wait("edgenet up's control plane", lambda: os.path.exists(token_file), 60, 0.1)
    TOKEN = open(token_file).read().strip()
    for p in POPS:
        wait(f"{p} serving", lambda p=p: request("GET", p + "/", None, {"host": "localhost"})[0] == 200, 90, 0.1)

    account = api("POST", "/v1/accounts", {"name": "bench"})["id"]
    api("POST", f"/v1/accounts/{account}/zones", {
        "name": "shop", "hostnames": ["shop.test"],
        "origins": {"servers": [{"address": f"127.0.0.1:{PORT - 70}"}]}})
    ns = api("POST", f"/v1/accounts/{account}/storage/kv/namespaces", {"title": "bench"})["id"]
    for p in POPS:
        wait(f"{p} serving shop.test", lambda p=p: at(p, "/")[0] == 200, 30, 0.05)

    def deploy(component, answers, first=False):
        """Uploads `component` as script `v`; the ms from the upload's answer until every PoP's
        GET /v answers as `answers` does."""
        api("PUT", f"/v1/accounts/{account}/workers/scripts/v", open(component, "rb").read(),
            "application/wasm")
        returned = time.monotonic()
        if first:
            api("POST", f"/v1/accounts/{account}/workers/routes", {"pattern": "shop.test/v", "script": "v"})
        done = [wait(f"{p} serving the new version",
                     lambda p=p: answers(at(p, "/v")), 120, 0.002) for p in POPS]
        return (max(done) - returned) * 1000

    hello = lambda r: r[0] == 200 and r[1].startswith(b"hello from wasm")  # noqa: E731
    kv_404 = lambda r: r[0] == 404 and r[1].startswith(b"try /kv")  # noqa: E731
    rust_ms = []
    for n in range(ROUNDS + 1):
        kind, answers = (HELLO, hello) if n % 2 == 0 else (KV, kv_404)
        ms = deploy(variant(kind, n), answers, first=(n == 0))
        if n > 0:  # the first also made the route
            rust_ms.append(ms)
        print(f"  deploy {n} (Rust): every PoP {ms:.0f} ms after the upload returned", file=sys.stderr)
    js_ms = []
    if JS_ROUNDS:
        js = lambda r: r[0] == 200 and r[1].startswith(b"hello from js")  # noqa: E731
        for n in range(JS_ROUNDS * 2):
            kind, answers = (JS, js) if n % 2 == 0 else (HELLO, hello)
            ms = deploy(variant(kind, 100 + n), answers)
            if kind == JS:
                js_ms.append(ms)
            print(f"  deploy {n} ({'JavaScript' if kind == JS else 'Rust'}): every PoP {ms:.0f} ms after the upload returned", file=sys.stderr)

    # KV: the kv worker bound to the namespace.
    api("PUT", f"/v1/accounts/{account}/workers/scripts/state", open(KV, "rb").read(), "application/wasm")
    api("PATCH", f"/v1/accounts/{account}/workers/scripts/state/settings", {"kv_namespaces": {"KV": ns}, "limits": {"cpu_time": "5s"}})
    for pattern in ("shop.test/kv/*", "shop.test/bench"):
        api("POST", f"/v1/accounts/{account}/workers/routes", {"pattern": pattern, "script": "state"})
    for p in POPS:
        wait(f"{p} running the KV worker", lambda p=p: at(p, "/kv/none")[0] == 404 and b"no key" in at(p, "/kv/none")[1], 60, 0.02)
    prop = []
    for i in range(WRITES):
        value = f"v{i}".encode()
        status, body = at(POPS[0], f"/kv/p{i}", "PUT", value)
        if status != 204:
            sys.exit(f"PUT /kv/p{i} at pop1: {status} {body!r}")
        returned = time.monotonic()
        seen = [wait(f"p{i} at {p}", lambda p=p: at(p, f"/kv/p{i}") == (200, value), 10, 0.001)
                for p in POPS[1:]]
        prop.append((max(seen) - returned) * 1000)
    prop.sort()
    p99 = prop[min(len(prop) - 1, int(len(prop) * 0.99))]
    reads = []
    for _ in range(5):
        status, body = at(POPS[1], "/bench?key=p1&n=100000")
        if status != 200:
            sys.exit(f"/bench: {status} {body!r}")
        fields = dict(kv.split("=") for kv in body.decode().split())
        if fields["found"] != "100000":
            sys.exit(f"/bench did not find its key: {body!r}")
        reads.append(int(fields["ns_per_read"]))
    misses = []
    for _ in range(3):
        _, body = at(POPS[1], "/bench?key=absent&n=100000")
        misses.append(int(dict(kv.split("=") for kv in body.decode().split())["ns_per_read"]))
    print(f"  KV propagation to both other PoPs over {WRITES} writes: median {statistics.median(prop):.1f} ms, "
          f"p99 {p99:.1f} ms, max {prop[-1]:.1f} ms", file=sys.stderr)
    print(f"  KV read inside a worker: {statistics.median(reads)} ns (runs {reads}); a missing key {statistics.median(misses)} ns",
          file=sys.stderr)
    print(json.dumps({
        "deploy_to_all_pops_ms": round(statistics.median(rust_ms)),
        "deploy_to_all_pops_max_ms": round(max(rust_ms)),
        "deploy_js_to_all_pops_ms": round(statistics.median(js_ms)) if js_ms else None,
        "kv_propagation_p99_ms": round(p99, 1),
        "kv_propagation_median_ms": round(statistics.median(prop), 1),
        "kv_read_ns": statistics.median(reads),
        "kv_read_missing_ns": statistics.median(misses),
    }))
finally:
    up.terminate()
    try:
        up.wait(20)
    except subprocess.TimeoutExpired:
        up.kill()
