//! Approval notifications (`APPROVAL_NOTIFICATION` deliveries) carried by the worker
//! to real receivers on loopback: signed like webhooks, retried with backoff, and never
//! changing their run; a final failure leaves one line in the run's log.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use port_core::ports::{
    Delivery, DeliveryAttempt, DeliveryMode, DeliveryState, NewDelivery, Notice, Notifier,
};
use port_core::run::{Run, RunStatus};
use port_core::signature::{DEFAULT_TOLERANCE_SECS, verify};
use serde_json::{Value, json};

use crate::support::{
    Backend, CLIENT_ID, Harness, PATIENCE, Receiver, Reply, SECRET, fast_config, schedule,
    webhook_action,
};

/// A harness on `backend` whose action `gated` needs approval and would invoke
/// `invocation_url` once approved, with the worker started on `config`.
async fn gated(
    backend: Backend,
    invocation_url: &str,
    config: port_delivery::DeliveryConfig,
) -> Result<Harness> {
    let mut h = Harness::on(backend).await?;
    h.create_action(&webhook_action(
        "gated",
        invocation_url,
        json!({}),
        json!({"requiredApproval": true}),
    ))
    .await?;
    h.start_worker(config)?;
    Ok(h)
}

/// A run of `gated`, waiting for approval.
async fn waiting_run(h: &Harness) -> Result<Run> {
    let run = h.execute("gated", json!({})).await?;
    ensure!(run.status() == RunStatus::WaitingForApproval);
    Ok(run)
}

/// Writes an approval notification of `run` to the outbox, as execute does when the
/// action has an `approvalNotification` (the run itself unchanged), and wakes the worker.
async fn notify(h: &Harness, run: &Run, request: Value) -> Result<Delivery> {
    let now = h.services.clock.now();
    let delivery = NewDelivery {
        id: h.services.ids.next(),
        org_id: run.org_id.clone(),
        run_id: run.id.clone(),
        mode: DeliveryMode::ApprovalNotification,
        request,
        synchronized: false,
        installation_id: None,
        created_at: now,
        next_attempt_at: now,
    };
    h.store
        .save_transition(run, run.version, &[], Some(&delivery))
        .await?;
    h.hub.notify(Notice::DeliveryReady);
    Ok(notification_of(h, run).await?.0)
}

/// The json body execute writes (`APPROVAL_REQUESTED`).
fn json_body(run: &Run) -> Value {
    json!({
        "type": "APPROVAL_REQUESTED",
        "run": {"id": run.id, "status": "WAITING_FOR_APPROVAL"},
        "action": {"identifier": "gated", "title": "gated"},
        "approvers": ["ada@example.com"],
        "requestedBy": CLIENT_ID,
        "approveUrl": null,
    })
}

/// The run's only approval notification, with its attempts.
async fn notification_of(h: &Harness, run: &Run) -> Result<(Delivery, Vec<DeliveryAttempt>)> {
    let mut notifications: Vec<_> = h
        .store
        .deliveries_of_run(&h.caller.org_id, &run.id)
        .await?
        .into_iter()
        .filter(|(d, _)| d.mode == DeliveryMode::ApprovalNotification)
        .collect();
    match notifications.len() {
        1 => Ok(notifications.remove(0)),
        n => bail!("run {} has {n} approval notifications", run.id),
    }
}

async fn wait_for_notification(
    h: &Harness,
    run: &Run,
    state: DeliveryState,
) -> Result<(Delivery, Vec<DeliveryAttempt>)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (delivery, attempts) = notification_of(h, run).await?;
        if delivery.state == state {
            return Ok((delivery, attempts));
        }
        if Instant::now() > deadline {
            bail!("the notification never became {state:?}: {delivery:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn statuses(attempts: &[DeliveryAttempt]) -> Vec<Option<u16>> {
    attempts.iter().map(|a| a.status_code).collect()
}

/// Checks a request's signature against its own timestamp and the raw bytes received.
fn assert_signed(request: &crate::support::Received) -> Result<()> {
    let timestamp = request.header("x-port-timestamp");
    verify(
        SECRET.as_bytes(),
        request.header("x-port-signature"),
        timestamp,
        &request.body,
        timestamp.parse()?,
        DEFAULT_TOLERANCE_SECS,
    )?;
    Ok(())
}

async fn a_notification_is_posted_signed_with_its_json_body_on(backend: Backend) -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let h = gated(backend, "http://192.0.2.1/never", fast_config()).await?;
    let run = waiting_run(&h).await?;
    let body = json_body(&run);
    let delivery = notify(
        &h,
        &run,
        json!({"url": receiver.url("/approvals?team=ops"), "format": "json", "body": body}),
    )
    .await?;

    let request = receiver.wait_for(1).await?.remove(0);
    assert_signed(&request)?;
    let now = h.services.clock.now().unix_seconds();
    let sent_at: i64 = request.header("x-port-timestamp").parse()?;
    ensure!((now - sent_at).abs() <= 5, "signed at the time of sending");
    ensure!(request.method == "POST");
    ensure!(request.uri.path() == "/approvals" && request.uri.query() == Some("team=ops"));
    ensure!(request.header("content-type") == "application/json");
    ensure!(request.header("user-agent").starts_with("portd/"));
    ensure!(request.header("webhook-id") == delivery.id.as_str());
    // The body alone, compact: what was signed is what arrived.
    ensure!(request.body.to_vec() == serde_json::to_vec(&body)?);

    let (_, attempts) = wait_for_notification(&h, &run, DeliveryState::Delivered).await?;
    ensure!(statuses(&attempts) == [Some(200)]);
    ensure!(h.run(&run.id).await?.status() == RunStatus::WaitingForApproval);
    ensure!(h.logs(&run.id).await?.is_empty(), "a success says nothing");
    Ok(())
}

