//! The other side of a run: a loopback webhook receiver that plays the team's backend.
//! On each delivery it works through a short script, reporting over the API like a
//! real runner: log lines a little apart, a status label, an entity bound to the run,
//! and finally links, a summary and `SUCCESS`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A small API client with a bearer token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    api_url: String,
    token: String,
}

impl Api {
    pub fn new(api_url: &str, token: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            api_url: api_url.to_owned(),
            token,
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.api_url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn log(&self, run: &str, message: &str) {
        self.post(
            &format!("/actions/runs/{run}/logs"),
            json!({ "message": message }),
        )
        .await;
    }

    /// Executes an action with these inputs; returns the run's id.
    pub async fn execute(&self, action: &str, body: Value) -> String {
        let answer = self.post(&format!("/actions/{action}/runs"), body).await;
        answer["run"]["id"]
            .as_str()
            .expect("the run's id")
            .to_owned()
    }
}

/// The summary the deploy script ends with: real markdown, and two attempts at
/// injecting markup that the page must show as text.
pub const SUMMARY: &str = "## Deployed\n\n\
    **checkout** `v1.4.2` is live in *production*.\n\n\
    - 3 of 3 replicas ready\n\
    - [release notes](https://example.com/releases/v1.4.2)\n\n\
    Shown as text, never run: <img src=x onerror=alert(1)> and [a bad link](javascript:alert(1))";

pub const LINKS: [&str; 2] = [
    "https://ci.example.com/builds/4211",
    "https://grafana.example.com/d/checkout",
];

/// Log lines written before the gate opens, then after it.
pub const EARLY_LINES: [&str; 3] = [
    "Resolving checkout v1.4.2",
    "Pulling image registry.example.com/checkout:v1.4.2",
    "Rolling out 3 replicas to production",
];
pub const LATE_LINES: [&str; 4] = [
    "replica 1/3 ready",
    "replica 2/3 ready",
    "replica 3/3 ready",
    "Deployed checkout v1.4.2",
];

struct Shared {
    api: Api,
    /// Opened by the test once it has seen the early lines in the browser, so that the
    /// rest provably arrives while the page is open.
    gate: Arc<Notify>,
}

/// A webhook receiver on 127.0.0.1; stops when dropped.
pub struct Runner {
    pub url: String,
    pub gate: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Runner {
    pub async fn start(api: Api) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let gate = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            api,
            gate: gate.clone(),
        });
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url: format!("http://{addr}/hook"),
            gate,
            task,
        }
    }
}

/// Answers at once and works in the background, like an asynchronous backend.
async fn receive(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let (Some(run), Some(action)) = (
        message["context"]["runId"].as_str().map(str::to_owned),
        message["action"]["identifier"]
            .as_str()
            .or_else(|| message["action"].as_str())
            .map(str::to_owned),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    tokio::spawn(async move {
        match action.as_str() {
            "deploy_service" => deploy(&shared, &run).await,
            AUTOMATION => announce(&shared.api, &run).await,
            _ => quick(&shared.api, &run).await,
        }
    });
    StatusCode::OK
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(120)).await;
}

async fn deploy(shared: &Shared, run: &str) {
    let api = &shared.api;
    for line in EARLY_LINES {
        api.log(run, line).await;
        pause().await;
    }
    api.patch(
        &format!("/actions/runs/{run}"),
        json!({ "statusLabel": "Rolling out" }),
    )
    .await;
    // The test opens the gate once the page shows the early lines; should it never,
    // the run still ends.
    let _ = tokio::time::timeout(Duration::from_secs(30), shared.gate.notified()).await;
    for line in &LATE_LINES[..3] {
        api.log(run, line).await;
        pause().await;
    }
    api.patch(
        &format!("/blueprints/service/entities/checkout?run_id={run}"),
        json!({ "properties": { "version": "v1.4.2" } }),
    )
    .await;
    api.log(run, LATE_LINES[3]).await;
    api.patch(
        &format!("/actions/runs/{run}"),
        json!({
            "status": "SUCCESS",
            "statusLabel": "Deployed",
            "link": LINKS,
            "summary": SUMMARY,
        }),
    )
    .await;
}

/// The automation the automations test creates, and the label its runs end with.
pub const AUTOMATION: &str = "announce_service";
pub const AUTOMATION_LABEL: &str = "Announced";

async fn announce(api: &Api, run: &str) {
    api.log(run, "Announcing the new service").await;
    api.patch(
        &format!("/actions/runs/{run}"),
        json!({ "status": "SUCCESS", "statusLabel": AUTOMATION_LABEL }),
    )
    .await;
}

async fn quick(api: &Api, run: &str) {
    api.log(run, "Restarting").await;
    api.patch(
        &format!("/actions/runs/{run}"),
        json!({ "status": "SUCCESS", "statusLabel": "Restarted" }),
    )
    .await;
}
