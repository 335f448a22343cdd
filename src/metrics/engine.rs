//! The families the engine and the adapters report per policy: keys by
//! state, rotations, schedule timestamps, problems, errors, key generation,
//! lost sets, reconcile time and leadership. Only the writer (the engine
//! pass, the reconciler, the HTTP state when a policy's problem changes)
//! touches them, never the request path.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::keys::lifecycle::{
    KeySet, KeySource, KeyState, LifecycleEvent, LifecycleKey, RotationReason,
};
use crate::keys::{Algorithm, KeyParams};
use crate::policy::PolicyRef;

const KEY_STATES: [KeyState; 3] = [KeyState::Pending, KeyState::Active, KeyState::Retired];
const ROTATION_REASONS: [RotationReason; 5] = [
    RotationReason::Initial,
    RotationReason::Scheduled,
    RotationReason::Manual,
    RotationReason::Revoked,
    RotationReason::AlgorithmChange,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyStateLabels {
    namespace: String,
    name: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    namespace: String,
    name: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestroyLabels {
    provider: &'static str,
}

/// The providers a key can be destroyed in, as labels.
const DESTROY_PROVIDERS: [&str; 2] = ["PKCS11", "AWSKMS"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LostLabels {
    namespace: String,
    name: String,
    outcome: &'static str,
}

/// What became of a stored key set found lost (deleted or emptied) although
/// the policy had keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostKeySet {
    /// The set this process held was written back: the same keys.
    Restored,
    /// Nothing held it: a fresh set was generated (tokens signed by the old
    /// keys no longer verify).
    Recreated,
}

impl LostKeySet {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            LostKeySet::Restored => "restored",
            LostKeySet::Recreated => "recreated",
        }
    }
}

const LOST_OUTCOMES: [LostKeySet; 2] = [LostKeySet::Restored, LostKeySet::Recreated];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlgLabels {
    alg: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    namespace: String,
    name: String,
    kind: String,
}

fn policy_labels(p: &PolicyRef) -> PolicyLabels {
    PolicyLabels {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
    }
}

/// The earliest `pruneAfter` among the retired keys of `set`: when the engine
/// next prunes (absent when no key is retired).
pub fn next_prune_time<K: LifecycleKey>(set: &KeySet<K>) -> Option<Timestamp> {
    set.keys
        .iter()
        .filter(|k| k.state == KeyState::Retired)
        .filter_map(|k| k.prune_after)
        .min()
}

/// A [`KeySource`] that reports how long each generation took to
/// `key_generation_seconds`: wrap the real source before handing it to the
/// planner (`plan(&policy, &set, now, &mut TimedKeySource::new(source, &metrics.engine))`).
pub struct TimedKeySource<'m, S> {
    inner: S,
    metrics: &'m EngineMetrics,
}

impl<'m, S> TimedKeySource<'m, S> {
    /// Wraps `inner`, reporting to `metrics`.
    pub fn new(inner: S, metrics: &'m EngineMetrics) -> Self {
        TimedKeySource { inner, metrics }
    }

    /// The wrapped source.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<K: LifecycleKey, S: KeySource<K>> KeySource<K> for TimedKeySource<'_, S> {
    type Error = S::Error;

    fn generate(&mut self, params: KeyParams) -> Result<K, Self::Error> {
        let started = std::time::Instant::now();
        match self.inner.generate(params) {
            Ok(key) => {
                self.metrics
                    .observe_key_generation(params.alg, started.elapsed().as_secs_f64());
                Ok(key)
            }
            Err(e) => {
                self.metrics.inc_key_generation_failure(params.alg);
                Err(e)
            }
        }
    }
}

/// The engine's families (registered in [`Metrics::new`](super::Metrics::new)),
/// reached as `metrics.engine`.
pub struct EngineMetrics {
    keys: Family<KeyStateLabels, Gauge>,
    rotations: Family<RotationLabels, Counter>,
    next_rotation: Family<PolicyLabels, Gauge>,
    next_prune: Family<PolicyLabels, Gauge>,
    pending_activation: Family<PolicyLabels, Gauge>,
    revoked_key_exposure: Family<PolicyLabels, Gauge>,
    degraded: Family<PolicyLabels, Gauge>,
    stale: Family<PolicyLabels, Gauge>,
    key_generation: Family<AlgLabels, Histogram>,
    key_generation_failures: Family<AlgLabels, Counter>,
    not_ready: Family<PolicyLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    key_set_lost: Family<LostLabels, Counter>,
    key_destroy_failures: Family<DestroyLabels, Counter>,
    reconcile_duration: Histogram,
    error_kinds: Mutex<HashMap<PolicyRef, BTreeSet<String>>>,
    leader: Gauge,
}

