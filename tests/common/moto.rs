//! moto's S3 server for the publication tests, started on a free loopback
//! port and killed when dropped. Installed by tests/publish/install.sh.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;

/// The access key the tests give moto (which accepts any).
pub const ACCESS_KEY_ID: &str = "AKIAMOTOTESTKEYID0001";
/// The secret key the tests give moto; no log, Event, status or metric may
/// ever show it.
pub const SECRET_ACCESS_KEY: &str = "motoTestSecretValue/NeverInLogs+0123456789";

/// A running moto server.
pub struct Moto {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

fn moto_server() -> PathBuf {
    if let Ok(p) = std::env::var("JWKS_OPERATOR_MOTO_SERVER") {
        return p.into();
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let p = cache.join("jwks-operator/moto-venv/bin/moto_server");
    assert!(
        p.exists(),
        "{} is missing: run `bash tests/publish/install.sh`",
        p.display()
    );
    p
}

/// Key pairs of the IAM users [`Moto::start_enforcing_iam`] made.
pub struct IamKeys {
    /// (access key id, secret key) of a user allowed `s3:*`.
    pub allowed: (String, String),
    /// (access key id, secret key) of a user allowed nothing (403s).
    pub denied: (String, String),
}

/// Actions tests/publish/moto_iam.py makes before moto enforces IAM.
const SETUP_ACTIONS: u32 = 5;

impl Moto {
    /// Starts moto on 127.0.0.1 and waits until it answers.
    pub fn start() -> Moto {
        Moto::start_env(&[])
    }

    /// Starts moto enforcing IAM (signatures checked, policies applied:
    /// wrong keys are refused, a user without a policy gets 403), with two
    /// users and `buckets` made by tests/publish/moto_iam.py.
    pub fn start_enforcing_iam(buckets: &[&str]) -> (Moto, IamKeys) {
        let moto = Moto::start_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_ACTIONS.to_string())]);
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/publish/moto_iam.py");
        let python = moto_server().with_file_name("python");
        let out = Command::new(python)
            .arg(script)
            .arg(moto.endpoint())
            .args(buckets)
            .output()
            .expect("run moto_iam.py");
        assert!(
            out.status.success(),
            "moto_iam.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let pair = |k: &str| {
            (
                v[k][0].as_str().unwrap().to_owned(),
                v[k][1].as_str().unwrap().to_owned(),
            )
        };
        let keys = IamKeys {
            allowed: pair("allowed"),
            denied: pair("denied"),
        };
        (moto, keys)
    }

    fn start_env(env: &[(&str, String)]) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen within 30s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child: Some(child),
            addr,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let r = http(self.addr, "PUT", &format!("/{bucket}"), &[], Some(b""));
        assert_eq!(r.status, 200, "create bucket {bucket}: {}", r.text());
    }

    /// Lets anyone read `bucket`'s objects (a bucket behind a CDN).
    pub fn make_public(&self, bucket: &str) {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                           "Resource": format!("arn:aws:s3:::{bucket}/*")}]
        })
        .to_string();
        let r = http(
            self.addr,
            "PUT",
            &format!("/{bucket}?policy"),
            &[("Content-Type", "application/json")],
            Some(policy.as_bytes()),
        );
        assert_eq!(r.status, 200, "bucket policy: {}", r.text());
    }

    /// The public URL of an object.
    pub fn url(&self, bucket: &str, key: &str) -> String {
        format!("{}/{bucket}/{key}", self.endpoint())
    }

    /// The credentials, environment-style (a credentialsFile's content).
    pub fn credentials_env(&self) -> String {
        format!(
            "AWS_ACCESS_KEY_ID={ACCESS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET_ACCESS_KEY}\nAWS_REGION=us-east-1\nAWS_ENDPOINT_URL={}\n",
            self.endpoint()
        )
    }

    /// Credentials for `key` (access key id, secret key), environment-style.
    pub fn credentials_env_of(&self, key: &(String, String)) -> String {
        format!(
            "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION=us-east-1\nAWS_ENDPOINT_URL={}\n",
            key.0,
            key.1,
            self.endpoint()
        )
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the server.
    pub fn pause(&self, paused: bool) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        let sig = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: signalling our own child process by its pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // SAFETY: resuming our own child so that it can be killed cleanly.
            unsafe { libc::kill(pid, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