#[tokio::test]
async fn a_notification_is_posted_signed_with_its_json_body() -> Result<()> {
    a_notification_is_posted_signed_with_its_json_body_on(Backend::Sqlite).await
}

#[tokio::test]
async fn a_notification_is_posted_the_same_from_the_memory_store() -> Result<()> {
    a_notification_is_posted_signed_with_its_json_body_on(Backend::Memory).await
}

#[tokio::test]
async fn the_slack_format_posts_the_slack_body() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200).body("ok")]).await?;
    let h = gated(Backend::Sqlite, "http://192.0.2.1/never", fast_config()).await?;
    let run = waiting_run(&h).await?;
    let body = json!({
        "text": format!("Run {} of gated waits for your approval", run.id),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*gated* requested by test-client"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Run `{}`", run.id)}]},
        ],
    });
    notify(
        &h,
        &run,
        json!({"url": receiver.url("/services/T0/B0/s3cret"), "format": "slack", "body": body}),
    )
    .await?;

    let request = receiver.wait_for(1).await?.remove(0);
    assert_signed(&request)?;
    ensure!(request.uri.path() == "/services/T0/B0/s3cret");
    ensure!(request.json()? == body);
    ensure!(request.body.to_vec() == serde_json::to_vec(&body)?);
    wait_for_notification(&h, &run, DeliveryState::Delivered).await?;
    ensure!(h.run(&run.id).await?.status() == RunStatus::WaitingForApproval);
    Ok(())
}

#[tokio::test]
async fn a_failing_receiver_is_retried_until_it_answers_and_the_run_keeps_waiting() -> Result<()> {
    let receiver = Receiver::start(vec![
        Reply::status(500),
        Reply::status(503).header("retry-after", "1"),
        Reply::status(204),
    ])
    .await?;
    let h = gated(Backend::Sqlite, "http://192.0.2.1/never", fast_config()).await?;
    let run = waiting_run(&h).await?;
    notify(
        &h,
        &run,
        json!({"url": receiver.url("/"), "format": "json", "body": json_body(&run)}),
    )
    .await?;

    let requests = receiver.wait_for(3).await?;
    let ids: Vec<&str> = requests.iter().map(|r| r.header("webhook-id")).collect();
    ensure!(
        ids[0] == ids[1] && ids[1] == ids[2],
        "one webhook-id: {ids:?}"
    );
    for request in &requests {
        assert_signed(request)?;
    }
    // The schedule's 100 ms, stretched by the receiver's `Retry-After: 1`.
    let waited = requests[2].at - requests[1].at;
    ensure!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );

    let (_, attempts) = wait_for_notification(&h, &run, DeliveryState::Delivered).await?;
    ensure!(statuses(&attempts) == [Some(500), Some(503), Some(204)]);
    let run = h.run(&run.id).await?;
    ensure!(run.status() == RunStatus::WaitingForApproval);
    ensure!(
        h.logs(&run.id).await?.is_empty(),
        "retries of a notification stay off the run's log"
    );
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_always_fails_leaves_one_warning_and_the_run_waiting() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(500)]).await?;
    let h = gated(Backend::Sqlite, "http://192.0.2.1/never", fast_config()).await?;
    let run = waiting_run(&h).await?;
    notify(
        &h,
        &run,
        json!({"url": receiver.url("/secret-path"), "format": "json", "body": json_body(&run)}),
    )
    .await?;

    let (_, attempts) = wait_for_notification(&h, &run, DeliveryState::Failed).await?;
    ensure!(statuses(&attempts) == [Some(500); 3], "the whole schedule");
    let logs = h.logs(&run.id).await?;
    let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    ensure!(
        messages
            == [
                "Approval notification to 127.0.0.1 failed: no successful answer after 3 \
                 attempts; the last one: HTTP 500 Internal Server Error"
            ],
        "{messages:?}"
    );
    ensure!(logs[0].created_by == port_delivery::SYSTEM_ACTOR);
    ensure!(h.run(&run.id).await?.status() == RunStatus::WaitingForApproval);

    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        receiver.received().len() == 3,
        "nothing after the last attempt"
    );
    ensure!(h.logs(&run.id).await?.len() == 1);
    Ok(())
}

