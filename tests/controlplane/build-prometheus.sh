#!/usr/bin/env bash
# Builds the monitoring test tools from the Go module proxy, the way build.sh
# builds the control plane:
#   bin/promtool   github.com/prometheus/prometheus/cmd/promtool (prometheus/ wrapper)
#   bin/selectors  prometheus/selectors: prints the series selectors of PromQL
#                  expressions, parsed by Prometheus' own parser
#   crds/          prometheus-operator's CRDs (ServiceMonitor, PrometheusRule),
#                  taken from the Go module github.com/prometheus-operator/prometheus-operator
#                  (its example/prometheus-operator-crd/); never copied into the repo
#
# Usage:  DIR=$(tests/controlplane/build-prometheus.sh)
#   stdout: exactly one line, the tools dir holding bin/ and crds/ (only on success).
#   stderr: progress lines.
# Env: JWKS_PROM_CACHE (default ~/.cache/jwks-operator/prometheus), JWKS_GO_CACHE,
#   GO and JWKS_CP_FORCE=1 as for build.sh.
# Idempotent (stamps: versions + Go version + hash of go.mod/go.sum/selectors
# source), serialised with flock.
set -euo pipefail

# ---- pinned versions --------------------------------------------------------
PROMETHEUS_VERSION=v0.316.0          # github.com/prometheus/prometheus (Prometheus 3.16); must match prometheus/go.mod
PROMOP_VERSION=v0.89.0               # github.com/prometheus-operator/prometheus-operator
# The module's go.sum line (h1: hash of its zip), checked after download.
PROMOP_SUM="h1:2HA351OwWBa10H6TDhjeSdHOA7wiY71sEivg+z2cykk="
MIN_GO_MINOR=26                      # prometheus v0.316 declares go 1.26.7

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${JWKS_PROM_CACHE:-$HOME/.cache/jwks-operator/prometheus}
OUT=$CACHE/$PROMETHEUS_VERSION-$PROMOP_VERSION
BIN_DIR=$OUT/bin
CRD_DIR=$OUT/crds

log() { printf '[prometheus] %s\n' "$*" >&2; }
die() { printf '[prometheus] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=go-env.sh
source "$HERE/go-env.sh"

grep -qE "^require github.com/prometheus/prometheus $PROMETHEUS_VERSION\$" "$HERE/prometheus/go.mod" \
  || grep -qE "^[[:space:]]github.com/prometheus/prometheus $PROMETHEUS_VERSION\$" "$HERE/prometheus/go.mod" \
  || die "prometheus/go.mod does not require github.com/prometheus/prometheus $PROMETHEUS_VERSION (update the pin at the top)"

mkdir -p "$BIN_DIR" "$CRD_DIR"
build_lock "$CACHE/.build.lock"

key=$(printf '%s %s %s %s %s\n' "$PROMETHEUS_VERSION" "$PROMOP_VERSION" "$GO_VERSION" "$(uname -m)" \
  "$(cat "$HERE/prometheus/go.mod" "$HERE/prometheus/go.sum" "$HERE/prometheus/selectors/main.go" | sha256sum | cut -c1-16)")
stamp=$OUT/.stamp
if [[ "${JWKS_CP_FORCE:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$key" \
      && -x "$BIN_DIR/promtool" && -x "$BIN_DIR/selectors" \
      && -f "$CRD_DIR/monitoring.coreos.com_prometheusrules.yaml" ]]; then
  log "promtool $PROMETHEUS_VERSION, selectors, prometheus-operator $PROMOP_VERSION CRDs: up to date"
  echo "$OUT"
  exit 0
fi
rm -f "$stamp"

start=$SECONDS
build() { # <name> <package>
  local tmp=$BIN_DIR/$1.tmp.$$
  log "building $1 ..."
  if ! (cd "$HERE/prometheus" && "$GO" build -trimpath -ldflags "-s -w" -o "$tmp" "$2") >&2; then
    rm -f "$tmp"
    die "go build of $1 ($2) failed; see the compiler output above"
  fi
  mv -f "$tmp" "$BIN_DIR/$1"
}
build promtool github.com/prometheus/prometheus/cmd/promtool
build selectors ./selectors

# The CRDs: `go mod download` of the pinned module version (outside any
# module, so it is not added to a go.mod), its hash checked against the pin.
log "downloading github.com/prometheus-operator/prometheus-operator@$PROMOP_VERSION ..."
json=$(cd "$CACHE" && GOFLAGS=-mod=mod "$GO" mod download -json \
  "github.com/prometheus-operator/prometheus-operator@$PROMOP_VERSION") \
  || die "go mod download of prometheus-operator $PROMOP_VERSION failed: $json"
sum=$(sed -nE 's/^[[:space:]]*"Sum": "([^"]+)".*/\1/p' <<<"$json")
dir=$(sed -nE 's/^[[:space:]]*"Dir": "([^"]+)".*/\1/p' <<<"$json")
[[ "$sum" == "$PROMOP_SUM" ]] || die "prometheus-operator $PROMOP_VERSION has hash $sum, pinned $PROMOP_SUM"
for crd in servicemonitors prometheusrules; do
  src=$dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml
  [[ -f "$src" ]] || die "$src missing in the module"
  install -m 0644 "$src" "$CRD_DIR/"
done

printf '%s' "$key" >"$stamp"
log "ready in $((SECONDS - start))s: $OUT"
echo "$OUT"
