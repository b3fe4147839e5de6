#!/usr/bin/env bash
# bench/compare.sh: koodrive-gateway against nginx, cache hits and forwarded requests, side by
# side over loopback, on the machine it runs on. It PRINTS figures; it asserts nothing and exits 0
# whatever the numbers are (a failure to set up the bench is what makes it exit non-zero).
#
#   bench/compare.sh                       # 10 s per load run
#   DURATION=3s bench/compare.sh           # quicker
#   KEEP_WORK=1 bench/compare.sh           # keep the temp dir (configs, logs, wrk output)
#   ROUNDS=3 bench/compare.sh              # more interleaved wrk rounds (best one reported)
#   FORWARDED=0 bench/compare.sh           # cache hits only (no forwarded configurations)
#   LATENCY_DURATION=5s bench/compare.sh   # each one-connection latency run (DURATION if unset)
#
# What it measures (the issue's targets are printed next to the figures):
#   1. cache hits: wrk -t1 -c64 --latency against nginx proxy_cache and against the gateway, both
#      serving the same ~2 KB task-list page from their cache, each server pinned to one core
#      (SERVER_CPU) and wrk to the other (LOAD_CPU), one after the other (the order rotating
#      from round to round); requests/s, p50, p99
#      and the ratio gateway/nginx (best round against best round, and round by round with its
#      median). The gateway is measured with RUST_LOG=warn (no access log)
#      and again with RUST_LOG=info (its default: one JSON access-log line per request).
#      The same rounds measure a floor (examples/floor.rs): bare hyper on the same core answering
#      every request with the gateway's own hit, headers and body, captured with curl, and
#      nothing else (its connections written the gateway's way, src/coalesce.rs): what a hit can
#      cost at best with hyper and tokio on this machine.
#   2. forwarded requests, in the same rounds as the hits (FORWARDED=1, the default): the same
#      page through the gateway with `Cache-Control: no-store` (forwarded, normalized, not stored)
#      against nginx `proxy_pass` with no cache, and with `Cache-Control: no-cache` (forwarded,
#      normalized, stored) against nginx `proxy_cache` with `proxy_cache_bypass` (forwarded,
#      stored); and an ordinary GET and POST (a file path no cache or rule applies to: streamed
#      both ways) through both. Each at CONNECTIONS (req/s, ratio gateway/nginx) and at one
#      connection (the p50 each adds over the upstream's own, measured in the same round). The
#      upstream nginx is pinned to SERVER_CPU too, so a forwarded request's whole cost is on
#      that core, as for nginx. The same rounds measure a forwarding floor
#      (examples/forward_floor.rs): hyper's server and client with nothing between them, the
#      file GET through it; what a forwarded request costs at best with hyper and tokio here.
#      And the same floor with --headers ("floor+hdr"): only the header work no KooDrive gateway
#      can leave out (the trace id up and back, the authentication headers, hop-by-hop
#      stripping), done with the gateway's own functions.
#   3. collapsing: 1,000 concurrent identical misses (examples/burst.rs) and how many reached the
#      upstream.
#   4. memory: VmRSS of a fresh gateway before and after caching 10,000 distinct ~2 KB pages.
#
# With STALLS=1, examples/stalls.rs watches both CPUs during every load run as a real-time task
# (chrt -f) and reports how often each was taken away from this machine for 1 ms or more (a
# virtual machine's CPUs can be). Such a stall holds up every request in flight, so a p99 is read
# beside them. The watch wakes every millisecond and costs each CPU about 2%, the same for every
# server; it needs real-time priority (root) and is off by default.
#
# Needs root (or nginx and wrk already installed) for apt-get; everything binds 127.0.0.1 only;
# every process it starts is stopped on exit.
set -euo pipefail

DURATION=${DURATION:-10s}     # each wrk run
CONNECTIONS=${CONNECTIONS:-64}
BURST=${BURST:-1000}          # concurrent identical misses
FILL=${FILL:-10000}           # distinct pages cached for the memory figure
SERVER_CPU=${SERVER_CPU:-0}   # the server under test
LOAD_CPU=${LOAD_CPU:-1}       # wrk and burst
ROUNDS=${ROUNDS:-2}           # interleaved wrk rounds per server; the best round is reported
FORWARDED=${FORWARDED:-1}     # 1: the forwarded configurations too, in the same rounds
LATENCY_DURATION=${LATENCY_DURATION:-$DURATION} # each one-connection run (forwarded latency)
STALLS=${STALLS:-0}           # 1: watch both CPUs for host stalls during each wrk run

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
# GATEWAY_BIN measures another build (e.g. an older commit) with this script; it is not rebuilt.
GATEWAY=${GATEWAY_BIN:-$CARGO_TARGET_DIR/release/koodrive-gateway}
BURST_BIN=$CARGO_TARGET_DIR/release/examples/burst
FLOOR_BIN=$CARGO_TARGET_DIR/release/examples/floor
FORWARD_FLOOR_BIN=$CARGO_TARGET_DIR/release/examples/forward_floor
STALLS_BIN=$CARGO_TARGET_DIR/release/examples/stalls
LIST=/koodrive/ose/v1/task/list
# The query every hit benchmark asks for (same path and query for nginx and the gateway).
HIT_QUERY="$LIST?pageSize=20&status=2&pageCursor="
# An ordinary file call, which no cache and no normalization rule applies to: a GET of the same
# page (a static file upstream) and a POST (answered by the upstream's `return`).
FILE_GET=/koodrive/ose/v1/file/info
FILE_POST=/koodrive/ose/v1/file/create
FILE_QUERY="$FILE_GET?fileId=1486254586942472064"

