//! Interop with node-jose, the library whose `keys.json` the operator adopts
//! and whose `JWK.asKeyStore` must read our `jwks.json` (SPEC, Secret layout).
//!
//! Two tests run `node tests/interop/node/interop.js`; they need the npm
//! packages installed by `tests/interop/install.sh` and fail (they do not
//! skip) when those are missing. The fixture test needs no Node.js.
//!
//! node-jose 2.x has no OKP keys: it cannot load Ed25519 keys at all, and a
//! set containing one fails to load as a whole. EdDSA is therefore left out
//! of the round trip, and `node_jose_cannot_load_ed25519_keys` records the
//! limitation so it is noticed if node-jose ever adds them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jiff::Timestamp;
use jwks_operator::keys::token::{Expectations, MintSettings, TokenRequest, Verifier, mint_token};
use jwks_operator::keys::{Algorithm, SigningKey, parse_private_jwks, private_jwks_json};
use serde_json::{Value, json};

const NOW: i64 = 1_750_000_000;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn node_dir() -> PathBuf {
    repo().join("tests/interop/node")
}

fn fixture_keys() -> Vec<SigningKey> {
    let bytes = std::fs::read(repo().join("tests/fixtures/keys/all-algorithms.jwks.json")).unwrap();
    parse_private_jwks(&bytes).unwrap()
}

/// Runs `node interop.js <args>` and parses its JSON report. Panics (test
/// failure, not a skip) with instructions when node or node-jose is missing.
fn run_node(args: &[&Path], mode: &str) -> Value {
    let installed = node_dir().join("node_modules/node-jose/package.json");
    assert!(
        installed.exists(),
        "node-jose is not installed ({} missing): run tests/interop/install.sh first",
        installed.display()
    );
    let output = Command::new("node")
        .current_dir(node_dir())
        .arg("interop.js")
        .arg(mode)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `node` ({e}): install Node.js >= 18 and run tests/interop/install.sh"
            )
        });
    assert!(
        output.status.success(),
        "node interop.js {mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("interop.js prints JSON")
}

fn settings() -> MintSettings {
    MintSettings {
        issuer: Some("https://jwks-operator.example".into()),
        audiences: vec!["interop".into()],
        max_ttl: Duration::from_secs(3600),
    }
}

#[test]
fn node_jose_reads_our_private_set_and_tokens_verify_both_ways() {
    // Every algorithm node-jose supports: all but EdDSA. Newest first, as the operator writes it.
    let keys: Vec<SigningKey> = fixture_keys()
        .into_iter()
        .filter(|k| k.alg() != Algorithm::EdDSA)
        .rev()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, private_jwks_json(&keys).expose()).unwrap();

    let now = Timestamp::from_second(NOW).unwrap();
    let tokens: Vec<Value> = keys
        .iter()
        .map(|k| {
            let req = TokenRequest {
                sub: Some("rust".into()),
                ..TokenRequest::default()
            };
            let minted = mint_token(k, &req, &settings(), now, "jti-rust").unwrap();
            json!({"kid": k.kid(), "alg": k.alg().as_str(), "token": minted.token})
        })
        .collect();
    let tokens_path = dir.path().join("tokens.json");
    std::fs::write(&tokens_path, serde_json::to_vec(&tokens).unwrap()).unwrap();

    let report = run_node(&[&jwks_path, &tokens_path], "check");

    // node-jose loaded every key, in order, and sees the same members we wrote.
    let kids: Vec<&str> = keys.iter().map(SigningKey::kid).collect();
    let node_kids: Vec<&str> = report["kids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(node_kids, kids);
    for k in &keys {
        assert_eq!(
            report["keys"][k.kid()],
            k.private_jwk(),
            "node-jose's view of {}",
            k.kid()
        );
    }

    // node-jose verified every token we signed, with the key we named.
    for (v, k) in report["verified"].as_array().unwrap().iter().zip(&keys) {
        assert_eq!(
            v["ok"],
            true,
            "node-jose rejected our {} token: {}",
            k.alg(),
            v["error"]
        );
        assert_eq!(v["keyKid"], k.kid());
        assert_eq!(v["header"]["alg"], k.alg().as_str());
        assert_eq!(v["claims"]["sub"], "rust");
    }
    assert_eq!(report["verified"].as_array().unwrap().len(), keys.len());

    // And we verify every token node-jose signed with our keys.
    let verifier = Verifier::new(keys.iter().map(SigningKey::verifying_key));
    let expect = Expectations {
        issuer: Some("node-jose".into()),
        audiences: vec![],
        leeway: Duration::from_secs(60),
    };
    let signed = report["signed"].as_array().unwrap();
    assert_eq!(signed.len(), keys.len());
    for s in signed {
        let token = s["token"].as_str().unwrap();
        let ok = verifier
            .verify(token, &expect, Timestamp::from_second(NOW + 1).unwrap())
            .unwrap_or_else(|e| panic!("node-jose {} token rejected: {e}", s["alg"]));
        assert_eq!(ok.kid, s["kid"].as_str().unwrap());
    }
}

