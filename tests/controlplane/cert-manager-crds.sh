#!/usr/bin/env bash
# Fetches cert-manager's CustomResourceDefinitions for the chart tests (the
# chart can render a cert-manager Certificate) from the Go module proxy: the
# github.com/cert-manager/cert-manager module ships them in deploy/crds/.
# Nothing of theirs is copied into this repository.
#
# Usage:  CRD_DIR=$(tests/controlplane/cert-manager-crds.sh)
#   stdout: exactly one line, the directory holding the CRD YAML files.
# Env: JWKS_GO_CACHE (default ~/.cache/jwks-operator/go), GO (default `go`).
# Idempotent: `go mod download` answers from the module cache once fetched.
set -euo pipefail

CERT_MANAGER_VERSION=v1.21.2

GO_CACHE_ROOT=${JWKS_GO_CACHE:-$HOME/.cache/jwks-operator/go}
if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else echo "[cert-manager-crds] no Go toolchain (set GO=/path/to/go)" >&2; exit 1
  fi
fi
export GOMODCACHE=$GO_CACHE_ROOT/mod GOTOOLCHAIN=local GOFLAGS=-mod=mod GO111MODULE=on
mkdir -p "$GOMODCACHE"
# Outside any module, so no go.mod is read or written.
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT
dir=$("$GO" mod download -json "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" \
  | sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
crds=$dir/deploy/crds
[[ -f $crds/cert-manager.io_certificates.yaml ]] \
  || { echo "[cert-manager-crds] no certificates CRD in $crds" >&2; exit 1; }
echo "[cert-manager-crds] cert-manager $CERT_MANAGER_VERSION CRDs in $crds" >&2
echo "$crds"
