//! What a policy's status should say, computed purely from what the
//! reconciler observed. The reconciler patches status only when this differs
//! from the current one, so a steady state makes no writes.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::api::{
    KeyRotationPolicy, KeyRotationPolicyStatus, KeyStateName, KeyStatus, PublicationStatus,
    RotationReasonName,
};
use crate::engine::Problem;
use crate::keys::lifecycle::{KeySet, KeyState, LifecycleKey, Policy, RotationReason};
use crate::policy::PublicationSummary;
use crate::reasons;

/// Condition type: the key set is published and a key signs.
pub const READY: &str = "Ready";
/// Condition type: something needs the user's attention.
pub const DEGRADED: &str = "Degraded";

/// What the reconciler knows when it writes status.
pub struct Observed<'a, K> {
    /// `metadata.generation` of the policy.
    pub generation: Option<i64>,
    /// The key set as persisted (None when there is none, or it is unreadable).
    pub keys: Option<&'a KeySet<K>>,
    /// The resolved policy (None when the spec is invalid).
    pub policy: Option<&'a Policy>,
    /// What is wrong, if anything (with `keys: None`: nothing usable).
    pub problem: Option<Problem>,
    /// Name of the Secret.
    pub secret_name: String,
    /// Public JWKS URL, when the operator knows its base URL.
    pub jwks_uri: Option<String>,
    /// Warnings that leave the policy working: each is a condition of its
    /// own (type and reason the warning's reason, status `True`), absent
    /// when the warning does not apply.
    pub warnings: Vec<Problem>,
    /// `status.publication[]` as the publish step left it; `None` keeps
    /// what `prev` says (the step did not run this pass).
    pub publication: Option<Vec<PublicationStatus>>,
}

/// One `status.publication[]` entry from what the publish step recorded,
/// with status times at second precision (as they are stored).
pub fn publication_status(copy: &PublicationSummary) -> PublicationStatus {
    PublicationStatus {
        url: copy.url.clone(),
        published_digest: copy.published_digest.clone(),
        kids: copy.kids.clone(),
        last_published_time: copy.last_published_time.map(time),
        last_verified_time: copy.last_verified_time.map(time),
        error: copy.error.clone(),
    }
}

fn state_name(s: KeyState) -> KeyStateName {
    match s {
        KeyState::Pending => KeyStateName::Pending,
        KeyState::Active => KeyStateName::Active,
        KeyState::Retired => KeyStateName::Retired,
    }
}

/// The status name of a rotation reason.
pub fn reason_name(r: RotationReason) -> RotationReasonName {
    match r {
        RotationReason::Initial => RotationReasonName::Initial,
        RotationReason::Scheduled => RotationReasonName::Scheduled,
        RotationReason::Manual => RotationReasonName::Manual,
        RotationReason::Revoked => RotationReasonName::Revoked,
        RotationReason::AlgorithmChange => RotationReasonName::AlgorithmChange,
    }
}

fn time(t: Timestamp) -> Time {
    // Status times have second precision (metav1.Time); truncate so that
    // comparing a computed status with the stored one is exact.
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

fn condition(
    prev: Option<&KeyRotationPolicyStatus>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    // The transition time only moves when the status flips.
    let last_transition_time = prev
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// The `Ready` and `Degraded` conditions for what was observed.
fn conditions<K: LifecycleKey>(
    prev: Option<&KeyRotationPolicyStatus>,
    obs: &Observed<'_, K>,
    now: Timestamp,
) -> Vec<Condition> {
    let keys = obs.keys;
    // A problem that leaves no usable key set comes without keys; one that
    // leaves them working (a deferred rotation) leaves the policy Ready.
    let ready = keys.and_then(|k| k.active()).is_some();
    let (ready_reason, ready_message) = match (&obs.problem, ready) {
        (Some(p), false) => (p.reason.clone(), p.message.clone()),
        (_, true) => (
            "KeySetPublished".to_owned(),
            format!(
                "key {} signs; {} key(s) published",
                keys.and_then(|k| k.active())
                    .map(|a| a.kid())
                    .unwrap_or_default(),
                keys.map(|k| k.keys.len()).unwrap_or_default()
            ),
        ),
        (None, false) => (reasons::NO_KEY_SET.to_owned(), "no key set yet".to_owned()),
    };
    let (degraded_reason, degraded_message) = match &obs.problem {
        Some(p) => (p.reason.clone(), p.message.clone()),
        None => (
            "AsExpected".to_owned(),
            "nothing needs attention".to_owned(),
        ),
    };
    let mut out = vec![
        condition(
            prev,
            READY,
            ready,
            &ready_reason,
            ready_message,
            obs.generation,
            now,
        ),
        condition(
            prev,
            DEGRADED,
            obs.problem.is_some(),
            &degraded_reason,
            degraded_message,
            obs.generation,
            now,
        ),
    ];
    out.extend(obs.warnings.iter().map(|w| {
        condition(
            prev,
            &w.reason,
            true,
            &w.reason,
            w.message.clone(),
            obs.generation,
            now,
        )
    }));
    out
}

/// The warnings of `status` that `prev` did not have yet (each deserves a
/// Warning Event, once).
pub fn new_warnings<'a>(
    prev: Option<&KeyRotationPolicyStatus>,
    status: &'a KeyRotationPolicyStatus,
) -> impl Iterator<Item = &'a Condition> {
    status
        .conditions
        .iter()
        .filter(|c| c.type_ != READY && c.type_ != DEGRADED)
        .filter(move |c| !prev.is_some_and(|p| p.conditions.iter().any(|old| old.type_ == c.type_)))
}

