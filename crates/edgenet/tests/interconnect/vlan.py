#!/usr/bin/env python3
"""A customer router's 802.1Q sub-interface, written in the test harness and independent of
edgenet's code, so the two ends of a tagged port are not one implementation (this kernel has
no 8021q, on either side).

    vlan.py --port eth0 --vid 100 --name eth0.100

It makes TAP device NAME (the VLAN's untagged side; the customer's address and BIRD go on
it) and carries frames between it and PORT: what the kernel sends into the TAP goes out of
PORT with the tag put in after the source address; what PORT receives for VID goes into the
TAP untagged. On a veth the kernel takes a received tag off the frame and reports it in
PACKET_AUXDATA (tp_status TP_STATUS_VLAN_VALID, tp_vlan_tci); a tag left in the frame counts
too. Frames for other VLANs, untagged frames and what this host sends are ignored.
"""
import argparse
import fcntl
import os
import select
import socket
import struct

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
SOL_PACKET, PACKET_AUXDATA = 263, 8
ETH_P_ALL, TPID = 0x0003, 0x8100
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", required=True)
    ap.add_argument("--vid", type=int, required=True)
    ap.add_argument("--name", required=True)
    args = ap.parse_args()

    tap = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tap, TUNSETIFF, struct.pack("16sH", args.name.encode(), IFF_TAP | IFF_NO_PI))
    port = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    port.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    port.bind((args.port, ETH_P_ALL))
    tag = struct.pack("!HH", TPID, args.vid)
    print(f"tagging VLAN {args.vid} of {args.port} on {args.name}", flush=True)

    while True:
        ready, _, _ = select.select([tap, port], [], [])
        if tap in ready:
            frame = os.read(tap, 65536)
            if len(frame) >= 14:
                port.send(frame[:12] + tag + frame[12:])
        if port in ready:
            frame, anc, _, addr = port.recvmsg(65536, socket.CMSG_SPACE(20))
            if addr[2] == PACKET_OUTGOING or len(frame) < 14:
                continue
            vid = None
            for level, kind, data in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 18:
                    status, tci = struct.unpack_from("=I", data, 0)[0], struct.unpack_from("=H", data, 16)[0]
                    if status & TP_STATUS_VLAN_VALID:
                        vid = tci & 0x0FFF
            if vid is None and struct.unpack_from("!H", frame, 12)[0] == TPID and len(frame) >= 18:
                vid = struct.unpack_from("!H", frame, 14)[0] & 0x0FFF
                frame = frame[:12] + frame[16:]
            if vid == args.vid:
                os.write(tap, frame)


if __name__ == "__main__":
    main()
