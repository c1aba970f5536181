//! Serving connections within bounds: a header read timeout, an idle keep-alive
//! timeout, a cap on concurrent connections derived from the descriptor limit, and
//! graceful shutdown.
//!
//! **Why.** Every connection holds a file descriptor. Without a timeout, clients that
//! send half a request head and stall keep theirs forever; once the process runs out,
//! SQLite's group commit cannot open its WAL to fsync it ("storage unavailable") and
//! `/healthz` cannot be accepted. So:
//!
//! - **Header read timeout** (`PORTD_HEADER_READ_TIMEOUT_SECS`, 10 s): a request head
//!   must be complete within this time of the connection's accept, or of its first byte
//!   after an idle keep-alive pause. A client trickling bytes gains nothing: the clock
//!   never restarts before the head is complete. The connection is then closed.
//! - **Body read timeout** (`PORTD_BODY_READ_TIMEOUT_SECS`, 30 s): a request body must
//!   arrive whole within this time of its head (a slow POST holds a connection as a
//!   slow head does); reading it then fails, the route answers 422 and the connection
//!   is closed.
//! - **Idle keep-alive timeout** (`PORTD_IDLE_TIMEOUT_SECS`, 120 s): a connection with no
//!   request in flight and no byte received for this long is closed. A response still
//!   being sent (an SSE log stream) is a request in flight: streams are never cut.
//! - **Connection cap** (`PORTD_MAX_CONNECTIONS`, 1024, lowered to fit the descriptor
//!   limit): a connection beyond it is answered at once with 503 `service_unavailable`
//!   in Port's envelope, `Retry-After` and `Connection: close`, then closed. Up to
//!   [`REFUSAL_SLOTS`] refused connections at once linger (for at most
//!   [`REFUSAL_TIME`]) to read what the client sends, so that closing does not reset
//!   the connection before the client read the answer; beyond those, the answer is
//!   written without waiting and the connection closed at once.
//! - **Descriptors**: at start the soft `RLIMIT_NOFILE` is raised to the hard limit,
//!   and the cap is the smaller of `PORTD_MAX_CONNECTIONS` and what that limit leaves
//!   after [`Reserve`]: the store's files or pool, the delivery worker's sockets, the
//!   refusals and a fixed margin. Connections can then never take the descriptors the
//!   store needs.
//!
//! portd speaks HTTP/1.1 (and 1.0). Handlers see the peer's address as
//! `ConnectInfo<SocketAddr>`.
//!
//! A client that pipelines the start of its next request head behind a complete one
//! gets the idle timeout, not the header timeout, for that head (the bytes are read
//! with the previous request); it still holds only one of the capped connections.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use futures::future::BoxFuture;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use port_store::{BackendKind, ReplicaBus, StoreOptions};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt as _;

use crate::error::RETRY_AFTER_SECS;
use crate::metrics::Metrics;
use crate::serve_error::{ServeError, Shutdown};
use crate::state::AppState;

/// Default of `PORTD_MAX_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of `PORTD_HEADER_READ_TIMEOUT_SECS`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `PORTD_BODY_READ_TIMEOUT_SECS`: 1 MiB (the body limit) at 35 KiB/s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `PORTD_IDLE_TIMEOUT_SECS`: longer than the 90 s after which reqwest's
/// (port-client's, the CLI's, the runner's) and Go's pools drop an idle connection, so
/// that those clients close first and never send a request on a connection portd is
/// closing.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Connections over the cap being answered 503 at once.
pub const REFUSAL_SLOTS: usize = 64;
/// The longest a refusal holds its connection: writing the answer, then reading what
/// the client had sent (closing with unread data would reset the connection before the
/// client read the answer).
pub const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// The fewest connections portd starts with; below it the descriptor limit is refused.
pub const MIN_CONNECTIONS: usize = 16;
/// The most a request head may weigh (hyper's read buffer; its minimum is 8 KiB). A
/// larger head is refused with 431; this bounds what each capped connection holds.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The connection settings, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The cap asked for; the descriptor limit may lower it.
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// `PORTD_MAX_CONNECTIONS`, `PORTD_HEADER_READ_TIMEOUT_SECS`, `PORTD_IDLE_TIMEOUT_SECS`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Most concurrent connections (lowered to fit the open-files limit); more are
    /// answered 503 and closed.
    #[arg(long, env = "PORTD_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a client has to send a complete request head.
    #[arg(long, env = "PORTD_HEADER_READ_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body, from its head.
    #[arg(long, env = "PORTD_BODY_READ_TIMEOUT_SECS", default_value_t = DEFAULT_BODY_READ_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_secs: u64,
    /// Seconds a keep-alive connection may stay idle between requests.
    #[arg(long, env = "PORTD_IDLE_TIMEOUT_SECS", default_value_t = DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
}

