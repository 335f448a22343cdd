//! Fixtures shared by the fuzz targets: the repository's test keys, a fixed
//! clock, and a served policy for the HTTP routes.

use std::sync::{Arc, OnceLock};

use jiff::Timestamp;
use jwks_operator::api::KeyRotationPolicy;
use jwks_operator::http::{PolicyView, SharedState};
use jwks_operator::keys::SigningKey;
use jwks_operator::keys::lifecycle::KeySet;
use jwks_operator::keys::token::Verifier;
use jwks_operator::metrics::Metrics;

/// `tests/fixtures/keys/all-algorithms.jwks.json`: one private key per
/// algorithm (RSA keys first, then ES256, ES384, EdDSA).
pub const FIXTURE_JWKS: &[u8] =
    include_bytes!("../../tests/fixtures/keys/all-algorithms.jwks.json");

/// The fixed "now" of every target.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

/// The fixture's private keys.
pub fn fixture_keys() -> &'static [Arc<SigningKey>] {
    static KEYS: OnceLock<Vec<Arc<SigningKey>>> = OnceLock::new();
    KEYS.get_or_init(|| {
        jwks_operator::keys::parse_private_jwks(FIXTURE_JWKS)
            .expect("the fixture parses")
            .into_iter()
            .map(Arc::new)
            .collect()
    })
}

/// The fixture key of `alg` (`"EdDSA"`, `"ES256"`, ...).
pub fn fixture_key(alg: &str) -> &'static Arc<SigningKey> {
    fixture_keys()
        .iter()
        .find(|k| k.alg().as_str() == alg)
        .expect("the fixture has a key of every algorithm")
}

/// A verifier holding the public half of every fixture key.
pub fn fixture_verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier::new(fixture_keys().iter().map(|k| k.verifying_key())))
}

/// The policy served by the HTTP target: `fuzz/api`, EdDSA, issuer,
/// audience, token endpoint on.
pub const POLICY_YAML: &str = "apiVersion: jwks.dev/v1alpha1
kind: KeyRotationPolicy
metadata: {name: api, namespace: fuzz}
spec:
  algorithm: EdDSA
  rotationInterval: 1h
  publishAhead: 10m
  maxTokenTTL: 10m
  clockSkew: 30s
  issuer: https://auth.example.com/fuzz
  audiences: [orders]
  tokenEndpoint: {enabled: true}
";

/// Shared HTTP state serving `fuzz/api` (adopted fixture EdDSA key) as the
/// default policy, with the clock fixed at [`now`].
pub fn http_state() -> SharedState {
    let policy: KeyRotationPolicy = policy_from(POLICY_YAML);
    let resolved = policy.spec.resolve(None).expect("the fuzz policy resolves");
    let set = KeySet::adopt(vec![fixture_key("EdDSA").clone()], now(), &resolved);
    let view = PolicyView::build(&policy.info(), &set, Some("https://jwks.example.com"));
    let state = SharedState::new(
        Some(jwks_operator::http::PolicyRef::new("fuzz", "api")),
        Arc::new(Metrics::new()),
    )
    .with_clock(now);
    state.upsert(view);
    state.set_ready(true);
    state
}

fn policy_from(text: &str) -> KeyRotationPolicy {
    let files = jwks_operator::standalone::policies::parse_policy_text(text, "fuzz.yaml".as_ref());
    files
        .policies
        .into_iter()
        .next()
        .expect("the fuzz policy is valid")
        .policy
}
