#!/usr/bin/env bash
# Key-material speed, ours against OpenSSL on the same machine in the same run.
#
#   benches/openssl_reference.sh                 # openssl, then our criterion bench, then a table
#   benches/openssl_reference.sh --openssl-only  # only the openssl reference numbers
#   benches/openssl_reference.sh -- <criterion args>   # e.g. -- sign/RS256
#   benches/openssl_reference.sh --rounds 5      # only the three targets, interleaved
#
# --rounds N measures just the targets (RSA-2048 keygen, RS256 sign, RS256
# verify) N times, openssl and ours back to back in each round, and reports
# the ratio per round and the median ratio. On a shared machine this is the
# robust form: both sides of each ratio see the same background load.
#
# Both sides are pinned to one CPU (taskset -c $CPU) so "per core" numbers
# compare like with like, and both count CPU time rather than wall-clock
# time, so background load on a shared machine does not skew the ratio:
# `openssl speed` divides by CPU user time (its default), `openssl genpkey` is
# timed as user+sys CPU time of the process (including process start-up), and
# the criterion bench measures its thread's CPU time. Results go to .bench-out/ (git-ignored):
# openssl.env (raw numbers) and summary.md (the table for BENCHMARKS.md).
#
# Environment: CPU (default 1), SPEED_SECONDS (openssl speed seconds per
# test, default 3), GENPKEY_RUNS (openssl genpkey repetitions, default 31).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=.bench-out
mkdir -p "$OUT"
CPU=${CPU:-1}
SPEED_SECONDS=${SPEED_SECONDS:-3}
GENPKEY_RUNS=${GENPKEY_RUNS:-31}

openssl_only=false
rounds=0
criterion_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --openssl-only) openssl_only=true ;;
        --rounds) rounds=$2; shift ;;
        --) shift; criterion_args=("$@"); break ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

PIN=()
if command -v taskset >/dev/null 2>&1 && taskset -c "$CPU" true 2>/dev/null; then
    PIN=(taskset -c "$CPU")
else
    echo "note: taskset unavailable or CPU $CPU not usable; running unpinned" >&2
fi

# Prints the CPU time (user+sys, microseconds) of each of $GENPKEY_RUNS
# `openssl genpkey` RSA-2048 runs, one per line.
genpkey_cpu_us() {
    local TIMEFORMAT='%3U %3S' t
    for _ in $(seq "$GENPKEY_RUNS"); do
        t=$({ time "${PIN[@]}" openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out /dev/null 2>/dev/null; } 2>&1)
        echo "$t" | awk '{printf "%d\n", ($1 + $2) * 1000000}'
    done
}

echo "== machine"
{
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) CPUs), pinned: ${PIN[*]:-no}"
    echo "kernel: $(uname -sr)"
    echo "openssl: $(openssl version)"
    echo "rustc: $(rustc --version)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt"

if [ "$rounds" -gt 0 ]; then
    cargo bench --bench keys --no-run
    : > "$OUT/rounds.tsv"
    for r in $(seq "$rounds"); do
        echo "== round $r/$rounds (load $(cut -d' ' -f1 /proc/loadavg))"
        line=$("${PIN[@]}" openssl speed -seconds "$SPEED_SECONDS" rsa2048 2>/dev/null | grep '^rsa 2048 bits')
        sign=$(echo "$line" | awk '{print $(NF-1)}')
        verify=$(echo "$line" | awk '{print $NF}')
        genpkey=$(genpkey_cpu_us | sort -n | awk -v n="$GENPKEY_RUNS" 'NR == int((n + 1) / 2) {print}')
        "${PIN[@]}" cargo bench --bench keys -- '^(keygen/RSA-2048|sign/RS256|verify/RS256)$' >/dev/null 2>&1
        ours() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' "target/criterion/$1/new/estimates.json"; }
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$sign" "$verify" "$genpkey" \
            "$(ours sign/RS256)" "$(ours verify/RS256)" "$(ours keygen/RSA-2048)" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/rounds.tsv"
    done
    python3 - "$OUT" <<'PY'
