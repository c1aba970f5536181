//! Action runs: their statuses, their data, and the one pure function that decides
//! every change to them ([`transition`]).
//!
//! ```text
//!            create (approval required)             create (no approval)
//!                       |                                    |
//!                       v                                    v
//!            WAITING_FOR_APPROVAL --approve (ANY: first, ALL: last)--> IN_PROGRESS  [dispatch]
//!              |            |                                         |        |
//!       decline|            |patch FAILURE (requester cancels)   SUCCESS    FAILURE
//!              v            v                                   (patch, log termination,
//!          DECLINED      FAILURE                                 synchronized response,
//!                                                                delivery exhausted, timeout)
//! ```
//! Terminal statuses are absorbing: `endedAt` is stamped once on entry and every later
//! change is refused with `run_exhausted`, except a patch that changes nothing.

use serde_json::{Map, Value, json};

use crate::error::{ErrorKind, PortError};
use crate::id::{ActionIdentifier, OrgId, RunId};
use crate::time::Timestamp;

/// A run's status as Port names it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    InProgress,
    Success,
    Failure,
    WaitingForApproval,
    Declined,
}

impl RunStatus {
    /// Statuses of runs that can still change: `active=true` in list filters.
    pub const ACTIVE: [RunStatus; 2] = [RunStatus::InProgress, RunStatus::WaitingForApproval];
    /// Statuses a run never leaves.
    pub const TERMINAL: [RunStatus; 3] =
        [RunStatus::Success, RunStatus::Failure, RunStatus::Declined];
    pub const ALL: [RunStatus; 5] = [
        RunStatus::InProgress,
        RunStatus::Success,
        RunStatus::Failure,
        RunStatus::WaitingForApproval,
        RunStatus::Declined,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::WaitingForApproval => "WAITING_FOR_APPROVAL",
            Self::Declined => "DECLINED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Declined)
    }

    pub const fn is_active(self) -> bool {
        !self.is_terminal()
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Failure,
    Declined,
}

impl Outcome {
    pub const fn status(self) -> RunStatus {
        match self {
            Self::Success => RunStatus::Success,
            Self::Failure => RunStatus::Failure,
            Self::Declined => RunStatus::Declined,
        }
    }
}

/// The statuses a caller may set through a patch or a log's `terminationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinalStatus {
    Success,
    Failure,
}

impl FinalStatus {
    pub const fn outcome(self) -> Outcome {
        match self {
            Self::Success => Outcome::Success,
            Self::Failure => Outcome::Failure,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SUCCESS" => Some(Self::Success),
            "FAILURE" => Some(Self::Failure),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.outcome().status().as_str()
    }
}

/// Where a run is in its life. `endedAt` exists only for ended runs, so a running run
/// with an end time cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    WaitingForApproval,
    InProgress,
    Ended { outcome: Outcome, at: Timestamp },
}

impl RunState {
    pub const fn status(self) -> RunStatus {
        match self {
            Self::WaitingForApproval => RunStatus::WaitingForApproval,
            Self::InProgress => RunStatus::InProgress,
            Self::Ended { outcome, .. } => outcome.status(),
        }
    }

    pub const fn ended_at(self) -> Option<Timestamp> {
        match self {
            Self::Ended { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunSource {
    Ui,
    Api,
    Automation,
}

impl RunSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ui => "UI",
            Self::Api => "API",
            Self::Automation => "AUTOMATION",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "UI" => Some(Self::Ui),
            "API" => Some(Self::Api),
            "AUTOMATION" => Some(Self::Automation),
            _ => None,
        }
    }
}

/// A reference from a run to the blueprint or entity it concerns, as it was when the
/// run was created; `deleted` flags targets that no longer exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reference {
    pub identifier: String,
    pub title: Option<String>,
    pub icon: Option<String>,
    pub deleted: bool,
}

/// The action a run belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRef {
    pub identifier: ActionIdentifier,
    pub title: Option<String>,
    pub icon: Option<String>,
    pub deleted: bool,
}

/// How many approvals a run needs before it is dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalPolicy {
    NotRequired,
    /// One approval suffices; `approvers` empty means anyone may approve.
    Any {
        approvers: Vec<String>,
    },
    /// Every designated approver must approve; an empty list behaves like `Any`.
    All {
        approvers: Vec<String>,
    },
}

