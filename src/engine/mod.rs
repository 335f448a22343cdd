//! The policy engine: one pass over one policy, the same in both modes.
//!
//! ```text
//!   gather ──► plan ──► write ──► publish ──► report ──► next wake-up
//!   (Store)   (keys::   (Store,   (Reporter)  (Reporter)  (Next)
//!              lifecycle) version
//!                        precondition)
//! ```
//!
//! 1. **Gather**: load the stored set through a [`KeyStore`] unless the copy
//!    kept in [`Tracked`] is known to match it. A set without lifecycle
//!    records is adopted ([`KeySet::adopt`]); one that cannot be read is left
//!    untouched and reported. A store found without a set (deleted or
//!    emptied) although this process holds one for the policy gets that set
//!    written back ([`Note::Restored`], SPEC invariant 10), never a fresh
//!    one; only when nothing is held is a fresh set generated
//!    ([`Note::Recreated`]). Both are counted
//!    (`jwks_operator_key_set_lost_total`) and reported as warnings.
//! 2. **Plan** at `now`, off the async runtime (RSA generation takes seconds),
//!    with keys from the OS generator.
//! 3. **Write** the whole set when it changed, conditional on the version it
//!    was planned from. A conflict (someone else wrote first) re-reads and
//!    plans again once within the pass.
//! 4. **Publish** it ([`Reporter::publish`]: the public ConfigMap in
//!    Kubernetes; standalone publishes with the status).
//! 5. **Report** what happened ([`Reporter::note`]) and the outcome
//!    ([`Reporter::healthy`] / [`Reporter::degraded`]).
//! 6. Say when to run again ([`Next`]): at the planner's `next_due`, after a
//!    jittered exponential [`backoff`] on failure, or after a fixed re-check
//!    interval for state that waits for a person.
//!
//! The adapters differ only in I/O: Kubernetes (`k8s::reconcile`) stores in a
//! Secret and reports through the status subresource and Events; standalone
//! (`standalone::engine`) stores in a state directory and reports through
//! `/policies` and logs.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tracing::info;

use crate::clock;
use crate::keys;
use crate::keys::lifecycle::{self, KeySet, LifecycleEvent, PlanError};
use crate::keys::material::RngKeySource;
use crate::metrics::{LostKeySet, Metrics, TimedKeySource, next_prune_time};
use crate::policy::{PolicyRef, PublicationSummary};
pub use crate::problem::{Failure, Problem};
use crate::providers::{self, KeyHome, Refusing};
use crate::publish::Tracker;
use crate::reasons;
use crate::store::{KeyStore, Loaded, StoredKeySet};

pub mod backoff;
pub mod log;
pub mod publish;
pub mod staleness;

#[cfg(test)]
mod tests;

/// How soon a write that lost a race is tried again (after one immediate
/// re-read and retry within the pass failed too).
pub const CONFLICT_RETRY: Duration = Duration::from_millis(100);

