//! The route table: one list of [`Endpoint`]s from which both the router and the
//! OpenAPI document are built, so the two cannot drift apart.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use port_core::id::BlueprintIdentifier;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(crate) mod actions;
pub(crate) mod auth;
pub(crate) mod blueprints;
pub(crate) mod deliveries;
pub(crate) mod entities;
pub(crate) mod organization;
pub(crate) mod runs;
pub(crate) mod secrets;
pub(crate) mod stream;
pub(crate) mod workflows;

/// An HTTP method of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// The lower-case name OpenAPI uses as the operation key.
    pub const fn openapi_key(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Patch => "patch",
            Self::Delete => "delete",
        }
    }
}

/// The type of a query parameter, for the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Boolean,
    Integer,
}

/// A documented query parameter, with the constraints the server checks (a value
/// outside them is 422 `invalid_request` naming `querystring.<name>`).
#[derive(Debug, Clone, Copy)]
pub struct QueryParam {
    pub name: &'static str,
    pub kind: ParamKind,
    /// May be given more than once (`?source=UI&source=API`).
    pub repeated: bool,
    /// Whether the route refuses a request without it.
    pub required: bool,
    /// The accepted values (of each occurrence when repeated); empty: any.
    pub values: &'static [&'static str],
    /// The smallest and largest accepted integer.
    pub minimum: Option<u64>,
    pub maximum: Option<u64>,
    /// The pattern a string value must match.
    pub pattern: Option<&'static str>,
    pub description: &'static str,
}

impl QueryParam {
    /// Only these values are accepted.
    pub const fn one_of(self, values: &'static [&'static str]) -> Self {
        Self { values, ..self }
    }

    /// An integer from `minimum` to `maximum`.
    pub const fn range(self, minimum: u64, maximum: u64) -> Self {
        Self {
            minimum: Some(minimum),
            maximum: Some(maximum),
            ..self
        }
    }

    /// A string matching `pattern`.
    pub const fn matching(self, pattern: &'static str) -> Self {
        Self {
            pattern: Some(pattern),
            ..self
        }
    }

    pub const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    /// Whether the server refuses some values (422): the document must say which.
    pub const fn is_validated(&self) -> bool {
        self.required
            || !self.values.is_empty()
            || self.minimum.is_some()
            || self.maximum.is_some()
            || self.pattern.is_some()
            || !matches!(self.kind, ParamKind::String)
    }
}

const fn param(name: &'static str, kind: ParamKind, description: &'static str) -> QueryParam {
    QueryParam {
        name,
        kind,
        repeated: false,
        required: false,
        values: &[],
        minimum: None,
        maximum: None,
        pattern: None,
        description,
    }
}

const fn repeated(name: &'static str, description: &'static str) -> QueryParam {
    QueryParam {
        repeated: true,
        ..param(name, ParamKind::String, description)
    }
}

/// Port's run id (`r_` and 16 alphanumerics).
pub const RUN_ID_PATTERN: &str = "^r_[A-Za-z0-9]{16}$";

/// One route: how it is served and how it is documented.
#[derive(Clone, Copy)]
pub struct Endpoint {
    pub method: HttpMethod,
    /// The path in axum's and OpenAPI's common syntax: `/v1/actions/{action_identifier}`.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Whether a bearer token is required.
    pub authenticated: bool,
    /// The success status.
    pub success: u16,
    /// The component schema of the request body, if the route takes one.
    pub body: Option<&'static str>,
    /// The component schema of the success body.
    pub response: &'static str,
    pub query: &'static [QueryParam],
    /// The error statuses the route answers besides the common ones (401, 404, 500; 413
    /// and 422 with a body; 422 with a validated query parameter), with why.
    pub errors: &'static [(u16, &'static str)],
    /// The handler, as a method router for this method only.
    pub route: fn() -> MethodRouter<AppState>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({} {})", self.method.as_str(), self.path)
    }
}

/// `{"ok": true, key: value}`.
pub(crate) fn ok(key: &str, value: Value) -> Json<Value> {
    let mut map = serde_json::Map::new();
    map.insert("ok".into(), Value::Bool(true));
    map.insert(key.into(), value);
    Json(Value::Object(map))
}

/// A blueprint identifier from a path; one that cannot exist is simply not found.
pub(crate) fn blueprint_identifier(raw: &str) -> ApiResult<BlueprintIdentifier> {
    BlueprintIdentifier::parse(raw).map_err(|_| ApiError::not_found(format!("blueprint {raw}")))
}

const VERSIONS: &[&str] = &["v1", "v2"];
const VERSION: QueryParam =
    param("version", ParamKind::String, "Response shape: v1 or v2.").one_of(VERSIONS);
