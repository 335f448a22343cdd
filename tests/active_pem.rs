//! SPEC's `active.pem` is "for apps that sign with a PEM": a token signed by
//! a stock JWT library from our PKCS#8 PEM must verify against our published
//! keys.

use std::time::Duration;

use jiff::Timestamp;
use jwks_operator::keys::token::{Expectations, Verifier};
use jwks_operator::keys::{Algorithm, SigningKey, parse_private_jwks};
use serde_json::json;

#[test]
fn tokens_signed_by_jsonwebtoken_from_active_pem_verify() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/all-algorithms.jwks.json"
    ))
    .unwrap();
    let keys = parse_private_jwks(&bytes).unwrap();
    let verifier = Verifier::new(keys.iter().map(SigningKey::verifying_key));
    let expect = Expectations {
        issuer: None,
        audiences: vec![],
        leeway: Duration::from_secs(60),
    };
    for k in &keys {
        let pem = k.pkcs8_pem();
        let pem = pem.expose().as_bytes();
        let (encoding, alg) = match k.alg() {
            Algorithm::ES256 => (
                jsonwebtoken::EncodingKey::from_ec_pem(pem),
                jsonwebtoken::Algorithm::ES256,
            ),
            Algorithm::ES384 => (
                jsonwebtoken::EncodingKey::from_ec_pem(pem),
                jsonwebtoken::Algorithm::ES384,
            ),
            Algorithm::EdDSA => (
                jsonwebtoken::EncodingKey::from_ed_pem(pem),
                jsonwebtoken::Algorithm::EdDSA,
            ),
            other => (
                jsonwebtoken::EncodingKey::from_rsa_pem(pem),
                other.as_str().parse::<jsonwebtoken::Algorithm>().unwrap(),
            ),
        };
        let encoding =
            encoding.unwrap_or_else(|e| panic!("{} PEM rejected by jsonwebtoken: {e}", k.alg()));
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(k.kid().to_string());
        let token = jsonwebtoken::encode(
            &header,
            &json!({"sub": "pem", "exp": 2_000_000_000}),
            &encoding,
        )
        .unwrap();
        let ok = verifier
            .verify(
                &token,
                &expect,
                Timestamp::from_second(1_900_000_000).unwrap(),
            )
            .unwrap_or_else(|e| panic!("{} token from active.pem rejected: {e}", k.alg()));
        assert_eq!(ok.kid, k.kid());
    }
}
