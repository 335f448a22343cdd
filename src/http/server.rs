//! The listeners: a tokio `TcpListener` whose connections hyper serves one
//! by one (HTTP/1.1), with the limits warp's own server lacks.
//!
//! warp 0.4 builds hyper without a timer, so hyper's header-read timeout
//! never fires there: a client that opened a connection and sent half a
//! request (or nothing) held it for ever, and every client that went away
//! mid-request was logged at ERROR. Here each listener
//!
//! - gives a client [`Limits::header_read_timeout`] to send a complete
//!   request head, counted from the connection's start and, on a kept-alive
//!   connection, from the end of the previous response (so it is also the
//!   keep-alive idle timeout), and the same time for the TLS handshake;
//! - closes a connection on which no byte moved either way for
//!   [`Limits::idle_timeout`] (a stalled request body, a client that stops
//!   reading its answer);
//! - holds at most [`Limits::max_connections`] connections: one more is
//!   answered `503` (plain HTTP; over TLS it is just closed) and closed at
//!   once, so the listener keeps accepting and frees the kernel's backlog;
//! - on shutdown stops accepting, lets requests in flight finish, closes idle
//!   connections at once, and drops whatever is still open after
//!   [`Limits::drain_timeout`];
//! - logs a client's disconnect, a timeout or a malformed request at debug
//!   level only: a client cannot write to the operator's log at will.
//!
//! The same warp filter as before answers every request
//! ([`warp::service`]); the routes do not know about any of this.
//! [`serve_service`] takes any hyper service instead: the JWKS listener's
//! answers its hot route itself and hands the rest to warp
//! ([`super::fast_path`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};
use warp::{Filter, Reply};

use super::tls::ServerTls;
use crate::metrics::{Listener, Metrics};

/// What answers the requests of one connection: a hyper service over
/// warp's request and response types that never fails (errors are answers),
/// movable to the connection's task. [`serve`] makes one from a warp filter;
/// [`serve_service`] takes any.
pub trait ConnectionService:
    hyper::service::Service<
        warp::http::Request<hyper::body::Incoming>,
        Response = warp::reply::Response,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<S> ConnectionService for S where
    S: hyper::service::Service<
            warp::http::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Send
        + 'static
{
}

/// Default of [`Limits::header_read_timeout`] (`--http-header-read-timeout`).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`Limits::idle_timeout`] (`--http-idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`Limits::max_connections`] (`--http-max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default of [`Limits::drain_timeout`]: how long requests in flight get to
/// finish at shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener allows its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a complete request head (and to finish a TLS handshake),
    /// from the connection's start or the end of the previous response.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves in either direction for this long
    /// is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once on this listener.
    pub max_connections: usize,
    /// At shutdown, connections still open after this long are dropped.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// Everything one listener needs besides its address and routes.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Which listener this is (the `listener` label of its metrics).
    pub listener: Listener,
    /// Timeouts and the connection cap.
    pub limits: Limits,
    /// Serve TLS with this (reloading) certificate; plain HTTP when `None`.
    pub tls: Option<Arc<ServerTls>>,
    /// Where to count open and refused connections (none in some tests).
    pub metrics: Option<Arc<Metrics>>,
}

impl ServeConfig {
    /// Plain HTTP with the default [`Limits`] and no metrics.
    pub fn plain(listener: Listener) -> Self {
        ServeConfig {
            listener,
            limits: Limits::default(),
            tls: None,
            metrics: None,
        }
    }
}

/// The answer to a connection over the cap (plain HTTP only).
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 83\r\n\
\r\n\
{\"error\":\"too_many_connections\",\"message\":\"the server is at its connection limit\"}";

/// Binds `addr` (port 0 picks a free port) and serves `routes` on it in a
/// background task until `shutdown` completes; then stops accepting, lets
/// requests in flight finish (at most [`Limits::drain_timeout`]), and the
/// task ends.
///
/// Returns the bound address and the task's handle. Fails only if the
/// address cannot be bound.
pub async fn serve<F, R>(
    addr: SocketAddr,
    routes: F,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, JoinHandle<()>)>
where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply + 'static,
{
    let make = move || TowerToHyperService::new(warp::service(routes.clone()));
    serve_service(addr, make, config, shutdown).await
}

/// [`serve`] for any hyper service: `make` builds the service of each new
/// connection. Same limits, timeouts and drain as [`serve`].
pub async fn serve_service<M, S>(
    addr: SocketAddr,
    make: M,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, JoinHandle<()>)>
where
    M: Fn() -> S + Send + 'static,
    S: ConnectionService,
{
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handle = tokio::spawn(accept_loop(listener, make, config, shutdown));
    Ok((local, handle))
}

async fn accept_loop<M, S>(
    listener: TcpListener,
    make: M,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    M: Fn() -> S + Send + 'static,
    S: ConnectionService,
{
    let slots = Arc::new(Semaphore::new(config.limits.max_connections));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refused_logged = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        accept_error(&e).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    if let Some(m) = &config.metrics {
                        m.http.http_connection_refused(config.listener);
                    }
                    if !refused_logged {
                        // Once per episode, not once per connection.
                        warn!(
                            listener = config.listener.as_str(),
                            limit = config.limits.max_connections,
                            "connection limit reached; refusing new connections until some close"
                        );
                        refused_logged = true;
                    }
                    refuse(stream, config.tls.is_some());
                    continue;
                };
                if refused_logged && slots.available_permits() * 10 >= config.limits.max_connections {
                    refused_logged = false;
                }
                let open = OpenConnection::new(config.metrics.clone(), config.listener, slot);
                connections.spawn(connection(
                    stream,
                    peer,
                    make(),
                    config.clone(),
                    drain_rx.clone(),
                    open,
                ));
            }
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let open = connections.len();
    if open > 0 {
        debug!(
            listener = config.listener.as_str(),
            open, "draining connections"
        );
    }
    let drained = tokio::time::timeout(config.limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            listener = config.listener.as_str(),
            still_open = connections.len(),
            "requests still in flight after {:?}; closing their connections",
            config.limits.drain_timeout
        );
        connections.shutdown().await;
    }
}

