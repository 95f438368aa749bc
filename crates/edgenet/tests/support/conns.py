"""Opens client connections from chosen 127.0.0.x source addresses, in steps, keeping every
one open until the end, and reports what the server did with them.

    conns.py PORT HOST PLAN_JSON

PLAN_JSON is a list of steps {"src": "127.0.0.4", "n": 2000, "request": true} (src may be a
list: n connections from each). Each step opens n connections from src (all at once), waits a
second, counts the ones the server closed
without a byte, and with "request" sends `GET /echo` (Host: HOST) on each open one and counts
the 200s (at "path", default /echo). Prints one JSON list: per step {"open", "closed", "served", "other"} (other: the
status lines, or "error", of requests that got no 200, with their counts).
"""
import json
import resource
import selectors
import socket
import sys
import time

port, host, plan = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

kept = []
report = []
for step in plan:
    socks = []
    srcs = step["src"] if isinstance(step["src"], list) else [step["src"]]
    for src in srcs:
        for _ in range(step["n"]):
            s = socket.socket()
            s.bind((src, 0))
            s.connect(("127.0.0.1", port))
            socks.append(s)
    kept.extend(socks)
    # A refused connection is closed at once: it reads as end of stream.
    closed = set()
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    deadline = time.time() + 1.0
    while time.time() < deadline:
        for key, _ in sel.select(0.1):
            s = key.fileobj
            try:
                gone = s.recv(1) == b""
            except OSError:
                gone = True
            if gone:
                closed.add(s)
                sel.unregister(s)
    sel.close()
    open_ = [s for s in socks if s not in closed]
    served = 0
    statuses = {}
    if step.get("request"):
        path = step.get("path", "/echo")
        req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        for s in open_:
            s.sendall(req)
        for s in open_:
            s.settimeout(20)
            try:
                status = s.recv(12)
            except OSError:
                status = b"error"
            if status.startswith(b"HTTP/1.1 200"):
                served += 1
            else:
                line = status.decode(errors="replace")
                statuses[line] = statuses.get(line, 0) + 1
    report.append({"open": len(open_), "closed": len(closed), "served": served, "other": statuses})
print(json.dumps(report))
for s in kept:
    s.close()