impl ApprovalPolicy {
    /// The designated approvers (empty: whoever the services let decide).
    pub fn approvers(&self) -> &[String] {
        match self {
            Self::NotRequired => &[],
            Self::Any { approvers } | Self::All { approvers } => approvers,
        }
    }

    fn may_approve(&self, user: &str) -> bool {
        let approvers = self.approvers();
        approvers.is_empty() || approvers.iter().any(|a| a == user)
    }
}

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Approved,
    Declined,
}

impl Decision {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Declined => "DECLINED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "APPROVED" => Some(Self::Approved),
            "DECLINED" => Some(Self::Declined),
            _ => None,
        }
    }
}

/// One approver's vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub user_id: String,
    pub decision: Decision,
    pub description: Option<String>,
    pub at: Timestamp,
}

/// A run of an action.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: RunId,
    pub org_id: OrgId,
    pub state: RunState,
    pub status_label: Option<String>,
    pub link: Vec<String>,
    pub summary: Option<String>,
    pub external_run_id: Option<String>,
    /// The deprecated free-form `message` object of the v1 API.
    pub message: Option<Map<String, Value>>,
    pub properties: Map<String, Value>,
    pub source: RunSource,
    /// The action's `requiredApproval` as written (`false`, `true`, `{"type": …}`).
    pub required_approval: Value,
    pub approval_policy: ApprovalPolicy,
    pub votes: Vec<Vote>,
    /// The evaluated invocation method (`run.payload` on the wire).
    pub payload: Option<Value>,
    /// What a synchronized webhook answered.
    pub response: Option<Value>,
    pub action: ActionRef,
    pub blueprint: Option<Reference>,
    pub entity: Option<Reference>,
    /// The status is derived from the webhook's HTTP answer; callers may not set it.
    pub synchronized: bool,
    pub created_at: Timestamp,
    pub created_by: String,
    /// The organization credential that started the run for `created_by` (`run_as`).
    pub impersonated_by: Option<String>,
    pub updated_at: Timestamp,
    pub updated_by: String,
    /// Bumped on every stored change; stores use it to refuse lost updates.
    pub version: u64,
    /// How many automations led to this run: 0 for a run a person or client started,
    /// one more than the event's for an automation's run. Never on the wire.
    pub chain_depth: u32,
}

impl Run {
    pub fn status(&self) -> RunStatus {
        self.state.status()
    }

    pub fn ended_at(&self) -> Option<Timestamp> {
        self.state.ended_at()
    }

    pub fn is_terminal(&self) -> bool {
        self.status().is_terminal()
    }

    /// The latest decisive vote, shown as `approval` on the wire.
    pub fn approval(&self) -> Option<&Vote> {
        self.votes.last()
    }
}

/// Longest `summary`, in characters: the number of bytes a log line may hold
/// ([`crate::run_log::MAX_LOG_MESSAGE_BYTES`], 64 Ki), so at most 256 KiB of UTF-8.
///
/// The text a run's backend writes into a run is read whole by every page, list and log
/// stream that shows the run, so each such field has a bound, refused beyond it with a
/// 422 naming the field (a summary cut short could end inside markdown, so it is refused,
/// not cut like a log line). Bounds count characters (Unicode scalar values), as JSON
/// Schema's `maxLength` does, so `/openapi.json` states them exactly.
pub const MAX_SUMMARY_CHARS: usize = crate::run_log::MAX_LOG_MESSAGE_BYTES;
/// Longest `statusLabel` (PATCH and log lines): a label shown next to the status.
pub const MAX_STATUS_LABEL_CHARS: usize = 1024;
/// Most links one run keeps (`link` replaces the list).
pub const MAX_LINKS: usize = 100;
/// Longest link: room for pre-signed URLs, which run to a few KiB.
pub const MAX_LINK_CHARS: usize = 4096;
/// Longest `externalRunId`: an id in another system.
pub const MAX_EXTERNAL_RUN_ID_CHARS: usize = 1024;
/// Longest reason given with an approval or a decline.
pub const MAX_APPROVAL_DESCRIPTION_CHARS: usize = 4096;
/// Largest `response` a runner reports (`PATCH …/response`), in bytes of JSON: what a
/// synchronized webhook's answer may hold when portd reads it itself.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Refuses `value` when it is longer than `max` characters.
fn check_length(field: &str, value: &str, max: usize) -> Result<(), PortError> {
    // A string has at least as many bytes as characters: most need no counting.
    if value.len() <= max {
        return Ok(());
    }
    let chars = value.chars().count();
    if chars <= max {
        return Ok(());
    }
    Err(PortError::invalid(format!(
        "{field}: must be at most {max} characters; this one has {chars}"
    )))
}

