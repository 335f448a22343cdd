//! A new user's first minutes, as the README promises them:
//!
//! - the README's first command (`cargo run --release -- standalone ...`)
//!   works with nothing but rustup's toolchain and a C compiler: it runs here
//!   with a `PATH` holding only those (no Go, Node.js or Python) and a fresh
//!   `HOME`, and serves the quick start's JWK Set;
//! - `scripts/preflight.sh` (the first step of `scripts/test.sh`) names every
//!   missing prerequisite in one list, with the command that installs each,
//!   within seconds; and finds nothing missing on this machine.

mod common;
#[allow(dead_code)] // section() serves the docs tests
#[path = "support/markdown.rs"]
mod markdown;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::http;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first line of the README's first `sh` block, without its comment.
fn readme_first_command() -> String {
    let readme = markdown::readme();
    markdown::first_sh_block(&readme, "the README")[0].to_owned()
}

/// A directory of symlinks to `tools`, found on this process's `PATH`
/// (or in `extra` directories): a `PATH` with those and nothing else.
fn bin_dir_with(tools: &[&str], extra: &[PathBuf]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let search: Vec<PathBuf> = extra
        .iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .collect();
    for tool in tools {
        let found = search.iter().map(|d| d.join(tool)).find(|p| p.is_file());
        let found = found.unwrap_or_else(|| panic!("{tool} is not on PATH"));
        symlink(&found, dir.path().join(tool)).unwrap();
    }
    dir
}

/// Where cargo keeps this build's artifacts (the test binary is in
/// `<target>/debug/deps/`), so the README's build reuses what it can.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

fn home_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME"))
}

#[test]
fn the_readmes_first_command_runs_with_only_rust_and_a_c_compiler() {
    let command = readme_first_command();
    assert!(
        command.starts_with("cargo run --release -- standalone"),
        "the README's first command changed: {command:?}"
    );
    assert!(
        !command.contains("./state"),
        "the quick start keeps private keys inside the repository: {command:?}"
    );
    // rustup's proxies (cargo, rustc) and the C toolchain aws-lc and
    // mimalloc are built with; the shell runs the command line.
    let rustup_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home_dir().join(".cargo"))
        .join("bin");
    let bin = bin_dir_with(
        &[
            "sh", "cargo", "rustc", "cc", "c++", "ar", "as", "ld", "ranlib",
        ],
        &[rustup_bin],
    );
    for absent in ["go", "node", "npm", "python3", "helm", "kubectl"] {
        assert!(!bin.path().join(absent).exists());
    }
    let home = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, PathBuf)> = vec![
        ("PATH".into(), bin.path().to_owned()),
        ("HOME".into(), home.path().to_owned()),
        ("CARGO_TARGET_DIR".into(), target_dir()),
    ];
    // The toolchain rustup installed, and cargo's download cache, stay where
    // they are: a fresh HOME would only download the same crates again.
    for (var, default) in [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")] {
        let dir = std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| home_dir().join(default));
        env.push((var.into(), dir));
    }
    let started = Instant::now();
    let mut child = Command::new(bin.path().join("sh"))
        .args(["-c", &format!("exec {command}")])
        .current_dir(repo())
        .env_clear()
        .envs(env)
        // Not the README's port 8080 (other tests may hold it), and a log
        // this test can read; both through the flags' environment variables,
        // so the command line stays as written.
        .env("JWKS_ADDR", "127.0.0.1:0")
        .env("JWKS_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the README's first command");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let mut addr = None;
    let deadline = Instant::now() + Duration::from_secs(3600);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the command exited ({status}):\n{}", log.join("\n"));
            }
            continue;
        };
        log.push(line.clone());
        let Ok(json) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if json["message"] == "JWKS listener started" {
            addr = json["addr"].as_str().map(|a| a.parse().unwrap());
        }
        if json["message"] == "standalone mode ready" {
            break;
        }
    }
    let addr = addr.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("never ready:\n{}", log.join("\n"))
    });
    eprintln!(
        "[first-contact] built and ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The README's next command: the quick start's JWK Set.
    let jwks = http(
        addr,
        "GET",
        "/default/demo/.well-known/jwks.json",
        &[],
        None,
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(jwks.status, 200, "{}", jwks.text());
    assert_eq!(jwks.json()["keys"][0]["alg"], "ES256");
    // The keys went where the command said: under the (fresh) home.
    let state = command
        .split_whitespace()
        .skip_while(|w| *w != "--state-dir")
        .nth(1)
        .expect("the command names --state-dir");
    let state = match state.strip_prefix("~/") {
        Some(rest) => home.path().join(rest),
        None => PathBuf::from(state),
    };
    assert!(
        state.starts_with(home.path()),
        "the quick start's state directory is not under HOME: {command:?}"
    );
    let kid = std::fs::read_to_string(state.join("default/demo/active.kid")).unwrap();
    assert_eq!(jwks.json()["keys"][0]["kid"], kid.trim());
}

/// Runs scripts/preflight.sh with `env` only; its stdout, exit code and time.
fn preflight(env: &[(&str, &Path)]) -> (String, Option<i32>, Duration) {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(repo().join("scripts/preflight.sh"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .expect("run preflight.sh");
    (
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        out.status.code(),
        started.elapsed(),
    )
}

#[test]
fn preflight_lists_every_missing_prerequisite_with_its_install_command_within_seconds() {
    // The shell utilities the script itself uses, and nothing else.
    let bin = bin_dir_with(
        &[
            "bash", "sed", "awk", "sort", "head", "grep", "du", "df", "dirname", "mkdir", "mktemp",
            "rm", "cat", "id", "curl", "ls", "cut", "touch",
        ],
        &[],
    );
    let home = tempfile::tempdir().unwrap();
    let (out, code, took) = preflight(&[
        ("PATH", bin.path()),
        ("HOME", home.path()),
        // No Go either (the script also looks in /usr/local/go/bin).
        ("GO", Path::new("/nonexistent/go")),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(took < Duration::from_secs(15), "took {took:?}:\n{out}");
    for needle in [
        "Rust >= 1.89",
        "a C compiler",
        "Go >= 1.26",
        "Node.js >= 20",
        "Python >= 3.9",
    ] {
        let at = out
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not listed:\n{out}"));
        assert!(
            out[at..]
                .lines()
                .nth(1)
                .is_some_and(|l| l.trim_start().starts_with("install: ")),
            "{needle:?} comes without an install command:\n{out}"
        );
    }
    assert_eq!(
        out.matches("the test run cannot start").count(),
        1,
        "one list:\n{out}"
    );
}

#[test]
fn preflight_finds_nothing_missing_on_the_machine_that_runs_the_tests() {
    let env: Vec<(String, PathBuf)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, PathBuf::from(v))))
        .collect();
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (k.as_str(), v.as_path())).collect();
    let (out, code, took) = preflight(&env);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(": ok"), "{out}");
    assert!(took < Duration::from_secs(15), "took {took:?}:\n{out}");
}
