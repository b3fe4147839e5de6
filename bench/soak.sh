#!/usr/bin/env bash
# bench/soak.sh [MINUTES]: a mixed load against the release gateway for MINUTES (default 10), with
# faults injected between it and the demo mock KooDrive (examples/soak/ does the work). Not in CI.
# It prints a progress line per minute and a summary: requests, errors by kind, unanswered,
# Cache-Status classes, upstream calls per client request, p50/p99, gateway RSS start/end.
#
#   bench/soak.sh              # 10 minutes
#   bench/soak.sh 1            # a quick check
#   WORKERS=16 FAULT_RATE=0.05 bench/soak.sh 5
#   KEEP_WORK=1 bench/soak.sh  # keep the temp dir (gateway config and its warn-level log)
#
# Everything binds 127.0.0.1 only; the gateway is a child of the soak process, and every process
# started here is stopped on exit.
set -euo pipefail

MINUTES=${1:-10}
WORKERS=${WORKERS:-32}
FAULT_RATE=${FAULT_RATE:-0.02}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
GATEWAY=$CARGO_TARGET_DIR/release/koodrive-gateway
SOAK_BIN=$CARGO_TARGET_DIR/release/examples/soak
WORK=$(mktemp -d /tmp/koodrive-soak.XXXXXX)
SOAK_PID=

cleanup() {
    local i
    if [[ -n $SOAK_PID ]] && kill -0 "$SOAK_PID" 2>/dev/null; then
        kill -TERM "$SOAK_PID" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$SOAK_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SOAK_PID" 2>/dev/null || true
    fi
    # The gateway is the soak's child (killed when the soak exits); make sure of it.
    if [[ -f $WORK/gateway.pid ]]; then
        kill -KILL "$(cat "$WORK/gateway.pid")" 2>/dev/null || true
    fi
    if [[ -n ${KEEP_WORK:-} ]]; then
        echo "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building (cargo build --release --locked)"
(cd "$REPO" && cargo build --release --locked --quiet \
    && cargo build --release --locked --quiet --example soak)

echo "== soak: $MINUTES min, $WORKERS workers, fault rate $FAULT_RATE ($(nproc) cores, $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$SOAK_BIN" --gateway "$GATEWAY" --work-dir "$WORK" --minutes "$MINUTES" \
    --workers "$WORKERS" --fault-rate "$FAULT_RATE" &
SOAK_PID=$!
wait "$SOAK_PID"
