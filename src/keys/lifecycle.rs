// Over 600 lines on purpose: the planner and the types it plans over (Policy, KeySet,
// ManagedKey, events) are one state machine, read top to bottom; its tests are in
// lifecycle/tests.rs.

//! The key lifecycle planner: Pending → Active → Retired → pruned.
//!
//! [`plan`] is a pure function of (policy, current key set, now, key source)
//! returning the new key set, what happened, and when it next needs to run.
//! It upholds the invariants of the product contract:
//!
//! 1. After the first plan there is exactly one Active key, and it is in the set.
//! 2. A key activates only after it has been in the set for `publishAhead`
//!    (the very first key and the replacement of a revoked active key excepted,
//!    and, with `rotateOnRevoke`, the fresh key made when any key is revoked).
//! 3. A retired key stays in the set until at least
//!    `retiredAt + maxTokenTTL + clockSkew + propagationGrace`, unless revoked
//!    (the grace is ours, see [`Policy::propagation_grace`]).
//! 5. At most one Active and at most one Pending key, ever.
//! 8. `algorithm`/`keySize` changes apply to the next key generated; older
//!    keys stay until pruned.
//!
//! Scheduling rules (decisions where the contract is silent):
//! - The pending key for the next rotation is generated at
//!   `active.activatesAt + rotationInterval - publishAhead`, and activates at
//!   `max(active.activatesAt + rotationInterval, createdAt + publishAhead)`.
//! - After downtime the planner catches up once: a missed rotation happens on
//!   the first run after it was due (after `publishAhead` if the next key was
//!   not yet published), and the schedule restarts from then rather than
//!   rotating once per missed interval.
//! - A manual request is accepted when the planner first sees its value
//!   (echoed in `lastRotationRequest` from then on) and is served only by a
//!   key generated after it: a key already pending is discarded (it never
//!   signed), a new one is published at once and signs after `publishAhead`
//!   (immediately with `publishAhead: 0`). Until that key signs the request
//!   stays outstanding (persisted), so a replacement is made if the key is
//!   discarded by an algorithm change or revoked, and a request deferred by
//!   `maxKeys` is served once a key can be pruned. A request that is already
//!   there when a fresh signer is made (the first key, a revoked key's
//!   replacement) counts as served by it.
//! - Revoking the active key also discards the pending key (it was stored
//!   beside the compromised one and never signed anything); a fresh key
//!   becomes active at once.
//! - With `rotateOnRevoke`, revoking any other key (retired or pending) does
//!   the same: the pending key is discarded, the active key retires (it
//!   stays published for its tokens), and a fresh key signs at once. Its
//!   `kid` is unknown to every verifier cache, so the next token it signs
//!   makes the verifiers that refetch on an unknown `kid` drop the revoked
//!   key (docs/verifier-caches.md). Revocations never grow the set: each
//!   removes a key, and the fresh signer replaces the discarded pending one.
//! - The time of the last revocation is kept with the set
//!   (`lastRevocationTime`): verifier caches may keep the revoked key until
//!   [`KeySet::revocation_exposure_until`].
//! - A spec change of algorithm or key size discards a pending key with the
//!   old parameters and publishes one with the new ones (it never signed).
//! - When adding the next key would exceed `maxKeys`, the rotation is
//!   deferred (and reported) until a retired key can be pruned; a needed key
//!   is never pruned early. Ensuring an Active key is never deferred.
//! - Clock steps: a retired key is pruned at its `pruneAfter` as read on the
//!   clock that computed it. When the caller saw the wall clock jump forward
//!   since a key retired (a [`ClockWatch`] compares it with a monotonic
//!   clock; steps under its threshold, far below any `clockSkew`, are
//!   noise), the key stays until `pruneAfter` plus the jumps, so it is never
//!   pruned before `pruneAfter` in real time. The same holds for a pending
//!   key's `publishAhead`. A backward step only makes keys stay longer and
//!   sign later.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::alg::{Algorithm, KeyParams};

/// What the planner needs to know about a key: its identity and parameters.
/// Implemented by the real [`SigningKey`](super::material::SigningKey) and by
/// lightweight test keys.
pub trait LifecycleKey: Clone {
    /// The key's `kid`.
    fn kid(&self) -> &str;
    /// The algorithm and size the key was generated with.
    fn params(&self) -> KeyParams;
}

