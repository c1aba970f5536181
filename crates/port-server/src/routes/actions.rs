//! Actions: the v2 routes (`/v1/actions…`) and the legacy blueprint-scoped v1 routes
//! (`/v1/blueprints/{bp}/actions…`). One store serves both; the v1 view is
//! [`Action::to_v1_json`].

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use port_core::ErrorKind;
use port_core::action::{Action, ActionDefinition, ActionMeta, Operation, Trigger};
use port_core::catalog::Blueprint;
use port_core::error::StoreError;
use port_core::id::{ActionId, ActionIdentifier};
use port_core::inputs::check_user_inputs_definition;
use port_core::run::WireVersion;
use port_core::service::Caller;
use serde_json::{Value, json};

use super::{blueprints, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiJsonAny, ApiPath, Authenticated, QueryParams};
use crate::state::AppState;

fn taken(identifier: &ActionIdentifier) -> ApiError {
    ApiError::new(
        ErrorKind::IdentifierTaken,
        format!("an action with identifier {identifier} already exists"),
    )
}

fn action_not_found(identifier: &str) -> ApiError {
    ApiError::not_found(format!("action {identifier}"))
}

/// Refuses a malformed `userInputs` (422 `user_inputs_schema_invalid`) and a trigger
/// naming a blueprint that does not exist (404).
async fn check_definition(
    state: &AppState,
    caller: &Caller,
    definition: &ActionDefinition,
) -> ApiResult<()> {
    if let Some(inputs) = definition.user_inputs() {
        check_user_inputs_definition(&Value::Object(inputs.clone()))
            .map_err(|e| ApiError::new(ErrorKind::UserInputsSchemaInvalid, e.to_string()))?;
    }
    if let Some(blueprint) = definition.blueprint()
        && state
            .store()
            .get_blueprint(&caller.org_id, blueprint)
            .await?
            .is_none()
    {
        return Err(ApiError::not_found(format!("blueprint {blueprint}")));
    }
    Ok(())
}

fn new_action(state: &AppState, caller: &Caller, definition: ActionDefinition) -> Action {
    let now = state.clock().now();
    Action {
        meta: ActionMeta {
            id: state.ids().next::<ActionId>(),
            created_at: now,
            created_by: caller.user_id().to_owned(),
            updated_at: now,
            updated_by: caller.user_id().to_owned(),
        },
        definition,
    }
}

async fn create_one(state: &AppState, caller: &Caller, action: &Action) -> ApiResult<()> {
    state
        .store()
        .create_action(&caller.org_id, action)
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists(_) => taken(&action.definition.identifier),
            other => other.into(),
        })
}

/// Replaces an action's definition, keeping its id and creation stamp.
async fn update_one(
    state: &AppState,
    caller: &Caller,
    mut action: Action,
    definition: ActionDefinition,
) -> ApiResult<Action> {
    action.definition = definition;
    action.meta.updated_at = state.clock().now();
    action.meta.updated_by = caller.user_id().to_owned();
    state.store().update_action(&caller.org_id, &action).await?;
    Ok(action)
}

async fn load(state: &AppState, caller: &Caller, identifier: &str) -> ApiResult<Action> {
    let id = ActionIdentifier::parse(identifier).map_err(|_| action_not_found(identifier))?;
    state
        .store()
        .get_action(&caller.org_id, &id)
        .await?
        .ok_or_else(|| action_not_found(identifier))
}

fn path_identifier_matches(definition: &ActionDefinition, identifier: &str) -> ApiResult<()> {
    if definition.identifier.as_str() == identifier {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "identifier: must be {identifier}, the identifier in the path"
        )))
    }
}

// ---------------------------------------------------------------------------------------
// v2
// ---------------------------------------------------------------------------------------

pub(crate) async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let definition = ActionDefinition::from_v2(&body).map_err(port_core::PortError::from)?;
    check_definition(&state, &caller, &definition).await?;
    let action = new_action(&state, &caller, definition);
    create_one(&state, &caller, &action).await?;
    Ok((StatusCode::CREATED, ok("action", action.to_v2_json())))
}

fn render(action: &Action, version: WireVersion) -> Value {
    match version {
        WireVersion::V1 => action.to_v1_json().unwrap_or_else(|| action.to_v2_json()),
        WireVersion::V2 => action.to_v2_json(),
    }
}

