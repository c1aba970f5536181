//! `POST /v1/auth/access_token`, with failed attempts throttled (see
//! [`crate::throttle`]), and people's own credentials (`/v1/auth/credentials`).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use port_core::ErrorKind;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authenticated, PeerAddr};
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

/// `POST /v1/auth/credentials` → 201 `{ok, credentials: {clientId, clientSecret}}`: a
/// client id and secret of the calling person's own. The secret is in this answer
/// only. Organization credentials are refused (403): they are the organization's.
pub(crate) async fn create_credentials(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let credential = state.services().create_personal_credential(&caller).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "ok": true,
            "credentials": {
                "clientId": credential.client_id,
                "clientSecret": credential.client_secret.expose(),
                "createdAt": credential.created_at,
            },
        })),
    ))
}

/// `DELETE /v1/auth/credentials/{client_id}` → `{ok}`: one of the calling person's
/// personal credentials; someone else's is `not_found`.
pub(crate) async fn delete_credentials(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(client_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    state
        .services()
        .delete_personal_credential(&caller, &client_id)
        .await?;
    state.authenticator().clear_cache();
    Ok(Json(json!({ "ok": true })))
}

/// `GET /v1/auth/credentials` → `{ok, credentials: [{clientId, createdAt}]}`: the
/// calling person's personal credentials, never their secrets.
pub(crate) async fn list_credentials(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Value>> {
    let credentials = state.services().list_personal_credentials(&caller).await?;
    let listed: Vec<Value> = credentials
        .iter()
        .map(|c| json!({ "clientId": c.client_id, "createdAt": c.created_at }))
        .collect();
    Ok(Json(json!({ "ok": true, "credentials": listed })))
}
