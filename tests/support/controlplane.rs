//! A real Kubernetes control plane for integration tests: etcd,
//! kube-apiserver and kube-controller-manager started as local processes from
//! the binaries `tests/controlplane/build.sh` builds (envtest-style).
//!
//! One control plane per test binary, shared by its tests; each test gets its
//! own namespace. The processes run under a supervisor shell that kills them
//! and removes the work directory as soon as the test binary exits, however
//! it exits (its stdin is a pipe from this process).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use super::pki::{leaf_cert, test_ca};

/// A running control plane.
pub struct ControlPlane {
    /// Work directory: certificates, kubeconfig, etcd data, component logs.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub api_url: String,
    /// Bearer token of a `system:masters` user.
    pub admin_token: String,
    /// Admin kubeconfig file (for kubectl, helm and the operator binary).
    pub kubeconfig: PathBuf,
    /// The CA that signed the API server's serving certificate (PEM).
    pub ca_pem: String,
    /// Where the control-plane binaries are (kubectl, helm too).
    pub bin: PathBuf,
    /// `http://127.0.0.1:<port>` of etcd, for more kube-apiservers ([`apiserver_argv`]).
    pub etcd_url: String,
    // Kept so the supervisor's stdin pipe stays open for our lifetime.
    _supervisor: Child,
}

static PLANE: OnceCell<ControlPlane> = OnceCell::const_new();

/// Settings of a test binary's control plane (most need none).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Appended to kube-apiserver's command line (e.g. `--authentication-config=...`).
    pub extra_apiserver_args: Vec<String>,
}

/// The shared control plane of this test binary, started on first use.
pub async fn control_plane() -> &'static ControlPlane {
    control_plane_with(Options::default()).await
}

/// [`control_plane`], started with `options` if this is the first use
/// (later calls get the running one whatever their options).
pub async fn control_plane_with(options: Options) -> &'static ControlPlane {
    PLANE
        .get_or_init(|| async {
            match ControlPlane::start(options).await {
                Ok(cp) => cp,
                Err(e) => panic!("starting the test control plane failed: {e}"),
            }
        })
        .await
}

