// Over 600 lines on purpose: the strict JWK parser's rules, one test (or one
// table row) per rule, next to each other so a missing rule stands out.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::json;

use super::*;
use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::encoding::b64;
use super::params::Curve;
use crate::keys::alg::{Algorithm, KeyParams};
use crate::keys::testing::{fixture_keys, key, other_key};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// RFC 7638 section 3.1: the example RSA key and its published thumbprint.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
const RFC7638_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

const PUBLIC_MEMBERS: [&str; 9] = ["kty", "kid", "use", "alg", "crv", "n", "e", "x", "y"];
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn problem(err: KeyError) -> JwkProblem {
    err.jwk_problem()
        .cloned()
        .unwrap_or_else(|| panic!("not a JWK error: {err}"))
}

// === thumbprints and kids ===

#[test]
fn thumbprint_matches_rfc7638_example() {
    let jwk =
        json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
    assert_eq!(jwk_thumbprint(&jwk).unwrap(), RFC7638_THUMBPRINT);

    let key = VerifyingKey::from_public_jwk(&jwk).unwrap();
    assert_eq!(key.thumbprint(), RFC7638_THUMBPRINT);
    assert_eq!(key.kid(), "2011-04-29", "an explicit kid is kept");

    let mut no_kid = jwk.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        VerifyingKey::from_public_jwk(&no_kid).unwrap().kid(),
        RFC7638_THUMBPRINT
    );
}

#[test]
fn thumbprint_ignores_optional_members_and_leading_zeros() {
    let n = URL_SAFE_NO_PAD.decode(RFC7638_N).unwrap();
    let mut with_zero = vec![0u8];
    with_zero.extend_from_slice(&n);
    let jwk =
        json!({"kty": "RSA", "n": b64(&with_zero), "e": "AQAB", "use": "sig", "x5t": "ignored"});
    assert_eq!(jwk_thumbprint(&jwk).unwrap(), RFC7638_THUMBPRINT);
}

#[test]
fn generated_kid_is_the_thumbprint_for_every_algorithm() {
    for k in fixture_keys() {
        assert_eq!(k.kid(), k.thumbprint(), "{:?}", k.params());
        assert!(k.kid_is_thumbprint());
        assert_eq!(jwk_thumbprint(&k.public_jwk()).unwrap(), k.kid());
        assert_eq!(k.kid().len(), 43);
    }
}

#[test]
fn generation_is_deterministic_for_a_given_rng() {
    for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        let a = SigningKey::generate(KeyParams::new(alg), &mut rng(1)).unwrap();
        let b = SigningKey::generate(KeyParams::new(alg), &mut rng(1)).unwrap();
        let c = SigningKey::generate(KeyParams::new(alg), &mut rng(2)).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_ne!(a.kid(), c.kid());
    }
}

#[test]
fn generates_rsa_2048_with_the_requested_algorithm() {
    let k = SigningKey::generate(KeyParams::rsa(Algorithm::PS384, 2048), &mut rng(3)).unwrap();
    assert_eq!(k.params(), KeyParams::rsa(Algorithm::PS384, 2048));
    assert_eq!(k.public_jwk()["e"], "AQAB");
    let sig = k.sign(b"m").unwrap();
    assert_eq!(sig.len(), 256);
    k.verifying_key().verify_signature(b"m", &sig).unwrap();
}

#[test]
fn generate_rejects_unsupported_parameters() {
    let cases = [
        KeyParams::rsa(Algorithm::RS256, 1024),
        KeyParams::rsa(Algorithm::RS256, 2047),
        KeyParams::rsa(Algorithm::PS256, 8192),
        KeyParams {
            alg: Algorithm::RS256,
            rsa_bits: None,
        },
        KeyParams {
            alg: Algorithm::ES256,
            rsa_bits: Some(2048),
        },
        KeyParams {
            alg: Algorithm::EdDSA,
            rsa_bits: Some(4096),
        },
    ];
    for params in cases {
        let err = SigningKey::generate(params, &mut rng(0)).unwrap_err();
        assert!(matches!(err, KeyError::Generate { .. }), "{params}: {err}");
    }
}

