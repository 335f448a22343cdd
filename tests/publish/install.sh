#!/usr/bin/env sh
# Installs the object-storage test servers the publication tests
# (tests/publication.rs) start on 127.0.0.1:
#   moto's S3 server, pinned in requirements.txt, in its own venv;
#   Azurite (Azure Blob), pinned below: 3.35.0 is the newest release whose
#   `engines` accepts Node 20 (3.36 wants >= 21, 3.37 >= 22).
#
# Idempotent and cached outside the repository:
#   venv     $HOME/.cache/jwks-operator/moto-venv     (override: JWKS_OPERATOR_MOTO_VENV)
#   azurite  $HOME/.cache/jwks-operator/azurite-<v>/  (node_modules/.bin/azurite-blob)
# Does nothing when both are already installed.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/jwks-operator"
venv="${JWKS_OPERATOR_MOTO_VENV:-$cache/moto-venv}"
azurite_version=3.35.0
azurite="$cache/azurite-$azurite_version"
export npm_config_cache="${npm_config_cache:-$cache/npm}"

# --- moto ---------------------------------------------------------------
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "publish/install.sh: $python not found; install Python >= 3.9 (with venv) for the S3 publication tests" >&2
    exit 1
fi
stamp="$venv/.requirements"
if [ -x "$venv/bin/moto_server" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$here/requirements.txt"; then
    echo "moto venv up to date: $venv"
else
    echo "creating the moto venv in $venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi
"$venv/bin/python" -c 'import moto, azure.storage.blob; print("moto", moto.__version__, "azure-storage-blob", azure.storage.blob.__version__)'

# --- Azurite ------------------------------------------------------------
if ! command -v npm >/dev/null 2>&1; then
    echo "publish/install.sh: npm not found; install Node.js (>= 18) for the Azure publication tests" >&2
    exit 1
fi
if [ -x "$azurite/node_modules/.bin/azurite-blob" ] &&
    [ -f "$azurite/node_modules/azurite/package.json" ]; then
    echo "azurite $azurite_version up to date: $azurite"
else
    echo "installing azurite $azurite_version in $azurite"
    mkdir -p "$azurite"
    npm install --prefix "$azurite" --no-audit --no-fund --no-save "azurite@$azurite_version"
fi
node -e "console.log('azurite', require('$azurite/node_modules/azurite/package.json').version)"
