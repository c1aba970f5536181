//! The route table's catalog: blueprints and their entities, with entity search.

use axum::routing::{delete, get, patch, post, put};

use super::TAKEN_409;
use crate::routes::endpoint::{
    Endpoint, HttpMethod, ParamKind, QueryParam, RUN_ID_PATTERN, param, repeated,
};
use crate::routes::{blueprints, entities};

const RUN_ID: QueryParam = param(
    "run_id",
    ParamKind::String,
    "Bind the change to this run; it must be IN_PROGRESS (else 400 run_exhausted).",
)
.matching(RUN_ID_PATTERN);

/// Why an entity write bound to a run (`?run_id=`) is refused.
const RUN_ENDED_400: (u16, &str) = (
    400,
    "run_exhausted: the run named by run_id has ended and takes no more changes",
);

const HAS_DEPENDENTS_403: (u16, &str) = (
    403,
    "has_dependents: other entities relate to it (pass delete_dependents=true)",
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

pub(super) const CATALOG: &[Endpoint] = &[
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
];
