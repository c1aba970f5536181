//! The automations worker: fires the timers that are due ([`Services::fire_due_timers`]),
//! reads the event outbox and starts the runs of the automations that watch each event
//! ([`Services::handle_events`]).
//!
//! The hub wakes it when a run changed (which records a change event), on this replica
//! or, through the replica bus on PostgreSQL, on another; a woken pass starts at least
//! [`AUTOMATIONS_WAKE_GAP`] after the previous one, so that a stream of changes is
//! read in batches rather than a pass per change. It also polls: entity changes (no
//! notice tells of them), a timer's expiry, and anything a lost notice hid, are seen
//! within `interval`. A pass that handled anything is followed at once by the next.

use std::sync::Arc;
use std::time::Duration;

use port_core::service::Services;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// How often the worker looks for events when the last batch was not full: timers and
/// other replicas' changes are seen within this.
pub const AUTOMATIONS_POLL: Duration = Duration::from_millis(200);

/// The least time between the starts of two passes when a notice, not the poll or a
/// pass's progress, wakes the worker.
pub const AUTOMATIONS_WAKE_GAP: Duration = Duration::from_millis(10);

/// Events read per batch.
pub const EVENT_BATCH: u32 = 100;

/// Timers fired per batch (each fired timer is one event of the next batch).
pub const TIMER_BATCH: u32 = 100;

/// Spawns the worker, woken early by `hub` ([`Hub::wake_automations`]); it stops when
/// `shutdown` is cancelled, after the batch at hand.
pub fn spawn_automations(
    services: Services,
    worker_id: String,
    interval: Duration,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let interval = interval.max(Duration::from_millis(10));
    tokio::spawn(async move {
        loop {
            let pass_started = Instant::now();
            // Timers first, so an expiry joins the batch read just after.
            let timers_idle = match services.fire_due_timers(TIMER_BATCH).await {
                // Any fired: look again at once. A batch gives each organization a
                // share, so it may fire fewer than it could while timers are due.
                Ok(fired) => fired == 0,
                Err(e) => {
                    tracing::warn!(error = %e, "could not fire timers; trying again shortly");
                    true
                }
            };
            let events_idle = match services.handle_events(&worker_id, EVENT_BATCH).await {
                Ok(handled) => {
                    if handled.runs > 0 {
                        tracing::info!(
                            events = handled.events,
                            runs = handled.runs,
                            "automations started runs"
                        );
                    }
                    // Any progress: look again at once. A batch holds at most a few
                    // events of each organization (and each for a short turn), so a
                    // backlog is worked through pass after pass, not a pass per poll;
                    // a pass that moved nothing (empty, or every organization's
                    // template share busy) waits for the poll.
                    handled.events == 0
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not handle events; trying again shortly");
                    true
                }
            };
            if timers_idle && events_idle {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                    () = hub.automations_ready() => {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep_until(pass_started + AUTOMATIONS_WAKE_GAP) => {}
                        }
                    }
                }
            } else if shutdown.is_cancelled() {
                break;
            }
        }
    })
}
