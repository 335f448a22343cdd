//! The copy protocol over `object_store`'s in-memory store, which keeps
//! attributes and honours create-only and If-Match writes like the cloud
//! stores (the GCS code path's coverage: no emulator here speaks the JSON
//! API the crate uses; see docs/publication.md). moto and Azurite run the
//! same protocol against real servers in tests/publication.rs.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload};

use super::*;
use crate::api::PublishTarget;
use crate::publish::target::{Context, DEFAULT_JWKS_PATH, Mode, resolve};

const ISSUER: &str = "https://issuer.example/cluster";

fn target() -> Target {
    resolve(
        &[PublishTarget {
            url: "gs://bucket/cluster".into(),
            ..Default::default()
        }],
        Context {
            mode: Mode::Local,
            issuer: Some(ISSUER),
            max_age: 120,
            default_jwks_path: DEFAULT_JWKS_PATH,
        },
    )
    .unwrap()
    .remove(0)
}

fn jwks(kids: &[&str]) -> Vec<u8> {
    let keys: Vec<_> = kids
        .iter()
        .map(|k| serde_json::json!({"kty": "EC", "kid": k, "alg": "ES256"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
}

fn copy(store: &Arc<InMemory>) -> Copy {
    Copy::with_store(&target(), store.clone(), DEFAULT_CALL_TIMEOUT)
}

async fn get(store: &InMemory, path: &str) -> (Vec<u8>, Attributes) {
    let r = store.get(&Path::parse(path).unwrap()).await.unwrap();
    let a = r.attributes.clone();
    (r.bytes().await.unwrap().to_vec(), a)
}

#[tokio::test]
async fn writes_both_documents_with_type_cache_control_and_digest() {
    let store = Arc::new(InMemory::new());
    let c = copy(&store);
    let docs = Documents::build(c.target(), &jwks(&["a", "b"]), Some(ISSUER));
    let synced = c.sync(&docs).await.unwrap();
    assert_eq!(synced.kids, ["a", "b"]);
    assert_eq!(
        synced.wrote,
        [
            "cluster/jwks.json",
            "cluster/.well-known/openid-configuration"
        ]
    );
    for o in &docs.objects {
        let (body, attrs) = get(&store, &o.path).await;
        assert_eq!(body, o.body);
        let attr = |k: Attribute| attrs.get(&k).map(|v| v.as_ref().to_owned());
        assert_eq!(
            attr(Attribute::ContentType).as_deref(),
            Some("application/json")
        );
        assert_eq!(
            attr(Attribute::CacheControl).as_deref(),
            Some("public, max-age=120")
        );
        assert_eq!(
            attr(Attribute::Metadata("sha256".into())),
            Some(sha256_hex(&body))
        );
    }
    assert_eq!(
        c.read_kids().await.unwrap(),
        Some(vec!["a".into(), "b".into()])
    );
}

#[tokio::test]
async fn a_copy_that_holds_the_documents_is_confirmed_by_reading_not_rewritten() {
    let store = Arc::new(InMemory::new());
    let c = copy(&store);
    let docs = Documents::build(c.target(), &jwks(&["a"]), Some(ISSUER));
    c.sync(&docs).await.unwrap();
    let again = c.sync(&docs).await.unwrap();
    assert!(again.wrote.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_copy_changed_or_deleted_behind_our_back_is_rewritten() {
    let store = Arc::new(InMemory::new());
    let c = copy(&store);
    let docs = Documents::build(c.target(), &jwks(&["a"]), Some(ISSUER));
    c.sync(&docs).await.unwrap();

    // Edited by hand: same path, other content (and no digest metadata).
    let jwks_path = Path::parse("cluster/jwks.json").unwrap();
    store
        .put(&jwks_path, PutPayload::from_static(br#"{"keys":[]}"#))
        .await
        .unwrap();
    let repaired = c.sync(&docs).await.unwrap();
    assert_eq!(repaired.wrote, ["cluster/jwks.json"]);
    assert_eq!(
        get(&store, "cluster/jwks.json").await.0,
        docs.objects[0].body
    );

    // Deleted by hand.
    let disc = Path::parse("cluster/.well-known/openid-configuration").unwrap();
    store.delete(&disc).await.unwrap();
    let repaired = c.sync(&docs).await.unwrap();
    assert_eq!(repaired.wrote, ["cluster/.well-known/openid-configuration"]);

    // Same content, attributes stripped (a copy tool that drops metadata).
    let body = docs.objects[0].body.clone();
    store
        .put(&jwks_path, PutPayload::from_bytes(body))
        .await
        .unwrap();
    let repaired = c.sync(&docs).await.unwrap();
    assert_eq!(repaired.wrote, ["cluster/jwks.json"]);
}

#[tokio::test]
async fn a_write_based_on_a_stale_version_is_refused_and_retried_on_a_fresh_read() {
    let store = Arc::new(InMemory::new());
    let c = copy(&store);
    let path = Path::parse("cluster/jwks.json").unwrap();
    let old = Documents::build(c.target(), &jwks(&["a"]), Some(ISSUER));
    c.sync(&old).await.unwrap();
    let stale = c.seen(&path).await.unwrap().unwrap().version;

    // Another writer changes the object after our read.
    let other = Documents::build(c.target(), &jwks(&["x"]), Some(ISSUER));
    Copy::with_store(&target(), store.clone(), DEFAULT_CALL_TIMEOUT)
        .sync(&other)
        .await
        .unwrap();

    // The write we would have made on our stale read is refused...
    let refused = store
        .put_opts(
            &path,
            PutPayload::from_static(b"{}"),
            PutOptions {
                mode: PutMode::Update(stale),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(refused, Err(object_store::Error::Precondition { .. })),
        "{refused:?}"
    );
    // ...and sync, which re-reads, converges on what we intend.
    let new = Documents::build(c.target(), &jwks(&["b", "a"]), Some(ISSUER));
    let synced = c.sync(&new).await.unwrap();
    assert_eq!(synced.kids, ["b", "a"]);
    assert_eq!(
        get(&store, "cluster/jwks.json").await.0,
        new.objects[0].body
    );
}

#[tokio::test]
async fn a_file_target_is_written_and_read_back_without_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/pub", dir.path().display());
    let t = resolve(
        &[PublishTarget {
            url,
            ..Default::default()
        }],
        Context {
            mode: Mode::Local,
            issuer: None,
            max_age: 60,
            default_jwks_path: "openid/v1/jwks",
        },
    )
    .unwrap()
    .remove(0);
    let c = Copy::connect(&t, None, DEFAULT_CALL_TIMEOUT).unwrap();
    let docs = Documents::build(&t, &jwks(&["a"]), None);
    assert_eq!(c.sync(&docs).await.unwrap().wrote, ["openid/v1/jwks"]);
    assert_eq!(
        std::fs::read(dir.path().join("pub/openid/v1/jwks")).unwrap(),
        docs.objects[0].body
    );
    assert!(c.sync(&docs).await.unwrap().wrote.is_empty());
    std::fs::write(dir.path().join("pub/openid/v1/jwks"), b"{}").unwrap();
    assert_eq!(c.sync(&docs).await.unwrap().wrote, ["openid/v1/jwks"]);
}

/// S3 answers wrong keys with 403 (which `object_store` reports as
/// `PermissionDenied`); the code in the body says they are the keys, and a
/// user without the permission gets `AccessDenied`. Seen against moto with
/// IAM enforced: wrong keys were reported as "access denied".
#[test]
fn wrong_keys_are_told_from_missing_permissions_by_the_store_code() {
    let denied = |code: &str| {
        let source: Box<dyn std::error::Error + Send + Sync> =
            format!("403 Forbidden: <Error><Code>{code}</Code></Error>").into();
        let e = object_store::Error::PermissionDenied {
            path: "p/jwks.json".into(),
            source,
        };
        let text = e.to_string();
        classify(&e, &text)
    };
    assert_eq!(denied("SignatureDoesNotMatch"), ErrorKind::Unauthenticated);
    assert_eq!(denied("InvalidAccessKeyId"), ErrorKind::Unauthenticated);
    assert_eq!(denied("AccessDenied"), ErrorKind::Denied);
}

/// The same failure reads the same on every retry: the request's duration
/// is not part of it. Seen on the real control plane: a bucket refusing the
/// keys gave a new `PublicationPending` message (so a status write) every
/// 5 s, "... in 5.895503ms ..." then "... in 4.1ms ...".
#[test]
fn a_store_error_reads_the_same_on_every_retry() {
    let text = |ms: &str| {
        format!(
            "Error performing GET http://127.0.0.1:1/b/p/jwks.json in {ms} - Server returned non-2xx status code: 403 Forbidden"
        )
    };
    assert_eq!(
        without_durations(&text("5.895503ms")),
        "Error performing GET http://127.0.0.1:1/b/p/jwks.json - Server returned non-2xx status code: 403 Forbidden"
    );
    assert_eq!(
        without_durations(&text("4.1ms")),
        without_durations(&text("12s"))
    );
    // Nor is the request id (S3, Azure), nor what follows it.
    assert_eq!(
        stable(
            "403 Forbidden: <Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>abc123</RequestId></Error>"
        ),
        "403 Forbidden: <Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
    );
    assert_eq!(
        stable(
            "AuthorizationFailure: This request is not authorized.\nRequestId:9f1c\nTime:2026-12-06T08:00:00Z"
        ),
        "AuthorizationFailure: This request is not authorized."
    );
    // Words after " in " stay.
    assert_eq!(
        without_durations("not in sync in 3 places in us-east-1"),
        "not in sync in 3 places in us-east-1"
    );
}
