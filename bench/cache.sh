#!/usr/bin/env bash
# bench/cache.sh: edgenet's cache against nginx proxy_cache and Varnish, in one run, on loopback.
#
# One origin (nginx) serves every proxy; each proxy is pinned to core 0 (one worker / one
# thread / one Varnish thread pool), wrk and the origin share core 1.
#   (a) 1 KiB hits, HTTP/1.1 keep-alive, 64 connections: req/s and p99 (medians of REPEATS);
#       nginx twice: Debian's default (sendfile on) and at its best for small objects
#       (sendfile off, a second server of the same process with a cache of its own)
#   (b) 100 KiB hits, 64 connections: Gbit/s
#   (c) Zipf(1.0) over 100,000 objects of 4 KiB, 200,000 requests, each cache given the same
#       budget, 10% of the working set (40 MiB: nginx's max_size, Varnish's malloc storage,
#       edgenet's memory tier): hit ratio = 1 - origin fetches / requests. Each of three seeds
#       runs on fresh caches, the proxies side by side on core 0, paced (ZIPF_DELAY_MS per
#       connection, 16 connections); what each holds is sampled every 0.5 s and its peak shown
#       against the budget. Medians of the seeds. nginx cannot stay within it: its cache
#       manager looks at max_size at most every 10 s (ngx_http_file_cache_expire caps its sleep
#       at 10 s), so it holds max_size plus up to 10 s of misses, at any rate worth measuring
#       (a smaller max_size only moves the peak down by as much). Its peak is printed
#       (`zipf_nginx_peak_mib`): nginx is compared holding more than the others.
# The last line printed is one JSON object with the figures.
# Usage: bench/cache.sh   (DURATION=10 REPEATS=3; about 6 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
need nginx wrk taskset:util-linux python3 curl varnishd:varnish
need_two_cores

DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
ZIPF_KEYS=${ZIPF_KEYS:-100000}
ZIPF_REQUESTS=${ZIPF_REQUESTS:-200000}
ZIPF_BUDGET_MB=${ZIPF_BUDGET_MB:-40}
ZIPF_SECONDS=${ZIPF_SECONDS:-100}
ZIPF_DELAY_MS=${ZIPF_DELAY_MS:-1}
ZIPF_SEEDS=${ZIPF_SEEDS:-"1 2 3"}
export ZIPF_KEYS ZIPF_REQUESTS ZIPF_DELAY_MS

cargo build --release --locked --bin edgenet >&2
EDGENET=$PWD/target/release/edgenet

mkdir -p "$WORK/www"
head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/1k"
head -c 102400 /dev/urandom >"$WORK/www/100k"
head -c 4096 /dev/urandom >"$WORK/www/4k"

# Ports: the origin has one server per proxy so that each proxy's fetches are counted apart.
for v in O_E O_N O_N2 O_V E E_ADMIN N N2 V; do printf -v "$v" '%s' "$(free_port)"; done

origin_server() { # port log
  cat <<CONF
server {
  listen 127.0.0.1:$1 backlog=4096;
  access_log $WORK/$2.log;
  root $WORK/www;
  location = /1k { add_header Cache-Control "max-age=86400"; try_files /1k =404; }
  location = /100k { add_header Cache-Control "max-age=86400"; try_files /100k =404; }
  location /z/ { add_header Cache-Control "max-age=86400"; try_files /4k =404; }
}
CONF
}
{
  nginx_common origin
  echo "http { default_type application/octet-stream; keepalive_requests 10000000; sendfile on;"
  nginx_temp origin
  origin_server "$O_E" fetch-edgenet
  origin_server "$O_N" fetch-nginx
  origin_server "$O_N2" fetch-nginx_nosendfile
  origin_server "$O_V" fetch-varnish
  echo "}"
} >"$WORK/origin.conf"
taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)

