#!/usr/bin/env python3
"""A customer's GRE router, written with scapy and independent of edgenet's code, so the two
ends of a tunnel are not one implementation.

    endpoint.py --dir DIR --remote 192.0.2.100 --tunnel 203.0.113.1=10.212.0.9/31[=tun] ...

It receives every GRE packet addressed to this namespace (a raw IP protocol 47 socket: this
kernel has no ip_gre) and decapsulates it with scapy:

- a probe (an ICMP echo reply addressed elsewhere) is forwarded on, as a router forwards what
  it decapsulates; an echo request to the tunnel's address is answered into the tunnel;
- a packet for the tunnel's own address goes into its TUN device, when it has one (BIRD's BGP
  session runs over it);
- anything else is logged to DIR/received.log as "ENDPOINT SRC DST SPORT TIME" (the test
  traffic; TIME in Unix seconds).

What the TUN device's kernel side sends is encapsulated with scapy to --remote (our anycast
endpoint), from the tunnel's endpoint address. A file DIR/mute-ENDPOINT makes the endpoint drop
the probes of that tunnel (a router that stopped answering); when the file holds an address,
only the probes from that PoP (a path that broke). DIR/send-ENDPOINT, when it
appears, holds "DST COUNT": the endpoint sends COUNT UDP packets into that tunnel to DST from
10.60.0.1, one flow each (source ports 20000 up), and deletes the file. DIR/stream-ENDPOINT
holds "DST MS": from then on the endpoint sends one UDP packet into that tunnel to DST every MS
milliseconds (one flow, source port 30000).

With --deliver PREFIX (Magic Transit: the customer's own prefix, whose servers sit behind this
router), a packet to an address in PREFIX goes into the first tunnel's TUN device, so this
namespace's kernel delivers it to the server; what the server answers leaves by this
namespace's routes: its own ISP (Direct Server Return), or back into the TUN device and the
tunnel where a route says so.
"""
import argparse
import fcntl
import ipaddress
import os
import select
import socket
import struct
import sys
import time

from scapy.all import GRE, ICMP, IP, UDP, Raw, raw  # noqa: E402

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Tunnel:
    def __init__(self, spec, index):
        parts = spec.split("=")
        self.endpoint = parts[0]
        self.address, self.plen = parts[1].split("/")
        self.tun = None
        if len(parts) > 2:
            self.name = f"cgre{index}"
            self.tun = open_tun(self.name)
            os.system(f"ip addr add {parts[1]} dev {self.name}")
            os.system(f"ip link set {self.name} mtu 1476 up")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--remote", required=True)
    ap.add_argument("--tunnel", action="append", default=[])
    ap.add_argument("--deliver", action="append", default=[])
    args = ap.parse_args()
    deliver = [ipaddress.ip_network(p) for p in args.deliver]
    tunnels = [Tunnel(s, i) for i, s in enumerate(args.tunnel)]
    by_endpoint = {t.endpoint: t for t in tunnels}
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    # SO_RCVBUFFORCE (root): room for a burst while scapy is busy sending.
    rx.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    log = open(os.path.join(args.dir, "received.log"), "a", buffering=1)
    with open(os.path.join(args.dir, "endpoint.ready"), "w") as f:
        f.write("ready\n")

    def send_ip(pkt):
        b = raw(pkt)
        tx.sendto(b, (pkt[IP].dst, 0))

    def into_tunnel(t, inner):
        send_ip(IP(src=t.endpoint, dst=args.remote, ttl=64) / GRE(proto=0x0800) / inner)

    fds = [rx] + [t.tun for t in tunnels if t.tun is not None]
    streams = {}
    while True:
        now = time.time()
        for t in tunnels:
            path = os.path.join(args.dir, f"stream-{t.endpoint}")
            if t.endpoint not in streams and os.path.exists(path):
                with open(path) as f:
                    dst, ms = f.read().split()
                streams[t.endpoint] = [t, dst, float(ms) / 1000, now]
        for s in streams.values():
            t, dst, every, due = s
            if now >= due:
                into_tunnel(t, IP(src="10.60.0.1", dst=dst, ttl=64)
                            / UDP(sport=30000, dport=9) / Raw(b"edgenet-stream"))
                s[3] = max(due + every, now)
        for t in tunnels:
            path = os.path.join(args.dir, f"send-{t.endpoint}")
            if os.path.exists(path):
                with open(path) as f:
                    dst, count = f.read().split()
                os.unlink(path)
                for i in range(int(count)):
                    into_tunnel(t, IP(src="10.60.0.1", dst=dst, ttl=64)
                                / UDP(sport=20000 + i, dport=9) / Raw(b"edgenet-test"))
        wait = min([0.05] + [max(0.0, s[3] - time.time()) for s in streams.values()])
        ready, _, _ = select.select(fds, [], [], wait)
        for fd in ready:
            if fd is rx:
                data = rx.recv(65535)
                outer = IP(data)
                if GRE not in outer or outer[GRE].proto != 0x0800:
                    continue
                t = by_endpoint.get(outer.dst)
                if t is None:
                    continue
                inner = outer[GRE].payload
                if not isinstance(inner, IP):
                    continue
                if ICMP in inner and inner[ICMP].type in (0, 8) and b"edgenet-probe" in raw(inner[ICMP].payload):
                    mute = os.path.join(args.dir, f"mute-{t.endpoint}")
                    if os.path.exists(mute):
                        with open(mute) as f:
                            only = f.read().strip()
                        if not only or only == outer.src:
                            continue
                    if inner[ICMP].type == 8:
                        reply = IP(src=inner.dst, dst=inner.src, ttl=64) / ICMP(
                            type=0, id=inner[ICMP].id, seq=inner[ICMP].seq) / inner[ICMP].payload
                        into_tunnel(t, reply)
                    else:
                        # Forwarded as decapsulated: a fresh copy, so scapy recomputes nothing.
                        send_ip(IP(raw(inner)))
                    continue
                if inner.dst == t.address and t.tun is not None:
                    os.write(t.tun, raw(inner))
                    continue
                if any(ipaddress.ip_address(inner.dst) in n for n in deliver):
                    os.write(next(x.tun for x in tunnels if x.tun is not None), raw(inner))
                    continue
                sport = inner[UDP].sport if UDP in inner else 0
                log.write(f"{t.endpoint} {inner.src} {inner.dst} {sport} {time.time():.4f}\n")
            else:
                t = next(t for t in tunnels if t.tun == fd)
                packet = os.read(fd, 65535)
                if packet and packet[0] >> 4 == 4:
                    into_tunnel(t, IP(packet))


if __name__ == "__main__":
    sys.exit(main())
