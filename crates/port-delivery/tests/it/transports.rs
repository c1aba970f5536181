//! The worker carries each delivery with the transport registered for its mode, once
//! per attempt, and records what the transport says.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Result, ensure};
use async_trait::async_trait;
use port_core::DeliveryId;
use port_core::ports::{Clock, DeliveryMode, DeliveryState};
use port_core::run::RunStatus;
use port_delivery::{
    Abandoned, AgentTransport, Answer, Attempt, Carried, Job, NoAnswer, Outcome, Transport,
    Transports, VettingResolver,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Harness, Receiver, Reply, fast_config, webhook_action};

/// What a fake transport does with one job.
#[derive(Debug, Clone)]
enum Step {
    /// An attempt that got no answer.
    Fail(&'static str),
    /// An attempt answered with this status.
    Answer(u16),
    /// No attempt: the delivery cannot be sent.
    Unsendable(&'static str),
}

/// One call of a fake transport.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    delivery: DeliveryId,
    mode: DeliveryMode,
    attempt: u32,
    url: Option<String>,
}

/// A transport that counts its calls and answers from a script (the last step repeats).
#[derive(Clone)]
struct Counting {
    clock: Arc<dyn Clock>,
    script: Arc<Mutex<VecDeque<Step>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Counting {
    fn new(h: &Harness, script: Vec<Step>) -> Self {
        Self {
            clock: h.services.clock.clone(),
            script: Arc::new(Mutex::new(script.into())),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Transport for Counting {
    async fn carry(&self, job: Job<'_>) -> Result<Carried, Abandoned> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Call {
                delivery: job.delivery.id.clone(),
                mode: job.delivery.mode,
                attempt: job.attempt,
                url: job
                    .invocation
                    .request
                    .get("url")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        let step = {
            let mut script = self.script.lock().unwrap_or_else(PoisonError::into_inner);
            if script.len() > 1 {
                script.pop_front()
            } else {
                script.front().cloned()
            }
        };
        let outcome = match step {
            Some(Step::Fail(why)) => Outcome::NoAnswer(NoAnswer::Transport(why.to_owned())),
            Some(Step::Answer(status)) => Outcome::Answered(Answer {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                body: Vec::new(),
                truncated: false,
                retry_after: None,
            }),
            Some(Step::Unsendable(why)) => return Ok(Carried::Unsendable(why.to_owned())),
            None => Outcome::Answered(Answer {
                status: StatusCode::OK,
                body: Vec::new(),
                truncated: false,
                retry_after: None,
            }),
        };
        let at = self.clock.now();
        Ok(Carried::Attempted(Attempt {
            outcome,
            started_at: at,
            ended_at: at,
            duration: Duration::ZERO,
        }))
    }
}

fn standard(h: &Harness) -> Result<Transports> {
    let resolver = VettingResolver::system(h.services.destinations.clone());
    Ok(Transports::standard(&h.services, &fast_config(), resolver)?)
}

#[tokio::test]
async fn the_transport_registered_for_a_mode_carries_it_once_per_attempt() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let url = receiver.url("/hook");
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action("pushed", &url, json!({}), json!({})))
        .await?;
    h.create_action(&webhook_action(
        "pulled",
        &url,
        json!({"agent": true}),
        json!({}),
    ))
    .await?;
    let webhook = Counting::new(&h, vec![Step::Fail("the fake is down"), Step::Answer(200)]);
    let agent = Counting::new(&h, vec![Step::Answer(200)]);
    let transports = standard(&h)?
        .with(DeliveryMode::Webhook, webhook.clone())
        .with(DeliveryMode::Agent, agent.clone());
    h.start_worker_with_transports(fast_config(), transports)?;
    let pulled = h.execute("pulled", json!({})).await?;
    let pushed = h.execute("pushed", json!({})).await?;

    let (delivery, attempts) = h
        .wait_for_delivery(&pushed.id, DeliveryState::Delivered)
        .await?;
    let expected: Vec<Call> = [1, 2]
        .into_iter()
        .map(|attempt| Call {
            delivery: delivery.id.clone(),
            mode: DeliveryMode::Webhook,
            attempt,
            url: Some(url.clone()),
        })
        .collect();
    ensure!(webhook.calls() == expected, "calls {:?}", webhook.calls());
    let recorded: Vec<(u32, Option<u16>, Option<String>)> = attempts
        .iter()
        .map(|a| (a.number, a.status_code, a.error.clone()))
        .collect();
    ensure!(
        recorded
            == [
                (1, None, Some("the fake is down".to_owned())),
                (2, Some(200), None)
            ],
        "attempts {recorded:?}"
    );
    let logs = h.logs(&pushed.id).await?;
    ensure!(
        logs.len() == 1
            && logs[0].message.starts_with(
                "Webhook delivery attempt 1 of 3 failed: the fake is down; retrying in"
            ),
        "logs {logs:?}"
    );

    // The agent delivery waits for a runner's claim: no transport was called for it.
    let waiting = h.delivery_of(&h.caller, &pulled.id).await?;
    ensure!(waiting.mode == DeliveryMode::Agent);
    ensure!(waiting.state == DeliveryState::Pending && waiting.attempts == 0);
    ensure!(agent.calls().is_empty(), "agent calls {:?}", agent.calls());
    // Nor did anything reach the network: the fake replaced the webhook sender.
    ensure!(receiver.received().is_empty());
    Ok(())
}

#[tokio::test]
async fn what_a_transport_cannot_send_fails_the_run_without_an_attempt() -> Result<()> {
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "unsendable",
        "http://127.0.0.1:9/never",
        json!({}),
        json!({}),
    ))
    .await?;
    let fake = Counting::new(&h, vec![Step::Unsendable("the fake cannot carry it")]);
    h.start_worker_with_transports(
        fast_config(),
        Transports::default().with(DeliveryMode::Webhook, fake.clone()),
    )?;
    let run = h.execute("unsendable", json!({})).await?;

    let (_, attempts) = h.wait_for_delivery(&run.id, DeliveryState::Failed).await?;
    ensure!(attempts.is_empty(), "attempts {attempts:?}");
    ensure!(fake.calls().len() == 1, "calls {:?}", fake.calls());
    let failed = h.run(&run.id).await?;
    ensure!(failed.status() == RunStatus::Failure, "{failed:?}");
    let logs = h.logs(&run.id).await?;
    ensure!(
        logs.iter().any(|l| l
            .message
            .contains("Webhook delivery failed: the fake cannot carry it")),
        "logs {logs:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_mode_whose_transport_does_not_push_waits_for_a_claim() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "held",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    // Webhook deliveries carried the way agent deliveries are: not pushed at all.
    let config = port_delivery::DeliveryConfig {
        safety_poll: Duration::from_millis(50),
        ..fast_config()
    };
    h.start_worker_with_transports(
        config,
        Transports::default().with(DeliveryMode::Webhook, AgentTransport),
    )?;
    let run = h.execute("held", json!({})).await?;

    // Several safety polls: each claims the delivery and hands it back untouched.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let delivery = h.delivery_of(&h.caller, &run.id).await?;
    ensure!(delivery.state == DeliveryState::Pending && delivery.attempts == 0);
    ensure!(delivery.next_attempt_at <= h.services.clock.now());
    ensure!(receiver.received().is_empty());
    ensure!(h.run(&run.id).await?.status() == RunStatus::InProgress);
    ensure!(h.logs(&run.id).await?.is_empty());
    Ok(())
}
