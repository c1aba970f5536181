//! The route table's runs: executing actions, the run routes, the routes of runners
//! that pull runs, deliveries, the log stream and workflow node runs.

use axum::routing::{get, patch, post};

use super::{VERSION_V2, VERSIONS};
use crate::routes::endpoint::{
    Endpoint, HttpMethod, ParamKind, QueryParam, RUN_ID_PATTERN, param, repeated,
};
use crate::routes::{deliveries, runs, stream, workflows};

const VERSION: QueryParam =
    param("version", ParamKind::String, "Response shape: v1 or v2.").one_of(VERSIONS);

const LOG_PAGE: &[QueryParam] = &[
    param("limit", ParamKind::Integer, "1 to 50, default 50.").range(1, 50),
    param("offset", ParamKind::Integer, "Lines to skip.").range(0, u32::MAX as u64),
];

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

pub(super) const RUNS: &[Endpoint] = &[
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
];
