#!/usr/bin/env bash
# bench/workers.sh: what a worker costs, against a V8 isolate created in the same run.
#
#   cold start   a fresh wasm instance per request (instantiate from the pre-linked template,
#                handle one GET, collect the response), REQUESTS in a row on core 0
#                (crates/edgenet-workers/examples/cold_start.rs, the runtime a node uses);
#                against node's isolated-vm (bench/isolate: new isolate + context + compile
#                and run the worker's script + handle one request). Median and p99.
#   memory       private memory (smaps_rollup Private_*) per live instance: LIVE wasm requests
#                held open inside a worker waiting for its body, against LIVE_V8 isolates
#                with their context and script.
#   throughput   one edgenet node (core 0, one thread): wrk (core 1, 64 connections) on a
#                route to examples/workers/hello-rust vs the same node proxying to an nginx
#                origin (core 1, 1 KiB) without a worker; medians of REPEATS alternating runs.
#   platform     on `edgenet up` (bench/worker_platform.py): the time from a worker upload's
#                answer until all three PoPs serve the new version (Rust, then JavaScript);
#                KV propagation from a worker's write at one PoP to the workers of the two
#                others (p99 of KV_WRITES); a KV read inside a worker (the guest's own clock).
#
# The last line printed is one JSON object.
# Usage: bench/workers.sh   (DURATION=10 REPEATS=3 by default; about 6 minutes after builds)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
REQUESTS=${REQUESTS:-5000}
REQUESTS_V8=${REQUESTS_V8:-500}
LIVE=${LIVE:-1000}
LIVE_V8=${LIVE_V8:-100}
CONNS=64

. "$(dirname "$0")/lib.sh"
need nginx wrk taskset:util-linux python3 curl node:nodejs npm
need_two_cores

rustup target add wasm32-wasip2 >&2
cargo build --release --locked --bin edgenet >&2
EDGENET=$PWD/target/release/edgenet
cargo build --release --locked -p edgenet-workers --example cold_start >&2
for c in examples/workers/hello-rust examples/workers/kv-rust crates/edgenet-workers/tests/components/misbehave; do
  cargo build --release --locked --target wasm32-wasip2 --manifest-path "$c/Cargo.toml" >&2
done
HELLO=$PWD/examples/workers/hello-rust/target/wasm32-wasip2/release/hello_rust.wasm
WAITER=$PWD/crates/edgenet-workers/tests/components/misbehave/target/wasm32-wasip2/release/misbehave.wasm
KV=$PWD/examples/workers/kv-rust/target/wasm32-wasip2/release/kv_rust.wasm
(
  cd examples/workers/hello-js
  [ -d node_modules/@bytecodealliance/componentize-js ] || npm ci --no-audit --no-fund >&2
  npm run build >&2
)
JS=$PWD/examples/workers/hello-js/dist/hello.wasm

# isolated-vm is a native addon: npm builds it from source with node-gyp against the
# machine's node headers (no prebuilt download here). npm may skip install scripts; then
# build it ourselves.
(
  cd bench/isolate
  [ -d node_modules/isolated-vm ] || npm install --no-audit --no-fund >&2
  if ! node -e "require('isolated-vm')" 2>/dev/null; then
    (cd node_modules/isolated-vm && npx --yes node-gyp@11 rebuild --release -j max >&2) ||
      echo "isolated-vm did not build: the isolate side falls back to worker_threads" >&2
  fi
)

echo "platform: deploys and KV on edgenet up" >&2
mkdir -p "$WORK/platform"
PLATFORM=$(python3 bench/worker_platform.py "$EDGENET" "$HELLO" "$KV" "$JS" "$WORK/platform" | tail -1)
echo "  $PLATFORM" >&2

echo "cold start and memory: wasm ($REQUESTS requests, $LIVE live), V8 ($REQUESTS_V8, $LIVE_V8 live)" >&2
WASM=$(taskset -c 0 target/release/examples/cold_start "$HELLO" "$WAITER" "$REQUESTS" "$LIVE")
V8=$(cd bench/isolate && taskset -c 0 node --expose-gc isolate.js "$REQUESTS_V8" "$LIVE_V8")
echo "  wasm: $WASM" >&2
echo "  v8:   $V8" >&2

