//! The AWS KMS key provider against local-kms (tests/providers/install.sh),
//! which signs in DIGEST mode as KMS does: keys are made in KMS, sign in JOSE
//! form, verify with the public key read back (and with jsonwebtoken,
//! independently), are adopted by ARN, and have their deletion scheduled
//! (DescribeKey: PendingDeletion). A proxy that answers
//! `ThrottlingException` shows backoff and the metric; an unreachable
//! endpoint is a quick, clear error naming the provider. No error ever
//! carries the secret key.

#[path = "common/local_kms.rs"]
mod local_kms;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_kms::types::KeyState;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwks_operator::keys::alg::{Algorithm, KeyParams};
use jwks_operator::providers::kms::{
    CALL_BUDGET, KmsConfig, KmsProvider, ProviderLabels, StaticCredentials, throttled_counter,
};
use jwks_operator::providers::{self, AWSKMS, KmsArn};
use jwks_operator::publish::credentials::Credentials;
use local_kms::{LocalKms, Throttler};

/// A provider for `endpoint` with the tests' static credentials; `policy`
/// keeps providers of different tests apart.
fn provider(endpoint: &str, policy: &str) -> std::sync::Arc<KmsProvider> {
    let creds = Credentials::parse_env(local_kms::credentials_env().as_bytes()).unwrap();
    KmsProvider::open(&KmsConfig {
        region: local_kms::REGION.into(),
        endpoint: Some(endpoint.into()),
        credentials: Some(StaticCredentials::from_credentials(&creds).unwrap()),
        policy: policy.into(),
    })
    .unwrap()
}

/// A compact JWS over a fixed payload, signed by `sign`.
fn jws(alg: Algorithm, kid: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let header = URL_SAFE_NO_PAD
        .encode(serde_json::json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"s","exp":4102444800}"#);
    let input = format!("{header}.{claims}");
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Verifies `token` with jsonwebtoken and the public JWK `jwk`.
fn verify_independently(alg: Algorithm, jwk: &serde_json::Value, token: &str) {
    let decoding =
        jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(alg.as_str().parse().unwrap());
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<serde_json::Value>(token, &decoding, &validation)
        .unwrap_or_else(|e| panic!("{alg}: jsonwebtoken refused the token: {e}"));
}

/// Held by each test: the throttling counter and the providers a key read
/// back from a stored set is bound to are process-wide.
static THROTTLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn throttled_so_far() -> u64 {
    throttled_counter()
        .get_or_create(&ProviderLabels { provider: AWSKMS })
        .get()
}

#[test]
fn keys_are_made_in_kms_sign_verify_are_adopted_and_have_their_deletion_scheduled() {
    let _alone = THROTTLING.lock().unwrap_or_else(|e| e.into_inner());
    let kms = LocalKms::start();
    let provider = provider(&kms.endpoint(), "test/lifecycle");
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::ES384] {
        let key = provider.generate(KeyParams::new(alg)).unwrap();
        // The reference is the full key ARN, in the policy's region.
        let arn: KmsArn = key.arn.to_string().parse().unwrap();
        assert_eq!(arn.region, local_kms::REGION);
        assert_eq!(arn.account, local_kms::ACCOUNT);
        // The kid is the RFC 7638 thumbprint of the key read back.
        assert_eq!(key.verifying.kid(), key.verifying.thumbprint(), "{alg}");
        let jwk = key.verifying.public_jwk();
        for member in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(jwk.get(member).is_none(), "{alg}: public JWK has {member}");
        }

        // Signed in KMS (DIGEST), verified by an independent library.
        let token = jws(alg, key.verifying.kid(), |m| {
            provider.sign(&key, m).unwrap()
        });
        verify_independently(alg, &jwk, &token);
        let width = token
            .rsplit('.')
            .next()
            .map(|s| URL_SAFE_NO_PAD.decode(s).unwrap().len());
        match alg {
            Algorithm::ES256 => assert_eq!(width, Some(64), "raw r||s"),
            Algorithm::ES384 => assert_eq!(width, Some(96), "raw r||s"),
            _ => assert_eq!(width, Some(256)),
        }

        // Adopted by ARN: the same public key and kid; and the key as read
        // back from a stored set (providers::bind) signs too.
        let adopted = provider.load(&arn, alg).unwrap();
        assert_eq!(adopted.verifying, key.verifying, "{alg}");
        let bound = providers::bind(&key.arn.to_string(), &key.verifying).unwrap();
        let token = jws(alg, key.verifying.kid(), |m| bound.sign(m).unwrap());
        verify_independently(alg, &jwk, &token);
        // A key of another family is not adopted as this algorithm.
        let other = if alg.is_rsa() {
            Algorithm::ES256
        } else {
            Algorithm::RS256
        };
        assert!(provider.load(&arn, other).is_err(), "{alg}");

        // Pruned: deletion scheduled (7 days); a second time is a no-op.
        let text = key.arn.to_string();
        assert_eq!(provider.key_state(&text).unwrap(), Some(KeyState::Enabled));
        providers::destroy(&text).unwrap();
        assert_eq!(
            provider.key_state(&text).unwrap(),
            Some(KeyState::PendingDeletion),
            "{alg}"
        );
        providers::destroy(&text).unwrap();
        let err = provider.sign(&key, b"m").unwrap_err();
        assert_eq!(providers::failure_reason(&err), "KMSFailed", "{err}");
    }
    // KMS has no Ed25519 signing keys: refused before any call.
    assert!(provider.generate(KeyParams::new(Algorithm::EdDSA)).is_err());

    // local-kms signs RSASSA_PSS with Go's default, the longest salt, where
    // AWS KMS (and JWS PS*) use a salt of the hash length: the signature
    // does not verify with the public key, so the key is refused at its
    // self-test and never enters a set. A provider whose output does not
    // check out never makes a token.
    let err = provider
        .generate(KeyParams::new(Algorithm::PS256))
        .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
}

