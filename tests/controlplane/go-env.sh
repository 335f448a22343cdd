# Sourced (not run) by the scripts here that build or fetch Go modules
# (build.sh, build-prometheus.sh, cert-manager-crds.sh; and
# tests/signing_examples.rs, for the Go signing example): finds the Go
# toolchain and keeps Go's caches under ~/.cache/jwks-operator/go.
#
# Before sourcing: define log() and die(); set MIN_GO_MINOR to require
# Go >= 1.<MIN_GO_MINOR> (unset: any Go).
# Env: GO (default: `go` on PATH, else /usr/local/go/bin/go),
#   JWKS_GO_CACHE (GOMODCACHE/GOCACHE root, default ~/.cache/jwks-operator/go).
# Sets GO, GO_VERSION and GO_CACHE_ROOT; exports GOMODCACHE, GOCACHE,
# GOTOOLCHAIN=local (no toolchain download), CGO_ENABLED=0 and GOFLAGS
# (readonly go.mod/go.sum, no VCS stamping); creates the cache directories.
# Defines build_lock <file>, which serialises concurrent runs with flock.

GO_CACHE_ROOT=${JWKS_GO_CACHE:-$HOME/.cache/jwks-operator/go}

if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else die "no Go toolchain found (set GO=/path/to/go)${MIN_GO_MINOR:+; Go >= 1.$MIN_GO_MINOR is required}"
  fi
fi
GO_VERSION=$("$GO" env GOVERSION) || die "cannot run $GO"
if [[ -n "${MIN_GO_MINOR:-}" ]]; then
  go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$GO_VERSION")
  [[ "$go_minor" =~ ^[0-9]+$ && "$go_minor" -ge "$MIN_GO_MINOR" ]] \
    || die "$GO is $GO_VERSION; Go >= 1.$MIN_GO_MINOR is required (GOTOOLCHAIN=local: no toolchain download)"
fi

export GOMODCACHE=$GO_CACHE_ROOT/mod
export GOCACHE=$GO_CACHE_ROOT/build
export GOTOOLCHAIN=local
export CGO_ENABLED=0
# go.mod/go.sum are committed and tidy: never rewrite them, never consult a
# vendor dir, never shell out to git for VCS stamping.
export GOFLAGS="-mod=readonly -buildvcs=false"
# With a complete committed go.sum the checksum DB is not consulted; if a
# machine cannot reach it at all, run with GOSUMDB=off (or GONOSUMDB=...).
mkdir -p "$GOMODCACHE" "$GOCACHE"

build_lock() { # <lock file>
  exec 9>"$1"
  if ! flock -n 9; then
    log "another $(basename "$0") holds $1; waiting ..."
    flock 9
  fi
}