import os, statistics, sys
out = sys.argv[1]
rows = [l.split("\t") for l in open(os.path.join(out, "rounds.tsv")) if l.strip()]
lines = ["| round | openssl sign/s | ours sign/s | ratio (>= 0.9) | openssl verify/s | ours verify/s | ratio (>= 0.8) | genpkey median | ours keygen median | ratio (<= 0.5) | load after |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
ratios = {"sign": [], "verify": [], "keygen": []}
for r, sign, verify, genpkey_us, sign_ns, verify_ns, keygen_ns, load in rows:
    s_ours, v_ours = 1e9 / float(sign_ns), 1e9 / float(verify_ns)
    g_ms, k_ms = float(genpkey_us) / 1e3, float(keygen_ns) / 1e6
    rs, rv, rk = s_ours / float(sign), v_ours / float(verify), k_ms / g_ms
    ratios["sign"].append(rs); ratios["verify"].append(rv); ratios["keygen"].append(rk)
    lines.append(f"| {r} | {float(sign):,.0f} | {s_ours:,.0f} | {rs:.2f}x | {float(verify):,.0f} | {v_ours:,.0f} | {rv:.2f}x | {g_ms:.1f} ms | {k_ms:.1f} ms | {rk:.2f}x | {load.strip()} |")
med = {k: statistics.median(v) for k, v in ratios.items()}
lines.append(f"| **median** | | | **{med['sign']:.2f}x** {'pass' if med['sign'] >= 0.9 else 'FAIL'} | | | **{med['verify']:.2f}x** {'pass' if med['verify'] >= 0.8 else 'FAIL'} | | | **{med['keygen']:.2f}x** {'pass' if med['keygen'] <= 0.5 else 'FAIL'} | |")
table = "\n".join(lines)
print(table)
open(os.path.join(out, "rounds.md"), "w").write(table + "\n")
PY
    exit 0
fi

echo "== openssl speed -seconds $SPEED_SECONDS rsa2048 ecdsap256 ecdsap384 ed25519"
speed=$("${PIN[@]}" openssl speed -seconds "$SPEED_SECONDS" rsa2048 ecdsap256 ecdsap384 ed25519 2>/dev/null)
echo "$speed" | grep -E 'sign/s|bits' | tee "$OUT/openssl-speed.txt"
# The last two columns of each result line are sign/s and verify/s.
field() { echo "$speed" | grep -E "$1" | head -1 | awk '{print $(NF-'"$2"')}'; }
rsa_sign=$(field '^rsa 2048 bits' 1)
rsa_verify=$(field '^rsa 2048 bits' 0)
p256_sign=$(field 'ecdsa \(nistp256\)' 1)
p256_verify=$(field 'ecdsa \(nistp256\)' 0)
p384_sign=$(field 'ecdsa \(nistp384\)' 1)
p384_verify=$(field 'ecdsa \(nistp384\)' 0)
ed_sign=$(field 'EdDSA \(Ed25519\)' 1)
ed_verify=$(field 'EdDSA \(Ed25519\)' 0)

echo "== openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048, $GENPKEY_RUNS runs (CPU time)"
sorted=$(genpkey_cpu_us | sort -n)
genpkey_median_us=$(echo "$sorted" | awk -v n="$GENPKEY_RUNS" 'NR == int((n + 1) / 2) {print}')
genpkey_min_us=$(echo "$sorted" | head -1)
genpkey_max_us=$(echo "$sorted" | tail -1)
echo "median ${genpkey_median_us} us CPU (min ${genpkey_min_us}, max ${genpkey_max_us}; includes process start)"

cat > "$OUT/openssl.env" <<EOF
rsa2048_sign_per_s=$rsa_sign
rsa2048_verify_per_s=$rsa_verify
p256_sign_per_s=$p256_sign
p256_verify_per_s=$p256_verify
p384_sign_per_s=$p384_sign
p384_verify_per_s=$p384_verify
ed25519_sign_per_s=$ed_sign
ed25519_verify_per_s=$ed_verify
genpkey_rsa2048_median_us=$genpkey_median_us
genpkey_rsa2048_min_us=$genpkey_min_us
genpkey_rsa2048_max_us=$genpkey_max_us
EOF

if $openssl_only; then
    exit 0
fi

echo "== cargo bench --bench keys (build unpinned, run pinned)"
cargo bench --bench keys --no-run
"${PIN[@]}" cargo bench --bench keys -- "${criterion_args[@]}"

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
echo "== summary"
python3 - "$OUT" <<'PY'
import json, os, sys

out = sys.argv[1]
env = dict(l.strip().split("=", 1) for l in open(os.path.join(out, "openssl.env")) if "=" in l)
ssl = {k: float(v) for k, v in env.items()}

def median_ns(group, name):
    path = os.path.join("target", "criterion", group, name, "new", "estimates.json")
    try:
        return json.load(open(path))["median"]["point_estimate"]
    except FileNotFoundError:
        return None

rows = []
def rate_row(what, group, name, ref_key, target):
    ns = median_ns(group, name)
    if ns is None:
        return
    ours = 1e9 / ns
    ref = ssl[ref_key]
    ratio = ours / ref
    verdict = "" if target is None else ("pass" if ratio >= target else "FAIL")
    tgt = "info" if target is None else f">= {target}x"
    rows.append((what, f"{ours:,.0f}/s", f"{ref:,.0f}/s", f"{ratio:.2f}x", tgt, verdict))

ns = median_ns("keygen", "RSA-2048")
if ns is not None:
    ours_ms = ns / 1e6
    ref_ms = ssl["genpkey_rsa2048_median_us"] / 1e3
    ratio = ours_ms / ref_ms
    rows.append(("RSA-2048 keygen (median)", f"{ours_ms:.1f} ms", f"{ref_ms:.1f} ms",
                 f"{ratio:.2f}x", "<= 0.5x", "pass" if ratio <= 0.5 else "FAIL"))
rate_row("RS256 sign", "sign", "RS256", "rsa2048_sign_per_s", 0.9)
rate_row("RS256 verify (whole token, Verifier)", "verify", "RS256", "rsa2048_verify_per_s", 0.8)
rate_row("RS256 verify (signature only)", "verify-signature-only", "RS256", "rsa2048_verify_per_s", None)
rate_row("RS256 sign, jsonwebtoken::encode re-parsing the key", "sign", "RS256-jsonwebtoken-encode-reparsing", "rsa2048_sign_per_s", None)
rate_row("ES256 sign", "sign", "ES256", "p256_sign_per_s", None)
rate_row("ES256 verify (whole token)", "verify", "ES256", "p256_verify_per_s", None)
rate_row("ES384 sign", "sign", "ES384", "p384_sign_per_s", None)
rate_row("ES384 verify (whole token)", "verify", "ES384", "p384_verify_per_s", None)
rate_row("EdDSA sign", "sign", "EdDSA", "ed25519_sign_per_s", None)
rate_row("EdDSA verify (whole token)", "verify", "EdDSA", "ed25519_verify_per_s", None)

lines = ["| measurement | ours | openssl | ratio | target | result |", "|---|---|---|---|---|---|"]
lines += ["| " + " | ".join(r) + " |" for r in rows]
table = "\n".join(lines)
print(table)
open(os.path.join(out, "summary.md"), "w").write(table + "\n")
PY