/// An automation's `trigger.event.type`.
fn trigger_event(definition: &ActionDefinition) -> Option<&str> {
    match &definition.trigger {
        Trigger::Automation(fields) => fields
            .get("event")
            .and_then(|e| e.get("type"))
            .and_then(Value::as_str),
        Trigger::SelfService(_) => None,
    }
}

/// `GET /v1/actions`: every filter present must hold; repeated keys are alternatives.
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let identifiers = query.all("action_identifier");
    let blueprints = query.all("blueprint_identifier");
    let operations = query
        .all("operation")
        .into_iter()
        .map(|op| {
            Operation::parse(op).ok_or_else(|| {
                ApiError::invalid("querystring.operation: must be one of CREATE, DAY-2, DELETE")
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let trigger_type = match query.first("trigger_type") {
        None => None,
        Some(t @ ("self-service" | "automation")) => Some(t == "self-service"),
        Some(_) => {
            return Err(ApiError::invalid(
                "querystring.trigger_type: must be one of self-service, automation",
            ));
        }
    };
    let published = query.flag("published")?;
    let events = query.all("trigger_event");
    let version = query.version_or_v2()?;

    let actions = state.store().list_actions(&caller.org_id).await?;
    let shown: Vec<Value> = actions
        .iter()
        .filter(|a| {
            let d = &a.definition;
            (identifiers.is_empty() || identifiers.contains(&d.identifier.as_str()))
                && (blueprints.is_empty()
                    || d.blueprint()
                        .is_some_and(|b| blueprints.contains(&b.as_str())))
                && (operations.is_empty()
                    || d.operation().is_some_and(|op| operations.contains(&op)))
                && trigger_type.is_none_or(|self_service| d.is_self_service() == self_service)
                && published.is_none_or(|p| d.publish.unwrap_or(true) == p)
                && (events.is_empty() || trigger_event(d).is_some_and(|e| events.contains(&e)))
        })
        .map(|a| render(a, version))
        .collect();
    Ok(ok("actions", Value::Array(shown)))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let action = load(&state, &caller, &identifier).await?;
    Ok(ok("action", render(&action, query.version_or_v2()?)))
}

pub(crate) async fn replace(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let action = load(&state, &caller, &identifier).await?;
    let definition = ActionDefinition::from_v2(&body).map_err(port_core::PortError::from)?;
    path_identifier_matches(&definition, &identifier)?;
    check_definition(&state, &caller, &definition).await?;
    let action = update_one(&state, &caller, action, definition).await?;
    Ok(ok("action", action.to_v2_json()))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let action = load(&state, &caller, &identifier).await?;
    state
        .store()
        .delete_action(&caller.org_id, &action.definition.identifier)
        .await?;
    Ok(Json(json!({ "ok": true })))
}

// ---------------------------------------------------------------------------------------
// Legacy v1, blueprint-scoped
// ---------------------------------------------------------------------------------------

fn v1_json(action: &Action) -> Value {
    action.to_v1_json().unwrap_or_else(|| action.to_v2_json())
}

fn parse_v1(
    value: &Value,
    blueprint: &Blueprint,
    path: Option<usize>,
) -> ApiResult<ActionDefinition> {
    ActionDefinition::from_v1(value, &blueprint.identifier).map_err(|e| match path {
        Some(index) => ApiError::invalid(format!("[{index}].{e}")),
        None => ApiError(e.into()),
    })
}

/// Loads an action that belongs to `blueprint` (404 otherwise).
pub(crate) async fn load_of_blueprint(
    state: &AppState,
    caller: &Caller,
    blueprint: &Blueprint,
    identifier: &str,
) -> ApiResult<Action> {
    let action = load(state, caller, identifier).await?;
    if action.definition.blueprint() != Some(&blueprint.identifier) {
        return Err(ApiError::not_found(format!(
            "action {identifier} of blueprint {}",
            blueprint.identifier
        )));
    }
    Ok(action)
}

/// Parses a v1 body that is one action or an array of them.
fn parse_v1_many(body: &Value, blueprint: &Blueprint) -> ApiResult<Vec<ActionDefinition>> {
    let definitions = match body {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_v1(item, blueprint, Some(i)))
            .collect::<ApiResult<Vec<_>>>()?,
        other => vec![parse_v1(other, blueprint, None)?],
    };
    let mut seen = HashSet::new();
    for definition in &definitions {
        if !seen.insert(definition.identifier.clone()) {
            return Err(ApiError::invalid(format!(
                "identifier: {} appears twice in the body",
                definition.identifier
            )));
        }
    }
    Ok(definitions)
}

/// `POST /v1/blueprints/{bp}/actions`: one v1 action (answered as `action`) or an
/// array of them, as the seed writes them (answered as `actions`).
pub(crate) async fn create_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    ApiJsonAny(body): ApiJsonAny<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let definitions = parse_v1_many(&body, &blueprint)?;
    for definition in &definitions {
        check_definition(&state, &caller, definition).await?;
        if state
            .store()
            .get_action(&caller.org_id, &definition.identifier)
            .await?
            .is_some()
        {
            return Err(taken(&definition.identifier));
        }
    }
    let mut created = Vec::new();
    for definition in definitions {
        let action = new_action(&state, &caller, definition);
        create_one(&state, &caller, &action).await?;
        created.push(v1_json(&action));
    }
    let response = if body.is_array() {
        ok("actions", Value::Array(created))
    } else {
        ok("action", created.pop().unwrap_or(Value::Null))
    };
    Ok((StatusCode::CREATED, response))
}

async fn actions_of(
    state: &AppState,
    caller: &Caller,
    blueprint: &Blueprint,
) -> ApiResult<Vec<Action>> {
    let actions = state.store().list_actions(&caller.org_id).await?;
    Ok(actions
        .into_iter()
        .filter(|a| a.definition.blueprint() == Some(&blueprint.identifier))
        .collect())
}

pub(crate) async fn list_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let actions = actions_of(&state, &caller, &blueprint).await?;
    Ok(ok(
        "actions",
        Value::Array(actions.iter().map(v1_json).collect()),
    ))
}