bench_cache_node_conf bench "$E" "$E_ADMIN" "$O_E" 512MiB >"$WORK/edgenet.toml"
taskset -c 0 "$EDGENET" pop --config "$WORK/edgenet.toml" 2>"$WORK/edgenet.err" &
PIDS+=($!)

nginx_cache_server() { # port origin zone size [directives] [levels]
  cat <<CONF
proxy_cache_path $WORK/cache-$3 levels=${6:-1:2} keys_zone=$3:64m max_size=$4 inactive=1d use_temp_path=off;
server {
  listen 127.0.0.1:$1 backlog=4096;
  ${5:-}
  location / {
    proxy_pass http://127.0.0.1:$2;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_cache $3;
    proxy_cache_lock on;
  }
}
CONF
}
{
  nginx_common proxy
  echo "http { access_log off; keepalive_requests 10000000; sendfile on;"
  nginx_temp proxy
  nginx_cache_server "$N" "$O_N" hot 512m
  nginx_cache_server "$N2" "$O_N2" hotnosf 512m "sendfile off;"
  echo "}"
} >"$WORK/proxy.conf"
taskset -c 0 nginx -c "$WORK/proxy.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)

varnish() { # port origin size name (its PID appended to PIDS)
  taskset -c 0 varnishd -F -a "127.0.0.1:$1" -b "127.0.0.1:$2" -s "malloc,$3" -n "$WORK/varnish-$4" \
    -p thread_pools=1 >"$WORK/varnish-$4.log" 2>&1 &
  PIDS+=($!)
}
varnish "$V" "$O_V" 512m hot

for p in $O_E $E $N $N2 $V; do wait_port "$p"; done
sleep 1

# Warm each cache with the objects of (a) and (b), and check all three serve them.
for port in $E $N $N2 $V; do
  for path in /1k /100k; do
    for _ in 1 2; do curl -s -o /dev/null "http://localhost:$port$path"; done
    got=$(curl -s "http://localhost:$port$path" | wc -c)
    want=$(wc -c <"$WORK/www${path}")
    [ "$got" = "$want" ] || { echo "port $port $path: $got bytes, not $want" >&2; exit 1; }
  done
done
fetched() { [ -f "$WORK/$1.log" ] && wc -l <"$WORK/$1.log" || echo 0; }

declare -A R
names=(edgenet nginx nginx_nosendfile varnish)
ports=("$E" "$N" "$N2" "$V")
# SKIP_HITS=1 runs only the Zipf part (for tuning admission and eviction).
[ -n "${SKIP_HITS:-}" ] && REPEATS=0
for r in $(seq "$REPEATS"); do
  for i in 0 1 2 3; do
    read -r rps p99 _ < <(run_wrk 64 "http://localhost:${ports[$i]}/1k")
    read -r _ _ bps < <(run_wrk 64 "http://localhost:${ports[$i]}/100k")
    R[${names[$i]}.rps]+="$rps "
    R[${names[$i]}.p99]+="$p99 "
    R[${names[$i]}.gbps]+="$(awk -v b="$bps" 'BEGIN {printf "%.3f", b * 8 / 1e9}') "
    printf '%-8s run %d: 1 KiB hits %9.0f req/s p99 %6.2f ms | 100 KiB hits %6.2f Gbit/s\n' \
      "${names[$i]}" "$r" "$rps" "$p99" "$(awk -v b="$bps" 'BEGIN {print b * 8 / 1e9}')" >&2
  done
done
for n in "${names[@]}"; do
  f=$(fetched "fetch-$n")
  [ "$f" -le 8 ] || echo "warning: $n fetched $f times from the origin during the hit runs" >&2
done

