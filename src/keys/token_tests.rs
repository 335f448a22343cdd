// Over 600 lines on purpose: one test per minting and verification rule, with
// jsonwebtoken as an independent check.

use serde_json::json;

use super::*;
use crate::keys::testing::{fixture_keys, key, other_key};

const NOW: i64 = 1_750_000_000;
const HOUR: Duration = Duration::from_secs(3600);
const SKEW: Duration = Duration::from_secs(60);

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn settings() -> MintSettings {
    MintSettings {
        issuer: Some("https://issuer.example".into()),
        audiences: vec!["api".into()],
        max_ttl: HOUR,
    }
}

fn expect() -> Expectations {
    Expectations {
        issuer: Some("https://issuer.example".into()),
        audiences: vec!["api".into()],
        leeway: SKEW,
    }
}

fn verifier() -> Verifier {
    Verifier::new(fixture_keys().iter().map(SigningKey::verifying_key))
}

fn mint_for(k: &SigningKey, req: &TokenRequest, now: i64) -> String {
    mint_token(k, req, &settings(), at(now), "jti-1")
        .unwrap()
        .token
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with an arbitrary header, claims and signature bytes.
fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

/// Signs an arbitrary header and claims with `k` (so only the header is "wrong").
fn sign_raw(k: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = k.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

fn good_claims() -> Value {
    json!({"iss": "https://issuer.example", "aud": "api", "iat": NOW, "nbf": NOW, "exp": NOW + 600})
}

fn code(r: Result<VerifiedToken, TokenError>) -> &'static str {
    match r {
        Ok(v) => panic!("token verified: {:?}", v.claims),
        Err(e) => e.code(),
    }
}

// === minting ===

#[test]
fn minted_tokens_verify_for_every_algorithm() {
    let v = verifier();
    for k in fixture_keys() {
        let token = mint_for(k, &TokenRequest::default(), NOW);
        let ok = v.verify(&token, &expect(), at(NOW)).unwrap();
        assert_eq!(ok.kid, k.kid());
        assert_eq!(ok.alg, k.alg());
        assert_eq!(ok.claims["exp"], NOW + 3600);

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(k.kid()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(format!("{:?}", header.alg), k.alg().as_str());
    }
}

#[test]
fn the_payload_is_exactly_the_built_claims_and_the_header_exactly_three_members() {
    // A kid that needs JSON escaping (adopted key sets keep their own kids).
    let mut jwk = key(Algorithm::ES256).private_jwk();
    jwk["kid"] = json!("odd \"kid\" \\ é");
    let k = SigningKey::from_private_jwk(&jwk).unwrap();
    let req = TokenRequest {
        sub: Some("alice".into()),
        aud: Some(vec!["a".into(), "b".into()]),
        ttl: Some(Duration::from_secs(60)),
        claims: json!({"scope": "read", "n": 1, "nested": {"x": [true, null]}})
            .as_object()
            .unwrap()
            .clone(),
    };
    let token = mint_token(&k, &req, &settings(), at(NOW), "jti-9").unwrap();
    let segment = |i: usize| -> Value {
        let part = token.token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(
        segment(0),
        json!({"alg": "ES256", "kid": "odd \"kid\" \\ é", "typ": "JWT"})
    );
    let built = build_claims(&req, &settings(), at(NOW), "jti-9").unwrap();
    assert_eq!(segment(1), Value::Object(built));
    assert_eq!(segment(1)["aud"], json!(["a", "b"]));
    assert_eq!(token.expires_at, at(NOW + 60));
    assert_eq!(token.kid, "odd \"kid\" \\ é");
}

#[test]
fn minted_tokens_verify_with_plain_jsonwebtoken() {
    // Our compact serialization is what a stock JWT library expects.
    for k in fixture_keys() {
        let token = mint_for(k, &TokenRequest::default(), NOW);
        let mut validation = jsonwebtoken::Validation::new(jwt_alg(k.alg()));
        validation.validate_exp = false;
        validation.set_audience(&["api"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            &token,
            &k.verifying_key().to_decoding_key(),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["jti"], "jti-1");
    }
}

#[test]
fn claims_carry_iss_sub_aud_times_and_jti() {
    let req = TokenRequest {
        sub: Some("alice".into()),
        aud: None,
        ttl: Some(Duration::from_secs(300)),
        claims: json!({"scope": "read"}).as_object().unwrap().clone(),
    };
    let claims = build_claims(&req, &settings(), at(NOW), "abc").unwrap();
    assert_eq!(
        Value::Object(claims),
        json!({
            "iss": "https://issuer.example",
            "sub": "alice",
            "aud": "api",
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + 300,
            "jti": "abc",
            "scope": "read",
        })
    );
}

#[test]
fn ttl_defaults_to_and_may_not_exceed_max_token_ttl() {
    let claims = build_claims(&TokenRequest::default(), &settings(), at(NOW), "j").unwrap();
    assert_eq!(claims["exp"], NOW + 3600);

    let exactly_max = TokenRequest {
        ttl: Some(HOUR),
        ..TokenRequest::default()
    };
    assert!(build_claims(&exactly_max, &settings(), at(NOW), "j").is_ok());

    let too_long = TokenRequest {
        ttl: Some(HOUR + Duration::from_secs(1)),
        ..TokenRequest::default()
    };
    let err = build_claims(&too_long, &settings(), at(NOW), "j").unwrap_err();
    assert_eq!(err.code(), "ttl_too_long");
    assert!(err.is_client_error());

    let zero = TokenRequest {
        ttl: Some(Duration::from_millis(500)),
        ..TokenRequest::default()
    };
    assert_eq!(
        build_claims(&zero, &settings(), at(NOW), "j")
            .unwrap_err()
            .code(),
        "ttl_too_short"
    );
}

#[test]
fn audiences_are_a_string_an_array_or_absent() {
    let mut s = settings();
    let req = |aud: Option<Vec<&str>>| TokenRequest {
        aud: aud.map(|a| a.into_iter().map(String::from).collect()),
        ..TokenRequest::default()
    };
    let aud = |s: &MintSettings, r: &TokenRequest| {
        build_claims(r, s, at(NOW), "j")
            .unwrap()
            .get("aud")
            .cloned()
    };
    assert_eq!(aud(&s, &req(None)), Some(json!("api")));
    assert_eq!(aud(&s, &req(Some(vec!["a", "b"]))), Some(json!(["a", "b"])));
    assert_eq!(aud(&s, &req(Some(vec![]))), None);
    s.audiences.clear();
    s.issuer = None;
    let claims = build_claims(&req(None), &s, at(NOW), "j").unwrap();
    assert!(claims.get("aud").is_none() && claims.get("iss").is_none());
}

#[test]
fn extra_claims_cannot_override_registered_ones() {
    for name in RESERVED_CLAIMS {
        let req = TokenRequest {
            claims: json!({ name: "x" }).as_object().unwrap().clone(),
            ..TokenRequest::default()
        };
        let err = build_claims(&req, &settings(), at(NOW), "j").unwrap_err();
        assert_eq!(err.code(), "reserved_claim", "{name}");
    }
}

#[test]
fn minted_token_reports_kid_and_expiry() {
    let k = key(Algorithm::ES256);
    let minted = mint_token(k, &TokenRequest::default(), &settings(), at(NOW), "j").unwrap();
    assert_eq!(minted.kid, k.kid());
    assert_eq!(minted.expires_at, at(NOW + 3600));
}

// === verification: rejections ===

#[test]
fn rejects_alg_none() {
    let k = key(Algorithm::RS256);
    let header = json!({"alg": "none", "kid": k.kid(), "typ": "JWT"});
    let token = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(good_claims().to_string().as_bytes())
    );
    assert_eq!(
        code(verifier().verify(&token, &expect(), at(NOW))),
        "algorithm_not_allowed"
    );
    let token = forge(
        &json!({"alg": "None", "kid": k.kid()}),
        &good_claims(),
        b"x",
    );
    assert_eq!(
        code(verifier().verify(&token, &expect(), at(NOW))),
        "algorithm_not_allowed"
    );
}

#[test]
fn rejects_hmac_even_keyed_with_the_public_key() {
    // The classic confusion attack: HS256 with the RSA public key as the secret.
    let k = key(Algorithm::RS256);
    let header = json!({"alg": "HS256", "kid": k.kid(), "typ": "JWT"});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(good_claims().to_string().as_bytes())
    );
    let secret = k.public_jwk()["n"].as_str().unwrap().to_string();
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
        input.as_bytes(),
    );
    let token = format!("{input}.{}", b64(mac.as_ref()));
    assert_eq!(
        code(verifier().verify(&token, &expect(), at(NOW))),
        "algorithm_not_allowed"
    );
    for alg in ["HS384", "HS512", "RSA-OAEP", ""] {
        let token = forge(&json!({"alg": alg, "kid": k.kid()}), &good_claims(), b"sig");
        assert_eq!(
            code(verifier().verify(&token, &expect(), at(NOW))),
            "algorithm_not_allowed"
        );
    }
}

#[test]
fn accepts_only_the_algorithm_of_the_key_named_by_kid() {
    let v = verifier();
    // An RSA key labelled RS256 signs with PS256 and claims PS256: refused.
    let rs = key(Algorithm::RS256);
    let as_pss = SigningKey::from_private_jwk(&{
        let mut j = rs.private_jwk();
        j["alg"] = json!("PS256");
        j
    })
    .unwrap();
    let token = sign_raw(
        &as_pss,
        &json!({"alg": "PS256", "kid": rs.kid()}),
        &good_claims(),
    );
    assert_eq!(
        code(v.verify(&token, &expect(), at(NOW))),
        "algorithm_not_allowed"
    );

    // An EC kid with an RSA alg header: refused before any signature check.
    let ec = key(Algorithm::ES256);
    let token = sign_raw(
        rs,
        &json!({"alg": "RS256", "kid": ec.kid()}),
        &good_claims(),
    );
    assert_eq!(
        code(v.verify(&token, &expect(), at(NOW))),
        "algorithm_not_allowed"
    );

    // ES384 header on a P-256 key.
    let token = sign_raw(
        ec,
        &json!({"alg": "ES384", "kid": ec.kid()}),
        &good_claims(),
    );
    assert_eq!(
        code(v.verify(&token, &expect(), at(NOW))),
        "algorithm_not_allowed"
    );
}

#[test]
fn during_an_algorithm_change_each_key_verifies_its_own_tokens() {
    let old = key(Algorithm::RS256);
    let new = key(Algorithm::ES256);
    let v = Verifier::new([old.verifying_key(), new.verifying_key()]);
    for k in [old, new] {
        let token = mint_for(k, &TokenRequest::default(), NOW);
        assert_eq!(v.verify(&token, &expect(), at(NOW)).unwrap().kid, k.kid());
    }
}

#[test]
fn rejects_unknown_and_missing_kid() {
    let k = key(Algorithm::ES256);
    let v = Verifier::new([key(Algorithm::RS256).verifying_key()]);
    let token = mint_for(k, &TokenRequest::default(), NOW);
    assert_eq!(code(v.verify(&token, &expect(), at(NOW))), "unknown_kid");

    let token = sign_raw(k, &json!({"alg": "ES256"}), &good_claims());
    assert_eq!(
        code(verifier().verify(&token, &expect(), at(NOW))),
        "missing_kid"
    );
}

#[test]
fn rejects_signatures_by_other_keys_and_tampered_tokens() {
    let v = verifier();
    for k in fixture_keys() {
        // Same kid, other key material.
        let other = other_key(k.alg());
        let token = sign_raw(
            &other,
            &json!({"alg": k.alg().as_str(), "kid": k.kid()}),
            &good_claims(),
        );
        assert_eq!(
            code(v.verify(&token, &expect(), at(NOW))),
            "bad_signature",
            "{:?}",
            k.params()
        );

        // Payload swapped after signing.
        let token = mint_for(k, &TokenRequest::default(), NOW);
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = good_claims();
        claims["sub"] = json!("admin");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            code(v.verify(&tampered, &expect(), at(NOW))),
            "bad_signature"
        );

        // Truncated signature: either no longer base64url or too short.
        for cut in [1, 2, 4, 10] {
            let truncated = &token[..token.len() - cut];
            let c = code(v.verify(truncated, &expect(), at(NOW)));
            assert!(matches!(c, "bad_signature" | "malformed"), "{c}");
        }
    }
}

