//! Runs pulled by runners instead of pushed as webhooks: Port's agent (`agent: true`
//! WEBHOOK runs, under the installation `_PORT_EXEC_AGENT`), Ocean (INTEGRATION_ACTION
//! runs of its installation) and portd's own pull-mode runners. They claim runs
//! (`claim-pending`), acknowledge them (`ack`) and report a synchronized run's answer
//! (`PATCH …/response`).

use serde_json::Value;

use super::{Caller, Services};
use crate::action::InvocationKind;
use crate::error::{ErrorKind, PortError};
use crate::id::{ActionIdentifier, RunId};
use crate::ports::{AgentClaim, DeliveryMode, DeliveryState};
use crate::run::{Run, RunCommand, RunState};
use crate::time::Timestamp;

/// The installation Port's agent claims under: it takes unbound WEBHOOK runs only (its
/// processor reads `payload.url` and `payload.body`; any other run would fail there).
pub const PORT_AGENT_INSTALLATION: &str = "_PORT_EXEC_AGENT";

/// Runs one claim hands out at most, whatever `limit` asks (Ocean asks up to 1000).
pub const MAX_RUNS_PER_CLAIM: u32 = 100;
/// Action identifiers one claim may exclude.
pub const MAX_EXCLUDED_ACTIONS: usize = 100;

/// A claim for runs (`POST /v1/actions/runs/claim-pending`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// `_PORT_EXEC_AGENT` (Port's agent), an installation's identifier (Ocean, a runner
    /// naming one), or none (portd's runners: every unbound run).
    pub installation_id: Option<String>,
    /// Only runs whose evaluated invocation has this `type`.
    pub invocation_type: Option<InvocationKind>,
    /// Runs of these actions are left for later claims.
    pub exclude: Vec<ActionIdentifier>,
    /// At most this many runs; more than [`MAX_RUNS_PER_CLAIM`] is served as that many.
    pub limit: u32,
    pub visibility_ms: i64,
}

/// A claimed run and until when it stays claimed without an ack.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedRun {
    pub run: Run,
    pub claimed_until: Timestamp,
}

/// Who holds a runner's claims: its client id.
fn claim_owner(caller: &Caller) -> String {
    format!("runner:{}", caller.user_id())
}

impl Services {
    /// Leases the runs `request` selects, oldest first. Port's agent
    /// ([`PORT_AGENT_INSTALLATION`]) gets unbound WEBHOOK runs only; another named
    /// installation gets the runs bound to it (an INTEGRATION_ACTION's
    /// `installationId`); a runner naming none gets every unbound run. Runs that ended
    /// before anyone claimed them are dropped from the queue, not handed out.
    pub async fn claim_runs(
        &self,
        caller: &Caller,
        request: &ClaimRequest,
    ) -> Result<Vec<ClaimedRun>, PortError> {
        caller.require_admin("claim runs")?;
        if request.exclude.len() > MAX_EXCLUDED_ACTIONS {
            return Err(PortError::invalid(format!(
                "body.exclude: at most {MAX_EXCLUDED_ACTIONS} action identifiers"
            )));
        }
        let (installation_id, invocation_type) = match request.installation_id.as_deref() {
            Some(PORT_AGENT_INSTALLATION) => match request.invocation_type {
                None | Some(InvocationKind::Webhook) => (None, Some(InvocationKind::Webhook)),
                // Port's agent takes nothing but WEBHOOK runs.
                Some(_) => return Ok(Vec::new()),
            },
            installation => (installation, request.invocation_type),
        };
        let owner = claim_owner(caller);
        let now = self.clock.now();
        let claim = AgentClaim {
            owner: &owner,
            installation_id,
            invocation_type,
            exclude_actions: &request.exclude,
            now,
            visibility_ms: request.visibility_ms,
            limit: request.limit.clamp(1, MAX_RUNS_PER_CLAIM),
        };
        let claimed = self
            .store
            .claim_agent_deliveries(&caller.org_id, &claim)
            .await?;
        let mut runs = Vec::with_capacity(claimed.len());
        for delivery in claimed {
            match self.store.get_run(&caller.org_id, &delivery.run_id).await? {
                Some(mut run) if run.state == RunState::InProgress => {
                    // A runner is the sender here: parts reading `.secrets` are rendered
                    // for it now, in what it receives only, never in what is stored.
                    if let Some(payload) = run
                        .payload
                        .as_ref()
                        .filter(|p| crate::invocation::deferred_parts(p).is_some())
                    {
                        match self.sendable(&caller.org_id, payload).await {
                            Ok(sendable) => run.payload = Some(sendable.request.into_owned()),
                            Err(e) => {
                                let reason = super::secrets::unrenderable(&e);
                                self.apply(
                                    &caller.org_id,
                                    run.id.as_str(),
                                    RunCommand::DeliveryExhausted { reason },
                                    crate::run::SYSTEM_ACTOR,
                                )
                                .await?;
                                self.store
                                    .finish(&delivery.id, DeliveryState::Failed, now)
                                    .await?;
                                continue;
                            }
                        }
                    }
                    runs.push(ClaimedRun {
                        run,
                        claimed_until: delivery.lease_until.unwrap_or(now),
                    });
                }
                // It ended before a runner took it (cancelled, timed out): nobody waits for it.
                _ => {
                    self.store
                        .finish(&delivery.id, DeliveryState::Failed, now)
                        .await?;
                }
            }
        }
        Ok(runs)
    }

