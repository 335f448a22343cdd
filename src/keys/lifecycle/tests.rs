// Over 600 lines on purpose: the planner's rules, one test each, and the property
// test's model beside them.

//! Tests of the lifecycle planner, written as the contract's invariants.
//! Keys here are cheap stand-ins: the planner never looks at key material.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::keys::alg::{Algorithm, KeyParams};

/// A key that is only an identity and parameters.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TestKey {
    kid: String,
    params: KeyParams,
}

impl TestKey {
    /// A key `kid` with `params`.
    pub(crate) fn new(kid: &str, params: KeyParams) -> Self {
        TestKey {
            kid: kid.into(),
            params,
        }
    }
}

impl LifecycleKey for TestKey {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn params(&self) -> KeyParams {
        self.params
    }
}

/// The event of key `kid` generated in `state` for `reason`.
fn created(kid: &str, state: KeyState, reason: RotationReason) -> LifecycleEvent {
    LifecycleEvent::Created {
        kid: kid.into(),
        state,
        reason,
    }
}

/// Hands out keys `k1`, `k2`, ... in order; fails while `failing`.
#[derive(Default)]
pub(crate) struct Counter {
    /// Keys handed out so far.
    pub(crate) next: u32,
    /// Fail every generation (a broken entropy source).
    pub(crate) failing: bool,
    /// Make the next plan's generations fail (set by the property test).
    pub(crate) fail_next: bool,
}

/// The error of a failing [`Counter`].
#[derive(Debug, thiserror::Error)]
#[error("no entropy")]
pub(crate) struct NoEntropy;

impl KeySource<TestKey> for Counter {
    type Error = NoEntropy;
    fn generate(&mut self, params: KeyParams) -> Result<TestKey, NoEntropy> {
        if self.failing {
            return Err(NoEntropy);
        }
        self.next += 1;
        Ok(TestKey {
            kid: format!("k{}", self.next),
            params,
        })
    }
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(crate) fn t(n: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + n).unwrap()
}

/// A policy with round numbers: rotate every 100 s, publish 20 s ahead,
/// tokens live 30 s, 5 s of skew.
pub(crate) fn policy() -> Policy {
    Policy {
        params: KeyParams::new(Algorithm::ES256),
        rotation_interval: secs(100),
        publish_ahead: secs(20),
        max_token_ttl: secs(30),
        clock_skew: secs(5),
        max_keys: 10,
        revoked: BTreeSet::new(),
        rotation_request: None,
        propagation_grace: Duration::ZERO,
        rotate_on_revoke: false,
        verifier_cache: secs(10),
    }
}

struct Sim {
    policy: Policy,
    set: KeySet<TestKey>,
    source: Counter,
    now: Timestamp,
    /// Clock steps the process noticed.
    jumps: Vec<ClockJump>,
    events: Vec<(Timestamp, LifecycleEvent)>,
    last_plan: Option<Plan<TestKey>>,
}

impl Sim {
    fn new(policy: Policy) -> Self {
        Sim {
            policy,
            set: KeySet::default(),
            source: Counter::default(),
            now: t(0),
            jumps: Vec::new(),
            events: Vec::new(),
            last_plan: None,
        }
    }

    fn step(&mut self) -> &Plan<TestKey> {
        let now = Now {
            wall: self.now,
            jumps: self.jumps.clone(),
        };
        let plan = super::plan(&self.policy, &self.set, now, &mut self.source).unwrap();
        self.set = plan.keys.clone();
        self.events
            .extend(plan.events.iter().cloned().map(|e| (self.now, e)));
        self.last_plan = Some(plan);
        self.last_plan.as_ref().unwrap()
    }

    fn at(&mut self, n: i64) -> &Plan<TestKey> {
        self.now = t(n);
        self.step()
    }

    fn active(&self) -> &str {
        self.set.active().unwrap().kid()
    }

    fn kids(&self) -> Vec<(&str, KeyState)> {
        self.set.keys.iter().map(|k| (k.kid(), k.state)).collect()
    }

    fn next_due(&self) -> Timestamp {
        self.last_plan.as_ref().unwrap().next_due
    }
}

#[test]
fn first_plan_makes_exactly_one_active_published_key() {
    let mut sim = Sim::new(policy());
    let plan = sim.at(0);
    assert_eq!(
        plan.events,
        vec![created("k1", KeyState::Active, RotationReason::Initial)]
    );
    assert_eq!(sim.kids(), vec![("k1", KeyState::Active)]);
    assert_eq!(sim.set.last_rotation_reason, Some(RotationReason::Initial));
    // Next wake-up: when the next key must be pre-published.
    assert_eq!(sim.next_due(), t(80));
}

#[test]
fn next_key_is_published_publish_ahead_before_it_signs_and_signs_on_schedule() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    assert!(sim.at(79).events.is_empty(), "nothing is due before t=80");
    let plan = sim.at(80);
    assert_eq!(
        plan.events,
        vec![created("k2", KeyState::Pending, RotationReason::Scheduled)]
    );
    assert_eq!(sim.active(), "k1", "the new key is published, not signing");
    assert_eq!(sim.set.pending().unwrap().activates_at, t(100));
    assert_eq!(sim.next_due(), t(100));

    let plan = sim.at(100);
    assert_eq!(
        plan.events,
        vec![
            LifecycleEvent::Retired {
                kid: "k1".into(),
                prune_after: t(135)
            },
            LifecycleEvent::Activated {
                kid: "k2".into(),
                reason: RotationReason::Scheduled
            },
        ]
    );
    assert_eq!(
        sim.kids(),
        vec![("k2", KeyState::Active), ("k1", KeyState::Retired)]
    );
    assert_eq!(sim.set.last_rotation_time, Some(t(100)));
}

#[test]
fn retired_key_is_pruned_no_earlier_than_retired_at_plus_ttl_plus_skew() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80);
    sim.at(100);
    assert_eq!(sim.next_due(), t(135));
    assert!(sim.at(134).events.is_empty());
    assert!(
        sim.set.get("k1").is_some(),
        "still needed for tokens until 135"
    );
    let plan = sim.at(135);
    assert_eq!(
        plan.events,
        vec![LifecycleEvent::Pruned { kid: "k1".into() }]
    );
    assert!(sim.set.get("k1").is_none());
}