/// Where new keys come from. Randomness lives behind this trait, so the
/// planner stays deterministic.
pub trait KeySource<K> {
    /// Why generation failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Generates a fresh key with the given parameters.
    fn generate(&mut self, params: KeyParams) -> Result<K, Self::Error>;
}

/// The lifecycle parameters of one policy, resolved and validated
/// (see `api::KeyRotationPolicySpec::resolve`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Parameters for newly generated keys.
    pub params: KeyParams,
    /// How long each key is the active signer.
    pub rotation_interval: Duration,
    /// How long a new key is published before it signs.
    pub publish_ahead: Duration,
    /// Upper bound on token lifetime.
    pub max_token_ttl: Duration,
    /// Clock leeway added to retention.
    pub clock_skew: Duration,
    /// Cap on the number of keys in the set.
    pub max_keys: usize,
    /// kids to remove at once.
    pub revoked: BTreeSet<String>,
    /// Current value of the manual-rotation request, if any.
    pub rotation_request: Option<String>,
    /// Time added to every retired key's retention for the change to reach
    /// everyone who signs: `retiredAt` is the plan time, which comes before
    /// the write lands, before every replica's watch sees it, and before the
    /// kubelet refreshes a mounted `active.pem` (tens of seconds). Not part of
    /// the spec: an operator flag (`--propagation-grace`), default
    /// [`DEFAULT_PROPAGATION_GRACE`].
    pub propagation_grace: Duration,
    /// Revoking any key (not only the active one) also makes a fresh key the
    /// signer at once (`spec.rotateOnRevoke`).
    pub rotate_on_revoke: bool,
    /// The longest a verifier may keep a fetched set: `verifierRefreshInterval`
    /// when given, else the served `Cache-Control: max-age`. Bounds how long
    /// a revoked key may still be trusted; the planner does not use it.
    pub verifier_cache: Duration,
}

/// Default [`Policy::propagation_grace`]: the kubelet refreshes mounted
/// Secrets about once a minute (its sync period, plus jitter and cache
/// delay), replica watches and the write itself take seconds.
pub const DEFAULT_PROPAGATION_GRACE: Duration = Duration::from_secs(90);

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// The one key that signs.
    Active,
    /// No longer signs; still published so tokens it signed verify.
    Retired,
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyState::Pending => "Pending",
            KeyState::Active => "Active",
            KeyState::Retired => "Retired",
        })
    }
}

/// Why a key became (or will become) the active signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RotationReason {
    /// The set had no active key (first key of the policy).
    Initial,
    /// The active key served `rotationInterval`.
    Scheduled,
    /// A manual rotation was requested.
    Manual,
    /// The active key was revoked.
    Revoked,
    /// The policy's algorithm or key size changed.
    AlgorithmChange,
}

impl fmt::Display for RotationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RotationReason::Initial => "Initial",
            RotationReason::Scheduled => "Scheduled",
            RotationReason::Manual => "Manual",
            RotationReason::Revoked => "Revoked",
            RotationReason::AlgorithmChange => "AlgorithmChange",
        })
    }
}

/// A key with its lifecycle record.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedKey<K> {
    /// The key itself.
    pub key: K,
    /// Where it is in its life.
    pub state: KeyState,
    /// When it was generated and first published.
    pub created_at: Timestamp,
    /// When it became, or will become, the active signer.
    pub activates_at: Timestamp,
    /// When it stopped signing (Retired keys only).
    pub retired_at: Option<Timestamp>,
    /// Earliest time it may be pruned (Retired keys only).
    pub prune_after: Option<Timestamp>,
    /// Why it became, or will become, active.
    pub reason: Option<RotationReason>,
    /// The longest `maxTokenTTL` in force while the key signed: tokens it
    /// signed may live this long, so it bounds retention even if the policy's
    /// TTL was lowered since.
    pub max_token_ttl: Duration,
}

impl<K: LifecycleKey> ManagedKey<K> {
    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }
}

