// Over 600 lines on purpose: the watch loop and the index it feeds (policies,
// Secrets, re-lists, readiness per stream, staleness) are one state machine
// over the same maps, read top to bottom; its tests follow it.

//! What every replica serves: watches of KeyRotationPolicies and of the
//! operator's Secrets feed the in-memory snapshot behind the HTTP routes
//! (no API call per request). Leader or not, every replica runs this.
//!
//! A Secret that cannot be decoded does not replace the last good view: the
//! policy is listed as degraded and its last good set keeps being served.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use super::request::forget_managed_fields;
use super::secret::{Decoder, Found};
use super::store::SecretCache;
use tokio::sync::mpsc::UnboundedSender;

use crate::api::{KeyProviderType, KeyRotationPolicy, MANAGED_BY, MANAGED_BY_LABEL};
use crate::engine;
use crate::http;
use crate::http::{PolicyRef, PolicySummary, PolicyView, Problem, SharedState, Update};
use crate::keys;
use crate::keys::material::{VerifyingKey, parse_public_jwks};
use crate::policy::PublicationSummary;
use crate::reasons;
use crate::store::StoredKeySet;
use crate::store::layout;

/// Which namespaces to watch: all (empty) or the listed ones.
pub fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// Label selector of the Secrets (and ConfigMaps) the operator writes.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

// One value per watch event, moved straight into the index: boxing would
// only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Change {
    Policy(Event<KeyRotationPolicy>),
    Secret(Event<Secret>),
}

/// A change, with the namespace its watch covers (None: all namespaces).
type Scoped = (Option<String>, Change);

/// A watch error, with the watch it came from.
struct WatchFailure {
    /// The namespace the watch covers (None: all namespaces).
    scope: Option<String>,
    /// Whether it is the watch of Secrets (else of policies).
    secrets: bool,
    error: watcher::Error,
}

fn in_scope(scope: &Option<String>, namespace: &str) -> bool {
    scope.as_deref().is_none_or(|s| s == namespace)
}

/// The last good key set of each policy this replica has served, by policy
/// uid: kept when its Secret is deleted (so the leader can write it back),
/// dropped with the policy.
#[derive(Debug, Default)]
pub struct LastGood {
    sets: std::sync::Mutex<HashMap<String, StoredKeySet>>,
}

// === impl LastGood ===

impl LastGood {
    /// The last good set of the policy with `uid`.
    pub fn get(&self, uid: &str) -> Option<StoredKeySet> {
        self.lock().get(uid).cloned()
    }

    fn remember(&self, uid: String, set: &StoredKeySet) {
        let mut sets = self.lock();
        if sets.get(&uid) != Some(set) {
            sets.insert(uid, set.clone());
        }
    }

    fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredKeySet>> {
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The index: the latest policies and Secrets, and what is served from them.
#[derive(Default)]
pub struct Index {
    last_good: Arc<LastGood>,
    /// The reconciler's view of the operator's Secrets, fed from here.
    cache: Arc<SecretCache>,
    /// Decoded key sets by Secret version, shared with the reconciler.
    decoder: Arc<Decoder>,
    policies: HashMap<PolicyRef, Arc<KeyRotationPolicy>>,
    // Secrets by (namespace, name).
    secrets: HashMap<(String, String), Arc<Secret>>,
    /// The policy of each Secret name, (namespace, Secret name): a Secret
    /// event finds its policy without a scan of every policy.
    owners: HashMap<(String, String), PolicyRef>,
    /// Why nothing signs, for the policies whose Secret watch has failed
    /// for longer than their staleness bound.
    stale: HashMap<PolicyRef, String>,
}

/// What `/policies` shows of a policy's `spec.publish` copies: its
/// `status.publication[]`, as the leader wrote it.
fn publication_of(policy: &KeyRotationPolicy) -> Vec<PublicationSummary> {
    policy
        .status
        .iter()
        .flat_map(|s| &s.publication)
        .map(|c| PublicationSummary {
            url: c.url.clone(),
            published_digest: c.published_digest.clone(),
            kids: c.kids.clone(),
            last_published_time: c.last_published_time.as_ref().map(|t| t.0),
            last_verified_time: c.last_verified_time.as_ref().map(|t| t.0),
            error: c.error.clone(),
        })
        .collect()
}

// === impl Index ===

impl Index {
    /// Recomputes what is served for `policy` from the index.
    fn refresh(&self, state: &mut Pending<'_>, policy: &PolicyRef, base_url: Option<&str>) {
        let Some(p) = self.policies.get(policy) else {
            state.remove(policy);
            return;
        };
        let secret = self
            .secrets
            .get(&(policy.namespace.clone(), p.secret_name()))
            .map(Arc::as_ref);
        let summary = || PolicySummary::for_policy(&p.info());
        let status_problem = p
            .status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == super::status::DEGRADED)
            })
            .filter(|c| c.status == "True")
            .map(|c| Problem::new(c.reason.clone(), c.message.clone()));
        match self.decoder.classify(secret, p) {
            Found::Ours { set, .. } if set.active().is_some() => {
                if let Some(uid) = p.uid() {
                    self.last_good.remember(uid, &set);
                }
                // A stale copy: nothing signs, and /policies says why (this
                // replica may not be the one writing the status).
                let stale = self.stale.get(policy).cloned();
                state
                    .state
                    .metrics()
                    .engine
                    .set_stale(policy, stale.is_some());
                let info = http::PolicyInfo {
                    stale: stale.clone(),
                    ..p.info()
                };
                // The leader's status.publication[], the same on every replica.
                let view =
                    PolicyView::build(&info, &set, base_url).with_publication(publication_of(p));
                state.upsert(match status_problem.filter(|_| stale.is_none()) {
                    Some(problem) => view.with_problem(Some(problem)),
                    None => view,
                });
            }
            Found::Ours { .. } | Found::Absent | Found::Emptied { .. } => {
                state.set_problem(
                    policy,
                    summary(),
                    Some(status_problem.unwrap_or_else(|| {
                        Problem::new(reasons::NO_KEY_SET, "the key set has not been written yet")
                    })),
                );
            }
            Found::Corrupt(e) => {
                warn!(policy = %policy, data_key = e.data_key, "the key set cannot be read; serving the last good set");
                let problem = Problem::new(
                    reasons::CORRUPT_KEY_SET,
                    format!(
                        "Secret {} cannot be read ({e}); the last good key set is served",
                        p.secret_name()
                    ),
                );
                // Nothing served yet (this replica started after the damage):
                // the stored public set, when it is not what failed.
                let public = (!state.serves(policy) && e.data_key != layout::PUBLIC_JWKS)
                    .then(|| secret.and_then(stored_public_set))
                    .flatten();
                match public {
                    Some(keys) => state.upsert(
                        PolicyView::public_only(&p.info(), &keys, base_url)
                            .with_problem(Some(problem)),
                    ),
                    None => state.set_problem(policy, summary(), Some(problem)),
                }
            }
            // Not labelled ours yet (the watch only sees ours; a GET found it):
            // the leader adopts or reports it.
            Found::Adoptable { .. } | Found::Foreign(_) => {
                state.set_problem(
                    policy,
                    summary(),
                    Some(status_problem.unwrap_or_else(|| {
                        Problem::new(
                            reasons::SECRET_NOT_OWNED,
                            "the Secret is not managed by jwks-operator",
                        )
                    })),
                );
            }
        }
    }

    fn policy_of_secret(&self, secret: &Secret) -> Option<PolicyRef> {
        let key = (secret.namespace()?, secret.name_any());
        self.owners.get(&key).cloned()
    }

    fn insert_policy(&mut self, r: PolicyRef, p: Arc<KeyRotationPolicy>) {
        let secret = (r.namespace.clone(), p.secret_name());
        if let Some(old) = self.policies.insert(r.clone(), p) {
            let old_secret = (r.namespace.clone(), old.secret_name());
            if old_secret != secret && self.owners.get(&old_secret) == Some(&r) {
                self.owners.remove(&old_secret);
            }
        }
        self.owners.insert(secret, r);
    }

    fn remove_policy(&mut self, r: &PolicyRef) {
        self.stale.remove(r);
        if let Some(old) = self.policies.remove(r) {
            let secret = (r.namespace.clone(), old.secret_name());
            if self.owners.get(&secret) == Some(r) {
                self.owners.remove(&secret);
            }
        }
    }
}

/// The public keys of a Secret's `jwks.public.json`, if it holds a valid
/// public JWK Set with at least one key.
fn stored_public_set(secret: &Secret) -> Option<Vec<VerifyingKey>> {
    let bytes = &secret.data.as_ref()?.get(layout::PUBLIC_JWKS)?.0;
    parse_public_jwks(bytes)
        .ok()
        .filter(|keys| !keys.is_empty())
}

fn merged(
    client: &Client,
    namespaces: &[String],
) -> impl Stream<Item = Result<Scoped, WatchFailure>> + Send + use<> {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    let api = |scope: &Option<String>| -> (Api<KeyRotationPolicy>, Api<Secret>) {
        match scope {
            None => (Api::all(client.clone()), Api::all(client.clone())),
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
        }
    };
    let mut streams = Vec::new();
    for scope in scopes {
        let (policies, secrets) = api(&scope);
        let s1 = scope.clone();
        streams.push(
            watcher::watcher(policies, watcher::Config::default())
                .default_backoff()
                .modify(forget_managed_fields)
                .map(move |e| {
                    e.map(|e| (s1.clone(), Change::Policy(e)))
                        .map_err(|error| WatchFailure {
                            scope: s1.clone(),
                            secrets: false,
                            error,
                        })
                })
                .boxed(),
        );
        streams.push(
            watcher::watcher(
                secrets,
                watcher::Config::default().labels(&managed_selector()),
            )
            .default_backoff()
            .modify(forget_managed_fields)
            .map(move |e| {
                e.map(|e| (scope.clone(), Change::Secret(e)))
                    .map_err(|error| WatchFailure {
                        scope: scope.clone(),
                        secrets: true,
                        error,
                    })
            })
            .boxed(),
        );
    }
    stream::select_all(streams)
}

