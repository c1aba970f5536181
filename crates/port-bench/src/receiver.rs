//! The loopback webhook receiver: notes when each run's invocation arrives and, for
//! lifecycle runs, reports back through portd's API as a backend would (10 log lines,
//! then the final status) before counting the run as ended.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Log lines a lifecycle receiver appends before ending its run.
pub const LIFECYCLE_LOGS: usize = 10;

/// Where lifecycle follow-ups go.
pub struct Backend {
    pub client: reqwest::Client,
    /// `http://host:port/v1`.
    pub api_url: String,
    pub token: String,
    /// Released once per ended run, so a driver can keep a fixed number in flight.
    pub permits: Arc<Semaphore>,
}

#[derive(Default)]
struct Shared {
    arrivals: Mutex<HashMap<String, Instant>>,
    ended: Mutex<HashMap<String, Instant>>,
    duplicates: AtomicU64,
    unsigned: AtomicU64,
    unreadable: AtomicU64,
    follow_up_errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    backend: Mutex<Option<Arc<Backend>>>,
}

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// What the receiver saw, taken out at the end of a phase.
#[derive(Debug, Default)]
pub struct Seen {
    pub arrivals: HashMap<String, Instant>,
    pub ended: HashMap<String, Instant>,
    pub duplicates: u64,
    pub unsigned: u64,
    pub unreadable: u64,
    pub follow_up_errors: u64,
    pub first_error: Option<String>,
}

impl Receiver {
    pub async fn start() -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/hook", post(hook))
            .route("/lifecycle", post(lifecycle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { addr, shared, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Where `/lifecycle` reports back to.
    pub fn set_backend(&self, backend: Backend) {
        *self.shared.backend.lock().expect("not poisoned") = Some(Arc::new(backend));
    }

    /// How many invocations arrived so far.
    pub fn arrived(&self) -> usize {
        self.shared.arrivals.lock().expect("not poisoned").len()
    }

    /// Everything seen so far, leaving the receiver empty.
    pub fn take(&self) -> Seen {
        let s = &self.shared;
        Seen {
            arrivals: std::mem::take(&mut *s.arrivals.lock().expect("not poisoned")),
            ended: std::mem::take(&mut *s.ended.lock().expect("not poisoned")),
            duplicates: s.duplicates.swap(0, Ordering::Relaxed),
            unsigned: s.unsigned.swap(0, Ordering::Relaxed),
            unreadable: s.unreadable.swap(0, Ordering::Relaxed),
            follow_up_errors: s.follow_up_errors.swap(0, Ordering::Relaxed),
            first_error: s.first_error.lock().expect("not poisoned").take(),
        }
    }

    /// Waits until `expected` invocations arrived or `limit` passed.
    pub async fn wait_for(&self, expected: usize, limit: Duration) {
        let until = Instant::now() + limit;
        while self.arrived() < expected && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The run id of a legacy invocation body (`context.runId`), or of a v2 body that
/// carries `run.id` / `runId`.
fn run_id_of(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    [
        value.pointer("/context/runId"),
        value.pointer("/run/id"),
        value.get("runId"),
    ]
    .into_iter()
    .flatten()
    .find_map(Value::as_str)
    .map(str::to_owned)
}

/// Notes an arrival; `None` for unreadable or repeated invocations.
fn arrive(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let at = Instant::now();
    if !headers.contains_key("x-port-signature") {
        shared.unsigned.fetch_add(1, Ordering::Relaxed);
    }
    let Some(run) = run_id_of(body) else {
        shared.unreadable.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let mut arrivals = shared.arrivals.lock().expect("not poisoned");
    if arrivals.contains_key(&run) {
        shared.duplicates.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    arrivals.insert(run.clone(), at);
    Some(run)
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    arrive(&shared, &headers, &body);
    StatusCode::OK
}

async fn lifecycle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if let Some(run) = arrive(&shared, &headers, &body) {
        let backend = shared.backend.lock().expect("not poisoned").clone();
        if let Some(backend) = backend {
            // Answer at once, as a backend with a job queue would; report from a task.
            tokio::spawn(async move {
                match follow_up(&backend, &run).await {
                    Ok(()) => {
                        shared
                            .ended
                            .lock()
                            .expect("not poisoned")
                            .insert(run, Instant::now());
                    }
                    Err(e) => {
                        shared.follow_up_errors.fetch_add(1, Ordering::Relaxed);
                        let mut first = shared.first_error.lock().expect("not poisoned");
                        if first.is_none() {
                            *first = Some(format!("{e:#}"));
                        }
                    }
                }
                backend.permits.add_permits(1);
            });
        }
    }
    StatusCode::OK
}

async fn follow_up(backend: &Backend, run: &str) -> Result<()> {
    let base = format!("{}/actions/runs/{run}", backend.api_url);
    for n in 1..=LIFECYCLE_LOGS {
        let message = format!(
            "step {n} of {LIFECYCLE_LOGS}: provisioning svc for run {run} (terraform apply, 3 resources)"
        );
        let response = backend
            .client
            .post(format!("{base}/logs"))
            .bearer_auth(&backend.token)
            .json(&json!({ "message": message }))
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            bail!("log {n}: {} {}", response.status(), response.text().await?);
        }
    }
    let response = backend
        .client
        .patch(&base)
        .bearer_auth(&backend.token)
        .json(&json!({ "status": "SUCCESS", "summary": "provisioned" }))
        .send()
        .await
        .context("PATCH")?;
    if response.status() != StatusCode::OK {
        bail!("PATCH: {} {}", response.status(), response.text().await?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_come_from_legacy_and_v2_bodies() {
        let legacy = json!({ "context": { "runId": "r_a", "entity": null } });
        assert_eq!(run_id_of(legacy.to_string().as_bytes()), Some("r_a".into()));
        let v2 = json!({ "run": { "id": "r_b" } });
        assert_eq!(run_id_of(v2.to_string().as_bytes()), Some("r_b".into()));
        assert_eq!(run_id_of(br#"{"runId":"r_c"}"#), Some("r_c".into()));
        assert_eq!(run_id_of(b"not json"), None);
        assert_eq!(run_id_of(br#"{"context":{}}"#), None);
    }
}
