//! `jwks-operator run`: the HTTP servers and serving index on every replica,
//! and the reconciler on the one that holds the Lease.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use tracing::{info, warn};

use super::leader::{self, WriteGate};
use super::reconcile::{Context, error_policy, reconcile};
use super::secret::Decoder;
use super::serving::{self, apis, managed_selector};
use super::status::WrittenStatus;
use super::store::SecretCache;
use crate::api::KeyRotationPolicy;
use crate::http::{self, PolicyRef, SharedState, Shutdown};
use crate::metrics::Metrics;

/// Settings of `jwks-operator run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// The listeners: addresses, limits, TLS.
    pub listeners: http::ListenerConfig,
    /// Use a Lease so only one replica writes.
    pub leader_elect: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// Lease duration in seconds (takeover happens within it).
    pub lease_duration: u64,
    /// Base URL the JWKS listener is reachable at, for `status.jwksURI`.
    pub public_base_url: Option<String>,
    /// Policy served at `/.well-known/jwks.json`.
    pub default_policy: Option<PolicyRef>,
    /// `--propagation-grace`: added to every retired key's retention.
    pub propagation_grace: std::time::Duration,
    /// `--publish-verify-interval`: how often each `spec.publish` copy is
    /// read back.
    pub publish_verify_interval: std::time::Duration,
}

/// Runs until `shutdown` is triggered.
pub async fn run(client: Client, config: RunConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let state = SharedState::new(config.default_policy.clone(), metrics.clone());
    let servers = http::start_listeners(&config.listeners, &state, &shutdown).await?;

    let last_good = Arc::new(serving::LastGood::default());
    let secrets = Arc::new(SecretCache::default());
    let decoder = Arc::new(Decoder::default());
    let indexer = serving::Indexer::new(
        &config.namespaces,
        config.public_base_url.clone(),
        last_good.clone(),
    )
    .sharing(secrets.clone(), decoder.clone())
    .with_propagation_grace(config.propagation_grace);
    // Every replica signs with provider-held keys, so every replica sets up
    // the providers its policies name (not only the leader's reconciler).
    let (providers_tx, providers_rx) = tokio::sync::mpsc::unbounded_channel();
    let indexer = indexer.opening_providers(providers_tx.clone());
    let opener = tokio::spawn(super::provider::keep_open(
        client.clone(),
        providers_tx,
        providers_rx,
    ));
    let index = tokio::spawn(serving::run(
        client.clone(),
        config.namespaces.clone(),
        state.clone(),
        indexer,
    ));

    let writable = Arc::new(if config.leader_elect {
        WriteGate::elected()
    } else {
        WriteGate::unelected()
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "jwks-operator".into(),
                instance: Some(config.identity.clone()),
            },
        ),
        metrics: metrics.clone(),
        public_base_url: config.public_base_url.clone(),
        propagation_grace: config.propagation_grace,
        writable: writable.clone(),
        last_good,
        secrets,
        decoder,
        written: WrittenStatus::default(),
        failures: Default::default(),
        publish_verify_interval: config.publish_verify_interval,
        publications: Default::default(),
    });

    if config.leader_elect {
        lead(client, &config, ctx, metrics, shutdown.clone()).await?;
    } else {
        writable.set_leading(true);
        metrics.engine.set_leader(true);
        control(&client, &config.namespaces, ctx, shutdown.wait()).await;
    }

    shutdown.wait().await;
    index.abort();
    opener.abort();
    // Each listener drains for at most its drain timeout.
    servers.stopped().await;
    info!("stopped");
    Ok(())
}

/// Most reconciles in flight at once, shared by the controllers of all
/// watched namespaces (each gets an equal share, at least one).
///
/// Unbounded, a start with 1,000 policies ran 1,000 reconciles at once: the
/// HTTP/1.1 client opened a TLS connection per request (1,150 sockets, RSS
/// 101 MiB) and the API server's priority and fairness answered thousands of
/// them with 429. With 16 the same start keeps ~30 sockets and ~46 MiB, gets
/// no 429s, and is about as fast: the API server is the bottleneck either way.
pub const MAX_CONCURRENT_RECONCILES: u16 = 16;

