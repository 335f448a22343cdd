#!/usr/bin/env bash
# Builds the jwks-operator container image as an OCI image tarball, without
# Docker or any daemon: what the repository's Dockerfile describes (user
# 65532, no shell, entrypoint /jwks-operator, ports 8080 8081 9090), packed by
# scripts/oci-image.sh.
#
# Usage:
#   scripts/build-image.sh [--binary PATH] [--ref NAME:TAG] [--out FILE]
#
#   --binary  the jwks-operator executable to pack. Default: build it here,
#             `cargo build --release --locked` for x86_64-unknown-linux-gnu
#             with `-C target-feature=+crt-static` (a static glibc binary).
#             A dynamically linked binary (e.g. the tests' target/debug one)
#             is packed together with the libraries `ldd` names, at the same
#             paths, so it runs the same way. Debug sections are dropped
#             (`objcopy --strip-debug`); the code is the binary's.
#   --ref     image name (default ghcr.io/jwks-operator/jwks-operator:<version
#             in Cargo.toml>, the chart's default image)
#   --out     default target/image/jwks-operator-<version>.oci.tar; the
#             CycloneDX SBOM goes beside it, as ...-<version>.cdx.json
#
# Then, on a containerd node:  ctr -n k8s.io images import <out>
# or to a registry:            skopeo copy oci-archive:<out> docker://<registry>/jwks-operator:<tag>
# Prints the tarball's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf '[build-image] ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf '[build-image] %s\n' "$*" >&2; }

version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -n1)
[[ -n $version ]] || die "no version in Cargo.toml"
binary= ref=ghcr.io/jwks-operator/jwks-operator:$version out=target/image/jwks-operator-$version.oci.tar
while (($#)); do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --ref) ref=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) die "unknown argument $1 (see the usage at the top of $0)" ;;
  esac
done

# Pinned supply-chain tools (SECURITY.md), installed once under ~/.cache.
CARGO_AUDITABLE_VERSION=0.7.7
CARGO_CYCLONEDX_VERSION=0.5.9
target=x86_64-unknown-linux-gnu

if [[ -z $binary ]]; then
  # cargo auditable embeds the dependency list (Cargo.lock's crates and
  # versions) in the binary, where Trivy, Grype and `cargo audit bin` read it.
  auditable=$(bash scripts/install-cargo-tool.sh cargo-auditable "$CARGO_AUDITABLE_VERSION")
  log "cargo auditable build --release --locked --target $target (+crt-static) ..."
  start=$SECONDS
  # --target keeps the static flag off build scripts and proc macros.
  PATH="$auditable:$PATH" RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo auditable build --release --locked --target "$target" --bin jwks-operator >&2
  log "built in $((SECONDS - start))s"
  binary=target/$target/release/jwks-operator
fi
[[ -x $binary ]] || die "$binary is not an executable"
if ! objdump -h "$binary" 2>/dev/null | grep -q '[.]dep-v0'; then
  log "WARNING: $binary carries no dependency list (.dep-v0): build it with \`cargo auditable build\` (scripts/test.sh does) so scanners see its crates"
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
# Debug sections only: a test build's 400 MB shrink to 70 MB; code and
# symbols stay as built. (The release build has none to begin with.)
objcopy --strip-debug "$binary" "$rootfs/jwks-operator"
chmod 0755 "$rootfs/jwks-operator"

# A dynamic executable brings its ELF interpreter and libraries along.
if ldd "$binary" >/dev/null 2>&1; then
  while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
    log "packed $lib (dynamic executable)"
  done < <(ldd "$binary" | grep -oE '/[^ ]+' | sort -u)
fi

# What distroless/static's nonroot image provides and the operator may use:
# the user and group 65532 (nonroot), CA certificates, a writable /tmp.
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
fi

digest=$(bash scripts/oci-image.sh --rootfs "$rootfs" --ref "$ref" --out "$out" \
  --user 65532:65532 --entrypoint /jwks-operator --cmd --help \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --port 8080/tcp --port 8081/tcp --port 9090/tcp \
  --label org.opencontainers.image.title=jwks-operator \
  --label org.opencontainers.image.version="$version")
log "$ref ($digest) -> $out ($(du -h "$out" | cut -f1))"

# The CycloneDX SBOM of the binary's crates (normal dependencies for this
# target, versions from Cargo.lock), beside the tarball: <out minus .oci.tar>.cdx.json.
cyclonedx=$(bash scripts/install-cargo-tool.sh cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION")
sbom=${out%.tar}
sbom=${sbom%.oci}.cdx.json
sbom_name=jwks-operator-sbom-$$
"$cyclonedx/cargo-cyclonedx" cyclonedx --format json --target "$target" \
  --override-filename "$sbom_name" >&2
mv "$sbom_name.json" "$sbom"
log "SBOM -> $sbom"
echo "$out"
