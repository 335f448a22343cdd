//! Key providers in Kubernetes mode (issue #22) on the real control plane:
//! `jwks-operator run` as the chart's ServiceAccount. `PKCS11` with
//! `pinSecret`, with a SoftHSM2 token of its own (its own `SOFTHSM2_CONF`;
//! tests/providers/install.sh; the controller runs on the host, so the
//! module path is the host's), and `AWSKMS` with `credentialsSecret`
//! against local-kms.

#[path = "common/local_kms.rs"]
mod local_kms;
#[path = "common/softhsm.rs"]
mod softhsm;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jwks_operator::api::KeyRotationPolicy;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::controlplane::free_port;
use support::operator::{Operator, TestEnv, http_get};

const PIN: &str = "hsmPin-7731-kube";
const WRONG_PIN: &str = "wrongPin-0042-kube";
const LABEL: &str = "kube";

/// The labels (kids) of the objects in the token, through OpenSC's pkcs11-tool.
fn token_labels(hsm: &softhsm::SoftHsm) -> BTreeSet<String> {
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", hsm.conf())
        .args([
            "--module",
            softhsm::MODULE,
            "--token-label",
            LABEL,
            "--login",
            "--pin",
            PIN,
        ])
        .arg("--list-objects")
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

async fn policy_until<T>(
    env: &TestEnv,
    limit: Duration,
    what: &str,
    mut check: impl FnMut(&KeyRotationPolicy) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let p = env.policies().get("hsm").await.unwrap();
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

fn active(p: &KeyRotationPolicy) -> Option<String> {
    p.status.as_ref()?.active_key_id.clone()
}

fn kids(p: &KeyRotationPolicy) -> Vec<String> {
    p.status
        .iter()
        .flat_map(|s| &s.keys)
        .map(|k| k.kid.clone())
        .collect()
}

fn degraded(p: &KeyRotationPolicy) -> Option<(String, String)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// Mints a token (retrying while the operator has not set the token up
/// yet after a start); returns `(token, kid)`.
async fn mint(op: &Operator, ns: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = op.post_token(&format!("/{ns}/hsm/token"), &json!({"sub": "t"}));
        if code == 200 {
            return (
                body["token"].as_str().unwrap().to_owned(),
                body["kid"].as_str().unwrap().to_owned(),
            );
        }
        assert!(Instant::now() < deadline, "minting: {code} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `POST /verify`: the kid of a valid token, or `None`.
fn verify(op: &Operator, ns: &str, token: &str) -> Option<String> {
    let (code, body) = op.post_token(&format!("/{ns}/hsm/verify"), &json!({"token": token}));
    (code == 200).then(|| body["kid"].as_str().unwrap().to_owned())
}

async fn pin_secret(env: &TestEnv, pin: &str) {
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "hsm-pin", "labels": {"jwks.dev/credentials": "true"}},
        "stringData": {"pin": format!("{pin}\n")},
    }))
    .unwrap();
    let api = env.secrets();
    if api.get_opt("hsm-pin").await.unwrap().is_some() {
        api.patch(
            "hsm-pin",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"pin": format!("{pin}\n")}})),
        )
        .await
        .unwrap();
    } else {
        api.create(&PostParams::default(), &s).await.unwrap();
    }
}

/// The Secret holds public JWKs and references only: no `active.pem`, no
/// private member, a `pkcs11:` keyRef for every kid.
async fn assert_public_only(env: &TestEnv) -> Secret {
    let secret = env.secrets().get("hsm-jwks").await.unwrap();
    let data = secret.data.clone().unwrap();
    assert!(
        !data.contains_key("active.pem"),
        "active.pem beside a token-held key"
    );
    let jwks: Value = serde_json::from_slice(&data["jwks.json"].0).unwrap();
    for k in jwks["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "private member {private} in {k}");
        }
    }
    let lifecycle: Value = serde_json::from_slice(&data["lifecycle.json"].0).unwrap();
    for kid in jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
    {
        let reference = lifecycle["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kid"] == kid)
            .and_then(|r| r["keyRef"].as_str())
            .unwrap_or_else(|| panic!("no keyRef for {kid}: {lifecycle}"));
        assert!(
            reference.starts_with("pkcs11:") || reference.starts_with("arn:aws:kms:"),
            "{reference}"
        );
    }
    secret
}