#[test]
fn rejects_expired_tokens_after_the_leeway() {
    let v = verifier();
    let k = key(Algorithm::EdDSA);
    let token = mint_for(k, &TokenRequest::default(), NOW); // exp = NOW + 3600
    let exp = NOW + 3600;
    assert!(v.verify(&token, &expect(), at(exp - 1)).is_ok());
    assert!(
        v.verify(&token, &expect(), at(exp + 59)).is_ok(),
        "within clock skew"
    );
    assert_eq!(code(v.verify(&token, &expect(), at(exp + 60))), "expired");
    let no_skew = Expectations {
        leeway: Duration::ZERO,
        ..expect()
    };
    assert_eq!(code(v.verify(&token, &no_skew, at(exp))), "expired");
}

#[test]
fn rejects_tokens_not_yet_valid_beyond_the_leeway() {
    let v = verifier();
    let k = key(Algorithm::ES384);
    let token = mint_for(k, &TokenRequest::default(), NOW); // nbf = iat = NOW
    assert!(
        v.verify(&token, &expect(), at(NOW - 60)).is_ok(),
        "within clock skew"
    );
    assert_eq!(
        code(v.verify(&token, &expect(), at(NOW - 61))),
        "not_yet_valid"
    );

    // A future iat alone is also refused.
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("nbf");
    claims["iat"] = json!(NOW + 120);
    let token = sign_raw(k, &json!({"alg": "ES384", "kid": k.kid()}), &claims);
    assert_eq!(code(v.verify(&token, &expect(), at(NOW))), "not_yet_valid");
}

