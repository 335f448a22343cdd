//! Who may write: the [`WriteGate`] every write checks first.
//!
//! Without leader election the gate is always open. With it, holding the
//! Lease is not enough: kube-lease-manager keeps saying "leader" while its
//! renewals fail, yet another replica takes over once `renewTime +
//! leaseDuration` has passed. So the gate also keeps a local deadline, the
//! last renewal this replica saw land in the Lease plus the lease duration
//! minus a margin, and refuses every write after it. The deadline moves on
//! only when a renewal is read back from the API server, so an unreachable
//! API server, a renewal refused (403, conflict) or a stalled process all
//! close the gate in time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The part of the lease duration kept free before the deadline, so that a
/// write started just before it lands before another replica can take over.
/// A quarter of the lease (1 s for a 4 s lease, 3.75 s for the default 15 s).
pub fn margin(lease: Duration) -> Duration {
    lease / 4
}

/// How long after its last renewal a leader renews again: half the lease,
/// which leaves a renewal half a lease to land before the deadline.
pub fn renew_grace_seconds(lease_seconds: u64) -> u64 {
    (lease_seconds / 2).max(1)
}

/// The local (monotonic) instant after which no write may start, given a
/// renewal recorded at `renewed_at` (the `renewTime` this replica wrote, by
/// its own clock) of a lease of `lease`; None when it has already passed.
///
/// A `renewed_at` in the future (the wall clock stepped back) counts as now,
/// so a clock step never extends the deadline beyond one lease.
pub fn local_deadline(
    renewed_at: Timestamp,
    lease: Duration,
    now: Timestamp,
    now_mono: Instant,
) -> Option<Instant> {
    let valid = lease.saturating_sub(margin(lease));
    let age: Duration = now
        .duration_since(renewed_at)
        .try_into()
        .unwrap_or(Duration::ZERO);
    let left = valid.checked_sub(age)?;
    (!left.is_zero()).then(|| now_mono + left)
}

/// The deadline a Lease read back from the API server grants `identity`:
/// None unless it holds the Lease with a renewal time.
pub fn deadline_from_lease(
    lease: &Lease,
    identity: &str,
    default_duration: Duration,
    now: Timestamp,
    now_mono: Instant,
) -> Option<Instant> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(default_duration);
    local_deadline(renewed, duration, now, now_mono)
}

/// Whether writes may start now. See the module docs.
#[derive(Debug)]
pub struct WriteGate {
    leading: AtomicBool,
    /// With leader election: the local deadline (None: none granted).
    deadline: Option<watch::Sender<Option<Instant>>>,
}

// === impl WriteGate ===

impl WriteGate {
    /// A gate for a replica without leader election: open once leading.
    pub fn unelected() -> WriteGate {
        WriteGate {
            leading: AtomicBool::new(false),
            deadline: None,
        }
    }

    /// A gate for a leader-elected replica: open while leading and before
    /// the deadline of its last renewal.
    pub fn elected() -> WriteGate {
        WriteGate {
            leading: AtomicBool::new(false),
            deadline: Some(watch::channel(None).0),
        }
    }

    /// Whether a write may start now.
    pub fn may_write(&self) -> bool {
        self.leading.load(Ordering::SeqCst) && self.fresh(Instant::now())
    }

    fn fresh(&self, now: Instant) -> bool {
        match &self.deadline {
            None => true,
            Some(d) => d.borrow().is_some_and(|d| now < d),
        }
    }

    /// Marks this replica as leading (or not).
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    /// Records the deadline of a renewal read back from the API server
    /// (None: the Lease says this replica does not hold it).
    pub fn renewed(&self, deadline: Option<Instant>) {
        if let Some(tx) = &self.deadline {
            tx.send_if_modified(|d| {
                let changed = *d != deadline;
                *d = deadline;
                changed
            });
        }
    }