/// A policy's whole key set with lifecycle records, newest key first. This is
/// what is persisted as one object (the Secret, or the state directory).
#[derive(Clone, Debug, PartialEq)]
pub struct KeySet<K> {
    /// Keys, newest first.
    pub keys: Vec<ManagedKey<K>>,
    /// When the active key last changed.
    pub last_rotation_time: Option<Timestamp>,
    /// Why the active key last changed.
    pub last_rotation_reason: Option<RotationReason>,
    /// The last accepted manual-rotation request value.
    pub last_rotation_request: Option<String>,
    /// The request in `last_rotation_request` is accepted but no key
    /// generated since has become the signer yet.
    pub rotation_request_outstanding: bool,
    /// When a key was last removed by revocation.
    pub last_revocation_time: Option<Timestamp>,
}

impl<K> Default for KeySet<K> {
    fn default() -> Self {
        KeySet {
            keys: Vec::new(),
            last_rotation_time: None,
            last_rotation_reason: None,
            last_rotation_request: None,
            rotation_request_outstanding: false,
            last_revocation_time: None,
        }
    }
}

/// A key set that breaks the lifecycle's structural rules (it was not written
/// by this planner, or was edited by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InconsistentKeySet {
    /// More than one key is marked Active.
    #[error("{0} keys are marked Active; exactly one may sign")]
    SeveralActive(usize),
    /// More than one key is marked Pending.
    #[error("{0} keys are marked Pending; at most one may wait to sign")]
    SeveralPending(usize),
    /// The same kid appears twice.
    #[error("kid {0:?} appears more than once")]
    DuplicateKid(String),
    /// A key has no lifecycle record, or a record has no key.
    #[error("key {kid:?} {problem}")]
    Unmatched {
        /// The kid concerned.
        kid: String,
        /// What is missing.
        problem: &'static str,
    },
    /// The lifecycle record's algorithm disagrees with the key material.
    #[error("key {kid:?} is recorded as {recorded} but the key material is {actual}")]
    AlgorithmMismatch {
        /// The kid concerned.
        kid: String,
        /// Algorithm in the record.
        recorded: Algorithm,
        /// Algorithm of the key.
        actual: Algorithm,
    },
}

/// Something that happened in one planning step. Shown as Kubernetes Events
/// and log lines; carries kids, never key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// A key was generated and published.
    Created {
        /// kid of the new key.
        kid: String,
        /// State it was created in (Pending, or Active for first/emergency keys).
        state: KeyState,
        /// Why it was generated.
        reason: RotationReason,
    },
    /// A pending key became the active signer.
    Activated {
        /// kid of the key.
        kid: String,
        /// Why.
        reason: RotationReason,
    },
    /// The previous active key stopped signing.
    Retired {
        /// kid of the key.
        kid: String,
        /// Earliest time it may be pruned.
        prune_after: Timestamp,
    },
    /// A retired key was removed: no token it signed can still be valid.
    Pruned {
        /// kid of the key.
        kid: String,
    },
    /// A key was removed at once because its kid is in `revokedKeyIDs`.
    Revoked {
        /// kid of the key.
        kid: String,
        /// State it was in.
        was: KeyState,
    },
    /// A pending key that never signed was dropped.
    Discarded {
        /// kid of the key.
        kid: String,
        /// Why.
        why: &'static str,
    },
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LifecycleEvent::Created { kid, state, reason } => {
                write!(f, "generated key {kid} as {state} ({reason})")
            }
            LifecycleEvent::Activated { kid, reason } => {
                write!(f, "key {kid} is now the active signer ({reason})")
            }
            LifecycleEvent::Retired { kid, prune_after } => {
                write!(
                    f,
                    "key {kid} retired; stays published until at least {prune_after}"
                )
            }
            LifecycleEvent::Pruned { kid } => write!(f, "pruned retired key {kid}"),
            LifecycleEvent::Revoked { kid, was } => write!(f, "revoked {was} key {kid}"),
            LifecycleEvent::Discarded { kid, why } => {
                write!(f, "discarded pending key {kid}: {why}")
            }
        }
    }
}

/// A rotation that is due but cannot happen now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferral {
    /// Machine-readable reason (condition reason).
    pub reason: &'static str,
    /// What is going on, for the user.
    pub message: String,
}

/// The outcome of one planning step.
#[derive(Clone, Debug)]
pub struct Plan<K> {
    /// The key set to persist (identical to the input when `events` is empty
    /// and nothing else changed).
    pub keys: KeySet<K>,
    /// What happened, in order.
    pub events: Vec<LifecycleEvent>,
    /// When the planner must run again at the latest.
    pub next_due: Timestamp,
    /// A rotation that is due but deferred.
    pub deferred: Option<Deferral>,
}

