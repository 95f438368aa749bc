#!/usr/bin/env bash
# bench/proxy.sh: edgenet against nginx as a reverse proxy, in one run, on loopback.
#
# Both proxies sit in front of the same origin (a separate nginx answering 1 KiB bodies) and do
# the same work: keep-alive to the origin, X-Forwarded-For/-Proto and a request id added, no
# access log. Each proxy is pinned to core 0 (one worker / one thread per listener); the load
# generator and the origin share core 1. Figures are medians of REPEATS alternating runs.
#
#   pass-through   wrk, HTTP/1.1, 64 connections, 1 KiB responses: req/s and p99 latency
#   c1000 one addr wrk, 1,000 connections from one address (a carrier-grade NAT): req/s, and
#                  any socket error fails the run (the per-address cap must not cut it off)
#   h2 TLS         h2load, HTTP/2 over TLS 1.3, 4 connections x 100 concurrent streams: req/s
#   handshakes     wrk over TLS with `Connection: close`: a new TLS 1.3 handshake per request
#   idle RSS       VmRSS of the idle edgenet process after start-up
#
# The last line printed is one JSON object with the ratios edgenet/nginx.
# Usage: bench/proxy.sh            (DURATION=10 REPEATS=3 by default; about 5 minutes)
#        PERF=FILE bench/proxy.sh  also records a perf profile of edgenet's first pass-through run
#        HOLD=1 bench/proxy.sh     starts everything, prints the ports and waits (for profiling)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
CONNS=64

. "$(dirname "$0")/lib.sh"
need nginx wrk h2load:nghttp2-client taskset:util-linux python3 curl
need_two_cores

cargo build --release --locked --bin edgenet >&2
EDGENET=$PWD/target/release/edgenet

ORIGIN=$(free_port) E_HTTP=$(free_port) E_HTTPS=$(free_port) E_ADMIN=$(free_port)
N_HTTP=$(free_port) N_HTTPS=$(free_port)
# The origin: 1 KiB from memory, long keep-alive.
origin_1k_conf "$ORIGIN"

{
  bench_node_conf "$E_HTTP" "$E_ADMIN"
  cat <<CONF

[[listeners]]
address = "127.0.0.1:$E_HTTPS"
protocol = "https"
CONF
  # Pass-through: no cache (bench/cache.sh has the cache).
  bench_passthrough_zone bench localhost "$ORIGIN"
  cat <<CONF
[zones.tls]
cert = "bench.pem"
key = "bench.key"
generate_if_missing = true
CONF
} >"$WORK/edgenet.toml"

taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
taskset -c 0 "$EDGENET" pop --config "$WORK/edgenet.toml" 2>"$WORK/edgenet.err" &
EDGENET_PID=$!
PIDS+=($EDGENET_PID)
wait_port "$ORIGIN"
wait_port "$E_HTTP"
wait_port "$E_HTTPS"

# nginx as the proxy, with edgenet's generated certificate.
nginx_proxy_conf "$ORIGIN" "$N_HTTP" "$N_HTTPS"
taskset -c 0 nginx -c "$WORK/proxy.conf" -p "$WORK" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=($NGINX_PID)
wait_port "$N_HTTP"
wait_port "$N_HTTPS"

sleep 1
IDLE_RSS_KIB=$(rss_kib "$EDGENET_PID")
NGINX_RSS_KIB=0
for p in $NGINX_PID $(pgrep -P "$NGINX_PID"); do NGINX_RSS_KIB=$((NGINX_RSS_KIB + $(rss_kib "$p"))); done

# Both proxies answer the same body before anything is measured.
for port in $E_HTTP $N_HTTP; do
  got=$(curl -s "http://localhost:$port/" | wc -c)
  [ "$got" = 1024 ] || { echo "port $port answered $got bytes, not 1024" >&2; exit 1; }
done

if [ -n "${HOLD:-}" ]; then
  echo "origin $ORIGIN | edgenet pid $EDGENET_PID http $E_HTTP https $E_HTTPS | nginx pid $NGINX_PID http $N_HTTP https $N_HTTPS" >&2
  echo "work dir $WORK; Ctrl-C or kill $$ to stop" >&2
  sleep infinity &
  wait $!
fi

