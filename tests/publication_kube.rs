//! `spec.publish` in Kubernetes mode (issue #21) on the real control plane:
//! `jwks-operator run` as the chart's ServiceAccount, publishing to moto's
//! S3 server (tests/publish/install.sh) started with IAM enforced, so wrong
//! keys and a user without permissions are refused as a real bucket would.

mod common;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::moto::{IamKeys, Moto};
use jwks_operator::api::KeyRotationPolicy;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use object_store::ObjectStoreExt as _;
use serde_json::json;
use support::controlplane::free_port;
use support::operator::{Operator, TestEnv, http_get};

const BUCKET: &str = "kube-pub";
const URL: &str = "s3://kube-pub/p";

/// A Secret in the environment-style layout of `credentialsSecret`.
async fn credentials_secret(
    env: &TestEnv,
    name: &str,
    key: &(String, String),
    moto: &Moto,
    opted_in: bool,
) {
    let labels = if opted_in {
        json!({"jwks.dev/credentials": "true"})
    } else {
        json!({})
    };
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "stringData": {
            "AWS_ACCESS_KEY_ID": key.0,
            "AWS_SECRET_ACCESS_KEY": key.1,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": moto.endpoint(),
        },
    }))
    .unwrap();
    env.secrets()
        .create(&PostParams::default(), &s)
        .await
        .expect("create credentials Secret");
}

/// The bucket as the allowed user sees it (someone else's client).
fn bucket(moto: &Moto, keys: &IamKeys) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(&keys.allowed.0)
        .with_secret_access_key(&keys.allowed.1)
        .build()
        .unwrap()
}

/// The kids of the bucket's `p/jwks.json` (empty when absent).
async fn bucket_kids(store: &object_store::aws::AmazonS3) -> Vec<String> {
    let path = object_store::path::Path::from("p/jwks.json");
    match store.get(&path).await {
        Ok(got) => {
            support::jwks::kids_of(&serde_json::from_slice(&got.bytes().await.unwrap()).unwrap())
        }
        Err(_) => Vec::new(),
    }
}

async fn policy_until<T>(
    env: &TestEnv,
    limit: Duration,
    what: &str,
    mut check: impl FnMut(&KeyRotationPolicy) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let p = env.policies().get("pub").await.unwrap();
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

/// `(reason, message)` of the `Degraded` condition when it is True.
fn degraded(p: &KeyRotationPolicy) -> Option<(String, String)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// Waits until the policy is `Degraded/<reason>` with a message containing
/// every one of `parts`; returns the message.
async fn degraded_with(env: &TestEnv, reason: &str, parts: &[&str], limit: Duration) -> String {
    policy_until(env, limit, &format!("Degraded/{reason} {parts:?}"), |p| {
        degraded(p)
            .filter(|(r, m)| r == reason && parts.iter().all(|part| m.contains(part)))
            .map(|(_, m)| m)
    })
    .await
}

async fn not_degraded(env: &TestEnv, limit: Duration) -> KeyRotationPolicy {
    policy_until(env, limit, "Degraded False", |p| {
        let s = p.status.as_ref()?;
        (s.active_key_id.is_some() && degraded(p).is_none()).then(|| p.clone())
    })
    .await
}

fn active(p: &KeyRotationPolicy) -> Option<String> {
    p.status.as_ref()?.active_key_id.clone()
}

async fn set_publish(env: &TestEnv, url: &str, secret: &str) {
    env.policies()
        .patch(
            "pub",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"publish": [{"url": url, "credentialsSecret": secret}]}}),
            ),
        )
        .await
        .unwrap();
}

async fn label_opted_in(env: &TestEnv, name: &str) {
    env.secrets()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"jwks.dev/credentials": "true"}}})),
        )
        .await
        .unwrap();
}

/// Every Event in the namespace as `(reason, note)`.
async fn events(env: &TestEnv) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.admin.clone(), &env.ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

