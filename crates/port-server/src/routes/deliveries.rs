//! How runs reach their backends, as routes: a run's deliveries and their attempts,
//! manual redelivery (both portd extensions), and the routes of pull-mode runners for
//! `agent: true` runs: Port's `claim-pending` and `ack`, and our `heartbeat`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use port_core::ErrorKind;
use port_core::id::RunId;
use port_core::ports::{Delivery, DeliveryAttempt, DeliveryState, Notice};
use port_core::run::RunState;
use port_core::service::Caller;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authenticated, parse_json_object, present, present_whole};
use crate::state::AppState;

/// Runs one claim may take at most.
pub const MAX_CLAIM_LIMIT: u64 = 100;
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
    let run = state.services().get_run(&caller, &run_id).await?;
    let deliveries = state
        .store()
        .deliveries_of_run(&caller.org_id, &run.id)
        .await?;
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
    let run = state.services().get_run(&caller, &run_id).await?;
    match run.state {
        RunState::InProgress => {}
        RunState::WaitingForApproval => {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                format!("run {run_id} is waiting for approval: it has not been delivered yet"),
            ));
        }
        RunState::Ended { .. } => {
            return Err(ApiError::new(
                ErrorKind::RunExhausted,
                format!(
                    "run {run_id} has already ended with status {}: there is nothing to redeliver",
                    run.status()
                ),
            ));
        }
    }
    let now = state.clock().now();
    if !state
        .store()
        .redeliver(&caller.org_id, &run.id, now)
        .await?
    {
        return Err(ApiError::not_found(format!("a delivery of run {run_id}")));
    }
    state.services().notifier.notify(Notice::DeliveryReady);
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

/// Who holds an agent claim: the runner's client id.
fn claim_owner(caller: &Caller) -> String {
    format!("runner:{}", caller.user_id())
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
}

/// `POST /v1/actions/runs/claim-pending` `{limit, visibilityTimeoutMs, installationId?}`
/// → `{ok, runs}`: leases up to `limit` (1–100, default 1) `agent: true` runs waiting
/// for a runner, each in the v2 shape with its evaluated `payload` and `claimedUntil`.
/// A claim not acknowledged before `claimedUntil` is handed out again. A runner naming
/// an installation gets the runs bound to it and the unbound ones; one naming none gets
/// the unbound ones only.
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
    let visibility = visibility_ms(body.visibility_timeout_ms, "visibilityTimeoutMs")?;
    let installation = body.installation_id.filter(|i| !i.is_empty());
    let store = state.store();
    let now = state.clock().now();
    let claimed = store
        .claim_agent_deliveries(
            &caller.org_id,
            installation.as_deref(),
            &claim_owner(&caller),
            now,
            visibility,
            u32::try_from(limit).unwrap_or(1),
        )
        .await?;
    let mut runs = Vec::with_capacity(claimed.len());
    for delivery in claimed {
        match store.get_run(&caller.org_id, &delivery.run_id).await? {
            Some(run) if run.state == RunState::InProgress => {
                let mut shown = run.to_v2_json();
                if let Value::Object(map) = &mut shown {
                    map.insert("claimedUntil".into(), json!(delivery.lease_until));
                }
                runs.push(shown);
            }
            // It ended before a runner took it (cancelled, timed out): nobody waits for it.
            _ => {
                store
                    .finish(&delivery.id, DeliveryState::Failed, now)
                    .await?
            }
        }
    }
    Ok(ok("runs", Value::Array(runs)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AckBody {
    run_ids: Vec<String>,
}

/// `PATCH /v1/actions/runs/ack` `{runIds}` → `{ok, ackedCount}`: the runs' claims are
/// done with and never handed out again. `ackedCount` counts the runs still waiting
/// for their acknowledgement; acknowledging twice is harmless.
pub(crate) async fn ack(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<AckBody>,
) -> ApiResult<Json<Value>> {
    if body.run_ids.len() > MAX_ACK_RUNS {
        return Err(ApiError::invalid(format!(
            "body.runIds: at most {MAX_ACK_RUNS} run ids"
        )));
    }
    // An id that cannot be a run's matches none.
    let runs: Vec<RunId> = body
        .run_ids
        .iter()
        .filter_map(|id| RunId::parse(id).ok())
        .collect();
    let acked = state
        .store()
        .ack_agent_deliveries(&caller.org_id, &runs, state.clock().now())
        .await?;
    Ok(ok("ackedCount", json!(acked)))
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
    let run = state.services().get_run(&caller, &run_id).await?;
    let now = state.clock().now();
    if !state
        .store()
        .heartbeat_agent_delivery(&caller.org_id, &run.id, now, extend)
        .await?
    {
        return Err(ApiError::not_found(format!("a live claim on run {run_id}")));
    }
    Ok(Json(
        json!({ "ok": true, "claimedUntil": now.plus_millis(extend) }),
    ))
}
