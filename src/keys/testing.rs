//! The committed key fixtures, loaded once per test binary: shared by the
//! unit tests of every module (keys, store, engine, http, verify).

use std::sync::{Arc, OnceLock};

use super::alg::Algorithm;
use super::material::{SigningKey, parse_private_jwks};

/// The committed private set: one 2048-bit/curve key per algorithm in
/// [`Algorithm::ALL`] order, then 3072- and 4096-bit RS256 keys.
pub const FIXTURE_JWKS: &[u8] =
    include_bytes!("../../tests/fixtures/keys/all-algorithms.jwks.json");

fn load() -> Vec<SigningKey> {
    parse_private_jwks(FIXTURE_JWKS).expect("fixture parses")
}

/// The fixture keys, parsed once per test binary.
pub fn fixture_keys() -> &'static [SigningKey] {
    static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    KEYS.get_or_init(load)
}

/// The fixture key for `alg`, shared (as key sets hold it).
pub fn fixture(alg: Algorithm) -> Arc<SigningKey> {
    static KEYS: OnceLock<Vec<Arc<SigningKey>>> = OnceLock::new();
    KEYS.get_or_init(|| load().into_iter().map(Arc::new).collect())
        .iter()
        .find(|k| k.alg() == alg)
        .cloned()
        .expect("fixture has every algorithm")
}

/// The fixture key for `alg`.
pub fn key(alg: Algorithm) -> &'static SigningKey {
    fixture_keys()
        .iter()
        .find(|k| k.alg() == alg)
        .expect("fixture has every algorithm")
}

/// A second key for `alg` (different material), for wrong-key tests.
pub fn other_key(alg: Algorithm) -> SigningKey {
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;
    if alg.is_rsa() {
        // Re-label another 2048-bit fixture rather than generate a new RSA key.
        let donor = if alg == Algorithm::RS256 { 1 } else { 0 };
        let mut jwk = fixture_keys()[donor].private_jwk();
        jwk["alg"] = alg.as_str().into();
        return SigningKey::from_private_jwk(&jwk).expect("relabelled fixture parses");
    }
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    SigningKey::generate(super::KeyParams::new(alg), &mut rng).expect("generate")
}