#[test]
fn rsa_bits_are_derived_from_the_modulus() {
    let bits: Vec<_> = fixture_keys().iter().map(|k| k.params().rsa_bits).collect();
    assert_eq!(
        bits,
        [
            Some(2048),
            Some(2048),
            Some(2048),
            Some(2048),
            Some(2048),
            Some(2048),
            None,
            None,
            None,
            Some(3072),
            Some(4096)
        ]
    );
}

// === JWK encoding ===

#[test]
fn private_jwk_round_trips_for_every_algorithm() {
    for k in fixture_keys() {
        let jwk = k.private_jwk();
        let back = SigningKey::from_private_jwk(&jwk).unwrap();
        assert_eq!(back.kid(), k.kid());
        assert_eq!(back.params(), k.params());
        assert_eq!(back.private_jwk(), jwk, "{:?}", k.params());
        assert_eq!(back.public_jwk(), k.public_jwk());
        assert_eq!(back.pkcs8_der().expose(), k.pkcs8_der().expose());
    }
}

#[test]
fn jwks_documents_round_trip_in_order() {
    let keys = fixture_keys();
    let private = private_jwks_json(keys);
    let parsed = parse_private_jwks(private.expose()).unwrap();
    let kids: Vec<_> = parsed.iter().map(SigningKey::kid).collect();
    let expected: Vec<_> = keys.iter().map(SigningKey::kid).collect();
    assert_eq!(kids, expected);

    let public = public_jwks_json(keys.iter().map(SigningKey::verifying_key));
    let parsed = parse_public_jwks(&public).unwrap();
    let kids: Vec<_> = parsed.iter().map(VerifyingKey::kid).collect();
    assert_eq!(kids, expected);
    for (p, k) in parsed.iter().zip(keys) {
        assert_eq!(p, k.verifying_key());
    }
}

#[test]
fn jwk_members_are_the_documented_ones() {
    for k in fixture_keys() {
        let jwk = k.private_jwk();
        assert_eq!(jwk["kid"], k.kid());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], k.alg().as_str());
        let mut members: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        let mut expected = match k.alg() {
            Algorithm::ES256 | Algorithm::ES384 => {
                vec!["kty", "kid", "use", "alg", "crv", "x", "y", "d"]
            }
            Algorithm::EdDSA => vec!["kty", "kid", "use", "alg", "crv", "x", "d"],
            _ => vec![
                "kty", "kid", "use", "alg", "n", "e", "d", "p", "q", "dp", "dq", "qi",
            ],
        };
        expected.sort_unstable();
        assert_eq!(members, expected, "{:?}", k.params());
    }
    assert_eq!(key(Algorithm::ES256).public_jwk()["crv"], "P-256");
    assert_eq!(key(Algorithm::ES384).public_jwk()["crv"], "P-384");
    assert_eq!(key(Algorithm::EdDSA).public_jwk()["kty"], "OKP");
    assert_eq!(key(Algorithm::EdDSA).public_jwk()["crv"], "Ed25519");
}

#[test]
fn public_jwk_never_has_private_members() {
    for k in fixture_keys() {
        let public = k.public_jwk();
        for member in public.as_object().unwrap().keys() {
            assert!(
                PUBLIC_MEMBERS.contains(&member.as_str()),
                "{member} in public JWK"
            );
        }
    }
    // And no private value appears anywhere in the serialized public set.
    let public = String::from_utf8(public_jwks_json(
        fixture_keys().iter().map(SigningKey::verifying_key),
    ))
    .unwrap();
    for k in fixture_keys() {
        let private = k.private_jwk();
        for member in PRIVATE_MEMBERS {
            if let Some(v) = private.get(member).and_then(Value::as_str) {
                assert!(
                    !public.contains(v),
                    "private {member} leaked into the public set"
                );
            }
        }
    }
}

// === redaction ===

