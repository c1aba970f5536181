//! Entities: `/v1/blueprints/{blueprint}/entities…` (port-api.md §3.3), with changes
//! bound to a run through `run_id` (§3.4), which `GET /v1/audit-log?run_id=` lists
//! (`routes::audit`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use port_core::ErrorKind;
use port_core::catalog::{PathStyle, Projection};
use port_core::id::EntityIdentifier;
use port_core::ports::EntityKey;
use port_core::search::{EntityQuery, Scope, SearchLimits, SearchPage, too_broad};
use port_core::service::{Caller, EntityWriteKind, EntityWriteOptions};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authenticated, QueryParams, present, present_whole};
use crate::search_gate::SEARCH_QUEUE_WAIT;
use crate::state::AppState;

/// The write flags of the query string; `kind` from the route.
fn options(query: &QueryParams, kind: EntityWriteKind) -> ApiResult<EntityWriteOptions> {
    Ok(EntityWriteOptions {
        kind,
        validation_only: query.flag_or("validation_only", false)?,
        create_missing_related: query.flag_or("create_missing_related_entities", false)?,
        run_id: query.first("run_id").map(str::to_owned),
    })
}

fn create_kind(query: &QueryParams) -> ApiResult<EntityWriteKind> {
    Ok(EntityWriteKind::Create {
        upsert: query.flag_or("upsert", false)?,
        merge: query.flag_or("merge", false)?,
    })
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    query: QueryParams,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let options = options(&query, create_kind(&query)?)?;
    let written = state
        .services()
        .write_entity(&caller, &blueprint, &body, None, &options)
        .await?;
    let status = if written.created && !options.validation_only {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ok("entity", written.entity.to_json())))
}

/// `PUT` (replace) and `PATCH` (merge) of one entity.
async fn write_at_path(
    state: &AppState,
    caller: &Caller,
    (blueprint, identifier): (String, String),
    query: &QueryParams,
    kind: EntityWriteKind,
    body: &Value,
) -> ApiResult<Json<Value>> {
    let options = options(query, kind)?;
    let written = state
        .services()
        .write_entity(caller, &blueprint, body, Some(&identifier), &options)
        .await?;
    Ok(ok("entity", written.entity.to_json()))
}

pub(crate) async fn replace(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(path): ApiPath<(String, String)>,
    query: QueryParams,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    write_at_path(
        &state,
        &caller,
        path,
        &query,
        EntityWriteKind::Replace,
        &body,
    )
    .await
}

pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(path): ApiPath<(String, String)>,
    query: QueryParams,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    write_at_path(&state, &caller, path, &query, EntityWriteKind::Merge, &body).await
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
    let entity = state
        .services()
        .entity(&caller, &blueprint, &identifier)
        .await?;
    Ok(ok("entity", projection.apply(entity.to_json())))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(blueprint): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let projection = query_projection(&query)?;
    let entities = state.services().entities(&caller, &blueprint).await?;
    Ok(ok(
        "entities",
        entities
            .iter()
            .map(|e| projection.apply(e.to_json()))
            .collect(),
    ))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, identifier)): ApiPath<(String, String)>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let delete_dependents = query.flag_or("delete_dependents", false)?;
    state
        .services()
        .delete_entity(
            &caller,
            &blueprint,
            &identifier,
            delete_dependents,
            query.first("run_id"),
        )
        .await?;
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
    let options = options(&query, create_kind(&query)?)?;
    let outcomes = state
        .services()
        .write_entities(&caller, &blueprint, &body.entities, &options)
        .await?;
    let mut written = Vec::new();
    let mut errors = Vec::new();
    for (index, (raw, outcome)) in body.entities.iter().zip(outcomes).enumerate() {
        match outcome {
            Ok(done) => written.push(json!({
                "identifier": done.entity.identifier,
                "index": index,
                "created": done.created && !options.validation_only,
            })),
            Err(error) => {
                let given = raw
                    .get("identifier")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let status = ApiError(error.clone()).status();
                errors.push(json!({
                    "identifier": given,
                    "index": index,
                    "statusCode": status.as_u16(),
                    "error": error.kind.identifier(),
                    "message": if status.is_server_error() { "internal error".to_owned() } else { error.message },
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
    let caller = caller.clone();
    let query = query.clone();
    let runtime = tokio::runtime::Handle::current();
    let work = move || {
        runtime.block_on(async move {
            let _turn = turn;
            state
                .services()
                .search_entities(&caller, &query, scope, after, limit)
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
    let blueprint = state.services().blueprint_of(&caller, &blueprint).await?;
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