/// The planner could not produce a key set.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The current key set is structurally invalid; nothing is changed.
    #[error("the stored key set is inconsistent: {0}")]
    Inconsistent(#[from] InconsistentKeySet),
    /// The key source failed to generate a key.
    #[error("generating a {params} key failed: {source}")]
    Generate {
        /// What was being generated.
        params: KeyParams,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `t + d`, saturating at the end of representable time.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn before(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

/// How long a retired key stays: tokens it signed live up to `ttl`, clocks
/// disagree by up to `skew`, and the change takes `grace` to reach everyone.
fn retention(ttl: Duration, policy: &Policy) -> Duration {
    ttl.saturating_add(policy.clock_skew)
        .saturating_add(policy.propagation_grace)
}

// === clock steps ===

/// A step of the wall clock that a monotonic clock did not see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockJump {
    /// Wall time (on the new clock) when the step was noticed.
    pub seen_at: Timestamp,
    /// How far the wall clock moved beyond the time that really passed:
    /// positive for a forward jump, negative for a backward step.
    pub by: SignedDuration,
}

/// The planner's "now": the wall clock, and the clock steps seen while
/// this process ran (a plain [`Timestamp`] converts into one with none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// The wall clock.
    pub wall: Timestamp,
    /// Steps seen, oldest first.
    pub jumps: Vec<ClockJump>,
}

impl From<Timestamp> for Now {
    fn from(wall: Timestamp) -> Self {
        Now {
            wall,
            jumps: Vec::new(),
        }
    }
}

impl Now {
    /// How far the clock jumped forward since `t`, a time read on the clock
    /// in force then (backward steps only make retention longer, so they are
    /// not subtracted).
    pub fn forward_jumps_since(&self, t: Timestamp) -> Duration {
        self.jumps
            .iter()
            .filter(|j| j.seen_at > t && j.by.is_positive())
            .map(|j| j.by.unsigned_abs())
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// A deadline `due` computed at `computed_at`, read on the current clock:
    /// later by the forward jumps seen since `computed_at`, so a jump never
    /// shortens a wait the contract requires (retention, publication ahead
    /// of signing). Jumps below the [`ClockWatch`] threshold are not seen;
    /// the threshold is far below any `clockSkew` that absorbs them.
    fn on_current_clock(&self, due: Timestamp, computed_at: Timestamp) -> Timestamp {
        after(due, self.forward_jumps_since(computed_at))
    }
}

/// Notices steps of the wall clock by comparing it with a monotonic clock
/// at every reading. The caller keeps one per process, logs each jump it
/// returns, and passes [`ClockWatch::now`] to [`plan`]. Pure: both clocks
/// are read by the caller.
#[derive(Clone, Debug)]
pub struct ClockWatch {
    threshold: Duration,
    last: Option<(Timestamp, std::time::Instant)>,
    jumps: Vec<ClockJump>,
}

/// Steps a [`ClockWatch`] remembers; the oldest are forgotten first (a
/// process that sees this many steps has a broken clock, which the log says).
pub const MAX_CLOCK_JUMPS: usize = 32;

impl ClockWatch {
    /// A watch reporting steps larger than `threshold`.
    pub fn new(threshold: Duration) -> Self {
        ClockWatch {
            threshold,
            last: None,
            jumps: Vec::new(),
        }
    }

    /// Records a reading of both clocks; returns the step since the previous
    /// reading when it exceeds the threshold.
    pub fn observe(&mut self, wall: Timestamp, mono: std::time::Instant) -> Option<ClockJump> {
        let previous = self.last.replace((wall, mono));
        let (last_wall, last_mono) = previous?;
        let elapsed = SignedDuration::try_from(mono.saturating_duration_since(last_mono)).ok()?;
        let moved = wall.duration_since(last_wall);
        let by = moved.checked_sub(elapsed)?;
        if by.unsigned_abs() <= self.threshold {
            return None;
        }
        let jump = ClockJump { seen_at: wall, by };
        if self.jumps.len() == MAX_CLOCK_JUMPS {
            self.jumps.remove(0);
        }
        self.jumps.push(jump);
        Some(jump)
    }

    /// The planner's now at wall time `wall`, with the steps seen so far.
    pub fn now(&self, wall: Timestamp) -> Now {
        Now {
            wall,
            jumps: self.jumps.clone(),
        }
    }
}

// === impl KeySet ===

impl<K: LifecycleKey> KeySet<K> {
    /// The key that signs now.
    pub fn active(&self) -> Option<&ManagedKey<K>> {
        self.keys.iter().find(|k| k.state == KeyState::Active)
    }

    /// The published key that signs next.
    pub fn pending(&self) -> Option<&ManagedKey<K>> {
        self.keys.iter().find(|k| k.state == KeyState::Pending)
    }

    /// Looks a key up by kid.
    pub fn get(&self, kid: &str) -> Option<&ManagedKey<K>> {
        self.keys.iter().find(|k| k.kid() == kid)
    }

    /// Checks the structural rules: unique kids, at most one Active and one
    /// Pending key.
    pub fn check(&self) -> Result<(), InconsistentKeySet> {
        let mut seen = BTreeSet::new();
        for k in &self.keys {
            if !seen.insert(k.kid()) {
                return Err(InconsistentKeySet::DuplicateKid(k.kid().to_owned()));
            }
        }
        let count = |s| self.keys.iter().filter(|k| k.state == s).count();
        match (count(KeyState::Active), count(KeyState::Pending)) {
            (a, _) if a > 1 => Err(InconsistentKeySet::SeveralActive(a)),
            (_, p) if p > 1 => Err(InconsistentKeySet::SeveralPending(p)),
            _ => Ok(()),
        }
    }

    /// When the next key becomes active, as far as is known now.
    pub fn next_rotation_time(&self, policy: &Policy) -> Option<Timestamp> {
        if let Some(p) = self.pending() {
            return Some(
                p.activates_at
                    .max(after(p.created_at, policy.publish_ahead)),
            );
        }
        self.active()
            .map(|a| after(a.activates_at, policy.rotation_interval))
    }

    /// Takes over keys that have no lifecycle records (an adopted JWK Set):
    /// the first key becomes Active, the others Retired as of `now`, so they
    /// stay published for a full token lifetime before they are pruned.
    pub fn adopt(keys: Vec<K>, now: Timestamp, policy: &Policy) -> Self {
        let prune_after = after(now, retention(policy.max_token_ttl, policy));
        let keys = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| ManagedKey {
                key,
                state: if i == 0 {
                    KeyState::Active
                } else {
                    KeyState::Retired
                },
                created_at: now,
                activates_at: now,
                retired_at: (i > 0).then_some(now),
                prune_after: (i > 0).then_some(prune_after),
                reason: (i == 0).then_some(RotationReason::Initial),
                max_token_ttl: policy.max_token_ttl,
            })
            .collect::<Vec<_>>();
        let adopted_active = !keys.is_empty();
        KeySet {
            keys,
            last_rotation_time: adopted_active.then_some(now),
            last_rotation_reason: adopted_active.then_some(RotationReason::Initial),
            last_rotation_request: None,
            rotation_request_outstanding: false,
            last_revocation_time: None,
        }
    }

    /// Until when a verifier cache may still trust the last revoked key: the
    /// revocation time plus the longest a verifier keeps a fetched set
    /// ([`Policy::verifier_cache`]). `None` when nothing was revoked. Only
    /// verifiers that honour `max-age` (or refresh within
    /// `verifierRefreshInterval`) are bounded by it; see
    /// docs/verifier-caches.md.
    pub fn revocation_exposure_until(&self, policy: &Policy) -> Option<Timestamp> {
        self.last_revocation_time
            .map(|t| after(t, policy.verifier_cache))
    }
}

// === revocation as a read-side rule ===

/// What may be served of a stored set while `spec.revokedKeyIDs` names some
/// of its keys (SPEC invariant 9): the planner removes a revoked key in its
/// next write, but until that write lands (it may fail: a corrupt store, an
/// admission policy, no leader) every reader serves the set through this
/// rule, so a revoked kid is never served and never signs.
#[derive(Clone, Debug, PartialEq)]
pub struct Servable<K> {
    /// The set without the revoked keys. A revoked Active key leaves it with
    /// no Active key: nothing signs until a fresh key is stored.
    pub keys: KeySet<K>,
    /// kids held in the stored set but withheld, newest first.
    pub withheld: Vec<String>,
    /// The withheld key that was the Active one, if it was.
    pub withheld_active: Option<String>,
}

impl<K: LifecycleKey + Clone> KeySet<K> {
    /// The kids of this set that `revoked` names, newest first: held in the
    /// store, never to be served.
    pub fn revoked_kids(&self, revoked: &BTreeSet<String>) -> Vec<String> {
        self.keys
            .iter()
            .filter(|k| revoked.contains(k.kid()))
            .map(|k| k.kid().to_owned())
            .collect()
    }

    /// This set as it may be served under `revoked` (see [`Servable`]).
    pub fn servable(&self, revoked: &BTreeSet<String>) -> Servable<K> {
        let withheld = self.revoked_kids(revoked);
        if withheld.is_empty() {
            return Servable {
                keys: self.clone(),
                withheld,
                withheld_active: None,
            };
        }
        let withheld_active = self
            .active()
            .filter(|a| revoked.contains(a.kid()))
            .map(|a| a.kid().to_owned());
        let keys = KeySet {
            keys: self
                .keys
                .iter()
                .filter(|k| !revoked.contains(k.kid()))
                .cloned()
                .collect(),
            ..self.clone_meta()
        };
        Servable {
            keys,
            withheld,
            withheld_active,
        }
    }

    fn clone_meta(&self) -> KeySet<K> {
        KeySet {
            keys: Vec::new(),
            last_rotation_time: self.last_rotation_time,
            last_rotation_reason: self.last_rotation_reason,
            last_rotation_request: self.last_rotation_request.clone(),
            rotation_request_outstanding: self.rotation_request_outstanding,
            last_revocation_time: self.last_revocation_time,
        }
    }
}

// === the planner ===

/// Plans one step of the lifecycle at `now`. See the module docs for the rules.
///
/// Running it again at the same `now` with its own output yields no events;
/// running it before `next_due` yields no events either, so a steady state
/// makes no writes.
// Long on purpose: the planner's steps in order (revoke, prune, ensure a signer,
// replace a pending key of old parameters, pre-publish, activate), each reading
// and changing the same working set; split, that set would travel through every
// helper.
pub fn plan<K, S>(
    policy: &Policy,
    current: &KeySet<K>,
    now: impl Into<Now>,
    source: &mut S,
) -> Result<Plan<K>, PlanError>
where
    K: LifecycleKey,
    S: KeySource<K>,
{
    let clock: Now = now.into();
    let now = clock.wall;
    current.check()?;
    let mut set = current.clone();
    let mut events = Vec::new();
    let mut deferred = None;
    let mut generate = |params: KeyParams| {
        source.generate(params).map_err(|e| PlanError::Generate {
            params,
            source: Box::new(e),
        })
    };

    // Revocation: remove at once, whatever the state.
    let mut active_revoked = false;
    let mut any_revoked = false;
    set.keys.retain(|k| {
        if policy.revoked.contains(k.kid()) {
            active_revoked |= k.state == KeyState::Active;
            any_revoked = true;
            events.push(LifecycleEvent::Revoked {
                kid: k.kid().to_owned(),
                was: k.state,
            });
            false
        } else {
            true
        }
    });
    if any_revoked {
        set.last_revocation_time = Some(now);
    }
    // A fresh signer follows the revocation of the active key, and of any key
    // with rotateOnRevoke (its new kid makes refetching verifiers drop the
    // revoked key at once).
    let fresh_signer = active_revoked || (any_revoked && policy.rotate_on_revoke);
    if fresh_signer {
        let why = if active_revoked {
            "the active key was revoked; the next key is generated afresh"
        } else {
            "a key was revoked with rotateOnRevoke; a fresh key signs at once"
        };
        set.keys.retain(|k| {
            if k.state == KeyState::Pending {
                events.push(LifecycleEvent::Discarded {
                    kid: k.kid().to_owned(),
                    why,
                });
                false
            } else {
                true
            }
        });
        for k in set.keys.iter_mut().filter(|k| k.state == KeyState::Active) {
            events.push(retire(k, now, policy));
        }
    }

    // Pruning: a retired key goes once no token it signed can be valid, under
    // the current policy's lifetime bound as well as the one it retired under.
    for k in set.keys.iter_mut().filter(|k| k.state == KeyState::Retired) {
        let retired_at = k.retired_at.unwrap_or(k.activates_at);
        let due = after(retired_at, retention(k.max_token_ttl, policy))
            .max(k.prune_after.unwrap_or(Timestamp::MIN));
        if k.retired_at.is_none() || k.prune_after != Some(due) {
            k.retired_at = Some(retired_at);
            k.prune_after = Some(due);
        }
    }
    set.keys.retain(|k| {
        let prune = k.state == KeyState::Retired
            && k.prune_after
                .zip(k.retired_at)
                .is_some_and(|(p, r)| clock.on_current_clock(p, r) <= now);
        if prune {
            events.push(LifecycleEvent::Pruned {
                kid: k.kid().to_owned(),
            });
        }
        !prune
    });

    // There is always exactly one signer: the first key of a policy and the
    // replacement of a revoked one sign at once.
    if set.active().is_none() {
        let reason = if fresh_signer {
            RotationReason::Revoked
        } else {
            RotationReason::Initial
        };
        let key = generate(policy.params)?;
        events.push(LifecycleEvent::Created {
            kid: key.kid().to_owned(),
            state: KeyState::Active,
            reason,
        });
        set.keys.insert(
            0,
            ManagedKey {
                key,
                state: KeyState::Active,
                created_at: now,
                activates_at: now,
                retired_at: None,
                prune_after: None,
                reason: Some(reason),
                max_token_ttl: policy.max_token_ttl,
            },
        );
        set.last_rotation_time = Some(now);
        set.last_rotation_reason = Some(reason);
        // A fresh signer satisfies any rotation request standing now (say an
        // annotation already on a new policy): it must not rotate again at once.
        set.last_rotation_request = policy.rotation_request.clone();
        set.rotation_request_outstanding = false;
    }
    for k in set.keys.iter_mut().filter(|k| k.state == KeyState::Active) {
        k.max_token_ttl = k.max_token_ttl.max(policy.max_token_ttl);
    }

    // A spec change of parameters replaces a pending key that never signed.
    if let Some(pos) = set
        .keys
        .iter()
        .position(|k| k.state == KeyState::Pending && k.key.params() != policy.params)
    {
        let k = set.keys.remove(pos);
        events.push(LifecycleEvent::Discarded {
            kid: k.kid().to_owned(),
            why: "the policy's algorithm or key size changed",
        });
    }

    // A new manual request: accepted now, served only by a key made from now
    // on, so a key already waiting (made before it) gives way.
    if let Some(request) = &policy.rotation_request
        && set.last_rotation_request.as_ref() != Some(request)
    {
        set.last_rotation_request = Some(request.clone());
        set.rotation_request_outstanding = true;
        if let Some(pos) = set.keys.iter().position(|k| k.state == KeyState::Pending) {
            let k = set.keys.remove(pos);
            events.push(LifecycleEvent::Discarded {
                kid: k.kid().to_owned(),
                why: "a manual rotation was requested; it is served by a key made after the request",
            });
        }
    }
    let manual = set.rotation_request_outstanding;
    let active = set.active().expect("an active key was ensured above");
    let scheduled_at = after(active.activates_at, policy.rotation_interval);
    let active_params = active.key.params();

    // Pre-publication of the next key.
    if let Some(pending) = set.keys.iter_mut().find(|k| k.state == KeyState::Pending) {
        // Made while the request was outstanding: it serves the request.
        if manual {
            let earliest = after(pending.created_at, policy.publish_ahead).max(now);
            pending.activates_at = pending.activates_at.min(earliest);
            pending.reason = Some(RotationReason::Manual);
        }
    } else if manual || now >= before(scheduled_at, policy.publish_ahead) {
        if set.keys.len() + 1 > policy.max_keys {
            deferred = Some(Deferral {
                reason: crate::reasons::MAX_KEYS_REACHED,
                message: format!(
                    "rotation is due but the set already holds {} keys (maxKeys {}); it waits until a retired key can be pruned. Raise maxKeys or lower maxTokenTTL to rotate on time",
                    set.keys.len(),
                    policy.max_keys
                ),
            });
        } else {
            let reason = if manual {
                RotationReason::Manual
            } else if active_params != policy.params {
                RotationReason::AlgorithmChange
            } else {
                RotationReason::Scheduled
            };
            let target = if manual { now } else { scheduled_at };
            let key = generate(policy.params)?;
            events.push(LifecycleEvent::Created {
                kid: key.kid().to_owned(),
                state: KeyState::Pending,
                reason,
            });
            set.keys.insert(
                0,
                ManagedKey {
                    key,
                    state: KeyState::Pending,
                    created_at: now,
                    activates_at: target.max(after(now, policy.publish_ahead)),
                    retired_at: None,
                    prune_after: None,
                    reason: Some(reason),
                    max_token_ttl: policy.max_token_ttl,
                },
            );
        }
    }

    // Activation: the pending key signs once it is due and has been published
    // for publishAhead (re-checked here in case publishAhead grew since).
    if let Some(pos) = set.keys.iter().position(|k| k.state == KeyState::Pending) {
        let published_long_enough = after(set.keys[pos].created_at, policy.publish_ahead);
        let pending = &mut set.keys[pos];
        if pending.activates_at < published_long_enough {
            pending.activates_at = published_long_enough;
        }
        let due = clock.on_current_clock(pending.activates_at, pending.created_at);
        if now >= due {
            // Keep the schedule's rhythm when woken a little late; after a
            // longer outage restart it from now (catch up once), so the next
            // pre-publication is not already overdue.
            let rhythm = policy
                .rotation_interval
                .saturating_sub(policy.publish_ahead);
            if now >= after(pending.activates_at, rhythm) {
                pending.activates_at = now;
            }
            pending.state = KeyState::Active;
            let reason = pending.reason.unwrap_or(RotationReason::Scheduled);
            pending.reason = Some(reason);
            pending.max_token_ttl = policy.max_token_ttl;
            let kid = pending.kid().to_owned();
            for k in set.keys.iter_mut() {
                if k.state == KeyState::Active && k.kid() != kid {
                    events.push(retire(k, now, policy));
                }
            }
            events.push(LifecycleEvent::Activated { kid, reason });
            // Every pending key was made after the outstanding request.
            set.rotation_request_outstanding = false;
            set.last_rotation_time = Some(now);
            set.last_rotation_reason = Some(reason);
            // Newest first, and the signer leads when nothing is pending.
            let key = set.keys.remove(pos);
            set.keys.insert(0, key);
        }
    }

    let next_due = next_due(policy, &set, &clock, deferred.is_some());
    Ok(Plan {
        keys: set,
        events,
        next_due,
        deferred,
    })
}

/// Retires the active key `k` at `now`: it stays published while tokens it
/// signed may live.
fn retire<K: LifecycleKey>(
    k: &mut ManagedKey<K>,
    now: Timestamp,
    policy: &Policy,
) -> LifecycleEvent {
    let prune_after = after(now, retention(k.max_token_ttl, policy));
    k.state = KeyState::Retired;
    k.retired_at = Some(now);
    k.prune_after = Some(prune_after);
    LifecycleEvent::Retired {
        kid: k.kid().to_owned(),
        prune_after,
    }
}

fn next_due<K: LifecycleKey>(
    policy: &Policy,
    set: &KeySet<K>,
    clock: &Now,
    deferred: bool,
) -> Timestamp {
    let now = clock.wall;
    let prunes = set
        .keys
        .iter()
        .filter(|k| k.state == KeyState::Retired)
        .filter_map(|k| {
            let (p, r) = k.prune_after.zip(k.retired_at)?;
            Some(clock.on_current_clock(p, r))
        });
    let rotation = match (set.pending(), set.active()) {
        (Some(p), _) => Some(clock.on_current_clock(p.activates_at, p.created_at)),
        (None, Some(a)) if !deferred => Some(before(
            after(a.activates_at, policy.rotation_interval),
            policy.publish_ahead,
        )),
        _ => None,
    };
    prunes
        .chain(rotation)
        .min()
        // Nothing scheduled (cannot happen with an active key); look again later.
        .unwrap_or_else(|| after(now, policy.rotation_interval))
        .max(now)
}

#[cfg(test)]
pub(crate) mod tests;
