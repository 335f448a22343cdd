//! What misbehaving clients and bad certificate files write to the log.
//!
//! Its own test binary: one global log capture for the whole process, so
//! every event of the listeners reaches it whatever thread runs them.

#[path = "support/pki.rs"]
mod pki;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jwks_operator::http::{
    Limits, ServeConfig, ServerTls, SharedState, Shutdown, TlsFiles, jwks_routes, serve,
};
use jwks_operator::metrics::{Listener, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(30);

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The process's log so far (`DEBUG` and up).
fn logs() -> String {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    let captured = LOGS.get_or_init(|| {
        let c = Captured::default();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(c.clone())
            .init();
        c
    });
    String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned()
}

async fn wait_for_log(what: &str, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = logs().lines().find(|l| pred(l)) {
            return line.to_owned();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no log line: {what}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn clients_that_go_away_time_out_or_send_garbage_are_logged_at_debug_at_most() {
    logs();
    let metrics = Arc::new(Metrics::new());
    let state = SharedState::new(None, metrics.clone());
    state.set_ready(true);
    let shutdown = Shutdown::new();
    let config = ServeConfig {
        listener: Listener::Jwks,
        limits: Limits {
            header_read_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
        tls: None,
        metrics: Some(metrics),
    };
    let (addr, task): (SocketAddr, _) = serve(
        "127.0.0.1:0".parse().unwrap(),
        jwks_routes(state),
        config,
        shutdown.wait(),
    )
    .await
    .unwrap();

    for i in 0..60 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        match i % 3 {
            // Half a head, then gone.
            0 => s.write_all(b"GET /healthz HTTP/1.1\r\nhost").await.unwrap(),
            // Half a body, then gone.
            1 => s
                .write_all(b"POST /policies HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
                .await
                .unwrap(),
            // Not HTTP at all.
            _ => s.write_all(b"\x16\x03\x01 not http\r\n\r\n").await.unwrap(),
        }
        drop(s);
    }
    // And some that say nothing until the header-read timeout closes them.
    for _ in 0..5 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let _ = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("closed by the header-read timeout");
    }
    shutdown.trigger();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the listener stops")
        .unwrap();

    let text = logs();
    let loud: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") || (l.contains(" WARN ") && !l.contains("http::tls")))
        .collect();
    assert!(loud.is_empty(), "{loud:#?}");
    // They are there, at debug level.
    assert!(
        text.lines()
            .any(|l| l.contains("DEBUG") && l.contains("connection closed with an error")),
        "{text}"
    );
}

fn leaf(issuer: &pki::Issuer) -> (String, String) {
    pki::leaf_cert(issuer, "localhost", None, &["localhost"], &[], &[]).unwrap()
}

/// Replaces `path` in one step, as an atomic writer would.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_refused_tls_reload_is_a_warning_naming_the_file_and_a_good_one_is_logged_too() {
    logs();
    let (_, issuer) = pki::test_ca("listener_logs test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (cert, key) = leaf(&issuer);
    std::fs::write(&files.cert, &cert).unwrap();
    std::fs::write(&files.key, &key).unwrap();
    let tls = ServerTls::load(files.clone()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let shutdown = Shutdown::new();
    let reloader = tls.spawn_reloader(
        Duration::from_millis(50),
        Some(metrics.clone()),
        shutdown.wait(),
    );

    replace(&files.cert, "not a certificate\n");
    let cert_path = files.cert.display().to_string();
    let warning = wait_for_log("the refused reload", |l| {
        l.contains("WARN") && l.contains("keeping the previous pair") && l.contains(&cert_path)
    })
    .await;
    assert!(warning.contains("no usable PEM certificate"), "{warning}");
    assert!(
        metrics
            .encode()
            .contains("jwks_operator_tls_reload_failing 1"),
        "{}",
        metrics.encode()
    );

    let (cert, key) = leaf(&issuer);
    // The key first: for a moment the pair does not match (refused, logged),
    // then the certificate: a good pair, used and logged.
    replace(&files.key, &key);
    replace(&files.cert, &cert);
    wait_for_log("the reload", |l| {
        l.contains("INFO") && l.contains("TLS certificate reloaded") && l.contains(&cert_path)
    })
    .await;
    assert!(
        metrics
            .encode()
            .contains("jwks_operator_tls_reload_failing 0"),
        "{}",
        metrics.encode()
    );
    let text = logs();
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("BEGIN"),
        "{text}"
    );
    shutdown.trigger();
    reloader.await.unwrap();
}
