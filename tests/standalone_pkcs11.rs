//! End to end: standalone mode with `keyProvider: {type: PKCS11}` against
//! SoftHSM2 (tests/providers/install.sh), the real binary with its own
//! token (its own `SOFTHSM2_CONF`). Every key is generated in the token and
//! signs there; a full rotation ends with the pruned key's objects
//! destroyed; nothing the operator writes, logs or serves holds private
//! material or the PIN; a restart keeps the kids; a wrong PIN is a
//! `PKCS11Failed` problem and no key is made anywhere else.

mod common;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const SEC: Duration = Duration::from_secs(1);
const PIN: &str = "518273";

fn provider_spec(label: &str, pin_file: &Path) -> String {
    format!(
        "  algorithm: ES256\n  rotationInterval: 6s\n  publishAhead: 3s\n  maxTokenTTL: 4s\n  clockSkew: 1s\n  tokenEndpoint: {{enabled: true}}\n  keyProvider:\n    type: PKCS11\n    module: {}\n    tokenLabel: {label}\n    pinFile: {}\n",
        softhsm::MODULE,
        pin_file.display()
    )
}

/// The labels (kids) of the objects in the token, through OpenSC's pkcs11-tool.
fn token_labels(hsm: &softhsm::SoftHsm, label: &str) -> BTreeSet<String> {
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", hsm.conf())
        .args([
            "--module",
            softhsm::MODULE,
            "--token-label",
            label,
            "--login",
            "--pin",
            PIN,
            "--list-objects",
        ])
        .output()
        .expect("run pkcs11-tool (bash tests/providers/install.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(|l| l.trim().to_string())
        .collect()
}

fn no_secret_in(what: &str, text: &str) {
    assert!(!text.contains(PIN), "{what} holds the PIN");
    assert!(!text.contains("\"d\""), "{what} holds a private JWK member");
    assert!(
        !text.contains("PRIVATE KEY"),
        "{what} holds a PEM private key"
    );
}

#[test]
fn a_full_rotation_through_the_token_keeps_private_keys_out_of_everything() {
    let hsm = softhsm::SoftHsm::new_dir();
    let label = "e2e";
    hsm.init_token_with_util(label, PIN);
    let ws = Workspace::new();
    let pin_file = ws.dir.path().join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    ws.write_policy(
        "p.yaml",
        &manifest("hsm", "", &provider_spec(label, &pin_file)),
    );
    let conf = hsm.conf();
    let env = [("SOFTHSM2_CONF", conf.as_os_str())];
    let mut op = Operator::launch_env(&ws.policies(), &ws.state(), &[], &env);
    op.wait_for_log(|l| l["message"] == "standalone mode ready", 20 * SEC);
    let p = "default/hsm";

    let first = op.summary(p)["activeKeyID"]
        .as_str()
        .expect("an active key")
        .to_string();
    assert_eq!(op.kids(p), std::slice::from_ref(&first));
    assert!(
        token_labels(&hsm, label).contains(&first),
        "the key is in the token"
    );

    // A token from the token endpoint verifies (the operator's verifier and
    // the `verify` command on the served JWKS).
    let (token, kid) = op.mint(p, &json!({"sub": "hsm"}));
    assert_eq!(kid, first);
    assert_eq!(op.verify(p, &token).as_deref(), Ok(first.as_str()));
    assert!(
        cli_verify(&op.jwks_url(p), &token)
            .unwrap()
            .contains(&first)
    );

    // Rotate until the first key is pruned, minting with every signer.
    let deadline = Instant::now() + 30 * SEC;
    let mut signers = BTreeSet::new();
    while op.kids(p).contains(&first) {
        assert!(Instant::now() < deadline, "the first key was never pruned");
        let (token, kid) = op.mint(p, &json!({}));
        assert_eq!(op.verify(p, &token).as_deref(), Ok(kid.as_str()));
        signers.insert(kid);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(signers.len() >= 2, "a second key signed: {signers:?}");
    eventually("the pruned key's objects leave the token", 5 * SEC, || {
        (!token_labels(&hsm, label).contains(&first)).then_some(())
    });
    // Listed as awaiting destruction in lifecycle.json from the write that
    // pruned it until the token has destroyed it; then written out of the
    // list (absent whenever nothing awaits).
    let lifecycle_json = ws.policy_state(p).join("lifecycle.json");
    eventually(
        "lifecycle.json lists no key awaiting destruction",
        5 * SEC,
        || {
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&lifecycle_json).ok()?).ok()?;
            doc.get("undestroyedKeyRefs").is_none().then_some(())
        },
    );
    let kept: BTreeSet<String> = op.kids(p).into_iter().collect();
    let in_token = token_labels(&hsm, label);
    assert!(
        kept.is_subset(&in_token),
        "every served key is in the token: {kept:?} vs {in_token:?}"
    );

    // Nothing written, logged or served holds private material or the PIN.
    let dir = ws.policy_state(p);
    assert!(
        !dir.join("active.pem").exists(),
        "no active.pem for a token-held key"
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
    let lifecycle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("lifecycle.json")).unwrap()).unwrap();
    for record in lifecycle["keys"].as_array().unwrap() {
        assert!(
            record["keyRef"]
                .as_str()
                .unwrap()
                .starts_with("pkcs11:token=e2e;id=%"),
            "{record}"
        );
    }
    for (what, path) in [("/policies", "/policies"), ("/metrics", "/metrics")] {
        no_secret_in(what, &http(op.metrics, "GET", path, &[], None).text());
    }
    no_secret_in("the JWKS", &op.jwks(p).to_string());
    no_secret_in(
        "the log",
        &op.log().iter().map(|l| l.to_string()).collect::<String>(),
    );

    // A restart keeps the kids, and the active key signs through the token.
    let active = op.summary(p)["activeKeyID"].as_str().unwrap().to_string();
    let before: BTreeSet<String> = op.kids(p).into_iter().collect();
    op.stop();
    let mut op = Operator::launch_env(&ws.policies(), &ws.state(), &[], &env);
    op.wait_for_log(|l| l["message"] == "standalone mode ready", 20 * SEC);
    let after: BTreeSet<String> = op.kids(p).into_iter().collect();
    // The active key cannot have been pruned in the second of the restart.
    assert!(
        after.contains(&active),
        "{active} lost across the restart: {before:?} -> {after:?}"
    );
    assert!(
        after.iter().filter(|k| !before.contains(*k)).count() <= 1,
        "at most one new key (a rotation due meanwhile): {before:?} -> {after:?}"
    );
    let (token, kid) = op.mint(p, &json!({}));
    assert_eq!(op.verify(p, &token).as_deref(), Ok(kid.as_str()));
    assert!(cli_verify(&op.jwks_url(p), &token).unwrap().contains(&kid));
}

