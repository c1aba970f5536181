//! Actions: the v2 routes (`/v1/actions…`) and the legacy blueprint-scoped v1 routes
//! (`/v1/blueprints/{bp}/actions…`). One store serves both; the v1 view is
//! [`Action::to_v1_json`]. The use cases are [`port_core::service::Services`]'
//! (`service/actions.rs`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use port_core::action::{Action, Operation};
use port_core::run::WireVersion;
use port_core::service::ActionFilter;
use serde_json::{Value, json};

use super::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiJsonAny, ApiPath, Authenticated, QueryParams};
use crate::state::AppState;

fn render(action: &Action, version: WireVersion) -> Value {
    match version {
        WireVersion::V1 => v1_json(action),
        WireVersion::V2 => action.to_v2_json(),
    }
}

fn v1_json(action: &Action) -> Value {
    action.to_v1_json().unwrap_or_else(|| action.to_v2_json())
}

fn v1_array(actions: &[Action]) -> Value {
    Value::Array(actions.iter().map(v1_json).collect())
}

// ---------------------------------------------------------------------------------------
// v2
// ---------------------------------------------------------------------------------------

pub(crate) async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let action = state.services().create_action(&caller, &body).await?;
    Ok((StatusCode::CREATED, ok("action", action.to_v2_json())))
}

/// The filters of `GET /v1/actions`.
fn action_filter(query: &QueryParams) -> ApiResult<ActionFilter> {
    let owned =
        |name: &str| -> Vec<String> { query.all(name).into_iter().map(str::to_owned).collect() };
    let operations = query
        .all("operation")
        .into_iter()
        .map(|op| {
            Operation::parse(op).ok_or_else(|| {
                ApiError::invalid("querystring.operation: must be one of CREATE, DAY-2, DELETE")
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let self_service = match query.first("trigger_type") {
        None => None,
        Some(t @ ("self-service" | "automation")) => Some(t == "self-service"),
        Some(_) => {
            return Err(ApiError::invalid(
                "querystring.trigger_type: must be one of self-service, automation",
            ));
        }
    };
    Ok(ActionFilter {
        identifiers: owned("action_identifier"),
        blueprints: owned("blueprint_identifier"),
        operations,
        self_service,
        published: query.flag("published")?,
        trigger_events: owned("trigger_event"),
    })
}

/// `GET /v1/actions`: every filter present must hold; repeated keys are alternatives.
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let filter = action_filter(&query)?;
    let version = query.version_or_v2()?;
    let actions = state.services().list_actions(&caller, &filter).await?;
    Ok(ok(
        "actions",
        Value::Array(actions.iter().map(|a| render(a, version)).collect()),
    ))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let action = state.services().get_action(&caller, &identifier).await?;
    Ok(ok("action", render(&action, query.version_or_v2()?)))
}

pub(crate) async fn replace(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let action = state
        .services()
        .replace_action(&caller, &identifier, &body)
        .await?;
    Ok(ok("action", action.to_v2_json()))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    state.services().delete_action(&caller, &identifier).await?;
    Ok(Json(json!({ "ok": true })))
}

// ---------------------------------------------------------------------------------------
// Legacy v1, blueprint-scoped
// ---------------------------------------------------------------------------------------

/// `POST /v1/blueprints/{bp}/actions`: one v1 action (answered as `action`) or an
/// array of them, as the seed writes them (answered as `actions`).
pub(crate) async fn create_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    ApiJsonAny(body): ApiJsonAny<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let created = state
        .services()
        .create_blueprint_actions(&caller, &blueprint, &body)
        .await?;
    let response = if body.is_array() {
        ok("actions", v1_array(&created))
    } else {
        ok("action", created.last().map_or(Value::Null, v1_json))
    };
    Ok((StatusCode::CREATED, response))
}

pub(crate) async fn list_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let actions = state
        .services()
        .blueprint_actions(&caller, &blueprint)
        .await?;
    Ok(ok("actions", v1_array(&actions)))
}

/// `PUT /v1/blueprints/{bp}/actions`: the body (an array) becomes the blueprint's
/// whole set of actions: missing ones are deleted, known ones updated, new ones created.
pub(crate) async fn replace_all_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    ApiJsonAny(body): ApiJsonAny<Value>,
) -> ApiResult<Json<Value>> {
    let actions = state
        .services()
        .replace_blueprint_actions(&caller, &blueprint, &body)
        .await?;
    Ok(ok("actions", v1_array(&actions)))
}

pub(crate) async fn get_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let action = state
        .services()
        .blueprint_action(&caller, &blueprint, &identifier)
        .await?;
    Ok(ok("action", v1_json(&action)))
}

pub(crate) async fn replace_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let action = state
        .services()
        .replace_blueprint_action(&caller, &blueprint, &identifier, &body)
        .await?;
    Ok(ok("action", v1_json(&action)))
}

pub(crate) async fn delete_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    state
        .services()
        .delete_blueprint_action(&caller, &blueprint, &identifier)
        .await?;
    Ok(Json(json!({ "ok": true })))
}
