// Over 600 lines on purpose: every subcommand's flags and its dispatch in one
// place, so `--help`, the README's flag tables and tests/docs_match_code.rs
// read one file.

//! Command-line interface (clap). `main.rs` parses, this module dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api;
use crate::http;
use crate::http::PolicyRef;
use crate::k8s;
use crate::keys::token::Expectations;
pub use crate::logging::{LogFormat, init_logging};
use crate::signer;
use crate::standalone;
use crate::verify;
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
    /// Run the Kubernetes operator: reconcile KeyRotationPolicies into
    /// Secrets and serve their JWK Sets (uses the in-cluster config or
    /// KUBECONFIG).
    Run(Box<RunArgs>),
    /// Ask the operator to rotate a policy's key now (sets the
    /// jwks.dev/rotate-requested-at annotation).
    Rotate(RotateArgs),
    /// Show a policy's keys, conditions and recent Events
    ///
    /// Keys (kid, algorithm, state, created, activates, retired, prune after),
    /// the Ready and Degraded conditions and the most recent Events, as
    /// tables; `-o json` prints the same as one JSON object.
    ///
    ///   jwks-operator status my-app -n team-a
    ///   kubectl jwks status my-app -n team-a -o json
    #[command(verbatim_doc_comment)]
    Status(StatusArgs),

    /// Revoke a key now: add its kid to spec.revokedKeyIDs
    ///
    /// The operator removes the key from the published set at once; if it is
    /// the active key, a fresh key becomes active. Tokens the key signed stop
    /// verifying. Asks for confirmation on a terminal; without one, --yes is
    /// required. A kid the policy does not have is refused.
    ///
    ///   jwks-operator revoke my-app <kid> -n team-a
    #[command(verbatim_doc_comment)]
    Revoke(RevokeArgs),

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
    Standalone(Box<StandaloneArgs>),

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

    /// Sign kube-apiserver's service-account tokens with a rotating policy's keys
    ///
    /// Serves v1.ExternalJWTSigner (Sign, FetchKeys, Metadata) on --socket for
    /// kube-apiserver's --service-account-signing-endpoint, with the keys of
    /// one KeyRotationPolicy kept in --state-dir (standalone layout; SIGHUP
    /// re-reads the policy). Start it before kube-apiserver. See
    /// docs/service-account-signing.md.
    #[command(verbatim_doc_comment)]
    Signer(Box<signer::SignerArgs>),

    /// Print the KeyRotationPolicy CustomResourceDefinition as YAML
    /// (`jwks-operator crd | kubectl apply -f -`).
    Crd,
    /// Print the version.
    Version,
}

/// Listener and publication flags shared by `run` and `standalone`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address of the JWKS listener (public keys, discovery, a public
    /// /policies summary, /healthz, /readyz, /metrics). Safe to expose.
    #[arg(long, default_value = "0.0.0.0:8080", env = "JWKS_ADDR")]
    pub jwks_addr: SocketAddr,
    /// Address of the token listener (test-only mint/verify endpoints). Off
    /// unless given; never the JWKS port. Anywhere but a loopback address it
    /// needs --token-auth-file and/or --token-client-ca-file.
    #[arg(long, env = "JWKS_TOKEN_ADDR")]
    pub token_addr: Option<SocketAddr>,
    /// A file holding the bearer token every request to the token listener
    /// must carry (`Authorization: Bearer <token>`; surrounding whitespace
    /// ignored). Re-read when it changes.
    #[arg(long, env = "JWKS_TOKEN_AUTH_FILE", value_name = "FILE")]
    pub token_auth_file: Option<PathBuf>,
    /// PEM CA certificates: the token listener requires a client
    /// certificate signed by one of them (mTLS). Needs --tls-cert-file.
    /// Re-read with the TLS files.
    #[arg(
        long,
        env = "JWKS_TOKEN_CLIENT_CA_FILE",
        value_name = "FILE",
        requires = "tls_cert_file"
    )]
    pub token_client_ca_file: Option<PathBuf>,
    /// Also serve GET /metrics, GET /healthz, GET /readyz and the full GET
    /// /policies (with problem messages) on this address (for a scrape and
    /// probe port).
    #[arg(long, env = "JWKS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve GET /metrics on the JWKS listener too. Set false when
    /// --metrics-addr is scraped and the JWKS listener is exposed.
    #[arg(
        long,
        env = "JWKS_METRICS_ON_JWKS_LISTENER",
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub metrics_on_jwks_listener: bool,
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
    /// Serve every listener (JWKS, token, metrics) over TLS with this PEM
    /// certificate chain (leaf first). Needs --tls-key-file. Re-read when
    /// it changes: new connections get the new certificate.
    #[arg(
        long,
        env = "JWKS_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert-file.
    #[arg(
        long,
        env = "JWKS_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// Time a client has to send a complete request head (and to finish a
    /// TLS handshake), counted from connecting or from the end of the
    /// previous response; an idle keep-alive connection is closed after it.
    #[arg(long, env = "JWKS_HTTP_HEADER_READ_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub http_header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is
    /// closed (a stalled request body, a client that stops reading).
    #[arg(long, env = "JWKS_HTTP_IDLE_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration)]
    pub http_idle_timeout: Duration,
    /// Most connections open at once on each listener; more are answered
    /// 503 and closed.
    #[arg(long, env = "JWKS_HTTP_MAX_CONNECTIONS", value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
    /// Added to every retired key's retention, for a rotation to reach all
    /// that sign with the key set: the write, every replica's watch, the
    /// kubelet refreshing a mounted active.pem (docs/key-material.md).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "90s",
        value_parser = parse_duration,
        env = "JWKS_PROPAGATION_GRACE"
    )]
    pub propagation_grace: Duration,
    /// How often each `spec.publish` copy is read back and compared by
    /// digest; a copy someone else changed or deleted is rewritten
    /// (docs/publication.md).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5m",
        value_parser = parse_positive_duration,
        env = "JWKS_PUBLISH_VERIFY_INTERVAL"
    )]
    pub publish_verify_interval: Duration,
}

