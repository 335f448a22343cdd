//! The chart as real pods: the image built from this test binary by
//! `scripts/build-image.sh`, imported into the containerd of a real
//! single-node cluster (`tests/support/node.rs`: kubelet, containerd, runc,
//! kube-proxy, bridge CNI, all inside private namespaces), and the README's
//! Image, Install, Upgrade and Uninstall commands run as written.
//!
//! `JWKS_E2E_IMAGE=target/image/jwks-operator-0.1.0.oci.tar` runs a
//! prebuilt image instead (the README's release build) of packing this test
//! binary.
//!
//! One scenario test: the README's release owns the cluster-scoped CRD, so
//! the steps share it in order (install, leader hand-off, rolling upgrade,
//! token listener, uninstall, reinstall).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jwks_operator::api::KeyRotationPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt as _};
use support::helm::{helm_command, kubectl_command, readme_commands, run_async};
use support::jwks::kids_of;
use support::node::{DumpNodeOnFailure, Node, node};
use support::operator::http_get;

const RELEASE: &str = "jwks-operator";
const RELEASE_NS: &str = "jwks-system";
const CRD: &str = "keyrotationpolicies.jwks.dev";
/// The chart's default `--leader-elect-lease-duration`.
const LEASE_DURATION: Duration = Duration::from_secs(15);

/// Runs a README command line: helm and kubectl with the node's admin
/// kubeconfig, `ctr` inside the node, `scripts/build-image.sh` on this test
/// binary (the README builds a release binary; the image is the same
/// otherwise).
async fn run_readme_command(node: &Node, argv: &[String], image_out: &Path) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd: Command = match argv[0].as_str() {
        "helm" => helm_command(Some(&node.kubeconfig)),
        "kubectl" => kubectl_command(&node.kubeconfig),
        "ctr" => node.command("ctr"),
        "scripts/build-image.sh" => {
            // JWKS_E2E_IMAGE=<tarball>: run a prebuilt image instead, e.g.
            // the README's own `scripts/build-image.sh` (release) output.
            if let Ok(prebuilt) = std::env::var("JWKS_E2E_IMAGE") {
                std::fs::create_dir_all(image_out.parent().unwrap()).unwrap();
                std::fs::copy(&prebuilt, image_out)
                    .unwrap_or_else(|e| panic!("JWKS_E2E_IMAGE={prebuilt}: {e}"));
                return prebuilt;
            }
            let mut cmd = Command::new("bash");
            cmd.arg("scripts/build-image.sh")
                .args(["--binary", env!("CARGO_BIN_EXE_jwks-operator")])
                .arg("--out")
                .arg(image_out);
            cmd.current_dir(root);
            return run_async(cmd)
                .await
                .unwrap_or_else(|e| panic!("README command `{}` failed: {e}", argv.join(" ")));
        }
        other => panic!("the README runs `{other}`; this test does not know it"),
    };
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| {
            // The image the README's build writes is where this test wrote it.
            if a.starts_with("target/image/") {
                image_out.display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    cmd.args(&args).current_dir(root);
    run_async(cmd)
        .await
        .unwrap_or_else(|e| panic!("README command `{}` failed: {e}", argv.join(" ")))
}

async fn poll<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut reported = 0;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => panic!("{what}: not within {limit:?}: {e}"),
            Err(e) => {
                // Progress on slow waits, for the test log.
                let secs = start.elapsed().as_secs();
                if secs >= 10 && secs / 10 > reported {
                    reported = secs / 10;
                    eprintln!("[node-e2e] still waiting for {what} after {secs}s: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await
            }
        }
    }
}

fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && pod.metadata.deletion_timestamp.is_none()
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a running pod has an IP")
}

/// The operator's pods (the Deployment's selector).
async fn operator_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!(
        "app.kubernetes.io/name=jwks-operator,app.kubernetes.io/instance={RELEASE}"
    )))
    .await
    .expect("list pods")
    .items
}