#[test]
fn debug_and_errors_never_show_private_material() {
    for k in fixture_keys() {
        let d = k.private_jwk()["d"].as_str().unwrap().to_string();
        let debug = format!("{k:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!debug.contains(&d));
        assert_eq!(format!("{:?}", k.pkcs8_pem()), "<redacted>");
        assert_eq!(format!("{}", k.pkcs8_pem()), "<redacted>");
        assert_eq!(format!("{:?}", private_jwks_json([k])), "<redacted>");
        assert!(!format!("{:?}", k.verifying_key()).contains(&d));

        // A broken key's error message names the key, not its values.
        let mut jwk = k.private_jwk();
        jwk["x"] = jwk.get("n").cloned().unwrap_or(json!("AAAA"));
        let mut jwk2 = k.private_jwk();
        jwk2["d"] = json!("AAAA");
        for bad in [jwk, jwk2] {
            if let Err(e) = SigningKey::from_private_jwk(&bad) {
                let msg = format!("{e} {e:?}");
                assert!(!msg.contains(&d), "{msg}");
            }
        }
    }
}

// === strict parsing ===

fn without(mut jwk: Value, member: &str) -> Value {
    jwk.as_object_mut().unwrap().remove(member);
    jwk
}

fn with(mut jwk: Value, member: &str, value: Value) -> Value {
    jwk[member] = value;
    jwk
}

// Long on purpose: one table row per way a private JWK can be broken, each
// with the exact problem it must be rejected with; splitting the table would
// only scatter it.
#[test]
fn strict_parse_rejects_each_kind_of_broken_key() {
    let rsa = key(Algorithm::RS256).private_jwk();
    let rsa_other = other_key(Algorithm::RS256).private_jwk();
    let ec = key(Algorithm::ES256).private_jwk();
    let ec_other = other_key(Algorithm::ES256).private_jwk();
    let ed = key(Algorithm::EdDSA).private_jwk();
    let ed_other = other_key(Algorithm::EdDSA).private_jwk();
    let ec384 = key(Algorithm::ES384).private_jwk();

    use JwkProblem as P;
    let cases: Vec<(&str, Value, P)> = vec![
        ("not an object", json!(["RSA"]), P::NotAnObject),
        (
            "no kty",
            without(rsa.clone(), "kty"),
            P::MissingMember("kty"),
        ),
        (
            "kty oct",
            with(rsa.clone(), "kty", json!("oct")),
            P::UnsupportedKeyType("oct".into()),
        ),
        (
            "EC P-521",
            with(ec.clone(), "crv", json!("P-521")),
            P::UnsupportedCurve {
                kty: "EC",
                crv: "P-521".into(),
            },
        ),
        (
            "OKP X25519",
            with(ed.clone(), "crv", json!("X25519")),
            P::UnsupportedCurve {
                kty: "OKP",
                crv: "X25519".into(),
            },
        ),
        (
            "alg HS256",
            with(rsa.clone(), "alg", json!("HS256")),
            P::UnsupportedAlgorithm("HS256".into()),
        ),
        (
            "alg none",
            with(ec.clone(), "alg", json!("none")),
            P::UnsupportedAlgorithm("none".into()),
        ),
        (
            "ES256 on RSA",
            with(rsa.clone(), "alg", json!("ES256")),
            P::AlgorithmMismatch {
                alg: Algorithm::ES256,
                key: "RSA",
            },
        ),
        (
            "RS256 on EC",
            with(ec.clone(), "alg", json!("RS256")),
            P::AlgorithmMismatch {
                alg: Algorithm::RS256,
                key: "EC P-256",
            },
        ),
        (
            "ES384 on P-256",
            with(ec.clone(), "alg", json!("ES384")),
            P::AlgorithmMismatch {
                alg: Algorithm::ES384,
                key: "EC P-256",
            },
        ),
        (
            "use enc",
            with(rsa.clone(), "use", json!("enc")),
            P::NotForSigning("use is \"enc\"".into()),
        ),
        (
            "key_ops without sign",
            with(ec.clone(), "key_ops", json!(["verify"])),
            P::NotForSigning("key_ops lacks \"sign\"".into()),
        ),
        ("kid empty", with(rsa.clone(), "kid", json!("")), P::BadKid),
        (
            "kid a number",
            with(rsa.clone(), "kid", json!(7)),
            P::NotAString("kid"),
        ),
        (
            "n a number",
            with(rsa.clone(), "n", json!(65537)),
            P::NotAString("n"),
        ),
        ("RSA no d", without(rsa.clone(), "d"), P::MissingMember("d")),
        ("RSA no p", without(rsa.clone(), "p"), P::MissingMember("p")),
        (
            "RSA no qi",
            without(rsa.clone(), "qi"),
            P::MissingMember("qi"),
        ),
        ("EC no d", without(ec.clone(), "d"), P::MissingMember("d")),
        ("EC no y", without(ec.clone(), "y"), P::MissingMember("y")),
        ("OKP no d", without(ed.clone(), "d"), P::MissingMember("d")),
        (
            "d not base64url",
            with(rsa.clone(), "d", json!("a+b/c")),
            P::NotBase64Url("d"),
        ),
        (
            "d padded",
            with(ec.clone(), "d", json!("AAAA====")),
            P::NotBase64Url("d"),
        ),
        (
            "RSA oth",
            with(rsa.clone(), "oth", json!([])),
            P::MultiPrimeRsa,
        ),
        (
            "RSA n from another key",
            with(rsa.clone(), "n", rsa_other["n"].clone()),
            P::Inconsistent("n is not p*q"),
        ),
        (
            "RSA p,q from another key",
            with(
                with(rsa.clone(), "p", rsa_other["p"].clone()),
                "q",
                rsa_other["q"].clone(),
            ),
            P::Inconsistent("n is not p*q"),
        ),
        (
            "RSA d from another key",
            with(
                rsa.clone(),
                "d",
                key(Algorithm::PS256).private_jwk()["d"].clone(),
            ),
            P::Inconsistent("d does not match e, p and q"),
        ),
        (
            "RSA dp wrong",
            with(rsa.clone(), "dp", rsa["dq"].clone()),
            P::Inconsistent("dp is not d mod (p-1)"),
        ),
        (
            "RSA dq wrong",
            with(rsa.clone(), "dq", rsa["dp"].clone()),
            P::Inconsistent("dq is not d mod (q-1)"),
        ),
        (
            "RSA qi wrong",
            with(rsa.clone(), "qi", rsa["dp"].clone()),
            P::Inconsistent("qi is not q^-1 mod p"),
        ),
        (
            "RSA 1024-bit",
            with(rsa.clone(), "n", json!(b64(&[0xc5; 128]))),
            P::UnsupportedRsaSize {
                bits: 1024,
                supported: "2048, 3072 or 4096 bits",
            },
        ),
        (
            "EC d from another key",
            with(ec.clone(), "d", ec_other["d"].clone()),
            P::Inconsistent("d does not match x/y"),
        ),
        (
            "EC x,y not on the curve",
            with(ec.clone(), "y", ec["x"].clone()),
            P::Inconsistent("x/y is not a point on the curve"),
        ),
        (
            "EC x too short",
            with(ec.clone(), "x", json!(b64(&[1; 31]))),
            P::WrongLength {
                member: "x",
                expected: 32,
                actual: 31,
            },
        ),
        (
            "P-384 d with P-256 length",
            with(ec384.clone(), "d", ec["d"].clone()),
            P::WrongLength {
                member: "d",
                expected: 48,
                actual: 32,
            },
        ),
        (
            "EC d zero",
            with(ec.clone(), "d", json!(b64(&[0; 32]))),
            P::Inconsistent("d is not a valid private scalar for the curve"),
        ),
        (
            "OKP x of another key",
            with(ed.clone(), "x", ed_other["x"].clone()),
            P::Inconsistent("x is not the public key of d"),
        ),
        (
            "OKP d too long",
            with(ed.clone(), "d", json!(b64(&[1; 64]))),
            P::WrongLength {
                member: "d",
                expected: 32,
                actual: 64,
            },
        ),
    ];
    for (name, jwk, expected) in cases {
        let err = match SigningKey::from_private_jwk(&jwk) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e,
        };
        assert_eq!(problem(err), expected, "{name}");
    }
}

