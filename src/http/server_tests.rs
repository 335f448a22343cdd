//! The listeners over real loopback sockets: timeouts, the connection cap,
//! the bounded drain. (What a misbehaving client may write to the log is in
//! tests/listener_logs.rs: one process, one global log capture.)
//!
//! Every wait is on something observable (a socket closing, a gauge), with
//! a generous upper bound so a loaded machine does not fail them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use warp::Filter;

use super::server::{Limits, ServeConfig, serve};
use super::{SharedState, Shutdown, jwks_routes};
use crate::metrics::{Listener, Metrics};

/// Upper bound of every wait below (never reached when things work).
const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    addr: SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<()>,
    metrics: Arc<Metrics>,
}

async fn start(limits: Limits) -> Server {
    let metrics = Arc::new(Metrics::new());
    let state = SharedState::new(None, metrics.clone());
    state.set_ready(true);
    start_routes(limits, metrics, jwks_routes(state)).await
}

async fn start_routes<F, R>(limits: Limits, metrics: Arc<Metrics>, routes: F) -> Server
where
    F: Filter<Extract = (R,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    R: warp::Reply + 'static,
{
    let shutdown = Shutdown::new();
    let config = ServeConfig {
        listener: Listener::Jwks,
        limits,
        tls: None,
        metrics: Some(metrics.clone()),
    };
    let (addr, task) = serve(
        "127.0.0.1:0".parse().unwrap(),
        routes,
        config,
        shutdown.wait(),
    )
    .await
    .unwrap();
    Server {
        addr,
        shutdown,
        task,
        metrics,
    }
}

/// A full request on a fresh connection; the whole answer.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until the server closes the connection (EOF or reset); what it
/// sent before. `None` if it is still open after `PATIENCE`.
async fn wait_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| out)
}

