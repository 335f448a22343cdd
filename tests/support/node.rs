//! A whole single-node Kubernetes cluster for tests that need real pods:
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
//! (with runc), a kubelet and kube-proxy, on a bridge CNI network.
//!
//! Everything runs as descendants of PID 1 of its own PID, mount and network
//! namespaces (`unshare --pid --fork --mount-proc --net --mount --propagation
//! private`): `/run`, `/var/lib` and `/var/log` are tmpfs inside, the
//! sysctls the kubelet insists on setting are files bind-mounted over
//! `/proc/sys/...`, and the node's address is one end of a veth pair that
//! lives entirely in the namespace. So a test never changes the host's
//! network, mounts or sysctls. The only host state is one cgroup directory per
//! hierarchy (`/sys/fs/cgroup/<h>/jwks-node-<id>`, the kubelet's
//! `cgroupRoot`) and the work directory, both removed at teardown.
//!
//! Teardown: the namespaces run under a supervisor shell whose stdin is a
//! pipe from the test process. When the test binary exits (normally, after a
//! panic, or killed), the pipe closes; the supervisor kills the namespace's
//! init (the kernel then kills every process in it: containers, shims,
//! kubelet), removes the cgroup directories and the work directory.
//!
//! The test process reaches the node's addresses (the API server, pod IPs,
//! Service ClusterIPs) by moving the calling thread into the node's network
//! namespace ([`Node::enter_network`], done by [`node`]): call it at the start
//! of each test, before making clients; child processes the thread starts
//! (helm, kubectl) inherit it.
//!
//! ```ignore
//! let node = node().await;                 // started once per test binary
//! let client = node.admin_client().await;  // https://10.77.0.2:6443
//! node.import_image(&tarball);             // ctr -n k8s.io images import
//! ```

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::Client;
use kube::api::Api;
use tokio::sync::OnceCell;

use super::controlplane::{
    bin_dir, kubeconfig_with, kubeconfig_yaml, log_tails, random_hex, spawn_supervisor,
    token_client, write, write_api_credentials,
};
use super::pki::{leaf_cert, test_ca};

/// The node's address (one end of the namespace's veth pair).
pub const NODE_IP: &str = "10.77.0.2";
/// The node's name.
pub const NODE_NAME: &str = "jwks-node";
/// Service ClusterIP range; the `kubernetes` Service is its first address.
pub const SERVICE_CIDR: &str = "10.96.0.0/24";
/// Pod addresses (host-local IPAM on the `cni0` bridge).
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The image containerd runs as every pod's sandbox (imported at start-up).
pub const PAUSE_IMAGE: &str = "localhost/jwks-operator/pause:1";
const API_PORT: u16 = 6443;

/// A running single-node cluster.
pub struct Node {
    /// Work directory on the host's filesystem (visible inside the
    /// namespaces): certificates, configs, etcd data, component logs.
    pub dir: PathBuf,
    /// `https://10.77.0.2:6443`, reachable after [`Node::enter_network`].
    pub api_url: String,
    /// Bearer token of a `system:masters` user.
    pub admin_token: String,
    /// Admin kubeconfig (for kubectl and helm started from a thread that
    /// entered the node's network).
    pub kubeconfig: PathBuf,
    /// Where the Kubernetes binaries are (kubectl and helm too).
    pub bin: PathBuf,
    /// Seconds from the start to the node being `Ready`.
    pub ready_after: Duration,
    /// Host PID of the namespaces' init.
    init_pid: u32,
    /// The node's network namespace, kept open.
    netns: File,
    // Kept so the supervisor's stdin pipe stays open for our lifetime.
    _supervisor: Child,
}

/// Options for [`NodeBuilder::start`].
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder {
    apiserver_flags: Vec<String>,
    apiserver_flags_removed: Vec<String>,
    controller_manager_flags_removed: Vec<String>,
}

static NODE: OnceCell<Node> = OnceCell::const_new();

/// The shared node of this test binary, started on first use with the
/// default options; moves the calling thread into its network namespace.
pub async fn node() -> &'static Node {
    let node = NODE
        .get_or_init(|| async {
            NodeBuilder::default()
                .start()
                .await
                .unwrap_or_else(|e| panic!("starting the test node failed: {e}"))
        })
        .await;
    node.enter_network();
    node
}

fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

fn flag_name(flag: &str) -> &str {
    flag.split('=').next().unwrap_or(flag)
}