const VERSION_V2: QueryParam = param(
    "version",
    ParamKind::String,
    "Response shape: v2 (default) or v1.",
)
.one_of(VERSIONS);
const RUN_ID: QueryParam = param(
    "run_id",
    ParamKind::String,
    "Bind the change to this run; it must be IN_PROGRESS (else 400 run_exhausted).",
)
.matching(RUN_ID_PATTERN);
const LOG_PAGE: &[QueryParam] = &[
    param("limit", ParamKind::Integer, "1 to 50, default 50.").range(1, 50),
    param("offset", ParamKind::Integer, "Lines to skip.").range(0, u32::MAX as u64),
];

/// Why an entity write bound to a run (`?run_id=`) is refused.
const RUN_ENDED_400: (u16, &str) = (
    400,
    "run_exhausted: the run named by run_id has ended and takes no more changes",
);
const TAKEN_409: (u16, &str) = (
    409,
    "identifier_taken: an object with this identifier already exists",
);
const HAS_DEPENDENTS_403: (u16, &str) = (
    403,
    "has_dependents: other entities relate to it (pass delete_dependents=true)",
);
const DESTINATION_403: (u16, &str) = (
    403,
    "private_destination / not_resolvable_destination: the webhook URL may not be called",
);

const TEMPLATES_BUSY_429: (u16, &str) = (
    429,
    "too_many_requests: the organization has as many template renders waiting as it may; retry after Retry-After seconds",
);
const NOT_APPROVER_403: (u16, &str) = (
    403,
    "missing_permissions: the caller is not an approver of the run",
);
/// A run that ended takes no more changes (the run's state, not the request's shape).
const RUN_ENDED_422: (u16, &str) = (422, "run_exhausted: the run has ended");
const NOT_WAITING_422: (u16, &str) = (
    422,
    "run_not_waiting_for_approval: the run is not waiting for approval",
);
/// A write to a run that kept losing the race with other writes.
const RUN_REFUSALS_409: (u16, &str) = (
    409,
    "conflict: the run changed too often at once; try again",
);
const CREATE_MISSING: QueryParam = param(
    "create_missing_related_entities",
    ParamKind::Boolean,
    "Create related entities that do not exist yet.",
);
const ENTITY_WRITE_FLAGS: &[QueryParam] = &[
    param(
        "upsert",
        ParamKind::Boolean,
        "Replace an existing entity instead of failing with 409.",
    ),
    param(
        "merge",
        ParamKind::Boolean,
        "With upsert: merge into the existing entity.",
    ),
    param(
        "validation_only",
        ParamKind::Boolean,
        "Validate only; store nothing.",
    ),
    CREATE_MISSING,
    RUN_ID,
];

/// `include` / `exclude` of entity answers, and Port's other projection flags (accepted;
/// portd keeps no calculated or mirror properties for them to change).
const ENTITY_PROJECTION: &[QueryParam] = &[
    repeated(
        "include",
        "Only these parts of each entity: dot paths into its JSON (`identifier`, `properties.language`, `relations.owner`); repeat the parameter for more (at most 100).",
    ),
    repeated(
        "exclude",
        "Leave these parts out (the same paths as `include`; at most 100).",
    ),
    param(
        "exclude_calculated_properties",
        ParamKind::Boolean,
        "Accepted; portd keeps no calculated properties.",
    ),
    param(
        "attach_title_to_relation",
        ParamKind::Boolean,
        "Accepted; changes nothing.",
    ),
    param(
        "attach_identifier_to_title_mirror_properties",
        ParamKind::Boolean,
        "Accepted; changes nothing.",
    ),
    param(
        "allow_partial_results",
        ParamKind::Boolean,
        "Accepted; a portd search never fails for one blueprint alone.",
    ),
];

/// Why a search is refused for its cost.
const SEARCH_TOO_BROAD_422: (u16, &str) = (
    422,
    "search_too_broad: the search would examine more of the catalog than one request may (10000 entities or 32 MiB); narrow it with $blueprint or $identifier rules",
);
const SEARCHES_BUSY_429: (u16, &str) = (
    429,
    "too_many_requests: the organization's searches kept every turn for 5 s; retry after Retry-After seconds",
);

