//! End to end: the real binary in standalone mode, short durations, checked
//! over HTTP only (and the `verify` command), on 127.0.0.1.
//!
//! Each test reads like one of the contract's promises: the first key is
//! served; a new key is published `publishAhead` before it signs; a token
//! verifies for its whole life and its key is pruned only after
//! `retiredAt + maxTokenTTL + clockSkew`; manual rotation and revocation
//! through the policy file and SIGHUP; a restart keeps the keys; a corrupt
//! state is never overwritten; a bad policy document is reported while the
//! others are served.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::state_dir::{STATE_FILES, file_names, files};
use common::*;
use serde_json::{Value, json};

const SEC: Duration = Duration::from_secs(1);

const SIGHUP_LINE: &str = "SIGHUP: re-reading the policy files";

/// Sends SIGHUP and returns once the process has applied it: the main loop
/// handles one signal at a time, so when the log shows it picked up a
/// second SIGHUP, the first one's re-read and reconcile have finished. The
/// observable a negative check after a reload waits on, not a fixed sleep.
fn reload_and_settle(op: &Operator) {
    let seen = |op: &Operator| {
        op.log()
            .iter()
            .filter(|l| l["message"] == SIGHUP_LINE)
            .count()
    };
    let before = seen(op);
    for n in 1..=2 {
        op.reload();
        let deadline = Instant::now() + 10 * SEC;
        while seen(op) < before + n {
            assert!(Instant::now() < deadline, "SIGHUP #{n} not handled in 10s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn the_example_policy_is_served_within_a_second() {
    let ws = Workspace::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let started = Instant::now();
    let mut op = Operator::launch(
        &examples,
        &ws.state(),
        &["--default-policy", "default/demo"],
    );
    let r = eventually("the demo JWKS is served", 5 * SEC, || {
        let r = op.get("/default/demo/.well-known/jwks.json");
        (r.status == 200).then_some(r)
    });
    let elapsed = started.elapsed();
    eprintln!("first JWKS {elapsed:?} after the process was started");
    assert!(elapsed < SEC, "first JWKS after {elapsed:?}");
    op.wait_for_log(|l| l["message"] == "standalone mode ready", 20 * SEC);
    assert_eq!(r.header("content-type"), Some("application/jwk-set+json"));
    let jwks = r.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0].get("d").is_none(), "no private member is served");

    let summary = op.summary("default/demo");
    assert_eq!(summary["ready"], true);
    assert_eq!(summary["activeKeyID"], keys[0]["kid"]);
    assert_eq!(summary["lastRotationReason"], "Initial");
    // The default policy and the discovery document.
    assert_eq!(op.get("/.well-known/jwks.json").json(), jwks);
    let discovery = op
        .get("/default/demo/.well-known/openid-configuration")
        .json();
    assert_eq!(discovery["issuer"], "http://localhost:8080/default/demo");
    assert_eq!(op.get("/readyz").status, 200);

    // The state directory holds exactly the Secret layout, private.
    let dir = ws.policy_state("default/demo");
    assert_eq!(file_names(&dir), STATE_FILES);
    assert_eq!(fs::read(dir.join("jwks.public.json")).unwrap(), r.body);
    let (token, kid) = op.mint("default/demo", &json!({"sub": "alice"}));
    assert_eq!(Value::String(kid.clone()), keys[0]["kid"]);
    let out = cli_verify(&op.jwks_url("default/demo"), &token).unwrap();
    assert!(
        out.starts_with(&format!("valid kid={kid} alg=ES256")),
        "{out}"
    );
    assert!(op.stop().success());
}

/// Publication, activation and pruning, observed every 100 ms for one full
/// cycle of a policy that rotates every 6 s.
#[test]
fn keys_are_published_ahead_and_pruned_only_after_their_tokens_expire() {
    const PUBLISH_AHEAD: f64 = 3.0;
    const MAX_TTL: f64 = 4.0;
    const SKEW: f64 = 1.0;
    /// `--propagation-grace` as the test harness sets it.
    const GRACE: f64 = 1.0;
    const TOLERANCE: f64 = 0.3;
    let ws = Workspace::new();
    ws.write_policy(
        "rot.yaml",
        &manifest(
            "rot",
            "",
            "  algorithm: EdDSA\n  rotationInterval: 6s\n  publishAhead: 3s\n  maxTokenTTL: 4s\n  clockSkew: 1s\n  tokenEndpoint: {enabled: true}\n",
        ),
    );
    let op = Operator::start(&ws.policies(), &ws.state());
    let p = "default/rot";
    let first = op.summary(p)["activeKeyID"].as_str().unwrap().to_string();

    let mut first_published: BTreeMap<String, f64> = BTreeMap::new();
    let mut first_signing: BTreeMap<String, f64> = BTreeMap::new();
    let mut gone: BTreeMap<String, f64> = BTreeMap::new();
    let mut retired_at: BTreeMap<String, f64> = BTreeMap::new();
    // The newest token of each kid, with its exp.
    let mut tokens: BTreeMap<String, (String, f64)> = BTreeMap::new();
    let mut active = first.clone();
    // The longest time between two looks at the set: how late an
    // observation can be, under load.
    let mut max_gap: f64 = 0.0;
    let mut last_look = now_secs();
    let deadline = Instant::now() + Duration::from_secs(25);
    while !gone.contains_key(&first) {
        assert!(Instant::now() < deadline, "the first key was never pruned");
        let published: BTreeSet<String> = op.kids(p).into_iter().collect();
        let seen_at = now_secs();
        max_gap = max_gap.max(seen_at - last_look);
        last_look = seen_at;
        for kid in &published {
            first_published.entry(kid.clone()).or_insert(seen_at);
        }
        for kid in first_published.keys() {
            if !published.contains(kid) {
                gone.entry(kid.clone()).or_insert(seen_at);
            }
        }

        let (token, kid) = op.mint(p, &json!({"sub": "rotation"}));
        let minted_at = now_secs();
        assert!(
            published.contains(&kid),
            "a token carries kid {kid}, which was not in the set fetched just before"
        );
        first_signing.entry(kid.clone()).or_insert(minted_at);
        tokens.insert(kid.clone(), (token, minted_at.floor() + MAX_TTL));

        if kid != active {
            let summary = op.summary(p);
            assert_eq!(summary["activeKeyID"], kid.as_str());
            retired_at.insert(active.clone(), ts(&summary["lastRotationTime"]));
            active = kid;
        }

        // Every token verifies until its exp, though its key retired.
        for (kid, (token, exp)) in &tokens {
            if now_secs() < exp - 0.3 {
                assert_eq!(
                    op.verify(p, token).as_deref(),
                    Ok(kid.as_str()),
                    "a live token of {kid} no longer verifies"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let second = first_signing
        .keys()
        .find(|k| **k != first)
        .expect("a second key signed")
        .clone();
    let ahead = first_signing[&second] - first_published[&second];
    assert!(
        ahead >= PUBLISH_AHEAD - TOLERANCE - max_gap,
        "the second key signed {ahead:.2}s after it was published (publishAhead 3s)"
    );
    let retired = retired_at[&first];
    let pruned = gone[&first];
    eprintln!(
        "second key signed {ahead:.2}s after publication; first key pruned {:.2}s after it retired; looked every {max_gap:.2}s at most",
        pruned - retired
    );
    assert!(
        pruned >= retired + MAX_TTL + SKEW + GRACE - 0.05,
        "the first key was pruned {:.2}s after it retired (maxTokenTTL + clockSkew + propagation grace = 6s)",
        pruned - retired
    );
    assert!(
        pruned <= retired + MAX_TTL + SKEW + GRACE + 1.5 + max_gap,
        "the first key lingered {:.2}s after it retired",
        pruned - retired
    );
    // Its last token expired before the key went, and now fails.
    let (token, exp) = &tokens[&first];
    assert!(*exp + SKEW <= pruned + 0.05);
    assert!(op.verify(p, token).is_err());
    // The black-box verifier agrees.
    let err = cli_verify(&op.jwks_url(p), token).unwrap_err();
    assert!(err.starts_with("invalid token:"), "{err}");
    let (token, kid) = op.mint(p, &json!({}));
    assert!(cli_verify(&op.jwks_url(p), &token).unwrap().contains(&kid));
}

/// Manual rotation and revocation in standalone mode: edit the policy file
/// (annotation `jwks.dev/rotate-requested-at`, `spec.revokedKeyIDs`), SIGHUP.
#[test]
fn manual_rotation_and_revocation_through_the_policy_file() {
    let ws = Workspace::new();
    let spec = "  algorithm: EdDSA\n  rotationInterval: 1h\n  publishAhead: 2s\n  tokenEndpoint: {enabled: true}\n";
    ws.write_policy("p.yaml", &manifest("manual", "", spec));
    let op = Operator::start(&ws.policies(), &ws.state());
    let p = "default/manual";
    let k1 = op.summary(p)["activeKeyID"].as_str().unwrap().to_string();
    let (token1, _) = op.mint(p, &json!({"sub": "before"}));

    // Ask for a rotation.
    let annotation = "jwks.dev/rotate-requested-at: \"2026-11-24T10:00:00Z\"";
    ws.write_policy("p.yaml", &manifest("manual", annotation, spec));
    op.reload();
    let t_published = Instant::now();
    let k2 = eventually("the requested key is published", 2 * SEC, || {
        let kids = op.kids(p);
        (kids.len() == 2).then(|| kids[0].clone())
    });
    assert_ne!(k2, k1);
    assert_eq!(op.summary(p)["nextKeyID"], k2.as_str());
    assert_eq!(op.mint(p, &json!({})).1, k1, "a pending key does not sign");
    eventually("the requested key signs", 5 * SEC, || {
        (op.summary(p)["activeKeyID"] == k2.as_str()).then_some(())
    });
    let waited = t_published.elapsed();
    assert!(
        waited >= Duration::from_millis(1600),
        "activated after {waited:?}"
    );
    let summary = op.summary(p);
    assert_eq!(summary["lastRotationReason"], "Manual");
    assert_eq!(op.mint(p, &json!({})).1, k2);
    assert_eq!(
        op.kids(p),
        [k2.clone(), k1.clone()],
        "the old key stays published"
    );
    assert_eq!(op.verify(p, &token1).as_deref(), Ok(k1.as_str()));

    // The same value again is not a new request.
    reload_and_settle(&op);
    assert_eq!(op.kids(p), [k2.clone(), k1.clone()]);
    assert_eq!(op.summary(p)["activeKeyID"], k2.as_str());

    // Revoke the active key: it goes at once and a fresh key signs.
    let (token2, _) = op.mint(p, &json!({"sub": "revoked"}));
    let revoke = format!("{spec}  revokedKeyIDs: [{k2}]\n");
    ws.write_policy("p.yaml", &manifest("manual", annotation, &revoke));
    op.reload();
    let k3 = eventually("the revoked key is replaced", 2 * SEC, || {
        let s = op.summary(p);
        (s["activeKeyID"] != k2.as_str()).then(|| s["activeKeyID"].as_str().unwrap().to_string())
    });
    assert_eq!(op.summary(p)["lastRotationReason"], "Revoked");
    assert_eq!(op.kids(p), [k3.clone(), k1.clone()]);
    assert!(
        op.verify(p, &token2).is_err(),
        "a revoked key's token fails"
    );
    let err = cli_verify(&op.jwks_url(p), &token2).unwrap_err();
    assert!(err.contains("no published key has kid"), "{err}");
    assert_eq!(op.verify(p, &token1).as_deref(), Ok(k1.as_str()));

    // Revoke the retired key too.
    let revoke = format!("{spec}  revokedKeyIDs: [{k2}, {k1}]\n");
    ws.write_policy("p.yaml", &manifest("manual", annotation, &revoke));
    op.reload();
    eventually("the retired key is revoked", 2 * SEC, || {
        (op.kids(p) == [k3.clone()]).then_some(())
    });
    assert!(op.verify(p, &token1).is_err());
    assert_eq!(
        op.summary(p)["activeKeyID"],
        k3.as_str(),
        "revoking a retired key rotates nothing"
    );
}

#[test]
fn a_restart_keeps_the_keys() {
    let ws = Workspace::new();
    ws.write_policy(
        "p.yaml",
        &manifest(
            "keep",
            "",
            "  algorithm: ES256\n  tokenEndpoint: {enabled: true}\n",
        ),
    );
    let op = Operator::start(&ws.policies(), &ws.state());
    let p = "default/keep";
    let jwks = op.jwks(p);
    let active = op.summary(p)["activeKeyID"].clone();
    let (token, kid) = op.mint(p, &json!({"sub": "before restart"}));
    let on_disk = files(&ws.policy_state(p));
    assert!(op.stop().success(), "SIGTERM is a clean exit");

    let op = Operator::start(&ws.policies(), &ws.state());
    assert_eq!(op.jwks(p), jwks);
    assert_eq!(op.summary(p)["activeKeyID"], active);
    assert_eq!(op.verify(p, &token).as_deref(), Ok(kid.as_str()));
    assert_eq!(
        op.mint(p, &json!({})).1,
        kid,
        "the same key signs after a restart"
    );
    assert_eq!(
        files(&ws.policy_state(p)),
        on_disk,
        "nothing to write: nothing changed"
    );
}

/// The names in `dir` now, sorted (none when it does not exist): safe to
/// call while the process writes there.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// SPEC invariant 10: a policy's state directory deleted (or emptied) while
/// the process runs is written back from memory, with a warning; the keys
/// stay the same, tokens keep verifying.
#[test]
fn a_state_directory_deleted_while_running_is_restored_with_the_same_keys() {
    let ws = Workspace::new();
    ws.write_policy(
        "p.yaml",
        &manifest(
            "lost",
            "",
            "  algorithm: ES256\n  tokenEndpoint: {enabled: true}\n",
        ),
    );
    let mut op = Operator::start(&ws.policies(), &ws.state());
    let p = "default/lost";
    let dir = ws.policy_state(p);
    let jwks = op.jwks(p);
    let active = op.summary(p)["activeKeyID"].clone();
    let (token, kid) = op.mint(p, &json!({"sub": "before the loss"}));
    let private_set = fs::read(dir.join("jwks.json")).unwrap();

    fs::remove_dir_all(&dir).unwrap();
    let line = op.wait_for_log(
        |l| l["level"] == "WARN" && l["reason"] == "KeySetRestored",
        10 * SEC,
    );
    assert_eq!(line["policy"], p);
    eventually("the state directory is written back", 5 * SEC, || {
        (names_in(&dir) == STATE_FILES).then_some(())
    });
    // Compared, never printed: the private key set.
    assert!(
        fs::read(dir.join("jwks.json")).unwrap() == private_set,
        "the state directory was refilled with other keys"
    );
    assert_eq!(
        fs::read_to_string(dir.join("active.kid")).unwrap().trim(),
        active.as_str().unwrap()
    );
    assert_eq!(op.jwks(p), jwks);
    let summary = op.summary(p);
    assert_eq!(summary["activeKeyID"], active);
    assert_eq!(summary["warning"]["reason"], "KeySetRestored", "{summary}");
    assert!(summary.get("degraded").is_none(), "{summary}");
    assert_eq!(op.verify(p, &token).as_deref(), Ok(kid.as_str()));

    // Emptied instead of deleted: the same.
    let before = op
        .log()
        .iter()
        .filter(|l| l["reason"] == "KeySetRestored")
        .count();
    for f in STATE_FILES {
        fs::remove_file(dir.join(f)).unwrap();
    }
    eventually("the emptied directory is written back", 10 * SEC, || {
        let restored = op
            .log()
            .iter()
            .filter(|l| l["reason"] == "KeySetRestored")
            .count();
        (restored > before && names_in(&dir) == STATE_FILES).then_some(())
    });
    assert!(fs::read(dir.join("jwks.json")).unwrap() == private_set);
    assert!(
        !op.log()
            .iter()
            .any(|l| l["event"] == "KeyCreated" && l["kid"] != active),
        "no new key was generated"
    );

    // What was written back is what a restart finds.
    assert!(op.stop().success());
    let op = Operator::start(&ws.policies(), &ws.state());
    assert_eq!(op.jwks(p), jwks);
    assert_eq!(op.mint(p, &json!({})).1, kid);
}

#[test]
fn a_second_process_cannot_use_the_same_state_directory() {
    let ws = Workspace::new();
    ws.write_policy("p.yaml", &manifest("one", "", "  algorithm: EdDSA\n"));
    let _op = Operator::start(&ws.policies(), &ws.state());
    let out = std::process::Command::new(BIN)
        .args(["standalone", "--jwks-addr", "127.0.0.1:0", "--policies"])
        .arg(ws.policies())
        .arg("--state-dir")
        .arg(ws.state())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another"), "{stderr}");
}

/// A state that cannot be parsed is never overwritten: the policy is
/// degraded, the last good set keeps being served, the others carry on.
#[test]
fn a_corrupt_state_is_never_overwritten() {
    let ws = Workspace::new();
    let slow = "  algorithm: ES256\n";
    let fast = "  algorithm: EdDSA\n  rotationInterval: 4s\n  publishAhead: 1s\n";
    ws.write_policy(
        "p.yaml",
        &[
            manifest("a", "", slow),
            manifest("b", "", slow),
            manifest("c", "", fast),
        ]
        .join("---\n"),
    );
    let op = Operator::start(&ws.policies(), &ws.state());

    // While running: c's jwks.json is damaged; its next rotation (in 3 s)
    // finds it, leaves it alone and keeps serving the set it had.
    let c_jwks = op.jwks("default/c");
    fs::write(
        ws.policy_state("default/c").join("jwks.json"),
        b"{\"keys\": [{",
    )
    .unwrap();
    let c_files = files(&ws.policy_state("default/c"));
    let problem = eventually("c is degraded", 6 * SEC, || {
        let s = op.summary("default/c");
        s.get("degraded").cloned()
    });
    assert_eq!(problem["reason"], "StateCorrupt", "{problem}");
    assert!(
        problem["message"].as_str().unwrap().contains("jwks.json"),
        "{problem}"
    );
    assert_eq!(
        op.jwks("default/c"),
        c_jwks,
        "the last good set is still served"
    );
    assert_eq!(files(&ws.policy_state("default/c")), c_files);
    assert!(op.stop().success());

    // At startup: a's lifecycle.json is damaged too.
    fs::write(
        ws.policy_state("default/a").join("lifecycle.json"),
        b"garbage",
    )
    .unwrap();
    let a_files = files(&ws.policy_state("default/a"));
    let op = Operator::start(&ws.policies(), &ws.state());
    let a = op.summary("default/a");
    assert_eq!(a["ready"], false);
    assert_eq!(a["degraded"]["reason"], "StateCorrupt");
    let message = a["degraded"]["message"].as_str().unwrap();
    assert!(message.contains("default/a/lifecycle.json"), "{message}");
    assert_eq!(op.get("/default/a/.well-known/jwks.json").status, 503);
    assert_eq!(
        op.summary("default/c")["degraded"]["reason"],
        "StateCorrupt"
    );
    assert_eq!(op.summary("default/b")["ready"], true);
    assert_eq!(op.kids("default/b").len(), 1);
    reload_and_settle(&op);
    assert_eq!(files(&ws.policy_state("default/a")), a_files, "untouched");
    assert_eq!(files(&ws.policy_state("default/c")), c_files, "untouched");

    // Removing the damaged state and sending SIGHUP starts afresh.
    fs::remove_dir_all(ws.policy_state("default/a")).unwrap();
    op.reload();
    eventually("a recovers", 3 * SEC, || {
        let s = op.summary("default/a");
        (s["ready"] == true && s.get("degraded").is_none()).then_some(())
    });
    assert_eq!(op.kids("default/a").len(), 1);
}

/// SPEC invariant 9: a kid the policy file revokes leaves the JWKS and stops
/// signing at the SIGHUP, although the state cannot be written (its
/// `lifecycle.json` is damaged, and a damaged state is never overwritten).
#[test]
fn a_revocation_the_damaged_state_cannot_record_still_leaves_the_jwks_at_once() {
    let ws = Workspace::new();
    let spec = "  algorithm: EdDSA\n  rotationInterval: 1h\n  publishAhead: 10m\n  tokenEndpoint: {enabled: true}\n";
    ws.write_policy("p.yaml", &manifest("rv", "", spec));
    let op = Operator::start(&ws.policies(), &ws.state());
    let p = "default/rv";
    // A pending key too, so one key is left to serve.
    let annotation = "jwks.dev/rotate-requested-at: \"2026-12-01T00:00:00Z\"";
    ws.write_policy("p.yaml", &manifest("rv", annotation, spec));
    op.reload();
    // The summary and the JWKS are two reads: the pending key may land
    // between them, so both must show it.
    let (active, pending) = eventually("a key is pre-published", 5 * SEC, || {
        let s = op.summary(p);
        let next = s["nextKeyID"].as_str()?.to_owned();
        let active = s["activeKeyID"].as_str()?.to_owned();
        (op.kids(p).len() == 2).then_some((active, next))
    });
    assert_eq!(op.mint(p, &json!({})).1, active);

    let dir = ws.policy_state(p);
    fs::write(dir.join("lifecycle.json"), b"garbage").unwrap();
    let damaged = files(&dir);
    let revoke = format!("{spec}  revokedKeyIDs: [{active}]\n");
    ws.write_policy("p.yaml", &manifest("rv", annotation, &revoke));
    let revoked_at = Instant::now();
    op.reload();
    eventually("the revoked kid leaves the JWKS", 5 * SEC, || {
        (op.kids(p) == [pending.clone()]).then_some(())
    });
    let gone_after = revoked_at.elapsed();
    let r = http(
        op.token,
        "POST",
        &format!("/{p}/token"),
        &[("Content-Type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "key_revoked");
    assert!(r.json()["message"].as_str().unwrap().contains(&active));

    // The write that would record it failed, and /policies says so.
    let problem = op.summary(p)["degraded"].clone();
    assert_eq!(problem["reason"], "StateCorrupt", "{problem}");
    let message = problem["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("the revocation of {active} is not recorded")),
        "{message}"
    );
    assert_eq!(files(&dir), damaged, "the damaged state is untouched");
    eprintln!("revoked kid left the JWKS {gone_after:?} after SIGHUP");
}

/// A bad document is reported (log line with file, document and field; a
/// degraded entry in /policies) and the others are served.
#[test]
fn a_bad_policy_document_is_reported_and_the_others_are_served() {
    let ws = Workspace::new();
    let good = manifest("ok", "", "  algorithm: EdDSA\n");
    let broken = manifest("broken", "", "  algorithm: ES256\n  keySize: 2048\n");
    let nameless =
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata: {}\nspec: {}\n";
    ws.write_policy(
        "all.yaml",
        &[good.as_str(), &broken, nameless].join("---\n"),
    );
    let mut op = Operator::start(&ws.policies(), &ws.state());

    assert_eq!(op.kids("default/ok").len(), 1);
    let broken_summary = op.summary("default/broken");
    assert_eq!(broken_summary["ready"], false);
    let problem = &broken_summary["degraded"];
    assert_eq!(problem["reason"], "InvalidPolicy");
    let message = problem["message"].as_str().unwrap();
    assert!(
        message.contains("all.yaml document 2") && message.contains("keySize"),
        "{message}"
    );
    let line = op.wait_for_log(|l| l["document"] == 2, SEC);
    assert_eq!(line["level"], "WARN");
    assert!(
        line["file"].as_str().unwrap().ends_with("all.yaml"),
        "{line}"
    );
    assert_eq!(line["policy"], "default/broken");
    let line = op.wait_for_log(|l| l["document"] == 3, SEC);
    assert_eq!(line["field"], "metadata.name", "{line}");
    assert_eq!(op.get("/default/broken/.well-known/jwks.json").status, 503);

    // Break the good one and fix the broken one: the first keeps its keys
    // (served, frozen, degraded), the second starts.
    let ok_jwks = op.jwks("default/ok");
    let now_bad = manifest(
        "ok",
        "",
        "  algorithm: EdDSA\n  rotationInterval: 1h\n  publishAhead: 2h\n",
    );
    let fixed = manifest("broken", "", "  algorithm: ES256\n");
    ws.write_policy("all.yaml", &[now_bad.as_str(), &fixed].join("---\n"));
    op.reload();
    eventually("broken is fixed", 3 * SEC, || {
        (op.summary("default/broken")["ready"] == true).then_some(())
    });
    let ok = op.summary("default/ok");
    assert_eq!(ok["degraded"]["reason"], "InvalidPolicy", "{ok}");
    assert!(
        ok["degraded"]["message"]
            .as_str()
            .unwrap()
            .contains("publishAhead"),
        "{ok}"
    );
    assert_eq!(op.jwks("default/ok"), ok_jwks, "its keys keep being served");

    // A policy removed from the files is no longer served.
    ws.write_policy("all.yaml", &fixed);
    op.reload();
    eventually("ok is gone", 3 * SEC, || {
        (op.get("/default/ok/.well-known/jwks.json").status == 404).then_some(())
    });
    assert!(
        ws.policy_state("default/ok").join("jwks.json").exists(),
        "its keys stay on disk"
    );
}

/// A node-jose style `jwks.json` (no `alg`, its own kids, nothing else)
/// placed in a policy's state directory is adopted: its first key signs, the
/// others stay published, and the kids tokens already carry are kept.
#[test]
fn a_foreign_key_set_in_the_state_directory_is_adopted() {
    let fixture: Value = serde_json::from_slice(
        &fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/keys/all-algorithms.jwks.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let es256 = fixture["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["alg"] == "ES256")
        .map(|k| {
            let mut k = k.clone();
            k.as_object_mut().unwrap().remove("alg");
            k
        })
        .next()
        .unwrap();
    let mut older = fixture["keys"][0].clone(); // an RS256 key
    older["kid"] = json!("legacy-rsa");
    let mut newer = es256;
    newer["kid"] = json!("8e0b3c1a-legacy");

    let ws = Workspace::new();
    let dir = ws.policy_state("default/legacy");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("jwks.json"),
        json!({"keys": [newer, older]}).to_string(),
    )
    .unwrap();
    ws.write_policy(
        "p.yaml",
        &manifest(
            "legacy",
            "",
            "  algorithm: ES256\n  tokenEndpoint: {enabled: true}\n",
        ),
    );
    let op = Operator::start(&ws.policies(), &ws.state());
    let p = "default/legacy";
    assert_eq!(op.kids(p), ["8e0b3c1a-legacy", "legacy-rsa"]);
    assert_eq!(op.summary(p)["activeKeyID"], "8e0b3c1a-legacy");
    let (token, kid) = op.mint(p, &json!({}));
    assert_eq!(kid, "8e0b3c1a-legacy");
    assert!(cli_verify(&op.jwks_url(p), &token).is_ok());
    assert_eq!(
        file_names(&dir),
        STATE_FILES,
        "written back in the operator's layout"
    );
}

#[test]
fn tls_serves_every_listener_and_a_bad_pair_stops_the_start_naming_the_file() {
    let ws = Workspace::new();
    ws.write_policy(
        "tls.yaml",
        &manifest("tls", "", "  tokenEndpoint: {enabled: true}\n"),
    );
    let (ca, cert, key) = tls_pair();
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    fs::write(&cert_file, &cert).unwrap();
    fs::write(&key_file, &key).unwrap();
    let (cert_arg, key_arg) = (
        cert_file.display().to_string(),
        key_file.display().to_string(),
    );

    let op = Operator::start_with(
        &ws.policies(),
        &ws.state(),
        &["--tls-cert-file", &cert_arg, "--tls-key-file", &key_arg],
    );
    let jwks = https(
        op.jwks,
        &ca,
        "GET",
        "/default/tls/.well-known/jwks.json",
        &[],
        None,
    );
    assert_eq!(jwks.status, 200, "{}", jwks.text());
    let minted = https(
        op.token,
        &ca,
        "POST",
        "/default/tls/token",
        &[("content-type", "application/json")],
        Some(br#"{"sub":"alice"}"#),
    );
    assert_eq!(minted.status, 200, "{}", minted.text());
    assert_eq!(
        minted.json()["kid"],
        jwks.json()["keys"][0]["kid"],
        "minted over TLS by the key the JWKS listener serves over TLS"
    );
    assert!(op.stop().success());

    // A key that is not the certificate's: no start, and the message says
    // which files.
    let (_, _, other_key) = tls_pair();
    fs::write(&key_file, &other_key).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["standalone", "--policies"])
        .arg(ws.policies())
        .arg("--state-dir")
        .arg(ws.state())
        .args(["--jwks-addr", "127.0.0.1:0"])
        .args(["--tls-cert-file", &cert_arg, "--tls-key-file", &key_arg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = eventually("the process exits", 20 * SEC, || child.try_wait().unwrap());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&key_arg) && stderr.contains("does not match"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}

/// The token listener mints tokens: on a non-loopback address without a
/// client credential the process does not start (non-zero exit, a message
/// naming the flags); with `--token-auth-file` it answers only the token's
/// holders, 401 with `WWW-Authenticate: Bearer` to everyone else.
#[test]
fn the_token_listener_needs_a_credential_beyond_loopback() {
    let ws = Workspace::new();
    ws.write_policy(
        "p.yaml",
        &manifest(
            "mint",
            "",
            "  algorithm: EdDSA\n  tokenEndpoint:\n    enabled: true\n",
        ),
    );
    let out = std::process::Command::new(BIN)
        .args(["standalone", "--jwks-addr", "127.0.0.1:0"])
        .args(["--token-addr", "0.0.0.0:0", "--policies"])
        .arg(ws.policies())
        .arg("--state-dir")
        .arg(ws.state())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started without a credential");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--token-auth-file") && stderr.contains("loopback"),
        "{stderr}"
    );

    let token_file = ws.state().with_extension("token");
    fs::write(&token_file, "mint-credential\n").unwrap();
    let op = Operator::start_with(
        &ws.policies(),
        &ws.state(),
        &["--token-auth-file", token_file.to_str().unwrap()],
    );
    let body = br#"{"sub":"intruder"}"#;
    let json = ("Content-Type", "application/json");
    for auth in [None, Some("Bearer wrong"), Some("mint-credential")] {
        let mut headers = vec![json];
        headers.extend(auth.map(|a| ("Authorization", a)));
        let r = http(
            op.token,
            "POST",
            "/default/mint/token",
            &headers,
            Some(body),
        );
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text());
        assert_eq!(r.json()["error"], "unauthorized");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("www-authenticate") && v == "Bearer"),
            "{:?}",
            r.headers
        );
    }
    let r = http(
        op.token,
        "POST",
        "/default/mint/token",
        &[json, ("Authorization", "Bearer mint-credential")],
        Some(body),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["token"].is_string());
    // A bad client is not an ERROR (or WARN) line.
    assert!(
        !op.log()
            .iter()
            .any(|l| l["level"] == "ERROR" || l["level"] == "WARN"),
        "{:?}",
        op.log()
    );
}
