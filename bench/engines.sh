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
# candidate: pass-through at 64 connections (req/s, p99), 1,000 connections from one address,
# HTTP/2 over TLS 1.3 (h2load, 4 connections x 100 streams) and new TLS 1.3 handshakes (wrk
# with `Connection: close`), all with edgenet's generated ECDSA P-256 certificate.
# The last line is one JSON object with each candidate's ratios to nginx (WHO_FIGURE_vs_nginx).
# Usage: bench/engines.sh          (DURATION=8 REPEATS=3; about 8 minutes)
#        PERF=DIR bench/engines.sh records a perf profile of each candidate's first run in DIR
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
REPEATS=${REPEATS:-3}
CONNS=64

. "$(dirname "$0")/lib.sh"
need nginx wrk h2load:nghttp2-client taskset:util-linux python3 curl
need_two_cores

cargo build --release --locked --bin edgenet --example plain_pingora --example plain_hyper \
  -p edgenet -p edgenet-proxy >&2
BIN=$PWD/target/release

ORIGIN=$(free_port) E_HTTP=$(free_port) E_ADMIN=$(free_port)
N_HTTP=$(free_port) P_HTTP=$(free_port) H_HTTP=$(free_port)
E_TLS=$(free_port) N_TLS=$(free_port) P_TLS=$(free_port) H_TLS=$(free_port)
origin_1k_conf "$ORIGIN"
taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)

{
  bench_node_conf "$E_HTTP" "$E_ADMIN"
  printf '\n[[listeners]]\naddress = "127.0.0.1:%s"\nprotocol = "https"\n' "$E_TLS"
  bench_passthrough_zone bench localhost "$ORIGIN"
  printf '[zones.tls]\ncert = "bench.pem"\nkey = "bench.key"\ngenerate_if_missing = true\n'
} >"$WORK/edgenet.toml"
nginx_proxy_conf "$ORIGIN" "$N_HTTP" "$N_TLS"

declare -A PID_OF PORT_OF TLS_OF
start() {
  local who=$1 port=$2 tls=$3
  shift 3
  taskset -c 0 "$@" 2>"$WORK/$who.err" &
  PID_OF[$who]=$!
  PORT_OF[$who]=$port
  TLS_OF[$who]=$tls
  PIDS+=($!)
}
wait_port "$ORIGIN"
# edgenet first: it makes the certificate the others use.
start edgenet "$E_HTTP" "$E_TLS" "$BIN/edgenet" pop --config "$WORK/edgenet.toml"
wait_port "$E_TLS"
start nginx "$N_HTTP" "$N_TLS" nginx -c "$WORK/proxy.conf" -p "$WORK" -g 'daemon off;'
start pingora "$P_HTTP" "$P_TLS" "$BIN/examples/plain_pingora" "127.0.0.1:$P_HTTP" "127.0.0.1:$ORIGIN" \
  "127.0.0.1:$P_TLS" "$WORK/bench.pem" "$WORK/bench.key"
start hyper "$H_HTTP" "$H_TLS" "$BIN/examples/plain_hyper" "127.0.0.1:$H_HTTP" "127.0.0.1:$ORIGIN" 1 \
  "127.0.0.1:$H_TLS" "$WORK/bench.pem" "$WORK/bench.key"
CANDIDATES=(nginx pingora hyper edgenet)

# Runs h2load over TLS on core 1; prints req/s; fails when any request failed or it was not h2.
run_h2load() {
  local out
  out=$(taskset -c 1 h2load -c4 -m100 -D "$DURATION" --warm-up-time=1 "https://localhost:$1/")
  grep -qE "^requests: .* 0 failed, 0 errored" <<<"$out" || { echo "h2load reported failures: $out" >&2; exit 1; }
  grep -q "TLSv1.3" <<<"$out" || { echo "not TLS 1.3: $out" >&2; exit 1; }
  grep 'Application protocol' <<<"$out" | grep -q h2 || { echo "not h2: $out" >&2; exit 1; }
  awk '/^finished in/ {print $4}' <<<"$out"
}

for who in "${CANDIDATES[@]}"; do
  wait_port "${PORT_OF[$who]}"
  wait_port "${TLS_OF[$who]}"
  [ "$(curl -sk --http2 -o /dev/null -w '%{http_version} %{size_download}' "https://localhost:${TLS_OF[$who]}/")" = "2 1024" ] ||
    { echo "$who does not answer 1 KiB over HTTP/2 and TLS" >&2; exit 1; }
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
    h2=$(run_h2load "${TLS_OF[$who]}")
    read -r hs _ < <(run_wrk 16 -H "Connection: close" "https://localhost:${TLS_OF[$who]}/")
    R[$who.rps]+="$rps " R[$who.p99]+="$p99 " R[$who.c1000]+="$c1000 " R[$who.h2]+="$h2 " R[$who.hs]+="$hs "
    printf '%-8s run %d: pass-through %7.0f req/s p99 %5.2f ms | c1000 %7.0f | h2 TLS %7.0f | handshakes %6.0f /s\n' \
      "$who" "$r" "$rps" "$p99" "$c1000" "$h2" "$hs" >&2
  done
done

med() { tr ' ' '\n' <<<"${R[$1]}" | grep . | median; }
# A candidate's RSS in MiB (nginx's: master and worker).
rss_mib() {
  local kib=0 p
  for p in "$1" $(pgrep -P "$1" || true); do kib=$((kib + $(rss_kib "$p"))); done
  echo $((kib / 1024))
}
echo "medians of $REPEATS runs of ${DURATION}s, one core each: req/s (rps, c1000, h2), p99 ms, handshakes/s (hs); ratio to nginx:"
json="{"
for who in "${CANDIDATES[@]}"; do
  line="  $(printf '%-8s' "$who")"
  for f in rps p99 c1000 h2 hs; do
    v=$(med "$who.$f") q=$(ratio "$(med "$who.$f")" "$(med "nginx.$f")")
    line+=" $f $v ($q)"
    [ "$who" = nginx ] || json+="\"${who}_${f}_vs_nginx\": $q, "
  done
  echo "$line | RSS $(rss_mib "${PID_OF[$who]}") MiB"
done
echo "${json%, }}"