#[test]
fn requires_a_numeric_exp() {
    let v = verifier();
    let k = key(Algorithm::ES256);
    let header = json!({"alg": "ES256", "kid": k.kid()});
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        code(v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW))),
        "missing_claim"
    );
    claims["exp"] = json!("tomorrow");
    assert_eq!(
        code(v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW))),
        "malformed"
    );
    claims["exp"] = json!((NOW + 10) as f64 + 0.5);
    assert!(
        v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW))
            .is_ok()
    );
}

#[test]
fn refuses_time_claims_beyond_representable_time_instead_of_saturating() {
    // Each of these used to saturate to i64::MAX/MIN: an `exp` that never
    // expires, an `iat` at the beginning of time.
    let v = verifier();
    let k = key(Algorithm::ES256);
    let header = json!({"alg": "ES256", "kid": k.kid()});
    let huge = [
        json!(1e300),
        json!(-1e300),
        json!(u64::MAX),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(9.3e18),
        json!(253_402_300_800i64), // 10000-01-01T00:00:00Z
        json!(Timestamp::MAX.as_second() + 1),
        json!(Timestamp::MIN.as_second() - 1),
    ];
    for name in ["exp", "nbf", "iat"] {
        for value in &huge {
            let mut claims = good_claims();
            claims[name] = value.clone();
            let r = v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW));
            assert!(
                matches!(
                    r,
                    Err(TokenError::Malformed("a time claim is out of range"))
                ),
                "{name} = {value}: {:?}",
                r.map(|ok| ok.claims)
            );
        }
    }
    // The last representable second (late on 9999-12-30) is a valid `exp`.
    let mut claims = good_claims();
    claims["exp"] = json!(Timestamp::MAX.as_second());
    assert!(
        v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW))
            .is_ok()
    );
}

