//! Runs: executing actions (`POST /v1/actions/{id}/runs` and its legacy twin) and the
//! `/v1/actions/runs…` routes (port-api.md §5).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use port_core::id::RunId;
use port_core::ports::RunFilter;
use port_core::run::{Decision, FinalStatus, Run, RunPatch, RunSource, RunStatus};
use port_core::service::{Approver, ExecuteRequest, RunsPage};
use port_core::time::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authenticated, QueryParams, parse_json_object, present};
use crate::state::AppState;

/// The header that makes execute requests idempotent.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Default and largest page of `GET /v1/actions/runs`.
const RUNS_DEFAULT_LIMIT: u64 = 100;
const RUNS_MAX_LIMIT: u64 = 1000;

/// Default and largest page of `GET …/logs`.
const LOGS_MAX_LIMIT: u64 = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecuteBody {
    #[serde(default, deserialize_with = "present")]
    properties: Option<Map<String, Value>>,
    #[serde(default)]
    entity: Option<String>,
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && key.bytes().all(|b| (b' '..=b'~').contains(&b)) =>
        {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::invalid(format!(
            "headers.idempotency-key: must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))),
    }
}

fn execute_request(
    headers: &HeaderMap,
    query: &QueryParams,
    body: ExecuteBody,
) -> ApiResult<ExecuteRequest> {
    Ok(ExecuteRequest {
        properties: Value::Object(body.properties.unwrap_or_default()),
        entity: body.entity,
        idempotency_key: idempotency_key(headers)?,
        source: Some(RunSource::Api),
        // An empty `run_as=` names nobody.
        run_as: query
            .first("run_as")
            .filter(|email| !email.is_empty())
            .map(str::to_owned),
    })
}

/// 202 `{ok, run}` (v2 shape), counting the run when it is new: a keyed request may
/// have answered with an earlier run.
fn executed(
    state: &AppState,
    request_started: Timestamp,
    keyed: bool,
    run: &Run,
) -> (StatusCode, Json<Value>) {
    if !keyed || run.created_at >= request_started {
        state.metrics().record_run_created();
    }
    (StatusCode::ACCEPTED, ok("run", run.to_v2_json()))
}

/// `POST /v1/actions/{action}/runs` → 202 `{ok, run}` (v2 shape). `run_as=<email>`
/// (organization credentials only) creates the run as that user, recording the
/// credential as `impersonatedBy`.
pub(crate) async fn execute(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(action): ApiPath<String>,
    headers: HeaderMap,
    query: QueryParams,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let request = execute_request(&headers, &query, body)?;
    let (started, keyed) = (state.clock().now(), request.idempotency_key.is_some());
    let run = state.services().execute(&caller, &action, request).await?;
    Ok(executed(&state, started, keyed, &run))
}

/// `POST /v1/blueprints/{bp}/actions/{action}/runs`: the legacy route, answered like
/// the current one.
pub(crate) async fn execute_v1(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((blueprint, action)): ApiPath<(String, String)>,
    headers: HeaderMap,
    query: QueryParams,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let request = match execute_request(&headers, &query, body) {
        Ok(request) => request,
        Err(refused) => {
            // A blueprint or action that does not exist is the answer before the header.
            state
                .services()
                .blueprint_action(&caller, &blueprint, &action)
                .await?;
            return Err(refused);
        }
    };
    let (started, keyed) = (state.clock().now(), request.idempotency_key.is_some());
    let run = state
        .services()
        .execute_blueprint_action(&caller, &blueprint, &action, request)
        .await?;
    Ok(executed(&state, started, keyed, &run))
}

fn run_filter(query: &QueryParams) -> ApiResult<RunFilter> {
    let text = |name: &str| {
        query
            .first(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let status = match query.first("status") {
        Some(raw) => Some(RunStatus::parse(raw).ok_or_else(|| {
            ApiError::invalid("querystring.status: must be one of IN_PROGRESS, SUCCESS, FAILURE, WAITING_FOR_APPROVAL, DECLINED")
        })?),
        None => None,
    };
    let sources = query
        .all("source")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|v| {
            RunSource::parse(v).ok_or_else(|| {
                ApiError::invalid("querystring.source: must be one of UI, API, AUTOMATION")
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let before = match query.first("before") {
        Some(raw) => Some(
            RunId::parse(raw)
                .map_err(|_| ApiError::invalid("querystring.before: must be a run id"))?,
        ),
        None => None,
    };
    let limit = query
        .integer_in("limit", 1, RUNS_MAX_LIMIT)?
        .unwrap_or(RUNS_DEFAULT_LIMIT);
    Ok(RunFilter {
        entity: text("entity"),
        blueprint: text("blueprint"),
        action: text("action"),
        active: query.flag("active")?,
        status,
        // Callers are identified by one id here; an e-mail filter matches the same field.
        user: text("user_id").or_else(|| text("user_email")),
        sources,
        external_run_id: text("external_run_id"),
        before,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
    })
}

/// `GET /v1/actions/runs`: newest first, only the runs the caller may see. Our cursor
/// (Port documents none): when more runs may follow, the response carries `next`, the
/// id of the last run read; pass it back as `?before=<id>` for the next page. A page
/// also ends after about 8 MiB of runs.
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let version = query.version()?;
    let filter = run_filter(&query)?;
    let RunsPage { runs, more, next } = state.services().list_runs_page(&caller, &filter).await?;
    let mut response = Map::new();
    response.insert("ok".into(), Value::Bool(true));
    response.insert(
        "runs".into(),
        Value::Array(runs.iter().map(|r| r.to_json(version)).collect()),
    );
    // The cursor is the last run read, which may be one hidden from the caller.
    if more && let Some(next) = next.or_else(|| runs.last().map(|r| r.id.clone())) {
        response.insert("next".into(), json!(next));
    }
    Ok(Json(Value::Object(response)))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let version = query.version()?;
    let run = state.services().get_run(&caller, &run_id).await?;
    Ok(ok("run", run.to_json(version)))
}

#[derive(Deserialize)]
enum FinalStatusWire {
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "FAILURE")]
    Failure,
}

impl From<FinalStatusWire> for FinalStatus {
    fn from(s: FinalStatusWire) -> Self {
        match s {
            FinalStatusWire::Success => Self::Success,
            FinalStatusWire::Failure => Self::Failure,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or an array of strings")]
enum LinkWire {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PatchBody {
    #[serde(default, deserialize_with = "present")]
    status: Option<FinalStatusWire>,
    #[serde(default, deserialize_with = "present")]
    status_label: Option<String>,
    #[serde(default, deserialize_with = "present")]
    link: Option<LinkWire>,
    #[serde(default, deserialize_with = "present")]
    summary: Option<String>,
    #[serde(default, deserialize_with = "present")]
    external_run_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    message: Option<Map<String, Value>>,
}

/// `PATCH /v1/actions/runs/{run_id}`: present keys overwrite, absent keys stay.
pub(crate) async fn patch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    query: QueryParams,
    ApiJson(body): ApiJson<PatchBody>,
) -> ApiResult<Json<Value>> {
    let version = query.version()?;
    let patch = RunPatch {
        status: body.status.map(FinalStatus::from),
        status_label: body.status_label,
        link: body.link.map(|link| match link {
            LinkWire::One(one) => vec![one],
            LinkWire::Many(many) => many,
        }),
        summary: body.summary,
        external_run_id: body.external_run_id,
        message: body.message,
    };
    let run = state.services().patch_run(&caller, &run_id, patch).await?;
    Ok(ok("run", run.to_json(version)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResponseBody {
    /// Any JSON value: Port's agent sends the target's JSON answer, or its text.
    response: Value,
}

/// `PATCH /v1/actions/runs/{run_id}/response` `{response}` → `{ok, run}` (v2): stores
/// what the run's backend answered as the run's `response` (Port's agent reports a
/// synchronized run's answer this way, then sets the status itself). 422
/// `run_exhausted` once the run has ended, unless the same response is sent again.
pub(crate) async fn report_response(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    query: QueryParams,
    ApiJson(body): ApiJson<ResponseBody>,
) -> ApiResult<Json<Value>> {
    let version = query.version_or_v2()?;
    let run = state
        .services()
        .report_response(&caller, &run_id, body.response)
        .await?;
    Ok(ok("run", run.to_json(version)))
}

#[derive(Deserialize)]
enum DecisionWire {
    #[serde(rename = "APPROVE")]
    Approve,
    #[serde(rename = "DECLINE")]
    Decline,
}

impl From<DecisionWire> for Decision {
    fn from(d: DecisionWire) -> Self {
        match d {
            DecisionWire::Approve => Self::Approved,
            DecisionWire::Decline => Self::Declined,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalBody {
    status: DecisionWire,
    #[serde(default, deserialize_with = "present")]
    description: Option<String>,
}

/// `PATCH /v1/actions/runs/{run_id}/approval` → 201 `{ok, run}`, the run in Port's
/// documented (v2) shape unless `version=v1`.
pub(crate) async fn approval(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    query: QueryParams,
    ApiJson(body): ApiJson<ApprovalBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let version = query.version_or_v2()?;
    let run = state
        .services()
        .decide(&caller, &run_id, body.status.into(), body.description)
        .await?;
    Ok((StatusCode::CREATED, ok("run", run.to_json(version))))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct WithdrawBody {
    #[serde(default, deserialize_with = "present")]
    reason: Option<String>,
}

/// `POST /v1/actions/runs/{run_id}/withdraw` `{reason?}` (the body is optional) →
/// `{ok, run}` (v2 unless `version=v1`): a run still waiting for approval ends
/// `FAILURE`, labelled "Withdrawn by <who>". Its requester, an Admin or an organization
/// credential may.
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    query: QueryParams,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let version = query.version_or_v2()?;
    let body: WithdrawBody = if body.iter().all(u8::is_ascii_whitespace) {
        WithdrawBody::default()
    } else {
        parse_json_object(&body)?
    };
    let run = state
        .services()
        .withdraw(&caller, &run_id, body.reason)
        .await?;
    Ok(ok("run", run.to_json(version)))
}

fn approver_json(approver: &Approver) -> Value {
    json!({ "userId": approver.user_id, "state": approver.state, "description": approver.description })
}

/// `GET /v1/actions/runs/{run_id}/approvers`: who decided, and with
/// `include_pending_approvers=true` the designated approvers still to decide.
pub(crate) async fn approvers(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let include_pending = query.flag_or("include_pending_approvers", false)?;
    let approvers = state
        .services()
        .run_approvers(&caller, &run_id, include_pending)
        .await?;
    Ok(ok(
        "approvers",
        Value::Array(approvers.iter().map(approver_json).collect()),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LogBody {
    message: String,
    #[serde(default, deserialize_with = "present")]
    termination_status: Option<FinalStatusWire>,
    #[serde(default, deserialize_with = "present")]
    status_label: Option<String>,
}

/// `POST /v1/actions/runs/{run_id}/logs` → 201 `{ok, runLog}`.
pub(crate) async fn add_log(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<LogBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let log = state
        .services()
        .add_log(
            &caller,
            &run_id,
            body.message,
            body.termination_status.map(FinalStatus::from),
            body.status_label,
        )
        .await?;
    Ok((StatusCode::CREATED, ok("runLog", log.to_json())))
}

/// `GET /v1/actions/runs/{run_id}/logs` (and `/logging`, as the seed calls it): oldest
/// first, `limit` (1–50, default 50) from `offset`.
pub(crate) async fn list_logs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let limit = query
        .integer_in("limit", 1, LOGS_MAX_LIMIT)?
        .unwrap_or(LOGS_MAX_LIMIT);
    let offset = query
        .integer_in("offset", 0, u64::from(u32::MAX))?
        .unwrap_or(0);
    let logs = state
        .services()
        .list_logs(&caller, &run_id, offset, limit)
        .await?;
    Ok(ok(
        "runLogs",
        Value::Array(logs.iter().map(|l| l.to_json()).collect()),
    ))
}
