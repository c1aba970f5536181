//! How a run's invocation reaches its backend, as the caller sees and steers it: the
//! run's deliveries and their attempts, a manual redelivery, and a runner's heartbeat on
//! the run it claimed (claims and acks are [`super::pull`]'s).

use super::{Caller, Services};
use crate::error::{ErrorKind, PortError};
use crate::ports::{Delivery, DeliveryAttempt, Notice};
use crate::run::RunState;
use crate::time::Timestamp;

impl Services {
    /// The deliveries of one of the caller's runs, oldest first, each with its attempts.
    pub async fn run_deliveries(
        &self,
        caller: &Caller,
        run_id: &str,
    ) -> Result<Vec<(Delivery, Vec<DeliveryAttempt>)>, PortError> {
        let run = self.get_run(caller, run_id).await?;
        Ok(self
            .store
            .deliveries_of_run(&caller.org_id, &run.id)
            .await?)
    }

    /// Makes the run's latest delivery due now (the same `webhook-id`) and wakes the
    /// delivery worker. Only while the run is in progress: a run waiting for approval
    /// is 422 `invalid_request` (it was never delivered), an ended one 422
    /// `run_exhausted`; a run without a delivery is 404.
    pub async fn redeliver(&self, caller: &Caller, run_id: &str) -> Result<(), PortError> {
        caller.require_admin("redeliver runs")?;
        let run = self.get_run(caller, run_id).await?;
        match run.state {
            RunState::InProgress => {}
            RunState::WaitingForApproval => {
                return Err(PortError::new(
                    ErrorKind::InvalidRequest,
                    format!("run {run_id} is waiting for approval: it has not been delivered yet"),
                ));
            }
            RunState::Ended { .. } => {
                return Err(PortError::new(
                    ErrorKind::RunExhausted,
                    format!(
                        "run {run_id} has already ended with status {}: there is nothing to redeliver",
                        run.status()
                    ),
                ));
            }
        }
        if !self
            .store
            .redeliver(&caller.org_id, &run.id, self.now())
            .await?
        {
            return Err(PortError::not_found(format!("a delivery of run {run_id}")));
        }
        self.notifier.notify(Notice::DeliveryReady);
        Ok(())
    }

    /// Extends the live claim on one of the caller's runs to now + `extend_ms` and
    /// answers until when it now holds; 404 when the run has no live claim (never
    /// claimed, acknowledged, or its visibility already expired).
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        run_id: &str,
        extend_ms: i64,
    ) -> Result<Timestamp, PortError> {
        caller.require_admin("claim runs")?;
        let run = self.get_run(caller, run_id).await?;
        let now = self.now();
        if !self
            .store
            .heartbeat_agent_delivery(&caller.org_id, &run.id, now, extend_ms)
            .await?
        {
            return Err(PortError::not_found(format!(
                "a live claim on run {run_id}"
            )));
        }
        Ok(now.plus_millis(extend_ms))
    }
}
