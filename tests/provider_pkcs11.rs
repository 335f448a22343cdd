//! The PKCS#11 key provider against SoftHSM2 (tests/providers/install.sh):
//! keys are generated in the token, sign in JOSE format, verify with the
//! public key the provider read back (and with jsonwebtoken, independently),
//! and are destroyed; a wrong PIN and a missing token are clear errors
//! that never carry the PIN.

#[path = "common/softhsm.rs"]
mod softhsm;

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwks_operator::keys::alg::{Algorithm, KeyParams};
use jwks_operator::keys::redacted::RedactedString;
use jwks_operator::providers::pkcs11::{Pkcs11Config, Pkcs11Provider};
use jwks_operator::providers::{Pkcs11Uri, ProviderError};

const PIN: &str = "1234";

fn config(label: &str, pin: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: PathBuf::from(softhsm::MODULE),
        token_label: label.to_string(),
        pin: RedactedString::new(pin.to_string()),
    }
}

fn jsonwebtoken_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    alg.as_str().parse().unwrap()
}

/// Every algorithm SoftHSM 2.6 offers mechanisms for (all nine: `pkcs11-tool -M`).
#[test]
fn every_algorithm_generates_signs_verifies_and_is_destroyed() {
    let label = softhsm::token("every-alg", PIN);
    let provider = Pkcs11Provider::open(&config(&label, PIN)).unwrap();
    for alg in Algorithm::ALL {
        assert!(provider.supports(alg).unwrap(), "SoftHSM lacks {alg}");
        let key = provider.generate(KeyParams::new(alg)).unwrap();
        let jwk = key.verifying.public_jwk();
        // The kid is the RFC 7638 thumbprint of the key read back.
        assert_eq!(key.verifying.kid(), key.verifying.thumbprint(), "{alg}");
        assert_eq!(key.uri.object.as_deref(), Some(key.verifying.kid()));
        assert_eq!(key.uri.token, label);
        for member in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(jwk.get(member).is_none(), "{alg}: public JWK has {member}");
        }

        // A JWS signed through the token verifies with an independent library.
        let header = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"alg": alg.as_str(), "kid": key.verifying.kid(), "typ": "JWT"})
                .to_string(),
        );
        let claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"s","exp":4102444800}"#);
        let signing_input = format!("{header}.{claims}");
        let signature = provider.sign(&key, signing_input.as_bytes()).unwrap();
        let expected_len = match alg {
            Algorithm::ES256 | Algorithm::EdDSA => Some(64),
            Algorithm::ES384 => Some(96),
            _ => Some(256),
        };
        assert_eq!(
            Some(signature.len()),
            expected_len,
            "{alg}: JOSE signature width"
        );
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&signature));
        let decoding =
            jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap())
                .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken_alg(alg));
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation)
            .unwrap_or_else(|e| panic!("{alg}: jsonwebtoken refused the token: {e}"));

        // Adoption by reference reads back the same public key and kid.
        let uri: Pkcs11Uri = key.uri.to_string().parse().unwrap();
        let adopted = provider.load(&uri, alg).unwrap();
        assert_eq!(adopted.verifying, key.verifying, "{alg}");

        // Destroyed: both objects go, signing is refused, a second destroy is a no-op.
        assert!(provider.exists(&key.uri).unwrap());
        assert_eq!(
            provider.destroy(&key.uri).unwrap(),
            2,
            "{alg}: public + private"
        );
        assert!(!provider.exists(&key.uri).unwrap());
        let err = provider.sign(&key, b"x").unwrap_err();
        assert!(
            matches!(err, ProviderError::KeyNotFound { .. }),
            "{alg}: {err}"
        );
        assert_eq!(provider.destroy(&key.uri).unwrap(), 0);
    }
}

