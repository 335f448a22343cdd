#!/usr/bin/env bash
# The standalone binary under load, side by side with reference
# implementations measured in the same run (issue 16, part 3: the HTTP goals
# as same-run ratios):
#
#   1. JWKS route (GET /{ns}/{name}/.well-known/jwks.json) against nginx
#      serving the same bytes as a static file with the same Content-Type and
#      Cache-Control, same wrk settings: requests/s and p99.
#      Goals: ours >= 1.3x nginx's req/s, ours p99 <= nginx's p99.
#      A bare warp handler with the same cached bytes (benches/http/bare_warp.rs)
#      runs too, for information: what warp alone costs here.
#   2. Minting through POST /{ns}/{name}/token against `openssl speed` sign/s
#      on the same core. Goals: RS256 >= 0.9x rsa2048, ES256 >= 0.7x ecdsap256.
#   3. Memory (VmRSS / VmHWM) serving 1,000 ES256 policies.
#   4. Startup: spawn to first JWKS 200 with examples/policies.yaml.
#
# The ratios come from ROUNDS interleaved rounds (JWKS: nginx, ours, bare
# warp in each round; minting: openssl rsa2048, ours RS256, openssl
# ecdsap256, ours ES256 in each round). Each round gives one ratio per goal;
# the summary prints every round's ratios and their median, with pass/miss.
#
# Every server is pinned to one core (SERVER_CPU, default 0) and wrk to the
# other (CLIENT_CPU, default 1). All listeners are on 127.0.0.1. wrk, nginx and
# curl are apt-installed if missing. Every process started here is stopped on
# exit. Results: $OUT/summary.md (the tables for BENCHMARKS.md) and the raw
# wrk/openssl output next to it.
#
#   benches/http/run.sh                      # everything, about 12 minutes
#   ONLY="jwks mint" benches/http/run.sh     # the four ratios only; a subset of:
#                                            # jwks workers mint memory startup
#                                            # (workers adds a TOKIO_WORKER_THREADS=2 server to jwks)
#
# Environment: ROUNDS (interleaved rounds, default 5; medians are reported),
# DURATION (seconds per wrk run, default 10), CONNS (JWKS connections,
# default 64), MINT_CONNS (token connections, default 16), SPEED_SECONDS
# (openssl speed seconds per operation, default 3), STARTUP_RUNS (default 7),
# MEMORY_POLICIES (default 1000), SERVER_CPU, CLIENT_CPU, BASE_PORT (default
# 18480), OUT (default .bench-out/http), SKIP_BUILD=1 to use the existing
# target/release/jwks-operator, BIN=<path> to measure another build of the
# operator (e.g. an older commit's, for a before/after), BARE_WARP=<path>
# for an already built bare-warp reference.
#
# Not part of `cargo test`: run it by hand, on a machine as quiet as you can
# get. Before each wrk run the script waits (up to QUIET_WAIT=60 s) until both
# CPUs are under QUIET_BUSY=10% busy; during the run it records how long the
# server and wrk waited for their CPU (schedstat). A run where either waited
# more than 1% of its duration is marked not clean (a round with such a run
# is marked too). A wall-clock goal (req/s, p99) is judged on the median
# of the rounds where both runs are clean, and has no result when there is
# none; a per-server-CPU-second goal, which moves little when the machine is
# shared, on all rounds. A median is always one round's ratio, shown with
# that round's two numbers (odd counts; for even counts the mean of the
# middle two, without numbers).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
MINT_CONNS=${MINT_CONNS:-16}
SPEED_SECONDS=${SPEED_SECONDS:-3}
STARTUP_RUNS=${STARTUP_RUNS:-7}
MEMORY_POLICIES=${MEMORY_POLICIES:-1000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-18480}
OUT=${OUT:-$ROOT/.bench-out/http}
ONLY=${ONLY:-"jwks workers mint memory startup"}
BIN=${BIN:-$ROOT/target/release/jwks-operator}

JWKS_PORT=$BASE_PORT
TOKEN_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))
BARE_PORT=$((BASE_PORT + 3))
TWO_PORT=$((BASE_PORT + 4))

