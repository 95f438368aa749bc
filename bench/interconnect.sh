#!/usr/bin/env bash
# Interconnects on the PoP: the namespace rig of crates/edgenet/tests/interconnect/rig.py (the
# control plane and a PoP in one namespace, a customer's BIRD 2 in another, a veth between).
#   provision_to_established_ms      POST of a CNI to BIRD's session Established (the stream, the
#                                    PoP's netlink configuration, the connection)
#   link_down_to_unhealthy_ms        `ip link set eth0 down` on the customer's side to the API's
#                                    status `unhealthy` (netlink event, report, status)
#   link_down_to_routes_withdrawn_ms the same cut to the peering route leaving the kernel table
#   routes_accepted_per_s            ROUTES (default 100,000) /24s the CNI's filter accepts,
#                                    preloaded as disabled BIRD static routes; enabling them is
#                                    time zero, all of them in kernel table 200 the end
#   routes_accepted_per_s_bird       the same with BIRD as the PoP's speaker (kernel protocol to
#                                    the same table), in the same run
# Timers are pinned and printed (BIRD's connect delay and retry 1 s; edgenet's connect_retry 1 s).
# RUNS=N CNIs for the first three (default 5, medians). Needs root. About 2 minutes.
# The last line is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need bird:bird2 curl:curl
cargo build --release -q --bin edgenet
python3 crates/edgenet/tests/interconnect/rig.py bench --edgenet target/release/edgenet \
  --runs "${RUNS:-5}" --routes "${ROUTES:-100000}" | tee "$WORK/out.txt"
grep '^{' "$WORK/out.txt" | tail -1