# Runs h2load over TLS; prints req/s; fails when any request failed.
run_h2load() {
  local out
  out=$(taskset -c 1 h2load -c4 -m100 -D "$DURATION" --warm-up-time=1 "https://localhost:$1/")
  if ! grep -qE "^requests: .* 0 failed, 0 errored" <<<"$out"; then
    echo "h2load reported failures: $out" >&2
    exit 1
  fi
  grep -q "TLSv1.3" <<<"$out" || { echo "not TLS 1.3: $out" >&2; exit 1; }
  grep -q "h2" <<<"$(grep 'Application protocol' <<<"$out")" || { echo "not h2: $out" >&2; exit 1; }
  awk '/^finished in/ {print $4}' <<<"$out"
}

# Warm both (connection pools, page cache) before measuring.
for port in $E_HTTP $N_HTTP; do
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://localhost:$port/" >/dev/null
done

declare -A RESULTS
for r in $(seq "$REPEATS"); do
  for who in edgenet nginx; do
    if [ $who = edgenet ]; then http=$E_HTTP https=$E_HTTPS; else http=$N_HTTP https=$N_HTTPS; fi
    if [ $who = edgenet ] && [ "$r" = 1 ] && [ -n "${PERF:-}" ]; then
      perf record -F 999 -g -o "$PERF" -p "$EDGENET_PID" -- sleep "$DURATION" 2>/dev/null &
      PERF_PID=$!
    fi
    read -r rps p99 _ < <(run_wrk "$CONNS" "http://localhost:$http/")
    [ -n "${PERF_PID:-}" ] && { wait "$PERF_PID" || true; PERF_PID=; }
    read -r c1000 _ < <(run_wrk 1000 "http://localhost:$http/")
    h2=$(run_h2load "$https")
    read -r hs _ < <(run_wrk 16 -H "Connection: close" "https://localhost:$https/")
    RESULTS[$who.rps]+="$rps "
    RESULTS[$who.c1000]+="$c1000 "
    RESULTS[$who.p99]+="$p99 "
    RESULTS[$who.h2]+="$h2 "
    RESULTS[$who.hs]+="$hs "
    printf '%-8s run %d: pass-through %9.0f req/s p99 %6.2f ms | c1000 one address %9.0f req/s | h2 TLS %9.0f req/s | TLS handshakes %7.0f /s\n' \
      "$who" "$r" "$rps" "$p99" "$c1000" "$h2" "$hs" >&2
  done
done
BUSY_RSS_KIB=$(rss_kib "$EDGENET_PID")

med() { tr ' ' '\n' <<<"${RESULTS[$1]}" | grep . | median; }
E_RPS=$(med edgenet.rps) N_RPS=$(med nginx.rps)
E_P99=$(med edgenet.p99) N_P99=$(med nginx.p99)
E_C1000=$(med edgenet.c1000) N_C1000=$(med nginx.c1000)
E_H2=$(med edgenet.h2) N_H2=$(med nginx.h2)
E_HS=$(med edgenet.hs) N_HS=$(med nginx.hs)
IDLE_MB=$(awk -v k="$IDLE_RSS_KIB" 'BEGIN {printf "%.1f", k / 1024}')

cat <<REPORT
medians of $REPEATS runs of ${DURATION}s (edgenet | nginx | ratio):
  pass-through 1 KiB, $CONNS conns   $E_RPS | $N_RPS req/s | $(ratio "$E_RPS" "$N_RPS")
  pass-through p99                $E_P99 | $N_P99 ms | $(ratio "$E_P99" "$N_P99")
  1,000 conns from one address    $E_C1000 | $N_C1000 req/s | $(ratio "$E_C1000" "$N_C1000")
  HTTP/2 TLS, 4x100 streams       $E_H2 | $N_H2 req/s | $(ratio "$E_H2" "$N_H2")
  new TLS 1.3 handshakes          $E_HS | $N_HS /s | $(ratio "$E_HS" "$N_HS")
  RSS idle                        $IDLE_MB MiB | nginx (master+worker) $((NGINX_RSS_KIB / 1024)) MiB
  RSS after the runs              $((BUSY_RSS_KIB / 1024)) MiB
REPORT
printf '{"pass_through_vs_nginx": %s, "pass_through_p99_vs_nginx": %s, "pass_through_c1000_one_address_vs_nginx": %s, "h2_tls_vs_nginx": %s, "tls_handshakes_vs_nginx": %s, "idle_rss_mb": %s}\n' \
  "$(ratio "$E_RPS" "$N_RPS")" "$(ratio "$E_P99" "$N_P99")" "$(ratio "$E_C1000" "$N_C1000")" "$(ratio "$E_H2" "$N_H2")" \
  "$(ratio "$E_HS" "$N_HS")" "$IDLE_MB"
