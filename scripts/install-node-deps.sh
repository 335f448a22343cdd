#!/usr/bin/env bash
# Installs what the real-node tests (tests/node_e2e.rs) run besides the Go
# binaries of tests/controlplane/build.sh: containerd, runc and iptables from
# Debian. Idempotent: apt-get runs only when one of them is missing.
#
# Usage: bash scripts/install-node-deps.sh     (root; called by scripts/test.sh)
set -euo pipefail

PACKAGES=(containerd runc iptables)
# The commands the node harness runs, by package.
COMMANDS=(containerd containerd-shim-runc-v2 ctr runc iptables)

log() { printf '[node-deps] %s\n' "$*" >&2; }

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
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  # No recommends: containerd would pull in nothing the tests need.
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
  log "installed in $((SECONDS - start))s"
else
  log "containerd, runc, iptables: present"
fi

PATH=$PATH:/usr/sbin:/sbin
for cmd in "${COMMANDS[@]}"; do
  command -v "$cmd" >/dev/null || { log "ERROR: $cmd not on PATH after install"; exit 1; }
done
