# bench/common.sh: what bench/compare.sh, bench/callgrind.sh, bench/syscalls.sh, bench/perf.sh and
# bench/cpu.sh all set up, sourced by each (which defines die). It runs nothing by itself.

# The paths the scripts request: the task list (QUERY, its page written by write_page) and a file
# call's GET and POST (not cached, not normalized).
LIST=/koodrive/ose/v1/task/list
QUERY="$LIST?pageSize=20&status=2&pageCursor="
FILE_GET=/koodrive/ose/v1/file/info
FILE_POST=/koodrive/ose/v1/file/create

# The script's work directory, /tmp/koodrive-$1.*, readable by nginx's workers; the processes to
# stop and the directory to remove on exit; the page and the POST's body written into it.
bench_work() {
    WORK=$(mktemp -d "/tmp/koodrive-$1.XXXXXX")
    chmod 755 "$WORK"
    PIDS=()
    trap cleanup EXIT
    write_page >/dev/null
}

# An nginx upstream serving the page from $WORK/www, in directory $1, pinned to CPU $2 when given;
# its port in UPSTREAM_PORT, once it answers.
start_upstream() {
    local pin=()
    [[ -n ${2:-} ]] && pin=(taskset -c "$2")
    free_port UPSTREAM_PORT
    upstream_nginx_conf "$1" "$UPSTREAM_PORT" "access_log off;"
    "${pin[@]}" nginx -p "$1" -c "$1/nginx.conf" -g 'daemon off; master_process on;' &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$UPSTREAM_PORT$LIST"
}

# Polls a URL until it answers 2xx, $2 tries a tenth of a second apart (300 unless given: a loaded
# machine starts a server slowly, and one under valgrind more slowly still).
wait_http() {
    local url=$1 tries=${2:-300} i
    for ((i = 0; i < tries; i++)); do
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$url did not come up (logs in $WORK)"
}

# A ~2 KB task-list page in KooDrive's wire shape (taskListDtos, numeric code, code 0).
write_page() {
    local page=$WORK/www$LIST tasks="" i=0 sep=""
    mkdir -p "$(dirname "$page")"
    while ((${#tasks} < 1900)); do
        tasks+=$(printf '%s{"taskId":"14862545869424%05d","taskName":"bench-task-%03d","taskType":0,"status":2,"createTime":"2024-08-12T07:22:%02d.000Z"}' \
            "$sep" "$i" "$i" "$((i % 60))")
        sep=","
        ((i += 1))
    done
    printf '{"taskListDtos":[%s],"nextCursor":1723549107000,"code":0,"msg":"Success."}' \
        "$tasks" >"$page"
    PAGE=$page
    mkdir -p "$(dirname "$WORK/www$FILE_GET")"
    cp "$page" "$WORK/www$FILE_GET"
    # The POST's body, sent by wrk's script.
    cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"fileName":"bench-report.pdf","parentFolderId":"0","fileSize":20480}'
wrk.headers["Content-Type"] = "application/json"
EOF
    echo "page: $(wc -c <"$page") bytes, $i tasks"
}

# A request of kind $1 (no-store: the task list with Cache-Control: no-store; get, post: a file
# call) through the front on port $2: sets URL, and EXTRA to wrk's arguments for it.
request_of() {
    URL="http://127.0.0.1:$2$QUERY" EXTRA=()
    case $1 in
        no-store) EXTRA=(-H "Cache-Control: no-store") ;;
        get) URL="http://127.0.0.1:$2$FILE_GET?fileId=1486254586942472064" ;;
        post) URL="http://127.0.0.1:$2$FILE_POST" EXTRA=(-s "$WORK/post.lua") ;;
        *) die "unknown kind $1 (no-store, get, post)" ;;
    esac
}

# The head of an nginx.conf whose files live in directory $1, up to the http block's settings.
nginx_common() {
    cat <<EOF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $1/client_temp;
    proxy_temp_path $1/proxy_temp;
    fastcgi_temp_path $1/fastcgi_temp;
    uwsgi_temp_path $1/uwsgi_temp;
    scgi_temp_path $1/scgi_temp;
    keepalive_requests 1000000;
EOF
}

# The upstream's locations: the page as a static file for the task list and a file GET, and a
# small JSON answer for a file POST.
upstream_locations() {
    cat <<EOF
        location = $LIST { }
        location = $FILE_GET { }
        location = $FILE_POST {
            return 200 '{"fileId":"1486368980720435072","code":0,"msg":"Success."}';
        }
EOF
}

