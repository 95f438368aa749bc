#!/usr/bin/env python3
"""An HTTP/1.1 flood among legitimate clients, on loopback: three legitimate clients
(127.0.0.11-13) send 10 requests a second each for the whole run; after WARMUP seconds one
address (127.0.0.20) sends as fast as one keep-alive connection allows, for up to FLOOD
seconds. Prints one JSON line: legitimate requests and successes, flood requests, and the time
from the flood's start to its first refused (429) answer.  Usage: flood.py PORT HOST WARMUP FLOOD"""
import json, socket, sys, threading, time

port, host, warmup, flood_s = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
req = ("GET /echo HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()


def conn(src):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.settimeout(5)
    return s


def one(s):
    """Sends one request, returns its status; reads the body by Content-Length."""
    s.sendall(req)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += s.recv(65536)
    return status


stats = {"legit": 0, "legit_ok": 0, "flood": 0, "flood_blocked_after_s": None}
stop = time.time() + warmup + flood_s
lock = threading.Lock()


def legit(src):
    s = conn(src)
    while time.time() < stop:
        try:
            st = one(s)
        except (OSError, ConnectionError, ValueError):
            st = 0
            s = conn(src)
        with lock:
            stats["legit"] += 1
            stats["legit_ok"] += st == 200
        time.sleep(0.1)


def flood():
    time.sleep(warmup)
    start = time.time()
    s = conn("127.0.0.20")
    while time.time() < stop:
        try:
            st = one(s)
        except (OSError, ConnectionError, ValueError):
            s = conn("127.0.0.20")
            continue
        stats["flood"] += 1
        if st == 429 and stats["flood_blocked_after_s"] is None:
            stats["flood_blocked_after_s"] = round(time.time() - start, 2)


threads = [threading.Thread(target=legit, args=(f"127.0.0.{i}",)) for i in (11, 12, 13)]
threads += [threading.Thread(target=flood) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(stats))
