//! End to end: standalone mode with `keyProvider: {type: AWSKMS}` against
//! local-kms (tests/providers/install.sh) behind a proxy that can throttle
//! or refuse calls, the real binary with a `credentialsFile`. ES256 and
//! RS256 keys are made in KMS and sign there through the token endpoint;
//! throttled signatures are retried and counted, not an outage; a full
//! rotation ends with the pruned key pending deletion in KMS; a KMS that
//! refuses to make keys is `KMSFailed` while the current key keeps signing;
//! nothing the operator writes, logs or serves holds private material or
//! the credentials.

mod common;
#[path = "common/local_kms.rs"]
mod local_kms;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_kms::types::KeyState;
use common::*;
use jwks_operator::providers::kms::{KmsConfig, KmsProvider, StaticCredentials};
use jwks_operator::publish::credentials::Credentials;
use local_kms::{LocalKms, Throttler};
use serde_json::json;

const SEC: Duration = Duration::from_secs(1);

fn spec(alg: &str, endpoint: &str, credentials: &std::path::Path) -> String {
    format!(
        "  algorithm: {alg}\n  rotationInterval: 6s\n  publishAhead: 3s\n  maxTokenTTL: 4s\n  clockSkew: 1s\n  tokenEndpoint: {{enabled: true}}\n  keyProvider:\n    type: AWSKMS\n    region: {}\n    endpoint: '{endpoint}'\n    credentialsFile: {}\n",
        local_kms::REGION,
        credentials.display()
    )
}

fn no_secret_in(what: &str, text: &str) {
    assert!(
        !text.contains(local_kms::SECRET_ACCESS_KEY),
        "{what} holds the secret access key"
    );
    assert!(!text.contains("\"d\""), "{what} holds a private JWK member");
    assert!(
        !text.contains("PRIVATE KEY"),
        "{what} holds a PEM private key"
    );
}

/// The `keyRef` of every key in a policy's `lifecycle.json`, by kid.
fn key_refs(ws: &Workspace, p: &str) -> Vec<(String, String)> {
    let lifecycle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.policy_state(p).join("lifecycle.json")).unwrap())
            .unwrap();
    lifecycle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kid"].as_str().unwrap_or_default().to_owned(),
                r["keyRef"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn throttled_metric(op: &Operator) -> u64 {
    let text = http(op.metrics, "GET", "/metrics", &[], None).text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("jwks_operator_key_provider_throttled_total{provider=\"AWSKMS\"} ")
        })
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no throttled counter in:\n{text}"))
}