/// A partial update of a run (`PATCH /v1/actions/runs/{id}`): absent keys stay as they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunPatch {
    pub status: Option<FinalStatus>,
    pub status_label: Option<String>,
    /// Replaces the stored list; the wire's single string arrives as a one-element list.
    pub link: Option<Vec<String>>,
    pub summary: Option<String>,
    pub external_run_id: Option<String>,
    /// Bounded only by the request body (1 MiB): an object whose shape Port leaves
    /// open, replaced as a whole by each patch.
    pub message: Option<Map<String, Value>>,
}

impl RunPatch {
    /// Refuses text fields beyond their bounds ([`MAX_SUMMARY_CHARS`] and the others),
    /// naming the first field at fault as the wire spells it.
    pub fn check_lengths(&self) -> Result<(), PortError> {
        if let Some(label) = &self.status_label {
            check_length("statusLabel", label, MAX_STATUS_LABEL_CHARS)?;
        }
        if let Some(links) = &self.link {
            if links.len() > MAX_LINKS {
                return Err(PortError::invalid(format!(
                    "link: at most {MAX_LINKS} links; this list has {}",
                    links.len()
                )));
            }
            for (index, link) in links.iter().enumerate() {
                check_length(&format!("link[{index}]"), link, MAX_LINK_CHARS)?;
            }
        }
        if let Some(summary) = &self.summary {
            check_length("summary", summary, MAX_SUMMARY_CHARS)?;
        }
        if let Some(id) = &self.external_run_id {
            check_length("externalRunId", id, MAX_EXTERNAL_RUN_ID_CHARS)?;
        }
        Ok(())
    }
}

/// Everything that may happen to a run after it was created.
#[derive(Debug, Clone, PartialEq)]
pub enum RunCommand {
    Patch(RunPatch),
    /// A log line; `termination_status` also ends the run.
    AddLog {
        message: String,
        termination_status: Option<FinalStatus>,
        status_label: Option<String>,
    },
    /// An approver's approval. Who may decide is the services' question (the action's
    /// `approve` permission); the run only holds its designated approvers to an `ALL`
    /// policy.
    Approve {
        user_id: String,
        description: Option<String>,
        /// An organization credential decides: it need not be a designated approver,
        /// and its approval is enough whatever the policy (machines may do everything
        /// in their organization).
        by_organization: bool,
    },
    Decline {
        user_id: String,
        description: Option<String>,
        /// See [`RunCommand::Approve::by_organization`].
        by_organization: bool,
    },
    /// The requester (or an Admin, or an organization credential) takes back a run
    /// still waiting for approval: it ends `FAILURE`, labelled "Withdrawn by <by>",
    /// with the reason, if any, as its summary.
    Withdraw {
        by: String,
        reason: Option<String>,
    },
    /// A runner reports what its backend answered (`PATCH …/response`, Port's agent on
    /// synchronized runs): stored as the run's `response`, the status untouched.
    SetResponse {
        response: Value,
    },
    /// A synchronized webhook answered: 2xx ends the run `SUCCESS`, anything else `FAILURE`.
    SynchronizedResponse {
        status_code: u16,
        response: Value,
    },
    /// Delivery was refused or ran out of attempts.
    DeliveryExhausted {
        reason: String,
    },
    /// The run stayed `IN_PROGRESS` longer than its timeout.
    TimedOut,
}

/// Something the adapters must act on after a transition was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// The run entered `IN_PROGRESS`: deliver its invocation. Emitted at most once per run.
    Dispatch,
    StatusChanged {
        from: RunStatus,
        to: RunStatus,
    },
}

/// The result of a transition: the new run, what happened, and log lines the system adds.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub run: Run,
    pub events: Vec<RunEvent>,
    /// Log lines written on the run's behalf (time-outs, failed deliveries), in order.
    pub system_logs: Vec<String>,
}