#[test]
fn lowering_max_token_ttl_does_not_shorten_retention_of_keys_that_signed_under_the_old_one() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80);
    // Tokens minted by k1 until now may live 30 s; the TTL is lowered to 10 s
    // just before k1 retires.
    sim.policy.max_token_ttl = secs(10);
    sim.at(100);
    let k1 = sim.set.get("k1").unwrap();
    assert_eq!(k1.prune_after, Some(t(135)));
    // k2 starts signing under the new TTL only.
    sim.at(180);
    sim.at(200);
    assert_eq!(sim.set.get("k2").unwrap().prune_after, Some(t(215)));
}

#[test]
fn steady_state_makes_no_changes_between_due_times() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    let before = sim.set.clone();
    for n in [1, 10, 50, 79] {
        let plan = sim.at(n);
        assert!(plan.events.is_empty(), "t={n}: {:?}", plan.events);
        assert_eq!(plan.keys, before);
    }
}

#[test]
fn publish_ahead_zero_activates_at_once_and_the_signer_is_the_first_key() {
    let mut sim = Sim::new(Policy {
        publish_ahead: Duration::ZERO,
        ..policy()
    });
    sim.at(0);
    sim.at(100);
    assert_eq!(
        sim.kids(),
        vec![("k2", KeyState::Active), ("k1", KeyState::Retired)]
    );
    sim.policy.rotation_request = Some("now".into());
    sim.at(110);
    assert_eq!(sim.kids()[0], ("k3", KeyState::Active));
    assert_eq!(sim.set.last_rotation_reason, Some(RotationReason::Manual));
}

#[test]
fn manual_request_publishes_now_and_signs_after_publish_ahead_once_per_value() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.policy.rotation_request = Some("2026-11-24T10:00:00Z".into());
    let plan = sim.at(10);
    assert_eq!(
        plan.events,
        vec![created("k2", KeyState::Pending, RotationReason::Manual)]
    );
    assert_eq!(
        sim.set.last_rotation_request.as_deref(),
        Some("2026-11-24T10:00:00Z")
    );
    assert_eq!(sim.next_due(), t(30));
    let plan = sim.at(30);
    assert!(plan.events.contains(&LifecycleEvent::Activated {
        kid: "k2".into(),
        reason: RotationReason::Manual
    }));
    // The same value again does nothing; the schedule restarts from the
    // manual rotation (after k1 is pruned at 30 + 30 + 5).
    assert!(sim.at(40).events.is_empty());
    assert_eq!(sim.next_due(), t(65));
    sim.at(65);
    assert_eq!(sim.next_due(), t(110));
    // A new value rotates again.
    sim.policy.rotation_request = Some("again".into());
    assert!(!sim.at(41).events.is_empty());
}

#[test]
fn a_request_standing_when_the_first_key_is_made_is_satisfied_by_it() {
    let mut sim = Sim::new(Policy {
        rotation_request: Some("applied-with-the-policy".into()),
        ..policy()
    });
    sim.at(0);
    assert_eq!(sim.kids(), vec![("k1", KeyState::Active)]);
    assert_eq!(
        sim.set.last_rotation_request.as_deref(),
        Some("applied-with-the-policy")
    );
    assert!(
        sim.at(1).events.is_empty(),
        "no second key for the same request"
    );
}

#[test]
fn manual_request_with_a_pending_key_replaces_it_with_a_key_made_after_the_request() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80); // k2 pending until 100
    sim.policy.rotation_request = Some("r1".into());
    let plan = sim.at(85);
    assert_eq!(
        plan.events,
        vec![
            LifecycleEvent::Discarded {
                kid: "k2".into(),
                why: "a manual rotation was requested; it is served by a key made after the request"
            },
            created("k3", KeyState::Pending, RotationReason::Manual),
        ]
    );
    assert_eq!(sim.set.last_rotation_request.as_deref(), Some("r1"));
    assert!(sim.set.rotation_request_outstanding);
    // Published at 85, so it may sign from 105.
    assert_eq!(sim.set.pending().unwrap().activates_at, t(105));
    assert!(
        sim.at(100).events.is_empty(),
        "k2's old time passes quietly"
    );
    sim.at(105);
    assert_eq!(sim.active(), "k3");
    assert!(!sim.set.rotation_request_outstanding);
    assert_eq!(sim.set.last_rotation_reason, Some(RotationReason::Manual));
}

#[test]
fn revoking_a_retired_key_removes_it_at_once() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80);
    sim.at(100);
    sim.policy.revoked.insert("k1".into());
    let plan = sim.at(101);
    assert_eq!(
        plan.events,
        vec![LifecycleEvent::Revoked {
            kid: "k1".into(),
            was: KeyState::Retired
        }]
    );
    assert_eq!(sim.kids(), vec![("k2", KeyState::Active)]);
}

#[test]
fn revoking_the_active_key_makes_a_fresh_key_active_immediately() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80); // k2 pending
    sim.policy.revoked.insert("k1".into());
    let plan = sim.at(90);
    assert_eq!(
        plan.events,
        vec![
            LifecycleEvent::Revoked {
                kid: "k1".into(),
                was: KeyState::Active
            },
            LifecycleEvent::Discarded {
                kid: "k2".into(),
                why: "the active key was revoked; the next key is generated afresh"
            },
            created("k3", KeyState::Active, RotationReason::Revoked),
        ]
    );
    assert_eq!(sim.kids(), vec![("k3", KeyState::Active)]);
    assert_eq!(sim.set.last_rotation_reason, Some(RotationReason::Revoked));
    // The schedule restarts from the replacement.
    assert_eq!(sim.next_due(), t(170));
}

#[test]
fn without_rotate_on_revoke_a_retired_key_revocation_keeps_the_signer() {
    // Tokens live 300 s: retired keys stay long enough to be revoked.
    let mut sim = Sim::new(Policy {
        max_token_ttl: secs(300),
        ..policy()
    });
    sim.at(0);
    sim.at(80);
    sim.at(100); // k2 signs, k1 retired
    sim.at(180); // k3 pending
    sim.policy.revoked.insert("k1".into());
    sim.at(185);
    assert_eq!(
        sim.kids(),
        vec![("k3", KeyState::Pending), ("k2", KeyState::Active)]
    );
    assert_eq!(sim.set.last_revocation_time, Some(t(185)));
    // A verifier may keep the revoked key as long as it keeps a set.
    assert_eq!(sim.set.revocation_exposure_until(&sim.policy), Some(t(195)));
}