#[test]
fn rejects_wrong_or_missing_issuer() {
    let v = verifier();
    let k = key(Algorithm::PS256);
    let header = json!({"alg": "PS256", "kid": k.kid()});
    let mut claims = good_claims();
    claims["iss"] = json!("https://evil.example");
    assert_eq!(
        code(v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW))),
        "wrong_issuer"
    );
    claims.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        code(v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW))),
        "wrong_issuer"
    );
    let any_issuer = Expectations {
        issuer: None,
        ..expect()
    };
    assert!(
        v.verify(&sign_raw(k, &header, &claims), &any_issuer, at(NOW))
            .is_ok()
    );
}

#[test]
fn rejects_wrong_or_missing_audience() {
    let v = verifier();
    let k = key(Algorithm::RS512);
    let header = json!({"alg": "RS512", "kid": k.kid()});
    let mut claims = good_claims();
    claims["aud"] = json!("other");
    assert_eq!(
        code(v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW))),
        "wrong_audience"
    );
    claims["aud"] = json!(["other", "api"]);
    assert!(
        v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW))
            .is_ok(),
        "one match suffices"
    );
    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        code(v.verify(&sign_raw(k, &header, &claims), &expect(), at(NOW))),
        "wrong_audience"
    );

    // With no expected audiences, aud is not checked at all.
    claims["aud"] = json!("anything");
    let any_aud = Expectations {
        audiences: vec![],
        ..expect()
    };
    assert!(
        v.verify(&sign_raw(k, &header, &claims), &any_aud, at(NOW))
            .is_ok()
    );
}

