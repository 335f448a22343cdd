//! The types the planner plans over: the policy's resolved parameters
//! ([`Policy`]), a key in its life ([`ManagedKey`]), the set
//! ([`KeySet`]), what happened ([`LifecycleEvent`]) and the plan
//! ([`Plan`]), with the time arithmetic the steps share. Beneath `plan`,
//! `clock` and `servable`, which import it; it imports none of them.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::keys::alg::{Algorithm, KeyParams};

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
    /// References (`pkcs11:` URI, KMS ARN) of provider-held keys that have
    /// left `keys` but whose destruction in their provider is not yet
    /// confirmed: stored with the set, so that a restart, or the next
    /// leader, still destroys them (docs/key-providers.md). The planner
    /// leaves it alone; the engine keeps it.
    pub undestroyed: Vec<String>,
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
            undestroyed: Vec::new(),
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

/// `t + d`, saturating at the end of representable time.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

pub(super) fn before(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

/// How long a retired key stays: tokens it signed live up to `ttl`, clocks
/// disagree by up to `skew`, and the change takes `grace` to reach everyone.
pub(super) fn retention(ttl: Duration, policy: &Policy) -> Duration {
    ttl.saturating_add(policy.clock_skew)
        .saturating_add(policy.propagation_grace)
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
            undestroyed: Vec::new(),
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
