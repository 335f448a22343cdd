//! Standalone mode: `jwks-operator standalone --policies <file-or-dir>
//! --state-dir <dir>`. Policies come from `KeyRotationPolicy` YAML files
//! (the manifests you would `kubectl apply`), keys live in a local state
//! directory (`<state-dir>/<namespace>/<name>/`, the Secret layout), and the
//! same HTTP servers as in Kubernetes serve them.
//!
//! - [`policies`]: reading and validating the policy files;
//! - [`engine`]: the lifecycle engine (load → plan → save → publish);
//! - [`run`]: servers, signals and the timer loop.
//!
//! Signals: `SIGHUP` re-reads the policy files (that is how a changed
//! policy, a manual rotation via the `jwks.dev/rotate-requested-at`
//! annotation, or a revocation via `spec.revokedKeyIDs` is applied, and how a
//! repaired state file is picked up); the [`Shutdown`] given to [`run`] (the
//! binary triggers it on `SIGTERM`/`SIGINT`) stops gracefully: in-flight
//! requests finish, then the process exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

pub mod engine;
pub mod policies;

pub use engine::Engine;

use crate::http::{self, PolicyRef, SharedState, Shutdown};
use crate::metrics::Metrics;
use crate::store::files::FileStore;

/// How long in-flight requests get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The engine never sleeps less than this between passes (no busy loop when
/// a due time is a hair in the future).
const MIN_SLEEP: Duration = Duration::from_millis(10);

/// Everything `jwks-operator standalone` is told.
#[derive(Clone, Debug)]
pub struct Config {
    /// A policy file or a directory of them.
    pub policies: PathBuf,
    /// Where the key sets are kept.
    pub state_dir: PathBuf,
    /// Address of the JWKS listener.
    pub jwks_addr: SocketAddr,
    /// Address of the token listener, if it is on.
    pub token_addr: Option<SocketAddr>,
    /// Address of a probes-and-metrics-only listener, if wanted.
    pub metrics_addr: Option<SocketAddr>,
    /// Public base URL of the JWKS listener, for discovery documents.
    pub public_base_url: Option<String>,
    /// The policy served at `GET /.well-known/jwks.json`.
    pub default_policy: Option<PolicyRef>,
}

/// Runs standalone mode until `shutdown` is triggered. Fails only at startup:
/// the policy path cannot be read, the state directory cannot be created or
/// is in use by another process, or a listener cannot be bound.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let store = FileStore::open(&config.state_dir)
        .with_context(|| format!("cannot use --state-dir {}", config.state_dir.display()))?;
    let _lock = store.lock_exclusive().with_context(|| {
        format!(
            "--state-dir {} is in use by another jwks-operator",
            config.state_dir.display()
        )
    })?;
    let files = policies::read_policies(&config.policies)?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;

    let metrics = Arc::new(Metrics::new());
    let state = SharedState::new(config.default_policy.clone(), metrics);
    let (jwks_addr, jwks_server) = http::serve(
        config.jwks_addr,
        http::jwks_routes(state.clone()),
        shutdown.wait(),
    )
    .await
    .with_context(|| format!("cannot listen on --jwks-addr {}", config.jwks_addr))?;
    info!(addr = %jwks_addr, "JWKS listener started");
    let mut servers = vec![jwks_server];
    if let Some(addr) = config.token_addr {
        let (token_addr, token_server) =
            http::serve(addr, http::token_routes(state.clone()), shutdown.wait())
                .await
                .with_context(|| format!("cannot listen on --token-addr {addr}"))?;
        info!(addr = %token_addr, "token listener started");
        servers.push(token_server);
    }
    if let Some(addr) = config.metrics_addr {
        let (metrics_addr, metrics_server) =
            http::serve(addr, http::metrics_routes(state.clone()), shutdown.wait())
                .await
                .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
        info!(addr = %metrics_addr, "metrics listener started");
        servers.push(metrics_server);
    }

    let mut engine = Engine::new(store, state.clone(), config.public_base_url.clone());
    engine.apply_files(files, Timestamp::now());
    engine.reconcile_due(&shutdown).await;
    state.set_ready(true);
    info!(
        policies = engine.policies().count(),
        state_dir = %config.state_dir.display(),
        "standalone mode ready"
    );

    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let sleep = engine
            .next_wake()
            .map(|due| until(due).max(MIN_SLEEP))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            () = &mut stop => break,
            _ = hangup.recv() => {
                info!(path = %config.policies.display(), "SIGHUP: re-reading the policy files");
                match policies::read_policies(&config.policies) {
                    Ok(files) => engine.apply_files(files, Timestamp::now()),
                    Err(e) => error!("{e}; keeping the policies as they were"),
                }
                engine.reconcile_due(&shutdown).await;
            }
            () = tokio::time::sleep(sleep) => engine.reconcile_due(&shutdown).await,
        }
    }

    info!("shutting down: finishing requests in flight");
    state.set_ready(false);
    shutdown.trigger();
    let all = futures::future::join_all(servers);
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        error!("requests still in flight after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

/// Time from now until `due` (zero if past).
fn until(due: Timestamp) -> Duration {
    let now = Timestamp::now();
    if due <= now {
        return Duration::ZERO;
    }
    due.duration_since(now)
        .unsigned_abs()
        .min(Duration::from_secs(24 * 3600))
}