/// Something worth telling, in the order it happened.
#[derive(Debug)]
pub enum Note<'a> {
    /// A stored set with lifecycle records was loaded.
    Loaded {
        /// How many keys it holds.
        keys: usize,
        /// Its version, for the log.
        version: String,
    },
    /// A set without lifecycle records was found and is being taken over.
    Adopting {
        /// How many keys it holds.
        keys: usize,
    },
    /// An adopted set was written back in the operator's layout.
    Adopted {
        /// How many keys the written set holds.
        keys: usize,
    },
    /// The stored set was gone although the policy had keys before, and a
    /// fresh set was written.
    Recreated,
    /// The stored set was gone although the policy had keys before, and the
    /// last good set this process held was written back.
    Restored {
        /// How many keys it holds.
        keys: usize,
    },
    /// A lifecycle step the planner took.
    Lifecycle(&'a LifecycleEvent),
    /// A `spec.publish` copy someone else changed or deleted was rewritten.
    CopyRepaired {
        /// The target's URL.
        url: &'a str,
    },
    /// What every `spec.publish` copy holds after this pass's publish step
    /// (Kubernetes writes it to `status.publication[]`).
    Copies(&'a [PublicationSummary]),
}

/// Where a pass reports to, and publishes through.
pub trait Reporter: Send {
    /// Why publishing or reporting failed.
    type Error: Failure + Send;

    /// Publishes a set that has just been stored (or was already).
    fn publish(
        &mut self,
        keys: &StoredKeySet,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Tells what happened.
    fn note(&mut self, note: Note<'_>) -> impl Future<Output = ()> + Send;

    /// The pass ended with `keys` stored and published; `problem` is a
    /// condition that leaves them working (a deferred rotation).
    fn healthy(
        &mut self,
        keys: &StoredKeySet,
        problem: Option<Problem>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The pass stopped at `problem`; the last set this process held for the
    /// policy (`held`: as loaded or saved, or the last good one; `None` when
    /// there is none) keeps being served, through the read-side revocation
    /// rule ([`KeySet::servable`](crate::keys::lifecycle::KeySet::servable)):
    /// a kid the spec revokes leaves what is served although no write
    /// recorded it (SPEC invariant 9).
    fn degraded(
        &mut self,
        problem: Problem,
        held: Option<&StoredKeySet>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A failure that is retried without being shown (`what` says which).
    fn retrying(&mut self, what: &dyn fmt::Display, conflict: bool);
}

/// What the engine remembers about a policy between passes.
#[derive(Debug)]
pub struct Tracked<V> {
    /// The set as last loaded or saved, and its stored version (`None`:
    /// nothing stored). `None` before the first load. Also what this
    /// process holds for the policy: written back if the store loses it.
    pub keys: Option<(StoredKeySet, Option<V>)>,
    /// Whether `keys` is known to match the store (otherwise it is re-read).
    pub in_sync: bool,
    /// Whether `keys` must be written even if the planner changes nothing
    /// (an adopted set, not yet in the operator's layout).
    pub unsaved: bool,
    /// Consecutive failed passes, for [`backoff`].
    pub failures: u32,
    /// What each `spec.publish` copy was last confirmed to hold.
    pub publication: Tracker,
    /// References this process destroyed in their provider that the
    /// stored set still lists as awaiting destruction
    /// (`KeySet::undestroyed`): the next write drops them.
    pub destroyed: BTreeSet<String>,
}

impl<V> Default for Tracked<V> {
    fn default() -> Self {
        Tracked {
            keys: None,
            in_sync: false,
            unsaved: false,
            failures: 0,
            publication: Tracker::default(),
            destroyed: BTreeSet::new(),
        }
    }
}

/// When to run the policy again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// At the planner's next due time.
    At(Timestamp),
    /// After a failure: this long from now.
    After(Duration),
    /// Only when something changes (this replica may not write).
    OnChange,
}

/// The fixed inputs of one pass.
pub struct Pass<'a> {
    /// Which policy.
    pub policy: &'a PolicyRef,
    /// Its resolved lifecycle parameters.
    pub resolved: &'a lifecycle::Policy,
    /// Where counters go.
    pub metrics: &'a Arc<Metrics>,
    /// Whether the policy is known to have had keys (an empty store then
    /// means the stored set was deleted or emptied). A set the engine itself
    /// loaded or saved before (in [`Tracked`]) counts too.
    pub had_keys: bool,
    /// The last good set this process holds for the policy (what it
    /// serves), beside the one in [`Tracked`]. When the store is found empty
    /// although the policy had keys, this set is written back rather than a
    /// fresh one: tokens signed by its keys keep verifying.
    pub remembered: Option<&'a StoredKeySet>,
    /// The policy's `spec.publish` copies, when it has any and this process
    /// writes (the publish step, and the planner's publication gate).
    pub publication: Option<&'a publish::Publication>,
    /// Where new keys are generated (`spec.keyProvider`).
    pub home: KeyHome,
}

/// A failure inside a pass, already described for the engine.
struct Failed {
    kind: &'static str,
    message: String,
    conflict: bool,
    problem: Option<Problem>,
    recheck: Option<Duration>,
}

impl Failed {
    fn of(e: &(impl Failure + ?Sized)) -> Self {
        Failed {
            kind: e.kind(),
            message: e.to_string(),
            conflict: e.is_conflict(),
            problem: e.problem(),
            recheck: e.recheck(),
        }
    }

    fn plan(e: &PlanError) -> Self {
        let (reason, kind) = match e {
            PlanError::Inconsistent(_) => {
                (reasons::STATE_INCONSISTENT, reasons::KIND_PARSE_KEY_SET)
            }
            PlanError::Generate { source, .. } => (
                source
                    .downcast_ref::<providers::ProviderError>()
                    .map_or(reasons::KEY_GENERATION_FAILED, providers::failure_reason),
                reasons::KIND_GENERATE_KEY,
            ),
        };
        Failed {
            kind,
            message: e.to_string(),
            conflict: false,
            problem: Some(Problem::new(reason, e.to_string())),
            recheck: None,
        }
    }
}

/// The `CamelCase` name of a lifecycle step (an Event reason).
pub fn event_reason(e: &LifecycleEvent) -> &'static str {
    match e {
        LifecycleEvent::Created { .. } => "KeyCreated",
        LifecycleEvent::Activated { .. } => "KeyActivated",
        LifecycleEvent::Retired { .. } => "KeyRetired",
        LifecycleEvent::Pruned { .. } => "KeyPruned",
        LifecycleEvent::Revoked { .. } => "KeyRevoked",
        LifecycleEvent::Discarded { .. } => "KeyDiscarded",
    }
}

/// The `kid` of the key a lifecycle step concerns.
pub fn event_kid(e: &LifecycleEvent) -> &str {
    match e {
        LifecycleEvent::Created { kid, .. }
        | LifecycleEvent::Activated { kid, .. }
        | LifecycleEvent::Retired { kid, .. }
        | LifecycleEvent::Pruned { kid }
        | LifecycleEvent::Revoked { kid, .. }
        | LifecycleEvent::Discarded { kid, .. } => kid,
    }
}

/// Runs one pass over one policy (see the module docs) and says when to run
/// it again. Never fails: failures are counted, reported and scheduled.
pub async fn run_pass<S, R>(
    pass: &Pass<'_>,
    tracked: &mut Tracked<S::Version>,
    store: &S,
    reporter: &mut R,
) -> Next
where
    S: KeyStore,
    R: Reporter,
{
    match attempt(pass, tracked, store, reporter).await {
        Ok(next) => {
            tracked.failures = 0;
            next
        }
        Err(failed) => fail(pass, tracked, reporter, failed).await,
    }
}

/// Gather, plan, write (re-reading and retrying once on a conflict), publish
/// and report.
async fn attempt<S, R>(
    pass: &Pass<'_>,
    tracked: &mut Tracked<S::Version>,
    store: &S,
    reporter: &mut R,
) -> Result<Next, Failed>
where
    S: KeyStore,
    R: Reporter,
{
    // The wall clock, with the steps this process saw (crate::clock).
    let clock = clock::now();
    let now = clock.wall;
    let mut retried = false;
    let (planned, gathered) = loop {
        let gathered = gather(pass, tracked, store, reporter, now).await?;
        let (current, version) = tracked.keys.clone().expect("gathered");
        let gate = pass
            .publication
            .map(|p| p.gate(&tracked.publication, &current));
        let mut planned = plan_blocking(pass, current.clone(), clock.clone(), gate).await?;
        planned.keys.undestroyed =
            awaiting_destruction(&current, &planned.keys, &tracked.destroyed);
        if planned.keys == current && !tracked.unsaved {
            break (planned, Gathered::Stored);
        }
        if !store.can_write() {
            return Ok(Next::OnChange);
        }
        match store.save(&planned.keys, version.as_ref()).await {
            Ok(version) => {
                // The write has landed: the keys it dropped have left the
                // stored (and so the served) set, and are listed as awaiting
                // destruction; only now do they leave their provider
                // (below, with any listed before).
                if tracked.unsaved && gathered == Gathered::Stored {
                    reporter
                        .note(Note::Adopted {
                            keys: planned.keys.keys.len(),
                        })
                        .await;
                }
                tracked.keys = Some((planned.keys.clone(), Some(version)));
                tracked.unsaved = false;
                break (planned, gathered);
            }
            Err(e) => {
                tracked.in_sync = false;
                if e.is_conflict() && !retried {
                    retried = true;
                    pass.metrics
                        .engine
                        .inc_reconcile_error(pass.policy, e.kind());
                    reporter.retrying(&e, true);
                    continue;
                }
                return Err(Failed::of(&e));
            }
        }
    };

    reporter
        .publish(&planned.keys)
        .await
        .map_err(|e| Failed::of(&e))?;
    // The copies in object storage, and whether what they now hold changes
    // the plan (a key confirmed everywhere, a pruned key gone from every
    // copy): then the policy runs again at once.
    let mut published = publish::Published::default();
    let mut replan = false;
    // Only a writer touches the copies (the Lease holder in Kubernetes):
    // a replica that may not write leaves them, and their gate, alone.
    if let Some(p) = pass.publication.filter(|_| store.can_write()) {
        let before = p.gate(&tracked.publication, &planned.keys);
        published = p
            .run(
                pass.policy,
                &mut tracked.publication,
                &planned.keys,
                &pass.resolved.revoked,
                now,
                pass.metrics,
            )
            .await;
        replan = p.gate(&tracked.publication, &planned.keys) != before;
        for url in &published.repaired {
            reporter.note(Note::CopyRepaired { url }).await;
        }
        let copies = tracked.publication.summary(&p.urls());
        reporter.note(Note::Copies(&copies)).await;
    }
    match gathered {
        Gathered::Stored => {}
        Gathered::Recreated => {
            pass.metrics
                .engine
                .inc_key_set_lost(pass.policy, LostKeySet::Recreated);
            reporter.note(Note::Recreated).await;
        }
        Gathered::Restored => {
            pass.metrics
                .engine
                .inc_key_set_lost(pass.policy, LostKeySet::Restored);
            reporter
                .note(Note::Restored {
                    keys: planned.keys.keys.len(),
                })
                .await;
        }
    }
    for event in &planned.events {
        info!(policy = %pass.policy, kid = event_kid(event), event = event_reason(event), "{event}");
        reporter.note(Note::Lifecycle(event)).await;
    }
    let metrics = pass.metrics;
    metrics.engine.record_events(pass.policy, &planned.events);
    metrics.engine.observe_key_set(
        pass.policy,
        &planned.keys,
        planned.keys.next_rotation_time(pass.resolved),
        next_prune_time(&planned.keys),
    );
    metrics.engine.observe_revocation_exposure(
        pass.policy,
        planned.keys.revocation_exposure_until(pass.resolved),
    );
    tracked.keys = Some((planned.keys, tracked.keys.take().and_then(|(_, v)| v)));
    let (keys, _) = tracked.keys.as_ref().expect("just set");
    // Only a writer destroys (the Lease holder in Kubernetes): it alone
    // can then write the list without what it destroyed.
    let writer = store.can_write();
    let undestroyed = if writer {
        destroy_dropped(pass, &keys.undestroyed, &mut tracked.destroyed).await
    } else {
        None
    };
    tracked.destroyed.retain(|r| keys.undestroyed.contains(r));
    // Destroyed but still listed: the next pass, at once, writes the list
    // without them. Listed and not destroyed: tried again soon.
    let rewrite = !tracked.destroyed.is_empty();
    let retry_destroy = writer && !keys.undestroyed.is_empty();
    // A copy that is not confirmed is the more urgent news: the rotation
    // it holds back is the reason a deferral would show.
    let problem = published
        .problem
        .or(planned.deferred.map(|d| Problem::new(d.reason, d.message)))
        .or(undestroyed);
    let failing = problem
        .as_ref()
        .is_some_and(|p| p.reason == reasons::PUBLICATION_PENDING);
    reporter
        .healthy(keys, problem)
        .await
        .map_err(|e| Failed::of(&e))?;
    let next = match pass.publication {
        _ if rewrite => now,
        None if retry_destroy => planned
            .next_due
            .min(keys::lifecycle::after(now, DESTROY_RETRY)),
        None => planned.next_due,
        Some(_) if replan => now,
        Some(p) => {
            let check = if failing || retry_destroy {
                publish::RETRY
            } else {
                p.verify_interval
            };
            planned.next_due.min(keys::lifecycle::after(now, check))
        }
    };
    Ok(Next::At(next))
}

/// What [`gather`] found in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gathered {
    /// A stored set, or nothing for a policy that never had keys.
    Stored,
    /// Nothing although the policy had keys, and no set in memory: a fresh
    /// set will be written.
    Recreated,
    /// Nothing although the policy had keys: the set in memory will be
    /// written back.
    Restored,
}

/// Loads the stored set into `tracked` unless it is in sync, and says what
/// it found.
async fn gather<S, R>(
    pass: &Pass<'_>,
    tracked: &mut Tracked<S::Version>,
    store: &S,
    reporter: &mut R,
    now: Timestamp,
) -> Result<Gathered, Failed>
where
    S: KeyStore,
    R: Reporter,
{
    if tracked.in_sync && tracked.keys.is_some() {
        return Ok(Gathered::Stored);
    }
    let loaded = store.load().await.map_err(|e| Failed::of(&e))?;
    let mut gathered = Gathered::Stored;
    match loaded {
        Loaded::Empty { version } => match held(pass, tracked) {
            // Deleted or emptied by hand (or lost): put the set this process
            // holds back, under the version found (SPEC invariant 10).
            Some(set) => {
                gathered = Gathered::Restored;
                tracked.keys = Some((set, version));
                tracked.unsaved = true;
            }
            None => {
                if pass.had_keys {
                    gathered = Gathered::Recreated;
                }
                tracked.keys = Some((KeySet::default(), version));
                tracked.unsaved = false;
            }
        },
        Loaded::Keys { set, version } => {
            reporter
                .note(Note::Loaded {
                    keys: set.keys.len(),
                    version: version.to_string(),
                })
                .await;
            tracked.keys = Some((set, Some(version)));
            tracked.unsaved = false;
        }
        Loaded::Adoptable { keys, version } => {
            reporter.note(Note::Adopting { keys: keys.len() }).await;
            let set = KeySet::adopt(keys, now, pass.resolved);
            tracked.keys = Some((set, Some(version)));
            tracked.unsaved = true;
        }
        Loaded::Copied { set, version } => {
            reporter
                .note(Note::Adopting {
                    keys: set.keys.len(),
                })
                .await;
            tracked.keys = Some((set, Some(version)));
            tracked.unsaved = true;
        }
        Loaded::Corrupt(error) => return Err(Failed::of(&store.unreadable(error))),
    }
    tracked.in_sync = true;
    Ok(gathered)
}

/// The key set this process holds for the policy, with an active key, to
/// write back when the store has none: the adapter's last good set (for a
/// policy known to have had keys), else the set this engine last loaded or
/// saved (standalone and the signer keep [`Tracked`] between passes).
fn held<V>(pass: &Pass<'_>, tracked: &Tracked<V>) -> Option<StoredKeySet> {
    let adapter = pass.remembered.filter(|_| pass.had_keys);
    let engine = tracked.keys.as_ref().map(|(set, _)| set);
    adapter
        .or(engine)
        .filter(|set| set.active().is_some())
        .cloned()
}

/// How soon the destruction of a key that left the stored set is tried
/// again after its provider failed it.
pub const DESTROY_RETRY: Duration = Duration::from_secs(60);

/// What the stored set lists as awaiting destruction after `planned`
/// replaces `current`: what `current` listed, and the provider-held keys
/// the plan drops (destroyed only once the write that drops them has
/// landed), less what this process has destroyed since, and never the
/// reference of a key `planned` still holds.
fn awaiting_destruction(
    current: &StoredKeySet,
    planned: &StoredKeySet,
    destroyed: &BTreeSet<String>,
) -> Vec<String> {
    let held: Vec<&str> = planned
        .keys
        .iter()
        .filter_map(|k| k.key.key_reference())
        .collect();
    let mut listed: BTreeSet<String> = current.undestroyed.iter().cloned().collect();
    listed.extend(providers::dropped_references(current, planned));
    listed.retain(|r| !destroyed.contains(r) && !held.iter().any(|h| providers::same_key(h, r)));
    listed.into_iter().collect()
}

/// Destroys, in their provider, the provider-held keys the stored set
/// lists as awaiting destruction (just dropped by the write, or left over
/// from an earlier failure or an earlier process) and that this process has
/// not destroyed yet; those destroyed join `destroyed`. Those that fail
/// are counted (`jwks_operator_key_destroy_failures_total`) and make the
/// problem returned (a reason naming the provider): the key no longer signs
/// or verifies anything, but its private half is still in the provider.
async fn destroy_dropped(
    pass: &Pass<'_>,
    listed: &[String],
    destroyed: &mut BTreeSet<String>,
) -> Option<Problem> {
    let references: Vec<String> = listed
        .iter()
        .filter(|r| !destroyed.contains(*r))
        .cloned()
        .collect();
    if references.is_empty() {
        return None;
    }
    let policy = pass.policy.to_string();
    let tried = references.clone();
    let failed = tokio::task::spawn_blocking(move || {
        let mut failed = Vec::new();
        for reference in references {
            match providers::destroy(&reference) {
                Ok(()) => {
                    tracing::info!(policy, reference, "destroyed a pruned key in its provider")
                }
                Err(e) => {
                    tracing::warn!(
                        policy,
                        reference,
                        "could not destroy a pruned key in its provider (tried again later): {e}"
                    );
                    failed.push((reference, e));
                }
            }
        }
        failed
    })
    .await
    .unwrap_or_default();
    destroyed.extend(
        tried
            .into_iter()
            .filter(|r| !failed.iter().any(|(f, _)| f == r)),
    );
    let (reference, error) = failed.first()?;
    for (_, e) in &failed {
        pass.metrics.engine.inc_key_destroy_failure(e.provider());
    }
    let more = match failed.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Some(Problem::new(
        providers::failure_reason(error),
        format!(
            "the pruned key {reference}{more} could not be destroyed in its provider, tried again every {}s: {error}",
            DESTROY_RETRY.as_secs()
        ),
    ))
}

/// Plans on the blocking pool with keys from the OS generator, or from the
/// policy's key provider.
async fn plan_blocking(
    pass: &Pass<'_>,
    current: StoredKeySet,
    now: lifecycle::Now,
    gate: Option<lifecycle::PublicationGate>,
) -> Result<lifecycle::Plan<Arc<keys::SigningKey>>, Failed> {
    let resolved = pass.resolved.clone();
    let metrics = pass.metrics.clone();
    let home = pass.home.clone();
    let planned = tokio::task::spawn_blocking(move || match home {
        KeyHome::Here => {
            let rng = RngKeySource(rand_core::UnwrapErr(rand::rngs::SysRng));
            let mut source = TimedKeySource::new(rng, &metrics.engine);
            lifecycle::plan_with(&resolved, &current, now, &mut source, gate.as_ref())
        }
        KeyHome::Kms(provider) => {
            let kms = providers::kms::KmsKeySource(provider);
            let mut source = TimedKeySource::new(kms, &metrics.engine);
            lifecycle::plan_with(&resolved, &current, now, &mut source, gate.as_ref())
        }
        KeyHome::Pkcs11(provider) => {
            let token = providers::pkcs11::Pkcs11KeySource(provider);
            let mut source = TimedKeySource::new(token, &metrics.engine);
            lifecycle::plan_with(&resolved, &current, now, &mut source, gate.as_ref())
        }
        KeyHome::Unavailable(error) => lifecycle::plan_with(
            &resolved,
            &current,
            now,
            &mut Refusing(error),
            gate.as_ref(),
        ),
    })
    .await;
    match planned {
        Ok(Ok(plan)) => Ok(plan),
        Ok(Err(e)) => Err(Failed::plan(&e)),
        Err(e) => {
            let message = format!("the planner did not finish: {e}");
            Err(Failed {
                kind: reasons::KIND_GENERATE_KEY,
                problem: Some(Problem::new(
                    reasons::KEY_GENERATION_FAILED,
                    message.clone(),
                )),
                message,
                conflict: false,
                recheck: None,
            })
        }
    }
}

/// `problem`, telling that the revocation of `withheld` (kids that
/// `spec.revokedKeyIDs` names and the stored set still holds) is not
/// recorded, when there is any: the write that would record it is what
/// failed, so the kids are only withheld from what is served.
fn not_recorded(problem: Problem, withheld: &[String]) -> Problem {
    if withheld.is_empty() {
        return problem;
    }
    Problem {
        message: format!(
            "{}; the revocation of {} is not recorded in the stored key set: the revoked key(s) are withheld from everything served and sign nothing, and are removed from the store once it can be written",
            problem.message,
            withheld.join(", ")
        ),
        ..problem
    }
}

/// Counts, reports and schedules a failed pass.
async fn fail<V, R: Reporter>(
    pass: &Pass<'_>,
    tracked: &mut Tracked<V>,
    reporter: &mut R,
    failed: Failed,
) -> Next {
    pass.metrics
        .engine
        .inc_reconcile_error(pass.policy, failed.kind);
    if failed.conflict {
        reporter.retrying(&failed.message, true);
        return Next::After(CONFLICT_RETRY);
    }
    let held = tracked
        .keys
        .as_ref()
        .map(|(k, _)| k)
        .or(pass.remembered.filter(|_| pass.had_keys));
    let withheld = held.map_or_else(Vec::new, |k| k.revoked_kids(&pass.resolved.revoked));
    let shown = match failed.problem {
        Some(problem) => match reporter
            .degraded(not_recorded(problem, &withheld), held)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                pass.metrics
                    .engine
                    .inc_reconcile_error(pass.policy, e.kind());
                reporter.retrying(&e, false);
                false
            }
        },
        None => false,
    };
    if !shown {
        reporter.retrying(&failed.message, false);
    }
    match failed.recheck {
        Some(after) if shown => Next::After(after),
        _ => {
            tracked.failures = tracked.failures.saturating_add(1);
            Next::After(backoff::jittered(tracked.failures))
        }
    }
}
