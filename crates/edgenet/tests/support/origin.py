#!/usr/bin/env python3
"""A real HTTP/1.1 origin server for edgenet's integration tests.

Prints its port on the first line of stdout, then serves until killed:
  GET  /echo          JSON of the request as received (method, path, headers) and the origin name
  GET  /slow?ms=N     answers after N milliseconds
  GET  /bytes?n=N     N bytes of body, streamed in 64 KiB writes
  POST|PUT /upload    reads the body (Content-Length or chunked) streaming; answers its size
  GET  /health        200, or the status set by POST /control/health?status=N
  GET  /hits          how many requests other than /hits, /health and /control were served
  GET  /hits?path=P   how many requests for path P (query ignored) were served
  ANY  /obj/...       a scripted response: ?status=N, ?body=TEXT, ?delay=MS and any number of
                      ?h=Name:Value response headers; answers 304 to a matching If-None-Match
                      (with ?h=ETag:...) or If-Modified-Since (with ?h=Last-Modified:...),
                      with the ?h304=Name:Value headers instead of those ?h names where given
  POST /control/fail?mode=M   from then on /obj/... fails: 500 (M=500) or the connection
                      closed before an answer (M=close); M=none answers again
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[1] if len(sys.argv) > 1 else "origin"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0
STATE = {"hits": 0, "health": 200, "paths": {}, "fail": "none"}
LOCK = threading.Lock()
CHUNK = b"x" * 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Origin", NAME)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def count(self, path):
        if path not in ("/hits", "/health") and not path.startswith("/control"):
            with LOCK:
                STATE["hits"] += 1
                STATE["paths"][path] = STATE["paths"].get(path, 0) + 1

    def read_body(self):
        total = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                left = size
                while left:
                    got = self.rfile.read(min(left, 1 << 20))
                    if not got:
                        raise ConnectionError("body ended early")
                    left -= len(got)
                total += size
                self.rfile.readline(16)
        left = int(self.headers.get("Content-Length", "0"))
        while left:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                raise ConnectionError("body ended early")
            left -= len(got)
            total += len(got)
        return total

    def handle_any(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.count(url.path)
        if url.path == "/hits":
            n = STATE["paths"].get(q["path"], 0) if "path" in q else STATE["hits"]
            return self.send_body(200, str(n).encode(), "text/plain")
        if url.path.startswith("/obj/"):
            if STATE["fail"] == "close":
                self.close_connection = True
                return
            if STATE["fail"] == "500":
                return self.send_body(500, b"origin failure\n", "text/plain")
            return self.scripted(parse_qs(url.query))
        if url.path == "/control/fail":
            STATE["fail"] = q.get("mode", "none")
            return self.send_body(200, b"ok\n", "text/plain")
        if url.path == "/health":
            return self.send_body(STATE["health"], b"health\n", "text/plain")
        if url.path == "/control/health":
            STATE["health"] = int(q.get("status", "200"))
            return self.send_body(200, b"ok\n", "text/plain")
        if url.path == "/upload":
            n = self.read_body()
            return self.send_body(200, json.dumps({"bytes": n, "origin": NAME}).encode())
        body_len = self.read_body()
        if url.path == "/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000)
        if url.path == "/bytes":
            n = int(q.get("n", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                part = CHUNK if n >= len(CHUNK) else CHUNK[:n]
                self.wfile.write(part)
                n -= len(part)
            return
        echo = {
            "origin": NAME,
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body_bytes": body_len,
        }
        self.send_body(200, json.dumps(echo).encode())

    def scripted(self, q):
        self.read_body()
        if "delay" in q:
            time.sleep(int(q["delay"][0]) / 1000)
        headers = [h.split(":", 1) for h in q.get("h", [])]
        named = {k.strip().lower(): v.strip() for k, v in headers}
        status = int(q.get("status", ["200"])[0])
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        if (inm and "etag" in named and inm == named["etag"]) or (
            ims and "last-modified" in named and ims == named["last-modified"]
        ):
            status = 304
        body = b"" if status == 304 else q.get("body", ["scripted body"])[0].encode()
        if status == 304 and "h304" in q:
            only = [h.split(":", 1) for h in q["h304"]]
            replaced = {k.strip().lower() for k, _ in only}
            headers = [(k, v) for k, v in headers if k.strip().lower() not in replaced] + only
        self.send_response(status)
        for k, v in headers:
            self.send_header(k.strip(), v.strip())
        # Which fetch of this path this is (1, 2, ...), on 304s too.
        self.send_header("X-Fetch", str(STATE["paths"].get(urlsplit(self.path).path, 0)))
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = handle_any

    def __getattr__(self, name):
        # Extension methods (REPORT, PURGE, ...) are served like the others.
        if name.startswith("do_"):
            return self.handle_any
        raise AttributeError(name)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


# ORIGIN_BIND lets a test in network namespaces listen on every address.
server = Server((os.environ.get("ORIGIN_BIND", "127.0.0.1"), PORT), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
