//! Command-line interface (clap). `main.rs` parses, this module dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Owns the whole life of JWT signing keys: generates them, publishes the
/// public JWK Set over HTTP, rotates them on a schedule and prunes retired
/// keys once no token they signed can still be valid.
#[derive(Parser, Debug)]
#[command(name = "jwks-operator", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the KeyRotationPolicy CustomResourceDefinition as YAML
    /// (`jwks-operator crd | kubectl apply -f -`).
    Crd,
    /// Print the version.
    Version,
}

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd => {
            print!("{}", crate::api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("jwks-operator {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
