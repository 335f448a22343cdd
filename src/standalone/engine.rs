//! The standalone adapter of the [`engine`](crate::engine): every policy
//! read from the files, with its state directory as the store and
//! `/policies` plus the log as the reporter.
//!
//! One [`Engine`] owns every policy; the run loop in [`super::run`] calls
//! [`Engine::apply_files`] when the policy files are (re-)read and
//! [`Engine::reconcile_due`] whenever [`Engine::next_wake`] is reached.
//!
//! Per policy, one engine pass: load the stored set unless the in-memory
//! copy is known to match it (a node-jose style `jwks.json` without
//! lifecycle records is adopted), plan, save what changed (conditional on
//! the version loaded), and only then publish: a key is never served, let
//! alone used to sign, before it is on disk.
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
use crate::engine::{self, Next, Note, Pass, Problem, Reporter, Tracked, run_pass};
use crate::http::{PolicyRef, PolicySummary, SharedState, Shown, Shutdown};
use crate::keys::lifecycle::after;
use crate::reasons;
use crate::store::StoredKeySet;
use crate::store::files::{FileStore, FileVersion, PolicyDir};

use crate::keys;
use crate::providers;
use crate::publish;
pub use crate::store::CORRUPT_RECHECK;
/// Policies planned and saved at the same time in one pass.
pub const CONCURRENCY: usize = 8;
/// Publish what a long pass has produced so far at least this often.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// One policy under management.
struct Managed {
    doc: PolicyDoc,
    policy_ref: PolicyRef,
    dir: PolicyDir,
    /// The set as last loaded or saved (this is what is served), its version
    /// on disk, and the engine's bookkeeping.
    tracked: Tracked<FileVersion>,
    next_due: Timestamp,
    /// Set while the document is invalid: nothing is planned.
    frozen: Option<Problem>,
    /// The problem currently shown, to log changes only once.
    problem: Option<Problem>,
    /// The last warning shown in `/policies` (a lost set written back).
    warning: Option<Problem>,
}

/// The standalone engine. See the module docs.
pub struct Engine {
    store: FileStore,
    state: SharedState,
    public_base_url: Option<String>,
    policies: BTreeMap<PolicyRef, Managed>,
    /// Invalid documents that name a policy not otherwise managed.
    invalid: BTreeSet<PolicyRef>,
    /// `--propagation-grace`, set into every policy taken in.
    propagation_grace: std::time::Duration,
    /// `--publish-verify-interval`.
    publish_verify_interval: std::time::Duration,
}

