//! Bounded staleness for replicas that sign but do not write (a signer
//! follower): how long one may keep signing with the set it last read.
//!
//! Only the leader changes the stored set. A follower that cannot read it
//! (an unreadable or damaged state directory, a shared filesystem that went
//! away) does not see the leader retire its active key, and would keep
//! signing with it. A key retired at `R` is pruned no earlier than
//! `R + maxTokenTTL + clockSkew + propagationGrace`
//! ([`lifecycle::Policy::propagation_grace`]), so a token signed by a follower
//! whose copy is at most `clockSkew + propagationGrace` old still expires
//! before its key leaves the published set. Past that bound
//! ([`bound`]) the follower stops signing, says so, and resumes once it has
//! read the stored set again. Pure: the caller passes the clock.

use std::time::{Duration, Instant};

use crate::keys::lifecycle;

/// How long a follower may sign with its last read of the stored set:
/// `clockSkew + propagationGrace` of the policy, and never less than three
/// intervals between reads (`poll`), so one slow read does not stop signing.
pub fn bound(policy: &lifecycle::Policy, poll: Duration) -> Duration {
    (policy.clock_skew + policy.propagation_grace).max(poll.saturating_mul(3))
}

/// Whether a follower's copy of the stored set may still sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Read within the bound (or never read: then nothing is served anyway).
    Fresh,
    /// Not read for `age`, longer than the bound: signing stops.
    Stale {
        /// Time since the last successful read.
        age: Duration,
    },
}

/// The freshness at `now` of a copy last read at `read_at`.
pub fn freshness(read_at: Option<Instant>, now: Instant, bound: Duration) -> Freshness {
    match read_at {
        Some(at) => {
            let age = now.saturating_duration_since(at);
            if age > bound {
                Freshness::Stale { age }
            } else {
                Freshness::Fresh
            }
        }
        None => Freshness::Fresh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(skew: u64, grace: u64) -> lifecycle::Policy {
        let p = crate::api::KeyRotationPolicySpec {
            clock_skew: crate::api::Duration::from(Duration::from_secs(skew)),
            ..Default::default()
        };
        lifecycle::Policy {
            propagation_grace: Duration::from_secs(grace),
            ..p.resolve(None).unwrap()
        }
    }

    #[test]
    fn the_bound_is_the_retention_margin_past_max_token_ttl() {
        let p = policy(60, 90);
        assert_eq!(bound(&p, Duration::from_secs(1)), Duration::from_secs(150));
        // Never shorter than three reads.
        let p = policy(0, 1);
        assert_eq!(bound(&p, Duration::from_secs(2)), Duration::from_secs(6));
    }

    #[test]
    fn a_copy_signs_up_to_the_bound_stops_past_it_and_resumes_after_a_read() {
        let t0 = Instant::now();
        let b = Duration::from_secs(150);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(freshness(Some(t0), at(0), b), Freshness::Fresh);
        assert_eq!(freshness(Some(t0), at(150), b), Freshness::Fresh);
        assert_eq!(
            freshness(Some(t0), at(151), b),
            Freshness::Stale {
                age: Duration::from_secs(151)
            }
        );
        // Read again: fresh at once.
        assert_eq!(freshness(Some(at(200)), at(200), b), Freshness::Fresh);
        // A clock reading before the read (another thread's Instant) is age 0.
        assert_eq!(freshness(Some(at(10)), at(5), b), Freshness::Fresh);
        // Never read: nothing is served, nothing to stop.
        assert_eq!(freshness(None, at(1000), b), Freshness::Fresh);
    }
}