# (c) Zipf: per seed, fresh caches of one budget, the same request sequence against each, side
# by side; the origin's logs count each one's misses.
stop_round() { for pid in "$@"; do kill "$pid" 2>/dev/null || true; done; for pid in "$@"; do wait "$pid" 2>/dev/null || true; done; }
ZIPF_NAMES=(edgenet nginx varnish)
zipf_round() { # seed: prints the hit ratios of ZIPF_NAMES, and the peaks held on stderr
  local seed=$1 d="$WORK/zipf-$1" before=${#PIDS[@]}
  mkdir -p "$d"
  local oe on ov e ea n v x
  for x in oe on ov e ea n v; do printf -v "$x" '%s' "$(free_port)"; done
  {
    nginx_common "zipf-$seed/origin"
    echo "http { default_type application/octet-stream; keepalive_requests 10000000; sendfile on;"
    nginx_temp "zipf-$seed/origin"
    origin_server "$oe" "zipf-$seed/fetch-edgenet"
    origin_server "$on" "zipf-$seed/fetch-nginx"
    origin_server "$ov" "zipf-$seed/fetch-varnish"
    echo "}"
  } >"$d/origin.conf"
  taskset -c 1 nginx -c "$d/origin.conf" -p "$WORK" -g 'daemon off;' &
  PIDS+=($!)
  bench_cache_node_conf zipf "$e" "$ea" "$oe" "${ZIPF_BUDGET_MB}MiB" >"$d/edgenet.toml"
  taskset -c 0 "$EDGENET" pop --config "$d/edgenet.toml" 2>"$d/edgenet.err" &
  PIDS+=($!)
  {
    nginx_common "zipf-$seed/proxy"
    echo "http { access_log off; keepalive_requests 10000000; sendfile on;"
    nginx_temp "zipf-$seed/proxy"
    # One directory level: 16 directories, not 4096 of 4 KiB each, in what du counts.
    nginx_cache_server "$n" "$on" "zipf-$seed" "${ZIPF_BUDGET_MB}m" "" 1
    echo "}"
  } >"$d/proxy.conf"
  taskset -c 0 nginx -c "$d/proxy.conf" -p "$WORK" -g 'daemon off;' &
  PIDS+=($!)
  varnish "$v" "$ov" "${ZIPF_BUDGET_MB}m" "zipf-$seed"
  for p in $oe $on $ov $e $n $v; do wait_port "$p"; done
  sleep 1
  # What each holds against its budget: edgenet's memory tier, nginx's cache directory as it
  # counts it (disk blocks), Varnish's malloc storage in use.
  (set +e +o pipefail; while :; do
    he=$(curl -s -m 1 "http://127.0.0.1:$ea/metrics" | awk '$1 == "edgenet_cache_stored_bytes{tier=\"memory\"}" {print $2}')
    hn=$(du -s -B1 "$WORK/cache-zipf-$seed" 2>/dev/null | cut -f1)
    hv=$(varnishstat -n "$WORK/varnish-zipf-$seed" -1 -f SMA.s0.g_bytes 2>/dev/null | awk '{print $2}')
    echo "${he:-0} ${hn:-0} ${hv:-0}"
    sleep 0.5
  done >"$d/held") &
  local sampler=$!
  local wrks=() pair
  for pair in "edgenet $e" "nginx $n" "varnish $v"; do
    set -- $pair
    ZIPF_SEED=$seed taskset -c 1 wrk -t1 -c16 -d"${ZIPF_SECONDS}s" -s bench/zipf.lua "http://localhost:$2/" >"$d/wrk-$1" &
    wrks+=($!)
  done
  wait "${wrks[@]}"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  local out=""
  for name in "${ZIPF_NAMES[@]}"; do
    local total fetches
    total=$(awk '/requests in/ {print $1}' "$d/wrk-$name")
    if grep -qE "Non-2xx|Socket errors" "$d/wrk-$name"; then
      echo "zipf seed $seed: $name: wrk reported errors (not hits): $(grep -E 'Non-2xx|Socket errors' "$d/wrk-$name")" >&2
    fi
    [ "$total" -ge "$ZIPF_REQUESTS" ] || echo "zipf seed $seed: $name answered $total of $ZIPF_REQUESTS in ${ZIPF_SECONDS}s" >&2
    fetches=$(wc -l <"$d/fetch-$name.log")
    out+="$(awk -v t="$total" -v f="$fetches" 'BEGIN {printf "%.4f", 1 - f / t}') "
  done
  local peaks
  peaks=$(awk '{for (i = 1; i <= 3; i++) if ($i > m[i]) m[i] = $i} END {printf "%.1f %.1f %.1f", m[1] / 1048576, m[2] / 1048576, m[3] / 1048576}' "$d/held")
  echo "zipf seed $seed: hit ratio ${ZIPF_NAMES[*]}: $out; peak held (MiB, budget ${ZIPF_BUDGET_MB}): $peaks" >&2
  echo "$peaks" >"$d/peaks"
  stop_round "${PIDS[@]:$before}"
  PIDS=("${PIDS[@]:0:$before}")
  echo "$out"
}
declare -a ZE_ALL ZN_ALL ZV_ALL
for seed in $ZIPF_SEEDS; do
  read -r a b c < <(zipf_round "$seed")
  ZE_ALL+=("$a"); ZN_ALL+=("$b"); ZV_ALL+=("$c")
done
ZE=$(printf '%s\n' "${ZE_ALL[@]}" | median)
ZN=$(printf '%s\n' "${ZN_ALL[@]}" | median)
ZV=$(printf '%s\n' "${ZV_ALL[@]}" | median)
read -r PE PN PV < <(cat "$WORK"/zipf-*/peaks | awk '{for (i = 1; i <= 3; i++) if ($i > m[i]) m[i] = $i} END {printf "%.1f %.1f %.1f\n", m[1], m[2], m[3]}')
echo "zipf: medians of seeds $ZIPF_SEEDS: edgenet $ZE, nginx $ZN, varnish $ZV; highest held (MiB, budget ${ZIPF_BUDGET_MB}): edgenet $PE, nginx $PN, varnish $PV" >&2
[ -z "${SKIP_HITS:-}" ] || exit 0

med() { tr ' ' '\n' <<<"${R[$1]}" | grep . | median; }
ER=$(med edgenet.rps) NR=$(med nginx.rps) VR=$(med varnish.rps) N2R=$(med nginx_nosendfile.rps)
EP=$(med edgenet.p99) NP=$(med nginx.p99) VP=$(med varnish.p99)
EG=$(med edgenet.gbps) NG=$(med nginx.gbps) VG=$(med varnish.gbps)
cat <<REPORT
medians of $REPEATS runs of ${DURATION}s (edgenet | nginx | varnish):
  1 KiB hits, 64 conns     $ER | $NR | $VR req/s   (vs nginx $(ratio "$ER" "$NR"), vs varnish $(ratio "$ER" "$VR"))
  1 KiB hits, nginx with sendfile off: $N2R req/s  (vs it $(ratio "$ER" "$N2R"))
  1 KiB hits p99           $EP | $NP | $VP ms      (vs nginx $(ratio "$EP" "$NP"))
  100 KiB hits             $EG | $NG | $VG Gbit/s  (vs nginx $(ratio "$EG" "$NG"))
  Zipf hit ratio, ${ZIPF_BUDGET_MB} MiB  $ZE | $ZN | $ZV   (peak held $PE | $PN | $PV MiB)
REPORT
printf '{"hits_vs_nginx": %s, "hits_vs_nginx_sendfile_off": %s, "hits_p99_vs_nginx": %s, "hits_vs_varnish": %s, "large_gbps_vs_nginx": %s, "zipf_hit_ratio": %s, "zipf_hit_ratio_nginx": %s, "zipf_hit_ratio_varnish": %s, "zipf_nginx_peak_mib": %s}\n' \
  "$(ratio "$ER" "$NR")" "$(ratio "$ER" "$N2R")" "$(ratio "$EP" "$NP")" "$(ratio "$ER" "$VR")" "$(ratio "$EG" "$NG")" "$ZE" "$ZN" "$ZV" "$PN"
