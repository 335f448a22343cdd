//! The `jwks-operator` binary: argument parsing and wiring only.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = jwks_operator::cli::Cli::parse();
    jwks_operator::cli::main(cli)
}
