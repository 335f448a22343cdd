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

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    log "missing Debian packages: ${missing[*]}; run as root or: apt-get install ${missing[*]}"
    exit 1
  fi
  log "installing ${missing[*]} from Debian ..."
  start=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  # Waits for dpkg's lock: scripts/test.sh runs the installers in parallel,
  # and scripts/install-node-deps.sh may be using apt at the same time.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
  log "installed in $((SECONDS - start))s"
else
  log "softhsm2, opensc: present"
fi

[[ -f $MODULE ]] || { log "ERROR: $MODULE missing after install"; exit 1; }
for cmd in softhsm2-util pkcs11-tool; do
  command -v "$cmd" >/dev/null || { log "ERROR: $cmd not on PATH after install"; exit 1; }
done