#[test]
fn a_throttled_kms_is_retried_with_backoff_and_counted_not_an_outage() {
    let _alone = THROTTLING.lock().unwrap_or_else(|e| e.into_inner());
    let kms = LocalKms::start();
    let proxy = Throttler::start(kms.addr);
    let provider = provider(&proxy.endpoint(), "test/throttled");
    let key = provider.generate(KeyParams::new(Algorithm::ES256)).unwrap();

    // The next three Signs are throttled: the fourth attempt signs.
    let before = throttled_so_far();
    proxy.throttle.store(3, Ordering::SeqCst);
    let started = Instant::now();
    let token = jws(Algorithm::ES256, key.verifying.kid(), |m| {
        provider.sign(&key, m).unwrap()
    });
    let took = started.elapsed();
    verify_independently(Algorithm::ES256, &key.verifying.public_jwk(), &token);
    assert_eq!(proxy.throttled.load(Ordering::SeqCst), 3);
    assert_eq!(throttled_so_far() - before, 3, "every throttle is counted");
    // Backed off: at least half of 50 + 100 + 200 ms (the jitter's floor).
    assert!(took >= Duration::from_millis(175), "{took:?}");

    // Throttled for good: a clear error within the call's budget, naming
    // the provider and KMS's code, never the secret.
    proxy.throttle.store(u32::MAX, Ordering::SeqCst);
    let started = Instant::now();
    let err = provider.sign(&key, b"m").unwrap_err();
    assert!(started.elapsed() <= CALL_BUDGET + Duration::from_secs(1));
    let text = err.to_string();
    assert!(text.starts_with("AWSKMS"), "{text}");
    assert!(text.contains("ThrottlingException"), "{text}");
    assert!(!text.contains(local_kms::SECRET_ACCESS_KEY), "{text}");
    proxy.throttle.store(0, Ordering::SeqCst);
    assert!(
        provider.sign(&key, b"m").is_ok(),
        "signs again once KMS does"
    );
}

