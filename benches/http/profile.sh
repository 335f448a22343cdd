#!/usr/bin/env bash
# Where the server's CPU time goes under the load of benches/http/run.sh:
# `perf record` (cpu-clock samples, call graphs from .eh_frame) on the
# operator while wrk loads one route, then `perf report` by DSO and by
# symbol. Sample shares are shares of the server's own CPU time, so they
# hold on a machine shared with other work, where req/s does not.
#
#   benches/http/profile.sh jwks        # GET /default/demo/.well-known/jwks.json, wrk -c64
#   benches/http/profile.sh es256       # POST /bench/es256/token, wrk -c16
#   benches/http/profile.sh rs256       # POST /bench/rs256/token, wrk -c16
#   benches/http/profile.sh nginx       # nginx serving the same JWKS bytes, wrk -c64
#
# The operator's symbols: build it unstripped first (the release profile
# strips them; this changes nothing else in the binary):
#
#   CARGO_PROFILE_RELEASE_STRIP=none cargo build --release
#
# Output: $OUT/<target>.txt (the two reports) and <target>.perf.data, for
# e.g. `perf report -i .bench-out/http-profile/jwks.perf.data --children`.
#
# Environment: DURATION (seconds of load and of recording, default 8),
# SERVER_CPU (0), CLIENT_CPU (1), BASE_PORT (18490), OUT (.bench-out/http-profile),
# BIN (target/release/jwks-operator). perf, wrk and nginx are apt-installed
# if missing (perf is Debian's `linux-perf`). Needs perf_event_paranoid <= 1 or root.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
WHAT=${1:?usage: benches/http/profile.sh jwks|es256|rs256|nginx}
DURATION=${DURATION:-8}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-18490}
OUT=${OUT:-$ROOT/.bench-out/http-profile}
BIN=${BIN:-$ROOT/target/release/jwks-operator}

# shellcheck source=benches/http/common.sh
. benches/http/common.sh
bench_tools linux-perf=perf
[ -x "$BIN" ] || { echo "profile.sh: $BIN not built" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/jwks-httpprofile.XXXXXX")
chmod 755 "$TMP"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_policies "$TMP/policies.yaml"
JWKS_PATH=/default/demo/.well-known/jwks.json
taskset -c "$SERVER_CPU" "$BIN" standalone --policies "$TMP/policies.yaml" --state-dir "$TMP/state" \
    --jwks-addr "127.0.0.1:$BASE_PORT" --token-addr "127.0.0.1:$((BASE_PORT + 1))" > "$TMP/operator.log" 2>&1 &
PIDS+=($!)
TARGET=$!
wait_200 "http://127.0.0.1:$BASE_PORT$JWKS_PATH"

args=(-t1 -c64 -d"$((DURATION + 2))s")
case "$WHAT" in
    jwks) url=http://127.0.0.1:$BASE_PORT$JWKS_PATH ;;
    es256 | rs256)
        url=http://127.0.0.1:$((BASE_PORT + 1))/bench/$WHAT/token
        printf 'wrk.method = "POST"\nwrk.body = "{}"\nwrk.headers["Content-Type"] = "application/json"\n' > "$TMP/post.lua"
        args=(-t1 -c16 -d"$((DURATION + 2))s" -s "$TMP/post.lua")
        ;;
    nginx)
        mkdir -p "$TMP/www$(dirname "$JWKS_PATH")"
        curl -sf -o "$TMP/www$JWKS_PATH" "http://127.0.0.1:$BASE_PORT$JWKS_PATH"
        chmod -R a+rX "$TMP/www"
        # The Cache-Control the operator sends, as benches/http/run.sh does.
        cache_control=$(curl -sf -D - -o /dev/null "http://127.0.0.1:$BASE_PORT$JWKS_PATH" |
            grep -i '^cache-control:' | cut -d' ' -f2- | tr -d '\r')
        nginx_conf "$TMP/www" "$((BASE_PORT + 2))" "$JWKS_PATH" "$cache_control"
        taskset -c "$SERVER_CPU" "$NGINX" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" > "$TMP/nginx/out.log" 2>&1 &
        PIDS+=($!)
        url=http://127.0.0.1:$((BASE_PORT + 2))$JWKS_PATH
        wait_200 "$url"
        TARGET=$(pgrep -P "$!" | head -1) # the worker
        ;;
    *) echo "profile.sh: unknown target $WHAT" >&2; exit 2 ;;
esac

mkdir -p "$OUT"
taskset -c "$CLIENT_CPU" wrk "${args[@]}" "$url" > "$OUT/$WHAT-wrk.txt" &
WRK=$!
sleep 1
perf record -q -F 2999 -g --call-graph dwarf,16384 -p "$TARGET" -o "$OUT/$WHAT.perf.data" -- sleep "$DURATION"
wait "$WRK"
{
    echo "# $WHAT: $(grep -E 'Requests/sec' "$OUT/$WHAT-wrk.txt"), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "## by DSO (self)"
    perf report -i "$OUT/$WHAT.perf.data" --no-children --sort dso --stdio -g none 2> /dev/null | grep -v -e '^#' -e '^$' | head -12 || true
    echo "## by symbol (self)"
    perf report -i "$OUT/$WHAT.perf.data" --no-children --sort dso,symbol --stdio -g none 2> /dev/null | grep -v -e '^#' -e '^$' | sed -E 's/ +- +- *$//; s/ {2,}/  /g' | cut -c1-150 | head -60 || true
} > "$OUT/$WHAT.txt"
cat "$OUT/$WHAT.txt"
