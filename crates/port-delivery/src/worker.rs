//! The delivery worker: claims due deliveries from the outbox, hands each to the
//! transport of its mode ([`crate::transport`]), and records what happened on the
//! delivery and on its run.
//!
//! Crash safety comes from the outbox: a delivery is written with its run's move to
//! `IN_PROGRESS`, claimed under a lease, and only finished or rescheduled after its
//! attempt was recorded. A worker that dies mid-attempt leaves the lease to expire,
//! and then any worker claims the delivery again: delivery is at least once, and the
//! `webhook-id` header lets receivers drop duplicates.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use port_core::claim::{ClaimLimits, InFlight};
use port_core::destination::Destination;
use port_core::ports::{Delivery, DeliveryAttempt, DeliveryMode, DeliveryState};
use port_core::run::{RunCommand, RunState};
use port_core::service::Services;
use port_core::service::secrets::unrenderable;
use port_core::{ErrorKind, OrgId, Timestamp};
use serde_json::Value;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{DeliveryConfig, DeliveryError};
use crate::hub::Hub;
use crate::outcome::{Abandoned, Answer, Attempt, Carried, human, millis};
use crate::resolve::VettingResolver;
use crate::retry;
use crate::transport::{Job, Transports};

/// Who portd's own log lines and run changes are attributed to.
pub use port_core::run::SYSTEM_ACTOR;

/// How long a delivery waits when the template sandbox cannot render it now.
const RENDER_RETRY_MS: i64 = 2_000;

/// What a delivery is to its run. A run may have several deliveries at once (a
/// notice while it waits for approval, then its invocation once approved); each is
/// claimed, attempted and retried on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The run's invocation: each failed attempt is logged on the run, the run fails
    /// when the delivery does, and a synchronized run ends with its answer.
    Invocation,
    /// A notice about the run (an approval notification): its outcome never changes the
    /// run; only a final failure leaves one line in the run's log.
    Notice,
}

impl Purpose {
    fn of(mode: DeliveryMode) -> Self {
        match mode {
            DeliveryMode::ApprovalNotification => Self::Notice,
            DeliveryMode::Webhook | DeliveryMode::Agent | DeliveryMode::UpsertEntity => {
                Self::Invocation
            }
        }
    }

    /// Whether a run in `state` still wants the delivery: an invocation while the run is
    /// in progress, an approval notification while the run waits for a decision (once
    /// it is approved, declined or withdrawn there is nothing left to ask).
    fn wanted_by(self, state: RunState) -> bool {
        match self {
            Self::Invocation => state == RunState::InProgress,
            Self::Notice => state == RunState::WaitingForApproval,
        }
    }
}

/// The delivery worker. Start it with [`DeliveryWorker::spawn`].
#[derive(Debug)]
pub struct DeliveryWorker;

