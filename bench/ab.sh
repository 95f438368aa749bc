#!/usr/bin/env bash
# bench/ab.sh: two edgenet binaries against each other, in one run, on loopback: did a change
# cost performance? Each binary runs the setups of bench/proxy.sh (pass-through to a 1 KiB
# origin, and HTTP/2 over TLS) and bench/cache.sh (1 KiB cache hits), pinned to core 0, with
# the load and the origin on core 1. The workloads run in PAIRS alternating pairs (A then B,
# then B then A), and the figures are medians per binary.
#
#   pass-through   wrk, HTTP/1.1, 64 connections, 1 KiB responses
#   h2 TLS         h2load, HTTP/2 over TLS 1.3, 4 connections x 100 concurrent streams
#   cache hits     wrk, HTTP/1.1, 64 connections, a 1 KiB object from the memory cache
#
# Each run gives req/s and the node's CPU time per request (user + system, from /proc): on a
# machine whose neighbours steal time, throughput swings from run to run while the CPU a
# request costs stays put, so both are reported.
# The last line printed is one JSON object: each binary's medians and the ratios B/A.
# Usage: bench/ab.sh BEFORE_BINARY AFTER_BINARY   (DURATION=5 PAIRS=10; about 8 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench/ab.sh BEFORE_BINARY AFTER_BINARY}
B=${2:?usage: bench/ab.sh BEFORE_BINARY AFTER_BINARY}
DURATION=${DURATION:-5}
PAIRS=${PAIRS:-10}
CONNS=64

. "$(dirname "$0")/lib.sh"
need nginx wrk h2load:nghttp2-client taskset:util-linux python3 curl
need_two_cores

ORIGIN=$(free_port) FILES=$(free_port)
origin_1k_conf "$ORIGIN"
mkdir -p "$WORK/www"
head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/1k"
{
  nginx_common files
  echo "http { access_log off; default_type application/octet-stream; keepalive_requests 10000000;"
  nginx_temp files
  echo "server { listen 127.0.0.1:$FILES backlog=4096; root $WORK/www;"
  echo "  location = /1k { add_header Cache-Control \"max-age=86400\"; try_files /1k =404; } } }"
} >"$WORK/files.conf"
taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
taskset -c 1 nginx -c "$WORK/files.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)

# For each binary: a proxy.sh node (plain and TLS listeners, a pass-through zone) and a
# cache.sh node (a caching zone, 512 MiB of memory).
declare -A HTTP HTTPS CACHE PROXY_PID CACHE_PID
for who in A B; do
  HTTP[$who]=$(free_port) HTTPS[$who]=$(free_port) CACHE[$who]=$(free_port)
  admin=$(free_port) cache_admin=$(free_port)
  {
    bench_node_conf "${HTTP[$who]}" "$admin"
    cat <<CONF

[[listeners]]
address = "127.0.0.1:${HTTPS[$who]}"
protocol = "https"
CONF
    bench_passthrough_zone bench localhost "$ORIGIN"
    cat <<CONF
[zones.tls]
cert = "bench-$who.pem"
key = "bench-$who.key"
generate_if_missing = true
CONF
  } >"$WORK/proxy-$who.toml"
  bench_cache_node_conf "cache-$who" "${CACHE[$who]}" "$cache_admin" "$FILES" 512MiB >"$WORK/cache-$who.toml"
  bin=$A
  [ $who = B ] && bin=$B
  taskset -c 0 "$bin" pop --config "$WORK/proxy-$who.toml" 2>"$WORK/proxy-$who.err" &
  PIDS+=($!)
  PROXY_PID[$who]=$!
  taskset -c 0 "$bin" pop --config "$WORK/cache-$who.toml" 2>"$WORK/cache-$who.err" &
  PIDS+=($!)
  CACHE_PID[$who]=$!