impl Transition {
    /// Whether the run was changed at all (a no-op patch changes nothing).
    pub fn changed(&self, before: &Run) -> bool {
        self.run != *before
    }
}

/// Everything needed to create a run, decided by the execute service.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub id: RunId,
    pub org_id: OrgId,
    pub properties: Map<String, Value>,
    pub source: RunSource,
    pub required_approval: Value,
    pub approval_policy: ApprovalPolicy,
    pub payload: Option<Value>,
    pub action: ActionRef,
    pub blueprint: Option<Reference>,
    pub entity: Option<Reference>,
    pub synchronized: bool,
    pub created_by: String,
    /// See [`Run::impersonated_by`].
    pub impersonated_by: Option<String>,
    /// See [`Run::chain_depth`].
    pub chain_depth: u32,
}

/// Creates a run: `WAITING_FOR_APPROVAL` when approval is required, otherwise
/// `IN_PROGRESS` with a [`RunEvent::Dispatch`].
pub fn start(new: NewRun, now: Timestamp) -> Transition {
    let waiting = !matches!(new.approval_policy, ApprovalPolicy::NotRequired);
    let state = if waiting {
        RunState::WaitingForApproval
    } else {
        RunState::InProgress
    };
    let run = Run {
        id: new.id,
        org_id: new.org_id,
        state,
        status_label: None,
        link: Vec::new(),
        summary: None,
        external_run_id: None,
        message: None,
        properties: new.properties,
        source: new.source,
        required_approval: new.required_approval,
        approval_policy: new.approval_policy,
        votes: Vec::new(),
        payload: new.payload,
        response: None,
        action: new.action,
        blueprint: new.blueprint,
        entity: new.entity,
        synchronized: new.synchronized,
        created_at: now,
        updated_by: new.created_by.clone(),
        created_by: new.created_by,
        impersonated_by: new.impersonated_by,
        updated_at: now,
        version: 1,
        chain_depth: new.chain_depth,
    };
    let events = if waiting {
        Vec::new()
    } else {
        vec![RunEvent::Dispatch]
    };
    Transition {
        run,
        events,
        system_logs: Vec::new(),
    }
}

fn exhausted(run: &Run) -> PortError {
    PortError::new(
        ErrorKind::RunExhausted,
        format!(
            "run {} has already ended with status {}",
            run.id,
            run.status()
        ),
    )
}

fn synchronized_error(run: &Run) -> PortError {
    PortError::new(
        ErrorKind::RunSynchronizedError,
        format!(
            "run {} is synchronized: its status follows the webhook's answer and cannot be set",
            run.id
        ),
    )
}

fn not_waiting(run: &Run) -> PortError {
    PortError::new(
        ErrorKind::RunNotWaitingForApproval,
        format!(
            "run {} is not waiting for approval (status {})",
            run.id,
            run.status()
        ),
    )
}

/// Applies the present keys of a patch to a copy of the run's fields.
fn apply_patch_fields(run: &mut Run, patch: &RunPatch) {
    if let Some(label) = &patch.status_label {
        run.status_label = Some(label.clone());
    }
    if let Some(link) = &patch.link {
        run.link = link.clone();
    }
    if let Some(summary) = &patch.summary {
        run.summary = Some(summary.clone());
    }
    if let Some(id) = &patch.external_run_id {
        run.external_run_id = Some(id.clone());
    }
    if let Some(message) = &patch.message {
        run.message = Some(message.clone());
    }
}

