//! The HTTP servers (warp), shared by standalone and Kubernetes modes.
//!
//! The engine or controller publishes each policy's key set as a
//! [`PolicyView`] into the [`SharedState`]; the servers answer from that
//! in-memory snapshot only (pre-serialized bytes, ETag, headers), never from
//! an API call or a disk read per request.
//!
//! Split the warp way:
//! - [`snapshot`]: the models: [`PolicyRef`], [`PolicySummary`], [`PolicyView`], [`SharedState`];
//! - [`filters`]: paths and methods → handlers: [`jwks_routes`] and [`token_routes`], used by
//!   the binary and by the tests alike;
//! - [`handlers`]: what each route answers;
//! - [`fast_path`]: the JWKS listener's hot route answered without warp's
//!   per-request cost, the rest handed to [`jwks_routes`];
//! - [`models`]: the token listener's request/response bodies;
//! - [`errors`]: the JSON error shape and the rejection handler;
//! - [`server`]: the listeners themselves (timeouts, connection cap, drain),
//!   and [`tls`]: their certificate, reloaded when its files change;
//!   [`start_listeners`] starts all of a process's listeners.
//!
//! # Routes
//!
//! JWKS listener ([`jwks_routes`], safe to expose):
//!
//! | route | answer |
//! |---|---|
//! | `GET /{ns}/{name}/.well-known/jwks.json` | 200 public JWK Set, `application/jwk-set+json`, `Cache-Control: public, max-age=N` (N = `spec.jwks_max_age()`: ≤ publishAhead/2, ≤ 300, ≤ verifierRefreshInterval), strong `ETag`; 304 on a matching `If-None-Match` (lists, `W/` and `*` included); 404 unknown policy; 503 `not_ready` + `Retry-After` for a known policy with nothing published yet |
//! | `GET /{ns}/{name}/.well-known/openid-configuration` | 200 discovery document (same caching); 404 when the policy has no issuer |
//! | `GET /.well-known/jwks.json` | the default policy's set; 404 when none is configured |
//! | `GET /policies` | JSON array of [`PublicPolicySummary`] (problem reasons only, no token endpoints), sorted by namespace and name |
//! | `GET /healthz` | 200 `{"status":"ok"}` |
//! | `GET /readyz` | 200 `{"status":"ready"}` after `set_ready(true)`, else 503 |
//! | `GET /metrics` | OpenMetrics text (see [`crate::metrics`]); 404 with `--metrics-on-jwks-listener=false` |
//!
//! [`metrics_routes`] serves `/healthz`, `/readyz`, `/metrics` and the full
//! `GET /policies` (JSON array of [`PolicySummary`]: problem messages, token
//! endpoints, warnings), for a separate `--metrics-addr` kept off the public
//! network.
//!
//! Token listener ([`token_routes_with`], off unless `--token-addr`): `POST
//! /{ns}/{name}/token` and `POST /{ns}/{name}/verify` (bodies in
//! [`models`]), only for policies with `tokenEndpoint.enabled` (404
//! otherwise, exactly like an unknown policy), only for clients with the
//! listener's credential ([`auth`]: 401 `unauthorized` otherwise).
//!
//! Every error is `{"error": <code>, "message": <text>}`: 400 malformed
//! JSON or wrong types, 401 a token that does not verify (`{"valid":false,...}`)
//! or a token-listener client without its credential (`unauthorized`),
//! 404 unknown route or policy, 405 wrong method (with `Allow`), 413 body over
//! 64 KiB, 415 a `Content-Type` other than JSON (none at all is accepted),
//! 503 not ready. Client input never yields a 5xx.

pub mod auth;
pub mod errors;
pub mod fast_path;
pub mod filters;
pub mod handlers;
pub mod models;
pub mod reload;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod view;

#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tracing::info;

