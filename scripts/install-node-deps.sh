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

bash "$(dirname "$0")/apt-install.sh" node-deps "${PACKAGES[@]}"

PATH=$PATH:/usr/sbin:/sbin
for cmd in "${COMMANDS[@]}"; do
  command -v "$cmd" >/dev/null || { log "ERROR: $cmd not on PATH after install"; exit 1; }
done