/// Waits for the Deployment to be rolled out: every replica updated,
/// available and Ready, no other pod left. Returns the pods.
async fn wait_rolled_out(admin: &Client) -> Vec<Pod> {
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), RELEASE_NS);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), RELEASE_NS);
    poll(
        "the Deployment rolled out",
        Duration::from_secs(120),
        || async {
            let d = deployments.get(RELEASE).await.map_err(|e| e.to_string())?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let s = d.status.clone().unwrap_or_default();
            let done = s.observed_generation == d.metadata.generation
                && s.updated_replicas == Some(want)
                && s.ready_replicas == Some(want)
                && s.available_replicas == Some(want)
                && s.replicas == Some(want);
            let list = operator_pods(&pods).await;
            if done && list.len() == want as usize && list.iter().all(is_ready) {
                Ok(list)
            } else {
                Err(format!("deployment status {s:?}, {} pods", list.len()))
            }
        },
    )
    .await
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

async fn lease_holder(admin: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(admin.clone(), RELEASE_NS);
    leases
        .get_opt(&format!("{RELEASE}-leader"))
        .await
        .expect("get lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

fn kids(jwks: &str) -> BTreeSet<String> {
    kids_of(&serde_json::from_str(jwks).expect("a JWK Set"))
        .into_iter()
        .collect()
}

/// The example policy's JWKS URL on the release's Service ClusterIP.
async fn service_jwks_url(services: &Api<Service>) -> String {
    let cluster_ip = services
        .get(RELEASE)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    format!("http://{cluster_ip}:8080/default/my-app/.well-known/jwks.json")
}

/// A value of a Prometheus text-format sample whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// GETs `url` from a blocking thread (in the node's network: threads inherit
/// the namespace of the thread that starts them).
async fn get(url: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(&url))
        .await
        .unwrap()
}

async fn policy_ready(policies: &Api<KeyRotationPolicy>, name: &str) -> KeyRotationPolicy {
    poll(
        &format!("policy {name} Ready"),
        Duration::from_secs(60),
        || async {
            let p = policies.get(name).await.map_err(|e| e.to_string())?;
            let ready = p.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if ready {
                Ok(p)
            } else {
                Err(format!("{:?}", p.status))
            }
        },
    )
    .await
}

/// The manifest and config digests of an OCI image tarball.
fn image_digests(tarball: &Path) -> Vec<String> {
    let read = |member: &str| -> serde_json::Value {
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(tarball)
            .arg(member)
            .output()
            .unwrap();
        assert!(out.status.success(), "{member} in {}", tarball.display());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let manifest = read("index.json")["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = read(&format!(
        "blobs/sha256/{}",
        manifest.trim_start_matches("sha256:")
    ))["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    vec![manifest, config]
}

/// `kubectl logs -f` of a pod into a file, printed if the test panics.
struct FollowLog {
    child: std::process::Child,
    path: PathBuf,
}

impl FollowLog {
    fn start(node: &Node, pod: &str) -> FollowLog {
        let path = node.dir.join(format!("logs/pod-{pod}.log"));
        let file = std::fs::File::create(&path).unwrap();
        let child = kubectl_command(&node.kubeconfig)
            .args(["logs", "-f", "-n", RELEASE_NS, pod])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        FollowLog { child, path }
    }
}

impl Drop for FollowLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            eprintln!("---- {}\n{text}", self.path.display());
        }
    }
}

