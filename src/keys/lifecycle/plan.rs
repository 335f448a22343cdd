//! The planner as a list of named steps over one working set.
//!
//! [`plan`] builds a [`Working`] set from (policy, stored set, now, key
//! source), runs every step of [`steps`] over it in order, and reads the
//! result. Each step is a small function that looks at the working set and
//! the policy, changes the set, and records what it did as
//! [`LifecycleEvent`]s; each is unit-tested on its own below, and the
//! property test in `lifecycle/tests.rs` checks the contract over all of them
//! together. A new rule (a gate on publication, a key provider's needs)
//! becomes a step of its own, placed where it must run.
//!
//! The order matters and is the contract's: a revocation is applied before
//! anything else looks at the set; pruning frees room before a new key is
//! counted against `maxKeys`; a signer is ensured before the schedule reads
//! the active key; a stale pending key and a superseded one are discarded
//! before pre-publication decides whether one is needed; activation comes
//! last, so a key made in this pass never signs in it (unless
//! `publishAhead` is zero).

use jiff::Timestamp;

use super::{
    Deferral, KeySet, KeySource, KeyState, LifecycleEvent, LifecycleKey, ManagedKey, Now, Plan,
    PlanError, Policy, RotationReason, after, before, retention,
};
use crate::keys::alg::KeyParams;

/// Plans one step of the lifecycle at `now`. See the module docs of
/// [`super`] for the rules, and [`steps`] for their order.
///
/// Running it again at the same `now` with its own output yields no events;
/// running it before `next_due` yields no events either, so a steady state
/// makes no writes.
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
    current.check()?;
    let mut w = Working::new(policy, current.clone(), now.into(), source);
    for (_name, step) in steps::<K, S>() {
        step(&mut w)?;
    }
    Ok(w.finish())
}

/// One named step of the planner.
pub type Step<K, S> = fn(&mut Working<'_, K, S>) -> Result<(), PlanError>;

/// The planner's steps, by name, in the order they run.
pub fn steps<K: LifecycleKey, S: KeySource<K>>() -> [(&'static str, Step<K, S>); 7] {
    [
        ("revoke", revoke),
        ("prune", prune),
        ("ensure_signer", ensure_signer),
        ("replace_stale_pending", replace_stale_pending),
        ("accept_rotation_request", accept_rotation_request),
        ("pre_publish", pre_publish),
        ("activate", activate),
    ]
}

/// What every step reads and changes: the policy, the clock, the set being
/// planned, what happened so far, and the key source.
pub struct Working<'a, K, S> {
    /// The policy being planned.
    pub policy: &'a Policy,
    /// The planner's clock, with the steps it saw.
    pub clock: Now,
    /// `clock.wall`.
    pub now: Timestamp,
    /// The set being planned.
    pub set: KeySet<K>,
    /// What happened so far, in order.
    pub events: Vec<LifecycleEvent>,
    /// A rotation that is due but cannot happen now.
    pub deferred: Option<Deferral>,
    /// A revocation in this pass calls for a fresh signer at once.
    pub fresh_signer: bool,
    source: &'a mut S,
}

impl<'a, K: LifecycleKey, S> Working<'a, K, S> {
    /// A working set over `set` at `clock`.
    pub fn new(policy: &'a Policy, set: KeySet<K>, clock: Now, source: &'a mut S) -> Self {
        Working {
            policy,
            now: clock.wall,
            clock,
            set,
            events: Vec::new(),
            deferred: None,
            fresh_signer: false,
            source,
        }
    }

    /// A key made now in `state` for `reason`, activating at `activates_at`,
    /// put first in the set (newest first).
    fn insert_new(
        &mut self,
        key: K,
        state: KeyState,
        reason: RotationReason,
        activates_at: Timestamp,
    ) {
        self.events.push(LifecycleEvent::Created {
            kid: key.kid().to_owned(),
            state,
            reason,
        });
        self.set.keys.insert(
            0,
            ManagedKey {
                key,
                state,
                created_at: self.now,
                activates_at,
                retired_at: None,
                prune_after: None,
                reason: Some(reason),
                max_token_ttl: self.policy.max_token_ttl,
            },
        );
    }

    /// Removes the pending key, if any, saying `why`.
    fn discard_pending(&mut self, why: &'static str) {
        if let Some(pos) = self
            .set
            .keys
            .iter()
            .position(|k| k.state == KeyState::Pending)
        {
            let k = self.set.keys.remove(pos);
            self.events.push(LifecycleEvent::Discarded {
                kid: k.kid().to_owned(),
                why,
            });
        }
    }

    /// Retires every active key except `keep`.
    fn retire_active_except(&mut self, keep: Option<&str>) {
        let (now, policy) = (self.now, self.policy);
        for k in self.set.keys.iter_mut() {
            if k.state == KeyState::Active && Some(k.kid()) != keep {
                self.events.push(retire(k, now, policy));
            }
        }
    }

    /// The plan this working set has come to.
    pub fn finish(self) -> Plan<K> {
        let next_due = next_due(self.policy, &self.set, &self.clock, self.deferred.is_some());
        Plan {
            keys: self.set,
            events: self.events,
            next_due,
            deferred: self.deferred,
        }
    }
}

impl<K: LifecycleKey, S: KeySource<K>> Working<'_, K, S> {
    /// A fresh key from the source.
    fn generate(&mut self, params: KeyParams) -> Result<K, PlanError> {
        self.source
            .generate(params)
            .map_err(|e| PlanError::Generate {
                params,
                source: Box::new(e),
            })
    }
}

