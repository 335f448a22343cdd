//! The pure parts of the KMS provider: key specs, signing algorithms,
//! digests, DER and SPKI conversions, ARNs, the retry classes and the
//! backoff schedule. The calls themselves are tested against local-kms in
//! tests/provider_kms.rs.

use super::*;
use crate::keys::testing::fixture;

#[test]
fn every_algorithm_kms_can_sign_has_a_key_spec_and_a_signing_algorithm() {
    for alg in Algorithm::ALL {
        let params = KeyParams::new(alg);
        match alg {
            Algorithm::EdDSA => {
                assert!(key_spec(params).is_err());
                assert!(signing_algorithm(alg).is_none());
            }
            _ => {
                let spec = key_spec(params).unwrap();
                assert!(spec_fits(&spec, alg), "{alg}");
                assert!(signing_algorithm(alg).is_some(), "{alg}");
            }
        }
    }
    assert_eq!(
        key_spec(KeyParams {
            alg: Algorithm::PS384,
            rsa_bits: Some(4096)
        })
        .unwrap(),
        KeySpec::Rsa4096
    );
    assert!(
        key_spec(KeyParams {
            alg: Algorithm::RS256,
            rsa_bits: Some(1024)
        })
        .is_err()
    );
    assert_eq!(
        signing_algorithm(Algorithm::PS256),
        Some(SigningAlgorithmSpec::RsassaPssSha256)
    );
    assert_eq!(
        signing_algorithm(Algorithm::RS512),
        Some(SigningAlgorithmSpec::RsassaPkcs1V15Sha512)
    );
    assert!(!spec_fits(&KeySpec::EccNistP256, Algorithm::ES384));
    assert!(!spec_fits(&KeySpec::EccNistP384, Algorithm::RS256));
}

#[test]
fn digests_follow_the_algorithms_hash() {
    for (alg, len) in [
        (Algorithm::ES256, 32),
        (Algorithm::RS256, 32),
        (Algorithm::PS256, 32),
        (Algorithm::ES384, 48),
        (Algorithm::RS384, 48),
        (Algorithm::PS512, 64),
        (Algorithm::RS512, 64),
    ] {
        assert_eq!(digest(alg, b"m").len(), len, "{alg}");
    }
    assert_eq!(
        digest(Algorithm::ES256, b"abc"),
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"abc").as_ref()
    );
}

/// What a KMS `Sign` of ECDSA returns (DER) becomes a JOSE `r‖s` that the
/// key's public half verifies; a truncated DER is refused.
#[test]
fn ecdsa_der_becomes_fixed_width_r_s_that_verifies() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING};
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _};
    for (alg, signing, width) in [
        (Algorithm::ES256, &ECDSA_P256_SHA256_ASN1_SIGNING, 64),
        (Algorithm::ES384, &ECDSA_P384_SHA384_ASN1_SIGNING, 96),
    ] {
        let pair = EcdsaKeyPair::generate(signing).unwrap();
        let message = b"header.payload";
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // Many signatures, so some have r or s with leading zero bytes
        // (shorter DER integers), which must be left-padded.
        for _ in 0..64 {
            let der = pair.sign(&rng, message).unwrap();
            let jose = der_to_jose(alg, der.as_ref()).unwrap();
            assert_eq!(jose.len(), width, "{alg}");
            let verify = if alg == Algorithm::ES256 {
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED
            } else {
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED
            };
            aws_lc_rs::signature::UnparsedPublicKey::new(verify, pair.public_key().as_ref())
                .verify(message, &jose)
                .unwrap();
            let der = der.as_ref();
            assert!(der_to_jose(alg, &der[..der.len() - 1]).is_none());
        }
    }
    assert!(der_to_jose(Algorithm::RS256, &[0x30, 0]).is_none());
}

