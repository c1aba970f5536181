//! What every route renders the same way: the `{"ok": true, …}` envelope of a success,
//! and Port's error envelope for unknown routes (404) and other methods (405).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;

/// `{"ok": true, key: value}`.
pub(crate) fn ok(key: &str, value: Value) -> Json<Value> {
    let mut map = serde_json::Map::new();
    map.insert("ok".into(), Value::Bool(true));
    map.insert(key.into(), value);
    Json(Value::Object(map))
}

/// Unknown routes: 404 in Port's envelope.
pub(crate) async fn route_not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("route {method} {}", uri.path()))
}

/// Known routes asked with another method: 405 in Port's envelope.
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    let body = json!({
        "ok": false,
        "error": "method_not_allowed",
        "message": format!("method {method} is not allowed on {}", uri.path()),
    });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}
