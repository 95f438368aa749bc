#!/usr/bin/env bash
# GRE tunnels: the namespace rig of crates/edgenet/tests/tunnels/rig.py.
#   gre_gbps_per_core          iperf3 UDP (-b 0, 1448-byte payloads: 1500-byte outer packets)
#                              through one tunnel between two edgenet GRE endpoints (two PoPs,
#                              each with its own control plane); bytes counted by an nftables
#                              counter on the receiver's TUN device; Gbit/s divided by the
#                              busier endpoint's CPU (cores, from /proc/PID/stat). Median of RUNS.
#   probe_loss_to_rerouted_ms  the customer's router stops answering gre2's probes (mid rate,
#                              5/s) to the first packet of a steady stream (one per 5 ms) that
#                              PoP a delivers over gre3. Median of RUNS.
# iperf3 runs on core 0 (sender) and core 1 (receiver), beside the PoPs. RUNS (default 3),
# SECONDS_PER_RUN (default 10). Needs root. About 2 minutes. The last line is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need bird:bird2 curl:curl iperf3:iperf3 ping:iputils-ping tcpdump:tcpdump nft:nftables taskset:util-linux
[ -e /usr/lib/python3/dist-packages/scapy ] || need scapy:python3-scapy
BIN=${EDGENET:-target/release/edgenet}
[ -n "${EDGENET:-}" ] || cargo build --release -q --bin edgenet
RIG=crates/edgenet/tests/tunnels/rig.py
python3 "$RIG" throughput --edgenet "$BIN" --runs "${RUNS:-3}" --seconds "${SECONDS_PER_RUN:-10}" \
  | tee "$WORK/throughput.txt"
python3 "$RIG" reroute --edgenet "$BIN" --runs "${RUNS:-3}" | tee "$WORK/reroute.txt"
python3 - "$WORK/throughput.txt" "$WORK/reroute.txt" <<'PY'
import json, sys
last = lambda p: json.loads([l for l in open(p) if l.startswith("{")][-1])
t, r = last(sys.argv[1]), last(sys.argv[2])
print(json.dumps({"gre_gbps_per_core": t["gre_gbps_per_core"],
                  "probe_loss_to_rerouted_ms": r["probe_loss_to_rerouted_ms"],
                  "gbps": t["median_run"]["gbps"], "throughput_runs": t["runs"],
                  "reroute_runs_ms": r["runs"]}))
PY
