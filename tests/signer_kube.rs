//! `jwks-operator signer` behind the real kube-apiserver 1.35
//! (`--service-account-signing-endpoint`), on the test control plane's etcd.
//!
//! Each test starts its own signer process(es) from the built binary, then
//! its own kube-apiserver(s) pointed at their sockets (the signer must be up
//! first: kube-apiserver fetches keys at start), and checks what users see:
//! tokens from `kubectl create token` / the TokenRequest API, TokenReview,
//! `/openid/v1/jwks`. The shared control plane's own kube-apiserver signs
//! with `sa.key` the classic way; the migration test adopts that key.
//!
//! The tests run one at a time (kube-apiservers are heavy on a small machine).

#[path = "common/local_kms.rs"]
mod local_kms;
#[path = "common/softhsm.rs"]
mod softhsm;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwks_operator::signer::pb::external_jwt_signer_client::ExternalJwtSignerClient;
use jwks_operator::signer::pb::{MetadataRequest, SignJwtRequest};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use support::controlplane::{self, ControlPlane, DumpOnFailure, SaSigning, apiserver_argv};
use support::jwks::kids_of;
use support::operator::http_get;
use support::signer::{fetch_kids, signer_client};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SEC: Duration = Duration::from_secs(1);

// === processes ===

/// A child process killed (and reaped) when dropped; its output goes to `log`.
struct Proc {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Proc {
    fn spawn(name: &str, argv: &[String], log: PathBuf, env: &[(&str, &str)]) -> Proc {
        // Appended to: a restarted process keeps the earlier lines.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            child,
            log,
            name: name.to_owned(),
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {}", self.name);
    }

    fn tail(&self, lines: usize) -> String {
        format!(
            "---- {} ({})\n{}",
            self.name,
            self.log.display(),
            controlplane::log_tail(&self.log, lines)
        )
    }

    /// Stops it with SIGTERM and waits for the exit.
    fn stop(mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + 20 * SEC;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.tail(40));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === the signer ===

fn policy_yaml(name: &str, annotations: &str, spec: &str) -> String {
    format!(
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata:\n  name: {name}\n  namespace: kube-system\n  annotations: {{{annotations}}}\nspec:\n{spec}"
    )
}

/// A signer process and what it serves.
struct Signer {
    proc: Proc,
    socket: PathBuf,
}

impl Signer {
    /// Starts `jwks-operator signer` and waits until its socket answers.
    async fn start(
        work: &Path,
        name: &str,
        policies: &Path,
        state: &Path,
        extra: &[&str],
    ) -> Signer {
        Self::start_env(work, name, policies, state, extra, &[]).await
    }

