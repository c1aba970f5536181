//! The delivery worker against real HTTP receivers on loopback.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use port_core::claim::ClaimLimits;
use port_core::ports::{DeliveryState, Notice};
use port_core::run::{FinalStatus, RunPatch, RunStatus};
use port_core::signature::{DEFAULT_TOLERANCE_SECS, verify};
use serde_json::json;

use crate::support::{
    Backend, Harness, Receiver, Reply, SECRET, fast_config, schedule, webhook_action,
};

fn status_is(status: RunStatus) -> impl Fn(&port_core::run::Run) -> bool {
    move |run| run.status() == status
}

/// Checks a request's signature against its own timestamp and the raw bytes received.
fn assert_signed(request: &crate::support::Received) -> Result<i64> {
    let timestamp = request.header("x-port-timestamp");
    let ts: i64 = timestamp.parse()?;
    verify(
        SECRET.as_bytes(),
        request.header("x-port-signature"),
        timestamp,
        &request.body,
        ts,
        DEFAULT_TOLERANCE_SECS,
    )?;
    Ok(ts)
}

#[tokio::test]
async fn the_signature_verifies_over_the_raw_bytes() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "sig",
        &receiver.url("/hook"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(fast_config())?;
    let run = h.execute("sig", json!({})).await?;

    let request = receiver.wait_for(1).await?.remove(0);
    let now = h.services.clock.now().unix_seconds();
    verify(
        SECRET.as_bytes(),
        request.header("x-port-signature"),
        request.header("x-port-timestamp"),
        &request.body,
        now,
        DEFAULT_TOLERANCE_SECS,
    )?;
    ensure!(request.header("x-port-signature").starts_with("v1,"));
    ensure!(request.method == "POST");
    ensure!(request.uri.path() == "/hook");
    ensure!(request.header("content-type") == "application/json");
    ensure!(request.header("user-agent").starts_with("portd/"));
    // Compact JSON, exactly as serialized: what was signed is what arrived.
    ensure!(serde_json::to_vec(&request.json()?)? == request.body.to_vec());
    ensure!(
        request.json()?["context"]["runId"] == json!(run.id),
        "the legacy body names the run"
    );

    let (delivery, attempts) = h
        .wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;
    ensure!(request.header("webhook-id") == delivery.id.as_str());
    ensure!(attempts.len() == 1 && attempts[0].status_code == Some(200) && attempts[0].number == 1);
    // An asynchronous run waits for its backend to report.
    ensure!(h.run(&run.id).await?.status() == RunStatus::InProgress);
    ensure!(h.logs(&run.id).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn failures_are_retried_with_one_webhook_id_and_fresh_timestamps() -> Result<()> {
    // Each request moves the clock 2 s on, so every attempt signs a new timestamp.
    let mut h = Harness::new().await?;
    let skew = h.clock.clone();
    let receiver = Receiver::start_with_hook(
        vec![
            Reply::status(500),
            Reply::status(500).body("still down"),
            Reply::status(200),
        ],
        Some(Box::new(move || skew.jump(2_000))),
    )
    .await?;
    h.create_action(&webhook_action(
        "retry",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(fast_config())?;
    let run = h.execute("retry", json!({})).await?;

    let requests = receiver.wait_for(3).await?;
    let (delivery, attempts) = h
        .wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;
    ensure!(requests.len() == 3);
    let mut stamps = Vec::new();
    for request in &requests {
        ensure!(request.header("webhook-id") == delivery.id.as_str());
        stamps.push(assert_signed(request)?);
    }
    ensure!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "timestamps {stamps:?}"
    );
    let signatures: std::collections::HashSet<&str> = requests
        .iter()
        .map(|r| r.header("x-port-signature"))
        .collect();
    ensure!(signatures.len() == 3);
    ensure!(
        requests.iter().all(|r| r.body == requests[0].body),
        "the body never changes"
    );

    let codes: Vec<_> = attempts.iter().map(|a| (a.number, a.status_code)).collect();
    ensure!(
        codes == [(1, Some(500)), (2, Some(500)), (3, Some(200))],
        "{codes:?}"
    );
    ensure!(attempts[1].response_excerpt.as_deref() == Some("still down"));
    ensure!(h.run(&run.id).await?.status() == RunStatus::InProgress);
    let logs = h.logs(&run.id).await?;
    ensure!(logs.len() == 2, "one line per failed attempt: {logs:?}");
    ensure!(
        logs[0]
            .message
            .starts_with("Webhook delivery attempt 1 of 3 failed: HTTP 500")
    );
    ensure!(logs.iter().all(|l| l.created_by == "portd"));
    Ok(())
}

#[tokio::test]
async fn a_refusal_fails_the_run_after_one_attempt() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(400).body("nope")]).await?;
    let mut h = Harness::new().await?;
    let mut changes = h.hub.subscribe_runs();
    h.create_action(&webhook_action(
        "refused",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(fast_config())?;
    let run = h.execute("refused", json!({})).await?;

    let failed = h
        .wait_for_run(&run.id, "FAILURE", status_is(RunStatus::Failure))
        .await?;
    let summary = failed.summary.clone().unwrap_or_default();
    ensure!(
        summary == "Webhook delivery failed: HTTP 400 Bad Request (not retried)",
        "{summary}"
    );
    let (_, attempts) = h.wait_for_delivery(&run.id, DeliveryState::Failed).await?;
    ensure!(attempts.len() == 1 && attempts[0].response_excerpt.as_deref() == Some("nope"));
    let logs = h.logs(&run.id).await?;
    ensure!(logs.len() == 1 && logs[0].message == summary, "{logs:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(receiver.received().len() == 1, "a 4xx is not retried");

    // Streams heard about the run.
    let mut heard = false;
    while let Ok(notice) = changes.try_recv() {
        heard |= notice
            == Notice::RunChanged {
                org: h.caller.org_id.clone(),
                run: run.id.clone(),
            };
    }
    ensure!(heard);
    Ok(())
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_retried() -> Result<()> {
    let receiver = Receiver::start(vec![
        Reply::status(200).after(Duration::from_secs(3)),
        Reply::status(200),
    ])
    .await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "slow",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(port_delivery::DeliveryConfig {
        timeout: Duration::from_millis(300),
        ..fast_config()
    })?;
    let run = h.execute("slow", json!({})).await?;

    receiver.wait_for(2).await?;
    let (_, attempts) = h
        .wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;
    ensure!(attempts.len() == 2);
    ensure!(attempts[0].status_code.is_none());
    ensure!(
        attempts[0].error.as_deref() == Some("no answer within 0.3 s"),
        "{:?}",
        attempts[0].error
    );
    ensure!(attempts[1].status_code == Some(200));
    let logs = h.logs(&run.id).await?;
    ensure!(
        logs.len() == 1 && logs[0].message.contains("no answer within 0.3 s"),
        "{logs:?}"
    );
    Ok(())
}

#[tokio::test]
async fn retry_after_is_honoured() -> Result<()> {
    let receiver = Receiver::start(vec![
        Reply::status(429).header("retry-after", "1"),
        Reply::status(200),
    ])
    .await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "busy",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(fast_config())?;
    let run = h.execute("busy", json!({})).await?;

    let requests = receiver.wait_for(2).await?;
    let gap = requests[1].at - requests[0].at;
    ensure!(
        gap >= Duration::from_millis(950),
        "the second attempt came after {gap:?}"
    );
    h.wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;
    Ok(())
}

#[tokio::test]
async fn exhausted_retries_fail_the_run_with_one_log_line_per_attempt() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(503)]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "down",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(fast_config())?;
    let run = h.execute("down", json!({})).await?;

    let failed = h
        .wait_for_run(&run.id, "FAILURE", status_is(RunStatus::Failure))
        .await?;
    let summary = failed.summary.clone().unwrap_or_default();
    ensure!(
        summary
            == "Webhook delivery failed: no successful answer after 3 attempts; the last one: HTTP 503 Service Unavailable",
        "{summary}"
    );
    let (_, attempts) = h.wait_for_delivery(&run.id, DeliveryState::Failed).await?;
    ensure!(attempts.len() == 3);
    ensure!(receiver.received().len() == 3);
    let logs = h.logs(&run.id).await?;
    let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    ensure!(messages.len() == 3, "{messages:?}");
    ensure!(messages[0].starts_with(
        "Webhook delivery attempt 1 of 3 failed: HTTP 503 Service Unavailable; retrying in"
    ));
    ensure!(messages[1].starts_with("Webhook delivery attempt 2 of 3 failed"));
    ensure!(messages[2] == summary);
    ensure!(logs.iter().all(|l| l.created_by == "portd"));
    Ok(())
}

#[tokio::test]
async fn a_synchronized_200_ends_the_run_with_its_response() -> Result<()> {
    let receiver = Receiver::start(vec![
        Reply::status(200).body(r#"{"ok":true,"items":[1,2]}"#),
    ])
    .await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "sync-ok",
        &receiver.url("/"),
        json!({"synchronized": true}),
        json!({}),
    ))
    .await?;
    h.start_worker(fast_config())?;
    let run = h.execute("sync-ok", json!({})).await?;
    ensure!(run.synchronized);

    let done = h
        .wait_for_run(&run.id, "SUCCESS", status_is(RunStatus::Success))
        .await?;
    ensure!(
        done.response == Some(json!({"ok": true, "items": [1, 2]})),
        "{:?}",
        done.response
    );
    ensure!(done.updated_by == "portd");
    h.wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_synchronized_500_fails_the_run() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(500).body("boom")]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "sync-ko",
        &receiver.url("/"),
        json!({"synchronized": true}),
        json!({}),
    ))
    .await?;
    h.start_worker(port_delivery::DeliveryConfig {
        retry_schedule: schedule(&[0.0, 0.05]),
        ..fast_config()
    })?;
    let run = h.execute("sync-ko", json!({})).await?;

    let failed = h
        .wait_for_run(&run.id, "FAILURE", status_is(RunStatus::Failure))
        .await?;
    ensure!(
        failed.summary.as_deref() == Some("Failed to invoke the webhook with status code: 500")
    );
    ensure!(failed.response == Some(json!("boom")));
    let (_, attempts) = h.wait_for_delivery(&run.id, DeliveryState::Failed).await?;
    ensure!(
        attempts.len() == 1,
        "a synchronized handler's 500 is its answer, not a reason to retry"
    );
    let logs = h.logs(&run.id).await?;
    ensure!(logs.len() == 1, "{logs:?}");
    Ok(())
}

