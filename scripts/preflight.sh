#!/usr/bin/env bash
# The first step of scripts/test.sh: checks, in a few seconds, what the test
# run needs and the project's installers cannot install themselves (the
# toolchains, root, disk space, and the registries the installers download
# from), and prints ONE list of what is missing, each with the command that
# installs it. Exits 1 when anything is missing, before any long build.
#
# What the installers do install (the PyJWT venv, npm modules, the Go-built
# control plane, containerd/runc/iptables from Debian) is not required up
# front; only the registry each one downloads from is, and only while what it
# installs is not there yet.
#
# Usage: bash scripts/preflight.sh
# Env:   JWKS_PREFLIGHT_SKIP=1  skip every check (prints one line saying so)
#        GO                     the go binary (as tests/controlplane/go-env.sh)
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${JWKS_PREFLIGHT_SKIP:-}" == 1 ]]; then
  echo "preflight: skipped (JWKS_PREFLIGHT_SKIP=1)"
  exit 0
fi

# ---- what is required ---------------------------------------------------------
RUST_MIN=$(sed -nE 's/^rust-version *= *"([0-9.]+)"/\1/p' Cargo.toml)   # 1.89
GO_MIN_MINOR=$(sed -nE 's/^MIN_GO_MINOR=([0-9]+).*/\1/p' tests/controlplane/build.sh)   # 26
NODE_MIN_MAJOR=20
PYTHON_MIN_MINOR=9
# Disk the first (cold) run fills, in GiB: cargo's target dir, and
# ~/.cache/jwks-operator (Go module and build caches, the control plane,
# Prometheus, npm, the venv). What is already there counts.
TARGET_GIB=14
CACHE_GIB=10

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/jwks-operator
TARGET=${CARGO_TARGET_DIR:-target}

missing=()   # "what|command that installs it"
notes=()
miss() { missing+=("$1|$2"); }

# version_ge A B: A >= B for dotted versions.
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

# ---- Rust and a C compiler (the build itself) ---------------------------------
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
  miss "Rust >= $RUST_MIN (cargo, rustc)" \
       "curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal"
else
  rust_v=$(rustc --version 2>/dev/null | awk '{print $2}')
  if ! version_ge "${rust_v%%-*}" "$RUST_MIN"; then
    miss "Rust >= $RUST_MIN (found rustc $rust_v at $(command -v rustc); a distribution's packaged rustc is usually older)" \
         "rustup toolchain install stable && rustup default stable   (no rustup: curl --proto '=https' -sSf https://sh.rustup.rs | sh)"
  fi
fi
if ! command -v "${CC:-cc}" >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1 && ! command -v clang >/dev/null 2>&1; then
  miss "a C compiler (aws-lc and mimalloc are built from C)" "apt-get install -y build-essential   (Fedora: dnf install gcc make)"
fi

# ---- Go (tests/controlplane/build.sh builds the control plane with it) --------
GO=${GO:-}
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  fi
fi
go_install="curl -fsSL https://go.dev/dl/go1.$GO_MIN_MINOR.0.linux-amd64.tar.gz | tar -C /usr/local -xz   (then /usr/local/go/bin is found)"
if [[ -z "$GO" ]]; then
  miss "Go >= 1.$GO_MIN_MINOR (builds kube-apiserver, etcd, helm, kubelet for the tests)" "$go_install"
else
  go_v=$("$GO" env GOVERSION 2>/dev/null)
  go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_v")
  if ! [[ "$go_minor" =~ ^[0-9]+$ && "$go_minor" -ge "$GO_MIN_MINOR" ]]; then
    miss "Go >= 1.$GO_MIN_MINOR (found ${go_v:-nothing runnable} at $GO)" "$go_install"
  fi
fi

# ---- Node.js with npm (tests/interop/install*.sh) -----------------------------
node_install="apt-get install -y nodejs npm   (Debian 13 ships Node 20; elsewhere: https://nodejs.org/en/download)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  miss "Node.js >= $NODE_MIN_MAJOR with npm (the jose and node-jose interop tests)" "$node_install"
else
  node_major=$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/')
  if ! [[ "$node_major" =~ ^[0-9]+$ && "$node_major" -ge "$NODE_MIN_MAJOR" ]]; then
    miss "Node.js >= $NODE_MIN_MAJOR (found $(node --version 2>/dev/null))" "$node_install"
  fi
fi

# ---- Python 3 with venv (tests/interop/install-verifiers.sh) ------------------
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  miss "Python >= 3.$PYTHON_MIN_MINOR with venv (the PyJWT interop tests)" "apt-get install -y python3 python3-venv"
elif ! "$python" -c "import sys; sys.exit(sys.version_info < (3, $PYTHON_MIN_MINOR))" 2>/dev/null; then
  miss "Python >= 3.$PYTHON_MIN_MINOR (found $("$python" --version 2>&1))" "apt-get install -y python3 python3-venv"
elif ! "$python" -c "import venv, ensurepip" 2>/dev/null; then
  miss "Python's venv module with ensurepip (python3-venv)" "apt-get install -y python3-venv"
fi

# ---- root (the real-node tests: namespaces, mounts, containerd) ---------------
if [[ $(id -u) != 0 ]]; then
  miss "root (tests/node_e2e.rs and node_signer.rs run kubelet and containerd; scripts/install-node-deps.sh installs them with apt-get)" \
       "sudo -E bash scripts/test.sh"
fi

