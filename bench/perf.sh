#!/usr/bin/env bash
# bench/perf.sh: where a forwarded request's real CPU time goes, kernel included, sampled by
# `perf record` on the gateway while wrk loads it. callgrind (bench/callgrind.sh) counts
# instructions exactly but sees neither the kernel, nor cache misses, nor the CPU's SHA
# extensions (valgrind hides them); this is the native view beside it. It PRINTS figures and
# asserts nothing.
#
#   bench/perf.sh no-store        # task list, Cache-Control: no-store (forwarded, normalized)
#   bench/perf.sh get             # an ordinary GET (a file call: streamed, not normalized)
#   DURATION=5 TOP=60 bench/perf.sh no-store
#
# The upstream nginx and the gateway (release build, RUST_LOG=warn) share CPU 0, wrk runs on
# CPU 1 (as in bench/compare.sh); perf samples the gateway for DURATION seconds of one wrk run.
# It prints requests/s, the kernel's and user space's shares, and the TOP symbols. Needs perf,
# nginx, wrk and curl (apt-get install -y linux-perf nginx wrk curl). Binds 127.0.0.1 only;
# stops what it starts.
set -euo pipefail

KIND=${1:-no-store}
DURATION=${DURATION:-5}
TOP=${TOP:-40}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEWAY=${GATEWAY_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/koodrive-gateway}
# shellcheck source=bench/common.sh
source "$REPO/bench/common.sh"

die() { printf 'perf.sh: %s\n' "$*" >&2; exit 1; }
for tool in perf nginx wrk curl taskset; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y linux-perf nginx wrk curl)"
done
[[ -x $GATEWAY ]] || die "no gateway at $GATEWAY (cargo build --release --locked)"
case $KIND in
    no-store | no-cache | get) ;;
    *) die "unknown kind $KIND (no-store, no-cache, get)" ;;
esac

bench_work perf
start_upstream "$WORK/nginx" 0

start_pinned_gateway 0

URL="http://127.0.0.1:$GW_PORT$QUERY" extra=(-H "Cache-Control: $KIND")
if [[ $KIND == get ]]; then
    URL="http://127.0.0.1:$GW_PORT$FILE_GET?fileId=1486254586942472064" extra=()
fi
# Warm-up: the upstream connection pool, the allocator, the lazy statics.
taskset -c 1 wrk -t1 -c64 -d2s "${extra[@]}" "$URL" >/dev/null
# wrk runs a second longer than perf samples, so every sample is under load.
perf record -F 2000 -g -p "$GW_PID" -o "$WORK/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
PERF_PID=$!
taskset -c 1 wrk -t1 -c64 -d"$((DURATION + 1))s" "${extra[@]}" "$URL" >"$WORK/wrk.txt"
wait "$PERF_PID" || true

echo "kind: $KIND; $(grep Requests/sec "$WORK/wrk.txt") (the gateway and its upstream sharing CPU 0)"
grep -e 'Non-2xx' -e 'Socket errors' "$WORK/wrk.txt" || true
perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' >"$WORK/symbols.txt" || true
awk '{p = $1; sub("%", "", p); if ($2 == "[k]") k += p; else u += p}
     END {printf "kernel %.1f%%, user space %.1f%% of the gateway'"'"'s samples\n\n", k, u}' \
    "$WORK/symbols.txt"
echo "the $TOP symbols with the most samples ([k] kernel, [.] user space):"
head -"$TOP" "$WORK/symbols.txt" | cut -c1-150