#[test]
fn rotate_on_revoke_makes_a_fresh_key_sign_when_a_retired_key_is_revoked() {
    let mut sim = Sim::new(Policy {
        rotate_on_revoke: true,
        max_token_ttl: secs(300),
        ..policy()
    });
    sim.at(0);
    sim.at(80);
    sim.at(100); // k2 signs, k1 retired
    sim.at(180); // k3 pending
    sim.policy.revoked.insert("k1".into());
    let plan = sim.at(185);
    assert_eq!(
        plan.events,
        vec![
            LifecycleEvent::Revoked {
                kid: "k1".into(),
                was: KeyState::Retired
            },
            LifecycleEvent::Discarded {
                kid: "k3".into(),
                why: "a key was revoked with rotateOnRevoke; a fresh key signs at once"
            },
            LifecycleEvent::Retired {
                kid: "k2".into(),
                prune_after: t(185 + 305)
            },
            created("k4", KeyState::Active, RotationReason::Revoked),
        ]
    );
    // The old signer stays published for its tokens; the fresh key, never
    // seen by any verifier cache, signs at once.
    assert_eq!(
        sim.kids(),
        vec![("k4", KeyState::Active), ("k2", KeyState::Retired)]
    );
    assert_eq!(sim.set.last_rotation_time, Some(t(185)));
    assert_eq!(sim.set.last_rotation_reason, Some(RotationReason::Revoked));
    assert_eq!(sim.set.last_revocation_time, Some(t(185)));
    // The schedule restarts from the fresh key: next pre-publication at 265.
    assert_eq!(sim.next_due(), t(265));
    // The revocation stays in the spec: planning again changes nothing.
    assert!(sim.at(221).events.is_empty());
    assert_eq!(sim.at(265).events.len(), 1, "k5 is pre-published");
}

#[test]
fn rotate_on_revoke_also_follows_the_revocation_of_a_pending_key() {
    let mut sim = Sim::new(Policy {
        rotate_on_revoke: true,
        ..policy()
    });
    sim.at(0);
    sim.at(80); // k2 pending
    sim.policy.revoked.insert("k2".into());
    sim.at(81);
    assert_eq!(
        sim.kids(),
        vec![("k3", KeyState::Active), ("k1", KeyState::Retired)]
    );
}

#[test]
fn a_revoked_kid_that_is_not_in_the_set_changes_nothing() {
    let mut sim = Sim::new(Policy {
        rotate_on_revoke: true,
        ..policy()
    });
    sim.at(0);
    sim.policy.revoked.insert("unknown".into());
    assert!(sim.at(1).events.is_empty());
    assert_eq!(sim.set.last_revocation_time, None);
    assert_eq!(sim.set.revocation_exposure_until(&sim.policy), None);
}

#[test]
fn algorithm_change_applies_at_the_next_rotation_and_old_keys_stay_until_pruned() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.policy.params = KeyParams::rsa(Algorithm::PS256, 3072);
    assert!(sim.at(50).events.is_empty(), "no rotation before it is due");
    sim.at(80);
    let pending = sim.set.pending().unwrap();
    assert_eq!(pending.key.params, KeyParams::rsa(Algorithm::PS256, 3072));
    assert_eq!(pending.reason, Some(RotationReason::AlgorithmChange));
    sim.at(100);
    assert_eq!(
        sim.set.last_rotation_reason,
        Some(RotationReason::AlgorithmChange)
    );
    assert_eq!(
        sim.set.get("k1").unwrap().key.params,
        KeyParams::new(Algorithm::ES256),
        "the old key keeps its algorithm and stays published"
    );
}

#[test]
fn algorithm_change_replaces_a_pending_key_that_never_signed() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80); // k2 (ES256) pending until 100
    sim.policy.params = KeyParams::new(Algorithm::EdDSA);
    let plan = sim.at(90);
    assert_eq!(plan.events.len(), 2, "{:?}", plan.events);
    let pending = sim.set.pending().unwrap();
    assert_eq!(pending.kid(), "k3");
    assert_eq!(pending.key.params.alg, Algorithm::EdDSA);
    // Freshly published, so it waits publishAhead from now.
    assert_eq!(pending.activates_at, t(110));
    assert!(sim.set.get("k2").is_none());
}

#[test]
fn max_keys_defers_rotation_instead_of_pruning_a_needed_key() {
    // Tokens live far longer than a key signs: retired keys pile up.
    let mut sim = Sim::new(Policy {
        max_keys: 3,
        max_token_ttl: secs(1000),
        ..policy()
    });
    sim.at(0);
    sim.at(80);
    sim.at(100); // k2 active, k1 retired until 1105
    sim.at(180); // k3 pending: 3 keys
    sim.at(200); // k3 active, k1 k2 retired
    let plan = sim.at(280);
    let deferral = plan.deferred.clone().expect("rotation deferred");
    assert_eq!(deferral.reason, "MaxKeysReached");
    assert!(plan.events.is_empty());
    assert_eq!(sim.set.keys.len(), 3);
    assert_eq!(sim.active(), "k3", "the active key keeps signing");
    // It wakes when the oldest retired key may be pruned, and rotates then.
    assert_eq!(sim.next_due(), t(1105));
    let plan = sim.at(1105);
    assert!(plan.deferred.is_none());
    assert!(
        plan.events
            .contains(&LifecycleEvent::Pruned { kid: "k1".into() })
    );
    assert_eq!(sim.set.pending().unwrap().kid(), "k4");
}

#[test]
fn after_downtime_a_missed_rotation_happens_once() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    // Down from t=1 to t=1000: nine intervals missed.
    let plan = sim.at(1000);
    assert_eq!(plan.events.len(), 1, "{:?}", plan.events);
    assert_eq!(sim.set.pending().unwrap().activates_at, t(1020));
    sim.at(1020);
    assert_eq!(sim.active(), "k2");
    assert_eq!(sim.next_due(), t(1055), "next: prune k1");
    sim.at(1055);
    assert_eq!(
        sim.next_due(),
        t(1100),
        "then pre-publish one interval after activation"
    );
    assert_eq!(sim.source.next, 2, "only one rotation for the whole outage");
}