#[test]
fn rsa_key_sizes_are_honoured() {
    let label = softhsm::token("rsa-size", PIN);
    let provider = Pkcs11Provider::open(&config(&label, PIN)).unwrap();
    let key = provider
        .generate(KeyParams::rsa(Algorithm::PS384, 3072))
        .unwrap();
    let n = key.verifying.public_jwk()["n"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(URL_SAFE_NO_PAD.decode(n).unwrap().len(), 384);
    let signature = provider.sign(&key, b"message").unwrap();
    assert_eq!(signature.len(), 384);
    key.verifying
        .verify_signature(b"message", &signature)
        .unwrap();
}

#[test]
fn the_private_key_stays_in_the_token() {
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let label = softhsm::token("sensitive", PIN);
    let provider = Pkcs11Provider::open(&config(&label, PIN)).unwrap();
    let key = provider.generate(KeyParams::new(Algorithm::ES256)).unwrap();
    // Look at the object with a session of our own.
    let ctx = cryptoki::context::Pkcs11::new(softhsm::MODULE).unwrap();
    let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == label)
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let private = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(key.uri.id.clone()),
        ])
        .unwrap();
    assert_eq!(private.len(), 1);
    let attrs = session
        .get_attributes(
            private[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
                AttributeType::Label,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Token(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Label(key.verifying.kid().as_bytes().to_vec())));
}

