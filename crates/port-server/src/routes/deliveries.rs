//! How runs reach their backends, as routes: a run's deliveries and their attempts,
//! manual redelivery (both portd extensions), and the routes of runners that pull runs
//! (Port's agent, Ocean, portd's own): Port's `claim-pending` and `ack`, and our
//! `heartbeat`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use port_core::action::InvocationKind;
use port_core::id::ActionIdentifier;
use port_core::ports::{Delivery, DeliveryAttempt, DeliveryState};
use port_core::service::pull::MAX_EXCLUDED_ACTIONS;
use port_core::service::{ClaimRequest, ClaimedRun};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authenticated, parse_json_object, present, present_whole};
use crate::state::AppState;

/// The largest `limit` a claim may ask for (Ocean asks up to 1000); at most
/// [`port_core::service::pull::MAX_RUNS_PER_CLAIM`] runs are handed out at once.
pub const MAX_CLAIM_LIMIT: u64 = 1000;
/// Shortest and longest visibility timeout of a claim or a heartbeat.
pub const MIN_VISIBILITY_MS: u64 = 100;
pub const MAX_VISIBILITY_MS: u64 = 24 * 60 * 60 * 1000;
/// The visibility timeout of a claim or heartbeat that names none.
pub const DEFAULT_VISIBILITY_MS: u64 = 60_000;
/// Run ids one acknowledgement may name at most.
pub const MAX_ACK_RUNS: usize = 1000;

fn attempt_json(attempt: &DeliveryAttempt) -> Value {
    json!({
        "number": attempt.number,
        "startedAt": attempt.started_at,
        "endedAt": attempt.ended_at,
        "statusCode": attempt.status_code,
        "error": attempt.error,
        "responseExcerpt": attempt.response_excerpt,
        "durationMs": attempt.duration_ms,
    })
}

/// A delivery as `GET …/deliveries` shows it. The evaluated request is left out: its
/// URL and headers may carry the action's secrets.
fn delivery_json(delivery: &Delivery, attempts: &[DeliveryAttempt]) -> Value {
    let pending = delivery.state == DeliveryState::Pending;
    json!({
        "id": delivery.id,
        "runId": delivery.run_id,
        "mode": delivery.mode.as_str(),
        "state": delivery.state.as_str(),
        "synchronized": delivery.synchronized,
        "installationId": delivery.installation_id,
        "attemptCount": delivery.attempts,
        "attempts": attempts.iter().map(attempt_json).collect::<Vec<_>>(),
        "nextAttemptAt": pending.then_some(delivery.next_attempt_at),
        "leasedUntil": if pending { delivery.lease_until } else { None },
        "createdAt": delivery.created_at,
        "updatedAt": delivery.updated_at,
    })
}

/// `GET /v1/actions/runs/{run_id}/deliveries` → `{ok, deliveries}`, oldest first, each
/// with its attempts.
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let deliveries = state.services().run_deliveries(&caller, &run_id).await?;
    Ok(ok(
        "deliveries",
        Value::Array(
            deliveries
                .iter()
                .map(|(delivery, attempts)| delivery_json(delivery, attempts))
                .collect(),
        ),
    ))
}

/// `POST /v1/actions/runs/{run_id}/deliveries/redeliver`: makes the run's latest
/// delivery due now (same `webhook-id`) and wakes the worker. Only while the run is in
/// progress: an ended run is 422 `run_exhausted`.
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    state.services().redeliver(&caller, &run_id).await?;
    Ok(Json(json!({ "ok": true })))
}

