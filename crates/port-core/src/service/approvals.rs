//! Approvals: an approver's decision on a run waiting for approval, who decided (and,
//! on request, who still may), a requester's withdrawal, and the notification sent
//! when a run starts waiting (`approvalNotification` of type webhook).
//!
//! Who may decide: organization credentials always (their approval completes the run
//! whatever its policy, unless the run lists the credential among its approvers: then
//! it votes as one); a person when the action's `approve` permission admits them
//! (for an `ALL` run with designated approvers: when they are one), never on a run
//! they requested unless the permission names them in `users`.

use serde_json::{Map, Value, json};

use super::access::{self, AccessCache};
use super::{Caller, Services};
use crate::access::ActionPermissions;
use crate::action::Action;
use crate::error::PortError;
use crate::id::DeliveryId;
use crate::ports::{DeliveryMode, NewDelivery};
use crate::run::{ApprovalPolicy, Decision, Run, RunCommand, RunStatus};
use crate::time::Timestamp;

/// One line of a run's approvers (`GET …/approvers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub user_id: String,
    /// `APPROVED`, `DECLINED`, or `PENDING` for a designated approver yet to decide.
    pub state: &'static str,
    pub description: Option<String>,
}

/// The state of an approver who has not decided yet.
pub const PENDING_APPROVER: &str = "PENDING";

/// Most characters of a run's inputs a Slack notification quotes (a section's text
/// holds at most 3000).
const SLACK_INPUTS_CHARS: usize = 2_500;

fn designated_approvers(run: &Run) -> &[String] {
    match &run.approval_policy {
        ApprovalPolicy::NotRequired => &[],
        ApprovalPolicy::Any { approvers } | ApprovalPolicy::All { approvers } => approvers,
    }
}

/// A webhook notification's settings, as checked when the action was saved.
struct NotificationTarget<'a> {
    url: &'a str,
    slack: bool,
}

/// Checks an action's `approvalNotification`: `{"type": "email"}` (the default type;
/// portd sends no e-mail) or `{"type": "webhook", "url": <http(s) URL>, "format":
/// "json" | "slack"}` (`format` defaults to json, as in Port's schema).
pub(crate) fn check_approval_notification(value: Option<&Value>) -> Result<(), PortError> {
    notification_target(value).map(|_| ())
}

fn notification_target(value: Option<&Value>) -> Result<Option<NotificationTarget<'_>>, PortError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let invalid = |m: &str| PortError::invalid(format!("approvalNotification{m}"));
    let Value::Object(map) = value else {
        return Err(invalid(": must be an object"));
    };
    match map.get("type").map(|t| t.as_str()) {
        None | Some(Some("email")) => {
            if let Some(key) = map.keys().find(|k| *k != "type") {
                return Err(invalid(&format!(
                    ".{key}: is not a field of an e-mail notification (type)"
                )));
            }
            Ok(None)
        }
        Some(Some("webhook")) => {
            if let Some(key) = map
                .keys()
                .find(|k| !["type", "url", "format"].contains(&k.as_str()))
            {
                return Err(invalid(&format!(
                    ".{key}: is not a field of a webhook notification (type, url, format)"
                )));
            }
            let url = match map.get("url").and_then(Value::as_str) {
                Some(url)
                    if url.len() <= 2048
                        && url::Url::parse(url)
                            .is_ok_and(|u| matches!(u.scheme(), "http" | "https")) =>
                {
                    url
                }
                _ => {
                    return Err(invalid(
                        ".url: a webhook notification needs an http or https URL (at most 2048 bytes)",
                    ));
                }
            };
            let slack = match map.get("format").map(|f| f.as_str()) {
                None | Some(Some("json")) => false,
                Some(Some("slack")) => true,
                _ => return Err(invalid(".format: must be json or slack")),
            };
            Ok(Some(NotificationTarget { url, slack }))
        }
        _ => Err(invalid(".type: must be email or webhook")),
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The notification's message: Port-style JSON, or a Slack message (`text` and
/// `blocks`) naming the action, the requester, the inputs and the run.
fn notification_body(action: &Action, run: &Run, approvers: &[String], slack: bool) -> Value {
    let def = &action.definition;
    let title = def.title.as_deref().unwrap_or(def.identifier.as_str());
    if !slack {
        return json!({
            "type": "APPROVAL_REQUESTED",
            "run": run.to_v2_json(),
            "action": { "identifier": def.identifier.as_str(), "title": def.title },
            "approvers": approvers,
            "requestedBy": run.created_by,
            "approveUrl": Value::Null,
        });
    }
    let mut inputs = serde_json::to_string_pretty(&Value::Object(run.properties.clone()))
        .unwrap_or_else(|_| "{}".to_owned());
    if inputs.chars().count() > SLACK_INPUTS_CHARS {
        inputs = inputs.chars().take(SLACK_INPUTS_CHARS).collect::<String>() + "\n…";
    }
    let text = format!(
        "Approval requested: {} (run {}) by {}",
        title, run.id, run.created_by
    );
    json!({
        "text": slack_escape(&text),
        "blocks": [
            {
                "type": "header",
                "text": { "type": "plain_text", "text": "Approval requested" },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": format!(
                        "*Action:* {}\n*Requested by:* {}\n*Run:* `{}`",
                        slack_escape(title),
                        slack_escape(&run.created_by),
                        run.id
                    ),
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": format!("*Inputs:*\n```{}```", slack_escape(&inputs)),
                },
            },
        ],
    })
}