/// A policy whose keys live in a PKCS#11 token, run by the controller: keys
/// generated in the token and signing there, a full rotation ending with
/// the pruned key destroyed, revocation, a restart keeping the kids, a
/// wrong PIN reported under the provider's reason while the current key
/// keeps signing, and no private material or PIN anywhere the operator
/// writes or shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_keys_live_in_the_token_through_rotation_revocation_and_restart() {
    let hsm = softhsm::SoftHsm::new_dir();
    hsm.init_token_with_util(LABEL, PIN);
    let env = TestEnv::new("hsm").await;
    pin_secret(&env, PIN).await;
    let conf = hsm.conf();
    let metrics = format!("127.0.0.1:{}", free_port());
    let start = || {
        env.operator_env(
            &[&format!("--metrics-addr={metrics}")],
            &[("SOFTHSM2_CONF", conf.as_os_str())],
        )
    };
    let mut op = start();
    env.create(
        "hsm",
        json!({
            "algorithm": "ES256", "rotationInterval": "8s", "publishAhead": "2s",
            "maxTokenTTL": "2s", "clockSkew": "0s", "tokenEndpoint": {"enabled": true},
            "publicConfigMap": "hsm-public",
            "keyProvider": {"type": "PKCS11", "module": softhsm::MODULE,
                            "tokenLabel": LABEL, "pinSecret": "hsm-pin"},
        }),
    )
    .await;

    // The first key: made in the token, signing there.
    let first = policy_until(&env, Duration::from_secs(30), "a first key", active).await;
    assert!(token_labels(&hsm).contains(&first));
    assert_public_only(&env).await;
    let (token, kid) = mint(&op, &env.ns).await;
    assert_eq!(kid, first);
    assert_eq!(
        verify(&op, &env.ns, &token).as_deref(),
        Some(first.as_str())
    );

    // A full rotation: the next key from the token activates, the first is
    // retired, pruned, and then destroyed in the token.
    let second = policy_until(&env, Duration::from_secs(30), "the second key signs", |p| {
        active(p).filter(|a| *a != first)
    })
    .await;
    assert!(token_labels(&hsm).contains(&second));
    policy_until(&env, Duration::from_secs(40), "the first key pruned", |p| {
        (!kids(p).contains(&first)).then_some(())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while token_labels(&hsm).contains(&first) {
        assert!(
            Instant::now() < deadline,
            "the pruned key's objects stay in the token"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_public_only(&env).await;

    // Revocation of the active key: a fresh key from the token signs at
    // once, the revoked one's tokens fail and its objects leave the token.
    let (token, revoked) = mint(&op, &env.ns).await;
    env.policies()
        .patch(
            "hsm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"revokedKeyIDs": [revoked], "rotationInterval": "1h", "publishAhead": "10m"}})),
        )
        .await
        .unwrap();
    let fresh = policy_until(
        &env,
        Duration::from_secs(20),
        "a fresh key after revocation",
        |p| active(p).filter(|a| *a != revoked && !kids(p).contains(&revoked)),
    )
    .await;
    assert_eq!(
        verify(&op, &env.ns, &token),
        None,
        "a revoked key's token fails"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let labels = token_labels(&hsm);
        if !labels.contains(&revoked) && labels.contains(&fresh) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked key stays in the token: {labels:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A restart keeps the kids and signs with the same key.
    let before = kids(&env.policies().get("hsm").await.unwrap());
    assert!(op.terminate(), "clean exit");
    op = start();
    let (_, kid) = mint(&op, &env.ns).await;
    assert_eq!(kid, fresh);
    // No key made anew (a retired one may be pruned meanwhile).
    let after = kids(&env.policies().get("hsm").await.unwrap());
    assert!(
        after.iter().all(|k| before.contains(k)),
        "{after:?} / {before:?}"
    );
    assert!(after.contains(&fresh));

    // A wrong PIN: the provider's reason, the current key keeps signing.
    pin_secret(&env, WRONG_PIN).await;
    // The PIN Secret does not wake the policy: touch the spec.
    env.policies()
        .patch(
            "hsm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"audiences": ["touched"]}})),
        )
        .await
        .unwrap();
    let message = policy_until(
        &env,
        Duration::from_secs(20),
        "Degraded/PKCS11Failed",
        |p| {
            degraded(p)
                .filter(|(r, _)| r == "PKCS11Failed")
                .map(|(_, m)| m)
        },
    )
    .await;
    assert!(
        message.contains("PIN") && message.contains(LABEL),
        "{message}"
    );
    let (_, kid) = mint(&op, &env.ns).await;
    assert_eq!(kid, fresh, "the current key keeps signing");
    // Fixed by the Secret's owner: a policy with such a problem is checked
    // again soon, without a change to it.
    pin_secret(&env, PIN).await;
    policy_until(&env, Duration::from_secs(20), "recovered", |p| {
        degraded(p).is_none().then_some(())
    })
    .await;

    // No private material and no PIN in the Secret, the ConfigMap, the
    // status, any Event, the log or the metrics.
    let secret = assert_public_only(&env).await;
    let secret_text: String = secret
        .data
        .unwrap()
        .values()
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .collect();
    let cm: Api<ConfigMap> = Api::namespaced(env.admin.clone(), &env.ns);
    let cm = serde_json::to_string(&cm.get("hsm-public").await.unwrap()).unwrap();
    let policy = serde_json::to_string(&env.policies().get("hsm").await.unwrap()).unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.admin.clone(), &env.ns);
    let events =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap();
    let shown = [
        ("Secret", secret_text),
        ("ConfigMap", cm),
        ("policy", policy),
        ("Events", events),
        ("log", op.log_text()),
        ("metrics", http_get(&format!("http://{metrics}/metrics")).1),
        (
            "/policies",
            http_get(&format!("http://{metrics}/policies")).1,
        ),
    ];
    for (what, text) in &shown {
        assert!(!text.is_empty(), "{what} is empty");
        for bad in [PIN, WRONG_PIN, "PRIVATE KEY", "\"d\":"] {
            assert!(!text.contains(bad), "{what} holds {bad:?}: {text}");
        }
    }
}

/// With leader election, every replica signs with the token-held key, not
/// only the leader whose reconciler set the provider up: a follower's token
/// endpoint behind the same Service would otherwise refuse every other
/// request. Both replicas use the same token (SoftHSM's file store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_signs_with_the_token_held_key_too() {
    let hsm = softhsm::SoftHsm::new_dir();
    hsm.init_token_with_util(LABEL, PIN);
    let env = TestEnv::new("hsmha").await;
    pin_secret(&env, PIN).await;
    let conf = hsm.conf();
    let replica = |identity: &str| {
        env.operator_env(
            &[
                "--leader-elect",
                &format!("--leader-elect-namespace={}", env.ns),
                &format!("--leader-elect-lease-name={}", env.id.lease_name),
                "--leader-elect-lease-duration=4",
                &format!("--identity={identity}"),
            ],
            &[("SOFTHSM2_CONF", conf.as_os_str())],
        )
    };
    let a = replica("a");
    let b = replica("b");
    env.create(
        "hsm",
        json!({
            "algorithm": "ES256", "tokenEndpoint": {"enabled": true},
            "keyProvider": {"type": "PKCS11", "module": softhsm::MODULE,
                            "tokenLabel": LABEL, "pinSecret": "hsm-pin"},
        }),
    )
    .await;
    let kid = policy_until(&env, Duration::from_secs(30), "a first key", active).await;
    for (name, op) in [("a", &a), ("b", &b)] {
        let (token, minted) = mint(op, &env.ns).await;
        assert_eq!(minted, kid, "replica {name}");
        assert_eq!(
            verify(op, &env.ns, &token).as_deref(),
            Some(kid.as_str()),
            "replica {name}"
        );
    }
}

/// `AWSKMS` with a `credentialsSecret`: not read until its owner opts in,
/// then keys made in KMS (full ARNs as references) sign there, a full
/// rotation ends with the pruned key pending deletion, and the secret key
/// appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_keys_with_an_opted_in_credentials_secret() {
    use aws_sdk_kms::types::KeyState;
    use jwks_operator::providers::kms::{KmsConfig, KmsProvider, StaticCredentials};
    use jwks_operator::publish::credentials::Credentials;

    let kms = local_kms::LocalKms::start();
    let env = TestEnv::new("kms").await;
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "kms-creds"},
        "stringData": {
            "AWS_ACCESS_KEY_ID": local_kms::ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": local_kms::SECRET_ACCESS_KEY,
        },
    }))
    .unwrap();
    env.secrets()
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut op = env.operator(&[&format!("--metrics-addr={metrics}")]);
    env.create(
        "hsm",
        json!({
            "algorithm": "ES256", "rotationInterval": "6s", "publishAhead": "2s",
            "maxTokenTTL": "2s", "clockSkew": "0s", "tokenEndpoint": {"enabled": true},
            "keyProvider": {"type": "AWSKMS", "region": local_kms::REGION,
                            "endpoint": kms.endpoint(), "credentialsSecret": "kms-creds"},
        }),
    )
    .await;

    // Not opted in: not read, no key anywhere, the label named.
    let message = policy_until(
        &env,
        Duration::from_secs(30),
        "Degraded/SecretNotOptedIn",
        |p| {
            degraded(p)
                .filter(|(r, _)| r == "SecretNotOptedIn")
                .map(|(_, m)| m)
        },
    )
    .await;
    assert!(
        message.contains("spec.keyProvider.credentialsSecret")
            && message.contains("jwks.dev/credentials=true"),
        "{message}"
    );
    assert!(
        env.secrets().get_opt("hsm-jwks").await.unwrap().is_none(),
        "a key was made elsewhere"
    );

    // Opted in: the first key is made in KMS and signs there.
    env.secrets()
        .patch(
            "kms-creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"jwks.dev/credentials": "true"}}})),
        )
        .await
        .unwrap();
    let first = policy_until(&env, Duration::from_secs(30), "a first key", active).await;
    let (token, kid) = mint(&op, &env.ns).await;
    assert_eq!(kid, first);
    assert_eq!(
        verify(&op, &env.ns, &token).as_deref(),
        Some(first.as_str())
    );
    assert_public_only(&env).await;
    let lifecycle: Value = serde_json::from_slice(
        &env.secrets().get("hsm-jwks").await.unwrap().data.unwrap()["lifecycle.json"].0,
    )
    .unwrap();
    let arn = lifecycle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == first.as_str())
        .and_then(|k| k["keyRef"].as_str())
        .unwrap()
        .to_owned();
    assert!(
        arn.starts_with("arn:aws:kms:eu-west-2:111122223333:key/"),
        "{arn}"
    );
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
    let state = |arn: &str| {
        let arn = arn.to_owned();
        let inspect = inspect.clone();
        async move {
            tokio::task::spawn_blocking(move || inspect.key_state(&arn).unwrap())
                .await
                .unwrap()
        }
    };
    assert_eq!(state(&arn).await, Some(KeyState::Enabled));

    // A full rotation: the first key is pruned, then pending deletion in KMS.
    policy_until(&env, Duration::from_secs(40), "the first key pruned", |p| {
        (active(p).is_some_and(|a| a != first) && !kids(p).contains(&first)).then_some(())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&arn).await != Some(KeyState::PendingDeletion) {
        assert!(
            Instant::now() < deadline,
            "the pruned key was not scheduled for deletion"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, kid) = mint(&op, &env.ns).await;
    assert_ne!(kid, first);
    assert_public_only(&env).await;

    // A restart binds the stored keys to KMS again by ARN: the same kids,
    // the same key signs (rotation slowed first, so none is due meanwhile).
    env.policies()
        .patch(
            "hsm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotationInterval": "1h", "publishAhead": "10m"}})),
        )
        .await
        .unwrap();
    let before = policy_until(&env, Duration::from_secs(20), "the slower schedule", |p| {
        let s = p.status.as_ref()?;
        (s.observed_generation == p.metadata.generation).then(|| (active(p), kids(p)))
    })
    .await;
    assert!(op.terminate(), "clean exit");
    op = env.operator(&[&format!("--metrics-addr={metrics}")]);
    let (token, kid) = mint(&op, &env.ns).await;
    assert_eq!(
        Some(kid.clone()),
        before.0,
        "the same key signs after the restart"
    );
    // No key made anew (a retired one may be pruned meanwhile).
    let after = kids(&env.policies().get("hsm").await.unwrap());
    assert!(
        after.iter().all(|k| before.1.contains(k)),
        "{after:?} / {:?}",
        before.1
    );
    assert_eq!(verify(&op, &env.ns, &token).as_deref(), Some(kid.as_str()));

    // The secret key is nowhere the operator writes or shows.
    let policy = serde_json::to_string(&env.policies().get("hsm").await.unwrap()).unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.admin.clone(), &env.ns);
    let events =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap();
    let secret: String = env
        .secrets()
        .get("hsm-jwks")
        .await
        .unwrap()
        .data
        .unwrap()
        .values()
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .collect();
    for (what, text) in [
        ("Secret", secret),
        ("policy", policy),
        ("Events", events),
        ("log", op.log_text()),
        ("metrics", http_get(&format!("http://{metrics}/metrics")).1),
        (
            "/policies",
            http_get(&format!("http://{metrics}/policies")).1,
        ),
    ] {
        assert!(!text.is_empty(), "{what} is empty");
        for bad in [local_kms::SECRET_ACCESS_KEY, "PRIVATE KEY", "\"d\":"] {
            assert!(!text.contains(bad), "{what} holds {bad:?}: {text}");
        }
    }
}
