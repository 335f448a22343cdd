//! Proof that the test control plane is a real one: our CRD is accepted and
//! Established, its CEL rules are enforced by the API server, ownerReference
//! garbage collection works, watches deliver events and RBAC denies.

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use jwks_operator::api::KeyRotationPolicy;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use support::controlplane::{DumpOnFailure, control_plane};

fn policy(name: &str, spec: serde_json::Value) -> KeyRotationPolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "jwks.dev/v1alpha1",
        "kind": "KeyRotationPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("policy fixture")
}

/// The shared control plane with the CRD installed and a new namespace
/// `name`: a guard that dumps the logs if the test fails, an admin client,
/// the namespace and its policies.
async fn with_crd(name: &str) -> (DumpOnFailure, kube::Client, String, Api<KeyRotationPolicy>) {
    let cp = control_plane().await;
    let dump = DumpOnFailure(cp);
    let client = cp.admin_client().await;
    cp.install_crd(&client).await;
    let ns = cp.namespace(&client, name).await;
    let policies = Api::namespaced(client.clone(), &ns);
    (dump, client, ns, policies)
}

#[tokio::test]
async fn crd_is_established_and_defaults_apply() {
    let (_dump, _client, _ns, policies) = with_crd("smoke-crd").await;
    let created = policies
        .create(
            &PostParams::default(),
            &policy("defaults", serde_json::json!({})),
        )
        .await
        .expect("a minimal policy is accepted");
    // Server-side defaulting from the schema.
    assert_eq!(created.spec.algorithm.as_str(), "RS256");
    assert_eq!(created.spec.rotation_interval.to_string(), "24h");
    assert_eq!(created.spec.max_keys, 10);
}

#[tokio::test]
async fn cel_rules_reject_bad_policies_with_our_messages() {
    let (_dump, _client, ns, policies) = with_crd("smoke-cel").await;
    let cases = [
        (
            serde_json::json!({"algorithm": "ES256", "keySize": 2048}),
            "keySize applies only to RSA algorithms",
        ),
        (
            serde_json::json!({"rotationInterval": "1h", "publishAhead": "2h"}),
            "publishAhead must be shorter than rotationInterval",
        ),
        (
            serde_json::json!({"rotationInterval": "soon"}),
            "rotationInterval",
        ),
        (serde_json::json!({"maxKeys": 1}), "maxKeys"),
        // With the defaults filled in by the API server: publishAhead is
        // min(1h, 1h/4) = 15m, clockSkew 60s; 15m < 20m + 60s.
        (
            serde_json::json!({"rotationInterval": "1h", "verifierRefreshInterval": "20m"}),
            "must be at least verifierRefreshInterval + clockSkew",
        ),
        // spec.publish (docs/publication.md).
        (
            serde_json::json!({"publish": [{"url": "ftp://bucket/x"}]}),
            "url must be s3://bucket/prefix",
        ),
        (
            serde_json::json!({"publish": [{"url": "s3://bucket"}, {"url": "s3://bucket"}]}),
            "each publish[].url may appear only once",
        ),
        (
            serde_json::json!({"publish": [{"url": "s3://bucket", "discovery": true}]}),
            "publish[].discovery needs spec.issuer",
        ),
        (
            serde_json::json!({"issuer": "https://b.example/", "publish": [{"url": "s3://bucket"}]}),
            "spec.issuer must not end with '/'",
        ),
        (
            serde_json::json!({"publish": (0..9).map(|i| serde_json::json!({"url": format!("s3://bucket/{i}")})).collect::<Vec<_>>()}),
            "publish",
        ),
    ];
    for (i, (spec, needle)) in cases.into_iter().enumerate() {
        // Send raw JSON: some of these do not even deserialize into our types.
        let body = serde_json::json!({
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "KeyRotationPolicy",
            "metadata": {"name": format!("bad-{i}"), "namespace": ns},
            "spec": spec,
        });
        let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
            policies.clone().into_client(),
            &ns,
            &kube::api::ApiResource::erase::<KeyRotationPolicy>(&()),
        );
        let obj: kube::api::DynamicObject = serde_json::from_value(body).unwrap();
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err("the API server rejects it");
        match err {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(
                    status.message.contains(needle),
                    "expected {needle:?} in {:?}",
                    status.message
                );
            }
            other => panic!("unexpected error {other}"),
        }
    }
    // The control: the same field, within the default publishAhead (1h).
    policies
        .create(
            &PostParams::default(),
            &policy(
                "fits",
                serde_json::json!({"rotationInterval": "24h", "verifierRefreshInterval": "10m"}),
            ),
        )
        .await
        .expect("verifierRefreshInterval + clockSkew within publishAhead is accepted");
    // Eight targets of every scheme, a bucket URL as the issuer: accepted.
    let mut targets: Vec<serde_json::Value> = [
        "s3://bucket/a",
        "az://cont/a",
        "azure://cont2/b",
        "gs://bucket/c",
    ]
    .iter()
    .map(|u| serde_json::json!({"url": u}))
    .collect();
    targets.extend((0..4).map(|i| serde_json::json!({"url": format!("s3://bucket/x{i}"), "jwksPath": "openid/v1/jwks", "cacheControl": "public, max-age=60"})));
    policies
        .create(
            &PostParams::default(),
            &policy(
                "published",
                serde_json::json!({
                    "issuer": "https://bucket.s3.eu-west-1.amazonaws.com/a",
                    "publish": targets,
                }),
            ),
        )
        .await
        .expect("eight publication targets are accepted");
}

