#!/usr/bin/env bash
# Anycast convergence: the namespace rig (tests/anycast/rig.py) with a BIRD router and two PoPs,
# run once with edgenet as the PoP speaker and once with BIRD as the PoP speaker. For each event
# it measures the time to the router's kernel route change (ip monitor in the router namespace)
# and to the client's first answer from the next PoP (a probe opening a connection every ~2 ms):
#   drain            POST /anycast/drain (edgenet: GRACEFUL_SHUTDOWN, honoured by the router's
#                    import filter) / `birdc disable` of the static routes (BIRD)
#   bfd_failover     all packets dropped in the PoP namespace (nftables); BFD 10 ms x 3
#   service_failure  the PoP's origin health check starts failing (edgenet, checks every 10 ms)
# RUNS=N repeats each event (default 5) and reports medians. Needs root. About 3 minutes.
# The last line is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need bird:bird2 nft:nftables curl:curl
cargo build --release -q --bin edgenet
python3 crates/edgenet/tests/anycast/rig.py bench --edgenet target/release/edgenet \
  --runs "${RUNS:-5}" | tee "$WORK/out.txt"
