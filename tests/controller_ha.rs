//! High availability and failure: leader election between two operator
//! processes, a concurrent writer racing the operator, and kill -9 in the
//! middle of rotations. Real API server, the chart's RBAC.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jwks_operator::api::KeyRotationPolicy;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::jwks::kids_of;
use support::operator::{Operator, TestEnv, kids, same_answer};

type Env = TestEnv;

async fn env(prefix: &str) -> Env {
    TestEnv::new(prefix).await
}

impl TestEnv {
    fn leader_args(&self, identity: &str) -> Vec<String> {
        vec![
            "--leader-elect".into(),
            format!("--leader-elect-namespace={}", self.ns),
            format!("--leader-elect-lease-name={}", self.id.lease_name),
            "--leader-elect-lease-duration=4".into(),
            format!("--identity={identity}"),
        ]
    }

    async fn secret_opt(&self, name: &str) -> Option<Secret> {
        Api::<Secret>::namespaced(self.admin.clone(), &self.ns)
            .get_opt(name)
            .await
            .unwrap()
    }

    async fn holder(&self) -> Option<String> {
        Api::<Lease>::namespaced(self.admin.clone(), &self.ns)
            .get_opt(&self.id.lease_name)
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn leader_gauge(op: &Operator) -> Option<i64> {
    let (_, text) = op.get("/metrics");
    text.lines()
        .find(|l| l.starts_with("jwks_operator_leader "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Decodes the lifecycle record of a Secret: (kid, state) pairs.
fn lifecycle(secret: &Secret) -> Vec<(String, String)> {
    let raw = &secret.data.as_ref().unwrap()["lifecycle.json"].0;
    let doc: Value = serde_json::from_slice(raw).expect("lifecycle.json is JSON");
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The invariants a stored key set must always satisfy.
fn assert_consistent(secret: &Secret) -> Vec<(String, String)> {
    let records = lifecycle(secret);
    let active = records.iter().filter(|(_, s)| s == "Active").count();
    assert_eq!(active, 1, "exactly one Active key: {records:?}");
    assert!(
        records.iter().filter(|(_, s)| s == "Pending").count() <= 1,
        "{records:?}"
    );
    let jwks: Value =
        serde_json::from_slice(&secret.data.as_ref().unwrap()["jwks.json"].0).unwrap();
    let material: BTreeSet<String> = kids_of(&jwks).into_iter().collect();
    let recorded: BTreeSet<String> = records.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        material, recorded,
        "every key has a record and every record a key"
    );
    let active_kid =
        String::from_utf8(secret.data.as_ref().unwrap()["active.kid"].0.clone()).unwrap();
    assert!(
        records
            .iter()
            .any(|(k, s)| *k == active_kid && s == "Active")
    );
    records
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_writes_and_the_other_replica_takes_over_when_it_dies() {
    let env = env("ha-leader").await;
    env.create(
        "ha",
        json!({"algorithm": "ES256", "rotationInterval": "6s", "publishAhead": "2s", "maxTokenTTL": "2s", "clockSkew": "1s"}),
    )
    .await;
    let mut a = env.operator(&as_strs(&env.leader_args("replica-a")));
    let mut b = env.operator(&as_strs(&env.leader_args("replica-b")));
    let path = format!("/{}/ha/.well-known/jwks.json", env.ns);

    // One leader, and both replicas serve the same set.
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some(h) = env.holder().await
            && env.secret_opt("ha-jwks").await.is_some()
        {
            break h;
        }
        assert!(Instant::now() < deadline, "no leader wrote within 20s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The holder reports itself as leader (the gauge is set before it
    // reconciles); only then is the other one's 0 a finding.
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder_op = if leader == "replica-a" { &a } else { &b };
    while leader_gauge(holder_op) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the Lease holder never reported leading"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ga, gb) = (leader_gauge(&a), leader_gauge(&b));
    assert_eq!(
        (ga, gb),
        if leader == "replica-a" {
            (Some(1), Some(0))
        } else {
            (Some(0), Some(1))
        },
        "exactly the Lease holder ({leader}) reconciles"
    );
    // Each replica's watch delivers the Secret in its own time (and the index
    // publishes a batch of changes at most 20 ms after its first).
    let ja = same_answer(&a, &b, &path, Duration::from_secs(5)).await;
    let (leader_log, follower_log) = if leader == "replica-a" {
        (a.log_text(), b.log_text())
    } else {
        (b.log_text(), a.log_text())
    };
    // The line looked for is the one the leader logs.
    assert!(
        leader_log.contains("generated key"),
        "the leader logged no generated key:\n{leader_log}"
    );
    assert!(
        !follower_log.contains("generated key"),
        "the follower generated keys:\n{follower_log}"
    );

    // Kill the leader: the other takes over within the lease duration and
    // keeps rotating; the JWKS route never stops answering.
    let first_kids: BTreeSet<String> = kids(&ja).into_iter().collect();
    let (dead, survivor) = if leader == "replica-a" {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    dead.kill();
    let killed = Instant::now();
    let new_leader = loop {
        let (code, _) = survivor.get(&path);
        assert_eq!(code, 200, "JWKS must be served throughout");
        if leader_gauge(survivor) == Some(1) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "no takeover in 15s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        new_leader <= Duration::from_secs(10),
        "takeover took {new_leader:?}"
    );
    eprintln!("leader takeover {new_leader:?} after kill -9 (lease duration 4s)");
    // The schedule goes on under the new leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = survivor.get(&path);
        assert_eq!(code, 200);
        if kids(&body).iter().any(|k| !first_kids.contains(k)) {
            break;
        }
        assert!(Instant::now() < deadline, "no rotation after takeover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secret = env.secret_opt("ha-jwks").await.unwrap();
    assert_consistent(&secret);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_concurrent_writer_never_makes_the_operator_lose_a_key_or_double_the_signer() {
    let env = env("ha-conflict").await;
    let op = env.operator(&[]);
    env.create(
        "race",
        json!({"algorithm": "EdDSA", "rotationInterval": "2s", "publishAhead": "1s", "maxTokenTTL": "10s", "clockSkew": "1s"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.secret_opt("race-jwks").await.is_none() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another writer bumps the Secret's resourceVersion as fast as it can
    // while the operator rotates every 2 s.
    let secrets: Api<Secret> = Api::namespaced(env.admin.clone(), &env.ns);
    let mut seen_kids: BTreeSet<String> = BTreeSet::new();
    let started = Instant::now();
    let mut writes = 0u32;
    while started.elapsed() < Duration::from_secs(12) {
        let patch = json!({"metadata": {"annotations": {"racer": writes.to_string()}}});
        if secrets
            .patch("race-jwks", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .is_ok()
        {
            writes += 1;
        }
        let secret = secrets.get("race-jwks").await.unwrap();
        let records = assert_consistent(&secret);
        // No key vanishes before its time: with a 10 s TTL nothing retired in
        // this 12 s window may be pruned, so the set only grows.
        let now: BTreeSet<String> = records.into_iter().map(|(k, _)| k).collect();
        let lost: Vec<&String> = seen_kids.difference(&now).collect();
        assert!(lost.is_empty(), "keys lost under contention: {lost:?}");
        seen_kids = now;
    }
    assert!(
        seen_kids.len() >= 4,
        "rotations went on under contention: {seen_kids:?}"
    );
    let (_, metrics) = op.get("/metrics");
    let conflicts: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("jwks_operator_reconcile_errors_total") && l.contains("kind=\"conflict\"")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    eprintln!(
        "{writes} competing writes, {conflicts} conflicts retried, {} keys",
        seen_kids.len()
    );
    assert!(
        conflicts > 0.0,
        "the race never produced a conflict, so it proved nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_minus_nine_in_the_middle_of_rotations_loses_nothing() {
    let env = env("ha-crash").await;
    // RSA-4096 generation takes long enough to be killed in the middle of.
    env.create(
        "crash",
        json!({"algorithm": "RS256", "keySize": 4096, "rotationInterval": "3s", "publishAhead": "1s", "maxTokenTTL": "30s", "clockSkew": "1s"}),
    )
    .await;
    let mut kept: BTreeSet<String> = BTreeSet::new();
    for round in 0..5u64 {
        let mut op = env.operator(&[]);
        if round == 0 {
            // So that every round has a stored set to check.
            let deadline = Instant::now() + Duration::from_secs(30);
            while env.secret_opt("crash-jwks").await.is_none() {
                assert!(Instant::now() < deadline, "no Secret within 30s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1500 + 700 * round)).await;
        op.kill();
        let secret = env
            .secret_opt("crash-jwks")
            .await
            .unwrap_or_else(|| panic!("round {round}: the Secret is gone"));
        let records = assert_consistent(&secret);
        let now: BTreeSet<String> = records.into_iter().map(|(k, _)| k).collect();
        // With a 30 s TTL no key may be pruned during this test.
        let lost: Vec<&String> = kept.difference(&now).collect();
        assert!(
            lost.is_empty(),
            "round {round}: keys lost across a crash: {lost:?}"
        );
        kept = now;
    }
    // A last clean run converges to a Ready policy.
    let op = env.operator(&[]);
    let policies: Api<KeyRotationPolicy> = Api::namespaced(env.admin.clone(), &env.ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = policies.get("crash").await.unwrap();
        let ready = p.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "not Ready after the crashes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secret = env.secret_opt("crash-jwks").await.unwrap();
    let records = assert_consistent(&secret);
    assert!(
        records.len() >= 2,
        "rotations happened across restarts: {records:?}"
    );
    let (code, body) = op.get(&format!("/{}/crash/.well-known/jwks.json", env.ns));
    assert_eq!(code, 200);
    let served: BTreeSet<String> = kids(&body).into_iter().collect();
    let stored: BTreeSet<String> = records.into_iter().map(|(k, _)| k).collect();
    assert_eq!(served, stored, "the served set is the stored set");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_renewals_fail_stops_writing_before_its_lease_runs_out() {
    let env = env("ha-renewal").await;
    // Rotations every 2 s; nothing is pruned during the test.
    env.create(
        "renew",
        json!({"algorithm": "EdDSA", "rotationInterval": "2s", "publishAhead": "1s", "maxTokenTTL": "60s", "clockSkew": "1s", "maxKeys": 100}),
    )
    .await;
    let _op = env.operator(&as_strs(&env.leader_args("only")));
    let rv = || async {
        env.secret_opt("renew-jwks")
            .await
            .and_then(|s| s.metadata.resource_version)
    };
    // Positive path: the leader writes, again and again.
    let writes_within = |limit: Duration, wanted: usize| {
        let rv = &rv;
        async move {
            let started = Instant::now();
            let mut seen: BTreeSet<String> = BTreeSet::new();
            while started.elapsed() < limit && seen.len() < wanted {
                if let Some(v) = rv().await {
                    seen.insert(v);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen.len()
        }
    };
    assert!(
        writes_within(Duration::from_secs(30), 3).await >= 3,
        "the leader never wrote"
    );

    // Renewals now fail (403), while Secret writes would still succeed.
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(env.admin.clone(), &env.ns);
    let binding = bindings
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|b| {
            b.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with("-leader-election"))
        })
        .expect("the chart's leader-election RoleBinding");
    let name = binding.metadata.name.clone().unwrap();
    bindings.delete(&name, &Default::default()).await.unwrap();
    let revoked = Instant::now();

    // The last renewal landed at most half a lease (2 s) before; its
    // deadline is 3 s after it. From 4 s on, no write may start.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let frozen = rv().await;
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            rv().await,
            frozen,
            "the leader wrote {:?} after its renewals started failing",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Renewals succeed again: writing resumes.
    let mut restored = binding;
    restored.metadata.resource_version = None;
    restored.metadata.uid = None;
    restored.metadata.creation_timestamp = None;
    restored.metadata.managed_fields = None;
    bindings
        .create(&Default::default(), &restored)
        .await
        .unwrap();
    assert!(
        writes_within(Duration::from_secs(60), 2).await >= 2,
        "writing did not resume once renewals succeeded again"
    );
}

/// The Degraded condition of `name` once its reason is `reason`, within
/// `limit`: its message.
async fn degraded_with(env: &Env, name: &str, reason: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let p = env.policies().get(name).await.unwrap();
        if let Some(c) = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
            && c.status == "True"
            && c.reason == reason
        {
            return c.message.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name} not Degraded/{reason} within {limit:?}: {:?}",
            p.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SPEC invariant 9: revocation is also a read-side rule. An admission
/// policy refuses every update of the key Secret, so the write that would
/// record the revocation fails; the revoked kid still leaves the JWKS of
/// both replicas (the follower too) within a reconcile, the token endpoint
/// refuses to sign with it, the public ConfigMap drops it, and Degraded
/// names the failed write and the revocation it did not record.
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_whose_secret_write_is_refused_still_leaves_every_replica_at_once() {
    use k8s_openapi::api::core::v1::ConfigMap;

    let env = env("ha-revoke").await;
    env.create(
        "rv",
        json!({"algorithm": "ES256", "publicConfigMap": "rv-public", "tokenEndpoint": {"enabled": true}}),
    )
    .await;
    let a = env.operator(&as_strs(&env.leader_args("replica-a")));
    let b = env.operator(&as_strs(&env.leader_args("replica-b")));
    let path = format!("/{}/rv/.well-known/jwks.json", env.ns);
    let token_path = format!("/{}/rv/token", env.ns);
    let cms: Api<ConfigMap> = Api::namespaced(env.admin.clone(), &env.ns);
    let public_kids = |cm: &ConfigMap| {
        kids(
            cm.data
                .as_ref()
                .and_then(|d| d.get("jwks.json"))
                .map_or("", String::as_str),
        )
    };

    // Both replicas serve the first key and sign with it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let kid = loop {
        let (ka, kb) = (kids(&a.get(&path).1), kids(&b.get(&path).1));
        if ka.len() == 1 && ka == kb {
            break ka[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "not served by both: {ka:?} {kb:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for op in [&a, &b] {
        let (status, body) = op.post_token(&token_path, &json!({}));
        assert_eq!((status, body["kid"].as_str()), (200, Some(kid.as_str())));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while cms
        .get_opt("rv-public")
        .await
        .unwrap()
        .is_none_or(|cm| public_kids(&cm) != [kid.clone()])
    {
        assert!(Instant::now() < deadline, "the ConfigMap was not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // From now on no update of the policy's Secret is admitted.
    let name = env
        .refuse_policy_secrets("rv", &["UPDATE"], "the key Secret of rv is frozen")
        .await;
    // In force once it refuses a (dry-run) update of the Secret.
    let touch = json!({"metadata": {"annotations": {"probe": "1"}}});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match env
            .secrets()
            .patch(
                "rv-jwks",
                &PatchParams::default().dry_run(),
                &Patch::Merge(&touch),
            )
            .await
        {
            Err(kube::Error::Api(s)) if s.message.contains("frozen") => break,
            Ok(_) => {}
            Err(e) => panic!("probe: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the admission policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let revoke = json!({"spec": {"revokedKeyIDs": [kid]}});
    env.policies()
        .patch("rv", &PatchParams::default(), &Patch::Merge(&revoke))
        .await
        .unwrap();
    let revoked_at = Instant::now();

    // Every replica stops serving the kid within a reconcile, and refuses
    // to sign with it.
    let deadline = revoked_at + Duration::from_secs(5);
    loop {
        let (ka, kb) = (kids(&a.get(&path).1), kids(&b.get(&path).1));
        if !ka.contains(&kid) && !kb.contains(&kid) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked kid is still served 5s later: {ka:?} {kb:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone_after = revoked_at.elapsed();
    for op in [&a, &b] {
        let (status, body) = op.post_token(&token_path, &json!({}));
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "key_revoked", "{body}");
        assert!(body["message"].as_str().unwrap().contains(&kid), "{body}");
    }

    // The write that would record it failed, and says so.
    let message = degraded_with(&env, "rv", "SecretWriteFailed", Duration::from_secs(15)).await;
    assert!(message.contains("frozen"), "{message}");
    assert!(
        message.contains(&format!("the revocation of {kid} is not recorded")),
        "{message}"
    );
    let secret = env.secret_opt("rv-jwks").await.unwrap();
    assert!(
        lifecycle(&secret).iter().any(|(k, _)| *k == kid),
        "the Secret still holds the kid: its write really failed"
    );
    // The public ConfigMap (written, not refused) drops it too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while public_kids(&cms.get("rv-public").await.unwrap()).contains(&kid) {
        assert!(Instant::now() < deadline, "the ConfigMap still lists {kid}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Once the Secret may be written again, a fresh key signs.
    env.allow_policy_secrets(&name).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = a.post_token(&token_path, &json!({}));
        if status == 200 {
            assert_ne!(body["kid"].as_str(), Some(kid.as_str()));
            break;
        }
        assert!(Instant::now() < deadline, "no fresh key signs: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("revoked kid left both replicas {gone_after:?} after the spec change");
}
