//! Teams of the organization, in Port's shapes (`/v1/teams…`). Members list and read
//! them; Admins and organization credentials manage them (decided by the services).

use axum::Json;
use axum::extract::State;
use port_core::access::Team;
use serde_json::{Value, json};

use super::ok;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Authenticated};
use crate::state::AppState;

/// `GET /v1/teams` → `{ok, teams}`, by name.
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Value>> {
    let teams = state.services().list_teams(&caller).await?;
    Ok(ok(
        "teams",
        Value::Array(teams.iter().map(Team::to_json).collect()),
    ))
}

/// `POST /v1/teams` `{name, users?, description?}` → `{ok, team}` with 200, as Port
/// answers it.
pub(crate) async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let team = state.services().create_team(&caller, &body).await?;
    Ok(ok("team", team.to_json()))
}

/// `GET /v1/teams/{name}` → `{ok, team}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let team = state.services().get_team(&caller, &name).await?;
    Ok(ok("team", team.to_json()))
}

/// `PATCH /v1/teams/{name}` `{name?, users?, description?}` → `{ok, team}`: present
/// keys replace (`users` the whole member list), absent ones stay.
pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let team = state
        .services()
        .update_team(&caller, &name, &body, false)
        .await?;
    Ok(ok("team", team.to_json()))
}

/// `PUT /v1/teams/{name}` `{name, users?, description?}` → `{ok, team}`: the team
/// becomes the body (absent keys are emptied).
pub(crate) async fn replace(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let team = state
        .services()
        .update_team(&caller, &name, &body, true)
        .await?;
    Ok(ok("team", team.to_json()))
}

/// `DELETE /v1/teams/{name}` → `{ok}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    state.services().delete_team(&caller, &name).await?;
    Ok(Json(json!({ "ok": true })))
}