impl EngineMetrics {
    /// Registers every engine family in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let keys = Family::<KeyStateLabels, Gauge>::default();
        registry.register(
            "keys",
            "Keys in the policy's set, by lifecycle state",
            keys.clone(),
        );
        let rotations = Family::<RotationLabels, Counter>::default();
        registry.register(
            "rotations",
            "Times a key became the active signer, by reason",
            rotations.clone(),
        );
        let next_rotation = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "next_rotation_timestamp",
            "Unix time at which the next key becomes the active signer",
            Unit::Seconds,
            next_rotation.clone(),
        );
        let next_prune = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "next_prune_timestamp",
            "Unix time at which the next retired key may be pruned",
            Unit::Seconds,
            next_prune.clone(),
        );
        let pending_activation = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "pending_activation_timestamp",
            "Unix time at which the Pending key is due to become the active signer (absent when no key is pending)",
            Unit::Seconds,
            pending_activation.clone(),
        );
        let revoked_key_exposure = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "revoked_key_exposure_timestamp",
            "Unix time until which a verifier that cached the JWK Set before the last revocation may still trust the revoked key",
            Unit::Seconds,
            revoked_key_exposure.clone(),
        );
        let degraded = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "policy_degraded",
            "1 while the policy is Degraded (the last good key set keeps being served), else 0",
            degraded.clone(),
        );
        let stale = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "key_set_stale",
            "1 while this replica's watch of the policy's Secret has failed for longer than its staleness bound and its token endpoint does not sign, else 0",
            stale.clone(),
        );
        let key_generation = Family::<AlgLabels, Histogram>::new_with_constructor(
            key_generation_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "key_generation",
            "Time to generate one signing key, by algorithm",
            Unit::Seconds,
            key_generation.clone(),
        );
        let key_generation_failures = Family::<AlgLabels, Counter>::default();
        registry.register(
            "key_generation_failures",
            "Key generations that failed, by algorithm",
            key_generation_failures.clone(),
        );
        // Every algorithm starts at 0, so the first failure is an increase
        // that `increase()`/`rate()` see, not a series that appears at 1.
        for alg in Algorithm::ALL {
            let _ = key_generation_failures.get_or_create(&AlgLabels {
                alg: alg.as_str().to_string(),
            });
        }
        let not_ready = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_not_ready",
            "503 not_ready answers (JWK Set or discovery document) for a known policy that has no key set yet",
            not_ready.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles of a policy, by error kind",
            reconcile_errors.clone(),
        );
        let key_set_lost = Family::<LostLabels, Counter>::default();
        registry.register(
            "key_set_lost",
            "Times the stored key set was found deleted or emptied although the policy had keys, by outcome (restored: the set held in memory was written back; recreated: nothing held it, a fresh set was generated)",
            key_set_lost.clone(),
        );
        let key_destroy_failures = Family::<DestroyLabels, Counter>::default();
        registry.register(
            "key_destroy_failures",
            "Times a pruned key's destruction in its key provider failed (it is tried again every pass), by provider",
            key_destroy_failures.clone(),
        );
        for provider in DESTROY_PROVIDERS {
            let _ = key_destroy_failures.get_or_create(&DestroyLabels { provider });
        }
        // 1 ms .. ~16 s: a reconcile is an API round trip or three, plus key
        // generation when a key is due.
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register_with_unit(
            "reconcile_duration",
            "Time to reconcile one policy (gather, plan, write, status)",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and reconciles (always 1 without leader election and in standalone), else 0",
            leader.clone(),
        );
        EngineMetrics {
            keys,
            rotations,
            next_rotation,
            next_prune,
            pending_activation,
            revoked_key_exposure,
            degraded,
            stale,
            key_generation,
            key_generation_failures,
            not_ready,
            reconcile_errors,
            key_set_lost,
            key_destroy_failures,
            reconcile_duration,
            error_kinds: Mutex::new(HashMap::new()),
            leader,
        }
    }
}

impl EngineMetrics {
    /// Records how long one reconcile took.
    pub fn observe_reconcile(&self, secs: f64) {
        self.reconcile_duration.observe(secs);
    }

