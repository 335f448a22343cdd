//! The reconciler: gather (policy + its Secret) → plan → write the whole key
//! set as one Secret with a resourceVersion precondition → ConfigMap →
//! Events → status → requeue at the planner's next due time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use super::secret::{Found, classify, config_map_is_ours, config_map_object, secret_object};
use super::status::{Observed, Problem, WrittenStatus, desired_status};
use crate::api::{KeyRotationPolicy, KeyRotationPolicyStatus, is_dns_subdomain};
use crate::http::PolicyRef;
use crate::keys::lifecycle::{self, KeySet, LifecycleEvent, RngKeySource};
use crate::metrics::{Metrics, next_prune_time};
use crate::store::layout::{self, StoredKeySet};

/// Field manager name for every write.
pub const MANAGER: &str = "jwks-operator";

/// Create/replace parameters naming our field manager.
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Longest the reconciler sleeps with nothing due (a safety net).
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);

/// Shared state of the reconciler.
pub struct Context {
    /// API client (with the operator's own permissions).
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// `--public-base-url`, for `status.jwksURI`.
    pub public_base_url: Option<String>,
    /// False as soon as leadership is lost: no write starts after that.
    pub writable: Arc<AtomicBool>,
    /// Statuses written and not yet seen back through the watch.
    pub written: WrittenStatus,
}

/// A reconcile failed. Each variant names the operation and the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the Secret failed.
    #[error("reading Secret {namespace}/{name}: {source}")]
    ReadSecret {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Writing the Secret failed (409 means someone else wrote first).
    #[error("writing Secret {namespace}/{name}: {source}")]
    WriteSecret {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Writing the public ConfigMap failed.
    #[error("writing ConfigMap {namespace}/{name}: {source}")]
    WriteConfigMap {
        /// Namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Patching the policy's status failed.
    #[error("updating status of KeyRotationPolicy {namespace}/{name}: {source}")]
    PatchStatus {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The planner failed (key generation, or an inconsistent set).
    #[error("planning keys of KeyRotationPolicy {namespace}/{name}: {source}")]
    Plan {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// Cause.
        #[source]
        source: lifecycle::PlanError,
    },
    /// Encoding the key set failed.
    #[error("encoding the key set of KeyRotationPolicy {namespace}/{name}: {source}")]
    Encode {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// Cause.
        #[source]
        source: layout::EncodeError,
    },
    /// The key-generation task died.
    #[error("key generation task for {namespace}/{name} failed: {message}")]
    Task {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// What happened.
        message: String,
    },
}

fn api_error_is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        // Transport, TLS, timeouts: try again.
        _ => true,
    }
}

// === impl Error ===

impl Error {
    /// Whether retrying soon may succeed (conflicts, throttling, outages),
    /// as opposed to a problem that needs a change first.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ReadSecret { source, .. }
            | Error::WriteSecret { source, .. }
            | Error::WriteConfigMap { source, .. }
            | Error::PatchStatus { source, .. } => api_error_is_transient(source),
            Error::Plan { .. } | Error::Encode { .. } => false,
            Error::Task { .. } => true,
        }
    }

    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::ReadSecret { .. } => "read_secret",
            Error::WriteSecret { source, .. } if is_conflict(source) => "conflict",
            Error::WriteSecret { .. } => "write_secret",
            Error::WriteConfigMap { .. } => "write_configmap",
            Error::PatchStatus { .. } => "patch_status",
            Error::Plan { .. } => "plan",
            Error::Encode { .. } => "encode",
            Error::Task { .. } => "task",
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn event_for(e: &LifecycleEvent) -> (EventType, &'static str, &'static str) {
    match e {
        LifecycleEvent::Created { .. } => (EventType::Normal, "KeyCreated", "Generate"),
        LifecycleEvent::Activated { .. } => (EventType::Normal, "KeyActivated", "Rotate"),
        LifecycleEvent::Retired { .. } => (EventType::Normal, "KeyRetired", "Rotate"),
        LifecycleEvent::Pruned { .. } => (EventType::Normal, "KeyPruned", "Prune"),
        LifecycleEvent::Revoked { .. } => (EventType::Warning, "KeyRevoked", "Revoke"),
        LifecycleEvent::Discarded { .. } => (EventType::Normal, "KeyDiscarded", "Discard"),
    }
}

struct Reconciler<'a> {
    policy: &'a KeyRotationPolicy,
    ctx: &'a Context,
    namespace: String,
    name: String,
}

