//! The engine shared by the webhook receiver and the pull loop: runs a handler under
//! its action's concurrency limit and timeout, catches panics, and always ends the run.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use port_client::{Method, PortClient};
use serde_json::json;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::context::{Ended, RunContext};
use crate::handler::{ActionOptions, Handler, Outcome, human_duration};
use crate::invocation::Invocation;

/// The reason runs are failed with when the runner stops before they finish.
pub const SHUTDOWN_REASON: &str = "runner shutting down";
/// How long, after the grace period, the engine waits for runs to report their end.
const FINAL_REPORT_BUDGET: Duration = Duration::from_secs(30);

/// How a run ended, as its caller (an HTTP answer, a duplicate) needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunResult {
    Succeeded(Outcome),
    Failed(String),
}

/// A registered action.
pub(crate) struct Registered {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) options: ActionOptions,
    pub(crate) slots: Arc<Semaphore>,
}

impl Registered {
    pub(crate) fn new(handler: Arc<dyn Handler>, options: ActionOptions) -> Self {
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Self {
            handler,
            options,
            slots,
        }
    }
}

/// One run to start.
pub(crate) struct Job {
    pub(crate) invocation: Invocation,
    /// A synchronized webhook run: the server sets the status from the answer.
    pub(crate) status_from_answer: bool,
    /// Pull mode: how the claim is kept and released.
    pub(crate) pull: Option<PullJob>,
}

/// What a claimed run needs besides its handler.
pub(crate) struct PullJob {
    /// Extend the claim this often while the handler runs (None: it was acknowledged
    /// at once, there is no claim to extend).
    pub(crate) heartbeat: Option<Duration>,
    /// What each heartbeat extends the claim by.
    pub(crate) visibility_ms: u64,
    /// Acknowledge the run once its end is reported.
    pub(crate) ack_when_done: bool,
    /// Store the outcome with `PATCH …/response` before reporting the status
    /// (synchronized runs: nobody waits for an HTTP answer).
    pub(crate) respond: bool,
    /// The runner-wide slot the run holds until it is reported.
    pub(crate) slot: OwnedSemaphorePermit,
}

/// Handlers, the client they report with, and the lifecycle of the runs in flight.
pub(crate) struct Engine {
    pub(crate) client: PortClient,
    pub(crate) actions: HashMap<String, Registered>,
    /// Masked in every run, besides each run's secret inputs (the client secret).
    pub(crate) extra_secrets: Vec<String>,
    /// The organization's client secret, which keys secret inputs.
    client_secret: String,
    pub(crate) tracker: TaskTracker,
    /// Cancelled when shutdown begins: no new runs are accepted or started.
    pub(crate) stopping: CancellationToken,
    /// Cancelled when the grace period is over: the runs left are failed.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) grace: Duration,
    drained: OnceCell<()>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Extends a claimed run's lease every `every` by `visibility_ms`, until aborted or the
/// claim is gone.
async fn heartbeats(client: PortClient, run_id: String, every: Duration, visibility_ms: u64) {
    let path = format!("actions/runs/{run_id}/heartbeat");
    let body = json!({ "visibilityTimeoutMs": visibility_ms });
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match client
            .request_json(Method::POST, &path, &[], Some(body.clone()))
            .await
        {
            Ok(_) => tracing::debug!(run = %run_id, "extended the claim"),
            Err(e) if e.is_not_found() => {
                tracing::warn!(run = %run_id, "lost the claim on the run (its lease expired); another runner may take it");
                return;
            }
            Err(e) => tracing::warn!(run = %run_id, error = %e, "heartbeat failed"),
        }
    }
}

