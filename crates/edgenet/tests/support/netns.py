"""Helpers shared by the network-namespace rigs (tests/anycast/rig.py, tests/network/smart.py):
commands inside a namespace, waiting for a condition, and removing a namespace with whatever
still runs in it."""
import os
import signal
import subprocess
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
