//! Key material benchmarks: generation, signing, verification and minting per
//! algorithm. Compare with `openssl speed` / `openssl genpkey` using
//! `benches/openssl_reference.sh`; results and commands are in BENCHMARKS.md.
//!
//! `JWKS_BENCH_BIG_RSA=1` adds RSA-3072/4096 key generation (slow, few samples).
//!
//! Times are the benchmark thread's **CPU time**, not wall-clock time: the
//! machine is shared, and `openssl speed` also divides by CPU (user) time by
//! default. On an idle machine the two are the same.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, SamplingMode, criterion_group, criterion_main};
use jiff::Timestamp;
use jwks_operator::keys::token::{Expectations, Verifier, mint_token};
use jwks_operator::keys::{Algorithm, KeyParams, SigningKey, parse_private_jwks};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const NOW: i64 = 1_750_000_000;

type Criterion = criterion::Criterion<cpu_time::ThreadCpuTime>;

/// A criterion measurement of the calling thread's CPU time.
mod cpu_time {
    use criterion::Throughput;
    use criterion::measurement::{Measurement, ValueFormatter};

    /// CPU time of the benchmark thread (`CLOCK_THREAD_CPUTIME_ID`), in ns.
    pub struct ThreadCpuTime;

    fn now_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
        // the kernel supports for the calling thread.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    impl Measurement for ThreadCpuTime {
        type Intermediate = u64;
        type Value = u64;

        fn start(&self) -> u64 {
            now_ns()
        }
        fn end(&self, start: u64) -> u64 {
            now_ns().saturating_sub(start)
        }
        fn add(&self, a: &u64, b: &u64) -> u64 {
            a + b
        }
        fn zero(&self) -> u64 {
            0
        }
        fn to_f64(&self, v: &u64) -> f64 {
            *v as f64
        }
        fn formatter(&self) -> &dyn ValueFormatter {
            &CpuFormatter
        }
    }

    struct CpuFormatter;

    impl ValueFormatter for CpuFormatter {
        fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
            let (div, unit) = match typical_ns {
                t if t < 1e3 => (1.0, "ns"),
                t if t < 1e6 => (1e3, "µs"),
                t if t < 1e9 => (1e6, "ms"),
                _ => (1e9, "s"),
            };
            values.iter_mut().for_each(|v| *v /= div);
            unit
        }

        fn scale_throughputs(
            &self,
            _typical: f64,
            throughput: &Throughput,
            values: &mut [f64],
        ) -> &'static str {
            let per_iter = match throughput {
                Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                    *n as f64
                }
                _ => 1.0,
            };
            values.iter_mut().for_each(|v| *v = per_iter * 1e9 / *v);
            "/s (CPU)"
        }

        fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
            "ns"
        }
    }
}

fn fixture_keys() -> Vec<SigningKey> {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/all-algorithms.jwks.json"
    ))
    .expect("fixture");
    // The first nine are one key per algorithm (RSA 2048-bit).
    let mut keys = parse_private_jwks(&bytes).expect("fixture parses");
    keys.truncate(Algorithm::ALL.len());
    keys
}

#[path = "common/mint.rs"]
mod mint_claims;
use mint_claims::{request, settings};

fn keygen(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(42);

    // RSA generation time is heavy-tailed (prime search): many flat samples,
    // one key per iteration, so the median is meaningful.
    let mut g = c.benchmark_group("keygen");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(100);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("RSA-2048", |b| {
        b.iter(|| SigningKey::generate(KeyParams::rsa(Algorithm::RS256, 2048), &mut rng).unwrap())
    });
    // The alternative RUSTSEC-2023-0071 asked us to weigh (docs/key-material.md):
    // aws-lc-rs generating the pair itself, from the OS RNG, and exporting the
    // PKCS#8 we would then have to split into JWK members.
    g.bench_function("RSA-2048-aws-lc-rs", |b| {
        b.iter(|| {
            use aws_lc_rs::encoding::AsDer as _;
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let der: aws_lc_rs::encoding::Pkcs8V1Der = pair.as_der().unwrap();
            der
        })
    });
    g.finish();

    if std::env::var_os("JWKS_BENCH_BIG_RSA").is_some() {
        let mut g = c.benchmark_group("keygen");
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(100));
        g.measurement_time(Duration::from_secs(20));
        for bits in [3072, 4096] {
            g.bench_function(format!("RSA-{bits}"), |b| {
                b.iter(|| {
                    SigningKey::generate(KeyParams::rsa(Algorithm::RS256, bits), &mut rng).unwrap()
                })
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("keygen");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (name, alg) in [
        ("P-256", Algorithm::ES256),
        ("P-384", Algorithm::ES384),
        ("Ed25519", Algorithm::EdDSA),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| SigningKey::generate(KeyParams::new(alg), &mut rng).unwrap())
        });
    }
    g.finish();
}

/// A typical token signed by `key`, minted at [`NOW`].
fn typical_token(key: &SigningKey) -> String {
    mint_token(
        key,
        &request(),
        &settings(),
        Timestamp::from_second(NOW).unwrap(),
        "jti",
    )
    .unwrap()
    .token
}

/// A typical JWS signing input: base64url header and claims, ~250 bytes.
fn signing_input(key: &SigningKey) -> Vec<u8> {
    let token = typical_token(key);
    let end = token.rfind('.').unwrap();
    token.as_bytes()[..end].to_vec()
}