/// Every route portd serves.
pub const ENDPOINTS: &[Endpoint] = &[
    // Operations.
    Endpoint {
        method: HttpMethod::Get,
        path: "/healthz",
        operation_id: "healthz",
        summary: "Liveness: the process answers",
        tag: "Operations",
        authenticated: false,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[],
        route: || get(healthz),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/readyz",
        operation_id: "readyz",
        summary: "Readiness: the database answers (503 otherwise)",
        tag: "Operations",
        authenticated: false,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[],
        route: || get(readyz),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/metrics",
        operation_id: "metrics",
        summary: "Prometheus metrics (text exposition format)",
        tag: "Operations",
        authenticated: false,
        success: 200,
        body: None,
        response: "PrometheusText",
        query: &[],
        errors: &[],
        route: || get(metrics),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/openapi.json",
        operation_id: "openapi",
        summary: "This OpenAPI document",
        tag: "Operations",
        authenticated: false,
        success: 200,
        body: None,
        response: "Object",
        query: &[],
        // Replaced by `app_with`, which knows the full route list.
        errors: &[],
        route: || get(|| async { Json(json!({})) }),
    },
    // Auth.
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/auth/access_token",
        operation_id: "getAccessToken",
        summary: "Trade a client id and secret for an access token (3 hours)",
        tag: "Auth",
        authenticated: false,
        success: 200,
        body: Some("AccessTokenRequest"),
        response: "AccessTokenResponse",
        query: &[],
        errors: &[(
            429,
            "Too many failed attempts for this client id or from this address (see Retry-After)",
        )],
        route: || post(auth::access_token),
    },
    // Blueprints.
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/blueprints",
        operation_id: "createBlueprint",
        summary: "Create a blueprint",
        tag: "Blueprints",
        authenticated: true,
        success: 201,
        body: Some("Blueprint"),
        response: "BlueprintResponse",
        query: &[],
        errors: &[TAKEN_409],
        route: || post(blueprints::create),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/blueprints",
        operation_id: "listBlueprints",
        summary: "List blueprints",
        tag: "Blueprints",
        authenticated: true,
        success: 200,
        body: None,
        response: "BlueprintsResponse",
        query: &[],
        errors: &[],
        route: || get(blueprints::list),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/blueprints/{blueprint_identifier}",
        operation_id: "getBlueprint",
        summary: "Get a blueprint",
        tag: "Blueprints",
        authenticated: true,
        success: 200,
        body: None,
        response: "BlueprintResponse",
        query: &[],
        errors: &[],
        route: || get(blueprints::get),
    },
    Endpoint {
        method: HttpMethod::Put,
        path: "/v1/blueprints/{blueprint_identifier}",
        operation_id: "replaceBlueprint",
        summary: "Replace a blueprint",
        tag: "Blueprints",
        authenticated: true,
        success: 200,
        body: Some("BlueprintReplaceRequest"),
        response: "BlueprintResponse",
        query: &[],
        errors: &[],
        route: || put(blueprints::replace),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/blueprints/{blueprint_identifier}",
        operation_id: "patchBlueprint",
        summary: "Change some keys of a blueprint (schema properties and relations merge)",
        tag: "Blueprints",
        authenticated: true,
        success: 200,
        body: Some("Object"),
        response: "BlueprintResponse",
        query: &[],
        errors: &[],
        route: || patch(blueprints::patch),
    },
    Endpoint {
        method: HttpMethod::Delete,
        path: "/v1/blueprints/{blueprint_identifier}",
        operation_id: "deleteBlueprint",
        summary: "Delete a blueprint with its entities and actions",
        tag: "Blueprints",
        authenticated: true,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[],
        route: || delete(blueprints::delete),
    },
    // Entities.
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/blueprints/{blueprint_identifier}/entities",
        operation_id: "createEntity",
        summary: "Create (or upsert) an entity; 201 when created, 200 when updated",
        tag: "Entities",
        authenticated: true,
        success: 201,
        body: Some("Entity"),
        response: "EntityResponse",
        query: ENTITY_WRITE_FLAGS,
        errors: &[RUN_ENDED_400, TAKEN_409],
        route: || post(entities::create),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/blueprints/{blueprint_identifier}/entities",
        operation_id: "listEntities",
        summary: "List a blueprint's entities",
        tag: "Entities",
        authenticated: true,
        success: 200,
        body: None,
        response: "EntitiesResponse",
        query: ENTITY_PROJECTION,
        errors: &[],
        route: || get(entities::list),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/blueprints/{blueprint_identifier}/entities/bulk",
        operation_id: "createEntities",
        summary: "Create up to 20 entities; 207 when some fail",
        tag: "Entities",
        authenticated: true,
        success: 200,
        body: Some("BulkEntitiesRequest"),
        response: "BulkEntitiesResponse",
        query: ENTITY_WRITE_FLAGS,
        errors: &[RUN_ENDED_400],
        route: || post(entities::bulk),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/blueprints/{blueprint_identifier}/entities/search",
        operation_id: "searchEntities",
        summary: "Search a blueprint's entities; page with `from` = the previous `next` (a page that examined as much as one request may ends early with its `next`)",
        tag: "Entities",
        authenticated: true,
        success: 200,
        body: Some("EntitySearchRequest"),
        response: "EntitiesResponse",
        query: &[],
        errors: &[SEARCHES_BUSY_429],
        route: || post(entities::search),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/entities/search",
        operation_id: "searchEntitiesAcrossBlueprints",
        summary: "Search the entities of every blueprint; the body is the query. Refused (422 search_too_broad) when it would examine more than one request may",
        tag: "Entities",
        authenticated: true,
        success: 200,
        body: Some("SearchQuery"),
        response: "EntitySearchResponse",
        query: ENTITY_PROJECTION,
        errors: &[SEARCH_TOO_BROAD_422, SEARCHES_BUSY_429],
        route: || post(entities::search_all),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/blueprints/{blueprint_identifier}/entities/{entity_identifier}",
        operation_id: "getEntity",
        summary: "Get an entity",
        tag: "Entities",
        authenticated: true,
        success: 200,
        body: None,
        response: "EntityResponse",
        query: ENTITY_PROJECTION,
        errors: &[],
        route: || get(entities::get),
    },
    Endpoint {
        method: HttpMethod::Put,
        path: "/v1/blueprints/{blueprint_identifier}/entities/{entity_identifier}",
        operation_id: "replaceEntity",
        summary: "Replace an entity",
        tag: "Entities",
        authenticated: true,
        success: 200,
        body: Some("Entity"),
        response: "EntityResponse",
        query: &[CREATE_MISSING, RUN_ID],
        errors: &[RUN_ENDED_400],
        route: || put(entities::replace),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/blueprints/{blueprint_identifier}/entities/{entity_identifier}",
        operation_id: "patchEntity",
        summary: "Change some keys of an entity (properties and relations merge)",
        tag: "Entities",
        authenticated: true,
        success: 200,
        body: Some("Entity"),
        response: "EntityResponse",
        query: &[CREATE_MISSING, RUN_ID],
        errors: &[RUN_ENDED_400],
        route: || patch(entities::patch),
    },
    Endpoint {
        method: HttpMethod::Delete,
        path: "/v1/blueprints/{blueprint_identifier}/entities/{entity_identifier}",
        operation_id: "deleteEntity",
        summary: "Delete an entity (403 has_dependents unless delete_dependents=true)",
        tag: "Entities",
        authenticated: true,
        success: 200,
        body: None,
        response: "Ok",
        query: &[
            param(
                "delete_dependents",
                ParamKind::Boolean,
                "Also delete the entities that relate to it.",
            ),
            RUN_ID,
        ],
        errors: &[RUN_ENDED_400, HAS_DEPENDENTS_403],
        route: || delete(entities::delete),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/audit-log",
        operation_id: "getAuditLog",
        summary: "Entity changes bound to a run",
        tag: "Audit",
        authenticated: true,
        success: 200,
        body: None,
        response: "AuditsResponse",
        query: &[param(
            "run_id",
            ParamKind::String,
            "The run whose entity changes to list.",
        )
        .matching(RUN_ID_PATTERN)
        .required()],
        errors: &[],
        route: || get(entities::audit_log),
    },
    // Actions (v2).
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/actions",
        operation_id: "createAction",
        summary: "Create an action or automation (v2 shape)",
        tag: "Actions",
        authenticated: true,
        success: 201,
        body: Some("Action"),
        response: "ActionResponse",
        query: &[],
        errors: &[TAKEN_409],
        route: || post(actions::create),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/actions",
        operation_id: "listActions",
        summary: "List actions and automations (filters are ANDed; repeated keys are alternatives)",
        tag: "Actions",
        authenticated: true,
        success: 200,
        body: None,
        response: "ActionsResponse",
        query: &[
            repeated("action_identifier", "Action identifiers."),
            repeated("blueprint_identifier", "Blueprint identifiers."),
            repeated("operation", "CREATE, DAY-2 or DELETE.")
                .one_of(&["CREATE", "DAY-2", "DELETE"]),
            param(
                "trigger_type",
                ParamKind::String,
                "self-service or automation.",
            )
            .one_of(&["self-service", "automation"]),
            repeated("trigger_event", "Automation event types."),
            param(
                "published",
                ParamKind::Boolean,
                "Published (true) or unpublished actions.",
            ),
            VERSION_V2,
        ],
        errors: &[],
        route: || get(actions::list),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/actions/{action_identifier}",
        operation_id: "getAction",
        summary: "Get an action",
        tag: "Actions",
        authenticated: true,
        success: 200,
        body: None,
        response: "ActionResponse",
        query: &[VERSION_V2],
        errors: &[],
        route: || get(actions::get),
    },
    Endpoint {
        method: HttpMethod::Put,
        path: "/v1/actions/{action_identifier}",
        operation_id: "replaceAction",
        summary: "Replace an action",
        tag: "Actions",
        authenticated: true,
        success: 200,
        body: Some("Action"),
        response: "ActionResponse",
        query: &[],
        errors: &[],
        route: || put(actions::replace),
    },
    Endpoint {
        method: HttpMethod::Delete,
        path: "/v1/actions/{action_identifier}",
        operation_id: "deleteAction",
        summary: "Delete an action",
        tag: "Actions",
        authenticated: true,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[],
        route: || delete(actions::delete),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/actions/{action_identifier}/runs",
        operation_id: "executeAction",
        summary: "Execute an action; an Idempotency-Key header returns the same run for 24 hours",
        tag: "Action Runs",
        authenticated: true,
        success: 202,
        body: Some("ExecuteRequest"),
        response: "RunResponse",
        query: &[param(
            "run_as",
            ParamKind::String,
            "Accepted and ignored: portd has no users.",
        )],
        errors: &[DESTINATION_403, TEMPLATES_BUSY_429],
        route: || post(runs::execute),
    },
    // Actions (legacy v1, blueprint-scoped).
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/blueprints/{blueprint_identifier}/actions",
        operation_id: "createBlueprintActions",
        summary: "Legacy: create one v1 action or an array of them",
        tag: "Actions (legacy)",
        authenticated: true,
        success: 201,
        body: Some("LegacyActionOrActions"),
        response: "LegacyActionsCreatedResponse",
        query: &[],
        errors: &[TAKEN_409],
        route: || post(actions::create_v1),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/blueprints/{blueprint_identifier}/actions",
        operation_id: "listBlueprintActions",
        summary: "Legacy: a blueprint's actions (v1 shape)",
        tag: "Actions (legacy)",
        authenticated: true,
        success: 200,
        body: None,
        response: "LegacyActionsResponse",
        query: &[],
        errors: &[],
        route: || get(actions::list_v1),
    },
    Endpoint {
        method: HttpMethod::Put,
        path: "/v1/blueprints/{blueprint_identifier}/actions",
        operation_id: "replaceBlueprintActions",
        summary: "Legacy: replace a blueprint's whole array of actions",
        tag: "Actions (legacy)",
        authenticated: true,
        success: 200,
        body: Some("LegacyActionsRequest"),
        response: "LegacyActionsResponse",
        query: &[],
        errors: &[TAKEN_409],
        route: || put(actions::replace_all_v1),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/blueprints/{blueprint_identifier}/actions/{action_identifier}",
        operation_id: "getBlueprintAction",
        summary: "Legacy: get an action (v1 shape)",
        tag: "Actions (legacy)",
        authenticated: true,
        success: 200,
        body: None,
        response: "LegacyActionResponse",
        query: &[],
        errors: &[],
        route: || get(actions::get_v1),
    },
    Endpoint {
        method: HttpMethod::Put,
        path: "/v1/blueprints/{blueprint_identifier}/actions/{action_identifier}",
        operation_id: "replaceBlueprintAction",
        summary: "Legacy: replace an action (v1 shape)",
        tag: "Actions (legacy)",
        authenticated: true,
        success: 200,
        body: Some("LegacyActionRequest"),
        response: "LegacyActionResponse",
        query: &[],
        errors: &[],
        route: || put(actions::replace_v1),
    },
    Endpoint {
        method: HttpMethod::Delete,
        path: "/v1/blueprints/{blueprint_identifier}/actions/{action_identifier}",
        operation_id: "deleteBlueprintAction",
        summary: "Legacy: delete an action",
        tag: "Actions (legacy)",
        authenticated: true,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[],
        route: || delete(actions::delete_v1),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/blueprints/{blueprint_identifier}/actions/{action_identifier}/runs",
        operation_id: "executeBlueprintAction",
        summary: "Legacy: execute an action (answered like the current route)",
        tag: "Actions (legacy)",
        authenticated: true,
        success: 202,
        body: Some("ExecuteRequest"),
        response: "RunResponse",
        query: &[],
        errors: &[DESTINATION_403],
        route: || post(runs::execute_v1),
    },
    // Runs.
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/actions/runs",
        operation_id: "listRuns",
        summary: "List runs, newest first; when `next` is present, pass it as `before` for the next page",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: None,
        response: "RunsResponse",
        query: &[
            param("entity", ParamKind::String, "Runs on this entity."),
            param("blueprint", ParamKind::String, "Runs of this blueprint."),
            param("action", ParamKind::String, "Runs of this action."),
            param(
                "active",
                ParamKind::Boolean,
                "Only runs still running (true) or only ended runs (false).",
            ),
            param(
                "status",
                ParamKind::String,
                "Only runs with this status (portd extension).",
            )
            .one_of(&[
                "IN_PROGRESS",
                "SUCCESS",
                "FAILURE",
                "WAITING_FOR_APPROVAL",
                "DECLINED",
            ]),
            param(
                "user_email",
                ParamKind::String,
                "Runs created by this user.",
            ),
            param(
                "user_id",
                ParamKind::String,
                "Runs created by this user (or client id).",
            ),
            repeated("source", "UI, API or AUTOMATION.").one_of(&["UI", "API", "AUTOMATION"]),
            param(
                "external_run_id",
                ParamKind::String,
                "Runs with this externalRunId.",
            ),
            param("limit", ParamKind::Integer, "1 to 1000, default 100.").range(1, 1000),
            param(
                "before",
                ParamKind::String,
                "Cursor (portd extension): the `next` of the previous page.",
            )
            .matching(RUN_ID_PATTERN),
            VERSION,
        ],
        errors: &[],
        route: || get(runs::list),
    },
    // Runners that pull runs (Port's agent, Ocean, portd's own). Static paths: they win
    // over `{run_id}`.
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/actions/runs/claim-pending",
        operation_id: "claimPendingRuns",
        summary: "Runners: lease up to `limit` runs waiting for a runner (at most 100 at once) for `visibilityTimeoutMs`; unacknowledged claims are handed out again once it passes. installationId `_PORT_EXEC_AGENT` (Port's agent) takes unbound WEBHOOK runs, another installation the runs bound to it (INTEGRATION_ACTION's installationId), none every unbound run; `exclude` leaves those actions' runs for later. The header `x-port-reserved-usage` is accepted and changes nothing",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: Some("ClaimRequest"),
        response: "ClaimResponse",
        query: &[],
        errors: &[],
        route: || post(deliveries::claim_pending),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/actions/runs/ack",
        operation_id: "ackRuns",
        summary: "Runners: acknowledge claimed runs so they are never handed out again: `runIds` answers how many were newly acknowledged, `runId` (one run) answers 409 when it was already acknowledged",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: Some("AckRequest"),
        response: "AckResponse",
        query: &[],
        errors: &[(
            409,
            "conflict: (runId) the run was already acknowledged, or is not a runner's",
        )],
        route: || patch(deliveries::ack),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/actions/runs/{run_id}",
        operation_id: "getRun",
        summary: "Get a run (v1 shape unless version=v2)",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: None,
        response: "RunResponse",
        query: &[VERSION],
        errors: &[],
        route: || get(runs::get),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/actions/runs/{run_id}",
        operation_id: "patchRun",
        summary: "Update a run: status, statusLabel, link, summary, externalRunId, message",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: Some("RunPatch"),
        response: "RunResponse",
        query: &[VERSION],
        errors: &[RUN_ENDED_422, RUN_REFUSALS_409],
        route: || patch(runs::patch),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/actions/runs/{run_id}/approval",
        operation_id: "approveRun",
        summary: "Approve or decline a run waiting for approval",
        tag: "Action Runs",
        authenticated: true,
        success: 201,
        body: Some("ApprovalRequest"),
        response: "RunResponse",
        query: &[VERSION_V2],
        errors: &[NOT_APPROVER_403, NOT_WAITING_422, RUN_REFUSALS_409],
        route: || patch(runs::approval),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/actions/runs/{run_id}/response",
        operation_id: "reportRunResponse",
        summary: "Runners: store what the run's backend answered as the run's `response` (Port's agent, on synchronized runs); the status is left alone",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: Some("RunResponseRequest"),
        response: "RunResponse",
        query: &[VERSION_V2],
        errors: &[
            (
                422,
                "run_exhausted: the run has ended (unless the same response is sent again); invalid_request: it waits for approval",
            ),
            RUN_REFUSALS_409,
        ],
        route: || patch(runs::report_response),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/actions/runs/{run_id}/approvers",
        operation_id: "getRunApprovers",
        summary: "A run's approvers and their decisions",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: None,
        response: "ApproversResponse",
        query: &[param(
            "include_pending_approvers",
            ParamKind::Boolean,
            "Also list designated approvers who have not decided.",
        )],
        errors: &[],
        route: || get(runs::approvers),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/actions/runs/{run_id}/logs",
        operation_id: "addRunLog",
        summary: "Add a log line; terminationStatus also ends the run (once)",
        tag: "Action Runs",
        authenticated: true,
        success: 201,
        body: Some("RunLogRequest"),
        response: "RunLogResponse",
        query: &[],
        errors: &[RUN_ENDED_422, RUN_REFUSALS_409],
        route: || post(runs::add_log),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/actions/runs/{run_id}/logs",
        operation_id: "listRunLogs",
        summary: "A run's log lines, oldest first",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: None,
        response: "RunLogsResponse",
        query: LOG_PAGE,
        errors: &[],
        route: || get(runs::list_logs),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/actions/runs/{run_id}/logs/stream",
        operation_id: "streamRunLogs",
        summary: "portd: the run's log as server-sent events: `log` (id = line sequence; resume with Last-Event-ID), `status` (the v2 run), and `end` when the run has ended",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: None,
        response: "EventStream",
        query: &[],
        errors: &[(
            429,
            "too_many_requests: the organization holds PORTD_MAX_STREAMS_PER_ORG streams open already (Retry-After)",
        )],
        route: || get(stream::stream_logs),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/actions/runs/{run_id}/deliveries",
        operation_id: "listRunDeliveries",
        summary: "portd: how the run's invocation reached its backend: deliveries, oldest first, with their attempts",
        tag: "Deliveries",
        authenticated: true,
        success: 200,
        body: None,
        response: "DeliveriesResponse",
        query: &[],
        errors: &[],
        route: || get(deliveries::list),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/actions/runs/{run_id}/deliveries/redeliver",
        operation_id: "redeliverRun",
        summary: "portd: send the run's latest delivery again now, with the same webhook-id (422 run_exhausted once the run has ended)",
        tag: "Deliveries",
        authenticated: true,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[(
            422,
            "run_exhausted: the run has ended; invalid_request: it waits for approval",
        )],
        route: || post(deliveries::redeliver),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/actions/runs/{run_id}/heartbeat",
        operation_id: "heartbeatRun",
        summary: "portd, runners: extend the live claim on a run to now + visibilityTimeoutMs (default 60000; the body is optional); 404 without a live claim",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: Some("HeartbeatRequest"),
        response: "HeartbeatResponse",
        query: &[],
        errors: &[],
        route: || post(deliveries::heartbeat),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/actions/runs/{run_id}/logging",
        operation_id: "listRunLogging",
        summary: "The same as …/logs, under the name Port's tutorial uses",
        tag: "Action Runs",
        authenticated: true,
        success: 200,
        body: None,
        response: "RunLogsResponse",
        query: LOG_PAGE,
        errors: &[],
        route: || get(runs::list_logs),
    },
    // Workflow node runs: polled by Port's agent and Ocean, which portd has none of yet.
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/workflows/runs/claim-pending",
        operation_id: "claimPendingNodeRuns",
        summary: "Port's agent and Ocean: claim workflow node runs; portd has no workflow runs yet, so there are none",
        tag: "Workflows",
        authenticated: true,
        success: 200,
        body: Some("NodeClaimRequest"),
        response: "NodeRunsResponse",
        query: &[],
        errors: &[],
        route: || post(workflows::claim_pending),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/workflows/nodes/runs",
        operation_id: "listNodeRuns",
        summary: "Ocean: find workflow node runs by external id; portd has no workflow runs yet, so there are none",
        tag: "Workflows",
        authenticated: true,
        success: 200,
        body: None,
        response: "NodeRunsResponse",
        query: &[
            param(
                "external_run_id",
                ParamKind::String,
                "Node runs with this external run id.",
            ),
            repeated("include", "Parts to include (Ocean asks for nodeConfig)."),
        ],
        errors: &[],
        route: || get(workflows::list_node_runs),
    },
    // Organization.
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/organization",
        operation_id: "getOrganization",
        summary: "The caller's organization: id, name, settings and feature flags (none)",
        tag: "Organization",
        authenticated: true,
        success: 200,
        body: None,
        response: "OrganizationResponse",
        query: &[],
        errors: &[],
        route: || get(organization::get),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/organization",
        operation_id: "patchOrganization",
        summary: "Rename the organization and/or merge keys into its settings (64 KiB of JSON at most); unlike Port, `name` is optional, as Port's agent sends settings alone",
        tag: "Organization",
        authenticated: true,
        success: 200,
        body: Some("OrganizationPatch"),
        response: "Ok",
        query: &[],
        errors: &[],
        route: || patch(organization::patch),
    },
    // Organization secrets.
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/organization/secrets",
        operation_id: "listOrganizationSecrets",
        summary: "The organization's secrets: names, descriptions and dates, never values",
        tag: "Organization",
        authenticated: true,
        success: 200,
        body: None,
        response: "SecretsResponse",
        query: &[],
        errors: &[],
        route: || get(secrets::list),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/organization/secrets",
        operation_id: "createOrganizationSecret",
        summary: "Create a secret that invocation templates read as `{{ .secrets.NAME }}` when a run is sent (500 per organization, 65 536 characters per value, 1 MiB of values in all)",
        tag: "Organization",
        authenticated: true,
        success: 201,
        body: Some("SecretCreateRequest"),
        response: "SecretResponse",
        query: &[],
        errors: &[TAKEN_409],
        route: || post(secrets::create),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/organization/secrets/{secret_name}",
        operation_id: "getOrganizationSecret",
        summary: "A secret's name, description and dates, never its value",
        tag: "Organization",
        authenticated: true,
        success: 200,
        body: None,
        response: "SecretResponse",
        query: &[],
        errors: &[],
        route: || get(secrets::get),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/organization/secrets/{secret_name}",
        operation_id: "patchOrganizationSecret",
        summary: "Replace a secret's value and/or description; invocations sent from now on use the new value",
        tag: "Organization",
        authenticated: true,
        success: 200,
        body: Some("SecretPatch"),
        response: "SecretResponse",
        query: &[],
        errors: &[],
        route: || patch(secrets::patch),
    },
    Endpoint {
        method: HttpMethod::Delete,
        path: "/v1/organization/secrets/{secret_name}",
        operation_id: "deleteOrganizationSecret",
        summary: "Delete a secret",
        tag: "Organization",
        authenticated: true,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[],
        route: || delete(secrets::delete),
    },
    // Integrations (Ocean).
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/integration/provision-enabled",
        operation_id: "getProvisionEnabledIntegrations",
        summary: "Ocean: the integration types Port provisions defaults for; none in portd",
        tag: "Integrations",
        authenticated: true,
        success: 200,
        body: None,
        response: "ProvisionEnabledResponse",
        query: &[],
        errors: &[],
        route: || get(organization::provision_enabled),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/integration",
        operation_id: "createIntegration",
        summary: "Ocean: create an integration; every key but installationId is kept as sent (256 KiB of JSON, 100 integrations per organization at most)",
        tag: "Integrations",
        authenticated: true,
        success: 201,
        body: Some("IntegrationCreateRequest"),
        response: "IntegrationResponse",
        query: &[repeated(
            "integration_modes",
            "Accepted and ignored: portd creates no resources for integrations.",
        )],
        errors: &[TAKEN_409],
        route: || post(organization::create_integration),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/integration/{identifier}",
        operation_id: "getIntegration",
        summary: "Ocean: get an integration",
        tag: "Integrations",
        authenticated: true,
        success: 200,
        body: None,
        response: "IntegrationResponse",
        query: &[
            param(
                "byField",
                ParamKind::String,
                "installationId (the default); logIngestId finds nothing in portd.",
            )
            .one_of(&["installationId", "logIngestId"]),
            param(
                "oceanCoreVersion",
                ParamKind::String,
                "Accepted and ignored.",
            ),
            param("isPolling", ParamKind::String, "Accepted and ignored."),
        ],
        errors: &[],
        route: || get(organization::get_integration),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/integration/{identifier}",
        operation_id: "patchIntegration",
        summary: "Ocean: replace the keys given (`config` as a whole), keep the others",
        tag: "Integrations",
        authenticated: true,
        success: 200,
        body: Some("IntegrationPatch"),
        response: "IntegrationResponse",
        query: &[],
        errors: &[],
        route: || patch(organization::patch_integration),
    },
    Endpoint {
        method: HttpMethod::Delete,
        path: "/v1/integration/{identifier}",
        operation_id: "deleteIntegration",
        summary: "Delete an integration",
        tag: "Integrations",
        authenticated: true,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[],
        route: || delete(organization::delete_integration),
    },
    Endpoint {
        method: HttpMethod::Patch,
        path: "/v1/integration/{identifier}/config",
        operation_id: "patchIntegrationConfig",
        summary: "Ocean: replace an integration's config",
        tag: "Integrations",
        authenticated: true,
        success: 200,
        body: Some("IntegrationConfigRequest"),
        response: "IntegrationResponse",
        query: &[],
        errors: &[],
        route: || patch(organization::patch_integration_config),
    },
];

async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.health().ping().await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "readiness check failed");
            ApiError::new(
                port_core::ErrorKind::ServiceUnavailable,
                "the database is not reachable",
            )
            .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// Unknown routes: 404 in Port's envelope.
pub(crate) async fn route_not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("route {method} {}", uri.path()))
}

/// Known routes asked with another method: 405 in Port's envelope.
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    let body = json!({
        "ok": false,
        "error": "method_not_allowed",
        "message": format!("method {method} is not allowed on {}", uri.path()),
    });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}
