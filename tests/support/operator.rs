//! Runs the real `jwks-operator run` binary against the test control plane,
//! as the Helm chart's ServiceAccount with exactly the chart's RBAC, so a
//! missing verb fails a test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Client;

use super::controlplane::{ControlPlane, free_port, kubeconfig_yaml};
use super::helm::LOCAL_IMAGE;

/// An identity with the chart's permissions.
pub struct ChartIdentity {
    /// Kubeconfig file authenticating as the chart's ServiceAccount.
    pub kubeconfig: PathBuf,
    /// Release (and ServiceAccount) name.
    pub release: String,
    /// Release namespace (where the Lease lives).
    pub namespace: String,
    /// Name of the leader-election Lease the chart grants.
    pub lease_name: String,
    /// A client with the same identity.
    pub client: Client,
}

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/jwks-operator")
}

/// Renders the chart's ServiceAccount and RBAC for release `release` in
/// `namespace` (with `extra` `--set` values), applies them as admin, and
/// returns a kubeconfig for the ServiceAccount.
pub async fn chart_identity(
    cp: &ControlPlane,
    admin: &Client,
    namespace: &str,
    release: &str,
    extra: &[&str],
) -> ChartIdentity {
    let mut helm = Command::new(cp.bin.join("helm"));
    helm.args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace])
        .args(["--set", &format!("{}={}", LOCAL_IMAGE.0, LOCAL_IMAGE.1)])
        .args(["--show-only", "templates/serviceaccount.yaml"])
        .args(["--show-only", "templates/rbac.yaml"])
        .args(["--show-only", "templates/leader-election-rbac.yaml"]);
    for v in extra {
        helm.args(["--set", v]);
    }
    let rendered = helm.output().expect("run helm template");
    assert!(
        rendered.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut apply = Command::new(cp.bin.join("kubectl"))
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl apply");
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(&rendered.stdout)
        .unwrap();
    let out = apply.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply of the chart's RBAC failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Names as the chart renders them.
    let docs: Vec<serde_json::Value> =
        jwks_operator::yaml::documents(&String::from_utf8_lossy(&rendered.stdout))
            .into_iter()
            .filter_map(|d| d.value.ok())
            .collect();
    let named = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("the chart renders no {kind}"))
    };
    let sa_name = named("ServiceAccount")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let lease_name = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("Role"))
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
        .find_map(|r| r["resourceNames"][0].as_str().map(str::to_owned))
        .unwrap_or_default();
    let token = cp.service_account_token(admin, namespace, &sa_name).await;
    let kubeconfig = cp.dir.join(format!("kubeconfig-{namespace}-{release}"));
    std::fs::write(
        &kubeconfig,
        kubeconfig_yaml(&cp.api_url, &cp.dir.join("ca.crt"), &token),
    )
    .unwrap();
    ChartIdentity {
        kubeconfig,
        release: release.to_owned(),
        namespace: namespace.to_owned(),
        lease_name,
        client: cp.client_with_token(&token).await,
    }
}

/// A running `jwks-operator run` process, killed on drop.
pub struct Operator {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>` of the JWKS listener.
    pub jwks: String,
    /// `http://127.0.0.1:<port>` of the token listener.
    pub token: String,
    /// Its log file.
    pub log: PathBuf,
}

// === impl Operator ===

impl Operator {
    /// Starts the binary with `kubeconfig` and `args` (after `run`), and
    /// waits until `/readyz` answers 200.
    pub fn start(kubeconfig: &Path, args: &[String]) -> Operator {
        Operator::start_binary(
            Path::new(env!("CARGO_BIN_EXE_jwks-operator")),
            kubeconfig,
            args,
        )
    }

    /// Like [`Operator::start`], with a given `jwks-operator` binary (the
    /// benchmarks run a release build).
    pub fn start_binary(binary: &Path, kubeconfig: &Path, args: &[String]) -> Operator {
        Operator::start_binary_within(binary, kubeconfig, args, Duration::from_secs(30))
    }

    /// Like [`Operator::start_binary`], waiting up to `ready_within` for
    /// `/readyz` (a start with thousands of policies lists them all first).
    pub fn start_binary_within(
        binary: &Path,
        kubeconfig: &Path,
        args: &[String],
        ready_within: Duration,
    ) -> Operator {
        Operator::start_binary_within_env(binary, kubeconfig, args, ready_within, &[])
    }

    /// Like [`Operator::start_binary_within`], with extra environment
    /// variables (such as `SOFTHSM2_CONF`).
    pub fn start_binary_within_env(
        binary: &Path,
        kubeconfig: &Path,
        args: &[String],
        ready_within: Duration,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Operator {
        let (jwks_port, token_port) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("jwks-operator-{jwks_port}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg("run")
            .arg(format!("--jwks-addr=127.0.0.1:{jwks_port}"))
            .arg(format!("--token-addr=127.0.0.1:{token_port}"))
            // Short, so tests that watch a key being pruned take seconds;
            // not zero, so the grace is part of every timeline.
            .arg("--propagation-grace=1s")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,kube=warn")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start jwks-operator");
        let op = Operator {
            child: Some(child),
            jwks: format!("http://127.0.0.1:{jwks_port}"),
            token: format!("http://127.0.0.1:{token_port}"),
            log,
        };
        op.wait_ready(ready_within);
        op
    }

    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = ureq::get(&format!("{}/readyz", self.jwks)).call()
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "operator not ready in {limit:?}\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        super::controlplane::log_tail(&self.log, lines)
    }

