#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (docs/fuzzing.md).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each target (all of them by default) runs for SECONDS (default 60) on its
# corpus fuzz/corpus/<target>, seeded from the repository's fixtures by the
# `seeds` program. Prints one line per target: executions, corpus size and
# the result. Exits non-zero if any target crashed (the input is saved under
# fuzz/artifacts/<target>/). Logs go to $FUZZ_LOG_DIR (default fuzz/logs).
#
# Needs a nightly Rust toolchain (libFuzzer instrumentation). Without one it
# says so and exits 0, so `scripts/test.sh` stays green on stable-only
# machines; cargo-fuzz itself is installed by scripts/install-cargo-fuzz.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

secs=${1:-60}
[ $# -gt 0 ] && shift

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly Rust toolchain (install one with 'rustup toolchain install nightly')"
  exit 0
fi

PATH="$(bash scripts/install-cargo-fuzz.sh):$PATH"
export PATH

# The instrumented build is kept outside the repository, where cargo keys
# it by content: a fresh clone builds only what changed (CONTRIBUTING.md,
# "Where the time of a run goes").
target_dir=${JWKS_FUZZ_TARGET_DIR:-${JWKS_CACHE:-$HOME/.cache/jwks-operator}/fuzz-target}
mkdir -p "$target_dir"

cd fuzz
cargo +nightly fuzz build --target-dir "$target_dir" >&2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  # `cargo fuzz list` names every binary of fuzz/Cargo.toml, and `seeds`
  # (which writes the corpora) is one of them but not a fuzz target.
  mapfile -t targets < <(cargo +nightly fuzz list | grep -vx seeds)
fi

bin_dir=$target_dir/x86_64-unknown-linux-gnu/release
"$bin_dir/seeds" "$root" corpus
logs=${FUZZ_LOG_DIR:-logs}
mkdir -p "$logs"

failed=0
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  mkdir -p "corpus/$t"
  set +e
  # -rss_limit_mb: each target parses bounded inputs; 2 GiB means a leak.
  cargo +nightly fuzz run --target-dir "$target_dir" "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1 || true)
  corpus=$(find "corpus/$t" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    result="no crash"
  else
    result="FAILED (exit $rc, see fuzz/$log and fuzz/artifacts/$t/)"
    failed=1
  fi
  printf 'fuzz: %-14s %6ss %12s execs %6s corpus  %s\n' "$t" "$secs" "${execs:-?}" "$corpus" "$result"
done
exit $failed
