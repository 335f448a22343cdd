//! `jwks-operator signer` as the service-account signer of a real node
//! (`tests/support/node.rs`): the kubelet asks kube-apiserver for a pod's
//! projected service-account token, kube-apiserver has it signed by our
//! signer over `--service-account-signing-endpoint`, and the token the pod
//! sees carries our active kid and authenticates.
//!
//! The signer runs on the host (its socket under `/tmp`, which the node's
//! mount namespace shares) and starts before the node, because
//! kube-apiserver fetches the keys at start. The node runs without the
//! harness's `sa.key`/`sa.pub` flags (kube-controller-manager without its
//! legacy token key). The pod runs the pause image (no shell), so the token is
//! read from the kubelet's volume directory inside the node's mount
//! namespace.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::node::{DumpNodeOnFailure, Node, NodeBuilder, PAUSE_IMAGE};
use support::signer::fetch_kids;

const NS: &str = "signed";
const SA: &str = "demo";
const POD: &str = "token-holder";
const VOLUME: &str = "sa-token";

/// The signer process, killed (and reaped) when dropped.
struct Signer {
    child: Child,
    log: PathBuf,
    socket: PathBuf,
}

impl Drop for Signer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- signer ({})\n{}",
                self.log.display(),
                support::controlplane::log_tail(&self.log, 40)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Signer {
    /// Starts `jwks-operator signer` for `kube-system/sa` and waits until
    /// FetchKeys answers with a key.
    async fn start(work: &Path) -> Signer {
        std::fs::create_dir(work.join("policies")).unwrap();
        std::fs::write(
            work.join("policies/sa.yaml"),
            "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata:\n  name: sa\n  namespace: kube-system\nspec:\n  algorithm: ES256\n  rotationInterval: 24h\n  publishAhead: 40s\n  maxTokenTTL: 2h\n  clockSkew: 0s\n",
        )
        .unwrap();
        let socket = work.join("signer.sock");
        let log = work.join("signer.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
            .arg("signer")
            .arg("--policies")
            .arg(work.join("policies"))
            .args(["--policy", "kube-system/sa", "--state-dir"])
            .arg(work.join("state"))
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start jwks-operator signer");
        let mut signer = Signer { child, log, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if signer.socket.exists()
                && let Ok(kids) = fetch_kids(&signer.socket).await
                && !kids.is_empty()
            {
                return signer;
            }
            if let Some(status) = signer.child.try_wait().unwrap() {
                panic!("the signer exited ({status})");
            }
            assert!(Instant::now() < deadline, "the signer did not serve in 30s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The JSON header and claims of a compact JWT.
fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap()
    };
    (next(), next())
}

/// Polls `f` every 250 ms until it returns `Ok`, or panics after `limit`
/// with the last error.
async fn eventually<T, F: std::future::Future<Output = Result<T, String>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The projected token file, read inside the node's mount namespace (where
/// the kubelet's `/var/lib/kubelet` is).
fn read_projected_token(node: &Node, pod_uid: &str) -> Result<String, String> {
    let path =
        format!("/var/lib/kubelet/pods/{pod_uid}/volumes/kubernetes.io~projected/{VOLUME}/token");
    let out = node
        .command("cat")
        .arg(&path)
        .output()
        .map_err(|e| format!("running cat in the node: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cat {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_projected_token_is_signed_by_the_signer_and_authenticates() {
    // Socket paths must stay short (108 bytes): a short temp dir under /tmp.
    let work = tempfile::Builder::new()
        .prefix("nsg")
        .tempdir_in("/tmp")
        .unwrap();
    let signer = Signer::start(work.path()).await;

    let node = NodeBuilder::default()
        .without_apiserver_flag("--service-account-signing-key-file")
        .without_apiserver_flag("--service-account-key-file")
        .apiserver_flag(format!(
            "--service-account-signing-endpoint={}",
            signer.socket.display()
        ))
        .without_controller_manager_flag("--service-account-private-key-file")
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting the node with the signer failed: {e}"));
    // The process exit closes the supervisor's pipe and tears the node down.
    let node: &'static Node = Box::leak(Box::new(node));
    let _dump = DumpNodeOnFailure(node);
    let client = node.admin_client().await;

    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": SA}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    // The pause image with an explicit projected token volume (besides the
    // default kube-api-access one, whose long "extended" token is signed
    // through the signer too, or the pod would not start).
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": POD},
        "spec": {
            "serviceAccountName": SA,
            "containers": [{
                "name": "pause",
                "image": PAUSE_IMAGE,
                "imagePullPolicy": "Never",
                "volumeMounts": [{"name": VOLUME, "mountPath": "/var/run/secrets/tokens"}]
            }],
            "volumes": [{"name": VOLUME, "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}
            ]}}]
        }
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let uid = eventually("the pod Running", Duration::from_secs(90), || async {
        let pod = pods.get(POD).await.map_err(|e| e.to_string())?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            Ok(pod.metadata.uid.unwrap())
        } else {
            Err(format!("phase {phase:?}, status {:?}", pod.status))
        }
    })
    .await;

    let token = eventually("the projected token", Duration::from_secs(30), || async {
        read_projected_token(node, &uid)
    })
    .await;
    let (header, claims) = decode(token.trim());

    // Signed by us: the signer's active key, which FetchKeys lists.
    let active = std::fs::read_to_string(work.path().join("state/kube-system/sa/active.kid"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(header["kid"], active.as_str(), "header {header}");
    assert_eq!(header["alg"], "ES256");
    assert!(
        fetch_kids(&signer.socket).await.unwrap().contains(&active),
        "FetchKeys does not list the active kid {active}"
    );
    // The pod's own token, bound to it.
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{NS}:{SA}").as_str()
    );
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], POD);
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], uid.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );

    // And it authenticates as the service account.
    let review: TokenReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token.trim()}
    }))
    .unwrap();
    let status = Api::<TokenReview>::all(client)
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(
        status.user.and_then(|u| u.username).as_deref(),
        Some(format!("system:serviceaccount:{NS}:{SA}").as_str())
    );
}
