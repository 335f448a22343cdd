#!/usr/bin/env bash
# The project's test command (README "Run the tests"): installs what the tests
# need (idempotently, cached outside the repo) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every step says how long the run has taken so far: CONTRIBUTING.md's
# table of where a cold run's time goes is read off these lines.
started=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

# First, in seconds: what this run needs that the installers below cannot
# install (toolchains, root, disk, registries), as one list; exits if any.
step "bash scripts/preflight.sh"
bash scripts/preflight.sh

# The gates first: formatting, clippy and cargo-deny fail the run in minutes,
# before any test tool is built (SECURITY.md).
step "bash scripts/gates.sh"
bash scripts/gates.sh

# Test-only tools, each installed by its own idempotent script, all at once:
# they are independent (the Go builds share their module and build caches,
# which Go locks), and a cold run overlaps their downloads and compiles.
# Each one's output goes to a log, printed when it fails.
installers=(tests/interop/install.sh tests/interop/install-verifiers.sh tests/controlplane/build.sh
  tests/controlplane/cert-manager-crds.sh tests/controlplane/build-prometheus.sh scripts/install-node-deps.sh
  tests/publish/install.sh tests/providers/install.sh)
install_logs=${INSTALL_LOG_DIR:-logs/install}
mkdir -p "$install_logs"
step "installers, in parallel: ${installers[*]} (logs in $install_logs/)"
pids=()
for installer in "${installers[@]}"; do
  log="$install_logs/$(echo "$installer" | tr / _).log"
  ( t0=$SECONDS; bash "$installer" >"$log" 2>&1; rc=$?; echo "[installer exit $rc after $((SECONDS - t0))s]" >>"$log"; exit $rc ) &
  pids+=($!)
done
failed=0
for i in "${!installers[@]}"; do
  log="$install_logs/$(echo "${installers[$i]}" | tr / _).log"
  if wait "${pids[$i]}"; then
    printf '    %-44s %s\n' "${installers[$i]}" "$(tail -n1 "$log")"
  else
    printf '    %-44s FAILED; its log:\n' "${installers[$i]}"
    sed 's/^/      /' "$log"
    failed=1
  fi
done
[ $failed -eq 0 ] || exit 1

# Built with cargo auditable, as the release image is, so the binary the
# tests pack carries its dependency list (tests/image.rs, SECURITY.md).
auditable=$(bash scripts/install-cargo-tool.sh cargo-auditable 0.7.7)
step "cargo auditable test --locked"
PATH="$auditable:$PATH" JWKS_REQUIRE_AUDITABLE=1 cargo auditable test --locked "$@"

# A short smoke run of every fuzz target (docs/fuzzing.md). Skipped, with a
# line saying so, on a machine without a nightly toolchain.
step "bash scripts/fuzz.sh ${FUZZ_SMOKE_SECONDS:-5}"
FUZZ_LOG_DIR=${FUZZ_LOG_DIR:-logs} bash scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-5}"
step "done"