/// Revocation: a revoked key leaves the set at once, whatever its state. A
/// fresh signer follows the revocation of the active key, and of any key
/// with `rotateOnRevoke` (its new kid makes refetching verifiers drop the
/// revoked key at once): the pending key, stored beside the compromised one
/// and never used, is discarded and the active key retires.
pub fn revoke<K: LifecycleKey, S>(w: &mut Working<'_, K, S>) -> Result<(), PlanError> {
    let policy = w.policy;
    let revoked = &policy.revoked;
    let mut active_revoked = false;
    let mut any_revoked = false;
    let events = &mut w.events;
    w.set.keys.retain(|k| {
        if !revoked.contains(k.kid()) {
            return true;
        }
        active_revoked |= k.state == KeyState::Active;
        any_revoked = true;
        events.push(LifecycleEvent::Revoked {
            kid: k.kid().to_owned(),
            was: k.state,
        });
        false
    });
    if any_revoked {
        w.set.last_revocation_time = Some(w.now);
    }
    w.fresh_signer = active_revoked || (any_revoked && policy.rotate_on_revoke);
    if w.fresh_signer {
        let why = if active_revoked {
            "the active key was revoked; the next key is generated afresh"
        } else {
            "a key was revoked with rotateOnRevoke; a fresh key signs at once"
        };
        // At most one pending key exists (invariant 5, checked on entry).
        w.discard_pending(why);
        w.retire_active_except(None);
    }
    Ok(())
}

