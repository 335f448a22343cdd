//! The metric families: names, labels, and what each recording does.

use jiff::Timestamp;

use super::*;
use crate::keys::lifecycle::{
    KeySet, KeySource, KeyState, LifecycleEvent, LifecycleKey, RotationReason,
};
use crate::keys::{Algorithm, KeyParams};
use crate::policy::PolicyRef;

fn p() -> PolicyRef {
    PolicyRef::new("team-a", "api")
}

#[test]
fn route_classes_follow_the_path_shape() {
    let cases = [
        ("/ns/n/.well-known/jwks.json", RouteClass::Jwks),
        (
            "/ns/n/.well-known/openid-configuration",
            RouteClass::Discovery,
        ),
        ("/.well-known/jwks.json", RouteClass::DefaultJwks),
        ("/policies", RouteClass::Policies),
        ("/healthz", RouteClass::Healthz),
        ("/readyz", RouteClass::Readyz),
        ("/metrics", RouteClass::Metrics),
        ("/ns/n/token", RouteClass::Token),
        ("/ns/n/verify", RouteClass::Verify),
        ("/ns/n/token/x", RouteClass::Other),
        ("/ns/n/.well-known/jwks.json/x", RouteClass::Other),
        ("/", RouteClass::Other),
        ("", RouteClass::Other),
        ("/a", RouteClass::Other),
    ];
    for (path, class) in cases {
        assert_eq!(RouteClass::of_path(path), class, "{path}");
    }
}

