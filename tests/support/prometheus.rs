//! Monitoring test tools built by `tests/controlplane/build-prometheus.sh`
//! from the Go module proxy: promtool, the `selectors` PromQL program, and
//! prometheus-operator's CRDs taken from its Go module.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The directory the script prints (`bin/`, `crds/`), built once per test binary.
pub fn tools_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/build-prometheus.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}); it builds promtool from the Go module proxy",
            script.display(),
            out.status
        );
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(!dir.is_empty(), "{} printed nothing", script.display());
        PathBuf::from(dir)
    })
}

/// A tool in `bin/` (`promtool`, `selectors`).
pub fn tool(name: &str) -> PathBuf {
    tools_dir().join("bin").join(name)
}

/// prometheus-operator's CRD for `plural` (`servicemonitors`, `prometheusrules`), as YAML.
pub fn crd_yaml(plural: &str) -> String {
    let path = tools_dir()
        .join("crds")
        .join(format!("monitoring.coreos.com_{plural}.yaml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
