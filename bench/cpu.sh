#!/usr/bin/env bash
# bench/cpu.sh: the CPU a forwarded request costs each front, split into user space and the
# kernel, from the front process's own utime and stime (/proc/PID/stat) over one wrk run: the
# gateway, nginx proxy_pass, and the forwarding floor (examples/forward_floor.rs: hyper's server
# and client with nothing between them). NGINX_HEADERS=1 adds two fronts doing the header work no
# KooDrive gateway can leave out (trace id up and back, the authentication headers, hop-by-hop
# stripping): nginx proxy_pass with NGINX_GATEWAY_HEADERS (bench/common.sh) and the floor with
# --headers. A reference for what that work costs each. It PRINTS figures and asserts nothing.
#
#   bench/cpu.sh get                  # an ordinary GET (a file call: streamed, not normalized)
#   bench/cpu.sh no-store             # task list, Cache-Control: no-store (forwarded, normalized)
#   bench/cpu.sh post                 # an ordinary POST (the same, with a small JSON body)
#   DURATION=5s ROUNDS=3 bench/cpu.sh get
#
# An upstream nginx serving the same ~2 KB page as bench/compare.sh and the three fronts are all
# pinned to SERVER_CPU (0), wrk -t1 -c64 to WRK_CPU (1); the fronts take turns, ROUNDS times. The
# kernel's share tells whether a front makes the kernel work harder (more system calls, more
# wakeups); user space is what its own code costs. Needs nginx, wrk and curl (apt-get install -y
# nginx wrk curl). Binds 127.0.0.1 only; stops what it starts.
set -euo pipefail

KIND=${1:-get}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
GATEWAY=${GATEWAY_BIN:-$TARGET/release/koodrive-gateway}
FORWARD_FLOOR=$TARGET/release/examples/forward_floor
# shellcheck source=bench/common.sh
source "$REPO/bench/common.sh"

die() { printf 'cpu.sh: %s\n' "$*" >&2; exit 1; }
for tool in nginx wrk curl taskset; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y nginx wrk curl)"
done
[[ -x $GATEWAY ]] || die "no gateway at $GATEWAY (cargo build --release --locked)"
[[ -x $FORWARD_FLOOR ]] ||
    die "no forwarding floor at $FORWARD_FLOOR (cargo build --release --locked --example forward_floor)"
case $KIND in
    no-store | get | post) ;;
    *) die "unknown kind $KIND (no-store, get, post)" ;;
esac
TICK=$(getconf CLK_TCK)

bench_work cpu
start_upstream "$WORK/upstream" "$SERVER_CPU"
free_port PASS_PORT
pass_nginx_conf "$WORK/pass" "$PASS_PORT" "$UPSTREAM_PORT"
taskset -c "$SERVER_CPU" nginx -p "$WORK/pass" -c "$WORK/pass/nginx.conf" \
    -g 'daemon off; master_process on;' &
PASS_MASTER=$!
PIDS+=("$PASS_MASTER")
wait_http "http://127.0.0.1:$PASS_PORT$LIST"
if [[ -n ${NGINX_HEADERS:-} ]]; then
    free_port HDR_PORT
    pass_nginx_conf "$WORK/headers" "$HDR_PORT" "$UPSTREAM_PORT" "$NGINX_GATEWAY_HEADERS"
    taskset -c "$SERVER_CPU" nginx -p "$WORK/headers" -c "$WORK/headers/nginx.conf" \
        -g 'daemon off; master_process on;' &
    HDR_MASTER=$!
    PIDS+=("$HDR_MASTER")
    wait_http "http://127.0.0.1:$HDR_PORT$LIST"
fi

start_pinned_gateway "$SERVER_CPU"

free_port FLOOR_PORT
taskset -c "$SERVER_CPU" "$FORWARD_FLOOR" --listen "127.0.0.1:$FLOOR_PORT" \
    --upstream "127.0.0.1:$UPSTREAM_PORT" --lifetime-secs 3600 &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
wait_http "http://127.0.0.1:$FLOOR_PORT$LIST"
if [[ -n ${NGINX_HEADERS:-} ]]; then
    free_port FLOOR_HDR_PORT
    taskset -c "$SERVER_CPU" "$FORWARD_FLOOR" --listen "127.0.0.1:$FLOOR_HDR_PORT" \
        --upstream "127.0.0.1:$UPSTREAM_PORT" --lifetime-secs 3600 --headers &
    FLOOR_HDR_PID=$!
    PIDS+=("$FLOOR_HDR_PID")
    wait_http "http://127.0.0.1:$FLOOR_HDR_PORT$LIST"
    check_floor_headers "$FLOOR_HDR_PORT"
fi

# nginx's worker serves the connections, not its master.
PASS_WORKER=$(pgrep -P "$PASS_MASTER" | head -1)
[[ -n $PASS_WORKER ]] || die "no nginx worker under $PASS_MASTER"
if [[ -n ${NGINX_HEADERS:-} ]]; then
    HDR_WORKER=$(pgrep -P "$HDR_MASTER" | head -1)
    [[ -n $HDR_WORKER ]] || die "no nginx worker under $HDR_MASTER"
fi

# User and system clock ticks a process has used so far.
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

# One front, one run: its name, pid and port.
measure() {
    local name=$1 pid=$2 port=$3 url extra=() u0 s0 u1 s1 requests rps
    request_of "$KIND" "$port"
    url=$URL extra=("${EXTRA[@]}")
    # Warm-up: upstream connections open.
    taskset -c "$WRK_CPU" wrk -t1 -c64 -d1s "${extra[@]}" "$url" >/dev/null
    read -r u0 s0 < <(ticks "$pid")
    taskset -c "$WRK_CPU" wrk -t1 -c64 -d"$DURATION" "${extra[@]}" "$url" >"$WORK/$name.wrk"
    read -r u1 s1 < <(ticks "$pid")
    requests=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$WORK/$name.wrk")
    grep -e 'Non-2xx' -e 'Socket errors' "$WORK/$name.wrk" || true
    awk -v n="$requests" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$TICK" -v name="$name" -v rps="$rps" '
        BEGIN {
            us = 1e6 / hz / n
            printf "  %-9s %7d req/s   user %5.2f us   kernel %5.2f us   total %5.2f us per request\n",
                name, rps, u * us, s * us, (u + s) * us
        }'
}

echo "kind: $KIND; wrk -t1 -c64 -d$DURATION on CPU $WRK_CPU; the fronts and their upstream on CPU $SERVER_CPU"
for ((round = 1; round <= ROUNDS; round++)); do
    echo "round $round of $ROUNDS"
    measure gateway "$GW_PID" "$GW_PORT"
    measure nginx "$PASS_WORKER" "$PASS_PORT"
    if [[ -n ${NGINX_HEADERS:-} ]]; then
        measure nginx+hdr "$HDR_WORKER" "$HDR_PORT"
    fi
    measure floor "$FLOOR_PID" "$FLOOR_PORT"
    if [[ -n ${NGINX_HEADERS:-} ]]; then
        measure floor+hdr "$FLOOR_HDR_PID" "$FLOOR_HDR_PORT"
    fi
done
