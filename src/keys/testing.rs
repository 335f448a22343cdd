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

/// A provider-held key for tests: signs like the local key it wraps, but
/// only once the test gives the go-ahead, as a token or KMS slow to answer
/// would. [`Gated::wait_entered`] tells when a signature has started.
pub struct Gated {
    key: Arc<SigningKey>,
    reference: String,
    entered: std::sync::atomic::AtomicBool,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

/// How long a [`Gated`] signature waits for its go-ahead before failing.
pub const GATE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

impl Gated {
    /// A provider-held copy of `key` (same kid and public half) whose
    /// signatures wait for a message on the returned sender.
    pub fn wrap(
        key: &Arc<SigningKey>,
    ) -> (Arc<SigningKey>, Arc<Gated>, std::sync::mpsc::Sender<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let gated = Arc::new(Gated {
            key: key.clone(),
            reference: "pkcs11:token=gated;id=%01".into(),
            entered: Default::default(),
            go: std::sync::Mutex::new(rx),
        });
        let remote = SigningKey::remote(key.params(), key.verifying_key().clone(), gated.clone());
        (Arc::new(remote), gated, tx)
    }

    /// Waits (polling, without blocking the runtime) until a signature has
    /// started; panics after [`GATE_PATIENCE`].
    pub async fn wait_entered(&self) {
        let deadline = std::time::Instant::now() + GATE_PATIENCE;
        while !self.entered.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "no signature started");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

impl super::material::RemoteSigner for Gated {
    fn reference(&self) -> &str {
        &self.reference
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.entered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let go = self.go.lock().unwrap().recv_timeout(GATE_PATIENCE);
        if go.is_err() {
            return Err("no go-ahead: the test never got to give it".into());
        }
        self.key.sign(message).map_err(|e| e.to_string())
    }
}
