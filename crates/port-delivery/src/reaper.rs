//! The reaper: fails runs left `IN_PROGRESS` past their timeout, so that a backend
//! that never reports does not leave a run running for good.

use std::time::Duration;

use port_core::error::StoreError;
use port_core::service::Services;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::DeliveryConfig;

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

/// One pass of the reaper: [`Services::time_out_stale_runs`].
pub async fn reap_stale_runs(
    services: &Services,
    run_timeout_default: Option<Duration>,
) -> Result<usize, StoreError> {
    services.time_out_stale_runs(run_timeout_default).await
}