/// The one function that decides every change to a run.
///
/// `actor` is who asks (recorded as `updatedBy`); `now` stamps `updatedAt` and `endedAt`.
pub fn transition(
    run: &Run,
    command: RunCommand,
    actor: &str,
    now: Timestamp,
) -> Result<Transition, PortError> {
    let mut next = run.clone();
    let mut events = Vec::new();
    let mut system_logs = Vec::new();
    let mut end_with: Option<Outcome> = None;
    let mut enter_in_progress = false;

    match command {
        RunCommand::Patch(patch) => {
            patch.check_lengths()?;
            if run.is_terminal() {
                // A retried patch that changes nothing succeeds, so clients can retry safely.
                apply_patch_fields(&mut next, &patch);
                let same_status = patch
                    .status
                    .is_none_or(|s| s.outcome().status() == run.status());
                if same_status && next == *run {
                    return Ok(Transition {
                        run: next,
                        events,
                        system_logs,
                    });
                }
                return Err(exhausted(run));
            }
            if let Some(status) = patch.status {
                if run.synchronized {
                    return Err(synchronized_error(run));
                }
                if run.state == RunState::WaitingForApproval && status == FinalStatus::Success {
                    return Err(PortError::invalid(format!(
                        "run {} is waiting for approval: it can only be cancelled with status FAILURE",
                        run.id
                    )));
                }
                end_with = Some(status.outcome());
            }
            apply_patch_fields(&mut next, &patch);
        }
        RunCommand::AddLog {
            message: _,
            termination_status,
            status_label,
        } => {
            if let Some(label) = &status_label {
                check_length("statusLabel", label, MAX_STATUS_LABEL_CHARS)?;
            }
            if run.is_terminal() {
                return Err(exhausted(run));
            }
            if let Some(status) = termination_status {
                if run.synchronized {
                    return Err(synchronized_error(run));
                }
                if run.state == RunState::WaitingForApproval {
                    return Err(PortError::invalid(format!(
                        "run {} is waiting for approval and cannot be terminated by a log",
                        run.id
                    )));
                }
                end_with = Some(status.outcome());
            }
            if let Some(label) = status_label {
                next.status_label = Some(label);
            }
        }
        RunCommand::Approve {
            user_id,
            description,
            by_organization,
        } => {
            if let Some(description) = &description {
                check_length("description", description, MAX_APPROVAL_DESCRIPTION_CHARS)?;
            }
            if run.state != RunState::WaitingForApproval {
                return Err(not_waiting(run));
            }
            if !by_organization && !run.approval_policy.may_approve(&user_id) {
                return Err(PortError::new(
                    ErrorKind::MissingPermissions,
                    format!("{user_id} is not an approver of run {}", run.id),
                ));
            }
            next.votes.retain(|v| v.user_id != user_id);
            next.votes.push(Vote {
                user_id,
                decision: Decision::Approved,
                description,
                at: now,
            });
            let approved = match &run.approval_policy {
                _ if by_organization => true,
                ApprovalPolicy::NotRequired | ApprovalPolicy::Any { .. } => true,
                ApprovalPolicy::All { approvers } => approvers.iter().all(|a| {
                    next.votes
                        .iter()
                        .any(|v| &v.user_id == a && v.decision == Decision::Approved)
                }),
            };
            enter_in_progress = approved;
        }
        RunCommand::Decline {
            user_id,
            description,
            by_organization,
        } => {
            if let Some(description) = &description {
                check_length("description", description, MAX_APPROVAL_DESCRIPTION_CHARS)?;
            }
            if run.state != RunState::WaitingForApproval {
                return Err(not_waiting(run));
            }
            if !by_organization && !run.approval_policy.may_approve(&user_id) {
                return Err(PortError::new(
                    ErrorKind::MissingPermissions,
                    format!("{user_id} is not an approver of run {}", run.id),
                ));
            }
            next.votes.retain(|v| v.user_id != user_id);
            next.votes.push(Vote {
                user_id,
                decision: Decision::Declined,
                description,
                at: now,
            });
            end_with = Some(Outcome::Declined);
        }
        RunCommand::Withdraw { by, reason } => {
            if let Some(reason) = &reason {
                check_length("reason", reason, MAX_APPROVAL_DESCRIPTION_CHARS)?;
            }
            // Checked here, not by the caller beforehand: an approval that lands between
            // the two must never be undone by a withdrawal.
            if run.state != RunState::WaitingForApproval {
                return Err(not_waiting(run));
            }
            next.status_label = Some(format!("Withdrawn by {by}"));
            if let Some(reason) = reason {
                next.summary = Some(reason);
            }
            end_with = Some(Outcome::Failure);
        }
        RunCommand::SetResponse { response } => {
            let size = serde_json::to_vec(&response).map_or(usize::MAX, |json| json.len());
            if size > MAX_RESPONSE_BYTES {
                return Err(PortError::invalid(format!(
                    "response: must be at most {MAX_RESPONSE_BYTES} bytes of JSON; this one has {size}"
                )));
            }
            if run.is_terminal() {
                // A retried report that changes nothing succeeds, as a retried patch does.
                if run.response.as_ref() == Some(&response) {
                    return Ok(Transition {
                        run: next,
                        events,
                        system_logs,
                    });
                }
                return Err(exhausted(run));
            }
            if run.state != RunState::InProgress {
                return Err(PortError::invalid(format!(
                    "run {} is waiting for approval: it has no response yet",
                    run.id
                )));
            }
            next.response = Some(response);
        }
        RunCommand::SynchronizedResponse {
            status_code,
            response,
        } => {
            if run.is_terminal() {
                return Err(exhausted(run));
            }
            if run.state != RunState::InProgress {
                return Err(PortError::invalid(format!(
                    "run {} was not dispatched",
                    run.id
                )));
            }
            next.response = Some(response);
            if (200..300).contains(&status_code) {
                end_with = Some(Outcome::Success);
            } else {
                next.summary = Some(format!(
                    "Failed to invoke the webhook with status code: {status_code}"
                ));
                end_with = Some(Outcome::Failure);
            }
        }
        RunCommand::DeliveryExhausted { reason } => {
            if run.is_terminal() {
                return Err(exhausted(run));
            }
            let summary = format!("Webhook delivery failed: {reason}");
            system_logs.push(summary.clone());
            next.summary = Some(summary);
            end_with = Some(Outcome::Failure);
        }
        RunCommand::TimedOut => {
            if run.is_terminal() {
                return Err(exhausted(run));
            }
            next.status_label = Some("Timed out".to_owned());
            system_logs.push("Run timed out: no final status was reported in time".to_owned());
            end_with = Some(Outcome::Failure);
        }
    }

    if enter_in_progress {
        next.state = RunState::InProgress;
        events.push(RunEvent::StatusChanged {
            from: run.status(),
            to: RunStatus::InProgress,
        });
        events.push(RunEvent::Dispatch);
    }
    if let Some(outcome) = end_with {
        next.state = RunState::Ended { outcome, at: now };
        events.push(RunEvent::StatusChanged {
            from: run.status(),
            to: outcome.status(),
        });
    }
    if next != *run {
        next.updated_at = now;
        next.updated_by = actor.to_owned();
        next.version = run.version + 1;
    }
    Ok(Transition {
        run: next,
        events,
        system_logs,
    })
}

