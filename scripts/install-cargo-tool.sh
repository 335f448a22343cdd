#!/usr/bin/env bash
# Installs one cargo subcommand from crates.io (--locked, a pinned version)
# under ~/.cache/jwks-operator/<name>-<version>, once, and prints the
# directory holding its binary. Idempotent and safe to run concurrently (a
# lock per tool): a second run with the binary present does nothing.
#
# Usage: scripts/install-cargo-tool.sh NAME VERSION [BINARY]
#   BINARY defaults to NAME (the executable cargo install puts in bin/).
# The pinned versions live with their callers: scripts/fuzz.sh (cargo-fuzz),
# scripts/gates.sh (cargo-deny), scripts/build-image.sh (cargo-auditable,
# cargo-cyclonedx).
set -euo pipefail

name=${1:?usage: install-cargo-tool.sh NAME VERSION [BINARY]}
version=${2:?usage: install-cargo-tool.sh NAME VERSION [BINARY]}
binary=${3:-$name}
root="${JWKS_CACHE:-$HOME/.cache/jwks-operator}/$name-$version"
bin="$root/bin/$binary"
if [ ! -x "$bin" ]; then
  mkdir -p "$root"
  exec 9>"$root.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    printf '[install-cargo-tool] cargo install %s %s (once; cached in %s)\n' "$name" "$version" "$root" >&2
    nice -n 10 cargo install "$name" --version "$version" --locked --root "$root" >&2
  fi
fi
echo "$root/bin"