#[test]
fn node_jose_cannot_load_ed25519_keys() {
    let keys: Vec<SigningKey> = fixture_keys()
        .into_iter()
        .filter(|k| k.alg() == Algorithm::EdDSA)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, private_jwks_json(&keys).expose()).unwrap();
    let report = run_node(&[&path], "load");
    assert_eq!(
        report["ok"], false,
        "node-jose now loads OKP/Ed25519 keys: add EdDSA to the interop round trip and update the docs"
    );
    assert_eq!(report["error"], "unsupported key type");
}

/// A keystore generated by node-jose (`tests/interop/node/generate-fixture.js`),
/// as an operator would find it in a Secret to adopt.
#[test]
fn we_read_a_node_jose_generated_keystore() {
    let dir = repo().join("tests/fixtures/node-jose");
    let bytes = std::fs::read(dir.join("keys.json")).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let keys = parse_private_jwks(&bytes).expect("strict parser accepts node-jose's keys.json");

    let algs: Vec<Algorithm> = keys.iter().map(SigningKey::alg).collect();
    assert_eq!(
        algs,
        [
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::PS256
        ],
        "the P-256 key has no alg member and is inferred as ES256"
    );
    assert!(doc["keys"][1].get("alg").is_none());

    for (k, original) in keys.iter().zip(doc["keys"].as_array().unwrap()) {
        // node-jose's kid is kept: a thumbprint for new node-jose keys, a UUID for the old-style one.
        assert_eq!(k.kid(), original["kid"].as_str().unwrap());
        // Every member node-jose wrote is preserved when we write the key back.
        let ours = k.private_jwk();
        for (member, value) in original.as_object().unwrap() {
            assert_eq!(
                &ours[member.as_str()],
                value,
                "{}: member {member}",
                k.kid()
            );
        }
        // The key signs and verifies.
        let sig = k.sign(b"adopted").unwrap();
        k.verifying_key()
            .verify_signature(b"adopted", &sig)
            .unwrap();
    }
    assert!(keys[0].kid_is_thumbprint());
    assert!(!keys[3].kid_is_thumbprint(), "UUID kid adopted as is");

    // Tokens node-jose signed when it generated the keys verify under our Verifier.
    let tokens: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("tokens.json")).unwrap()).unwrap();
    let verifier = Verifier::new(keys.iter().map(SigningKey::verifying_key));
    let expect = Expectations {
        issuer: Some("https://node-jose.example".into()),
        audiences: vec![],
        leeway: Duration::from_secs(60),
    };
    for t in &tokens {
        let ok = verifier
            .verify(
                t["token"].as_str().unwrap(),
                &expect,
                Timestamp::from_second(NOW + 10).unwrap(),
            )
            .unwrap_or_else(|e| panic!("node-jose fixture token for {} rejected: {e}", t["kid"]));
        assert_eq!(ok.claims["sub"], "fixture");
    }
    assert_eq!(tokens.len(), keys.len());
}
