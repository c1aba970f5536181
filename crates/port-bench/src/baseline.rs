//! The baseline: a bare axum server with portd's two hottest write routes, doing only
//! what any JSON API must (route, parse the JSON body, answer a small JSON body) and
//! nothing portd adds (auth, validation, storage, tracing, metrics, request ids).
//! Built in the same binary and profile as the portd under test.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// `POST /v1/actions/{id}/runs` → 202, `POST /v1/actions/runs/{id}/logs` → 201,
/// `GET /v1/actions/runs/{id}` → 200 (for the latency floor of a read on this machine),
/// `GET /healthz` → 200.
pub fn router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/actions/runs/{run}", get(get_run))
        .route("/v1/actions/{action}/runs", post(create_run))
        .route("/v1/actions/runs/{run}/logs", post(add_log))
        .with_state(std::sync::Arc::new(Counter::default()))
}

async fn create_run(
    State(counter): State<std::sync::Arc<Counter>>,
    Path(action): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let properties = body.get("properties").cloned().unwrap_or(Value::Null);
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "ok": true,
            "run": {
                "id": format!("r_{:016}", counter.next()),
                "status": "IN_PROGRESS",
                "action": { "identifier": action },
                "properties": properties,
            }
        })),
    )
}

async fn get_run(Path(run): Path<String>) -> Json<Value> {
    Json(json!({
        "ok": true,
        "run": { "id": run, "status": "IN_PROGRESS", "action": { "identifier": "bench" } }
    }))
}

async fn add_log(
    State(counter): State<std::sync::Arc<Counter>>,
    Path(run): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let message = body.get("message").cloned().unwrap_or(Value::Null);
    (
        StatusCode::CREATED,
        Json(json!({
            "ok": true,
            "runLog": {
                "id": format!("log_{:016}", counter.next()),
                "runId": run,
                "message": message,
            }
        })),
    )
}
