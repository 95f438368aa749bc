# Shared by the bench scripts: process cleanup, ports, nginx config pieces, wrk parsing, medians.
# Source it after `set -euo pipefail`; it sets WORK (a scratch directory) and PIDS.

WORK=$(mktemp -d /tmp/edgenet-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Installs what is missing (as root), or says what to install.
need() {
  local missing=""
  for tool in "$@"; do command -v "${tool%%:*}" >/dev/null || missing+=" ${tool#*:}"; done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "missing packages:$missing" >&2
    exit 1
  fi
}

# The node under test runs on core 0, its load and peers on core 1.
need_two_cores() {
  [ "$(nproc)" -ge 2 ] || { echo "needs 2 cores: the node on core 0, the load on core 1" >&2; exit 1; }
}

# The [node], plain listener, [admin] and [access_log] sections of a one-thread bench node:
# $1 the HTTP port, $2 the admin port.
bench_node_conf() {
  cat <<CONF
[node]
name = "bench"
threads = 1
drain_timeout = "1s"

[[listeners]]
address = "127.0.0.1:$1"
protocol = "http"

[admin]
address = "127.0.0.1:$2"

[access_log]
output = "off"
CONF
}

# A zone proxying to the origin on port $3 without caching (like nginx proxy_pass without
# proxy_cache) and without DDoS mitigation: $1 its name, $2 its hostname. Its own
# [zones.*] tables may follow.
bench_passthrough_zone() {
  cat <<CONF

[[zones]]
name = "$1"
hostnames = ["$2"]
[zones.origins]
connect_timeout = "1s"
read_timeout = "10s"
[[zones.origins.servers]]
address = "127.0.0.1:$3"
[zones.cache]
enabled = false
# wrk is one address sending tens of thousands of requests a second: a flood by any measure.
[zones.ddos]
enabled = false
CONF
}

# A one-thread caching node (bench/cache.sh's): $1 its name, $2 its port, $3 the admin port, $4
# the origin's port, $5 the memory budget; one zone for localhost, DDoS mitigation off.
bench_cache_node_conf() {
  cat <<CONF
[node]
name = "$1"
threads = 1
drain_timeout = "1s"
[[listeners]]
address = "127.0.0.1:$2"
protocol = "http"
h2c = false
[admin]
address = "127.0.0.1:$3"
[access_log]
output = "off"
[cache]
memory = "$5"
max_object = "1MiB"
[[zones]]
name = "bench"
hostnames = ["localhost"]
[[zones.origins.servers]]
address = "127.0.0.1:$4"
# wrk is one address sending tens of thousands of requests a second: a flood by any measure.
[zones.ddos]
enabled = false
CONF
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  exit 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"

# The top of an nginx config with one worker; $1 names its pid and error files.
nginx_common() {
  cat <<CONF
$USER_LINE
worker_processes 1;
pid $WORK/$1.pid;
error_log $WORK/$1.err warn;
events { worker_connections 8192; }
CONF
}
# nginx needs its temp paths somewhere writable.
nginx_temp() {
  for t in client_body proxy fastcgi uwsgi scgi; do echo "${t}_temp_path $WORK/$1-$t;"; done
}

# Writes $WORK/origin.conf: an nginx origin on port $1 answering 1 KiB bodies from memory with
# long keep-alive (the origin the proxy benchmarks share).
origin_1k_conf() {
  local body
  body=$(head -c 1024 /dev/zero | tr '\0' 'x')
  {
    nginx_common origin
    echo "http { access_log off; default_type text/plain; keepalive_requests 10000000;"
    nginx_temp origin
    echo "server { listen 127.0.0.1:$1 backlog=4096; location / { return 200 \"$body\"; } } }"
  } >"$WORK/origin.conf"
}

# Writes $WORK/proxy.conf: nginx as the reverse proxy the proxy benchmarks compare against, in
# front of the origin on port $1, listening on $2 (HTTP) and $3 (HTTP/2 over TLS, with
# $WORK/bench.pem and bench.key: edgenet's generated ECDSA P-256 certificate, for a fair
# handshake); upstream keep-alive, and the headers edgenet adds.
nginx_proxy_conf() {
  {
    nginx_common proxy
    echo "http { access_log off; keepalive_requests 10000000;"
    nginx_temp proxy
    cat <<CONF
upstream origin { server 127.0.0.1:$1; keepalive 256; keepalive_requests 10000000; }
server {
  listen 127.0.0.1:$2 backlog=4096;
  listen 127.0.0.1:$3 ssl http2 backlog=4096;
  server_name localhost;
  ssl_certificate $WORK/bench.pem;
  ssl_certificate_key $WORK/bench.key;
  ssl_protocols TLSv1.2 TLSv1.3;
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
}

# wrk's "99%  1.23ms" in milliseconds.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}'; }

# Runs wrk on core 1 with CONNS connections for DURATION seconds: prints "req/s p99_ms bytes/s";
# fails on socket errors or non-2xx responses.
run_wrk() {
  local out
  out=$(taskset -c 1 wrk -t1 -c"$1" -d"${DURATION}s" --latency "${@:2}")
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    echo "wrk reported errors: $out" >&2
    exit 1
  fi
  local rps p99 bps
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms)
  bps=$(awk '/^Transfer\/sec:/ {v=$2; m=1; if (v ~ /KB$/) m=1024; if (v ~ /MB$/) m=1048576; if (v ~ /GB$/) m=1073741824; sub(/[KMG]?B$/,"",v); print v*m}' <<<"$out")
  echo "$rps $p99 $bps"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
