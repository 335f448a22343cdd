//! Each step of the planner on its own, over a working set built by hand.
//! The rules they make up together are tested in `lifecycle/tests.rs`.

use super::*;
use crate::keys::lifecycle::tests::{Counter, TestKey, policy, secs, t};

/// A key `kid` in `state`, made at `created` and activating at `activates`;
/// a retired key retired at `activates + 100`.
fn key(kid: &str, state: KeyState, created: i64, activates: i64) -> ManagedKey<TestKey> {
    ManagedKey {
        key: TestKey::new(kid, policy().params),
        state,
        created_at: t(created),
        activates_at: t(activates),
        retired_at: (state == KeyState::Retired).then(|| t(activates + 100)),
        prune_after: None,
        reason: Some(RotationReason::Scheduled),
        max_token_ttl: secs(30),
    }
}

fn set(keys: Vec<ManagedKey<TestKey>>) -> KeySet<TestKey> {
    KeySet {
        keys,
        ..KeySet::default()
    }
}

fn kids(w: &Working<'_, TestKey, Counter>) -> Vec<(String, KeyState)> {
    w.set
        .keys
        .iter()
        .map(|k| (k.kid().to_owned(), k.state))
        .collect()
}

/// The set's kids and states, the events, the deferral and whether a fresh
/// signer was asked for, after one step.
type After = (
    Vec<(String, KeyState)>,
    Vec<LifecycleEvent>,
    Option<Deferral>,
    bool,
);

/// Runs `step` alone over `keys` at `now`.
fn run(
    policy: &Policy,
    keys: Vec<ManagedKey<TestKey>>,
    now: i64,
    source: &mut Counter,
    step: Step<TestKey, Counter>,
) -> After {
    let mut w = Working::new(policy, set(keys), t(now).into(), source);
    step(&mut w).unwrap();
    (
        kids(&w),
        w.events.clone(),
        w.deferred.clone(),
        w.fresh_signer,
    )
}

use KeyState::{Active, Pending, Retired};

#[test]
fn revoke_removes_a_revoked_retired_key_and_keeps_the_signer() {
    let mut p = policy();
    p.revoked.insert("r".into());
    let keys = vec![key("a", Active, 0, 0), key("r", Retired, 0, 0)];
    let (kids, events, _, fresh) = run(&p, keys, 50, &mut Counter::default(), revoke);
    assert_eq!(kids, vec![("a".into(), Active)]);
    assert_eq!(
        events,
        vec![LifecycleEvent::Revoked {
            kid: "r".into(),
            was: Retired
        }]
    );
    assert!(!fresh, "a retired key's revocation needs no fresh signer");
}

#[test]
fn revoke_of_the_active_key_discards_the_pending_one_and_asks_for_a_fresh_signer() {
    let mut p = policy();
    p.revoked.insert("a".into());
    let keys = vec![key("n", Pending, 90, 100), key("a", Active, 0, 0)];
    let (kids, events, _, fresh) = run(&p, keys, 95, &mut Counter::default(), revoke);
    assert!(kids.is_empty(), "{kids:?}");
    assert!(fresh);
    assert!(matches!(&events[0], LifecycleEvent::Revoked { kid, was: Active } if kid == "a"));
    assert!(matches!(&events[1], LifecycleEvent::Discarded { kid, .. } if kid == "n"));
}

#[test]
fn revoke_with_rotate_on_revoke_retires_the_signer() {
    let mut p = policy();
    p.revoked.insert("r".into());
    p.rotate_on_revoke = true;
    let keys = vec![key("a", Active, 0, 0), key("r", Retired, 0, 0)];
    let (kids, events, _, fresh) = run(&p, keys, 50, &mut Counter::default(), revoke);
    assert_eq!(kids, vec![("a".into(), Retired)]);
    assert!(fresh);
    assert!(matches!(&events[1], LifecycleEvent::Retired { kid, .. } if kid == "a"));
}

#[test]
fn prune_removes_a_retired_key_only_after_ttl_skew_and_grace() {
    let p = policy(); // ttl 30 + skew 5 + grace 0; "r" retired at t(100)
    let keys = || vec![key("a", Active, 100, 100), key("r", Retired, 0, 0)];
    let (kids, events, _, _) = run(&p, keys(), 134, &mut Counter::default(), prune);
    assert_eq!(kids.len(), 2, "pruned before retiredAt + ttl + skew");
    assert!(events.is_empty());
    let (kids, events, _, _) = run(&p, keys(), 135, &mut Counter::default(), prune);
    assert_eq!(kids, vec![("a".into(), Active)]);
    assert_eq!(events, vec![LifecycleEvent::Pruned { kid: "r".into() }]);
}

#[test]
fn ensure_signer_makes_the_first_key_active_at_once_and_says_why() {
    let p = policy();
    let mut source = Counter::default();
    let (kids, events, _, _) = run(&p, vec![], 0, &mut source, ensure_signer);
    assert_eq!(kids, vec![("k1".into(), Active)]);
    assert_eq!(
        events,
        vec![LifecycleEvent::Created {
            kid: "k1".into(),
            state: Active,
            reason: RotationReason::Initial
        }]
    );
    // With a signer there is nothing to make.
    let (_, events, _, _) = run(
        &p,
        vec![key("a", Active, 0, 0)],
        0,
        &mut source,
        ensure_signer,
    );
    assert!(events.is_empty());
}