fn visibility_ms(value: Option<u64>, field: &str) -> ApiResult<i64> {
    let ms = value.unwrap_or(DEFAULT_VISIBILITY_MS);
    if !(MIN_VISIBILITY_MS..=MAX_VISIBILITY_MS).contains(&ms) {
        return Err(ApiError::invalid(format!(
            "body.{field}: must be {MIN_VISIBILITY_MS} to {MAX_VISIBILITY_MS} milliseconds"
        )));
    }
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClaimBody {
    #[serde(default, deserialize_with = "present_whole")]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "present_whole")]
    visibility_timeout_ms: Option<u64>,
    /// A string when present: `null` is refused, as the document says.
    #[serde(default, deserialize_with = "present")]
    installation_id: Option<String>,
    /// Port's agent sends `"WEBHOOK"`.
    #[serde(default, deserialize_with = "present")]
    invocation_method: Option<String>,
    /// Ocean's action identifiers to leave for later.
    #[serde(default, deserialize_with = "present")]
    exclude: Option<Vec<String>>,
}

/// `POST /v1/actions/runs/claim-pending`
/// `{limit?, visibilityTimeoutMs?, installationId?, invocationMethod?, exclude?}` →
/// `{ok, runs}`: leases up to `limit` runs waiting for a runner (1–1000, default 1;
/// at most [`port_core::service::pull::MAX_RUNS_PER_CLAIM`] are handed out at once), each in the v2 shape with
/// its evaluated `payload` and `claimedUntil`. Who gets what:
/// [`port_core::service::Services::claim_runs`]. A claim not acknowledged before
/// `claimedUntil` is handed out again. Port's clients also send
/// `x-port-reserved-usage: true`, which changes nothing here.
pub(crate) async fn claim_pending(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<ClaimBody>,
) -> ApiResult<Json<Value>> {
    let limit = body.limit.unwrap_or(1);
    if !(1..=MAX_CLAIM_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "body.limit: must be 1 to {MAX_CLAIM_LIMIT}"
        )));
    }
    // Ocean accepts timeouts from 1 ms; shorter than the shortest lease is raised to it.
    let visibility = match body.visibility_timeout_ms {
        Some(ms @ 1..MIN_VISIBILITY_MS) => Some(ms.max(MIN_VISIBILITY_MS)),
        other => other,
    };
    let visibility = visibility_ms(visibility, "visibilityTimeoutMs")?;
    let invocation_type = match body.invocation_method.as_deref() {
        None => None,
        Some(raw) => Some(InvocationKind::parse(raw).ok_or_else(|| {
            ApiError::invalid(format!(
                "body.invocationMethod: must be one of {}",
                invocation_kinds()
            ))
        })?),
    };
    let exclude = body.exclude.unwrap_or_default();
    if exclude.len() > MAX_EXCLUDED_ACTIONS {
        return Err(ApiError::invalid(format!(
            "body.exclude: at most {MAX_EXCLUDED_ACTIONS} action identifiers"
        )));
    }
    let request = ClaimRequest {
        installation_id: body.installation_id.filter(|i| !i.is_empty()),
        invocation_type,
        // An identifier no action can have excludes nothing.
        exclude: exclude
            .iter()
            .filter_map(|id| ActionIdentifier::parse(id).ok())
            .collect(),
        limit: u32::try_from(limit).unwrap_or(1),
        visibility_ms: visibility,
    };
    let claimed = state.services().claim_runs(&caller, &request).await?;
    let runs = claimed
        .into_iter()
        .map(|ClaimedRun { run, claimed_until }| {
            let mut shown = run.to_v2_json();
            if let Value::Object(map) = &mut shown {
                map.insert("claimedUntil".into(), json!(claimed_until));
            }
            shown
        })
        .collect();
    Ok(ok("runs", Value::Array(runs)))
}

fn invocation_kinds() -> String {
    InvocationKind::ALL.map(InvocationKind::as_str).join(", ")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AckBody {
    #[serde(default, deserialize_with = "present")]
    run_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    run_id: Option<String>,
}

/// `PATCH /v1/actions/runs/ack`, in either client's form:
/// - `{runIds}` (Port's agent, portd's runners) → `{ok, ackedCount}`: how many of the
///   runs were still waiting for their acknowledgement; acknowledging twice counts 0.
/// - `{runId}` (Ocean) → `{ok, ackedCount: 1}`; 409 `conflict` when the run was
///   already acknowledged (or is not a runner's), 404 when it does not exist.
///
/// Either way an acknowledged run is never handed out again.
pub(crate) async fn ack(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<AckBody>,
) -> ApiResult<Json<Value>> {
    let services = state.services();
    match (body.run_ids, body.run_id) {
        (Some(run_ids), None) => {
            if run_ids.len() > MAX_ACK_RUNS {
                return Err(ApiError::invalid(format!(
                    "body.runIds: at most {MAX_ACK_RUNS} run ids"
                )));
            }
            let acked = services.ack_runs(&caller, &run_ids).await?;
            Ok(ok("ackedCount", json!(acked)))
        }
        (None, Some(run_id)) => {
            services.ack_run(&caller, &run_id).await?;
            Ok(ok("ackedCount", json!(1)))
        }
        _ => Err(ApiError::invalid(
            "body: must have either runIds (a list) or runId (one run)",
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeartbeatBody {
    #[serde(default, deserialize_with = "present_whole")]
    visibility_timeout_ms: Option<u64>,
}

/// `POST /v1/actions/runs/{run_id}/heartbeat` (portd) `{visibilityTimeoutMs?}` (the
/// body is optional; default 60 s): extends the live claim on the run to now + the
/// timeout → `{ok, claimedUntil}`; 404 when the run has no live claim (never claimed,
/// acknowledged, or its visibility already expired).
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: HeartbeatBody = if body.iter().all(u8::is_ascii_whitespace) {
        HeartbeatBody::default()
    } else {
        parse_json_object(&body)?
    };
    let extend = visibility_ms(body.visibility_timeout_ms, "visibilityTimeoutMs")?;
    let claimed_until = state.services().heartbeat(&caller, &run_id, extend).await?;
    Ok(Json(json!({ "ok": true, "claimedUntil": claimed_until })))
}
