//! People of the organization, in Port's shapes (`/v1/users…`): list, invite, get,
//! update (role and teams) and delete. Who may do which is the services' decision
//! (`service/access.rs`): Members list and read, Admins and organization credentials
//! manage.

use axum::Json;
use axum::extract::State;
use port_core::access::User;
use serde_json::{Value, json};

use super::ok;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Authenticated, QueryParams};
use crate::state::AppState;

/// `GET /v1/users` → `{ok, users}`, by address.
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Value>> {
    let users = state.services().list_users(&caller).await?;
    Ok(ok(
        "users",
        Value::Array(users.iter().map(User::to_json).collect()),
    ))
}

/// `POST /v1/users/invite` `{invitee: {email, roles?, teams?}}` → `{ok}` (Port's answer
/// names nobody). The user exists at once, `Invited` until they first sign in; portd
/// sends no e-mail, so Port's `notify` is accepted and changes nothing.
pub(crate) async fn invite(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: QueryParams,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    query.flag("notify")?;
    state.services().invite_user(&caller, &body).await?;
    Ok(Json(json!({ "ok": true })))
}

/// `GET /v1/users/{user_email}` → `{ok, user}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(email): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let user = state.services().get_user(&caller, &email).await?;
    Ok(ok("user", user.to_json()))
}

/// `PATCH /v1/users/{user_email}` `{roles?, teams?}` → the user's fields beside `ok`
/// (Port answers this route with the user at the top level, not under `user`).
pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(email): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let user = state.services().update_user(&caller, &email, &body).await?;
    let mut answer = serde_json::Map::new();
    answer.insert("ok".into(), Value::Bool(true));
    if let Value::Object(fields) = user.to_json() {
        answer.extend(fields);
    }
    Ok(Json(Value::Object(answer)))
}

/// `DELETE /v1/users/{user_email}` → `{ok}`: the user goes with their memberships,
/// password, sessions and personal credentials.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(email): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    state.services().delete_user(&caller, &email).await?;
    Ok(Json(json!({ "ok": true })))
}
