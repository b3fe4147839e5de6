#!/usr/bin/env bash
# bench/quota.sh: the upstream budget's figures for one sidecar (examples/quota.rs does the work,
# in one process: a mock KooDrive and gateways, all on 127.0.0.1 only). It prints
#   - the KooDrive calls per second the mock saw against the budget, under distinct misses,
#     and the busiest one-second window against rps + burst;
#   - the extra latency of a request delayed for budget (medians);
#   - hit throughput with the budget on and off, in the same run, alternated;
#   - then (FLEET=1, the default; needs redis-server) the fleet figures from examples/quota_fleet.rs:
#     three sidecars sharing one budget in a real redis-server, KooDrive calls per second against
#     it, and again with Redis killed (each sidecar on its local share).
#
#   bench/quota.sh                          # rps 50, burst 10, 32 clients, 5 s phases
#   RPS=20 BURST=5 SECONDS_EACH=3 bench/quota.sh
#   PROFILE=dev bench/quota.sh              # the debug build (quicker to build, slower to run)
#
# FLEET=1 needs redis-server on PATH (this script installs it from Debian's packages when missing
# and it runs as root).
#
# Bounded: the whole run is killed after LIMIT seconds (default 300); every request has its own
# 10 s limit inside.
set -euo pipefail

RPS=${RPS:-50}
BURST=${BURST:-10}
WORKERS=${WORKERS:-32}
SECONDS_EACH=${SECONDS_EACH:-5}
SAMPLES=${SAMPLES:-15}
LIMIT=${LIMIT:-300}
FLEET=${FLEET:-1}
FLEET_WORKERS=${FLEET_WORKERS:-16}

# shellcheck source=bench/examples.sh
source "$(dirname "${BASH_SOURCE[0]}")/examples.sh"
[ "$FLEET" != 1 ] || need_redis_server "bench/quota.sh (FLEET=1; FLEET=0 runs without it)"
cargo build --locked --profile "$PROFILE" --example quota --example quota_fleet
echo "profile: $PROFILE; $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
timeout --signal=TERM --kill-after=5 "$LIMIT" "$CARGO_TARGET_DIR/$DIR/examples/quota" \
    --rps "$RPS" --burst "$BURST" --workers "$WORKERS" --seconds "$SECONDS_EACH" --samples "$SAMPLES"
if [ "$FLEET" = 1 ]; then
    timeout --signal=TERM --kill-after=5 "$LIMIT" "$CARGO_TARGET_DIR/$DIR/examples/quota_fleet" \
        --rps "$RPS" --burst "$BURST" --workers "$FLEET_WORKERS" --seconds "$SECONDS_EACH"
fi