impl Services {
    /// The caller approves or declines one of the organization's runs: 404 when they
    /// may not see it, 403 when they may not decide on it, 422 when it does not wait
    /// for approval. Recorded in the audit trail.
    pub async fn decide(
        &self,
        caller: &Caller,
        run_id: &str,
        decision: Decision,
        description: Option<String>,
    ) -> Result<Run, PortError> {
        let run = self.get_run(caller, run_id).await?;
        if let Some(person) = caller.principal.person() {
            self.check_decide(caller, person, &run, &mut AccessCache::default())
                .await?;
        }
        // A credential the run lists among its approvers (our older `approvers`
        // extension) votes as that approver; any other decides alone.
        let by_organization = caller.principal.is_machine()
            && !run
                .approval_policy
                .approvers()
                .iter()
                .any(|a| a == caller.user_id());
        let user_id = caller.user_id().to_owned();
        let command = match decision {
            Decision::Approved => RunCommand::Approve {
                user_id,
                description: description.clone(),
                by_organization,
            },
            Decision::Declined => RunCommand::Decline {
                user_id,
                description: description.clone(),
                by_organization,
            },
        };
        let (run, _) = self
            .apply(&caller.org_id, run_id, command, caller.user_id())
            .await?;
        let action = match decision {
            Decision::Approved => "APPROVE",
            Decision::Declined => "DECLINE",
        };
        self.record_audit(self.run_audit_entry(
            caller,
            &run.id,
            action,
            json!({ "description": description, "status": run.status().as_str() }),
        ))
        .await?;
        Ok(run)
    }

    /// Takes back a run still waiting for approval (its requester, an Admin or an
    /// organization credential): it ends `FAILURE`, labelled "Withdrawn by <who>", with
    /// the reason as its summary. 404 when the caller may not see it, 403 when it is
    /// someone else's, 422 `run_not_waiting_for_approval` once it no longer waits.
    pub async fn withdraw(
        &self,
        caller: &Caller,
        run_id: &str,
        reason: Option<String>,
    ) -> Result<Run, PortError> {
        let run = self.get_run(caller, run_id).await?;
        if !caller.principal.is_admin() && run.created_by != caller.user_id() {
            return Err(access::forbidden(format!(
                "only the requester of run {run_id}, an Admin or an organization credential may withdraw it"
            )));
        }
        let command = RunCommand::Withdraw {
            by: caller.user_id().to_owned(),
            reason: reason.clone(),
        };
        let (run, _) = self
            .apply(&caller.org_id, run_id, command, caller.user_id())
            .await?;
        self.record_audit(self.run_audit_entry(
            caller,
            &run.id,
            "WITHDRAW",
            json!({ "reason": reason }),
        ))
        .await?;
        Ok(run)
    }

    /// Who decided on a run, in the order they did; with `include_pending`, while the
    /// run waits for approval, then the designated approvers who have not decided.
    pub async fn run_approvers(
        &self,
        caller: &Caller,
        run_id: &str,
        include_pending: bool,
    ) -> Result<Vec<Approver>, PortError> {
        let run = self.get_run(caller, run_id).await?;
        let mut approvers: Vec<Approver> = run
            .votes
            .iter()
            .map(|vote| Approver {
                user_id: vote.user_id.clone(),
                state: vote.decision.as_str(),
                description: vote.description.clone(),
            })
            .collect();
        if include_pending && run.status() == RunStatus::WaitingForApproval {
            for user in designated_approvers(&run) {
                if !run.votes.iter().any(|v| &v.user_id == user) {
                    approvers.push(Approver {
                        user_id: user.clone(),
                        state: PENDING_APPROVER,
                        description: None,
                    });
                }
            }
        }
        Ok(approvers)
    }

    /// The approval notification of a run just created waiting for approval, when its
    /// action has a webhook `approvalNotification`: a delivery of mode
    /// `APPROVAL_NOTIFICATION` whose request is `{url, format, body}`, to be written
    /// with the run. Its URL passes the destination policy, as webhooks' do.
    pub(crate) async fn approval_notification(
        &self,
        action: &Action,
        run: &Run,
        permissions: &ActionPermissions,
        now: Timestamp,
    ) -> Result<Option<NewDelivery>, PortError> {
        let Some(target) = notification_target(action.definition.approval_notification.as_ref())?
        else {
            return Ok(None);
        };
        self.destinations.check(target.url).await.map_err(|mut e| {
            e.message = format!("approvalNotification.url: {}", e.message);
            e
        })?;
        let approvers = match &run.approval_policy {
            ApprovalPolicy::All { approvers } if !approvers.is_empty() => approvers.clone(),
            _ => {
                self.named_approvers(&run.org_id, permissions, &run.created_by)
                    .await?
            }
        };
        let mut request = Map::new();
        request.insert("url".into(), json!(target.url));
        request.insert(
            "format".into(),
            json!(if target.slack { "slack" } else { "json" }),
        );
        request.insert(
            "body".into(),
            notification_body(action, run, &approvers, target.slack),
        );
        Ok(Some(NewDelivery {
            id: self.ids.next::<DeliveryId>(),
            org_id: run.org_id.clone(),
            run_id: run.id.clone(),
            mode: DeliveryMode::ApprovalNotification,
            request: Value::Object(request),
            synchronized: false,
            installation_id: None,
            created_at: now,
            next_attempt_at: now,
        }))
    }
}
