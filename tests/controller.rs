//! The operator against a real API server: `jwks-operator run` as a process,
//! authenticated as the Helm chart's ServiceAccount with the chart's RBAC.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jwks_operator::api::KeyRotationPolicy;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::{Operator, TestEnv, kids};

const DATA_KEYS: [&str; 5] = [
    "active.kid",
    "active.pem",
    "jwks.json",
    "jwks.public.json",
    "lifecycle.json",
];

type Env = TestEnv;

async fn env(prefix: &str) -> Env {
    TestEnv::new(prefix).await
}

impl TestEnv {
    /// Waits until `check` returns Some for the policy.
    async fn policy_until<T>(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&KeyRotationPolicy) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let p = self.policies().get(name).await.unwrap();
            if let Some(v) = check(&p) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not reached in {limit:?}; status: {}",
                serde_json::to_string_pretty(&p.status).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ready(&self, name: &str) -> KeyRotationPolicy {
        self.policy_until(name, Duration::from_secs(30), "Ready", |p| {
            let ready = p
                .status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then(|| p.clone())
        })
        .await
    }

    /// The active kid of `name`, once it is Ready.
    async fn active_kid_when_ready(&self, name: &str) -> String {
        self.ready(name)
            .await
            .status
            .and_then(|s| s.active_key_id)
            .expect("a Ready policy has an activeKeyID")
    }

    async fn secret(&self, name: &str) -> Secret {
        self.secrets().get(name).await.expect("get Secret")
    }

    fn jwks_path(&self, name: &str) -> String {
        format!("/{}/{name}/.well-known/jwks.json", self.ns)
    }

