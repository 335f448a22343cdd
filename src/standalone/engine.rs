//! The standalone engine: for every policy read from the files, load its key
//! set from the state directory, run the lifecycle planner, save what
//! changed, and publish the result to the HTTP snapshot.
//!
//! One [`Engine`] owns every policy; the run loop in [`super::run`] calls
//! [`Engine::apply_files`] when the policy files are (re-)read and
//! [`Engine::reconcile_due`] whenever [`Engine::next_wake`] is reached.
//!
//! Per policy, one pass:
//! 1. load the stored set unless the in-memory copy is known to match it
//!    (first pass, after a conflict, after the state was unreadable);
//!    a node-jose style `jwks.json` without lifecycle records is adopted;
//! 2. plan at `now` (key generation on the blocking pool, OS randomness);
//! 3. save when the set changed, conditional on the version loaded;
//! 4. only then publish: a key is never served, let alone used to sign,
//!    before it is on disk.
//!
//! Failures never stop the other policies. A state that cannot be parsed is
//! left untouched and the policy is degraded (`StateCorrupt`) while the last
//! good set, if this process has one, keeps being served; it is re-read on
//! SIGHUP and every [`CORRUPT_RECHECK`]. A document that turns invalid
//! freezes its policy: the keys it has keep being served, nothing rotates,
//! until the document is fixed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jiff::Timestamp;
use tracing::{error, info, warn};

use super::policies::{BadDocument, PolicyDoc, PolicyFiles};
use crate::http::{PolicyRef, PolicySummary, PolicyView, Problem, SharedState, Shutdown};
use crate::keys::lifecycle::{KeySet, LifecycleEvent, Plan, PlanError, RngKeySource, after, plan};
use crate::metrics::{TimedKeySource, next_prune_time};
use crate::store::files::{FileStore, FileVersion, PolicyDir};
use crate::store::{KeyStore as _, Loaded, StoreError, StoredKeySet};

/// How often a policy whose stored state cannot be parsed is looked at again.
pub const CORRUPT_RECHECK: Duration = Duration::from_secs(30);
/// Longest wait between retries of a failing write or key generation.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Policies planned and saved at the same time in one pass.
pub const CONCURRENCY: usize = 8;
/// Publish what a long pass has produced so far at least this often.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// One policy under management.
struct Managed {
    doc: PolicyDoc,
    policy_ref: PolicyRef,
    dir: PolicyDir,
    /// The set as last loaded or saved, and the version it has on disk
    /// (`None`: nothing on disk). This is what is served.
    keys: Option<(StoredKeySet, Option<FileVersion>)>,
    /// Whether `keys` is known to match the disk.
    in_sync: bool,
    /// Whether `keys` must be written even if the planner changes nothing
    /// (an adopted set, not yet in the operator's layout).
    unsaved: bool,
    next_due: Timestamp,
    /// Set while the document is invalid: nothing is planned.
    frozen: Option<Problem>,
    /// The problem currently shown, to log changes only once.
    problem: Option<Problem>,
    failures: u32,
}

/// The standalone engine. See the module docs.
pub struct Engine {
    store: FileStore,
    state: SharedState,
    public_base_url: Option<String>,
    policies: BTreeMap<PolicyRef, Managed>,
    /// Invalid documents that name a policy not otherwise managed.
    invalid: BTreeSet<PolicyRef>,
}

/// The outcome of one pass over a policy, to publish.
enum Publish {
    View(PolicyView),
    Problem(PolicySummary, Option<Problem>),
    Nothing,
}

// === impl Engine ===

impl Engine {
    /// An engine keeping keys in `store` and publishing into `state`.
    pub fn new(store: FileStore, state: SharedState, public_base_url: Option<String>) -> Self {
        Engine {
            store,
            state,
            public_base_url,
            policies: BTreeMap::new(),
            invalid: BTreeSet::new(),
        }
    }

    /// The policies managed now (valid documents, frozen ones included).
    pub fn policies(&self) -> impl Iterator<Item = &PolicyRef> {
        self.policies.keys()
    }