#[tokio::test]
async fn readme_install_upgrade_uninstall_run_as_real_pods() {
    let node = node().await;
    let _dump = DumpNodeOnFailure(node);
    let admin = node.admin_client().await;
    let image_out =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-e2e/jwks-operator.oci.tar");

    // ---- Image: built from this test binary, imported into containerd.
    let started = Instant::now();
    let image = readme_commands("Image");
    assert!(
        image.iter().any(|a| a[0] == "scripts/build-image.sh")
            && image
                .iter()
                .any(|a| a.starts_with(&["ctr".into(), "-n".into(), "k8s.io".into()])),
        "the README's Image block builds and imports the image: {image:?}"
    );
    for argv in &image {
        run_readme_command(node, argv, &image_out).await;
    }
    eprintln!(
        "[node-e2e] image built and imported in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // ---- Install, as written.
    let started = Instant::now();
    for argv in readme_commands("Install") {
        run_readme_command(node, &argv, &image_out).await;
    }
    eprintln!(
        "[node-e2e] README install (helm --wait) done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let ns = namespaces.get(RELEASE_NS).await.unwrap();
    assert_eq!(
        ns.labels()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted"),
        "the README's namespace enforces the restricted Pod Security level"
    );
    let pods: Api<Pod> = Api::namespaced(admin.clone(), RELEASE_NS);
    // The namespace really enforces it: a pod the restricted level forbids is
    // refused.
    let privileged: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "privileged-probe"},
        "spec": {"containers": [{"name": "c", "image": "ghcr.io/jwks-operator/jwks-operator:0.1.0",
                                 "securityContext": {"privileged": true}}]}
    }))
    .unwrap();
    let refused = pods
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &privileged,
        )
        .await
        .expect_err("a privileged pod is refused in the release namespace");
    assert!(
        refused.to_string().contains("PodSecurity"),
        "refused by Pod Security: {refused}"
    );

    let running = wait_rolled_out(&admin).await;
    assert_eq!(running.len(), 2, "two Running and Ready pods");
    for pod in &running {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some("ghcr.io/jwks-operator/jwks-operator:0.1.0"),
            "the chart's default image: the one built and imported above"
        );
    }
    // ... and they run the image imported above: its manifest or config
    // digest is the one the kubelet reports.
    let digests = image_digests(&image_out);
    for pod in &running {
        let image_id = &pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .image_id;
        assert!(
            digests.iter().any(|d| image_id.contains(d.as_str())),
            "{image_id} is one of {digests:?}"
        );
    }
    let holder = lease_holder(&admin).await.expect("a Lease holder");
    assert!(
        names(&running).contains(&holder),
        "{holder} is one of the pods"
    );

    // The example policy: Ready, its JWKS served through the Service.
    let policies: Api<KeyRotationPolicy> = Api::namespaced(admin.clone(), "default");
    let policy = policy_ready(&policies, "my-app").await;
    let services: Api<Service> = Api::namespaced(admin.clone(), RELEASE_NS);
    let jwks_url = service_jwks_url(&services).await;
    let (status, body) = get(jwks_url.clone()).await;
    assert_eq!(status, 200, "JWKS through the Service: {body}");
    let served = kids(&body);
    let active = policy
        .status
        .as_ref()
        .unwrap()
        .active_key_id
        .clone()
        .unwrap();
    assert!(
        served.contains(&active),
        "{served:?} has the active kid {active}"
    );

    // Per pod: metrics on the metrics port, probes on the metrics listener
    // (off the public connection cap; the kubelet's requests show in that
    // listener's counters),
    // exactly one leader, no token listener.
    let mut leaders = 0;
    for pod in &running {
        let ip = pod_ip(pod);
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
            probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .map(|h| (h.path.clone().unwrap_or_default(), h.port.clone()))
        };
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        assert_eq!(
            path(&container.liveness_probe),
            Some(("/healthz".to_owned(), IntOrString::String("metrics".into())))
        );
        assert_eq!(
            path(&container.readiness_probe),
            Some(("/readyz".to_owned(), IntOrString::String("metrics".into())))
        );
        let metrics = poll(
            "the kubelet's liveness and readiness probes in the operator's counters",
            Duration::from_secs(60),
            || {
                let url = format!("http://{ip}:9090/metrics");
                async move {
                    let (status, text) = get(url).await;
                    let probed = |route: &str| {
                        sample(
                            &text,
                            &format!(
                                "jwks_operator_http_requests_total{{listener=\"metrics\",route=\"{route}\",status=\"200\"}}"
                            ),
                        )
                        .unwrap_or(0.0)
                    };
                    if status == 200 && probed("readyz") >= 1.0 && probed("healthz") >= 1.0 {
                        Ok(text)
                    } else {
                        Err(format!("status {status}"))
                    }
                }
            },
        )
        .await;
        assert!(
            metrics.contains("\njwks_operator_"),
            "jwks_operator_ series"
        );
        leaders += sample(&metrics, "jwks_operator_leader ").expect("leader gauge") as i32;
        for route in ["/healthz", "/readyz"] {
            let (status, _) = get(format!("http://{ip}:8080{route}")).await;
            assert_eq!(status, 200, "{route} on {ip}");
        }
        // The token listener is off: its port refuses (the pod's other
        // ports answered just above).
        let refused = get(format!("http://{ip}:8081/")).await;
        assert_eq!(refused.0, 0, "token port answered: {refused:?}");
        assert_eq!(
            pod.status
                .as_ref()
                .unwrap()
                .container_statuses
                .as_ref()
                .unwrap()[0]
                .restart_count,
            0,
            "no liveness restarts"
        );
    }
    assert_eq!(leaders, 1, "exactly one pod leads");

    // ---- Leader hand-off: delete the leader's pod; the other takes over
    // within the lease duration, and a manual rotation completes. The node
    // is cordoned first, so the replacement pod cannot start and win the
    // released Lease before the survivor looks at it again (a follower
    // re-checks the Lease when the holder's term would end, at most one
    // lease duration after its last renewal).
    let other = names(&running).into_iter().find(|n| *n != holder).unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(admin.clone());
    let cordon = |unschedulable: bool| {
        let nodes = nodes.clone();
        async move {
            nodes
                .patch(
                    support::node::NODE_NAME,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(
                        serde_json::json!({"spec": {"unschedulable": unschedulable}}),
                    ),
                )
                .await
                .expect("cordon/uncordon the node");
        }
    };
    cordon(true).await;
    // Its log to the end, for the failure report.
    let _leader_log = FollowLog::start(node, &holder);
    let deleted_at = Instant::now();
    pods.delete(&holder, &DeleteParams::default())
        .await
        .unwrap();
    // The survivor's API round trip on top of the lease duration.
    poll(
        "the other pod takes the Lease",
        LEASE_DURATION + Duration::from_secs(2),
        || async {
            match lease_holder(&admin).await {
                Some(h) if h == other => Ok(()),
                h => Err(format!("holder {h:?}")),
            }
        },
    )
    .await;
    eprintln!(
        "[node-e2e] Lease taken over by {other} {:.1}s after deleting {holder}",
        deleted_at.elapsed().as_secs_f64()
    );
    let takeover = deleted_at.elapsed();
    cordon(false).await;
    assert!(
        takeover <= LEASE_DURATION + Duration::from_secs(2),
        "takeover after {takeover:?}"
    );
    let before_rotation = policies.get("my-app").await.unwrap();
    let before_keys = before_rotation.status.as_ref().unwrap().keys.len();
    let mut rotate = Command::new(env!("CARGO_BIN_EXE_jwks-operator"));
    rotate
        .args(["rotate", "my-app", "-n", "default"])
        .env("KUBECONFIG", &node.kubeconfig);
    run_async(rotate).await.unwrap_or_else(|e| panic!("{e}"));
    let rotated = poll(
        "the manual rotation handled",
        Duration::from_secs(60),
        || async {
            let p = policies.get("my-app").await.map_err(|e| e.to_string())?;
            let requested = p
                .annotations()
                .get(jwks_operator::api::ROTATE_ANNOTATION)
                .cloned();
            let s = p.status.clone().unwrap_or_default();
            if requested.is_some()
                && s.last_rotation_request == requested
                && s.keys.len() > before_keys
            {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    let new_kid = rotated.next_key_id.clone().expect("the rotation's new key");
    poll(
        "the new key served through the Service",
        Duration::from_secs(30),
        || {
            let url = jwks_url.clone();
            let new_kid = new_kid.clone();
            async move {
                let (status, body) = get(url).await;
                if status == 200 && kids(&body).contains(&new_kid) {
                    Ok(())
                } else {
                    Err(format!("{status} {body}"))
                }
            }
        },
    )
    .await;
    let before_upgrade = wait_rolled_out(&admin).await;

    // ---- Upgrade, as written: the pods roll; the JWKS answers 200 throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        let url = jwks_url.clone();
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                answers.push(http_get(&url));
                std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
            }
            answers
        })
    };
    let started = Instant::now();
    for argv in readme_commands("Upgrade") {
        run_readme_command(node, &argv, &image_out).await;
    }
    let after_upgrade = poll(
        "new pods replace the old ones",
        Duration::from_secs(120),
        || async {
            let list = wait_rolled_out(&admin).await;
            if names(&list).is_disjoint(&names(&before_upgrade)) {
                Ok(list)
            } else {
                Err("old pods still there".to_owned())
            }
        },
    )
    .await;
    // Let kube-proxy catch up with the last endpoint change, still polling.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = poller.join().unwrap();
    eprintln!(
        "[node-e2e] rollout in {:.1}s, {} JWKS requests through the Service",
        started.elapsed().as_secs_f64(),
        answers.len()
    );
    let failed: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} JWKS requests during the rollout were not 200: {:?}",
        failed.len(),
        answers.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    assert!(answers.len() >= 50, "polled throughout: {}", answers.len());
    let args = &after_upgrade[0].spec.as_ref().unwrap().containers[0].args;
    assert!(
        args.as_ref()
            .unwrap()
            .contains(&"--log-format=text".to_owned()),
        "the new pods have the upgraded value: {args:?}"
    );

    // ---- The token listener only when enabled, and only with its credential.
    let minters = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("jwks-minters".into()),
            ..Default::default()
        },
        string_data: Some([("token".to_owned(), "node-e2e-minter".to_owned())].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(admin.clone(), RELEASE_NS)
        .create(&PostParams::default(), &minters)
        .await
        .unwrap();
    let mut upgrade = helm_command(Some(&node.kubeconfig));
    upgrade
        .args(["upgrade", RELEASE])
        .arg(support::helm::chart_dir())
        .args([
            "-n",
            RELEASE_NS,
            "--reuse-values",
            "--wait",
            "--timeout",
            "120s",
        ])
        .args(["--set", "tokenListener.enabled=true"])
        .args([
            "--set",
            "tokenListener.auth.bearerTokenSecret.name=jwks-minters",
        ]);
    run_async(upgrade).await.unwrap_or_else(|e| panic!("{e}"));
    let with_token = wait_rolled_out(&admin).await;
    for pod in &with_token {
        let (status, body) = get(format!("http://{}:8081/default/my-app/token", pod_ip(pod))).await;
        assert_eq!(
            status, 401,
            "the token listener answers when enabled, and wants its bearer token: {body}"
        );
    }

    // ---- Uninstall, as written: CRD, policy and Secret stay.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "default");
    let secret_before = secrets.get("my-app-jwks").await.unwrap();
    let (status, served_before) = get(jwks_url.clone()).await;
    assert_eq!(status, 200, "{served_before}");
    for argv in readme_commands("Uninstall") {
        run_readme_command(node, &argv, &image_out).await;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    assert!(crds.get_opt(CRD).await.unwrap().is_some(), "the CRD stays");
    assert!(
        policies.get_opt("my-app").await.unwrap().is_some(),
        "the policy stays"
    );
    let secret_after = secrets.get("my-app-jwks").await.expect("the Secret stays");
    assert_eq!(
        secret_after.data, secret_before.data,
        "the keys are untouched"
    );
    poll(
        "the operator's pods gone",
        Duration::from_secs(60),
        || async {
            let left = operator_pods(&pods).await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} pods", left.len()))
            }
        },
    )
    .await;

    // ---- Reinstall (the README's helm install line): the same kids.
    let install = readme_commands("Install")
        .into_iter()
        .find(|a| a.starts_with(&["helm".into(), "install".into()]))
        .expect("a helm install line");
    run_readme_command(node, &install, &image_out).await;
    wait_rolled_out(&admin).await;
    // A new Service: a new ClusterIP.
    let jwks_url = service_jwks_url(&services).await;
    let (status, served_after) = get(jwks_url).await;
    assert_eq!(status, 200, "{served_after}");
    assert_eq!(
        kids(&served_after),
        kids(&served_before),
        "the reinstalled operator serves the kept keys"
    );

    // Measurements for tests/controlplane/README.md.
    let memory = node.memory_by_process();
    let total: u64 = memory.iter().map(|(_, _, kb)| kb).sum();
    eprintln!(
        "[node-e2e] node Ready after {:.1}s; RSS of everything in the node: {} MB",
        node.ready_after.as_secs_f64(),
        total / 1024
    );
    for (name, count, kb) in &memory {
        eprintln!("[node-e2e]   {name} x{count}: {} MB", kb / 1024);
    }
}

