//! kube-apiserver as a consumer of this operator's issuers, with no proxy in
//! between: the real kube-apiserver, started with a structured
//! `AuthenticationConfiguration` whose two `jwt` issuers are policies the
//! operator serves over TLS itself, one in standalone mode and one in `run`
//! mode. Tokens minted here authenticate as the mapped user and groups
//! (checked with a SelfSubjectReview, what `kubectl auth whoami` sends),
//! before and after a manual and a scheduled rotation; tokens with a wrong
//! audience, expired ones, and ones signed by a foreign key under the active
//! kid are refused. Revoking a retired key with `rotateOnRevoke` makes a
//! fresh key sign; its first token forces kube-apiserver to refetch, after
//! which the revoked key's tokens are refused.
//!
//! The standalone operator is up before kube-apiserver starts (it fetches
//! the issuers' discovery documents at start); the `run` one, which needs
//! the API server, comes after, and kube-apiserver retries until it answers.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{https, tls_pair};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::controlplane::{ControlPlane, DumpOnFailure, Options, control_plane_with, free_port};

/// The audience kube-apiserver requires.
const AUDIENCE: &str = "kube-test";
/// The namespace of the `run`-mode policy (fixed: its issuer URL is in the
/// API server's configuration before the API server exists).
const RUN_NS: &str = "kubeauth";
/// rotationInterval of both policies: short, so a scheduled rotation
/// happens during the test.
const ROTATION: Duration = Duration::from_secs(40);
const POLICY_SPEC: &str = "algorithm: ES256\n  rotationInterval: 40s\n  publishAhead: 10s\n  maxTokenTTL: 60s\n  clockSkew: 5s\n  audiences: [kube-test]\n  tokenEndpoint: {enabled: true}";

/// A child process killed (and reaped) on drop.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} (last 40 lines)\n{}",
                self.log.display(),
                support::controlplane::log_tail(&self.log, 40)
            );
        }
    }
}

/// One issuer: a policy served over TLS by an operator process.
struct Issuer {
    /// `standalone` or `run`.
    mode: &'static str,
    ns: String,
    name: String,
    jwks: std::net::SocketAddr,
    token: std::net::SocketAddr,
    ca: String,
}

impl Issuer {
    /// The `apiauth` policy of namespace `ns`, served by a `mode` operator
    /// on free ports over TLS under the CA `ca`.
    fn on_free_ports(mode: &'static str, ns: &str, ca: &str) -> Issuer {
        Issuer {
            mode,
            ns: ns.into(),
            name: "apiauth".into(),
            jwks: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            token: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            ca: ca.into(),
        }
    }

    /// Starts `command` (the operator, in this issuer's mode) on this
    /// issuer's listeners with the TLS flags `tls_args`, logging to
    /// `<dir>/<mode>.log`.
    fn serve(&self, mut command: Command, tls_args: &[String], dir: &Path) -> Process {
        let log = dir.join(format!("{}.log", self.mode));
        let child = command
            .arg(format!("--jwks-addr={}", self.jwks))
            .arg(format!("--token-addr={}", self.token))
            .args(tls_args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Process { child, log }
    }

    fn url(&self) -> String {
        format!(
            "https://127.0.0.1:{}/{}/{}",
            self.jwks.port(),
            self.ns,
            self.name
        )
    }

    /// Listening (so its TLS pair is loaded) and ready.
    fn ready(&self) -> bool {
        std::net::TcpStream::connect(self.jwks).is_ok()
            && https(self.jwks, &self.ca, "GET", "/readyz", &[], None).status == 200
    }

    /// The policy's summary from `/policies`, once it has an active key.
    fn active_kid(&self) -> Option<String> {
        let all = https(self.jwks, &self.ca, "GET", "/policies", &[], None).json();
        all.as_array()?
            .iter()
            .find(|p| p["namespace"] == self.ns.as_str() && p["name"] == self.name.as_str())?
            ["activeKeyID"]
            .as_str()
            .map(str::to_owned)
    }

    /// Mints a token; `(token, kid)`.
    fn mint(&self, body: Value) -> (String, String) {
        let path = format!("/{}/{}/token", self.ns, self.name);
        let body = serde_json::to_vec(&body).unwrap();
        let r = https(
            self.token,
            &self.ca,
            "POST",
            &path,
            &[("content-type", "application/json")],
            Some(&body),
        );
        assert_eq!(r.status, 200, "{}: mint: {}", self.mode, r.text());
        let v = r.json();
        (
            v["token"].as_str().unwrap().to_owned(),
            v["kid"].as_str().unwrap().to_owned(),
        )
    }

    fn mint_alice(&self) -> (String, String) {
        self.mint(json!({"sub": "alice", "claims": {"groups": ["devs", "ops"]}}))
    }
}

fn policy_manifest(ns: &str, name: &str, issuer: &str, annotations: &str) -> String {
    format!(
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{{annotations}}}\nspec:\n  issuer: {issuer}\n  {POLICY_SPEC}\n"
    )
}

