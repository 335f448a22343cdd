#!/usr/bin/env bash
# Installs Debian packages once: those of PKG... not yet installed, with
# apt-get, without recommends, waiting for dpkg's lock (scripts/test.sh runs
# the installers in parallel, and more than one of them may use apt).
# Idempotent: with every package present it does nothing.
#
# Usage: scripts/apt-install.sh TAG PKG...   (TAG prefixes the log lines)
set -euo pipefail

tag=${1:?usage: apt-install.sh TAG PKG...}
shift
log() { printf '[%s] %s\n' "$tag" "$*" >&2; }

missing=()
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  log "$*: present"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  log "missing Debian packages: ${missing[*]}; run as root or: apt-get install ${missing[*]}"
  exit 1
fi
log "installing ${missing[*]} from Debian ..."
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
log "installed in $((SECONDS - start))s"
