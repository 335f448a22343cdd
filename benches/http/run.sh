#!/usr/bin/env bash
# The standalone binary under load, side by side with reference
# implementations measured in the same run (issue 3, "Speed"):
#
#   1. JWKS route (GET /{ns}/{name}/.well-known/jwks.json) against nginx
#      serving the same bytes as a static file with the same Content-Type and
#      Cache-Control: requests/s and latency with wrk.
#   2. Minting through POST /{ns}/{name}/token (RS256 and ES256) against
#      `openssl speed` sign/s on the same core.
#   3. Memory (VmRSS / VmHWM) serving 1,000 ES256 policies.
#   4. Startup: spawn to first JWKS 200 with examples/policies.yaml.
#
# Every server is pinned to one core (SERVER_CPU, default 0) and wrk to the
# other (CLIENT_CPU, default 1). All listeners are on 127.0.0.1. wrk, nginx and
# curl are apt-installed if missing. Every process started here is stopped on
# exit. Results: $OUT/summary.md (the table for BENCHMARKS.md) and the raw
# wrk/openssl output next to it.
#
#   benches/http/run.sh                      # everything, about 6 minutes
#   ROUNDS=5 DURATION=10 benches/http/run.sh
#   ONLY="jwks mint" benches/http/run.sh     # a subset: jwks mint workers memory startup
#
# Environment: ROUNDS (interleaved wrk rounds per server, default 3; medians
# are reported), DURATION (seconds per wrk run, default 10), CONNS (JWKS
# connections, default 64), MINT_CONNS (token connections, default 16),
# SPEED_SECONDS (openssl speed seconds, default 5), STARTUP_RUNS (default 7),
# MEMORY_POLICIES (default 1000), SERVER_CPU, CLIENT_CPU, BASE_PORT (default
# 18480), OUT (default .bench-out/http), SKIP_BUILD=1 to use the existing
# target/release/jwks-operator.
#
# Not part of `cargo test`: run it by hand on a quiet machine. The load
# average is recorded with every measurement; when other work shares the
# cores, the numbers move (the "req per server CPU-second" column does less).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
MINT_CONNS=${MINT_CONNS:-16}
SPEED_SECONDS=${SPEED_SECONDS:-5}
STARTUP_RUNS=${STARTUP_RUNS:-7}
MEMORY_POLICIES=${MEMORY_POLICIES:-1000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-18480}
OUT=${OUT:-$ROOT/.bench-out/http}
ONLY=${ONLY:-"jwks workers mint memory startup"}
BIN=$ROOT/target/release/jwks-operator

JWKS_PORT=$BASE_PORT
TOKEN_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))

want() { [[ " $ONLY " == *" $1 "* ]]; }
step() { printf '\n== %s\n' "$*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- tools --------------------------------------------------------------------

need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
    step "apt-get install ${need_apt[*]}"
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to CPU $SERVER_CPU"
taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to CPU $CLIENT_CPU"
ON_SERVER=(taskset -c "$SERVER_CPU")
ON_CLIENT=(taskset -c "$CLIENT_CPU")

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    step "cargo build --release"
    cargo build --release --locked
fi
[ -x "$BIN" ] || die "$BIN not built"

# --- processes and cleanup -----------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/jwks-httpbench.XXXXXX")
# nginx's worker runs as an unprivileged user when started as root: its
# document root (the public JWK Set only) must be readable on its own.
WWW=$(mktemp -d "${TMPDIR:-/tmp}/jwks-httpbench-www.XXXXXX")
chmod 755 "$WWW"
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

# wait_200 URL [seconds]: until URL answers 200.
wait_200() {
    local url=$1 limit=${2:-30} i
    for i in $(seq $((limit * 20))); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] && return 0
        sleep 0.05
    done
    echo "run.sh: $url did not answer 200 within ${limit}s" >&2
    return 1
}