/// Objects of a re-list in progress, by scope.
type Relist<K, V> = HashMap<Option<String>, HashMap<K, V>>;

/// The event loop's state: the index, re-lists in progress, and which
/// watch streams have delivered their initial list.
pub struct Indexer {
    index: Index,
    base_url: Option<String>,
    /// Watch streams of the run (one per kind and scope).
    streams: usize,
    /// Streams that have completed a list, by (scope, is-Secrets): a
    /// stream that re-lists counts once, so readiness waits for every one.
    synced: HashSet<(Option<String>, bool)>,
    relist_policies: Relist<PolicyRef, Arc<KeyRotationPolicy>>,
    relist_secrets: Relist<(String, String), Arc<Secret>>,
    /// Since when the Secret watch of each scope has been failing (cleared
    /// by its next event).
    secrets_failing: HashMap<Option<String>, std::time::Instant>,
    /// `--propagation-grace`, part of the staleness bound.
    propagation_grace: std::time::Duration,
    /// Where policies with a key provider go, to be set up on this replica
    /// too ([`provider::keep_open`](super::provider::keep_open)).
    providers: Option<UnboundedSender<Arc<KeyRotationPolicy>>>,
}

// === impl Indexer ===

impl Indexer {
    /// An empty index for the watches of `namespaces` (empty: all).
    pub fn new(
        namespaces: &[String],
        base_url: Option<String>,
        last_good: Arc<LastGood>,
    ) -> Indexer {
        Indexer {
            index: Index {
                last_good,
                ..Index::default()
            },
            base_url,
            streams: 2 * namespaces.len().max(1),
            synced: HashSet::new(),
            relist_policies: HashMap::new(),
            relist_secrets: HashMap::new(),
            secrets_failing: HashMap::new(),
            propagation_grace: keys::lifecycle::DEFAULT_PROPAGATION_GRACE,
            providers: None,
        }
    }

    /// Sends every policy with a key provider (as it arrives or changes) to
    /// `to`, which sets the provider up on this replica: a token-held key
    /// read from the Secret signs only where its token is logged in.
    pub fn opening_providers(mut self, to: UnboundedSender<Arc<KeyRotationPolicy>>) -> Indexer {
        self.providers = Some(to);
        self
    }

    /// Sets `--propagation-grace` (part of the staleness bound).
    pub fn with_propagation_grace(mut self, grace: std::time::Duration) -> Indexer {
        self.propagation_grace = grace;
        self
    }

    /// The Secret watch of `scope` failed at `now` (the watcher retries).
    fn secrets_watch_failed(&mut self, scope: Option<String>, now: std::time::Instant) {
        self.secrets_failing.entry(scope).or_insert(now);
    }

    /// Bounded staleness ([`crate::engine::staleness`]) of what this replica
    /// serves: a policy whose Secret watch has failed for longer than
    /// `clockSkew + --propagation-grace` stops signing on this replica's
    /// token endpoint (the leader may have retired its key meanwhile), shows
    /// `KeySetStale` in `/policies` and `key_set_stale` 1, and resumes once
    /// the watch delivers again. Checked at every batch: a failing watch
    /// retries (and reports) at least every 30 s.
    fn check_staleness(&mut self, state: &mut Pending<'_>, now: std::time::Instant) {
        let base = self.base_url.as_deref();
        let index = &mut self.index;
        let mut changed = Vec::new();
        for (r, p) in &index.policies {
            let since = self
                .secrets_failing
                .iter()
                .filter(|(scope, _)| in_scope(scope, &r.namespace))
                .map(|(_, at)| *at)
                .min();
            let bound = std::time::Duration::from(p.spec.clock_skew) + self.propagation_grace;
            let stale = match engine::staleness::freshness(since, now, bound) {
                engine::staleness::Freshness::Fresh => None,
                engine::staleness::Freshness::Stale { age } => Some(format!(
                    "this replica's watch of the policy's Secret has failed for {}s, longer than clockSkew + propagationGrace ({}s): the leader may have retired the active key since, so this replica does not sign until the watch recovers",
                    age.as_secs(),
                    bound.as_secs()
                )),
            };
            match (stale, index.stale.contains_key(r)) {
                (Some(why), false) => {
                    warn!(policy = %r, "{why}");
                    changed.push((r.clone(), Some(why)));
                }
                (None, true) => {
                    info!(policy = %r, "the Secret watch delivers again: this replica signs again");
                    changed.push((r.clone(), None));
                }
                _ => {}
            }
        }
        for (r, why) in changed {
            match why {
                Some(why) => index.stale.insert(r.clone(), why),
                None => index.stale.remove(&r),
            };
            index.refresh(state, &r, base);
        }
    }

    /// Shares the index's Secrets and decoded key sets with the reconciler.
    pub fn sharing(mut self, cache: Arc<SecretCache>, decoder: Arc<Decoder>) -> Indexer {
        self.index.cache = cache;
        self.index.decoder = decoder;
        self
    }

