//! Fixtures shared by the store's unit tests.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::StoredKeySet;
use crate::keys::alg::Algorithm;
use crate::keys::lifecycle::{KeySet, KeyState, ManagedKey, RotationReason};
use crate::keys::material::SigningKey;

pub use crate::keys::testing::{FIXTURE_JWKS, fixture};
pub use jwks::kids_of;

/// What a JWK Set document holds, read as the integration tests read it.
#[path = "../../tests/support/jwks.rs"]
mod jwks;

/// A fixed instant plus `n` seconds.
pub fn t(n: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + n).unwrap()
}

/// A key in `state`, created at `t(at)`, with timestamps fitting the state.
pub fn managed(key: Arc<SigningKey>, state: KeyState, at: i64) -> ManagedKey<Arc<SigningKey>> {
    let retired = state == KeyState::Retired;
    ManagedKey {
        key,
        state,
        created_at: t(at),
        activates_at: t(at + 20),
        retired_at: retired.then(|| t(at + 120)),
        prune_after: retired.then(|| t(at + 155)),
        reason: Some(RotationReason::Scheduled),
        max_token_ttl: Duration::from_secs(30),
    }
}

/// Pending EdDSA, Active ES256, Retired RS256: every state, RSA and not.
pub fn three_key_set() -> StoredKeySet {
    KeySet {
        keys: vec![
            managed(fixture(Algorithm::EdDSA), KeyState::Pending, 200),
            managed(fixture(Algorithm::ES256), KeyState::Active, 100),
            managed(fixture(Algorithm::RS256), KeyState::Retired, 0),
        ],
        last_rotation_time: Some(t(120)),
        last_rotation_reason: Some(RotationReason::Manual),
        last_rotation_request: Some("2026-11-24T10:00:00Z".into()),
        rotation_request_outstanding: false,
        last_revocation_time: Some(t(110)),
        undestroyed: Vec::new(),
    }
}

/// A set with only an Active ES384 key.
pub fn one_key_set() -> StoredKeySet {
    KeySet {
        keys: vec![managed(fixture(Algorithm::ES384), KeyState::Active, 0)],
        last_rotation_time: Some(t(20)),
        last_rotation_reason: Some(RotationReason::Initial),
        last_rotation_request: None,
        rotation_request_outstanding: false,
        last_revocation_time: None,
        undestroyed: Vec::new(),
    }
}

/// Every private member of every fixture key.
fn private_values() -> Vec<String> {
    let doc: Value = serde_json::from_slice(FIXTURE_JWKS).unwrap();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|k| {
            ["d", "p", "q", "dp", "dq", "qi"]
                .into_iter()
                .filter_map(|m| k.get(m).and_then(Value::as_str).map(str::to_owned))
        })
        .collect()
}

/// Fails if `text` holds any private member of a fixture key or a PEM.
pub fn assert_no_private_material(text: &str) {
    for v in private_values() {
        assert!(
            !text.contains(&v[..24]),
            "private material leaked into: {text}"
        );
    }
    assert!(!text.contains("PRIVATE KEY"), "PEM leaked into: {text}");
}
