//! Approvals: an approver's decision on a run waiting for approval, and who decided
//! (and, on request, who still may).

use super::{Caller, Services};
use crate::error::PortError;
use crate::run::{ApprovalPolicy, Decision, Run, RunStatus};

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

fn designated_approvers(run: &Run) -> &[String] {
    match &run.approval_policy {
        ApprovalPolicy::NotRequired => &[],
        ApprovalPolicy::Any { approvers } | ApprovalPolicy::All { approvers } => approvers,
    }
}

impl Services {
    /// The caller approves or declines one of the organization's runs.
    pub async fn decide(
        &self,
        caller: &Caller,
        run_id: &str,
        decision: Decision,
        description: Option<String>,
    ) -> Result<Run, PortError> {
        match decision {
            Decision::Approved => self.approve(caller, run_id, description).await,
            Decision::Declined => self.decline(caller, run_id, description).await,
        }
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
}
