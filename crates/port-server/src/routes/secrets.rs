//! The organization's secrets (`/v1/organization/secrets`): names, descriptions and
//! dates in and out; values only in. Each route parses, calls one service and renders.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use port_core::service::secrets::secret_json;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ok;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Authenticated, present};
use crate::state::AppState;

/// `GET /v1/organization/secrets` → `{ok, secrets: [{secretName, description?,
/// createdAt, updatedAt}]}`, by name.
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Value>> {
    let secrets = state.services().list_secrets(&caller).await?;
    Ok(ok(
        "secrets",
        Value::Array(secrets.iter().map(secret_json).collect()),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CreateBody {
    secret_name: String,
    secret_value: String,
    #[serde(default, deserialize_with = "present")]
    description: Option<String>,
}

/// `POST /v1/organization/secrets` `{secretName, secretValue, description?}` → 201
/// `{ok, secret}`; 409 `identifier_taken` when the name is.
pub(crate) async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let secret = state
        .services()
        .create_secret(
            &caller,
            &body.secret_name,
            body.secret_value,
            body.description,
        )
        .await?;
    Ok((StatusCode::CREATED, ok("secret", secret_json(&secret))))
}

/// `GET /v1/organization/secrets/{secret_name}` → `{ok, secret}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let secret = state.services().get_secret(&caller, &name).await?;
    Ok(ok("secret", secret_json(&secret)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PatchBody {
    #[serde(default, deserialize_with = "present")]
    secret_value: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<String>,
}

/// `PATCH /v1/organization/secrets/{secret_name}` `{secretValue?, description?}` →
/// `{ok, secret}`. The new value is what invocations sent from now on use, including
/// those of runs created before.
pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> ApiResult<Json<Value>> {
    let secret = state
        .services()
        .update_secret(&caller, &name, body.secret_value, body.description)
        .await?;
    Ok(ok("secret", secret_json(&secret)))
}

/// `DELETE /v1/organization/secrets/{secret_name}` → `{ok}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    state.services().delete_secret(&caller, &name).await?;
    Ok(Json(json!({ "ok": true })))
}
