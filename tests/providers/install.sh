#!/usr/bin/env bash
# Installs the key-provider test servers (docs/key-providers.md, "Tests"):
# SoftHSM2 and OpenSC's pkcs11-tool from Debian, for the PKCS#11 provider.
# Idempotent: apt-get runs only when a package is missing.
#
# Each test makes its own token in a temporary directory with its own
# SOFTHSM2_CONF (tests/support/softhsm.rs), so nothing here is per-test.
#
# Usage: bash tests/providers/install.sh     (root; called by scripts/test.sh)
set -euo pipefail

PACKAGES=(softhsm2 opensc)
MODULE=/usr/lib/softhsm/libsofthsm2.so

log() { printf '[providers] %s\n' "$*" >&2; }

bash "$(dirname "$0")/../../scripts/apt-install.sh" providers "${PACKAGES[@]}"

[[ -f $MODULE ]] || { log "ERROR: $MODULE missing after install"; exit 1; }
for cmd in softhsm2-util pkcs11-tool; do
  command -v "$cmd" >/dev/null || { log "ERROR: $cmd not on PATH after install"; exit 1; }
done

# local-kms (a KMS API server that also signs in DIGEST mode, unlike moto's),
# a Go module built from the module proxy into the cache, once per version.
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
LOCAL_KMS_DIR=${JWKS_CACHE:-$HOME/.cache/jwks-operator}/local-kms-$LOCAL_KMS_VERSION
if [[ ! -x $LOCAL_KMS_DIR/bin/local-kms ]]; then
  command -v go >/dev/null || { log "ERROR: go is needed to build local-kms"; exit 1; }
  log "building local-kms $LOCAL_KMS_VERSION into $LOCAL_KMS_DIR"
  mkdir -p "$LOCAL_KMS_DIR"
  GOBIN=$LOCAL_KMS_DIR/bin.tmp GOFLAGS=-mod=mod go install "github.com/nsmithuk/local-kms@$LOCAL_KMS_VERSION"
  rm -rf "$LOCAL_KMS_DIR/bin" && mv "$LOCAL_KMS_DIR/bin.tmp" "$LOCAL_KMS_DIR/bin"
fi
[[ -x $LOCAL_KMS_DIR/bin/local-kms ]] || { log "ERROR: local-kms missing after install"; exit 1; }