#[tokio::test]
async fn an_unusable_notification_only_leaves_a_warning() -> Result<()> {
    let h = gated(Backend::Sqlite, "http://192.0.2.1/never", fast_config()).await?;
    let run = waiting_run(&h).await?;
    notify(
        &h,
        &run,
        json!({"url": "http://127.0.0.1:9/", "format": "teams", "body": {}}),
    )
    .await?;

    let (_, attempts) = wait_for_notification(&h, &run, DeliveryState::Failed).await?;
    ensure!(attempts.is_empty(), "nothing was tried");
    let logs = h.logs(&run.id).await?;
    ensure!(logs.len() == 1, "{logs:?}");
    ensure!(
        logs[0].message
            == "Approval notification to 127.0.0.1 failed: the notification is unusable: its \
                format \"teams\" is not json or slack",
        "{}",
        logs[0].message
    );
    ensure!(h.run(&run.id).await?.status() == RunStatus::WaitingForApproval);
    Ok(())
}

#[tokio::test]
async fn a_run_approved_while_its_notification_retries_is_delivered_on_its_own() -> Result<()> {
    let notified = Receiver::start(vec![Reply::status(503)]).await?;
    let backend = Receiver::start(vec![Reply::status(200)]).await?;
    let config = port_delivery::DeliveryConfig {
        retry_schedule: schedule(&[0.0, 0.4, 0.4]),
        ..fast_config()
    };
    let h = gated(Backend::Sqlite, &backend.url("/run"), config).await?;
    let run = waiting_run(&h).await?;
    notify(
        &h,
        &run,
        json!({"url": notified.url("/"), "format": "json", "body": json_body(&run)}),
    )
    .await?;
    notified.wait_for(1).await?;

    // The run's invocation and its notification are two deliveries, each on its own.
    h.services.approve(&h.caller, run.id.as_str(), None).await?;
    let invocation = backend.wait_for(1).await?.remove(0);
    ensure!(invocation.json()?["context"]["runId"] == json!(run.id));
    ensure!(h.run(&run.id).await?.status() == RunStatus::InProgress);
    let all = h.store.deliveries_of_run(&h.caller.org_id, &run.id).await?;
    ensure!(all.len() == 2, "{all:?}");

    // Once the run is decided, nothing is left to ask: the notification stops quietly.
    let (_, attempts) = wait_for_notification(&h, &run, DeliveryState::Failed).await?;
    ensure!(statuses(&attempts) == [Some(503)]);
    ensure!(notified.received().len() == 1);
    let webhook = all
        .iter()
        .find(|(d, _)| d.mode == DeliveryMode::Webhook)
        .map(|(d, _)| d.id.clone());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let states: Vec<_> = h
            .store
            .deliveries_of_run(&h.caller.org_id, &run.id)
            .await?
            .into_iter()
            .filter(|(d, _)| Some(&d.id) == webhook.as_ref())
            .map(|(d, _)| d.state)
            .collect();
        if states == [DeliveryState::Delivered] {
            break;
        }
        ensure!(Instant::now() < deadline, "the invocation is {states:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(h.run(&run.id).await?.status() == RunStatus::InProgress);
    ensure!(
        h.logs(&run.id).await?.is_empty(),
        "{:?}",
        h.logs(&run.id).await?
    );
    Ok(())
}

#[tokio::test]
async fn execute_notifies_through_the_worker_in_either_format() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    for (identifier, format) in [("json-gated", "json"), ("slack-gated", "slack")] {
        let notification = json!({
            "type": "webhook",
            "url": receiver.url(&format!("/{format}")),
            "format": format,
        });
        h.create_action(&webhook_action(
            identifier,
            "http://192.0.2.1/never",
            json!({}),
            json!({"requiredApproval": true, "approvalNotification": notification}),
        ))
        .await?;
    }
    h.start_worker(fast_config())?;
    let json_run = h.execute("json-gated", json!({})).await?;
    let slack_run = h.execute("slack-gated", json!({})).await?;

    let requests = receiver.wait_for(2).await?;
    for request in &requests {
        assert_signed(request)?;
    }
    let by_path = |path: &str| requests.iter().find(|r| r.uri.path() == path);
    let Some(json_request) = by_path("/json") else {
        bail!("no json notification")
    };
    let body = json_request.json()?;
    ensure!(body["type"] == "APPROVAL_REQUESTED", "{body}");
    ensure!(body["run"]["id"] == json!(json_run.id), "{body}");
    let (json_delivery, _) = wait_for_notification(&h, &json_run, DeliveryState::Delivered).await?;
    ensure!(json_request.header("webhook-id") == json_delivery.id.as_str());
    ensure!(json_request.body.to_vec() == serde_json::to_vec(&json_delivery.request["body"])?);

    let Some(slack_request) = by_path("/slack") else {
        bail!("no slack notification")
    };
    let body = slack_request.json()?;
    ensure!(
        body["text"].is_string() && body["blocks"].is_array(),
        "{body}"
    );
    wait_for_notification(&h, &slack_run, DeliveryState::Delivered).await?;
    for run in [&json_run, &slack_run] {
        ensure!(h.run(&run.id).await?.status() == RunStatus::WaitingForApproval);
    }
    Ok(())
}
