//! [`Receiver`]: the webhook endpoint. It verifies signatures, drops duplicate
//! deliveries, routes each run to its action's handler and answers the way portd (and
//! Port) expect.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use port_client::PortClient;
use port_core::signature::{self, DEFAULT_TOLERANCE_SECS};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::dedupe::{DEFAULT_DEDUPE_CAPACITY, DEFAULT_DEDUPE_TTL, Dedupe, Seen};
use crate::dispatch::{Engine, Job, Registered, RunResult};
use crate::handler::{ActionOptions, Handler};
use crate::invocation::Invocation;

/// The header carrying the signature (`v1,<base64>`), as Port and portd send it.
pub const SIGNATURE_HEADER: &str = "x-port-signature";
/// The header carrying the signing time in unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-port-timestamp";
/// The delivery id, the same on every retry of one delivery.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// The run id header v2 templates commonly set.
pub const RUN_ID_HEADER: &str = "run_id";
/// An action identifier for bodies that carry none (an alternative to the path).
pub const ACTION_HEADER: &str = "x-port-action";
/// How long a delivery's timestamp may be from now by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(DEFAULT_TOLERANCE_SECS);
/// How long runs in flight get to finish when shutting down, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// What a shutting-down receiver asks portd to wait before redelivering.
const RETRY_AFTER_SECS: &str = "5";

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listener failed.
    #[error("serving webhooks failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The signing secret; never shown.
#[derive(Clone)]
struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Builds a [`Receiver`].
pub struct ReceiverBuilder {
    client: PortClient,
    secret: Secret,
    tolerance: Duration,
    dedupe_capacity: usize,
    dedupe_ttl: Duration,
    grace: Duration,
    actions: HashMap<String, Registered>,
}