want() { [[ " $ONLY " == *" $1 "* ]]; }
step() { printf '\n== %s\n' "$*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- tools --------------------------------------------------------------------

# shellcheck source=benches/http/common.sh
. benches/http/common.sh
bench_tools openssl util-linux=taskset

taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to CPU $SERVER_CPU"
taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to CPU $CLIENT_CPU"
ON_SERVER=(taskset -c "$SERVER_CPU")
ON_CLIENT=(taskset -c "$CLIENT_CPU")

# The bare-warp reference (benches/http/bare_warp.rs) is a bench target, so
# `cargo test` never builds it; its path comes from cargo's JSON messages.
bare_warp_path() {
    cargo build --release --locked --bench bare_warp --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "bare_warp" and m.get("executable"):
        print(m["executable"])'
}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    step "cargo build --release (the operator and the bare-warp reference)"
    cargo build --release --locked
    cargo build --release --locked --bench bare_warp
fi
[ -x "$BIN" ] || die "$BIN not built"
BARE_WARP=${BARE_WARP:-$(bare_warp_path)}
[ -x "$BARE_WARP" ] || die "the bare_warp bench binary was not built"

# --- processes and cleanup -----------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/jwks-httpbench.XXXXXX")
# nginx's worker runs as an unprivileged user when started as root: its
# document root (the public JWK Set only) must be readable on its own.
WWW=$(mktemp -d "${TMPDIR:-/tmp}/jwks-httpbench-www.XXXXXX")
chmod 755 "$WWW"
# `read -t` on a FIFO nobody writes: a sleep without starting a process.
SLEEP_FIFO=$TMP/sleep.fifo
mkfifo "$SLEEP_FIFO"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP" "$WWW"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: SIGTERM, wait for it to exit, forget it.
stop() {
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# CPU time (clock ticks) PID... used so far, all threads: sets REPLY.
# Builtins only (no fork), because it is sampled while wrk runs and every
# process this script starts competes with the server or wrk for a core.
cpu_ticks() {
    local total=0 pid line
    local -a f
    for pid in "$@"; do
        read -r line < "/proc/$pid/stat" || return 1
        read -r -a f <<< "${line##*) }"
        total=$((total + f[11] + f[12])) # utime, stime (fields 14 and 15)
    done
    REPLY=$total
}
CLK_TCK=$(getconf CLK_TCK)

# Nanoseconds the threads of PID... spent runnable but waiting for the CPU
# (something else had it): second field of /proc/PID/task/*/schedstat.
# Builtins only; sets REPLY.
runq_ns() {
    local total=0 pid t a b c
    for pid in "$@"; do
        for t in /proc/"$pid"/task/*/schedstat; do
            read -r a b c < "$t" 2>/dev/null || continue
            total=$((total + b))
        done
    done
    REPLY=$total
}

# Percentage of both CPUs busy over the next second (everything on the machine).
busy_pct() {
    local a b
    a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2]; printf "%.0f", 100 * busy / (busy + idle + 1e-9)}'
}

# Waits (at most QUIET_WAIT seconds) until the machine is nearly idle before a
# measurement, so other people's builds skew fewer runs. Prints the busy %.
QUIET_BUSY=${QUIET_BUSY:-10}
QUIET_WAIT=${QUIET_WAIT:-60}
wait_quiet() {
    local waited=0 busy
    busy=$(busy_pct)
    while [ "$busy" -gt "$QUIET_BUSY" ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
        waited=$((waited + 1))
        busy=$(busy_pct)
    done
    echo "$busy"
}

mkdir -p "$OUT"
: > "$OUT/rows.tsv"
# row KIND NAME key=value...: one measurement, for the summary.
row() { printf '%s\n' "$*" >> "$OUT/rows.tsv"; }

step "machine"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
    echo "kernel: $(uname -sr)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$NGINX" -v 2>&1 | cut -d' ' -f3), $(openssl version | cut -d' ' -f1-2)"
    echo "pinning: servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU"
    echo "load average at start: $(loadavg)"
} | tee "$OUT/machine.txt" >&2

# --- the policies ----------------------------------------------------------------

POLICIES=$TMP/policies.yaml
bench_policies "$POLICIES"
JWKS_PATH=/default/demo/.well-known/jwks.json
OURS_URL=http://127.0.0.1:$JWKS_PORT$JWKS_PATH
NGINX_URL=http://127.0.0.1:$NGINX_PORT$JWKS_PATH
BARE_URL=http://127.0.0.1:$BARE_PORT$JWKS_PATH
TWO_URL=http://127.0.0.1:$TWO_PORT$JWKS_PATH

OP_PID=
# start_operator [env...]: the binary on SERVER_CPU with the bench policies.
start_operator() {
    env "$@" "${ON_SERVER[@]}" "$BIN" standalone --policies "$POLICIES" --state-dir "$TMP/state" \
        --jwks-addr "127.0.0.1:$JWKS_PORT" --token-addr "127.0.0.1:$TOKEN_PORT" \
        >> "$TMP/operator.log" 2>&1 &
    OP_PID=$!
    PIDS+=("$OP_PID")
    local path
    for path in "$JWKS_PATH" /bench/rs256/.well-known/jwks.json /bench/es256/.well-known/jwks.json; do
        wait_200 "http://127.0.0.1:$JWKS_PORT$path" || { tail -20 "$TMP/operator.log" >&2; exit 1; }
    done
}

NGINX_PIDS=()
start_nginx() {
    local root=$WWW headers
    mkdir -p "$root$(dirname "$JWKS_PATH")"
    curl -sf -D "$TMP/ours.headers" -o "$root$JWKS_PATH" "$OURS_URL"
    chmod -R a+rX "$root"
    local cache_control
    cache_control=$(our_header cache-control)
    nginx_conf "$root" "$NGINX_PORT" "$JWKS_PATH" "$cache_control"
    "${ON_SERVER[@]}" "$NGINX" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" > "$TMP/nginx/out.log" 2>&1 &
    PIDS+=($!)
    NGINX_PIDS=($!)
    wait_200 "$NGINX_URL" 10 || { cat "$TMP/nginx/out.log" "$TMP/nginx/error.log" >&2; exit 1; }
    local child
    for child in $(pgrep -P "${NGINX_PIDS[0]}"); do NGINX_PIDS+=("$child"); done
    # Same bytes, same media type and caching headers.
    curl -sf -D "$TMP/nginx.headers" -o "$TMP/nginx.body" "$NGINX_URL"
    cmp -s "$TMP/nginx.body" "$root$JWKS_PATH" || die "nginx serves other bytes"
    for headers in content-type cache-control; do
        [ "$(grep -i "^$headers:" "$TMP/ours.headers" | cut -d' ' -f2- | tr -d '\r')" = \
          "$(grep -i "^$headers:" "$TMP/nginx.headers" | cut -d' ' -f2- | tr -d '\r')" ] \
            || die "nginx $headers differs from ours"
    done
}

# The bare-warp reference with our bytes and headers, on the server core.
BARE_PID=
our_header() { grep -i "^$1:" "$TMP/ours.headers" | cut -d' ' -f2- | tr -d '\r'; }
start_bare_warp() {
    "${ON_SERVER[@]}" "$BARE_WARP" --serve "127.0.0.1:$BARE_PORT" "$WWW$JWKS_PATH" \
        "$(our_header content-type)" "$(our_header etag)" "$(our_header cache-control)" \
        > "$TMP/bare_warp.log" 2>&1 &
    BARE_PID=$!
    PIDS+=("$BARE_PID")
    wait_200 "$BARE_URL" 10 || { cat "$TMP/bare_warp.log" >&2; exit 1; }
    curl -sf -o "$TMP/bare.body" "$BARE_URL"
    cmp -s "$TMP/bare.body" "$WWW$JWKS_PATH" || die "bare_warp serves other bytes"
}

# to_ms VALUE: wrk latency (e.g. 812.00us, 1.20ms, 1.01s) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "%s", v }'
}

# load NAME CONNS URL [lua] PIDS...: one wrk run against the server PIDS;
# appends a row. Besides wrk's numbers it records how long the server and wrk
# waited for their CPU while runnable (schedstat): time other work took from
# them during the run.
ROUND=0
load() {
    local name=$1 conns=$2 url=$3 script=$4
    shift 4
    local log=$OUT/wrk-$name-$(date +%s%N).txt
    local args=(-t1 -c"$conns" -d"${DURATION}s" --latency)
    [ -z "$script" ] || args+=(-s "$script")
    local busy load_before before after rq_before rq_after wpid c_rq=0
    busy=$(wait_quiet)
    load_before=$(loadavg)
    cpu_ticks "$@"; before=$REPLY
    runq_ns "$@"; rq_before=$REPLY
    "${ON_CLIENT[@]}" wrk "${args[@]}" "$url" > "$log" &
    wpid=$!
    # wrk's own numbers, sampled until it exits (the last 0.5 s may be missed).
    while kill -0 "$wpid" 2>/dev/null; do
        runq_ns "$wpid" && [ "$REPLY" -gt 0 ] && c_rq=$REPLY
        read -r -t 0.5 <> "$SLEEP_FIFO" || true
    done
    wait "$wpid" || die "$name: wrk failed (see $log)"
    runq_ns "$@"; rq_after=$REPLY
    cpu_ticks "$@"; after=$REPLY
    local rps p50 p99 requests errors cpu_s runq_ms client_runq_ms
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$log")
    requests=$(awk '/requests in/ {print $1}' "$log")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$log")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$log")")
    errors=$(awk '/Non-2xx or 3xx responses:/ {print $NF} /Socket errors:/ {print "socket:" $0}' "$log" | tr '\n' ' ')
    [ -z "$errors" ] || die "$name: wrk saw errors: $errors (see $log)"
    cpu_s=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')
    runq_ms=$(( (rq_after - rq_before) / 1000000 ))
    client_runq_ms=$(( c_rq / 1000000 ))
    printf '  %-20s %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms  server CPU %5.2f s  waited for CPU: server %4d ms, wrk %4d ms  load %s\n' \
        "$name" "$rps" "$p50" "$p99" "$cpu_s" "$runq_ms" "$client_runq_ms" "$load_before" >&2
    row "$name" "rps=$rps" "p50=$p50" "p99=$p99" "requests=$requests" "cpu_s=$cpu_s" "runq_ms=$runq_ms" \
        "client_runq_ms=$client_runq_ms" "busy=$busy" "load=${load_before// /,}" "round=$ROUND"
}

POST_LUA=$TMP/post.lua
cat > "$POST_LUA" <<'EOF'
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
EOF

# --- 1. JWKS route against nginx -------------------------------------------------

if want jwks || want mint; then
    step "start the operator (standalone, pinned to CPU $SERVER_CPU)"
    start_operator
    echo "  $(grep -c . <(ls "/proc/$OP_PID/task")) threads in the process (tokio workers + blocking pool + main)" >&2
fi

if want jwks; then
    step "start nginx (1 worker) and the bare-warp reference (pinned to CPU $SERVER_CPU), same bytes"
    start_nginx
    start_bare_warp
    TWO_PID=
    if want workers; then
        # A second operator, same policy file, TOKIO_WORKER_THREADS=2 on the
        # same one core; its own state (so its own keys: same sizes).
        step "start a second operator with TOKIO_WORKER_THREADS=2 (tokio reads it itself)"
        TOKIO_WORKER_THREADS=2 "${ON_SERVER[@]}" "$BIN" standalone --policies "$POLICIES" \
            --state-dir "$TMP/state-2workers" --jwks-addr "127.0.0.1:$TWO_PORT" >> "$TMP/operator-2workers.log" 2>&1 &
        TWO_PID=$!
        PIDS+=("$TWO_PID")
        wait_200 "$TWO_URL" || { tail -20 "$TMP/operator-2workers.log" >&2; exit 1; }
    fi
    step "JWKS: wrk -t1 -c$CONNS -d${DURATION}s --latency, $ROUNDS interleaved rounds (nginx, ours, bare warp)"
    for ROUND in $(seq "$ROUNDS"); do
        echo "  -- round $ROUND/$ROUNDS" >&2
        load jwks-nginx "$CONNS" "$NGINX_URL" "" "${NGINX_PIDS[@]}"
        load jwks-ours "$CONNS" "$OURS_URL" "" "$OP_PID"
        load jwks-bare-warp "$CONNS" "$BARE_URL" "" "$BARE_PID"
        [ -z "$TWO_PID" ] || load jwks-ours-2workers "$CONNS" "$TWO_URL" "" "$TWO_PID"
    done
    stop "${NGINX_PIDS[0]}"
    stop "$BARE_PID"
    [ -z "$TWO_PID" ] || stop "$TWO_PID"
fi

# --- 2. minting against openssl speed ------------------------------------------------

if want mint; then
    # openssl_speed ALG NAME: `openssl speed` on the server core; one row
    # with its sign/s (the second-to-last column of its result line).
    openssl_speed() {
        local alg=$1 name=$2 speed sign
        wait_quiet > /dev/null
        speed=$("${ON_SERVER[@]}" openssl speed -seconds "$SPEED_SECONDS" "$alg" 2>/dev/null)
        echo "$speed" >> "$OUT/openssl-speed.txt"
        sign=$(echo "$speed" | grep -E '^rsa 2048 bits|ecdsa \(nistp256\)' | awk '{print $(NF-1)}')
        [ -n "$sign" ] || die "openssl speed $alg: no result line"
        printf '  %-20s %9.0f sign/s (openssl speed -seconds %s %s)  load %s\n' "$name" "$sign" "$SPEED_SECONDS" "$alg" "$(loadavg)" >&2
        row "$name" "sign=$sign" "load=$(loadavg | tr ' ' ,)" "round=$ROUND"
    }
    : > "$OUT/openssl-speed.txt"

    for alg in rs256 es256; do
        out=$(curl -sf -X POST -H 'content-type: application/json' -d '{}' \
            "http://127.0.0.1:$TOKEN_PORT/bench/$alg/token") || die "minting $alg failed"
        [[ $out == *'"token":"ey'* ]] || die "minting $alg: unexpected answer $out"
    done
    step "minting: $ROUNDS interleaved rounds of openssl speed rsa2048, wrk -t1 -c$MINT_CONNS -d${DURATION}s -s post.lua on RS256, openssl speed ecdsap256, the same on ES256"
    for ROUND in $(seq "$ROUNDS"); do
        echo "  -- round $ROUND/$ROUNDS" >&2
        openssl_speed rsa2048 openssl-rsa2048
        load mint-rs256 "$MINT_CONNS" "http://127.0.0.1:$TOKEN_PORT/bench/rs256/token" "$POST_LUA" "$OP_PID"
        openssl_speed ecdsap256 openssl-p256
        load mint-es256 "$MINT_CONNS" "http://127.0.0.1:$TOKEN_PORT/bench/es256/token" "$POST_LUA" "$OP_PID"
    done
fi

if [ -n "$OP_PID" ] && kill -0 "$OP_PID" 2>/dev/null; then
    stop "$OP_PID"
fi

# --- 3. memory with 1,000 ES256 policies ---------------------------------------------

if want memory; then
    step "memory: $MEMORY_POLICIES ES256 policies in one file"
    many=$TMP/many.yaml
    : > "$many"
    for i in $(seq -w 1 "$MEMORY_POLICIES"); do
        cat >> "$many" <<EOF
---
apiVersion: jwks.dev/v1alpha1
kind: KeyRotationPolicy
metadata:
  name: p$i
  namespace: mem
spec:
  algorithm: ES256
EOF
    done
    started=$(date +%s%N)
    "${ON_SERVER[@]}" "$BIN" standalone --policies "$many" --state-dir "$TMP/state-many" \
        --jwks-addr "127.0.0.1:$JWKS_PORT" > "$TMP/many.log" 2>&1 &
    MANY_PID=$!
    PIDS+=("$MANY_PID")
    wait_200 "http://127.0.0.1:$JWKS_PORT/healthz" || { tail -20 "$TMP/many.log" >&2; exit 1; }
    for _ in $(seq 1200); do
        ready=$(curl -s "http://127.0.0.1:$JWKS_PORT/policies" | { grep -o '"ready":true' || true; } | wc -l)
        [ "$ready" -ge "$MEMORY_POLICIES" ] && break
        sleep 0.1
    done
    [ "$ready" -ge "$MEMORY_POLICIES" ] || die "only $ready of $MEMORY_POLICIES policies ready"
    ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
    # Fetch every set once (one curl, keep-alive).
    cfg=$TMP/many.curl
    : > "$cfg"
    for i in $(seq -w 1 "$MEMORY_POLICIES"); do
        printf 'url = "http://127.0.0.1:%s/mem/p%s/.well-known/jwks.json"\noutput = /dev/null\nwrite-out = "%%{http_code}\\n"\n' \
            "$JWKS_PORT" "$i" >> "$cfg"
    done
    ok=$(curl -s -K "$cfg" | grep -c '^200$' || true)
    [ "$ok" -eq "$MEMORY_POLICIES" ] || die "only $ok of $MEMORY_POLICIES sets answered 200"
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$MANY_PID/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$MANY_PID/status")
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$MANY_PID/status")
    printf '  %s policies ready in %s ms, all served: VmRSS %s KiB, VmHWM %s KiB, %s threads\n' \
        "$MEMORY_POLICIES" "$ready_ms" "$rss" "$hwm" "$threads" >&2
    row memory "policies=$MEMORY_POLICIES" "rss_kib=$rss" "hwm_kib=$hwm" "ready_ms=$ready_ms" "load=$(loadavg | tr ' ' ,)"
    stop "$MANY_PID"
fi

# --- 4. startup to first JWKS --------------------------------------------------------

if want startup; then
    step "startup: spawn to first 200 on $JWKS_PATH, examples/policies.yaml, fresh state, $STARTUP_RUNS runs"
    times=()
    for r in $(seq "$STARTUP_RUNS"); do
        state=$TMP/state-startup-$r
        started=$(date +%s%N)
        "${ON_SERVER[@]}" "$BIN" standalone --policies examples/policies.yaml --state-dir "$state" \
            --jwks-addr "127.0.0.1:$JWKS_PORT" > "$TMP/startup-$r.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        for _ in $(seq 4000); do
            code=$(curl -s -o /dev/null -w '%{http_code}' "$OURS_URL" || true)
            [ "$code" = 200 ] && break
        done
        [ "$code" = 200 ] || die "startup run $r: no 200"
        ms=$(awk -v ns=$(( $(date +%s%N) - started )) 'BEGIN {printf "%.1f", ns / 1e6}')
        times+=("$ms")
        stop "$pid"
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    median=$(echo "$sorted" | awk -v n="$STARTUP_RUNS" 'NR == int((n + 1) / 2)')
    echo "  runs (ms): ${times[*]}; median $median" >&2
    row startup "median_ms=$median" "min_ms=$(echo "$sorted" | head -1)" "max_ms=$(echo "$sorted" | tail -1)" "runs=$STARTUP_RUNS" "load=$(loadavg | tr ' ' ,)"
fi

echo "load average at end: $(loadavg)" | tee -a "$OUT/machine.txt" >&2

# --- summary -----------------------------------------------------------------------------

step "summary ($OUT/summary.md)"
python3 - "$OUT" "$CONNS" "$MINT_CONNS" "$DURATION" <<'PY'
import os, statistics, sys

out, conns, mint_conns, duration = sys.argv[1:]
limit_ms = float(duration) * 1000 * 0.01  # 1% of a run
rows = {}
for line in open(os.path.join(out, "rows.tsv")):
    name, *kvs = line.split()
    rows.setdefault(name, []).append(dict(kv.split("=", 1) for kv in kvs))

def clean(name, r):
    # Nothing else took more than 1% of the run from wrk or from the server
    # (two workers on one core wait for each other: only wrk counts there).
    server_ok = name.endswith("-2workers") or float(r["runq_ms"]) <= limit_ms
    return server_ok and float(r["client_runq_ms"]) <= limit_ms

for name, rs in rows.items():
    for r in rs:
        if "rps" in r:
            r["clean"] = clean(name, r)

def runs(name):
    rs = rows[name]
    ok = [r for r in rs if r.get("clean")]
    return ok or rs

def med(name, key):
    return statistics.median(float(r[key]) for r in runs(name))

def per_cpu(name):
    return statistics.median(float(r["requests"]) / float(r["cpu_s"]) for r in runs(name) if float(r["cpu_s"]) > 0)

def count(name):
    ok = sum(1 for r in rows[name] if r.get("clean"))
    n = len(rows[name])
    return f"median of {ok} clean runs of {n}" if ok else f"median of all {n} runs, none clean"

def verdict(ok):
    return "pass" if ok else "**miss**"

def by_round(name):
    return {int(r.get("round", 0)): r for r in rows.get(name, [])}

# The four goals, one ratio per round from the runs of that round. Each
# throughput goal twice: wall-clock rates (what the goal says), and per
# CPU-second of the server (`openssl speed` counts user CPU time itself),
# which holds when other work takes the server's core away during a run.
# (name of the goal, ours, reference, value of ours[:value of the reference], target, higher is better)
goals = [
    ("JWKS req/s, ours / nginx", "jwks-ours", "jwks-nginx", "rps", 1.3, True),
    ("JWKS p99, ours / nginx", "jwks-ours", "jwks-nginx", "p99", 1.0, False),
    ("RS256 tokens/s / `openssl speed rsa2048` sign/s", "mint-rs256", "openssl-rsa2048", "rps:sign", 0.9, True),
    ("ES256 tokens/s / `openssl speed ecdsap256` sign/s", "mint-es256", "openssl-p256", "rps:sign", 0.7, True),
    ("JWKS req per server CPU-second, ours / nginx", "jwks-ours", "jwks-nginx", "per_cpu", 1.3, True),
    ("RS256 tokens per server CPU-second / openssl sign/s", "mint-rs256", "openssl-rsa2048", "per_cpu:sign", 0.9, True),
    ("ES256 tokens per server CPU-second / openssl sign/s", "mint-es256", "openssl-p256", "per_cpu:sign", 0.7, True),
]

def median_of(entries):
    """The median of (ratio, ours, reference, clean, round) entries by ratio:
    for an odd count the middle entry, whose numbers are all from one round;
    for an even count the mean of the two middle ratios, and no numbers (they
    would come from two rounds)."""
    ordered = sorted(entries, key=lambda e: e[0])
    n = len(ordered)
    if n % 2:
        ratio, o, r, _, rd = ordered[n // 2]
        return ratio, o, r, rd
    return (ordered[n // 2 - 1][0] + ordered[n // 2][0]) / 2, None, None, None

def value(r, key):
    if key == "per_cpu":
        return float(r["requests"]) / max(float(r["cpu_s"]), 0.01)
    return float(r[key])

goal_rows = ["| goal | rounds | ratio per round | median ratio | target | result |", "|---|---|---|---|---|---|"]
per_round = {}
for label, ours, ref, key, target, higher in goals:
    o_rounds, r_rounds = by_round(ours), by_round(ref)
    common = sorted(set(o_rounds) & set(r_rounds))
    if not common:
        continue
    ok_key, ref_key = (key.split(":") + [key])[:2]
    ratios = []
    for rd in common:
        o, r = o_rounds[rd], r_rounds[rd]
        ratio = value(o, ok_key) / value(r, ref_key)
        both_clean = o.get("clean", True) and r.get("clean", True)
        ratios.append(ratio)
        per_round.setdefault(rd, {})[label] = (ratio, value(o, ok_key), value(r, ref_key), both_clean)
    # A wall-clock goal is judged on the rounds where both runs are clean
    # (on the others it measures the scheduler too): none clean, no result.
    # Per CPU-second of the server holds on a shared machine: all rounds.
    clean_rounds = [rd for rd in common if per_round[rd][label][3]]
    judged = common if ok_key.startswith("per_cpu") else clean_rounds
    if judged:
        m, _, _, _ = median_of([per_round[rd][label] + (rd,) for rd in judged])
        met = m >= target if higher else m <= target
        result = verdict(met)
        median_cell = f"**{m:.2f}x**" + ("" if judged == common else f" (of the {len(judged)} clean)")
    else:
        result = "no result: no round with both runs clean"
        median_cell = f"{statistics.median(ratios):.2f}x (all rounds, not clean)"
    goal_rows.append(
        f"| {label} | {len(common)} ({len(clean_rounds)} with both runs clean) | {', '.join(f'{x:.2f}' for x in ratios)} "
        f"| {median_cell} | {'>=' if higher else '<='} {target}x | {result} |")

short = {
    goals[0][0]: ("nginx req/s", "ours req/s"),
    goals[1][0]: ("nginx p99 ms", "ours p99 ms"),
    goals[2][0]: ("openssl rsa2048 sign/s", "RS256 tokens/s"),
    goals[3][0]: ("openssl p256 sign/s", "ES256 tokens/s"),
    goals[4][0]: ("nginx req/CPU-s", "ours req/CPU-s"),
    goals[5][0]: ("openssl rsa2048 sign/CPU-s", "RS256 tokens/CPU-s"),
    goals[6][0]: ("openssl p256 sign/CPU-s", "ES256 tokens/CPU-s"),
}
fmt = lambda v, l: f"{v:.3f}" if "p99" in l else f"{v:,.0f}"

def round_table(group):
    labels = [g[0] for g in group if any(g[0] in v for v in per_round.values())]
    if not labels:
        return []
    head = ["round"] + [h for l in labels for h in (*short[l], "ratio")]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rd in sorted(per_round):
        cells = [str(rd)]
        for l in labels:
            if l in per_round[rd]:
                ratio, o, r, ok = per_round[rd][l]
                cells += [fmt(r, l), fmt(o, l), f"{ratio:.2f}" + ("" if ok else " (not clean)")]
            else:
                cells += ["", "", ""]
        out.append("| " + " | ".join(cells) + " |")
    # The median ratio with the two numbers of the round it comes from (the
    # medians of each column would mix rounds and not give that ratio).
    medians = ["**median**"]
    for l in labels:
        m, o, r, rd = median_of([per_round[rd][l] + (rd,) for rd in per_round if l in per_round[rd]])
        if rd is None:
            medians += ["", "", f"**{m:.2f}** (mean of the middle two)"]
        else:
            medians += [fmt(r, l), fmt(o, l), f"**{m:.2f}** (round {rd})"]
    out.append("| " + " | ".join(medians) + " |")
    return out

round_rows = []
wall, per_cpu_rows = round_table(goals[:4]), round_table(goals[4:])
if wall:
    round_rows += ["Per round, wall-clock rates:", "", *wall, ""]
if per_cpu_rows:
    round_rows += ["Per round, per CPU-second of the server:", "", *per_cpu_rows, ""]

table = [
    "| measurement | ours | reference | ratio of medians | ours p50 / p99 | reference p50 / p99 | req per server CPU-second, ours / reference |",
    "|---|---|---|---|---|---|---|",
]
if "jwks-ours" in rows and "jwks-nginx" in rows:
    o, n = med("jwks-ours", "rps"), med("jwks-nginx", "rps")
    table.append(
        f"| JWKS route, `wrk -c{conns}`, req/s (ours {count('jwks-ours')}; nginx {count('jwks-nginx')}) "
        f"| {o:,.0f} | nginx, 1 worker: {n:,.0f} | {o / n:.2f}x | {med('jwks-ours', 'p50'):.2f} / {med('jwks-ours', 'p99'):.2f} ms "
        f"| {med('jwks-nginx', 'p50'):.2f} / {med('jwks-nginx', 'p99'):.2f} ms | {per_cpu('jwks-ours'):,.0f} / {per_cpu('jwks-nginx'):,.0f} |")
if "jwks-bare-warp" in rows and "jwks-ours" in rows:
    b, o = med("jwks-bare-warp", "rps"), med("jwks-ours", "rps")
    table.append(
        f"| JWKS route against a bare warp handler with the same cached bytes ({count('jwks-bare-warp')}) "
        f"| {o:,.0f} | bare warp: {b:,.0f} | {o / b:.2f}x | | {med('jwks-bare-warp', 'p50'):.2f} / {med('jwks-bare-warp', 'p99'):.2f} ms "
        f"| {per_cpu('jwks-ours'):,.0f} / {per_cpu('jwks-bare-warp'):,.0f} |")
if "jwks-ours-2workers" in rows and "jwks-ours" in rows:
    o2, o1 = med("jwks-ours-2workers", "rps"), med("jwks-ours", "rps")
    table.append(
        f"| JWKS route, `TOKIO_WORKER_THREADS=2` on the same one core ({count('jwks-ours-2workers')}) "
        f"| {o2:,.0f} | 1 worker (the default under taskset): {o1:,.0f} | {o2 / o1:.2f}x "
        f"| {med('jwks-ours-2workers', 'p50'):.2f} / {med('jwks-ours-2workers', 'p99'):.2f} ms | "
        f"| {per_cpu('jwks-ours-2workers'):,.0f} / {per_cpu('jwks-ours'):,.0f} |")
for alg, ref, label in (("rs256", "openssl-rsa2048", "rsa2048"), ("es256", "openssl-p256", "ecdsap256")):
    name = f"mint-{alg}"
    if name in rows and ref in rows:
        o, r = med(name, "rps"), statistics.median(float(x["sign"]) for x in rows[ref])
        table.append(
            f"| {alg.upper()} minting, `POST .../token`, `wrk -c{mint_conns}`, tokens/s ({count(name)}) "
            f"| {o:,.0f} | `openssl speed {label}`, sign/s (median of {len(rows[ref])}): {r:,.0f} | {o / r:.2f}x "
            f"| {med(name, 'p50'):.2f} / {med(name, 'p99'):.2f} ms | | {per_cpu(name):,.0f} / {r:,.0f} |")
other = ["| measurement | value | target | result |", "|---|---|---|---|"]
if "memory" in rows:
    m = rows["memory"][0]
    rss, hwm = int(m["rss_kib"]) / 1024, int(m["hwm_kib"]) / 1024
    other.append(
        f"| Memory serving {m['policies']} ES256 policies (all ready {int(m['ready_ms']) / 1000:.1f} s after spawn, every set fetched once) "
        f"| VmRSS {rss:.1f} MiB, VmHWM {hwm:.1f} MiB | < 50 MiB | {verdict(max(rss, hwm) < 50)} |")
if "startup" in rows:
    st = rows["startup"][0]
    other.append(
        f"| Startup, spawn to first JWKS 200, example policy, fresh state dir (median of {st['runs']}) "
        f"| {float(st['median_ms']):.0f} ms (min {float(st['min_ms']):.0f}, max {float(st['max_ms']):.0f}) "
        f"| < 1 s | {verdict(float(st['median_ms']) < 1000)} |")

every = [f"Every wrk run (a run is clean when neither the server nor wrk waited more than {limit_ms:.0f} ms, 1% of the run, for its CPU):", "",
         "| run | req/s | p50 ms | p99 ms | server CPU s | server waited for CPU ms | wrk waited for CPU ms | clean | load average |",
         "|---|---|---|---|---|---|---|---|---|"]
for name, rs in rows.items():
    for r in rs:
        if "rps" in r:
            every.append(f"| {name}, round {r.get('round', '?')} | {float(r['rps']):,.0f} | {r['p50']} | {r['p99']} | {r['cpu_s']} | {r['runq_ms']} | {r['client_runq_ms']} | {'yes' if r['clean'] else 'no'} | {r['load'].replace(',', ' ')} |")
for ref in ("openssl-rsa2048", "openssl-p256"):
    for r in rows.get(ref, []):
        every.append(f"| {ref} (openssl speed), round {r.get('round', '?')} | {float(r['sign']):,.0f} sign/s | | | | | | | {r['load'].replace(',', ' ')} |")

parts = []
if len(goal_rows) > 2:
    parts += ["The goals: one ratio per interleaved round, median over the rounds:", "", *goal_rows, ""]
parts += round_rows
if len(table) > 2:
    parts += ["Medians per server (over the clean runs when there are any):", "", *table, ""]
if len(other) > 2:
    parts += [*other, ""]
parts += every
text = "\n".join(parts) + "\n"
print(text)
open(os.path.join(out, "summary.md"), "w").write(text)
PY
cat "$OUT/machine.txt"
