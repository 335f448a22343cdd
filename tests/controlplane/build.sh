#!/usr/bin/env bash
# Builds a real Kubernetes control plane and node for the integration tests
# from the Go module proxy: kube-apiserver, kube-controller-manager, kubectl,
# kubelet, kube-scheduler, kube-proxy (k8s/ wrapper module), etcd (etcd/
# wrapper), helm (helm/ wrapper), the CNI reference plugins (cni/ wrapper,
# into <bin dir>/cni/) and the pods' sandbox program `pause` (pause/).
# containerd, runc and iptables come from Debian (scripts/install-node-deps.sh).
#
# Usage:  BIN_DIR=$(tests/controlplane/build.sh)
#   stdout: exactly one line, the bin dir (only on success).
#   stderr: progress lines.
# Env:
#   JWKS_CP_CACHE   where binaries go   (default ~/.cache/jwks-operator/controlplane)
#   JWKS_GO_CACHE   GOMODCACHE/GOCACHE  (default ~/.cache/jwks-operator/go)
#   GO              go binary           (default: `go` on PATH, else /usr/local/go/bin/go)
#   JWKS_CP_FORCE=1 rebuild even when the stamps say the binaries are current
# Idempotent: each binary is skipped when its stamp (versions + Go version +
# hash of the wrapper's go.mod/go.sum) matches. Safe to run concurrently
# (serialised with flock).
set -euo pipefail

# ---- pinned versions --------------------------------------------------------
# Must match the wrapper go.mod files (checked below).
K8S_VERSION=v1.35.8          # k8s.io/kubernetes; staging modules at v0.35.8
ETCD_VERSION=v3.6.16         # go.etcd.io/etcd/server/v3
HELM_VERSION=v4.3.1          # helm.sh/helm/v4
CNI_VERSION=v1.9.0           # github.com/containernetworking/plugins
MIN_GO_MINOR=26              # etcd 3.6.16 and helm 4.3 declare `go 1.26.0`

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CP_CACHE=${JWKS_CP_CACHE:-$HOME/.cache/jwks-operator/controlplane}
BIN_DIR=$CP_CACHE/$K8S_VERSION/bin

log() { printf '[controlplane] %s\n' "$*" >&2; }
die() { printf '[controlplane] ERROR: %s\n' "$*" >&2; exit 1; }

# ---- toolchain --------------------------------------------------------------
# shellcheck source=go-env.sh
source "$HERE/go-env.sh"

# ---- sanity: pins in this script match the wrapper modules -----------------
pinned() { grep -qE "^(require)?[[:space:]]*$2 $3( |\$)" "$HERE/$1/go.mod" \
  || die "$1/go.mod does not require $2 $3 (update the pins at the top of build.sh)"; }
pinned k8s  k8s.io/kubernetes         "$K8S_VERSION"
pinned etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
pinned helm helm.sh/helm/v4           "$HELM_VERSION"
pinned cni  github.com/containernetworking/plugins "$CNI_VERSION"
staging=v0.${K8S_VERSION#v1.}
if grep -E '=> k8s.io/' "$HERE/k8s/go.mod" | grep -vqE " $staging\$"; then
  die "k8s/go.mod has staging replaces not at $staging"
fi

mkdir -p "$BIN_DIR/cni"
build_lock "$CP_CACHE/.build.lock"

k8s_major=$(sed -E 's/^v([0-9]+)\..*/\1/' <<<"$K8S_VERSION")
k8s_minor=$(sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/' <<<"$K8S_VERSION")
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$k8s_major"
  K8S_LDFLAGS+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done
ETCD_LDFLAGS="-s -w"
HELM_LDFLAGS="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.metadata="
CNI_LDFLAGS="-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_VERSION"

stamp_key() { # <wrapper dir> <version>
  local sum
  # go.mod, go.sum (absent for pause/: no dependencies) and any local sources.
  sum=$(cd "$HERE/$1" && cat go.mod $(ls go.sum *.go 2>/dev/null) | sha256sum | cut -c1-16)
  printf '%s %s %s %s\n' "$2" "$GO_VERSION" "$sum" "$(uname -m)"
}

# build_one <binary name> <wrapper dir> <version> <package> <ldflags>
build_one() {
  local name=$1 mod=$2 version=$3 pkg=$4 ldflags=$5
  local out=$BIN_DIR/$name key
  local stamp
  stamp=$(dirname "$out")/.$(basename "$out").stamp
  key=$(stamp_key "$mod" "$version")
  if [[ "${JWKS_CP_FORCE:-0}" != 1 && -x "$out" && -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
    log "$name $version: up to date, skipping"
    return 0
  fi
  log "building $name $version ..."
  local start=$SECONDS tmp=$out.tmp.$$
  rm -f "$stamp"
  if ! (cd "$HERE/$mod" && "$GO" build -trimpath -tags grpcnotrace \
          -ldflags "$ldflags" -o "$tmp" "$pkg") >&2; then
    rm -f "$tmp"
    die "go build of $name ($pkg, module $HERE/$mod) failed; see the compiler output above"
  fi
  mv -f "$tmp" "$out"
  printf '%s' "$key" >"$stamp"
  log "built $name $version in $((SECONDS - start))s"
}

total_start=$SECONDS
log "bin dir $BIN_DIR ($GO_VERSION, GOMODCACHE=$GOMODCACHE)"
build_one kube-apiserver          k8s  "$K8S_VERSION"  k8s.io/kubernetes/cmd/kube-apiserver          "$K8S_LDFLAGS"
build_one kube-controller-manager k8s  "$K8S_VERSION"  k8s.io/kubernetes/cmd/kube-controller-manager "$K8S_LDFLAGS"
build_one kubectl                 k8s  "$K8S_VERSION"  k8s.io/kubernetes/cmd/kubectl                 "$K8S_LDFLAGS"
build_one etcd                    etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3                     "$ETCD_LDFLAGS"
build_one helm                    helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm                      "$HELM_LDFLAGS"
# The node (tests/support/node.rs).
build_one kubelet                 k8s  "$K8S_VERSION"  k8s.io/kubernetes/cmd/kubelet                 "$K8S_LDFLAGS"
build_one kube-scheduler          k8s  "$K8S_VERSION"  k8s.io/kubernetes/cmd/kube-scheduler          "$K8S_LDFLAGS"
build_one kube-proxy              k8s  "$K8S_VERSION"  k8s.io/kubernetes/cmd/kube-proxy              "$K8S_LDFLAGS"
for plugin in main/bridge ipam/host-local main/loopback meta/portmap; do
  build_one "cni/${plugin#*/}"    cni  "$CNI_VERSION"  "github.com/containernetworking/plugins/plugins/$plugin" "$CNI_LDFLAGS"
done
build_one pause                   pause v1             .                                              "-s -w"

for b in kube-apiserver kube-controller-manager kubectl etcd helm kubelet kube-scheduler kube-proxy \
         cni/bridge cni/host-local cni/loopback cni/portmap pause; do
  [[ -x "$BIN_DIR/$b" ]] || die "$BIN_DIR/$b missing after build"
done
log "control plane ready in $((SECONDS - total_start))s"
echo "$BIN_DIR"