/// Pruning: a retired key goes once no token it signed can be valid, under
/// the current policy's lifetime bound as well as the one it retired under,
/// read on the clock that computed it.
pub fn prune<K: LifecycleKey, S>(w: &mut Working<'_, K, S>) -> Result<(), PlanError> {
    let policy = w.policy;
    for k in w
        .set
        .keys
        .iter_mut()
        .filter(|k| k.state == KeyState::Retired)
    {
        let retired_at = k.retired_at.unwrap_or(k.activates_at);
        let due = after(retired_at, retention(k.max_token_ttl, policy))
            .max(k.prune_after.unwrap_or(Timestamp::MIN));
        if k.retired_at.is_none() || k.prune_after != Some(due) {
            k.retired_at = Some(retired_at);
            k.prune_after = Some(due);
        }
    }
    let (clock, now, events) = (&w.clock, w.now, &mut w.events);
    w.set.keys.retain(|k| {
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
    Ok(())
}

/// There is always exactly one signer: the first key of a policy and the
/// replacement of a revoked one sign at once (the exceptions to
/// pre-publication). The active key's token-lifetime bound only grows, so a
/// lowered `maxTokenTTL` never shortens the retention of tokens it signed.
pub fn ensure_signer<K: LifecycleKey, S: KeySource<K>>(
    w: &mut Working<'_, K, S>,
) -> Result<(), PlanError> {
    if w.set.active().is_none() {
        let reason = if w.fresh_signer {
            RotationReason::Revoked
        } else {
            RotationReason::Initial
        };
        let key = w.generate(w.policy.params)?;
        w.insert_new(key, KeyState::Active, reason, w.now);
        w.set.last_rotation_time = Some(w.now);
        w.set.last_rotation_reason = Some(reason);
        // A fresh signer satisfies any rotation request standing now (say an
        // annotation already on a new policy): it must not rotate again at once.
        w.set.last_rotation_request = w.policy.rotation_request.clone();
        w.set.rotation_request_outstanding = false;
    }
    let ttl = w.policy.max_token_ttl;
    for k in w
        .set
        .keys
        .iter_mut()
        .filter(|k| k.state == KeyState::Active)
    {
        k.max_token_ttl = k.max_token_ttl.max(ttl);
    }
    Ok(())
}

/// A spec change of algorithm or key size replaces a pending key that never
/// signed; the next step that needs one makes it with the new parameters.
pub fn replace_stale_pending<K: LifecycleKey, S>(
    w: &mut Working<'_, K, S>,
) -> Result<(), PlanError> {
    let params = w.policy.params;
    if w.set.pending().is_some_and(|k| k.key.params() != params) {
        w.discard_pending("the policy's algorithm or key size changed");
    }
    Ok(())
}

/// A new manual request is accepted now and served only by a key made from
/// now on, so a key already waiting (made before it) gives way. It stays
/// outstanding, persisted, until a key made after it signs.
pub fn accept_rotation_request<K: LifecycleKey, S>(
    w: &mut Working<'_, K, S>,
) -> Result<(), PlanError> {
    if let Some(request) = &w.policy.rotation_request
        && w.set.last_rotation_request.as_ref() != Some(request)
    {
        w.set.last_rotation_request = Some(request.clone());
        w.set.rotation_request_outstanding = true;
        w.discard_pending(
            "a manual rotation was requested; it is served by a key made after the request",
        );
    }
    Ok(())
}

/// Pre-publication of the next key: made `publishAhead` before the active
/// key's rotation is due (at once for an outstanding manual request), and
/// deferred with a reason when the set would exceed `maxKeys`.
pub fn pre_publish<K: LifecycleKey, S: KeySource<K>>(
    w: &mut Working<'_, K, S>,
) -> Result<(), PlanError> {
    let policy = w.policy;
    let now = w.now;
    let manual = w.set.rotation_request_outstanding;
    let Some(active) = w.set.active() else {
        // Not reached: ensure_signer runs first and leaves one.
        return Ok(());
    };
    let scheduled_at = after(active.activates_at, policy.rotation_interval);
    let active_params = active.key.params();

    if let Some(pending) = w.set.keys.iter_mut().find(|k| k.state == KeyState::Pending) {
        // Made while the request was outstanding: it serves the request.
        if manual {
            let earliest = after(pending.created_at, policy.publish_ahead).max(now);
            pending.activates_at = pending.activates_at.min(earliest);
            pending.reason = Some(RotationReason::Manual);
        }
        return Ok(());
    }
    if !manual && now < before(scheduled_at, policy.publish_ahead) {
        return Ok(());
    }
    if w.set.keys.len() + 1 > policy.max_keys {
        w.deferred = Some(Deferral {
            reason: crate::reasons::MAX_KEYS_REACHED,
            message: format!(
                "rotation is due but the set already holds {} keys (maxKeys {}); it waits until a retired key can be pruned. Raise maxKeys or lower maxTokenTTL to rotate on time",
                w.set.keys.len(),
                policy.max_keys
            ),
        });
        return Ok(());
    }
    let reason = if manual {
        RotationReason::Manual
    } else if active_params != policy.params {
        RotationReason::AlgorithmChange
    } else {
        RotationReason::Scheduled
    };
    let target = if manual { now } else { scheduled_at };
    let key = w.generate(policy.params)?;
    w.insert_new(
        key,
        KeyState::Pending,
        reason,
        target.max(after(now, policy.publish_ahead)),
    );
    Ok(())
}

/// Activation: the pending key signs once it is due and has been published
/// for `publishAhead` (re-checked here in case `publishAhead` grew since);
/// the active key retires and stays published for its tokens.
pub fn activate<K: LifecycleKey, S>(w: &mut Working<'_, K, S>) -> Result<(), PlanError> {
    let policy = w.policy;
    let now = w.now;
    let Some(pos) = w.set.keys.iter().position(|k| k.state == KeyState::Pending) else {
        return Ok(());
    };
    let pending = &mut w.set.keys[pos];
    let published_long_enough = after(pending.created_at, policy.publish_ahead);
    if pending.activates_at < published_long_enough {
        pending.activates_at = published_long_enough;
    }
    if now
        < w.clock
            .on_current_clock(pending.activates_at, pending.created_at)
    {
        return Ok(());
    }
    // Keep the schedule's rhythm when woken a little late; after a longer
    // outage restart it from now (catch up once), so the next
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
    w.retire_active_except(Some(&kid));
    w.events.push(LifecycleEvent::Activated { kid, reason });
    // Every pending key was made after the outstanding request.
    w.set.rotation_request_outstanding = false;
    w.set.last_rotation_time = Some(now);
    w.set.last_rotation_reason = Some(reason);
    // Newest first, and the signer leads when nothing is pending.
    let key = w.set.keys.remove(pos);
    w.set.keys.insert(0, key);
    Ok(())
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

/// The latest time the planner must run again: the next prune, the pending
/// key's activation, or the next pre-publication (unless deferred).
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
mod tests;