pub use crate::policy::{
    DEFAULT_NAMESPACE, InvalidPolicyRef, PolicyInfo, PolicyRef, PolicySummary, Problem,
    PublicPolicySummary, TOKEN_ENDPOINT_ON_ISSUER,
};
pub use auth::{BearerToken, TokenAuth, TokenAuthError, check_token_listener};
pub use errors::ApiError;
pub use filters::{
    BODY_LIMIT, JwksOptions, jwks_routes, jwks_routes_with, metrics_routes, token_routes,
    token_routes_with,
};
pub use server::{Limits, ServeConfig, serve, serve_service};
pub use snapshot::{PolicyView, SharedState, Shown, Snapshot, Update, random_jti, strong_etag};
pub use tls::{ServerTls, TlsError, TlsFiles};

/// Resolves when the process is asked to stop: SIGTERM (what Kubernetes
/// sends) or SIGINT (Ctrl-C).
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the process")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// One stop switch for several servers (and the engine): every
/// [`Shutdown::wait`] future completes once [`Shutdown::trigger`] is called.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Shutdown ===

impl Shutdown {
    /// A switch that is not triggered yet.
    pub fn new() -> Self {
        let (tx, _) = tokio::sync::watch::channel(false);
        Shutdown {
            tx: std::sync::Arc::new(tx),
        }
    }

    /// Asks everything waiting to stop. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`Self::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// A future that completes once triggered (at once if already triggered):
    /// pass it to [`serve`].
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Triggers on SIGTERM or SIGINT ([`termination_signal`]), from a
    /// background task.
    pub fn trigger_on_termination_signal(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            termination_signal().await;
            tracing::info!("termination signal received; shutting down");
            this.trigger();
        })
    }
}

/// The listeners of one process (`run` or `standalone`).
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// The JWKS listener (`--jwks-addr`).
    pub jwks_addr: SocketAddr,
    /// The token listener (`--token-addr`), off when `None`.
    pub token_addr: Option<SocketAddr>,
    /// The token listener's client credential (`--token-auth-file`,
    /// `--token-client-ca-file`); required unless it binds to loopback.
    pub token_auth: TokenAuth,
    /// The probes-and-metrics listener (`--metrics-addr`), off when `None`.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether the JWKS listener serves `/metrics` too
    /// (`--metrics-on-jwks-listener`).
    pub metrics_on_jwks_listener: bool,
    /// Timeouts and connection cap, the same for each listener.
    pub limits: Limits,
    /// Serve every listener over TLS with this pair (`--tls-cert-file`,
    /// `--tls-key-file`); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// How often the TLS files are checked for a change.
    pub tls_reload_interval: std::time::Duration,
}

impl ListenerConfig {
    /// Plain HTTP on `jwks_addr` alone, with the default limits.
    pub fn new(jwks_addr: SocketAddr) -> Self {
        ListenerConfig {
            jwks_addr,
            token_addr: None,
            token_auth: TokenAuth::default(),
            metrics_addr: None,
            metrics_on_jwks_listener: true,
            limits: Limits::default(),
            tls: None,
            tls_reload_interval: tls::RELOAD_INTERVAL,
        }
    }
}

/// [`serve`] for the JWKS listener: [`jwks_routes`] over `state`, with the
/// JWK Set route answered by [`fast_path::JwksService`] (same answers,
/// without warp's per-request cost).
pub async fn serve_jwks(
    addr: SocketAddr,
    state: SharedState,
    options: JwksOptions,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let routes = jwks_routes_with(state.clone(), options);
    let make = move || {
        fast_path::JwksService::new(
            state.clone(),
            hyper_util::service::TowerToHyperService::new(warp::service(routes.clone())),
        )
    };
    serve_service(addr, make, config, shutdown).await
}

