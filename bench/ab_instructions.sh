#!/usr/bin/env bash
# bench/ab_instructions.sh: what a request costs two edgenet binaries, in instructions: each
# binary runs under callgrind with the setups of bench/ab.sh (pass-through, HTTP/2 over TLS,
# 1 KiB cache hits); after a warm-up the counters are zeroed, a fixed number of requests is
# sent, and the instructions the node executed are divided by them. Unlike req/s on a machine
# whose neighbours steal time, the count is the same from run to run (bench/RESULTS.md shows
# how close), so a change's cost shows below the noise of a throughput run.
#
# The last line printed is one JSON object: instructions per request per binary and workload,
# and the ratios B/A.
# Usage: bench/ab_instructions.sh BEFORE_BINARY AFTER_BINARY   (REQUESTS=2000; ~10 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench/ab_instructions.sh BEFORE_BINARY AFTER_BINARY}
B=${2:?usage: bench/ab_instructions.sh BEFORE_BINARY AFTER_BINARY}
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-300}

. "$(dirname "$0")/lib.sh"
need nginx h2load:nghttp2-client valgrind curl python3

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
nginx -c "$WORK/origin.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
nginx -c "$WORK/files.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
wait_port "$ORIGIN"
wait_port "$FILES"

# Runs binary $1 with config $2 under callgrind until port $3 answers; prints its PID.
start() {
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p.out" "$1" pop --config "$2" \
    >"$2.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && { echo "$pid"; return; }
    sleep 0.2
  done
  echo "the node under callgrind did not listen on $3" >&2
  exit 1
}

# Instructions per request of process $1 for the h2load command $2..: warm up, zero, load,
# dump, and read the dump's total.
per_request() {
  local pid=$1 dump
  shift
  h2load -n "$WARMUP" "$@" >/dev/null
  callgrind_control --zero "$pid" >/dev/null 2>&1
  local out
  out=$(h2load -n "$REQUESTS" "$@")
  grep -qE "^requests: .* $REQUESTS succeeded, 0 failed" <<<"$out" || { echo "h2load: $out" >&2; exit 1; }
  callgrind_control --dump "$pid" >/dev/null 2>&1
  dump=$(ls -t "$WORK"/cg."$pid".out.* | head -1)
  awk -v n="$REQUESTS" '/^summary:/ {printf "%.0f", $2 / n}' "$dump"
}

declare -A R
for who in A B; do
  bin=$A
  [ $who = B ] && bin=$B
  http=$(free_port) https=$(free_port) cache=$(free_port)
  {
    bench_node_conf "$http" "$(free_port)"
    printf '\n[[listeners]]\naddress = "127.0.0.1:%s"\nprotocol = "https"\n' "$https"
    bench_passthrough_zone bench localhost "$ORIGIN"
    printf '[zones.tls]\ncert = "cg-%s.pem"\nkey = "cg-%s.key"\ngenerate_if_missing = true\n' "$who" "$who"
  } >"$WORK/proxy-$who.toml"
  bench_cache_node_conf "cache-$who" "$cache" "$(free_port)" "$FILES" 512MiB >"$WORK/cache-$who.toml"

  pid=$(start "$bin" "$WORK/proxy-$who.toml" "$http")
  R[$who,pass]=$(per_request "$pid" --h1 -c4 "http://localhost:$http/")
  R[$who,h2]=$(per_request "$pid" -c4 -m100 "https://localhost:$https/")
  kill "$pid"
  pid=$(start "$bin" "$WORK/cache-$who.toml" "$cache")
  curl -s -o /dev/null "http://localhost:$cache/1k"
  R[$who,hits]=$(per_request "$pid" --h1 -c4 "http://localhost:$cache/1k")
  kill "$pid"
  echo "$who: pass-through ${R[$who,pass]}, h2 TLS ${R[$who,h2]}, cache hits ${R[$who,hits]} instructions/request" >&2
done

json="{"
for m in pass h2 hits; do
  json+="\"${m}_a\": ${R[A,$m]}, \"${m}_b\": ${R[B,$m]}, \"${m}_ratio\": $(ratio "${R[B,$m]}" "${R[A,$m]}"), "
done
echo "${json%, }, \"requests\": $REQUESTS}"