# ---- disk ---------------------------------------------------------------------
# kib_used DIR: what DIR already holds (0 when absent).
kib_used() { [[ -d "$1" ]] && du -sk "$1" 2>/dev/null | awk '{print $1}' || echo 0; }
# kib_free DIR: free space on the file system that holds DIR (or its parent).
kib_free() {
  local d=$1
  while [[ ! -d "$d" ]]; do d=$(dirname "$d"); done
  df -Pk "$d" | awk 'NR == 2 {print $4}'
}
# du takes seconds on a warm target dir: only counted when the free space
# alone is short of a cold run's.
need_target=$(( TARGET_GIB * 1048576 ))
need_cache=$(( CACHE_GIB * 1048576 ))
(( $(kib_free "$TARGET") < need_target + need_cache )) && need_target=$(( need_target - $(kib_used "$TARGET") ))
(( $(kib_free "$CACHE") < need_target + need_cache )) && need_cache=$(( need_cache - $(kib_used "$CACHE") ))
(( need_target < 0 )) && need_target=0
(( need_cache < 0 )) && need_cache=0
mkdir -p "$CACHE" 2>/dev/null
dev_of() { local d=$1; while [[ ! -d "$d" ]]; do d=$(dirname "$d"); done; df -P "$d" | awk 'NR == 2 {print $1}'; }
if [[ "$(dev_of "$TARGET")" == "$(dev_of "$CACHE")" ]]; then
  need=$(( need_target + need_cache )); free=$(kib_free "$CACHE")
  if (( free < need )); then
    miss "disk: $(( need / 1048576 + 1 )) GiB more free space where $TARGET and $CACHE live (found $(( free / 1048576 )) GiB; a cold run fills about $(( TARGET_GIB + CACHE_GIB )) GiB)" \
         "free space there, or point CARGO_TARGET_DIR and XDG_CACHE_HOME at a larger disk"
  fi
else
  for pair in "$TARGET:$need_target:CARGO_TARGET_DIR" "$CACHE:$need_cache:XDG_CACHE_HOME"; do
    IFS=: read -r dir need var <<<"$pair"
    free=$(kib_free "$dir")
    if (( free < need )); then
      miss "disk: $(( need / 1048576 + 1 )) GiB free for $dir (found $(( free / 1048576 )) GiB)" \
           "free space there, or point $var at a larger disk"
    fi
  done
fi

# ---- registries: only those something still has to be downloaded from ---------
reachable() { curl -s -o /dev/null --max-time 5 -I "$1" 2>/dev/null; }
declare -A probes=()   # url -> "what it installs|already installed? (1/0)"
have_dir() { [[ -n "$(ls -A "$1" 2>/dev/null)" ]] && echo 1 || echo 0; }
crates=https://index.crates.io/config.json
probes[$crates]="crates (cargo)|$(have_dir "$HOME/.cargo/registry/cache")"
goproxy=$( [[ -n "$GO" ]] && "$GO" env GOPROXY 2>/dev/null | cut -d, -f1 )
[[ -z "$goproxy" || "$goproxy" == direct || "$goproxy" == off ]] && goproxy=https://proxy.golang.org
probes[$goproxy/]="the Go modules of tests/controlplane|$(have_dir "$CACHE/controlplane")"
npm_registry=$(command -v npm >/dev/null 2>&1 && npm config get registry 2>/dev/null)
probes[${npm_registry:-https://registry.npmjs.org/}]="npm jose and node-jose|$( [[ -d tests/interop/node/node_modules && -d tests/interop/jose/node_modules ]] && echo 1 || echo 0)"
pip_index=${PIP_INDEX_URL:-https://pypi.org/simple/}
probes[$pip_index]="PyJWT and cryptography|$( [[ -x "$CACHE/venv/bin/python" ]] && echo 1 || echo 0)"
node_pkgs_missing=0
for pkg in containerd runc iptables softhsm2 opensc graphviz; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || node_pkgs_missing=1
done
if ((node_pkgs_missing)) && command -v apt-get >/dev/null 2>&1; then
  # The first source apt uses (one-line `deb URL ...` or deb822 `URIs: URL`).
  deb=$(grep -hE '^[[:space:]]*(deb|URIs:)[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -oE 'https?://[^ ]+' | head -n1)
  [[ -n "$deb" ]] && deb=${deb%/}/
  probes[${deb:-http://deb.debian.org/debian/}]="containerd, runc, iptables (scripts/install-node-deps.sh), softhsm2 and opensc (tests/providers/install.sh), graphviz (scripts/modules.sh) from Debian (apt-get)|0"
fi
# In parallel: a few seconds at most, whatever answers.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
i=0
for url in "${!probes[@]}"; do
  ( reachable "$url" && touch "$tmp/$i.ok" ) & echo "$url" >"$tmp/$i.url"; i=$((i + 1))
done
wait
for ((j = 0; j < i; j++)); do
  url=$(cat "$tmp/$j.url")
  IFS='|' read -r what installed <<<"${probes[$url]}"
  if [[ ! -e "$tmp/$j.ok" ]]; then
    if [[ "$installed" == 1 ]]; then
      notes+=("$url is not reachable; $what are already installed, so this run may work offline")
    else
      miss "network: $url (to download $what) is not reachable" \
           "check the network or proxy (HTTPS_PROXY); or install what it provides from another machine's $CACHE"
    fi
  fi
done

# ---- the one list -------------------------------------------------------------
for n in "${notes[@]}"; do echo "preflight: note: $n"; done
if ((${#missing[@]})); then
  echo "preflight: the test run cannot start; missing:"
  for m in "${missing[@]}"; do
    IFS='|' read -r what how <<<"$m"
    printf '  - %s\n      install: %s\n' "$what" "$how"
  done
  echo "(README.md, \"Run the tests\", lists the prerequisites; JWKS_PREFLIGHT_SKIP=1 skips this check)"
  exit 1
fi
echo "preflight: Rust ${rust_v:-?}, C compiler, ${go_v:-Go ?}, Node $(node --version 2>/dev/null), $("$python" --version 2>&1) with venv, root, disk and registries: ok"