    /// Acknowledges claimed (or not yet claimed) runs so they are never handed out
    /// again; returns how many were still waiting (Port's agent skips a run it did not
    /// newly acknowledge). Ids that cannot be runs match none.
    pub async fn ack_runs(&self, caller: &Caller, run_ids: &[String]) -> Result<u64, PortError> {
        caller.require_admin("acknowledge runs")?;
        let runs: Vec<RunId> = run_ids
            .iter()
            .filter_map(|id| RunId::parse(id).ok())
            .collect();
        Ok(self
            .store
            .ack_agent_deliveries(&caller.org_id, &runs, self.clock.now())
            .await?)
    }

    /// Acknowledges one run, Ocean's way: the first acknowledgement wins, even after
    /// its claim expired (Ocean acks just before it executes, which may be long after
    /// the claim); any later one is 409 `conflict`, which Ocean takes as "someone else
    /// has it". 404 when the run does not exist.
    pub async fn ack_run(&self, caller: &Caller, run_id: &str) -> Result<(), PortError> {
        caller.require_admin("acknowledge runs")?;
        if self.ack_runs(caller, &[run_id.to_owned()]).await? > 0 {
            return Ok(());
        }
        let run = self.get_run(caller, run_id).await?;
        let deliveries = self
            .store
            .deliveries_of_run(&caller.org_id, &run.id)
            .await?;
        let pulled = deliveries
            .iter()
            .map(|(delivery, _)| delivery)
            .rfind(|delivery| delivery.mode == DeliveryMode::Agent);
        let why = match pulled {
            Some(delivery) if delivery.state == DeliveryState::Delivered => {
                "was already acknowledged"
            }
            Some(_) => "ended before a runner took it",
            None if run.state == RunState::WaitingForApproval => "is waiting for approval",
            None => "is not waiting for a runner (portd delivers it itself)",
        };
        Err(PortError::new(
            ErrorKind::Conflict,
            format!("run {run_id} {why}"),
        ))
    }

    /// Stores what a run's backend answered (`PATCH …/response`): Port's agent reports
    /// a synchronized run's answer, then sets the status itself.
    pub async fn report_response(
        &self,
        caller: &Caller,
        run_id: &str,
        response: Value,
    ) -> Result<Run, PortError> {
        caller.require_admin("report run responses")?;
        Ok(self
            .apply(
                &caller.org_id,
                run_id,
                RunCommand::SetResponse { response },
                caller.user_id(),
            )
            .await?
            .0)
    }
}
