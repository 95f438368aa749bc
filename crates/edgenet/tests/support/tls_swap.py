"""HTTPS requests across a certificate swap, as clients see it: a few keep-alive connections
opened at the start and used all along (they keep the certificate they were given), and a new
connection every 50 ms (each sees the certificate served at that moment), all verified
against CAFILE for HOST, until STOP_FILE exists (or 120 s pass).

    tls_swap.py IP PORT HOST CAFILE STOP_FILE

Prints one JSON object: {"requests", "failures": [first few errors], "serials": [serial of each
new connection, in order, hex], "kept_serials": [serial of each kept connection]}.
"""
import http.client
import json
import os
import ssl
import sys
import time

ip, port, host, cafile, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)


class Conn(http.client.HTTPSConnection):
    """An HTTPS connection to IP:PORT that names HOST in SNI and Host."""

    def connect(self):
        import socket

        sock = socket.create_connection((ip, port), timeout=10)
        self.sock = ctx.wrap_socket(sock, server_hostname=host)


def peer_serial(conn):
    der = conn.sock.getpeercert(binary_form=True)
    # The serial is the second element of the TBSCertificate: parse just enough DER.
    def read(b, i):
        tag, length = b[i], b[i + 1]
        i += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(b[i : i + n], "big")
            i += n
        return tag, i, length

    _, i, _ = read(der, 0)  # Certificate
    _, i, _ = read(der, i)  # TBSCertificate
    tag, j, length = read(der, i)
    if tag == 0xA0:  # [0] version
        i = j + length
        tag, j, length = read(der, i)
    return der[j : j + length].hex()


def get(conn):
    conn.request("GET", "/", headers={"Host": host})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}")


requests, failures, serials = 0, [], []
kept = []
for _ in range(4):
    c = Conn(host, port)
    c.connect()
    kept.append(c)
kept_serials = [peer_serial(c) for c in kept]
deadline = time.time() + 120
while not os.path.exists(stop) and time.time() < deadline:
    for c in kept:
        try:
            get(c)
            requests += 1
        except Exception as e:  # noqa: BLE001 (every failure is reported)
            failures.append(f"kept connection: {e!r}")
    try:
        c = Conn(host, port)
        c.connect()
        serials.append(peer_serial(c))
        get(c)
        requests += 1
        c.close()
    except Exception as e:  # noqa: BLE001
        failures.append(f"new connection: {e!r}")
    time.sleep(0.05)
print(json.dumps({"requests": requests, "failures": failures[:5], "serials": serials,
                  "kept_serials": kept_serials}))