// === impl ServeArgs ===

impl ServeArgs {
    /// The listener settings these flags describe.
    pub fn listeners(&self) -> http::ListenerConfig {
        let mut config = http::ListenerConfig::new(self.jwks_addr);
        config.token_addr = self.token_addr;
        config.token_auth = http::TokenAuth {
            bearer_token_file: self.token_auth_file.clone(),
            client_ca_file: self.token_client_ca_file.clone(),
        };
        config.metrics_addr = self.metrics_addr;
        config.metrics_on_jwks_listener = self.metrics_on_jwks_listener;
        config.limits = http::Limits {
            header_read_timeout: self.http_header_read_timeout,
            idle_timeout: self.http_idle_timeout,
            max_connections: self.http_max_connections as usize,
            ..http::Limits::default()
        };
        config.tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some(http::TlsFiles::new(cert, key)),
            _ => None,
        };
        config
    }
}

pub(crate) fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(d)
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

    /// Listener and publication flags.
    #[command(flatten)]
    pub serve: ServeArgs,
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
    let d: api::Duration = s.parse()?;
    if d.is_negative() {
        return Err(format!("{s:?} is negative"));
    }
    Ok(d.into())
}

/// Arguments of `jwks-operator rotate`.
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// Name of the KeyRotationPolicy.
    pub name: String,
    /// Its namespace (default: the kubeconfig context's namespace, as for
    /// `status` and `revoke`).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

/// Output format of `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables for humans.
    #[default]
    Table,
    /// One JSON object.
    Json,
}

/// Arguments of `jwks-operator status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Name of the KeyRotationPolicy.
    pub name: String,
    /// Its namespace (default: the kubeconfig context's namespace).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// How many of the most recent Events to show.
    #[arg(long, default_value_t = 10)]
    pub events: usize,
}

/// Arguments of `jwks-operator revoke`.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Name of the KeyRotationPolicy.
    pub name: String,
    /// The kid of the key to revoke (see `status`).
    pub kid: String,
    /// Its namespace (default: the kubeconfig context's namespace).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// The name the binary answers to as a kubectl plugin: installed (or
/// symlinked) as `kubectl-jwks` on `PATH`, `kubectl jwks ...` runs it.
pub const KUBECTL_PLUGIN_NAME: &str = "kubectl-jwks";

/// Parses the process's command line. Invoked as [`KUBECTL_PLUGIN_NAME`]
/// (argv\[0\]), help and usage say `kubectl jwks` instead of `jwks-operator`.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let invoked_as = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut command = Cli::command();
    if invoked_as == KUBECTL_PLUGIN_NAME {
        command = command.name(KUBECTL_PLUGIN_NAME).bin_name("kubectl jwks");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

async fn kube_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("connecting to Kubernetes (in-cluster config or KUBECONFIG): {e}")
    })
}