    /// Its whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET a path on the JWKS listener: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.jwks))
    }

    /// POST JSON to a path on the token listener: (status, body as JSON).
    pub fn post_token(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(&format!("{}{path}", self.token))
            .send_json(body)
            .expect("POST to the token listener");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// GET without treating 4xx/5xx as errors: (status, body).
pub fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut r) => {
            let status = r.status().as_u16();
            (status, r.body_mut().read_to_string().unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// The `kid` of every key of a JWKS document, in order (`""` for a key
/// without one; nothing for a body that is not a JWKS).
pub fn kids(jwks: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(jwks).unwrap_or_default();
    v["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (at most `limit`) until replicas `a` and `b` both answer 200 on
/// `path` with the same body, and returns that body.
pub async fn same_answer(a: &Operator, b: &Operator, path: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (ca, ja) = a.get(path);
        let (cb, jb) = b.get(path);
        if (ca, cb) == (200, 200) && ja == jb {
            return ja;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas do not serve the same {path} within {limit:?}: {ca} {ja} / {cb} {jb}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- operator log tail ({})\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
        self.kill();
    }
}

/// A test namespace with the chart's identity in it, and helpers to drive
/// policies there as admin.
pub struct TestEnv {
    /// The control plane.
    pub cp: &'static ControlPlane,
    /// Cluster-admin client.
    pub admin: Client,
    /// This test's namespace (also the chart release's).
    pub ns: String,
    /// The chart's ServiceAccount identity in it.
    pub id: ChartIdentity,
    _dump: super::controlplane::DumpOnFailure,
}

// === impl TestEnv ===

impl TestEnv {
    /// Installs a ValidatingAdmissionPolicy, bound to this namespace only,
    /// that refuses `operations` (`CREATE`, `UPDATE`) on the Secrets
    /// labelled `jwks.dev/policy: <policy>` with `message`, as a cluster's own
    /// rules might. Returns its name for [`TestEnv::allow_policy_secrets`].
    /// Admission policies take effect a moment later: the caller checks.
    pub async fn refuse_policy_secrets(
        &self,
        policy: &str,
        operations: &[&str],
        message: &str,
    ) -> String {
        use k8s_openapi::api::admissionregistration::v1::{
            ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
        };
        use kube::api::{Api, PostParams};
        let name = format!("refuse-{}", self.ns);
        let vap: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"],
                    "operations": operations, "resources": ["secrets"],
                }]},
                "validations": [{
                    "expression": format!("!has(object.metadata.labels) || !('jwks.dev/policy' in object.metadata.labels) || object.metadata.labels['jwks.dev/policy'] != '{policy}'"),
                    "message": message,
                }],
            },
        }))
        .unwrap();
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.ns}}},
            },
        }))
        .unwrap();
        let vaps: Api<ValidatingAdmissionPolicy> = Api::all(self.admin.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(self.admin.clone());
        vaps.create(&PostParams::default(), &vap).await.unwrap();
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
        name
    }

    /// Removes what [`TestEnv::refuse_policy_secrets`] installed.
    pub async fn allow_policy_secrets(&self, name: &str) {
        use k8s_openapi::api::admissionregistration::v1::{
            ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
        };
        use kube::api::{Api, DeleteParams};
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(self.admin.clone());
        let vaps: Api<ValidatingAdmissionPolicy> = Api::all(self.admin.clone());
        bindings
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        vaps.delete(name, &DeleteParams::default()).await.unwrap();
    }

    /// A fresh namespace `<prefix>-<random>` with the chart's RBAC for a
    /// release of the same name (one release per test: the ClusterRole is
    /// cluster-scoped).
    pub async fn new(prefix: &str) -> TestEnv {
        let cp = super::controlplane::control_plane().await;
        let admin = cp.admin_client().await;
        let ns = cp.namespace(&admin, prefix).await;
        let id = chart_identity(cp, &admin, &ns, &ns, &[]).await;
        TestEnv {
            cp,
            admin,
            ns,
            id,
            _dump: super::controlplane::DumpOnFailure(cp),
        }
    }

    /// Starts the operator as the chart's ServiceAccount, watching this
    /// namespace, with `extra` flags.
    pub fn operator(&self, extra: &[&str]) -> Operator {
        let mut args = vec![format!("--namespace={}", self.ns)];
        args.extend(extra.iter().map(|s| s.to_string()));
        Operator::start(&self.id.kubeconfig, &args)
    }

    /// [`TestEnv::operator`] with extra environment variables.
    pub fn operator_env(&self, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Operator {
        let mut args = vec![format!("--namespace={}", self.ns)];
        args.extend(extra.iter().map(|s| s.to_string()));
        Operator::start_binary_within_env(
            Path::new(env!("CARGO_BIN_EXE_jwks-operator")),
            &self.id.kubeconfig,
            &args,
            Duration::from_secs(30),
            env,
        )
    }

    /// Policies in this namespace, as admin.
    pub fn policies(&self) -> kube::Api<jwks_operator::api::KeyRotationPolicy> {
        kube::Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Secrets in this namespace, as admin.
    pub fn secrets(&self) -> kube::Api<k8s_openapi::api::core::v1::Secret> {
        kube::Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Creates policy `name` with `spec`.
    pub async fn create(
        &self,
        name: &str,
        spec: serde_json::Value,
    ) -> jwks_operator::api::KeyRotationPolicy {
        let p: jwks_operator::api::KeyRotationPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "KeyRotationPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        self.policies()
            .create(&Default::default(), &p)
            .await
            .expect("create policy")
    }
}