impl From<ConnectionArgs> for ConnectionLimits {
    fn from(args: ConnectionArgs) -> Self {
        Self {
            max_connections: args.max_connections as usize,
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        }
    }
}

/// Descriptors kept out of the connections' reach, by what needs them.
///
/// - `base` (64): standard streams (3), the runtime's epoll and wake-ups (≈ 4), the
///   listener (1), signal handling (2), files opened for a moment (the credentials
///   and worker-id files, the WAL opened for each group-commit fsync), DNS lookups
///   and log output, with room to spare.
/// - `store`: SQLite, 4 per connection (the database, its WAL, the shared-memory
///   index, and a journal or temporary file) for the writer and each reader: 20 by
///   default; PostgreSQL, the pool's sockets plus 2, plus the replica bus's 2: 14 by
///   default.
/// - `delivery`: 2 per attempt in flight (its socket and a kept-alive one for the
///   next attempt to the same receiver): 64 by default.
/// - `templates`: 4 per template worker process (its stdin, stdout and stderr pipes,
///   and the handle its exit is awaited on), for the workers plus one being replaced:
///   12 with 2 workers (2 cores); none when templates render in process.
/// - `refusals`: [`REFUSAL_SLOTS`].
///
/// By default on SQLite with 2 template workers: 64 + 20 + 64 + 12 + 64 = 224, so a
/// hard limit of 1024 leaves 800 connections (the default cap of 1024 is lowered to
/// it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    pub base: u64,
    pub store: u64,
    pub delivery: u64,
    pub templates: u64,
    pub refusals: u64,
}

impl Reserve {
    const BASE: u64 = 64;
    const PER_SQLITE_CONNECTION: u64 = 4;
    const PER_DELIVERY_IN_FLIGHT: u64 = 2;
    const PER_TEMPLATE_WORKER: u64 = 4;

    /// `template_workers`: the sandbox's worker processes (0 when templates render in
    /// process).
    pub fn new(
        backend: BackendKind,
        store: &StoreOptions,
        deliveries_in_flight: usize,
        template_workers: usize,
    ) -> Self {
        let store = match backend {
            BackendKind::Sqlite => {
                (1 + u64::from(store.sqlite_read_connections.max(1))) * Self::PER_SQLITE_CONNECTION
            }
            BackendKind::Postgres => {
                u64::from(store.pg_max_connections.max(1)) + 2 + ReplicaBus::CONNECTIONS
            }
        };
        Self {
            base: Self::BASE,
            store,
            delivery: deliveries_in_flight as u64 * Self::PER_DELIVERY_IN_FLIGHT,
            templates: match template_workers {
                0 => 0,
                workers => (workers as u64 + 1) * Self::PER_TEMPLATE_WORKER,
            },
            refusals: REFUSAL_SLOTS as u64,
        }
    }

    pub fn total(&self) -> u64 {
        self.base + self.store + self.delivery + self.templates + self.refusals
    }
}

/// The cap in force and how it was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPlan {
    pub limits: ConnectionLimits,
    /// The cap in force.
    pub max_connections: usize,
    /// The soft `RLIMIT_NOFILE` after raising it (`None`: unlimited or unknown).
    pub open_files: Option<u64>,
    pub reserve: Reserve,
}