done
for p in $ORIGIN $FILES ${HTTP[A]} ${HTTPS[A]} ${CACHE[A]} ${HTTP[B]} ${HTTPS[B]} ${CACHE[B]}; do
  wait_port "$p"
done

# Every node answers the body, and the cache nodes from their cache, before anything is timed.
for who in A B; do
  got=$(curl -s "http://localhost:${HTTP[$who]}/" | wc -c)
  [ "$got" = 1024 ] || { echo "$who pass-through answered $got bytes" >&2; exit 1; }
  for _ in 1 2; do curl -s -o /dev/null "http://localhost:${CACHE[$who]}/1k"; done
  status=$(curl -s -D - -o /dev/null "http://localhost:${CACHE[$who]}/1k" | tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" {print $2}')
  grep -q "hit" <<<"$status" || { echo "$who cache: $status" >&2; exit 1; }
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://localhost:${HTTP[$who]}/" >/dev/null
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://localhost:${CACHE[$who]}/1k" >/dev/null
done

# CPU ticks (user + system) a process has used.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# One run against process $1: req/s and CPU microseconds per request. $2.. is the command;
# its output must say how many requests completed.
run() {
  local pid=$1 before after out requests rps
  shift
  before=$(ticks "$pid")
  out=$(taskset -c 1 "$@")
  after=$(ticks "$pid")
  case $1 in
    wrk)
      grep -qE "Non-2xx|Socket errors" <<<"$out" && { echo "wrk: $out" >&2; exit 1; }
      requests=$(awk '/requests in/ {print $1}' <<<"$out")
      rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
      ;;
    h2load)
      grep -qE "^requests: .* 0 failed, 0 errored" <<<"$out" || { echo "h2load: $out" >&2; exit 1; }
      grep -q "TLSv1.3" <<<"$out" || { echo "not TLS 1.3: $out" >&2; exit 1; }
      requests=$(awk '/^requests:/ {print $8}' <<<"$out")
      rps=$(awk '/^finished in/ {print $4}' <<<"$out")
      ;;
  esac
  echo "$rps $(awk -v t=$((after - before)) -v us="$TICK_US" -v n="$requests" 'BEGIN {printf "%.2f", t * us / n}')"
}

declare -A R
measure() { # who pair
  local p h c
  p=$(run "${PROXY_PID[$1]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://localhost:${HTTP[$1]}/")
  h=$(run "${PROXY_PID[$1]}" h2load -c4 -m100 -D "$DURATION" "https://localhost:${HTTPS[$1]}/")
  c=$(run "${CACHE_PID[$1]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://localhost:${CACHE[$1]}/1k")
  for m in "pass $p" "h2 $h" "hits $c"; do
    read -r name rps cpu <<<"$m"
    R[$1,$name]+="$rps "
    R[$1,${name}_cpu]+="$cpu "
  done
  echo "pair $2 $1: pass-through $p, h2 TLS $h, cache hits $c (req/s, CPU us/request)" >&2
}
for pair in $(seq "$PAIRS"); do
  if [ $((pair % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for who in $order; do measure "$who" "$pair"; done
done

med() { tr ' ' '\n' <<<"${R[$1,$2]}" | grep -v '^$' | median; }
json="{"
for m in pass h2 hits; do
  a=$(med A $m) b=$(med B $m) ac=$(med A ${m}_cpu) bc=$(med B ${m}_cpu)
  echo "$m: A $a req/s ($ac us/req), B $b req/s ($bc us/req): B/A $(ratio "$b" "$a") req/s, $(ratio "$bc" "$ac") CPU" >&2
  json+="\"${m}_a\": $a, \"${m}_b\": $b, \"${m}_ratio\": $(ratio "$b" "$a"), "
  json+="\"${m}_cpu_us_a\": $ac, \"${m}_cpu_us_b\": $bc, \"${m}_cpu_ratio\": $(ratio "$bc" "$ac"), "
done
echo "${json%, }, \"pairs\": $PAIRS, \"duration_s\": $DURATION}"
