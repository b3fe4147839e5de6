#!/usr/bin/env bash
# bench/syscalls.sh: system calls and context switches per forwarded request, the gateway against
# nginx proxy_pass, under the same wrk load: what callgrind (bench/callgrind.sh) does not see. It
# PRINTS figures and asserts nothing.
#
#   bench/syscalls.sh no-store        # task list, Cache-Control: no-store (forwarded, normalized)
#   bench/syscalls.sh get             # an ordinary GET (a file call: streamed, not normalized)
#   bench/syscalls.sh post            # an ordinary POST (the same, with a small JSON body)
#   DURATION=5s CONNECTIONS=1 bench/syscalls.sh get
#
# An upstream nginx serving the same ~2 KB page as bench/compare.sh, the gateway (release build,
# RUST_LOG=warn) and an nginx proxy_pass in front of the same upstream, all pinned to SERVER_CPU
# (0), wrk -t1 on WRK_CPU (1). For each front in turn: `perf trace -s` attached to it for one wrk
# run counts its system calls by name, and /proc/PID/task/*/status its context switches (all
# threads); both are divided by the requests wrk made. Needs perf (linux-perf), nginx, wrk, curl
# and python3. Binds 127.0.0.1 only; stops what it starts.
set -euo pipefail

KIND=${1:-no-store}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEWAY=${GATEWAY_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/koodrive-gateway}
# shellcheck source=bench/common.sh
source "$REPO/bench/common.sh"

die() { printf 'syscalls.sh: %s\n' "$*" >&2; exit 1; }
for tool in perf nginx wrk curl python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y linux-perf nginx wrk curl python3)"
done
[[ -x $GATEWAY ]] || die "no gateway at $GATEWAY (cargo build --release --locked)"

bench_work syscalls

free_port UPSTREAM_PORT
free_port PASS_PORT
upstream_nginx_conf "$WORK/upstream" "$UPSTREAM_PORT" "access_log off;"
pass_nginx_conf "$WORK/pass" "$PASS_PORT" "$UPSTREAM_PORT"
for name in upstream pass; do
    taskset -c "$SERVER_CPU" nginx -p "$WORK/$name" -c "$WORK/$name/nginx.conf" \
        -g 'daemon off; master_process on;' &
    PIDS+=($!)
done
wait_http "http://127.0.0.1:$UPSTREAM_PORT$LIST"
wait_http "http://127.0.0.1:$PASS_PORT$LIST"

start_pinned_gateway "$SERVER_CPU"

# The process that serves a front's connections: nginx's worker, the gateway itself.
worker_of() { pgrep -P "$1" | head -1; }
PASS_WORKER=$(worker_of "${PIDS[1]}")
[[ -n $PASS_WORKER ]] || die "no nginx worker under ${PIDS[1]}"

ctxt() {
    awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2}
        END {print v, n}' /proc/"$1"/task/*/status
}

# Measures one front: name, pid, port.
measure() {
    local name=$1 pid=$2 port=$3 url extra=() before after requests trace
    request_of "$KIND" "$port"
    url=$URL extra=("${EXTRA[@]}")
    # Warm-up: upstream connections open.
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d1s "${extra[@]}" "$url" >/dev/null
    trace=$WORK/$name.trace
    perf trace -s -p "$pid" -o "$trace" &
    local perf_pid=$!
    sleep 1 # perf attaches
    read -r -a before < <(ctxt "$pid")
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${extra[@]}" "$url" >"$WORK/$name.wrk"
    read -r -a after < <(ctxt "$pid")
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
    requests=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
    grep -e 'Non-2xx' -e 'Socket errors' "$WORK/$name.wrk" || true
    printf '%s: %s requests (wrk -c%s -d%s, %s)\n' "$name" "$requests" "$CONNECTIONS" "$DURATION" "$KIND"
    printf '  context switches per request: voluntary %.3f, involuntary %.3f\n' \
        "$(bc -l <<<"(${after[0]} - ${before[0]}) / $requests")" \
        "$(bc -l <<<"(${after[1]} - ${before[1]}) / $requests")"
    # perf trace -s: per thread, rows "syscall calls errors total min avg max stddev".
    awk -v n="$requests" '
        $2 ~ /^[0-9]+$/ && $1 ~ /^[a-z_0-9]+$/ && NF >= 8 { calls[$1] += $2; errors[$1] += $3; all += $2 }
        END {
            printf "  system calls per request: %.2f\n", all / n
            for (s in calls) printf "    %-16s %6.3f  (errors %.3f)\n", s, calls[s] / n, errors[s] / n
        }' "$trace" | sort -k2 -rn -t$'\t'
}

measure gateway "$GW_PID" "$GW_PORT"
measure nginx "$PASS_WORKER" "$PASS_PORT"
