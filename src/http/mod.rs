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
//! - [`models`]: the token listener's request/response bodies;
//! - [`errors`]: the JSON error shape and the rejection handler.
//!
//! # Routes
//!
//! JWKS listener ([`jwks_routes`], safe to expose):
//!
//! | route | answer |
//! |---|---|
//! | `GET /{ns}/{name}/.well-known/jwks.json` | 200 public JWK Set, `application/jwk-set+json`, `Cache-Control: public, max-age=N` (N = `spec.jwks_max_age()`: ≤ publishAhead/2, ≤ 300), strong `ETag`; 304 on a matching `If-None-Match` (lists, `W/` and `*` included); 404 unknown policy; 503 `not_ready` + `Retry-After` for a known policy with nothing published yet |
//! | `GET /{ns}/{name}/.well-known/openid-configuration` | 200 discovery document (same caching); 404 when the policy has no issuer |
//! | `GET /.well-known/jwks.json` | the default policy's set; 404 when none is configured |
//! | `GET /policies` | JSON array of [`PolicySummary`], sorted by namespace and name |
//! | `GET /healthz` | 200 `{"status":"ok"}` |
//! | `GET /readyz` | 200 `{"status":"ready"}` after `set_ready(true)`, else 503 |
//! | `GET /metrics` | OpenMetrics text (see [`crate::metrics`]) |
//!
//! [`metrics_routes`] serves `/healthz`, `/readyz` and `/metrics` alone, for
//! a separate `--metrics-addr`.
//!
//! Token listener ([`token_routes`], off unless `--token-addr`): `POST
//! /{ns}/{name}/token` and `POST /{ns}/{name}/verify` (bodies in
//! [`models`]), only for policies with `tokenEndpoint.enabled` (404
//! otherwise, exactly like an unknown policy).
//!
//! Every error is `{"error": <code>, "message": <text>}`: 400 malformed
//! JSON or wrong types, 401 a token that does not verify (`{"valid":false,...}`),
//! 404 unknown route or policy, 405 wrong method (with `Allow`), 413 body over
//! 64 KiB, 415 a `Content-Type` other than JSON (none at all is accepted),
//! 503 not ready. Client input never yields a 5xx.

pub mod errors;
pub mod filters;
pub mod handlers;
pub mod models;
pub mod snapshot;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use tokio::task::JoinHandle;
use warp::{Filter, Reply};

pub use errors::ApiError;
pub use filters::{BODY_LIMIT, jwks_routes, metrics_routes, token_routes};
pub use snapshot::{
    DEFAULT_NAMESPACE, InvalidPolicyRef, PolicyRef, PolicySummary, PolicyView, Problem,
    SharedState, Snapshot, random_jti, strong_etag,
};

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

/// Binds `addr` (port 0 picks a free port) and serves `routes` on it in a
/// background task until `shutdown` completes; then stops accepting, lets
/// requests in flight finish, and the task ends.
///
/// Returns the bound address and the task's handle. Fails only if the
/// address cannot be bound.
pub async fn serve<F, R>(
    addr: SocketAddr,
    routes: F,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)>
where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = warp::serve(routes).incoming(listener).graceful(shutdown);
    let handle = tokio::spawn(async move { server.run().await });
    Ok((local, handle))
}
