//! `jwks-operator status` and `revoke` against the real control plane, with
//! the operator running as the chart's ServiceAccount; and the same binary
//! as the kubectl plugin `kubectl-jwks` (through a symlink, and through
//! kubectl itself).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jwks_operator::api::KeyRotationPolicy;
use serde_json::{Value, json};
use support::operator::{Operator, TestEnv};

const BIN: &str = env!("CARGO_BIN_EXE_jwks-operator");

/// Runs `program args` as the cluster admin, with `stdin` as its input.
fn cli(env: &TestEnv, program: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", &env.cp.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn wait_for(
    env: &TestEnv,
    name: &str,
    what: &str,
    pred: impl Fn(&KeyRotationPolicy) -> bool,
) -> KeyRotationPolicy {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = env.policies().get(name).await.expect("get policy");
        if pred(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within 30s: {:?}",
            p.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A namespace `<prefix>-...` with a running operator and policy `api`
/// (ES256) once it has an active key: the env, the operator and that kid.
async fn operator_with_an_active_policy(prefix: &str) -> (TestEnv, Operator, String) {
    let env = TestEnv::new(prefix).await;
    let op = env.operator(&[]);
    env.create("api", json!({"algorithm": "ES256"})).await;
    let p = wait_for(&env, "api", "an active key", |p| active_kid(p).is_some()).await;
    let kid = active_kid(&p).unwrap();
    (env, op, kid)
}

fn active_kid(p: &KeyRotationPolicy) -> Option<String> {
    p.status.as_ref().and_then(|s| s.active_key_id.clone())
}

/// Retries a CLI call until its stdout satisfies `pred` (Events are written
/// asynchronously after the status).
fn eventually_output(mut f: impl FnMut() -> Output, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = f();
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "failed: {}{}",
            text(&out.stderr),
            stdout
        );
        if pred(&stdout) {
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "never got the expected output:\n{stdout}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn status_shows_the_keys_conditions_and_events_of_a_policy() {
    let (env, _op, kid) = operator_with_an_active_policy("cli-status").await;
    let ns = env.ns.clone();
    let bin = Path::new(BIN);

    let table = eventually_output(
        || cli(&env, bin, &["status", "api", "-n", &ns], ""),
        |s| s.contains("KeyCreated"),
    );
    for needle in [
        "Name:              api".to_owned(),
        format!("Namespace:         {ns}"),
        "Algorithm:         ES256".to_owned(),
        format!("Active key:        {kid}"),
        "KID ".to_owned(),
        "PRUNE AFTER".to_owned(),
        format!("{kid}   ES256   Active"),
        "Ready ".to_owned(),
        "LAST SEEN".to_owned(),
    ] {
        assert!(table.contains(&needle), "missing {needle:?} in:\n{table}");
    }

    let out = cli(&env, bin, &["status", "api", "-n", &ns, "-o", "json"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("-o json is JSON");
    assert_eq!(report["name"], "api");
    assert_eq!(report["activeKeyID"], kid.as_str());
    assert_eq!(report["keys"][0]["kid"], kid.as_str());
    assert_eq!(report["keys"][0]["state"], "Active");
    assert!(
        report["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        "{report}"
    );
    assert!(
        report["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "KeyCreated" && e["type"] == "Normal"),
        "{report}"
    );

    // A policy that does not exist: a clear message, exit 1.
    let out = cli(&env, bin, &["status", "nope", "-n", &ns], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("KeyRotationPolicy {ns}/nope not found")),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn revoke_refuses_unknown_kids_and_unconfirmed_requests_then_revokes() {
    let (env, _op, kid) = operator_with_an_active_policy("cli-revoke").await;
    let ns = env.ns.clone();
    let bin = Path::new(BIN);
    let revoked = |p: &KeyRotationPolicy| p.spec.revoked_key_ids.clone();

    // A kid the policy does not have.
    let out = cli(
        &env,
        bin,
        &["revoke", "api", "not-a-kid", "-n", &ns, "--yes"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("has no key not-a-kid"), "{stderr}");
    assert!(
        stderr.contains(&kid),
        "the message lists its kids: {stderr}"
    );

    // No terminal and no --yes: refused, even with "y" on stdin.
    let out = cli(&env, bin, &["revoke", "api", &kid, "-n", &ns], "y\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("standard input is not a terminal"),
        "{stderr}"
    );
    assert!(stderr.contains("--yes"), "{stderr}");

    // On a terminal (a pty from util-linux `script`), "n" cancels.
    let on_tty = |answer: &str| {
        let command = format!("{BIN} revoke api {kid} -n {ns}");
        cli(
            &env,
            Path::new("script"),
            &["-qec", &command, "/dev/null"],
            answer,
        )
    };
    let out = on_tty("n\n");
    let shown = text(&out.stdout);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("It is the ACTIVE key"), "{shown}");
    assert!(shown.contains("[y/N]"), "{shown}");
    assert!(shown.contains("cancelled; nothing was changed"), "{shown}");
    assert!(revoked(&env.policies().get("api").await.unwrap()).is_empty());

    // ... and "y" revokes.
    let out = on_tty("y\n");
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("key {kid} of {ns}/api revoked")),
        "{shown}"
    );
    assert_eq!(
        revoked(&env.policies().get("api").await.unwrap()),
        std::slice::from_ref(&kid)
    );

    // The operator replaces the revoked active key at once.
    let p = wait_for(&env, "api", "a fresh active key", |p| {
        active_kid(p).is_some_and(|k| k != kid)
            && p.status
                .as_ref()
                .is_some_and(|s| s.keys.iter().all(|k| k.kid != kid))
    })
    .await;
    let fresh = active_kid(&p).unwrap();

    // Revoking it again changes nothing.
    let out = cli(&env, bin, &["revoke", "api", &kid, "-n", &ns, "--yes"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already in spec.revokedKeyIDs"));

    // --yes revokes without asking, keeping the list's other entries.
    let out = cli(
        &env,
        bin,
        &["revoke", "api", &fresh, "-n", &ns, "--yes"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        revoked(&env.policies().get("api").await.unwrap()),
        [kid, fresh]
    );
}

/// A directory holding `kubectl-jwks` → the operator binary.
fn plugin_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubectl-jwks");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    (dir, link)
}

#[tokio::test]
async fn the_binary_is_the_kubectl_plugin_kubectl_jwks() {
    let env = TestEnv::new("cli-plugin").await;
    env.create("api", json!({"algorithm": "ES256"})).await;
    let ns = env.ns.clone();
    let (dir, link) = plugin_dir();

    // Through the symlink: usage says `kubectl jwks`, commands work.
    let out = cli(&env, &link, &["--help"], "");
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("Usage: kubectl jwks"), "{help}");
    let out = cli(&env, Path::new(BIN), &["--help"], "");
    assert!(
        text(&out.stdout).contains("Usage: jwks-operator"),
        "the control"
    );
    let direct = cli(&env, &link, &["status", "api", "-n", &ns, "-o", "json"], "");
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    let report: Value = serde_json::from_slice(&direct.stdout).unwrap();
    assert_eq!(report["name"], "api");
    assert_eq!(report["namespace"], ns.as_str());

    // Through kubectl itself, which finds kubectl-jwks on PATH.
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = env.cp.bin.join("kubectl");
    let run_kubectl = |args: &[&str]| {
        Command::new(&kubectl)
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", &env.cp.kubeconfig)
            .output()
            .unwrap()
    };
    let out = run_kubectl(&["plugin", "list"]);
    assert!(
        text(&out.stdout).contains("kubectl-jwks"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = run_kubectl(&["jwks", "status", "api", "-n", &ns, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let via_kubectl: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(via_kubectl, report);
    let out = run_kubectl(&["jwks", "status", "api", "-n", &ns]);
    assert!(
        text(&out.stdout).contains("Keys:\n  (none yet)"),
        "no operator runs here"
    );
}

/// `rotate`, `status` and `revoke` agree on the namespace when `-n` is not
/// given: the kubeconfig context's (as kubectl does), not `default`.
#[tokio::test]
async fn without_n_rotate_status_and_revoke_use_the_kubeconfig_contexts_namespace() {
    let (env, _op, _kid) = operator_with_an_active_policy("cli-context-ns").await;
    let ns = env.ns.clone();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let admin = std::fs::read_to_string(&env.cp.kubeconfig).unwrap();
    let with_ns = admin.replace(
        "context: {cluster: test, user: user}",
        &format!("context: {{cluster: test, user: user, namespace: {ns}}}"),
    );
    assert_ne!(
        admin, with_ns,
        "the test kubeconfig's context changed shape"
    );
    std::fs::write(&kubeconfig, with_ns).unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    let out = run(&["rotate", "api"]);
    assert!(out.status.success(), "rotate: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("rotation of {ns}/api requested")),
        "{}",
        text(&out.stdout)
    );
    let p = env.policies().get("api").await.expect("get policy");
    assert!(
        p.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("jwks.dev/rotate-requested-at"),
        "rotate without -n did not annotate {ns}/api"
    );

    let out = run(&["status", "api", "-o", "json"]);
    assert!(out.status.success(), "status: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("-o json is JSON");
    assert_eq!(report["namespace"], ns.as_str());
}