#[test]
fn after_downtime_with_a_pending_key_it_activates_once_and_the_schedule_restarts() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80);
    let plan = sim.at(5000);
    assert!(plan.events.contains(&LifecycleEvent::Activated {
        kid: "k2".into(),
        reason: RotationReason::Scheduled
    }));
    assert_eq!(sim.set.active().unwrap().activates_at, t(5000));
    assert!(sim.at(5000).events.is_empty());
    assert_eq!(sim.next_due(), t(5035));
}

#[test]
fn slightly_late_wake_up_keeps_the_schedule_rhythm() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80);
    sim.at(103); // 3 s late
    assert_eq!(sim.set.active().unwrap().activates_at, t(100));
    assert_eq!(
        sim.set.get("k1").unwrap().retired_at,
        Some(t(103)),
        "k1 signed until 103"
    );
    assert_eq!(sim.set.get("k1").unwrap().prune_after, Some(t(138)));
}

#[test]
fn growing_publish_ahead_delays_activation_of_a_key_published_too_recently() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80); // k2 pending, would sign at 100
    sim.policy.publish_ahead = secs(50);
    let plan = sim.at(100);
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    assert_eq!(sim.set.pending().unwrap().activates_at, t(130));
    sim.at(130);
    assert_eq!(sim.active(), "k2");
}

#[test]
fn an_inconsistent_set_is_an_error_and_is_left_alone() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80);
    let mut broken = sim.set.clone();
    for k in &mut broken.keys {
        k.state = KeyState::Active;
    }
    let err = plan(&sim.policy, &broken, t(90), &mut Counter::default()).unwrap_err();
    assert!(matches!(
        err,
        PlanError::Inconsistent(InconsistentKeySet::SeveralActive(2))
    ));
    broken.keys[1] = broken.keys[0].clone();
    let err = plan(&sim.policy, &broken, t(90), &mut Counter::default()).unwrap_err();
    assert!(matches!(
        err,
        PlanError::Inconsistent(InconsistentKeySet::DuplicateKid(_))
    ));
}

#[test]
fn adopted_keys_keep_signing_with_the_newest_and_retire_the_rest() {
    let keys = (1..=3)
        .map(|i| TestKey {
            kid: format!("old{i}"),
            params: KeyParams::new(Algorithm::RS256),
        })
        .collect();
    let set = KeySet::adopt(keys, t(0), &policy());
    let mut sim = Sim::new(policy());
    sim.set = set;
    let plan = sim.at(0);
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    assert_eq!(sim.active(), "old1");
    assert_eq!(sim.set.get("old2").unwrap().prune_after, Some(t(35)));
    sim.at(35);
    assert_eq!(sim.kids(), vec![("old1", KeyState::Active)]);
}

/// Runs the simulation until a key created at or after `since` is active,
/// waking when due; `None` if that does not happen by `deadline`.
fn activated_after(sim: &mut Sim, since: Timestamp, deadline: Timestamp) -> Option<Timestamp> {
    loop {
        if sim.set.active().is_some_and(|a| a.created_at >= since) {
            return Some(sim.now);
        }
        if sim.now >= deadline {
            return None;
        }
        sim.now = sim.next_due().min(deadline);
        sim.step();
    }
}

#[test]
fn a_manual_request_survives_its_pending_key_being_discarded_by_an_algorithm_change() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.policy.rotation_request = Some("r1".into());
    sim.at(10); // k2 pending for r1, signs at 30
    assert_eq!(
        sim.set.pending().unwrap().reason,
        Some(RotationReason::Manual)
    );
    sim.policy.params = KeyParams::new(Algorithm::EdDSA);
    sim.at(15); // k2 discarded (never signed)
    assert!(sim.set.get("k2").is_none());
    // The request still stands: a key made after it signs publishAhead
    // after its replacement is published, long before the schedule (t=100).
    let when = activated_after(&mut sim, t(10), t(80));
    assert_eq!(when, Some(t(35)), "keys: {:?}", sim.kids());
    assert_eq!(sim.set.last_rotation_reason, Some(RotationReason::Manual));
    assert_eq!(sim.set.last_rotation_request.as_deref(), Some("r1"));
}

#[test]
fn a_manual_request_survives_its_pending_key_being_revoked() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.policy.rotation_request = Some("r1".into());
    sim.at(10); // k2 pending for r1
    sim.policy.revoked.insert("k2".into());
    sim.at(12);
    assert!(sim.set.get("k2").is_none());
    assert_eq!(activated_after(&mut sim, t(10), t(80)), Some(t(32)));
    assert_eq!(sim.set.last_rotation_reason, Some(RotationReason::Manual));
}

#[test]
fn a_manual_request_deferred_by_max_keys_is_served_once_a_key_is_pruned() {
    let mut sim = Sim::new(Policy {
        max_keys: 2,
        max_token_ttl: secs(50),
        ..policy()
    });
    sim.at(0);
    sim.at(80);
    sim.at(100); // k2 active, k1 retired until 155
    sim.policy.rotation_request = Some("r1".into());
    let plan = sim.at(110);
    assert_eq!(
        plan.deferred.as_ref().map(|d| d.reason),
        Some("MaxKeysReached")
    );
    // The schedule's own pre-publication (t=180) must not be what serves it:
    // the request is remembered and served as soon as k1 is pruned.
    assert_eq!(activated_after(&mut sim, t(110), t(179)), Some(t(175)));
    assert_eq!(sim.set.last_rotation_reason, Some(RotationReason::Manual));
}

#[test]
fn a_manual_request_is_served_by_a_key_made_after_it_not_the_one_already_pending() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80); // k2 pending (scheduled) since 80, signs at 100
    sim.policy.rotation_request = Some("r1".into());
    sim.at(85);
    let when = activated_after(&mut sim, t(85), t(200)).expect("served");
    assert_eq!(
        when,
        t(105),
        "a key published at 85 signs publishAhead later"
    );
    assert!(
        sim.set.get("k2").is_none(),
        "k2 never signed and was discarded"
    );
}