# CPU time (clock ticks) used so far by PID and its children threads/processes.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat (after the parenthesised name).
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# Nanoseconds PID's threads spent runnable but waiting for the CPU (another
# process had it): /proc/PID/task/*/schedstat, second field.
runq_ns() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(cat /proc/"$pid"/task/*/schedstat 2>/dev/null | awk '{s += $2} END {print s + 0}')))
    done
    echo "$total"
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
cp examples/policies.yaml "$POLICIES"
cat >> "$POLICIES" <<'EOF'
---
apiVersion: jwks.dev/v1alpha1
kind: KeyRotationPolicy
metadata:
  name: rs256
  namespace: bench
spec:
  algorithm: RS256
  tokenEndpoint:
    enabled: true
---
apiVersion: jwks.dev/v1alpha1
kind: KeyRotationPolicy
metadata:
  name: es256
  namespace: bench
spec:
  algorithm: ES256
  tokenEndpoint:
    enabled: true
EOF
JWKS_PATH=/default/demo/.well-known/jwks.json
OURS_URL=http://127.0.0.1:$JWKS_PORT$JWKS_PATH
NGINX_URL=http://127.0.0.1:$NGINX_PORT$JWKS_PATH

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
    mkdir -p "$root$(dirname "$JWKS_PATH")" "$TMP/nginx/tmp"
    curl -sf -D "$TMP/ours.headers" -o "$root$JWKS_PATH" "$OURS_URL"
    chmod -R a+rX "$root"
    local cache_control
    cache_control=$(grep -i '^cache-control:' "$TMP/ours.headers" | cut -d' ' -f2- | tr -d '\r')
    cat > "$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    # nginx at its best for one small static file: no open()/fstat() per request.
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    keepalive_requests 100000000;
    client_body_temp_path $TMP/nginx/tmp;
    proxy_temp_path $TMP/nginx/tmp;
    fastcgi_temp_path $TMP/nginx/tmp;
    uwsgi_temp_path $TMP/nginx/tmp;
    scgi_temp_path $TMP/nginx/tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $root;
        location = $JWKS_PATH {
            types { }
            default_type application/jwk-set+json;
            add_header Cache-Control "$cache_control";
            add_header Access-Control-Allow-Origin "*";
        }
    }
}
EOF
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

# to_ms VALUE: wrk latency (e.g. 812.00us, 1.20ms, 1.01s) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "%s", v }'
}

# load NAME CONNS URL [lua] PIDS...: one wrk run; appends a row.
load() {
    local name=$1 conns=$2 url=$3 script=$4
    shift 4
    local log=$OUT/wrk-$name-$(date +%s%N).txt before after load_before
    local args=(-t1 -c"$conns" -d"${DURATION}s" --latency)
    [ -z "$script" ] || args+=(-s "$script")
    local busy rq_before rq_after
    busy=$(wait_quiet)
    load_before=$(loadavg)
    before=$(cpu_ticks "$@")
    rq_before=$(runq_ns "$@")
    "${ON_CLIENT[@]}" wrk "${args[@]}" "$url" > "$log"
    rq_after=$(runq_ns "$@")
    after=$(cpu_ticks "$@")
    local rps p50 p99 requests errors cpu_s runq_ms
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$log")
    requests=$(awk '/requests in/ {print $1}' "$log")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$log")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$log")")
    errors=$(awk '/Non-2xx or 3xx responses:/ {print $NF} /Socket errors:/ {print "socket:" $0}' "$log" | tr '\n' ' ')
    [ -z "$errors" ] || die "$name: wrk saw errors: $errors (see $log)"
    cpu_s=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')
    runq_ms=$(( (rq_after - rq_before) / 1000000 ))
    printf '  %-20s %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms  server CPU %5.2f s, waited for CPU %5d ms  busy before %3s%%  load %s\n' \
        "$name" "$rps" "$p50" "$p99" "$cpu_s" "$runq_ms" "$busy" "$load_before" >&2
    row "$name" "rps=$rps" "p50=$p50" "p99=$p99" "requests=$requests" "cpu_s=$cpu_s" "runq_ms=$runq_ms" "busy=$busy" "load=${load_before// /,}"
}

POST_LUA=$TMP/post.lua
cat > "$POST_LUA" <<'EOF'
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
EOF

# --- 1. JWKS route against nginx -------------------------------------------------

if want jwks || want workers || want mint; then
    step "start the operator (standalone, pinned to CPU $SERVER_CPU)"
    start_operator
    echo "  worker threads: $(grep -c . <(ls "/proc/$OP_PID/task")) threads in the process" >&2
fi

if want jwks; then
    step "start nginx (1 worker, pinned to CPU $SERVER_CPU) serving the same bytes"
    start_nginx
    step "JWKS: wrk -t1 -c$CONNS -d${DURATION}s --latency, $ROUNDS interleaved rounds"
    for r in $(seq "$ROUNDS"); do
        load jwks-ours "$CONNS" "$OURS_URL" "" "$OP_PID"
        load jwks-nginx "$CONNS" "$NGINX_URL" "" "${NGINX_PIDS[@]}"
    done
    stop "${NGINX_PIDS[0]}"
fi

# --- 1b. tokio worker threads on one core ------------------------------------------

if want workers; then
    step "JWKS with TOKIO_WORKER_THREADS=2 on the one core (tokio reads it itself)"
    stop "$OP_PID"
    start_operator TOKIO_WORKER_THREADS=2
    for r in $(seq "$ROUNDS"); do
        load jwks-ours-2workers "$CONNS" "$OURS_URL" "" "$OP_PID"
    done
    stop "$OP_PID"
    start_operator
fi

# --- 2. minting against openssl speed ------------------------------------------------

if want mint; then
    step "openssl speed -seconds $SPEED_SECONDS rsa2048 ecdsap256 (CPU $SERVER_CPU)"
    speed=$("${ON_SERVER[@]}" openssl speed -seconds "$SPEED_SECONDS" rsa2048 ecdsap256 2>/dev/null)
    echo "$speed" > "$OUT/openssl-speed.txt"
    rsa_sign=$(echo "$speed" | grep -E '^rsa 2048 bits' | awk '{print $(NF-1)}')
    p256_sign=$(echo "$speed" | grep -E 'ecdsa \(nistp256\)' | awk '{print $(NF-1)}')
    echo "  rsa2048 sign/s $rsa_sign, ecdsap256 sign/s $p256_sign" >&2
    row openssl-rsa2048 "sign=$rsa_sign" "load=$(loadavg | tr ' ' ,)"
    row openssl-p256 "sign=$p256_sign" "load=$(loadavg | tr ' ' ,)"

    step "minting: wrk -t1 -c$MINT_CONNS -d${DURATION}s -s post.lua (POST {} application/json)"
    for alg in rs256 es256; do
        out=$(curl -sf -X POST -H 'content-type: application/json' -d '{}' \
            "http://127.0.0.1:$TOKEN_PORT/bench/$alg/token") || die "minting $alg failed"
        [[ $out == *'"token":"ey'* ]] || die "minting $alg: unexpected answer $out"
    done
    for r in $(seq "$ROUNDS"); do
        load mint-rs256 "$MINT_CONNS" "http://127.0.0.1:$TOKEN_PORT/bench/rs256/token" "$POST_LUA" "$OP_PID"
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
python3 - "$OUT" "$CONNS" "$MINT_CONNS" <<'PY'
import os, statistics, sys

out, conns, mint_conns = sys.argv[1:]
rows = {}
for line in open(os.path.join(out, "rows.tsv")):
    name, *kvs = line.split()
    rows.setdefault(name, []).append(dict(kv.split("=", 1) for kv in kvs))

def med(name, key):
    return statistics.median(float(r[key]) for r in rows[name])

def per_cpu(name):
    return statistics.median(float(r["requests"]) / float(r["cpu_s"]) for r in rows[name] if float(r["cpu_s"]) > 0)

def noise(name):
    # load average (1 min) before the run / ms the server waited for its CPU during it
    return ", ".join(f"{r['load'].split(',')[0]}/{r.get('runq_ms', '-')}" for r in rows[name])

def verdict(ok):
    return "pass" if ok else "**FAIL**"

table = [
    "| measurement | ours | reference | ratio | target | result | ours p50 / p99 | reference p50 / p99 | per server CPU-second, ours / reference | load / ms waited for CPU, each run (ours; reference) |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
if "jwks-ours" in rows and "jwks-nginx" in rows:
    o, n = med("jwks-ours", "rps"), med("jwks-nginx", "rps")
    op99 = med("jwks-ours", "p99")
    ratio = o / n
    table.append(
        f"| JWKS route, wrk -c{conns}, req/s (median of {len(rows['jwks-ours'])} runs) | {o:,.0f} | nginx, 1 worker: {n:,.0f} "
        f"| {ratio:.2f}x | >= 1.1x and p99 < 1 ms | {verdict(ratio >= 1.1 and op99 < 1.0)} "
        f"| {med('jwks-ours', 'p50'):.2f} / {op99:.2f} ms | {med('jwks-nginx', 'p50'):.2f} / {med('jwks-nginx', 'p99'):.2f} ms "
        f"| {per_cpu('jwks-ours'):,.0f} / {per_cpu('jwks-nginx'):,.0f} req | {noise('jwks-ours')}; {noise('jwks-nginx')} |")
if "jwks-ours-2workers" in rows and "jwks-ours" in rows:
    o2, o1 = med("jwks-ours-2workers", "rps"), med("jwks-ours", "rps")
    table.append(
        f"| JWKS route, TOKIO_WORKER_THREADS=2 on the one core | {o2:,.0f} | default (1 worker under taskset): {o1:,.0f} "
        f"| {o2 / o1:.2f}x | info | | {med('jwks-ours-2workers', 'p50'):.2f} / {med('jwks-ours-2workers', 'p99'):.2f} ms | "
        f"| {per_cpu('jwks-ours-2workers'):,.0f} / {per_cpu('jwks-ours'):,.0f} req | {noise('jwks-ours-2workers')} |")
for alg, ref, target, label in (("rs256", "openssl-rsa2048", 0.85, "rsa2048"), ("es256", "openssl-p256", 0.6, "ecdsap256")):
    name = f"mint-{alg}"
    if name in rows and ref in rows:
        o, r = med(name, "rps"), med(ref, "sign")
        table.append(
            f"| {alg.upper()} minting, POST .../token, wrk -c{mint_conns}, tokens/s (median of {len(rows[name])}) | {o:,.0f} "
            f"| openssl speed {label}, sign/s: {r:,.0f} | {o / r:.2f}x | >= {target}x | {verdict(o / r >= target)} "
            f"| {med(name, 'p50'):.2f} / {med(name, 'p99'):.2f} ms | | {per_cpu(name):,.0f} / {r:,.0f} | {noise(name)}; {rows[ref][0]['load'].split(',')[0]} |")
if "memory" in rows:
    m = rows["memory"][0]
    rss, hwm = int(m["rss_kib"]) / 1024, int(m["hwm_kib"]) / 1024
    table.append(
        f"| Memory serving {m['policies']} ES256 policies, every set fetched once | VmRSS {rss:.1f} MiB, VmHWM {hwm:.1f} MiB "
        f"| | | < 50 MiB | {verdict(max(rss, hwm) < 50)} | | | | {m['load'].split(',')[0]} (all ready {int(m['ready_ms']) / 1000:.1f} s after spawn) |")
if "startup" in rows:
    st = rows["startup"][0]
    table.append(
        f"| Startup, spawn to first JWKS 200, example policy, fresh state (median of {st['runs']}) "
        f"| {float(st['median_ms']):.0f} ms (min {float(st['min_ms']):.0f}, max {float(st['max_ms']):.0f}) "
        f"| | | < 1 s | {verdict(float(st['median_ms']) < 1000)} | | | | {st['load'].split(',')[0]} |")

runs = ["| run | req/s | p50 ms | p99 ms | server CPU s | waited for CPU ms | machine busy before % | load |", "|---|---|---|---|---|---|---|---|"]
for name, rs in rows.items():
    for r in rs:
        if "rps" in r:
            runs.append(f"| {name} | {float(r['rps']):,.0f} | {r['p50']} | {r['p99']} | {r['cpu_s']} | {r['runq_ms']} | {r['busy']} | {r['load'].replace(',', ' ')} |")

text = "\n".join(table) + "\n"
print(text)
print("\n".join(runs))
open(os.path.join(out, "summary.md"), "w").write(text + "\nEvery run:\n\n" + "\n".join(runs) + "\n")
PY
cat "$OUT/machine.txt"
