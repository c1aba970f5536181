//! Port's own clients (issue 15): what they let a tenant make portd compute. Claims
//! route by installation and invocation type and skip excluded actions' runs, so the
//! attacker fills its queue with runs every claim must pass over (an excluded action's
//! runs, GitHub runs Port's agent never takes) and claims as fast as it can, while it
//! also stores integrations and settings at their bounds and tries to pass them. Its
//! claims stay its own cost (an index serves each route; excluded runs cost one
//! primary-key probe each), its oversized writes are 422, and the victim keeps its
//! latency.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use futures::StreamExt as _;
use port_chaos::api::Api;
use port_chaos::isolation::{Tenants, TenantsOptions, action, execute};
use port_store::ScratchSchema;
use serde_json::{Value, json};

/// Runs of the excluded action the attacker's Ocean claims must pass over.
const EXCLUDED_RUNS: usize = 2400;
/// GitHub runs (unbound, not WEBHOOK) Port's agent's claims must pass over.
const GITHUB_RUNS: usize = 600;
/// How long the attacker claims and writes.
const ATTACK: Duration = Duration::from_secs(3);
/// port_core::integration's bounds.
const INTEGRATION_BYTES: usize = 256 * 1024;
const INTEGRATIONS: usize = 100;
const SETTINGS_BYTES: usize = 64 * 1024;

