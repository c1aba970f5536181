//! `port-delivery`: how portd gets run invocations to their backends.
//!
//! - [`Hub`]: the in-process [`port_core::ports::Notifier`]. It wakes the delivery
//!   worker as soon as a delivery is written and feeds run changes to event streams
//!   ([`RunFeed`]: one per followed run, serialized once for all its followers), and
//!   counts each organization's open streams.
//! - [`DeliveryWorker`]: claims due deliveries from the store's outbox under a lease
//!   and hands each to the [`Transport`] registered for its mode in [`Transports`]
//!   ([`Transports::standard`] is the one place transports are registered). The
//!   [`WebhookTransport`] sends them as Port does (method, URL and headers from the
//!   evaluated invocation, compact JSON body, `X-Port-Timestamp` and
//!   `X-Port-Signature` over the exact bytes sent), plus a `webhook-id` header that
//!   stays the same on every attempt; the [`AgentTransport`] pushes nothing: agent
//!   deliveries wait in the outbox for a runner's claim; the
//!   [`ApprovalNotificationTransport`] posts a waiting run's approval notification,
//!   signed the same way, and its outcome never changes the run (a final failure
//!   leaves one line in the run's log). Failed attempts are retried
//!   on a jittered schedule, honouring `Retry-After`. Each attempt is recorded, each
//!   failure leaves a line in the run's log, and a delivery that is refused or runs
//!   out of attempts fails its run. Synchronized runs end with their receiver's
//!   answer. Attempts in flight are capped in all, per organization and per
//!   organization and host; each free slot goes to the organization with the fewest in
//!   flight, and what does not fit waits in the outbox unleased
//!   ([`port_core::claim`]), so receivers that never answer cost only their own
//!   organization.
//! - [`VettingResolver`]: the delivery client's resolver. A host is resolved once per
//!   connection and only addresses the destination policy allows are connected to, so
//!   a name that rebinds after the execute-time check reaches nothing; such a refusal
//!   fails the run at once.
//! - [`spawn_reaper`] / [`reap_stale_runs`]: fail runs left `IN_PROGRESS` past their
//!   timeout.
//! - [`spawn_automations`]: reads the event outbox and starts the runs of the
//!   automations watching each event; the hub wakes it when a run changes.
//!
//! Wiring, for a server:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use port_core::service::Services;
//! # use port_delivery::{DeliveryConfig, DeliveryWorker, Hub, spawn_reaper};
//! # use tokio_util::sync::CancellationToken;
//! # async fn wire(mut services: Services) -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Arc::new(Hub::new());
//! services.notifier = hub.clone();
//! let config = DeliveryConfig::from_env()?;
//! let shutdown = CancellationToken::new();
//! let worker = DeliveryWorker::spawn(services.clone(), hub.clone(), config.clone(), shutdown.clone())?;
//! let reaper = spawn_reaper(services, &config, shutdown.clone());
//! // ... serve; on shutdown:
//! shutdown.cancel();
//! let _ = tokio::join!(worker, reaper);
//! # Ok(())
//! # }
//! ```

mod automations;
mod config;
mod hub;
mod outcome;
mod reaper;
mod resolve;
mod retry;
mod transport;
mod worker;

pub use automations::{AUTOMATIONS_POLL, AUTOMATIONS_WAKE_GAP, EVENT_BATCH, spawn_automations};
pub use config::{
    ConfigError, DeliveryConfig, DeliveryError, ENV_LEASE, ENV_MAX_IN_FLIGHT,
    ENV_MAX_IN_FLIGHT_PER_HOST, ENV_MAX_IN_FLIGHT_PER_ORG, ENV_REAPER_INTERVAL, ENV_RETRY_SCHEDULE,
    ENV_RUN_TIMEOUT, ENV_TIMEOUT, ENV_WORKER_ID, MIN_LEASE_MARGIN,
};
pub use hub::{FeedLine, Hub, Lines, RunFeed, RunSnapshot, StreamLimitReached, StreamSlot};
pub use outcome::{
    Abandoned, Answer, Attempt, Carried, EXCERPT_BYTES, MAX_RESPONSE_BYTES, NoAnswer, Outcome,
};
pub use reaper::{reap_stale_runs, spawn_reaper};
pub use resolve::{RefusedDestination, VettingResolver};
pub use tokio_util::sync::CancellationToken;
pub use transport::{
    AgentTransport, ApprovalNotificationTransport, Job, LEASE_GUARD, Transport, Transports,
    USER_AGENT_VALUE, WEBHOOK_ID_HEADER, WebhookTransport,
};
pub use worker::{DeliveryWorker, SYSTEM_ACTOR};