/// The node's PKI: one CA signs the API server's serving certificate, the
/// API server's client certificate for kubelets, and the kubelet's client
/// certificate (`system:node:<name>` in `system:nodes`, as the Node
/// authorizer expects).
struct Pki {
    ca: String,
    apiserver: (String, String),
    apiserver_kubelet_client: (String, String),
    kubelet_client: (String, String),
}

fn make_pki() -> Result<Pki, String> {
    use rcgen::ExtendedKeyUsagePurpose;
    let (ca, issuer) = test_ca("jwks-operator test node CA")?;
    let leaf = |cn: &str,
                org: Option<&str>,
                dns: &[&str],
                ips: &[[u8; 4]],
                usage: ExtendedKeyUsagePurpose| {
        leaf_cert(&issuer, cn, org, dns, ips, &[usage])
    };
    let node_ip: std::net::Ipv4Addr = NODE_IP.parse().unwrap();
    Ok(Pki {
        ca,
        apiserver: leaf(
            "kube-apiserver",
            None,
            &[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            &[[127, 0, 0, 1], node_ip.octets(), [10, 96, 0, 1]],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?,
        apiserver_kubelet_client: leaf(
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            &[],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?,
        kubelet_client: leaf(
            &format!("system:node:{NODE_NAME}"),
            Some("system:nodes"),
            &[],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?,
    })
}

/// Packs `binary` alone as an OCI image tarball with `scripts/oci-image.sh`.
fn pack_single_binary(
    binary: &Path,
    name: &str,
    reference: &str,
    out: &Path,
) -> Result<(), String> {
    let rootfs = out.with_extension("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|e| e.to_string())?;
    std::fs::copy(binary, rootfs.join(name))
        .map_err(|e| format!("copying {}: {e}", binary.display()))?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oci-image.sh");
    let status = Command::new("bash")
        .arg(&script)
        .args(["--rootfs".as_ref(), rootfs.as_os_str()])
        .args(["--ref", reference, "--user", "65535:65535"])
        .args(["--entrypoint", &format!("/{name}")])
        .args(["--out".as_ref(), out.as_os_str()])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let _ = std::fs::remove_dir_all(&rootfs);
    if !status.success() {
        return Err(format!("{} failed ({status})", script.display()));
    }
    Ok(())
}

// === impl NodeBuilder ===

impl NodeBuilder {
    /// Adds a kube-apiserver flag (`--name=value`), replacing the harness's
    /// own flag of that name if it has one. For example an external
    /// service-account signer:
    /// `.without_apiserver_flag("--service-account-signing-key-file")
    ///  .apiserver_flag("--service-account-signing-endpoint=/path/signer.sock")`.
    pub fn apiserver_flag(mut self, flag: impl Into<String>) -> Self {
        self.apiserver_flags.push(flag.into());
        self
    }

    /// Drops a kube-apiserver flag the harness would pass (by name, e.g.
    /// `--service-account-key-file`).
    pub fn without_apiserver_flag(mut self, name: impl Into<String>) -> Self {
        self.apiserver_flags_removed.push(name.into());
        self
    }

    /// Drops a kube-controller-manager flag the harness would pass (by name).
    /// With an external signer, `--service-account-private-key-file` (the
    /// legacy token Secrets' key, which kube-apiserver would no longer
    /// accept) goes; `--root-ca-file` stays.
    pub fn without_controller_manager_flag(mut self, name: impl Into<String>) -> Self {
        self.controller_manager_flags_removed.push(name.into());
        self
    }

    /// `defaults` with this builder's flags applied: a flag given here
    /// replaces the default of the same name, removed names are dropped,
    /// added flags come last in the order given.
    pub fn apply_apiserver_flags(&self, mut defaults: Vec<String>) -> Vec<String> {
        let replaced: Vec<&str> = self
            .apiserver_flags
            .iter()
            .map(|f| flag_name(f))
            .chain(self.apiserver_flags_removed.iter().map(String::as_str))
            .collect();
        defaults.retain(|f| !replaced.contains(&flag_name(f)));
        defaults.extend(self.apiserver_flags.iter().cloned());
        defaults
    }

    /// Starts the node and waits until it is `Ready`; the calling thread is
    /// then in the node's network namespace. Each call starts a separate node
    /// in its own namespaces (most tests share one through [`node`]).
    pub async fn start(self) -> Result<Node, String> {
        let started = Instant::now();
        let bin = bin_dir()?;
        for needed in [
            "kubelet",
            "kube-scheduler",
            "kube-proxy",
            "pause",
            "cni/bridge",
        ] {
            if !bin.join(needed).exists() {
                return Err(format!(
                    "{} has no {needed}: run tests/controlplane/build.sh",
                    bin.display()
                ));
            }
        }
        for tool in [
            "containerd",
            "containerd-shim-runc-v2",
            "ctr",
            "runc",
            "iptables",
            "unshare",
            "nsenter",
            "ip",
        ] {
            let found = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(tool).exists());
            if !found {
                return Err(format!(
                    "{tool} is not installed: run scripts/install-node-deps.sh (containerd, runc, iptables from Debian)"
                ));
            }
        }
        let id = random_hex(4);
        let dir = std::env::temp_dir().join(format!("jwks-node-{id}"));
        std::fs::create_dir_all(dir.join("logs"))
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cgroup = format!("jwks-node-{id}");
        let d = |name: &str| dir.join(name).display().to_string();

        // Credentials.
        let pki = make_pki()?;
        write(&dir.join("pki/ca.crt"), &pki.ca)?;
        for (name, (cert, key)) in [
            ("apiserver", &pki.apiserver),
            ("apiserver-kubelet-client", &pki.apiserver_kubelet_client),
            ("kubelet-client", &pki.kubelet_client),
        ] {
            write(&dir.join(format!("pki/{name}.crt")), cert)?;
            write(&dir.join(format!("pki/{name}.key")), key)?;
        }
        let admin_token = write_api_credentials(&dir.join("pki"))?;
        let api_url = format!("https://{NODE_IP}:{API_PORT}");
        let kubeconfig = dir.join("kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_yaml(&api_url, &dir.join("pki/ca.crt"), &admin_token),
        )?;
        write(
            &dir.join("kubelet.kubeconfig"),
            &kubeconfig_with(
                &api_url,
                &dir.join("pki/ca.crt"),
                &[
                    ("client-certificate", &d("pki/kubelet-client.crt")),
                    ("client-key", &d("pki/kubelet-client.key")),
                ],
            ),
        )?;

        // Configuration files.
        write(
            &dir.join("containerd.toml"),
            &format!(
                r#"version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # The namespace lacks CAP_SYS_RESOURCE over the host's oom_score_adj
  # range: without this runc cannot start the sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"#,
                cni_bin = bin.join("cni").display(),
                cni_conf = d("cni"),
            ),
        )?;
        write(
            &dir.join("cni/10-jwks-node.conflist"),
            &format!(
                r#"{{"cniVersion": "1.0.0", "name": "jwks-node", "plugins": [
  {{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{POD_CIDR}"}}]], "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}
"#
            ),
        )?;
        write(
            &dir.join("kubelet.yaml"),
            &format!(
                r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine kind has cgroup v1 (hybrid) and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
clusterDomain: cluster.local
failSwapOn: false
# Small disks: evict only when really out of space. Imported images cannot
# be pulled again, so image garbage collection is effectively off.
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
"#,
                ca = d("pki/ca.crt"),
            ),
        )?;
        write(
            &dir.join("kube-proxy.yaml"),
            &format!(
                r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {NODE_NAME}
mode: iptables
clusterCIDR: {POD_CIDR}
# Leave the (host-wide) conntrack table size and timeouts alone.
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
# No br_netfilter here: masquerade Service traffic so replies from a pod
# on the bridge go back through the node's conntrack.
iptables: {{masqueradeAll: true}}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
"#,
                kubeconfig = kubeconfig.display(),
            ),
        )?;
        // What the kubelet would set these host-wide sysctls to.
        for (file, value) in [
            ("vm.overcommit_memory", "1"),
            ("kernel.panic", "10"),
            ("kernel.panic_on_oops", "1"),
        ] {
            write(&dir.join(format!("sysctl/{file}")), &format!("{value}\n"))?;
        }
        pack_single_binary(
            &bin.join("pause"),
            "pause",
            PAUSE_IMAGE,
            &dir.join("pause.oci.tar"),
        )?;

        // Command lines.
        let apiserver: Vec<String> = vec![
            "--etcd-servers=http://127.0.0.1:2379".into(),
            "--bind-address=0.0.0.0".into(),
            format!("--secure-port={API_PORT}"),
            format!("--advertise-address={NODE_IP}"),
            format!("--tls-cert-file={}", d("pki/apiserver.crt")),
            format!("--tls-private-key-file={}", d("pki/apiserver.key")),
            format!("--cert-dir={}", d("apiserver-certs")),
            format!("--client-ca-file={}", d("pki/ca.crt")),
            format!("--token-auth-file={}", d("pki/tokens.csv")),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", d("pki/sa.pub")),
            format!("--service-account-signing-key-file={}", d("pki/sa.key")),
            format!(
                "--kubelet-client-certificate={}",
                d("pki/apiserver-kubelet-client.crt")
            ),
            format!(
                "--kubelet-client-key={}",
                d("pki/apiserver-kubelet-client.key")
            ),
            // No DNS for the node's name: `kubectl exec/logs` use its IP.
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            "--allow-privileged=true".into(),
        ];
        let apiserver = self.apply_apiserver_flags(apiserver);

        let b = |name: &str| bin.join(name).display().to_string();
        let components: Vec<(&str, Vec<String>)> = vec![
            (
                "etcd",
                vec![
                    b("etcd"),
                    "--name=node".into(),
                    // tmpfs inside the namespace: fast, and no disk use.
                    "--data-dir=/var/lib/etcd".into(),
                    "--listen-client-urls=http://127.0.0.1:2379".into(),
                    "--advertise-client-urls=http://127.0.0.1:2379".into(),
                    "--listen-peer-urls=http://127.0.0.1:2380".into(),
                    "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
                    "--initial-cluster=node=http://127.0.0.1:2380".into(),
                    "--unsafe-no-fsync=true".into(),
                    "--log-level=warn".into(),
                ],
            ),
            (
                "kube-apiserver",
                std::iter::once(b("kube-apiserver"))
                    .chain(apiserver)
                    .collect(),
            ),
            (
                "kube-controller-manager",
                vec![
                    b("kube-controller-manager"),
                    format!("--kubeconfig={}", kubeconfig.display()),
                    "--leader-elect=false".into(),
                    "--secure-port=0".into(),
                    format!("--service-account-private-key-file={}", d("pki/sa.key")),
                    format!("--root-ca-file={}", d("pki/ca.crt")),
                ]
                .into_iter()
                .filter(|f| {
                    !self
                        .controller_manager_flags_removed
                        .iter()
                        .any(|r| r == flag_name(f))
                })
                .collect(),
            ),
            (
                "kube-scheduler",
                vec![
                    b("kube-scheduler"),
                    format!("--kubeconfig={}", kubeconfig.display()),
                    "--leader-elect=false".into(),
                    "--secure-port=0".into(),
                ],
            ),
            (
                "kubelet",
                vec![
                    b("kubelet"),
                    format!("--config={}", d("kubelet.yaml")),
                    format!("--kubeconfig={}", d("kubelet.kubeconfig")),
                    format!("--hostname-override={NODE_NAME}"),
                    format!("--node-ip={NODE_IP}"),
                ],
            ),
            (
                "kube-proxy",
                vec![
                    b("kube-proxy"),
                    format!("--config={}", d("kube-proxy.yaml")),
                ],
            ),
        ];

        // PID 1 of the namespaces: private mounts and sysctls, the veth pair,
        // containerd (and the pause image), then the Kubernetes components;
        // then it waits (and reaps) until it is killed.
        let mut init = format!(
            r#"set -u
dir={dir}
fail() {{ echo "$*" >"$dir/failed"; echo "init: $*" >&2; exit 1; }}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for m in /run /var/lib /var/log; do mount -t tmpfs -o mode=0755 tmpfs $m || fail "tmpfs on $m"; done
mkdir -p /run/containerd /var/lib/kubelet
# The kubelet's cgroupRoot must exist in every v1 hierarchy; a new cpuset
# cgroup starts with no CPUs or memory nodes.
for h in /sys/fs/cgroup/*/; do
  [ "$h" = /sys/fs/cgroup/unified/ ] && continue
  mkdir -p "${{h}}{cgroup}" || fail "cgroup ${{h}}{cgroup}"
done
if [ -d /sys/fs/cgroup/cpuset/{cgroup} ]; then
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >/sys/fs/cgroup/cpuset/{cgroup}/cpuset.cpus
  cat /sys/fs/cgroup/cpuset/cpuset.mems >/sys/fs/cgroup/cpuset/{cgroup}/cpuset.mems
fi
for s in vm.overcommit_memory kernel.panic kernel.panic_on_oops; do
  mount --bind "$dir/sysctl/$s" "/proc/sys/$(echo $s | tr . /)" || fail "bind-mount over sysctl $s"
done
ip link set lo up || fail "lo up"
ip link add jwks0 type veth peer name jwks1 || fail "veth pair"
ip addr add {NODE_IP}/24 dev jwks0 && ip link set jwks0 up && ip link set jwks1 up || fail "veth address"
ip route add default dev jwks0 || fail "default route"
containerd --config "$dir/containerd.toml" >"$dir/logs/containerd.log" 2>&1 &
for i in $(seq 300); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
ctr -n k8s.io images import "$dir/pause.oci.tar" >"$dir/logs/pause-import.log" 2>&1 || fail "importing the pause image (logs/pause-import.log)"
"#,
            dir = quote(&dir.display().to_string()),
        );
        for (name, argv) in &components {
            let quoted: Vec<String> = argv.iter().map(|a| quote(a)).collect();
            init.push_str(&format!(
                "{} >\"$dir/logs/{name}.log\" 2>&1 &\n",
                quoted.join(" ")
            ));
        }
        init.push_str("echo started >\"$dir/started\"\nwhile :; do wait; sleep 1; done\n");
        write(&dir.join("init.sh"), &init)?;

        // The supervisor, on the host: runs the namespaces until its stdin
        // (a pipe from this process) closes, then kills their init (the
        // kernel kills everything else in the PID namespace), waits for the
        // node's cgroups to empty and removes them and the work directory.
        let supervisor_script = format!(
            r#"set -u
dir={dir}
unshare --pid --fork --kill-child --mount-proc --net --mount --propagation private \
  bash "$dir/init.sh" >"$dir/logs/init.log" 2>&1 </dev/null &
echo $! >"$dir/unshare.pid"
cat >/dev/null
kill -9 $(cat "$dir/unshare.pid") 2>/dev/null
wait
for i in $(seq 100); do
  left=
  for h in /sys/fs/cgroup/*/{cgroup}; do
    [ -d "$h" ] || continue
    find "$h" -depth -type d -exec rmdir {{}} + 2>/dev/null
    [ -d "$h" ] && left=1
  done
  [ -z "$left" ] && break
  sleep 0.1
done
rm -rf "$dir"
"#,
            dir = quote(&dir.display().to_string()),
        );
        let mut supervisor = spawn_supervisor(&supervisor_script)
            .map_err(|e| format!("the node's namespaces: {e}"))?;
        let init_pid = match wait_init_pid(&dir, &mut supervisor) {
            Ok(pid) => pid,
            Err(e) => {
                drop(supervisor.stdin.take());
                return Err(e);
            }
        };
        let netns = File::open(format!("/proc/{init_pid}/ns/net"))
            .map_err(|e| format!("opening the node's network namespace: {e}"))?;
        let mut node = Node {
            dir,
            api_url,
            admin_token,
            kubeconfig,
            bin,
            ready_after: Duration::ZERO,
            init_pid,
            netns,
            _supervisor: supervisor,
        };
        node.enter_network();
        if let Err(e) = node.wait_ready(Duration::from_secs(120)).await {
            return Err(format!("{e}\n{}", node.log_tails(25)));
        }
        node.ready_after = started.elapsed();
        if let Some(stdin) = node._supervisor.stdin.as_mut() {
            let _ = stdin.flush();
        }
        eprintln!(
            "[node] {NODE_NAME} Ready at {} in {:.1}s (work dir {})",
            node.api_url,
            node.ready_after.as_secs_f64(),
            node.dir.display()
        );
        Ok(node)
    }
}

/// The host PID of the namespaces' init: the child of the `unshare` process.
fn wait_init_pid(dir: &Path, supervisor: &mut Child) -> Result<u32, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(pid) = std::fs::read_to_string(dir.join("unshare.pid")) {
            let pid = pid.trim();
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            if let Some(child) = children.split_whitespace().next() {
                return child
                    .parse()
                    .map_err(|e| format!("parsing the init pid {child}: {e}"));
            }
        }
        if let Ok(Some(status)) = supervisor.try_wait() {
            return Err(format!("the node supervisor exited: {status}"));
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("logs/init.log")).unwrap_or_default();
            return Err(format!("the node's namespaces did not start in 10s\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// === impl Node ===

impl Node {
    /// Moves the calling thread (and the processes it starts from now on)
    /// into the node's network namespace, where the API server, pod IPs and
    /// Service ClusterIPs are reachable. Idempotent.
    pub fn enter_network(&self) {
        // SAFETY: setns on a valid namespace fd only changes this thread's
        // network namespace.
        let rc = unsafe { libc::setns(self.netns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns into the node's network namespace: {}",
            std::io::Error::last_os_error()
        );
    }

    /// A command that runs `program` inside the node's mount, network and PID
    /// namespaces (where `/run/containerd/containerd.sock` is), via `nsenter`.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.init_pid))
            .args(["--mount", "--net", "--pid", "--"])
            .arg(program);
        cmd
    }

    /// Imports an OCI image tarball into containerd's `k8s.io` namespace (the
    /// kubelet's), as `ctr -n k8s.io images import <tar>`.
    pub fn import_image(&self, tarball: &Path) {
        let out = self
            .command("ctr")
            .args(["-n", "k8s.io", "images", "import"])
            .arg(tarball)
            .output()
            .expect("run ctr images import");
        assert!(
            out.status.success(),
            "ctr images import {} failed: {}{}",
            tarball.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A client for `token`, talking to the node's API server. The calling
    /// thread must be in the node's network (see [`node`]).
    pub async fn client_with_token(&self, token: &str) -> Client {
        token_client(
            &self.dir,
            &self.api_url,
            &self.dir.join("pki/ca.crt"),
            token,
        )
        .await
    }

    /// A cluster-admin client (one per test: a client belongs to its runtime).
    pub async fn admin_client(&self) -> Client {
        self.client_with_token(&self.admin_token).await
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let client = self.admin_client().await;
        let nodes: Api<KubeNode> = Api::all(client.clone());
        loop {
            if let Ok(Some(status)) = self._supervisor.try_wait() {
                return Err(format!("the node supervisor exited: {status}"));
            }
            if let Ok(reason) = std::fs::read_to_string(self.dir.join("failed")) {
                return Err(format!("the node's init failed: {}", reason.trim()));
            }
            if !Path::new(&format!("/proc/{}", self.init_pid)).exists() {
                return Err("the node's init exited (see logs/init.log)".to_owned());
            }
            if let Ok(Some(node)) = nodes.get_opt(NODE_NAME).await {
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("node {NODE_NAME} not Ready within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `lines` lines of every component's log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        log_tails(
            &self.dir.join("logs"),
            &[
                "init",
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "containerd",
                "kubelet",
                "kube-proxy",
            ],
            lines,
        )
    }

    /// Resident memory (kB) of every process of the node (the namespace's
    /// init and all its descendants, containers included), summed by
    /// command name: (name, processes, kB), largest first.
    pub fn memory_by_process(&self) -> Vec<(String, usize, u64)> {
        let mut parent: Vec<(u32, u32, String, u64)> = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_owned())
            };
            let ppid = field("PPid:").and_then(|v| v.parse().ok()).unwrap_or(0);
            let rss = field("VmRSS:")
                .and_then(|v| v.trim_end_matches(" kB").trim().parse().ok())
                .unwrap_or(0);
            parent.push((pid, ppid, field("Name:").unwrap_or_default(), rss));
        }
        let mut ours = std::collections::BTreeSet::from([self.init_pid]);
        loop {
            let before = ours.len();
            for (pid, ppid, _, _) in &parent {
                if ours.contains(ppid) {
                    ours.insert(*pid);
                }
            }
            if ours.len() == before {
                break;
            }
        }
        let mut by_name: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
        for (pid, _, name, rss) in parent {
            if ours.contains(&pid) {
                let entry = by_name.entry(name).or_default();
                entry.0 += 1;
                entry.1 += rss;
            }
        }
        let mut list: Vec<(String, usize, u64)> =
            by_name.into_iter().map(|(n, (c, kb))| (n, c, kb)).collect();
        list.sort_by_key(|e| std::cmp::Reverse(e.2));
        list
    }
}

/// Prints the node's log tails if the test panics.
pub struct DumpNodeOnFailure(pub &'static Node);

impl Drop for DumpNodeOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.log_tails(30));
        }
    }
}