async fn fill(attacker: &Api, identifier: &str, count: usize) -> Result<()> {
    let statuses: Vec<u16> = futures::stream::iter(0..count)
        .map(|_| async move {
            // The attacker's template renders are fairly queued: retry its own 429s.
            loop {
                let answer = execute(attacker, identifier).await?;
                if answer.status != 429 {
                    return anyhow::Ok(answer.status);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    ensure!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    Ok(())
}

/// What the attacker saw.
#[derive(Debug, Default)]
struct Outcome {
    claims: usize,
    claimed_runs: usize,
    slowest_claim: Duration,
    claim_statuses: Vec<u16>,
    /// Status and error identifier of each write past a bound.
    refused: Vec<(u16, String)>,
    integration_writes: usize,
}

async fn refused(
    attacker: &Api,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Result<(u16, String)> {
    let answer = attacker.send(method, path, Some(&body), &[]).await?;
    Ok((
        answer.status,
        answer.body["error"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_claims_and_stored_integrations_cost_the_attacker_only() -> Result<()> {
    routed_claims(TenantsOptions::default(), "SQLite").await
}

/// The same on PostgreSQL, whose planner reads the claim's index on its own terms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_claims_and_stored_integrations_cost_the_attacker_only_on_postgres() -> Result<()> {
    let Ok(base_url) = std::env::var("PORT_TEST_DATABASE_URL") else {
        port_chaos::visible("skipped: PORT_TEST_DATABASE_URL not set");
        return Ok(());
    };
    let schema = ScratchSchema::create(&base_url, "isolation").await?;
    let outcome = routed_claims(
        TenantsOptions::default().database_url(schema.url()),
        "PostgreSQL",
    )
    .await;
    schema.drop_now().await?;
    outcome
}

async fn routed_claims(options: TenantsOptions, backend: &str) -> Result<()> {
    let mut tenants = Tenants::start(options).await?;
    let attacker = tenants.attacker.clone();
    for (identifier, invocation) in [
        (
            "noise",
            json!({
                "type": "INTEGRATION_ACTION",
                "installationId": "ocean",
                "integrationActionType": "dispatch_workflow",
                "integrationActionExecutionProperties": { "workflow": "x.yml" }
            }),
        ),
        (
            "gh",
            json!({ "type": "GITHUB", "org": "acme", "repo": "infra", "workflow": "x.yml" }),
        ),
    ] {
        attacker
            .post("/v1/actions", &action(identifier, invocation))
            .await?
            .expect(201, "the attacker's action")?;
    }
    let filled = Instant::now();
    fill(&attacker, "noise", EXCLUDED_RUNS).await?;
    fill(&attacker, "gh", GITHUB_RUNS).await?;
    port_chaos::visible(&format!(
        "{backend}: {} queued runs in {:?}",
        EXCLUDED_RUNS + GITHUB_RUNS,
        filled.elapsed()
    ));

    let report = tenants
        .under_attack(&format!("{backend}: claims past 3000 skipped runs, integrations at their bounds"), |attacker| async move {
            let mut outcome = Outcome::default();
            let big_config = json!({ "resources": [{ "kind": "x".repeat(INTEGRATION_BYTES - 200) }] });
            // The integrations an organization may keep, then one more.
            for i in 0..INTEGRATIONS {
                let answer = attacker
                    .post("/v1/integration", &json!({ "installationId": format!("i-{i}") }))
                    .await?;
                ensure!(answer.status == 201, "{} {}", answer.status, answer.body);
            }
            outcome.refused.push(refused(&attacker, reqwest::Method::POST, "/v1/integration", json!({ "installationId": "one-more" })).await?);
            outcome.refused.push(refused(&attacker, reqwest::Method::PATCH, "/v1/integration/i-0", json!({ "config": { "x": "y".repeat(INTEGRATION_BYTES) } })).await?);
            outcome.refused.push(refused(&attacker, reqwest::Method::PATCH, "/v1/organization", json!({ "settings": { "x": "y".repeat(SETTINGS_BYTES) } })).await?);
            let too_many: Vec<String> = (0..101).map(|i| format!("a{i}")).collect();
            outcome.refused.push(refused(&attacker, reqwest::Method::POST, "/v1/actions/runs/claim-pending", json!({ "installationId": "ocean", "exclude": too_many })).await?);

            let started = Instant::now();
            let mut turn = 0usize;
            while started.elapsed() < ATTACK {
                turn += 1;
                let body = match turn % 3 {
                    0 => json!({ "installationId": "_PORT_EXEC_AGENT", "limit": 100, "invocationMethod": "WEBHOOK" }),
                    _ => json!({ "installationId": "ocean", "limit": 1000, "visibilityTimeoutMs": 600000, "exclude": ["noise"] }),
                };
                let sent = Instant::now();
                let answer = attacker
                    .send(
                        reqwest::Method::POST,
                        "/v1/actions/runs/claim-pending",
                        Some(&body),
                        &[("x-port-reserved-usage", "true")],
                    )
                    .await?;
                outcome.slowest_claim = outcome.slowest_claim.max(sent.elapsed());
                eprintln!("DEBUG claim {} {:?}", turn % 3, sent.elapsed());
                outcome.claims += 1;
                outcome.claim_statuses.push(answer.status);
                outcome.claimed_runs += answer.body["runs"].as_array().map_or(0, Vec::len);
                if turn.is_multiple_of(10) {
                    // A config just under the bound, rewritten.
                    let answer = attacker
                        .send(
                            reqwest::Method::PATCH,
                            &format!("/v1/integration/i-{}", turn % INTEGRATIONS),
                            Some(&json!({ "config": big_config })),
                            &[],
                        )
                        .await?;
                    ensure!(answer.status == 200, "{} {}", answer.status, answer.body);
                    outcome.integration_writes += 1;
                }
            }
            Ok(outcome)
        })
        .await?;
    port_chaos::visible(&format!(
        "{backend}: {} claims (slowest {:?}), {} integration writes of 256 KiB; refused: {:?}",
        report.outcome.claims,
        report.outcome.slowest_claim,
        report.outcome.integration_writes,
        report.outcome.refused
    ));
    report.assert_held()?;
    let outcome = &report.outcome;
    assert!(outcome.claims > 10, "{outcome:?}");
    // Each claim reads its own route's rows once. Joining the runs to exclude actions
    // let PostgreSQL, with statistics not yet caught up with the bulk of queued runs,
    // pick a quadratic plan: about 1 s a claim for 2400 excluded runs.
    assert!(
        outcome.slowest_claim < Duration::from_millis(500),
        "the attacker's own claims: {outcome:?}"
    );
    assert!(
        outcome.claim_statuses.iter().all(|s| *s == 200),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.claimed_runs, 0,
        "excluded and GitHub runs are never handed to these claims"
    );
    assert_eq!(
        outcome.refused,
        vec![(422, "invalid_request".to_owned()); 4],
        "each write past a bound is a clear 422"
    );
    Ok(())
}
