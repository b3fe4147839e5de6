#!/usr/bin/env bash
# bench/callgrind.sh: instructions per request through the gateway, counted by callgrind, and
# where they go by layer. Instruction counts barely move with other load on the machine, unlike
# requests/s, so this is what guides work on a shared machine. It PRINTS figures and asserts
# nothing.
#
#   bench/callgrind.sh no-store       # task list, Cache-Control: no-store (forwarded, normalized)
#   bench/callgrind.sh no-cache       # task list, Cache-Control: no-cache (forwarded, stored)
#   bench/callgrind.sh hit            # task list, cache hit
#   bench/callgrind.sh get            # an ordinary GET (a file call: streamed, not normalized)
#   bench/callgrind.sh post           # an ordinary POST (the same, with a small JSON body)
#   DURATION=5s CONNECTIONS=64 KEEP_WORK=1 bench/callgrind.sh no-store
#   FRONT=floor bench/callgrind.sh get          # the forwarding floor instead of the gateway
#   FRONT=floor-headers bench/callgrind.sh get  # the floor with --headers (see forward_floor.rs)
#
# The gateway (release build, RUST_LOG=warn) runs under valgrind with instrumentation off; after
# three warm-up requests it is switched on for one wrk run (DURATION, CONNECTIONS), then off,
# and the instructions counted are divided by the requests wrk made. The upstream is nginx
# serving the same ~2 KB page as bench/compare.sh. Needs valgrind, nginx, wrk, curl and python3
# (apt-get install -y valgrind nginx wrk curl python3). Binds 127.0.0.1 only; stops what it
# starts.
set -euo pipefail

KIND=${1:-no-store}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEWAY=${GATEWAY_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/koodrive-gateway}
FORWARD_FLOOR=${CARGO_TARGET_DIR:-$REPO/target}/release/examples/forward_floor
FRONT=${FRONT:-gateway}
# shellcheck source=bench/common.sh
source "$REPO/bench/common.sh"

die() { printf 'callgrind.sh: %s\n' "$*" >&2; exit 1; }
for tool in valgrind callgrind_control callgrind_annotate nginx wrk curl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y valgrind nginx wrk curl python3)"
done
case $FRONT in
    gateway)
        [[ -x $GATEWAY ]] || die "no gateway at $GATEWAY (cargo build --release --locked)"
        ;;
    floor | floor-headers)
        [[ -x $FORWARD_FLOOR ]] ||
            die "no forwarding floor at $FORWARD_FLOOR (cargo build --release --locked --example forward_floor)"
        [[ $KIND == get || $KIND == post ]] || die "the floor forwards only: get or post, not $KIND"
        ;;
    *) die "unknown FRONT $FRONT (gateway, floor, floor-headers)" ;;
esac

# The page and the POST's body, as bench/compare.sh writes them.
bench_work callgrind
start_upstream "$WORK/nginx"

free_port GW_PORT
free_port ADMIN_PORT
if [[ $FRONT == gateway ]]; then
    gateway_config "$WORK/gateway.toml" "$GW_PORT" "$ADMIN_PORT" "http://127.0.0.1:$UPSTREAM_PORT" 30s
    command=("$GATEWAY" --config "$WORK/gateway.toml")
    ready="http://127.0.0.1:$ADMIN_PORT/readyz"
else
    command=("$FORWARD_FLOOR" --listen "127.0.0.1:$GW_PORT" --upstream "127.0.0.1:$UPSTREAM_PORT")
    [[ $FRONT == floor ]] || command+=(--headers)
    ready="http://127.0.0.1:$GW_PORT$FILE_GET?fileId=1486254586942472064"
fi
RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$WORK/callgrind.out" "${command[@]}" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_http "$ready" 600

URL="http://127.0.0.1:$GW_PORT$QUERY" extra=()
case $KIND in
    no-store | no-cache) extra=(-H "Cache-Control: $KIND") ;;
    hit) ;;
    get) URL="http://127.0.0.1:$GW_PORT$FILE_GET?fileId=1486254586942472064" ;;
    post) URL="http://127.0.0.1:$GW_PORT$FILE_POST" extra=(-s "$WORK/post.lua") ;;
    *) die "unknown kind $KIND (no-store, no-cache, hit, get, post)" ;;
esac
# Warm-up: the upstream connection pool, the cache for a hit, the lazy statics.
for ((i = 0; i < 3; i++)); do
    case $KIND in
        no-store | no-cache) curl -fsS -o /dev/null -H "Cache-Control: $KIND" "$URL" ;;
        post) curl -fsS -o /dev/null -X POST --data '{}' "$URL" ;;
        *) curl -fsS -o /dev/null "$URL" ;;
    esac
done

callgrind_control -i on "$GW_PID" >/dev/null 2>&1
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${extra[@]}" "$URL" >"$WORK/wrk.txt"
callgrind_control -i off "$GW_PID" >/dev/null 2>&1
kill -TERM "$GW_PID"
wait "$GW_PID" 2>/dev/null || true

requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
grep -e 'Non-2xx' -e 'Socket errors' "$WORK/wrk.txt" || true
out=$(ls "$WORK"/callgrind.out* | head -1)
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}')
echo "front: $FRONT; kind: $KIND; wrk -c$CONNECTIONS -d$DURATION: $requests requests under callgrind"
echo "instructions per request: $((total / requests))"
echo
echo "inclusive instructions per request, largest first (functions over 0.5%):"
callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null |
    awk -v n="$requests" -v t="$total" '
        /^ *[0-9,]+ +\([ 0-9.]+%\) +/ {
            ir = $1; gsub(",", "", ir); ir += 0
            if (ir < t * 0.005) next
            name = $0; sub(/^ *[0-9,]+ +\([ 0-9.]+%\) +/, "", name); sub(/ \[.*\]$/, "", name)
            if (++shown <= top) printf "%10.0f  %s\n", ir / n, substr(name, 1, 150)
        }' top="${TOP:-80}"
