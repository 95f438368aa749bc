#!/usr/bin/env bash
# bench/engines.sh: the HTTP engine candidates of issue 23, A/B'd in one run on the proxy
# bench's setup (bench/proxy.sh): the same 1 KiB origin (nginx on core 1), each proxy pinned to
# core 0 with one thread, wrk on core 1, alternating runs, medians.
#
#   nginx          proxy_pass with upstream keep-alive (the reference)
#   pingora        crates/edgenet-proxy/examples/plain_pingora.rs: Pingora 0.9.1, no edge logic
#   hyper          crates/edgenet-proxy/examples/plain_hyper.rs: our own loop on hyper 1.x with a
#                  per-thread upstream pool
#   edgenet        the PoP with one pass-through zone (every stage on the path)
#
# Each candidate adds the same headers (X-Forwarded-For, -Proto, X-Request-Id). Figures per
# candidate: pass-through at 64 connections (req/s, p99) and 1,000 connections from one address.
# The last line is one JSON object with each candidate's ratios to nginx.
# Usage: bench/engines.sh          (DURATION=8 REPEATS=3; about 4 minutes)
#        PERF=DIR bench/engines.sh records a perf profile of each candidate's first run in DIR
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
REPEATS=${REPEATS:-3}
CONNS=64

. "$(dirname "$0")/lib.sh"
need nginx wrk taskset:util-linux python3 curl
need_two_cores

cargo build --release --locked --bin edgenet --example plain_pingora --example plain_hyper \
  -p edgenet -p edgenet-proxy >&2
BIN=$PWD/target/release

ORIGIN=$(free_port) E_HTTP=$(free_port) E_ADMIN=$(free_port)
N_HTTP=$(free_port) P_HTTP=$(free_port) H_HTTP=$(free_port)
origin_1k_conf "$ORIGIN"
taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)

{
  bench_node_conf "$E_HTTP" "$E_ADMIN"
  bench_passthrough_zone bench localhost "$ORIGIN"
} >"$WORK/edgenet.toml"
{
  nginx_common proxy
  echo "http { access_log off; keepalive_requests 10000000;"
  nginx_temp proxy
  cat <<CONF
upstream origin { server 127.0.0.1:$ORIGIN; keepalive 256; keepalive_requests 10000000; }
server {
  listen 127.0.0.1:$N_HTTP backlog=4096;
  location / {
    proxy_pass http://origin;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Request-Id \$request_id;
    add_header X-Request-Id \$request_id;
  }
}
}
CONF
} >"$WORK/proxy.conf"

declare -A PID_OF PORT_OF
start() {
  local who=$1 port=$2
  shift 2
  taskset -c 0 "$@" 2>"$WORK/$who.err" &
  PID_OF[$who]=$!
  PORT_OF[$who]=$port
  PIDS+=($!)
}
wait_port "$ORIGIN"
start nginx "$N_HTTP" nginx -c "$WORK/proxy.conf" -p "$WORK" -g 'daemon off;'
start pingora "$P_HTTP" "$BIN/examples/plain_pingora" "127.0.0.1:$P_HTTP" "127.0.0.1:$ORIGIN"
start hyper "$H_HTTP" "$BIN/examples/plain_hyper" "127.0.0.1:$H_HTTP" "127.0.0.1:$ORIGIN" 1
start edgenet "$E_HTTP" "$BIN/edgenet" pop --config "$WORK/edgenet.toml"
CANDIDATES=(nginx pingora hyper edgenet)

for who in "${CANDIDATES[@]}"; do
  wait_port "${PORT_OF[$who]}"
  got=$(curl -s -D "$WORK/$who.head" "http://localhost:${PORT_OF[$who]}/" | wc -c)
  [ "$got" = 1024 ] || { echo "$who answered $got bytes, not 1024" >&2; exit 1; }
  grep -qi '^x-request-id:' "$WORK/$who.head" || { echo "$who added no X-Request-Id" >&2; exit 1; }
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://localhost:${PORT_OF[$who]}/" >/dev/null
done

declare -A R
for r in $(seq "$REPEATS"); do
  for who in "${CANDIDATES[@]}"; do
    url="http://localhost:${PORT_OF[$who]}/"
    if [ "$r" = 1 ] && [ -n "${PERF:-}" ]; then
      mkdir -p "$PERF"
      perf record -F 999 -g -o "$PERF/$who.data" -p "${PID_OF[$who]}" -- sleep "$DURATION" 2>/dev/null &
      PERF_PID=$!
    fi
    read -r rps p99 _ < <(run_wrk "$CONNS" "$url")
    [ -n "${PERF_PID:-}" ] && { wait "$PERF_PID" || true; PERF_PID=; }
    read -r c1000 _ < <(run_wrk 1000 "$url")
    R[$who.rps]+="$rps " R[$who.p99]+="$p99 " R[$who.c1000]+="$c1000 "
    printf '%-8s run %d: pass-through %9.0f req/s p99 %6.2f ms | c1000 one address %9.0f req/s\n' \
      "$who" "$r" "$rps" "$p99" "$c1000" >&2
  done
done

med() { tr ' ' '\n' <<<"${R[$1]}" | grep . | median; }
# A candidate's RSS in MiB (nginx's: master and worker).
rss_mib() {
  local kib=0 p
  for p in "$1" $(pgrep -P "$1" || true); do kib=$((kib + $(rss_kib "$p"))); done
  echo $((kib / 1024))
}
echo "medians of $REPEATS runs of ${DURATION}s, one core each (req/s, p99 ms, ratio to nginx):"
json="{"
for who in "${CANDIDATES[@]}"; do
  rps=$(med "$who.rps") p99=$(med "$who.p99") c1000=$(med "$who.c1000")
  printf '  %-8s pass-through %9.0f (%s) p99 %6.2f (%s) | c1000 %9.0f (%s) | RSS %d MiB\n' "$who" \
    "$rps" "$(ratio "$rps" "$(med nginx.rps)")" "$p99" "$(ratio "$p99" "$(med nginx.p99)")" \
    "$c1000" "$(ratio "$c1000" "$(med nginx.c1000)")" "$(rss_mib "${PID_OF[$who]}")"
  [ "$who" = nginx ] && continue
  json+="\"${who}_vs_nginx\": $(ratio "$rps" "$(med nginx.rps)"), "
  json+="\"${who}_p99_vs_nginx\": $(ratio "$p99" "$(med nginx.p99)"), "
  json+="\"${who}_c1000_vs_nginx\": $(ratio "$c1000" "$(med nginx.c1000)"), "
done
echo "${json%, }}"