# nginx's workers run as nobody: they must be able to enter the work dir.
WORK=$(mktemp -d /tmp/koodrive-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()

log() { printf '\n== %s\n' "$*"; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=bench/common.sh
source "$REPO/bench/common.sh"

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: every background process is recorded and stopped on exit (cleanup in
# bench/common.sh).

trap cleanup EXIT

# Stops one recorded process now (so that the next server has the core to itself).
stop() {
    local pid=$1 p kept=()
    kill -TERM "$pid" 2>/dev/null || true
    stop_wait "$pid"
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}



# ---------------------------------------------------------------------------------------------
# Setup: tools and build.

machine_facts() {
    log "machine"
    echo "nproc:     $(nproc)"
    echo "cpu:       $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel:    $(uname -r)"
    echo "loadavg:   $(cut -d' ' -f1-3 /proc/loadavg)  (other work on the machine skews every figure)"
    echo "duration:  $DURATION per wrk run, $CONNECTIONS connections; servers on CPU $SERVER_CPU, load on CPU $LOAD_CPU"
}

# nginx and wrk from Debian itself. nginx-light (smallest build with proxy_cache) when the
# release has it, otherwise nginx.
install_tools() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    command -v taskset >/dev/null || missing+=(util-linux)
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]} from Debian"
    [[ $EUID -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
    apt-get update -qq
    local packages=() name
    for name in "${missing[@]}"; do
        if [[ $name == nginx ]]; then
            if apt-cache policy nginx-light 2>/dev/null | grep -q 'Candidate: [0-9]'; then
                name=nginx-light
            fi
        fi
        packages+=("$name")
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
}

build() {
    log "building (cargo build --release --locked)"
    if [[ -z ${GATEWAY_BIN:-} ]]; then
        (cd "$REPO" && cargo build --release --locked --quiet)
    fi
    (cd "$REPO" && cargo build --release --locked --quiet --example burst --example floor --example forward_floor --example stalls)
    echo "gateway: $GATEWAY"
    echo "nginx:   $(nginx -v 2>&1)"
    echo "wrk:     $(wrk -v 2>&1 | head -1 || true)"
    if [[ $STALLS == 1 ]] && ! chrt -f 50 true 2>/dev/null; then
        echo "stalls:  not watched (chrt -f is not allowed here)"
        STALLS=0
    fi
    [[ $STALLS != 1 ]] || echo "stalls:  watched on CPUs $SERVER_CPU and $LOAD_CPU during every wrk run"
}


# ---------------------------------------------------------------------------------------------
# The servers.


# The upstream: nginx serving the fixed page as a static file (any query), logging every request
# so that upstream calls can be counted; a POST of a file call gets a small JSON answer. Pinned
# to SERVER_CPU, with the server under test.
start_upstream() {
    local dir=$WORK/nginx-upstream
    mkdir -p "$dir"
    free_port UPSTREAM_PORT
    UPSTREAM_LOG=$dir/access.log
    upstream_nginx_conf "$dir" "$UPSTREAM_PORT" "log_format uri '\$request_uri';
    access_log $UPSTREAM_LOG uri;"
    taskset -c "$SERVER_CPU" nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off; master_process on;' &
    UPSTREAM_PID=$!
    PIDS+=("$UPSTREAM_PID")
    wait_http "http://127.0.0.1:$UPSTREAM_PORT$LIST"
    echo "upstream nginx on 127.0.0.1:$UPSTREAM_PORT"
}

# Requests the upstream has logged for paths matching a pattern.
upstream_count() {
    grep -c -- "$1" "$UPSTREAM_LOG" || true
}

# nginx proxy_cache in front of the upstream: one worker, pinned; cached 10 minutes; concurrent
# misses locked into one fetch. Its access log is off (the gateway's is off at warn too). The
# same worker serves two more ports for the forwarded configurations: NGINX_PASS_PORT, plain
# proxy_pass with no cache, and NGINX_BYPASS_PORT, the same cache with proxy_cache_bypass (every
# request fetched and stored).
start_nginx_cache() {
    local dir=$WORK/nginx-cache
    mkdir -p "$dir/cache"
    free_port NGINX_PORT
    free_port NGINX_PASS_PORT
    free_port NGINX_BYPASS_PORT
    {
        nginx_common "$dir"
        cat <<EOF
    access_log off;
    proxy_cache_path $dir/cache levels=1:2 keys_zone=pages:10m max_size=256m inactive=60m use_temp_path=off;
    # Idle upstream connections kept: more than CONNECTIONS, so that forwarding at 64 connections
    # reuses them as the gateway's pool does, instead of opening one per request.
    upstream koodrive { server 127.0.0.1:$UPSTREAM_PORT; keepalive 1024; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://koodrive;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache pages;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            add_header Cache-Status "nginx; \$upstream_cache_status";
        }
    }
    server {
        listen 127.0.0.1:$NGINX_PASS_PORT;
        location / {
            proxy_pass http://koodrive;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$NGINX_BYPASS_PORT;
        location / {
            proxy_pass http://koodrive;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache pages;
            proxy_cache_valid 200 10m;
            proxy_cache_bypass 1;
            add_header Cache-Status "nginx; \$upstream_cache_status";
        }
    }
}
EOF
    } >"$dir/nginx.conf"
    taskset -c "$SERVER_CPU" nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off; master_process on;' &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$NGINX_PORT$LIST"
}


# Starts a gateway: name, upstream URL, RUST_LOG level, CPU list (empty: unpinned). Its stdout
# (the log) goes to a file, as it would to a log collector. Sets GW_PORT and GW_PID.
start_gateway() {
    local name=$1 upstream=$2 level=$3 cpus=${4:-} admin
    free_port GW_PORT
    free_port admin
    gateway_config "$WORK/$name.toml" "$GW_PORT" "$admin" "$upstream"
    if [[ -n $cpus ]]; then
        RUST_LOG=$level taskset -c "$cpus" "$GATEWAY" --config "$WORK/$name.toml" \
            >"$WORK/$name.log" 2>&1 &
    else
        RUST_LOG=$level "$GATEWAY" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    fi
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_http "http://127.0.0.1:$admin/readyz"
}

# ---------------------------------------------------------------------------------------------
# Measurements.

# Two GETs: the first fills the cache, the second must be a hit. Prints the served size.
warm() {
    local name=$1 url=$2 headers
    curl -fsS -o /dev/null "$url"
    headers=$(curl -fsS -D - -o "$WORK/$name.body" "$url")
    grep -qi '^cache-status:.*hit' <<<"$headers" \
        || die "$name: second request was not a cache hit: $headers"
    echo "$name: cache warm, hit serves $(wc -c <"$WORK/$name.body") body bytes"
}

# wrk latency "215.00us" / "1.20ms" / "1.01s" -> milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# Starts the stall watch on both CPUs for one wrk run (it ends by itself when the run does).
STALL_PIDS=()
stalls_start() {
    local cpu millis
    STALL_PIDS=()
    [[ $STALLS == 1 ]] || return 0
    millis=$(to_ms "$DURATION")
    for cpu in "$SERVER_CPU" "$LOAD_CPU"; do
        chrt -f 50 taskset -c "$cpu" "$STALLS_BIN" --millis "${millis%.*}" >"$WORK/stalls-$cpu.txt" &
        STALL_PIDS+=($!)
    done
}

# Waits for the watch and sets STALLS_SEEN to
# "host stalls >= 1 ms: CPU 0 n (max x ms), CPU 1 m (max y ms)" and STALLS_SHORT to "n/m", or
# both to nothing when not watched.
stalls_seen() {
    local pid cpu late max seen=() counts=()
    STALLS_SEEN= STALLS_SHORT=
    ((${#STALL_PIDS[@]})) || return 0
    for pid in "${STALL_PIDS[@]}"; do
        wait "$pid" || true
    done
    for cpu in "$SERVER_CPU" "$LOAD_CPU"; do
        read -r late max < <(tr ' ' '\n' <"$WORK/stalls-$cpu.txt" |
            awk -F= '$1 == "late_1ms" {n = $2} $1 == "max_ms" {m = $2} END {print n, m}')
        counts+=("$late")
        seen+=("CPU $cpu $late (max $max ms)")
    done
    STALLS_SEEN="host stalls >= 1 ms: ${seen[0]}, ${seen[1]}"
    STALLS_SHORT="${counts[0]}/${counts[1]}"
}

# CPU time (clock ticks) a process and its children (nginx's worker) have used so far.
cpu_ticks() {
    local pid total=0
    for pid in "$1" $(pgrep -P "$1" || true); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# Runs wrk on LOAD_CPU and prints one line: name, URL, the server's pid, and optionally the
# connections and duration (CONNECTIONS and DURATION if not given) and what to send: `get` (a
# plain GET), `no-store` or `no-cache` (a GET with that Cache-Control), `post` (the file POST).
# Keeps the round with the most requests/s per name (rps, p50/p99 in ms, and requests per
# CPU-second the server used, which other load on the machine skews less than requests/s).
declare -A RPS P50 P99 PER_CPU NOTE LAST LAST_P50 LAST_P99
ROUND_RATIOS=() ROUND_P99S=()
run_wrk() {
    local name=$1 url=$2 pid=$3 connections=${4:-$CONNECTIONS} duration=${5:-$DURATION} send=${6:-get}
    local out=$WORK/wrk-$1.txt before after ticks rps p50 p99 n per_cpu note extra=()
    case $send in
        no-store | no-cache) extra=(-H "Cache-Control: $send") ;;
        post) extra=(-s "$WORK/post.lua") ;;
    esac
    before=$(upstream_count "$LIST")
    ticks=$(cpu_ticks "$pid")
    stalls_start
    taskset -c "$LOAD_CPU" wrk -t1 -c"$connections" -d"$duration" --latency "${extra[@]}" "$url" >"$out"
    ticks=$(($(cpu_ticks "$pid") - ticks))
    stalls_seen
    after=$(upstream_count "$LIST")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    n=$(awk '/requests in/ {print $1}' "$out")
    per_cpu=$(awk -v n="$n" -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN {printf "%.0f", t ? n * hz / t : 0}')
    note="server CPU $((ticks * 1000 / CLK_TCK)) ms, upstream requests $((after - before))"
    if grep -q -e 'Non-2xx' -e 'Socket errors' "$out"; then
        note+="; $(grep -h -e 'Non-2xx' -e 'Socket errors' "$out" | tr -s ' ' | paste -sd';')"
    fi
    [[ -z $STALLS_SEEN ]] || note+="; $STALLS_SEEN"
    LAST[$name]=$rps LAST_P50[$name]=$p50 LAST_P99[$name]=$p99
    printf '%-14s %10s req/s  p50 %7s ms  p99 %7s ms  %8s req/CPU-s  (%s)\n' \
        "$name" "$rps" "$p50" "$p99" "$per_cpu" "$note"
    if [[ -z ${RPS[$name]:-} ]] || awk -v a="$rps" -v b="${RPS[$name]}" 'BEGIN {exit !(a > b)}'; then
        RPS[$name]=$rps P50[$name]=$p50 P99[$name]=$p99 PER_CPU[$name]=$per_cpu NOTE[$name]=$note
    fi
}

# The forwarded configurations, gateway against nginx: name of the pair, the gateway's run and
# nginx's. Each pair's runs are named "<run>" at CONNECTIONS and "<run>-c1" at one connection.
FORWARD_PAIRS=(
    "task list no-store vs proxy_pass|gw-nostore|nginx-pass"
    "task list no-cache vs cache_bypass|gw-nocache|nginx-bypass"
    "file GET vs proxy_pass|gw-get|nginx-get"
    "file POST vs proxy_pass|gw-post|nginx-post"
    "floor: bare hyper, file GET vs proxy_pass|floor-get|nginx-get"
    "floor+hdr: file GET vs proxy_pass|floor-hdr-get|nginx-get"
)
# The upstream's own p50 at one connection, per pair's request: what both add to.
declare -A UPSTREAM_OF=([gw-nostore]=up-list [gw-nocache]=up-list [gw-get]=up-get [gw-post]=up-post
    [floor-get]=up-get [floor-hdr-get]=up-get)
# Per forwarded run, its added p50 (us, over the upstream's in the same round) round by round;
# per pair, the req/s ratio round by round.
declare -A ADDED_US FORWARD_RATIOS

# Checks, before any load, that every forwarded configuration answers 2xx the way it should.
check_forwarded() {
    local gw=$1 headers
    headers=$(curl -fsS -D - -o /dev/null -H 'Cache-Control: no-store' "http://127.0.0.1:$gw$HIT_QUERY")
    grep -qi '^cache-status:.*fwd=request' <<<"$headers" || die "no-store was not forwarded: $headers"
    headers=$(curl -fsS -D - -o /dev/null -H 'Cache-Control: no-cache' "http://127.0.0.1:$gw$HIT_QUERY")
    grep -qi '^cache-status:.*stored' <<<"$headers" || die "no-cache was not stored: $headers"
    headers=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$NGINX_BYPASS_PORT$HIT_QUERY")
    grep -qi '^cache-status:.*BYPASS' <<<"$headers" || die "nginx did not bypass its cache: $headers"
    local port
    for port in "$gw" "$NGINX_PASS_PORT" "$UPSTREAM_PORT"; do
        curl -fsS -o /dev/null "http://127.0.0.1:$port$FILE_QUERY" || die "file GET failed on $port"
        curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' --data '{}' \
            "http://127.0.0.1:$port$FILE_POST" || die "file POST failed on $port"
    done
    echo "forwarded configurations answer: gateway no-store/no-cache, nginx proxy_pass/bypass, file GET/POST"
}

# Hits: nginx and the gateway (RUST_LOG=warn: no access log; RUST_LOG=info: its default, one
# JSON access-log line per request, to a file) all started and warmed, then measured one after
# the other (each has SERVER_CPU to itself while it is measured; the others sit idle), ROUNDS
# times, interleaved so that a burst of other load on the machine does not hit only one of them,
# in an order that rotates from round to round. With FORWARDED=1 the forwarded configurations
# run in the same rounds, in the same rotation, against the same gateway (RUST_LOG=warn) and the
# same nginx worker.
bench_hits() {
    log "cache hits: nginx proxy_cache (1 worker, access log off) and koodrive-gateway, all on CPU $SERVER_CPU; wrk on CPU $LOAD_CPU"
    local nginx_pid warn_pid warn_port info_pid info_port round
    start_nginx_cache
    nginx_pid=$NGINX_PID
    warm nginx "http://127.0.0.1:$NGINX_PORT$HIT_QUERY"
    start_gateway gateway-warn "http://127.0.0.1:$UPSTREAM_PORT" warn "$SERVER_CPU"
    warn_pid=$GW_PID warn_port=$GW_PORT
    warm gateway-warn "http://127.0.0.1:$warn_port$HIT_QUERY"
    start_gateway gateway-info "http://127.0.0.1:$UPSTREAM_PORT" info "$SERVER_CPU"
    info_pid=$GW_PID info_port=$GW_PORT
    warm gateway-info "http://127.0.0.1:$info_port$HIT_QUERY"
    local floor_pid floor_port
    curl -fsS -D "$WORK/hit.headers" -o "$WORK/hit.body" "http://127.0.0.1:$warn_port$HIT_QUERY"
    free_port floor_port
    taskset -c "$SERVER_CPU" "$FLOOR_BIN" --listen "127.0.0.1:$floor_port" \
        --headers-file "$WORK/hit.headers" --body-file "$WORK/hit.body" &
    floor_pid=$!
    PIDS+=("$floor_pid")
    wait_http "http://127.0.0.1:$floor_port/"
    # Each run: its URL, the pid whose CPU it uses, and what it sends.
    local -A url=(
        [nginx]="http://127.0.0.1:$NGINX_PORT$HIT_QUERY"
        [gateway-warn]="http://127.0.0.1:$warn_port$HIT_QUERY"
        [gateway-info]="http://127.0.0.1:$info_port$HIT_QUERY"
        [floor]="http://127.0.0.1:$floor_port$HIT_QUERY"
    )
    local -A pid=([nginx]=$nginx_pid [gateway-warn]=$warn_pid [gateway-info]=$info_pid [floor]=$floor_pid)
    local -A send=()
    local order=(nginx gateway-warn gateway-info floor) i name warn_p99 pair gw ngx
    local forward_floor_pid="" floor_hdr_pid=""
    if [[ $FORWARDED == 1 ]]; then
        check_forwarded "$warn_port"
        # The forwarding floor (examples/forward_floor.rs): hyper's server and client with
        # nothing between them, in front of the same upstream.
        local forward_floor_port
        free_port forward_floor_port
        taskset -c "$SERVER_CPU" "$FORWARD_FLOOR_BIN" --listen "127.0.0.1:$forward_floor_port" \
            --upstream "127.0.0.1:$UPSTREAM_PORT" &
        forward_floor_pid=$!
        PIDS+=("$forward_floor_pid")
        wait_http "http://127.0.0.1:$forward_floor_port$FILE_QUERY"
        # The same floor doing the header work no KooDrive gateway can leave out (--headers:
        # the trace id up and back, the authentication headers, hop-by-hop stripping).
        local floor_hdr_port
        free_port floor_hdr_port
        taskset -c "$SERVER_CPU" "$FORWARD_FLOOR_BIN" --listen "127.0.0.1:$floor_hdr_port" \
            --upstream "127.0.0.1:$UPSTREAM_PORT" --headers &
        floor_hdr_pid=$!
        PIDS+=("$floor_hdr_pid")
        wait_http "http://127.0.0.1:$floor_hdr_port$FILE_QUERY"
        check_floor_headers "$floor_hdr_port"
        url+=(
            [gw-nostore]="http://127.0.0.1:$warn_port$HIT_QUERY"
            [nginx-pass]="http://127.0.0.1:$NGINX_PASS_PORT$HIT_QUERY"
            [gw-nocache]="http://127.0.0.1:$warn_port$HIT_QUERY"
            [nginx-bypass]="http://127.0.0.1:$NGINX_BYPASS_PORT$HIT_QUERY"
            [gw-get]="http://127.0.0.1:$warn_port$FILE_QUERY"
            [nginx-get]="http://127.0.0.1:$NGINX_PASS_PORT$FILE_QUERY"
            [gw-post]="http://127.0.0.1:$warn_port$FILE_POST"
            [nginx-post]="http://127.0.0.1:$NGINX_PASS_PORT$FILE_POST"
            [floor-get]="http://127.0.0.1:$forward_floor_port$FILE_QUERY"
            [floor-hdr-get]="http://127.0.0.1:$floor_hdr_port$FILE_QUERY"
            [up-list]="http://127.0.0.1:$UPSTREAM_PORT$HIT_QUERY"
            [up-get]="http://127.0.0.1:$UPSTREAM_PORT$FILE_QUERY"
            [up-post]="http://127.0.0.1:$UPSTREAM_PORT$FILE_POST"
        )
        pid+=([gw-nostore]=$warn_pid [gw-nocache]=$warn_pid [gw-get]=$warn_pid [gw-post]=$warn_pid
            [nginx-pass]=$nginx_pid [nginx-bypass]=$nginx_pid [nginx-get]=$nginx_pid
            [nginx-post]=$nginx_pid [up-list]=$UPSTREAM_PID [up-get]=$UPSTREAM_PID
            [up-post]=$UPSTREAM_PID [floor-get]=$forward_floor_pid
            [floor-hdr-get]=$floor_hdr_pid)
        send+=([gw-nostore]=no-store [gw-nocache]=no-cache [gw-post]=post [nginx-post]=post
            [up-post]=post)
        # At CONNECTIONS, then one connection each (the upstream's own included).
        order+=(gw-nostore nginx-pass gw-nocache nginx-bypass gw-get nginx-get gw-post nginx-post
            floor-get floor-hdr-get gw-nostore-c1 nginx-pass-c1 gw-nocache-c1 nginx-bypass-c1
            gw-get-c1 nginx-get-c1 gw-post-c1 nginx-post-c1 floor-get-c1 floor-hdr-get-c1 up-list-c1
            up-get-c1 up-post-c1)
    fi
    local run base
    for ((round = 1; round <= ROUNDS; round++)); do
        echo "-- round $round of $ROUNDS"
        # Each round starts one run further along, so that none always runs first or right
        # after the same neighbour.
        for ((i = 0; i < ${#order[@]}; i++)); do
            name=${order[(i + round - 1) % ${#order[@]}]}
            base=${name%-c1}
            if [[ $name == *-c1 ]]; then
                run_wrk "$name" "${url[$base]}" "${pid[$base]}" 1 "$LATENCY_DURATION" "${send[$base]:-get}"
            else
                run_wrk "$name" "${url[$name]}" "${pid[$name]}" "$CONNECTIONS" "$DURATION" "${send[$name]:-get}"
            fi
            [[ $name != gateway-warn ]] || warn_p99="${LAST_P99[gateway-warn]}${STALLS_SHORT:+ ($STALLS_SHORT)}"
        done
        # The same round's two figures, under a minute apart: less exposed to the machine's drift
        # than the best of each.
        ROUND_RATIOS+=("$(awk -v g="${LAST[gateway-warn]}" -v n="${LAST[nginx]}" 'BEGIN {printf "%.2f", g / n}')")
        ROUND_P99S+=("$warn_p99")
        [[ $FORWARDED == 1 ]] || continue
        local -A added_this_round=()
        for pair in "${FORWARD_PAIRS[@]}"; do
            IFS='|' read -r _ gw ngx <<<"$pair"
            FORWARD_RATIOS[$gw]+="$(awk -v g="${LAST[$gw]}" -v n="${LAST[$ngx]}" 'BEGIN {printf "%.2f", g / n}') "
            for run in "$gw" "$ngx"; do
                # nginx's file GET is in two pairs: one figure a round.
                [[ -z ${added_this_round[$run]:-} ]] || continue
                added_this_round[$run]=1
                ADDED_US[$run]+="$(awk -v p="${LAST_P50[$run-c1]}" -v u="${LAST_P50[${UPSTREAM_OF[$gw]}-c1]}" 'BEGIN {printf "%.0f", (p - u) * 1000}') "
            done
        done
    done
    echo "gateway-info wrote $(wc -l <"$WORK/gateway-info.log") access-log lines; gateway-warn $(wc -l <"$WORK/gateway-warn.log")"
    stop "$nginx_pid"
    stop "$warn_pid"
    stop "$info_pid"
    stop "$floor_pid"
    [[ -z $forward_floor_pid ]] || stop "$forward_floor_pid"
    [[ -z $floor_hdr_pid ]] || stop "$floor_hdr_pid"
}

# BURST identical misses at once against a fresh gateway whose upstream answers after 200 ms
# (burst's own, see examples/burst.rs): how many reach the upstream.
bench_collapse() {
    log "collapsing: $BURST concurrent identical misses, upstream answering after 200 ms"
    local upstream_port out
    free_port upstream_port
    start_gateway gateway-collapse "http://127.0.0.1:$upstream_port" warn "$SERVER_CPU"
    out=$(taskset -c "$LOAD_CPU" "$BURST_BIN" collapse --addr "127.0.0.1:$GW_PORT" \
        --path "$LIST?taskType=7&status=1&pageSize=10" --count "$BURST" \
        --upstream-listen "127.0.0.1:$upstream_port" --delay-ms 200 --body-file "$PAGE")
    echo "$out"
    COLLAPSE_UPSTREAM=$(awk '/^upstream_requests:/ {print $2}' <<<"$out")
    COLLAPSE_STATUSES=$(awk '/^statuses:/ {$1 = ""; print substr($0, 2)}' <<<"$out")
    stop "$GW_PID"
}

rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

# A fresh gateway (unpinned, as deployed), RSS before and after FILL distinct pages, and a second
# pass that must be all hits (the pages really are cached, none evicted).
bench_memory() {
    log "memory: $FILL distinct ~2 KB pages (gateway unpinned, cache.max_bytes 256MiB)"
    local path="$LIST?pageSize=50" out before after
    start_gateway gateway-memory "http://127.0.0.1:$UPSTREAM_PORT" warn ""
    curl -fsS -o /dev/null "http://127.0.0.1:$GW_PORT$LIST?pageSize=50&pageCursor=0"
    RSS_BEFORE=$(rss_kib "$GW_PID" VmRSS)
    before=$(upstream_count 'pageSize=50&pageCursor=')
    out=$(taskset -c "$LOAD_CPU" "$BURST_BIN" fill --addr "127.0.0.1:$GW_PORT" --path "$path" \
        --count "$FILL" --concurrency 16)
    echo "fill:  $(paste -sd' ' <<<"$out")"
    after=$(upstream_count 'pageSize=50&pageCursor=')
    sleep 1 # let moka finish its pending bookkeeping before reading RSS
    RSS_AFTER=$(rss_kib "$GW_PID" VmRSS)
    RSS_PEAK=$(rss_kib "$GW_PID" VmHWM)
    out=$(taskset -c "$LOAD_CPU" "$BURST_BIN" fill --addr "127.0.0.1:$GW_PORT" --path "$path" \
        --count "$FILL" --concurrency 16)
    echo "again: $(paste -sd' ' <<<"$out")"
    FILL_UPSTREAM=$((after - before))
    FILL_HITS=$(grep -o 'hit=[0-9]*' <<<"$out" | cut -d= -f2 || echo 0)
    echo "upstream requests during fill: $FILL_UPSTREAM"
    echo "VmRSS before: $((RSS_BEFORE / 1024)) MiB ($RSS_BEFORE KiB), after: $((RSS_AFTER / 1024)) MiB ($RSS_AFTER KiB), VmHWM: $((RSS_PEAK / 1024)) MiB"
    echo "RSS per cached page: $(((RSS_AFTER - RSS_BEFORE) * 1024 / FILL)) bytes (served body $(wc -c <"$WORK/gateway-warn.body") bytes)"
    stop "$GW_PID"
}

# ---------------------------------------------------------------------------------------------

summary() {
    local ratio ratio_info ratio_cpu
    ratio=$(awk -v g="${RPS[gateway-warn]}" -v n="${RPS[nginx]}" 'BEGIN {printf "%.2f", g / n}')
    ratio_info=$(awk -v g="${RPS[gateway-info]}" -v n="${RPS[nginx]}" 'BEGIN {printf "%.2f", g / n}')
    ratio_cpu=$(awk -v g="${PER_CPU[gateway-warn]}" -v n="${PER_CPU[nginx]}" 'BEGIN {printf "%.2f", n ? g / n : 0}')
    met() { awk -v a="$1" -v b="$2" "BEGIN {print (a $3 b) ? \"yes\" : \"no\"}"; }
    log "summary ($(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
    printf '%-34s %12s %10s %10s %14s\n' "cache hits, wrk -c$CONNECTIONS -d$DURATION, best of $ROUNDS" "req/s" "p50 ms" "p99 ms" "req/CPU-s"
    for name in nginx gateway-warn gateway-info floor; do
        printf '%-34s %12s %10s %10s %14s\n' "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" "${PER_CPU[$name]}"
    done
    echo "(gateway-warn: RUST_LOG=warn, access log off; gateway-info: RUST_LOG=info, JSON access log to a file;"
    echo " floor: bare hyper serving the gateway's hit bytes, nothing else; gateway-warn at $(awk -v g="${RPS[gateway-warn]}" -v f="${RPS[floor]}" 'BEGIN {printf "%.2f", g / f}')x of it)"
    echo
    printf '%-44s %-22s %-14s %s\n' "figure" "value" "target" "met"
    printf '%-44s %-22s %-14s %s\n' "hit req/s ratio gateway/nginx (warn)" "${ratio}x" ">= 1.3x" "$(met "$ratio" 1.3 '>=')"
    printf '%-44s %-22s\n' "  round by round (median)" "${ROUND_RATIOS[*]} ($(printf '%s\n' "${ROUND_RATIOS[@]}" | sort -n | awk '{v[NR] = $1} END {printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'))"
    printf '%-44s %-22s %-14s %s\n' "hit req/CPU-s ratio gateway/nginx (warn)" "${ratio_cpu}x" "(>= 1.3x)" "$(met "$ratio_cpu" 1.3 '>=')"
    printf '%-44s %-22s %-14s %s\n' "hit req/s ratio gateway/nginx (info)" "${ratio_info}x" "(>= 1.3x)" "$(met "$ratio_info" 1.3 '>=')"
    printf '%-44s %-22s %-14s %s\n' "gateway p99 at $CONNECTIONS connections (warn)" "${P99[gateway-warn]} ms" "< 2 ms" "$(met "${P99[gateway-warn]}" 2 '<')"
    local by_round="  round by round"
    [[ $STALLS != 1 ]] || by_round+=" (stalls >= 1 ms, CPU $SERVER_CPU/$LOAD_CPU)"
    printf '%-44s %s\n' "$by_round" "${ROUND_P99S[*]}"
    printf '%-44s %-22s %-14s %s\n' "gateway p99 at $CONNECTIONS connections (info)" "${P99[gateway-info]} ms" "(< 2 ms)" "$(met "${P99[gateway-info]}" 2 '<')"
    printf '%-44s %-22s %-14s %s\n' "upstream requests for $BURST identical misses" "$COLLAPSE_UPSTREAM ($COLLAPSE_STATUSES)" "1" "$(met "$COLLAPSE_UPSTREAM" 1 '==')"
    printf '%-44s %-22s %-14s %s\n' "VmRSS with $FILL cached pages" "$((RSS_AFTER / 1024)) MiB (idle $((RSS_BEFORE / 1024)))" "< 40 MiB" "$(met "$RSS_AFTER" $((40 * 1024)) '<')"
    printf '%-44s %-22s\n' "  pages cached (second pass hits)" "$FILL_HITS of $FILL, upstream fetched $FILL_UPSTREAM"
    if [[ $FORWARDED == 1 ]]; then
        forwarded_summary
    fi
}

# The median of numbers separated by spaces.
median() {
    tr ' ' '\n' <<<"$1" | awk 'NF' | sort -n |
        awk '{v[NR] = $1} END {if (NR) printf "%g", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

forwarded_summary() {
    local pair what gw ngx ratio added_gw added_ngx cpu_ratio
    echo
    printf '%-36s %11s %11s %7s %-26s %10s %10s %s\n' "forwarded, best of $ROUNDS" "gateway r/s" "nginx r/s" "ratio" "by round (median)" "gw +p50us" "ngx +p50us" "met (>= 1x, <= nginx)"
    for pair in "${FORWARD_PAIRS[@]}"; do
        IFS='|' read -r what gw ngx <<<"$pair"
        ratio=$(awk -v g="${RPS[$gw]}" -v n="${RPS[$ngx]}" 'BEGIN {printf "%.2f", g / n}')
        added_gw=$(median "${ADDED_US[$gw]}")
        added_ngx=$(median "${ADDED_US[$ngx]}")
        printf '%-36s %11s %11s %6sx %-26s %10s %10s %s\n' "$what" "${RPS[$gw]}" "${RPS[$ngx]}" "$ratio" \
            "${FORWARD_RATIOS[$gw]}($(median "${FORWARD_RATIOS[$gw]}"))" "$added_gw" "$added_ngx" \
            "$(awk -v r="$ratio" -v g="$added_gw" -v n="$added_ngx" 'BEGIN {print (r >= 1 ? "yes" : "no") ", " (g <= n ? "yes" : "no")}')"
        printf '%-36s %s\n' "  added p50 by round, us (gw; nginx)" "${ADDED_US[$gw]}; ${ADDED_US[$ngx]}"
        # Requests per CPU-second of each server's own process, best rounds: what other load on
        # the machine skews least.
        cpu_ratio=$(awk -v g="${PER_CPU[$gw]}" -v n="${PER_CPU[$ngx]}" 'BEGIN {printf "%.2f", n ? g / n : 0}')
        printf '%-36s %s\n' "  req/CPU-s (gw; nginx; ratio)" "${PER_CPU[$gw]}; ${PER_CPU[$ngx]}; ${cpu_ratio}x"
    done
    echo "(req/s at $CONNECTIONS connections, the gateway at RUST_LOG=warn; +p50us: the p50 at one connection"
    echo " over the upstream's own p50 in the same round, median of the rounds; the upstream's own p50,"
    echo " best rounds: list ${P50[up-list-c1]} ms, file GET ${P50[up-get-c1]} ms, file POST ${P50[up-post-c1]} ms)"
}

main() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    machine_facts
    install_tools
    build
    log "upstream"
    write_page
    start_upstream
    bench_hits
    bench_collapse
    bench_memory
    summary
}

main "$@"