#[test]
fn rejects_critical_headers() {
    let k = key(Algorithm::ES256);
    let token = sign_raw(
        k,
        &json!({"alg": "ES256", "kid": k.kid(), "crit": ["exp"]}),
        &good_claims(),
    );
    assert_eq!(
        code(verifier().verify(&token, &expect(), at(NOW))),
        "unsupported_header"
    );
}

#[test]
fn rejects_malformed_tokens_without_panicking() {
    let v = verifier();
    let k = key(Algorithm::ES256);
    let good = mint_for(k, &TokenRequest::default(), NOW);
    let parts: Vec<&str> = good.split('.').collect();
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    let cases: Vec<String> = vec![
        String::new(),
        ".".into(),
        "..".into(),
        "garbage".into(),
        parts[..2].join("."),
        format!("{good}.extra"),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("!!!.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":7,"kid":"x"}"#),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"ES256","kid":7}"#),
            parts[1],
            parts[2]
        ),
        format!("{}.{}.{}", parts[0], parts[1], "***"),
        format!("{}.{}.{}", parts[0], "***", parts[2]),
        long,
        "\u{0}\u{1}.\u{2}.\u{3}".into(),
        "eyJ.eyJ.eyJ".into(),
    ];
    for token in cases {
        let err = v.verify(&token, &expect(), at(NOW)).unwrap_err();
        assert!(
            matches!(err.code(), "malformed" | "bad_signature"),
            "{token:.40}: {err}"
        );
    }
    // A payload that is valid base64 but not a JSON object, correctly signed.
    let header = json!({"alg": "ES256", "kid": k.kid()});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(b"[1]"));
    let token = format!("{input}.{}", b64(&k.sign(input.as_bytes()).unwrap()));
    assert_eq!(code(v.verify(&token, &expect(), at(NOW))), "malformed");
}

#[test]
fn untrusted_values_in_errors_are_shortened() {
    let kid = "k".repeat(10_000);
    let token = forge(&json!({"alg": "ES256", "kid": kid}), &good_claims(), b"sig");
    let err = verifier().verify(&token, &expect(), at(NOW)).unwrap_err();
    assert_eq!(err.code(), "unknown_kid");
    assert!(err.to_string().len() < 200);
}

