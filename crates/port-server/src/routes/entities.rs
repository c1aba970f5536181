//! Entities: `/v1/blueprints/{blueprint}/entities…` (port-api.md §3.3), with changes
//! bound to a run through `run_id` (§3.4), and `GET /v1/audit-log?run_id=`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use port_core::ErrorKind;
use port_core::catalog::{
    AffectedEntity, Blueprint, Entity, EntityOperation, PathStyle, Projection, Stamp,
};
use port_core::catalog_rules::{EntityBody, check_entity, parse_entity_body};
use port_core::error::StoreError;
use port_core::id::{BlueprintIdentifier, EntityIdentifier, GeneratedEntityId};
use port_core::ports::{EntityDeletion, EntityKey, EntityWriteMode};
use port_core::run::Run;
use port_core::search::{
    EntityQuery, Matcher, Scope, SearchLimits, SearchPage, SearchRequest, search as run_search,
    too_broad,
};
use port_core::service::Caller;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{blueprints, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authenticated, QueryParams, present, present_whole};
use crate::search_gate::SEARCH_QUEUE_WAIT;
use crate::state::AppState;

/// Most entities one bulk request may carry.
const MAX_BULK_ENTITIES: usize = 20;

/// Most entities a delete with `delete_dependents` removes, so one call stays bounded.
const MAX_CASCADE: usize = 1000;

/// How a write treats an existing entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    /// `POST`: create, or with `upsert` replace (or with `merge` merge) an existing one.
    Create { upsert: bool, merge: bool },
    /// `PUT`: replace an existing entity.
    Replace,
    /// `PATCH`: merge into an existing entity.
    Merge,
}

/// The query flags of entity writes.
#[derive(Debug, Clone)]
struct WriteOptions {
    kind: WriteKind,
    validation_only: bool,
    create_missing_related: bool,
    /// The run the change is bound to (checked `IN_PROGRESS`).
    run: Option<Run>,
}

fn entity_not_found(blueprint: &Blueprint, identifier: &str) -> ApiError {
    ApiError::not_found(format!(
        "entity {identifier} of blueprint {}",
        blueprint.identifier
    ))
}

fn parse_identifier(identifier: &str) -> Option<EntityIdentifier> {
    EntityIdentifier::parse(identifier).ok()
}

/// Reads `run_id` and checks the run may take changes (400 `run_exhausted` otherwise).
async fn bound_run(
    state: &AppState,
    caller: &Caller,
    query: &QueryParams,
) -> ApiResult<Option<Run>> {
    match query.first("run_id") {
        Some(run_id) => Ok(Some(state.services().bindable_run(caller, run_id).await?)),
        None => Ok(None),
    }
}

async fn options(
    state: &AppState,
    caller: &Caller,
    query: &QueryParams,
    kind: WriteKind,
) -> ApiResult<WriteOptions> {
    Ok(WriteOptions {
        kind,
        validation_only: query.flag_or("validation_only", false)?,
        create_missing_related: query.flag_or("create_missing_related_entities", false)?,
        run: bound_run(state, caller, query).await?,
    })
}

fn create_kind(query: &QueryParams) -> ApiResult<WriteKind> {
    Ok(WriteKind::Create {
        upsert: query.flag_or("upsert", false)?,
        merge: query.flag_or("merge", false)?,
    })
}