#[test]
fn a_wrong_pin_degrades_the_policy_and_makes_no_key() {
    let hsm = softhsm::SoftHsm::new_dir();
    hsm.init_token_with_util("wrong", PIN);
    let ws = Workspace::new();
    let pin_file = ws.dir.path().join("pin");
    std::fs::write(&pin_file, "000000\n").unwrap();
    ws.write_policy(
        "p.yaml",
        &manifest("hsm", "", &provider_spec("wrong", &pin_file)),
    );
    let conf = hsm.conf();
    let mut op = Operator::launch_env(
        &ws.policies(),
        &ws.state(),
        &[],
        &[("SOFTHSM2_CONF", conf.as_os_str())],
    );
    op.wait_for_log(|l| l["message"] == "standalone mode ready", 20 * SEC);
    let p = "default/hsm";
    let problem = eventually("the policy is degraded", 10 * SEC, || {
        op.summary(p).get("degraded").cloned()
    });
    assert_eq!(problem["reason"], "PKCS11Failed", "{problem}");
    let message = problem["message"].as_str().unwrap();
    assert!(
        message.contains("PinIncorrect") && message.contains("wrong"),
        "{message}"
    );
    assert!(!message.contains("000000"), "{message}");
    // No key anywhere: nothing served, nothing stored.
    assert_eq!(op.get(&format!("/{p}/.well-known/jwks.json")).status, 503);
    assert!(!ws.policy_state(p).join("jwks.json").exists());
    assert!(
        op.log()
            .iter()
            .any(|l| l["level"] == "ERROR" && l["reason"] == "PKCS11Failed"),
        "the failure is logged with its reason"
    );
    no_secret_in(
        "the log",
        &op.log().iter().map(|l| l.to_string()).collect::<String>(),
    );
}

/// Revoking the active key: a fresh key from the token signs at once, the
/// revoked key leaves the JWKS and then the token, and its tokens fail.
#[test]
fn a_revoked_key_leaves_the_set_and_then_the_token() {
    let hsm = softhsm::SoftHsm::new_dir();
    let label = "revoke";
    hsm.init_token_with_util(label, PIN);
    let ws = Workspace::new();
    let pin_file = ws.dir.path().join("pin");
    std::fs::write(&pin_file, PIN).unwrap();
    let spec =
        provider_spec(label, &pin_file).replace("rotationInterval: 6s", "rotationInterval: 1h");
    let spec = spec.replace("publishAhead: 3s", "publishAhead: 10m");
    ws.write_policy("p.yaml", &manifest("hsm", "", &spec));
    let conf = hsm.conf();
    let env = [("SOFTHSM2_CONF", conf.as_os_str())];
    let mut op = Operator::launch_env(&ws.policies(), &ws.state(), &[], &env);
    op.wait_for_log(|l| l["message"] == "standalone mode ready", 20 * SEC);
    let p = "default/hsm";
    let (token, k1) = op.mint(p, &json!({"sub": "before"}));
    assert!(token_labels(&hsm, label).contains(&k1));

    ws.write_policy(
        "p.yaml",
        &manifest("hsm", "", &format!("{spec}  revokedKeyIDs: [{k1}]\n")),
    );
    op.reload();
    let k2 = eventually("a fresh key replaces the revoked one", 5 * SEC, || {
        let kids = op.kids(p);
        (!kids.contains(&k1) && kids.len() == 1).then(|| kids[0].clone())
    });
    assert_eq!(op.summary(p)["activeKeyID"], k2.as_str());
    assert!(op.verify(p, &token).is_err(), "a revoked key's token fails");
    eventually("the revoked key's objects leave the token", 5 * SEC, || {
        let labels = token_labels(&hsm, label);
        (!labels.contains(&k1) && labels.contains(&k2)).then_some(())
    });
    let (token, kid) = op.mint(p, &json!({"sub": "after"}));
    assert_eq!(kid, k2);
    assert_eq!(op.verify(p, &token).as_deref(), Ok(k2.as_str()));
}
