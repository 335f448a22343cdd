//! Interoperability with widely used third-party JWT libraries in other
//! languages, both ways:
//! - tokens minted by the running binary verify in PyJWT (`PyJWKClient`) and
//!   npm `jose` (`createRemoteJWKSet`), which fetch our JWKS URL themselves,
//!   across a rotation;
//! - our `verify` command (and `/verify` endpoint) accept tokens those
//!   libraries sign with our private keys, read from the state directory's
//!   `jwks.json`;
//! - how the two libraries cache the set with their own defaults (measured
//!   here, recorded in docs/verifier-caches.md): they ignore `max-age`, keep
//!   a revoked key while every token carries a known `kid`, and refetch on an
//!   unknown `kid` only 30 s after their last fetch.
//!
//! The libraries are installed by `tests/interop/install-verifiers.sh`
//! (run by `scripts/test.sh`). When they are missing these tests fail and
//! say so: they are never skipped silently.

mod common;
#[path = "common/local_kms.rs"]
mod local_kms;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const INSTALL: &str = "tests/interop/install-verifiers.sh";

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The venv's python, as the install script lays it out.
fn python() -> PathBuf {
    let venv = std::env::var_os("JWKS_OPERATOR_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("jwks-operator/venv")
        });
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "PyJWT is not installed in {}: run `bash {INSTALL}` (scripts/test.sh does)",
        venv.display()
    );
    python
}