async fn event_with(env: &TestEnv, reason: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let all = events(env).await;
        if let Some((_, note)) = all.iter().find(|(r, _)| r == reason) {
            return note.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} Event within {limit:?}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sum of the samples of `family` (with `filter` in the line) at `url`.
fn metric_sum(base: &str, family: &str, filter: &str) -> f64 {
    http_get(&format!("{base}/metrics"))
        .1
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Mints a token on the operator's token listener; returns its kid.
fn mint(op: &Operator, ns: &str) -> String {
    let (code, body) = op.post_token(&format!("/{ns}/pub/token"), &json!({"sub": "t"}));
    assert_eq!(code, 200, "minting: {body}");
    body["kid"].as_str().unwrap().to_owned()
}

/// The whole story of one policy's copy in Kubernetes mode: the opt-in of
/// its credentials Secret, activation held back while the bucket refuses
/// (wrong keys, no permission, a stopped server) with the active key still
/// signing, recovery, a drift repaired with an Event and a metric, a missing
/// bucket and a `file://` target each named, status and `jwks-operator
/// status` showing the copy, and no credential value anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_publishes_to_s3_in_kubernetes_and_every_failure_is_named_without_credentials() {
    let (moto, keys) = Moto::start_enforcing_iam(&[BUCKET]);
    let wrong = (
        keys.allowed.0.clone(),
        "wrongSecretValue/0123456789abcdefXYZ".to_owned(),
    );
    let env = TestEnv::new("pubk").await;
    credentials_secret(&env, "s3-creds", &keys.allowed, &moto, false).await;
    credentials_secret(&env, "s3-wrong", &wrong, &moto, true).await;
    credentials_secret(&env, "s3-denied", &keys.denied, &moto, true).await;
    let metrics = format!("http://127.0.0.1:{}", free_port());
    let op = env.operator(&[
        "--publish-verify-interval=2s",
        &format!("--metrics-addr={}", metrics.trim_start_matches("http://")),
    ]);
    env.create(
        "pub",
        json!({
            "algorithm": "ES256", "rotationInterval": "12s", "publishAhead": "3s",
            "maxTokenTTL": "3s", "clockSkew": "0s", "tokenEndpoint": {"enabled": true},
            "publish": [{"url": URL, "credentialsSecret": "s3-creds"}],
        }),
    )
    .await;
    let store = bucket(&moto, &keys);

    // 1. The Secret's owner has not opted in: not read, and the message says
    //    exactly what to add. The first key signs (nothing held it yet).
    let message = degraded_with(
        &env,
        "SecretNotOptedIn",
        &[
            "Secret",
            "s3-creds",
            "kubectl label secret -n",
            "jwks.dev/credentials=true",
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        message.contains("spec.publish[0].credentialsSecret"),
        "{message}"
    );
    event_with(&env, "SecretNotOptedIn", Duration::from_secs(10)).await;
    let first = policy_until(&env, Duration::from_secs(10), "first key", active).await;
    assert!(
        bucket_kids(&store).await.is_empty(),
        "nothing written without consent"
    );

    // 2. Opted in: the copy is written, read back, and shown in status.
    label_opted_in(&env, "s3-creds").await;
    let p = not_degraded(&env, Duration::from_secs(20)).await;
    let copy = &p.status.as_ref().unwrap().publication[0];
    assert_eq!(copy.url, URL);
    assert!(copy.kids.contains(&first), "{copy:?}");
    assert!(
        copy.published_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{copy:?}"
    );
    assert!(
        copy.last_verified_time.is_some() && copy.error.is_none(),
        "{copy:?}"
    );
    assert!(bucket_kids(&store).await.contains(&first));

    // 3. A user without permission (403): the next key stays Pending past
    //    its time, the active one keeps signing, the status says why.
    set_publish(&env, URL, "s3-denied").await;
    degraded_with(
        &env,
        "PublicationPending",
        &[URL, "access denied"],
        Duration::from_secs(20),
    )
    .await;
    let p = policy_until(&env, Duration::from_secs(30), "a pending key", |p| {
        p.status.as_ref()?.next_key_id.as_ref().map(|_| p.clone())
    })
    .await;
    let next = p.status.as_ref().unwrap().next_key_id.clone().unwrap();
    let due: jiff::Timestamp = p
        .status
        .as_ref()
        .unwrap()
        .next_rotation_time
        .as_ref()
        .unwrap()
        .0;
    // Wait for passes that ran after the due time (failed rounds counted
    // after it), then check nothing activated.
    while jiff::Timestamp::now() < due {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed = |op_metrics: &str| {
        metric_sum(
            op_metrics,
            "jwks_operator_publication_results_total",
            "result=\"error\"",
        )
    };
    let after_due = failed(&metrics);
    let said = degraded(&env.policies().get("pub").await.unwrap());
    policy_until(
        &env,
        Duration::from_secs(30),
        "two failed rounds after the due time",
        |_| (failed(&metrics) >= after_due + 2.0).then_some(()),
    )
    .await;
    let p = env.policies().get("pub").await.unwrap();
    // The same failure, retried, reads the same (no new status, Event and
    // log line every 5 s).
    assert_eq!(degraded(&p), said, "the message changed between retries");
    assert_eq!(
        active(&p).as_deref(),
        Some(first.as_str()),
        "no key activates while the copy refuses"
    );
    assert_eq!(
        p.status.as_ref().unwrap().next_key_id.as_deref(),
        Some(next.as_str())
    );
    assert_eq!(mint(&op, &env.ns), first, "the active key keeps signing");
    assert!(!bucket_kids(&store).await.contains(&next));

    // 4. Wrong keys: refused by the store, named as such.
    set_publish(&env, URL, "s3-wrong").await;
    degraded_with(
        &env,
        "PublicationPending",
        &[URL, "the store refused the credentials"],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(mint(&op, &env.ns), first);

    // 5. The Secret's owner rotates it to good keys (no spec change: the
    //    Secret is read every pass). The bucket holds the next key while the
    //    first still signs (publishAhead after the confirmation), then it
    //    activates.
    env.secrets()
        .patch(
            "s3-wrong",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"AWS_SECRET_ACCESS_KEY": keys.allowed.1}})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let in_bucket = bucket_kids(&store).await.contains(&next);
        let p = env.policies().get("pub").await.unwrap();
        if in_bucket {
            assert_eq!(
                active(&p).as_deref(),
                Some(first.as_str()),
                "published before it signs"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the next key never reached the bucket"
        );
        assert_eq!(
            active(&p).as_deref(),
            Some(first.as_str()),
            "activated before its copy held it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    policy_until(
        &env,
        Duration::from_secs(20),
        "the next key activates",
        |p| (active(p).as_deref() == Some(next.as_str())).then_some(()),
    )
    .await;
    not_degraded(&env, Duration::from_secs(20)).await;
    assert_eq!(mint(&op, &env.ns), next);

    // `jwks-operator status` shows the copy.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
        .args(["status", "pub", "-n", &env.ns])
        .env("KUBECONFIG", &env.cp.kubeconfig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Published copies:") && text.contains(URL),
        "{text}"
    );
    // And /policies of the metrics listener.
    let policies = http_get(&format!("{metrics}/policies")).1;
    assert!(
        policies.contains(URL) && policies.contains(&next),
        "{policies}"
    );

    // 6. Someone deletes the copy: rewritten, with a Warning Event and a metric.
    store
        .delete(&object_store::path::Path::from("p/jwks.json"))
        .await
        .unwrap();
    let note = event_with(&env, "PublicationRepaired", Duration::from_secs(20)).await;
    assert!(note.contains(URL), "{note}");
    assert!(metric_sum(&metrics, "jwks_operator_publication_repairs_total", "") >= 1.0);
    assert!(bucket_kids(&store).await.contains(&next));

    // 7. A stopped server (SIGSTOP): within the call deadline the policy
    //    says so, and signing never stops.
    moto.pause(true);
    degraded_with(
        &env,
        "PublicationPending",
        &[URL, "did not complete within 10s"],
        Duration::from_secs(40),
    )
    .await;
    assert!(!mint(&op, &env.ns).is_empty());
    moto.pause(false);
    not_degraded(&env, Duration::from_secs(30)).await;

    // 8. A bucket that does not exist, and a file:// target (standalone
    //    only): each named.
    set_publish(&env, "s3://no-such-bucket/p", "s3-creds").await;
    degraded_with(
        &env,
        "PublicationPending",
        &[
            "s3://no-such-bucket/p",
            "the bucket or container does not exist",
        ],
        Duration::from_secs(20),
    )
    .await;
    set_publish(&env, "file:///tmp/jwks", "s3-creds").await;
    degraded_with(
        &env,
        "PublicationTargetInvalid",
        &["file:// targets exist only in standalone mode"],
        Duration::from_secs(20),
    )
    .await;
    assert!(!mint(&op, &env.ns).is_empty(), "signing never stopped");

    // 9. No credential value in the log, any Event, the policy, /metrics,
    //    /policies or `status -o json`.
    let policy = serde_json::to_string(&env.policies().get("pub").await.unwrap()).unwrap();
    let events: Vec<String> = events(&env)
        .await
        .into_iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let status_json = std::process::Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
        .args(["status", "pub", "-n", &env.ns, "-o", "json"])
        .env("KUBECONFIG", &env.cp.kubeconfig)
        .output()
        .unwrap()
        .stdout;
    let shown: Vec<(&str, String)> = vec![
        ("log", op.log_text()),
        ("events", events.join("\n")),
        ("policy", policy),
        ("metrics", http_get(&format!("{metrics}/metrics")).1),
        ("jwks /metrics", op.get("/metrics").1),
        ("/policies", http_get(&format!("{metrics}/policies")).1),
        ("public /policies", op.get("/policies").1),
        (
            "status -o json",
            String::from_utf8_lossy(&status_json).into_owned(),
        ),
    ];
    let values: BTreeSet<&str> = [&keys.allowed, &keys.denied, &wrong]
        .iter()
        .flat_map(|(id, secret)| [id.as_str(), secret.as_str()])
        .collect();
    for (what, text) in &shown {
        assert!(!text.is_empty(), "{what} is empty");
        for v in &values {
            assert!(
                !text.contains(v),
                "a credential value in the {what}: {text}"
            );
        }
    }
    // The scan saw the failures it guards against.
    let log = op.log_text();
    assert!(
        log.contains("PublicationPending") || log.contains("the store refused the credentials"),
        "{log}"
    );
}

/// Only the Lease holder writes copies: with two replicas, the follower
/// makes no publication round while the leader makes several; after the
/// leader dies the follower takes over and repairs a deleted copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_writes_the_copies() {
    let (moto, keys) = Moto::start_enforcing_iam(&[BUCKET]);
    let env = TestEnv::new("pubha").await;
    credentials_secret(&env, "s3-creds", &keys.allowed, &moto, true).await;
    let replica = |identity: &str| {
        let metrics = format!("127.0.0.1:{}", free_port());
        let op = env.operator(&[
            "--publish-verify-interval=1s",
            &format!("--metrics-addr={metrics}"),
            "--leader-elect",
            &format!("--leader-elect-namespace={}", env.ns),
            &format!("--leader-elect-lease-name={}", env.id.lease_name),
            "--leader-elect-lease-duration=4",
            &format!("--identity={identity}"),
        ]);
        (op, format!("http://{metrics}"))
    };
    let (a, a_metrics) = replica("a");
    let (b, b_metrics) = replica("b");
    env.create(
        "pub",
        json!({"algorithm": "ES256", "publish": [{"url": URL, "credentialsSecret": "s3-creds"}]}),
    )
    .await;
    let leader_of = |m: &str| {
        http_get(&format!("{m}/metrics"))
            .1
            .lines()
            .any(|l| l == "jwks_operator_leader 1")
    };
    let rounds = |m: &str| metric_sum(m, "jwks_operator_publication_results_total", "");
    // The leader confirms the copy and keeps verifying it (1 s interval).
    let a_leads = policy_until(
        &env,
        Duration::from_secs(40),
        "three publication rounds by the one leader",
        |_| {
            let (la, lb) = (leader_of(&a_metrics), leader_of(&b_metrics));
            if la == lb {
                return None;
            }
            let lm = if la { &a_metrics } else { &b_metrics };
            (rounds(lm) >= 3.0).then_some(la)
        },
    )
    .await;
    let (mut leader, follower, follower_metrics) = if a_leads {
        (a, b, b_metrics)
    } else {
        (b, a, a_metrics)
    };
    assert_eq!(
        rounds(&follower_metrics),
        0.0,
        "the follower wrote or read a copy"
    );
    let store = bucket(&moto, &keys);
    assert!(!bucket_kids(&store).await.is_empty());

    // The leader dies; the follower takes the Lease and confirms the copy,
    // then repairs it when someone deletes it.
    leader.kill();
    policy_until(
        &env,
        Duration::from_secs(30),
        "the new leader publishes",
        |_| (rounds(&follower_metrics) >= 1.0).then_some(()),
    )
    .await;
    store
        .delete(&object_store::path::Path::from("p/jwks.json"))
        .await
        .unwrap();
    let note = event_with(&env, "PublicationRepaired", Duration::from_secs(30)).await;
    assert!(note.contains(URL), "{note}");
    assert!(!bucket_kids(&store).await.is_empty());
    drop(follower);
}