#[tokio::test]
async fn the_v2_template_arrives_as_evaluated() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(202)]).await?;
    let mut h = Harness::new().await?;
    let url = format!(
        "{}/runs/{{{{ .run.id }}}}?action={{{{ .action.identifier }}}}",
        receiver.url("")
    );
    let method = json!({
        "method": "PUT",
        "headers": {"RUN_ID": "{{ .run.id }}", "X-Static": "static", "X-Dropped": "{{ null }}"},
        "body": {
            "runId": "{{ .run.id }}",
            "{{ spreadValue() }}": "{{ .inputs }}",
            "{{ if .inputs.flag then \"flagged\" else null end }}": "dropped with its key",
            "context": {"action": "{{ .action.identifier }}", "count": "{{ .inputs.count + 1 }}"},
        },
    });
    let mut action = webhook_action("tmpl", &url, method, json!({}));
    action["trigger"]["userInputs"]["properties"] = json!({
        "name": {"type": "string"},
        "flag": {"type": "boolean"},
        "count": {"type": "number"},
    });
    h.create_action(&action).await?;
    h.start_worker(fast_config())?;
    let run = h
        .execute("tmpl", json!({"name": "svc", "flag": false, "count": 41}))
        .await?;

    let request = receiver.wait_for(1).await?.remove(0);
    assert_signed(&request)?;
    ensure!(request.method == "PUT");
    ensure!(
        request.uri.path() == format!("/runs/{}", run.id),
        "{}",
        request.uri
    );
    ensure!(request.uri.query() == Some("action=tmpl"));
    ensure!(request.header("run_id") == run.id.as_str());
    ensure!(request.header("x-static") == "static");
    ensure!(!request.headers.contains_key("x-dropped"));
    let expected = json!({
        "runId": run.id,
        "name": "svc",
        "flag": false,
        "count": 41,
        "context": {"action": "tmpl", "count": 42},
    });
    ensure!(
        request.json()? == expected,
        "{}",
        String::from_utf8_lossy(&request.body)
    );
    ensure!(
        serde_json::to_vec(&request.json()?)? == request.body.to_vec(),
        "compact, in template order"
    );
    h.wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;
    Ok(())
}