/// Where the control-plane binaries (and kubectl, helm) are: `$JWKS_CP_BIN`,
/// else the directory `tests/controlplane/build.sh` prints (it builds them
/// once, then only checks its stamps).
pub fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("JWKS_CP_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); it builds the control plane from the Go module proxy",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim().to_owned();
    if dir.is_empty() {
        return Err(format!("{} printed no bin dir", script.display()));
    }
    Ok(PathBuf::from(dir))
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// `bytes` random bytes as lowercase hex (names, tokens).
pub(crate) fn random_hex(bytes: usize) -> String {
    use rand::RngExt as _;
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

struct Certs {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn make_certs() -> Result<Certs, String> {
    let (ca_pem, issuer) = test_ca("jwks-operator test CA")?;
    let (server_cert_pem, server_key_pem) = leaf_cert(
        &issuer,
        "kube-apiserver",
        None,
        &["localhost"],
        &[[127, 0, 0, 1]],
        &[],
    )?;
    Ok(Certs {
        ca_pem,
        server_cert_pem,
        server_key_pem,
    })
}

/// A new RSA service-account key pair: (PKCS#8 private PEM, SPKI public PEM).
pub(crate) fn service_account_keys() -> Result<(String, String), String> {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let mut rng = rand::rng();
    let key = rsa::PrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())?;
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?
        .to_string();
    let public = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    Ok((private, public))
}

/// Writes `content` to `path`, creating its parent directories.
pub(crate) fn write(path: &Path, content: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(path, content).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Writes a kube-apiserver's token credentials into `pki`: a new
/// service-account key pair (`sa.key`, `sa.pub`) and `tokens.csv` with one
/// `system:masters` user, whose bearer token it returns.
pub(crate) fn write_api_credentials(pki: &Path) -> Result<String, String> {
    let (sa_key, sa_pub) = service_account_keys()?;
    write(&pki.join("sa.key"), &sa_key)?;
    write(&pki.join("sa.pub"), &sa_pub)?;
    let admin_token = random_hex(24);
    write(
        &pki.join("tokens.csv"),
        &format!("{admin_token},admin,admin-uid,\"system:masters\"\n"),
    )?;
    Ok(admin_token)
}

/// A client for the API server at `api_url` that trusts `ca_file` and sends
/// `token`; its kubeconfig is written to a new file in `dir`.
pub(crate) async fn token_client(dir: &Path, api_url: &str, ca_file: &Path, token: &str) -> Client {
    let path = dir.join(format!("kubeconfig-{}", random_hex(4)));
    write(&path, &kubeconfig_yaml(api_url, ca_file, token)).expect("write kubeconfig");
    let kubeconfig = Kubeconfig::read_from(&path).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig to config");
    Client::try_from(config).expect("client")
}

/// The last `lines` lines of `<logs>/<name>.log` for each of `names`, each
/// under a header, for failure reports.
pub(crate) fn log_tails(logs: &Path, names: &[&str], lines: usize) -> String {
    let mut out = String::new();
    for name in names {
        let path = logs.join(format!("{name}.log"));
        out.push_str(&format!("---- {name} ({})\n", path.display()));
        out.push_str(&log_tail(&path, lines));
        out.push('\n');
    }
    out
}

/// The last `lines` lines of the log file `path` (nothing when it cannot
/// be read), for failure reports.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `bash -c script` with its stdin a pipe from this process, so the
/// script can wait for it to close (this test binary exiting) and clean up.
pub(crate) fn spawn_supervisor(script: &str) -> Result<Child, String> {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the supervisor: {e}"))
}

/// Renders a kubeconfig for `server` trusting `ca` and authenticating with `token`.
pub fn kubeconfig_yaml(server: &str, ca_file: &Path, token: &str) -> String {
    kubeconfig_with(server, ca_file, &[("token", token)])
}

/// Renders a kubeconfig for `server` trusting `ca_file`, whose user holds the
/// `credentials` (`token`, or `client-certificate` and `client-key`).
pub fn kubeconfig_with(server: &str, ca_file: &Path, credentials: &[(&str, &str)]) -> String {
    let user: String = credentials
        .iter()
        .map(|(field, value)| format!("    {field}: {value}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: user\n  user:\n{user}contexts:\n- name: test\n  context: {{cluster: test, user: user}}\ncurrent-context: test\n",
        ca = ca_file.display()
    )
}

/// How a kube-apiserver signs service-account tokens.
pub enum SaSigning {
    /// `sa.key` / `sa.pub` in the work directory.
    KeyFiles,
    /// An external signer on this Unix socket (`--service-account-signing-endpoint`).
    Endpoint(PathBuf),
}

/// kube-apiserver's command line on this control plane's etcd, certificates
/// and tokens (`dir` is [`ControlPlane::dir`]), serving on `port`, issuing
/// service-account tokens as `issuer` (https, so `/openid/v1/jwks` is served).
pub fn apiserver_argv(
    bin: &Path,
    dir: &Path,
    etcd_url: &str,
    port: u16,
    issuer: &str,
    signing: &SaSigning,
) -> Vec<String> {
    let d = |name: &str| dir.join(name).display().to_string();
    let mut argv = vec![
        bin.join("kube-apiserver").display().to_string(),
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--tls-cert-file={}", d("apiserver.crt")),
        format!("--tls-private-key-file={}", d("apiserver.key")),
        format!("--cert-dir={}", d("cert-dir")),
        format!("--token-auth-file={}", d("tokens.csv")),
        "--authorization-mode=RBAC".into(),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
        "--disable-admission-plugins=ServiceAccount".into(),
        // On by default in OpenShift: ownerReferences need delete on the
        // object, blockOwnerDeletion needs update on the owner's finalizers.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
        format!("--service-account-issuer={issuer}"),
    ];
    match signing {
        SaSigning::KeyFiles => {
            argv.push(format!("--service-account-key-file={}", d("sa.pub")));
            argv.push(format!(
                "--service-account-signing-key-file={}",
                d("sa.key")
            ));
        }
        SaSigning::Endpoint(socket) => {
            argv.push(format!(
                "--service-account-signing-endpoint={}",
                socket.display()
            ));
        }
    }
    argv
}

// === impl ControlPlane ===

impl ControlPlane {
    async fn start(options: Options) -> Result<ControlPlane, String> {
        let started = Instant::now();
        let bin = bin_dir()?;
        let dir = std::env::temp_dir().join(format!("jwks-cp-{}", random_hex(6)));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;

        let certs = make_certs()?;
        write(&dir.join("ca.crt"), &certs.ca_pem)?;
        write(&dir.join("apiserver.crt"), &certs.server_cert_pem)?;
        write(&dir.join("apiserver.key"), &certs.server_key_pem)?;
        let admin_token = write_api_credentials(&dir)?;

        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let api_url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_yaml(&api_url, &dir.join("ca.crt"), &admin_token),
        )?;

        let d = |name: &str| dir.join(name).display().to_string();
        let etcd = vec![
            bin.join("etcd").display().to_string(),
            "--name=test".into(),
            format!("--data-dir={}", d("etcd-data")),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=test=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let mut apiserver = apiserver_argv(
            &bin,
            &dir,
            &etcd_url,
            api_port,
            &api_url,
            &SaSigning::KeyFiles,
        );
        apiserver.extend(options.extra_apiserver_args);
        let controller_manager = vec![
            bin.join("kube-controller-manager").display().to_string(),
            format!("--kubeconfig={}", kubeconfig.display()),
            "--controllers=garbage-collector-controller,namespace-controller".into(),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ];

        // The supervisor runs each component in the background, logging to
        // <dir>/<name>.log, in a loop that writes its pid to <dir>/<name>.pid
        // and starts it again when it exits, unless <dir>/<name>.hold exists
        // (the chaos helpers below). It waits for its stdin to close (this
        // test binary exiting), then kills them all and removes the work dir.
        let mut script = String::from("set -u\npids=\n");
        for (name, argv) in [
            ("etcd", &etcd),
            ("kube-apiserver", &apiserver),
            ("kube-controller-manager", &controller_manager),
        ] {
            let quoted: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
            let log = d(&format!("{name}.log"));
            // The garbage collector only notices CRDs created after it started
            // on its next 30 s rediscovery: hold it back until the harness has
            // installed ours (it touches `start-gc`).
            let gate = if name == "kube-controller-manager" {
                format!("while [ ! -e '{}' ]; do sleep 0.1; done; ", d("start-gc"))
            } else {
                String::new()
            };
            script.push_str(&format!(
                "( {gate}while :; do while [ -e '{hold}' ]; do sleep 0.1; done; {argv} & echo $! >'{pid}'; wait $!; sleep 0.2; done ) >'{log}' 2>&1 &\npids=\"$pids $!\"\n",
                hold = d(&format!("{name}.hold")),
                pid = d(&format!("{name}.pid")),
                argv = quoted.join(" "),
            ));
        }
        script.push_str(&format!(
            "cat >/dev/null\nkill -9 $pids 2>/dev/null\nkill -9 $(cat '{dir}'/*.pid 2>/dev/null) 2>/dev/null\nwait 2>/dev/null\nrm -rf '{dir}'\n",
            dir = dir.display()
        ));
        let supervisor = spawn_supervisor(&script)?;
        let mut plane = ControlPlane {
            dir,
            api_url,
            admin_token,
            kubeconfig,
            ca_pem: certs.ca_pem,
            bin,
            etcd_url,
            _supervisor: supervisor,
        };
        if let Err(e) = plane.wait_ready(Duration::from_secs(90)).await {
            return Err(format!("{e}\n{}", plane.log_tails(40)));
        }
        plane.install_crd(&plane.admin_client().await).await;
        write(&plane.dir.join("start-gc"), "")?;
        // Keep stdin open: dropping it would stop everything.
        if let Some(stdin) = plane._supervisor.stdin.as_mut() {
            let _ = stdin.flush();
        }
        eprintln!(
            "[controlplane] ready at {} in {:.1}s (work dir {})",
            plane.api_url,
            started.elapsed().as_secs_f64(),
            plane.dir.display()
        );
        Ok(plane)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let client = self.admin_client().await;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                _ if Instant::now() > deadline => {
                    return Err(format!("kube-apiserver not ready within {limit:?}"));
                }
                _ => {}
            }
            if let Ok(Some(status)) = self._supervisor.try_wait() {
                return Err(format!("the control-plane supervisor exited: {status}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `lines` lines of every component's log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        log_tails(
            &self.dir,
            &["etcd", "kube-apiserver", "kube-controller-manager"],
            lines,
        )
    }

    /// A client for `token` (admin when it is the admin token).
    pub async fn client_with_token(&self, token: &str) -> Client {
        token_client(&self.dir, &self.api_url, &self.dir.join("ca.crt"), token).await
    }

    /// A cluster-admin client. Create one per test: a client belongs to the
    /// runtime it was made on.
    pub async fn admin_client(&self) -> Client {
        self.client_with_token(&self.admin_token).await
    }

    /// Creates a namespace named `<prefix>-<random>` and returns its name.
    pub async fn namespace(&self, client: &Client, prefix: &str) -> String {
        let name = format!("{prefix}-{}", random_hex(3));
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        name
    }

    /// Creates (if needed) ServiceAccount `ns/name` and returns a bearer token
    /// for it from the TokenRequest API: a client with it has exactly the
    /// permissions RBAC grants that ServiceAccount.
    pub async fn service_account_token(&self, admin: &Client, ns: &str, name: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
        let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}
        }))
        .unwrap();
        match accounts.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create serviceaccount {ns}/{name}: {e}"),
        }
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}
        });
        let response: serde_json::Value = accounts
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .expect("request a serviceaccount token");
        response["status"]["token"]
            .as_str()
            .expect("token in TokenRequest status")
            .to_owned()
    }

    /// A client acting as ServiceAccount `ns/name`.
    pub async fn service_account_client(&self, admin: &Client, ns: &str, name: &str) -> Client {
        let token = self.service_account_token(admin, ns, name).await;
        self.client_with_token(&token).await
    }

    /// Applies the committed CRD (server-side apply) and waits until it is
    /// Established.
    pub async fn install_crd(&self, client: &Client) {
        let yaml = include_str!("../../crds/keyrotationpolicies.jwks.dev.yaml");
        let crd: CustomResourceDefinition =
            jwks_operator::yaml::from_str(yaml).expect("CRD parses");
        apply_crd(client, &crd).await;
    }
}

