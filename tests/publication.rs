//! Publication to object storage (issue #21) against real servers started by
//! the test: moto's S3 server (tests/publish/install.sh installs it).
//!
//! The copy protocol: documents with Content-Type, Cache-Control and a
//! SHA-256 in metadata, read back; edits and deletions repaired; two writers
//! at once serialised by conditional writes; failures classified with a
//! deadline and without credential values.

mod common;
#[path = "support/uds.rs"]
mod uds;

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

// === standalone mode, end to end, on S3 (moto) and Azure Blob (Azurite) ===

mod e2e {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use object_store::ObjectStore;
    use serde_json::Value;

    use super::common::azurite::{self, Azurite};
    use super::common::moto::{self, Moto};
    use super::common::{Operator, http};

    const POLICY: &str = "default/pub";

    /// What the end-to-end cases need of an object store server: each case
    /// runs the same on S3 and on Azure Blob.
    trait Server {
        /// Starts the server.
        fn start() -> Self;
        /// Creates `bucket`, readable by anyone (a bucket behind a CDN).
        fn create(&self, bucket: &str);
        /// The `spec.publish[].url` of the prefix `p` in `bucket`.
        fn target(&self, bucket: &str) -> String;
        /// Where anyone reads `key` in `bucket`: the server and the path.
        fn public(&self, bucket: &str, key: &str) -> (SocketAddr, String);
        /// A credentialsFile's content.
        fn credentials_env(&self) -> String;
        /// The credential values no output may show.
        fn secrets(&self) -> Vec<&'static str>;
        /// Stops (SIGSTOP) or resumes the server.
        fn pause(&self, paused: bool);
        /// A client of `bucket` with the server's credentials, to act
        /// behind the operator's back.
        fn raw(&self, bucket: &str) -> Arc<dyn ObjectStore>;
    }