#[test]
fn errors_in_a_set_name_the_key_by_index_and_kid() {
    let good = key(Algorithm::ES256).private_jwk();
    let bad = with(key(Algorithm::RS256).private_jwk(), "dp", json!("AQAB"));
    let kid = bad["kid"].as_str().unwrap().to_string();
    let doc = serde_json::to_vec(&json!({"keys": [good, bad]})).unwrap();
    let err = parse_private_jwks(&doc).unwrap_err();
    match &err {
        KeyError::InvalidJwk { key, .. } => {
            assert_eq!(key.index, Some(1));
            assert_eq!(key.kid.as_deref(), Some(kid.as_str()));
        }
        other => panic!("unexpected {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("#1") && msg.contains(&kid) && msg.contains("dp"),
        "{msg}"
    );
}

#[test]
fn a_set_never_silently_drops_a_key() {
    // Even one unsupported key (an HMAC secret here) fails the whole set.
    let doc = serde_json::to_vec(&json!({"keys": [
        key(Algorithm::EdDSA).private_jwk(),
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
    ]}))
    .unwrap();
    let err = parse_private_jwks(&doc).unwrap_err();
    assert!(err.to_string().contains("#1 (kid \"hmac\")"), "{err}");
}

#[test]
fn set_documents_must_be_jwk_sets() {
    for doc in [&b"not json"[..], b"[]", b"{}", b"{\"keys\": {}}"] {
        assert!(matches!(
            parse_private_jwks(doc),
            Err(KeyError::InvalidJwkSet { .. })
        ));
        assert!(matches!(
            parse_public_jwks(doc),
            Err(KeyError::InvalidJwkSet { .. })
        ));
    }
    assert!(parse_private_jwks(br#"{"keys": []}"#).unwrap().is_empty());
}

#[test]
fn duplicate_kids_and_duplicate_material_are_rejected() {
    let a = key(Algorithm::ES256).private_jwk();
    let b = with(key(Algorithm::ES384).private_jwk(), "kid", a["kid"].clone());
    let doc = serde_json::to_vec(&json!({"keys": [a.clone(), b]})).unwrap();
    assert_eq!(
        problem(parse_private_jwks(&doc).unwrap_err()),
        JwkProblem::DuplicateKid { first: 0 }
    );

    let same_material = with(a.clone(), "kid", json!("another-name"));
    let doc = serde_json::to_vec(&json!({"keys": [a.clone(), same_material]})).unwrap();
    assert_eq!(
        problem(parse_private_jwks(&doc).unwrap_err()),
        JwkProblem::DuplicateKey { first: 0 }
    );

    // A foreign kid that equals another key's thumbprint would make one kid name two keys.
    let c = with(key(Algorithm::EdDSA).private_jwk(), "kid", a["kid"].clone());
    let a_renamed = with(a, "kid", json!("legacy"));
    let doc = serde_json::to_vec(&json!({"keys": [a_renamed, c]})).unwrap();
    assert_eq!(
        problem(parse_private_jwks(&doc).unwrap_err()),
        JwkProblem::DuplicateKid { first: 0 }
    );
}

#[test]
fn missing_alg_is_inferred_from_the_key_type() {
    for (alg, expected) in [
        (Algorithm::PS512, Algorithm::RS256),
        (Algorithm::ES256, Algorithm::ES256),
        (Algorithm::ES384, Algorithm::ES384),
        (Algorithm::EdDSA, Algorithm::EdDSA),
    ] {
        let jwk = without(key(alg).private_jwk(), "alg");
        let parsed = SigningKey::from_private_jwk(&jwk).unwrap();
        assert_eq!(parsed.alg(), expected);
        assert_eq!(
            parsed.private_jwk()["alg"],
            expected.as_str(),
            "inferred alg is written back"
        );
        let public = VerifyingKey::from_public_jwk(&without(key(alg).public_jwk(), "alg")).unwrap();
        assert_eq!(public.alg(), expected);
    }
}

#[test]
fn adopted_keys_keep_a_kid_that_is_not_a_thumbprint() {
    let jwk = with(
        key(Algorithm::ES256).private_jwk(),
        "kid",
        json!("node-jose-random-kid"),
    );
    let k = SigningKey::from_private_jwk(&jwk).unwrap();
    assert_eq!(k.kid(), "node-jose-random-kid");
    assert!(!k.kid_is_thumbprint());
    assert_eq!(k.thumbprint(), key(Algorithm::ES256).kid());
    assert_eq!(k.public_jwk()["kid"], "node-jose-random-kid");

    let no_kid = without(key(Algorithm::EdDSA).private_jwk(), "kid");
    assert!(
        SigningKey::from_private_jwk(&no_kid)
            .unwrap()
            .kid_is_thumbprint()
    );
}

#[test]
fn unknown_extra_members_are_accepted_and_dropped() {
    let jwk = with(
        key(Algorithm::EdDSA).private_jwk(),
        "x5t",
        json!("whatever"),
    );
    let k = SigningKey::from_private_jwk(&jwk).unwrap();
    assert!(k.private_jwk().get("x5t").is_none());
}

// === signing ===

#[test]
fn sign_and_verify_round_trip_for_every_algorithm() {
    for k in fixture_keys() {
        let sig = k.sign(b"header.payload").unwrap();
        let expected_len = match k.alg() {
            Algorithm::ES256 => 64,
            Algorithm::ES384 => 96,
            Algorithm::EdDSA => 64,
            _ => k.params().rsa_bits.unwrap() as usize / 8,
        };
        assert_eq!(sig.len(), expected_len, "{:?}", k.params());
        k.verifying_key()
            .verify_signature(b"header.payload", &sig)
            .unwrap();
        assert!(
            k.verifying_key()
                .verify_signature(b"header.payloaD", &sig)
                .is_err()
        );
        let other = other_key(k.alg());
        assert!(
            other
                .verifying_key()
                .verify_signature(b"header.payload", &sig)
                .is_err()
        );
    }
}

#[test]
fn signing_keys_compare_by_kid() {
    let a = key(Algorithm::ES256);
    let relabelled = SigningKey::from_private_jwk(&a.private_jwk()).unwrap();
    assert_eq!(*a, relabelled);
    assert_ne!(*a, *key(Algorithm::ES384));
}

#[test]
fn pkcs8_pem_loads_back_for_every_algorithm() {
    for k in fixture_keys() {
        let pem = k.pkcs8_pem();
        let pem = pem.expose();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).unwrap();
        assert_eq!(&der, k.pkcs8_der().expose());
        let ok = match k.alg() {
            Algorithm::ES256 => {
                EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P256_SHA256_FIXED_SIGNING, &der).is_ok()
            }
            Algorithm::ES384 => {
                EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P384_SHA384_FIXED_SIGNING, &der).is_ok()
            }
            Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8(&der).is_ok(),
            _ => RsaKeyPair::from_pkcs8(&der).is_ok(),
        };
        assert!(ok, "{:?}", k.params());
    }
}

