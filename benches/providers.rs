//! Tokens per second through a PKCS#11 token (SoftHSM2, in this process)
//! against a key held here, of the same algorithm: `mint_token` end to end
//! (claims, header, signature; for the token, the signature is also
//! verified with the cached public key before it is returned).
//!
//! `cargo bench --bench providers` (needs tests/providers/install.sh). Wall
//! clock, not CPU time: SoftHSM runs in this thread, but a real HSM is I/O.
//! The numbers and their ratio go into BENCHMARKS.md ("Key providers").
//! Run it alone on the machine.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use jwks_operator::keys::lifecycle::KeySource as _;
use jwks_operator::keys::redacted::RedactedString;
use jwks_operator::keys::token::mint_token;
use jwks_operator::keys::{Algorithm, KeyParams, SigningKey};
use jwks_operator::providers::pkcs11::{Pkcs11Config, Pkcs11KeySource, Pkcs11Provider};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

#[path = "../tests/common/softhsm.rs"]
mod softhsm;

#[path = "common/mint.rs"]
mod mint_claims;
use mint_claims::{request, settings};

fn mint(c: &mut Criterion) {
    let label = softhsm::token("bench", "1234");
    let provider = Pkcs11Provider::open(&Pkcs11Config {
        module: PathBuf::from(softhsm::MODULE),
        token_label: label,
        pin: RedactedString::new("1234".into()),
    })
    .expect("SoftHSM token (bash tests/providers/install.sh)");
    let mut token_source = Pkcs11KeySource(provider);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let now = Timestamp::from_second(1_750_000_000).unwrap();
    let mut g = c.benchmark_group("mint_through_provider");
    g.throughput(Throughput::Elements(1));
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let params = KeyParams::new(alg);
        let local: Arc<SigningKey> = Arc::new(SigningKey::generate(params, &mut rng).unwrap());
        let held = token_source.generate(params).unwrap();
        for (name, key) in [("secret", &local), ("softhsm", &held)] {
            g.bench_with_input(BenchmarkId::new(alg.as_str(), name), key, |b, key| {
                b.iter(|| mint_token(key, black_box(&request()), &settings(), now, "jti").unwrap())
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = mint
}
criterion_main!(benches);