#[tokio::test]
async fn approval_gates_delivery() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "gated",
        &receiver.url("/"),
        json!({}),
        json!({"requiredApproval": true}),
    ))
    .await?;
    h.start_worker(fast_config())?;
    let approved = h.execute("gated", json!({})).await?;
    let declined = h.execute("gated", json!({})).await?;
    ensure!(approved.status() == RunStatus::WaitingForApproval);

    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        receiver.received().is_empty(),
        "nothing is sent before approval"
    );

    h.services
        .decline(&h.caller, declined.id.as_str(), Some("no".into()))
        .await?;
    h.services
        .approve(&h.caller, approved.id.as_str(), None)
        .await?;
    let request = receiver.wait_for(1).await?.remove(0);
    ensure!(request.json()?["context"]["runId"] == json!(approved.id));
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        receiver.received().len() == 1,
        "the declined run is never sent"
    );
    ensure!(
        h.store
            .deliveries_of_run(&h.caller.org_id, &declined.id)
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn a_delivery_is_sent_without_waiting_for_the_safety_poll() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "quick",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    // A long safety poll: only the hub's wake-up can explain a quick delivery.
    h.start_worker(port_delivery::DeliveryConfig {
        safety_poll: Duration::from_secs(30),
        ..fast_config()
    })?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    h.execute("quick", json!({})).await?;
    receiver.wait_for(1).await?;
    let latency = started.elapsed();
    ensure!(
        latency < Duration::from_millis(500),
        "delivered after {latency:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_run_that_ended_before_its_first_attempt_is_not_sent() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "ended",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    let run = h.execute("ended", json!({})).await?;
    let patch = RunPatch {
        status: Some(FinalStatus::Success),
        ..RunPatch::default()
    };
    h.services
        .patch_run(&h.caller, run.id.as_str(), patch)
        .await?;

    h.start_worker(fast_config())?;
    let (_, attempts) = h.wait_for_delivery(&run.id, DeliveryState::Failed).await?;
    ensure!(attempts.is_empty());
    ensure!(receiver.received().is_empty());
    ensure!(h.logs(&run.id).await?.is_empty());
    ensure!(h.run(&run.id).await?.status() == RunStatus::Success);
    Ok(())
}

#[tokio::test]
async fn retries_stop_when_the_run_ends() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(500), Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "stops",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(port_delivery::DeliveryConfig {
        retry_schedule: schedule(&[0.0, 1.0]),
        ..fast_config()
    })?;
    let run = h.execute("stops", json!({})).await?;

    receiver.wait_for(1).await?;
    let patch = RunPatch {
        status: Some(FinalStatus::Success),
        ..RunPatch::default()
    };
    h.services
        .patch_run(&h.caller, run.id.as_str(), patch)
        .await?;
    let (_, attempts) = h.wait_for_delivery(&run.id, DeliveryState::Failed).await?;
    ensure!(attempts.len() == 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(receiver.received().len() == 1);
    ensure!(
        h.run(&run.id).await?.status() == RunStatus::Success,
        "the backend's outcome stands"
    );
    Ok(())
}

#[tokio::test]
async fn a_crashed_workers_delivery_is_sent_once_its_lease_ends() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "orphan",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    let run = h.execute("orphan", json!({})).await?;
    // A worker claimed it and died.
    let claimed_at = Instant::now();
    let now = h.services.clock.now();
    let claimed = h
        .store
        .claim_due_webhooks("crashed-worker", now, 400, &ClaimLimits::up_to(10))
        .await?;
    ensure!(claimed.len() == 1);

    h.start_worker(fast_config())?;
    receiver.wait_for(1).await?;
    let waited = claimed_at.elapsed();
    ensure!(
        waited >= Duration::from_millis(350),
        "sent {waited:?} after another worker took the lease"
    );
    h.wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_worker_stops_when_asked() -> Result<()> {
    let mut h = Harness::new().await?;
    h.start_worker(fast_config())?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    h.stop_worker().await?;
    ensure!(started.elapsed() < Duration::from_secs(1));
    Ok(())
}

#[tokio::test]
async fn the_memory_store_behaves_the_same() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(502), Reply::status(204)]).await?;
    let mut h = Harness::on(Backend::Memory).await?;
    h.create_action(&webhook_action(
        "mem",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(fast_config())?;
    let run = h.execute("mem", json!({})).await?;
    let requests = receiver.wait_for(2).await?;
    ensure!(requests[0].header("webhook-id") == requests[1].header("webhook-id"));
    let (_, attempts) = h
        .wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;
    ensure!(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>() == [Some(502), Some(204)]);
    Ok(())
}
