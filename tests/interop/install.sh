#!/usr/bin/env sh
# Installs the npm packages the interop tests need (node-jose for
# tests/node_jose.rs), exactly as pinned in node/package-lock.json.
# Idempotent: does nothing when node_modules already matches the lock file.
# The npm cache lives outside the repository.
set -eu

cd "$(dirname "$0")/node"
export npm_config_cache="${npm_config_cache:-$HOME/.cache/jwks-operator/npm}"

if ! command -v npm >/dev/null 2>&1; then
    echo "install.sh: npm not found; install Node.js (>= 18) to run the node-jose interop tests" >&2
    exit 1
fi

if [ -f node_modules/node-jose/package.json ] &&
    [ node_modules/.package-lock.json -nt package-lock.json ]; then
    echo "tests/interop/node: node_modules up to date"
    exit 0
fi

npm ci --no-audit --no-fund