/// Writes one entity as the options say; returns it and whether it was created.
async fn write_entity(
    state: &AppState,
    caller: &Caller,
    blueprint: &Blueprint,
    body: EntityBody,
    path_identifier: Option<&str>,
    options: &WriteOptions,
) -> ApiResult<(Entity, bool)> {
    let org = &caller.org_id;
    let identifier = match (path_identifier, &body.identifier) {
        (Some(path), Some(given)) if given.as_str() != path => {
            return Err(ApiError::invalid(format!(
                "identifier: must be {path}, the identifier in the path"
            )));
        }
        (Some(path), _) => {
            parse_identifier(path).ok_or_else(|| entity_not_found(blueprint, path))?
        }
        (None, Some(given)) => given.clone(),
        (None, None) => EntityIdentifier::from(state.ids().next::<GeneratedEntityId>()),
    };
    let existing = state
        .store()
        .get_entity(org, &blueprint.identifier, &identifier)
        .await?;
    let now = state.clock().now();
    let user = caller.user_id().to_owned();
    let mut entity = Entity {
        org_id: org.clone(),
        blueprint: blueprint.identifier.clone(),
        identifier: identifier.clone(),
        title: None,
        icon: None,
        team: None,
        properties: Map::new(),
        relations: Map::new(),
        stamp: Stamp {
            created_at: now,
            created_by: user.clone(),
            updated_at: now,
            updated_by: user.clone(),
        },
    };
    let merge = match (options.kind, &existing) {
        (WriteKind::Create { upsert: false, .. }, Some(_)) => {
            return Err(ApiError::new(
                ErrorKind::IdentifierTaken,
                format!(
                    "entity {identifier} of blueprint {} already exists",
                    blueprint.identifier
                ),
            ));
        }
        (WriteKind::Replace | WriteKind::Merge, None) => {
            return Err(entity_not_found(blueprint, identifier.as_str()));
        }
        (WriteKind::Create { merge, .. }, _) => merge,
        (WriteKind::Replace, _) => false,
        (WriteKind::Merge, _) => true,
    };
    if let Some(existing) = &existing {
        entity.stamp.created_at = existing.stamp.created_at;
        entity.stamp.created_by = existing.stamp.created_by.clone();
        if merge {
            entity.title = existing.title.clone();
            entity.icon = existing.icon.clone();
            entity.team = existing.team.clone();
            entity.properties = existing.properties.clone();
            entity.relations = existing.relations.clone();
        }
    }
    if merge {
        body.merge_into(&mut entity);
    } else {
        body.replace_into(&mut entity);
    }

    let targets = check_entity(blueprint, &entity)?;
    let created = existing.is_none();
    if options.validation_only {
        for target in &targets {
            if !options.create_missing_related
                && state
                    .store()
                    .get_entity(org, &target.blueprint, &target.identifier)
                    .await?
                    .is_none()
            {
                return Err(related_not_found(target));
            }
        }
        return Ok((entity, created));
    }
    for target in &targets {
        if state
            .store()
            .get_entity(org, &target.blueprint, &target.identifier)
            .await?
            .is_some()
        {
            continue;
        }
        if !options.create_missing_related {
            return Err(related_not_found(target));
        }
        create_stub(state, caller, target).await?;
    }

    let affected = options.run.as_ref().map(|run| {
        let operation = if created {
            EntityOperation::Create
        } else {
            EntityOperation::Update
        };
        state.services().affected(caller, run, &entity, operation)
    });
    let mode = if created && matches!(options.kind, WriteKind::Create { upsert: false, .. }) {
        EntityWriteMode::CreateOnly
    } else {
        EntityWriteMode::Upsert
    };
    let created = state
        .store()
        .put_entity(&entity, mode, affected.as_ref())
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists(_) => ApiError::new(
                ErrorKind::IdentifierTaken,
                format!(
                    "entity {identifier} of blueprint {} already exists",
                    blueprint.identifier
                ),
            ),
            other => other.into(),
        })
        .map_err(|e| ApiError(e.0.on_entity_route()))?;
    Ok((entity, created))
}

fn related_not_found(target: &port_core::catalog_rules::RelationTarget) -> ApiError {
    ApiError::not_found(format!(
        "related entity {} of blueprint {} (relation {})",
        target.identifier, target.blueprint, target.relation
    ))
}

/// `create_missing_related_entities`: a related entity that does not exist is created
/// empty (its blueprint must exist).
async fn create_stub(
    state: &AppState,
    caller: &Caller,
    target: &port_core::catalog_rules::RelationTarget,
) -> ApiResult<()> {
    let org = &caller.org_id;
    if state
        .store()
        .get_blueprint(org, &target.blueprint)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "blueprint {} (target of relation {})",
            target.blueprint, target.relation
        )));
    }
    let now = state.clock().now();
    let stub = Entity {
        org_id: org.clone(),
        blueprint: target.blueprint.clone(),
        identifier: target.identifier.clone(),
        title: None,
        icon: None,
        team: None,
        properties: Map::new(),
        relations: Map::new(),
        stamp: Stamp {
            created_at: now,
            created_by: caller.user_id().to_owned(),
            updated_at: now,
            updated_by: caller.user_id().to_owned(),
        },
    };
    match state
        .store()
        .put_entity(&stub, EntityWriteMode::CreateOnly, None)
        .await
    {
        // Someone else created it meanwhile: that is what was wanted.
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

fn entity_response(status_created: bool, entity: &Entity) -> (StatusCode, Json<Value>) {
    let status = if status_created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, ok("entity", entity.to_json()))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    query: QueryParams,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let options = options(&state, &caller, &query, create_kind(&query)?).await?;
    let body = parse_entity_body(&body, &blueprint.identifier)?;
    let (entity, created) = write_entity(&state, &caller, &blueprint, body, None, &options).await?;
    Ok(entity_response(
        created && !options.validation_only,
        &entity,
    ))
}

