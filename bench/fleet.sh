#!/usr/bin/env bash
# bench/fleet.sh: fleet mode's figures (examples/fleet/ does the work, in one process: a mock
# KooDrive and gateways on 127.0.0.1, and a real redis-server child on a free loopback port, no
# persistence). It prints
#   1. invalidation visibility: p50/p99/max from a write's answer on sidecar A to the first
#      post-write page on sidecar B, Redis healthy (goal: p99 <= 50 ms);
#   2. KooDrive calls per page per TTL across 3 sidecars under a hot-key load (goal: 1);
#   3. first-tier hit throughput with fleet mode on vs off, alternated in the same run (goal >= 0.95x);
#   4. a shared-tier hit's latency over a first-tier hit's, p50 (goal <= 150 us);
#   5. each Redis fault (killed, SIGSTOP/SIGCONT, restarted empty, wrong password, out of
#      memory, slow) under a mixed load on 2 sidecars: client errors (goal 0), p99 and worst
#      latency, and how long fleet mode took to resume.
#
#   bench/fleet.sh                               # 200 samples, 16 clients, 5 s phases, ttl 1 s
#   SAMPLES=50 SECONDS_EACH=2 bench/fleet.sh     # quicker
#   PROFILE=dev bench/fleet.sh                   # the debug build (quicker to build, slower to run)
#
# Needs redis-server on PATH (Debian/Ubuntu: apt-get install -y redis-server; this script
# installs it when missing and it runs as root). Bounded: the whole run is killed after LIMIT
# seconds (default 300); every request has its own 10 s limit inside.
set -euo pipefail

SAMPLES=${SAMPLES:-200}
WORKERS=${WORKERS:-16}
SECONDS_EACH=${SECONDS_EACH:-5}
TTL_MS=${TTL_MS:-1000}
FAULT_SECONDS=${FAULT_SECONDS:-3}
LIMIT=${LIMIT:-300}

# shellcheck source=bench/examples.sh
source "$(dirname "${BASH_SOURCE[0]}")/examples.sh"
need_redis_server bench/fleet.sh
cargo build --locked --profile "$PROFILE" --example fleet
echo "profile: $PROFILE; $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f1-3)"
timeout --signal=TERM --kill-after=5 "$LIMIT" "$CARGO_TARGET_DIR/$DIR/examples/fleet" \
    --samples "$SAMPLES" --workers "$WORKERS" --seconds "$SECONDS_EACH" --ttl-ms "$TTL_MS" \
    --fault-seconds "$FAULT_SECONDS"