    /// The reasons of the Events about `name`, once `reason` is among them:
    /// the operator records an Event after the write it reports, so a check
    /// right after the write would race it. Fails after 10 s.
    async fn event_reasons_with(&self, name: &str, reason: &str) -> BTreeSet<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reasons = self.event_reasons(name).await;
            if reasons.contains(reason) {
                return reasons;
            }
            assert!(
                Instant::now() < deadline,
                "no {reason} Event about {name} within 10 s: {reasons:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn event_reasons(&self, name: &str) -> BTreeSet<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.admin.clone(), &self.ns);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }
}

fn data(secret: &Secret, key: &str) -> Vec<u8> {
    secret.data.as_ref().unwrap()[key].0.clone()
}

const PRIVATE_MEMBERS: [&str; 6] = ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\""];

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_becomes_a_ready_secret_served_over_http_with_the_charts_permissions() {
    let env = env("ctl-basic").await;
    let op = env.operator(&["--public-base-url=http://jwks.test"]);
    let created = env
        .create(
            "api",
            json!({
                "algorithm": "ES256",
                "issuer": "https://issuer.test",
                "audiences": ["orders"],
                "publicConfigMap": "api-public",
                "tokenEndpoint": {"enabled": true},
            }),
        )
        .await;
    let p = env.ready("api").await;
    let status = p.status.clone().unwrap();
    let active = status.active_key_id.clone().expect("activeKeyID");
    assert_eq!(status.keys.len(), 1);
    assert_eq!(status.key_count, Some(1));
    assert_eq!(status.secret_name.as_deref(), Some("api-jwks"));
    assert_eq!(status.observed_generation, p.metadata.generation);
    assert_eq!(
        status.jwks_uri.as_deref(),
        Some(format!("http://jwks.test/{}/api/.well-known/jwks.json", env.ns).as_str())
    );
    assert_eq!(
        serde_json::to_value(status.last_rotation_reason).unwrap(),
        "Initial"
    );
    assert!(status.next_rotation_time.is_some());
    let status_json = serde_json::to_string(&status).unwrap();
    for m in PRIVATE_MEMBERS {
        assert!(!status_json.contains(m), "status carries {m}");
    }

    // The Secret: SPEC's data keys, labels, controller reference.
    let secret = env.secret("api-jwks").await;
    let keys: Vec<&str> = secret
        .data
        .as_ref()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, DATA_KEYS);
    let labels = secret.labels();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "jwks-operator");
    assert_eq!(labels["jwks.dev/policy"], "api");
    let owner = &secret.owner_references()[0];
    assert_eq!(owner.uid, created.uid().unwrap());
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        String::from_utf8(data(&secret, "active.kid")).unwrap(),
        active
    );
    assert!(
        String::from_utf8(data(&secret, "active.pem"))
            .unwrap()
            .contains("BEGIN PRIVATE KEY")
    );
    let public = String::from_utf8(data(&secret, "jwks.public.json")).unwrap();
    for m in PRIVATE_MEMBERS {
        assert!(!public.contains(m), "public set carries {m}");
    }

    // Served from memory, byte for byte the Secret's public set.
    let (code, body) = op.get(&env.jwks_path("api"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, public);
    assert_eq!(kids(&body), vec![active.clone()]);
    // The optional public ConfigMap carries the same public set.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.admin.clone(), &env.ns);
    let cm = cms.get("api-public").await.expect("public ConfigMap");
    assert_eq!(cm.data.as_ref().unwrap()["jwks.json"], public);
    assert_eq!(cm.owner_references()[0].uid, created.uid().unwrap());
    let (code, metrics) = op.get("/metrics");
    assert_eq!(code, 200);
    for family in [
        "jwks_operator_reconcile_duration_seconds_count",
        "jwks_operator_leader 1",
        "jwks_operator_keys{",
        "jwks_operator_key_generation_seconds_count",
    ] {
        assert!(metrics.contains(family), "{family} missing from /metrics");
    }
    let (code, discovery) = op.get(&format!("/{}/api/.well-known/openid-configuration", env.ns));
    assert_eq!(code, 200);
    let discovery: Value = serde_json::from_str(&discovery).unwrap();
    assert_eq!(discovery["issuer"], "https://issuer.test");
    let (code, policies) = op.get("/policies");
    assert_eq!(code, 200);
    assert!(policies.contains(&active), "{policies}");

    // Mint and verify through the token listener.
    let (code, minted) = op.post_token(&format!("/{}/api/token", env.ns), &json!({"sub": "alice"}));
    assert_eq!(code, 200, "{minted}");
    assert_eq!(minted["kid"], active.as_str());
    let (code, verified) = op.post_token(
        &format!("/{}/api/verify", env.ns),
        &json!({"token": minted["token"]}),
    );
    assert_eq!(code, 200, "{verified}");
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["claims"]["aud"], "orders");

    // Events and `kubectl get krp`.
    env.event_reasons_with("api", "KeyCreated").await;

    // An issuer that mints on the token listener: a condition of its own
    // (Ready and Degraded untouched) and a Warning Event.
    let warning = p
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "TokenEndpointOnIssuer")
        .expect("the TokenEndpointOnIssuer condition")
        .clone();
    assert_eq!(
        (warning.status.as_str(), warning.reason.as_str()),
        ("True", "TokenEndpointOnIssuer")
    );
    assert!(
        warning.message.contains("https://issuer.test"),
        "{}",
        warning.message
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reasons = env.event_reasons("api").await;
        if reasons.contains("TokenEndpointOnIssuer") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TokenEndpointOnIssuer Event: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = std::process::Command::new(env.cp.bin.join("kubectl"))
        .arg(format!("--kubeconfig={}", env.cp.kubeconfig.display()))
        .args(["get", "krp", "-n", &env.ns])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ALGORITHM",
            "ACTIVE",
            "KID",
            "KEYS",
            "NEXT",
            "ROTATION",
            "READY",
            "AGE"
        ],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("ES256") && row.contains(&active) && row.contains("True"),
        "{table}"
    );

    // Nothing in the operator's log is key material.
    let log = op.log_text();
    assert!(!log.contains("PRIVATE KEY"), "private key in log");
    assert!(!log.contains(&String::from_utf8(data(&secret, "active.pem")).unwrap()[30..90]));
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_rotation_pre_publishes_then_signs_then_prunes_after_the_token_lifetime() {
    let env = env("ctl-rotate").await;
    let op = env.operator(&[]);
    // Every 8 s; published 3 s ahead; tokens live 3 s; 1 s of skew.
    env.create(
        "fast",
        json!({
            "algorithm": "ES256",
            "rotationInterval": "8s",
            "publishAhead": "3s",
            "maxTokenTTL": "3s",
            "clockSkew": "1s",
            "tokenEndpoint": {"enabled": true},
        }),
    )
    .await;
    let first = env.active_kid_when_ready("fast").await;
    let mint = || {
        let (code, m) = op.post_token(&format!("/{}/fast/token", env.ns), &json!({}));
        assert_eq!(code, 200, "{m}");
        m
    };
    let early_token = mint();
    assert_eq!(early_token["kid"], first.as_str());

    // Watch over HTTP only: when each kid is first published, first signs,
    // and last published.
    let started = Instant::now();
    let mut published: Vec<(String, Duration)> = Vec::new();
    let mut signs: Vec<(String, Duration)> = Vec::new();
    let mut last_seen_first = Duration::ZERO;
    let mut early_token_verified_until = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(22) {
        let now = started.elapsed();
        let (code, body) = op.get(&env.jwks_path("fast"));
        assert_eq!(code, 200, "JWKS must always answer 200: {body}");
        for kid in kids(&body) {
            if !published.iter().any(|(k, _)| *k == kid) {
                published.push((kid.clone(), now));
            }
            if kid == first {
                last_seen_first = now;
            }
        }
        let m = mint();
        let kid = m["kid"].as_str().unwrap().to_owned();
        if !signs.iter().any(|(k, _)| *k == kid) {
            signs.push((kid, now));
        }
        let (code, v) = op.post_token(
            &format!("/{}/fast/verify", env.ns),
            &json!({"token": early_token["token"]}),
        );
        if code == 200 && v["valid"] == true {
            early_token_verified_until = now;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(signs.len() >= 2, "no rotation seen: {signs:?}");
    // Invariant 2: each new kid was in the JWKS publishAhead before it signed.
    for (kid, signed_at) in signs.iter().skip(1) {
        let (_, published_at) = published
            .iter()
            .find(|(k, _)| k == kid)
            .expect("signed kid was published");
        let lead = signed_at.saturating_sub(*published_at);
        assert!(
            lead >= Duration::from_millis(2500),
            "{kid} signed {lead:?} after it was published (publishAhead 3s); published {published:?} signs {signs:?}"
        );
    }
    // Invariant 3: the first key stayed published until its last token could
    // expire (it signed until the second key took over, + 3 s TTL + 1 s skew),
    // and then it was pruned.
    let second_signs = signs[1].1;
    assert!(
        last_seen_first + Duration::from_millis(300) >= second_signs + Duration::from_secs(4),
        "first key pruned too early: last seen {last_seen_first:?}, replaced at {second_signs:?}"
    );
    assert!(
        last_seen_first < started.elapsed() - Duration::from_secs(1),
        "first key never pruned (last seen {last_seen_first:?})"
    );
    // A token minted before the rotation verified for its whole life.
    assert!(
        early_token_verified_until >= Duration::from_millis(2500),
        "early token stopped verifying at {early_token_verified_until:?}"
    );
    let status = env.policies().get("fast").await.unwrap().status.unwrap();
    assert!(matches!(
        serde_json::to_value(status.last_rotation_reason)
            .unwrap()
            .as_str(),
        Some("Scheduled")
    ));
    let reasons = env.event_reasons_with("fast", "KeyPruned").await;
    for r in ["KeyCreated", "KeyActivated", "KeyRetired", "KeyPruned"] {
        assert!(reasons.contains(r), "missing Event {r}: {reasons:?}");
    }
    drop(op);
}

async fn wait_jwks(
    op: &Operator,
    path: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let (code, body) = op.get(path);
        let k = kids(&body);
        if code == 200 && check(&k) {
            return k;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen in {limit:?}: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_rotation_by_annotation_and_by_the_rotate_command() {
    let env = env("ctl-manual").await;
    let op = env.operator(&[]);
    env.create(
        "man",
        json!({"algorithm": "EdDSA", "publishAhead": "2s", "tokenEndpoint": {"enabled": true}}),
    )
    .await;
    let first = env.active_kid_when_ready("man").await;
    let path = env.jwks_path("man");

    // By annotation: the new kid is published within 2 s, signs after publishAhead.
    let asked = Instant::now();
    let patch = json!({"metadata": {"annotations": {"jwks.dev/rotate-requested-at": "first"}}});
    env.policies()
        .patch("man", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let published = wait_jwks(
        &op,
        &path,
        Duration::from_secs(2),
        "manual rotation's new kid",
        |k| k.len() == 2,
    )
    .await;
    let visible_after = asked.elapsed();
    let second = published.iter().find(|k| **k != first).unwrap().clone();
    let (_, m) = op.post_token(&format!("/{}/man/token", env.ns), &json!({}));
    assert_eq!(
        m["kid"],
        first.as_str(),
        "the new key must not sign before publishAhead"
    );
    let p = env
        .policy_until("man", Duration::from_secs(10), "second key active", |p| {
            (p.status.as_ref()?.active_key_id.as_deref() == Some(second.as_str()))
                .then(|| p.clone())
        })
        .await;
    let status = p.status.unwrap();
    assert_eq!(status.last_rotation_request.as_deref(), Some("first"));
    assert_eq!(
        serde_json::to_value(status.last_rotation_reason).unwrap(),
        "Manual"
    );
    eprintln!(
        "manual rotation: new kid visible on the JWKS route {visible_after:?} after the annotation"
    );

    // The same value again does nothing.
    let rv = env.secret("man-jwks").await.resource_version();
    env.policies()
        .patch(
            "man",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"touch": "1"}}})),
        )
        .await
        .unwrap();
    env.reconciled_after_a_spec_touch("man").await;
    assert_eq!(
        env.secret("man-jwks").await.resource_version(),
        rv,
        "re-applying the same request rotated again"
    );

    // By the CLI, as a user with the admin kubeconfig.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
        .args(["rotate", "man", "-n", &env.ns])
        .env("KUBECONFIG", &env.cp.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rotation of"));
    let third = wait_jwks(
        &op,
        &path,
        Duration::from_secs(2),
        "CLI rotation's new kid",
        |k| k.iter().any(|kid| *kid != first && *kid != second),
    )
    .await;
    assert_eq!(third.len(), 3, "{third:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
        .args(["rotate", "no-such-policy", "-n", &env.ns])
        .env("KUBECONFIG", &env.cp.kubeconfig)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_the_active_key_removes_it_at_once_and_a_fresh_key_signs() {
    let env = env("ctl-revoke").await;
    let op = env.operator(&[]);
    env.create(
        "rev",
        json!({"algorithm": "ES256", "tokenEndpoint": {"enabled": true}}),
    )
    .await;
    let first = env.active_kid_when_ready("rev").await;
    let (_, old_token) = op.post_token(&format!("/{}/rev/token", env.ns), &json!({}));
    let patch = json!({"spec": {"revokedKeyIDs": [first]}});
    env.policies()
        .patch("rev", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let now = wait_jwks(
        &op,
        &env.jwks_path("rev"),
        Duration::from_secs(3),
        "revocation",
        |k| !k.contains(&first) && k.len() == 1,
    )
    .await;
    let (_, m) = op.post_token(&format!("/{}/rev/token", env.ns), &json!({}));
    assert_eq!(m["kid"], now[0].as_str(), "the fresh key signs immediately");
    let (code, v) = op.post_token(
        &format!("/{}/rev/verify", env.ns),
        &json!({"token": old_token["token"]}),
    );
    assert_eq!(code, 401);
    assert_eq!(v["valid"], false);
    env.policy_until("rev", Duration::from_secs(5), "Revoked reason", |p| {
        let s = p.status.as_ref()?;
        (serde_json::to_value(s.last_rotation_reason).ok()? == "Revoked").then_some(())
    })
    .await;
    env.event_reasons_with("rev", "KeyRevoked").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_retired_key_shows_the_exposure_window_and_rotate_on_revoke_signs_with_a_fresh_key()
 {
    let env = env("ctl-exposure").await;
    let op = env.operator(&[]);
    env.create(
        "exp",
        json!({
            "algorithm": "ES256",
            "rotationInterval": "8s",
            "publishAhead": "4s",
            "clockSkew": "1s",
            "maxTokenTTL": "5m",
            "verifierRefreshInterval": "3s",
            "tokenEndpoint": {"enabled": true},
        }),
    )
    .await;
    let first = env.active_kid_when_ready("exp").await;
    // Wait for the first scheduled rotation: `first` is then retired.
    let second = env
        .policy_until("exp", Duration::from_secs(20), "a rotation", |p| {
            let s = p.status.as_ref()?;
            let active = s.active_key_id.clone()?;
            (active != first).then_some(active)
        })
        .await;
    let status = env.policies().get("exp").await.unwrap().status.unwrap();
    assert_eq!(status.last_revocation_time, None);
    assert_eq!(status.revocation_exposure_until, None);

    let patch = json!({"spec": {"revokedKeyIDs": [first], "rotateOnRevoke": true}});
    env.policies()
        .patch("exp", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let status = env
        .policy_until(
            "exp",
            Duration::from_secs(5),
            "the revocation in status",
            |p| {
                let s = p.status.as_ref()?;
                s.revocation_exposure_until.is_some().then(|| s.clone())
            },
        )
        .await;
    // A verifier that cached the set before may trust `first` until the
    // revocation plus verifierRefreshInterval (the served max-age is 2 s).
    let revoked_at = status.last_revocation_time.clone().unwrap().0;
    let until = status.revocation_exposure_until.clone().unwrap().0;
    assert_eq!(
        until.duration_since(revoked_at),
        jiff::SignedDuration::from_secs(3)
    );
    // rotateOnRevoke: a fresh key signed at once, and the former signer
    // stays published for its tokens.
    let fresh = status.active_key_id.clone().unwrap();
    assert!(fresh != first && fresh != second, "{fresh}");
    assert_eq!(
        serde_json::to_value(status.last_rotation_reason).unwrap(),
        "Revoked"
    );
    let served = wait_jwks(
        &op,
        &env.jwks_path("exp"),
        Duration::from_secs(3),
        "the revocation served",
        |k| !k.contains(&first) && k.contains(&fresh),
    )
    .await;
    assert!(served.contains(&second), "{served:?}");
    let (_, minted) = op.post_token(&format!("/{}/exp/token", env.ns), &json!({}));
    assert_eq!(minted["kid"], fresh.as_str());
    // The same instant as a metric, for alerts.
    let (code, metrics) = op.get("/metrics");
    assert_eq!(code, 200);
    let line = format!(
        "jwks_operator_revoked_key_exposure_timestamp_seconds{{namespace=\"{}\",name=\"exp\"}} {}",
        env.ns,
        until.as_second()
    );
    assert!(metrics.contains(&line), "{line} not in {metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_secret_is_never_overwritten_and_the_last_good_set_is_served() {
    let env = env("ctl-corrupt").await;
    let op = env.operator(&[]);
    env.create("cor", json!({"algorithm": "ES256"})).await;
    env.ready("cor").await;
    let (_, good) = op.get(&env.jwks_path("cor"));
    let patch = json!({"data": {"lifecycle.json": "bm90IGpzb24="}});
    let corrupted = env
        .secrets()
        .patch("cor-jwks", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let p = env.degraded("cor", "CorruptKeySet").await;
    assert!(
        p.contains("lifecycle.json"),
        "the message names the data key: {p}"
    );
    env.reconciled_after_a_spec_touch("cor").await;
    let after = env.secret("cor-jwks").await;
    assert_eq!(
        after.resource_version(),
        corrupted.resource_version(),
        "the corrupt Secret was written"
    );
    let (code, served) = op.get(&env.jwks_path("cor"));
    assert_eq!(
        (code, served),
        (200, good.clone()),
        "the last good set stays served"
    );
    env.event_reasons_with("cor", "CorruptKeySet").await;

    // A replica that starts now has no last good set in memory: it serves
    // the Secret's jwks.public.json, which is intact.
    drop(op);
    let op = env.operator(&[]);
    let (code, served) = op.get(&env.jwks_path("cor"));
    assert_eq!(
        (code, served),
        (200, good),
        "a restarted replica serves the stored public set"
    );
    let (code, policies) = op.get("/policies");
    assert_eq!(code, 200);
    assert!(policies.contains("CorruptKeySet"), "{policies}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_secret_is_restored_from_memory_or_recreated_and_a_deleted_policy_takes_its_secret_along()
 {
    let env = env("ctl-delete").await;
    let mut op = env.operator(&[]);
    env.create("del", json!({"algorithm": "EdDSA"})).await;
    let first = env.active_kid_when_ready("del").await;
    let before = env.secret("del-jwks").await;
    env.secrets()
        .delete("del-jwks", &DeleteParams::default())
        .await
        .unwrap();
    // The operator still holds the set: it writes the same keys back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let restored = loop {
        if let Some(s) = env.secrets().get_opt("del-jwks").await.unwrap()
            && s.uid() != before.uid()
        {
            break s;
        }
        assert!(Instant::now() < deadline, "the Secret was not written back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Compared, never printed: the data is a private key set.
    assert!(
        data(&restored, "jwks.json") == data(&before, "jwks.json"),
        "the Secret was written back with other keys"
    );
    assert_eq!(
        String::from_utf8(data(&restored, "active.kid")).unwrap(),
        first
    );
    let reasons = env.event_reasons_with("del", "SecretRestored").await;
    assert!(!reasons.contains("SecretRecreated"), "{reasons:?}");
    let (code, body) = op.get(&env.jwks_path("del"));
    assert_eq!((code, kids(&body)), (200, vec![first.clone()]));

    // Deleted while no replica runs: nothing remembers the keys, so a fresh
    // set is generated, with a Warning.
    op.terminate();
    env.secrets()
        .delete("del-jwks", &DeleteParams::default())
        .await
        .unwrap();
    let _op = env.operator(&[]);
    let second = env
        .policy_until(
            "del",
            Duration::from_secs(10),
            "a fresh key after deletion",
            |p| {
                let kid = p.status.as_ref()?.active_key_id.clone()?;
                (kid != first).then_some(kid)
            },
        )
        .await;
    let secret = env.secret("del-jwks").await;
    assert_eq!(
        String::from_utf8(data(&secret, "active.kid")).unwrap(),
        second
    );
    env.event_reasons_with("del", "SecretRecreated").await;

    env.policies()
        .delete("del", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.secrets().get_opt("del-jwks").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "Secret not garbage-collected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_secret_is_restored_with_the_same_keys_like_a_deleted_one() {
    let env = env("ctl-empty").await;
    let op = env.operator(&[]);
    env.create("emp", json!({"algorithm": "EdDSA"})).await;
    let first = env.active_kid_when_ready("emp").await;
    let before = env.secret("emp-jwks").await;
    let env = &env;
    let merge = |patch: Value| async move {
        env.secrets()
            .patch("emp-jwks", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap()
    };
    // Waits until the Secret holds a key set again, and returns it.
    let refilled = |emptied: Secret| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = env.secret("emp-jwks").await;
            if s.resource_version() != emptied.resource_version()
                && s.data.as_ref().is_some_and(|d| d.contains_key("jwks.json"))
            {
                return s;
            }
            assert!(Instant::now() < deadline, "the Secret was not refilled");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // All data removed by hand (`kubectl patch --type=json -p
    // '[{"op":"remove","path":"/data"}]'` leaves the same object).
    let emptied = merge(json!({"data": null})).await;
    assert!(emptied.data.as_ref().is_none_or(|d| d.is_empty()));
    let restored = refilled(emptied).await;
    // Compared, never printed: the data is a private key set.
    assert!(
        data(&restored, "jwks.json") == data(&before, "jwks.json"),
        "the emptied Secret was refilled with other keys"
    );
    assert_eq!(
        String::from_utf8(data(&restored, "active.kid")).unwrap(),
        first
    );
    assert_eq!(restored.uid(), before.uid(), "the same Secret, replaced");
    let reasons = env.event_reasons_with("emp", "SecretRestored").await;
    assert!(!reasons.contains("SecretRecreated"), "{reasons:?}");

    // Only the key-set data keys removed; someone else's data key stays.
    merge(json!({"data": {"notes": "a2VlcCBtZQ=="}})).await;
    let emptied = merge(json!({"data": {
        "jwks.json": null, "jwks.public.json": null, "active.kid": null,
        "active.pem": null, "lifecycle.json": null,
    }}))
    .await;
    assert_eq!(
        emptied.data.as_ref().unwrap().keys().collect::<Vec<_>>(),
        ["notes"]
    );
    let restored = refilled(emptied).await;
    assert!(data(&restored, "jwks.json") == data(&before, "jwks.json"));
    assert_eq!(data(&restored, "notes"), b"keep me");
    let (code, body) = op.get(&env.jwks_path("emp"));
    assert_eq!((code, kids(&body)), (200, vec![first.clone()]));
    let policy = env.policies().get("emp").await.unwrap();
    assert_eq!(policy.status.unwrap().active_key_id, Some(first));
    assert!(!env.event_reasons("emp").await.contains("SecretRecreated"));
}

impl TestEnv {
    /// Creates Secret `name` as admin with `string_data` and `annotations`.
    async fn create_secret(&self, name: &str, string_data: Value, annotations: Value) -> Secret {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "stringData": string_data,
        }))
        .unwrap();
        self.secrets()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap()
    }

    /// Waits (10 s at most) until `name` is Degraded with `reason` and
    /// returns the condition's message.
    async fn degraded(&self, name: &str, reason: &str) -> String {
        let what = format!("Degraded {reason}");
        self.policy_until(name, Duration::from_secs(10), &what, |p| {
            let c = p
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded")?;
            (c.status == "True" && c.reason == reason).then(|| c.message.clone())
        })
        .await
    }

    /// Waits for condition `type_` of `name` to be `status` and returns its reason.
    async fn condition(&self, name: &str, type_: &str, status: &str) -> (String, String) {
        self.policy_until(name, Duration::from_secs(15), type_, |p| {
            let c = p
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == type_)?;
            (c.status == status).then(|| (c.reason.clone(), c.message.clone()))
        })
        .await
    }

    /// Waits until the operator has reconciled `name` at its current
    /// generation after a no-op spec change: the observable that a decision
    /// not to write has been taken.
    async fn reconciled_after_a_spec_touch(&self, name: &str) {
        let touch = json!({"spec": {"audiences": [format!("touch-{}", rand_suffix())]}});
        let p = self
            .policies()
            .patch(name, &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
        let generation = p.metadata.generation;
        self.policy_until(name, Duration::from_secs(15), "the touch reconciled", |p| {
            (p.status.as_ref()?.observed_generation == generation).then_some(())
        })
        .await;
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_store_is_adopted_only_when_named_explicitly_and_annotated_and_outlives_its_policy() {
    let env = env("ctl-adopt").await;
    let keys_json = include_str!("fixtures/node-jose/keys.json");
    let first_kid = serde_json::from_str::<Value>(keys_json).unwrap()["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = json!({"jwks.json": keys_json, "notes": "made by hand"});
    // Adoptable: named in spec.secretName and annotated for the policy.
    env.create_secret(
        "legacy-keys",
        keys.clone(),
        json!({"jwks.dev/adopt": "adopt"}),
    )
    .await;
    // Not adoptable: a key store nobody consented to hand over, under an
    // explicit name and under the policy's default name.
    let unannotated = env
        .create_secret("other-app-keys", keys.clone(), json!({}))
        .await;
    let by_default = env
        .create_secret(
            "implicit-jwks",
            keys.clone(),
            json!({"jwks.dev/adopt": "implicit"}),
        )
        .await;
    let not_keys = env
        .create_secret("not-keys", json!({"password": "hunter2"}), json!({}))
        .await;
    let _op = env.operator(&[]);
    env.create(
        "adopt",
        json!({"algorithm": "RS256", "secretName": "legacy-keys"}),
    )
    .await;
    env.create(
        "sneaky",
        json!({"algorithm": "RS256", "secretName": "other-app-keys"}),
    )
    .await;
    env.create("implicit", json!({"algorithm": "RS256"})).await;
    env.create(
        "clash",
        json!({"algorithm": "RS256", "secretName": "not-keys"}),
    )
    .await;
    env.create("owned", json!({"algorithm": "ES256"})).await;

    let p = env.ready("adopt").await;
    let status = p.status.unwrap();
    assert_eq!(status.active_key_id.as_deref(), Some(first_kid.as_str()));
    let adopted = env.secret("legacy-keys").await;
    assert_eq!(
        adopted.labels()["app.kubernetes.io/managed-by"],
        "jwks-operator"
    );
    assert_eq!(
        String::from_utf8(data(&adopted, "notes")).unwrap(),
        "made by hand"
    );
    // Labelled, not owned: adding an ownerReference to an existing Secret
    // needs `delete` on it, which the chart does not grant.
    assert!(adopted.owner_references().is_empty(), "{adopted:?}");
    env.event_reasons_with("adopt", "KeySetAdopted").await;

    // Everything else is SecretNotOwned and never touched.
    for (policy, secret) in [
        ("sneaky", &unannotated),
        ("implicit", &by_default),
        ("clash", &not_keys),
    ] {
        let (reason, message) = env.condition(policy, "Ready", "False").await;
        assert_eq!(reason, "SecretNotOwned", "{policy}: {message}");
        let (reason, _) = env.condition(policy, "Degraded", "True").await;
        assert_eq!(reason, "SecretNotOwned");
        env.reconciled_after_a_spec_touch(policy).await;
        let now = env.secret(&secret.name_any()).await;
        assert_eq!(
            now.resource_version(),
            secret.resource_version(),
            "{policy} wrote Secret {}",
            secret.name_any()
        );
    }
    let (_, message) = env.condition("sneaky", "Ready", "False").await;
    assert!(message.contains("jwks.dev/adopt=sneaky"), "{message}");

    // Deleting the policies: the Secret the operator created goes with its
    // policy; the adopted one stays with its keys.
    env.ready("owned").await;
    for name in ["adopt", "owned"] {
        env.policies()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.secrets().get_opt("owned-jwks").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "owned-jwks not garbage-collected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = env.secret("legacy-keys").await;
    // Compared, never printed: the data is a private key set.
    assert!(
        data(&kept, "jwks.json") == data(&adopted, "jwks.json"),
        "the adopted Secret's keys changed after its policy was deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_refuses_to_move_a_policy_to_another_secret() {
    let env = env("ctl-immutable").await;
    env.create("implicit", json!({"algorithm": "ES256"})).await;
    env.create(
        "named",
        json!({"algorithm": "ES256", "secretName": "named-keys"}),
    )
    .await;
    let patch = |name: &'static str, spec: Value| {
        let policies = env.policies();
        async move {
            policies
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": spec})),
                )
                .await
        }
    };
    for (name, spec) in [
        ("implicit", json!({"secretName": "elsewhere"})),
        ("named", json!({"secretName": "elsewhere"})),
        ("named", json!({"secretName": null})),
    ] {
        match patch(name, spec.clone()).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{name} {spec}: {s:?}");
                assert!(
                    s.message.contains("spec.secretName cannot be changed"),
                    "{name} {spec}: {}",
                    s.message
                );
            }
            other => panic!("{name} {spec}: the change was not refused: {other:?}"),
        }
    }
    // Naming the Secret it already uses is no change.
    patch("implicit", json!({"secretName": "implicit-jwks"}))
        .await
        .expect("naming the default Secret explicitly");
    patch("implicit", json!({"secretName": null}))
        .await
        .expect("dropping the explicit default again");
    patch("named", json!({"algorithm": "EdDSA"}))
        .await
        .expect("other fields stay editable");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_algorithm_change_applies_at_the_next_rotation_and_old_keys_stay() {
    let env = env("ctl-alg").await;
    let op = env.operator(&[]);
    env.create("alg", json!({"algorithm": "ES256", "rotationInterval": "6s", "publishAhead": "2s", "maxTokenTTL": "20s"})).await;
    let first = env.active_kid_when_ready("alg").await;
    let patch = json!({"spec": {"algorithm": "EdDSA"}});
    env.policies()
        .patch("alg", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let status = env
        .policy_until("alg", Duration::from_secs(15), "an EdDSA key active", |p| {
            let s = p.status.as_ref()?;
            let active_kid = s.active_key_id.as_ref()?;
            let active = s.keys.iter().find(|k| k.kid == *active_kid)?;
            (active.alg.as_str() == "EdDSA").then(|| s.clone())
        })
        .await;
    assert_eq!(
        serde_json::to_value(status.last_rotation_reason).unwrap(),
        "AlgorithmChange"
    );
    let (_, body) = op.get(&env.jwks_path("alg"));
    let set: Value = serde_json::from_str(&body).unwrap();
    let old = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == first.as_str())
        .expect("old key still published");
    assert_eq!(old["alg"], "ES256");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spec_only_the_operator_can_judge_is_degraded_with_a_clear_message() {
    let env = env("ctl-spec").await;
    let _op = env.operator(&[]);
    // A valid policy name whose default Secret name (`<name>-jwks`) is too long.
    let long = "l".repeat(250);
    env.create(&long, json!({"algorithm": "ES256"})).await;
    let message = env.degraded(&long, "InvalidSpec").await;
    assert!(message.contains("spec.secretName"), "{message}");
    // No Event here: kube's recorder names an Event after its object, and
    // the API server refuses names this long. The condition carries it.
    let ready = env.policies().get(&long).await.unwrap().status.unwrap();
    let ready = ready
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    let written = env
        .secrets()
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=jwks-operator"))
        .await
        .unwrap();
    assert!(
        written.items.is_empty(),
        "nothing is written for an invalid spec"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_keeps_other_writers_labels_annotations_finalizers_and_data_keys() {
    let env = env("ctl-keep").await;
    let _op = env.operator(&[]);
    env.create("keep", json!({"algorithm": "ES256", "publishAhead": "0s"}))
        .await;
    let first = env.active_kid_when_ready("keep").await;
    // Other tools and people add their own metadata and data.
    let theirs = json!({
        "metadata": {
            "labels": {"team": "payments"},
            "annotations": {"backup.example.com/schedule": "daily"},
            "finalizers": ["example.com/keep"],
        },
        "data": {"README": "aGFuZCBtYWRl"},
    });
    env.secrets()
        .patch("keep-jwks", &PatchParams::default(), &Patch::Merge(&theirs))
        .await
        .unwrap();
    // A rotation makes the operator write the Secret again.
    let patch = json!({"metadata": {"annotations": {"jwks.dev/rotate-requested-at": "now"}}});
    env.policies()
        .patch("keep", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.policy_until("keep", Duration::from_secs(15), "a new active key", |p| {
        let kid = p.status.as_ref()?.active_key_id.clone()?;
        (kid != first).then_some(())
    })
    .await;
    let secret = env.secret("keep-jwks").await;
    assert_ne!(
        String::from_utf8(data(&secret, "active.kid")).unwrap(),
        first,
        "the Secret was written"
    );
    let release = json!({"metadata": {"finalizers": null}});
    env.secrets()
        .patch(
            "keep-jwks",
            &PatchParams::default(),
            &Patch::Merge(&release),
        )
        .await
        .unwrap();
    assert_eq!(
        secret.labels().get("team").map(String::as_str),
        Some("payments")
    );
    assert_eq!(
        secret
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("jwks-operator")
    );
    assert_eq!(
        secret
            .annotations()
            .get("backup.example.com/schedule")
            .map(String::as_str),
        Some("daily")
    );
    assert_eq!(secret.finalizers(), ["example.com/keep"]);
    assert_eq!(data(&secret, "README"), b"hand made");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_error_a_retry_cannot_fix_is_degraded_with_the_operation_and_an_event() {
    let env = env("ctl-refused").await;
    // An admission policy refuses the Secret of policy `refused` in this
    // namespace, as a cluster's own rules might.
    let name = env
        .refuse_policy_secrets(
            "refused",
            &["CREATE", "UPDATE"],
            "key Secrets of policy refused are not allowed here",
        )
        .await;
    // It is in force once it refuses a probe Secret.
    let probe: Secret = serde_json::from_value(json!({
        "metadata": {"name": "probe", "labels": {"jwks.dev/policy": "refused"}},
    }))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match env.secrets().create(&PostParams::default(), &probe).await {
            Err(kube::Error::Api(s)) if s.message.contains("not allowed here") => break,
            Ok(_) => {
                env.secrets()
                    .delete("probe", &DeleteParams::default())
                    .await
                    .unwrap();
            }
            Err(e) => panic!("probe: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the admission policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A ConfigMap of someone else's under the name a policy publishes to.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.admin.clone(), &env.ns);
    let theirs: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "theirs"},
        "data": {"jwks.json": "{\"keys\": []}"},
    }))
    .unwrap();
    let theirs = cms.create(&PostParams::default(), &theirs).await.unwrap();

    let _op = env.operator(&[]);
    env.create("refused", json!({"algorithm": "ES256"})).await;
    env.create(
        "publisher",
        json!({"algorithm": "ES256", "publicConfigMap": "theirs"}),
    )
    .await;

    let (reason, message) = env.condition("refused", "Degraded", "True").await;
    assert_eq!(reason, "SecretWriteFailed", "{message}");
    assert!(message.contains("writing Secret"), "{message}");
    assert!(message.contains("not allowed here"), "{message}");
    let (reason, _) = env.condition("refused", "Ready", "False").await;
    assert_eq!(reason, "SecretWriteFailed");
    env.event_reasons_with("refused", "SecretWriteFailed").await;

    // The keys work (Ready) but their publication does not (Degraded).
    let (reason, message) = env.condition("publisher", "Degraded", "True").await;
    assert_eq!(reason, "ConfigMapNotOwned", "{message}");
    assert!(message.contains("theirs"), "{message}");
    let (reason, _) = env.condition("publisher", "Ready", "True").await;
    assert_eq!(reason, "KeySetPublished");
    env.event_reasons_with("publisher", "ConfigMapNotOwned")
        .await;
    assert_eq!(
        cms.get("theirs").await.unwrap().resource_version(),
        theirs.resource_version(),
        "their ConfigMap was written"
    );

    env.allow_policy_secrets(&name).await;
}

fn reconciles(op: &Operator) -> u64 {
    let (_, metrics) = op.get("/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("jwks_operator_reconcile_duration_seconds_count "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_being_deleted_never_gets_its_secret_back() {
    let env = env("ctl-deleting").await;
    let op = env.operator(&[]);
    env.create("gone", json!({"algorithm": "ES256"})).await;
    env.ready("gone").await;
    // A finalizer of someone else's keeps the policy in deletion; meanwhile
    // its Secret goes, as the garbage collector would delete it. (Waiting for
    // the collector itself is a race here: without blockOwnerDeletion the
    // Secret does not hold up a foreground deletion, so the collector may drop
    // its foregroundDeletion finalizer first and then leave the Secret to the
    // owner's final removal.)
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    env.policies()
        .patch("gone", &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .unwrap();
    env.policies()
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    let deleting = env.policies().get("gone").await.unwrap();
    assert!(
        deleting.metadata.deletion_timestamp.is_some(),
        "the policy is held in deletion"
    );
    env.secrets()
        .delete("gone-jwks", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.secrets().get_opt("gone-jwks").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the Secret was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The operator reconciles the deleting policy (a change to it forces
    // one) and writes nothing.
    let seen = reconciles(&op);
    let touch = json!({"metadata": {"annotations": {"touched": "yes"}}});
    env.policies()
        .patch("gone", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reconciles(&op) <= seen {
        assert!(Instant::now() < deadline, "no reconcile after the change");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        env.secrets().get_opt("gone-jwks").await.unwrap().is_none(),
        "the Secret of a policy being deleted was written again"
    );
    let reasons = env.event_reasons("gone").await;
    assert!(
        !reasons.contains("SecretRestored") && !reasons.contains("SecretRecreated"),
        "{reasons:?}"
    );
    let release = json!({"metadata": {"finalizers": null}});
    env.policies()
        .patch("gone", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
}