/// The status the policy should have. `prev` is the current status (its
/// condition transition times are kept when nothing flipped, and the last
/// handled rotation request is carried over when the key set is unreadable).
pub fn desired_status<K: LifecycleKey>(
    prev: Option<&KeyRotationPolicyStatus>,
    obs: Observed<'_, K>,
    now: Timestamp,
) -> KeyRotationPolicyStatus {
    let keys = obs.keys;
    let conditions = conditions(prev, &obs, now);
    let mut status = KeyRotationPolicyStatus {
        observed_generation: obs.generation,
        conditions,
        secret_name: Some(obs.secret_name),
        jwks_uri: obs.jwks_uri,
        publication: obs
            .publication
            .unwrap_or_else(|| prev.map(|p| p.publication.clone()).unwrap_or_default()),
        ..Default::default()
    };
    match keys {
        Some(set) => {
            status.active_key_id = set.active().map(|k| k.kid().to_owned());
            status.next_key_id = set.pending().map(|k| k.kid().to_owned());
            status.keys = set
                .keys
                .iter()
                .map(|k| KeyStatus {
                    kid: k.kid().to_owned(),
                    alg: k.key.params().alg,
                    state: state_name(k.state),
                    created_at: time(k.created_at),
                    activates_at: time(k.activates_at),
                    retired_at: k.retired_at.map(time),
                    prune_after: k.prune_after.map(time),
                })
                .collect();
            status.key_count = Some(set.keys.len() as u32);
            status.last_rotation_time = set.last_rotation_time.map(time);
            status.last_rotation_reason = set.last_rotation_reason.map(reason_name);
            status.last_rotation_request = set.last_rotation_request.clone();
            status.last_revocation_time = set.last_revocation_time.map(time);
            status.revocation_exposure_until = obs
                .policy
                .and_then(|p| set.revocation_exposure_until(p))
                .map(time);
            status.next_rotation_time =
                obs.policy.and_then(|p| set.next_rotation_time(p)).map(time);
        }
        None => {
            // Unreadable or absent: keep what was last known about the keys
            // rather than blanking it, so `kubectl get` still tells the story.
            if let Some(prev) = prev {
                status.active_key_id = prev.active_key_id.clone();
                status.next_key_id = prev.next_key_id.clone();
                status.keys = prev.keys.clone();
                status.key_count = prev.key_count;
                status.last_rotation_time = prev.last_rotation_time.clone();
                status.last_rotation_reason = prev.last_rotation_reason;
                status.last_rotation_request = prev.last_rotation_request.clone();
                status.last_revocation_time = prev.last_revocation_time.clone();
                status.revocation_exposure_until = prev.revocation_exposure_until.clone();
                status.next_rotation_time = prev.next_rotation_time.clone();
            }
        }
    }
    status
}

/// The statuses this replica wrote, each remembered until the policy watch
/// delivers a newer object.
///
/// A status write triggers further reconciles (the Secret written just
/// before it, the status change itself), and the first of them often starts
/// before the watch has delivered the write: the policy it is handed still
/// has the old status, so without this it would write the same status again
/// (with a later `lastTransitionTime`, a real write that triggers yet another
/// reconcile). At 1,000 policies that was ~830 of 1,830 status writes.
///
/// An entry lives until the policy's next reconcile (which the write itself
/// triggers); one for a policy deleted before that stays, a few hundred bytes.
#[derive(Debug, Default)]
pub struct WrittenStatus {
    // By policy uid: (resourceVersion the status was written over, status).
    written: Mutex<HashMap<String, (String, KeyRotationPolicyStatus)>>,
}

// === impl WrittenStatus ===