pub(crate) async fn replace(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
    query: QueryParams,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let options = options(&state, &caller, &query, WriteKind::Replace).await?;
    let body = parse_entity_body(&body, &blueprint.identifier)?;
    let (entity, _) = write_entity(
        &state,
        &caller,
        &blueprint,
        body,
        Some(&identifier),
        &options,
    )
    .await?;
    Ok(ok("entity", entity.to_json()))
}

pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
    query: QueryParams,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let options = options(&state, &caller, &query, WriteKind::Merge).await?;
    let body = parse_entity_body(&body, &blueprint.identifier)?;
    let (entity, _) = write_entity(
        &state,
        &caller,
        &blueprint,
        body,
        Some(&identifier),
        &options,
    )
    .await?;
    Ok(ok("entity", entity.to_json()))
}

/// The `include` / `exclude` query parameters (repeated, or `include[]`), as paths
/// into the entity's JSON. The other projection flags Port documents
/// (`exclude_calculated_properties`, `attach_title_to_relation`,
/// `attach_identifier_to_title_mirror_properties`, `allow_partial_results`) change
/// nothing here, as portd keeps no calculated or mirror properties; they must still be
/// booleans.
fn query_projection(query: &QueryParams) -> ApiResult<Projection> {
    for flag in PROJECTION_FLAGS {
        query.flag(flag)?;
    }
    let list =
        |name: &str| -> Vec<String> { query.all(name).into_iter().map(str::to_owned).collect() };
    Ok(Projection::parse(
        &list("include"),
        &list("exclude"),
        PathStyle::EntityJson,
    )?)
}

/// Port's projection flags that portd accepts and has no use for.
pub(crate) const PROJECTION_FLAGS: [&str; 4] = [
    "exclude_calculated_properties",
    "attach_title_to_relation",
    "attach_identifier_to_title_mirror_properties",
    "allow_partial_results",
];

pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let projection = query_projection(&query)?;
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let id =
        parse_identifier(&identifier).ok_or_else(|| entity_not_found(&blueprint, &identifier))?;
    let entity = state
        .store()
        .get_entity(&caller.org_id, &blueprint.identifier, &id)
        .await?
        .ok_or_else(|| entity_not_found(&blueprint, &identifier))?;
    Ok(ok("entity", projection.apply(entity.to_json())))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let projection = query_projection(&query)?;
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    // Paged and bounded: a blueprint too large to list in one answer is refused
    // (search pages through it) instead of loaded whole.
    let mut entities = Vec::new();
    port_core::search::scan_within(
        state.store().as_ref(),
        &caller.org_id,
        BTreeSet::from([blueprint.identifier.clone()]),
        &SearchLimits::default(),
        |entity| entities.push(projection.apply(entity.to_json())),
    )
    .await?;
    Ok(ok("entities", Value::Array(entities)))
}

