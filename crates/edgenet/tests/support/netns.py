"""Helpers shared by the network-namespace rigs (tests/anycast/rig.py, tests/network/smart.py,
tests/interconnect/rig.py, tests/tunnels/rig.py, tests/magic/rig.py): commands inside a
namespace, waiting for a condition, removing a namespace with whatever still runs in it, a
process's CPU time and a median for the bench scenarios, and `Rig`, the base of the rigs that
run a control plane."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def sh(*cmd, check=True, ns=None, capture=True, timeout=30):
    """Runs a command (inside namespace `ns` when given); returns its stdout."""
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    r = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout if capture else ""


def cpu_seconds(pid):
    """User and system CPU seconds of process `pid` (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def until(what, within, f, step=0.02):
    """Calls `f` every `step` seconds until it returns something true, which it returns;
    fails after `within` seconds."""
    end = time.time() + within
    while True:
        v = f()
        if v:
            return v
        if time.time() > end:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(step)


def delete_namespace(name):
    """Kills every process still in namespace `name`, then deletes it."""
    for pid in sh("ip", "netns", "pids", name, check=False).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", name, check=False)


def stop_processes(procs):
    """Kills every process still running among `procs` (Popen objects) and reaps them."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def check(what, cond, detail=""):
    """Fails with `what` and `detail` unless `cond`; logs `what` when it holds."""
    if not cond:
        raise AssertionError(f"{what}: {detail}")
    log("ok:", what)


class Rig:
    """Network namespaces named `prefix`, this process's id and a role letter; the processes
    spawned in them (logs in the rig's temporary directory, printed when the rig fails); a
    control plane in namespace `home` and its API. Subclasses build the topology in `up`.
    Used as a context manager: everything is removed on exit."""

    API_PORT = 7070

    def __init__(self, edgenet, prefix, home):
        self.edgenet = edgenet
        self.prefix = prefix
        self.home = home
        self.tag = f"{os.getpid() % 100000:05d}"
        self.dir = tempfile.mkdtemp(prefix=f"edgenet-{prefix}-")
        self.namespaces = []
        self.procs = {}
        self.logs = {}
        self.operator = None

    def ns(self, role):
        return f"{self.prefix}{self.tag}{role}"

    def add_ns(self, role):
        name = self.ns(role)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "link", "set", "lo", "up", ns=name)
        return name

    def up(self):
        raise NotImplementedError

    def down(self):
        stop_processes(self.procs.values())
        for n in self.namespaces:
            delete_namespace(n)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        if os.geteuid() != 0:
            raise SystemExit("needs root (network namespaces)")
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump_logs()
        self.down()

    def dump_logs(self):
        for name, path in self.logs.items():
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    print(f"----- {name} -----\n{f.read()[-4000:]}", flush=True)

    def spawn(self, name, role, *cmd):
        """Starts `cmd` in namespace `role`, its output in log `name`; returns the Popen."""
        path = os.path.join(self.dir, f"{name}.log")
        self.logs[name] = path
        out = open(path, "ab")
        self.procs[name] = subprocess.Popen(("ip", "netns", "exec", self.ns(role)) + cmd,
                                            stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                            cwd=self.dir)
        return self.procs[name]

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # ---------- the control plane and its API ----------
    def start_control(self, role=None, listen="127.0.0.1"):
        """The control plane in namespace `role` (the rig's home by default), listening on
        `listen` (0.0.0.0 where other namespaces reach it); keeps the operator's token."""
        role = role or self.home
        data = os.path.join(self.dir, f"data-{role}")
        self.spawn(f"control-{role}", role, self.edgenet, "control", "--data", data,
                   "--listen", f"{listen}:{self.API_PORT}")
        token = os.path.join(data, "admin-token")
        until("the control plane", 20, lambda: os.path.exists(token) and self.api_up(role))
        with open(token) as f:
            self.operator = f.read().strip()

    def api_up(self, role=None):
        r = subprocess.run(("ip", "netns", "exec", self.ns(role or self.home), "curl", "-s",
                            "-o", "/dev/null", f"http://127.0.0.1:{self.API_PORT}/v1/status"),
                           capture_output=True)
        return r.returncode == 0

    def api(self, method, path, body=None, token=None, expect=None, at=None):
        """`method` on the API at `path` (under /v1) from namespace `at` (home by default),
        with `token` (the operator's by default); returns (status, JSON body), and fails
        when the status is not `expect`."""
        cmd = ["curl", "-s", "-X", method, "-w", "\n%{http_code}",
               "-H", f"Authorization: Bearer {token or self.operator}",
               f"http://127.0.0.1:{self.API_PORT}/v1{path}"]
        if body is not None:
            cmd[1:1] = ["-H", "content-type: application/json", "-d", json.dumps(body)]
        text, _, code = sh(*cmd, ns=self.ns(at or self.home)).rpartition("\n")
        if expect is not None and int(code) != expect:
            raise AssertionError(f"{method} {path}: {code}, not {expect}: {text}")
        return int(code), (json.loads(text) if text.strip() else None)
