//! An action's permissions (`/v1/actions/{action_identifier}/permissions`): who may
//! execute and approve it, in Port's shape. Anyone of the organization reads them;
//! Admins and organization credentials change them (decided by the services).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::ok;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Authenticated};
use crate::state::AppState;

/// `GET /v1/actions/{action_identifier}/permissions` → `{ok, permissions}`: the
/// default (Admins execute and approve) until someone sets them.
pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(action): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let permissions = state
        .services()
        .action_permissions(&caller, &action)
        .await?;
    Ok(ok("permissions", permissions.to_json()))
}

/// `PATCH /v1/actions/{action_identifier}/permissions` `{execute?, approve?}` →
/// `{ok, permissions}`: the keys given replace those of each grant, the others stay.
pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(action): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let permissions = state
        .services()
        .patch_action_permissions(&caller, &action, &body)
        .await?;
    Ok(ok("permissions", permissions.to_json()))
}
