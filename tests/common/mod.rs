//! Harness for tests that run the real `jwks-operator` binary: start it in
//! standalone mode on ports picked by the OS, talk to it over HTTP only,
//! signal it, and always kill it (and show its log) when a test fails.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

// One source for the JWK Set reader and the test certificates: a test that
// includes both `common` and `support` compiles these files twice.
pub mod azurite;
#[allow(clippy::duplicate_mod)]
#[path = "../support/jwks.rs"]
mod jwks;
pub mod moto;
#[allow(clippy::duplicate_mod)]
#[path = "../support/pki.rs"]
pub mod pki;
pub mod state_dir;
pub mod tls_client;

pub use jwks::kids_of;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_jwks-operator");

/// A running `jwks-operator standalone`. Killed when dropped; its log is
/// printed if the test is failing.
pub struct Operator {
    child: Option<Child>,
    /// The JWKS listener.
    pub jwks: SocketAddr,
    /// The token listener.
    pub token: SocketAddr,
    /// The metrics listener (probes, /metrics, the full /policies).
    pub metrics: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    pub policies: PathBuf,
    pub state_dir: PathBuf,
}

impl Operator {
    /// Starts standalone mode on 127.0.0.1 (ports chosen by the OS, read
    /// back from the JSON log) and waits until it is ready.
    pub fn start(policies: &Path, state_dir: &Path) -> Operator {
        Self::start_with(policies, state_dir, &[])
    }

    /// Starts standalone mode with extra arguments and returns as soon as
    /// the listeners are bound (policies may still be loading).
    pub fn launch(policies: &Path, state_dir: &Path, extra: &[&str]) -> Operator {
        Self::launch_env(policies, state_dir, extra, &[])
    }

