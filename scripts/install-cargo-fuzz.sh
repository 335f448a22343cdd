#!/usr/bin/env bash
# Installs cargo-fuzz (crates.io, --locked) under ~/.cache/jwks-operator, once.
# Prints the directory holding the `cargo-fuzz` binary. Idempotent: a second
# run with the binary present does nothing. Needs no nightly toolchain itself
# (cargo-fuzz builds with stable); running fuzz targets does.
set -euo pipefail

version=0.13.2
root="${JWKS_CACHE:-$HOME/.cache/jwks-operator}/cargo-fuzz-$version"
bin="$root/bin/cargo-fuzz"
if [ ! -x "$bin" ]; then
  mkdir -p "$root"
  exec 9>"$root.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    nice -n 10 cargo install cargo-fuzz --version "$version" --locked --root "$root" >&2
  fi
fi
echo "$root/bin"