/// `spec.keyProvider` (issue #22): the API server refuses what a provider
/// cannot do or lacks, and refuses changing the provider type of a policy
/// (its keys live in the old provider), with the CRD's messages.
#[tokio::test]
async fn key_provider_rules_are_enforced_by_the_api_server() {
    let cp = control_plane().await;
    let _dump = DumpOnFailure(cp);
    let client = cp.admin_client().await;
    cp.install_crd(&client).await;
    let ns = cp.namespace(&client, "smoke-provider").await;
    let policies: Api<KeyRotationPolicy> = Api::namespaced(client, &ns);
    let refused = |e: kube::Error, needle: &str| match e {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains(needle),
                "expected {needle:?} in {:?}",
                status.message
            );
        }
        other => panic!("unexpected error {other}"),
    };
    let cases = [
        (
            serde_json::json!({"algorithm": "EdDSA", "keyProvider": {"type": "AWSKMS", "region": "eu-west-1"}}),
            "keyProvider AWSKMS cannot do EdDSA",
        ),
        (
            serde_json::json!({"keyProvider": {"type": "PKCS11", "module": "/m.so", "tokenLabel": "t"}}),
            "needs exactly one of pinSecret",
        ),
        (
            serde_json::json!({"keyProvider": {"type": "AWSKMS"}}),
            "keyProvider AWSKMS needs region",
        ),
        (
            serde_json::json!({"keyProvider": {"type": "AWSKMS", "region": "eu-west-1", "credentialsSecret": "aws", "credentialsFile": "/etc/aws"}}),
            "set credentialsSecret (Kubernetes) or credentialsFile (standalone, signer), not both",
        ),
        (
            serde_json::json!({"keyProvider": {"type": "PKCS11", "module": "/m.so", "tokenLabel": "t", "pinSecret": "p", "credentialsFile": "/etc/aws"}}),
            "region, credentialsSecret, credentialsFile and endpoint apply only to keyProvider type AWSKMS",
        ),
    ];
    for (i, (spec, needle)) in cases.into_iter().enumerate() {
        let err = policies
            .create(&PostParams::default(), &policy(&format!("bad-{i}"), spec))
            .await
            .expect_err("the API server rejects it");
        refused(err, needle);
    }
    let created = policies
        .create(
            &PostParams::default(),
            &policy(
                "hsm",
                serde_json::json!({"algorithm": "ES256", "keyProvider": {"type": "PKCS11", "module": "/usr/lib/softhsm/libsofthsm2.so", "tokenLabel": "jwks", "pinSecret": "hsm-pin"}}),
            ),
        )
        .await
        .expect("a complete PKCS11 provider is accepted");
    assert_eq!(
        created.spec.key_provider.as_ref().map(|p| p.kind.as_str()),
        Some("PKCS11")
    );
    // Changing the type is refused on update (a transition rule)...
    let mut changed = created.clone();
    changed.spec.key_provider = None;
    let err = policies
        .replace("hsm", &PostParams::default(), &changed)
        .await
        .expect_err("changing the provider type is refused");
    refused(
        err,
        "keyProvider.type, tokenLabel and region cannot be changed",
    );
    // ...and so is moving to another token, where the set's keys are not...
    let mut relabelled = created.clone();
    relabelled.spec.key_provider.as_mut().unwrap().token_label = Some("jwks-2".into());
    let err = policies
        .replace("hsm", &PostParams::default(), &relabelled)
        .await
        .expect_err("changing the token is refused");
    refused(
        err,
        "keyProvider.type, tokenLabel and region cannot be changed",
    );
    // ...while the module path and the PIN's Secret may change.
    let mut moved = created;
    let provider = moved.spec.key_provider.as_mut().unwrap();
    provider.module = Some("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so".into());
    provider.pin_secret = Some("hsm-pin-2".into());
    policies
        .replace("hsm", &PostParams::default(), &moved)
        .await
        .expect("another module path and PIN Secret are accepted");
}

#[tokio::test]
async fn deleting_a_policy_garbage_collects_its_owned_secret() {
    let (_dump, client, ns, policies) = with_crd("smoke-gc").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let owner = policies
        .create(
            &PostParams::default(),
            &policy("owner", serde_json::json!({})),
        )
        .await
        .unwrap();
    let owner_ref = owner.controller_owner_ref(&()).expect("owner reference");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "owner-jwks", "ownerReferences": [owner_ref]},
        "stringData": {"x": "y"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    policies
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    // The garbage collector rediscovers resource types every 30 s, so a CRD
    // installed after it started may take that long to be noticed.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match secrets.get_opt("owner-jwks").await.unwrap() {
            None => break,
            Some(_) => {
                assert!(
                    Instant::now() < deadline,
                    "owned Secret not collected in 90s"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_watch_receives_events() {
    let (_dump, _client, ns, policies) = with_crd("smoke-watch").await;
    let mut stream = watcher(policies.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let creator = policies.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        creator
            .create(
                &PostParams::default(),
                &policy("watched", serde_json::json!({})),
            )
            .await
            .unwrap();
    });
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(obj) = stream.try_next().await.expect("watch stream") {
            if obj.name_any() == "watched" {
                return obj;
            }
        }
        panic!("watch ended")
    })
    .await
    .expect("the watch delivered the new policy within 20s");
    assert_eq!(seen.namespace().as_deref(), Some(ns.as_str()));
}

#[tokio::test]
async fn an_identity_without_secret_permissions_is_denied() {
    let cp = control_plane().await;
    let _dump = DumpOnFailure(cp);
    let admin = cp.admin_client().await;
    let ns = cp.namespace(&admin, "smoke-rbac").await;
    let nobody = cp.service_account_client(&admin, &ns, "nobody").await;
    let err = Api::<Secret>::namespaced(nobody, &ns)
        .list(&Default::default())
        .await
        .expect_err("no RBAC grants it secrets");
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("unexpected error {other}"),
    }
}