#[tokio::test]
async fn the_node_leaves_the_hosts_network_and_sysctls_alone() {
    // The host's view: this process's mount namespace (never changed) and
    // the network namespace of the host's PID 1.
    let host = || {
        (
            std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap(),
            std::fs::read_to_string("/proc/sys/kernel/panic_on_oops").unwrap(),
            std::fs::read_to_string("/proc/1/net/dev").unwrap(),
        )
    };
    let before = host();
    let node = node().await;
    let _dump = DumpNodeOnFailure(node);
    // Inside: the values the kubelet wants, the node's interfaces.
    let inside = |args: &[&str]| {
        let out = node.command(args[0]).args(&args[1..]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        inside(&["cat", "/proc/sys/vm/overcommit_memory"]).trim(),
        "1"
    );
    assert_eq!(
        inside(&["cat", "/proc/sys/kernel/panic_on_oops"]).trim(),
        "1"
    );
    let links = inside(&["cat", "/proc/net/dev"]);
    for link in ["jwks0", "jwks1"] {
        assert!(links.contains(link), "{link} in the node: {links}");
    }
    // Outside: unchanged, none of the node's interfaces.
    let after = host();
    assert_eq!((&after.0, &after.1), (&before.0, &before.1), "host sysctls");
    for link in ["jwks0", "jwks1", "cni0"] {
        assert!(!after.2.contains(link), "{link} on the host: {}", after.2);
    }
}

#[test]
fn node_builder_replaces_and_drops_apiserver_flags() {
    use support::node::NodeBuilder;
    let defaults = vec![
        "--service-account-key-file=/pki/sa.pub".to_owned(),
        "--service-account-signing-key-file=/pki/sa.key".to_owned(),
        "--authorization-mode=Node,RBAC".to_owned(),
    ];
    let builder = NodeBuilder::default()
        .without_apiserver_flag("--service-account-signing-key-file")
        .apiserver_flag("--service-account-signing-endpoint=/tmp/signer.sock")
        .apiserver_flag("--authorization-mode=RBAC");
    assert_eq!(
        builder.apply_apiserver_flags(defaults),
        [
            "--service-account-key-file=/pki/sa.pub",
            "--service-account-signing-endpoint=/tmp/signer.sock",
            "--authorization-mode=RBAC",
        ]
    );
}