#[test]
fn a_retired_key_stays_published_for_the_propagation_grace_beyond_ttl_and_skew() {
    // The defaults the operator runs with: resolve() of a minimal spec.
    let spec: crate::api::KeyRotationPolicySpec =
        serde_json::from_value(serde_json::json!({"algorithm": "ES256"})).unwrap();
    let resolved = spec.resolve(None).unwrap();
    let mut sim = Sim::new(resolved.clone());
    let interval = resolved.rotation_interval.as_secs() as i64;
    sim.at(0);
    sim.at(interval - resolved.publish_ahead.as_secs() as i64);
    sim.at(interval);
    let k1 = sim.set.get("k1").unwrap();
    assert_eq!(k1.state, KeyState::Retired);
    // retiredAt is the plan time; the write, every replica's watch and the
    // kubelet's refresh of a mounted active.pem come after it, and k1 may
    // sign until each of them has caught up.
    let bare = after(t(interval), resolved.max_token_ttl + resolved.clock_skew);
    let grace = k1.prune_after.unwrap().duration_since(bare);
    assert!(
        grace >= SignedDuration::from_secs(60),
        "pruneAfter leaves only {grace:?} for propagation"
    );
}

#[test]
fn a_forward_clock_jump_does_not_prune_a_key_early() {
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80);
    sim.at(100); // k1 retired, pruneAfter 135 on the clock in force
    // Real time 110: the wall clock jumps an hour ahead, and it is noticed.
    sim.now = t(110 + 3600);
    sim.jumps.push(ClockJump {
        seen_at: sim.now,
        by: SignedDuration::from_secs(3600),
    });
    let plan = sim.step();
    assert!(
        !plan
            .events
            .contains(&LifecycleEvent::Pruned { kid: "k1".into() }),
        "{:?}",
        plan.events
    );
    // It goes once 35 s have really passed since it retired: at 135 + 1 h.
    // (The overdue rotation happens meanwhile, on the new clock.)
    sim.at(134 + 3600);
    assert!(sim.set.get("k1").is_some());
    let plan = sim.at(135 + 3600);
    assert!(
        plan.events
            .contains(&LifecycleEvent::Pruned { kid: "k1".into() })
    );
    // A key retired under the new clock is not held back by the old jump.
    let k2 = sim.set.get("k2").unwrap();
    assert_eq!(k2.state, KeyState::Retired);
    assert_eq!(k2.retired_at, Some(t(134 + 3600)));
    assert_eq!(
        sim.next_due(),
        t(169 + 3600),
        "k2: retired at 134 + 35, new clock"
    );
}

#[test]
fn without_a_noticed_jump_a_late_wake_up_prunes_as_usual() {
    // Downtime looks the same on the wall clock, but real time passed too:
    // no jump is reported, so nothing is held back.
    let mut sim = Sim::new(policy());
    sim.at(0);
    sim.at(80);
    sim.at(100);
    let plan = sim.at(110 + 3600);
    assert!(
        plan.events
            .contains(&LifecycleEvent::Pruned { kid: "k1".into() })
    );
}

#[test]
fn the_clock_watch_reports_steps_the_monotonic_clock_did_not_see() {
    let mono = std::time::Instant::now();
    let mut watch = ClockWatch::new(secs(2));
    assert_eq!(
        watch.observe(t(0), mono),
        None,
        "the first reading is the reference"
    );
    // 10 s on both clocks: no step.
    assert_eq!(watch.observe(t(10), mono + secs(10)), None);
    // 1 s of drift is below the threshold.
    assert_eq!(watch.observe(t(21), mono + secs(20)), None);
    // The wall clock moves 1 h while 5 s pass: a forward jump.
    let jump = watch.observe(t(3626), mono + secs(25)).unwrap();
    assert_eq!(jump.by, SignedDuration::from_secs(3600));
    assert_eq!(jump.seen_at, t(3626));
    // Then back by 30 min.
    let back = watch.observe(t(1830), mono + secs(29)).unwrap();
    assert_eq!(back.by, SignedDuration::from_secs(-1800));
    let now = watch.now(t(1900));
    assert_eq!(now.jumps, vec![jump, back]);
    assert_eq!(now.forward_jumps_since(t(100)), secs(3600));
    assert_eq!(now.forward_jumps_since(t(3626)), Duration::ZERO);
    // Old steps are forgotten beyond the cap.
    for i in 0..MAX_CLOCK_JUMPS as i64 {
        watch.observe(t(10_000 * (i + 1)), mono + secs(30 + i as u64));
    }
    assert_eq!(watch.now(t(0)).jumps.len(), MAX_CLOCK_JUMPS);
}

// === property tests over random timelines ===

#[derive(Clone, Debug)]
enum Op {
    /// Wake at the planner's next due time (what the controller does).
    WakeWhenDue,
    /// Wake early, after `n` seconds (a watch event, a resync).
    WakeAfter(u64),
    /// The operator is down for `n` seconds.
    Outage(u64),
    /// The wall clock steps back by `n` seconds (NTP correcting a fast clock).
    ClockBack(u64),
    /// The wall clock jumps forward by `n` seconds while no time passes,
    /// and the process notices (its monotonic clock did not move).
    ClockJump(u64),
    /// A manual rotation request with a new value.
    Manual,
    /// Revoke the active key.
    RevokeActive,
    /// Revoke the i-th key of the set (modulo its length).
    RevokeNth(usize),
    /// Change algorithm.
    ChangeAlgorithm(usize),
    /// Change to RS256 with the i-th key size.
    ChangeKeySize(usize),
    /// Change maxTokenTTL to n seconds.
    ChangeTtl(u64),
    /// Change publishAhead to n seconds (kept below the interval).
    ChangePublishAhead(u64),
    /// Change rotationInterval to n seconds (publishAhead kept below it).
    ChangeInterval(u64),
    /// Change clockSkew to n seconds.
    ChangeSkew(u64),
    /// Change maxKeys.
    ChangeMaxKeys(usize),
    /// The next key generation fails (an entropy or provider error).
    FailGeneration,
    /// Turn rotateOnRevoke on or off.
    RotateOnRevoke(bool),
}

