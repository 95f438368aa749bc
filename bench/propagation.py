#!/usr/bin/env python3
"""Config propagation: a control plane and N PoPs on loopback (real `edgenet` processes). Each
round changes a zone's header rule through the API and waits until every PoP has acknowledged
the new version; a PoP's propagation time is its acknowledgement time (as the control plane
records it) minus the time the write was sent. Then as many purges (`purge_everything`)
through the network purge API, each timed from the call to its answer, which comes once every
PoP has applied it (a 202, some PoP too slow, stops the bench). Prints one JSON line:
{"pops", "p50_ms", "p99_ms", "max_ms", "samples", "purge_p50_ms", "purge_p99_ms", "purge_max_ms"}.

    propagation.py --edgenet PATH --pops N --rounds R
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def api(base, token, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def until(what, within, f):
    end = time.time() + within
    while not f():
        if time.time() > end:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edgenet", required=True)
    ap.add_argument("--pops", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=50)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="edgenet-prop-")
    procs = []
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        procs.append(subprocess.Popen([a.edgenet, "control", "--data", f"{d}/control", "--listen",
                                       f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                      stderr=open(f"{d}/control.log", "w")))
        until("control plane", 20, lambda: os.path.exists(f"{d}/control/admin-token"))
        time.sleep(0.2)
        admin = open(f"{d}/control/admin-token").read().strip()
        pop_token = api(base, admin, "POST", "/v1/tokens", {"name": "pops", "scopes": ["pop"]})["result"]["secret"]
        zone = lambda v: {"name": "bench", "hostnames": ["bench.test"],
                          "origins": {"servers": [{"address": "127.0.0.1:9"}]},
                          "response_headers": [{"action": "set", "name": "x-v", "value": str(v)}]}
        api(base, admin, "POST", "/v1/zones", zone(0))
        for i in range(a.pops):
            name = f"p{i}"
            api(base, admin, "POST", "/v1/pops", {"name": name, "latitude": 0, "longitude": 0})
            cfg = f"{d}/{name}.toml"
            with open(cfg, "w") as f:
                f.write(f'[node]\nname = "{name}"\nthreads = 1\n\n[[listeners]]\naddress = "127.0.0.1:{free_port()}"\n'
                        f'protocol = "http"\n\n[access_log]\noutput = "off"\n\n[cache]\nmemory = "1MiB"\n')
            env = dict(os.environ, EDGENET_TOKEN=pop_token, RUST_LOG="warn")
            procs.append(subprocess.Popen([a.edgenet, "pop", "--config", cfg, "--control", base, "--name", name],
                                          env=env, stdout=subprocess.DEVNULL, stderr=open(f"{d}/{name}.log", "w")))

        def pops():
            return api(base, admin, "GET", "/v1/pops?limit=1000")["result"]["items"]

        def all_at(v):
            items = pops()
            return len(items) == a.pops and all((p["applied_version"] or 0) >= v for p in items)

        until("PoPs following", 60, lambda: all_at(api(base, admin, "GET", "/v1/status")["result"]["version"]))
        samples = []
        for r in range(1, a.rounds + 1):
            t0 = time.time()
            v = api(base, admin, "PUT", "/v1/zones/bench", zone(r))["result"]["version"]
            until(f"version {v} everywhere", 10, lambda: all_at(v))
            samples += [p["last_seen_ms"] - t0 * 1000 for p in pops()]
            time.sleep(0.05)
        purges = []
        for r in range(a.rounds):
            t0 = time.time()
            res = api(base, admin, "POST", "/v1/zones/bench/purge_cache", {"purge_everything": True})["result"]
            purges.append((time.time() - t0) * 1000)
            if res["pending"] or len(res["applied"]) != a.pops:
                raise SystemExit(f"purge {r} not applied everywhere: {res}")
            time.sleep(0.05)
        samples.sort()
        purges.sort()
        pick = lambda s, q: s[min(len(s) - 1, int(q * len(s)))]
        print(json.dumps({"pops": a.pops, "p50_ms": round(pick(samples, 0.5), 1),
                          "p99_ms": round(pick(samples, 0.99), 1), "max_ms": round(samples[-1], 1),
                          "samples": len(samples), "purge_p50_ms": round(pick(purges, 0.5), 1),
                          "purge_p99_ms": round(pick(purges, 0.99), 1),
                          "purge_max_ms": round(purges[-1], 1)}))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