impl DeliveryWorker {
    /// Validates `config` and spawns the worker on the current tokio runtime.
    ///
    /// `services.notifier` should be (or forward to) `hub`, so that new deliveries wake
    /// the worker at once. Cancelling `shutdown` stops claiming; the task ends once the
    /// attempts in flight are done (each within `config.timeout` and a few store
    /// writes). Aborting the returned handle drops those attempts instead; their
    /// deliveries are sent again after the lease.
    pub fn spawn(
        services: Services,
        hub: Arc<Hub>,
        config: DeliveryConfig,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, DeliveryError> {
        let lookup = VettingResolver::system(services.destinations.clone());
        Self::spawn_resolving(services, hub, config, lookup, shutdown)
    }

    /// Like [`Self::spawn`], resolving host names with `resolver` (whose answers the
    /// destination policy still vets); for tests that need a DNS of their own.
    pub fn spawn_with_resolver(
        services: Services,
        hub: Arc<Hub>,
        config: DeliveryConfig,
        resolver: Arc<dyn reqwest::dns::Resolve>,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, DeliveryError> {
        let lookup = VettingResolver::new(resolver, services.destinations.clone());
        Self::spawn_resolving(services, hub, config, lookup, shutdown)
    }

    fn spawn_resolving(
        services: Services,
        hub: Arc<Hub>,
        config: DeliveryConfig,
        resolver: VettingResolver,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, DeliveryError> {
        config.validate()?;
        let transports = Transports::standard(&services, &config, resolver)?;
        Self::spawn_with_transports(services, hub, config, transports, shutdown)
    }

    /// Like [`Self::spawn`], carrying each delivery with the transport `transports`
    /// holds for its mode (start from [`Transports::standard`] to replace one). A
    /// delivery whose mode has no transport that pushes is handed back to the outbox
    /// untouched.
    pub fn spawn_with_transports(
        services: Services,
        hub: Arc<Hub>,
        config: DeliveryConfig,
        transports: Transports,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, DeliveryError> {
        config.validate()?;
        let ctx = Ctx {
            services,
            config: Arc::new(config),
            transports: Arc::new(transports),
        };
        Ok(tokio::spawn(run(ctx, hub, shutdown)))
    }
}

#[derive(Clone)]
struct Ctx {
    services: Services,
    config: Arc<DeliveryConfig>,
    transports: Arc<Transports>,
}

impl Ctx {
    fn now(&self) -> Timestamp {
        self.services.clock.now()
    }

    fn owner(&self) -> &str {
        &self.config.worker_id
    }
}

/// What the worker has in flight, shared with its attempts: each holds a [`Slot`] and
/// gives it back when it ends, however it ends.
#[derive(Clone, Default)]
struct Slots(Arc<Mutex<InFlight>>);

impl Slots {
    fn lock(&self) -> MutexGuard<'_, InFlight> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot(&self) -> InFlight {
        self.lock().clone()
    }

    fn take(&self, delivery: &Delivery) -> Slot {
        let destination = Destination::of_request(&delivery.request);
        self.lock().add(&delivery.org_id, destination.as_ref());
        Slot {
            slots: self.clone(),
            org: delivery.org_id.clone(),
            destination,
        }
    }
}

/// One attempt's place under the worker's caps.
struct Slot {
    slots: Slots,
    org: OrgId,
    destination: Option<Destination>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots
            .lock()
            .remove(&self.org, self.destination.as_ref());
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

async fn run(ctx: Ctx, hub: Arc<Hub>, shutdown: CancellationToken) {
    let slots = Slots::default();
    let lease = ctx.config.effective_lease();
    let mut tasks = JoinSet::new();
    tracing::info!(
        worker = ctx.owner(),
        max_in_flight = ctx.config.max_in_flight,
        per_org = ctx.config.max_in_flight_per_org,
        per_host = ctx.config.max_in_flight_per_host,
        "delivery worker started"
    );
    while !shutdown.is_cancelled() {
        let mut wake_at: Option<Timestamp> = None;
        let in_flight = slots.snapshot();
        let free = count(ctx.config.max_in_flight).saturating_sub(in_flight.total());
        if free > 0 {
            let now = ctx.now();
            // Only what fits under every cap is claimed; the rest stays in the outbox,
            // unleased, until an attempt ends and frees a slot (which wakes this loop).
            let limits = ClaimLimits {
                total: free,
                per_org: count(ctx.config.max_in_flight_per_org),
                per_destination: count(ctx.config.max_in_flight_per_host),
                in_flight,
            };
            match ctx
                .services
                .outbox()
                .claim_due_webhooks(ctx.owner(), now, millis(lease), &limits)
                .await
            {
                Ok(batch) => {
                    let full = count(batch.len()) == free;
                    for delivery in batch {
                        let slot = slots.take(&delivery);
                        let lease_until = now.plus_millis(millis(lease));
                        tasks.spawn(process(ctx.clone(), delivery, lease_until, slot));
                    }
                    if full {
                        // More may be due: claim again before sleeping.
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming deliveries failed; retrying after the safety poll")
                }
            }
            match ctx.services.outbox().next_due_after(now).await {
                Ok(due) => wake_at = due,
                Err(e) => tracing::warn!(error = %e, "reading the next due delivery failed"),
            }
        }
        let mut sleep = ctx.config.safety_poll;
        if let Some(due) = wake_at {
            let until_due =
                u64::try_from(due.unix_millis().saturating_sub(ctx.now().unix_millis()))
                    .unwrap_or(0);
            sleep = sleep.min(Duration::from_millis(until_due));
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = hub.delivery_ready() => {}
            () = tokio::time::sleep(sleep) => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => log_panic(done),
        }
        while let Some(done) = tasks.try_join_next() {
            log_panic(done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        log_panic(done);
    }
    tracing::info!(worker = ctx.owner(), "delivery worker stopped");
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        // The delivery's lease expires and it is claimed again.
        tracing::error!(error = %e, "a delivery task panicked");
    }
}

async fn process(ctx: Ctx, delivery: Delivery, lease_until: Timestamp, _slot: Slot) {
    if let Err(e) = deliver(&ctx, &delivery, lease_until).await {
        tracing::warn!(
            delivery = %delivery.id,
            run = %delivery.run_id,
            error = %e,
            "delivery left to its lease after a storage error"
        );
    }
}

async fn deliver(ctx: &Ctx, delivery: &Delivery, lease_until: Timestamp) -> Result<(), Abandoned> {
    let store = ctx.services.outbox();
    let Some(transport) = ctx
        .transports
        .get(delivery.mode)
        .filter(|transport| transport.pushes())
    else {
        // Not the worker's to send (a runner claims it), or nothing here carries its
        // mode: back to the outbox as it was.
        tracing::warn!(
            delivery = %delivery.id,
            run = %delivery.run_id,
            mode = delivery.mode.as_str(),
            "no transport pushes deliveries of this mode; handed back"
        );
        store
            .reschedule(&delivery.id, ctx.owner(), delivery.next_attempt_at)
            .await?;
        return Ok(());
    };
    let number = delivery.attempts.saturating_add(1);
    let purpose = Purpose::of(delivery.mode);
    let run = ctx.services.run_of_delivery(delivery).await?;
    if run.as_ref().is_none_or(|run| !purpose.wanted_by(run.state)) {
        // The run moved on (ended, or was decided) before this attempt: nobody waits
        // for it.
        tracing::debug!(delivery = %delivery.id, run = %delivery.run_id, mode = delivery.mode.as_str(), "the run no longer wants this delivery; dropped");
        store
            .finish(&delivery.id, DeliveryState::Failed, ctx.now())
            .await?;
        return Ok(());
    }

    // Parts of the invocation that read `.secrets` are rendered only now, and what
    // comes back is masked with the secrets they could see.
    let sendable = match ctx
        .services
        .sendable(&delivery.org_id, &delivery.request)
        .await
    {
        Ok(sendable) => sendable,
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::TooManyRequests | ErrorKind::ServiceUnavailable
            ) =>
        {
            // The template sandbox is busy or restarting: try again shortly.
            store
                .reschedule(
                    &delivery.id,
                    ctx.owner(),
                    ctx.now().plus_millis(RENDER_RETRY_MS),
                )
                .await?;
            return Ok(());
        }
        Err(e) => return give_up(ctx, delivery, unrenderable(&e)).await,
    };

    let job = Job {
        delivery,
        invocation: &sendable,
        attempt: number,
        lease_until,
    };
    let Attempt {
        outcome,
        started_at,
        ended_at,
        duration,
    } = match transport.carry(job).await? {
        Carried::Attempted(attempt) => attempt,
        Carried::Unsendable(reason) => return give_up(ctx, delivery, reason).await,
        Carried::Later(at) => {
            store.reschedule(&delivery.id, ctx.owner(), at).await?;
            return Ok(());
        }
    };
    let answer = outcome.answer();
    let attempt = DeliveryAttempt {
        delivery_id: delivery.id.clone(),
        org_id: delivery.org_id.clone(),
        run_id: delivery.run_id.clone(),
        number,
        started_at,
        ended_at,
        status_code: answer.map(|a| a.status.as_u16()),
        error: answer.is_none().then(|| sendable.mask(&outcome.describe())),
        response_excerpt: answer
            .and_then(Answer::excerpt)
            .map(|excerpt| sendable.mask(&excerpt)),
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    };

    // Only a run's own invocation can be answered for it.
    let synchronized = delivery.synchronized && purpose == Purpose::Invocation;
    if !synchronized && answer.is_some_and(|a| a.is_success()) {
        // The common case, delivered and done: the attempt and the end in one write.
        store
            .record_final_attempt(&attempt, DeliveryState::Delivered, ctx.now())
            .await?;
        return Ok(());
    }
    store.record_attempt(&attempt).await?;
    if let Some(answer) = answer.filter(|a| a.is_success()) {
        if synchronized {
            let command = RunCommand::SynchronizedResponse {
                status_code: answer.status.as_u16(),
                response: sendable.mask_json(&answer.response_value()),
            };
            apply_unless_ended(ctx, delivery, command).await?;
        }
        store
            .finish(&delivery.id, DeliveryState::Delivered, ctx.now())
            .await?;
        return Ok(());
    }

    let what = sendable.mask(&outcome.describe());
    let max = ctx.config.max_attempts();
    let next = ctx.config.retry_schedule.get(number as usize).copied();
    if let (true, Some(scheduled)) = (outcome.retryable(synchronized), next) {
        let retry_after = answer
            .and_then(|a| a.retry_after.as_deref())
            .and_then(|v| retry::parse_retry_after(v, ctx.now()));
        let delay = retry::next_delay(scheduled, retry_after, ctx.config.retry_after_cap);
        if purpose == Purpose::Notice {
            // A notice's retries are its own business; the run hears only of its end.
            store
                .reschedule(
                    &delivery.id,
                    ctx.owner(),
                    ctx.now().plus_millis(millis(delay)),
                )
                .await?;
            return Ok(());
        }
        let message = format!(
            "Webhook delivery attempt {number} of {max} failed: {what}; retrying in {}",
            human(delay)
        );
        if !append_system_log(ctx, delivery, &message).await? {
            // The run ended meanwhile (its backend reported, or it timed out).
            store
                .finish(&delivery.id, DeliveryState::Failed, ctx.now())
                .await?;
            return Ok(());
        }
        store
            .reschedule(
                &delivery.id,
                ctx.owner(),
                ctx.now().plus_millis(millis(delay)),
            )
            .await?;
        return Ok(());
    }

    match answer {
        // A synchronized run ends with its receiver's answer, whatever it was.
        Some(answer) if synchronized => {
            let message = if outcome.retryable(true) {
                format!(
                    "Webhook delivery attempt {number} of {max} failed: {what}; no attempts left"
                )
            } else {
                format!("Webhook delivery attempt {number} of {max} failed: {what}; not retried")
            };
            append_system_log(ctx, delivery, &message).await?;
            let command = RunCommand::SynchronizedResponse {
                status_code: answer.status.as_u16(),
                response: sendable.mask_json(&answer.response_value()),
            };
            apply_unless_ended(ctx, delivery, command).await?;
            store
                .finish(&delivery.id, DeliveryState::Failed, ctx.now())
                .await?;
            Ok(())
        }
        _ => {
            let reason = if outcome.retryable(synchronized) {
                format!("no successful answer after {number} attempts; the last one: {what}")
            } else {
                format!("{what} (not retried)")
            };
            give_up(ctx, delivery, reason).await
        }
    }
}

/// Ends a delivery that cannot succeed. An invocation fails its run with "Webhook
/// delivery failed: `reason`" (the transition logs it); a notice leaves one line in the
/// run's log and the run as it is. Then the delivery is failed: in that order, so a
/// crash between the two only repeats work.
async fn give_up(ctx: &Ctx, delivery: &Delivery, reason: String) -> Result<(), Abandoned> {
    match Purpose::of(delivery.mode) {
        Purpose::Invocation => {
            tracing::warn!(delivery = %delivery.id, run = %delivery.run_id, %reason, "webhook delivery failed");
            apply_unless_ended(ctx, delivery, RunCommand::DeliveryExhausted { reason }).await?;
        }
        Purpose::Notice => {
            tracing::warn!(delivery = %delivery.id, run = %delivery.run_id, mode = delivery.mode.as_str(), %reason, "notice delivery failed");
            // A run that ended meanwhile has no log to add to; that is fine.
            append_system_log(ctx, delivery, &notice_failed(delivery, &reason)).await?;
        }
    }
    ctx.services
        .outbox()
        .finish(&delivery.id, DeliveryState::Failed, ctx.now())
        .await?;
    Ok(())
}

/// Applies a command on portd's behalf, through the services (so through
/// `transition`, like every other run write); a run that already ended keeps its
/// outcome.
async fn apply_unless_ended(
    ctx: &Ctx,
    delivery: &Delivery,
    command: RunCommand,
) -> Result<(), Abandoned> {
    ctx.services
        .apply_for_delivery(&delivery.org_id, &delivery.run_id, command)
        .await?;
    Ok(())
}

/// Adds a log line by portd to a run still in progress, through the services (so
/// through `transition`). Returns `false` when the run is gone or has ended.
async fn append_system_log(
    ctx: &Ctx,
    delivery: &Delivery,
    message: &str,
) -> Result<bool, Abandoned> {
    Ok(ctx
        .services
        .log_for_delivery(&delivery.org_id, &delivery.run_id, message)
        .await?)
}

/// The line a notice's final failure leaves in its run's log, naming the receiver by
/// its host only (a notification URL, Slack's among them, often holds a secret).
fn notice_failed(delivery: &Delivery, reason: &str) -> String {
    let what = match delivery.mode {
        DeliveryMode::ApprovalNotification => "Approval notification",
        DeliveryMode::Webhook | DeliveryMode::Agent | DeliveryMode::UpsertEntity => "Delivery",
    };
    let host = delivery
        .request
        .get("url")
        .and_then(Value::as_str)
        .and_then(|url| Url::parse(url).ok())
        .and_then(|url| url.host_str().map(str::to_owned));
    match host {
        Some(host) => format!("{what} to {host} failed: {reason}"),
        None => format!("{what} failed: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use port_core::run::Outcome;
    use serde_json::json;

    use super::*;

    #[test]
    fn each_delivery_is_wanted_while_its_run_waits_for_it() {
        let ended = RunState::Ended {
            outcome: Outcome::Success,
            at: Timestamp::from_unix_millis(0),
        };
        let declined = RunState::Ended {
            outcome: Outcome::Declined,
            at: Timestamp::from_unix_millis(0),
        };
        let invocation = Purpose::of(DeliveryMode::Webhook);
        assert_eq!(invocation, Purpose::of(DeliveryMode::UpsertEntity));
        assert!(invocation.wanted_by(RunState::InProgress));
        assert!(!invocation.wanted_by(RunState::WaitingForApproval));
        assert!(!invocation.wanted_by(ended));
        let notice = Purpose::of(DeliveryMode::ApprovalNotification);
        assert_eq!(notice, Purpose::Notice);
        assert!(notice.wanted_by(RunState::WaitingForApproval));
        assert!(!notice.wanted_by(RunState::InProgress));
        assert!(!notice.wanted_by(declined));
    }

    const SUFFIX: &str = "0123456789abcdef";

    fn notification(request: Value) -> Delivery {
        let at = Timestamp::from_unix_millis(0);
        Delivery {
            id: port_core::DeliveryId::from_suffix(SUFFIX).unwrap(),
            org_id: OrgId::from_suffix(SUFFIX).unwrap(),
            run_id: port_core::RunId::from_suffix(SUFFIX).unwrap(),
            mode: DeliveryMode::ApprovalNotification,
            request,
            synchronized: false,
            installation_id: None,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: at,
            lease_owner: None,
            lease_until: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_failed_notice_names_only_the_host() {
        let slack = notification(json!({
            "url": "https://hooks.slack.com:8443/services/T0/B0/s3cret",
            "format": "slack",
            "body": {},
        }));
        let line = notice_failed(&slack, "HTTP 404 Not Found (not retried)");
        assert_eq!(
            line,
            "Approval notification to hooks.slack.com failed: HTTP 404 Not Found (not retried)"
        );
        let broken = notification(json!({"format": "json"}));
        assert_eq!(
            notice_failed(&broken, "it has no url"),
            "Approval notification failed: it has no url"
        );
    }
}
