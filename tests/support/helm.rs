//! The Helm chart (`charts/jwks-operator`) driven by the pinned helm binary
//! from `tests/controlplane/build.sh`: render it, and install, upgrade and
//! uninstall it on the test control plane.
//!
//! For an end-to-end test of the operator as the chart deploys it:
//!
//! ```ignore
//! let release = install_chart(cp, &ns, &[]).await;     // the chart's RBAC, in `ns`
//! let kubeconfig = release.service_account_kubeconfig(cp).await;
//! let args = release.operator_args_listening_on("127.0.0.1:18080", "127.0.0.1:19090", None);
//! Command::new(env!("CARGO_BIN_EXE_jwks-operator"))
//!     .args(&args)
//!     .env("KUBECONFIG", &kubeconfig)
//!     .envs(release.operator_env("jwks-operator-0"))
//!     .spawn()
//! ```
//!
//! Every helm invocation gets HELM_*_HOME directories under the target dir,
//! so tests never read or write the user's helm configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use super::controlplane::{ControlPlane, bin_dir, kubeconfig_yaml};
use super::markdown::{first_sh_block, readme, section};

/// The chart directory.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/jwks-operator")
}

/// The commands of the first ```sh block under `### <heading>` in README.md,
/// each split into words. Panics on a line that would need a shell (quotes,
/// pipes, variables): the tests run them without one.
pub fn readme_commands(heading: &str) -> Vec<Vec<String>> {
    let readme = readme();
    let heading = format!("### {heading}");
    first_sh_block(section(&readme, "README.md", &heading), &heading)
        .into_iter()
        .map(|line| {
            assert!(
                !line.contains(['"', '\'', '|', '&', ';', '$', '\\']),
                "`{line}` needs a shell; extend this test's parser before using one"
            );
            line.split_whitespace().map(str::to_owned).collect()
        })
        .collect()
}

/// The directory holding `helm` and `kubectl` (built once per test binary).
pub fn tools_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| bin_dir().unwrap_or_else(|e| panic!("control-plane tools: {e}")))
}

/// A fresh lowercase hex suffix for release names.
pub fn random_suffix() -> String {
    use rand::RngExt as _;
    format!("{:06x}", rand::rng().random::<u32>() & 0xff_ffff)
}

/// A `helm` command isolated from the user's helm configuration; with a
/// kubeconfig when it talks to a cluster.
pub fn helm_command(kubeconfig: Option<&Path>) -> Command {
    // Under target/tmp: private to this checkout, and nothing to clean up
    // (helm writes nothing there for local charts).
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let mut cmd = Command::new(tools_dir().join("helm"));
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_DRIVER")
        .env_remove("HELM_NAMESPACE");
    match kubeconfig {
        Some(path) => cmd.env("KUBECONFIG", path),
        // No cluster: point KUBECONFIG nowhere, so nothing leaks in.
        None => cmd.env("KUBECONFIG", home.join("no-kubeconfig")),
    };
    cmd
}

/// A `kubectl` command using `kubeconfig`.
pub fn kubectl_command(kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(tools_dir().join("kubectl"));
    cmd.env("KUBECONFIG", kubeconfig);
    cmd
}

/// `--set key=value` arguments (helm's `--set` syntax: `{a,b}` is a list).
pub fn set_args(values: &[(&str, &str)]) -> Vec<String> {
    values
        .iter()
        .flat_map(|(k, v)| ["--set".to_owned(), format!("{k}={v}")])
        .collect()
}

/// Runs `cmd`, returning stdout on success and a report (command, status,
/// stderr) on failure.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let printable = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {printable}: {e}"));
    report(&printable, out)
}

/// The async twin of [`run`], for tests on a tokio runtime.
pub async fn run_async(cmd: Command) -> Result<String, String> {
    let printable = format!("{cmd:?}");
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {printable}: {e}"));
    report(&printable, out)
}

fn report(cmd: &str, out: Output) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd} failed ({}):\n{stderr}{}",
            out.status,
            if stdout.is_empty() {
                String::new()
            } else {
                format!("\nstdout:\n{stdout}")
            }
        ))
    }
}