impl fmt::Debug for ReceiverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverBuilder")
            .field("tolerance", &self.tolerance)
            .field("actions", &self.actions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ReceiverBuilder {
    /// Registers a handler for `action` with the default [`ActionOptions`]
    /// (asynchronous, 10 minutes, 8 at once). A second registration replaces the first.
    pub fn handler(self, action: impl Into<String>, handler: impl Handler) -> Self {
        self.action(action, ActionOptions::default(), handler)
    }

    /// Registers a handler for `action` with its options.
    pub fn action(
        mut self,
        action: impl Into<String>,
        options: ActionOptions,
        handler: impl Handler,
    ) -> Self {
        self.actions
            .insert(action.into(), Registered::new(Arc::new(handler), options));
        self
    }

    /// How far a delivery's `X-Port-Timestamp` may be from now (default 5 minutes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How many delivery ids are remembered to drop duplicates, and for how long
    /// (default 10 000 for 2 hours).
    pub fn dedupe(mut self, capacity: usize, ttl: Duration) -> Self {
        self.dedupe_capacity = capacity;
        self.dedupe_ttl = ttl;
        self
    }

    /// How long runs in flight get to finish once shutdown begins (default 30 s);
    /// those still running then are failed with "runner shutting down".
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Builds the receiver.
    pub fn build(self) -> Receiver {
        // The signing secret is the client secret: mask it in run logs as well.
        let extra_secrets = String::from_utf8(self.secret.0.clone())
            .into_iter()
            .collect();
        // It also keys secret inputs. Port's client secrets are ASCII; one that is not
        // UTF-8 cannot have keyed them, and its runs fail naming the secret input.
        let client_secret = String::from_utf8_lossy(&self.secret.0).into_owned();
        Receiver {
            engine: Arc::new(Engine::new(
                self.client,
                self.actions,
                extra_secrets,
                client_secret,
                self.grace,
            )),
            secret: Arc::new(self.secret),
            tolerance: self.tolerance,
            dedupe: Arc::new(Dedupe::new(self.dedupe_capacity, self.dedupe_ttl)),
        }
    }
}

/// Runs your handlers for Port action runs: as a webhook endpoint ([`Receiver::router`],
/// [`Receiver::serve`]) or by claiming runs ([`Receiver::pull`]). Cheap to clone.
///
/// # The endpoint
/// `POST /` and `POST /actions/{action}` (any method is accepted, as Port's
/// invocation method may be PUT, PATCH, DELETE or GET), plus `GET /healthz`:
/// - the signature (`X-Port-Signature` over `<X-Port-Timestamp>.<raw body>` with the
///   signing secret) is checked first: a missing, wrong or stale one gets 401;
/// - the body becomes an [`Invocation`] (400 when it has no run id or no action);
/// - an action without a handler gets 404, which portd does not retry (the run fails);
/// - a repeated `webhook-id` gets 200 and the handler does not run again (a
///   synchronized run's duplicate gets the first delivery's answer);
/// - an asynchronous action gets 200 at once and its handler runs in the background;
///   the run is ended from the handler's result;
/// - a synchronized action gets the handler's outcome as the answer: 200 with
///   [`crate::Outcome::response`], or 500 `{"ok": false, "error": "handler_failed",
///   "message": <reason>}`;
/// - once shutdown has begun, deliveries get 503 with `Retry-After` (those on
///   connections still open; [`Receiver::serve`] also closes its listener), so portd
///   sends them again later (to this runner after a restart, or to another).
#[derive(Clone)]
pub struct Receiver {
    pub(crate) engine: Arc<Engine>,
    secret: Arc<Secret>,
    tolerance: Duration,
    dedupe: Arc<Dedupe>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("actions", &self.engine.actions.keys().collect::<Vec<_>>())
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refuse(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    answer(
        status,
        json!({ "ok": false, "error": error, "message": message.into() }),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The HTTP answer for a run that ended.
fn result_answer(run_id: &str, result: &RunResult) -> Response {
    match result {
        RunResult::Succeeded(outcome) => {
            let body = outcome.response.clone().unwrap_or_else(|| {
                let mut body = json!({ "ok": true, "runId": run_id });
                if let Some(summary) = &outcome.summary {
                    body["summary"] = json!(summary);
                }
                body
            });
            answer(StatusCode::OK, body)
        }
        RunResult::Failed(reason) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "handler_failed",
            reason.clone(),
        ),
    }
}

async fn wait_for_answer(
    run_id: &str,
    mut results: watch::Receiver<Option<RunResult>>,
) -> Response {
    match results.wait_for(Option::is_some).await {
        Ok(result) => match result.as_ref() {
            Some(result) => result_answer(run_id, result),
            None => refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "handler_failed",
                "the run ended without a result",
            ),
        },
        Err(_) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "handler_failed",
            "the run ended without a result",
        ),
    }
}

fn shutting_down() -> Response {
    let mut response = refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "this runner is shutting down; deliver again later",
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response
}

async fn receive_root(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receiver.receive(None, &headers, &body).await
}

async fn receive_action(
    State(receiver): State<Receiver>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receiver.receive(Some(&action), &headers, &body).await
}

async fn health(State(receiver): State<Receiver>) -> Response {
    if receiver.engine.stopping.is_cancelled() {
        return shutting_down();
    }
    answer(
        StatusCode::OK,
        json!({ "ok": true, "inFlight": receiver.in_flight() }),
    )
}

impl Receiver {
    /// A builder. `signing_secret` is what deliveries are signed with: the client
    /// secret of the organization (Port and portd both sign with it). `client`
    /// reports on the runs.
    pub fn builder(client: PortClient, signing_secret: impl AsRef<[u8]>) -> ReceiverBuilder {
        ReceiverBuilder {
            client,
            secret: Secret(signing_secret.as_ref().to_vec()),
            tolerance: DEFAULT_TOLERANCE,
            dedupe_capacity: DEFAULT_DEDUPE_CAPACITY,
            dedupe_ttl: DEFAULT_DEDUPE_TTL,
            grace: DEFAULT_GRACE,
            actions: HashMap::new(),
        }
    }

    /// The registered action identifiers.
    pub fn actions(&self) -> Vec<String> {
        let mut actions: Vec<String> = self.engine.actions.keys().cloned().collect();
        actions.sort();
        actions
    }

    /// How many runs are being handled (or waiting for a slot).
    pub fn in_flight(&self) -> usize {
        self.engine.tracker.len()
    }

    /// The endpoint as a router, to serve or to nest into your own app.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", any(receive_root))
            .route("/actions/{action}", any(receive_action))
            .route("/healthz", get(health))
            .with_state(self.clone())
    }

    /// Cancel it to begin shutting down (as [`Receiver::shutdown`] does): deliveries
    /// are refused with 503, pulling stops, and the runs in flight get the grace period.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.engine.stopping.clone()
    }

    /// Shuts down: stops accepting runs, waits up to the grace period for those in
    /// flight, then fails the rest with "runner shutting down". Returns once every
    /// run has reported its end. Calling it again waits for the same shutdown.
    pub async fn shutdown(&self) {
        self.engine.drain().await;
    }

    /// Serves the endpoint on `listener` until [`Receiver::shutdown_token`] is
    /// cancelled (or [`Receiver::shutdown`] is called), then shuts down gracefully.
    pub async fn serve(&self, listener: TcpListener) -> Result<(), ServeError> {
        let stopping = self.engine.stopping.clone();
        let server = axum::serve(listener, self.router())
            .with_graceful_shutdown(stopping.clone().cancelled_owned())
            .into_future();
        let server = async {
            let served = server.await;
            // Should the server stop by itself, the runs in flight still get drained.
            stopping.cancel();
            served
        };
        // Synchronized requests stay open until their runs end, so the drain must run
        // alongside the server's own graceful shutdown, not after it.
        let drain = async {
            stopping.cancelled().await;
            self.shutdown().await;
        };
        let (served, ()) = tokio::join!(server, drain);
        served.map_err(ServeError::Io)
    }

    /// Like [`Receiver::serve`], also shutting down when `signal` completes (e.g.
    /// `tokio::signal::ctrl_c()`).
    pub async fn serve_with_shutdown(
        &self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let token = self.shutdown_token();
        let watcher = tokio::spawn(async move {
            tokio::select! {
                () = signal => token.cancel(),
                () = token.cancelled() => {}
            }
        });
        let served = self.serve(listener).await;
        watcher.abort();
        served
    }

    async fn receive(
        &self,
        path_action: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Response {
        if self.engine.stopping.is_cancelled() {
            return shutting_down();
        }
        let verified = signature::verify(
            &self.secret.0,
            header_str(headers, SIGNATURE_HEADER).unwrap_or_default(),
            header_str(headers, TIMESTAMP_HEADER).unwrap_or_default(),
            body,
            now_unix(),
            self.tolerance.as_secs(),
        );
        if let Err(e) = verified {
            let reason = match header_str(headers, TIMESTAMP_HEADER) {
                None => signature::SignatureError::MissingTimestamp.to_string(),
                Some(_) => e.to_string(),
            };
            tracing::warn!(%reason, "refused a delivery with a bad signature");
            return refuse(StatusCode::UNAUTHORIZED, "invalid_signature", reason);
        }
        let raw: Value = match serde_json::from_slice(body) {
            Ok(raw) => raw,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("the body is not JSON: {e}"),
                );
            }
        };
        let action_hint = path_action.or_else(|| header_str(headers, ACTION_HEADER));
        let mut invocation =
            match Invocation::from_body(raw, header_str(headers, RUN_ID_HEADER), action_hint) {
                Ok(invocation) => invocation,
                Err(e) => return refuse(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            };
        let Some(registered) = self.engine.actions.get(&invocation.action) else {
            tracing::warn!(run = %invocation.run_id, action = %invocation.action, "no handler for this action");
            return refuse(
                StatusCode::NOT_FOUND,
                "unknown_action",
                format!("no handler for action {:?} here", invocation.action),
            );
        };
        let synchronized = registered.options.synchronized;
        invocation.synchronized = synchronized;
        invocation.webhook_id = header_str(headers, WEBHOOK_ID_HEADER)
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        let run_id = invocation.run_id.clone();

        let (done, results) = watch::channel(None);
        if let Some(id) = &invocation.webhook_id {
            let seen = if synchronized {
                Seen::Sync(results.clone())
            } else {
                Seen::Async
            };
            match self.dedupe.first_or_previous(id, seen) {
                None => {}
                Some(Seen::Async) => {
                    tracing::info!(run = %run_id, webhook_id = %id, "dropped a duplicate delivery");
                    return answer(
                        StatusCode::OK,
                        json!({ "ok": true, "runId": run_id, "duplicate": true }),
                    );
                }
                Some(Seen::Sync(previous)) => {
                    tracing::info!(run = %run_id, webhook_id = %id, "a duplicate delivery gets the first one's answer");
                    return wait_for_answer(&run_id, previous).await;
                }
            }
        }
        if self.engine.stopping.is_cancelled() {
            // Shutdown began meanwhile: let a later attempt have it.
            if let Some(id) = &invocation.webhook_id {
                self.dedupe.forget(id);
            }
            return shutting_down();
        }
        tracing::info!(run = %run_id, action = %invocation.action, synchronized, "accepted a delivery");
        self.engine.start(
            Job {
                invocation,
                status_from_answer: synchronized,
                pull: None,
            },
            done,
        );
        if synchronized {
            wait_for_answer(&run_id, results).await
        } else {
            answer(StatusCode::OK, json!({ "ok": true, "runId": run_id }))
        }
    }
}