/// `PUT /v1/blueprints/{bp}/actions`: the body (an array) becomes the blueprint's
/// whole set of actions: missing ones are deleted, known ones updated, new ones created.
pub(crate) async fn replace_all_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    ApiJsonAny(body): ApiJsonAny<Value>,
) -> ApiResult<Json<Value>> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    if !body.is_array() {
        return Err(ApiError::invalid("body: must be an array of actions"));
    }
    let definitions = parse_v1_many(&body, &blueprint)?;
    for definition in &definitions {
        check_definition(&state, &caller, definition).await?;
        // An identifier used by another blueprint's action cannot be taken over here.
        if let Some(other) = state
            .store()
            .get_action(&caller.org_id, &definition.identifier)
            .await?
            && other.definition.blueprint() != Some(&blueprint.identifier)
        {
            return Err(taken(&definition.identifier));
        }
    }
    let existing = actions_of(&state, &caller, &blueprint).await?;
    let wanted: HashSet<ActionIdentifier> =
        definitions.iter().map(|d| d.identifier.clone()).collect();
    for action in &existing {
        if !wanted.contains(&action.definition.identifier) {
            state
                .store()
                .delete_action(&caller.org_id, &action.definition.identifier)
                .await?;
        }
    }
    let mut result = Vec::new();
    for definition in definitions {
        let current = existing
            .iter()
            .find(|a| a.definition.identifier == definition.identifier)
            .cloned();
        let action = match current {
            Some(action) => update_one(&state, &caller, action, definition).await?,
            None => {
                let action = new_action(&state, &caller, definition);
                create_one(&state, &caller, &action).await?;
                action
            }
        };
        result.push(v1_json(&action));
    }
    Ok(ok("actions", Value::Array(result)))
}

pub(crate) async fn get_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let action = load_of_blueprint(&state, &caller, &blueprint, &identifier).await?;
    Ok(ok("action", v1_json(&action)))
}

pub(crate) async fn replace_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let action = load_of_blueprint(&state, &caller, &blueprint, &identifier).await?;
    let definition = parse_v1(&body, &blueprint, None)?;
    path_identifier_matches(&definition, &identifier)?;
    check_definition(&state, &caller, &definition).await?;
    let action = update_one(&state, &caller, action, definition).await?;
    Ok(ok("action", v1_json(&action)))
}

pub(crate) async fn delete_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let action = load_of_blueprint(&state, &caller, &blueprint, &identifier).await?;
    state
        .store()
        .delete_action(&caller.org_id, &action.definition.identifier)
        .await?;
    Ok(Json(json!({ "ok": true })))
}