/// The value every render and install of the tests starts from: the image
/// is one loaded into the node (no image is published, and the chart refuses
/// its default repository without this, a repository or a digest).
pub const LOCAL_IMAGE: (&str, &str) = ("image.pullPolicy", "Never");

/// `helm template <release> charts/jwks-operator -n <namespace> --set ...`
/// (after [`LOCAL_IMAGE`]): the rendered manifest, or helm's error text.
pub fn template(release: &str, namespace: &str, values: &[(&str, &str)]) -> Result<String, String> {
    run(helm_command(None)
        .args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace])
        .args(set_args(&[LOCAL_IMAGE]))
        .args(set_args(values)))
}

/// Parses a multi-document YAML stream into JSON values, dropping empty documents.
pub fn parse_manifest(yaml: &str) -> Vec<Value> {
    jwks_operator::yaml::documents(yaml)
        .into_iter()
        .map(|doc| doc.value.expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// [`template`] + [`parse_manifest`], panicking on a render error.
pub fn render(release: &str, namespace: &str, values: &[(&str, &str)]) -> Vec<Value> {
    let yaml = template(release, namespace, values).unwrap_or_else(|e| panic!("{e}"));
    parse_manifest(&yaml)
}

/// Renders one object as a YAML stream.
pub fn to_yaml_stream(objects: &[&Value]) -> String {
    objects
        .iter()
        .map(|o| format!("---\n{}", jwks_operator::yaml::to_string(o).unwrap()))
        .collect()
}

/// An installed release of the chart.
#[derive(Debug, Clone)]
pub struct Release {
    /// Helm release name (unique per call: cluster-scoped RBAC objects are
    /// named after it).
    pub name: String,
    /// Release namespace: where the ServiceAccount, Deployment, Service and
    /// leader-election Lease live.
    pub namespace: String,
    /// The ServiceAccount the chart runs the operator as.
    pub service_account: String,
    /// The `--set` values it was installed (or last upgraded) with, including
    /// the `crds.enabled=false` default of [`install_chart`].
    pub values: Vec<(String, String)>,
    /// The objects of the release (`helm get manifest`).
    pub manifest: Vec<Value>,
    /// What `helm install` printed (NOTES included).
    pub install_output: String,
    kubeconfig: PathBuf,
}

/// Installs the chart into namespace `ns` as a release with a fresh name and
/// returns it; panics with helm's message when the install fails.
///
/// The CRD is cluster-scoped and shared by every test of the binary, so it is
/// installed by the harness (`cp.install_crd`) and the release gets
/// `crds.enabled=false` unless `values` says otherwise. `values` are helm
/// `--set` pairs, e.g. `[("watchNamespaces", "{team-a,team-b}")]`.
/// No kubelet runs: the Deployment's pods are never started.
pub async fn install_chart(cp: &ControlPlane, ns: &str, values: &[(&str, &str)]) -> Release {
    install_chart_with(cp, ns, values, &[]).await
}

/// [`install_chart`] with extra `helm install` flags (e.g. `--take-ownership`).
pub async fn install_chart_with(
    cp: &ControlPlane,
    ns: &str,
    values: &[(&str, &str)],
    flags: &[&str],
) -> Release {
    let admin = cp.admin_client().await;
    cp.install_crd(&admin).await;
    let name = format!("jwks-operator-{}", random_suffix());
    let mut all: Vec<(String, String)> = vec![
        ("crds.enabled".into(), "false".into()),
        (LOCAL_IMAGE.0.into(), LOCAL_IMAGE.1.into()),
    ];
    all.extend(values.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut cmd = helm_command(Some(&cp.kubeconfig));
    cmd.args(["install", &name])
        .arg(chart_dir())
        .args(["--namespace", ns, "--timeout", "60s"])
        .args(flags)
        .args(set_args(&borrowed(&all)));
    let install_output = run_async(cmd).await.unwrap_or_else(|e| panic!("{e}"));
    let mut release = Release {
        name,
        namespace: ns.to_owned(),
        service_account: String::new(),
        values: all,
        manifest: Vec::new(),
        install_output,
        kubeconfig: cp.kubeconfig.clone(),
    };
    release.refresh_manifest().await;
    release
}

fn borrowed(values: &[(String, String)]) -> Vec<(&str, &str)> {
    values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

// === impl Release ===

impl Release {
    async fn refresh_manifest(&mut self) {
        let mut cmd = helm_command(Some(&self.kubeconfig));
        cmd.args([
            "get",
            "manifest",
            &self.name,
            "--namespace",
            &self.namespace,
        ]);
        let yaml = run_async(cmd).await.unwrap_or_else(|e| panic!("{e}"));
        self.manifest = parse_manifest(&yaml);
        self.service_account = self.deployment()["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .expect("the Deployment names its ServiceAccount")
            .to_owned();
    }

    /// The first object of `kind` in the release, if any.
    pub fn object(&self, kind: &str) -> Option<&Value> {
        self.manifest.iter().find(|o| o["kind"] == kind)
    }

    /// The operator Deployment.
    pub fn deployment(&self) -> &Value {
        self.object("Deployment")
            .expect("the release has a Deployment")
    }

    /// The operator container's arguments exactly as the chart renders them
    /// (`run --jwks-addr=0.0.0.0:8080 ...`).
    pub fn operator_args(&self) -> Vec<String> {
        self.deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("container args")
            .iter()
            .map(|a| a.as_str().expect("string arg").to_owned())
            .collect()
    }

    /// The chart's arguments with the listen addresses replaced, for running
    /// the binary as a local process. `token_addr` replaces `--token-addr`
    /// when the release has the token listener on.
    pub fn operator_args_listening_on(
        &self,
        jwks_addr: &str,
        metrics_addr: &str,
        token_addr: Option<&str>,
    ) -> Vec<String> {
        self.operator_args()
            .into_iter()
            .map(|arg| {
                if arg.starts_with("--jwks-addr=") {
                    format!("--jwks-addr={jwks_addr}")
                } else if arg.starts_with("--metrics-addr=") {
                    format!("--metrics-addr={metrics_addr}")
                } else if let (true, Some(token)) = (arg.starts_with("--token-addr="), token_addr) {
                    format!("--token-addr={token}")
                } else {
                    arg
                }
            })
            .collect()
    }

    /// The environment the pod gets from the downward API.
    pub fn operator_env(&self, pod_name: &str) -> Vec<(String, String)> {
        vec![
            ("POD_NAMESPACE".into(), self.namespace.clone()),
            ("POD_NAME".into(), pod_name.to_owned()),
        ]
    }

    /// `system:serviceaccount:<namespace>:<name>`: the user RBAC sees.
    pub fn service_account_user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// A kubeconfig file authenticating as the chart's ServiceAccount (a
    /// TokenRequest token): run the operator with `KUBECONFIG` set to it and
    /// it has exactly the chart's permissions.
    pub async fn service_account_kubeconfig(&self, cp: &ControlPlane) -> PathBuf {
        let admin = cp.admin_client().await;
        let token = cp
            .service_account_token(&admin, &self.namespace, &self.service_account)
            .await;
        let path = cp
            .dir
            .join(format!("kubeconfig-{}-{}", self.namespace, self.name));
        std::fs::write(
            &path,
            kubeconfig_yaml(&cp.api_url, &cp.dir.join("ca.crt"), &token),
        )
        .expect("write the ServiceAccount kubeconfig");
        path
    }

    /// `helm upgrade` with the release's values plus `values` (later wins).
    pub async fn upgrade(&mut self, values: &[(&str, &str)]) -> String {
        self.values
            .extend(values.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut cmd = helm_command(Some(&self.kubeconfig));
        cmd.args(["upgrade", &self.name])
            .arg(chart_dir())
            .args(["--namespace", &self.namespace, "--timeout", "60s"])
            .args(set_args(&borrowed(&self.values)));
        let out = run_async(cmd).await.unwrap_or_else(|e| panic!("{e}"));
        self.refresh_manifest().await;
        out
    }

    /// `helm uninstall`.
    pub async fn uninstall(&self) -> String {
        let mut cmd = helm_command(Some(&self.kubeconfig));
        cmd.args(["uninstall", &self.name, "--namespace", &self.namespace]);
        run_async(cmd).await.unwrap_or_else(|e| panic!("{e}"))
    }
}
