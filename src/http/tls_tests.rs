//! TLS on a real loopback listener, with certificates made by rcgen: the
//! handshake, a reload while a connection stays open, and bad pairs at start
//! and at reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::server::{Limits, ServeConfig, serve};
use super::tls::{Reload, ServerTls, TlsFiles};
use super::{SharedState, Shutdown, jwks_routes};
use crate::metrics::{Listener, Metrics};

#[path = "../../tests/support/pki.rs"]
mod pki;
#[path = "../../tests/common/tls_client.rs"]
mod tls_client;

const PATIENCE: Duration = Duration::from_secs(30);

/// A test CA and leaves it signs for `localhost`.
struct Ca {
    pem: String,
    cert: CertificateDer<'static>,
    issuer: pki::Issuer,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Self {
        let (pem, issuer) = pki::test_ca("tls test CA").unwrap();
        Ca {
            cert: CertificateDer::from_pem_slice(pem.as_bytes()).unwrap(),
            pem,
            issuer,
        }
    }

    fn leaf(&self, cn: &str) -> Leaf {
        let (cert_pem, key_pem) =
            pki::leaf_cert(&self.issuer, cn, None, &["localhost"], &[], &[]).unwrap();
        Leaf {
            der: CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap(),
            cert_pem,
            key_pem,
        }
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        TlsConnector::from(tls_client::client_config(roots))
    }
}

/// A directory laid out the way kubelet mounts a Secret: `tls.crt` and
/// `tls.key` are symlinks through `..data`, which is swapped atomically to a
/// new version directory on every update (as cert-manager's renewals land).
struct MountedSecret {
    dir: tempfile::TempDir,
    version: u32,
}

impl MountedSecret {
    fn new(cert_pem: &str, key_pem: &str) -> Self {
        let mut m = MountedSecret {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        m.update(cert_pem, key_pem);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(name), m.dir.path().join(name))
                .unwrap();
        }
        m
    }

    fn update(&mut self, cert_pem: &str, key_pem: &str) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let vdir = self.dir.path().join(&version);
        std::fs::create_dir(&vdir).unwrap();
        std::fs::write(vdir.join("tls.crt"), cert_pem).unwrap();
        std::fs::write(vdir.join("tls.key"), key_pem).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }

    fn files(&self) -> TlsFiles {
        TlsFiles::new(
            self.dir.path().join("tls.crt"),
            self.dir.path().join("tls.key"),
        )
    }
}

async fn start_tls(tls: Arc<ServerTls>, metrics: Arc<Metrics>) -> (std::net::SocketAddr, Shutdown) {
    let state = SharedState::new(None, metrics.clone());
    state.set_ready(true);
    let shutdown = Shutdown::new();
    let config = ServeConfig {
        listener: Listener::Jwks,
        limits: Limits::default(),
        tls: Some(tls),
        metrics: Some(metrics),
    };
    let (addr, _task) = serve(
        "127.0.0.1:0".parse().unwrap(),
        jwks_routes(state),
        config,
        shutdown.wait(),
    )
    .await
    .unwrap();
    (addr, shutdown)
}

async fn connect(ca: &Ca, addr: std::net::SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    ca.connector()
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

fn served_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// One keep-alive request on `stream`; the status line.
async fn healthz(stream: &mut TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // The answer is small and has a Content-Length: read until the body is in.
    while !String::from_utf8_lossy(&buf).contains("\"ok\"") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

fn metric(metrics: &Metrics, line_prefix: &str) -> Option<String> {
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix).map(|v| v.trim().to_owned()))
}

#[tokio::test]
async fn the_listener_speaks_tls_with_the_given_pair() {
    let ca = Ca::new();
    let leaf = ca.leaf("first");
    let secret = MountedSecret::new(&leaf.cert_pem, &leaf.key_pem);
    let tls = ServerTls::load(secret.files()).unwrap();
    let (addr, shutdown) = start_tls(tls, Arc::new(Metrics::new())).await;

    let mut stream = connect(&ca, addr).await;
    assert_eq!(served_cert(&stream), leaf.der);
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    assert_eq!(healthz(&mut stream).await, "HTTP/1.1 200 OK");
    // Twice on the same connection (keep-alive through TLS).
    assert_eq!(healthz(&mut stream).await, "HTTP/1.1 200 OK");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut out)).await;
    assert!(!out.starts_with(b"HTTP/1.1 200"));
    shutdown.trigger();
}

