//! What a delivery writes to its run: portd's log lines about attempts, the failure of
//! a delivery that cannot succeed, a synchronized run's answer. Like every run write
//! they go through [`crate::run::transition`] (by [`Services::apply`]), on portd's
//! behalf ([`SYSTEM_ACTOR`]), and none reopens a run that already ended: its own
//! outcome (its backend's report, a timeout) stands.

use super::Services;
use crate::error::{ErrorKind, PortError};
use crate::id::{OrgId, RunId};
use crate::run::{RunCommand, SYSTEM_ACTOR};

impl Services {
    /// Applies `command` to a run of `org` on portd's behalf. `Ok(false)` when the run
    /// is gone or has ended, so nothing was applied.
    pub async fn apply_for_delivery(
        &self,
        org: &OrgId,
        run: &RunId,
        command: RunCommand,
    ) -> Result<bool, PortError> {
        match self.apply(org, run.as_str(), command, SYSTEM_ACTOR).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind, ErrorKind::RunExhausted | ErrorKind::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds portd's `message` to the log of a run still in progress. `Ok(false)` when
    /// the run is gone or has ended.
    pub async fn log_for_delivery(
        &self,
        org: &OrgId,
        run: &RunId,
        message: &str,
    ) -> Result<bool, PortError> {
        let command = RunCommand::AddLog {
            message: message.to_owned(),
            termination_status: None,
            status_label: None,
        };
        self.apply_for_delivery(org, run, command).await
    }
}