/// A DER SubjectPublicKeyInfo (what `GetPublicKey` returns) becomes the same
/// public JWK, with the same thumbprint kid, as the key it came from.
#[test]
fn spki_becomes_the_public_jwk_with_the_thumbprint_kid() {
    use p256::pkcs8::EncodePublicKey as _;
    for alg in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::PS512,
    ] {
        let key = fixture(alg);
        let jwk = key.verifying_key().public_jwk();
        let b64 = |m: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(jwk[m].as_str().unwrap())
                .unwrap()
        };
        let point = |x: Vec<u8>, y: Vec<u8>| [vec![4u8], x, y].concat();
        let spki = match alg {
            Algorithm::ES256 => p256::PublicKey::from_sec1_bytes(&point(b64("x"), b64("y")))
                .unwrap()
                .to_public_key_der()
                .unwrap()
                .into_vec(),
            Algorithm::ES384 => p384::PublicKey::from_sec1_bytes(&point(b64("x"), b64("y")))
                .unwrap()
                .to_public_key_der()
                .unwrap()
                .into_vec(),
            _ => rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(&b64("n")),
                rsa::BoxedUint::from_be_slice_vartime(&b64("e")),
            )
            .unwrap()
            .to_public_key_der()
            .unwrap()
            .into_vec(),
        };
        let read = public_jwk(alg, &spki).unwrap();
        assert_eq!(read["kid"], key.kid(), "{alg}");
        assert_eq!(read["alg"], alg.as_str());
        let verifying = VerifyingKey::from_public_jwk(&read).unwrap();
        let signature = key.sign(b"m").unwrap();
        verifying.verify_signature(b"m", &signature).unwrap();
        // The wrong algorithm family, or garbage, is an error, not a panic.
        let other = if alg.is_rsa() {
            Algorithm::ES256
        } else {
            Algorithm::RS256
        };
        assert!(public_jwk(other, &spki).is_err(), "{alg}");
        assert!(public_jwk(alg, &spki[..spki.len() / 2]).is_err(), "{alg}");
    }
    assert!(public_jwk(Algorithm::EdDSA, &[]).is_err());
}

#[test]
fn key_arns_round_trip_and_aliases_and_junk_are_refused() {
    let text = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let arn: KmsArn = text.parse().unwrap();
    assert_eq!(arn.region, "eu-west-1");
    assert_eq!(arn.account, "111122223333");
    assert_eq!(arn.to_string(), text);
    let mrk =
        "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    assert_eq!(mrk.parse::<KmsArn>().unwrap().to_string(), mrk);
    for bad in [
        "",
        "arn:aws:kms:eu-west-1:111122223333:alias/signing",
        "arn:aws:kms:eu-west-1:111122223333:key/",
        "arn:aws:kms:eu-west-1:1111:key/abc",
        "arn:aws:s3:eu-west-1:111122223333:key/abc",
        "arn:aws:kms:EU:111122223333:key/abc",
        "arn:aws:kms:eu-west-1:111122223333:key/a;b",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        &format!("arn:aws:kms:eu-west-1:111122223333:key/{}", "a".repeat(300)),
    ] {
        assert!(bad.parse::<KmsArn>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn throttling_and_transient_errors_are_retried_and_the_rest_is_not() {
    assert_eq!(
        classify(Some("ThrottlingException"), true),
        Class::Throttled
    );
    assert_eq!(
        classify(Some("KMSInternalException"), true),
        Class::Transient
    );
    assert_eq!(classify(None, false), Class::Transient);
    for fatal in [
        "AccessDeniedException",
        "NotFoundException",
        "KMSInvalidStateException",
        "DisabledException",
        "UnrecognizedClientException",
        "LimitExceededException",
    ] {
        assert_eq!(classify(Some(fatal), true), Class::Fatal, "{fatal}");
    }
}

#[test]
fn backoff_doubles_from_50ms_caps_at_1s_and_jitters_between_half_and_all() {
    assert_eq!(backoff(0, 1.0), Duration::from_millis(50));
    assert_eq!(backoff(0, 0.0), Duration::from_millis(25));
    assert_eq!(backoff(1, 1.0), Duration::from_millis(100));
    assert_eq!(backoff(3, 1.0), Duration::from_millis(400));
    assert_eq!(backoff(5, 1.0), Duration::from_secs(1));
    assert_eq!(backoff(40, 1.0), Duration::from_secs(1));
    assert_eq!(backoff(40, 0.0), Duration::from_millis(500));
    assert_eq!(backoff(2, 7.0), backoff(2, 1.0), "jitter is clamped");
    // The whole schedule fits the call's budget.
    let total: Duration = (0..MAX_ATTEMPTS - 1).map(|a| backoff(a, 1.0)).sum();
    assert!(total < CALL_BUDGET, "{total:?}");
}

#[test]
fn credentials_need_both_keys_and_never_show_their_values() {
    let c = Credentials::parse_env(
        b"AWS_ACCESS_KEY_ID=AKIDEXAMPLE\nAWS_SECRET_ACCESS_KEY=s3cr3t-value\n",
    )
    .unwrap();
    let s = StaticCredentials::from_credentials(&c).unwrap();
    assert!(!format!("{s:?}").contains("s3cr3t"));
    let only_id = Credentials::parse_env(b"AWS_ACCESS_KEY_ID=AKIDEXAMPLE\n").unwrap();
    let err = StaticCredentials::from_credentials(&only_id).unwrap_err();
    assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    assert!(!err.to_string().contains("AKIDEXAMPLE"), "{err}");
}
