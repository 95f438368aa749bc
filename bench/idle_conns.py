#!/usr/bin/env python3
"""Holds N idle HTTP/1.1 keep-alive connections, each after one request, spread over ADDRS
source addresses 127.0.0.2, 127.0.0.3, ... (so no per-address cap is reached).

    idle_conns.py PORT HOST N ADDRS

Prints one JSON line once every connection has had its answer ({"open", "served", "failed"}),
keeps them open until a line arrives on stdin, then closes them all and prints "closed".
"""
import json
import resource
import socket
import sys

port, host, n, addrs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def answered(s):
    """Reads one response (Content-Length framed); True on a 200."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return False
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


kept, served, failed = [], 0, 0
for i in range(n):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.bind((f"127.0.0.{2 + i % addrs}", 0))
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        if answered(s):
            served += 1
        else:
            failed += 1
        kept.append(s)
    except OSError:
        failed += 1
        s.close()
print(json.dumps({"open": len(kept), "served": served, "failed": failed}), flush=True)
sys.stdin.readline()
for s in kept:
    s.close()
print("closed", flush=True)
