//! The reconciler: the Kubernetes adapter of the [`engine`](crate::engine).
//! It checks what only the operator can judge about the spec, then runs one
//! engine pass with the policy's Secret as the store ([`SecretStore`]) and
//! the status subresource, Events and the public ConfigMap as the reporter,
//! and requeues at the planner's next due time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use super::leader::WriteGate;
use super::provider;
use super::referenced::Reference;
pub use super::request::{Error, MANAGER, RECHECK, is_conflict};
use super::secret::{Decoder, config_map_is_ours, config_map_object};
use super::serving::LastGood;
use super::status::{self, Observed, WrittenStatus, desired_status, new_warnings};
use super::store::{SecretCache, SecretStore, post_params};
use crate::api::{KeyRotationPolicy, KeyRotationPolicyStatus, PublicationStatus};
use crate::engine::publish::Publication;
use crate::engine::{self, Next, Note, Pass, Problem, Reporter, Tracked, backoff, run_pass};
use crate::http::PolicyRef;
use crate::keys;
use crate::keys::lifecycle::{self, LifecycleEvent};
use crate::metrics::Metrics;
use crate::names::is_dns_subdomain;
use crate::publish::{self, Credentials, Tracker};
use crate::reasons;
use crate::store::layout::{self, StoredKeySet};

/// Longest the reconciler sleeps with nothing due (a safety net).
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// Longest the reconciler sleeps while a Secret the policy names, or the
/// key provider it opens, cannot be used: the Secret is read again then.
pub const REFERENCE_RECHECK: Duration = Duration::from_secs(10);

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
    /// `--propagation-grace`, the planner's
    /// [`Policy::propagation_grace`](crate::keys::lifecycle::Policy::propagation_grace).
    pub propagation_grace: std::time::Duration,
    /// Closed as soon as leadership is lost or its renewal deadline passes:
    /// every write checks it first, so no write starts after that.
    pub writable: Arc<WriteGate>,
    /// Statuses written and not yet seen back through the watch.
    pub written: WrittenStatus,
    /// The last good key set of every policy, as served (fed by the serving
    /// index on every replica): what a deleted Secret is restored from.
    pub last_good: Arc<LastGood>,
    /// The operator's Secrets as the serving index watches them: read
    /// instead of a GET (see [`SecretCache`]).
    pub secrets: Arc<SecretCache>,
    /// Decoded key sets by Secret version, shared with the serving index.
    pub decoder: Arc<Decoder>,
    /// Consecutive failed passes by policy, for the engine's backoff (only
    /// policies that are failing have an entry).
    pub failures: Mutex<HashMap<PolicyRef, u32>>,
    /// `--publish-verify-interval`: how often each `spec.publish` copy is
    /// read back when nothing else changes.
    pub publish_verify_interval: Duration,
    /// What each policy's `spec.publish` copies were last confirmed to hold,
    /// by policy uid (the planner's publication gate reads it). Kept while
    /// this replica leads; a new leader starts empty and confirms every copy
    /// by reading it back before a new key activates.
    pub publications: Mutex<HashMap<String, Tracker>>,
}

fn event_for(e: &LifecycleEvent) -> (EventType, &'static str, &'static str) {
    let reason = engine::event_reason(e);
    match e {
        LifecycleEvent::Created { .. } => (EventType::Normal, reason, "Generate"),
        LifecycleEvent::Activated { .. } => (EventType::Normal, reason, "Rotate"),
        LifecycleEvent::Retired { .. } => (EventType::Normal, reason, "Rotate"),
        LifecycleEvent::Pruned { .. } => (EventType::Normal, reason, "Prune"),
        LifecycleEvent::Revoked { .. } => (EventType::Warning, reason, "Revoke"),
        LifecycleEvent::Discarded { .. } => (EventType::Normal, reason, "Discard"),
    }
}

/// One reconcile of one policy: the engine's [`Reporter`] in Kubernetes.
struct Reconciler<'a> {
    policy: &'a KeyRotationPolicy,
    ctx: &'a Context,
    namespace: String,
    name: String,
    /// The resolved spec (None when it is invalid).
    resolved: Option<&'a lifecycle::Policy>,
    /// Publishing to `spec.publicConfigMap` failed in a way a retry will not
    /// fix: the key set works, the policy is Degraded (Ready stays True).
    publish_problem: Option<Problem>,
    /// A Secret the policy names cannot be used (not opted in, missing...):
    /// shown under its own reason rather than the `PublicationPending` it
    /// causes.
    referenced_problem: Option<Problem>,
    /// `status.publication[]` as the publish step left it (`None`: keep
    /// what status says, the step did not run).
    copies: Option<Vec<PublicationStatus>>,
}

