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

# The gates first: formatting, clippy and cargo-deny fail the run in minutes,
# before any test tool is built (SECURITY.md).
step "bash scripts/gates.sh"
bash scripts/gates.sh

# Test-only tools, each installed by its own idempotent script.
for installer in tests/interop/install.sh tests/interop/install-verifiers.sh tests/controlplane/build.sh \
    tests/controlplane/cert-manager-crds.sh tests/controlplane/build-prometheus.sh scripts/install-node-deps.sh tests/providers/install.sh; do
  if [ -f "$installer" ]; then
    step "bash $installer"
    bash "$installer"
  fi
done

# Built with cargo auditable, as the release image is, so the binary the
# tests pack carries its dependency list (tests/image.rs, SECURITY.md).
auditable=$(bash scripts/install-cargo-tool.sh cargo-auditable 0.7.7)
step "cargo auditable test --locked"
PATH="$auditable:$PATH" JWKS_REQUIRE_AUDITABLE=1 cargo auditable test --locked "$@"

# A short smoke run of every fuzz target (docs/fuzzing.md). Skipped, with a
# line saying so, on a machine without a nightly toolchain.
step "bash scripts/fuzz.sh ${FUZZ_SMOKE_SECONDS:-5}"
FUZZ_LOG_DIR=${FUZZ_LOG_DIR:-logs} bash scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-5}"
