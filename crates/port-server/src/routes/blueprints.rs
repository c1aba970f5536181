//! Blueprints: `/v1/blueprints` and `/v1/blueprints/{identifier}`; the use cases are
//! [`port_core::service::Services`]' (`service/blueprints.rs`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use port_core::catalog::Blueprint;
use serde_json::{Value, json};

use super::ok;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Authenticated};
use crate::state::AppState;

pub(crate) async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let blueprint = state.services().create_blueprint(&caller, &body).await?;
    Ok((StatusCode::CREATED, ok("blueprint", blueprint.to_json())))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Value>> {
    let blueprints = state.services().list_blueprints(&caller).await?;
    Ok(ok(
        "blueprints",
        Value::Array(blueprints.iter().map(Blueprint::to_json).collect()),
    ))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let blueprint = state.services().blueprint_of(&caller, &identifier).await?;
    Ok(ok("blueprint", blueprint.to_json()))
}

/// `PUT`: replaces the definition; the stored creation stamp stays.
pub(crate) async fn replace(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let blueprint = state
        .services()
        .replace_blueprint(&caller, &identifier, body)
        .await?;
    Ok(ok("blueprint", blueprint.to_json()))
}

/// `PATCH`: merges the given keys (see [`port_core::catalog_rules::merge_blueprint`]).
pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let blueprint = state
        .services()
        .patch_blueprint(&caller, &identifier, body)
        .await?;
    Ok(ok("blueprint", blueprint.to_json()))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    state
        .services()
        .delete_blueprint(&caller, &identifier)
        .await?;
    Ok(Json(json!({ "ok": true })))
}