#[test]
fn es256_and_rs256_rotate_through_kms_and_keep_secrets_out_of_everything() {
    let kms = LocalKms::start();
    let proxy = Throttler::start(kms.addr);
    let ws = Workspace::new();
    let creds = ws.dir.path().join("aws-credentials");
    std::fs::write(&creds, local_kms::credentials_env()).unwrap();
    let docs: Vec<String> = ["ES256", "RS256"]
        .iter()
        .map(|alg| {
            manifest(
                &format!("kms-{}", alg.to_lowercase()),
                "",
                &spec(alg, &proxy.endpoint(), &creds),
            )
        })
        .collect();
    ws.write_policy("p.yaml", &docs.join("---\n"));
    let mut op = Operator::launch_env(&ws.policies(), &ws.state(), &[], &[]);
    op.wait_for_log(|l| l["message"] == "standalone mode ready", 30 * SEC);
    // A client of its own to look at the keys in KMS.
    let inspect = KmsProvider::open(&KmsConfig {
        region: local_kms::REGION.into(),
        endpoint: Some(kms.endpoint()),
        credentials: Some(
            StaticCredentials::from_credentials(
                &Credentials::parse_env(local_kms::credentials_env().as_bytes()).unwrap(),
            )
            .unwrap(),
        ),
        policy: "test/inspect".into(),
    })
    .unwrap();

    for p in ["default/kms-es256", "default/kms-rs256"] {
        let first = op.summary(p)["activeKeyID"]
            .as_str()
            .expect("an active key")
            .to_string();
        let (token, kid) = op.mint(p, &json!({"sub": "kms"}));
        assert_eq!(kid, first);
        assert_eq!(op.verify(p, &token).as_deref(), Ok(first.as_str()));
        assert!(
            cli_verify(&op.jwks_url(p), &token)
                .unwrap()
                .contains(&first)
        );
        let refs = key_refs(&ws, p);
        let first_arn = refs
            .iter()
            .find(|(k, _)| *k == first)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("no keyRef for {first}: {refs:?}"));
        assert!(
            first_arn.starts_with("arn:aws:kms:eu-west-2:111122223333:key/"),
            "{first_arn}"
        );
        assert_eq!(
            inspect.key_state(&first_arn).unwrap(),
            Some(KeyState::Enabled)
        );

        // Rotate until the first key is pruned, minting with every signer;
        // some signatures are throttled on the way and still succeed.
        let throttled_before = throttled_metric(&op);
        proxy.throttle.store(2, Ordering::SeqCst);
        let deadline = Instant::now() + 40 * SEC;
        let mut signers = BTreeSet::from([first.clone()]);
        while op.kids(p).contains(&first) {
            assert!(
                Instant::now() < deadline,
                "{p}: the first key was never pruned"
            );
            let (token, kid) = op.mint(p, &json!({}));
            assert_eq!(op.verify(p, &token).as_deref(), Ok(kid.as_str()));
            signers.insert(kid);
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(signers.len() >= 2, "{p}: a second key signed: {signers:?}");
        assert!(
            throttled_metric(&op) >= throttled_before + 2,
            "{p}: the throttled signatures are counted"
        );
        eventually("the pruned key is pending deletion", 10 * SEC, || {
            (inspect.key_state(&first_arn).unwrap() == Some(KeyState::PendingDeletion))
                .then_some(())
        });
        for (_, arn) in key_refs(&ws, p) {
            assert_eq!(
                inspect.key_state(&arn).unwrap(),
                Some(KeyState::Enabled),
                "{p}: every key in the set is usable"
            );
        }
    }

    // KMS refuses to make keys: the policies degrade with KMSFailed at their
    // next rotation, and their current keys keep signing.
    proxy.refuse_create.store(true, Ordering::SeqCst);
    let p = "default/kms-es256";
    let problem = eventually("the policy is degraded", 20 * SEC, || {
        op.summary(p).get("degraded").cloned()
    });
    assert_eq!(problem["reason"], "KMSFailed", "{problem}");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{problem}"
    );
    let (token, kid) = op.mint(p, &json!({"sub": "still"}));
    assert_eq!(op.verify(p, &token).as_deref(), Ok(kid.as_str()));
    proxy.refuse_create.store(false, Ordering::SeqCst);

    // Nothing written, logged or served holds private material or the secret.
    for p in ["default/kms-es256", "default/kms-rs256"] {
        let dir = ws.policy_state(p);
        assert!(
            !dir.join("active.pem").exists(),
            "no active.pem for a KMS key"
        );
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                no_secret_in(
                    &path.display().to_string(),
                    &std::fs::read_to_string(&path).unwrap(),
                );
            }
        }
        no_secret_in("the JWKS", &op.jwks(p).to_string());
    }
    for (what, path) in [("/policies", "/policies"), ("/metrics", "/metrics")] {
        no_secret_in(what, &http(op.metrics, "GET", path, &[], None).text());
    }
    no_secret_in(
        "the log",
        &op.log().iter().map(|l| l.to_string()).collect::<String>(),
    );

    // A restart binds the stored keys to KMS again by their ARNs: the
    // active key signs, with the same kid.
    let p = "default/kms-rs256";
    let active = op.summary(p)["activeKeyID"].as_str().unwrap().to_string();
    op.stop();
    let mut op = Operator::launch_env(&ws.policies(), &ws.state(), &[], &[]);
    op.wait_for_log(|l| l["message"] == "standalone mode ready", 30 * SEC);
    assert!(
        op.kids(p).contains(&active),
        "{active} lost across the restart"
    );
    let (token, kid) = op.mint(p, &json!({"sub": "after restart"}));
    assert_eq!(op.verify(p, &token).as_deref(), Ok(kid.as_str()));
    assert!(cli_verify(&op.jwks_url(p), &token).unwrap().contains(&kid));
    op.stop();
}

#[test]
fn an_unreachable_kms_degrades_the_policy_and_makes_no_key() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let ws = Workspace::new();
    let creds = ws.dir.path().join("aws-credentials");
    std::fs::write(&creds, local_kms::credentials_env()).unwrap();
    ws.write_policy(
        "p.yaml",
        &manifest("kms", "", &spec("ES256", &endpoint, &creds)),
    );
    let mut op = Operator::launch_env(&ws.policies(), &ws.state(), &[], &[]);
    op.wait_for_log(|l| l["message"] == "standalone mode ready", 30 * SEC);
    let p = "default/kms";
    let problem = eventually("the policy is degraded", 20 * SEC, || {
        op.summary(p).get("degraded").cloned()
    });
    assert_eq!(problem["reason"], "KMSFailed", "{problem}");
    assert!(
        problem["message"].as_str().unwrap().contains("Unreachable"),
        "{problem}"
    );
    assert_eq!(op.get(&format!("/{p}/.well-known/jwks.json")).status, 503);
    assert!(!ws.policy_state(p).join("jwks.json").exists());
    no_secret_in(
        "the log",
        &op.log().iter().map(|l| l.to_string()).collect::<String>(),
    );
    op.stop();
}
