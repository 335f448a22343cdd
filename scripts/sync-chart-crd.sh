#!/usr/bin/env bash
# Copies the generated CRD into the Helm chart, which must carry its own copy
# (helm cannot read files outside the chart directory).
#
#   scripts/sync-chart-crd.sh           # copy crds/ -> charts/jwks-operator/files/crd.yaml
#   scripts/sync-chart-crd.sh --check   # exit 1 if the copy differs (tests/helm_chart.rs checks this too)
#
# After changing src/api.rs: regenerate crds/ first
#   cargo run -q -- crd > crds/keyrotationpolicies.jwks.dev.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
src=crds/keyrotationpolicies.jwks.dev.yaml
dst=charts/jwks-operator/files/crd.yaml
if [[ "${1:-}" == "--check" ]]; then
  if cmp -s "$src" "$dst"; then
    echo "$dst is up to date"
  else
    echo "$dst differs from $src; run scripts/sync-chart-crd.sh" >&2
    exit 1
  fi
else
  cp "$src" "$dst"
  echo "copied $src -> $dst"
fi