    /// Resolves once the deadline lies in the future (at once without
    /// leader election).
    pub async fn wait_fresh(&self) {
        let Some(tx) = &self.deadline else { return };
        let mut rx = tx.subscribe();
        loop {
            if self.fresh(Instant::now()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Resolves when the deadline passes (never without leader election).
    pub async fn expired(&self) {
        let Some(tx) = &self.deadline else {
            return std::future::pending().await;
        };
        let mut rx = tx.subscribe();
        loop {
            let deadline = *rx.borrow_and_update();
            let Some(deadline) = deadline.filter(|d| Instant::now() < *d) else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Reads the Lease back every `lease/8` (between 250 ms and 1 s) and moves
/// the gate's deadline with each renewal of `identity` that landed. Runs
/// until dropped.
pub async fn track_renewals(
    leases: Api<Lease>,
    name: String,
    identity: String,
    lease: Duration,
    gate: std::sync::Arc<WriteGate>,
) {
    let every = (lease / 8).clamp(Duration::from_millis(250), Duration::from_secs(1));
    let mut holding = false;
    loop {
        match tokio::time::timeout(every * 4, leases.get_opt(&name)).await {
            Ok(Ok(found)) => {
                let deadline = found.as_ref().and_then(|l| {
                    deadline_from_lease(l, &identity, lease, Timestamp::now(), Instant::now())
                });
                if deadline.is_some() != holding {
                    holding = deadline.is_some();
                    info!(holding, "Lease renewal seen by this replica");
                }
                gate.renewed(deadline);
            }
            // The deadline stays where it is and runs out on its own.
            Ok(Err(e)) => debug!(error = %e, "reading the Lease back failed"),
            Err(_) => debug!("reading the Lease back timed out"),
        }
        if holding && !gate.fresh(Instant::now()) {
            warn!("no Lease renewal landed in time; writes stop until one does");
            holding = false;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(4);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_renewal_grants_the_lease_minus_the_margin_from_when_it_was_made() {
        let mono = Instant::now();
        // Renewed 1 s ago: 4 s - 1 s margin - 1 s elapsed = 2 s left.
        assert_eq!(
            local_deadline(at(0), LEASE, at(1), mono),
            Some(mono + Duration::from_secs(2))
        );
        // Just renewed: 3 s left.
        assert_eq!(
            local_deadline(at(0), LEASE, at(0), mono),
            Some(mono + Duration::from_secs(3))
        );
    }

    #[test]
    fn an_old_renewal_grants_nothing() {
        let mono = Instant::now();
        assert_eq!(local_deadline(at(0), LEASE, at(3), mono), None);
        assert_eq!(local_deadline(at(0), LEASE, at(60), mono), None);
    }

    #[test]
    fn a_renewal_in_the_future_grants_no_more_than_one_lease() {
        let mono = Instant::now();
        assert_eq!(
            local_deadline(at(3600), LEASE, at(0), mono),
            Some(mono + Duration::from_secs(3))
        );
    }

    #[test]
    fn the_margin_leaves_a_renewal_half_a_lease_to_land() {
        for secs in [2u64, 4, 15, 300] {
            let lease = Duration::from_secs(secs);
            let renew_after = lease - Duration::from_secs(renew_grace_seconds(secs));
            let deadline_after = lease - margin(lease);
            assert!(
                renew_after < deadline_after,
                "lease {secs}s: renewal at {renew_after:?} must come before the deadline {deadline_after:?}"
            );
            assert!(renew_grace_seconds(secs) < secs);
        }
    }

    fn lease(holder: &str, renewed: Timestamp, duration: i32) -> Lease {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "l"},
            "spec": {
                "holderIdentity": holder,
                "renewTime": renewed,
                "leaseDurationSeconds": duration,
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_our_own_renewal_counts_and_its_recorded_duration_wins() {
        let mono = Instant::now();
        let ours = lease("a", at(0), 10);
        assert_eq!(
            deadline_from_lease(&ours, "a", LEASE, at(0), mono),
            Some(mono + Duration::from_millis(7500))
        );
        assert_eq!(deadline_from_lease(&ours, "b", LEASE, at(0), mono), None);
        let unheld: Lease =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "l"}, "spec": {}}))
                .unwrap();
        assert_eq!(deadline_from_lease(&unheld, "a", LEASE, at(0), mono), None);
    }

    #[tokio::test]
    async fn the_gate_closes_at_the_deadline_and_opens_on_a_fresh_renewal() {
        let gate = WriteGate::elected();
        gate.set_leading(true);
        assert!(!gate.may_write(), "no renewal seen yet");
        let deadline = Instant::now() + Duration::from_millis(200);
        gate.renewed(Some(deadline));
        assert!(gate.may_write());
        gate.expired().await;
        assert!(Instant::now() >= deadline, "expired before the deadline");
        assert!(!gate.may_write(), "no write starts after the deadline");
        // A renewal that moves the deadline on re-opens it.
        let waiter = gate.wait_fresh();
        gate.renewed(Some(Instant::now() + Duration::from_secs(60)));
        waiter.await;
        assert!(gate.may_write());
        // The Lease held by someone else closes it at once.
        gate.renewed(None);
        assert!(!gate.may_write());
        gate.renewed(Some(Instant::now() + Duration::from_secs(60)));
        gate.set_leading(false);
        assert!(!gate.may_write());
    }

    #[test]
    fn without_leader_election_the_gate_follows_leading_only() {
        let gate = WriteGate::unelected();
        assert!(!gate.may_write());
        gate.set_leading(true);
        assert!(gate.may_write());
    }
}