#[test]
fn verifier_from_the_public_set() {
    let doc = public_jwks_json_for_tests();
    let v = Verifier::from_public_jwks(&doc).unwrap();
    assert_eq!(v.kids().count(), fixture_keys().len());
    let token = mint_for(key(Algorithm::PS512), &TokenRequest::default(), NOW);
    assert!(v.verify(&token, &expect(), at(NOW)).is_ok());
}

fn public_jwks_json_for_tests() -> Vec<u8> {
    crate::keys::public_jwks_json(fixture_keys().iter().map(SigningKey::verifying_key))
}

#[test]
fn error_codes_are_stable() {
    let codes: Vec<&str> = [
        TokenError::Malformed("x"),
        TokenError::MissingKid,
        TokenError::UnknownKid("k".into()),
        TokenError::AlgorithmNotAllowed("none".into()),
        TokenError::UnsupportedHeader,
        TokenError::BadSignature,
        TokenError::Expired {
            exp: 0,
            now: 1,
            leeway: 0,
        },
        TokenError::NotYetValid {
            not_before: 1,
            now: 0,
            leeway: 0,
        },
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
        TokenError::MissingClaim("exp"),
        TokenError::TtlTooLong {
            requested: 2,
            max: 1,
        },
        TokenError::TtlTooShort,
        TokenError::ReservedClaim("iss".into()),
    ]
    .iter()
    .map(TokenError::code)
    .collect();
    assert_eq!(
        codes,
        [
            "malformed",
            "missing_kid",
            "unknown_kid",
            "algorithm_not_allowed",
            "unsupported_header",
            "bad_signature",
            "expired",
            "not_yet_valid",
            "wrong_issuer",
            "wrong_audience",
            "missing_claim",
            "ttl_too_long",
            "ttl_too_short",
            "reserved_claim",
        ]
    );
}

// === jsonwebtoken as an oracle ===

/// What jsonwebtoken says about `token` under `key` with the same rules as
/// `expect` (time checks off: the corpus is always within its lifetime).
fn oracle(token: &str, key: &VerifyingKey, expect: &Expectations) -> bool {
    let mut validation = jsonwebtoken::Validation::new(jwt_alg(key.alg()));
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    if let Some(iss) = &expect.issuer {
        validation.set_issuer(&[iss]);
        validation.required_spec_claims.insert("iss".into());
    }
    if expect.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&expect.audiences);
        validation.required_spec_claims.insert("aud".into());
    }
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.to_decoding_key(), &validation).is_ok()
}

/// Our verdict, and jsonwebtoken's for the key the token's `kid` names.
fn verdicts(v: &Verifier, token: &str, expect: &Expectations) -> (bool, Option<bool>) {
    let ours = v.verify(token, expect, at(NOW)).is_ok();
    let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
    let key = kid.and_then(|kid| fixture_keys().iter().find(|k| k.kid() == kid));
    (ours, key.map(|k| oracle(token, k.verifying_key(), expect)))
}

#[test]
fn agrees_with_jsonwebtoken_on_signatures() {
    let v = verifier();
    let mut corpus = Vec::new();
    for k in fixture_keys() {
        let token = mint_for(k, &TokenRequest::default(), NOW);
        let parts: Vec<&str> = token.split('.').collect();
        let other = other_key(k.alg());
        corpus.push(token.clone());
        corpus.push(sign_raw(
            &other,
            &json!({"alg": k.alg().as_str(), "kid": k.kid()}),
            &good_claims(),
        ));
        corpus.push(format!(
            "{}.{}.{}",
            parts[0],
            b64(good_claims().to_string().as_bytes()),
            parts[2]
        ));
        corpus.push(format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() - 8]
        ));
        corpus.push(format!("{}.{}.", parts[0], parts[1]));
        corpus.push(format!("{}.{}.{}", parts[0], parts[1], b64(&[0; 64])));
    }
    for token in &corpus {
        let (ours, theirs) = verdicts(&v, token, &expect());
        assert_eq!(Some(ours), theirs, "disagreement on {token}");
    }
    assert!(
        corpus
            .iter()
            .filter(|t| v.verify(t, &expect(), at(NOW)).is_ok())
            .count()
            == fixture_keys().len()
    );
}

