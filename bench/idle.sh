#!/usr/bin/env bash
# bench/idle.sh: what idle keep-alive connections cost (issue 23's baseline), edgenet and nginx
# in one run. CONNS (default 50,000) HTTP/1.1 connections from ADDRS (250) source addresses
# 127.0.0.2..., each after one 1 KiB pass-through request, held idle; RSS (nginx: master and
# worker) before, with them open, and 3 s after they close, over ROUNDS (2) rounds on the same
# process (does the memory of closed connections go back, or does each round add to it?).
# Plain HTTP/1.1 only so far. Both sides get `ulimit -n` raised; keep-alive is 5 min on both (edgenet's longest).
# The last line is one JSON object: idle_conns (how many), rss_kb_per_idle_conn (edgenet, first round),
# rss_kb_per_idle_conn_nginx, and the MiB each still holds after the last round's close.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
need nginx python3 curl taskset:util-linux
CONNS=${CONNS:-50000}
ADDRS=${ADDRS:-250}
ROUNDS=${ROUNDS:-2}
# Each side needs a descriptor per connection. Where the hard limit is lower and cannot be
# raised (a container), measure as many as it allows and say so.
ulimit -Hn $((CONNS + 2000)) 2>/dev/null || true
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ] && [ "$HARD" -lt $((CONNS + 1500)) ]; then
  echo "the open-file hard limit is $HARD here and cannot be raised: $((HARD - 1500)) connections, not $CONNS" >&2
  CONNS=$((HARD - 1500))
fi
ulimit -n "$HARD"

cargo build --release --locked --bin edgenet >&2
EDGENET=$PWD/target/release/edgenet

ORIGIN=$(free_port) E=$(free_port) E_ADMIN=$(free_port) N=$(free_port)
origin_1k_conf "$ORIGIN"
{
  bench_node_conf "$E" "$E_ADMIN"
  printf '\n[limits]\nkeepalive_timeout = "5m"\n'
  bench_passthrough_zone bench localhost "$ORIGIN"
} >"$WORK/edgenet.toml"
{
  echo "$USER_LINE"
  cat <<CONF
worker_processes 1;
worker_rlimit_nofile $((CONNS + 1200));
pid $WORK/proxy.pid;
error_log $WORK/proxy.err warn;
events { worker_connections $((CONNS + 1100)); }
http {
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
CONF
  nginx_temp proxy
  cat <<CONF
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 256; }
  server {
    listen 127.0.0.1:$N backlog=4096;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
} >"$WORK/proxy.conf"

taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
taskset -c 0 "$EDGENET" pop --config "$WORK/edgenet.toml" 2>"$WORK/edgenet.err" &
EDGENET_PID=$!
PIDS+=($EDGENET_PID)
taskset -c 0 nginx -c "$WORK/proxy.conf" -p "$WORK" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=($NGINX_PID)
for p in $ORIGIN $E $N; do wait_port "$p"; done
for port in $E $N; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$port/")" = 200 ] || { echo "port $port does not answer 200" >&2; exit 1; }
done
sleep 1

rss_of() { # edgenet|nginx: KiB
  if [ "$1" = edgenet ]; then rss_kib "$EDGENET_PID"; return; fi
  local total=0 p
  for p in $NGINX_PID $(pgrep -P "$NGINX_PID"); do total=$((total + $(rss_kib "$p"))); done
  echo "$total"
}

declare -A PER_CONN AFTER
for who in edgenet nginx; do
  port=$E; [ "$who" = nginx ] && port=$N
  base=$(rss_of "$who")
  for r in $(seq "$ROUNDS"); do
    coproc CLIENT { taskset -c 1 python3 bench/idle_conns.py "$port" localhost "$CONNS" "$ADDRS"; }
    read -r opened <&"${CLIENT[0]}"
    sleep 2
    held=$(rss_of "$who")
    echo close >&"${CLIENT[1]}"
    read -r _ <&"${CLIENT[0]}"
    wait "$CLIENT_PID" 2>/dev/null || true
    sleep 3
    after=$(rss_of "$who")
    per=$(awk -v h="$held" -v b="$base" -v n="$CONNS" 'BEGIN {printf "%.2f", (h - b) / n * 1.024}')
    [ "$r" = 1 ] && PER_CONN[$who]=$per
    AFTER[$who]=$(( (after - base) / 1024 ))
    printf '%-8s round %d: %s; RSS %d MiB before, %d MiB with them open (%s KB a connection), %d MiB 3 s after they closed\n' \
      "$who" "$r" "$opened" $((base / 1024)) $((held / 1024)) "$per" $((after / 1024)) >&2
    grep -q "\"failed\": 0" <<<"$opened" || echo "warning: $who: not every connection was served: $opened" >&2
  done
done
printf '{"idle_conns": %s, "rss_kb_per_idle_conn": %s, "rss_kb_per_idle_conn_nginx": %s, "rss_mb_kept_after_close": %s, "rss_mb_kept_after_close_nginx": %s}\n' \
  "$CONNS" "${PER_CONN[edgenet]}" "${PER_CONN[nginx]}" "${AFTER[edgenet]}" "${AFTER[nginx]}"
