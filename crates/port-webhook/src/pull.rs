//! Pull mode: the same handlers, fed by claiming runs (`claim-pending`, `ack`,
//! `heartbeat`) instead of receiving webhooks, for runners that cannot be reached.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use port_client::{ClientError, Run};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};

use crate::dispatch::{Job, PullJob};
use crate::invocation::Invocation;
use crate::receiver::Receiver;

/// How long claimed runs stay leased by default before the server hands them out again.
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the loop waits after finding nothing to claim, by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait after failed claims.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How many runs a pull loop handles at once when not configured.
const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// When a pull loop acknowledges a claimed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckMode {
    /// When its end has been reported (portd). Until then the claim is kept alive with
    /// heartbeats; if the runner dies, the claim lapses and the server hands the run
    /// to another runner.
    #[default]
    OnFinish,
    /// Right after claiming, as Port's own agent and Ocean do (Port's cloud has no
    /// heartbeat route). A runner that dies leaves its runs in progress.
    OnClaim,
}

/// How a pull loop claims runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullOptions {
    /// How long claimed runs stay leased (`visibilityTimeoutMs`); heartbeats extend
    /// the lease of runs being handled.
    pub visibility_timeout: Duration,
    /// How long to wait after a claim that found nothing.
    pub poll_interval: Duration,
    /// How often to extend the lease of a run being handled (default: a third of the
    /// visibility timeout). Only with [`AckMode::OnFinish`].
    pub heartbeat_interval: Option<Duration>,
    /// When claimed runs are acknowledged.
    pub ack: AckMode,
    /// Claim only runs bound to this runner installation.
    pub installation_id: Option<String>,
    /// How many claimed runs are handled at once (default: the sum of the actions'
    /// concurrency limits, at most 16 when not set). Each claim asks for at most the
    /// free slots.
    pub max_in_flight: Option<usize>,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            heartbeat_interval: None,
            ack: AckMode::OnFinish,
            installation_id: None,
            max_in_flight: None,
        }
    }
}

impl PullOptions {
    /// The defaults: 60 s leases, polling every second.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the visibility timeout.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// Sets the poll interval.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets the heartbeat interval.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// Sets when claimed runs are acknowledged.
    pub fn ack(mut self, ack: AckMode) -> Self {
        self.ack = ack;
        self
    }

    /// Claims only runs of this installation.
    pub fn installation_id(mut self, id: impl Into<String>) -> Self {
        self.installation_id = Some(id.into());
        self
    }

    /// Sets how many runs are handled at once.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = Some(max.max(1));
        self
    }
}

/// The invocation of a claimed run: its payload's `body` (what a webhook would have
/// carried), with the run's own id and action, which are authoritative. Secret inputs
/// are left encrypted: the pull loop decrypts them before the handler runs.
pub fn invocation_from_run(run: &Run) -> Invocation {
    let payload = run.payload.clone().unwrap_or(Value::Null);
    let synchronized = payload
        .get("synchronized")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // WEBHOOK methods carry `body`; Kafka `payload`; GitHub and GitLab their inputs.
    let body = ["body", "payload", "workflowInputs", "pipelineVariables"]
        .into_iter()
        .find_map(|key| payload.get(key).filter(|v| v.is_object()).cloned());
    let action = run.action.identifier.clone();
    let mut invocation = body
        .and_then(|body| Invocation::from_body(body, Some(&run.id), Some(&action)).ok())
        .unwrap_or_else(|| {
            let mut invocation = Invocation::new(&run.id, &action);
            invocation.properties = run.properties.clone();
            invocation.raw = payload.clone();
            invocation
        });
    invocation.run_id = run.id.clone();
    invocation.action = action;
    if invocation.blueprint.is_none() {
        invocation.blueprint = run.blueprint.as_ref().map(|b| b.identifier.clone());
    }
    if invocation.entity.is_none() {
        invocation.entity = run
            .entity
            .as_ref()
            .map(|e| Value::String(e.identifier.clone()));
    }
    invocation.synchronized = synchronized;
    invocation
}

