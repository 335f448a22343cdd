//! Command-line interface (clap). `main.rs` parses, this module dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::http::PolicyRef;
use crate::keys::token::Expectations;
use crate::verify::JwksSource;

/// Owns the whole life of JWT signing keys: generates them, publishes the
/// public JWK Set over HTTP, rotates them on a schedule and prunes retired
/// keys once no token they signed can still be valid.
///
/// Start without Kubernetes:
///
///   jwks-operator standalone --policies examples/ --state-dir ./state
///
///   curl localhost:8080/default/demo/.well-known/jwks.json
#[derive(Parser, Debug)]
#[command(
    name = "jwks-operator",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run without Kubernetes: policies from YAML files, keys in a local directory
    ///
    /// Reads every KeyRotationPolicy in --policies (a file, or a directory of
    /// *.yaml/*.yml files; the same manifests you would `kubectl apply`;
    /// metadata.namespace defaults to `default`), keeps each policy's keys in
    /// <state-dir>/<namespace>/<name>/, rotates them on schedule and serves
    /// GET /<namespace>/<name>/.well-known/jwks.json on --jwks-addr.
    ///
    /// Send SIGHUP after editing the policy files: changes apply at once. To
    /// rotate now, set the annotation `jwks.dev/rotate-requested-at` to a new
    /// value; to revoke a key, add its kid to spec.revokedKeyIDs. SIGTERM or
    /// Ctrl-C stops gracefully.
    #[command(verbatim_doc_comment)]
    Standalone(StandaloneArgs),

    /// Check a JWT against a JWK Set (a URL or a file); exit 0 if valid, 1 if not
    ///
    /// Prints `valid kid=<kid> alg=<alg> ...` on stdout, or a one-line reason
    /// on stderr. Checks the signature with the key its `kid` names (only
    /// that key's algorithm), `exp` (required), `nbf` and `iat`; `iss` and
    /// `aud` only when asked.
    ///
    ///   jwks-operator verify --jwks http://localhost:8080/default/demo/.well-known/jwks.json "$TOKEN"
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),

    /// Print the KeyRotationPolicy CustomResourceDefinition as YAML
    /// (`jwks-operator crd | kubectl apply -f -`).
    Crd,

    /// Print the version.
    Version,
}

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The HTTP servers, shared by `standalone` and (later) `run`.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address of the JWKS listener (JWK Sets, discovery, /policies, health,
    /// metrics). Safe to expose. Port 0 picks a free port (logged).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub jwks_addr: SocketAddr,

    /// Address of the token listener (POST /<ns>/<name>/token and /verify,
    /// for policies with tokenEndpoint.enabled). Off unless given. For
    /// testing: never expose it.
    #[arg(long, value_name = "ADDR")]
    pub token_addr: Option<SocketAddr>,

    /// Public base URL of the JWKS listener (https://jwks.example.com), used
    /// for jwks_uri in discovery documents.
    #[arg(long, value_name = "URL")]
    pub public_base_url: Option<String>,

    /// Policy served at GET /.well-known/jwks.json, as <namespace>/<name>.
    #[arg(long, value_name = "NS/NAME")]
    pub default_policy: Option<PolicyRef>,

    /// Log format. Log level: RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `jwks-operator standalone`.
#[derive(Args, Debug, Clone)]
pub struct StandaloneArgs {
    /// A KeyRotationPolicy YAML file (several documents allowed) or a
    /// directory of *.yaml / *.yml files.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub policies: PathBuf,

    /// Directory holding the keys, one <namespace>/<name>/ subdirectory per
    /// policy (created 0700; files 0600). Keep it private and backed up.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,

    /// Server options.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `jwks-operator verify`.
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The JWK Set: an http(s) URL, or a file (a public set, or a state
    /// directory's private jwks.json).
    #[arg(long, value_name = "URL_OR_FILE")]
    pub jwks: JwksSource,

    /// Require this `iss`.
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,

    /// Require `aud` to name one of these (repeatable).
    #[arg(long, value_name = "AUD")]
    pub audience: Vec<String>,

    /// Clock skew allowed on exp/nbf/iat, as a duration (`0s`, `60s`).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub leeway: Duration,

    /// The compact JWT, or `-` to read it from standard input.
    #[arg(value_name = "TOKEN")]
    pub token: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: crate::api::Duration = s.parse()?;
    if d.is_negative() {
        return Err(format!("{s:?} is negative"));
    }
    Ok(d.into())
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
        Command::Verify(args) => runtime(|| verify(args)),
        Command::Standalone(args) => {
            init_logging(args.server.log_format);
            runtime(|| async move {
                let config = crate::standalone::Config {
                    policies: args.policies,
                    state_dir: args.state_dir,
                    jwks_addr: args.server.jwks_addr,
                    token_addr: args.server.token_addr,
                    public_base_url: args.server.public_base_url,
                    default_policy: args.server.default_policy,
                };
                let shutdown = crate::http::Shutdown::new();
                shutdown.trigger_on_termination_signal();
                match crate::standalone::run(config, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

fn runtime<F: std::future::Future<Output = ExitCode>>(f: impl FnOnce() -> F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("jwks-operator: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn verify(args: VerifyArgs) -> ExitCode {
    let token = if args.token == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            eprintln!("cannot read the token from standard input: {e}");
            return ExitCode::FAILURE;
        }
        s
    } else {
        args.token
    };
    let expect = Expectations {
        issuer: args.issuer,
        audiences: args.audience,
        leeway: args.leeway,
    };
    let result = match crate::verify::load_jwks(&args.jwks).await {
        Ok(jwks) => {
            crate::verify::verify_token(&jwks, &args.jwks, &token, &expect, jiff::Timestamp::now())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => {
            let mut line = format!("valid kid={} alg={}", v.kid, v.alg);
            for claim in ["iss", "sub", "aud"] {
                if let Some(value) = v.claims.get(claim) {
                    let shown = value
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| value.to_string());
                    line.push_str(&format!(" {claim}={shown}"));
                }
            }
            if let Some(exp) = v
                .claims
                .get("exp")
                .and_then(serde_json::Value::as_i64)
                .and_then(|e| jiff::Timestamp::from_second(e).ok())
            {
                line.push_str(&format!(" exp={exp}"));
            }
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr as text or JSON; level from `RUST_LOG`, default `info`.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