# Writes a gateway config: token mode (no signature, so nginx can be the upstream), long TTL so
# the page stays fresh for the whole run.
# Its fifth argument is upstream.timeout (10s unless given).
gateway_config() {
    local file=$1 port=$2 admin=$3 upstream=$4 timeout=${5:-10s}
    cat >"$file" <<EOF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
shutdown_grace = "2s"
# Above the default 512: bench/compare.sh's collapse check opens 1,000 connections at once.
max_connections = 2048

[upstream]
url = "$upstream"
timeout = "$timeout"

[auth]
mode = "token"
user_id = "1505084218764547200"
access_token = "bench-token"

[cache]
max_bytes = "256MiB"
ttl = "10m"

[log]
format = "json"
EOF
}

# The gateway at $GATEWAY (RUST_LOG=warn, so no access log) in front of the upstream on
# UPSTREAM_PORT, pinned to CPU $1, its log in $WORK/gateway.log; sets GW_PORT, ADMIN_PORT and
# GW_PID once it is ready.
start_pinned_gateway() {
    free_port GW_PORT
    free_port ADMIN_PORT
    gateway_config "$WORK/gateway.toml" "$GW_PORT" "$ADMIN_PORT" "http://127.0.0.1:$UPSTREAM_PORT" 30s
    RUST_LOG=warn taskset -c "$1" "$GATEWAY" --config "$WORK/gateway.toml" >"$WORK/gateway.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_http "http://127.0.0.1:$ADMIN_PORT/readyz"
}

# The upstream nginx's config in directory $1, listening on 127.0.0.1:$2: the page and the file
# calls (upstream_locations) from $WORK/www; $3 is its access-log directives.
upstream_nginx_conf() {
    local dir=$1 port=$2 logging=$3
    mkdir -p "$dir"
    {
        nginx_common "$dir"
        cat <<EOF
    $logging
    server {
        listen 127.0.0.1:$port;
        root $WORK/www;
        default_type application/json;
$(upstream_locations)
    }
}
EOF
    } >"$dir/nginx.conf"
}

# An nginx proxy_pass with no cache in directory $1, listening on 127.0.0.1:$2, in front of the
# upstream on port $3 with keep-alive connections: the front the gateway's forwarded path is
# measured against. $4, if given, is more directives for its location.
pass_nginx_conf() {
    local dir=$1 port=$2 upstream=$3 more=${4:-}
    mkdir -p "$dir"
    {
        nginx_common "$dir"
        cat <<EOF
    access_log off;
    upstream koodrive { server 127.0.0.1:$upstream; keepalive 1024; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://koodrive;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $more
        }
    }
}
EOF
    } >"$dir/nginx.conf"
}

# The header work the gateway does on every forwarded request, as nginx directives (for
# pass_nginx_conf's $4): a trace id made for each request, sent upstream and back, and the
# authentication headers of token mode (gateway_config's), Host included. Not the gateway's
# other work (the metrics, the budget, the breaker, the deadline, the retry, the framing guard).
# A reference for what that work costs nginx, not the issue's target.
NGINX_GATEWAY_HEADERS='proxy_set_header Host koodrive.example;
            proxy_set_header X-Traceid $request_id;
            proxy_set_header X-User-Id 1505084218764547200;
            proxy_set_header language en_US;
            proxy_set_header X-Date $time_iso8601;
            proxy_set_header Authorization "Bearer bench-token";
            add_header X-Traceid $request_id always;'


# Dies unless the forwarding floor on port $1, started with --headers, did its header work: a
# made X-Traceid on the answer, the one a client sent when it sent one.
check_floor_headers() {
    local headers
    headers=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$1$FILE_GET?fileId=1486254586942472064")
    grep -Eqi '^x-traceid: [0-9A-Za-z]{58}'$'\r''?$' <<<"$headers" ||
        die "the floor on $1 made no trace id: $headers"
    headers=$(curl -fsS -D - -o /dev/null -H 'X-Traceid: bench-check' \
        "http://127.0.0.1:$1$FILE_GET?fileId=1486254586942472064")
    grep -qi '^x-traceid: bench-check' <<<"$headers" || die "the floor on $1 lost the client's trace id: $headers"
}

# Every background process is recorded in PIDS and stopped on exit (the caller sets the trap);
# WORK is removed unless KEEP_WORK is set.
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        stop_wait "$pid"
    done
    if [[ -n ${KEEP_WORK:-} ]]; then
        echo "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}

# Waits at most 5 s for a process to exit, then kills it.
stop_wait() {
    local pid=$1 i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Sets the named variable to a free loopback port: a random start, then the first port nothing
# answers on and that this script has not handed out yet. Chosen below the kernel's ephemeral
# range (ip_local_port_range, 32768 up here): a port in it can be nobody's listener yet still be
# the local end of an open connection (a front's to the upstream), and binding it fails.
USED_PORTS=" "
free_port() {
    local low=32768 port i
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    ((low > 2048)) || die "the ephemeral port range starts at $low: no room below it for a listener"
    port=$((1024 + RANDOM % (low - 1024 - 200)))
    for ((i = 0; i < 200; i++, port++)); do
        [[ $USED_PORTS == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    die "no free port found"
}
