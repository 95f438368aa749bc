#!/usr/bin/env bash
# The network (issue 5): configuration propagation from the control plane to 3 and 20 PoPs on
# loopback (real processes; time from the API write to each PoP's acknowledgement, 50 changes
# each; then 50 network purges, each timed from the API call to its answer once every PoP
# applied it), and the API's write and read throughput on SQLite (wrk, 16 connections, the control
# plane on core 0 and wrk on core 1, medians of 3 runs of DURATION seconds).
# Smart routing (root: network namespaces with userspace delay relays, see
# crates/edgenet/tests/network/smart.py): a PoP with a 200 ms direct path and a 20 + 60 ms
# relay path (gain = 1 - relayed / direct fetch time), and a PoP whose direct path is best
# (loss = smart / without-backbone fetch time - 1). Medians of 15 fetches.
# The last line is one JSON object. About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need wrk:wrk python3:python3
DURATION=${DURATION:-10}
cargo build --release -q --bin edgenet
BIN=target/release/edgenet

smart=$(python3 crates/edgenet/tests/network/smart.py bench --edgenet $BIN | grep '^{' | tail -1)
echo "smart routing: $smart"
p3=$(python3 bench/propagation.py --edgenet $BIN --pops 3 --rounds 50 | tail -1)
p20=$(python3 bench/propagation.py --edgenet $BIN --pops 20 --rounds 50 | tail -1)
echo "propagation, 3 PoPs:  $p3"
echo "propagation, 20 PoPs: $p20"

PORT=$(free_port)
taskset -c 0 $BIN control --data "$WORK/control" --listen "127.0.0.1:$PORT" 2>"$WORK/control.log" &
PIDS+=($!)
wait_port "$PORT"
for _ in $(seq 100); do [ -s "$WORK/control/admin-token" ] && break; sleep 0.05; done
export TOKEN; TOKEN=$(cat "$WORK/control/admin-token")
curl -sf -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/zones" \
  -d '{"name": "w", "hostnames": ["w.test"], "origins": {"servers": [{"address": "127.0.0.1:9"}]}}' >/dev/null
writes=(); reads=()
for _ in 1 2 3; do
  writes+=("$(run_wrk 16 -s bench/api_write.lua "http://127.0.0.1:$PORT" | awk '{print $1}')")
  reads+=("$(run_wrk 16 -s bench/api_read.lua "http://127.0.0.1:$PORT" | awk '{print $1}')")
done
w=$(printf '%s\n' "${writes[@]}" | median)
r=$(printf '%s\n' "${reads[@]}" | median)
echo "API on SQLite: writes/s ${writes[*]} (median $w); reads/s ${reads[*]} (median $r)"
python3 - "$p3" "$p20" "$w" "$r" "$smart" <<'PY'
import json, sys
p3, p20, sm = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[5])
print(json.dumps({"propagation_p99_ms_3_pops": p3["p99_ms"], "propagation_p99_ms_20_pops": p20["p99_ms"],
                  "propagation_p50_ms_3_pops": p3["p50_ms"], "propagation_p50_ms_20_pops": p20["p50_ms"],
                  "purge_p99_ms_3_pops": p3["purge_p99_ms"], "purge_p99_ms_20_pops": p20["purge_p99_ms"],
                  "smart_routing_gain": sm["smart_routing_gain"],
                  "smart_routing_loss_when_direct_best": sm["smart_routing_loss_when_direct_best"],
                  "api_writes_per_s": round(float(sys.argv[3])), "api_reads_per_s": round(float(sys.argv[4]))}))
PY