impl WrittenStatus {
    /// The policy's current status as far as this replica knows: the one it
    /// wrote if `policy` is still the object that write replaced, otherwise
    /// the policy's own (and the remembered one is forgotten).
    pub fn current(&self, policy: &KeyRotationPolicy) -> Option<KeyRotationPolicyStatus> {
        let (Some(uid), Some(rv)) = (policy.uid(), policy.resource_version()) else {
            return policy.status.clone();
        };
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        match written.get(&uid) {
            Some((over, status)) if *over == rv => Some(status.clone()),
            Some(_) => {
                written.remove(&uid);
                policy.status.clone()
            }
            None => policy.status.clone(),
        }
    }

    /// Remembers that `status` was written over `policy` (as it was read).
    pub fn record(&self, policy: &KeyRotationPolicy, status: KeyRotationPolicyStatus) {
        if let (Some(uid), Some(rv)) = (policy.uid(), policy.resource_version()) {
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            written.insert(uid, (rv, status));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::keys::alg::{Algorithm, KeyParams};
    use crate::keys::lifecycle::plan;
    use crate::keys::lifecycle::tests::{Counter, TestKey};

    fn t(n: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + n).unwrap()
    }

    fn policy() -> Policy {
        Policy {
            params: KeyParams::new(Algorithm::ES256),
            rotation_interval: Duration::from_secs(100),
            publish_ahead: Duration::from_secs(20),
            max_token_ttl: Duration::from_secs(30),
            clock_skew: Duration::from_secs(5),
            max_keys: 10,
            revoked: BTreeSet::new(),
            rotation_request: None,
            propagation_grace: Duration::ZERO,
            rotate_on_revoke: false,
            verifier_cache: Duration::from_secs(5),
        }
    }

    fn keys_at(n: i64) -> KeySet<TestKey> {
        let p = policy();
        let mut set = KeySet::default();
        let mut source = Counter::default();
        for step in [0, 80, 100] {
            if step <= n {
                set = plan(&p, &set, t(step), &mut source).unwrap().keys;
            }
        }
        set
    }

    fn observed<'a>(
        keys: Option<&'a KeySet<TestKey>>,
        policy: &'a Policy,
        problem: Option<Problem>,
    ) -> Observed<'a, TestKey> {
        Observed {
            generation: Some(3),
            keys,
            policy: Some(policy),
            problem,
            secret_name: "p-jwks".into(),
            jwks_uri: None,
            warnings: Vec::new(),
            publication: None,
        }
    }

    fn cond<'a>(s: &'a KeyRotationPolicyStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn a_published_set_is_ready_and_not_degraded() {
        let p = policy();
        let set = keys_at(80);
        let s = desired_status(None, observed(Some(&set), &p, None), t(81));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, READY).observed_generation, Some(3));
        assert_eq!(cond(&s, DEGRADED).status, "False");
        assert_eq!(s.active_key_id.as_deref(), Some("k1"));
        assert_eq!(s.next_key_id.as_deref(), Some("k2"));
        assert_eq!(s.key_count, Some(2));
        assert_eq!(s.next_rotation_time, Some(Time(t(100))));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.last_rotation_reason, Some(RotationReasonName::Initial));
    }

    #[test]
    fn recomputing_an_unchanged_status_is_identical_so_nothing_is_written() {
        let p = policy();
        let set = keys_at(100);
        let first = desired_status(None, observed(Some(&set), &p, None), t(101));
        let again = desired_status(Some(&first), observed(Some(&set), &p, None), t(150));
        assert_eq!(first, again);
    }

    #[test]
    fn transition_time_moves_only_when_a_condition_flips() {
        let p = policy();
        let set = keys_at(0);
        let ok = desired_status(None, observed(Some(&set), &p, None), t(1));
        let corrupt = Problem::new("CorruptKeySet", "lifecycle.json: not JSON");
        let bad = desired_status(Some(&ok), observed(None, &p, Some(corrupt)), t(50));
        assert_eq!(cond(&bad, READY).status, "False");
        assert_eq!(cond(&bad, READY).reason, "CorruptKeySet");
        assert_eq!(cond(&bad, READY).last_transition_time, Time(t(50)));
        assert_eq!(cond(&bad, DEGRADED).message, "lifecycle.json: not JSON");
        // What was known about the keys stays visible.
        assert_eq!(bad.active_key_id, ok.active_key_id);
        let healed = desired_status(Some(&bad), observed(Some(&set), &p, None), t(60));
        assert_eq!(cond(&healed, READY).last_transition_time, Time(t(60)));
        let still = desired_status(Some(&healed), observed(Some(&set), &p, None), t(70));
        assert_eq!(cond(&still, READY).last_transition_time, Time(t(60)));
    }

    fn stored(rv: &str, status: Option<KeyRotationPolicyStatus>) -> KeyRotationPolicy {
        let mut p: KeyRotationPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "KeyRotationPolicy",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": rv},
            "spec": {},
        }))
        .unwrap();
        p.status = status;
        p
    }

    #[test]
    fn a_status_just_written_counts_until_the_watch_delivers_a_newer_object() {
        let p = policy();
        let set = keys_at(0);
        let ours = desired_status(None, observed(Some(&set), &p, None), t(1));
        let written = WrittenStatus::default();
        let before = stored("10", None);
        written.record(&before, ours.clone());

        // A reconcile handed the object our write replaced sees our status,
        // so recomputing it changes nothing and nothing is written again.
        let known = written.current(&before);
        assert_eq!(known.as_ref(), Some(&ours));
        let again = desired_status(known.as_ref(), observed(Some(&set), &p, None), t(9));
        assert_eq!(again, ours);

        // Once a newer object arrives, it is the truth (and the memory goes),
        // even if someone else changed the status meanwhile.
        let theirs = KeyRotationPolicyStatus::default();
        let newer = stored("12", Some(theirs.clone()));
        assert_eq!(written.current(&newer), Some(theirs));
        assert_eq!(written.current(&before), None);
    }

    #[test]
    fn a_revocation_shows_until_when_verifier_caches_may_trust_the_key() {
        let mut p = policy();
        let set = keys_at(100);
        let s = desired_status(None, observed(Some(&set), &p, None), t(101));
        assert_eq!(s.last_revocation_time, None);
        assert_eq!(s.revocation_exposure_until, None);

        p.revoked.insert("k1".into());
        let revoked = plan(&p, &set, t(110), &mut Counter::default())
            .unwrap()
            .keys;
        let s = desired_status(Some(&s), observed(Some(&revoked), &p, None), t(110));
        assert_eq!(s.last_revocation_time, Some(Time(t(110))));
        // The policy's verifiers keep a set up to 5 s.
        assert_eq!(s.revocation_exposure_until, Some(Time(t(115))));
        // An unreadable set keeps showing what was known.
        let corrupt = Problem::new("CorruptKeySet", "lifecycle.json: not JSON");
        let bad = desired_status(Some(&s), observed(None, &p, Some(corrupt)), t(120));
        assert_eq!(bad.revocation_exposure_until, Some(Time(t(115))));
    }

    #[test]
    fn a_deferred_rotation_is_degraded_but_still_ready() {
        let p = policy();
        let set = keys_at(0);
        let deferred = Problem::new("MaxKeysReached", "rotation deferred");
        let s = desired_status(None, observed(Some(&set), &p, Some(deferred)), t(1));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, DEGRADED).status, "True");
        assert_eq!(cond(&s, DEGRADED).reason, "MaxKeysReached");
    }

    /// A token-enabled policy with an issuer gets a condition of its own
    /// (neither Ready nor Degraded change), announced once by a Warning Event.
    #[test]
    fn a_token_endpoint_on_an_issuer_is_a_warning_condition_of_its_own() {
        let p = policy();
        let set = keys_at(0);
        let policy: crate::api::KeyRotationPolicy = crate::yaml::from_str(
            "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\n\
             metadata: {name: p, namespace: ns}\n\
             spec: {issuer: 'https://kube.example.com', tokenEndpoint: {enabled: true}}",
        )
        .unwrap();
        let mut info = policy.info();
        let warnings = info.warnings();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].reason, "TokenEndpointOnIssuer");
        let plain = desired_status(None, observed(Some(&set), &p, None), t(1));
        assert_eq!(plain.conditions.len(), 2);
        let mut obs = observed(Some(&set), &p, None);
        obs.warnings = warnings.clone();
        let warned = desired_status(Some(&plain), obs, t(2));
        assert_eq!(cond(&warned, READY).status, "True");
        assert_eq!(cond(&warned, DEGRADED).status, "False");
        let c = cond(&warned, "TokenEndpointOnIssuer");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "TokenEndpointOnIssuer")
        );
        assert!(
            c.message.contains("https://kube.example.com"),
            "{}",
            c.message
        );
        let new: Vec<_> = new_warnings(Some(&plain), &warned)
            .map(|c| &c.type_)
            .collect();
        assert_eq!(new, ["TokenEndpointOnIssuer"]);
        assert_eq!(new_warnings(Some(&warned), &warned).count(), 0, "once");

        // Either setting alone is fine.
        info.issuer = None;
        assert!(info.warnings().is_empty());
        info.issuer = Some("https://kube.example.com".into());
        info.token_endpoint = false;
        assert!(info.warnings().is_empty());
    }
}