/// Applies `crd` (forced server-side apply) and waits until it is Established.
pub async fn apply_crd(client: &Client, crd: &CustomResourceDefinition) {
    let name = crd.metadata.name.clone().expect("the CRD has a name");
    Api::<CustomResourceDefinition>::all(client.clone())
        .patch(
            &name,
            &PatchParams::apply("jwks-operator-tests").force(),
            &Patch::Apply(crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
    wait_crd_established(client, &name).await;
}

/// Waits until CRD `name` is Established; panics after 30 s.
pub async fn wait_crd_established(client: &Client, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get CRD {name}: {e}"));
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "CRD {name} not Established in 30s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A control-plane process the chaos helpers can stop, continue and restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// etcd.
    Etcd,
    /// kube-apiserver.
    ApiServer,
}

// === impl Component ===

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
        }
    }
}

/// Sends `signal` to `pid` with kill(1).
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Chaos: stop, continue and restart components. Use them only in a test
/// binary of their own (every test of a binary shares its control plane).
impl ControlPlane {
    /// The pid of the running `component`.
    pub fn pid(&self, component: Component) -> u32 {
        let path = self.dir.join(format!("{}.pid", component.name()));
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", path.display()))
    }

    /// SIGSTOPs `component`; it continues when the guard drops (also on panic).
    pub fn pause(&self, component: Component) -> Paused<'_> {
        let pid = self.pid(component);
        signal(pid, "STOP");
        Paused {
            cp: self,
            pid,
            held: None,
        }
    }

    /// SIGKILLs `component` and keeps it down until the guard drops (also on
    /// panic); the supervisor then starts it again on the same data.
    pub fn kill_and_hold(&self, component: Component) -> Paused<'_> {
        let hold = self.dir.join(format!("{}.hold", component.name()));
        std::fs::write(&hold, "").expect("write hold file");
        let pid = self.pid(component);
        signal(pid, "KILL");
        Paused {
            cp: self,
            pid,
            held: Some(component),
        }
    }

    /// Waits until kube-apiserver answers `/readyz` (after a restart).
    pub async fn wait_api_ready(&self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let client = self.admin_client().await;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
            let ready =
                tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await;
            if matches!(ready, Ok(Ok(body)) if body.trim() == "ok") {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                return Err(format!("kube-apiserver not ready within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A stopped or held component; dropping it lets the component run again.
pub struct Paused<'a> {
    cp: &'a ControlPlane,
    pid: u32,
    held: Option<Component>,
}

// === impl Paused ===

impl Paused<'_> {
    /// Lets the component run again now (a restarted one waits for its new pid).
    pub fn resume(self) {
        drop(self);
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        match self.held {
            None => {
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .arg(self.pid.to_string())
                    .status();
            }
            Some(component) => {
                let _ =
                    std::fs::remove_file(self.cp.dir.join(format!("{}.hold", component.name())));
                // The supervisor restarts it within a few hundred ms.
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let path = self.cp.dir.join(format!("{}.pid", component.name()));
                    let pid: Option<u32> = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|s| s.trim().parse().ok());
                    if pid.is_some_and(|p| p != self.pid) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Prints the control plane's log tails if the test panics.
pub struct DumpOnFailure(pub &'static ControlPlane);

impl Drop for DumpOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.log_tails(30));
        }
    }
}
