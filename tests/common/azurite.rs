//! Azurite's Blob service for the publication tests, started on a free
//! loopback port with its data in a temporary directory, and killed when
//! dropped. Installed by tests/publish/install.sh.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's well-known development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public, in Azure's docs);
/// still a credential value: no log, status or metric may show it.
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite.
pub struct Azurite {
    child: Option<Child>,
    _data: tempfile::TempDir,
    /// Where it listens.
    pub addr: SocketAddr,
}

fn cache() -> PathBuf {
    std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"))
        .join("jwks-operator")
}

impl Azurite {
    /// Starts Azurite's Blob service on 127.0.0.1 and waits until it answers.
    pub fn start() -> Azurite {
        let bin = cache().join("azurite-3.35.0/node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "{} is missing: run `bash tests/publish/install.sh`",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(bin)
            // The Python SDK speaks a newer API version than Azurite 3.35
            // knows; the operations used here are older than both.
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--silent",
                "--skipApiVersionCheck",
                "--location",
            ])
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "azurite did not listen within 30s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Azurite {
            child: Some(child),
            _data: data,
            addr,
        }
    }

    /// The account's blob endpoint (`http://127.0.0.1:<port>/devstoreaccount1`).
    pub fn endpoint(&self) -> String {
        format!("http://{}/{ACCOUNT}", self.addr)
    }

    /// Creates `container` with anonymous read access to its blobs, through
    /// the Azure SDK in the test venv.
    pub fn create_container(&self, container: &str) {
        let python = cache().join("moto-venv/bin/python");
        let script = format!(
            "from azure.storage.blob import BlobServiceClient\n\
             c = BlobServiceClient.from_connection_string('DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={}')\n\
             c.create_container('{container}', public_access='blob')\n",
            self.endpoint()
        );
        let out = Command::new(python)
            .args(["-c", &script])
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "create container {container}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the server.
    pub fn pause(&self, paused: bool) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        let sig = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: signalling our own child process by its pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// The credentials, environment-style.
    pub fn credentials_env(&self, key: &str) -> String {
        format!(
            "AZURE_STORAGE_ACCOUNT_NAME={ACCOUNT}\nAZURE_STORAGE_ACCOUNT_KEY={key}\nAZURE_STORAGE_ENDPOINT={}\n",
            self.endpoint()
        )
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: resuming our own child so that it can be killed cleanly.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