#[test]
fn ensure_signer_only_widens_the_active_keys_token_lifetime() {
    let mut p = policy();
    p.max_token_ttl = secs(10);
    let mut source = Counter::default();
    let mut w = Working::new(
        &p,
        set(vec![key("a", Active, 0, 0)]),
        t(0).into(),
        &mut source,
    );
    ensure_signer(&mut w).unwrap();
    assert_eq!(w.set.keys[0].max_token_ttl, secs(30), "lowered");
    p.max_token_ttl = secs(60);
    let mut w = Working::new(
        &p,
        set(vec![key("a", Active, 0, 0)]),
        t(0).into(),
        &mut source,
    );
    ensure_signer(&mut w).unwrap();
    assert_eq!(w.set.keys[0].max_token_ttl, secs(60));
}

#[test]
fn ensure_signer_fails_without_leaving_a_half_made_key() {
    let p = policy();
    let mut source = Counter {
        failing: true,
        ..Counter::default()
    };
    let mut w = Working::new(&p, set(vec![]), t(0).into(), &mut source);
    assert!(matches!(
        ensure_signer(&mut w),
        Err(PlanError::Generate { .. })
    ));
    assert!(w.set.keys.is_empty());
}

#[test]
fn replace_stale_pending_discards_only_a_key_of_old_parameters() {
    let mut p = policy();
    let keys = || vec![key("n", Pending, 80, 100), key("a", Active, 0, 0)];
    let (kids, events, _, _) = run(
        &p,
        keys(),
        85,
        &mut Counter::default(),
        replace_stale_pending,
    );
    assert_eq!(kids.len(), 2);
    assert!(events.is_empty());
    p.params = KeyParams::new(crate::keys::alg::Algorithm::EdDSA);
    let (kids, events, _, _) = run(
        &p,
        keys(),
        85,
        &mut Counter::default(),
        replace_stale_pending,
    );
    assert_eq!(kids, vec![("a".into(), Active)]);
    assert!(matches!(&events[0], LifecycleEvent::Discarded { kid, .. } if kid == "n"));
}

#[test]
fn accept_rotation_request_takes_a_new_value_once_and_discards_the_waiting_key() {
    let mut p = policy();
    p.rotation_request = Some("r1".into());
    let mut source = Counter::default();
    let mut w = Working::new(
        &p,
        set(vec![key("n", Pending, 80, 100), key("a", Active, 0, 0)]),
        t(85).into(),
        &mut source,
    );
    accept_rotation_request(&mut w).unwrap();
    assert!(w.set.rotation_request_outstanding);
    assert_eq!(w.set.last_rotation_request.as_deref(), Some("r1"));
    assert_eq!(w.set.keys.len(), 1);
    // The same value again is not a new request.
    w.set.rotation_request_outstanding = false;
    w.events.clear();
    accept_rotation_request(&mut w).unwrap();
    assert!(!w.set.rotation_request_outstanding);
    assert!(w.events.is_empty());
}

#[test]
fn pre_publish_makes_the_next_key_publish_ahead_before_the_rotation() {
    let p = policy(); // rotate every 100 s, publish 20 s ahead
    let active = || vec![key("a", Active, 0, 0)];
    let (kids, events, _, _) = run(&p, active(), 79, &mut Counter::default(), pre_publish);
    assert_eq!(kids.len(), 1, "too early");
    assert!(events.is_empty());
    let mut source = Counter::default();
    let mut w = Working::new(&p, set(active()), t(80).into(), &mut source);
    pre_publish(&mut w).unwrap();
    let pending = w.set.pending().expect("a pending key");
    assert_eq!(pending.activates_at, t(100));
    assert_eq!(pending.created_at, t(80));
}

#[test]
fn pre_publish_defers_with_a_reason_when_the_set_is_full() {
    let mut p = policy();
    p.max_keys = 2;
    let keys = vec![key("a", Active, 0, 0), key("r", Retired, 0, 0)];
    let (kids, events, deferred, _) = run(&p, keys, 80, &mut Counter::default(), pre_publish);
    assert_eq!(kids.len(), 2);
    assert!(events.is_empty());
    assert_eq!(
        deferred.map(|d| d.reason),
        Some(crate::reasons::MAX_KEYS_REACHED)
    );
}

#[test]
fn activate_waits_for_publish_ahead_then_retires_the_old_signer() {
    let p = policy();
    let keys = || vec![key("n", Pending, 90, 100), key("a", Active, 0, 0)];
    // Due at 100 by schedule, but published only since 90: signs at 110.
    let (kids, events, _, _) = run(&p, keys(), 109, &mut Counter::default(), activate);
    assert_eq!(kids[0], ("n".into(), Pending));
    assert!(events.is_empty());
    let (kids, events, _, _) = run(&p, keys(), 110, &mut Counter::default(), activate);
    assert_eq!(kids, vec![("n".into(), Active), ("a".into(), Retired)]);
    assert!(matches!(&events[0], LifecycleEvent::Retired { kid, .. } if kid == "a"));
    assert!(matches!(&events[1], LifecycleEvent::Activated { kid, .. } if kid == "n"));
}