fn sign(c: &mut Criterion) {
    let keys = fixture_keys();
    let mut g = c.benchmark_group("sign");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for key in &keys {
        let input = signing_input(key);
        g.bench_with_input(
            BenchmarkId::from_parameter(key.alg()),
            &input,
            |b, input| b.iter(|| key.sign(black_box(input)).unwrap()),
        );
    }

    // For reference: what signing costs when the key is re-parsed on every
    // call, as `jsonwebtoken::encode` does with an `EncodingKey`.
    let rs256 = &keys[0];
    let pem = rs256.pkcs8_pem();
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose().as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let claims = serde_json::json!({"sub": "bench-user", "exp": NOW + 3600});
    g.bench_function("RS256-jsonwebtoken-encode-reparsing", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &encoding).unwrap())
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let keys = fixture_keys();
    let verifier = Verifier::new(keys.iter().map(SigningKey::verifying_key));
    let expect = Expectations {
        issuer: Some("https://issuer.example".into()),
        audiences: vec!["api".into()],
        leeway: Duration::from_secs(60),
    };
    let now = Timestamp::from_second(NOW + 1).unwrap();

    // Whole-token verification through the Verifier (header, signature, claims).
    let mut g = c.benchmark_group("verify");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for key in &keys {
        let token = typical_token(key);
        verifier
            .verify(&token, &expect, now)
            .expect("bench token verifies");
        g.bench_with_input(
            BenchmarkId::from_parameter(key.alg()),
            &token,
            |b, token| b.iter(|| verifier.verify(black_box(token), &expect, now).unwrap()),
        );
    }
    g.finish();

    // The signature check alone, with the cached parsed public key.
    let mut g = c.benchmark_group("verify-signature-only");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for key in &keys {
        let input = signing_input(key);
        let sig = key.sign(&input).unwrap();
        g.bench_with_input(
            BenchmarkId::from_parameter(key.alg()),
            &input,
            |b, input| {
                b.iter(|| {
                    key.verifying_key()
                        .verify_signature(black_box(input), &sig)
                        .unwrap()
                })
            },
        );
    }
    g.finish();
}

fn mint(c: &mut Criterion) {
    let keys = fixture_keys();
    let now = Timestamp::from_second(NOW).unwrap();
    let mut g = c.benchmark_group("mint");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let key = keys.iter().find(|k| k.alg() == alg).unwrap();
        g.bench_function(BenchmarkId::from_parameter(alg), |b| {
            b.iter(|| mint_token(key, black_box(&request()), &settings(), now, "jti").unwrap())
        });
    }
    g.finish();
}

/// Planning, the pure lifecycle step every reconcile runs: a key that is only
/// an identity, so what is measured is the planner and not key generation.
mod planning {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use jiff::Timestamp;
    use jwks_operator::keys::lifecycle::{
        DEFAULT_PROPAGATION_GRACE, KeySet, KeySource, LifecycleEvent, LifecycleKey, Policy, plan,
    };
    use jwks_operator::keys::{Algorithm, KeyParams};

    #[derive(Clone, Debug, PartialEq)]
    pub struct Key(String, KeyParams);

    impl LifecycleKey for Key {
        fn kid(&self) -> &str {
            &self.0
        }
        fn params(&self) -> KeyParams {
            self.1
        }
    }

    #[derive(Default)]
    pub struct Counter(u64);

    impl KeySource<Key> for Counter {
        type Error = std::convert::Infallible;
        fn generate(&mut self, params: KeyParams) -> Result<Key, Self::Error> {
            self.0 += 1;
            Ok(Key(format!("k{}", self.0), params))
        }
    }

    pub fn policy() -> Policy {
        Policy {
            params: KeyParams::new(Algorithm::ES256),
            rotation_interval: Duration::from_secs(86_400),
            publish_ahead: Duration::from_secs(3_600),
            max_token_ttl: Duration::from_secs(3_600),
            clock_skew: Duration::from_secs(60),
            max_keys: 10,
            revoked: BTreeSet::new(),
            rotation_request: None,
            propagation_grace: DEFAULT_PROPAGATION_GRACE,
            rotate_on_revoke: false,
            verifier_cache: Duration::from_secs(300),
        }
    }

    /// Plans a policy from nothing through `rotations` rotations, each call
    /// at the planner's own `next_due`: every step of the lifecycle runs.
    pub fn lifecycle(rotations: usize, start: Timestamp) -> KeySet<Key> {
        let policy = policy();
        let mut source = Counter::default();
        let mut set = KeySet::default();
        let mut now = start;
        let mut activations = 0;
        while activations < rotations {
            let p = plan(&policy, &set, now, &mut source).unwrap();
            activations += p
                .events
                .iter()
                .filter(|e| matches!(e, LifecycleEvent::Activated { .. }))
                .count();
            set = p.keys;
            now = p.next_due;
        }
        set
    }
}

fn plan(c: &mut Criterion) {
    let start = Timestamp::from_second(NOW).unwrap();
    let policy = planning::policy();
    let steady = planning::lifecycle(5, start);
    let quiet = Timestamp::from_second(NOW + 5 * 86_400 + 60).unwrap();
    let mut g = c.benchmark_group("plan");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("steady", |b| {
        b.iter(|| {
            let p = jwks_operator::keys::lifecycle::plan(
                &policy,
                black_box(&steady),
                quiet,
                &mut planning::Counter::default(),
            )
            .unwrap();
            black_box(p.next_due)
        })
    });
    g.bench_function("ten_rotations", |b| {
        b.iter(|| black_box(planning::lifecycle(10, black_box(start))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = criterion::Criterion::default().with_measurement(cpu_time::ThreadCpuTime);
    targets = keygen, sign, verify, mint, plan
}
criterion_main!(benches);
