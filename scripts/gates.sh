#!/usr/bin/env bash
# The fast gates that run before the test suite (.ci/run via scripts/test.sh,
# SECURITY.md): formatting, clippy with warnings as errors, and cargo-deny
# (licenses, bans, sources, and advisories against the RustSec snapshot in
# ../shared/advisory-db). Each fails the run at once.
#
# and the module graph (scripts/modules.sh: no import circles, and
# docs/architecture.md's layer picture is the code's).
#
# Usage: scripts/gates.sh [fmt|clippy|deny|modules]...   (default: all four)
# Env:   JWKS_ADVISORY_DB  the advisory-db copy to check against
#                          (default ../shared/advisory-db beside the repo)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2

step() { printf '\n--> gate: %s\n' "$*"; }

gate_fmt() {
  step "cargo fmt --all -- --check"
  cargo fmt --all -- --check
}

gate_clippy() {
  step "cargo clippy --all-targets --locked -- -D warnings"
  cargo clippy --all-targets --locked -- -D warnings
}

gate_deny() {
  local bin dbs
  bin=$(bash scripts/install-cargo-tool.sh cargo-deny "$CARGO_DENY_VERSION")
  dbs=$(bash scripts/advisory-db.sh)
  # The offline metadata step needs every crate in the local registry.
  cargo fetch --locked --quiet
  step "cargo deny --offline check (deny.toml; advisory db in $dbs)"
  "$bin/cargo-deny" --color never --offline --locked check --hide-inclusion-graph
}

gate_modules() {
  step "scripts/modules.sh check (cargo-modules and Graphviz)"
  bash scripts/modules.sh check
}

gates=("$@")
[ ${#gates[@]} -gt 0 ] || gates=(fmt clippy deny modules)
for g in "${gates[@]}"; do
  case $g in
    fmt) gate_fmt ;;
    clippy) gate_clippy ;;
    deny) gate_deny ;;
    modules) gate_modules ;;
    *) echo "gates.sh: unknown gate $g (fmt, clippy, deny, modules)" >&2; exit 2 ;;
  esac
done