    impl Server for Moto {
        fn start() -> Self {
            Moto::start()
        }
        fn create(&self, bucket: &str) {
            self.create_bucket(bucket);
            self.make_public(bucket);
        }
        fn target(&self, bucket: &str) -> String {
            format!("s3://{bucket}/p")
        }
        fn public(&self, bucket: &str, key: &str) -> (SocketAddr, String) {
            (self.addr, format!("/{bucket}/{key}"))
        }
        fn credentials_env(&self) -> String {
            Moto::credentials_env(self)
        }
        fn secrets(&self) -> Vec<&'static str> {
            vec![moto::SECRET_ACCESS_KEY, moto::ACCESS_KEY_ID]
        }
        fn pause(&self, paused: bool) {
            Moto::pause(self, paused)
        }
        fn raw(&self, bucket: &str) -> Arc<dyn ObjectStore> {
            Arc::new(super::raw_store(self, bucket))
        }
    }

    impl Server for Azurite {
        fn start() -> Self {
            Azurite::start()
        }
        fn create(&self, bucket: &str) {
            self.create_container(bucket);
        }
        fn target(&self, bucket: &str) -> String {
            format!("az://{bucket}/p")
        }
        fn public(&self, bucket: &str, key: &str) -> (SocketAddr, String) {
            (self.addr, format!("/{}/{bucket}/{key}", azurite::ACCOUNT))
        }
        fn credentials_env(&self) -> String {
            Azurite::credentials_env(self, azurite::ACCOUNT_KEY)
        }
        fn secrets(&self) -> Vec<&'static str> {
            vec![azurite::ACCOUNT_KEY]
        }
        fn pause(&self, paused: bool) {
            Azurite::pause(self, paused)
        }
        fn raw(&self, bucket: &str) -> Arc<dyn ObjectStore> {
            Arc::new(
                object_store::azure::MicrosoftAzureBuilder::new()
                    .with_account(azurite::ACCOUNT)
                    .with_access_key(azurite::ACCOUNT_KEY)
                    .with_endpoint(self.endpoint())
                    .with_allow_http(true)
                    .with_container_name(bucket)
                    .build()
                    .unwrap(),
            )
        }
    }

    /// A running standalone operator publishing one policy to `bucket`.
    struct Published<S> {
        server: S,
        bucket: String,
        dir: tempfile::TempDir,
        policies: PathBuf,
        op: Operator,
    }

    impl<S: Server> Published<S> {
        /// A policy publishing to `bucket` on a fresh server, with `timing`
        /// lines in its spec and `--publish-verify-interval verify`.
        fn start(bucket: &str, timing: &str, verify: &str) -> Published<S> {
            let server = S::start();
            server.create(bucket);
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("store.env"), server.credentials_env()).unwrap();
            let policies = dir.path().join("policies.yaml");
            write_policy(&server, bucket, dir.path(), &policies, timing, "");
            let op = Operator::start_with(
                &policies,
                &dir.path().join("state"),
                &["--publish-verify-interval", verify],
            );
            Published {
                server,
                bucket: bucket.into(),
                dir,
                policies,
                op,
            }
        }

        /// Rewrites the policy file (`reload` makes the operator read it).
        fn write_policy(&self, timing: &str, extra: &str) {
            write_policy(
                &self.server,
                &self.bucket,
                self.dir.path(),
                &self.policies,
                timing,
                extra,
            );
        }

        /// The kids the bucket's public copy lists (empty when absent).
        fn bucket_kids(&self) -> Vec<String> {
            let (addr, path) = self.server.public(&self.bucket, "p/jwks.json");
            let r = http(addr, "GET", &path, &[], None);
            if r.status != 200 {
                return Vec::new();
            }
            super::common::kids_of(&r.json())
        }

        fn active(&self) -> String {
            self.op.summary(POLICY)["activeKeyID"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }

        fn metrics(&self) -> String {
            http(self.op.metrics, "GET", "/metrics", &[], None).text()
        }

        /// `publication_results_total{result="error"}` of the policy's copy.
        fn failed_rounds(&self) -> f64 {
            self.metrics()
                .lines()
                .filter(|l| {
                    l.starts_with("jwks_operator_publication_results_total{")
                        && l.contains("result=\"error\"")
                })
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum()
        }

        /// No credential value in the log, the metrics or `/policies`.
        fn assert_no_credentials(&self) {
            let shown = [
                self.op
                    .log()
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.metrics(),
                http(self.op.metrics, "GET", "/policies", &[], None).text(),
                http(self.op.jwks, "GET", "/policies", &[], None).text(),
            ];
            for (i, text) in shown.iter().enumerate() {
                for secret in self.server.secrets() {
                    assert!(!text.contains(secret), "a credential in output {i}: {text}");
                }
            }
        }

        fn wait_published(&self, kid: &str) {
            wait_until("the copy holds the key", Duration::from_secs(20), || {
                self.bucket_kids().iter().any(|k| k == kid).then_some(())
            });
        }
    }

    /// A policy publishing to `bucket` with the credentials in `dir`.
    fn write_policy(
        server: &impl Server,
        bucket: &str,
        dir: &Path,
        path: &Path,
        timing: &str,
        extra: &str,
    ) {
        std::fs::write(
            path,
            format!(
                "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata: {{name: pub, namespace: default}}\nspec:\n  algorithm: ES256\n  {timing}\n  tokenEndpoint: {{enabled: true}}\n  publish:\n  - url: {}\n    credentialsFile: {}\n{extra}",
                server.target(bucket),
                dir.join("store.env").display()
            ),
        )
        .unwrap();
    }

    fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?}: {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SPEC "Publication": the new key activates only once the bucket holds
    /// it; with the server stopped (SIGSTOP) across a scheduled rotation the
    /// old key keeps signing, /policies says why, and the new key activates
    /// after the server comes back, already in the bucket.
    fn a_stopped_bucket_holds_the_rotation_and_the_old_key_keeps_signing<S: Server>() {
        let p = Published::<S>::start(
            "pub-stop",
            "rotationInterval: 6s\n  publishAhead: 2s\n  maxTokenTTL: 2s\n  clockSkew: 0s",
            "1s",
        );
        let first = p.active();
        assert!(!first.is_empty());
        p.wait_published(&first);

        p.server.pause(true);
        let due = p.op.summary(POLICY)["nextRotationTime"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap();
        // Three failed rounds (each a pass that plans, and would activate
        // the next key on schedule without the gate), the last one past the
        // scheduled rotation.
        wait_until(
            "three failed publication rounds past the scheduled rotation",
            Duration::from_secs(120),
            || {
                (jiff::Timestamp::now() > due + jiff::SignedDuration::from_secs(1)
                    && p.failed_rounds() >= 3.0)
                    .then_some(())
            },
        );
        let degraded = p.op.summary(POLICY);
        assert_eq!(
            degraded["degraded"]["reason"], "PublicationPending",
            "{degraded}"
        );
        assert_eq!(degraded["activeKeyID"], first.as_str(), "{degraded}");
        let message = degraded["degraded"]["message"].as_str().unwrap();
        let target = p.server.target("pub-stop");
        assert!(message.contains(&target), "{message}");
        let (_, kid) = p.op.mint(POLICY, &serde_json::json!({"sub": "s"}));
        assert_eq!(kid, first, "the old key keeps signing past its rotation");

        p.server.pause(false);
        let next = wait_until("the next key activates", Duration::from_secs(60), || {
            let a = p.active();
            (a != first).then_some(a)
        });
        assert!(
            p.bucket_kids().contains(&next),
            "the new signer is in the bucket"
        );
        wait_until("the problem clears", Duration::from_secs(30), || {
            p.op.summary(POLICY).get("degraded").is_none().then_some(())
        });
        let summary = p.op.summary(POLICY);
        let publication = &summary["publication"][0];
        assert_eq!(publication["url"], target.as_str());
        assert!(
            publication["publishedDigest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(publication.get("error").is_none(), "{publication}");
        // The public /policies shows nothing of the copies.
        let public = http(p.op.jwks, "GET", "/policies", &[], None).text();
        assert!(!public.contains(&target), "{public}");
        p.assert_no_credentials();
    }

    #[test]
    fn s3_a_stopped_bucket_holds_the_rotation_and_the_old_key_keeps_signing() {
        a_stopped_bucket_holds_the_rotation_and_the_old_key_keeps_signing::<Moto>();
    }

    #[test]
    fn azure_a_stopped_container_holds_the_rotation_and_the_old_key_keeps_signing() {
        a_stopped_bucket_holds_the_rotation_and_the_old_key_keeps_signing::<Azurite>();
    }

    /// A copy deleted or edited behind the operator's back is rewritten
    /// within `--publish-verify-interval`, and counted.
    fn a_copy_deleted_or_edited_by_hand_is_repaired_and_counted<S: Server>() {
        let p = Published::<S>::start("pub-repair", "rotationInterval: 1h", "1s");
        let kid = p.active();
        p.wait_published(&kid);
        let raw = p.server.raw("pub-repair");
        let path = object_store::path::Path::from("p/jwks.json");
        let rt = tokio::runtime::Runtime::new().unwrap();
        use object_store::ObjectStoreExt as _;
        rt.block_on(raw.delete(&path)).unwrap();
        p.wait_published(&kid);
        rt.block_on(raw.put(
            &path,
            object_store::PutPayload::from_static(br#"{"keys":[]}"#),
        ))
        .unwrap();
        p.wait_published(&kid);
        let repairs = wait_until("two repairs counted", Duration::from_secs(10), || {
            p.metrics()
                .lines()
                .find(|l| l.starts_with("jwks_operator_publication_repairs_total{"))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .filter(|n| *n >= 2.0)
        });
        assert_eq!(repairs, 2.0);
        p.assert_no_credentials();
    }

    #[test]
    fn s3_a_copy_deleted_or_edited_by_hand_is_repaired_and_counted() {
        a_copy_deleted_or_edited_by_hand_is_repaired_and_counted::<Moto>();
    }

    #[test]
    fn azure_a_copy_deleted_or_edited_by_hand_is_repaired_and_counted() {
        a_copy_deleted_or_edited_by_hand_is_repaired_and_counted::<Azurite>();
    }

    /// A revoked key leaves the copy at once (the next pass after the
    /// policy file names it), not at its prune time.
    fn a_revoked_key_leaves_the_copy_at_once<S: Server>() {
        let p = Published::<S>::start("pub-revoke", "rotationInterval: 1h", "1h");
        let kid = p.active();
        p.wait_published(&kid);
        p.write_policy(
            "rotationInterval: 1h",
            &format!("  revokedKeyIDs: [{kid}]\n"),
        );
        p.op.reload();
        let started = Instant::now();
        let now_listed = wait_until(
            "the revoked kid leaves the copy",
            Duration::from_secs(20),
            || {
                let kids = p.bucket_kids();
                (!kids.is_empty() && !kids.contains(&kid)).then_some(kids)
            },
        );
        assert!(started.elapsed() < Duration::from_secs(15));
        assert_eq!(now_listed, vec![p.active()], "the fresh signer replaces it");
    }

    #[test]
    fn s3_a_revoked_key_leaves_the_copy_at_once() {
        a_revoked_key_leaves_the_copy_at_once::<Moto>();
    }

    #[test]
    fn azure_a_revoked_key_leaves_the_copy_at_once() {
        a_revoked_key_leaves_the_copy_at_once::<Azurite>();
    }

    /// A third-party verifier's line protocol (tests/interop scripts).
    struct Verifier {
        child: Child,
        stdin: ChildStdin,
        stdout: BufReader<ChildStdout>,
    }

    impl Verifier {
        fn spawn(mut cmd: Command) -> Verifier {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the verifier starts");
            let stdin = child.stdin.take().unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            Verifier {
                child,
                stdin,
                stdout,
            }
        }

        fn verify(&mut self, token: &str) -> String {
            writeln!(self.stdin, "{token}").unwrap();
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            line.trim().to_owned()
        }
    }

    impl Drop for Verifier {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn cache_dir() -> PathBuf {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
            .join("jwks-operator")
    }

    /// Verifiers pointed at the bucket's public URL never meet an unknown
    /// kid across three rotations: npm jose with a cache shorter than
    /// `publishAhead` and no refetch on an unknown kid (so every success
    /// means the key was in the copy before it signed), and PyJWT's
    /// PyJWKClient. Meanwhile a pruned key leaves the copy before the stored
    /// set: once the operator stops serving a kid, the copy never lists it.
    fn verifiers_at_the_bucket_never_meet_an_unknown_kid_across_three_rotations<S: Server>() {
        let p = Published::<S>::start(
            "pub-verifiers",
            "rotationInterval: 5s\n  publishAhead: 2s\n  maxTokenTTL: 3s\n  clockSkew: 0s",
            "1s",
        );
        let op = &p.op;
        let (addr, path) = p.server.public("pub-verifiers", "p/jwks.json");
        let url = format!("http://{addr}{path}");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let jose_dir = root.join("tests/interop/jose");
        assert!(
            jose_dir.join("node_modules/jose/package.json").exists(),
            "npm jose is missing: run `bash tests/interop/install-verifiers.sh`"
        );
        let mut node = Command::new("node");
        node.current_dir(&jose_dir)
            .args(["bucket_verifier.mjs", &url, "1500"]);
        let mut jose = Verifier::spawn(node);
        let mut py = Command::new(cache_dir().join("venv/bin/python"));
        py.args([
            root.join("tests/publish/bucket_verifier.py")
                .to_str()
                .unwrap(),
            &url,
            "1.5",
        ]);
        let mut pyjwt = Verifier::spawn(py);

        let mut signers: Vec<String> = Vec::new();
        let mut ever_served: std::collections::BTreeSet<String> = Default::default();
        let mut pruned_seen = 0;
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut tokens = 0;
        while signers.len() < 4 {
            assert!(
                Instant::now() < deadline,
                "three rotations within 90s; saw {signers:?}"
            );
            let (token, kid) = op.mint(POLICY, &serde_json::json!({"sub": "s"}));
            if signers.last() != Some(&kid) {
                signers.push(kid.clone());
            }
            tokens += 1;
            assert_eq!(
                jose.verify(&token),
                format!("ok {kid}"),
                "jose, token {tokens}"
            );
            assert_eq!(
                pyjwt.verify(&token),
                format!("ok {kid}"),
                "PyJWT, token {tokens}"
            );

            let served = op.kids(POLICY);
            let bucket = p.bucket_kids();
            for gone in ever_served.iter().filter(|k| !served.contains(k)) {
                pruned_seen += 1;
                assert!(
                    !bucket.contains(gone),
                    "{gone} left the stored set while the copy still lists it: {bucket:?}"
                );
            }
            ever_served.extend(served);
            std::thread::sleep(Duration::from_millis(150));
        }
        assert!(pruned_seen > 0, "a key was pruned during the test");
        eprintln!("{tokens} tokens verified by jose and PyJWT across signers {signers:?}");
    }

    #[test]
    fn s3_verifiers_at_the_bucket_never_meet_an_unknown_kid_across_three_rotations() {
        verifiers_at_the_bucket_never_meet_an_unknown_kid_across_three_rotations::<Moto>();
    }

    #[test]
    fn azure_verifiers_at_the_container_never_meet_an_unknown_kid_across_three_rotations() {
        verifiers_at_the_bucket_never_meet_an_unknown_kid_across_three_rotations::<Azurite>();
    }
}

// === Azure Blob, against Azurite ===

mod azure {
    use std::time::Duration;

    use super::common::azurite::{ACCOUNT_KEY, Azurite};
    use super::common::http;
    use super::{ISSUER, jwks, sha256_hex, target};
    use jwks_operator::publish::{Copy, Credentials, Documents, ErrorKind};
    use object_store::ObjectStoreExt as _;

    fn copy(az: &Azurite, url: &str, key: &str) -> Copy {
        let creds = Credentials::parse_env(az.credentials_env(key).as_bytes()).unwrap();
        Copy::connect(&target(url), Some(creds), Duration::from_secs(10)).unwrap()
    }

    #[tokio::test]
    async fn azure_copy_holds_the_documents_with_metadata_and_is_repaired() {
        let az = Azurite::start();
        az.create_container("pub-meta");
        let c = copy(&az, "az://pub-meta/cluster", ACCOUNT_KEY);
        let docs = Documents::build(c.target(), &jwks(&["k1", "k0"]), Some(ISSUER));
        let synced = c.sync(&docs).await.unwrap();
        assert_eq!(synced.wrote.len(), 2);
        let r = http(
            az.addr,
            "GET",
            "/devstoreaccount1/pub-meta/cluster/jwks.json",
            &[],
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, docs.objects[0].body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("cache-control"), Some("public, max-age=150"));
        assert_eq!(
            r.header("x-ms-meta-sha256"),
            Some(sha256_hex(&r.body).as_str())
        );
        assert!(c.sync(&docs).await.unwrap().wrote.is_empty());

        // Someone else deletes the copy: rewritten.
        let raw = object_store::azure::MicrosoftAzureBuilder::new()
            .with_account("devstoreaccount1")
            .with_access_key(ACCOUNT_KEY)
            .with_endpoint(az.endpoint())
            .with_allow_http(true)
            .with_container_name("pub-meta")
            .build()
            .unwrap();
        let path = object_store::path::Path::from("cluster/jwks.json");
        raw.delete(&path).await.unwrap();
        assert_eq!(c.sync(&docs).await.unwrap().wrote, ["cluster/jwks.json"]);
        // ...or edits it: rewritten.
        raw.put(&path, object_store::PutPayload::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(c.sync(&docs).await.unwrap().wrote, ["cluster/jwks.json"]);
        assert_eq!(
            c.read_kids().await.unwrap(),
            Some(vec!["k1".into(), "k0".into()])
        );
    }

    /// The same race as on S3: conditional writes (If-None-Match: * and
    /// If-Match) make two writers write each object once between them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn azure_two_writers_at_once_write_each_object_once() {
        let az = Azurite::start();
        az.create_container("pub-race");
        let rounds = 6;
        let mut writes = 0;
        for round in 0..rounds {
            let url = format!("az://pub-race/r{round}");
            let (a, b) = (copy(&az, &url, ACCOUNT_KEY), copy(&az, &url, ACCOUNT_KEY));
            let docs = Documents::build(a.target(), &jwks(&["k2", "k1"]), Some(ISSUER));
            let (ra, rb) = tokio::join!(a.sync(&docs), b.sync(&docs));
            writes += ra.unwrap().wrote.len() + rb.unwrap().wrote.len();
        }
        assert_eq!(writes, 2 * rounds);
    }

    #[tokio::test]
    async fn azure_wrong_key_and_missing_container_are_named_without_the_key() {
        let az = Azurite::start();
        az.create_container("pub-auth");
        let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
        let c = copy(&az, "az://pub-auth/p", wrong);
        let docs = Documents::build(c.target(), &jwks(&["k1"]), Some(ISSUER));
        let e = c.sync(&docs).await.unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Unauthenticated | ErrorKind::Denied),
            "{e:?}"
        );
        assert!(e.message.starts_with("az://pub-auth/p: "), "{e}");
        assert!(!e.message.contains(wrong), "{e}");

        let c = copy(&az, "az://no-such-container/p", ACCOUNT_KEY);
        let e = c.sync(&docs).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoBucket, "{e}");
        assert!(!e.message.contains(ACCOUNT_KEY), "{e}");
    }
}

// === the service-account signer (`jwks-operator signer --publish`) ===

mod signer {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use jwks_operator::signer::pb::FetchKeysRequest;
    use jwks_operator::signer::pb::external_jwt_signer_client::ExternalJwtSignerClient;
    use object_store::ObjectStoreExt as _;

    use super::common::moto::{Moto, SECRET_ACCESS_KEY};
    use super::common::{BIN, http, kids_of};

    const ISSUER: &str = "https://oidc.example/cluster";

    async fn fetch_kids(socket: &std::path::Path) -> Result<Vec<String>, String> {
        let channel = super::uds::uds_channel(socket)
            .await
            .map_err(|e| e.to_string())?;
        let keys = ExternalJwtSignerClient::new(channel)
            .fetch_keys(FetchKeysRequest {})
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .keys;
        Ok(keys.into_iter().map(|k| k.key_id).collect())
    }

    /// The signer writes the cluster's issuer in the layout cloud IAM
    /// expects of a self-hosted cluster: the discovery document and
    /// `openid/v1/jwks`, holding the keys FetchKeys gives kube-apiserver.
    #[tokio::test]
    async fn the_signer_publishes_the_issuer_in_kube_layout() {
        let moto = Moto::start();
        moto.create_bucket("sa-issuer");
        moto.make_public("sa-issuer");
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("s3.env");
        std::fs::write(&creds, moto.credentials_env()).unwrap();
        std::fs::write(
            dir.path().join("sa.yaml"),
            format!(
                "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata: {{name: sa, namespace: kube-system}}\nspec: {{algorithm: ES256, maxTokenTTL: 1h, issuer: '{ISSUER}'}}\n"
            ),
        )
        .unwrap();
        let socket = dir.path().join("s.sock");
        let mut child = Command::new(BIN)
            .arg("signer")
            .arg("--policies")
            .arg(dir.path().join("sa.yaml"))
            .args(["--policy", "kube-system/sa", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(&socket)
            .args([
                "--publish",
                "s3://sa-issuer/cluster",
                "--publish-credentials-file",
            ])
            .arg(&creds)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the signer");
        let deadline = Instant::now() + Duration::from_secs(30);
        let kids = loop {
            if let Ok(kids) = fetch_kids(&socket).await
                && !kids.is_empty()
            {
                break kids;
            }
            assert!(
                Instant::now() < deadline,
                "the signer never answered FetchKeys"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let published = loop {
            let r = http(
                moto.addr,
                "GET",
                "/sa-issuer/cluster/openid/v1/jwks",
                &[],
                None,
            );
            if r.status == 200 {
                break kids_of(&r.json());
            }
            assert!(Instant::now() < deadline, "no openid/v1/jwks in the bucket");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(published, kids);
        // The discovery document, read through the S3 API (moto answers
        // anonymous `.well-known` reads with its Cognito mock).
        let raw = super::raw_store(&moto, "sa-issuer");
        let doc = raw
            .get(&object_store::path::Path::from(
                "cluster/.well-known/openid-configuration",
            ))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(doc["issuer"], ISSUER);
        assert_eq!(doc["jwks_uri"], format!("{ISSUER}/openid/v1/jwks"));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!log.contains(SECRET_ACCESS_KEY), "{log}");
    }
}
