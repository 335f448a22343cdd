//! The `jwks-operator` binary: argument parsing and wiring only.

/// mimalloc instead of the C library's allocator: every request allocates
/// a little (headers, the body, a token), and the release image links musl,
/// whose allocator is much slower than glibc's. Measured in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // As `kubectl-jwks` (a kubectl plugin), usage says `kubectl jwks`.
    let cli = jwks_operator::cli::parse();
    jwks_operator::cli::main(cli)
}
