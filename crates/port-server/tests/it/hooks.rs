//! Fixtures for delivery tests against a real portd: a webhook receiver on loopback
//! that records raw requests and answers from a script, a small HTTP client for the
//! API, and a minimal server-sent events reader.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use port_delivery::DeliveryConfig;
use port_server::testing::TestServer;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// How long a wait for something expected may last.
pub const PATIENCE: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Delivery settings for tests: quick retries, a short safety poll.
pub fn quick_delivery() -> DeliveryConfig {
    DeliveryConfig {
        retry_schedule: vec![
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_millis(100),
            Duration::from_millis(100),
        ],
        timeout: Duration::from_secs(5),
        safety_poll: Duration::from_millis(200),
        ..DeliveryConfig::default()
    }
}

pub async fn quick_server() -> TestServer {
    TestServer::start_with_delivery(quick_delivery())
        .await
        .expect("portd starts")
}

// ---------------------------------------------------------------------------------------
// Receiver

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    /// How long the receiver holds the request before answering.
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The run id the default Port body carries (`context.runId`).
    pub fn run_id(&self) -> String {
        self.json()["context"]["runId"]
            .as_str()
            .expect("the body names its run")
            .to_owned()
    }
}

struct Shared {
    /// Answers in order; the last one repeats.
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
}

/// A webhook receiver on 127.0.0.1, stopped when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    lock(&shared.received).push(Received { headers, body });
    let reply = {
        let mut script = lock(&shared.script);
        if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().copied()
        }
    }
    .unwrap_or(Reply::status(200));
    tokio::time::sleep(reply.delay).await;
    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            received: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::any(receive))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Replaces the script.
    pub fn answer(&self, script: Vec<Reply>) {
        *lock(&self.shared.script) = script.into();
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Waits until `n` requests arrived in all; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests, got {} within {within:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// API client

/// The API over HTTP with a token.
pub struct Api {
    pub http: reqwest::Client,
    /// `http://host:port/v1`.
    pub api: String,
    pub token: String,
}

impl Api {
    pub async fn login(api: &str, client_id: &str, client_secret: &str) -> Self {
        let http = reqwest::Client::new();
        let body: Value = http
            .post(format!("{api}/auth/access_token"))
            .json(&json!({ "clientId": client_id, "clientSecret": client_secret }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            http,
            api: api.to_owned(),
            token: body["accessToken"].as_str().expect("a token").to_owned(),
        }
    }

    pub async fn of(server: &TestServer) -> Self {
        Self::login(&server.api_url, &server.client_id, &server.client_secret).await
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token)
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// Creates a self-service action whose webhook goes to `url`.
    pub async fn webhook_action(&self, identifier: &str, url: &str, extra: Value) {
        let mut invocation = json!({ "type": "WEBHOOK", "url": url });
        if let (Value::Object(invocation), Value::Object(extra)) = (&mut invocation, extra) {
            invocation.extend(extra);
        }
        self.post(
            "/actions",
            json!({
                "identifier": identifier,
                "title": identifier,
                "trigger": {
                    "type": "self-service",
                    "operation": "CREATE",
                    "userInputs": { "properties": { "note": { "type": "string" } }, "required": [] }
                },
                "invocationMethod": invocation,
            }),
        )
        .await
        .expect(201);
    }

    /// Executes an action; returns the run's id.
    pub async fn execute(&self, action: &str) -> String {
        let body = self
            .post(
                &format!("/actions/{action}/runs"),
                json!({ "properties": { "note": "hello" } }),
            )
            .await
            .expect(202);
        body["run"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn run(&self, run_id: &str) -> Value {
        self.get(&format!("/actions/runs/{run_id}?version=v2"))
            .await
            .expect(200)["run"]
            .clone()
    }

    pub async fn deliveries(&self, run_id: &str) -> Vec<Value> {
        let body = self
            .get(&format!("/actions/runs/{run_id}/deliveries"))
            .await
            .expect(200);
        body["deliveries"].as_array().unwrap().clone()
    }

    /// Waits until the run's only delivery is in `state`; returns it.
    pub async fn delivery_in_state(&self, run_id: &str, state: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let deliveries = self.deliveries(run_id).await;
            if let [delivery] = deliveries.as_slice()
                && delivery["state"] == state
            {
                return delivery.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the delivery of {run_id} never became {state}: {deliveries:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn add_log(&self, run_id: &str, body: Value) {
        self.post(&format!("/actions/runs/{run_id}/logs"), body)
            .await
            .expect(201);
    }
}

/// A status and a JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {:#}",
            self.body
        );
        self.body
    }

    #[track_caller]
    pub fn expect_error(self, status: u16, error: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["error"], json!(error), "{body:#}");
        body
    }
}

// ---------------------------------------------------------------------------------------
// Server-sent events

/// One event of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// Reads events from a `text/event-stream` body (enough of the format for portd).
pub struct SseReader {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    id: None,
                    data: Value::Null,
                };
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim().to_owned());
                    }
                }
                // Comments (keep-alives) carry no data.
                if let Some(data) = data {
                    event.data = serde_json::from_str(&data).expect("JSON data");
                    return Some(event);
                }
                continue;
            }
            let chunk = self.body.next().await?.expect("the stream reads");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event within [`PATIENCE`].
    pub async fn expect_next(&mut self) -> SseEvent {
        tokio::time::timeout(PATIENCE, self.next())
            .await
            .expect("an event in time")
            .expect("the stream is still open")
    }

    /// Asserts the stream closes within [`PATIENCE`] without another event.
    pub async fn expect_closed(&mut self) {
        let next = tokio::time::timeout(PATIENCE, self.next())
            .await
            .expect("the stream closes in time");
        assert_eq!(next, None, "no event after the end");
    }
}