    /// Takes in the policy files as just read: new policies are added and due
    /// at once, changed ones re-planned at once, removed ones stop being
    /// served (their state directory stays), invalid ones are reported and,
    /// if they were running, frozen. Policies whose state was unreadable are
    /// re-read (SIGHUP is how a repaired state is picked up at once).
    pub fn apply_files(&mut self, files: PolicyFiles, now: Timestamp) {
        for (source, kind) in &files.skipped {
            info!(%source, kind = kind.as_str(), "skipping a document that is not a KeyRotationPolicy");
        }
        let valid: BTreeSet<PolicyRef> = files
            .policies
            .iter()
            .map(|d| PolicyRef::new(&d.namespace, &d.name))
            .collect();

        let mut seen = BTreeSet::new();
        for doc in files.policies {
            let r = PolicyRef::new(&doc.namespace, &doc.name);
            seen.insert(r.clone());
            self.invalid.remove(&r);
            match self.policies.get_mut(&r) {
                Some(m) => {
                    let changed = m.doc.policy.spec != doc.policy.spec
                        || m.doc.policy.metadata != doc.policy.metadata;
                    let was_frozen = m.frozen.take().is_some();
                    if changed || was_frozen || !m.in_sync {
                        if changed {
                            info!(policy = %r, source = %doc.source, "policy changed");
                        }
                        m.next_due = now;
                        m.failures = 0;
                    }
                    m.doc = doc;
                }
                None => match self.store.policy(&doc.namespace, &doc.name) {
                    Ok(dir) => {
                        info!(policy = %r, source = %doc.source, state = %dir.path().display(), "policy added");
                        self.policies.insert(
                            r.clone(),
                            Managed {
                                doc,
                                policy_ref: r,
                                dir,
                                keys: None,
                                in_sync: false,
                                unsaved: false,
                                next_due: now,
                                frozen: None,
                                problem: None,
                                failures: 0,
                            },
                        );
                    }
                    Err(e) => error!(policy = %r, "cannot manage policy: {e}"),
                },
            }
        }

        for bad in &files.bad {
            log_bad_document(bad);
            let Some((ns, name)) = &bad.policy else {
                continue;
            };
            let r = PolicyRef::new(ns, name);
            if valid.contains(&r) {
                // A duplicate of a valid definition: the log line says it is ignored.
                continue;
            }
            seen.insert(r.clone());
            let problem = Problem::new("InvalidPolicy", bad.to_string());
            match self.policies.get_mut(&r) {
                Some(m) => {
                    warn!(policy = %r, "the policy document is invalid: its keys keep being served as they are and nothing rotates until it is fixed");
                    m.frozen = Some(problem.clone());
                    m.problem = Some(problem.clone());
                    let summary = PolicySummary::for_policy(&m.doc.policy);
                    self.state.set_problem(&r, summary, Some(problem));
                }
                None => {
                    self.invalid.insert(r.clone());
                    self.state
                        .set_problem(&r, PolicySummary::unknown(&r), Some(problem));
                }
            }
        }

        let gone: Vec<PolicyRef> = self
            .policies
            .keys()
            .chain(self.invalid.iter())
            .filter(|r| !seen.contains(*r))
            .cloned()
            .collect();
        for r in gone {
            if let Some(m) = self.policies.remove(&r) {
                info!(policy = %r, state = %m.dir.path().display(), "policy removed from the policy files; it is no longer served (its keys stay in the state directory)");
            }
            self.invalid.remove(&r);
            self.state.remove(&r);
        }
    }

