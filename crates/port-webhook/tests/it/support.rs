//! Fixtures: a real portd (`TestServer`) with a blueprint and actions whose runs are
//! left to us (`agent: true`, so portd sends nothing), a receiver on a free loopback
//! port, and signed deliveries of a run's invocation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use port_client::{ExecuteRequest, PortClient, Run, RunLog, RunStatus};
use port_server::testing::TestServer;
use port_webhook::{CancellationToken, Receiver, ReceiverBuilder};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long waits for something expected last at most.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// portd and a client of it.
pub struct Portd {
    pub server: TestServer,
    pub client: PortClient,
}

impl Portd {
    pub async fn start() -> Self {
        let server = TestServer::start().await.expect("portd starts");
        let client = PortClient::builder()
            .base_url(&server.api_url)
            .credentials(&server.client_id, &server.client_secret)
            .build()
            .expect("a valid client");
        client
            .create_blueprint(&json!({
                "identifier": "microservice",
                "title": "Service",
                "schema": { "properties": { "region": { "type": "string" } }, "required": [] }
            }))
            .await
            .expect("the blueprint is created");
        Self { server, client }
    }

    pub fn secret(&self) -> &str {
        &self.server.client_secret
    }

    /// A receiver builder reporting to this portd, signing secret = client secret.
    pub fn receiver(&self) -> ReceiverBuilder {
        Receiver::builder(self.client.clone(), self.secret())
    }

    /// Creates a v2 action whose runs portd does not deliver (`agent: true`), with a
    /// `name` input and a secret `token` input. `body` is its body template (none:
    /// the legacy message).
    pub async fn action(&self, identifier: &str, synchronized: bool, body: Option<Value>) {
        let mut method = json!({
            "type": "WEBHOOK",
            "url": "http://127.0.0.1:9/unused",
            "agent": true,
            "synchronized": synchronized,
        });
        if let Some(body) = body {
            method["body"] = body;
            method["headers"] = json!({ "RUN_ID": "{{ .run.id }}" });
        }
        self.client
            .create_action(&json!({
                "identifier": identifier,
                "title": identifier,
                "trigger": {
                    "type": "self-service",
                    "operation": "CREATE",
                    "blueprintIdentifier": "microservice",
                    "userInputs": { "properties": {
                        "name": { "type": "string" },
                        "token": { "type": "string", "encryption": "aes256-gcm" }
                    }, "required": [] }
                },
                "invocationMethod": method
            }))
            .await
            .expect("the action is created");
    }

    /// Executes `action` with `properties`; the run is `IN_PROGRESS` and its payload
    /// holds the invocation.
    pub async fn execute(&self, action: &str, properties: Value) -> Run {
        let mut request = ExecuteRequest::new();
        for (key, value) in properties.as_object().into_iter().flatten() {
            request = request.property(key.clone(), value.clone());
        }
        let run = self
            .client
            .execute(action, &request)
            .await
            .expect("the run is created");
        assert_eq!(run.status, RunStatus::InProgress);
        run
    }

    pub async fn run(&self, run_id: &str) -> Run {
        self.client.get_run(run_id).await.expect("the run exists")
    }

    pub async fn ended(&self, run_id: &str) -> Run {
        self.client
            .wait_for_run(run_id, PATIENCE)
            .await
            .expect("the run ends")
    }

    pub async fn logs(&self, run_id: &str) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let page: Vec<RunLog> = self
                .client
                .logs(run_id, all.len() as u64, 50)
                .await
                .expect("logs are readable");
            let done = page.len() < 50;
            all.extend(page.into_iter().map(|l| l.message));
            if done {
                return all;
            }
        }
    }
}

/// The body portd would send for a run, with the headers the template set.
pub fn invocation(run: &Run) -> (Value, Vec<(String, String)>) {
    let payload = run.payload.clone().expect("the run has a payload");
    let headers = payload["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    (payload["body"].clone(), headers)
}

pub fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    i64::try_from(secs).expect("a sane clock")
}

/// A receiver served on a free loopback port until dropped.
pub struct Served {
    pub url: String,
    task: Option<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Served {
    pub async fn start(receiver: Receiver) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let stop = receiver.shutdown_token();
        let task = tokio::spawn(async move {
            receiver.serve(listener).await.expect("serving works");
        });
        Self {
            url,
            task: Some(task),
            stop,
        }
    }

    /// Shuts the receiver down and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("the server task ends");
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Sends `body` to `url` as portd does: compact JSON, signed at `timestamp` with
/// `secret`, with `webhook-id` and any extra headers.
pub struct Delivery<'a> {
    pub url: String,
    pub body: Vec<u8>,
    pub secret: &'a str,
    pub timestamp: i64,
    pub webhook_id: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl<'a> Delivery<'a> {
    pub fn new(url: impl Into<String>, body: &Value, secret: &'a str) -> Self {
        Self {
            url: url.into(),
            body: serde_json::to_vec(body).expect("JSON"),
            secret,
            timestamp: now(),
            webhook_id: None,
            headers: Vec::new(),
        }
    }

    pub fn webhook_id(mut self, id: &str) -> Self {
        self.webhook_id = Some(id.to_owned());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn at(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Sends it signed over its body; returns the status and the JSON answer.
    pub async fn send(&self) -> (u16, Value) {
        let signature = port_core_sign(self.secret, self.timestamp, &self.body);
        self.send_with(Some(&signature), &self.body).await
    }

    /// Sends `body` with `signature` (or none) and this delivery's timestamp.
    pub async fn send_with(&self, signature: Option<&str>, body: &[u8]) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-port-timestamp", self.timestamp.to_string())
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-port-signature", signature);
        }
        if let Some(id) = &self.webhook_id {
            request = request.header("webhook-id", id);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("the receiver answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }
}

/// `v1,<base64 hmac>` as portd signs.
pub fn port_core_sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    port_core::signature::sign(secret.as_bytes(), timestamp, body)
}
