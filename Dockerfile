# syntax=docker/dockerfile:1
#
# jwks-operator image: a static build of this crate's `jwks-operator` binary
# (the same target the tests run, built from Cargo.lock) on a distroless base
# with no shell and no package manager, running as the non-root user 65532.
#
#   docker build -t ghcr.io/jwks-operator/jwks-operator:0.1.0 .
#
# Without Docker, scripts/build-image.sh writes the same image (user, entrypoint,
# command and ports; tests/image.rs checks they agree with this file) as an
# OCI image tarball from a static glibc build; the tests pack their own binary
# with it (`--binary`) and run it as pods on a real node (tests/node_e2e.rs).
#
# Why musl: kube's HTTPS client (rustls) and the JWT crypto use aws-lc-rs,
# whose C code the `cc` crate compiles with musl-gcc from musl-tools: no cmake,
# no clang, and aws-lc-sys ships pre-generated bindings for this target. The
# same goes for mimalloc, the binary's allocator (musl's own is slow). The
# musl target links statically by default, so the binary needs no libc in the
# runtime image. (A glibc `+crt-static` build would work too, but static glibc
# cannot load NSS modules for name resolution; musl has no such caveat.)
# The image is linux/amd64; for arm64 use aarch64-unknown-linux-musl.
# This build was checked outside a container (Debian 12, musl-tools 1.2.3,
# Rust 1.95, dev profile, the env below): a static-pie executable with no
# ELF interpreter that runs `version` and `crd` with an empty environment
# (re-checked with mimalloc: it also serves a JWKS in `standalone`).

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
# Pin the choices above: aws-lc-sys's cc builder (fail rather than fall back
# to cmake) with musl-gcc.
ENV AWS_LC_SYS_CMAKE_BUILDER=0 \
    CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin jwks-operator \
 && cp target/x86_64-unknown-linux-musl/release/jwks-operator /jwks-operator

# distroless/static: CA certificates, /etc/passwd with `nonroot` (65532),
# tzdata; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /jwks-operator /jwks-operator
USER 65532:65532
# JWKS (and /healthz, /readyz), token listener (opt-in), metrics.
EXPOSE 8080 8081 9090
ENTRYPOINT ["/jwks-operator"]
CMD ["--help"]