/// Sends SIGHUP: the standalone operator re-reads its policy files.
fn reload(pid: u32) {
    let ok = Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// `rotateOnRevoke` against kube-apiserver (standalone issuer): a token of a
/// retired key passes; the key is revoked with the option on; the fresh
/// key's first token has a kid kube-apiserver does not know, which makes it
/// refetch the set (once its cached copy expired, `max-age` 5 s), and from
/// then on the revoked key's tokens are refused. kube-apiserver also caches
/// each accepted token for 10 s, so the token refused at the end is one it
/// has not seen before.
async fn revoke_with_rotate_on_revoke(
    cp: &ControlPlane,
    issuer: &Issuer,
    policy_file: &Path,
    pid: u32,
) {
    let (old, old_kid) = issuer.mint_alice();
    let minted = Instant::now();
    let unseen = |n: &str| {
        let (token, kid) =
            issuer.mint(json!({"sub": "alice", "claims": {"groups": ["devs", "ops"], "n": n}}));
        assert_eq!(kid, old_kid);
        token
    };
    let (during, after) = (unseen("during"), unseen("after"));
    assert_alice_passes(cp, &old, "a token of the signer passes").await;
    // Retire old_kid by a manual rotation.
    let annotations = format!(
        "jwks.dev/rotate-requested-at: \"revoke-{}\"",
        jiff::Timestamp::now()
    );
    write(
        policy_file,
        &policy_manifest("default", "apiauth", &issuer.url(), &annotations),
    );
    reload(pid);
    let signer = until_rotated(issuer, &old_kid, Duration::from_secs(60), "retire").await;
    let (took, _) = until_accepted(cp, issuer, Duration::from_secs(60), "the new signer").await;
    eprintln!("[standalone] {signer} signs, accepted after {took:?}; {old_kid} retired");
    assert_alice_passes(cp, &old, "a retired key's token passes").await;

    // Revoke the retired key with rotateOnRevoke.
    let revoked = format!(
        "{}  revokedKeyIDs: [{old_kid}]\n  rotateOnRevoke: true\n",
        policy_manifest("default", "apiauth", &issuer.url(), &annotations)
    );
    write(policy_file, &revoked);
    reload(pid);
    let fresh = until_rotated(issuer, &signer, Duration::from_secs(10), "rotateOnRevoke").await;
    let revoked_at = Instant::now();
    let cached = whoami(cp, &during).await;
    eprintln!(
        "[standalone] right after the revocation kube-apiserver answers {:?} for a new token of the revoked key",
        cached.as_ref().map(|_| "accepted").map_err(|c| *c)
    );
    let (took, kid) = until_accepted(
        cp,
        issuer,
        Duration::from_secs(30),
        "the fresh key after rotateOnRevoke",
    )
    .await;
    assert_eq!(kid, fresh);
    assert_eq!(
        whoami(cp, &after).await,
        Err(401),
        "the revoked key's token after the fresh kid forced a refetch"
    );
    // Refused for its key, not its age (maxTokenTTL is 60 s).
    assert!(
        minted.elapsed() < Duration::from_secs(55),
        "the token expired meanwhile"
    );
    eprintln!(
        "[standalone] the fresh key {fresh} was accepted after {took:?}; the revoked key {old_kid} refused {:?} after the revocation",
        revoked_at.elapsed()
    );
}

/// kube-apiserver's answer to a SelfSubjectReview with `token`: the user
/// name and groups, or the HTTP status of the refusal.
async fn whoami(cp: &ControlPlane, token: &str) -> Result<(String, Vec<String>), u16> {
    let client = cp.client_with_token(token).await;
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let req = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review).unwrap())
        .unwrap();
    match client.request::<Value>(req).await {
        Ok(v) => {
            let user = &v["status"]["userInfo"];
            let groups = user["groups"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Ok((
                user["username"].as_str().unwrap_or_default().to_owned(),
                groups,
            ))
        }
        Err(kube::Error::Api(s)) => Err(s.code),
        Err(e) => panic!("SelfSubjectReview: {e}"),
    }
}