    /// [`Operator::launch`] with extra environment variables (such as
    /// `SOFTHSM2_CONF`).
    pub fn launch_env(
        policies: &Path,
        state_dir: &Path,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Operator {
        let mut child = Command::new(BIN)
            .envs(env.iter().copied())
            .args(["standalone", "--policies"])
            .arg(policies)
            .arg("--state-dir")
            .arg(state_dir)
            .args([
                "--jwks-addr",
                "127.0.0.1:0",
                "--token-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--log-format",
                "json",
                // Short, so tests that watch a key being pruned take seconds;
                // not zero, so the grace is part of every timeline.
                "--propagation-grace",
                "1s",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut op = Operator {
            child: Some(child),
            jwks: "0.0.0.0:0".parse().unwrap(),
            token: "0.0.0.0:0".parse().unwrap(),
            metrics: "0.0.0.0:0".parse().unwrap(),
            log,
            policies: policies.to_owned(),
            state_dir: state_dir.to_owned(),
        };
        op.jwks = op.wait_for_addr("JWKS listener started");
        op.token = op.wait_for_addr("token listener started");
        op.metrics = op.wait_for_addr("metrics listener started");
        op
    }

    /// Starts standalone mode and waits until its first pass over the
    /// policies is done.
    pub fn start_with(policies: &Path, state_dir: &Path, extra: &[&str]) -> Operator {
        let mut op = Self::launch(policies, state_dir, extra);
        op.wait_for_log(
            |l| l["message"] == "standalone mode ready",
            Duration::from_secs(20),
        );
        op
    }

    fn wait_for_addr(&mut self, message: &str) -> SocketAddr {
        let line = self.wait_for_log(|l| l["message"] == message, Duration::from_secs(20));
        line["addr"].as_str().unwrap().parse().unwrap()
    }

    /// Every log line so far, parsed (non-JSON lines as strings).
    pub fn log(&self) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.clone())))
            .collect()
    }

    /// Waits for a log line matching `pred`; panics (with the log) after `timeout`.
    pub fn wait_for_log(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| pred(l)) {
                return line;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("jwks-operator exited ({status}) before the expected log line");
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a log line"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// SIGHUP: re-read the policy files.
    pub fn reload(&self) {
        self.signal("HUP");
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("jwks-operator did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET` on the JWKS listener.
    pub fn get(&self, path: &str) -> Response {
        http(self.jwks, "GET", path, &[], None)
    }

    /// The public set of `ns/name` (must be 200).
    pub fn jwks(&self, policy: &str) -> Value {
        let r = self.get(&format!("/{policy}/.well-known/jwks.json"));
        assert_eq!(r.status, 200, "{policy}: {}", r.text());
        r.json()
    }

    /// The kids in the public set of `ns/name`, newest first.
    pub fn kids(&self, policy: &str) -> Vec<String> {
        kids_of(&self.jwks(policy))
    }

    /// The `/policies` entry of `ns/name`, in full (with problem messages):
    /// from the metrics listener.
    pub fn summary(&self, policy: &str) -> Value {
        let all = http(self.metrics, "GET", "/policies", &[], None).json();
        let (ns, name) = policy.split_once('/').unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .find(|p| p["namespace"] == ns && p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{policy} is not in /policies: {all}"))
    }

    /// Mints a token (`POST /{policy}/token`); returns `(token, kid)`.
    pub fn mint(&self, policy: &str, body: &Value) -> (String, String) {
        let r = http(
            self.token,
            "POST",
            &format!("/{policy}/token"),
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(r.status, 200, "mint: {}", r.text());
        let v = r.json();
        (
            v["token"].as_str().unwrap().to_string(),
            v["kid"].as_str().unwrap().to_string(),
        )
    }

    /// `POST /{policy}/verify`: `Ok(kid)` or `Err(error code)`.
    pub fn verify(&self, policy: &str, token: &str) -> Result<String, String> {
        let body = serde_json::json!({ "token": token }).to_string();
        let r = http(
            self.token,
            "POST",
            &format!("/{policy}/verify"),
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        let v = r.json();
        match r.status {
            200 => Ok(v["kid"].as_str().unwrap().to_string()),
            401 => Err(v["error"].as_str().unwrap_or_default().to_string()),
            other => panic!("verify answered {other}: {v}"),
        }
    }

    /// The URL of the public set of `ns/name`.
    pub fn jwks_url(&self, policy: &str) -> String {
        format!("http://{}/{policy}/.well-known/jwks.json", self.jwks)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- jwks-operator log ----");
            for line in self.log.lock().unwrap().iter() {
                eprintln!("{line}");
            }
            eprintln!("---- end of log ----");
        }
    }
}

/// Runs `jwks-operator verify --jwks <jwks> <token>`: `Ok(stdout)` on exit 0,
/// `Err(stderr)` on exit 1.
pub fn cli_verify(jwks: &str, token: &str) -> Result<String, String> {
    let out = Command::new(BIN)
        .args(["verify", "--jwks", jwks, token])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match out.status.code() {
        Some(0) => Ok(stdout),
        Some(1) => {
            assert_eq!(stderr.lines().count(), 1, "one-line reason: {stderr}");
            Err(stderr)
        }
        other => panic!("verify exited {other:?}: {stdout} {stderr}"),
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// A header value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client: one request per connection, `Connection: close`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut stream = connect(addr);
    exchange(&mut stream, &addr.to_string(), method, path, headers, body)
}

/// [`http`] over TLS, trusting only `ca_pem` and checking the certificate
/// names `localhost`.
pub fn https(
    addr: SocketAddr,
    ca_pem: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("a PEM CA")).unwrap();
    }
    let conn = rustls::ClientConnection::new(
        tls_client::client_config(roots),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    let mut stream = rustls::StreamOwned::new(conn, connect(addr));
    exchange(&mut stream, "localhost", method, path, headers, body)
}

/// A connection to `addr` (5 s to connect, reads time out after 10 s).
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends one request with `Host: host` and `Connection: close` on `stream`
/// and reads the response to the end.
fn exchange(
    stream: &mut (impl Read + Write),
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .expect("send the request (over TLS: the handshake too)");
    if let Some(b) = body {
        stream.write_all(b).unwrap();
    }
    let mut raw = Vec::new();
    // A TLS server may close without a close_notify after Connection: close.
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the response: {e}"),
    }
    parse_response(&raw)
}

/// A test CA and a `localhost`/`127.0.0.1` serving pair it signed, as PEM:
/// `(ca, cert, key)`.
pub fn tls_pair() -> (String, String, String) {
    let (ca, issuer) = pki::test_ca("jwks-operator e2e CA").unwrap();
    let (cert, key) = pki::leaf_cert(
        &issuer,
        "localhost",
        None,
        &["localhost"],
        &[[127, 0, 0, 1]],
        &[],
    )
    .unwrap();
    (ca, cert, key)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A policy manifest.
pub fn manifest(name: &str, annotations: &str, spec: &str) -> String {
    format!(
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n{spec}"
    )
}

/// A temporary directory with `policies/` and `state/` inside.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    /// An empty workspace.
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        Workspace { dir }
    }

    /// The policies directory.
    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// The state directory.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes `policies/<file>`.
    pub fn write_policy(&self, file: &str, text: &str) {
        std::fs::write(self.policies().join(file), text).unwrap();
    }

    /// The state directory of `ns/name`.
    pub fn policy_state(&self, policy: &str) -> PathBuf {
        self.state().join(policy)
    }
}

/// Seconds since the epoch, with fractions.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// An RFC 3339 timestamp as seconds since the epoch.
pub fn ts(v: &Value) -> f64 {
    let t: jiff::Timestamp = v.as_str().expect("a timestamp").parse().unwrap();
    t.as_nanosecond() as f64 / 1e9
}
