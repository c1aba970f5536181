//! Fair delivery: in-flight caps per organization and per organization and host, and
//! claims that give each free slot to the organization with the fewest in flight, so
//! receivers that never answer and long backlogs cost only their own organization.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use port_core::RunId;
use port_core::ports::DeliveryState;
use port_delivery::DeliveryConfig;
use serde_json::json;

use crate::support::{
    Harness, HeldReceiver, Receiver, Reply, fast_config, wait_for_arrivals, webhook_action,
};

/// Attempts that may hang for the whole test.
fn patient_config() -> DeliveryConfig {
    DeliveryConfig {
        timeout: Duration::from_secs(30),
        ..fast_config()
    }
}

/// "Promptly": far below the attempt timeout the hanging receivers hold slots for.
const PROMPT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_receivers_of_one_organization_do_not_delay_another() -> Result<()> {
    let config = patient_config();
    let share = config.max_in_flight_per_org;
    ensure!(
        (config.max_in_flight, share) == (32, 16),
        "the documented defaults"
    );
    let mut h = Harness::new().await?;
    let attacker = h.add_org("attacker").await?;
    let mut hanging = Vec::new();
    for i in 0..40 {
        let receiver = HeldReceiver::start().await?;
        let action = webhook_action(
            &format!("hang-{i}"),
            &receiver.url("/"),
            json!({}),
            json!({}),
        );
        h.create_action_as(&attacker, &action).await?;
        hanging.push(receiver);
    }
    let receiver = Receiver::start(vec![Reply::status(200)]).await?;
    h.create_action(&webhook_action(
        "victim",
        &receiver.url("/hook"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.start_worker(config.clone())?;
    let mut runs: Vec<RunId> = Vec::new();
    for i in 0..40 {
        runs.push(
            h.execute_as(&attacker, &format!("hang-{i}"), json!({}))
                .await?
                .id,
        );
    }
    let held: Vec<&HeldReceiver> = hanging.iter().collect();
    wait_for_arrivals(&held, share).await?;

    // The other organization's webhook goes out at once.
    let started = Instant::now();
    let run = h.execute("victim", json!({})).await?;
    receiver.wait_for(1).await?;
    let latency = started.elapsed();
    ensure!(latency < PROMPT, "the victim's webhook took {latency:?}");
    h.wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;

    // The attacker holds its share and no more; the rest of its deliveries wait in the
    // outbox, unleased and never attempted, so no lease can expire under them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrived: usize = hanging.iter().map(HeldReceiver::arrived).sum();
    ensure!(arrived == share, "{arrived} attacker requests in flight");
    let mut waiting = 0;
    for id in &runs {
        let delivery = h.delivery_of(&attacker, id).await?;
        if delivery.lease_owner.is_none() {
            ensure!(delivery.attempts == 0 && delivery.state == DeliveryState::Pending);
            waiting += 1;
        }
    }
    ensure!(waiting == 40 - share, "{waiting} waiting unleased");

    // Once the receivers answer, every delivery goes out, each exactly once.
    for receiver in &hanging {
        receiver.release();
    }
    for id in &runs {
        let (_, attempts) = h
            .wait_for_delivery_of(&attacker, id, DeliveryState::Delivered)
            .await?;
        ensure!(attempts.len() == 1, "{attempts:?}");
    }
    ensure!(hanging.iter().all(|r| r.arrived() == 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_host_leaves_the_organizations_other_hosts_their_slots() -> Result<()> {
    let config = DeliveryConfig {
        max_in_flight_per_org: 4,
        max_in_flight_per_host: 2,
        ..patient_config()
    };
    let hung = HeldReceiver::start().await?;
    let other = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    let neighbour = h.add_org("neighbour").await?;
    h.create_action(&webhook_action(
        "hung",
        &hung.url("/a"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.create_action(&webhook_action(
        "other",
        &other.url("/"),
        json!({}),
        json!({}),
    ))
    .await?;
    h.create_action_as(
        &neighbour,
        &webhook_action("same-host", &hung.url("/b"), json!({}), json!({})),
    )
    .await?;
    h.start_worker(config)?;
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(h.execute("hung", json!({})).await?.id);
    }
    wait_for_arrivals(&[&hung], 2).await?;

    // Without the host cap the hung host would hold all four of the organization's slots.
    let started = Instant::now();
    h.execute("other", json!({})).await?;
    other.wait_for(1).await?;
    ensure!(started.elapsed() < PROMPT, "{:?}", started.elapsed());
    ensure!(
        hung.arrived() == 2,
        "{} held at the hung host",
        hung.arrived()
    );

    // The cap counts per organization: another one's webhook to the same host goes out.
    let started = Instant::now();
    let theirs = h.execute_as(&neighbour, "same-host", json!({})).await?;
    wait_for_arrivals(&[&hung], 3).await?;
    ensure!(started.elapsed() < PROMPT, "{:?}", started.elapsed());

    hung.release();
    for id in &runs {
        h.wait_for_delivery(id, DeliveryState::Delivered).await?;
    }
    h.wait_for_delivery_of(&neighbour, &theirs.id, DeliveryState::Delivered)
        .await?;
    ensure!(hung.arrived() == 6);
    ensure!(
        hung.most_held() == 3,
        "at most 2 + 1 at once, got {}",
        hung.most_held()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_does_not_starve_another_organization() -> Result<()> {
    // One organization may use every slot, so only the claim order can be fair.
    let config = DeliveryConfig {
        max_in_flight: 2,
        max_in_flight_per_org: 2,
        max_in_flight_per_host: 2,
        ..fast_config()
    };
    let slow = Receiver::start(vec![Reply::status(200).after(Duration::from_millis(100))]).await?;
    let fast = Receiver::start(vec![Reply::status(200)]).await?;
    let mut h = Harness::new().await?;
    let busy = h.add_org("busy").await?;
    h.create_action_as(
        &busy,
        &webhook_action("bulk", &slow.url("/"), json!({}), json!({})),
    )
    .await?;
    h.create_action(&webhook_action("one", &fast.url("/"), json!({}), json!({})))
        .await?;
    h.start_worker(config)?;
    for _ in 0..30 {
        h.execute_as(&busy, "bulk", json!({})).await?;
    }
    slow.wait_for(2).await?;

    // Due after all 30, yet sent at the next free slot: its organization has none in
    // flight, the busy one has the other slot.
    h.execute("one", json!({})).await?;
    fast.wait_for(1).await?;
    let backlog_sent = slow.received().len();
    ensure!(
        backlog_sent <= 6,
        "the backlog went first: {backlog_sent} of 30 were sent before the other organization's one"
    );
    slow.wait_for(30).await?;
    Ok(())
}
