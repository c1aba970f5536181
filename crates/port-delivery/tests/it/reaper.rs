//! The reaper of stale runs.

use std::time::Duration;

use anyhow::{Result, ensure};
use port_core::ports::DeliveryState;
use port_core::run::RunStatus;
use port_delivery::{DeliveryConfig, reap_stale_runs, spawn_reaper};
use serde_json::json;

use crate::support::{Harness, Receiver, Reply, fast_config, webhook_action};

#[tokio::test]
async fn a_run_past_its_actions_timeout_is_timed_out() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    h.create_action(&webhook_action(
        "stale",
        &receiver.url("/"),
        json!({}),
        json!({"timeoutSeconds": 60}),
    ))
    .await?;
    h.create_action(&webhook_action(
        "forever",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(fast_config())?;
    let stale = h.execute("stale", json!({})).await?;
    let forever = h.execute("forever", json!({})).await?;
    h.wait_for_delivery(&stale.id, DeliveryState::Delivered)
        .await?;

    h.clock.jump(30_000);
    ensure!(
        reap_stale_runs(&h.services, None).await? == 0,
        "not yet due"
    );
    ensure!(h.run(&stale.id).await?.status() == RunStatus::InProgress);

    h.clock.jump(31_000);
    ensure!(reap_stale_runs(&h.services, None).await? == 1);
    let run = h.run(&stale.id).await?;
    ensure!(run.status() == RunStatus::Failure);
    ensure!(run.status_label.as_deref() == Some("Timed out"));
    ensure!(run.updated_by == "portd");
    let logs = h.logs(&stale.id).await?;
    ensure!(
        logs.len() == 1 && logs[0].message.starts_with("Run timed out"),
        "{logs:?}"
    );
    ensure!(
        h.run(&forever.id).await?.status() == RunStatus::InProgress,
        "no timeout, no reaping"
    );
    ensure!(
        reap_stale_runs(&h.services, None).await? == 0,
        "a run times out once"
    );
    Ok(())
}

#[tokio::test]
async fn the_default_timeout_applies_to_actions_without_one() -> Result<()> {
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    let h = Harness::new().await?;
    h.create_action(&webhook_action(
        "plain",
        &receiver.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.create_action(&webhook_action(
        "long",
        &receiver.url("/"),
        json!({}),
        json!({"timeoutSeconds": 3600}),
    ))
    .await?;
    let plain = h.execute("plain", json!({})).await?;
    let long = h.execute("long", json!({})).await?;
    let config = DeliveryConfig {
        run_timeout_default: Some(Duration::from_secs(5)),
        ..fast_config()
    };
    let reaper = spawn_reaper(h.services.clone(), &config, h.shutdown.clone());

    h.clock.jump(6_000);
    let run = h
        .wait_for_run(&plain.id, "timed out", |r| r.status() == RunStatus::Failure)
        .await?;
    ensure!(run.status_label.as_deref() == Some("Timed out"));
    ensure!(
        h.run(&long.id).await?.status() == RunStatus::InProgress,
        "the action's own timeout wins"
    );

    h.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), reaper).await??;
    Ok(())
}

#[tokio::test]
async fn the_timeout_counts_from_the_approval() -> Result<()> {
    let h = Harness::new().await?;
    let top = json!({"timeoutSeconds": 10, "requiredApproval": true});
    h.create_action(&webhook_action(
        "approved-late",
        "http://127.0.0.1:9/",
        json!({}),
        top,
    ))
    .await?;
    let run = h.execute("approved-late", json!({})).await?;
    h.clock.jump(60_000);
    h.services.approve(&h.caller, run.id.as_str(), None).await?;

    ensure!(
        reap_stale_runs(&h.services, None).await? == 0,
        "it only just started"
    );
    h.clock.jump(11_000);
    ensure!(reap_stale_runs(&h.services, None).await? == 1);
    ensure!(h.run(&run.id).await?.status() == RunStatus::Failure);
    Ok(())
}