#[test]
fn agrees_with_jsonwebtoken_on_issuer_and_audience() {
    let v = verifier();
    let k = key(Algorithm::ES256);
    let header = json!({"alg": "ES256", "kid": k.kid()});
    let issuers = [
        None,
        Some(json!("https://issuer.example")),
        Some(json!("https://other.example")),
    ];
    let audiences = [
        None,
        Some(json!("api")),
        Some(json!("web")),
        Some(json!(["web", "api"])),
        Some(json!(["web"])),
        Some(json!([])),
    ];
    let expectations = [
        expect(),
        Expectations {
            issuer: None,
            ..expect()
        },
        Expectations {
            audiences: vec![],
            ..expect()
        },
        Expectations {
            audiences: vec!["web".into(), "mobile".into()],
            ..expect()
        },
    ];
    for iss in &issuers {
        for aud in &audiences {
            let mut claims = json!({"exp": NOW + 60});
            if let Some(iss) = iss {
                claims["iss"] = iss.clone();
            }
            if let Some(aud) = aud {
                claims["aud"] = aud.clone();
            }
            let token = sign_raw(k, &header, &claims);
            for e in &expectations {
                let (ours, theirs) = verdicts(&v, &token, e);
                assert_eq!(Some(ours), theirs, "iss {iss:?} aud {aud:?} expect {e:?}");
            }
        }
    }
    // Where we are stricter on purpose: `iss` is a single string (RFC 7519),
    // jsonwebtoken also accepts an array containing the issuer.
    let token = sign_raw(
        k,
        &header,
        &json!({"exp": NOW + 60, "aud": "api", "iss": ["https://issuer.example"]}),
    );
    assert_eq!(code(v.verify(&token, &expect(), at(NOW))), "wrong_issuer");
}

mod mutations {
    use proptest::prelude::*;

    use super::*;

    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

    fn tokens() -> Vec<String> {
        [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .iter()
            .map(|alg| mint_for(key(*alg), &TokenRequest::default(), NOW))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any one-character change or truncation of a valid token is
        /// refused (never a panic), exactly when jsonwebtoken refuses it.
        #[test]
        fn mutated_tokens_are_refused_like_jsonwebtoken_does(
            which in 0usize..3,
            pos in any::<prop::sample::Index>(),
            ch in prop::sample::select(B64URL),
            truncate in any::<bool>(),
        ) {
            let token = tokens()[which].clone();
            let i = pos.index(token.len());
            let mutated = if truncate {
                token[..i].to_string()
            } else {
                let mut bytes = token.clone().into_bytes();
                bytes[i] = ch;
                String::from_utf8(bytes).unwrap()
            };
            let (ours, theirs) = verdicts(&verifier(), &mutated, &expect());
            if mutated == token {
                prop_assert!(ours);
            } else {
                prop_assert!(!ours, "mutated token accepted: {}", mutated);
            }
            if let Some(theirs) = theirs {
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}

#[test]
fn alg_none_is_refused_as_such_even_without_kid() {
    let token = forge(&json!({"alg": "none"}), &good_claims(), b"");
    assert_eq!(
        code(verifier().verify(&token, &expect(), at(NOW))),
        "algorithm_not_allowed"
    );
}

#[test]
fn an_empty_header_is_missing_kid_and_a_kid_without_alg_is_malformed() {
    let token = forge(&json!({}), &good_claims(), b"sig");
    assert_eq!(
        code(verifier().verify(&token, &expect(), at(NOW))),
        "missing_kid"
    );
    let k = key(Algorithm::ES256);
    let token = forge(&json!({"kid": k.kid()}), &good_claims(), b"sig");
    assert_eq!(
        code(verifier().verify(&token, &expect(), at(NOW))),
        "malformed"
    );
}