const KEY_SIZES: [u32; 3] = [2048, 3072, 4096];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::WakeWhenDue),
        3 => (1u64..60).prop_map(Op::WakeAfter),
        1 => (60u64..2000).prop_map(Op::Outage),
        1 => (1u64..500).prop_map(Op::ClockBack),
        1 => (1u64..500).prop_map(Op::ClockJump),
        1 => Just(Op::Manual),
        1 => Just(Op::RevokeActive),
        1 => (0usize..10).prop_map(Op::RevokeNth),
        1 => (0usize..9).prop_map(Op::ChangeAlgorithm),
        1 => (0usize..3).prop_map(Op::ChangeKeySize),
        1 => (1u64..200).prop_map(Op::ChangeTtl),
        1 => (0u64..100).prop_map(Op::ChangePublishAhead),
        1 => (10u64..200).prop_map(Op::ChangeInterval),
        1 => (0u64..30).prop_map(Op::ChangeSkew),
        1 => (2usize..8).prop_map(Op::ChangeMaxKeys),
        1 => Just(Op::FailGeneration),
        1 => any::<bool>().prop_map(Op::RotateOnRevoke),
    ]
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    (
        10u64..200,
        0u64..100,
        1u64..300,
        0u64..30,
        2usize..8,
        0u64..40,
        any::<bool>(),
    )
        .prop_map(
            |(interval, ahead, ttl, skew, max_keys, grace, rotate_on_revoke)| Policy {
                rotation_interval: secs(interval),
                publish_ahead: secs(ahead % interval),
                max_token_ttl: secs(ttl),
                clock_skew: secs(skew),
                max_keys,
                propagation_grace: secs(grace),
                rotate_on_revoke,
                ..policy()
            },
        )
}

/// What the test observes from outside, to check invariants against. Times
/// are kept twice: on the wall clock (what the planner sees) and in real
/// time (what tokens live in), which differ by the clock steps.
#[derive(Default)]
struct Observed {
    /// When each kid first appeared in the set (was published): wall time,
    /// real time, and the step number (causal order, immune to clock steps).
    published_at: BTreeMap<String, (Timestamp, Timestamp, usize)>,
    /// Until when (real time) each kid signed, and the longest TTL in force
    /// while it did.
    signed_until: BTreeMap<String, (Timestamp, Duration)>,
    /// kids the test revoked.
    revoked: BTreeSet<String>,
    /// kids ever removed.
    removed: BTreeSet<String>,
    /// Accepted manual requests: value and the step that accepted it, until
    /// a key published at or after that step signs.
    requests: Vec<(String, usize)>,
    /// Every request value accepted so far.
    accepted: BTreeSet<String>,
}

/// The simulated world: the planner's wall clock and the real time.
struct World {
    sim: Sim,
    /// Real time: advanced by waits and outages, not by clock steps.
    real: Timestamp,
    step: usize,
}

impl World {
    /// Advances both clocks by `n` seconds.
    fn wait(&mut self, n: u64) {
        self.sim.now = after(self.sim.now, secs(n));
        self.real = after(self.real, secs(n));
    }

