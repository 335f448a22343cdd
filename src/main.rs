//! The `jwks-operator` binary: argument parsing and wiring only.

use clap::Parser;

/// mimalloc instead of the C library's allocator: every request allocates
/// a little (headers, the body, a token), and the release image links musl,
/// whose allocator is much slower than glibc's. Measured in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = jwks_operator::cli::Cli::parse();
    jwks_operator::cli::main(cli)
}
