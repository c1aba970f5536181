//! The caller's organization (`/v1/organization`) and Ocean's integrations
//! (`/v1/integration…`): what Port's agent and Ocean call at start-up. Each route parses,
//! calls one service and renders.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use port_core::integration::OrganizationPatch;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authenticated, QueryParams, present};
use crate::state::AppState;

/// `GET /v1/organization` → `{ok, organization: {id, name, settings, featureFlags,
/// createdAt}}`. portd turns no feature flag on.
pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Value>> {
    Ok(ok(
        "organization",
        state.services().organization(&caller).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrganizationBody {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    settings: Option<Map<String, Value>>,
}

/// `PATCH /v1/organization` `{name?, settings?}` → `{ok}`: renames the organization
/// and merges `settings` key by key into its own. Port's schema requires `name`; Port's
/// agent sends `{"settings": {"portAgentStreamerName": "POLLING"}}` alone at start-up,
/// so neither is required here.
pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<OrganizationBody>,
) -> ApiResult<Json<Value>> {
    let patch = OrganizationPatch {
        name: body.name,
        settings: body.settings,
    };
    state
        .services()
        .update_organization(&caller, &patch)
        .await?;
    Ok(Json(json!({ "ok": true })))
}

/// `GET /v1/integration/provision-enabled` → `{ok, integrations: []}`: the integration
/// types Port would provision defaults for; portd provisions none, so Ocean sets up its
/// own (or nothing, with `OCEAN__INITIALIZE_PORT_RESOURCES=false`).
pub(crate) async fn provision_enabled(Authenticated(_): Authenticated) -> Json<Value> {
    ok("integrations", json!([]))
}

/// `GET /v1/integration/{identifier}` → `{ok, integration}`; Ocean's `oceanCoreVersion`
/// and `isPolling` are ignored. `byField=logIngestId` finds nothing: portd ingests no
/// logs.
pub(crate) async fn get_integration(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    match query.first("byField") {
        None | Some("installationId") => {}
        Some("logIngestId") => {
            return Err(ApiError::not_found(format!(
                "an integration with log ingest id {identifier}"
            )));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "querystring.byField: must be one of installationId, logIngestId",
            ));
        }
    }
    let integration = state
        .services()
        .get_integration(&caller, &identifier)
        .await?;
    Ok(ok("integration", integration.to_json()))
}

/// `POST /v1/integration` `{installationId, …}` → 201 `{ok, integration}`: every other
/// key (`config`, `installationAppType`, `version`, …) is kept as sent. 409
/// `identifier_taken` when it exists. Ocean's `integration_modes` query is ignored.
pub(crate) async fn create_integration(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let integration = state.services().create_integration(&caller, body).await?;
    Ok((
        StatusCode::CREATED,
        ok("integration", integration.to_json()),
    ))
}

/// `PATCH /v1/integration/{identifier}` → `{ok, integration}`: present keys replace
/// the stored ones (`config` as a whole).
pub(crate) async fn patch_integration(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let integration = state
        .services()
        .patch_integration(&caller, &identifier, body)
        .await?;
    Ok(ok("integration", integration.to_json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigBody {
    config: Map<String, Value>,
}

/// `PATCH /v1/integration/{identifier}/config` `{config}` → `{ok, integration}`.
pub(crate) async fn patch_integration_config(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
    ApiJson(body): ApiJson<ConfigBody>,
) -> ApiResult<Json<Value>> {
    let mut patch = Map::new();
    patch.insert("config".into(), Value::Object(body.config));
    let integration = state
        .services()
        .patch_integration(&caller, &identifier, patch)
        .await?;
    Ok(ok("integration", integration.to_json()))
}

/// `DELETE /v1/integration/{identifier}` → `{ok}`.
pub(crate) async fn delete_integration(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(identifier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    state
        .services()
        .delete_integration(&caller, &identifier)
        .await?;
    Ok(Json(json!({ "ok": true })))
}