    /// Applies one watch event to the index and to what `state` serves.
    #[cfg(test)]
    fn handle(&mut self, state: &SharedState, scope: Option<String>, change: Change) {
        let mut pending = Pending::new(state);
        self.absorb(&mut pending, scope, change);
        pending.publish();
        self.check_ready(state);
    }

    /// Applies one watch event to the index; what it changes in what is
    /// served goes to `state`, published with the rest of its batch.
    fn absorb(&mut self, state: &mut Pending<'_>, scope: Option<String>, change: Change) {
        if matches!(change, Change::Secret(_)) {
            self.secrets_failing.remove(&scope);
        }
        let base = self.base_url.as_deref();
        let index = &mut self.index;
        match change {
            Change::Policy(Event::Apply(p) | Event::InitApply(p)) => {
                let r = p.policy_ref();
                let p = Arc::new(p);
                if let Some(to) = &self.providers
                    && p.spec
                        .key_provider
                        .as_ref()
                        .is_some_and(|k| k.kind != KeyProviderType::Secret)
                {
                    // The receiver lives as long as the run.
                    let _ = to.send(p.clone());
                }
                match self.relist_policies.get_mut(&scope) {
                    Some(pending) => {
                        pending.insert(r, p);
                    }
                    None => {
                        index.insert_policy(r.clone(), p);
                        index.refresh(state, &r, base);
                    }
                }
            }
            Change::Policy(Event::Delete(p)) => {
                if let Some(uid) = p.uid() {
                    index.last_good.forget(&uid);
                }
                let r = p.policy_ref();
                index.remove_policy(&r);
                index.refresh(state, &r, base);
            }
            Change::Policy(Event::Init) => {
                self.relist_policies.insert(scope, HashMap::new());
            }
            Change::Policy(Event::InitDone) => {
                if let Some(fresh) = self.relist_policies.remove(&scope) {
                    let gone: Vec<PolicyRef> = index
                        .policies
                        .keys()
                        .filter(|r| in_scope(&scope, &r.namespace) && !fresh.contains_key(*r))
                        .cloned()
                        .collect();
                    for (r, p) in fresh {
                        index.insert_policy(r, p);
                    }
                    for r in gone {
                        index.remove_policy(&r);
                    }
                    let all: Vec<PolicyRef> = index.policies.keys().cloned().collect();
                    for r in all {
                        index.refresh(state, &r, base);
                    }
                }
                self.synced.insert((scope, false));
            }
            Change::Secret(Event::Apply(s) | Event::InitApply(s)) => {
                let key = (s.namespace().unwrap_or_default(), s.name_any());
                let s = Arc::new(s);
                match self.relist_secrets.get_mut(&scope) {
                    Some(pending) => {
                        pending.insert(key, s);
                    }
                    None => {
                        let owner = index.policy_of_secret(&s);
                        index.cache.observe(s.clone());
                        index.secrets.insert(key, s);
                        if let Some(r) = owner {
                            index.cache.changed(&r);
                            index.refresh(state, &r, base);
                        }
                    }
                }
            }
            Change::Secret(Event::Delete(s)) => {
                let owner = index.policy_of_secret(&s);
                let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
                index.cache.deleted(&s);
                index.decoder.forget(&ns, &name);
                index.secrets.remove(&(ns, name));
                // A deleted Secret leaves the last good set served until the
                // leader writes a new one.
                if let Some(r) = owner {
                    index.cache.changed(&r);
                    debug!(policy = %r, "Secret deleted; keeping the last good set until it is recreated");
                }
            }
            Change::Secret(Event::Init) => {
                self.relist_secrets.insert(scope, HashMap::new());
            }
            Change::Secret(Event::InitDone) => {
                if let Some(fresh) = self.relist_secrets.remove(&scope) {
                    index.cache.listed(&scope, &fresh);
                    index.secrets.retain(|(ns, _), _| !in_scope(&scope, ns));
                    index.secrets.extend(fresh);
                    // After a watch gap, anything may have changed meanwhile.
                    let relisted = self.synced.contains(&(scope.clone(), true));
                    let all: Vec<PolicyRef> = index.policies.keys().cloned().collect();
                    for r in all {
                        if relisted && in_scope(&scope, &r.namespace) {
                            index.cache.changed(&r);
                        }
                        index.refresh(state, &r, base);
                    }
                }
                self.synced.insert((scope, true));
            }
        }
    }

    /// Turns `/readyz` ready once every watch stream has listed (call after
    /// publishing what the lists brought).
    fn check_ready(&self, state: &SharedState) {
        if self.synced.len() >= self.streams && !state.is_ready() {
            state.set_ready(true);
        }
    }
}

/// What a batch of watch events changes in what is served, published in
/// one swap ([`SharedState::apply`]).
struct Pending<'a> {
    state: &'a SharedState,
    updates: Vec<Update>,
}