#[test]
fn a_refused_or_unreachable_kms_is_a_quick_clear_error_and_leaves_no_half_made_key() {
    let _alone = THROTTLING.lock().unwrap_or_else(|e| e.into_inner());
    // Refused: CreateKey denied.
    let kms = LocalKms::start();
    let proxy = Throttler::start(kms.addr);
    let provider = provider(&proxy.endpoint(), "test/refused");
    proxy.refuse_create.store(true, Ordering::SeqCst);
    let err = provider
        .generate(KeyParams::new(Algorithm::RS256))
        .unwrap_err();
    assert_eq!(err.provider(), AWSKMS);
    assert_eq!(providers::failure_reason(&err), "KMSFailed");
    assert!(err.to_string().contains("AccessDeniedException"), "{err}");

    // A key made but failing a later step (here its self-test signature,
    // throttled until the call gives up) has its deletion scheduled at once.
    proxy.refuse_create.store(false, Ordering::SeqCst);
    let calls_before = proxy.calls.lock().unwrap().len();
    proxy.throttle.store(u32::MAX, Ordering::SeqCst);
    let err = provider
        .generate(KeyParams::new(Algorithm::ES256))
        .unwrap_err();
    assert!(err.to_string().contains("ThrottlingException"), "{err}");
    let calls: Vec<String> = proxy.calls.lock().unwrap()[calls_before..].to_vec();
    assert_eq!(
        calls.first().map(String::as_str),
        Some("TrentService.CreateKey")
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("TrentService.ScheduleKeyDeletion"),
        "{calls:?}"
    );
    proxy.throttle.store(0, Ordering::SeqCst);

    // Unreachable: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let provider = self::provider(&endpoint, "test/unreachable");
    let started = Instant::now();
    let err = provider
        .generate(KeyParams::new(Algorithm::ES256))
        .unwrap_err();
    assert!(started.elapsed() <= CALL_BUDGET + Duration::from_secs(1));
    assert_eq!(providers::failure_reason(&err), "KMSFailed");
    assert!(err.to_string().contains("Unreachable"), "{err}");
    assert!(!err.to_string().contains(local_kms::SECRET_ACCESS_KEY));
}

/// The service-account signer's Sign through a KMS-held key: the header
/// names the key, the signature (made in KMS, DIGEST mode, converted to
/// `r‖s`) verifies with jsonwebtoken against the key's public JWK.
#[test]
fn the_signers_sign_goes_through_kms() {
    use jwks_operator::keys::SigningKey;
    use jwks_operator::keys::lifecycle::{KeySet, KeyState as Lifecycle, ManagedKey};
    use jwks_operator::providers::kms::KmsSigner;
    use jwks_operator::signer::pb::SignJwtRequest;
    use jwks_operator::signer::pb::external_jwt_signer_server::ExternalJwtSigner as _;
    use jwks_operator::signer::service::{Lifetimes, Service, SignerState};

    let _alone = THROTTLING.lock().unwrap_or_else(|e| e.into_inner());
    let kms = LocalKms::start();
    let provider = provider(&kms.endpoint(), "test/signer");
    let key = provider.generate(KeyParams::new(Algorithm::ES256)).unwrap();
    let jwk = key.verifying.public_jwk();
    let kid = key.verifying.kid().to_owned();
    let remote = SigningKey::remote(
        KeyParams::new(Algorithm::ES256),
        key.verifying.clone(),
        std::sync::Arc::new(KmsSigner::on(provider, key)),
    );
    let now = jiff::Timestamp::now();
    let set = KeySet {
        keys: vec![ManagedKey {
            key: std::sync::Arc::new(remote),
            state: Lifecycle::Active,
            created_at: now,
            activates_at: now,
            retired_at: None,
            prune_after: None,
            reason: None,
            max_token_ttl: Duration::from_secs(3600),
        }],
        ..KeySet::default()
    };
    let state = SignerState::new(Lifetimes {
        announce: Duration::from_secs(3600),
        sign_cap: Duration::from_secs(3600),
        clock_skew: Duration::from_secs(60),
    });
    state.publish(&set, &Default::default(), Duration::from_secs(5), now);
    let iat = now.as_second();
    let claims = URL_SAFE_NO_PAD.encode(
        serde_json::json!({
            "iss": "https://kubernetes.default.svc",
            "sub": "system:serviceaccount:default:demo",
            "aud": ["https://kubernetes.default.svc"],
            "iat": iat, "nbf": iat, "exp": iat + 600,
        })
        .to_string(),
    );
    // The gRPC service as tonic runs it: on a multi-threaded runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let request = tonic::Request::new(SignJwtRequest {
        claims: claims.clone(),
    });
    let signed = runtime
        .block_on(Service::new(state).sign(request))
        .unwrap()
        .into_inner();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&signed.header).unwrap()).unwrap();
    assert_eq!(header["kid"], kid.as_str());
    assert_eq!(header["alg"], "ES256");
    let token = format!("{}.{claims}.{}", signed.header, signed.signature);
    let decoding =
        jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["https://kubernetes.default.svc"]);
    jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
}
