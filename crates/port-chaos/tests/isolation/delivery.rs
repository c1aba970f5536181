//! Fair delivery: the attacker points 40 actions at receivers (in this process, on
//! loopback) that accept the connection and never answer, and runs them all. Its
//! deliveries hold at most its share of the delivery slots and wait; the victim's
//! webhooks keep arriving as fast as before the attack.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use port_chaos::api::Api;
use port_chaos::isolation::{Tenants, TenantsOptions, VICTIM_CLIENT_SECRET};
use port_chaos::receiver::Receiver;
use port_store::ScratchSchema;
use serde_json::json;
use tokio::task::JoinHandle;

/// How many receivers that never answer the attacker runs against.
const HANGING: usize = 40;
/// portd's documented default: half of the 32 delivery slots per organization.
const PER_ORG_DEFAULT: usize = 16;
/// Victim webhooks timed before and during the attack.
const SAMPLES: usize = 8;

/// A TCP listener that accepts connections and never reads or answers.
struct Tarpit {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Tarpit {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Ok(Self {
            addr,
            accepted,
            task,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn webhook_action(identifier: &str, url: &str) -> serde_json::Value {
    port_chaos::isolation::action(identifier, json!({ "type": "WEBHOOK", "url": url }))
}

/// Executes `action` `n` times, one after the other, and returns how long each webhook
/// took from the execute request to its arrival at `receiver`, in milliseconds.
async fn webhook_latencies(
    api: &Api,
    action: &str,
    receiver: &Receiver,
    n: usize,
) -> Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let before = receiver.count();
        let started = Instant::now();
        api.post(
            &format!("/v1/actions/{action}/runs"),
            &json!({ "properties": {} }),
        )
        .await?
        .expect(202, "executing the victim's webhook action")?;
        let deadline = started + Duration::from_secs(10);
        let arrived = loop {
            let received = receiver.received();
            if let Some(request) = received.get(before) {
                ensure!(request.signature_ok, "the victim's webhook is signed");
                break request.at;
            }
            if Instant::now() > deadline {
                bail!("the victim's webhook did not arrive within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        latencies.push(arrived.duration_since(started).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
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

#[derive(Debug)]
struct Outcome {
    /// The attacker's execute answers.
    executed: Vec<u16>,
    /// Connections the hanging receivers accepted: the attacker's attempts in flight.
    held: usize,
    /// The attacker's runs still `IN_PROGRESS` when the victim was done.
    waiting_runs: usize,
    /// The victim's webhook latencies during the attack, in milliseconds.
    victim_ms: Vec<f64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_receivers_cost_only_their_own_organization() -> Result<()> {
    hanging_receivers(TenantsOptions::default(), "SQLite").await
}

/// The same on PostgreSQL, whose claims are the other implementation of the fair claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_receivers_cost_only_their_own_organization_on_postgres() -> Result<()> {
    let Ok(base_url) = std::env::var("PORT_TEST_DATABASE_URL") else {
        port_chaos::visible("skipped: PORT_TEST_DATABASE_URL not set");
        return Ok(());
    };
    let schema = ScratchSchema::create(&base_url, "isolation").await?;
    let outcome = hanging_receivers(
        TenantsOptions::default().database_url(schema.url()),
        "PostgreSQL",
    )
    .await;
    schema.drop_now().await?;
    outcome
}

async fn hanging_receivers(options: TenantsOptions, backend: &str) -> Result<()> {
    // The attacker's attempts must hang for the whole test, not time out.
    let options = options.env("PORTD_DELIVERY_TIMEOUT_SECS", "120");
    let mut tenants = Tenants::start(options).await?;
    let victim = tenants.victim.clone();
    let receiver = Receiver::start(VICTIM_CLIENT_SECRET, 14).await?;
    victim
        .post("/v1/actions", &webhook_action("notify", &receiver.url()))
        .await?
        .expect(201, "creating the victim's webhook action")?;
    webhook_latencies(&victim, "notify", &receiver, 2).await?;
    let baseline = webhook_latencies(&victim, "notify", &receiver, SAMPLES).await?;

    let mut tarpits = Vec::with_capacity(HANGING);
    for _ in 0..HANGING {
        tarpits.push(Tarpit::start().await?);
    }
    let tarpits = Arc::new(tarpits);
    let hanging = tarpits.clone();
    let victim_api = victim.clone();
    let victim_receiver = &receiver;
    let report = tenants
        .under_attack("hanging webhook receivers", |attacker| async move {
            let mut executed = Vec::new();
            let mut runs = Vec::new();
            for (i, tarpit) in hanging.iter().enumerate() {
                let action = format!("hang-{i}");
                attacker
                    .post("/v1/actions", &webhook_action(&action, &tarpit.url()))
                    .await?
                    .expect(201, "creating an attacker action")?;
                let answer = port_chaos::isolation::execute(&attacker, &action).await?;
                executed.push(answer.status);
                if let Some(id) = answer.body["run"]["id"].as_str() {
                    runs.push(id.to_owned());
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while hanging.iter().map(Tarpit::accepted).sum::<usize>() < PER_ORG_DEFAULT {
                ensure!(
                    Instant::now() < deadline,
                    "the attacker's deliveries never reached its receivers"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }

            let victim_ms =
                webhook_latencies(&victim_api, "notify", victim_receiver, SAMPLES).await?;

            let mut waiting_runs = 0;
            for id in &runs {
                let run = attacker
                    .get(&format!("/v1/actions/runs/{id}"))
                    .await?
                    .expect(200, "reading an attacker run")?;
                if run["run"]["status"] == "IN_PROGRESS" {
                    waiting_runs += 1;
                }
            }
            Ok(Outcome {
                executed,
                held: hanging.iter().map(Tarpit::accepted).sum(),
                waiting_runs,
                victim_ms,
            })
        })
        .await?;
    port_chaos::visible(&format!(
        "isolation `hanging webhook receivers` ({backend}): victim webhooks baseline median {:.1} ms max {:.1} ms, \
         during median {:.1} ms max {:.1} ms; attacker: {} attempts held of {HANGING} runs, {} runs waiting",
        median(&baseline),
        max(&baseline),
        median(&report.outcome.victim_ms),
        max(&report.outcome.victim_ms),
        report.outcome.held,
        report.outcome.waiting_runs,
    ));
    report.assert_held()?;

    let outcome = &report.outcome;
    ensure!(
        outcome.executed.iter().all(|status| *status == 202),
        "the attacker's runs are accepted: {:?}",
        outcome.executed
    );
    // Only the attacker's own deliveries slow down: its share is in flight, the rest
    // wait (no failure, no retry storm), and its runs stay IN_PROGRESS.
    ensure!(
        outcome.held == PER_ORG_DEFAULT,
        "{} attacker attempts in flight, expected its share of {PER_ORG_DEFAULT}",
        outcome.held
    );
    ensure!(outcome.waiting_runs == HANGING, "{outcome:?}");
    // The victim's webhooks keep their usual latency.
    let allowed_median = median(&baseline) * 3.0 + 50.0;
    ensure!(
        median(&outcome.victim_ms) <= allowed_median,
        "victim webhook median {:.1} ms, allowed {allowed_median:.1} ms (baseline {baseline:?})",
        median(&outcome.victim_ms)
    );
    ensure!(
        max(&outcome.victim_ms) < 1000.0,
        "a victim webhook took {:.1} ms",
        max(&outcome.victim_ms)
    );
    drop(tarpits);
    Ok(())
}