impl Receiver {
    /// Pulls runs until shutdown begins ([`Receiver::shutdown_token`]), then finishes
    /// the runs in flight as [`Receiver::shutdown`] does, and returns.
    ///
    /// Each round claims at most the free slots (`claim-pending` with
    /// `visibilityTimeoutMs`) and runs each claimed run it has a handler for. With
    /// [`AckMode::OnFinish`] (the default) heartbeats extend the claim while the
    /// handler runs and the run is acknowledged once its end is reported; with
    /// [`AckMode::OnClaim`] it is acknowledged before the handler starts. Runs of
    /// actions without a handler here are not acknowledged: their claim lapses and the
    /// server offers them again (give each runner its own `installation_id` when
    /// several pull from one organization). Synchronized runs report like asynchronous
    /// ones, after storing their outcome with `PATCH …/response`.
    pub async fn pull(&self, options: PullOptions) {
        let engine = Arc::clone(&self.engine);
        let max_in_flight = options
            .max_in_flight
            .unwrap_or_else(|| {
                engine
                    .actions
                    .values()
                    .map(|a| a.options.concurrency)
                    .sum::<usize>()
                    .min(DEFAULT_MAX_IN_FLIGHT)
            })
            .max(1);
        let slots = Arc::new(Semaphore::new(max_in_flight));
        let heartbeat = options
            .heartbeat_interval
            .unwrap_or(options.visibility_timeout / 3)
            .max(Duration::from_millis(50));
        let visibility_ms =
            u64::try_from(options.visibility_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut failures = 0u32;
        let mut unknown_warned = HashSet::new();
        tracing::info!(max_in_flight, actions = ?self.actions(), "pulling runs");
        while !engine.stopping.is_cancelled() {
            let free = slots.available_permits();
            if free == 0 {
                // Wait for a slot without holding it.
                tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => drop(permit),
                    () = engine.stopping.cancelled() => break,
                }
                continue;
            }
            let claimed = tokio::select! {
                claimed = engine.client.claim_pending(
                    u32::try_from(free).unwrap_or(u32::MAX),
                    visibility_ms,
                    options.installation_id.as_deref(),
                ) => claimed,
                () = engine.stopping.cancelled() => break,
            };
            let runs = match claimed {
                Ok(runs) => {
                    failures = 0;
                    runs
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = options
                        .poll_interval
                        .saturating_mul(2u32.saturating_pow(failures.min(6)))
                        .min(MAX_BACKOFF);
                    tracing::warn!(error = %e, retry_in = ?wait, "claiming runs failed");
                    self.idle(wait).await;
                    continue;
                }
            };
            if runs.is_empty() {
                self.idle(options.poll_interval).await;
                continue;
            }
            for run in runs {
                let action = run.action.identifier.clone();
                if !engine.actions.contains_key(&action) {
                    if unknown_warned.insert(action.clone()) {
                        tracing::warn!(run = %run.id, %action, "claimed a run of an action without a handler here; leaving it to its lease");
                    }
                    continue;
                }
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    // More runs than asked for: the rest come back after their lease.
                    break;
                };
                if options.ack == AckMode::OnClaim
                    && let Err(e) = self.acknowledge(&run.id).await
                {
                    tracing::warn!(run = %run.id, error = %e, "could not acknowledge a claimed run; leaving it");
                    continue;
                }
                let invocation = invocation_from_run(&run);
                let (done, _) = watch::channel(None);
                tracing::info!(run = %run.id, %action, "claimed a run");
                let on_finish = options.ack == AckMode::OnFinish;
                engine.start(
                    Job {
                        // Nobody waits for an HTTP answer here: report the status.
                        status_from_answer: false,
                        pull: Some(PullJob {
                            heartbeat: on_finish.then_some(heartbeat),
                            visibility_ms,
                            ack_when_done: on_finish,
                            // A synchronized run's outcome is stored as its response.
                            respond: invocation.synchronized,
                            slot,
                        }),
                        invocation,
                    },
                    done,
                );
            }
        }
        self.shutdown().await;
    }

    async fn acknowledge(&self, run_id: &str) -> Result<(), ClientError> {
        let acked = self.engine.client.ack(&[run_id]).await?;
        if acked == 0 {
            tracing::debug!(run = %run_id, "the server reported no pending run acknowledged");
        }
        Ok(())
    }

    /// Sleeps, waking early when shutdown begins.
    async fn idle(&self, wait: Duration) {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.engine.stopping.cancelled() => {}
        }
    }
}
