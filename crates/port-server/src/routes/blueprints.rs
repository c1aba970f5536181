//! Blueprints: `/v1/blueprints` and `/v1/blueprints/{identifier}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use port_core::ErrorKind;
use port_core::catalog::{Blueprint, Stamp};
use port_core::catalog_rules::{check_blueprint_definition, merge_blueprint, parse_blueprint};
use port_core::error::StoreError;
use port_core::id::BlueprintIdentifier;
use port_core::service::Caller;
use serde_json::{Value, json};

use super::{blueprint_identifier, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authenticated};
use crate::state::AppState;

fn stamp_now(state: &AppState, caller: &Caller) -> Stamp {
    let now = state.clock().now();
    Stamp {
        created_at: now,
        created_by: caller.user_id().to_owned(),
        updated_at: now,
        updated_by: caller.user_id().to_owned(),
    }
}

/// Loads a blueprint of the caller's organization, 404 when there is none.
pub(crate) async fn load(
    state: &AppState,
    caller: &Caller,
    identifier: &str,
) -> ApiResult<Blueprint> {
    let id = blueprint_identifier(identifier)?;
    state
        .store()
        .get_blueprint(&caller.org_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("blueprint {identifier}")))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let parsed = parse_blueprint(&body)?;
    let blueprint = Blueprint {
        org_id: caller.org_id.clone(),
        identifier: parsed.identifier,
        title: parsed.title,
        definition: parsed.definition,
        stamp: stamp_now(&state, &caller),
    };
    state
        .store()
        .create_blueprint(&blueprint)
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists(_) => ApiError::new(
                ErrorKind::IdentifierTaken,
                format!(
                    "a blueprint with identifier {} already exists",
                    blueprint.identifier
                ),
            ),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, ok("blueprint", blueprint.to_json())))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Value>> {
    let blueprints = state.store().list_blueprints(&caller.org_id).await?;
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
    Ok(ok(
        "blueprint",
        load(&state, &caller, &identifier).await?.to_json(),
    ))
}

fn check_path_identifier(body: &Value, identifier: &BlueprintIdentifier) -> ApiResult<()> {
    match body.get("identifier") {
        None => Ok(()),
        Some(Value::String(s)) if s == identifier.as_str() => Ok(()),
        Some(_) => Err(ApiError::invalid(format!(
            "identifier: must be {identifier}, the identifier in the path"
        ))),
    }
}

async fn save(
    state: &AppState,
    caller: &Caller,
    mut blueprint: Blueprint,
) -> ApiResult<Json<Value>> {
    blueprint.stamp.updated_at = state.clock().now();
    blueprint.stamp.updated_by = caller.user_id().to_owned();
    state.store().update_blueprint(&blueprint).await?;
    Ok(ok("blueprint", blueprint.to_json()))
}

/// `PUT`: replaces the definition; the stored creation stamp stays.
pub(crate) async fn replace(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let mut blueprint = load(&state, &caller, &identifier).await?;
    check_path_identifier(&body, &blueprint.identifier)?;
    let mut with_identifier = body;
    if let Value::Object(map) = &mut with_identifier {
        map.insert("identifier".into(), json!(blueprint.identifier));
    }
    let parsed = parse_blueprint(&with_identifier)?;
    blueprint.title = parsed.title;
    blueprint.definition = parsed.definition;
    save(&state, &caller, blueprint).await
}

/// `PATCH`: merges the given keys (see [`merge_blueprint`]).
pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let mut blueprint = load(&state, &caller, &identifier).await?;
    check_path_identifier(&body, &blueprint.identifier)?;
    let Value::Object(changes) = body else {
        return Err(ApiError::invalid("body: must be an object"));
    };
    let definition = merge_blueprint(&blueprint.definition, &changes);
    blueprint.title = check_blueprint_definition(&definition)?;
    blueprint.definition = definition;
    save(&state, &caller, blueprint).await
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let blueprint = load(&state, &caller, &identifier).await?;
    state
        .store()
        .delete_blueprint(&caller.org_id, &blueprint.identifier)
        .await?;
    Ok(Json(json!({ "ok": true })))
}