/// A TLS listener serving a first pair from a mounted Secret the test can
/// renew: the CA, that pair, the Secret, the listener's TLS, metrics,
/// address and stop switch.
#[allow(clippy::type_complexity)]
async fn serve_first_pair() -> (
    Ca,
    Leaf,
    MountedSecret,
    Arc<ServerTls>,
    Arc<Metrics>,
    std::net::SocketAddr,
    Shutdown,
) {
    let ca = Ca::new();
    let first = ca.leaf("first");
    let secret = MountedSecret::new(&first.cert_pem, &first.key_pem);
    let tls = ServerTls::load(secret.files()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let (addr, shutdown) = start_tls(tls.clone(), metrics.clone()).await;
    (ca, first, secret, tls, metrics, addr, shutdown)
}

#[tokio::test]
async fn a_renewed_pair_reaches_new_connections_and_open_ones_keep_working() {
    let (ca, first, mut secret, tls, metrics, addr, shutdown) = serve_first_pair().await;
    tls.spawn_reloader(
        Duration::from_millis(50),
        Some(metrics.clone()),
        shutdown.wait(),
    );

    let mut old = connect(&ca, addr).await;
    assert_eq!(healthz(&mut old).await, "HTTP/1.1 200 OK");

    let second = ca.leaf("second");
    secret.update(&second.cert_pem, &second.key_pem);
    let start = tokio::time::Instant::now();
    loop {
        let fresh = connect(&ca, addr).await;
        if served_cert(&fresh) == second.der {
            break;
        }
        assert_eq!(served_cert(&fresh), first.der);
        assert!(start.elapsed() < PATIENCE, "the new pair was never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection opened before the renewal is still served.
    assert_eq!(healthz(&mut old).await, "HTTP/1.1 200 OK");
    assert_eq!(served_cert(&old), first.der);
    assert_eq!(
        metric(
            &metrics,
            "jwks_operator_tls_reloads_total{result=\"success\"} "
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(&metrics, "jwks_operator_tls_reload_failing ").as_deref(),
        Some("0")
    );
    shutdown.trigger();
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn a_bad_pair_at_start_is_an_error_that_names_the_file() {
    let ca = Ca::new();
    let a = ca.leaf("a");
    let b = ca.leaf("b");
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "tls.crt", &a.cert_pem);
    let other_key = write(dir.path(), "other.key", &b.key_pem);
    let garbage = write(dir.path(), "garbage.pem", "not a PEM file\n");
    let key_as_cert = write(dir.path(), "key-as-cert.pem", &a.key_pem);
    let missing = dir.path().join("missing.key");

    let cases: [(PathBuf, PathBuf, &Path, &str); 5] = [
        (
            cert.clone(),
            other_key.clone(),
            &other_key,
            "does not match",
        ),
        (
            garbage.clone(),
            other_key.clone(),
            &garbage,
            "no usable PEM certificate",
        ),
        (
            key_as_cert.clone(),
            other_key.clone(),
            &key_as_cert,
            "no usable PEM certificate",
        ),
        (
            cert.clone(),
            garbage.clone(),
            &garbage,
            "no usable PEM private key",
        ),
        (cert.clone(), missing.clone(), &missing, "cannot read"),
    ];
    for (cert, key, named, what) in cases {
        let err =
            ServerTls::load(TlsFiles::new(cert.clone(), key.clone())).expect_err("a bad pair");
        let message = err.to_string();
        assert!(
            message.contains(&named.display().to_string()) && message.contains(what),
            "{cert:?} {key:?}: {message}"
        );
        assert!(!message.contains("PRIVATE KEY"), "{message}");
    }
    // And the good pair loads.
    let key = write(dir.path(), "tls.key", &a.key_pem);
    ServerTls::load(TlsFiles::new(cert, key)).unwrap();
}

#[tokio::test]
async fn a_bad_pair_at_reload_keeps_the_old_one_and_says_so() {
    let (ca, first, mut secret, tls, metrics, addr, shutdown) = serve_first_pair().await;

    // A certificate with someone else's key.
    let second = ca.leaf("second");
    secret.update(&second.cert_pem, &first.key_pem);
    match tls.reload() {
        Reload::Failed(e) => assert!(e.to_string().contains("does not match"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Reported once per bad content, not at every look.
    assert!(matches!(tls.reload(), Reload::Unchanged));
    let mut stream = connect(&ca, addr).await;
    assert_eq!(served_cert(&stream), first.der);
    assert_eq!(healthz(&mut stream).await, "HTTP/1.1 200 OK");

    // Through the reloader: the log line and the metrics.
    secret.update("garbage", &first.key_pem);
    let reloader = tls.spawn_reloader(
        Duration::from_millis(50),
        Some(metrics.clone()),
        shutdown.wait(),
    );
    let start = tokio::time::Instant::now();
    while metric(&metrics, "jwks_operator_tls_reload_failing ").as_deref() != Some("1") {
        assert!(start.elapsed() < PATIENCE, "{}", metrics.encode());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(
            &metrics,
            "jwks_operator_tls_reloads_total{result=\"failure\"} "
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(served_cert(&connect(&ca, addr).await), first.der);
    // A good pair again: served, and the gauge clears.
    secret.update(&second.cert_pem, &second.key_pem);
    while metric(&metrics, "jwks_operator_tls_reload_failing ").as_deref() != Some("0") {
        assert!(start.elapsed() < PATIENCE, "{}", metrics.encode());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served_cert(&connect(&ca, addr).await), second.der);
    shutdown.trigger();
    reloader.await.unwrap();
}

/// Every run of `len` bytes of `bytes`, as `{:?}` prints a byte slice's
/// elements (`48, 129, 135`): what a derived `Debug` of the bytes shows.
fn debug_windows(bytes: &[u8], len: usize) -> Vec<String> {
    bytes
        .windows(len)
        .step_by(len)
        .map(|w| w.iter().map(u8::to_string).collect::<Vec<_>>().join(", "))
        .collect()
}

#[test]
fn the_debug_output_of_the_tls_configuration_holds_no_private_key_bytes() {
    use rustls::pki_types::pem::PemObject as _;
    let ca = Ca::new();
    let first = ca.leaf("first");
    let mut secret = MountedSecret::new(&first.cert_pem, &first.key_pem);
    let tls = ServerTls::load(secret.files()).unwrap();
    let second = ca.leaf("second");
    secret.update(&second.cert_pem, &second.key_pem);
    assert!(matches!(tls.reload(), Reload::Reloaded));

    let shown = format!("{tls:?} {tls:#?}");
    for leaf in [&first, &second] {
        let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
            .unwrap()
            .secret_der()
            .to_vec();
        let body: String = leaf
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        // The key file's base64 body as bytes and as text, the key as DER
        // bytes (runs long enough never to occur by chance elsewhere).
        let mut leaks = debug_windows(body.as_bytes(), 12);
        leaks.extend(debug_windows(&der, 12));
        leaks.extend(
            body.as_bytes()
                .chunks(16)
                .map(|c| String::from_utf8_lossy(c).into_owned()),
        );
        for leak in &leaks {
            assert!(
                !shown.contains(leak.as_str()),
                "the Debug output of ServerTls holds private key bytes ({leak})"
            );
        }
    }
    assert!(shown.contains("<redacted>"), "{shown}");
}

/// A client that trusts `server_ca` and presents `cert` (or no certificate).
fn mtls_connector(server_ca: &Ca, cert: Option<&Leaf>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.cert.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match cert {
        Some(leaf) => {
            use rustls::pki_types::pem::PemObject as _;
            let key =
                rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
            builder
                .with_client_auth_cert(vec![leaf.der.clone()], key)
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

/// Mints a token for `team-a/api` over TLS with `connector`: the status
/// line, or `None` when the server gave no HTTP answer (handshake refused).
async fn mint_over(connector: &TlsConnector, addr: std::net::SocketAddr) -> Option<String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()?;
    let body = r#"{"sub":"client"}"#;
    let request = format!(
        "POST /team-a/api/token HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the server answers or closes");
    let text = String::from_utf8_lossy(&out).into_owned();
    text.starts_with("HTTP/1.1")
        .then(|| text.lines().next().unwrap().to_owned())
}

/// `--token-client-ca-file`: the token listener requires a client
/// certificate from that CA; the JWKS listener does not ask for one.
#[tokio::test]
async fn the_token_listener_with_a_client_ca_serves_only_clients_with_its_certificates() {
    let server_ca = Ca::new();
    let server = server_ca.leaf("server");
    let client_ca = Ca::new();
    let stranger_ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "tls.crt", &server.cert_pem);
    let key = write(dir.path(), "tls.key", &server.key_pem);
    let ca_file = write(dir.path(), "clients.pem", &client_ca.pem);

    let state = super::tests::fixture().state;
    let mut config = super::ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    config.tls = Some(TlsFiles::new(cert, key));
    config.token_addr = Some("0.0.0.0:0".parse().unwrap());
    config.token_auth.client_ca_file = Some(ca_file);
    let shutdown = Shutdown::new();
    let listeners = super::start_listeners(&config, &state, &shutdown)
        .await
        .expect("a client CA is a credential: the listener starts beyond loopback");
    let token = std::net::SocketAddr::from(([127, 0, 0, 1], listeners.token.unwrap().port()));

    let no_cert = mtls_connector(&server_ca, None);
    assert_eq!(
        mint_over(&no_cert, token).await,
        None,
        "no client certificate"
    );
    let stranger = mtls_connector(&server_ca, Some(&stranger_ca.leaf("stranger")));
    assert_eq!(
        mint_over(&stranger, token).await,
        None,
        "a certificate from another CA"
    );
    let client = mtls_connector(&server_ca, Some(&client_ca.leaf("client")));
    assert_eq!(
        mint_over(&client, token).await.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "a certificate from the client CA"
    );

    // The JWKS listener stays open to anyone.
    let mut jwks = connect(&server_ca, listeners.jwks).await;
    assert_eq!(healthz(&mut jwks).await, "HTTP/1.1 200 OK");

    shutdown.trigger();
    listeners.stopped().await;
}