# Throughput: one node, a worker route and a proxied route.
ORIGIN=$(free_port) E_HTTP=$(free_port) E_ADMIN=$(free_port)
origin_1k_conf "$ORIGIN"
{
  bench_node_conf "$E_HTTP" "$E_ADMIN"
  printf '\n[workers]\nartifact_dir = "%s"\n' "$WORK/artifacts"
  bench_passthrough_zone bench bench.test "$ORIGIN"
  cat <<CONF
[[zones.workers]]
name = "hello"
component = "$HELLO"
routes = ["/worker/*"]
CONF
} >"$WORK/edgenet.toml"
"$EDGENET" check --config "$WORK/edgenet.toml" >&2
taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
taskset -c 0 "$EDGENET" pop --config "$WORK/edgenet.toml" 2>"$WORK/edgenet.err" &
PIDS+=($!)
wait_port "$ORIGIN"
wait_port "$E_HTTP"

W_PATH=/worker/products/42 P_PATH=/products/42
body=$(curl -s -H "Host: bench.test" "http://127.0.0.1:$E_HTTP$W_PATH")
[ "$body" = "hello from wasm: $W_PATH" ] || { echo "worker answered: $body" >&2; exit 1; }
got=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: bench.test" "http://127.0.0.1:$E_HTTP$P_PATH")
[ "$got" = 200 ] || { echo "proxy answered $got" >&2; exit 1; }
for p in $W_PATH $P_PATH; do
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s -H "Host: bench.test" "http://127.0.0.1:$E_HTTP$p" >/dev/null
done

W_RPS="" P_RPS=""
for r in $(seq "$REPEATS"); do
  read -r w _ < <(run_wrk "$CONNS" -H "Host: bench.test" "http://127.0.0.1:$E_HTTP$W_PATH")
  read -r p _ < <(run_wrk "$CONNS" -H "Host: bench.test" "http://127.0.0.1:$E_HTTP$P_PATH")
  W_RPS+="$w " P_RPS+="$p "
  printf 'run %d: worker %9.0f req/s   proxied %9.0f req/s\n' "$r" "$w" "$p" >&2
done
W=$(tr ' ' '\n' <<<"$W_RPS" | grep . | median)
P=$(tr ' ' '\n' <<<"$P_RPS" | grep . | median)
errors=$(curl -s "http://127.0.0.1:$E_ADMIN/metrics" | awk '/^edgenet_worker_errors_total/ {s += $2} END {print s + 0}')
[ "$errors" = 0 ] || { echo "the worker failed $errors requests" >&2; exit 1; }

python3 - "$WASM" "$V8" "$W" "$P" "$PLATFORM" <<'PY'
import json, sys
wasm, v8 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
w, p = float(sys.argv[3]), float(sys.argv[4])
platform = json.loads(sys.argv[5])
print(f"""cold start: wasm median {wasm['median_us']} us p99 {wasm['p99_us']} us; \
{v8['kind']} median {v8['median_us']} us p99 {v8['p99_us']} us
private memory per live instance: wasm {wasm['private_kib_per_instance']} KiB, \
{v8['kind']} {v8['private_kib_per_instance']} KiB
throughput (medians, one thread): worker {w:.0f} req/s, proxied without a worker {p:.0f} req/s""",
      file=sys.stderr)
print(json.dumps({
    "cold_start_speedup_vs_isolate": round(v8["median_us"] / wasm["median_us"], 1),
    "cold_start_p99_speedup_vs_isolate": round(v8["p99_us"] / wasm["p99_us"], 1),
    "memory_ratio_vs_isolate": round(wasm["private_kib_per_instance"] / v8["private_kib_per_instance"], 3),
    "throughput_vs_plain_proxy": round(w / p, 3),
    "isolate_kind": v8["kind"],
    **platform,
}))
PY