    /// Reports whether this replica is the one that reconciles and writes.
    /// Losing the lead drops the key-set series this replica reported (keys
    /// by state, next rotation, next prune, pending activation): the new
    /// leader reports them now, and a stale copy here would soon look like
    /// an overdue rotation.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
        if !leader {
            self.keys.clear();
            self.next_rotation.clear();
            self.next_prune.clear();
            self.pending_activation.clear();
        }
    }

    /// Counts a key generation that failed.
    pub fn inc_key_generation_failure(&self, alg: Algorithm) {
        self.key_generation_failures
            .get_or_create(&AlgLabels {
                alg: alg.as_str().to_string(),
            })
            .inc();
    }

    /// Counts a `503 not_ready` answer for `policy` (known, no key yet).
    pub fn inc_not_ready(&self, policy: &PolicyRef) {
        self.not_ready.get_or_create(&policy_labels(policy)).inc();
    }

    /// Reports a policy's current key set: keys by state, and the next
    /// rotation and prune times (`None` removes the series). When a key is
    /// Pending, the next rotation is its activation, also reported as
    /// `pending_activation_timestamp_seconds`.
    pub fn observe_key_set<K: LifecycleKey>(
        &self,
        policy: &PolicyRef,
        set: &KeySet<K>,
        next_rotation: Option<Timestamp>,
        next_prune: Option<Timestamp>,
    ) {
        for state in KEY_STATES {
            let n = set.keys.iter().filter(|k| k.state == state).count();
            self.keys
                .get_or_create(&KeyStateLabels {
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                    state: state.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let labels = policy_labels(policy);
        let pending_activation = set.pending().and(next_rotation);
        for (family, time) in [
            (&self.next_rotation, next_rotation),
            (&self.next_prune, next_prune),
            (&self.pending_activation, pending_activation),
        ] {
            match time {
                Some(t) => {
                    family.get_or_create(&labels).set(t.as_second());
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }

    /// Reports until when verifier caches may still trust the last revoked
    /// key ([`KeySet::revocation_exposure_until`]; `None` removes the series).
    pub fn observe_revocation_exposure(&self, policy: &PolicyRef, until: Option<Timestamp>) {
        let labels = policy_labels(policy);
        match until {
            Some(t) => {
                self.revoked_key_exposure
                    .get_or_create(&labels)
                    .set(t.as_second());
            }
            None => {
                self.revoked_key_exposure.remove(&labels);
            }
        }
    }

    /// Counts the rotations among `events`: a key activated, or created
    /// directly as the signer (the first key, a revoked key's replacement).
    pub fn record_events(&self, policy: &PolicyRef, events: &[LifecycleEvent]) {
        for event in events {
            let reason = match event {
                LifecycleEvent::Activated { reason, .. } => *reason,
                LifecycleEvent::Created {
                    state: KeyState::Active,
                    reason,
                    ..
                } => *reason,
                _ => continue,
            };
            self.rotations
                .get_or_create(&RotationLabels {
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Records how long generating one `alg` key took.
    pub fn observe_key_generation(&self, alg: Algorithm, secs: f64) {
        self.key_generation
            .get_or_create(&AlgLabels {
                alg: alg.as_str().to_string(),
            })
            .observe(secs);
    }

    /// Counts a failed reconcile of `policy`. `kind` is a short, stable,
    /// low-cardinality name of the failing operation (`read_secret`,
    /// `write_secret`, `parse_key_set`, `invalid_spec`, ...), never a message.
    pub fn inc_reconcile_error(&self, policy: &PolicyRef, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                kind: kind.to_string(),
            })
            .inc();
        let mut kinds = self
            .error_kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kinds
            .entry(policy.clone())
            .or_default()
            .insert(kind.to_string());
    }

    /// Counts a stored key set found lost (deleted or emptied) for `policy`,
    /// and what was done about it.
    pub fn inc_key_set_lost(&self, policy: &PolicyRef, outcome: LostKeySet) {
        self.key_set_lost
            .get_or_create(&LostLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts a failed destruction of a pruned key in its `provider`
    /// (`PKCS11`, `AWSKMS`). The policy's problem names the key.
    pub fn inc_key_destroy_failure(&self, provider: &'static str) {
        self.key_destroy_failures
            .get_or_create(&DestroyLabels { provider })
            .inc();
    }

    /// Sets the `policy_degraded` gauge (done by [`crate::http::SharedState`]
    /// whenever a policy's problem changes).
    /// Every known policy passes here, so this also creates its
    /// `policy_not_ready_total` counter at 0: the first not_ready answer is
    /// then an increase `rate()` sees.
    pub fn set_degraded(&self, policy: &PolicyRef, degraded: bool) {
        let labels = policy_labels(policy);
        self.degraded
            .get_or_create(&labels)
            .set(i64::from(degraded));
        let _ = self.not_ready.get_or_create(&labels);
    }

    /// Sets the `key_set_stale` gauge of a served policy.
    pub fn set_stale(&self, policy: &PolicyRef, stale: bool) {
        self.stale
            .get_or_create(&policy_labels(policy))
            .set(i64::from(stale));
    }

    /// Drops every series of a policy that is no longer served.
    pub fn forget(&self, policy: &PolicyRef) {
        for state in KEY_STATES {
            self.keys.remove(&KeyStateLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                state: state.to_string(),
            });
        }
        for reason in ROTATION_REASONS {
            self.rotations.remove(&RotationLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                reason: reason.to_string(),
            });
        }
        for outcome in LOST_OUTCOMES {
            self.key_set_lost.remove(&LostLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                outcome: outcome.as_str(),
            });
        }
        let labels = policy_labels(policy);
        self.next_rotation.remove(&labels);
        self.next_prune.remove(&labels);
        self.pending_activation.remove(&labels);
        self.not_ready.remove(&labels);
        self.revoked_key_exposure.remove(&labels);
        self.degraded.remove(&labels);
        self.stale.remove(&labels);
        let kinds = self
            .error_kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(policy)
            .unwrap_or_default();
        for kind in kinds {
            self.reconcile_errors.remove(&ErrorLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                kind,
            });
        }
    }
}

fn key_generation_histogram() -> Histogram {
    // 0.5 ms (EdDSA, ECDSA) to ~30 s (a slow 4096-bit RSA prime search).
    Histogram::new(exponential_buckets(0.0005, 4.0, 9))
}
