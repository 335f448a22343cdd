//! The README's Helm section, followed literally: the commands of its
//! Install, Upgrade and Uninstall blocks run as written (helm and kubectl
//! from the test tool dir, the admin kubeconfig) against a control plane with
//! no CRD yet, as a fresh cluster would be. Its own test binary, so removing
//! the CRD the harness installs disturbs no other test.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use jwks_operator::api::KeyRotationPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams};
use support::controlplane::{ControlPlane, DumpOnFailure, control_plane, wait_crd_established};
use support::helm::{helm_command, kubectl_command, readme_commands, run_async};

const CRD: &str = "keyrotationpolicies.jwks.dev";

/// Runs a README command line with the test's helm or kubectl.
async fn run_readme_command(cp: &ControlPlane, argv: &[String]) -> String {
    let mut cmd: Command = match argv[0].as_str() {
        "helm" => helm_command(Some(&cp.kubeconfig)),
        "kubectl" => kubectl_command(&cp.kubeconfig),
        other => panic!("the README runs `{other}`; this test only knows helm and kubectl"),
    };
    // No kubelet runs here, so the operator's pods never become ready and
    // `--wait` would time out; the caller waits for what --wait also covers
    // and matters to the next command: the CRD being Established.
    let args = argv[1..].iter().filter(|a| *a != "--wait");
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    run_async(cmd)
        .await
        .unwrap_or_else(|e| panic!("README command `{}` failed: {e}", argv.join(" ")))
}

#[tokio::test]
async fn readme_helm_install_upgrade_uninstall_work_as_written() {
    let cp = control_plane().await;
    let _dump = DumpOnFailure(cp);
    let admin = cp.admin_client().await;

    // A fresh cluster has no CRD: remove the one the harness installed.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let _ = crds.delete(CRD, &DeleteParams::default()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while crds.get_opt(CRD).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "CRD not deleted in 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let install = readme_commands("Install");
    assert!(
        install
            .iter()
            .any(|argv| argv.starts_with(&["helm".into(), "install".into()])),
        "the Install block runs helm install: {install:?}"
    );
    for argv in &install {
        run_readme_command(cp, argv).await;
        if argv[1] == "install" {
            assert!(argv.contains(&"--wait".to_owned()), "the README waits");
            wait_crd_established(&admin, CRD).await;
        }
    }
    let crd = crds.get(CRD).await.unwrap();
    assert_eq!(
        crd.annotations()
            .get("meta.helm.sh/release-name")
            .map(String::as_str),
        Some("jwks-operator"),
        "the chart created the CRD"
    );
    let policies: Api<KeyRotationPolicy> = Api::namespaced(admin.clone(), "default");
    assert!(policies.get_opt("my-app").await.unwrap().is_some());

    for argv in readme_commands("Upgrade") {
        run_readme_command(cp, &argv).await;
    }
    let mut history = helm_command(Some(&cp.kubeconfig));
    history.args([
        "history",
        "jwks-operator",
        "-n",
        "jwks-system",
        "-o",
        "json",
    ]);
    let history: serde_json::Value =
        serde_json::from_str(&run_async(history).await.unwrap()).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");

    for argv in readme_commands("Uninstall") {
        run_readme_command(cp, &argv).await;
    }
    assert!(crds.get_opt(CRD).await.unwrap().is_some(), "the CRD stays");
    assert!(
        policies.get_opt("my-app").await.unwrap().is_some(),
        "the policy stays"
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(admin, "jwks-system");
    assert!(
        deployments
            .get_opt("jwks-operator")
            .await
            .unwrap()
            .is_none(),
        "the Deployment goes"
    );
}