    /// When the engine next has work: the earliest due time of a running policy.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.policies
            .values()
            .filter(|m| m.frozen.is_none())
            .map(|m| m.next_due)
            .min()
    }

    /// Runs every policy that is due at `now()`, up to [`CONCURRENCY`] at a
    /// time (saving is fsync-bound, key generation CPU-bound on the blocking
    /// pool); publishes as it goes. Starts no new policy once `shutdown` is
    /// triggered.
    pub async fn reconcile_due(&mut self, shutdown: &Shutdown) {
        let now = Timestamp::now();
        let due: Vec<PolicyRef> = self
            .policies
            .iter()
            .filter(|(_, m)| m.frozen.is_none() && m.next_due <= now)
            .map(|(r, _)| r.clone())
            .collect();
        // Each pass owns its policy's record while it runs.
        let work: Vec<(PolicyRef, Managed)> = due
            .into_iter()
            .filter_map(|r| self.policies.remove(&r).map(|m| (r, m)))
            .collect();
        let state = &self.state;
        let base_url = self.public_base_url.as_deref();
        let mut passes = futures::stream::iter(work)
            .map(|(r, mut m)| async move {
                let publish = if shutdown.is_triggered() {
                    Publish::Nothing
                } else {
                    reconcile(&mut m, state, base_url).await
                };
                (r, m, publish)
            })
            .buffer_unordered(CONCURRENCY);

        let mut batch = Vec::new();
        // The first result is published at once (a fresh start serves its
        // first policy without waiting for the others), later ones in batches.
        let mut last_publish = Instant::now()
            .checked_sub(PUBLISH_EVERY)
            .unwrap_or_else(Instant::now);
        while let Some((r, m, publish)) = passes.next().await {
            match publish {
                Publish::View(view) => batch.push(view),
                Publish::Problem(summary, problem) => state.set_problem(&r, summary, problem),
                Publish::Nothing => {}
            }
            self.policies.insert(r, m);
            if last_publish.elapsed() >= PUBLISH_EVERY && !batch.is_empty() {
                state.upsert_all(std::mem::take(&mut batch));
                last_publish = Instant::now();
            }
        }
        if !batch.is_empty() {
            state.upsert_all(batch);
        }
    }
}

fn log_bad_document(bad: &BadDocument) {
    let policy = bad.policy.as_ref().map(|(ns, name)| format!("{ns}/{name}"));
    warn!(
        file = %bad.source.file.display(),
        document = bad.source.document,
        field = bad.field.as_deref(),
        policy = policy.as_deref(),
        "policy document rejected: {bad}"
    );
}

/// One pass over one policy. See the module docs.
async fn reconcile(m: &mut Managed, state: &SharedState, base_url: Option<&str>) -> Publish {
    let r = m.policy_ref.clone();
    let now = Timestamp::now();

    if !m.in_sync {
        match m.dir.load().await {
            Ok(Loaded::Empty) => {
                m.keys = Some((KeySet::default(), None));
                m.unsaved = false;
            }
            Ok(Loaded::Keys { set, version }) => {
                info!(policy = %r, keys = set.keys.len(), %version, "loaded the stored key set");
                m.keys = Some((set, Some(version)));
                m.unsaved = false;
            }
            Ok(Loaded::Adoptable { keys, version }) => {
                info!(policy = %r, keys = keys.len(), "adopting a JWK Set without lifecycle records: the first key becomes Active, the others Retired");
                let set = KeySet::adopt(keys, now, &m.doc.resolved);
                m.keys = Some((set, Some(version)));
                m.unsaved = true;
            }
            Ok(Loaded::Corrupt(e)) => {
                let problem = Problem::new(
                    "StateCorrupt",
                    format!(
                        "{}/{}: {}; the file is left untouched: repair or remove it, then send SIGHUP",
                        m.dir.path().display(),
                        e.data_key,
                        e.problem
                    ),
                );
                state.metrics().inc_reconcile_error(&r, "parse_key_set");
                return degrade(m, problem, after(now, CORRUPT_RECHECK));
            }
            Err(e) => return fail(m, state, &e, now),
        }
        m.in_sync = true;
    }
    let (current, version) = m.keys.clone().expect("loaded above");

    let policy = m.doc.resolved.clone();
    let metrics = state.metrics_arc();
    let planned = tokio::task::spawn_blocking(move || {
        let rng = RngKeySource(rand_core::UnwrapErr(rand::rngs::SysRng));
        let mut source = TimedKeySource::new(rng, &metrics);
        let result = plan(&policy, &current, now, &mut source);
        (result, current)
    })
    .await;
    let (result, current) = match planned {
        Ok(p) => p,
        Err(e) => {
            let problem = Problem::new(
                "KeyGenerationFailed",
                format!("the planner did not finish: {e}"),
            );
            state.metrics().inc_reconcile_error(&r, "generate_key");
            let retry = backoff(m, now);
            return degrade(m, problem, retry);
        }
    };
    let Plan {
        keys,
        events,
        next_due,
        deferred,
    } = match result {
        Ok(p) => p,
        Err(e) => {
            let (reason, kind) = match e {
                PlanError::Inconsistent(_) => ("StateInconsistent", "parse_key_set"),
                PlanError::Generate { .. } => ("KeyGenerationFailed", "generate_key"),
            };
            state.metrics().inc_reconcile_error(&r, kind);
            let retry = backoff(m, now);
            return degrade(m, Problem::new(reason, e.to_string()), retry);
        }
    };

    let mut version = version;
    if keys != current || m.unsaved {
        match m.dir.save(&keys, version.as_ref()).await {
            Ok(v) => {
                version = Some(v);
                m.unsaved = false;
            }
            Err(e) => return fail(m, state, &e, now),
        }
    }
    for event in &events {
        log_event(&r, event);
    }
    state.metrics().record_events(&r, &events);
    state.metrics().observe_key_set(
        &r,
        &keys,
        keys.next_rotation_time(&m.doc.resolved),
        next_prune_time(&keys),
    );
    if m.keys.as_ref().is_none_or(|(k, _)| k.keys.is_empty()) && !keys.keys.is_empty() {
        info!(policy = %r, jwks = %r.jwks_path(), "serving the key set");
    }
    let problem = deferred.map(|d| Problem::new(d.reason, d.message));
    m.keys = Some((keys, version));
    m.next_due = next_due;
    m.failures = 0;
    if problem != m.problem {
        match &problem {
            Some(p) => warn!(policy = %r, reason = %p.reason, "{}", p.message),
            None if m.problem.is_some() => info!(policy = %r, "policy recovered"),
            None => {}
        }
        m.problem = problem.clone();
    }
    let (set, _) = m.keys.as_ref().expect("just set");
    Publish::View(PolicyView::build(&m.doc.policy, set, base_url).with_problem(problem))
}

