//! Publication to object storage (issue #21) against real servers started by
//! the test: moto's S3 server (tests/publish/install.sh installs it).
//!
//! The copy protocol: documents with Content-Type, Cache-Control and a
//! SHA-256 in metadata, read back; edits and deletions repaired; two writers
//! at once serialised by conditional writes; failures classified with a
//! deadline and without credential values.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http;
use common::moto::{Moto, SECRET_ACCESS_KEY};
use jwks_operator::api::PublishTarget;
use jwks_operator::publish::target::{Context, DEFAULT_JWKS_PATH, Mode, resolve};
use jwks_operator::publish::{Copy, Credentials, Documents, ErrorKind, Target};
use object_store::ObjectStoreExt as _;

const ISSUER: &str = "https://issuer.example/cluster";

fn target(url: &str) -> Target {
    resolve(
        &[PublishTarget {
            url: url.into(),
            credentials_file: Some("/unused".into()),
            ..Default::default()
        }],
        Context {
            mode: Mode::Local,
            issuer: Some(ISSUER),
            max_age: 150,
            default_jwks_path: DEFAULT_JWKS_PATH,
        },
    )
    .unwrap()
    .remove(0)
}

fn copy(moto: &Moto, url: &str, timeout: Duration) -> Copy {
    let creds = Credentials::parse_env(moto.credentials_env().as_bytes()).unwrap();
    Copy::connect(&target(url), Some(creds), timeout).unwrap()
}

fn jwks(kids: &[&str]) -> Vec<u8> {
    let keys: Vec<_> = kids
        .iter()
        .map(|k| serde_json::json!({"kty": "EC", "kid": k, "alg": "ES256"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
}

/// A plain client of `bucket`: "someone else" changing the copy.
fn raw_store(moto: &Moto, bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("someone")
        .with_secret_access_key("else")
        .build()
        .unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    jwks_operator::publish::documents::sha256_hex(b)
}

#[tokio::test]
async fn s3_copy_holds_both_documents_with_type_cache_control_and_digest() {
    let moto = Moto::start();
    moto.create_bucket("pub-meta");
    moto.make_public("pub-meta");
    let c = copy(&moto, "s3://pub-meta/cluster", Duration::from_secs(10));
    let docs = Documents::build(c.target(), &jwks(&["k1", "k0"]), Some(ISSUER));
    let synced = c.sync(&docs).await.unwrap();
    assert_eq!(synced.kids, ["k1", "k0"]);
    assert_eq!(synced.wrote.len(), 2);

    // What a verifier behind the bucket's public URL gets.
    let r = http(moto.addr, "GET", "/pub-meta/cluster/jwks.json", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, docs.objects[0].body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=150"));
    assert_eq!(
        r.header("x-amz-meta-sha256"),
        Some(sha256_hex(&r.body).as_str())
    );
    // The discovery document through the S3 API (moto answers anonymous
    // `.well-known` GETs with its Cognito mock): the copy reads it back.
    let again = c.sync(&docs).await.unwrap();
    assert!(again.wrote.is_empty(), "confirmed by reading: {again:?}");
}

#[tokio::test]
async fn s3_copy_edited_or_deleted_by_hand_is_rewritten() {
    let moto = Moto::start();
    moto.create_bucket("pub-drift");
    let c = copy(&moto, "s3://pub-drift", Duration::from_secs(10));
    let docs = Documents::build(c.target(), &jwks(&["k1"]), Some(ISSUER));
    c.sync(&docs).await.unwrap();

    // Edited by someone else, with the store's own client.
    let raw = raw_store(&moto, "pub-drift");
    let path = object_store::path::Path::from("jwks.json");
    raw.put(
        &path,
        object_store::PutPayload::from_static(br#"{"keys":[]}"#),
    )
    .await
    .unwrap();
    let repaired = c.sync(&docs).await.unwrap();
    assert_eq!(repaired.wrote, ["jwks.json"]);
    assert_eq!(c.read_kids().await.unwrap(), Some(vec!["k1".to_owned()]));

    // Deleted by someone else.
    raw.delete(&path).await.unwrap();
    let repaired = c.sync(&docs).await.unwrap();
    assert_eq!(repaired.wrote, ["jwks.json"]);
    assert_eq!(c.read_kids().await.unwrap(), Some(vec!["k1".to_owned()]));
}

/// Two replicas publishing the same set at once (the moment after a
/// rotation): with create-only and If-Match writes each object is written
/// once, by whichever replica got there first; the other finds it written.
/// Unconditional writes would write it twice (seen before the fix: a copy
/// built with `PutMode::Overwrite` made 31 writes for 16 objects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_at_once_write_each_object_once() {
    let moto = Moto::start();
    moto.create_bucket("pub-race");
    let rounds = 8;
    let mut writes = 0;
    for round in 0..rounds {
        let url = format!("s3://pub-race/r{round}");
        let (a, b) = (
            copy(&moto, &url, Duration::from_secs(10)),
            copy(&moto, &url, Duration::from_secs(10)),
        );
        let docs = Arc::new(Documents::build(
            a.target(),
            &jwks(&["k2", "k1"]),
            Some(ISSUER),
        ));
        let (ra, rb) = tokio::join!(a.sync(&docs), b.sync(&docs));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.kids, rb.kids);
        writes += ra.wrote.len() + rb.wrote.len();
    }
    assert_eq!(
        writes,
        2 * rounds,
        "each object written exactly once per round"
    );
}

#[tokio::test]
async fn a_missing_bucket_is_named_as_such_without_credentials() {
    let moto = Moto::start();
    let c = copy(&moto, "s3://no-such-bucket/p", Duration::from_secs(10));
    let docs = Documents::build(c.target(), &jwks(&["k1"]), Some(ISSUER));
    let e = c.sync(&docs).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoBucket, "{e}");
    assert!(e.message.starts_with("s3://no-such-bucket/p: "), "{e}");
    assert!(!e.message.contains(SECRET_ACCESS_KEY), "{e}");
}

#[tokio::test]
async fn a_stopped_server_fails_within_the_deadline() {
    let moto = Moto::start();
    moto.create_bucket("pub-slow");
    let c = copy(&moto, "s3://pub-slow", Duration::from_secs(2));
    let docs = Documents::build(c.target(), &jwks(&["k1"]), Some(ISSUER));
    moto.pause(true);
    let started = Instant::now();
    let e = c.sync(&docs).await.unwrap_err();
    let took = started.elapsed();
    moto.pause(false);
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(e.message.contains("did not complete within 2s"), "{e}");
    // And the copy recovers once the server is back.
    c.sync(&docs).await.unwrap();
}
