#!/usr/bin/env bash
# Fetches cert-manager's CustomResourceDefinitions for the chart tests (the
# chart can render a cert-manager Certificate) from the Go module proxy: the
# github.com/cert-manager/cert-manager module ships them in deploy/crds/.
# Nothing of theirs is copied into this repository.
#
# Usage:  CRD_DIR=$(tests/controlplane/cert-manager-crds.sh)
#   stdout: exactly one line, the directory holding the CRD YAML files.
# Env: JWKS_GO_CACHE (default ~/.cache/jwks-operator/go), GO (default `go`),
#   as for build.sh (go-env.sh).
# Idempotent: `go mod download` answers from the module cache once fetched.
set -euo pipefail

CERT_MANAGER_VERSION=v1.21.2

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[cert-manager-crds] %s\n' "$*" >&2; }
die() { printf '[cert-manager-crds] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=go-env.sh
source "$HERE/go-env.sh"
# Module mode for a download outside any module (there is no go.mod to keep readonly).
export GOFLAGS=-mod=mod GO111MODULE=on
# Outside any module, so no go.mod is read or written.
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT
dir=$("$GO" mod download -json "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" \
  | sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
crds=$dir/deploy/crds
[[ -f $crds/cert-manager.io_certificates.yaml ]] \
  || die "no certificates CRD in $crds"
log "cert-manager $CERT_MANAGER_VERSION CRDs in $crds"
echo "$crds"
