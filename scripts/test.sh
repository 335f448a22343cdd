#!/usr/bin/env bash
# The project's test command (README "Run the tests"): installs what the tests
# need (idempotently, cached outside the repo) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# First, in seconds: what this run needs that the installers below cannot
# install (toolchains, root, disk, registries), as one list; exits if any.
step "bash scripts/preflight.sh"
bash scripts/preflight.sh

# Test-only tools, each installed by its own idempotent script.
for installer in tests/interop/install.sh tests/interop/install-verifiers.sh tests/controlplane/build.sh \
    tests/controlplane/cert-manager-crds.sh tests/controlplane/build-prometheus.sh scripts/install-node-deps.sh; do
  if [ -f "$installer" ]; then
    step "bash $installer"
    bash "$installer"
  fi
done

step "cargo test --locked"
cargo test --locked "$@"

# A short smoke run of every fuzz target (docs/fuzzing.md). Skipped, with a
# line saying so, on a machine without a nightly toolchain.
step "bash scripts/fuzz.sh ${FUZZ_SMOKE_SECONDS:-5}"
FUZZ_LOG_DIR=${FUZZ_LOG_DIR:-logs} bash scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-5}"
