//! `POST /v1/auth/access_token`, with failed attempts throttled (see
//! [`crate::throttle`]).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse as _, Response};
use port_core::ErrorKind;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiJson, PeerAddr};
use crate::state::AppState;
use crate::throttle::Source;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TokenRequest {
    client_id: String,
    client_secret: String,
}

pub(crate) async fn access_token(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Json<Value>, Response> {
    let authenticator = state.authenticator();
    let throttle = authenticator.throttle();
    let attempt = throttle.attempt(&body.client_id, Source::from(peer));
    // Refused before the secret is checked: a throttled guess learns nothing.
    throttle
        .check(attempt, Instant::now())
        .map_err(too_many_failures)?;
    match authenticator
        .issue(&body.client_id, &body.client_secret)
        .await
    {
        Ok(token) => {
            throttle.succeeded(attempt, Instant::now());
            Ok(Json(json!({
                "ok": true,
                "accessToken": token.token,
                "expiresIn": token.expires_in,
                "tokenType": "Bearer",
            })))
        }
        Err(refused) => {
            // Only wrong credentials count; a database outage (503) is nobody's failure.
            if refused.kind() == ErrorKind::Unauthorized {
                throttle.failed(attempt, Instant::now());
            }
            Err(refused.into_response())
        }
    }
}

/// 429 `too_many_requests` with `Retry-After` in whole seconds (at least 1).
fn too_many_failures(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        ErrorKind::TooManyRequests,
        format!("too many failed attempts for this client id or from this address; try again in {seconds} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}