impl Reconciler<'_> {
    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        if !self.ctx.writable.may_write() {
            return;
        }
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
                warnings: self.policy.info().warnings(),
                publication: self.copies.clone(),
            },
            Timestamp::now(),
        );
        if prev == Some(&desired) || !self.ctx.writable.may_write() {
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
        let warnings: Vec<(String, String)> = new_warnings(prev, &desired)
            .map(|c| (c.reason.clone(), c.message.clone()))
            .collect();
        self.ctx.written.record(self.policy, desired);
        for (reason, message) in warnings {
            warn!(policy = %format!("{}/{}", self.namespace, self.name), reason = %reason, "{message}");
            self.event(EventType::Warning, &reason, "Configure", message)
                .await;
        }
        Ok(true)
    }

    /// A problem that stops this reconcile: status and (on change) an Event.
    async fn stop(&self, problem: Problem) -> Result<(), Error> {
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
        Ok(())
    }

    /// The `Degraded` problem status shows now, if any.
    fn degraded_condition(&self) -> Option<Problem> {
        self.ctx
            .written
            .current(self.policy)?
            .conditions
            .into_iter()
            .find(|c| c.type_ == status::DEGRADED && c.status == "True")
            .map(|c| Problem::new(c.reason, c.message))
    }

    async fn sync_config_map(&self, cm_name: &str, public_jwks: &[u8]) -> Result<(), Error> {
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let err = |source| Error::WriteConfigMap {
            namespace: self.namespace.clone(),
            name: cm_name.to_owned(),
            source,
        };
        let desired = config_map_object(self.policy, cm_name, public_jwks);
        if !self.ctx.writable.may_write() {
            return Ok(());
        }
        match api.get_opt(cm_name).await.map_err(err)? {
            None => {
                api.create(&post_params(), &desired).await.map_err(err)?;
            }
            Some(existing) if !config_map_is_ours(&existing, self.policy) => {
                return Err(Error::ConfigMapNotOwned {
                    namespace: self.namespace.clone(),
                    name: cm_name.to_owned(),
                });
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

impl Reporter for Reconciler<'_> {
    type Error = Error;

    async fn publish(&mut self, keys: &StoredKeySet) -> Result<(), Error> {
        let Some(cm) = &self.policy.spec.public_config_map else {
            return Ok(());
        };
        // Through the read-side revocation rule: a degraded pass publishes
        // the set it holds, which may still contain a revoked key.
        let revoked = self.policy.info().revoked;
        let served = keys.servable(&revoked);
        match self
            .sync_config_map(cm, &layout::public_jwks(&served.keys))
            .await
        {
            Err(e) if !e.is_transient() => {
                let reason = match e {
                    Error::ConfigMapNotOwned { .. } => reasons::CONFIGMAP_NOT_OWNED,
                    _ => reasons::CONFIGMAP_WRITE_FAILED,
                };
                self.ctx
                    .metrics
                    .engine
                    .inc_reconcile_error(&self.policy.policy_ref(), e.kind());
                self.publish_problem = Some(Problem::new(reason, e.to_string()));
                Ok(())
            }
            other => other,
        }
    }

    async fn note(&mut self, note: Note<'_>) {
        let secret_name = self.policy.secret_name();
        match note {
            Note::Recreated => {
                self.event(
                    EventType::Warning,
                    "SecretRecreated",
                    "Generate",
                    format!("Secret {secret_name} was deleted or emptied and no replica held its key set; a fresh key set was generated (tokens signed by the old keys no longer verify)"),
                )
                .await;
            }
            Note::Restored { keys } => {
                self.event(
                    EventType::Warning,
                    "SecretRestored",
                    "Restore",
                    format!("Secret {secret_name} was deleted or emptied; the last good key set ({keys} key(s)) was written back: the same keys keep signing and verifying"),
                )
                .await;
            }
            Note::Adopted { keys } => {
                self.event(
                    EventType::Normal,
                    "KeySetAdopted",
                    "Adopt",
                    format!("adopted {keys} key(s) from Secret {secret_name}"),
                )
                .await;
            }
            Note::Lifecycle(e) => {
                let (type_, reason, action) = event_for(e);
                self.event(type_, reason, action, e.to_string()).await;
            }
            Note::CopyRepaired { url } => {
                self.event(
                    EventType::Warning,
                    reasons::EVENT_COPY_REPAIRED,
                    "Publish",
                    format!("the published copy at {url} was changed or deleted by someone else; it was rewritten"),
                )
                .await;
            }
            Note::Copies(copies) => {
                self.copies = Some(copies.iter().map(status::publication_status).collect());
            }
            // Every reconcile reads the Secret: not worth a line.
            Note::Loaded { .. } | Note::Adopting { .. } => {}
        }
    }

    async fn healthy(
        &mut self,
        keys: &StoredKeySet,
        problem: Option<Problem>,
    ) -> Result<(), Error> {
        let published = self.publish_problem.take();
        let problem = with_cause(self.referenced_problem.clone(), problem).or(published.clone());
        let before = self.degraded_condition();
        let changed = self
            .status(Some(keys), self.resolved, problem.clone())
            .await?;
        if let Some(p) = published.filter(|_| changed) {
            warn!(policy = %format!("{}/{}", self.namespace, self.name), reason = %p.reason, "{}", p.message);
            self.event(EventType::Warning, &p.reason, "Publish", p.message)
                .await;
        } else if let Some(p) = problem.filter(|p| changed && before.as_ref() != Some(p)) {
            // A new problem that leaves the keys working (a copy not
            // confirmed, a Secret the policy names, a deferred rotation):
            // an Event once, as the condition changes.
            warn!(policy = %format!("{}/{}", self.namespace, self.name), reason = %p.reason, "{}", p.message);
            self.event(EventType::Warning, &p.reason, "Reconcile", p.message)
                .await;
        }
        Ok(())
    }

    async fn degraded(
        &mut self,
        problem: Problem,
        held: Option<&StoredKeySet>,
    ) -> Result<(), Error> {
        // A Secret the policy names (a PIN nobody opted in) under its own
        // reason, rather than the failed generation it causes.
        let problem =
            with_cause(self.referenced_problem.clone(), Some(problem.clone())).unwrap_or(problem);
        self.stop(problem).await?;
        // The JWKS of every replica drops a revoked kid from the spec alone
        // (the serving index); the public ConfigMap needs a write of its own
        // when the Secret's could not record the revocation.
        let revoked = self.policy.info().revoked;
        if let Some(held) = held.filter(|h| !h.revoked_kids(&revoked).is_empty()) {
            self.publish(held).await?;
            if let Some(p) = self.publish_problem.take() {
                warn!(policy = %format!("{}/{}", self.namespace, self.name), reason = %p.reason, "{}", p.message);
            }
        }
        Ok(())
    }

    fn retrying(&mut self, what: &dyn std::fmt::Display, _conflict: bool) {
        warn!(policy = %format!("{}/{}", self.namespace, self.name), error = %what, "reconcile failed; retrying");
    }
}

/// `cause` (a Secret the policy names cannot be used) under its own reason,
/// with the problem it causes (`PublicationPending`) said after it.
fn with_cause(cause: Option<Problem>, problem: Option<Problem>) -> Option<Problem> {
    match (cause, problem) {
        (Some(c), Some(p)) if !p.message.contains(&c.message) => Some(Problem::new(
            c.reason.clone(),
            format!("{}; {}", c.message, p.message),
        )),
        (Some(c), Some(p)) => Some(Problem::new(c.reason, p.message)),
        (c, p) => c.or(p),
    }
}

/// Reconciles one policy.
pub async fn reconcile(policy: Arc<KeyRotationPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&policy, &ctx).await;
    ctx.metrics
        .engine
        .observe_reconcile(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(
    policy: &Arc<KeyRotationPolicy>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let mut r = Reconciler {
        policy,
        ctx,
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
        resolved: None,
        publish_problem: None,
        referenced_problem: None,
        // No copies: nothing to show (a removed spec.publish clears them).
        copies: policy.spec.publish.is_empty().then(Vec::new),
    };

    // Being deleted (a finalizer holds it, or a foreground deletion is
    // removing its Secret): nothing may be written for it any more, or the
    // Secret the garbage collector just deleted would be written back.
    if policy.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }

    // What the operator alone can judge about the spec.
    let secret_name = policy.secret_name();
    let resolved = match policy.spec.resolve(policy.rotation_request()) {
        Ok(p) => keys::lifecycle::Policy {
            propagation_grace: ctx.propagation_grace,
            ..p
        },
        Err(e) => {
            r.stop(Problem::new(reasons::INVALID_SPEC, e.to_string()))
                .await?;
            return Ok(Action::await_change());
        }
    };
    if !is_dns_subdomain(&secret_name) {
        let message = format!(
            "the default Secret name {secret_name:?} is not a valid object name; set spec.secretName"
        );
        r.stop(Problem::new(reasons::INVALID_SPEC, message)).await?;
        return Ok(Action::await_change());
    }
    r.resolved = Some(&resolved);

    let policy_ref = policy.policy_ref();
    let remembered = policy.uid().and_then(|uid| ctx.last_good.get(&uid));
    let publication = match publication_of(policy, ctx).await {
        Some((publication, refused)) => {
            r.referenced_problem = refused;
            Some(publication)
        }
        None => None,
    };
    // Where new keys are generated: a token the policy names is logged in to
    // with the PIN of its pinSecret (read now). A problem with it is shown
    // at once, although only a generation needs the token.
    let (home, home_problem) = provider::home(&ctx.client, policy).await;
    if home_problem.is_some() {
        r.referenced_problem = home_problem;
    }
    let pass = Pass {
        policy: &policy_ref,
        resolved: &resolved,
        metrics: &ctx.metrics,
        had_keys: policy
            .status
            .as_ref()
            .is_some_and(|s| s.active_key_id.is_some()),
        remembered: remembered.as_ref(),
        publication: publication.as_ref(),
        home,
    };
    let store = SecretStore::new(
        ctx.client.clone(),
        policy,
        &ctx.writable,
        &ctx.secrets,
        &ctx.decoder,
    );
    let uid = policy.uid().unwrap_or_default();
    let mut tracked = Tracked {
        failures: ctx.failures_of(&policy_ref),
        publication: ctx.take_publication(&uid),
        ..Tracked::default()
    };
    let next = run_pass(&pass, &mut tracked, &store, &mut r).await;
    ctx.set_failures(&policy_ref, tracked.failures);
    if publication.is_some() {
        ctx.keep_publication(uid, tracked.publication);
    }
    // A Secret the policy names (or the token its PIN opens) is not usable:
    // its owner's fix changes no watched object, so look again soon.
    let longest = if r.referenced_problem.is_some() {
        REFERENCE_RECHECK
    } else {
        MAX_REQUEUE
    };
    Ok(match next {
        Next::At(due) => {
            // Wake when the planner says, a little late rather than early.
            let wait = due
                .duration_since(Timestamp::now())
                .try_into()
                .unwrap_or(Duration::ZERO);
            let jitter = Duration::from_millis(rand::random_range(50..250));
            Action::requeue((wait + jitter).min(longest))
        }
        Next::After(wait) => Action::requeue(wait.min(longest)),
        Next::OnChange => Action::await_change(),
    })
}

/// The policy's `spec.publish` copies for this pass, with the credentials
/// of each `credentialsSecret` read now through [`referenced`] (a rotated
/// Secret is used at once), and the first Secret refused, as a problem.
/// `None` without `spec.publish`.
async fn publication_of(
    policy: &KeyRotationPolicy,
    ctx: &Context,
) -> Option<(Publication, Option<Problem>)> {
    let namespace = policy.namespace().unwrap_or_default();
    let mut publication = Publication::resolve(
        &policy.spec,
        &[],
        publish::Mode::Kubernetes,
        publish::target::DEFAULT_JWKS_PATH,
        ctx.publish_verify_interval,
    )?;
    let mut refused = None;
    for (i, (target, creds)) in publication.targets.iter_mut().enumerate() {
        let publish::CredentialSource::Secret(name) = &target.credentials else {
            continue;
        };
        let reference = Reference::new(
            &namespace,
            name,
            format!("spec.publish[{i}].credentialsSecret"),
        );
        let read = reference.read(&ctx.client).await.and_then(|data| {
            Credentials::from_pairs(data.iter().map(|(k, v)| (k.clone(), v.to_vec())))
                .map_err(|e| reference.unusable(e.to_string()))
        });
        *creds = read.map(Some).map_err(|e| {
            let message = e.to_string();
            refused.get_or_insert(Problem::new(e.reason(), message.clone()));
            message
        });
    }
    Some((publication, refused))
}

// === impl Context ===

impl Context {
    /// Forgets every copy's confirmations (leadership was lost).
    pub fn forget_publications(&self) {
        let mut all = self.publications.lock().unwrap_or_else(|e| e.into_inner());
        all.clear();
    }

    fn take_publication(&self, uid: &str) -> Tracker {
        let mut all = self.publications.lock().unwrap_or_else(|e| e.into_inner());
        all.remove(uid).unwrap_or_default()
    }

    fn keep_publication(&self, uid: String, tracker: Tracker) {
        let mut all = self.publications.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(uid, tracker);
    }

    fn failures_of(&self, policy: &PolicyRef) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.get(policy).copied().unwrap_or(0)
    }

    fn set_failures(&self, policy: &PolicyRef, n: u32) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if n == 0 {
            failures.remove(policy);
        } else {
            failures.insert(policy.clone(), n);
        }
    }
}

/// What to do after a failed reconcile. The engine handles every failure of
/// a pass itself, so only the errors of the checks before it (a status patch)
/// get here: counted, logged, and retried with backoff.
pub fn error_policy(policy: Arc<KeyRotationPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    let policy_ref = policy.policy_ref();
    ctx.metrics
        .engine
        .inc_reconcile_error(&policy_ref, error.kind());
    warn!(policy = %policy_ref, error = %error, "reconcile failed; retrying");
    let failures = ctx.failures_of(&policy_ref).saturating_add(1);
    ctx.set_failures(&policy_ref, failures);
    Action::requeue(backoff::jittered(failures))
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod mock_api_tests;

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