fn assert_alice(who: &(String, Vec<String>)) {
    assert_eq!(who.0, "jwks:alice");
    for g in ["jwks:devs", "jwks:ops", "system:authenticated"] {
        assert!(who.1.iter().any(|x| x == g), "{g} not in {:?}", who.1);
    }
}

/// Asserts that kube-apiserver accepts `token` (`what` names it if not) as
/// alice in her groups.
async fn assert_alice_passes(cp: &ControlPlane, token: &str, what: &str) {
    match whoami(cp, token).await {
        Ok(who) => assert_alice(&who),
        Err(code) => panic!("{what}: refused with HTTP {code}"),
    }
}

/// Mints a token for alice until kube-apiserver accepts one (it may still
/// be fetching the issuer's keys); returns how long that took and the kid.
async fn until_accepted(
    cp: &ControlPlane,
    issuer: &Issuer,
    limit: Duration,
    what: &str,
) -> (Duration, String) {
    let start = Instant::now();
    loop {
        let (token, kid) = issuer.mint_alice();
        match whoami(cp, &token).await {
            Ok(who) => {
                assert_alice(&who);
                return (start.elapsed(), kid);
            }
            Err(401) => {}
            Err(code) => panic!("{}: {what}: HTTP {code}", issuer.mode),
        }
        assert!(
            start.elapsed() < limit,
            "{}: {what}: kube-apiserver still refuses tokens of kid {kid} after {limit:?}",
            issuer.mode
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn until_rotated(issuer: &Issuer, from: &str, limit: Duration, what: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(kid) = issuer.active_kid().filter(|k| k != from) {
            return kid;
        }
        assert!(
            start.elapsed() < limit,
            "{}: {what}: still signing with {from} after {limit:?}",
            issuer.mode
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A token with every claim right, signed by a key of our own under `kid`.
fn foreign_token(issuer: &Issuer, kid: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let now = jiff::Timestamp::now().as_second();
    let claims = json!({
        "iss": issuer.url(), "aud": AUDIENCE, "sub": "mallory",
        "groups": ["system:masters"], "iat": now, "nbf": now, "exp": now + 60,
    });
    jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
}

/// Everything kube-apiserver must accept and refuse, for one issuer.
/// `rotate` asks for a manual rotation.
async fn exercise(cp: &ControlPlane, issuer: &Issuer, rotate: impl AsyncFnOnce()) {
    // At first kube-apiserver may still be fetching discovery and keys.
    let (took, k1) = until_accepted(cp, issuer, Duration::from_secs(120), "first token").await;
    eprintln!(
        "[{}] first token accepted after {took:?} (kid {k1})",
        issuer.mode
    );

    // Refused: another audience (the same token with the right one passes).
    let (wrong_aud, _) = issuer.mint(json!({"sub": "alice", "aud": "someone-else"}));
    assert_eq!(
        whoami(cp, &wrong_aud).await,
        Err(401),
        "{}: wrong audience",
        issuer.mode
    );
    let (right_aud, _) = issuer
        .mint(json!({"sub": "alice", "aud": AUDIENCE, "claims": {"groups": ["devs", "ops"]}}));
    assert_alice_passes(cp, &right_aud, "the right audience passes").await;

    // Refused: a foreign key under the active kid.
    let active = issuer.active_kid().unwrap();
    assert_eq!(
        whoami(cp, &foreign_token(issuer, &active)).await,
        Err(401),
        "{}: a foreign key under kid {active}",
        issuer.mode
    );

    // Refused: expired. Two tokens with the same 3 s life: the first passes
    // at once, the second (never seen before) fails once both expired.
    let short = json!({"sub": "alice", "ttl": 3, "claims": {"groups": ["devs", "ops"]}});
    let (early, _) = issuer.mint(short.clone());
    let (late, _) = issuer.mint(short);
    assert_alice_passes(cp, &early, "a fresh short-lived token passes").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        whoami(cp, &late).await,
        Err(401),
        "{}: expired",
        issuer.mode
    );

    // A manual rotation: the new key signs, and its tokens pass.
    let before = issuer.active_kid().unwrap();
    rotate().await;
    let (k2, kid) = until_rotated_and_accepted(
        cp,
        issuer,
        &before,
        Duration::from_secs(60),
        "manual rotation",
    )
    .await;
    assert_ne!(kid, before);

    // A scheduled rotation.
    let (_, kid) = until_rotated_and_accepted(
        cp,
        issuer,
        &kid,
        ROTATION + Duration::from_secs(30),
        "scheduled rotation",
    )
    .await;
    assert_ne!(kid, k2);
}

/// Waits (up to `limit`) for `issuer` to rotate away from `from` (a `what`),
/// then (up to 60 s) for kube-apiserver to accept a token of it, and logs
/// how long that took: (the new active kid, the kid accepted).
async fn until_rotated_and_accepted(
    cp: &ControlPlane,
    issuer: &Issuer,
    from: &str,
    limit: Duration,
    what: &str,
) -> (String, String) {
    let new = until_rotated(issuer, from, limit, what).await;
    let (took, kid) = until_accepted(
        cp,
        issuer,
        Duration::from_secs(60),
        &format!("after a {what}"),
    )
    .await;
    eprintln!(
        "[{}] after the {what} to {new}: accepted after {took:?} (kid {kid})",
        issuer.mode
    );
    (new, kid)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kube_apiserver_authenticates_tokens_of_an_issuer_served_over_tls_by_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_pair();
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    write(&cert_file, &cert);
    write(&key_file, &key);
    let tls_args = [
        format!("--tls-cert-file={}", cert_file.display()),
        format!("--tls-key-file={}", key_file.display()),
    ];

    // The standalone issuer, up before kube-apiserver.
    let standalone = Issuer::on_free_ports("standalone", "default", &ca);
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let policy_file = policies.join("apiauth.yaml");
    write(
        &policy_file,
        &policy_manifest("default", "apiauth", &standalone.url(), ""),
    );
    let mut command = Command::new(common::BIN);
    command
        .args(["standalone", "--policies"])
        .arg(&policies)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "info");
    let standalone_process = standalone.serve(command, &tls_args, dir.path());
    common::eventually(
        "the standalone issuer is ready",
        Duration::from_secs(30),
        || standalone.ready().then_some(()),
    );

    // The run-mode issuer's addresses, fixed now: its URL goes into the
    // API server's configuration.
    let run = Issuer::on_free_ports("run", RUN_NS, &ca);

    let indented_ca: String = ca.lines().map(|l| format!("        {l}\n")).collect();
    let jwt = |issuer: &Issuer| {
        format!(
            "- issuer:\n    url: {}\n    audiences: [{AUDIENCE}]\n    certificateAuthority: |\n{indented_ca}  claimMappings:\n    username: {{claim: sub, prefix: \"jwks:\"}}\n    groups: {{claim: groups, prefix: \"jwks:\"}}\n",
            issuer.url()
        )
    };
    let authn = dir.path().join("authentication.yaml");
    write(
        &authn,
        &format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n{}{}",
            jwt(&standalone),
            jwt(&run)
        ),
    );
    let cp = control_plane_with(Options {
        extra_apiserver_args: vec![format!("--authentication-config={}", authn.display())],
    })
    .await;
    let _dump = DumpOnFailure(cp);
    let admin = cp.admin_client().await;

    // The run-mode operator, as the chart's ServiceAccount.
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": RUN_NS}})).unwrap();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let id = support::operator::chart_identity(cp, &admin, RUN_NS, RUN_NS, &[]).await;
    let policy: jwks_operator::api::KeyRotationPolicy =
        jwks_operator::yaml::from_str(&policy_manifest(RUN_NS, "apiauth", &run.url(), "")).unwrap();
    let run_policies: Api<jwks_operator::api::KeyRotationPolicy> =
        Api::namespaced(admin.clone(), RUN_NS);
    run_policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let mut command = Command::new(common::BIN);
    command
        .arg("run")
        .arg(format!("--namespace={RUN_NS}"))
        .env("KUBECONFIG", &id.kubeconfig)
        .env("RUST_LOG", "info,kube=warn")
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME");
    let run_process = run.serve(command, &tls_args, dir.path());
    common::eventually(
        "the run-mode issuer is ready",
        Duration::from_secs(60),
        || (run.ready() && run.active_kid().is_some()).then_some(()),
    );

    let standalone_pid = standalone_process.child.id();
    let manual_standalone = async || {
        let annotations = format!(
            "jwks.dev/rotate-requested-at: \"{}\"",
            jiff::Timestamp::now()
        );
        write(
            &policy_file,
            &policy_manifest("default", "apiauth", &standalone.url(), &annotations),
        );
        reload(standalone_pid);
    };
    let manual_run = async || {
        let patch = json!({"metadata": {"annotations": {
            "jwks.dev/rotate-requested-at": jiff::Timestamp::now().to_string()
        }}});
        run_policies
            .patch("apiauth", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    };
    tokio::join!(
        exercise(cp, &standalone, manual_standalone),
        exercise(cp, &run, manual_run),
    );
    revoke_with_rotate_on_revoke(cp, &standalone, &policy_file, standalone_pid).await;
    drop(run_process);
    drop(standalone_process);
}