/// The `http_open_connections` gauge of the JWKS listener.
fn open_connections(metrics: &Metrics) -> i64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix("jwks_operator_http_open_connections{listener=\"jwks\"} "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

async fn wait_open_connections(metrics: &Metrics, want: i64) {
    let start = tokio::time::Instant::now();
    while open_connections(metrics) != want {
        assert!(
            start.elapsed() < PATIENCE,
            "open connections stayed at {} (want {want})",
            open_connections(metrics)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn limits(header_read: Duration, idle: Duration, max: usize) -> Limits {
    Limits {
        header_read_timeout: header_read,
        idle_timeout: idle,
        max_connections: max,
        drain_timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn idle_half_sent_and_kept_alive_connections_are_closed_by_the_header_read_timeout() {
    let server = start(limits(Duration::from_secs(1), PATIENCE * 2, 10_000)).await;
    let mut held = Vec::new();
    // 100 that never send a byte, 100 that send half a request head.
    for i in 0..200 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await
                .unwrap();
        }
        held.push(s);
    }
    // 50 that finish one request and keep the connection open.
    for _ in 0..50 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    // Real requests are served beside them.
    let answer = get(server.addr, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Every one of them is closed by the server, without a byte from us.
    for (i, s) in held.iter_mut().enumerate() {
        assert!(
            wait_closed(s).await.is_some(),
            "connection {i} still open after {PATIENCE:?}"
        );
    }
    wait_open_connections(&server.metrics, 0).await;
    server.shutdown.trigger();
    server.task.await.unwrap();
}

/// One keep-alive request on `stream`; the status line. Proves the server
/// took the connection.
async fn keep_alive_request(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_connection_that_stops_moving_data_is_closed_by_the_idle_timeout() {
    // A route that reads the body; the header-read timeout is long here, so
    // only the idle timeout can act.
    let routes = warp::body::bytes()
        .map(|_: bytes::Bytes| "ok")
        .or(warp::any().map(|| "no body"))
        .unify();
    let metrics = Arc::new(Metrics::new());
    let server = start_routes(
        limits(PATIENCE * 2, Duration::from_secs(1), 100),
        metrics,
        routes,
    )
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // The same request, whole, is answered: the route works.
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Then a body that stops half way.
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
        .await
        .unwrap();
    assert!(
        wait_closed(&mut s).await.is_some(),
        "the stalled connection is still open after {PATIENCE:?}"
    );
    server.shutdown.trigger();
    server.task.await.unwrap();
}

#[tokio::test]
async fn the_connection_cap_refuses_one_more_and_serves_again_below_it() {
    let cap = 100;
    let server = start(limits(PATIENCE * 2, PATIENCE * 2, cap)).await;
    let mut held = Vec::new();
    for _ in 0..cap {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(keep_alive_request(&mut s).await, "HTTP/1.1 200 OK");
        held.push(s);
    }

    // One more: answered 503 and closed at once.
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let answer = wait_closed(&mut extra)
        .await
        .expect("the connection over the cap is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");

    // Below the cap again (the server notices the close), real requests are
    // served.
    drop(held.pop());
    let start = tokio::time::Instant::now();
    loop {
        let answer = get(server.addr, "/healthz").await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(start.elapsed() < PATIENCE, "never below the cap again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The ones held were never disturbed.
    assert_eq!(keep_alive_request(&mut held[0]).await, "HTTP/1.1 200 OK");
    let text = server.metrics.encode();
    let refused = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("jwks_operator_http_connections_refused_total{listener=\"jwks\"} ")
        })
        .map(|v| v.trim().parse::<u64>().unwrap());
    assert!(refused.is_some_and(|n| n >= 1), "{text}");
    wait_open_connections(&server.metrics, cap as i64 - 1).await;

    drop(held);
    server.shutdown.trigger();
    server.task.await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_bounds_the_drain() {
    let metrics = Arc::new(Metrics::new());
    // A route that never answers: its request stays in flight for ever.
    let arrived = Arc::new(tokio::sync::Notify::new());
    let hang = {
        let arrived = arrived.clone();
        warp::path("hang").then(move || {
            arrived.notify_one();
            std::future::pending::<&'static str>()
        })
    };
    let routes = hang.or(warp::any().map(|| "ok")).unify();
    let server = start_routes(
        limits(PATIENCE * 2, PATIENCE * 2, 100),
        metrics.clone(),
        routes,
    )
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(keep_alive_request(&mut idle).await, "HTTP/1.1 200 OK");
    let mut hanging = TcpStream::connect(server.addr).await.unwrap();
    hanging
        .write_all(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, arrived.notified())
        .await
        .expect("the hanging request reached its route");

    server.shutdown.trigger();
    // The idle connection is closed at once, the hanging one when the drain
    // timeout (1 s) is over, and the listener stops.
    assert!(wait_closed(&mut idle).await.is_some());
    assert!(wait_closed(&mut hanging).await.is_some());
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("the listener stops within its drain timeout")
        .unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
    assert_eq!(open_connections(&metrics), 0);
}

/// Polls one write of `bytes` to completion; how many times it was
/// `Pending` first (`IdleTimeout` wakes the task itself when it yields).
async fn pendings_of_write<I: tokio::io::AsyncWrite + Unpin>(
    io: &mut I,
    bytes: &[u8],
    vectored: bool,
) -> usize {
    let mut pendings = 0;
    let written = std::future::poll_fn(|cx| {
        let polled = if vectored {
            std::pin::Pin::new(&mut *io).poll_write_vectored(cx, &[std::io::IoSlice::new(bytes)])
        } else {
            std::pin::Pin::new(&mut *io).poll_write(cx, bytes)
        };
        if polled.is_pending() {
            pendings += 1;
        }
        polled
    })
    .await
    .unwrap();
    assert_eq!(written, bytes.len());
    pendings
}

#[tokio::test]
async fn the_token_listener_yields_once_before_the_first_answer_after_a_read() {
    use super::server::IdleTimeout;
    for vectored in [false, true] {
        for (batch_answers, expected) in [(true, 1), (false, 0)] {
            let (mut client, server) = tokio::io::duplex(1024);
            let mut io = IdleTimeout::new(server, PATIENCE, batch_answers);
            client.write_all(b"request").await.unwrap();
            let mut request = [0u8; 7];
            io.read_exact(&mut request).await.unwrap();
            let context = format!("batch_answers {batch_answers}, vectored {vectored}");
            assert_eq!(
                pendings_of_write(&mut io, b"answer", vectored).await,
                expected,
                "first write after a read: {context}"
            );
            // The next answer, with no read in between, goes out at once.
            assert_eq!(
                pendings_of_write(&mut io, b"more", vectored).await,
                0,
                "second write: {context}"
            );
            let mut answers = [0u8; 10];
            client.read_exact(&mut answers).await.unwrap();
            assert_eq!(&answers, b"answermore");
        }
    }
}

/// Probes go to the metrics listener (the chart points them there): with
/// the JWKS listener at its connection cap, /healthz and /readyz still
/// answer, so a flood of JWKS clients does not get the pod restarted or
/// taken out of its Service.
#[tokio::test]
async fn probes_on_the_metrics_listener_answer_while_the_jwks_listener_is_at_its_cap() {
    let cap = 4;
    let metrics = Arc::new(Metrics::new());
    let state = SharedState::new(None, metrics.clone());
    state.set_ready(true);
    let mut config = super::ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    config.limits = limits(PATIENCE * 2, PATIENCE * 2, cap);
    let shutdown = Shutdown::new();
    let listeners = super::start_listeners(&config, &state, &shutdown)
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..cap {
        let mut s = TcpStream::connect(listeners.jwks).await.unwrap();
        assert_eq!(keep_alive_request(&mut s).await, "HTTP/1.1 200 OK");
        held.push(s);
    }
    let mut extra = TcpStream::connect(listeners.jwks).await.unwrap();
    let refused = wait_closed(&mut extra).await.expect("refused and closed");
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 503"), "at the cap: {refused}");

    let probes = listeners.metrics.expect("metrics listener");
    for path in ["/healthz", "/readyz"] {
        let answer = get(probes, path).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }

    drop(held);
    shutdown.trigger();
    listeners.stopped().await;
}

/// The token listener mints tokens: beyond loopback it does not start
/// without a client credential, and says which flags to give.
#[tokio::test]
async fn the_token_listener_refuses_to_start_beyond_loopback_without_a_credential() {
    let state = SharedState::new(None, Arc::new(Metrics::new()));
    let mut config = super::ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    config.token_addr = Some("0.0.0.0:0".parse().unwrap());
    let shutdown = Shutdown::new();
    let Err(err) = super::start_listeners(&config, &state, &shutdown).await else {
        panic!("started without a credential");
    };
    let message = format!("{err:#}");
    assert!(message.contains("--token-auth-file"), "{message}");
    assert!(message.contains("--token-client-ca-file"), "{message}");

    // On loopback it starts without one.
    config.token_addr = Some("127.0.0.1:0".parse().unwrap());
    let listeners = super::start_listeners(&config, &state, &shutdown)
        .await
        .unwrap();
    assert!(listeners.token.is_some());

    // Beyond loopback with a bearer token file, it starts and wants the token.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken").unwrap();
    let mut config = super::ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    config.token_addr = Some("0.0.0.0:0".parse().unwrap());
    config.token_auth.bearer_token_file = Some(token_file);
    let guarded = super::start_listeners(&config, &state, &shutdown)
        .await
        .unwrap();
    let port = guarded.token.unwrap().port();
    let answer = get(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "/default/demo/token",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{answer}"
    );

    shutdown.trigger();
    listeners.stopped().await;
    guarded.stopped().await;
}
