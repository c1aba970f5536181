//! Port's workflow node runs, which portd does not have yet. Port's agent and Ocean
//! poll for them beside action runs on every pass, and an error there makes Port's
//! agent back off to one poll every 300 s and exit after an hour; Ocean looks a run up
//! here when no action run has its external id. So both routes answer: there is
//! nothing to claim and nothing to find.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::deliveries::{MAX_CLAIM_LIMIT, MAX_VISIBILITY_MS};
use super::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, Authenticated, QueryParams, present, present_whole};
use crate::state::AppState;

/// Node ids one claim may exclude.
const MAX_EXCLUDED_NODES: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeClaimBody {
    /// Checked to be a string; portd has no node runs to route by it.
    #[serde(default, rename = "installationId", deserialize_with = "present")]
    _installation_id: Option<String>,
    #[serde(default, deserialize_with = "present_whole")]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "present_whole")]
    visibility_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    exclude: Option<Vec<String>>,
}

/// `POST /v1/workflows/runs/claim-pending` `{installationId?, limit?,
/// visibilityTimeoutMs?, exclude?}` → `{ok, nodeRuns: []}`: portd has no workflow runs
/// yet. The body is checked as the action-run claim's is, and the caller as theirs
/// (Admins and organization credentials).
pub(crate) async fn claim_pending(
    State(_state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<NodeClaimBody>,
) -> ApiResult<Json<Value>> {
    // Claiming is a runner's, as for action runs: a Member claims nothing.
    caller.require_admin("claim runs")?;
    if body
        .limit
        .is_some_and(|limit| !(1..=MAX_CLAIM_LIMIT).contains(&limit))
    {
        return Err(ApiError::invalid(format!(
            "body.limit: must be 1 to {MAX_CLAIM_LIMIT}"
        )));
    }
    if body
        .visibility_timeout_ms
        .is_some_and(|ms| !(1..=MAX_VISIBILITY_MS).contains(&ms))
    {
        return Err(ApiError::invalid(format!(
            "body.visibilityTimeoutMs: must be 1 to {MAX_VISIBILITY_MS} milliseconds"
        )));
    }
    if body
        .exclude
        .is_some_and(|exclude| exclude.len() > MAX_EXCLUDED_NODES)
    {
        return Err(ApiError::invalid(format!(
            "body.exclude: at most {MAX_EXCLUDED_NODES} node ids"
        )));
    }
    Ok(ok("nodeRuns", json!([])))
}

/// `GET /v1/workflows/nodes/runs?external_run_id=…&include=nodeConfig` →
/// `{ok, nodeRuns: []}`: portd has no workflow runs yet.
pub(crate) async fn list_node_runs(
    Authenticated(_caller): Authenticated,
    _query: QueryParams,
) -> Json<Value> {
    ok("nodeRuns", json!([]))
}
