//! The reaper: fails runs left `IN_PROGRESS` past their timeout, so that a backend
//! that never reports does not leave a run running for good.

use std::collections::HashMap;
use std::time::Duration;

use port_core::error::StoreError;
use port_core::run::{Decision, Run, RunCommand};
use port_core::service::Services;
use port_core::{ActionIdentifier, ErrorKind, OrgId, Timestamp};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::DeliveryConfig;
use crate::worker::SYSTEM_ACTOR;

/// The shortest timeout there can be (`timeoutSeconds` is a positive integer); runs
/// younger than this are never looked at.
const MIN_TIMEOUT_MS: i64 = 1000;
/// Runs read per query.
const PAGE: u32 = 500;
/// Queries per pass at most, so one pass stays bounded.
const MAX_PAGES: usize = 20;

/// Spawns the reaper: [`reap_stale_runs`] every `config.reaper_interval` until
/// `shutdown` is cancelled.
pub fn spawn_reaper(
    services: Services,
    config: &DeliveryConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let interval = config.reaper_interval.max(Duration::from_millis(10));
    let default = config.run_timeout_default;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            match reap_stale_runs(&services, default).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "timed out stale runs"),
                Err(e) => {
                    tracing::warn!(error = %e, "the reaper could not read runs; trying again next time")
                }
            }
        }
    })
}

/// One pass of the reaper: every `IN_PROGRESS` run whose timeout has passed becomes
/// `FAILURE` ("Timed out"). A run's timeout is its action's `timeoutSeconds`, else
/// `run_timeout_default`, else none; it counts from when the run entered
/// `IN_PROGRESS` (creation, or the approval that let it go). Returns how many runs
/// were timed out.
///
/// The store hands out the oldest in-progress runs first, a page at a time; a pass
/// moves to the next page only while whole pages time out. Runs without a timeout
/// are skipped, but more than 500 such runs older than the timed-out ones would
/// hide the latter until they end.
pub async fn reap_stale_runs(
    services: &Services,
    run_timeout_default: Option<Duration>,
) -> Result<usize, StoreError> {
    let store = &services.store;
    let now = services.clock.now();
    let mut timeouts: HashMap<(OrgId, ActionIdentifier), Option<Duration>> = HashMap::new();
    let mut reaped = 0;
    for _ in 0..MAX_PAGES {
        let runs = store
            .in_progress_runs_created_before(now.plus_millis(-MIN_TIMEOUT_MS), PAGE)
            .await?;
        let full_page = runs.len() == PAGE as usize;
        let mut all_reaped = true;
        for run in runs {
            let key = (run.org_id.clone(), run.action.identifier.clone());
            let timeout = match timeouts.get(&key) {
                Some(timeout) => *timeout,
                None => {
                    let action = store
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
            match services
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
                Err(e) => {
                    all_reaped = false;
                    tracing::warn!(run = %run.id, error = %e, "could not time out a stale run");
                }
            }
        }
        if !(full_page && all_reaped) {
            break;
        }
    }
    Ok(reaped)
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