/// The outcome of one pass over a policy, to publish.
enum Publish {
    Shown(Box<Shown>),
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
            propagation_grace: keys::lifecycle::DEFAULT_PROPAGATION_GRACE,
            publish_verify_interval: engine::publish::DEFAULT_VERIFY_INTERVAL,
        }
    }

    /// Sets `--publish-verify-interval` (default
    /// [`DEFAULT_VERIFY_INTERVAL`](crate::engine::publish::DEFAULT_VERIFY_INTERVAL)).
    pub fn with_publish_verify_interval(mut self, every: std::time::Duration) -> Self {
        self.publish_verify_interval = every;
        self
    }

    /// Sets `--propagation-grace` (default
    /// [`DEFAULT_PROPAGATION_GRACE`](crate::keys::lifecycle::DEFAULT_PROPAGATION_GRACE)).
    pub fn with_propagation_grace(mut self, grace: std::time::Duration) -> Self {
        self.propagation_grace = grace;
        self
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
        for mut doc in files.policies {
            doc.resolved.propagation_grace = self.propagation_grace;
            let r = PolicyRef::new(&doc.namespace, &doc.name);
            seen.insert(r.clone());
            self.invalid.remove(&r);
            self.take_document(r, doc, now);
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
            self.freeze(r, Problem::new(reasons::INVALID_POLICY, bad.to_string()));
        }
        self.drop_unseen(&seen);
    }

    /// A valid document: a new policy is added and due at once; a changed
    /// one (or one that was frozen or unreadable) is due at once.
    fn take_document(&mut self, r: PolicyRef, doc: PolicyDoc, now: Timestamp) {
        // A new or changed policy's warnings (also in the metrics listener's
        // /policies), once per change rather than once per reload.
        let fresh = self
            .policies
            .get(&r)
            .is_none_or(|m| m.doc.policy.spec != doc.policy.spec);
        if fresh {
            for w in doc.policy.info().warnings() {
                warn!(policy = %r, reason = %w.reason, "{}", w.message);
            }
        }
        match self.policies.get_mut(&r) {
            Some(m) => {
                let changed = m.doc.policy.spec != doc.policy.spec
                    || m.doc.policy.metadata != doc.policy.metadata;
                let was_frozen = m.frozen.take().is_some();
                if changed || was_frozen || !m.tracked.in_sync {
                    if changed {
                        info!(policy = %r, source = %doc.source, "policy changed");
                    }
                    m.next_due = now;
                    m.tracked.failures = 0;
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
                            tracked: Tracked::default(),
                            next_due: now,
                            frozen: None,
                            problem: None,
                            warning: None,
                        },
                    );
                }
                Err(e) => error!(policy = %r, "cannot manage policy: {e}"),
            },
        }
    }

    /// An invalid document for `r`: a running policy is frozen (its keys keep
    /// being served), an unknown one is shown as not ready.
    fn freeze(&mut self, r: PolicyRef, problem: Problem) {
        match self.policies.get_mut(&r) {
            Some(m) => {
                warn!(policy = %r, "the policy document is invalid: its keys keep being served as they are and nothing rotates until it is fixed");
                m.frozen = Some(problem.clone());
                m.problem = Some(problem.clone());
                let summary = PolicySummary::for_policy(&m.doc.policy.info());
                self.state.set_problem(&r, summary, Some(problem));
            }
            None => {
                self.invalid.insert(r.clone());
                self.state
                    .set_problem(&r, PolicySummary::unknown(&r), Some(problem));
            }
        }
    }

    /// Policies no longer in the files stop being served (their state
    /// directory stays).
    fn drop_unseen(&mut self, seen: &BTreeSet<PolicyRef>) {
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

    /// Looks for running policies whose stored set is gone (the state
    /// directory, or its `lifecycle.json`, deleted while the process runs):
    /// each is re-read and due at once, so the set this process holds is
    /// written back (SPEC invariant 10) before a crash could lose it for
    /// good. A `stat` per policy. Returns how many were found.
    pub fn check_stored(&mut self, now: Timestamp) -> usize {
        let mut lost = 0;
        for (r, m) in &mut self.policies {
            let holds_keys = m
                .tracked
                .keys
                .as_ref()
                .is_some_and(|(k, _)| !k.keys.is_empty());
            if m.frozen.is_none() && m.tracked.in_sync && holds_keys && !m.dir.holds_a_set() {
                warn!(policy = %r, state = %m.dir.path().display(), "the stored key set is gone; writing back the set this process holds");
                m.tracked.in_sync = false;
                m.next_due = now;
                lost += 1;
            }
        }
        lost
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
        let verify = self.publish_verify_interval;
        let mut passes = futures::stream::iter(work)
            .map(|(r, mut m)| async move {
                let publish = if shutdown.is_triggered() {
                    Publish::Nothing
                } else {
                    reconcile(&mut m, state, base_url, verify).await
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
                Publish::Shown(shown) => match *shown {
                    Shown::View(view) => batch.push(view),
                    Shown::Summary(summary, problem) => state.set_problem(&r, summary, problem),
                },
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

/// One pass over one policy through the [`engine`](crate::engine), with the
/// state directory as its store and `/policies` plus the log as its reporter.
async fn reconcile(
    m: &mut Managed,
    state: &SharedState,
    base_url: Option<&str>,
    verify_interval: std::time::Duration,
) -> Publish {
    let metrics = state.metrics_arc();
    let publication = engine::publish::Publication::local(
        &m.doc.policy.spec,
        &[],
        publish::target::DEFAULT_JWKS_PATH,
        verify_interval,
    )
    .await;
    let spec = m.doc.policy.spec.key_provider.clone();
    let name = m.doc.policy.policy_ref().to_string();
    let home =
        tokio::task::spawn_blocking(move || providers::standalone_home(spec.as_ref(), &name))
            .await
            .unwrap_or_else(|e| {
                providers::KeyHome::Unavailable(providers::ProviderError::Call {
                    provider: providers::PKCS11,
                    token: String::new(),
                    op: "set up the key provider",
                    code: e.to_string(),
                })
            });
    let pass = Pass {
        policy: &m.policy_ref,
        resolved: &m.doc.resolved,
        metrics: &metrics,
        had_keys: false,
        remembered: None,
        publication: publication.as_ref(),
        home,
    };
    let mut reporter = Report {
        policy: &m.policy_ref,
        doc: &m.doc,
        base_url,
        problem: &mut m.problem,
        warning: &mut m.warning,
        served: m
            .tracked
            .keys
            .as_ref()
            .is_some_and(|(k, _)| !k.keys.is_empty()),
        publish: Publish::Nothing,
    };
    let next = run_pass(&pass, &mut m.tracked, &m.dir, &mut reporter).await;
    if let Some(p) = &publication {
        let shown = m.tracked.publication.summary(&p.urls());
        if let Publish::Shown(shown_now) = reporter.publish {
            reporter.publish = Publish::Shown(Box::new(match *shown_now {
                Shown::View(view) => Shown::View(view.with_publication(shown)),
                other => other,
            }));
        }
    }
    m.next_due = match next {
        Next::At(due) => due,
        Next::After(wait) => after(Timestamp::now(), wait),
        // The file store always writes; nothing to wait for.
        Next::OnChange => Timestamp::MAX,
    };
    reporter.publish
}

/// The standalone [`Reporter`]: logs, and the view or problem to publish.
struct Report<'a> {
    policy: &'a PolicyRef,
    doc: &'a PolicyDoc,
    base_url: Option<&'a str>,
    /// The problem currently shown, to log changes only once.
    problem: &'a mut Option<Problem>,
    /// The warning shown in `/policies` (a lost set written back).
    warning: &'a mut Option<Problem>,
    /// Whether a non-empty set was served before this pass.
    served: bool,
    publish: Publish,
}

impl Reporter for Report<'_> {
    type Error = std::convert::Infallible;

    async fn publish(&mut self, _keys: &StoredKeySet) -> Result<(), Self::Error> {
        // Published with its problem in `healthy`, in one snapshot update.
        Ok(())
    }

    async fn note(&mut self, note: Note<'_>) {
        if let Note::Loaded { keys, .. } | Note::Adopting { keys } = note {
            self.served = keys > 0;
        }
        engine::log::note_and_keep_warning(self.policy, &note, self.warning);
    }

    async fn healthy(
        &mut self,
        keys: &StoredKeySet,
        problem: Option<Problem>,
    ) -> Result<(), Self::Error> {
        let r = self.policy;
        if !self.served && !keys.keys.is_empty() {
            info!(policy = %r, jwks = %r.jwks_path(), "serving the key set");
        }
        engine::log::healthy(r, self.problem, &problem);
        let info = self.doc.policy.info();
        let shown = Shown::healthy(&info, keys, self.base_url, problem, self.warning.clone());
        self.publish = Publish::Shown(Box::new(shown));
        Ok(())
    }

    async fn degraded(
        &mut self,
        problem: Problem,
        held: Option<&StoredKeySet>,
    ) -> Result<(), Self::Error> {
        engine::log::degraded(self.policy, self.problem, &problem, "");
        let info = self.doc.policy.info();
        // The last good set keeps being served, rebuilt for the policy as it
        // is now: a kid it revokes is withheld although no write recorded it.
        self.publish = Publish::Shown(Box::new(Shown::degraded(
            &info,
            held,
            self.base_url,
            problem,
        )));
        Ok(())
    }

    fn retrying(&mut self, what: &dyn std::fmt::Display, conflict: bool) {
        engine::log::retrying(self.policy, what, conflict);
    }
}