/// Entities of other blueprints whose relations point at `entity`.
async fn dependents_of(
    state: &AppState,
    caller: &Caller,
    entity: &Entity,
) -> ApiResult<Vec<Entity>> {
    let org = &caller.org_id;
    // Which relation keys of which blueprints point at the entity's blueprint.
    let mut keys_of: BTreeMap<BlueprintIdentifier, Vec<String>> = BTreeMap::new();
    for blueprint in state.store().list_blueprints(org).await? {
        let keys: Vec<String> = blueprint
            .definition
            .get("relations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, r)| {
                r.get("target").and_then(Value::as_str) == Some(entity.blueprint.as_str())
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !keys.is_empty() {
            keys_of.insert(blueprint.identifier, keys);
        }
    }
    let mut found = Vec::new();
    if keys_of.is_empty() {
        return Ok(found);
    }
    let target = entity.identifier.as_str();
    // Paged and bounded like a search: a catalog too large to check is refused.
    port_core::search::scan_within(
        state.store().as_ref(),
        org,
        keys_of.keys().cloned().collect(),
        &SearchLimits::default(),
        |candidate| {
            let keys = keys_of
                .get(&candidate.blueprint)
                .map_or(&[][..], Vec::as_slice);
            let points_here = keys.iter().any(|key| match candidate.relations.get(key) {
                Some(Value::String(s)) => s == target,
                Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(target)),
                _ => false,
            });
            if points_here {
                found.push(candidate);
            }
        },
    )
    .await?;
    Ok(found)
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let delete_dependents = query.flag_or("delete_dependents", false)?;
    let run = bound_run(&state, &caller, &query).await?;
    let id =
        parse_identifier(&identifier).ok_or_else(|| entity_not_found(&blueprint, &identifier))?;
    let org = &caller.org_id;
    let entity = state
        .store()
        .get_entity(org, &blueprint.identifier, &id)
        .await?
        .ok_or_else(|| entity_not_found(&blueprint, &identifier))?;

    // Dependents first (depth first), so no entity is left pointing at a deleted one.
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![entity];
    while let Some(current) = stack.pop() {
        if !seen.insert((current.blueprint.clone(), current.identifier.clone())) {
            continue;
        }
        let dependents = dependents_of(&state, &caller, &current).await?;
        if !dependents.is_empty() && !delete_dependents {
            let names: Vec<String> = dependents
                .iter()
                .map(|d| format!("{}/{}", d.blueprint, d.identifier))
                .collect();
            return Err(ApiError::new(
                ErrorKind::HasDependents,
                format!(
                    "entity {} has dependents ({}); pass delete_dependents=true to delete them too",
                    current.identifier,
                    names.join(", ")
                ),
            ));
        }
        order.push(current);
        if order.len() > MAX_CASCADE {
            return Err(ApiError::invalid(format!(
                "the delete would remove more than {MAX_CASCADE} entities"
            )));
        }
        stack.extend(dependents);
    }
    for entity in order.iter().rev() {
        let affected: Option<AffectedEntity> = run.as_ref().map(|run| {
            state
                .services()
                .affected(&caller, run, entity, EntityOperation::Delete)
        });
        let deletion = EntityDeletion {
            by: caller.user_id(),
            at: state.clock().now(),
            affected: affected.as_ref(),
        };
        state
            .store()
            .delete_entity(org, &entity.blueprint, &entity.identifier, &deletion)
            .await?;
    }
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkBody {
    entities: Vec<Value>,
}

/// `POST …/entities/bulk`: 1 to 20 entities, each written like `POST …/entities`; 200
/// when all succeed, 207 with the failures listed otherwise.
pub(crate) async fn bulk(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    query: QueryParams,
    ApiJson(body): ApiJson<BulkBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    if body.entities.is_empty() || body.entities.len() > MAX_BULK_ENTITIES {
        return Err(ApiError::invalid(format!(
            "entities: must hold 1 to {MAX_BULK_ENTITIES} entities"
        )));
    }
    let options = options(&state, &caller, &query, create_kind(&query)?).await?;
    let mut written = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in body.entities.iter().enumerate() {
        let given = raw
            .get("identifier")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let result = match parse_entity_body(raw, &blueprint.identifier) {
            Ok(parsed) => write_entity(&state, &caller, &blueprint, parsed, None, &options).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok((entity, created)) => written.push(json!({
                "identifier": entity.identifier,
                "index": index,
                "created": created && !options.validation_only,
            })),
            Err(error) => {
                let status = error.status();
                let envelope = error.0;
                errors.push(json!({
                    "identifier": given,
                    "index": index,
                    "statusCode": status.as_u16(),
                    "error": envelope.kind.identifier(),
                    "message": if status.is_server_error() { "internal error".to_owned() } else { envelope.message },
                }));
            }
        }
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((
        status,
        Json(json!({ "ok": errors.is_empty(), "entities": written, "errors": errors })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchBody {
    query: Value,
    #[serde(default, deserialize_with = "present")]
    include: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    exclude: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present_whole")]
    limit: Option<u64>,
    /// Our cursor: the identifier after which the page starts (the previous `next`).
    #[serde(default, deserialize_with = "present")]
    from: Option<String>,
}

/// Default and largest page of a search.
const SEARCH_DEFAULT_LIMIT: usize = 200;
const SEARCH_MAX_LIMIT: usize = 1000;

/// 429 when the organization's searches keep every turn for too long.
fn searches_busy() -> ApiError {
    ApiError::new(
        ErrorKind::TooManyRequests,
        "the organization runs as many searches at once as it may; retry after Retry-After seconds",
    )
}

/// Runs a search in one of the organization's turns, within the default budget, on a
/// blocking thread: matching is CPU work in bursts (a rule may read a whole large
/// document), which must not hold up the runtime's workers and the requests of other
/// organizations they serve. The turn goes with the search, so a caller that hangs up
/// does not free its organization's turn while its search still runs.
async fn searched(
    state: &AppState,
    caller: &Caller,
    query: &EntityQuery,
    scope: Scope,
    after: Option<EntityKey>,
    limit: usize,
) -> ApiResult<SearchPage> {
    let turn = state
        .searches()
        .turn(&caller.org_id, SEARCH_QUEUE_WAIT)
        .await
        .ok_or_else(searches_busy)?;
    let state = state.clone();
    let org = caller.org_id.clone();
    let query = query.clone();
    let runtime = tokio::runtime::Handle::current();
    let work = move || {
        runtime.block_on(async move {
            let _turn = turn;
            let store = state.store().as_ref();
            let matcher = Matcher::resolve(&query, store, &org, state.clock().now()).await?;
            run_search(
                store,
                SearchRequest {
                    org: &org,
                    matcher: &matcher,
                    scope,
                    after,
                    limit,
                },
                SearchLimits::default(),
            )
            .await
        })
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the search thread failed: {e}")))?
        .map_err(ApiError::from)
}

/// `POST …/entities/search`: entities of the blueprint matching `query`, by
/// identifier, `limit` at a time; the response's `next` (when present) is passed as
/// `from` for the next page. A page stops early, with its `next`, when the search has
/// examined as much as one request may; so a page may be short, or even empty, and
/// still have a `next`.
pub(crate) async fn search(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    ApiJson(body): ApiJson<SearchBody>,
) -> ApiResult<Json<Value>> {
    let blueprint = blueprints::load(&state, &caller, &blueprint).await?;
    let query = EntityQuery::parse(&body.query, "query")?;
    let projection = Projection::parse(
        body.include.as_deref().unwrap_or_default(),
        body.exclude.as_deref().unwrap_or_default(),
        PathStyle::Identifiers,
    )?;
    let limit = match body.limit.map(usize::try_from) {
        None => SEARCH_DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=SEARCH_MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "limit: must be from 1 to {SEARCH_MAX_LIMIT}"
            )));
        }
    };
    let after = body
        .from
        .as_deref()
        .map(|from| {
            EntityIdentifier::parse(from)
                .map(|identifier| EntityKey {
                    blueprint: blueprint.identifier.clone(),
                    identifier,
                })
                .map_err(|_| ApiError::invalid("from: must be the `next` of a previous page"))
        })
        .transpose()?;
    let scope = query.scope().within(&blueprint.identifier);
    let page = searched(&state, &caller, &query, scope, after, limit).await?;
    if page.stuck() {
        return Err(too_broad(&SearchLimits::default()).into());
    }
    let mut response = Map::new();
    response.insert("ok".into(), Value::Bool(true));
    if let Some(resume) = &page.resume_after {
        response.insert("next".into(), json!(resume.identifier));
    }
    response.insert(
        "entities".into(),
        Value::Array(
            page.entities
                .iter()
                .map(|e| projection.apply(e.to_json()))
                .collect(),
        ),
    );
    Ok(Json(Value::Object(response)))
}

/// `POST /v1/entities/search`: entities of every blueprint matching `{combinator,
/// rules}` (the body is the query itself), in `(blueprint, identifier)` order, shaped
/// by the `include` / `exclude` query parameters. Port's answer has no pages, so a
/// search that cannot finish within one request's budget is refused whole (422
/// `search_too_broad`) rather than cut short.
pub(crate) async fn search_all(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query_params: QueryParams,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let projection = query_projection(&query_params)?;
    let query = EntityQuery::parse(&body, "body")?;
    let limits = SearchLimits::default();
    let page = searched(
        &state,
        &caller,
        &query,
        query.scope(),
        None,
        usize::try_from(limits.max_examined).unwrap_or(usize::MAX),
    )
    .await?;
    if page.stopped.is_some() {
        return Err(too_broad(&limits).into());
    }
    let matching: std::collections::BTreeSet<&str> =
        page.entities.iter().map(|e| e.blueprint.as_str()).collect();
    Ok(Json(json!({
        "ok": true,
        "matchingBlueprints": matching,
        "failedBlueprints": [],
        "entities": page
            .entities
            .iter()
            .map(|e| projection.apply(e.to_json()))
            .collect::<Vec<_>>(),
    })))
}

/// `GET /v1/audit-log?run_id=`: the entity changes bound to a run, oldest first.
pub(crate) async fn audit_log(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let run_id = query.first("run_id").ok_or_else(|| {
        ApiError::invalid("querystring.run_id: is required (only run audit logs are kept)")
    })?;
    let run = state.services().get_run(&caller, run_id).await?;
    let audits = state
        .store()
        .affected_entities(&caller.org_id, &run.id)
        .await?;
    Ok(ok(
        "audits",
        Value::Array(audits.iter().map(AffectedEntity::to_json).collect()),
    ))
}
