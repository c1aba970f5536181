//! Entity searches are tenant-controlled computations (issue 15): a query decides how
//! much of the catalog is read and how much work each entity costs. The attacker fills
//! its catalog past one request's budget (more entities than a search examines, and
//! documents bigger in all than the byte budget), then runs the costliest searches it
//! can write, many at once, across blueprints and within one. Each cross-blueprint
//! search must be its own 422 `search_too_broad` (or a 429 while its organization's
//! searches queue), each blueprint search a page that stops early with its `next`;
//! portd stays up and the victim keeps its latency.

use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use port_chaos::api::Api;
use port_chaos::isolation::{Tenants, TenantsOptions};
use port_store::ScratchSchema;
use serde_json::{Value, json};

/// More entities than a search examines (10 000).
const SMALL_ENTITIES: usize = 10_200;
/// Large documents: 40 of 900 KB, more than the 32 MiB a search reads.
const LARGE_ENTITIES: usize = 40;
const LARGE_BYTES: usize = 900 * 1024;
/// Searches sent at once, and each one's rounds.
const PARALLEL: usize = 6;
const ROUNDS: usize = 3;

async fn fill(attacker: &Api) -> Result<()> {
    for (identifier, property) in [("junk", "note"), ("blobs", "blob")] {
        attacker
            .post(
                "/v1/blueprints",
                &json!({
                    "identifier": identifier,
                    "title": identifier,
                    "schema": { "properties": { property: { "type": "string" } } }
                }),
            )
            .await?
            .expect(201, "blueprint")?;
    }
    // Bulk writes of 20, a few at a time.
    let chunks: Vec<Vec<Value>> = (0..SMALL_ENTITIES)
        .map(|i| json!({ "identifier": format!("junk-{i:05}"), "properties": { "note": format!("entity number {i}") } }))
        .collect::<Vec<_>>()
        .chunks(20)
        .map(<[Value]>::to_vec)
        .collect();
    let chunks = Arc::new(tokio::sync::Mutex::new(chunks));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let attacker = attacker.clone();
        let chunks = chunks.clone();
        writers.push(tokio::spawn(async move {
            loop {
                let Some(chunk) = chunks.lock().await.pop() else {
                    return Ok::<(), anyhow::Error>(());
                };
                attacker
                    .post(
                        "/v1/blueprints/junk/entities/bulk",
                        &json!({ "entities": chunk }),
                    )
                    .await?
                    .expect(200, "bulk write")?;
            }
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let blob = "x".repeat(LARGE_BYTES);
    for i in 0..LARGE_ENTITIES {
        attacker
            .post(
                "/v1/blueprints/blobs/entities",
                &json!({ "identifier": format!("blob-{i:02}"), "properties": { "blob": blob } }),
            )
            .await?
            .expect(201, "large entity")?;
    }
    Ok(())
}

/// The costliest query portd takes: 100 rules (its limit), each a substring search
/// that never matches, so every entity examined is read whole by every rule.
fn costly_query() -> Value {
    let rules: Vec<Value> = (0..100)
        .map(|i| json!({ "property": if i % 2 == 0 { "note" } else { "blob" }, "operator": "contains", "value": format!("needle-{i}-not-there") }))
        .collect();
    json!({ "combinator": "or", "rules": rules })
}

/// What the attacker's searches got.
#[derive(Debug, Default)]
struct Outcome {
    too_broad: usize,
    busy: usize,
    pages: usize,
    other: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_searches_of_a_large_catalog_are_the_attackers_4xx() {
    costly_searches(TenantsOptions::default(), "SQLite").await;
}

/// The same on PostgreSQL, whose scans are the other implementation of the store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_searches_of_a_large_catalog_are_the_attackers_4xx_on_postgres() {
    let Ok(base_url) = std::env::var("PORT_TEST_DATABASE_URL") else {
        port_chaos::visible("skipped: PORT_TEST_DATABASE_URL not set");
        return;
    };
    let schema = ScratchSchema::create(&base_url, "isolation").await.unwrap();
    costly_searches(
        TenantsOptions::default().database_url(schema.url()),
        "PostgreSQL",
    )
    .await;
    schema.drop_now().await.unwrap();
}

async fn costly_searches(options: TenantsOptions, backend: &str) {
    let mut tenants = Tenants::start(options).await.unwrap();
    fill(&tenants.attacker).await.unwrap();
    let report = tenants
        .under_attack(&format!("costly entity searches ({backend})"), |attacker| async move {
            let mut searchers = Vec::new();
            for n in 0..PARALLEL {
                let attacker = attacker.clone();
                searchers.push(tokio::spawn(async move {
                    let mut seen = Outcome::default();
                    for _ in 0..ROUNDS {
                        // Half across blueprints, half within the large ones.
                        let answer = if n % 2 == 0 {
                            attacker.post("/v1/entities/search", &costly_query()).await?
                        } else {
                            attacker
                                .post(
                                    "/v1/blueprints/blobs/entities/search",
                                    &json!({ "query": costly_query(), "limit": 1000 }),
                                )
                                .await?
                        };
                        let error = answer.body["error"].as_str().unwrap_or_default();
                        match (answer.status, error) {
                            (422, "search_too_broad") => seen.too_broad += 1,
                            (429, "too_many_requests") => seen.busy += 1,
                            (200, _) if answer.body["next"].is_string() => seen.pages += 1,
                            (status, _) => seen.other.push(format!("{status}: {}", answer.body)),
                        }
                    }
                    Ok::<Outcome, anyhow::Error>(seen)
                }));
            }
            let mut outcome = Outcome::default();
            for searcher in searchers {
                let seen = searcher.await.context("a searcher panicked")??;
                outcome.too_broad += seen.too_broad;
                outcome.busy += seen.busy;
                outcome.pages += seen.pages;
                outcome.other.extend(seen.other);
            }
            // A narrowed search still answers at once.
            let narrow = attacker
                .post(
                    "/v1/entities/search",
                    &json!({ "combinator": "and", "rules": [
                        { "property": "$blueprint", "operator": "=", "value": "junk" },
                        { "property": "$identifier", "operator": "in", "value": ["junk-00007", "junk-10199"] }
                    ] }),
                )
                .await?
                .expect(200, "narrowed search")?;
            ensure!(
                narrow["entities"].as_array().map(Vec::len) == Some(2),
                "{narrow}"
            );
            Ok(outcome)
        })
        .await
        .unwrap();
    println!("{}", report.summary());
    println!("{:?}", report.outcome);
    report.assert_held().unwrap();
    let outcome = &report.outcome;
    assert!(
        outcome.other.is_empty(),
        "unexpected answers: {:?}",
        outcome.other
    );
    assert!(
        outcome.too_broad > 0,
        "cross-blueprint searches were refused for their cost: {outcome:?}"
    );
    assert!(
        outcome.pages > 0,
        "blueprint searches stopped early with their next: {outcome:?}"
    );
    assert_eq!(
        outcome.too_broad + outcome.busy + outcome.pages,
        PARALLEL * ROUNDS
    );
}