/// Who portd's own run changes and log lines are attributed to (delivery outcomes,
/// timeouts, failed renders).
pub const SYSTEM_ACTOR: &str = "portd";

/// The wire shape version (`?version=v1|v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireVersion {
    #[default]
    V1,
    V2,
}

impl WireVersion {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "v1" => Some(Self::V1),
            "v2" => Some(Self::V2),
            _ => None,
        }
    }
}

fn reference_v1(r: &Reference) -> Value {
    json!({ "identifier": r.identifier, "title": r.title })
}

fn reference_v2(r: &Reference) -> Value {
    json!({ "identifier": r.identifier, "title": r.title, "icon": r.icon, "deleted": r.deleted })
}

fn vote_json(v: &Vote) -> Value {
    // Port's schema types `description` as a string, so an absent reason is omitted.
    let mut m = Map::new();
    if let Some(description) = &v.description {
        m.insert("description".into(), json!(description));
    }
    m.insert("userId".into(), json!(v.user_id));
    m.insert("state".into(), json!(v.decision.as_str()));
    Value::Object(m)
}

impl Run {
    /// The legacy shape the seed shows: `action` is the identifier, `endedAt` is null
    /// while running, and `relatedEntityExists` / `relatedBlueprintExists` replace
    /// the `deleted` flags.
    /// The payload as runs show it: without what portd keeps for rendering secrets when
    /// the invocation is sent ([`crate::invocation::DEFERRED_KEY`]).
    pub fn wire_payload(&self) -> Value {
        match &self.payload {
            None => Value::Null,
            Some(Value::Object(map)) if map.contains_key(crate::invocation::DEFERRED_KEY) => {
                let mut map = map.clone();
                map.remove(crate::invocation::DEFERRED_KEY);
                Value::Object(map)
            }
            Some(payload) => payload.clone(),
        }
    }