fn node_jose() -> PathBuf {
    let dir = interop_dir().join("jose");
    assert!(
        dir.join("node_modules/jose/package.json").exists(),
        "npm jose is not installed in {}: run `bash {INSTALL}` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// A long-running third-party verifier speaking the scripts' line protocol.
struct Verifier {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Verifier {
    fn pyjwt() -> Verifier {
        Self::spawn("PyJWT", &mut Self::pyjwt_command())
    }

    fn jose() -> Verifier {
        Self::spawn("jose", &mut Self::jose_command())
    }

    /// `PyJWKClient` built with PyJWT's own cache defaults.
    fn pyjwt_defaults() -> Verifier {
        Self::spawn(
            "PyJWT",
            Self::pyjwt_command().env("PYJWT_LIFESPAN", "default"),
        )
    }

    /// `createRemoteJWKSet` built with jose's own cache defaults.
    fn jose_defaults() -> Verifier {
        Self::spawn("jose", Self::jose_command().env("JOSE_CACHE_MS", "default"))
    }

    /// The PyJWT verifier's command line.
    fn pyjwt_command() -> Command {
        let mut cmd = Command::new(python());
        cmd.arg(interop_dir().join("python/jwt_interop.py"))
            .arg("verify");
        cmd
    }

    /// The jose verifier's command line (run in its npm package directory).
    fn jose_command() -> Command {
        let dir = node_jose();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("jwt_interop.mjs"))
            .arg("verify")
            .current_dir(dir);
        cmd
    }

    fn spawn(name: &'static str, cmd: &mut Command) -> Verifier {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{name} verifier does not start ({e}); run `bash {INSTALL}`")
            });
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Verifier {
            name,
            child,
            stdin,
            stdout,
        }
    }

    /// Verifies `token` against the JWK Set at `url`; the library's verdict.
    fn check(&mut self, url: &str, token: &str) -> Value {
        writeln!(self.stdin, "{url} {token}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{} answered {line:?} ({e})", self.name))
    }

    /// Asserts that `token` verifies and was signed by `kid`.
    fn assert_valid(&mut self, url: &str, token: &str, kid: &str) -> Value {
        let verdict = self.check(url, token);
        assert_eq!(
            verdict["ok"], true,
            "{} refused a token of {kid}: {verdict}",
            self.name
        );
        assert_eq!(verdict["kid"], kid, "{}", self.name);
        verdict
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token signed by a third-party library with one of our private keys.
fn sign_with(library: &str, jwks_path: &std::path::Path, kid: &str) -> String {
    let mut cmd = match library {
        "PyJWT" => {
            let mut c = Command::new(python());
            c.arg(interop_dir().join("python/jwt_interop.py"));
            c
        }
        "jose" => {
            let dir = node_jose();
            let mut c = Command::new("node");
            c.arg(dir.join("jwt_interop.mjs")).current_dir(dir);
            c
        }
        other => panic!("unknown library {other}"),
    };
    let out = cmd.arg("sign").arg(jwks_path).arg(kid).output().unwrap();
    assert!(
        out.status.success(),
        "{library} could not sign with {kid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn tokens_we_mint_verify_in_pyjwt_and_jose_across_a_rotation() {
    let mut verifiers = [Verifier::pyjwt(), Verifier::jose()];
    let ws = Workspace::new();
    ws.write_policy(
        "p.yaml",
        &manifest(
            "interop",
            "",
            "  algorithm: ES256\n  rotationInterval: 6s\n  publishAhead: 3s\n  maxTokenTTL: 30s\n  clockSkew: 1s\n  issuer: http://localhost/interop\n  audiences: [api]\n  tokenEndpoint: {enabled: true}\n",
        ),
    );
    let op = Operator::start(&ws.policies(), &ws.state());
    let p = "default/interop";
    let url = op.jwks_url(p);
    let r = op.get(&format!("/{p}/.well-known/jwks.json"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=1"),
        "the verifiers' cache lifetime (1 s) follows the served max-age"
    );

    let (before, k1) = op.mint(p, &json!({"sub": "before"}));
    for v in &mut verifiers {
        let verdict = v.assert_valid(&url, &before, &k1);
        assert_eq!(verdict["claims"]["sub"], "before");
        assert_eq!(verdict["claims"]["iss"], "http://localhost/interop");
        assert_eq!(verdict["claims"]["aud"], "api");
    }

    let k2 = eventually("the next key signs", Duration::from_secs(10), || {
        let kid = op.summary(p)["activeKeyID"].as_str().unwrap().to_string();
        (kid != k1).then_some(kid)
    });
    let (after, kid) = op.mint(p, &json!({"sub": "after"}));
    assert_eq!(kid, k2);
    for v in &mut verifiers {
        v.assert_valid(&url, &after, &k2);
        // The retired key is still published: the older token still verifies.
        v.assert_valid(&url, &before, &k1);
    }
    // A token for another key material does not verify in either library.
    let forged = format!("{}x", &after[..after.len() - 2]);
    for v in &mut verifiers {
        assert_eq!(v.check(&url, &forged)["ok"], false, "{}", v.name);
    }
}

/// The provider dimension: tokens whose keys live in a PKCS#11 token
/// (SoftHSM, tests/providers/install.sh) verify in PyJWT and jose, for an
/// algorithm of each family.
#[test]
fn tokens_signed_in_a_pkcs11_token_verify_in_pyjwt_and_jose() {
    let mut verifiers = [Verifier::pyjwt(), Verifier::jose()];
    let hsm = softhsm::SoftHsm::new_dir();
    hsm.init_token_with_util("interop", "4321");
    let ws = Workspace::new();
    let pin = ws.dir.path().join("pin");
    std::fs::write(&pin, "4321").unwrap();
    let algs = ["ES256", "ES384", "RS256", "PS256", "EdDSA"];
    for alg in algs {
        ws.write_policy(
            &format!("{alg}.yaml"),
            &manifest(
                &alg.to_lowercase(),
                "",
                &format!(
                    "  algorithm: {alg}\n  tokenEndpoint: {{enabled: true}}\n  keyProvider: {{type: PKCS11, module: {}, tokenLabel: interop, pinFile: {}}}\n",
                    softhsm::MODULE,
                    pin.display()
                ),
            ),
        );
    }
    let conf = hsm.conf();
    let mut op = Operator::launch_env(
        &ws.policies(),
        &ws.state(),
        &[],
        &[("SOFTHSM2_CONF", conf.as_os_str())],
    );
    op.wait_for_log(
        |l| l["message"] == "standalone mode ready",
        Duration::from_secs(30),
    );
    for alg in algs {
        let p = format!("default/{}", alg.to_lowercase());
        assert!(
            !ws.policy_state(&p).join("active.pem").exists(),
            "{alg}: the key is in the token"
        );
        let url = op.jwks_url(&p);
        let (token, kid) = op.mint(&p, &json!({"sub": alg}));
        for v in &mut verifiers {
            let verdict = v.assert_valid(&url, &token, &kid);
            assert_eq!(verdict["claims"]["sub"], alg, "{}", v.name);
        }
    }
}

/// The provider dimension, AWS KMS: tokens whose keys live in KMS
/// (local-kms, tests/providers/install.sh; signed in DIGEST mode) verify in
/// PyJWT and jose. PS* is left out: local-kms's PSS salt is not KMS's
/// (tests/provider_kms.rs).
#[test]
fn tokens_signed_in_aws_kms_verify_in_pyjwt_and_jose() {
    let mut verifiers = [Verifier::pyjwt(), Verifier::jose()];
    let kms = local_kms::LocalKms::start();
    let ws = Workspace::new();
    let creds = ws.dir.path().join("aws-credentials");
    std::fs::write(&creds, local_kms::credentials_env()).unwrap();
    let algs = ["ES256", "ES384", "RS256"];
    for alg in algs {
        ws.write_policy(
            &format!("{alg}.yaml"),
            &manifest(
                &format!("kms-{}", alg.to_lowercase()),
                "",
                &format!(
                    "  algorithm: {alg}\n  tokenEndpoint: {{enabled: true}}\n  keyProvider: {{type: AWSKMS, region: {}, endpoint: '{}', credentialsFile: {}}}\n",
                    local_kms::REGION,
                    kms.endpoint(),
                    creds.display()
                ),
            ),
        );
    }
    let mut op = Operator::launch_env(&ws.policies(), &ws.state(), &[], &[]);
    op.wait_for_log(
        |l| l["message"] == "standalone mode ready",
        Duration::from_secs(30),
    );
    for alg in algs {
        let p = format!("default/kms-{}", alg.to_lowercase());
        assert!(
            !ws.policy_state(&p).join("active.pem").exists(),
            "{alg}: the key is in KMS"
        );
        let url = op.jwks_url(&p);
        let (token, kid) = op.mint(&p, &json!({"sub": alg}));
        for v in &mut verifiers {
            let verdict = v.assert_valid(&url, &token, &kid);
            assert_eq!(verdict["claims"]["sub"], alg, "{}", v.name);
        }
    }
}

#[test]
fn every_algorithm_interoperates_both_ways() {
    let mut verifiers = [Verifier::pyjwt(), Verifier::jose()];
    let algorithms = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];
    let ws = Workspace::new();
    let docs: Vec<String> = algorithms
        .iter()
        .map(|alg| {
            manifest(
                &alg.to_lowercase(),
                "",
                &format!("  algorithm: {alg}\n  tokenEndpoint: {{enabled: true}}\n"),
            )
        })
        .collect();
    ws.write_policy("all.yaml", &docs.join("---\n"));
    let op = Operator::start(&ws.policies(), &ws.state());

    for alg in algorithms {
        let p = format!("default/{}", alg.to_lowercase());
        let url = op.jwks_url(&p);

        // Ours → theirs.
        let (token, kid) = op.mint(&p, &json!({"sub": alg}));
        for v in &mut verifiers {
            let verdict = v.assert_valid(&url, &token, &kid);
            assert_eq!(verdict["claims"]["sub"], alg, "{} / {alg}", v.name);
        }

        // Theirs, signed with our private key from the state directory → ours.
        let jwks_path = ws.policy_state(&p).join("jwks.json");
        let active = std::fs::read_to_string(ws.policy_state(&p).join("active.kid")).unwrap();
        assert_eq!(active, kid);
        for library in ["PyJWT", "jose"] {
            let token = sign_with(library, &jwks_path, &kid);
            let out = cli_verify(&url, &token)
                .unwrap_or_else(|e| panic!("verify refused a {library} {alg} token: {e}"));
            assert!(
                out.starts_with(&format!("valid kid={kid} alg={alg}")),
                "{out}"
            );
            assert_eq!(
                op.verify(&p, &token).as_deref(),
                Ok(kid.as_str()),
                "{library} {alg}"
            );
            // And against the state file directly.
            assert!(cli_verify(jwks_path.to_str().unwrap(), &token).is_ok());
        }
    }
}

/// JWK Set fetches the operator has answered (on the per-policy route), read
/// from its own request counter.
fn jwks_fetches(op: &Operator) -> u64 {
    op.get("/metrics")
        .text()
        .lines()
        .filter(|l| {
            l.starts_with("jwks_operator_http_requests_total{")
                && l.contains("listener=\"jwks\"")
                && l.contains("route=\"jwks\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Measures how PyJWT (`PyJWKClient`) and jose (`createRemoteJWKSet`) with
/// their default settings cache our set, and what `rotateOnRevoke` does to
/// them: both ignore the served `max-age` (1 s here) and keep trusting a
/// revoked key while tokens carry kids they know; the fresh key's unknown
/// kid makes them refetch, but only once 30 s have passed since their last
/// fetch (their default cooldown), and until then they refuse its tokens.
/// The numbers are in docs/verifier-caches.md.
#[test]
fn with_their_defaults_pyjwt_and_jose_keep_a_revoked_key_until_an_unknown_kid_refetches() {
    let mut verifiers = [Verifier::pyjwt_defaults(), Verifier::jose_defaults()];
    let ws = Workspace::new();
    let spec = |extra: &str| {
        manifest(
            "caches",
            "",
            &format!(
                "  algorithm: ES256\n  rotationInterval: 8s\n  publishAhead: 2s\n  maxTokenTTL: 120s\n  clockSkew: 1s\n  tokenEndpoint: {{enabled: true}}\n{extra}"
            ),
        )
    };
    ws.write_policy("p.yaml", &spec(""));
    let op = Operator::start(&ws.policies(), &ws.state());
    let p = "default/caches";
    let url = op.jwks_url(p);
    let r = op.get(&format!("/{p}/.well-known/jwks.json"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=1"));

    let (old, k1) = op.mint(p, &json!({"sub": "old"}));
    let k2 = eventually("the next key signs", Duration::from_secs(15), || {
        let kid = op.summary(p)["activeKeyID"].as_str().unwrap().to_string();
        (kid != k1).then_some(kid)
    });
    let (current, kid) = op.mint(p, &json!({"sub": "current"}));
    assert_eq!(kid, k2);

    // Each library fetches the set (k1 retired, k2 active) once.
    let mut last_fetch = Vec::new();
    for v in &mut verifiers {
        let n = jwks_fetches(&op);
        v.assert_valid(&url, &old, &k1);
        v.assert_valid(&url, &current, &k2);
        assert_eq!(jwks_fetches(&op) - n, 1, "{} fetched once", v.name);
        last_fetch.push(Instant::now());
    }

    // Revoke the retired k1 with rotateOnRevoke: it leaves the served set and
    // a fresh key signs at once.
    ws.write_policy(
        "p.yaml",
        &spec(&format!(
            "  revokedKeyIDs: [{k1}]\n  rotateOnRevoke: true\n"
        )),
    );
    op.reload();
    let k3 = eventually(
        "k1 is revoked and a fresh key signs",
        Duration::from_secs(10),
        || {
            let summary = op.summary(p);
            let active = summary["activeKeyID"].as_str().unwrap().to_string();
            (!op.kids(p).contains(&k1) && active != k2).then_some((active, summary))
        },
    );
    let (k3, summary) = k3;
    // /policies shows until when a cache may still trust k1: the revocation
    // plus the served max-age (1 s).
    let revoked_at = ts(&summary["lastRevocationTime"]);
    assert_eq!(ts(&summary["revocationExposureUntil"]) - revoked_at, 1.0);
    assert_eq!(summary["lastRotationReason"], "Revoked");
    let served = Instant::now();

    // Three max-ages later both still trust k1, without fetching: they do not
    // follow max-age (their own lifetimes are 300 s and 600 s).
    std::thread::sleep(Duration::from_secs(3));
    for v in &mut verifiers {
        let n = jwks_fetches(&op);
        v.assert_valid(&url, &old, &k1);
        assert_eq!(jwks_fetches(&op), n, "{} refetched", v.name);
        eprintln!(
            "{}: still accepts the revoked key's token {:.1} s after the revocation was served (max-age 1 s)",
            v.name,
            served.elapsed().as_secs_f64()
        );
    }

    // The fresh key's first token has an unknown kid. Within 30 s of their
    // last fetch they do not refetch: they refuse it. Once the cooldown is
    // over the same token makes them fetch, it verifies, and k1 is gone.
    let (fresh, kid) = op.mint(p, &json!({"sub": "fresh"}));
    assert_eq!(kid, k3);
    for (v, fetched) in verifiers.iter_mut().zip(&last_fetch) {
        let n = jwks_fetches(&op);
        let verdict = v.check(&url, &fresh);
        assert_eq!(verdict["ok"], false, "{}: {verdict}", v.name);
        assert_eq!(jwks_fetches(&op), n, "{} fetched in its cooldown", v.name);
        eprintln!(
            "{}: refused the fresh key's first token {:.1} s after its last fetch, without fetching",
            v.name,
            fetched.elapsed().as_secs_f64()
        );
    }
    let mut accepted: [Option<Duration>; 2] = [None, None];
    eventually(
        "the fresh key's token verifies once the cooldown is over",
        Duration::from_secs(45),
        || {
            for ((v, fetched), done) in verifiers.iter_mut().zip(&last_fetch).zip(&mut accepted) {
                if done.is_some() {
                    continue;
                }
                let n = jwks_fetches(&op);
                if v.check(&url, &fresh)["ok"] == true {
                    *done = Some(fetched.elapsed());
                    assert_eq!(jwks_fetches(&op) - n, 1, "{} fetched once", v.name);
                } else {
                    assert_eq!(jwks_fetches(&op), n, "{} fetched in vain", v.name);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            accepted.iter().all(Option::is_some).then_some(())
        },
    );
    for (v, after) in verifiers.iter_mut().zip(accepted) {
        let after = after.unwrap();
        eprintln!(
            "{}: accepted the fresh key's token {:.1} s after its last fetch (one fetch)",
            v.name,
            after.as_secs_f64()
        );
        assert!(
            (Duration::from_secs(29)..Duration::from_secs(33)).contains(&after),
            "{}: the cooldown was {after:?}",
            v.name
        );
        // The refetch dropped the revoked key.
        let verdict = v.check(&url, &old);
        assert_eq!(
            verdict["ok"], false,
            "{} still trusts k1: {verdict}",
            v.name
        );
        v.assert_valid(&url, &current, &k2);
    }
}