/// A process's running listeners.
#[derive(Debug)]
pub struct Listeners {
    /// Where the JWKS listener is bound.
    pub jwks: SocketAddr,
    /// Where the token listener is bound, if on.
    pub token: Option<SocketAddr>,
    /// Where the metrics listener is bound, if on.
    pub metrics: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// Loads the TLS pair (if any) and starts every configured listener,
/// serving `state` until `shutdown` is triggered. Fails when the TLS pair
/// is unusable (the error names the file), when the token listener would
/// bind beyond loopback without a client credential or its credential is
/// unusable ([`auth`]), or when an address cannot be bound.
pub async fn start_listeners(
    config: &ListenerConfig,
    state: &SharedState,
    shutdown: &Shutdown,
) -> anyhow::Result<Listeners> {
    if let Some(addr) = config.token_addr {
        check_token_listener(addr, &config.token_auth, config.tls.is_some())?;
    }
    let metrics = state.metrics_arc();
    let tls = match &config.tls {
        Some(files) => {
            let tls = ServerTls::load(files.clone()).context("cannot use the TLS certificate")?;
            tls.spawn_reloader(
                config.tls_reload_interval,
                Some(metrics.clone()),
                shutdown.wait(),
            );
            Some(tls)
        }
        None => None,
    };
    let serve_config = |listener| ServeConfig {
        listener,
        limits: config.limits.clone(),
        tls: tls.clone(),
        metrics: Some(metrics.clone()),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut tasks = Vec::new();
    let (jwks, task) = serve_jwks(
        config.jwks_addr,
        state.clone(),
        JwksOptions {
            metrics: config.metrics_on_jwks_listener,
        },
        serve_config(crate::metrics::Listener::Jwks),
        shutdown.wait(),
    )
    .await
    .with_context(|| format!("cannot listen on --jwks-addr {}", config.jwks_addr))?;
    info!(addr = %jwks, scheme, "JWKS listener started");
    tasks.push(task);
    let mut token = None;
    if let Some(addr) = config.token_addr {
        let bearer = match &config.token_auth.bearer_token_file {
            Some(path) => {
                let bearer = BearerToken::load(path)?;
                bearer.spawn_reloader(auth::RELOAD_INTERVAL, shutdown.wait());
                Some(bearer)
            }
            None => None,
        };
        let mut token_config = serve_config(crate::metrics::Listener::Token);
        if let (Some(ca), Some(files)) = (&config.token_auth.client_ca_file, &config.tls) {
            // The token listener's own TLS: the same pair, plus client
            // certificates required.
            let files = TlsFiles {
                client_ca: Some(ca.clone()),
                ..files.clone()
            };
            let tls = ServerTls::load(files)
                .context("cannot use the token listener's client CA or TLS certificate")?;
            tls.spawn_reloader(
                config.tls_reload_interval,
                Some(metrics.clone()),
                shutdown.wait(),
            );
            token_config.tls = Some(tls);
        }
        let credential = match (&bearer, &config.token_auth.client_ca_file) {
            (Some(_), Some(_)) => "bearer token and client certificate",
            (Some(_), None) => "bearer token",
            (None, Some(_)) => "client certificate",
            (None, None) => "none (loopback only)",
        };
        let (bound, task) = serve(
            addr,
            token_routes_with(state.clone(), bearer),
            token_config,
            shutdown.wait(),
        )
        .await
        .with_context(|| format!("cannot listen on --token-addr {addr}"))?;
        info!(addr = %bound, scheme, credential, "token listener started");
        tasks.push(task);
        token = Some(bound);
    }
    let mut metrics_bound = None;
    if let Some(addr) = config.metrics_addr {
        let (bound, task) = serve(
            addr,
            metrics_routes(state.clone()),
            serve_config(crate::metrics::Listener::Metrics),
            shutdown.wait(),
        )
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
        info!(addr = %bound, scheme, "metrics listener started");
        tasks.push(task);
        metrics_bound = Some(bound);
    }
    Ok(Listeners {
        jwks,
        token,
        metrics: metrics_bound,
        tasks,
    })
}

// === impl Listeners ===

impl Listeners {
    /// Waits until every listener has stopped: after the shutdown switch,
    /// each drains for at most [`Limits::drain_timeout`].
    pub async fn stopped(self) {
        let _: Vec<_> = futures::future::join_all(self.tasks).await;
    }
}