impl ConnectionPlan {
    /// The cap that fits `open_files` after `reserve`; an error when too few remain.
    pub fn new(
        limits: ConnectionLimits,
        open_files: Option<u64>,
        reserve: Reserve,
    ) -> Result<Self, ServeError> {
        let max_connections = match open_files {
            None => limits.max_connections,
            Some(limit) => {
                let left =
                    usize::try_from(limit.saturating_sub(reserve.total())).unwrap_or(usize::MAX);
                if left < MIN_CONNECTIONS {
                    return Err(ServeError::Config(format!(
                        "the open-files limit (RLIMIT_NOFILE) is {limit}: after {} descriptors kept \
                         for the store ({}), deliveries ({}), template workers ({}), refused \
                         connections ({}) and the process ({}), only {left} remain for \
                         connections (at least {MIN_CONNECTIONS} are needed); raise it (`ulimit \
                         -n`, LimitNOFILE=) to {} or more",
                        reserve.total(),
                        reserve.store,
                        reserve.delivery,
                        reserve.templates,
                        reserve.refusals,
                        reserve.base,
                        reserve.total() + MIN_CONNECTIONS as u64,
                    )));
                }
                limits.max_connections.min(left)
            }
        };
        Ok(Self {
            limits,
            max_connections,
            open_files,
            reserve,
        })
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (on Linux at most `nr_open`'s
/// usual 1 048 576 when the hard limit is unlimited) and returns the soft limit then
/// in force; `None` when it is unlimited.
#[cfg(unix)]
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    const UNLIMITED_TARGET: u64 = 1 << 20;
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(UNLIMITED_TARGET);
    match limit.current {
        Some(current) if current < target => {
            let raised = Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => Some(target),
                Err(error) => {
                    tracing::warn!(%error, soft = current, hard = ?limit.maximum, "cannot raise the open-files limit");
                    Some(current)
                }
            }
        }
        current => current,
    }
}

#[cfg(not(unix))]
pub fn raise_open_files_limit() -> Option<u64> {
    None
}

/// Accepts connections on `listener` and serves `router` on them under `plan` until
/// `shutdown`; then stops accepting, lets every connection finish its requests
/// (hyper's graceful shutdown: idle ones close at once), and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    plan: ConnectionPlan,
    state: AppState,
    shutdown: Shutdown,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(plan.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSAL_SLOTS));
    // Every connection task holds a receiver; `closed()` resolves when all are gone.
    let (all_closed, connection_alive) = watch::channel(());
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_per_connection_error(&error) {
                        // Out of descriptors or memory: the backlog keeps the client
                        // waiting; back off rather than spin.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                state.metrics().connection_opened();
                let router = router.clone();
                let state = state.clone();
                let shutdown = shutdown.clone();
                let alive = connection_alive.clone();
                tokio::spawn(async move {
                    serve_connection(stream, peer, router, plan.limits, state.metrics(), shutdown)
                        .await;
                    state.metrics().connection_closed();
                    drop((permit, alive));
                });
            }
            Err(_) => {
                state.metrics().connection_refused();
                match refusals.clone().try_acquire_owned() {
                    Ok(slot) => {
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(REFUSAL_TIME, refuse(stream)).await;
                            drop(slot);
                        });
                    }
                    // Too many refusals in progress: answer what fits in the socket's
                    // buffer now, and close without lingering.
                    Err(_) => refuse_now(&stream),
                }
            }
        }
    }
    drop(listener);
    drop(connection_alive);
    all_closed.closed().await;
    Ok(())
}