#[test]
fn ecdsa_signatures_are_fixed_size_r_s_that_verify() {
    for (alg, size, count) in [(Algorithm::ES256, 64, 1000), (Algorithm::ES384, 96, 300)] {
        let k = key(alg);
        for i in 0..count {
            let message = format!("message {i}");
            let sig = k.sign(message.as_bytes()).unwrap();
            assert_eq!(sig.len(), size, "{alg:?}");
            k.verifying_key()
                .verify_signature(message.as_bytes(), &sig)
                .unwrap_or_else(|e| panic!("{alg:?} signature {i}: {e}"));
        }
    }
}

#[test]
fn der_signatures_become_left_padded_r_s() {
    // DER drops leading zero octets of r and s and adds one before a high
    // bit; the JWS form is r || s at the full curve size either way.
    fn der(r: &[u8], s: &[u8]) -> Vec<u8> {
        let int = |v: &[u8]| {
            let mut out = vec![0x02, v.len() as u8];
            out.extend_from_slice(v);
            out
        };
        let body = [int(r), int(s)].concat();
        [vec![0x30, body.len() as u8], body].concat()
    }
    for curve in [Curve::P256, Curve::P384] {
        let n = curve.size();
        let short_r = vec![0x11; n - 1];
        let mut high_s = vec![0x00];
        high_s.extend(vec![0x80; n - 1]);
        high_s.push(0x01);
        let fixed = curve.jws_signature(&der(&short_r, &high_s)).unwrap();
        let mut want = vec![0x00];
        want.extend(&short_r);
        want.extend(&high_s[1..]);
        assert_eq!(fixed, want, "{curve:?}");

        assert_eq!(curve.jws_signature(b"not der"), None);
        assert_eq!(curve.jws_signature(&der(&[0], &[1])), None, "r = 0");
        assert_eq!(
            curve.jws_signature(&der(&vec![0x7f; n + 1], &[1])),
            None,
            "r too long"
        );
    }
}