    pub fn to_v1_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("status".into(), json!(self.status().as_str()));
        if let Some(bp) = &self.blueprint {
            m.insert("blueprint".into(), reference_v1(bp));
        }
        if let Some(entity) = &self.entity {
            m.insert("entity".into(), reference_v1(entity));
        }
        m.insert("action".into(), json!(self.action.identifier));
        m.insert("endedAt".into(), json!(self.ended_at()));
        m.insert("source".into(), json!(self.source.as_str()));
        if let Some(label) = &self.status_label {
            m.insert("statusLabel".into(), json!(label));
        }
        if !self.link.is_empty() {
            m.insert("link".into(), json!(self.link));
        }
        if let Some(summary) = &self.summary {
            m.insert("summary".into(), json!(summary));
        }
        if let Some(id) = &self.external_run_id {
            m.insert("externalRunId".into(), json!(id));
        }
        if let Some(message) = &self.message {
            m.insert("message".into(), Value::Object(message.clone()));
        }
        if self.approval_policy != ApprovalPolicy::NotRequired {
            m.insert("requiredApproval".into(), self.required_approval.clone());
            m.insert(
                "approval".into(),
                self.approval().map_or(Value::Null, vote_json),
            );
        }
        if let Some(response) = &self.response {
            m.insert("response".into(), response.clone());
        }
        m.insert(
            "relatedEntityExists".into(),
            json!(self.entity.as_ref().is_some_and(|e| !e.deleted)),
        );
        m.insert(
            "relatedBlueprintExists".into(),
            json!(self.blueprint.as_ref().is_some_and(|b| !b.deleted)),
        );
        m.insert("properties".into(), Value::Object(self.properties.clone()));
        m.insert("createdAt".into(), json!(self.created_at));
        m.insert("updatedAt".into(), json!(self.updated_at));
        m.insert("createdBy".into(), json!(self.created_by));
        m.insert("updatedBy".into(), json!(self.updated_by));
        if let Some(by) = &self.impersonated_by {
            m.insert("impersonatedBy".into(), json!(by));
        }
        Value::Object(m)
    }

    /// The current shape (Port's OpenAPI run schema): `action`, `blueprint` and
    /// `entity` are objects with `deleted` flags.
    pub fn to_v2_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("status".into(), json!(self.status().as_str()));
        m.insert("statusLabel".into(), json!(self.status_label));
        m.insert(
            "action".into(),
            json!({
                "identifier": self.action.identifier,
                "title": self.action.title,
                "icon": self.action.icon,
                "deleted": self.action.deleted,
            }),
        );
        if let Some(bp) = &self.blueprint {
            m.insert("blueprint".into(), reference_v2(bp));
        }
        if let Some(entity) = &self.entity {
            m.insert("entity".into(), reference_v2(entity));
        }
        m.insert("properties".into(), Value::Object(self.properties.clone()));
        m.insert("source".into(), json!(self.source.as_str()));
        m.insert("requiredApproval".into(), self.required_approval.clone());
        m.insert(
            "approval".into(),
            self.approval().map_or(Value::Null, vote_json),
        );
        m.insert("link".into(), json!(self.link));
        if let Some(summary) = &self.summary {
            m.insert("summary".into(), json!(summary));
        }
        if let Some(id) = &self.external_run_id {
            m.insert("externalRunId".into(), json!(id));
        }
        if let Some(message) = &self.message {
            m.insert("message".into(), Value::Object(message.clone()));
        }
        m.insert("payload".into(), self.wire_payload());
        if let Some(response) = &self.response {
            m.insert("response".into(), response.clone());
        }
        if let Some(ended) = self.ended_at() {
            m.insert("endedAt".into(), json!(ended));
        }
        m.insert("createdAt".into(), json!(self.created_at));
        m.insert("updatedAt".into(), json!(self.updated_at));
        m.insert("createdBy".into(), json!(self.created_by));
        m.insert("updatedBy".into(), json!(self.updated_by));
        if let Some(by) = &self.impersonated_by {
            m.insert("impersonatedBy".into(), json!(by));
        }
        Value::Object(m)
    }

    /// About how many bytes this run's JSON takes (its v2 view), for bounding pages.
    pub fn approximate_json_size(&self) -> usize {
        serde_json::to_vec(&self.to_json(WireVersion::V2)).map_or(usize::MAX / 2, |json| json.len())
    }

    pub fn to_json(&self, version: WireVersion) -> Value {
        match version {
            WireVersion::V1 => self.to_v1_json(),
            WireVersion::V2 => self.to_v2_json(),
        }
    }
}
