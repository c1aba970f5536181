//! Run timeouts: runs left `IN_PROGRESS` past their timeout end `FAILURE` ("Timed
//! out"), so that a backend that never reports does not leave a run running for good.
//! The delivery crate's reaper calls [`Services::time_out_stale_runs`] on a schedule.

use std::collections::HashMap;
use std::time::Duration;

use super::Services;
use crate::error::{ErrorKind, StoreError};
use crate::id::{ActionIdentifier, OrgId};
use crate::run::{Decision, Run, RunCommand, SYSTEM_ACTOR};
use crate::time::Timestamp;

/// The shortest timeout there can be (`timeoutSeconds` is a positive integer); runs
/// younger than this are never looked at.
const MIN_TIMEOUT_MS: i64 = 1000;
/// Runs read per query.
const PAGE: u32 = 500;
/// Queries per pass at most, so one pass stays bounded.
const MAX_PAGES: usize = 20;

impl Services {
    /// One pass: every `IN_PROGRESS` run whose timeout has passed becomes `FAILURE`
    /// ("Timed out"). A run's timeout is its action's `timeoutSeconds`, else
    /// `run_timeout_default`, else none; it counts from when the run entered
    /// `IN_PROGRESS` (creation, or the approval that let it go). Returns how many runs
    /// were timed out.
    ///
    /// The store hands out the oldest in-progress runs first, a page at a time; a pass
    /// moves to the next page only while whole pages time out. Runs without a timeout
    /// are skipped, but more than 500 such runs older than the timed-out ones would
    /// hide the latter until they end.
    pub async fn time_out_stale_runs(
        &self,
        run_timeout_default: Option<Duration>,
    ) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut timeouts: HashMap<(OrgId, ActionIdentifier), Option<Duration>> = HashMap::new();
        let mut reaped = 0;
        for _ in 0..MAX_PAGES {
            let runs = self
                .store
                .in_progress_runs_created_before(now.plus_millis(-MIN_TIMEOUT_MS), PAGE)
                .await?;
            let full_page = runs.len() == PAGE as usize;
            let mut all_reaped = true;
            for run in runs {
                let key = (run.org_id.clone(), run.action.identifier.clone());
                let timeout = match timeouts.get(&key) {
                    Some(timeout) => *timeout,
                    None => {
                        let action = self
                            .store
                            .get_action(&run.org_id, &run.action.identifier)
                            .await?;
                        let timeout = action
                            .and_then(|a| a.definition.timeout_seconds)
                            .map(Duration::from_secs)
                            .or(run_timeout_default);
                        timeouts.insert(key, timeout);
                        timeout
                    }
                };
                let due = timeout.is_some_and(|t| {
                    in_progress_since(&run)
                        .plus_millis(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
                        <= now
                });
                if !due {
                    all_reaped = false;
                    continue;
                }
                match self
                    .apply(
                        &run.org_id,
                        run.id.as_str(),
                        RunCommand::TimedOut,
                        SYSTEM_ACTOR,
                    )
                    .await
                {
                    Ok(_) => reaped += 1,
                    // It ended meanwhile: its own outcome stands.
                    Err(e) if e.kind == ErrorKind::RunExhausted => {}
                    // Left for the next pass.
                    Err(_) => all_reaped = false,
                }
            }
            if !(full_page && all_reaped) {
                break;
            }
        }
        Ok(reaped)
    }
}

/// When the run entered `IN_PROGRESS`: at the approval that completed its approvals
/// (votes are only taken while waiting, so that is the latest one), else at creation.
fn in_progress_since(run: &Run) -> Timestamp {
    run.votes
        .iter()
        .filter(|v| v.decision == Decision::Approved)
        .map(|v| v.at)
        .max()
        .unwrap_or(run.created_at)
}
