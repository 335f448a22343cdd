#!/usr/bin/env sh
# Installs the third-party JWT libraries the interoperability tests
# (tests/interop_verifiers.rs) drive: PyJWT (with `cryptography`) in a venv,
# and the npm `jose` package, exactly as pinned in python/requirements.txt and
# jose/package-lock.json.
#
# Idempotent and cached outside the repository:
#   venv       $HOME/.cache/jwks-operator/venv   (override: JWKS_OPERATOR_VENV)
#   npm cache  $HOME/.cache/jwks-operator/npm
# Does nothing when both are already up to date.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/jwks-operator"
venv="${JWKS_OPERATOR_VENV:-$cache/venv}"
export npm_config_cache="${npm_config_cache:-$cache/npm}"

# --- PyJWT --------------------------------------------------------------
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "install-verifiers.sh: $python not found; install Python >= 3.9 (with venv) to run the PyJWT interop tests" >&2
    exit 1
fi
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$here/python/requirements.txt"; then
    echo "PyJWT venv up to date: $venv"
else
    echo "creating the PyJWT venv in $venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
    cp "$here/python/requirements.txt" "$stamp"
fi
"$venv/bin/python" -c 'import jwt, cryptography; print("PyJWT", jwt.__version__, "cryptography", cryptography.__version__)'

# --- npm jose -----------------------------------------------------------
if ! command -v npm >/dev/null 2>&1; then
    echo "install-verifiers.sh: npm not found; install Node.js (>= 20) to run the jose interop tests" >&2
    exit 1
fi
cd "$here/jose"
if [ -f node_modules/jose/package.json ] &&
    [ node_modules/.package-lock.json -nt package-lock.json ]; then
    echo "tests/interop/jose: node_modules up to date"
else
    npm ci --no-audit --no-fund
fi
node -e 'import("jose").then(() => console.log("jose", require("./node_modules/jose/package.json").version))'
