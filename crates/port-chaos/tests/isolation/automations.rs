//! Fair automations: the attacker floods its outbox (hundreds of entity writes, each
//! setting off an automation whose condition is slow to evaluate) while the victim's
//! own automation keeps starting its run, and its webhook keeps arriving, about as fast
//! as before: event claims take a few events of each organization at a time, and each
//! organization gets a bounded turn of every pass.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use port_chaos::api::Api;
use port_chaos::isolation::{Tenants, TenantsOptions, VICTIM_CLIENT_SECRET};
use port_chaos::receiver::Receiver;
use serde_json::{Value, json};

/// Entities the attacker writes (in bulk requests of 20).
const FLOOD: usize = 400;
/// Victim automations timed before and during the attack.
const SAMPLES: usize = 6;

fn blueprint(identifier: &str) -> Value {
    json!({ "identifier": identifier, "title": identifier, "schema": { "properties": {} } })
}

fn automation(identifier: &str, blueprint: &str, condition: &str, url: &str) -> Value {
    json!({
        "identifier": identifier,
        "trigger": {
            "type": "automation",
            "event": { "type": "ENTITY_CREATED", "blueprintIdentifier": blueprint },
            "condition": { "type": "JQ", "expressions": [condition], "combinator": "and" }
        },
        "invocationMethod": { "type": "WEBHOOK", "url": url },
        "publish": true
    })
}

/// Creates `n` victim entities one after the other; how long each took from the write
/// to its automation's webhook arriving, in milliseconds.
async fn automation_latencies(
    api: &Api,
    receiver: &Receiver,
    first: usize,
    n: usize,
) -> Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(n);
    for i in first..first + n {
        let before = receiver.count();
        let started = Instant::now();
        api.post(
            "/v1/blueprints/service/entities",
            &json!({ "identifier": format!("svc-{i}") }),
        )
        .await?
        .expect(201, "creating a victim entity")?;
        let deadline = started + Duration::from_secs(20);
        let arrived = loop {
            if let Some(request) = receiver.received().get(before) {
                break request.at;
            }
            if Instant::now() > deadline {
                bail!("the victim's automation did not run within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        latencies.push(arrived.duration_since(started).as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

fn max(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(0.0, f64::max)
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_flood_with_slow_conditions_costs_only_its_own_organization() -> Result<()> {
    let mut tenants = Tenants::start(TenantsOptions::default()).await?;
    let victim = tenants.victim.clone();
    let receiver = Receiver::start(VICTIM_CLIENT_SECRET, 17).await?;
    victim
        .post("/v1/blueprints", &blueprint("service"))
        .await?
        .expect(201, "the victim's blueprint")?;
    victim
        .post(
            "/v1/actions",
            &automation("announce", "service", "true", &receiver.url()),
        )
        .await?
        .expect(201, "the victim's automation")?;
    automation_latencies(&victim, &receiver, 0, 2).await?;
    let baseline = automation_latencies(&victim, &receiver, 100, SAMPLES).await?;

    let victim_api = victim.clone();
    let victim_receiver = &receiver;
    let report = tenants
        .under_attack(
            "an event flood with slow conditions",
            |attacker| async move {
                attacker
                    .post("/v1/blueprints", &blueprint("junk"))
                    .await?
                    .expect(201, "the attacker's blueprint")?;
                // A condition that takes its time and never holds.
                attacker
                    .post(
                        "/v1/actions",
                        &automation(
                            "slow",
                            "junk",
                            "[range(0; 20000) | tostring] | length < 0",
                            "http://127.0.0.1:9/never",
                        ),
                    )
                    .await?
                    .expect(201, "the attacker's automation")?;
                for chunk in 0..FLOOD / 20 {
                    let entities: Vec<Value> = (0..20)
                        .map(|i| json!({ "identifier": format!("junk-{chunk}-{i}") }))
                        .collect();
                    attacker
                        .post(
                            "/v1/blueprints/junk/entities/bulk",
                            &json!({ "entities": entities }),
                        )
                        .await?
                        .expect(200, "the attacker's bulk write")?;
                }
                let during =
                    automation_latencies(&victim_api, victim_receiver, 200, SAMPLES).await?;
                Ok(during)
            },
        )
        .await?;
    let during = &report.outcome;
    port_chaos::visible(&format!(
        "isolation `event flood`: victim automation baseline median {:.1} ms max {:.1} ms, \
         during median {:.1} ms max {:.1} ms",
        median(&baseline),
        max(&baseline),
        median(during),
        max(during),
    ));
    report.assert_held()?;
    let allowed_median = median(&baseline) * 3.0 + 400.0;
    ensure!(
        median(during) <= allowed_median,
        "victim automation median {:.1} ms, allowed {allowed_median:.1} ms (baseline {baseline:?}, during {during:?})",
        median(during)
    );
    ensure!(
        max(during) < 2_500.0,
        "a victim automation took {:.1} ms ({during:?})",
        max(during)
    );
    Ok(())
}
