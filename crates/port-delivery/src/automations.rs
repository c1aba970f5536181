//! The automations worker: fires the timers that are due ([`Services::fire_due_timers`]),
//! reads the event outbox and starts the runs of the automations that watch each event
//! ([`Services::handle_events`]).
//!
//! It polls: a change recorded by any replica (or before a restart), and a timer's
//! expiry, is seen within `interval`, with no notice to miss. A pass that handled
//! anything is followed at once by the next.

use std::time::Duration;

use port_core::service::Services;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the worker looks for events when the last batch was not full: timers and
/// other replicas' changes are seen within this.
pub const AUTOMATIONS_POLL: Duration = Duration::from_millis(200);

/// Events read per batch.
pub const EVENT_BATCH: u32 = 100;

/// Timers fired per batch (each fired timer is one event of the next batch).
pub const TIMER_BATCH: u32 = 100;

/// Spawns the worker; it stops when `shutdown` is cancelled, after the batch at hand.
pub fn spawn_automations(
    services: Services,
    worker_id: String,
    interval: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let interval = interval.max(Duration::from_millis(10));
    tokio::spawn(async move {
        loop {
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
                }
            } else if shutdown.is_cancelled() {
                break;
            }
        }
    })
}
