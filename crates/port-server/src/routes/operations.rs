//! The operations routes: liveness, readiness (the database answers) and Prometheus
//! metrics.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    match state.health().ping().await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "readiness check failed");
            ApiError::new(
                port_core::ErrorKind::ServiceUnavailable,
                "the database is not reachable",
            )
            .into_response()
        }
    }
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}
