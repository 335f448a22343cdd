#!/usr/bin/env bash
# Makes the RustSec advisory database snapshot (../shared/advisory-db, see its
# README there) into the git checkout cargo-deny reads, in a cache outside the
# repo, and prints the parent directory (deny.toml's `db-path`). cargo-deny
# only reads a database from `<db-path>/advisory-db-<hash of its URL>`; the
# URL stays upstream's, so the name is the one cargo-deny itself computes.
# Idempotent: the checkout is rebuilt only when the snapshot's content changes.
set -euo pipefail
cd "$(dirname "$0")/.."

src=${JWKS_ADVISORY_DB:-../shared/advisory-db}
dbs=${JWKS_ADVISORY_DBS:-$HOME/.cache/jwks-operator/advisory-dbs}
# cargo-deny's directory name for https://github.com/rustsec/advisory-db.
dest=$dbs/advisory-db-3157b0e258782691

[ -d "$src/crates" ] || {
  echo "advisory-db.sh: no advisory database at $src (expected the RustSec snapshot beside the repo, ../shared/advisory-db)" >&2
  exit 1
}
# A stamp of the snapshot's content: file names and sizes are enough to see a
# refresh, and cost a fraction of a second.
stamp=$(cd "$src" && find . -type f -printf '%p %s\n' | LC_ALL=C sort | sha256sum | cut -c1-16)
if [ "$(cat "$dest/.jwks-stamp" 2>/dev/null)" != "$stamp" ]; then
  mkdir -p "$dbs"
  exec 9>"$dbs/.lock"
  flock 9
  rm -rf "$dest.tmp"
  cp -r "$src" "$dest.tmp"
  chmod -R u+w "$dest.tmp"
  (
    cd "$dest.tmp"
    git init -q -b main
    git add -A
    git -c user.name=jwks-operator -c user.email=ci@invalid -c commit.gpgsign=false \
      commit -q -m "RustSec advisory-db snapshot" --date=2026-08-21T00:00:00Z
  )
  echo "$stamp" > "$dest.tmp/.jwks-stamp"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
fi
echo "$dbs"
