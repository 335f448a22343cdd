//! Command-line interface (clap). `main.rs` parses, this module dispatches.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::http::PolicyRef;

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
    /// Run the Kubernetes operator: reconcile KeyRotationPolicies into
    /// Secrets and serve their JWK Sets (uses the in-cluster config or
    /// KUBECONFIG).
    Run(Box<RunArgs>),
    /// Ask the operator to rotate a policy's key now (sets the
    /// jwks.dev/rotate-requested-at annotation).
    Rotate(RotateArgs),
    /// Print the KeyRotationPolicy CustomResourceDefinition as YAML
    /// (`jwks-operator crd | kubectl apply -f -`).
    Crd,
    /// Print the version.
    Version,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Listener and publication flags shared by `run` and `standalone`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address of the JWKS listener (public keys, discovery, /policies,
    /// /healthz, /readyz, /metrics). Safe to expose.
    #[arg(long, default_value = "0.0.0.0:8080", env = "JWKS_ADDR")]
    pub jwks_addr: SocketAddr,
    /// Address of the token listener (test-only mint/verify endpoints). Off
    /// unless given; never the JWKS port.
    #[arg(long, env = "JWKS_TOKEN_ADDR")]
    pub token_addr: Option<SocketAddr>,
    /// Also serve GET /metrics on this address (for a scrape port).
    #[arg(long, env = "JWKS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Base URL clients reach the JWKS listener at (e.g.
    /// https://jwks.example.com); used for `jwks_uri` and `status.jwksURI`.
    #[arg(long, env = "JWKS_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// Policy (`namespace/name`) served at GET /.well-known/jwks.json.
    #[arg(long, value_parser = parse_policy_ref, env = "JWKS_DEFAULT_POLICY")]
    pub default_policy: Option<PolicyRef>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "JWKS_LOG_FORMAT")]
    pub log_format: LogFormat,
}

fn parse_policy_ref(s: &str) -> Result<PolicyRef, String> {
    s.parse::<PolicyRef>().map_err(|e| e.to_string())
}

/// Flags of `jwks-operator run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Listener and publication flags.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Watch only this namespace (repeatable). Default: all namespaces.
    #[arg(long = "namespace", short = 'n', value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// Elect a leader with a Lease: every replica serves, only the leader writes.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_elect_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "jwks-operator-leader")]
    pub leader_elect_lease_name: String,
    /// Seconds a leader's Lease lasts without renewal; another replica takes
    /// over within this time after the leader dies.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub leader_elect_lease_duration: u64,
    /// This replica's identity in the Lease (default: $POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Arguments of `jwks-operator rotate`.
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// Name of the KeyRotationPolicy.
    pub name: String,
    /// Its namespace.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
}

/// Sets up logging: `RUST_LOG` filters (default `info`), `format` shapes.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("jwks-operator: {message}");
    ExitCode::FAILURE
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("connecting to Kubernetes (in-cluster config or KUBECONFIG): {e}")
    })?;
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "jwks-operator".into());
        format!("{host}-{}", std::process::id())
    });
    let config = crate::k8s::run::RunConfig {
        namespaces: args.namespaces,
        jwks_addr: args.serve.jwks_addr,
        token_addr: args.serve.token_addr,
        metrics_addr: args.serve.metrics_addr,
        leader_elect: args.leader_elect,
        lease_namespace: args
            .leader_elect_namespace
            .unwrap_or_else(|| "default".into()),
        lease_name: args.leader_elect_lease_name,
        identity,
        lease_duration: args.leader_elect_lease_duration,
        public_base_url: args.serve.public_base_url,
        default_policy: args.serve.default_policy,
    };
    crate::k8s::run::run(client, config, shutdown_signal()).await
}

async fn rotate(args: RotateArgs) -> anyhow::Result<String> {
    use kube::api::{Api, Patch, PatchParams};
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("connecting to Kubernetes (in-cluster config or KUBECONFIG): {e}")
    })?;
    let api: Api<crate::api::KeyRotationPolicy> = Api::namespaced(client, &args.namespace);
    // A fresh value every time: the operator acts once per distinct value.
    let value = jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({
        "metadata": {"annotations": {crate::api::ROTATE_ANNOTATION: value}}
    });
    api.patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => anyhow::anyhow!(
                "KeyRotationPolicy {}/{} not found",
                args.namespace,
                args.name
            ),
            e => anyhow::anyhow!(
                "requesting rotation of {}/{}: {e}",
                args.namespace,
                args.name
            ),
        })?;
    Ok(value)
}

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => {
            init_logging(args.serve.log_format);
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => return fail(format!("starting the async runtime: {e}")),
            };
            match rt.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("{e:#}")),
            }
        }
        Command::Rotate(args) => {
            let (ns, name) = (args.namespace.clone(), args.name.clone());
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => return fail(format!("starting the async runtime: {e}")),
            };
            match rt.block_on(rotate(args)) {
                Ok(value) => {
                    println!(
                        "rotation of {ns}/{name} requested ({}={value})",
                        crate::api::ROTATE_ANNOTATION
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("{e:#}")),
            }
        }
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