/// A store error: conflicts re-read at once, corrupt state waits for repair,
/// the rest retries with backoff.
fn fail(m: &mut Managed, state: &SharedState, e: &StoreError, now: Timestamp) -> Publish {
    let r = &m.policy_ref;
    m.in_sync = false;
    let kind = match e {
        StoreError::Conflict { .. } => "conflict",
        StoreError::Corrupt { .. } => "parse_key_set",
        StoreError::Encode { .. } => "encode_key_set",
        StoreError::Io { .. } | StoreError::Locked { .. } => "write_state",
    };
    state.metrics().inc_reconcile_error(r, kind);
    if let StoreError::Conflict { .. } = e {
        warn!(policy = %r, "{e}; reloading");
        m.next_due = after(now, Duration::from_millis(100));
        return Publish::Nothing;
    }
    let retry = match e {
        StoreError::Corrupt { .. } => after(now, CORRUPT_RECHECK),
        _ => backoff(m, now),
    };
    degrade(m, Problem::new(e.reason(), e.to_string()), retry)
}

/// Shows `problem` (keeping whatever set is served) and retries at `retry`.
fn degrade(m: &mut Managed, problem: Problem, retry: Timestamp) -> Publish {
    if m.problem.as_ref() != Some(&problem) {
        error!(policy = %m.policy_ref, reason = %problem.reason, "{}", problem.message);
        m.problem = Some(problem.clone());
    }
    m.next_due = retry;
    Publish::Problem(PolicySummary::for_policy(&m.doc.policy), Some(problem))
}

/// The next retry time after one more failure: 1 s, 2 s, 4 s ... up to [`MAX_BACKOFF`].
fn backoff(m: &mut Managed, now: Timestamp) -> Timestamp {
    m.failures = m.failures.saturating_add(1);
    let secs = 1u64 << m.failures.saturating_sub(1).min(6);
    after(now, Duration::from_secs(secs).min(MAX_BACKOFF))
}

fn log_event(r: &PolicyRef, event: &LifecycleEvent) {
    let kid = match event {
        LifecycleEvent::Created { kid, .. }
        | LifecycleEvent::Activated { kid, .. }
        | LifecycleEvent::Retired { kid, .. }
        | LifecycleEvent::Pruned { kid }
        | LifecycleEvent::Revoked { kid, .. }
        | LifecycleEvent::Discarded { kid, .. } => kid.as_str(),
    };
    info!(policy = %r, kid, "{event}");
}