#[test]
fn http_counters_are_labelled_and_count_304s() {
    let m = Metrics::new();
    m.record_http(Listener::Jwks, RouteClass::Jwks, 200);
    m.record_http(Listener::Jwks, RouteClass::Jwks, 200);
    m.record_http(Listener::Jwks, RouteClass::Jwks, 304);
    m.record_http(Listener::Token, RouteClass::Token, 418);
    let text = m.encode();
    assert!(
        text.contains(
            "jwks_operator_http_requests_total{listener=\"jwks\",route=\"jwks\",status=\"200\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("jwks_operator_http_not_modified_total{route=\"jwks\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("jwks_operator_http_not_modified_total{route=\"default_jwks\"} 0"),
        "cacheable routes have a series before their first 304: {text}"
    );
    assert!(
        !text.contains("jwks_operator_http_not_modified_total{route=\"token\"}"),
        "{text}"
    );
    assert!(
        text.contains(
            "jwks_operator_http_requests_total{listener=\"token\",route=\"token\",status=\"other\"} 1"
        ),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn rotations_count_activations_and_direct_signers() {
    let m = Metrics::new();
    m.record_events(
        &p(),
        &[
            LifecycleEvent::Created {
                kid: "a".into(),
                state: KeyState::Active,
                reason: RotationReason::Initial,
            },
            LifecycleEvent::Created {
                kid: "b".into(),
                state: KeyState::Pending,
                reason: RotationReason::Scheduled,
            },
            LifecycleEvent::Activated {
                kid: "b".into(),
                reason: RotationReason::Scheduled,
            },
            LifecycleEvent::Pruned { kid: "a".into() },
        ],
    );
    let text = m.encode();
    assert!(
        text.contains(
            "jwks_operator_rotations_total{namespace=\"team-a\",name=\"api\",reason=\"Initial\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("jwks_operator_rotations_total{namespace=\"team-a\",name=\"api\",reason=\"Scheduled\"} 1"), "{text}");
    assert!(!text.contains("kid"), "kids stay out of metrics: {text}");
}

#[test]
fn forget_drops_every_series_of_a_policy() {
    let m = Metrics::new();
    let set: KeySet<std::sync::Arc<crate::keys::SigningKey>> = KeySet::default();
    m.observe_key_set(&p(), &set, Some(Timestamp::UNIX_EPOCH), None);
    m.observe_revocation_exposure(&p(), Some(Timestamp::UNIX_EPOCH));
    m.inc_reconcile_error(&p(), "write_secret");
    m.set_degraded(&p(), true);
    m.record_events(
        &p(),
        &[LifecycleEvent::Activated {
            kid: "b".into(),
            reason: RotationReason::Manual,
        }],
    );
    let text = m.encode();
    for name in [
        "jwks_operator_keys{",
        "jwks_operator_next_rotation_timestamp_seconds{",
        "jwks_operator_revoked_key_exposure_timestamp_seconds{",
        "jwks_operator_reconcile_errors_total{",
        "jwks_operator_policy_degraded{",
        "jwks_operator_rotations_total{",
    ] {
        assert!(text.contains(name), "{name} missing in {text}");
    }
    m.forget(&p());
    let text = m.encode();
    assert!(!text.contains("team-a"), "{text}");
}

#[test]
fn timed_key_source_observes_each_generation() {
    use rand_chacha::rand_core::SeedableRng;
    let m = Metrics::new();
    let mut source = TimedKeySource::new(
        crate::keys::material::RngKeySource(rand_chacha::ChaCha20Rng::seed_from_u64(1)),
        &m,
    );
    let params = KeyParams::new(Algorithm::EdDSA);
    let _: std::sync::Arc<crate::keys::SigningKey> = source.generate(params).unwrap();
    let _: std::sync::Arc<crate::keys::SigningKey> = source.generate(params).unwrap();
    let text = m.encode();
    assert!(
        text.contains("jwks_operator_key_generation_seconds_count{alg=\"EdDSA\"} 2"),
        "{text}"
    );
}

#[test]
fn key_generation_is_a_histogram_by_alg() {
    let m = Metrics::new();
    m.observe_key_generation(Algorithm::ES256, 0.001);
    let text = m.encode();
    assert!(
        text.contains("# TYPE jwks_operator_key_generation_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("jwks_operator_key_generation_seconds_count{alg=\"ES256\"} 1"),
        "{text}"
    );
}

/// A key that is only a kid: the metrics never look at key material.
#[derive(Clone, Debug)]
struct Kid(&'static str);

impl LifecycleKey for Kid {
    fn kid(&self) -> &str {
        self.0
    }
    fn params(&self) -> KeyParams {
        KeyParams::new(Algorithm::ES256)
    }
}

fn managed(kid: &'static str, state: KeyState) -> crate::keys::lifecycle::ManagedKey<Kid> {
    crate::keys::lifecycle::ManagedKey {
        key: Kid(kid),
        state,
        created_at: Timestamp::UNIX_EPOCH,
        activates_at: Timestamp::UNIX_EPOCH,
        retired_at: None,
        prune_after: None,
        reason: None,
        max_token_ttl: std::time::Duration::from_secs(3600),
    }
}

fn set_of(keys: Vec<crate::keys::lifecycle::ManagedKey<Kid>>) -> KeySet<Kid> {
    KeySet {
        keys,
        ..KeySet::default()
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

#[test]
fn pending_activation_is_reported_only_while_a_key_is_pending() {
    let m = Metrics::new();
    let with_pending = set_of(vec![
        managed("b", KeyState::Pending),
        managed("a", KeyState::Active),
    ]);
    m.observe_key_set(&p(), &with_pending, Some(at(1_900_000_000)), None);
    let text = m.encode();
    assert!(
        text.contains("jwks_operator_pending_activation_timestamp_seconds{namespace=\"team-a\",name=\"api\"} 1900000000"),
        "{text}"
    );
    // The key activated: no pending key, the series goes away.
    let activated = set_of(vec![managed("b", KeyState::Active)]);
    m.observe_key_set(&p(), &activated, Some(at(1_900_086_400)), None);
    let text = m.encode();
    assert!(
        !text.contains("jwks_operator_pending_activation_timestamp_seconds{"),
        "{text}"
    );
    assert!(
        text.contains("jwks_operator_next_rotation_timestamp_seconds{namespace=\"team-a\",name=\"api\"} 1900086400"),
        "{text}"
    );
}

#[test]
fn losing_the_lead_drops_the_key_set_series_but_keeps_counters_and_degraded() {
    let m = Metrics::new();
    m.set_leader(true);
    let set = set_of(vec![
        managed("b", KeyState::Pending),
        managed("a", KeyState::Active),
    ]);
    m.observe_key_set(&p(), &set, Some(at(1_900_000_000)), Some(at(1_900_000_100)));
    m.set_degraded(&p(), true);
    m.inc_reconcile_error(&p(), "write_secret");
    let text = m.encode();
    assert!(text.contains("\njwks_operator_leader 1\n"), "{text}");
    assert!(
        text.contains("jwks_operator_pending_activation_timestamp_seconds{"),
        "{text}"
    );

    m.set_leader(false);
    let text = m.encode();
    assert!(text.contains("jwks_operator_leader 0"), "{text}");
    for gone in [
        "jwks_operator_keys{",
        "jwks_operator_next_rotation_timestamp_seconds{",
        "jwks_operator_next_prune_timestamp_seconds{",
        "jwks_operator_pending_activation_timestamp_seconds{",
    ] {
        assert!(
            !text.contains(gone),
            "{gone} survived losing the lead: {text}"
        );
    }
    for kept in [
        "jwks_operator_policy_degraded{namespace=\"team-a\",name=\"api\"} 1",
        "jwks_operator_reconcile_errors_total{namespace=\"team-a\",name=\"api\",kind=\"write_secret\"} 1",
    ] {
        assert!(text.contains(kept), "{kept} missing: {text}");
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no entropy")]
struct NoEntropy;

struct Failing;

impl KeySource<Kid> for Failing {
    type Error = NoEntropy;
    fn generate(&mut self, _: KeyParams) -> Result<Kid, NoEntropy> {
        Err(NoEntropy)
    }
}

#[test]
fn failed_key_generations_are_counted_by_alg_and_not_timed() {
    let m = Metrics::new();
    assert!(
        m.encode()
            .contains("jwks_operator_key_generation_failures_total{alg=\"ES384\"} 0"),
        "every algorithm starts at 0"
    );
    let mut source = TimedKeySource::new(Failing, &m);
    assert!(source.generate(KeyParams::new(Algorithm::ES384)).is_err());
    assert!(source.generate(KeyParams::new(Algorithm::ES384)).is_err());
    let text = m.encode();
    assert!(
        text.contains("jwks_operator_key_generation_failures_total{alg=\"ES384\"} 2"),
        "{text}"
    );
    assert!(
        !text.contains("jwks_operator_key_generation_seconds_count{alg=\"ES384\"}"),
        "a failure is not a generation time: {text}"
    );
}

#[test]
fn not_ready_answers_are_counted_per_policy_and_forgotten_with_it() {
    let m = Metrics::new();
    m.set_degraded(&p(), false);
    assert!(
        m.encode()
            .contains("jwks_operator_policy_not_ready_total{namespace=\"team-a\",name=\"api\"} 0"),
        "a known policy's counter starts at 0"
    );
    m.inc_not_ready(&p());
    m.inc_not_ready(&p());
    let text = m.encode();
    assert!(
        text.contains("jwks_operator_policy_not_ready_total{namespace=\"team-a\",name=\"api\"} 2"),
        "{text}"
    );
    m.forget(&p());
    assert!(!m.encode().contains("team-a"));
}

#[test]
fn build_info_names_the_crate_version() {
    let text = Metrics::new().encode();
    assert!(
        text.contains(&format!(
            "jwks_operator_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}
