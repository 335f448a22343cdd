#!/usr/bin/env bash
# Installs cargo-fuzz (crates.io, --locked) under ~/.cache/jwks-operator, once.
# Prints the directory holding the `cargo-fuzz` binary. Needs no nightly
# toolchain itself (cargo-fuzz builds with stable); running fuzz targets does.
set -euo pipefail
exec bash "$(dirname "$0")/install-cargo-tool.sh" cargo-fuzz 0.13.2
