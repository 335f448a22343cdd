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