async fn status(args: StatusArgs) -> anyhow::Result<String> {
    let client = kube_client().await?;
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let report = k8s::admin::status(client, &namespace, &args.name, args.events).await?;
    Ok(match args.output {
        OutputFormat::Table => report.render(jiff::Timestamp::now()),
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
    })
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<String> {
    use crate::k8s::admin::{AdminError, RevokeOutcome, confirm};
    use std::io::IsTerminal as _;
    let client = kube_client().await?;
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let (yes, interactive) = (args.yes, std::io::stdin().is_terminal());
    let outcome = k8s::admin::revoke(client, &namespace, &args.name, &args.kid, |prompt| {
        if yes {
            return Ok(true);
        }
        if !interactive {
            return Err(AdminError::NotConfirmable {
                namespace: namespace.clone(),
                name: args.name.clone(),
                kid: args.kid.clone(),
            });
        }
        Ok(confirm(
            &mut std::io::stdin().lock(),
            &mut std::io::stderr(),
            prompt,
        )?)
    })
    .await?;
    Ok(match outcome {
        RevokeOutcome::Revoked => format!(
            "key {} of {namespace}/{} revoked (added to spec.revokedKeyIDs); the operator withdraws it from the published set now",
            args.kid, args.name
        ),
        RevokeOutcome::AlreadyRevoked => format!(
            "key {} of {namespace}/{} is already in spec.revokedKeyIDs; nothing changed",
            args.kid, args.name
        ),
    })
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
    let config = k8s::run::RunConfig {
        namespaces: args.namespaces,
        listeners: args.serve.listeners(),
        leader_elect: args.leader_elect,
        lease_namespace: args
            .leader_elect_namespace
            .unwrap_or_else(|| "default".into()),
        lease_name: args.leader_elect_lease_name,
        identity,
        lease_duration: args.leader_elect_lease_duration,
        public_base_url: args.serve.public_base_url,
        default_policy: args.serve.default_policy,
        propagation_grace: args.serve.propagation_grace,
        publish_verify_interval: args.serve.publish_verify_interval,
    };
    let shutdown = http::Shutdown::new();
    shutdown.trigger_on_termination_signal();
    k8s::run::run(client, config, shutdown).await
}

/// Asks for a rotation; the namespace it used and the annotation's value.
async fn rotate(args: RotateArgs) -> anyhow::Result<(String, String)> {
    use kube::api::{Api, Patch, PatchParams};
    let client = kube_client().await?;
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<api::KeyRotationPolicy> = Api::namespaced(client, &namespace);
    // A fresh value every time: the operator acts once per distinct value.
    let value = jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({
        "metadata": {"annotations": {api::ROTATE_ANNOTATION: value}}
    });
    api.patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => {
                anyhow::anyhow!("KeyRotationPolicy {namespace}/{} not found", args.name)
            }
            e => anyhow::anyhow!("requesting rotation of {namespace}/{}: {e}", args.name),
        })?;
    Ok((namespace, value))
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
    let result = match verify::load_jwks(&args.jwks).await {
        Ok(jwks) => {
            verify::verify_token(&jwks, &args.jwks, &token, &expect, jiff::Timestamp::now())
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

async fn standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let config = standalone::Config {
        policies: args.policies,
        state_dir: args.state_dir,
        listeners: args.serve.listeners(),
        public_base_url: args.serve.public_base_url,
        default_policy: args.serve.default_policy,
        propagation_grace: args.serve.propagation_grace,
        publish_verify_interval: args.serve.publish_verify_interval,
    };
    let shutdown = http::Shutdown::new();
    shutdown.trigger_on_termination_signal();
    standalone::run(config, shutdown).await
}

/// Runs `task` on a fresh runtime: its output goes to `show` (exit 0), its
/// error to stderr (exit 1).
fn block_on<T>(
    task: impl std::future::Future<Output = anyhow::Result<T>>,
    show: impl FnOnce(T),
) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("starting the async runtime: {e}")),
    };
    match rt.block_on(task) {
        Ok(out) => {
            show(out);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{e:#}")),
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => {
            init_logging(args.serve.log_format);
            block_on(run(*args), |()| {})
        }
        Command::Rotate(args) => {
            let name = args.name.clone();
            block_on(rotate(args), |(ns, value)| {
                println!(
                    "rotation of {ns}/{name} requested ({}={value})",
                    api::ROTATE_ANNOTATION
                );
            })
        }
        Command::Status(args) => block_on(status(args), |text| print!("{text}")),
        Command::Revoke(args) => block_on(revoke(args), |text| println!("{text}")),
        Command::Standalone(args) => {
            init_logging(args.serve.log_format);
            block_on(standalone(*args), |()| {})
        }
        Command::Signer(args) => signer::main(*args),
        Command::Verify(args) => match runtime() {
            Ok(rt) => rt.block_on(verify(args)),
            Err(e) => fail(format!("starting the async runtime: {e}")),
        },
        Command::Crd => {
            print!("{}", api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("jwks-operator {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