    /// [`Signer::start`] with extra environment variables.
    async fn start_env(
        work: &Path,
        name: &str,
        policies: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Signer {
        let socket = work.join(format!("{name}.sock"));
        let mut argv: Vec<String> = vec![
            env!("CARGO_BIN_EXE_jwks-operator").into(),
            "signer".into(),
            "--policies".into(),
            policies.display().to_string(),
            "--policy".into(),
            "kube-system/sa".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--socket".into(),
            socket.display().to_string(),
            "--poll-interval".into(),
            "200ms".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(
            &format!("signer {name}"),
            &argv,
            work.join(format!("{name}.log")),
            &[&[("RUST_LOG", "info")], env].concat(),
        );
        let signer = Signer { proc, socket };
        let deadline = Instant::now() + 30 * SEC;
        loop {
            if signer.socket.exists() && fetch_kids(&signer.socket).await.is_ok() {
                return signer;
            }
            assert!(
                Instant::now() < deadline,
                "signer {name} did not serve within 30s\n{}",
                signer.proc.tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn client(&self) -> ExternalJwtSignerClient<tonic::transport::Channel> {
        signer_client(&self.socket).await.unwrap()
    }

    /// The kids FetchKeys lists now.
    async fn fetch(&self) -> Vec<String> {
        fetch_kids(&self.socket).await.unwrap()
    }
}

/// The policy's stored state: `active.kid` and the public set.
fn active_kid(state: &Path) -> String {
    std::fs::read_to_string(state.join("kube-system/sa/active.kid"))
        .unwrap()
        .trim()
        .to_owned()
}

fn public_set(state: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(state.join("kube-system/sa/jwks.public.json")).unwrap())
        .unwrap()
}

// === kube-apiserver ===

/// A kube-apiserver on the shared etcd, signing through `socket`.
struct ApiServer {
    proc: Proc,
    url: String,
    kubeconfig: PathBuf,
    client: kube::Client,
}

impl ApiServer {
    async fn start(cp: &ControlPlane, work: &Path, name: &str, socket: &Path) -> ApiServer {
        let port = controlplane::free_port();
        let argv = apiserver_argv(
            &cp.bin,
            &cp.dir,
            &cp.etcd_url,
            port,
            &cp.api_url,
            &SaSigning::Endpoint(socket.to_owned()),
        );
        let proc = Proc::spawn(
            &format!("kube-apiserver {name}"),
            &argv,
            work.join(format!("apiserver-{name}.log")),
            &[],
        );
        let url = format!("https://127.0.0.1:{port}");
        let kubeconfig = work.join(format!("kubeconfig-{name}"));
        std::fs::write(
            &kubeconfig,
            controlplane::kubeconfig_yaml(&url, &cp.dir.join("ca.crt"), &cp.admin_token),
        )
        .unwrap();
        let client = client_for(&kubeconfig).await;
        let mut api = ApiServer {
            proc,
            url,
            kubeconfig,
            client,
        };
        let deadline = Instant::now() + 150 * SEC;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
            if let Ok(body) = api.client.request_text(req).await
                && body.trim() == "ok"
            {
                return api;
            }
            if let Some(status) = api.proc.child.try_wait().unwrap() {
                panic!(
                    "kube-apiserver {name} exited ({status})\n{}",
                    api.proc.tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver {name} not ready in 150s\n{}",
                api.proc.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A service-account token from the TokenRequest API (`None` when the
    /// API refuses).
    async fn try_token(&self, ns: &str, sa: &str, seconds: i64) -> Option<String> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let request = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds}
        });
        let response: Value = accounts
            .create_subresource("token", sa, &PostParams::default(), &request)
            .await
            .ok()?;
        response["status"]["token"].as_str().map(str::to_owned)
    }

    async fn token(&self, ns: &str, sa: &str) -> String {
        self.try_token(ns, sa, 3600)
            .await
            .unwrap_or_else(|| panic!("TokenRequest via {} failed", self.url))
    }

    /// `kubectl create token` against this apiserver.
    fn kubectl_token(&self, cp: &ControlPlane, ns: &str, sa: &str, duration: &str) -> String {
        self.try_kubectl_token(cp, ns, sa, duration)
            .unwrap_or_else(|e| panic!("kubectl create token: {e}"))
    }

    /// `kubectl create token`, giving up after 20 s (kube-apiserver waits
    /// for its signer, and a client that retries would wait forever).
    fn try_kubectl_token(
        &self,
        cp: &ControlPlane,
        ns: &str,
        sa: &str,
        duration: &str,
    ) -> Result<String, String> {
        let out = Command::new(cp.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout", "20s"])
            .args(["create", "token", sa, "-n", ns, "--duration", duration])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Who the token authenticates as through this apiserver (TokenReview),
    /// `None` when it does not.
    async fn review(&self, token: &str) -> Option<String> {
        let review: TokenReview = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token}
        }))
        .unwrap();
        let r = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .unwrap();
        let status = r.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return None;
        }
        status.user.and_then(|u| u.username)
    }

    /// The kids of `/openid/v1/jwks`.
    async fn jwks(&self) -> Value {
        let req = http::Request::get("/openid/v1/jwks")
            .body(Vec::new())
            .unwrap();
        serde_json::from_str(&self.client.request_text(req).await.unwrap()).unwrap()
    }

    async fn jwks_kids(&self) -> Vec<String> {
        kids(&self.jwks().await)
    }
}

async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids = kids_of(jwks);
    kids.sort();
    kids
}

/// The JSON header and claims of a compact JWT.
fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap()
    };
    (next(), next())
}

fn kid_of(token: &str) -> String {
    decode(token).0["kid"].as_str().unwrap().to_owned()
}

/// Polls `f` every 250 ms until it returns `Some`, or panics after `timeout`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn create_sa(client: &kube::Client, ns: &str, name: &str) {
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
}

struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        // Socket paths must stay short (108 bytes): a short temp dir.
        let dir = tempfile::Builder::new()
            .prefix("sgn")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        Work { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn policies(&self) -> PathBuf {
        self.path().join("policies")
    }
    fn state(&self) -> PathBuf {
        self.path().join("state")
    }
    fn write_policy(&self, text: &str) {
        let tmp = self.policies().join(".p.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.policies().join("sa.yaml")).unwrap();
    }

    /// A signer named `name` on this work dir's policies and state, with its
    /// metrics on a free loopback port: the signer and that address.
    async fn start_with_metrics(&self, name: &str) -> (Signer, String) {
        let addr = format!("127.0.0.1:{}", controlplane::free_port());
        let signer = Signer::start(
            self.path(),
            name,
            &self.policies(),
            &self.state(),
            &["--metrics-addr", &addr],
        )
        .await;
        (signer, addr)
    }
}

const SPEC: &str = "  algorithm: ES256\n  rotationInterval: 24h\n  publishAhead: 40s\n  maxTokenTTL: 1h\n  clockSkew: 0s\n";

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_signed_by_the_active_key_capped_and_served_in_openid_jwks() {
    let _serial = SERIAL.lock().await;
    let cp = controlplane::control_plane().await;
    let _dump = DumpOnFailure(cp);
    let work = Work::new();
    work.write_policy(&policy_yaml("sa", "", SPEC));
    let jwks_addr = format!("127.0.0.1:{}", controlplane::free_port());
    let signer = Signer::start(
        work.path(),
        "a",
        &work.policies(),
        &work.state(),
        &["--jwks-addr", &jwks_addr],
    )
    .await;
    let api = ApiServer::start(cp, work.path(), "a", &signer.socket).await;
    let ns = cp.namespace(&api.client, "signer").await;
    create_sa(&api.client, &ns, "demo").await;

    // kubectl create token: signed by the active key, authenticates.
    let token = api.kubectl_token(cp, &ns, "demo", "10m");
    let (header, claims) = decode(&token);
    let active = active_kid(&work.state());
    assert_eq!(header["kid"], active.as_str());
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(
        api.review(&token).await.as_deref(),
        Some(format!("system:serviceaccount:{ns}:demo").as_str())
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );

    // A --duration beyond maxTokenTTL is capped to it (Metadata said 1h).
    let meta = signer
        .client()
        .await
        .metadata(MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.max_token_expiration_seconds, 3600);
    let long = api.kubectl_token(cp, &ns, "demo", "48h");
    let (_, claims) = decode(&long);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert!(api.review(&long).await.is_some());

    // /openid/v1/jwks is our public set, key for key.
    let served = api.jwks().await;
    let ours = public_set(&work.state());
    assert_eq!(kids(&served), kids(&ours));
    for key in ours["keys"].as_array().unwrap() {
        let theirs = served["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == key["kid"])
            .unwrap();
        for member in ["kty", "crv", "x", "y"] {
            assert_eq!(theirs[member], key[member], "{member}");
        }
    }

    // The optional JWKS listener serves the same set.
    for path in [
        "/kube-system/sa/.well-known/jwks.json",
        "/.well-known/jwks.json",
    ] {
        let (status, body) = http_get(&format!("http://{jwks_addr}{path}"));
        assert_eq!(status, 200, "{path}");
        assert_eq!(kids(&serde_json::from_str(&body).unwrap()), kids(&ours));
    }

    // A foreign key under our kid is refused.
    let mut rng = rand::rng();
    let foreign = jwks_operator::keys::SigningKey::generate(
        jwks_operator::keys::KeyParams::new(jwks_operator::keys::Algorithm::ES256),
        &mut rng,
    )
    .unwrap();
    let forged_header = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"alg": "ES256", "kid": active, "typ": "JWT"})).unwrap());
    let payload = token.split('.').nth(1).unwrap();
    let signature = foreign
        .sign(format!("{forged_header}.{payload}").as_bytes())
        .unwrap();
    let forged = format!(
        "{forged_header}.{payload}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_eq!(
        api.review(&forged).await,
        None,
        "a forged token authenticated"
    );
    assert!(
        api.review(&token).await.is_some(),
        "the genuine one still does"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_prepublishes_keeps_old_tokens_until_pruned_and_revocation_is_immediate() {
    let _serial = SERIAL.lock().await;
    let cp = controlplane::control_plane().await;
    let _dump = DumpOnFailure(cp);
    let work = Work::new();
    // publishAhead 60s: kube-apiserver refreshes every 30s, so the next key
    // is seen at least 30s before it signs.
    let spec = SPEC.replace("publishAhead: 40s", "publishAhead: 60s");
    work.write_policy(&policy_yaml("sa", "", &spec));
    let signer = Signer::start(work.path(), "r", &work.policies(), &work.state(), &[]).await;
    let api = ApiServer::start(cp, work.path(), "r", &signer.socket).await;
    let ns = cp.namespace(&api.client, "rotate").await;
    create_sa(&api.client, &ns, "demo").await;
    let k1 = active_kid(&work.state());
    let t1 = api.token(&ns, "demo").await;
    assert_eq!(kid_of(&t1), k1);

    // Manual rotation: the next key shows in /openid/v1/jwks while the old
    // one still signs.
    work.write_policy(&policy_yaml(
        "sa",
        "jwks.dev/rotate-requested-at: \"1\"",
        &spec,
    ));
    signer.proc.signal("HUP");
    let requested = Instant::now();
    let k2 = eventually("the next key in FetchKeys", 10 * SEC, || async {
        let kids = signer.fetch().await;
        kids.into_iter().find(|k| *k != k1)
    })
    .await;
    eventually("the next key in /openid/v1/jwks", 50 * SEC, || async {
        api.jwks_kids().await.contains(&k2).then_some(())
    })
    .await;
    assert!(
        requested.elapsed() < 60 * SEC,
        "the machine was too slow to observe pre-publication"
    );
    assert_eq!(
        kid_of(&api.token(&ns, "demo").await),
        k1,
        "a pending key signed"
    );

    // Then it signs, and the old token keeps authenticating.
    let t2 = eventually("tokens signed by the next key", 90 * SEC, || async {
        let t = api.token(&ns, "demo").await;
        (kid_of(&t) == k2).then_some(t)
    })
    .await;
    assert!(
        requested.elapsed() >= 40 * SEC,
        "signed before publishAhead"
    );
    assert!(api.review(&t1).await.is_some());
    assert!(api.review(&t2).await.is_some());

    // The signer goes down: kube-apiserver keeps verifying with the keys it
    // has, and cannot mint.
    signer.proc.stop();
    assert!(api.review(&t1).await.is_some());
    let refused = api.try_kubectl_token(cp, &ns, "demo", "1h");
    assert!(refused.is_err(), "minted without a signer: {refused:?}");

    // Time passes for k1 (its retention is moved into the past while the
    // signer is down); the restarted signer prunes it, and once
    // kube-apiserver refreshes, tokens it signed fail.
    let lifecycle = work.state().join("kube-system/sa/lifecycle.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&lifecycle).unwrap()).unwrap();
    let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(3);
    for key in doc["keys"].as_array_mut().unwrap() {
        if key["kid"] == k1.as_str() {
            assert_eq!(key["state"], "Retired");
            key["retiredAt"] = json!(long_ago.to_string());
            key["pruneAfter"] = json!(long_ago.to_string());
        }
    }
    std::fs::write(&lifecycle, serde_json::to_vec(&doc).unwrap()).unwrap();
    let signer = Signer::start(work.path(), "r", &work.policies(), &work.state(), &[]).await;
    assert!(!signer.fetch().await.contains(&k1), "k1 was not pruned");
    // kube-apiserver reconnects (gRPC backoff) without a restart.
    eventually("minting resumes", 150 * SEC, || async {
        api.try_kubectl_token(cp, &ns, "demo", "1h").ok()
    })
    .await;
    eventually("tokens of the pruned key fail", 50 * SEC, || async {
        api.review(&t1).await.is_none().then_some(())
    })
    .await;
    assert!(api.review(&t2).await.is_some());

    // Revocation of the active key: gone from FetchKeys at once, a fresh key
    // signs, and its tokens stop authenticating after the next refresh.
    let spec = format!("{spec}  revokedKeyIDs: [\"{k2}\"]\n");
    work.write_policy(&policy_yaml(
        "sa",
        "jwks.dev/rotate-requested-at: \"1\"",
        &spec,
    ));
    signer.proc.signal("HUP");
    eventually("the revoked key gone from FetchKeys", 5 * SEC, || async {
        (!signer.fetch().await.contains(&k2)).then_some(())
    })
    .await;
    let t3 = api.token(&ns, "demo").await;
    assert_ne!(kid_of(&t3), k2);
    assert!(api.review(&t3).await.is_some());
    eventually("tokens of the revoked key fail", 50 * SEC, || async {
        api.review(&t2).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apiservers_each_with_its_own_signer_share_one_key_set_across_a_rotation() {
    let _serial = SERIAL.lock().await;
    let cp = controlplane::control_plane().await;
    let _dump = DumpOnFailure(cp);
    let work = Work::new();
    let spec = "  algorithm: RS256\n  rotationInterval: 24h\n  publishAhead: 20s\n  maxTokenTTL: 1h\n  clockSkew: 0s\n";
    work.write_policy(&policy_yaml("sa", "", spec));
    // Both signers use the same state directory; "a" starts first and holds its lock.
    let (a, ma) = work.start_with_metrics("a").await;
    let (b, mb) = work.start_with_metrics("b").await;
    let leader = |addr: &str| metric_on(addr, "jwks_operator_signer_leader ");
    assert_eq!(leader(&ma).as_deref(), Some("1"));
    assert_eq!(leader(&mb).as_deref(), Some("0"));
    assert_eq!(a.fetch().await, b.fetch().await);
    let x = ApiServer::start(cp, work.path(), "x", &a.socket).await;
    let y = ApiServer::start(cp, work.path(), "y", &b.socket).await;
    let ns = cp.namespace(&x.client, "ha").await;
    create_sa(&x.client, &ns, "demo").await;
    let user = format!("system:serviceaccount:{ns}:demo");

    let k1 = active_kid(&work.state());
    let tx = x.token(&ns, "demo").await;
    let ty = y.token(&ns, "demo").await;
    assert_eq!(kid_of(&tx), k1);
    assert_eq!(kid_of(&ty), k1);
    assert_eq!(y.review(&tx).await.as_deref(), Some(user.as_str()));
    assert_eq!(x.review(&ty).await.as_deref(), Some(user.as_str()));

    // Rotate through the leader; the follower serves the new set too.
    work.write_policy(&policy_yaml(
        "sa",
        "jwks.dev/rotate-requested-at: \"1\"",
        spec,
    ));
    a.proc.signal("HUP");
    let k2 = eventually("the follower signs with the next key", 90 * SEC, || async {
        let t = y.token(&ns, "demo").await;
        let kid = kid_of(&t);
        (kid != k1).then_some((kid, t))
    })
    .await;
    let (k2, ty2) = k2;
    assert_eq!(a.fetch().await, b.fetch().await);
    let tx2 = x.token(&ns, "demo").await;
    assert_eq!(kid_of(&tx2), k2);
    // Every token, old and new, authenticates through either apiserver.
    for t in [&tx, &ty, &tx2, &ty2] {
        assert_eq!(x.review(t).await.as_deref(), Some(user.as_str()));
        assert_eq!(y.review(t).await.as_deref(), Some(user.as_str()));
    }

    // The leader goes away: the follower takes over rotation.
    a.proc.stop();
    eventually("the follower takes the lock", 10 * SEC, || async {
        (leader(&mb).as_deref() == Some("1")).then_some(())
    })
    .await;
    let (_, text) = http_get(&format!("http://{mb}/metrics"));
    assert!(
        text.contains(r#"jwks_operator_signer_requests_total{method="Sign",code="OK"}"#),
        "{text}"
    );
    work.write_policy(&policy_yaml(
        "sa",
        "jwks.dev/rotate-requested-at: \"2\"",
        spec,
    ));
    b.proc.signal("HUP");
    let (k3, ty3) = eventually("the new leader rotates", 90 * SEC, || async {
        let t = y.token(&ns, "demo").await;
        let kid = kid_of(&t);
        (kid != k1 && kid != k2).then_some((kid, t))
    })
    .await;
    assert!(b.fetch().await.contains(&k3));
    assert_eq!(y.review(&ty3).await.as_deref(), Some(user.as_str()));
    assert_eq!(y.review(&tx).await.as_deref(), Some(user.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_issued_with_sa_key_keep_authenticating_after_the_switch_to_the_signer() {
    let _serial = SERIAL.lock().await;
    let cp = controlplane::control_plane().await;
    let _dump = DumpOnFailure(cp);
    let work = Work::new();
    // Before: the control plane's own kube-apiserver signs with sa.key.
    let admin = cp.admin_client().await;
    let ns = cp.namespace(&admin, "migrate").await;
    create_sa(&admin, &ns, "demo").await;
    let before = cp.service_account_token(&admin, &ns, "demo").await;
    let legacy_kid = kid_of(&before);

    // After: a kube-apiserver with the same issuer whose signer adopted sa.key.
    work.write_policy(&policy_yaml(
        "sa",
        "",
        "  algorithm: RS256\n  maxTokenTTL: 1h\n",
    ));
    let sa_key = cp.dir.join("sa.key");
    let signer = Signer::start(
        work.path(),
        "m",
        &work.policies(),
        &work.state(),
        &["--adopt-key", sa_key.to_str().unwrap()],
    )
    .await;
    assert_eq!(signer.fetch().await, vec![legacy_kid.clone()]);
    let api = ApiServer::start(cp, work.path(), "m", &signer.socket).await;
    assert_eq!(
        api.review(&before).await.as_deref(),
        Some(format!("system:serviceaccount:{ns}:demo").as_str()),
        "a token issued before the switch"
    );
    let after = api.token(&ns, "demo").await;
    assert_eq!(
        kid_of(&after),
        legacy_kid,
        "the adopted key signs until the first rotation"
    );
    // And the old kube-apiserver (still on sa.pub) accepts the new token:
    // nodes can be switched one at a time.
    let old = cp.admin_client().await;
    let review: TokenReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": after}
    }))
    .unwrap();
    let r = Api::<TokenReview>::all(old)
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    assert_eq!(r.status.unwrap().authenticated, Some(true));
}

#[test]
fn policies_kube_cannot_use_are_refused_at_start() {
    let work = Work::new();
    // Runs the signer for `policy` until it exits (it should at once).
    let start_signer_for = |policy: &str| {
        Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
            .args(["signer", "--policy", policy, "--policies"])
            .arg(work.policies())
            .arg("--state-dir")
            .arg(work.state())
            .arg("--socket")
            .arg(work.path().join("x.sock"))
            .output()
            .unwrap()
    };
    for (spec, expect) in [
        ("  algorithm: PS256\n", "PS256"),
        ("  algorithm: EdDSA\n", "EdDSA"),
        ("  algorithm: RS512\n", "RS512"),
        ("  algorithm: ES256\n  maxTokenTTL: 5m\n", "600s"),
    ] {
        work.write_policy(&policy_yaml("sa", "", spec));
        let out = start_signer_for("kube-system/sa");
        assert!(!out.status.success(), "{spec}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(expect) && err.contains("kube-apiserver"),
            "{err}"
        );
        assert!(!work.path().join("x.sock").exists());
    }
    // A policy that is not in the files is named.
    let out = start_signer_for("kube-system/other");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kube-system/other"));
}

/// Claims with the given lifetime, base64url as kube-apiserver sends them.
fn claims_lasting(seconds: i64) -> String {
    let iat = jiff::Timestamp::now().as_second();
    URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(
            &json!({"sub": "system:serviceaccount:default:x", "iat": iat, "exp": iat + seconds}),
        )
        .unwrap(),
    )
}

async fn signs(signer: &Signer, seconds: i64) -> bool {
    signer
        .client()
        .await
        .sign(SignJwtRequest {
            claims: claims_lasting(seconds),
        })
        .await
        .is_ok()
}

async fn announced(signer: &Signer) -> i64 {
    signer
        .client()
        .await
        .metadata(MetadataRequest {})
        .await
        .unwrap()
        .into_inner()
        .max_token_expiration_seconds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_max_token_ttl_keeps_the_announced_bound_for_sign_and_retention() {
    let work = Work::new();
    let spec = |ttl: &str| {
        format!(
            "  algorithm: ES256\n  rotationInterval: 24h\n  publishAhead: 1s\n  maxTokenTTL: {ttl}\n  clockSkew: 0s\n"
        )
    };
    work.write_policy(&policy_yaml("sa", "", &spec("2h")));
    let signer = Signer::start(work.path(), "t", &work.policies(), &work.state(), &[]).await;
    assert_eq!(announced(&signer).await, 7200);
    assert!(signs(&signer, 7200).await);
    assert!(!signs(&signer, 7201).await);

    // Lowered while kube-apiservers that were told 2h may still run.
    work.write_policy(&policy_yaml("sa", "", &spec("1h")));
    signer.proc.signal("HUP");
    eventually("the lowered TTL announced", 10 * SEC, || async {
        (announced(&signer).await == 3600).then_some(())
    })
    .await;
    assert!(
        signs(&signer, 7200).await,
        "a token as long as once announced"
    );
    assert!(!signs(&signer, 7201).await);

    // The bound survives a restart, and a key that starts signing now is
    // retained for 2h after it retires, not 1h.
    signer.proc.stop();
    work.write_policy(&policy_yaml(
        "sa",
        "jwks.dev/rotate-requested-at: \"1\"",
        &spec("1h"),
    ));
    let signer = Signer::start(work.path(), "t", &work.policies(), &work.state(), &[]).await;
    assert_eq!(announced(&signer).await, 3600);
    assert!(signs(&signer, 7200).await);
    let lifecycle = work.state().join("kube-system/sa/lifecycle.json");
    let ttl = eventually("the requested key signs", 20 * SEC, || async {
        let doc: Value = serde_json::from_slice(&std::fs::read(&lifecycle).unwrap()).unwrap();
        let keys = doc["keys"].as_array().unwrap().clone();
        (keys.len() == 2 && keys[0]["state"] == "Active").then(|| keys[0]["maxTokenTTL"].clone())
    })
    .await;
    assert_eq!(ttl, "2h");
    let record: Value = serde_json::from_slice(
        &std::fs::read(work.state().join(".signer/kube-system/sa.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["maxAnnouncedTokenTTLSeconds"], 7200);
}

/// SPEC invariant 9 on the signer: a kid the policy file revokes leaves
/// FetchKeys and stops signing on the leader and on a follower at SIGHUP,
/// although the write that would record it fails (the state's
/// `lifecycle.json` is damaged, and a damaged state is never overwritten:
/// as root, a read-only mode would not stop the write, this does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_the_state_cannot_record_leaves_fetch_keys_and_sign_at_once() {
    let work = Work::new();
    work.write_policy(&policy_yaml("sa", "", SPEC));
    let leader = Signer::start(work.path(), "lead", &work.policies(), &work.state(), &[]).await;
    let follower = Signer::start(work.path(), "follow", &work.policies(), &work.state(), &[]).await;
    // A pre-published key too, so one is left to list.
    work.write_policy(&policy_yaml(
        "sa",
        "jwks.dev/rotate-requested-at: \"1\"",
        SPEC,
    ));
    leader.proc.signal("HUP");
    let k1 = active_kid(&work.state());
    let k2 = eventually("the next key on both signers", 10 * SEC, || async {
        let (a, b) = (leader.fetch().await, follower.fetch().await);
        (a.len() == 2 && b.len() == 2).then(|| a.into_iter().find(|k| *k != k1).unwrap())
    })
    .await;
    assert!(signs(&leader, 600).await && signs(&follower, 600).await);

    let dir = work.state().join("kube-system/sa");
    std::fs::write(dir.join("lifecycle.json"), b"garbage").unwrap();
    let damaged = std::fs::read(dir.join("jwks.json")).unwrap();
    let spec = format!("{SPEC}  revokedKeyIDs: [{k1}]\n");
    work.write_policy(&policy_yaml(
        "sa",
        "jwks.dev/rotate-requested-at: \"1\"",
        &spec,
    ));
    leader.proc.signal("HUP");
    follower.proc.signal("HUP");
    for (name, signer) in [("leader", &leader), ("follower", &follower)] {
        eventually(
            &format!("{name}: the revoked kid leaves FetchKeys"),
            5 * SEC,
            || async { (signer.fetch().await == [k2.clone()]).then_some(()) },
        )
        .await;
        let e = signer
            .client()
            .await
            .sign(SignJwtRequest {
                claims: claims_lasting(600),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{name}: {e:?}");
        assert!(e.message().contains(&k1), "{name}: {}", e.message());
    }
    // The write really failed: the stored set still holds the kid, and the
    // leader says the revocation is not recorded.
    assert_eq!(std::fs::read(dir.join("jwks.json")).unwrap(), damaged);
    assert_eq!(
        std::fs::read(dir.join("lifecycle.json")).unwrap(),
        b"garbage"
    );
    let log = std::fs::read_to_string(&leader.proc.log).unwrap();
    assert!(
        log.contains(&format!("the revocation of {k1} is not recorded")),
        "{}",
        leader.proc.tail(20)
    );
}

/// The value of the metric line starting with `prefix` on `addr`'s /metrics.
fn metric_on(addr: &str, prefix: &str) -> Option<String> {
    let (status, text) = http_get(&format!("http://{addr}/metrics"));
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().to_owned())
}

/// SPEC invariant 10 for the signer (no kube-apiserver needed): a state
/// directory lost while a signer runs is written back from what it holds
/// (the leader's set, or the set a follower served when it takes over),
/// with a warning and a metric; only when no signer holds it (lost while
/// none ran) is the set re-keyed, and then loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_is_written_back_from_memory_and_a_re_key_is_said_loudly() {
    let _serial = SERIAL.lock().await;
    let work = Work::new();
    work.write_policy(&policy_yaml("sa", "", SPEC));
    let (a, ma) = work.start_with_metrics("a").await;
    let (b, mb) = work.start_with_metrics("b").await;
    let dir = work.state().join("kube-system/sa");
    let active = active_kid(&work.state());
    let kids = a.fetch().await;
    let private_set = std::fs::read(dir.join("jwks.json")).unwrap();
    let restored = r#"jwks_operator_key_set_lost_total{namespace="kube-system",name="sa",outcome="restored"} "#;
    let recreated = r#"jwks_operator_key_set_lost_total{namespace="kube-system",name="sa",outcome="recreated"} "#;
    let written_back = || {
        let dir = dir.clone();
        async move {
            std::fs::read(dir.join("lifecycle.json"))
                .is_ok()
                .then(|| std::fs::read(dir.join("jwks.json")).ok())
                .flatten()
        }
    };

    // Deletes the state and waits for a signer to write the same set back:
    // the same private keys, the same signer, counted as restored on `metrics`.
    let lose_and_see_written_back = |who: &'static str, metrics: String| {
        let (dir, work_state, private_set, active) = (
            dir.clone(),
            work.state(),
            private_set.clone(),
            active.clone(),
        );
        async move {
            std::fs::remove_dir_all(&dir).unwrap();
            // Deadlines are generous: a slow write-back is not what this
            // checks (other keys, or none, would be); one run under load
            // took over 10 s.
            let again = eventually(who, 30 * SEC, written_back).await;
            // Compared, never printed: the private key set.
            assert!(
                again == private_set,
                "the state was refilled with other keys"
            );
            assert_eq!(active_kid(&work_state), active);
            assert_eq!(metric_on(&metrics, restored).as_deref(), Some("1"));
        }
    };

    // 1. Deleted under the leader: it writes back the set it holds.
    lose_and_see_written_back("the leader writes the set back", ma.clone()).await;
    assert!(
        a.proc.tail(200).contains("KeySetRestored"),
        "{}",
        a.proc.tail(40)
    );
    assert_eq!(a.fetch().await, kids);
    assert_eq!(b.fetch().await, kids);

    // 2. The leader exits and the state is deleted: the follower takes over
    // and writes back the set it served.
    a.proc.stop();
    lose_and_see_written_back("the new leader writes the set back", mb.clone()).await;
    assert_eq!(
        metric_on(&mb, "jwks_operator_signer_leader ").as_deref(),
        Some("1")
    );
    assert_eq!(b.fetch().await, kids);

    // 3. Lost while no signer runs: nothing holds the keys, so a fresh set
    // is generated, and said so (a WARN line and the metric).
    b.proc.stop();
    std::fs::remove_dir_all(&dir).unwrap();
    let (c, mc) = work.start_with_metrics("c").await;
    assert_ne!(active_kid(&work.state()), active);
    let log = c.proc.tail(200);
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("KeySetRecreated")),
        "{log}"
    );
    assert_eq!(metric_on(&mc, recreated).as_deref(), Some("1"));
    assert_eq!(metric_on(&mc, restored), None);
}

/// The service-account signer with its keys in a PKCS#11 token (SoftHSM,
/// tests/providers/install.sh): kube-apiserver issues and authenticates
/// tokens signed in the token, across a rotation; the state directory holds
/// no private key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pkcs11_signer_keeps_the_cluster_keys_in_the_token_across_a_rotation() {
    let _serial = SERIAL.lock().await;
    let cp = controlplane::control_plane().await;
    let _dump = DumpOnFailure(cp);
    let work = Work::new();
    let hsm = softhsm::SoftHsm::new_dir();
    hsm.init_token_with_util("cluster-sa", "7777");
    let pin = work.path().join("pin");
    std::fs::write(&pin, "7777\n").unwrap();
    // publishAhead 60s: kube-apiserver refreshes every 30s.
    let spec = format!(
        "{}  keyProvider: {{type: PKCS11, module: {}, tokenLabel: cluster-sa, pinFile: {}}}\n",
        SPEC.replace("publishAhead: 40s", "publishAhead: 60s"),
        softhsm::MODULE,
        pin.display()
    );
    work.write_policy(&policy_yaml("sa", "", &spec));
    let conf = hsm.conf().display().to_string();
    let env = [("SOFTHSM2_CONF", conf.as_str())];
    let signer =
        Signer::start_env(work.path(), "h", &work.policies(), &work.state(), &[], &env).await;
    let api = ApiServer::start(cp, work.path(), "h", &signer.socket).await;
    let ns = cp.namespace(&api.client, "pkcs11").await;
    create_sa(&api.client, &ns, "demo").await;

    let k1 = active_kid(&work.state());
    let t1 = api.token(&ns, "demo").await;
    assert_eq!(kid_of(&t1), k1);
    assert_eq!(
        api.review(&t1).await.as_deref(),
        Some(format!("system:serviceaccount:{ns}:demo").as_str())
    );
    let dir = work.state().join("kube-system/sa");
    assert!(!dir.join("active.pem").exists(), "no private key file");
    let lifecycle = std::fs::read_to_string(dir.join("lifecycle.json")).unwrap();
    assert!(
        lifecycle.contains("\"keyRef\": \"pkcs11:token=cluster-sa;id=%"),
        "{lifecycle}"
    );
    for name in ["jwks.json", "jwks.public.json", "lifecycle.json"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(!text.contains("\"d\""), "{name} holds a private member");
    }

    // A rotation: the next key is generated in the token, published, then signs.
    work.write_policy(&policy_yaml(
        "sa",
        "jwks.dev/rotate-requested-at: \"1\"",
        &spec,
    ));
    signer.proc.signal("HUP");
    let k2 = eventually("the next key in FetchKeys", 10 * SEC, || async {
        signer.fetch().await.into_iter().find(|k| *k != k1)
    })
    .await;
    let t2 = eventually("tokens signed by the next key", 150 * SEC, || async {
        let t = api.token(&ns, "demo").await;
        (kid_of(&t) == k2).then_some(t)
    })
    .await;
    assert!(
        api.review(&t2).await.is_some(),
        "a token of the new key authenticates"
    );
    assert!(
        api.review(&t1).await.is_some(),
        "the old key's token still authenticates"
    );
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", hsm.conf())
        .args([
            "--module",
            softhsm::MODULE,
            "--token-label",
            "cluster-sa",
            "--login",
            "--pin",
            "7777",
            "--list-objects",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&k1) && listing.contains(&k2), "{listing}");
}

/// The service-account signer with its keys in AWS KMS (local-kms,
/// tests/providers/install.sh): kube-apiserver issues a token signed in KMS
/// and authenticates it; the state directory holds the key's ARN, no
/// private key and no credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_signer_signs_the_cluster_tokens_in_kms() {
    let _serial = SERIAL.lock().await;
    let cp = controlplane::control_plane().await;
    let _dump = DumpOnFailure(cp);
    let work = Work::new();
    let kms = local_kms::LocalKms::start();
    let creds = work.path().join("aws-credentials");
    std::fs::write(&creds, local_kms::credentials_env()).unwrap();
    let spec = format!(
        "{SPEC}  keyProvider: {{type: AWSKMS, region: {}, endpoint: '{}', credentialsFile: {}}}\n",
        local_kms::REGION,
        kms.endpoint(),
        creds.display()
    );
    work.write_policy(&policy_yaml("sa", "", &spec));
    let signer =
        Signer::start_env(work.path(), "h", &work.policies(), &work.state(), &[], &[]).await;
    let api = ApiServer::start(cp, work.path(), "h", &signer.socket).await;
    let ns = cp.namespace(&api.client, "kms").await;
    create_sa(&api.client, &ns, "demo").await;

    let k1 = active_kid(&work.state());
    let t1 = api.token(&ns, "demo").await;
    assert_eq!(kid_of(&t1), k1);
    assert_eq!(
        api.review(&t1).await.as_deref(),
        Some(format!("system:serviceaccount:{ns}:demo").as_str())
    );
    let dir = work.state().join("kube-system/sa");
    assert!(!dir.join("active.pem").exists(), "no private key file");
    let lifecycle = std::fs::read_to_string(dir.join("lifecycle.json")).unwrap();
    assert!(
        lifecycle.contains(&format!(
            "\"keyRef\": \"arn:aws:kms:{}:{}:key/",
            local_kms::REGION,
            local_kms::ACCOUNT
        )),
        "{lifecycle}"
    );
    for name in ["jwks.json", "jwks.public.json", "lifecycle.json"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(!text.contains("\"d\""), "{name} holds a private member");
        assert!(
            !text.contains(local_kms::SECRET_ACCESS_KEY),
            "{name} holds the secret access key"
        );
    }
    assert!(!signer.proc.tail(500).contains(local_kms::SECRET_ACCESS_KEY));
}
