#!/usr/bin/env bash
# bench/security.sh: what the WAF and rate limits cost, and how well the managed rules catch.
#
# One edgenet node (pinned to core 0, one thread) with three zones in front of the same origin
# (nginx, 1 KiB bodies, core 1 with the load generator):
#   plain.test    no rules
#   rules.test    100 WAF rules of the kinds a zone writes (paths, methods, user agents, query
#                 regexes, IP sets and header maps; the shapes of the criterion benchmark) and
#                 5 rate limits, none of which blocks the benchmark's requests
#   managed.test  the managed rule set
# wrk (64 connections, HTTP/1.1, a browser-like request with a query string) alternates between
# the zones; figures are medians of REPEATS runs. Then every request of the attack and benign
# corpora (crates/edgenet-rules/corpus) goes through managed.test (a 403 counts as caught), and
# `cargo bench -p edgenet-rules --bench rules` gives the in-process cost of 100 rules.
#
# The last line printed is one JSON object.
# Usage: bench/security.sh          (DURATION=10 REPEATS=3 by default; about 6 minutes)
#        HOLD=1 bench/security.sh   starts everything, prints the port and waits (for profiling)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
CONNS=64

. "$(dirname "$0")/lib.sh"
need nginx wrk taskset:util-linux python3 curl
need_two_cores

cargo build --release --locked --bin edgenet >&2
EDGENET=$PWD/target/release/edgenet

ORIGIN=$(free_port) E_HTTP=$(free_port) E_ADMIN=$(free_port)
origin_1k_conf "$ORIGIN"

zone() { bench_passthrough_zone "$1" "$1.test" "$ORIGIN"; }

{
  bench_node_conf "$E_HTTP" "$E_ADMIN"
  zone plain
  zone rules
  for i in $(seq 0 19); do
    cat <<CONF
[[zones.waf.rules]]
id = "admin-$i"
expression = 'http.request.uri.path wildcard "/admin$i/*"'
action = "block"
[[zones.waf.rules]]
id = "api-post-$i"
expression = 'http.request.method eq "POST" and starts_with(http.request.uri.path, "/api/v$i/")'
action = "block"
[[zones.waf.rules]]
id = "scanner-$i"
expression = 'lower(http.user_agent) contains "scanner$i"'
action = "block"
[[zones.waf.rules]]
id = "sqli-$i"
expression = 'url_decode(http.request.uri.query) matches "(?i)union\\\\s+select$i"'
action = "block"
[[zones.waf.rules]]
id = "net-$i"
expression = 'ip.src in {10.$i.0.0/16 192.0.2.$i} or any(http.request.headers["x-attack-$i"][*] eq "1")'
action = "block"
CONF
  done
  for c in 'ip.src' 'http.host' 'http.request.uri.path' 'header:user-agent' 'cookie:session'; do
    cat <<CONF
[[zones.rate_limits]]
id = "rl-${c//[^a-z]/-}"
expression = 'starts_with(http.request.uri.path, "/")'
characteristics = ["$c"]
period = "10s"
requests_per_period = 1000000000
action = "block"
mitigation_timeout = "10s"
CONF
  done
  zone managed
  printf '[zones.waf.managed]\nenabled = true\n'
} >"$WORK/edgenet.toml"
"$EDGENET" check --config "$WORK/edgenet.toml" >&2

taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
taskset -c 0 "$EDGENET" pop --config "$WORK/edgenet.toml" 2>"$WORK/edgenet.err" &
PIDS+=($!)
wait_port "$ORIGIN"
wait_port "$E_HTTP"

PATH_Q="/products/shoes/42?color=red&size=9"
UA="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
for z in plain rules managed; do
  got=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $z.test" -A "$UA" "http://127.0.0.1:$E_HTTP$PATH_Q")
  [ "$got" = 200 ] || { echo "$z.test answered $got" >&2; exit 1; }
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s -H "Host: $z.test" -H "User-Agent: $UA" "http://127.0.0.1:$E_HTTP$PATH_Q" >/dev/null
done

if [ -n "${HOLD:-}" ]; then
  echo "edgenet pid ${PIDS[1]} http $E_HTTP (Host: plain.test | rules.test | managed.test); work dir $WORK" >&2
  sleep infinity &
  wait $!
fi

declare -A RPS
for r in $(seq "$REPEATS"); do
  for z in plain rules managed; do
    read -r rps _ < <(run_wrk "$CONNS" -H "Host: $z.test" -H "User-Agent: $UA" "http://127.0.0.1:$E_HTTP$PATH_Q")
    RPS[$z]+="$rps "
    printf '%-8s run %d: %9.0f req/s\n' "$z" "$r" "$rps" >&2
  done
done
med() { tr ' ' '\n' <<<"${RPS[$1]}" | grep . | median; }
P=$(med plain) R=$(med rules) M=$(med managed)

CORPUS=$(python3 bench/waf_corpus.py "$E_HTTP" managed.test crates/edgenet-rules/corpus)
echo "corpus through managed.test: $CORPUS" >&2

cargo bench -q -p edgenet-rules --bench rules >&2
est() { python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["median"]["point_estimate"]))' "target/criterion/$1/new/estimates.json"; }
EVAL_NS=$(est "100 rules, no match")
MANAGED_NS=$(est "managed rule set, no match")

cat <<REPORT >&2
medians of $REPEATS runs of ${DURATION}s, $CONNS connections, one thread:
  no rules                         $P req/s
  100 WAF + 5 rate-limit rules     $R req/s  ratio $(ratio "$R" "$P")
  managed rule set                 $M req/s  ratio $(ratio "$M" "$P")
  rule evaluation in-process: 100 rules ${EVAL_NS} ns, managed rule set ${MANAGED_NS} ns
REPORT
python3 - "$EVAL_NS" "$(ratio "$R" "$P")" "$(ratio "$M" "$P")" "$MANAGED_NS" "$CORPUS" <<'PY'
import json, sys
corpus = json.loads(sys.argv[5])
print(json.dumps({
    "rule_eval_ns_100_rules": int(sys.argv[1]),
    "throughput_with_rules_ratio": float(sys.argv[2]),
    "waf_detection_rate": corpus["waf_detection_rate"],
    "waf_false_positive_rate": corpus["waf_false_positive_rate"],
    "throughput_with_managed_rules_ratio": float(sys.argv[3]),
    "managed_rules_eval_ns": int(sys.argv[4]),
}))
PY
