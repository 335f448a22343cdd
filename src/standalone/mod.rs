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

/// The engine never sleeps less than this between passes (no busy loop when
/// a due time is a hair in the future).
const MIN_SLEEP: Duration = Duration::from_millis(10);
/// How often the state directory is checked for key sets deleted while the
/// process runs ([`Engine::check_stored`]).
pub const STATE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Everything `jwks-operator standalone` is told.
#[derive(Clone, Debug)]
pub struct Config {
    /// A policy file or a directory of them.
    pub policies: PathBuf,
    /// Where the key sets are kept.
    pub state_dir: PathBuf,
    /// The listeners: addresses, limits, TLS.
    pub listeners: http::ListenerConfig,
    /// Public base URL of the JWKS listener, for discovery documents.
    pub public_base_url: Option<String>,
    /// The policy served at `GET /.well-known/jwks.json`.
    pub default_policy: Option<PolicyRef>,
    /// `--propagation-grace`: added to every retired key's retention.
    pub propagation_grace: Duration,
    /// `--publish-verify-interval`: how often each `spec.publish` copy is
    /// read back.
    pub publish_verify_interval: Duration,
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
    // The only writer of its state directory: always the leader.
    metrics.engine.set_leader(true);
    let state = SharedState::new(config.default_policy.clone(), metrics);
    let servers = http::start_listeners(&config.listeners, &state, &shutdown).await?;
    let mut engine = Engine::new(store, state.clone(), config.public_base_url.clone())
        .with_propagation_grace(config.propagation_grace)
        .with_publish_verify_interval(config.publish_verify_interval);
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
    let mut checked = std::time::Instant::now();
    loop {
        let next_check = STATE_CHECK_INTERVAL.saturating_sub(checked.elapsed());
        let sleep = engine
            .next_wake()
            .map(|due| until(due).max(MIN_SLEEP))
            .unwrap_or(Duration::from_secs(3600))
            .min(next_check.max(MIN_SLEEP));
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
            () = tokio::time::sleep(sleep) => {
                if checked.elapsed() >= STATE_CHECK_INTERVAL {
                    checked = std::time::Instant::now();
                    engine.check_stored(Timestamp::now());
                }
                engine.reconcile_due(&shutdown).await;
            }
        }
    }

    info!("shutting down: finishing requests in flight");
    state.set_ready(false);
    shutdown.trigger();
    // Each listener drains for at most its drain timeout.
    servers.stopped().await;
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