#[test]
fn a_wrong_pin_is_refused_without_showing_it() {
    let label = softhsm::token("wrong-pin", PIN);
    let wrong = "98765432";
    let err = Pkcs11Provider::open(&config(&label, wrong)).unwrap_err();
    assert!(matches!(err, ProviderError::PinRefused { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("PinIncorrect"), "{message}");
    assert!(message.contains(&label), "{message}");
    assert!(
        !message.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{message}"
    );
    assert_eq!(err.provider(), "PKCS11");

    // Once the token is logged in with the right PIN, another PIN for the
    // same token is still refused.
    Pkcs11Provider::open(&config(&label, PIN)).unwrap();
    let err = Pkcs11Provider::open(&config(&label, wrong)).unwrap_err();
    assert!(matches!(err, ProviderError::PinRefused { .. }), "{err:?}");
    assert!(!err.to_string().contains(wrong));
}

#[test]
fn a_missing_token_or_module_is_a_clear_error() {
    // The process's SoftHSM is set up (and has tokens) before this looks.
    softhsm::token("present", PIN);
    let err = Pkcs11Provider::open(&config("no-such-token", PIN)).unwrap_err();
    assert!(
        matches!(err, ProviderError::TokenNotFound { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("no token labelled \"no-such-token\""),
        "{err}"
    );
    assert!(!err.to_string().contains(PIN));

    let err = Pkcs11Provider::open(&Pkcs11Config {
        module: PathBuf::from("/nonexistent/libpkcs11.so"),
        ..config("x", PIN)
    })
    .unwrap_err();
    assert!(matches!(err, ProviderError::ModuleLoad { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/libpkcs11.so"),
        "{err}"
    );
}

#[test]
fn a_reference_to_another_token_is_refused() {
    let label = softhsm::token("other", PIN);
    let provider = Pkcs11Provider::open(&config(&label, PIN)).unwrap();
    let uri: Pkcs11Uri = "pkcs11:token=elsewhere;id=%01%02;type=private"
        .parse()
        .unwrap();
    let err = provider.destroy(&uri).unwrap_err();
    assert!(matches!(err, ProviderError::BadReference(_)), "{err:?}");
    assert!(
        provider
            .load(&"pkcs11:token=x;id=%01".parse().unwrap(), Algorithm::ES256)
            .is_err()
    );
    let missing: Pkcs11Uri = format!("pkcs11:token={label};id=%01%02").parse().unwrap();
    let err = provider.load(&missing, Algorithm::ES256).unwrap_err();
    assert!(matches!(err, ProviderError::KeyNotFound { .. }), "{err:?}");
}

/// Many callers at once share at most `MAX_IN_FLIGHT` sessions, and every
/// signature still verifies.
#[test]
fn concurrent_signing_is_bounded() {
    use jwks_operator::providers::pkcs11::MAX_IN_FLIGHT;
    let label = softhsm::token("concurrent", PIN);
    let provider = Pkcs11Provider::open(&config(&label, PIN)).unwrap();
    let key = provider.generate(KeyParams::new(Algorithm::RS256)).unwrap();
    std::thread::scope(|scope| {
        for t in 0..24 {
            let (provider, key) = (&provider, &key);
            scope.spawn(move || {
                for i in 0..5 {
                    let message = format!("{t}-{i}");
                    let signature = provider.sign(key, message.as_bytes()).unwrap();
                    key.verifying
                        .verify_signature(message.as_bytes(), &signature)
                        .unwrap();
                }
            });
        }
    });
    let opened = provider.sessions_opened();
    assert!(
        (1..=MAX_IN_FLIGHT).contains(&opened),
        "{opened} sessions for 24 callers"
    );
    assert!(Pkcs11Provider::find_open(&label).is_some());
    assert!(Pkcs11Provider::find_open("never-opened").is_none());
}

/// The lifecycle through the token: the planner generates every key in the
/// token (pending → active → retired → pruned), the stored form holds no
/// private material and reads back with the same kids, keys read back sign
/// through the token, and a pruned key's objects are destroyed once it has
/// left the set.
#[test]
fn a_full_rotation_keeps_private_keys_in_the_token() {
    use jwks_operator::keys::lifecycle::{self, KeySet, KeyState, LifecycleEvent};
    use jwks_operator::providers::pkcs11::Pkcs11KeySource;
    use jwks_operator::store::layout::{self, Decoded};

    let label = softhsm::token("rotation", PIN);
    let provider = Pkcs11Provider::open(&config(&label, PIN)).unwrap();
    let spec: jwks_operator::api::KeyRotationPolicySpec = jwks_operator::yaml::from_str(
        "{algorithm: ES256, rotationInterval: 1h, publishAhead: 10m, maxTokenTTL: 5m, clockSkew: 0s}",
    )
    .unwrap();
    let policy = spec.resolve(None).unwrap();
    let mut source = Pkcs11KeySource(provider.clone());
    let mut now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut set = KeySet::default();
    let mut seen = Vec::new();
    let mut pruned = None;
    for _ in 0..40 {
        let plan = lifecycle::plan(&policy, &set, now, &mut source).unwrap();
        for k in &plan.keys.keys {
            seen.push((k.kid().to_string(), k.state));
        }
        // Write, then destroy what the written set no longer holds.
        let dropped = jwks_operator::providers::dropped_references(&set, &plan.keys);
        let encoded = layout::encode(&plan.keys, 1).unwrap();
        for reference in &dropped {
            jwks_operator::providers::destroy(reference).unwrap();
        }
        if let Some(kid) = plan.events.iter().find_map(|e| match e {
            LifecycleEvent::Pruned { kid } => Some(kid.clone()),
            _ => None,
        }) {
            assert_eq!(dropped.len(), 1, "{dropped:?}");
            let uri: Pkcs11Uri = dropped[0].parse().unwrap();
            assert_eq!(uri.object.as_deref(), Some(kid.as_str()));
            assert!(
                !provider.exists(&uri).unwrap(),
                "the pruned key's objects are destroyed"
            );
            pruned = Some(kid);
        }

        // The stored form: public JWKs and references only.
        let entries = encoded.entries();
        assert!(
            entries.iter().all(|(k, _)| *k != layout::ACTIVE_PEM),
            "no active.pem"
        );
        for (name, bytes) in &entries {
            let text = std::str::from_utf8(bytes).unwrap();
            assert!(!text.contains("\"d\""), "{name} holds a private member");
            assert!(!text.contains("PRIVATE KEY"), "{name} holds a PEM");
        }
        let lifecycle_json: serde_json::Value = serde_json::from_slice(&encoded.lifecycle).unwrap();
        for record in lifecycle_json["keys"].as_array().unwrap() {
            let reference = record["keyRef"].as_str().unwrap();
            assert!(
                reference.starts_with(&format!("pkcs11:token={label};id=%")),
                "{reference}"
            );
        }

        // Read back (a restart): same kids, and the active key signs through the token.
        let decoded =
            layout::decode(|k| entries.iter().find(|(name, _)| *name == k).map(|(_, b)| *b))
                .unwrap();
        let Decoded::Keys { set: back, .. } = decoded else {
            panic!("not a key set")
        };
        let kids = |s: &KeySet<_>| {
            s.keys
                .iter()
                .map(|k| k.kid().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(&back), kids(&plan.keys));
        let active = back.active().unwrap();
        let signature = active.key.sign(b"after a restart").unwrap();
        active
            .key
            .verifying_key()
            .verify_signature(b"after a restart", &signature)
            .unwrap();

        set = back;
        // The first key starts Active; stop once a key that began Pending is pruned.
        if pruned
            .as_ref()
            .is_some_and(|kid| seen.contains(&(kid.clone(), KeyState::Pending)))
        {
            break;
        }
        now = plan.next_due;
    }
    let pruned = pruned.expect("a key was pruned within 40 passes");
    for state in [KeyState::Pending, KeyState::Active, KeyState::Retired] {
        assert!(
            seen.contains(&(pruned.clone(), state)),
            "{pruned} was never {state:?}"
        );
    }
}

/// A stored provider set that was tampered with is refused when read, with
/// the data key named: a private member beside a `keyRef`, an `active.pem`
/// beside a token-held signer, a reference that is not one.
#[test]
fn a_tampered_provider_set_is_refused() {
    use jwks_operator::keys::lifecycle::{self, KeySet};
    use jwks_operator::providers::pkcs11::Pkcs11KeySource;
    use jwks_operator::store::layout;

    let label = softhsm::token("tamper", PIN);
    let provider = Pkcs11Provider::open(&config(&label, PIN)).unwrap();
    let policy = jwks_operator::yaml::from_str::<jwks_operator::api::KeyRotationPolicySpec>(
        "{algorithm: ES256}",
    )
    .unwrap()
    .resolve(None)
    .unwrap();
    let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let plan = lifecycle::plan(
        &policy,
        &KeySet::default(),
        now,
        &mut Pkcs11KeySource(provider),
    )
    .unwrap();
    let encoded = layout::encode(&plan.keys, 1).unwrap();
    let entries: Vec<(&'static str, Vec<u8>)> = encoded
        .entries()
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect();
    let decode = |entries: &[(&str, Vec<u8>)]| {
        layout::decode(|k| {
            entries
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, b)| b.as_slice())
        })
    };
    assert!(decode(&entries).is_ok());
    let with = |key: &'static str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut e = entries.clone();
        match e.iter_mut().find(|(n, _)| *n == key) {
            Some((_, v)) => f(v),
            None => {
                let mut v = Vec::new();
                f(&mut v);
                e.push((key, v));
            }
        }
        e
    };

    let private_member = with(layout::JWKS, &|v| {
        let mut doc: serde_json::Value = serde_json::from_slice(v).unwrap();
        doc["keys"][0]["d"] = "AAAA".into();
        *v = serde_json::to_vec(&doc).unwrap();
    });
    let err = decode(&private_member).unwrap_err();
    assert_eq!(err.data_key, layout::JWKS);
    assert!(err.problem.contains("private member \"d\""), "{err}");

    let pem = with(layout::ACTIVE_PEM, &|v| {
        *v = b"-----BEGIN PRIVATE KEY-----\n".to_vec()
    });
    let err = decode(&pem).unwrap_err();
    assert_eq!(err.data_key, layout::ACTIVE_PEM);

    let bad_ref = with(layout::LIFECYCLE, &|v| {
        let mut doc: serde_json::Value = serde_json::from_slice(v).unwrap();
        doc["keys"][0]["keyRef"] = "arn:aws:kms:nowhere".into();
        *v = serde_json::to_vec(&doc).unwrap();
    });
    let err = decode(&bad_ref).unwrap_err();
    assert_eq!(err.data_key, layout::LIFECYCLE);
    assert!(err.problem.contains("KMS key ARN: not arn:"), "{err}");

    let alias = with(layout::LIFECYCLE, &|v| {
        let mut doc: serde_json::Value = serde_json::from_slice(v).unwrap();
        doc["keys"][0]["keyRef"] = "arn:aws:kms:eu-west-1:111122223333:alias/signing".into();
        *v = serde_json::to_vec(&doc).unwrap();
    });
    let err = decode(&alias).unwrap_err();
    assert!(err.problem.contains("an alias, not a key"), "{err}");

    let other = with(layout::LIFECYCLE, &|v| {
        let mut doc: serde_json::Value = serde_json::from_slice(v).unwrap();
        doc["keys"][0]["keyRef"] = "vault:transit/keys/x".into();
        *v = serde_json::to_vec(&doc).unwrap();
    });
    let err = decode(&other).unwrap_err();
    assert!(err.problem.contains("neither a pkcs11: URI"), "{err}");
}