/// Logs a run whose end could not be reported.
fn report_failed(run_id: &str, what: &str, error: &port_client::ClientError) {
    if error.identifier() == Some("run_synchronized_error") {
        tracing::error!(
            run = %run_id,
            "could not report the run's {what}: the server takes a synchronized run's status only from a webhook answer"
        );
    } else {
        tracing::error!(run = %run_id, %error, "could not report the run's {what}");
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}

impl Engine {
    pub(crate) fn new(
        client: PortClient,
        actions: HashMap<String, Registered>,
        extra_secrets: Vec<String>,
        client_secret: String,
        grace: Duration,
    ) -> Self {
        Self {
            client,
            actions,
            extra_secrets,
            client_secret,
            tracker: TaskTracker::new(),
            stopping: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            grace,
            drained: OnceCell::new(),
        }
    }

    /// Starts a run in the background; `done` receives how it ended. The action must
    /// be registered (callers answer unknown actions themselves).
    pub(crate) fn start(self: &Arc<Self>, job: Job, done: watch::Sender<Option<RunResult>>) {
        let engine = Arc::clone(self);
        self.tracker.spawn(async move {
            let result = engine.supervise(job).await;
            // Nobody may be waiting (asynchronous runs); that is fine.
            let _ = done.send(Some(result));
        });
    }

    async fn supervise(&self, job: Job) -> RunResult {
        let Job {
            mut invocation,
            status_from_answer,
            pull,
        } = job;
        let respond = pull.as_ref().is_some_and(|p| p.respond);
        let run_id = invocation.run_id.clone();
        let action = invocation.action.clone();
        let registered = self.actions.get(&action);
        if let Some(registered) = registered {
            invocation.add_secret_keys(&registered.options.secret_inputs);
        }
        // Before the context exists: its masker needs the clear values.
        let decrypted = invocation.decrypt_secret_inputs(&self.client_secret);
        let mut secrets = invocation.secret_values();
        secrets.extend(self.extra_secrets.iter().cloned());
        let context = RunContext::new(
            self.client.clone(),
            &run_id,
            &action,
            status_from_answer,
            secrets,
        );
        let Some(registered) = registered else {
            // Callers check first; this only guards against misuse.
            let reason = format!("no handler for action {action:?} on this runner");
            return self.finish(&context, Err(reason), respond).await;
        };
        if let Err(error) = decrypted {
            // A handler given ciphertext for a secret would act on a wrong value: the
            // run fails instead, naming the input, and the handler never runs.
            tracing::warn!(run = %run_id, input = %error.key(), "a secret input did not decrypt");
            let ended = self.finish(&context, Err(error.to_string()), respond).await;
            self.release(&run_id, pull).await;
            return ended;
        }

        // Wait for a slot of the action. Runs not started yet when shutdown begins are
        // not started late: a claim not acknowledged yet is left to lapse (the server
        // hands the run out again), anything else is failed at once. Biased: a run
        // accepted while a slot was free starts even if shutdown began before this task
        // was first polled; only runs actually waiting for a slot are turned away.
        let permit = tokio::select! {
            biased;
            permit = Arc::clone(&registered.slots).acquire_owned() => permit.ok(),
            () = self.stopping.cancelled() => None,
        };
        let Some(permit) = permit else {
            if pull.as_ref().is_some_and(|p| p.ack_when_done) {
                tracing::info!(run = %run_id, "shutting down before the run started; leaving it to be claimed again");
                return RunResult::Failed(SHUTDOWN_REASON.to_owned());
            }
            return self
                .finish(&context, Err(SHUTDOWN_REASON.to_owned()), respond)
                .await;
        };

        let _beat = pull
            .as_ref()
            .and_then(|p| p.heartbeat.map(|every| (every, p.visibility_ms)))
            .map(|(every, visibility_ms)| {
                AbortOnDrop(tokio::spawn(heartbeats(
                    self.client.clone(),
                    run_id.clone(),
                    every,
                    visibility_ms,
                )))
            });

        let timeout = registered.options.timeout;
        tracing::info!(run = %run_id, action = %action, "handler started");
        let mut handle = tokio::spawn(registered.handler.call(invocation, context.clone()));
        let result = tokio::select! {
            joined = &mut handle => match joined {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(error)) => Err(error.message().to_owned()),
                Err(e) if e.is_panic() => {
                    Err(format!("handler panicked: {}", panic_message(&*e.into_panic())))
                }
                Err(_) => Err("the handler was cancelled".to_owned()),
            },
            () = tokio::time::sleep(timeout) => {
                handle.abort();
                Err(format!("timed out after {}", human_duration(timeout)))
            }
            () = self.hard_stop.cancelled() => {
                handle.abort();
                Err(SHUTDOWN_REASON.to_owned())
            }
        };
        drop(permit);
        let ended = self.finish(&context, result, respond).await;
        self.release(&run_id, pull).await;
        ended
    }

    /// After a pulled run's end is reported: acknowledges it (when that waits for the
    /// end) and frees its runner-wide slot.
    async fn release(&self, run_id: &str, pull: Option<PullJob>) {
        if let Some(pull) = pull {
            if pull.ack_when_done
                && let Err(e) = self.client.ack(&[run_id]).await
            {
                tracing::warn!(run = %run_id, error = %e, "could not acknowledge the finished run");
            }
            drop(pull.slot);
        }
    }

    /// Reports the end of a run (unless the handler already did) and says how it
    /// ended.
    async fn finish(
        &self,
        context: &RunContext,
        result: Result<Outcome, String>,
        respond: bool,
    ) -> RunResult {
        let run_id = context.run_id();
        if respond {
            self.store_response(context, &result).await;
        }
        match result {
            Ok(outcome) => {
                if !context.has_ended()
                    && let Err(e) = context.succeed(outcome.summary.as_deref()).await
                {
                    report_failed(run_id, "success", &e);
                }
                tracing::info!(run = %run_id, "handler finished");
                match context.ended() {
                    Some(Ended::Failed { reason }) => RunResult::Failed(reason),
                    Some(Ended::Succeeded { summary }) => RunResult::Succeeded(Outcome {
                        summary: outcome.summary.or(summary),
                        ..outcome
                    }),
                    None => RunResult::Succeeded(outcome),
                }
            }
            Err(reason) => {
                let reason = context.mask(&reason).into_owned();
                tracing::warn!(run = %run_id, %reason, "handler failed");
                if context.has_ended() {
                    tracing::warn!(run = %run_id, "the handler had already ended its run; its status stays");
                } else if let Err(e) = context.fail(&reason).await {
                    report_failed(run_id, "failure", &e);
                }
                // A synchronized run's answer can still say so.
                RunResult::Failed(reason)
            }
        }
    }

    /// Stores a pulled synchronized run's outcome as its `response`.
    async fn store_response(&self, context: &RunContext, result: &Result<Outcome, String>) {
        let response = match result {
            Ok(outcome) => outcome.response.clone().unwrap_or_else(
                || json!({ "ok": true, "runId": context.run_id(), "summary": outcome.summary }),
            ),
            Err(reason) => json!({
                "ok": false,
                "error": "handler_failed",
                "message": context.mask(reason),
            }),
        };
        if let Err(e) = self
            .client
            .set_run_response(context.run_id(), &response)
            .await
        {
            tracing::warn!(run = %context.run_id(), error = %e, "could not store the run's response");
        }
    }

    /// Stops accepting runs, lets those in flight finish for the grace period, then
    /// fails the rest. Every caller waits for the same drain.
    pub(crate) async fn drain(&self) {
        self.drained
            .get_or_init(|| async {
                self.stopping.cancel();
                self.tracker.close();
                let in_flight = self.tracker.len();
                if in_flight > 0 {
                    tracing::info!(in_flight, grace = %human_duration(self.grace), "waiting for runs in flight");
                }
                if tokio::time::timeout(self.grace, self.tracker.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        left = self.tracker.len(),
                        "the grace period is over; failing the runs left"
                    );
                    self.hard_stop.cancel();
                    if tokio::time::timeout(FINAL_REPORT_BUDGET, self.tracker.wait())
                        .await
                        .is_err()
                    {
                        tracing::error!(
                            left = self.tracker.len(),
                            "some runs could not report their end"
                        );
                    }
                }
            })
            .await;
    }
}
