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

mod clock;
mod model;
mod plan;
mod publication;
mod servable;

pub use clock::{ClockJump, ClockWatch, MAX_CLOCK_JUMPS, Now};
pub use model::*;
pub use plan::{Step, Working, plan, plan_with, steps};
pub use publication::{DEFAULT_REMOVAL_DEADLINE, PublicationGate};

#[cfg(test)]
pub(crate) mod tests;