    /// Plans once; returns whether the plan succeeded.
    fn step(&mut self) -> Result<bool, TestCaseError> {
        self.step += 1;
        let now = Now {
            wall: self.sim.now,
            jumps: self.sim.jumps.clone(),
        };
        let fail = std::mem::take(&mut self.sim.source.fail_next);
        self.sim.source.failing = fail;
        let result = super::plan(&self.sim.policy, &self.sim.set, now, &mut self.sim.source);
        self.sim.source.failing = false;
        match result {
            Ok(plan) => {
                self.sim.set = plan.keys.clone();
                self.sim.last_plan = Some(plan);
                Ok(true)
            }
            Err(PlanError::Generate { .. }) if fail => Ok(false),
            Err(e) => Err(TestCaseError::fail(format!("plan failed: {e}"))),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_on_every_step_of_random_timelines(
        initial in policy_strategy(),
        adopted in 0usize..4,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut world = World { sim: Sim::new(initial), real: t(0), step: 0 };
        let mut seen = Observed::default();
        if adopted > 0 {
            let keys = (1..=adopted)
                .map(|i| TestKey { kid: format!("adopted{i}"), params: KeyParams::new(Algorithm::RS256) })
                .collect();
            world.sim.set = KeySet::adopt(keys, world.sim.now, &world.sim.policy);
            // Adopted keys may have signed, until now, tokens as long as the policy allows.
            for k in &world.sim.set.keys {
                seen.signed_until.insert(k.kid().to_owned(), (world.real, world.sim.policy.max_token_ttl));
            }
        }
        let mut requests = 0;
        prop_assert!(world.step()?);
        check_step(&world, &mut seen, None)?;
        for op in ops {
            let signer_before = world.sim.set.active().map(|k| k.kid().to_owned());
            // The TTL the signer signed under since the last step.
            let ttl_in_force = world.sim.policy.max_token_ttl;
            match op {
                Op::WakeWhenDue => {
                    let due = world.sim.next_due();
                    let n = due.duration_since(world.sim.now).as_secs().max(0) as u64;
                    world.wait(n);
                }
                Op::WakeAfter(n) | Op::Outage(n) => world.wait(n),
                Op::ClockBack(n) => {
                    world.sim.now = before(world.sim.now, secs(n));
                    world.sim.jumps.push(ClockJump {
                        seen_at: world.sim.now,
                        by: -SignedDuration::from_secs(n as i64),
                    });
                }
                Op::ClockJump(n) => {
                    world.sim.now = after(world.sim.now, secs(n));
                    world.sim.jumps.push(ClockJump {
                        seen_at: world.sim.now,
                        by: SignedDuration::from_secs(n as i64),
                    });
                }
                Op::Manual => {
                    requests += 1;
                    world.sim.policy.rotation_request = Some(format!("r{requests}"));
                }
                Op::RevokeActive => {
                    let kid = world.sim.active().to_owned();
                    seen.revoked.insert(kid.clone());
                    world.sim.policy.revoked.insert(kid);
                }
                Op::RevokeNth(i) => {
                    let kid = world.sim.set.keys[i % world.sim.set.keys.len()].kid().to_owned();
                    seen.revoked.insert(kid.clone());
                    world.sim.policy.revoked.insert(kid);
                }
                Op::ChangeAlgorithm(i) => world.sim.policy.params = KeyParams::new(Algorithm::ALL[i]),
                Op::ChangeKeySize(i) => {
                    world.sim.policy.params = KeyParams::rsa(Algorithm::RS256, KEY_SIZES[i]);
                }
                Op::ChangeTtl(n) => world.sim.policy.max_token_ttl = secs(n),
                Op::ChangePublishAhead(n) => {
                    world.sim.policy.publish_ahead = secs(n % world.sim.policy.rotation_interval.as_secs())
                }
                Op::ChangeInterval(n) => {
                    world.sim.policy.rotation_interval = secs(n);
                    world.sim.policy.publish_ahead = secs(world.sim.policy.publish_ahead.as_secs() % n);
                }
                Op::ChangeSkew(n) => world.sim.policy.clock_skew = secs(n),
                Op::ChangeMaxKeys(n) => world.sim.policy.max_keys = n,
                Op::FailGeneration => world.sim.source.fail_next = true,
                Op::RotateOnRevoke(on) => world.sim.policy.rotate_on_revoke = on,
            }
            // The key that signed until now signed under the TTL that was in
            // force until now (an edit applies from the next plan on).
            if let Some(kid) = &signer_before {
                let entry = seen.signed_until.entry(kid.clone()).or_insert((world.real, Duration::ZERO));
                entry.0 = world.real;
                entry.1 = entry.1.max(ttl_in_force);
            }
            let keys_before = world.sim.set.keys.len();
            let set_before = world.sim.set.clone();
            if world.step()? {
                check_step(&world, &mut seen, Some(keys_before))?;
            } else {
                // A failed generation changes nothing; the next run retries.
                prop_assert_eq!(&world.sim.set, &set_before);
            }
        }
        // Liveness: left alone, every accepted manual request is served by
        // a key published at or after the step that accepted it.
        for _ in 0..200 {
            if seen.requests.is_empty() {
                break;
            }
            let signer_before = world.sim.set.active().map(|k| k.kid().to_owned());
            let ttl_in_force = world.sim.policy.max_token_ttl;
            let due = world.sim.next_due();
            world.wait(due.duration_since(world.sim.now).as_secs().max(0) as u64);
            if let Some(kid) = &signer_before {
                let entry = seen.signed_until.entry(kid.clone()).or_insert((world.real, Duration::ZERO));
                entry.0 = world.real;
                entry.1 = entry.1.max(ttl_in_force);
            }
            let keys_before = world.sim.set.keys.len();
            prop_assert!(world.step()?);
            check_step(&world, &mut seen, Some(keys_before))?;
        }
        prop_assert!(seen.requests.is_empty(), "requests never served: {:?}", seen.requests);
    }
}

// Long on purpose: every invariant the property test checks after each step, in one
// place.
fn check_step(
    world: &World,
    seen: &mut Observed,
    keys_before: Option<usize>,
) -> Result<(), TestCaseError> {
    let sim = &world.sim;
    let plan = sim.last_plan.as_ref().unwrap();
    let now = sim.now;
    let clock = Now {
        wall: now,
        jumps: sim.jumps.clone(),
    };
    // 1 & 5: exactly one Active, at most one Pending, unique kids.
    prop_assert!(sim.set.check().is_ok(), "{:?}", sim.set.check());
    prop_assert_eq!(
        sim.set
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .count(),
        1
    );
    // Progress: the next wake-up is in the future.
    prop_assert!(
        plan.next_due > now,
        "next_due {} <= now {}",
        plan.next_due,
        now
    );
    // Idempotence: planning again at the same instant changes nothing, so a
    // steady state makes no writes.
    let mut source = Counter {
        next: 10_000,
        ..Counter::default()
    };
    let again = super::plan(&sim.policy, &sim.set, clock.clone(), &mut source).unwrap();
    prop_assert!(
        again.events.is_empty(),
        "replan at {now}: {:?}",
        again.events
    );
    prop_assert_eq!(&again.keys, &sim.set);
    // Nothing happens before next_due either.
    let just_before = before(plan.next_due, secs(1)).max(now);
    let early = super::plan(
        &sim.policy,
        &sim.set,
        Now {
            wall: just_before,
            ..clock
        },
        &mut source,
    )
    .unwrap();
    prop_assert!(early.events.is_empty(), "before due: {:?}", early.events);

    // A revocation that removed a key is dated, and with rotateOnRevoke (or
    // when the signer was revoked) a key no verifier has seen signs at once.
    let revoked: Vec<_> = plan
        .events
        .iter()
        .filter_map(|e| match e {
            LifecycleEvent::Revoked { kid, was } => Some((kid, *was)),
            _ => None,
        })
        .collect();
    let fresh_signer = plan.events.iter().find_map(|e| match e {
        LifecycleEvent::Created {
            kid,
            state: KeyState::Active,
            reason: RotationReason::Revoked,
        } => Some(kid),
        _ => None,
    });
    if !revoked.is_empty() {
        prop_assert_eq!(sim.set.last_revocation_time, Some(now));
        let must_rotate =
            sim.policy.rotate_on_revoke || revoked.iter().any(|(_, was)| *was == KeyState::Active);
        if must_rotate {
            let kid = fresh_signer.expect("a revocation with rotateOnRevoke makes a fresh signer");
            prop_assert_eq!(sim.set.active().map(|k| k.kid()), Some(kid.as_str()));
            prop_assert!(
                !seen.published_at.contains_key(kid),
                "{kid} was published before"
            );
        } else {
            prop_assert!(
                fresh_signer.is_none(),
                "rotated on a revocation without the option"
            );
        }
    } else {
        prop_assert!(
            fresh_signer.is_none(),
            "a Revoked signer without a revocation"
        );
    }

    for k in &sim.set.keys {
        seen.published_at
            .entry(k.kid().to_owned())
            .or_insert((now, world.real, world.step));
        prop_assert!(!seen.removed.contains(k.kid()), "kid {} came back", k.kid());
    }
    for event in &plan.events {
        match event {
            // 2: a key signs only after it was published for publishAhead
            // (in real time), except the first key and the fresh signer
            // after a revocation.
            LifecycleEvent::Activated { kid, reason } => {
                let (_, published, _) = seen.published_at[kid];
                prop_assert!(
                    after(published, sim.policy.publish_ahead) <= world.real,
                    "{kid} ({reason}) published at {published}, signs at {}, publishAhead {:?}",
                    world.real,
                    sim.policy.publish_ahead
                );
            }
            LifecycleEvent::Created {
                state: KeyState::Active,
                reason,
                ..
            } => {
                prop_assert!(
                    matches!(reason, RotationReason::Initial | RotationReason::Revoked),
                    "a key signed without pre-publication for {reason}"
                );
            }
            // 3: a retired key is pruned only when no token it signed can be
            // valid: the signer's TTL, the verifiers' skew and our grace, in
            // real time.
            LifecycleEvent::Pruned { kid } => {
                let (until, ttl) = seen.signed_until[kid];
                let earliest = after(
                    until,
                    ttl + sim.policy.clock_skew + sim.policy.propagation_grace,
                );
                prop_assert!(
                    world.real >= earliest,
                    "{kid} pruned at {} (real), needed until {earliest}",
                    world.real
                );
                seen.removed.insert(kid.clone());
            }
            LifecycleEvent::Revoked { kid, .. } => {
                prop_assert!(seen.revoked.contains(kid), "{kid} revoked without request");
                seen.removed.insert(kid.clone());
            }
            // Only pending keys (which never signed) are discarded.
            LifecycleEvent::Discarded { kid, .. } => {
                prop_assert!(!seen.signed_until.contains_key(kid), "{kid} had signed");
                seen.removed.insert(kid.clone());
            }
            _ => {}
        }
    }
    // Any key that disappeared did so through one of the events above.
    for kid in seen.published_at.keys() {
        if sim.set.get(kid).is_none() {
            prop_assert!(
                seen.removed.contains(kid),
                "{kid} vanished without an event"
            );
        }
    }
    // maxKeys: a rotation never grows the set past the cap.
    if let Some(before) = keys_before {
        prop_assert!(
            sim.set.keys.len() <= sim.policy.max_keys.max(before),
            "{} keys > maxKeys {}",
            sim.set.keys.len(),
            sim.policy.max_keys
        );
    }
    // Manual requests: accepted when first echoed, then served by a key
    // published at or after the accepting step.
    if let Some(r) = &sim.set.last_rotation_request
        && seen.accepted.insert(r.clone())
    {
        seen.requests.push((r.clone(), world.step));
    }
    let active = sim.set.active().unwrap();
    let (_, _, made) = seen.published_at[active.kid()];
    if seen.requests.iter().any(|(_, accepted)| made >= *accepted) {
        // Served on purpose, not by the schedule coming round: the signer
        // was made for the request (or is a fresh signer made since).
        prop_assert!(
            matches!(
                active.reason,
                Some(RotationReason::Manual | RotationReason::Revoked | RotationReason::Initial)
            ),
            "request {:?} served by {} ({:?})",
            seen.requests,
            active.kid(),
            active.reason
        );
        seen.requests.retain(|(_, accepted)| made < *accepted);
    }
    Ok(())
}

#[test]
fn plans_with_real_keys_from_a_seeded_generator() {
    use rand_chacha::rand_core::SeedableRng;
    let mut source =
        crate::keys::material::RngKeySource(rand_chacha::ChaCha20Rng::seed_from_u64(7));
    let policy = Policy {
        params: KeyParams::new(Algorithm::EdDSA),
        ..policy()
    };
    let first = plan(&policy, &KeySet::default(), t(0), &mut source).unwrap();
    let active = first.keys.active().unwrap();
    assert_eq!(
        active.key.thumbprint(),
        active.kid(),
        "kid is the RFC 7638 thumbprint"
    );
    let second = plan(&policy, &first.keys, t(80), &mut source).unwrap();
    assert_eq!(second.keys.keys.len(), 2);
    assert_ne!(second.keys.keys[0].kid(), second.keys.keys[1].kid());
}

// === revocation as a read-side rule (SPEC invariant 9) ===

/// A set with a pending (k3), an active (k2) and a retired (k1) key.
fn three_keys() -> KeySet<TestKey> {
    let mut sim = Sim::new(Policy {
        max_token_ttl: secs(300),
        ..policy()
    });
    sim.at(0);
    sim.at(80);
    sim.at(100);
    sim.at(180);
    assert_eq!(
        sim.kids(),
        vec![
            ("k3", KeyState::Pending),
            ("k2", KeyState::Active),
            ("k1", KeyState::Retired)
        ]
    );
    sim.set
}

fn revoked(kids: &[&str]) -> BTreeSet<String> {
    kids.iter().map(|k| (*k).to_owned()).collect()
}

#[test]
fn a_revoked_active_key_is_withheld_and_nothing_signs_until_a_fresh_key_is_stored() {
    let set = three_keys();
    let served = set.servable(&revoked(&["k2"]));
    let kids: Vec<_> = served.keys.keys.iter().map(|k| k.kid()).collect();
    assert_eq!(kids, ["k3", "k1"]);
    assert!(
        served.keys.active().is_none(),
        "the revoked key never signs"
    );
    assert_eq!(served.withheld, ["k2"]);
    assert_eq!(served.withheld_active.as_deref(), Some("k2"));
    assert_eq!(served.keys.last_rotation_time, set.last_rotation_time);
}

#[test]
fn a_revoked_retired_or_pending_key_is_withheld_and_the_active_key_keeps_signing() {
    let set = three_keys();
    let served = set.servable(&revoked(&["k1", "k3"]));
    let kids: Vec<_> = served.keys.keys.iter().map(|k| k.kid()).collect();
    assert_eq!(kids, ["k2"]);
    assert_eq!(served.keys.active().map(|a| a.kid()), Some("k2"));
    assert_eq!(served.withheld, ["k3", "k1"]);
    assert_eq!(served.withheld_active, None);
}

#[test]
fn with_nothing_revoked_or_only_unknown_kids_the_set_is_served_as_stored() {
    let set = three_keys();
    for r in [revoked(&[]), revoked(&["not-a-kid"])] {
        let served = set.servable(&r);
        assert_eq!(served.keys, set);
        assert!(served.withheld.is_empty());
        assert_eq!(served.withheld_active, None);
    }
}

#[test]
fn every_revoked_kid_is_withheld_even_when_none_is_left() {
    let set = three_keys();
    let served = set.servable(&revoked(&["k1", "k2", "k3"]));
    assert!(served.keys.keys.is_empty());
    assert_eq!(served.withheld.len(), 3);
    assert_eq!(set.revoked_kids(&revoked(&["k2", "x"])), ["k2"]);
}