impl<'a> Pending<'a> {
    fn new(state: &'a SharedState) -> Pending<'a> {
        Pending {
            state,
            updates: Vec::new(),
        }
    }

    fn upsert(&mut self, view: PolicyView) {
        self.updates.push(Update::Upsert(view));
    }

    fn set_problem(
        &mut self,
        policy: &PolicyRef,
        summary: PolicySummary,
        problem: Option<Problem>,
    ) {
        self.updates.push(Update::Problem {
            policy: policy.clone(),
            summary_if_absent: summary,
            problem,
        });
    }

    fn remove(&mut self, policy: &PolicyRef) {
        self.updates.push(Update::Remove(policy.clone()));
    }

    /// Whether a view of `policy` is served once this batch is published.
    fn serves(&self, policy: &PolicyRef) -> bool {
        let mut serving = self.state.view(policy).is_some();
        for u in &self.updates {
            match u {
                Update::Upsert(v) if v.policy() == policy => serving = true,
                Update::Remove(r) if r == policy => serving = false,
                _ => {}
            }
        }
        serving
    }

    fn publish(&mut self) {
        self.state.apply(std::mem::take(&mut self.updates));
    }
}

/// How long the index keeps taking watch events before it publishes what
/// they changed: a burst (a start, a re-list, thousands of policies
/// becoming ready) is published a few times a second instead of once per
/// event, each publication copying the map of every policy. It is also the
/// most a change waits to be served (plus the time to absorb one event): the
/// batch closes at its deadline even while more events are ready.
pub const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs the index until the watch streams end (they don't, short of a
/// shutdown of the runtime). `/readyz` turns ready once every watch has
/// delivered its initial list.
pub async fn run(
    client: Client,
    namespaces: Vec<String>,
    state: SharedState,
    mut indexer: Indexer,
) {
    index_batches(&mut indexer, &state, merged(&client, &namespaces)).await;
}

/// The event loop of [`run`]: takes watch events in batches of
/// [`BATCH_WINDOW`], publishing each batch in one swap.
async fn index_batches(
    indexer: &mut Indexer,
    state: &SharedState,
    changes: impl Stream<Item = Result<Scoped, WatchFailure>>,
) {
    let mut changes = std::pin::pin!(changes);
    while let Some(first) = changes.next().await {
        let mut pending = Pending::new(state);
        let until = tokio::time::Instant::now() + BATCH_WINDOW;
        let mut next = Some(first);
        while let Some(change) = next.take() {
            match change {
                Ok((scope, change)) => indexer.absorb(&mut pending, scope, change),
                Err(e) => {
                    warn!(error = %e.error, "watch error; the watcher retries with backoff");
                    if e.secrets {
                        indexer.secrets_watch_failed(e.scope, std::time::Instant::now());
                    }
                }
            }
            // The window is a bound, not a pause between events: `timeout_at`
            // polls the stream before its deadline, so a stream that always
            // has the next event ready (a re-list, a busy cluster) would keep
            // the batch open, and its changes unserved, for as long as it
            // lasts.
            if tokio::time::Instant::now() >= until {
                break;
            }
            if let Ok(Some(more)) = tokio::time::timeout_at(until, changes.next()).await {
                next = Some(more);
            }
        }
        indexer.check_staleness(&mut pending, std::time::Instant::now());
        pending.publish();
        indexer.check_ready(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn state() -> SharedState {
        SharedState::new(None, Arc::new(Metrics::new()))
    }

    fn ns(n: &str) -> Option<String> {
        Some(n.to_owned())
    }

    fn policy() -> KeyRotationPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "KeyRotationPolicy",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"algorithm": "ES256"},
        }))
        .unwrap()
    }

    /// Our Secret for `policy()` with `data_key` overwritten by `garbage`.
    fn damaged(data_key: &str, garbage: &[u8]) -> (Secret, Vec<u8>) {
        let encoded = layout::encode(&crate::store::testing::three_key_set(), 3).unwrap();
        let mut secret = super::super::secret::secret_object(&policy(), &encoded, None);
        let public = secret.data.as_ref().unwrap()[layout::PUBLIC_JWKS].0.clone();
        secret.data.as_mut().unwrap().insert(
            data_key.to_owned(),
            k8s_openapi::ByteString(garbage.to_vec()),
        );
        (secret, public)
    }

    /// A replica that starts with the Secret already damaged.
    fn start_with(secret: Secret) -> SharedState {
        let state = state();
        let mut indexer = Indexer::new(&[], None, Arc::default());
        indexer.handle(&state, None, Change::Policy(Event::Apply(policy())));
        indexer.handle(&state, None, Change::Secret(Event::Apply(secret)));
        state
    }

    #[test]
    fn a_replica_starting_on_damaged_private_parts_serves_the_stored_public_set() {
        let r = PolicyRef::new("ns", "p");
        for data_key in [layout::ACTIVE_PEM, layout::JWKS, layout::LIFECYCLE] {
            let (secret, public) = damaged(data_key, b"not what it should be");
            let state = start_with(secret);
            let view = state
                .view(&r)
                .unwrap_or_else(|| panic!("{data_key}: nothing served"));
            assert_eq!(view.jwks_bytes().as_ref(), public.as_slice(), "{data_key}");
            let summary = view.summary();
            assert!(!summary.ready, "nothing signs");
            let degraded = summary.degraded.as_ref().expect("degraded");
            assert_eq!(degraded.reason, "CorruptKeySet");
            assert!(degraded.message.contains(data_key), "{}", degraded.message);
        }
    }

    #[test]
    fn a_damaged_public_set_is_never_served() {
        let (secret, _) = damaged(layout::PUBLIC_JWKS, b"{\"keys\": []}");
        let state = start_with(secret);
        assert!(state.view(&PolicyRef::new("ns", "p")).is_none());
    }

    /// Our Secret for `policy()` as the API serves it, at `version`.
    fn served_secret(version: &str) -> Secret {
        let encoded = layout::encode(&crate::store::testing::three_key_set(), 3).unwrap();
        let mut secret = super::super::secret::secret_object(&policy(), &encoded, None);
        secret.metadata.uid = Some("s1".into());
        secret.metadata.resource_version = Some(version.into());
        secret
    }

    #[test]
    fn policy_events_do_not_decode_an_unchanged_secret_again() {
        let state = state();
        let decoder = Arc::new(Decoder::default());
        let mut indexer =
            Indexer::new(&[], None, Arc::default()).sharing(Arc::default(), decoder.clone());
        indexer.handle(&state, None, Change::Policy(Event::Apply(policy())));
        indexer.handle(
            &state,
            None,
            Change::Secret(Event::Apply(served_secret("7"))),
        );
        let r = PolicyRef::new("ns", "p");
        assert!(state.view(&r).is_some(), "served");
        assert_eq!(decoder.decodes(), 1);

        // The reconciler's status writes come back as policy events.
        for version in 10..20 {
            let mut p = policy();
            p.metadata.resource_version = Some(version.to_string());
            indexer.handle(&state, None, Change::Policy(Event::Apply(p)));
        }
        // A re-list of the policies refreshes every policy.
        indexer.handle(&state, None, Change::Policy(Event::Init));
        indexer.handle(&state, None, Change::Policy(Event::InitApply(policy())));
        indexer.handle(&state, None, Change::Policy(Event::InitDone));
        assert_eq!(decoder.decodes(), 1, "the Secret did not change");
        assert!(state.view(&r).is_some(), "still served");

        indexer.handle(
            &state,
            None,
            Change::Secret(Event::Apply(served_secret("8"))),
        );
        assert_eq!(decoder.decodes(), 2, "a new version is decoded");
    }

    #[test]
    fn a_secret_event_finds_its_policy_by_the_secret_name() {
        let state = state();
        let mut indexer = Indexer::new(&[], None, Arc::default());
        let mut named = policy();
        named.spec.secret_name = Some("keys".into());
        indexer.handle(&state, None, Change::Policy(Event::Apply(named.clone())));
        let mut secret = super::super::secret::secret_object(
            &named,
            &layout::encode(&crate::store::testing::three_key_set(), 3).unwrap(),
            None,
        );
        secret.metadata.resource_version = Some("7".into());
        indexer.handle(&state, None, Change::Secret(Event::Apply(secret.clone())));
        let r = PolicyRef::new("ns", "p");
        assert!(state.view(&r).is_some(), "served from Secret keys");

        // Deleted: its Secret no longer leads to it.
        indexer.handle(&state, None, Change::Policy(Event::Delete(named)));
        assert!(state.summaries().is_empty());
        secret.metadata.resource_version = Some("8".into());
        indexer.handle(&state, None, Change::Secret(Event::Apply(secret)));
        assert!(
            state.summaries().is_empty(),
            "nothing served for a deleted policy"
        );
    }

    #[test]
    fn the_reconciler_cache_knows_what_the_watch_listed_and_nothing_before() {
        use super::super::store::Cached;
        let state = state();
        let cache = Arc::new(SecretCache::default());
        let mut indexer =
            Indexer::new(&["ns".to_owned(), "other".to_owned()], None, Arc::default())
                .sharing(cache.clone(), Arc::default());
        indexer.handle(&state, ns("ns"), Change::Policy(Event::Apply(policy())));
        // Before the Secrets of a namespace have listed, "not seen" is not
        // "absent": the reconciler must ask the API.
        indexer.handle(&state, ns("ns"), Change::Secret(Event::Init));
        indexer.handle(
            &state,
            ns("ns"),
            Change::Secret(Event::InitApply(served_secret("7"))),
        );
        assert!(matches!(cache.get("ns", "p-jwks"), Cached::Unknown));
        indexer.handle(&state, ns("ns"), Change::Secret(Event::InitDone));
        assert!(matches!(
            cache.get("ns", "p-jwks"),
            Cached::Present(s) if s.metadata.resource_version.as_deref() == Some("7")
        ));
        assert!(matches!(cache.get("ns", "q-jwks"), Cached::Absent));
        assert!(matches!(cache.get("other", "p-jwks"), Cached::Unknown));

        // A late event of an older version does not replace a newer one
        // (the reconciler records what its writes return).
        cache.observe(Arc::new(served_secret("9")));
        indexer.handle(
            &state,
            ns("ns"),
            Change::Secret(Event::Apply(served_secret("8"))),
        );
        assert!(matches!(
            cache.get("ns", "p-jwks"),
            Cached::Present(s) if s.metadata.resource_version.as_deref() == Some("9")
        ));
        indexer.handle(
            &state,
            ns("ns"),
            Change::Secret(Event::Delete(served_secret("10"))),
        );
        assert!(matches!(cache.get("ns", "p-jwks"), Cached::Absent));
    }

    #[test]
    fn a_secret_change_wakes_its_policy_once_the_cache_has_it() {
        use super::super::store::Cached;
        let state = state();
        let cache = Arc::new(SecretCache::default());
        let mut indexer =
            Indexer::new(&[], None, Arc::default()).sharing(cache.clone(), Arc::default());
        let mut here = cache.subscribe(ns("ns"));
        let mut elsewhere = cache.subscribe(ns("other"));
        indexer.handle(&state, None, Change::Policy(Event::Apply(policy())));
        indexer.handle(&state, None, Change::Secret(Event::Init));
        indexer.handle(&state, None, Change::Secret(Event::InitDone));
        assert!(here.try_recv().is_err(), "a first list wakes nobody");

        indexer.handle(
            &state,
            None,
            Change::Secret(Event::Apply(served_secret("7"))),
        );
        assert_eq!(here.try_recv().ok(), Some(PolicyRef::new("ns", "p")));
        // By then the reconcile reads the version that woke it.
        assert!(matches!(
            cache.get("ns", "p-jwks"),
            Cached::Present(s) if s.metadata.resource_version.as_deref() == Some("7")
        ));
        indexer.handle(
            &state,
            None,
            Change::Secret(Event::Delete(served_secret("8"))),
        );
        assert_eq!(here.try_recv().ok(), Some(PolicyRef::new("ns", "p")));
        assert!(matches!(cache.get("ns", "p-jwks"), Cached::Absent));
        // A re-list (after a watch gap) wakes every policy in its scope.
        indexer.handle(&state, None, Change::Secret(Event::Init));
        indexer.handle(&state, None, Change::Secret(Event::InitDone));
        assert_eq!(here.try_recv().ok(), Some(PolicyRef::new("ns", "p")));
        assert!(
            elsewhere.try_recv().is_err(),
            "another namespace's controller"
        );
    }

    #[tokio::test]
    async fn a_burst_of_watch_events_is_published_in_a_swap_per_window_not_per_event() {
        let state = state();
        let mut indexer = Indexer::new(&[], None, Arc::default());
        let policy = |i: usize| {
            let mut p = policy();
            p.metadata.name = Some(format!("p{i}"));
            p
        };
        let mut events: Vec<Result<Scoped, WatchFailure>> =
            vec![Ok((None, Change::Policy(Event::Init)))];
        events.extend((0..1000).map(|i| Ok((None, Change::Policy(Event::InitApply(policy(i)))))));
        events.push(Ok((None, Change::Policy(Event::InitDone))));
        events.extend((0..1000).map(|i| Ok((None, Change::Policy(Event::Apply(policy(i)))))));
        events.push(Ok((None, Change::Secret(Event::Init))));
        events.push(Ok((None, Change::Secret(Event::InitDone))));
        let before = state.publications();
        let started = std::time::Instant::now();
        index_batches(&mut indexer, &state, stream::iter(events)).await;
        // One swap per window the burst took to absorb (one, on a fast
        // machine), never one per event.
        let windows = started.elapsed().as_millis() / BATCH_WINDOW.as_millis();
        let swaps = state.publications() - before;
        assert!(
            swaps <= windows as u64 + 1,
            "2,004 events in {:?}: {swaps} swaps",
            started.elapsed()
        );
        assert_eq!(state.summaries().len(), 1000);
        assert!(state.is_ready());
    }

    /// Events that keep coming, always ready, each a millisecond after the
    /// last: what is served lags them by about one window, never by the
    /// whole stream.
    ///
    /// Wall-clock time rather than tokio's paused clock: the paused clock
    /// only moves while every task waits, and the fault shows only with a
    /// stream that never makes the index wait (advancing the clock yields,
    /// which closes the batch anyway).
    #[tokio::test]
    async fn a_steady_stream_of_events_is_published_at_least_once_per_window() {
        let state = state();
        let mut indexer = Indexer::new(&[], None, Arc::default());
        let started = std::time::Instant::now();
        let seen = state.clone();
        // (elapsed, publications so far) as each event is produced.
        let trace = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = trace.clone();
        let events = stream::iter(0..300).map(move |i| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            record
                .lock()
                .unwrap()
                .push((started.elapsed(), seen.publications()));
            let mut p = policy();
            p.metadata.name = Some(format!("p{}", i % 10));
            Ok((None, Change::Policy(Event::Apply(p))))
        });
        index_batches(&mut indexer, &state, events).await;
        let trace = trace.lock().unwrap();
        let total = trace.last().unwrap().0;
        let first = trace
            .iter()
            .find(|(_, published)| *published > 0)
            .map(|(at, _)| *at);
        let bound = BATCH_WINDOW + std::time::Duration::from_millis(100);
        assert!(
            first.is_some_and(|at| at <= bound),
            "first publication seen at {first:?} into a {total:?} stream (bound {bound:?})"
        );
        let windows = (total.as_millis() / BATCH_WINDOW.as_millis()) as u64;
        assert!(
            state.publications() >= windows / 2,
            "{} publications over {total:?}",
            state.publications()
        );
    }

    /// Item 9 of issue 20: a replica whose Secret watch keeps failing stops
    /// signing once its copy is older than `clockSkew + propagationGrace`,
    /// says so in /policies and `key_set_stale`, keeps serving the JWKS,
    /// and signs again once the watch delivers. Injected clock.
    #[test]
    fn a_replica_whose_secret_watch_fails_past_the_bound_stops_signing_until_it_recovers() {
        let state = state();
        let mut indexer = Indexer::new(&[], None, Arc::default())
            .with_propagation_grace(std::time::Duration::from_secs(30));
        let mut p = policy();
        p.spec.clock_skew = crate::api::Duration::from(std::time::Duration::from_secs(10));
        p.spec.token_endpoint =
            serde_json::from_value(serde_json::json!({"enabled": true})).unwrap();
        indexer.handle(&state, None, Change::Policy(Event::Apply(p)));
        indexer.handle(
            &state,
            None,
            Change::Secret(Event::Apply(served_secret("7"))),
        );
        let r = PolicyRef::new("ns", "p");
        let signs = |state: &SharedState| {
            state
                .view(&r)
                .unwrap()
                .token_side()
                .unwrap()
                .signer
                .is_some()
        };
        let stale_gauge = |state: &SharedState| {
            state
                .metrics()
                .encode()
                .lines()
                .find(|l| l.starts_with("jwks_operator_key_set_stale{"))
                .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        };
        assert!(signs(&state));

        let t0 = std::time::Instant::now();
        let check = |indexer: &mut Indexer, at: std::time::Instant| {
            let mut pending = Pending::new(&state);
            indexer.check_staleness(&mut pending, at);
            pending.publish();
        };
        indexer.secrets_watch_failed(None, t0);
        check(&mut indexer, t0 + std::time::Duration::from_secs(40));
        assert!(signs(&state), "within clockSkew + propagationGrace");
        check(&mut indexer, t0 + std::time::Duration::from_secs(41));
        assert!(!signs(&state), "stale: nothing signs");
        let view = state.view(&r).unwrap();
        let why = view.token_side().unwrap().stale.clone().unwrap();
        assert!(why.contains("(40s)"), "{why}");
        assert_eq!(
            view.summary().degraded.as_ref().unwrap().reason,
            "KeySetStale"
        );
        assert_eq!(
            view.summary().key_count,
            3,
            "the public set is still served"
        );
        assert_eq!(stale_gauge(&state).as_deref(), Some("1"));
        // A later failure does not restart the clock; a policy event keeps it stale.
        indexer.secrets_watch_failed(None, t0 + std::time::Duration::from_secs(50));
        indexer.handle(
            &state,
            None,
            Change::Policy(Event::Apply(policy_with_token())),
        );
        assert!(!signs(&state));

        // The watch delivers again (its re-list starts): signing resumes.
        indexer.handle(&state, None, Change::Secret(Event::Init));
        check(&mut indexer, t0 + std::time::Duration::from_secs(60));
        assert!(signs(&state));
        assert!(state.view(&r).unwrap().summary().degraded.is_none());
        assert_eq!(stale_gauge(&state).as_deref(), Some("0"));
    }

    fn policy_with_token() -> KeyRotationPolicy {
        let mut p = policy();
        p.spec.clock_skew = crate::api::Duration::from(std::time::Duration::from_secs(10));
        p.spec.token_endpoint =
            serde_json::from_value(serde_json::json!({"enabled": true})).unwrap();
        p
    }

    #[test]
    fn ready_only_once_every_stream_has_listed_however_often_one_relists() {
        let state = state();
        let mut indexer = Indexer::new(&["a".to_owned(), "b".to_owned()], None, Arc::default());
        // The policy watch of `a` lists, then re-lists three times (a watch
        // error, say) before any other stream has listed once.
        for _ in 0..4 {
            indexer.handle(&state, ns("a"), Change::Policy(Event::Init));
            indexer.handle(&state, ns("a"), Change::Policy(Event::InitDone));
        }
        assert!(!state.is_ready(), "three streams have not listed yet");
        indexer.handle(&state, ns("b"), Change::Policy(Event::InitDone));
        indexer.handle(&state, ns("a"), Change::Secret(Event::InitDone));
        assert!(!state.is_ready(), "the Secrets of b have not listed yet");
        indexer.handle(&state, ns("b"), Change::Secret(Event::InitDone));
        assert!(state.is_ready());
    }
}
