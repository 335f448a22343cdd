//! docs/signing.md's examples (`examples/signing/{go,python,node}`) as an
//! app runs them: each reads `active.pem` and `active.kid` from a standalone
//! state directory (the same files as the Kubernetes Secret), signs tokens
//! with the `kid` header, and the operator's own `/verify` accepts them;
//! after a rotation (the annotation plus SIGHUP) each app signs with the new
//! key by itself, and the tokens it signed before keep verifying.
//!
//! Needs Go, Node.js and the PyJWT venv of tests/interop/install-verifiers.sh
//! (scripts/test.sh installs them); a missing one fails the test.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Operator, Workspace, eventually, manifest};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME"))
}

/// `~/.cache/jwks-operator`, as the installers use it.
fn cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache"))
        .join("jwks-operator")
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Builds the Go example (standard library only: no module download) in
/// the Go environment of the control-plane build scripts, which
/// tests/controlplane/go-env.sh sets (toolchain, caches, flags); the
/// binary's path.
fn build_go_example(out: &Path) -> PathBuf {
    let bin = out.join("go-signer");
    let status = Command::new("bash")
        .arg("-c")
        .arg(
            r#"set -euo pipefail
log() { echo "go-env: $*" >&2; }
die() { echo "go-env: $*" >&2; exit 1; }
source "$1"
exec "$GO" build -o "$2" ."#,
        )
        .arg("build_go_example")
        .arg(repo().join("tests/controlplane/go-env.sh"))
        .arg(&bin)
        .current_dir(repo().join("examples/signing/go"))
        .status()
        .expect("run bash");
    assert!(
        status.success(),
        "go build of examples/signing/go failed (no Go toolchain? scripts/preflight.sh says how to install it)"
    );
    bin
}

/// A running example: a line on its stdin is a subject, a line on its
/// stdout the token.
struct App {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl App {
    fn start(name: &'static str, mut cmd: Command, key_dir: &Path, alg: &str) -> App {
        let mut child = cmd
            .env("KEY_DIR", key_dir)
            .env("ALG", alg)
            .env("ISSUER", "https://app.example.com")
            .env("AUDIENCE", "app")
            .env("TTL_SECONDS", "600")
            // Go reads a duration, Python seconds, Node.js milliseconds.
            .env(
                "RELOAD_INTERVAL",
                match name {
                    "go" => "200ms",
                    "python" => "0.2",
                    _ => "200",
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} example: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        App {
            name,
            child,
            stdin,
            stdout,
        }
    }

    fn token(&mut self, sub: &str) -> String {
        writeln!(self.stdin, "{sub}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the {} example exited", self.name);
        line.trim().to_owned()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn active_kid(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("active.kid"))
        .unwrap()
        .trim()
        .to_owned()
}

const POLICIES: &[(&str, &str)] = &[("es", "ES256"), ("rs", "RS256")];

fn policy_text(name: &str, alg: &str, rotate: &str) -> String {
    let annotations = if rotate.is_empty() {
        String::new()
    } else {
        format!("jwks.dev/rotate-requested-at: \"{rotate}\"")
    };
    manifest(
        name,
        &annotations,
        &format!(
            "  algorithm: {alg}\n  rotationInterval: 1h\n  publishAhead: 1s\n  maxTokenTTL: 1h\n  issuer: https://app.example.com\n  audiences: [app]\n  tokenEndpoint: {{enabled: true}}\n"
        ),
    )
}

#[test]
fn each_signing_example_signs_verifiable_tokens_and_follows_a_rotation_by_itself() {
    let ws = Workspace::new();
    for (name, alg) in POLICIES {
        ws.write_policy(&format!("{name}.yaml"), &policy_text(name, alg, ""));
    }
    let op = Operator::start(&ws.policies(), &ws.state());

    let tmp = tempfile::tempdir().unwrap();
    let go = build_go_example(tmp.path());
    let python = std::env::var_os("JWKS_OPERATOR_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("venv"))
        .join("bin/python");
    assert!(
        python.is_file(),
        "no PyJWT venv at {} (bash tests/interop/install-verifiers.sh)",
        python.display()
    );
    let node = on_path("node").expect("no node on PATH (scripts/preflight.sh)");
    let commands = || -> Vec<(&'static str, Command)> {
        let mut py = Command::new(&python);
        py.arg(repo().join("examples/signing/python/signer.py"));
        let mut js = Command::new(&node);
        js.arg(repo().join("examples/signing/node/signer.mjs"));
        vec![("go", Command::new(&go)), ("python", py), ("node", js)]
    };

    // Every example against every policy, all running at once.
    let mut apps = Vec::new();
    for (policy, alg) in POLICIES {
        let dir = ws.policy_state(&format!("default/{policy}"));
        for (name, cmd) in commands() {
            apps.push((*policy, App::start(name, cmd, &dir, alg), dir.clone()));
        }
    }

    let mut before = Vec::new();
    for (policy, app, dir) in &mut apps {
        let token = app.token("alice");
        let kid = active_kid(dir);
        assert_eq!(
            header(&token)["kid"],
            kid.as_str(),
            "{} / {policy}",
            app.name
        );
        assert_eq!(
            op.verify(&format!("default/{policy}"), &token),
            Ok(kid.clone()),
            "{} / {policy}: the operator's /verify",
            app.name
        );
        before.push((kid, token));
    }

    // A rotation, as a person makes it in standalone mode.
    for (name, alg) in POLICIES {
        ws.write_policy(
            &format!("{name}.yaml"),
            &policy_text(name, alg, "2026-12-06T00:00:00Z"),
        );
    }
    op.reload();
    for (policy, _) in POLICIES {
        let dir = ws.policy_state(&format!("default/{policy}"));
        let old = &before[apps.iter().position(|(p, ..)| p == policy).unwrap()].0;
        eventually(
            &format!("{policy}: a new active.kid"),
            Duration::from_secs(30),
            || (active_kid(&dir) != *old).then_some(()),
        );
    }

    for ((policy, app, dir), (old_kid, old_token)) in apps.iter_mut().zip(&before) {
        let new_kid = active_kid(dir);
        let started = Instant::now();
        let token = eventually(
            &format!("{} / {policy}: a token with the new kid", app.name),
            Duration::from_secs(10),
            || {
                let t = app.token("bob");
                (header(&t)["kid"] == new_kid.as_str()).then_some(t)
            },
        );
        eprintln!(
            "[signing-examples] {} / {policy}: new key used {:.2}s after active.kid changed",
            app.name,
            started.elapsed().as_secs_f64()
        );
        let policy_ref = format!("default/{policy}");
        assert_eq!(op.verify(&policy_ref, &token), Ok(new_kid.clone()));
        assert_eq!(
            op.verify(&policy_ref, old_token),
            Ok(old_kid.clone()),
            "{} / {policy}: a token of the retired key keeps verifying",
            app.name
        );
    }
}