/// Errors of `accept` that concern one connection only (the peer gave up
/// before we took it): try the next one at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn accept_error(e: &io::Error) {
    if is_connection_error(e) {
        debug!(error = %e, "accept");
        return;
    }
    // Most likely out of file descriptors (EMFILE): wait for some to close
    // rather than spin.
    warn!(error = %e, "cannot accept connections; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Answers a connection over the cap without waiting on it: a `503` when the
/// kernel takes it at once (plain HTTP), then close.
fn refuse(stream: TcpStream, tls: bool) {
    if !tls {
        let _ = stream.try_write(OVER_CAPACITY);
    }
    drop(stream);
}

/// One open connection: holds its slot and keeps the open-connections gauge.
struct OpenConnection {
    metrics: Option<Arc<Metrics>>,
    listener: Listener,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(
        metrics: Option<Arc<Metrics>>,
        listener: Listener,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        if let Some(m) = &metrics {
            m.http.http_connection_opened(listener);
        }
        OpenConnection {
            metrics,
            listener,
            _slot: slot,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.http.http_connection_closed(self.listener);
        }
    }
}

async fn connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    config: ServeConfig,
    drain: watch::Receiver<bool>,
    _open: OpenConnection,
) where
    S: ConnectionService,
{
    let _ = stream.set_nodelay(true);
    let batch_answers = config.listener == Listener::Token;
    let io = IdleTimeout::new(stream, config.limits.idle_timeout, batch_answers);
    match &config.tls {
        None => drive(io, peer, service, &config.limits, drain).await,
        Some(tls) => {
            let acceptor = tls.acceptor();
            match tokio::time::timeout(config.limits.header_read_timeout, acceptor.accept(io)).await
            {
                Ok(Ok(tls_stream)) => drive(tls_stream, peer, service, &config.limits, drain).await,
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn drive<I, S>(
    io: I,
    peer: SocketAddr,
    service: S,
    limits: &Limits,
    mut drain: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ConnectionService,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = async { drain.wait_for(|d| *d).await.map(|_| ()) } => {
            // Idle connections close at once; a request in flight finishes
            // and its connection closes after the answer.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // The client's doing (went away, timed out, sent garbage): never
        // louder than debug, or any client could flood the log.
        debug!(%peer, error = %e, "connection closed with an error");
    }
}

/// An I/O stream that fails with `TimedOut` once no byte has moved either
/// way for `timeout` while it is waited on.
///
/// On the token listener it also holds back the first write after bytes
/// were read for one turn of the scheduler (the task wakes itself and
/// yields once): the other connections whose requests arrived in the same
/// batch get their tokens signed first, and the answers then go out back to
/// back. Every `write` to a client sleeping in `epoll_wait` wakes it on its
/// CPU (in a VM an inter-processor interrupt: ~20% of the server's CPU time
/// when minting ES256 tokens, `benches/http/profile.sh`); answers written
/// back to back find the client awake and wake it once per batch. Where an
/// answer is cheap (the JWKS listener) the extra turn costs more than it
/// saves, so only the token listener does this.
pub(super) struct IdleTimeout<I> {
    inner: I,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Whether the first write after a read yields first (token listener).
    batch_answers: bool,
    /// Bytes were read since the last write: the next write yields first.
    read_since_write: bool,
}

impl<I> IdleTimeout<I> {
    pub(super) fn new(inner: I, timeout: Duration, batch_answers: bool) -> Self {
        IdleTimeout {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            batch_answers,
            read_since_write: false,
        }
    }

    /// `Pending` (after waking the task) for the first write after a read,
    /// so the task yields once; `Ready` otherwise.
    fn yield_before_answer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::take(&mut self.read_since_write) {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    fn progressed(&mut self) {
        let next = Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    /// The outcome of a write on the inner stream: bytes written count as
    /// progress; a write still pending fails once the idle deadline passed.
    fn written(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    self.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "no data moved within the idle timeout",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for IdleTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.progressed();
                    this.read_since_write = this.batch_answers;
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.check(cx).map(Err),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.yield_before_answer(cx));
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.written(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.yield_before_answer(cx));
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.written(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.check(cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.check(cx).map(Err),
        }
    }
}