/// Errors of one connection (it went away before it was accepted), not of the listener.
fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The 503 of a connection over the cap.
fn refusal_bytes() -> Vec<u8> {
    let body = json!({
        "ok": false,
        "error": port_core::ErrorKind::ServiceUnavailable.identifier(),
        "message": "too many connections are open; try again",
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {RETRY_AFTER_SECS}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads what the client has sent so far, without waiting: closing a socket with
/// unread data resets the connection, and the client may lose the answer with it.
fn discard_received(stream: &TcpStream) {
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    while discarded < 64 * 1024 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

/// Answers 503 without waiting (the answer fits in a fresh socket's send buffer); the
/// caller then drops the socket.
fn refuse_now(stream: &TcpStream) {
    discard_received(stream);
    let _ = stream.try_write(&refusal_bytes());
}

/// Answers 503 and closes: write, half-close, then read what the client sent until it
/// closes too (bounded by the caller's [`REFUSAL_TIME`]).
async fn refuse(mut stream: TcpStream) {
    discard_received(&stream);
    if stream.write_all(&refusal_bytes()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// What a connection is doing, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head to be complete, since the accept or its first byte.
    AwaitingHead(Instant),
    /// No request in flight and nothing received since this moment.
    Idle(Instant),
    /// Requests in flight (their responses not yet sent to the end).
    Busy(usize),
}

/// A connection's phase, shared by its IO, its service and its watchdog.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::AwaitingHead(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        let next = change(*phase);
        if next != *phase {
            *phase = next;
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: after an idle pause they begin a head.
    fn received(&self) {
        self.update(|phase| match phase {
            Phase::Idle(_) => Phase::AwaitingHead(Instant::now()),
            other => other,
        });
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
        InFlight(self.clone())
    }

    /// When the current phase times out, and why; `None` while busy.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, Expiry)> {
        match *self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::AwaitingHead(since) => Some((since + limits.header_read_timeout, Expiry::Head)),
            Phase::Idle(since) => Some((since + limits.idle_timeout, Expiry::Idle)),
            Phase::Busy(_) => None,
        }
    }

    /// Resolves when the connection's current phase has lasted too long.
    async fn expired(&self, limits: &ConnectionLimits) -> Expiry {
        loop {
            // Registered before reading the phase, so no change is missed.
            let changed = self.changed.notified();
            match self.deadline(limits) {
                None => changed.await,
                Some((deadline, expiry)) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(deadline.into()) => {
                            if self.deadline(limits).is_some_and(|(d, _)| d <= Instant::now()) {
                                return expiry;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Why a connection timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Head,
    Idle,
}

/// A request in flight; dropped when its response has been sent to the end (or the
/// request was abandoned).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// The socket, telling the connection's activity when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that keeps its request in flight until it has been sent.
struct Tracked {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Why a request body could not be read: it did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimedOut(Duration);

/// A request body that fails once the body read timeout has passed.
struct TimedBody {
    body: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl HttpBody for TimedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimedOut(self.timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The router as one connection's hyper service.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    body_read_timeout: Duration,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = http::Response<Tracked>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request_started();
        let timeout = self.body_read_timeout;
        let mut request = request.map(|body| TimedBody {
            body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            Ok(response.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// Serves one connection until it ends, times out, or the server stops.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    metrics: &Metrics,
    shutdown: Shutdown,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = ConnectionService {
        router,
        peer,
        activity: activity.clone(),
        body_read_timeout: limits.body_read_timeout,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES)
        // The watchdog below keeps the time instead (it also knows about idle pauses).
        .header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            expiry = activity.expired(&limits) => {
                metrics.connection_timed_out(expiry == Expiry::Head);
                tracing::debug!(%peer, ?expiry, "closing a connection that timed out");
                // Nothing is in flight: dropping the connection closes the socket.
                return;
            }
            () = &mut stop, if !stopping => {
                stopping = true;
                // Idle connections close at once; others after their response.
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn the_cap_leaves_the_reserve_to_the_store_and_delivery() {
        let reserve = Reserve::new(BackendKind::Sqlite, &StoreOptions::default(), 32, 2);
        assert_eq!(
            (
                reserve.base,
                reserve.store,
                reserve.delivery,
                reserve.templates,
                reserve.refusals
            ),
            (64, 20, 64, 12, 64)
        );
        assert_eq!(reserve.total(), 224);
        let plan = ConnectionPlan::new(limits(1024), Some(1024), reserve).unwrap();
        assert_eq!(plan.max_connections, 800);
        let in_process = Reserve::new(BackendKind::Sqlite, &StoreOptions::default(), 32, 0);
        assert_eq!(in_process.total(), 212);
        // A generous limit leaves the configured cap alone.
        let plan = ConnectionPlan::new(limits(1024), Some(1 << 20), reserve).unwrap();
        assert_eq!(plan.max_connections, 1024);
        let plan = ConnectionPlan::new(limits(1024), None, reserve).unwrap();
        assert_eq!(plan.max_connections, 1024);
        let postgres = Reserve::new(BackendKind::Postgres, &StoreOptions::default(), 32, 2);
        assert_eq!(postgres.store, 14);
    }

    #[test]
    fn a_limit_leaving_too_few_connections_is_refused() {
        let reserve = Reserve::new(BackendKind::Sqlite, &StoreOptions::default(), 32, 0);
        let error = ConnectionPlan::new(limits(1024), Some(220), reserve)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("RLIMIT_NOFILE) is 220") && error.contains("to 228 or more"),
            "{error}"
        );
        assert!(ConnectionPlan::new(limits(1024), Some(228), reserve).is_ok());
    }

    #[test]
    fn the_refusal_is_a_503_envelope_that_closes() {
        let text = String::from_utf8(refusal_bytes()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nretry-after: 2\r\n") && head.contains("\r\nconnection: close\r\n")
        );
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["ok"], false);
        assert_eq!(body["error"], "service_unavailable");
    }

    #[test]
    fn phases_time_out_by_their_own_clocks() {
        let limits = ConnectionLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
        };
        let activity = Arc::new(Activity::new());
        // A new connection must send its head within the header timeout.
        let (deadline, expiry) = activity.deadline(&limits).unwrap();
        assert_eq!(expiry, Expiry::Head);
        assert!(deadline <= Instant::now() + limits.header_read_timeout);
        // While a response is being sent, nothing times out.
        let in_flight = activity.request_started();
        assert_eq!(activity.deadline(&limits), None);
        // Afterwards the connection is idle, until a byte starts the next head.
        drop(in_flight);
        assert_eq!(activity.deadline(&limits).unwrap().1, Expiry::Idle);
        activity.received();
        assert_eq!(activity.deadline(&limits).unwrap().1, Expiry::Head);
        // More bytes do not restart the head's clock.
        let (first, _) = activity.deadline(&limits).unwrap();
        activity.received();
        assert_eq!(activity.deadline(&limits).unwrap().0, first);
    }
}