impl Reconciler<'_> {
    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&ev, &self.policy.object_ref(&()))
            .await
        {
            warn!(policy = %format!("{}/{}", self.namespace, self.name), error = %e, "publishing an event failed");
        }
    }

    fn jwks_uri(&self) -> Option<String> {
        self.ctx.public_base_url.as_ref().map(|base| {
            format!(
                "{}/{}/{}/.well-known/jwks.json",
                base.trim_end_matches('/'),
                self.namespace,
                self.name
            )
        })
    }

    /// Patches status when it differs from what is stored.
    async fn status(
        &self,
        keys: Option<&StoredKeySet>,
        policy: Option<&lifecycle::Policy>,
        problem: Option<Problem>,
    ) -> Result<bool, Error> {
        let known = self.ctx.written.current(self.policy);
        let prev = known.as_ref();
        let desired: KeyRotationPolicyStatus = desired_status(
            prev,
            Observed {
                generation: self.policy.metadata.generation,
                keys,
                policy,
                problem,
                secret_name: self.policy.secret_name(),
                jwks_uri: self.jwks_uri(),
            },
            Timestamp::now(),
        );
        if prev == Some(&desired) || !self.ctx.writable.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let api: Api<KeyRotationPolicy> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = serde_json::json!({
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "KeyRotationPolicy",
            "status": desired,
        });
        api.patch_status(
            &self.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::PatchStatus {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        })?;
        self.ctx.written.record(self.policy, desired);
        Ok(true)
    }

    /// A problem that stops this reconcile: status and (on change) an Event.
    async fn stop(&self, problem: Problem, retry: Option<Duration>) -> Result<Action, Error> {
        let changed = self.status(None, None, Some(problem.clone())).await?;
        if changed {
            warn!(policy = %format!("{}/{}", self.namespace, self.name), reason = %problem.reason, "{}", problem.message);
            self.event(
                EventType::Warning,
                &problem.reason,
                "Reconcile",
                problem.message,
            )
            .await;
        }
        Ok(retry
            .map(Action::requeue)
            .unwrap_or_else(Action::await_change))
    }

    async fn sync_config_map(&self, cm_name: &str, public_jwks: &[u8]) -> Result<(), Error> {
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let err = |source| Error::WriteConfigMap {
            namespace: self.namespace.clone(),
            name: cm_name.to_owned(),
            source,
        };
        let desired = config_map_object(self.policy, cm_name, public_jwks);
        match api.get_opt(cm_name).await.map_err(err)? {
            None => {
                api.create(&post_params(), &desired).await.map_err(err)?;
            }
            Some(existing) if !config_map_is_ours(&existing, self.policy) => {
                self.event(
                    EventType::Warning,
                    "ConfigMapNotOwned",
                    "Publish",
                    format!("ConfigMap {cm_name} exists and is not managed by jwks-operator; it is left untouched"),
                )
                .await;
            }
            Some(existing) if existing.data == desired.data => {}
            Some(existing) => {
                let mut desired = desired;
                desired.metadata.resource_version = existing.resource_version();
                api.replace(cm_name, &post_params(), &desired)
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

/// Reconciles one policy.
pub async fn reconcile(policy: Arc<KeyRotationPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&policy, &ctx).await;
    ctx.metrics
        .observe_reconcile(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(
    policy: &Arc<KeyRotationPolicy>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let r = Reconciler {
        policy,
        ctx,
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
    };
    let now = Timestamp::now();

    // What the operator alone can judge about the spec.
    let secret_name = policy.secret_name();
    let resolved = match policy.spec.resolve(policy.rotation_request()) {
        Ok(p) => p,
        Err(e) => {
            return r
                .stop(Problem::blocking("InvalidSpec", e.to_string()), None)
                .await;
        }
    };
    if !is_dns_subdomain(&secret_name) {
        let message = format!(
            "the default Secret name {secret_name:?} is not a valid object name; set spec.secretName"
        );
        return r
            .stop(Problem::blocking("InvalidSpec", message), None)
            .await;
    }

    // Gather.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &r.namespace);
    let existing = secrets
        .get_opt(&secret_name)
        .await
        .map_err(|source| Error::ReadSecret {
            namespace: r.namespace.clone(),
            name: secret_name.clone(),
            source,
        })?;
    let recheck = Some(Duration::from_secs(300));
    let (current, generation, resource_version, extra, adopted) = match classify(
        existing.as_ref(),
        policy,
    ) {
        Found::Absent => (KeySet::default(), 0, None, BTreeMap::new(), false),
        Found::Ours {
            set,
            generation,
            resource_version,
        } => (
            set,
            generation,
            Some(resource_version),
            BTreeMap::new(),
            false,
        ),
        Found::Adoptable {
            keys,
            set,
            resource_version,
            extra,
        } => {
            let set = set.unwrap_or_else(|| KeySet::adopt(keys, now, &resolved));
            (set, 0, Some(resource_version), extra, true)
        }
        Found::Corrupt(e) => {
            let message = format!(
                "Secret {secret_name} cannot be read ({e}); it is left untouched and the last good key set keeps being served. Fix or delete the data key to recover"
            );
            ctx.metrics
                .inc_reconcile_error(&PolicyRef::of(policy), "corrupt_key_set");
            return r
                .stop(Problem::blocking("CorruptKeySet", message), recheck)
                .await;
        }
        Found::Foreign(message) => {
            return r
                .stop(Problem::blocking("SecretNotOwned", message), recheck)
                .await;
        }
    };
    let recreated = existing.is_none()
        && policy
            .status
            .as_ref()
            .is_some_and(|s| s.active_key_id.is_some());

    // Plan, off the async runtime: RSA-4096 generation takes seconds.
    let planned = {
        let (resolved, current) = (resolved.clone(), current.clone());
        let metrics = ctx.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let mut source = TimedSource {
                // Keys come straight from the OS generator.
                inner: RngKeySource(rand_core::UnwrapErr(rand::rngs::SysRng)),
                metrics,
            };
            lifecycle::plan(&resolved, &current, now, &mut source)
        })
        .await
        .map_err(|e| Error::Task {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            message: e.to_string(),
        })?
        .map_err(|source| Error::Plan {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            source,
        })?
    };

    // Write the whole set as one object, conditionally.
    let changed = adopted || planned.keys != current;
    if changed {
        if !ctx.writable.load(Ordering::SeqCst) {
            return Ok(Action::await_change());
        }
        let encoded =
            layout::encode(&planned.keys, generation + 1).map_err(|source| Error::Encode {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                source,
            })?;
        let object = secret_object(policy, &encoded, resource_version.clone(), &extra);
        let pp = post_params();
        let written = match resource_version {
            None => secrets.create(&pp, &object).await,
            Some(_) => secrets.replace(&secret_name, &pp, &object).await,
        };
        written.map_err(|source| Error::WriteSecret {
            namespace: r.namespace.clone(),
            name: secret_name.clone(),
            source,
        })?;
    }

    if let Some(cm) = &policy.spec.public_config_map {
        r.sync_config_map(cm, &layout::public_jwks(&planned.keys))
            .await?;
    }

    // Tell the story.
    let key = format!("{}/{}", r.namespace, r.name);
    if recreated {
        r.event(
            EventType::Warning,
            "SecretRecreated",
            "Generate",
            format!("Secret {secret_name} was deleted; a fresh key set was generated (tokens signed by the old keys no longer verify)"),
        )
        .await;
    }
    if adopted {
        r.event(
            EventType::Normal,
            "KeySetAdopted",
            "Adopt",
            format!(
                "adopted {} key(s) from Secret {secret_name}",
                planned.keys.keys.len()
            ),
        )
        .await;
    }
    for e in &planned.events {
        let (type_, reason, action) = event_for(e);
        info!(policy = %key, event = reason, "{e}");
        r.event(type_, reason, action, e.to_string()).await;
    }
    let policy_ref = PolicyRef::of(policy);
    ctx.metrics.record_events(&policy_ref, &planned.events);
    ctx.metrics.observe_key_set(
        &policy_ref,
        &planned.keys,
        planned.keys.next_rotation_time(&resolved),
        next_prune_time(&planned.keys),
    );

    let problem = planned
        .deferred
        .as_ref()
        .map(|d| Problem::warning(d.reason, d.message.clone()));
    r.status(Some(&planned.keys), Some(&resolved), problem)
        .await?;

    // Wake when the planner says, a little late rather than early.
    let wait = planned
        .next_due
        .duration_since(Timestamp::now())
        .try_into()
        .unwrap_or(Duration::ZERO);
    let jitter = Duration::from_millis(rand::random_range(50..250));
    Ok(Action::requeue((wait + jitter).min(MAX_REQUEUE)))
}

/// What to do after a failed reconcile.
pub fn error_policy(policy: Arc<KeyRotationPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    let ns = policy.namespace().unwrap_or_default();
    ctx.metrics
        .inc_reconcile_error(&PolicyRef::of(&policy), error.kind());
    if error.is_transient() {
        warn!(policy = %format!("{ns}/{}", policy.name_any()), error = %error, "reconcile failed; retrying");
        Action::requeue(Duration::from_millis(if error.kind() == "conflict" {
            100
        } else {
            2000
        }))
    } else {
        warn!(policy = %format!("{ns}/{}", policy.name_any()), error = %error, "reconcile failed");
        Action::requeue(Duration::from_secs(60))
    }
}

/// A key source that records how long each generation took.
struct TimedSource<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<K, S: lifecycle::KeySource<K>> lifecycle::KeySource<K> for TimedSource<S> {
    type Error = S::Error;

    fn generate(&mut self, params: crate::keys::KeyParams) -> Result<K, Self::Error> {
        let started = std::time::Instant::now();
        let key = self.inner.generate(params);
        self.metrics
            .observe_key_generation(params.alg, started.elapsed().as_secs_f64());
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("test", "Test")
                .with_code(code)
                .boxed(),
        )
    }

    fn write_error(code: u16) -> Error {
        Error::WriteSecret {
            namespace: "ns".into(),
            name: "p-jwks".into(),
            source: api_error(code),
        }
    }

    #[test]
    fn conflicts_throttling_and_outages_are_retried_soon_and_the_rest_waits() {
        for code in [409, 429, 500, 503] {
            assert!(write_error(code).is_transient(), "{code}");
        }
        for code in [400, 403, 404, 422] {
            assert!(!write_error(code).is_transient(), "{code}");
        }
        assert_eq!(write_error(409).kind(), "conflict");
        assert_eq!(write_error(403).kind(), "write_secret");
    }

    #[test]
    fn errors_name_the_operation_and_the_object() {
        let e = write_error(403);
        assert!(
            e.to_string().starts_with("writing Secret ns/p-jwks:"),
            "{e}"
        );
    }
}
