#!/usr/bin/env bash
# Magic Transit: the namespace rig of crates/edgenet/tests/magic/rig.py (scenario `bench`),
# pop-a's process pinned to core 1, the traffic sent by hping3 on core 0.
#   filter_mpps_per_core   packets a second one core runs through an account's ten firewall
#                          rules and the flood protections (the `magic-rx` thread's work on a
#                          parsed header): a SYN flood from random sources with a clean
#                          1500-byte packet in sixteen (crates/edgenet-dataplane/examples/
#                          filter_rate.rs). Median of RUNS.
#   clean_gbps_per_core    UDP from the client to the customer's server in 1500-byte packets
#                          on the wire to the customer (1476 inside GRE, the tunnel's MTU: the
#                          size MSS-clamped Magic Transit traffic has; bench/tunnels.sh counts
#                          the same way) while a SYN flood from random spoofed sources runs
#                          beside it (both hping3 --flood): the inner bytes the customer's
#                          router receives out of GRE (an nftables counter) in Gbit/s, divided
#                          by pop-a's CPU in cores (/proc/PID/stat). Median of RUNS of
#                          SECONDS_PER_RUN.
#   prefix_withdrawn_after_last_path_ms
#                          gre1, pop-a's only path to the prefix, breaks (the customer's router
#                          stops answering its probes; mid rate, 5/s) until the internet
#                          router's BIRD no longer has the prefix from pop-a. Median of RUNS.
#                          Also given: the same from the moment pop-a declared gre1 down.
#   legit_served_under_syn_flood
#                          the fraction of 100 HTTP requests (curl, new connection each, 5 s
#                          limit) from the client served while hping3 --flood sends SYNs from
#                          random sources to the same server. Median of RUNS.
# RUNS (default 3), SECONDS_PER_RUN (default 10). Needs root. About 4 minutes. The last line is
# one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need bird:bird2 curl:curl hping3:hping3 nft:nftables taskset:util-linux
[ -e /usr/lib/python3/dist-packages/scapy ] || need scapy:python3-scapy
BIN=${EDGENET:-target/release/edgenet}
[ -n "${EDGENET:-}" ] || cargo build --release -q --bin edgenet
cargo build --release -q -p edgenet-dataplane --example filter_rate
for i in $(seq "${RUNS:-3}"); do
  taskset -c 1 target/release/examples/filter_rate 3 | tee -a "$WORK/filter.txt"
done
python3 crates/edgenet/tests/magic/rig.py bench --edgenet "$BIN" --runs "${RUNS:-3}" \
  --seconds "${SECONDS_PER_RUN:-10}" | tee "$WORK/rig.txt"
python3 - "$WORK/filter.txt" "$WORK/rig.txt" <<'PY'
import json, sys
filters = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
rig = json.loads([l for l in open(sys.argv[2]) if l.startswith("{")][-1])
mpps = sorted(f["filter_mpps_per_core"] for f in filters)
print(json.dumps({"filter_mpps_per_core": mpps[len(mpps) // 2],
                  "clean_gbps_per_core": rig["clean_gbps_per_core"],
                  "prefix_withdrawn_after_last_path_ms": rig["prefix_withdrawn_after_last_path_ms"],
                  "legit_served_under_syn_flood": rig["legit_served_under_syn_flood"],
                  "prefix_withdrawn_after_declared_down_ms":
                      rig["prefix_withdrawn_after_declared_down_ms"],
                  "filter_runs_mpps": mpps, "clean_runs": rig["clean_runs"],
                  "legit_runs": rig["legit_runs"], "withdrawal_runs": rig["withdrawal_runs"]}))
PY