/// Runs the controllers (one per watched namespace, or one for all) until
/// `until` resolves.
async fn control(
    client: &Client,
    namespaces: &[String],
    ctx: Arc<Context>,
    until: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let stop = Shutdown::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            until.await;
            stop.trigger();
        });
    }
    let scopes = namespaces.len().max(1);
    let concurrency =
        (MAX_CONCURRENT_RECONCILES / u16::try_from(scopes).unwrap_or(u16::MAX)).max(1);
    let config = controller::Config::default().concurrency(concurrency);
    let scope_of: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = apis::<KeyRotationPolicy>(client, namespaces)
        .into_iter()
        .zip(apis::<ConfigMap>(client, namespaces))
        .zip(scope_of)
        .map(|((policies, config_maps), scope)| {
            let owned = watcher::Config::default().labels(&managed_selector());
            // A change to a policy's Secret wakes it once the serving index
            // has it in the SecretCache the reconcile reads (a watch of its
            // own could wake the reconcile before the cache knows).
            let secret_changes =
                stream::unfold(ctx.secrets.subscribe(scope), |mut changes| async move {
                    let policy = changes.recv().await?;
                    Some((
                        ObjectRef::new(&policy.name).within(&policy.namespace),
                        changes,
                    ))
                });
            // The controller's own cache of the policies, kept without their
            // managedFields (nothing reads them; at 10,000 policies they
            // were tens of MiB).
            let (reader, writer) = reflector::store();
            let watched = reflector(
                writer,
                watcher::watcher(policies, watcher::Config::default())
                    .modify(super::request::forget_managed_fields),
            )
            .applied_objects();
            Controller::for_stream(watched, reader)
                .with_config(config.clone())
                .reconcile_on(secret_changes)
                .owns(config_maps, owned)
                .graceful_shutdown_on(stop.wait())
                .run(reconcile, error_policy, ctx.clone())
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "reconcile loop");
                    }
                })
        });
    futures::future::join_all(controllers).await;
}

/// Takes part in leader election; reconciles only while holding the Lease.
async fn lead(
    client: Client,
    config: &RunConfig,
    ctx: Arc<Context>,
    metrics: Arc<Metrics>,
    stop: Shutdown,
) -> anyhow::Result<()> {
    let params = kube_lease_manager::LeaseParams::new(
        config.identity.clone(),
        config.lease_duration,
        leader::renew_grace_seconds(config.lease_duration),
    );
    let manager = kube_lease_manager::LeaseManager::new(
        client.clone(),
        &config.lease_name,
        &config.lease_namespace,
        params,
        kube_lease_manager::LeaseCreateMode::AutoCreate,
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "setting up Lease {}/{}: {e}",
            config.lease_namespace,
            config.lease_name
        )
    })?;
    let (mut leader, lease_task) = manager.watch().await;
    // The write gate's deadline follows the renewals that land.
    let tracker = tokio::spawn(leader::track_renewals(
        kube::Api::namespaced(client.clone(), &config.lease_namespace),
        config.lease_name.clone(),
        config.identity.clone(),
        Duration::from_secs(config.lease_duration),
        ctx.writable.clone(),
    ));
    loop {
        // Wait to lead with a renewal that landed (or to stop).
        tokio::select! {
            () = stop.wait() => break,
            changed = async {
                let changed = leader.wait_for(|l| *l).await.map(|_| ());
                ctx.writable.wait_fresh().await;
                changed
            } => {
                if changed.is_err() {
                    warn!("the lease manager stopped");
                    break;
                }
            }
        }
        info!(identity = %config.identity, "acquired the Lease; reconciling");
        ctx.writable.set_leading(true);
        metrics.engine.set_leader(true);
        let mut lost = leader.clone();
        let stopping = stop.wait();
        let gate = ctx.writable.clone();
        control(&client, &config.namespaces, ctx.clone(), async move {
            tokio::select! {
                _ = lost.wait_for(|l| !*l) => {
                    // Stop writing at once; the controller then drains.
                    gate.set_leading(false);
                    warn!("lost the Lease; stopped writing");
                }
                _ = gate.expired() => {
                    // The gate is closed already; stop the controller until
                    // a renewal lands again.
                    gate.set_leading(false);
                    warn!("the Lease was not renewed in time; stopped writing");
                }
                () = stopping => {}
            }
        })
        .await;
        ctx.writable.set_leading(false);
        metrics.engine.set_leader(false);
        // What this replica confirmed of the copies may be stale by the
        // time it leads again (another leader wrote them meanwhile): a new
        // term confirms every copy by reading it again.
        ctx.forget_publications();
        if stop.is_triggered() {
            break;
        }
    }
    tracker.abort();
    // Dropping the receiver makes the lease manager release the Lease.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => info!("released the Lease"),
        Ok(Ok(Err(e))) => warn!(error = %e, "releasing the Lease failed"),
        _ => warn!("releasing the Lease did not finish in time"),
    }
    Ok(())
}
