//! The kill -9 controller (`cargo xtask crash-test`): drives a seeded mixed load
//! against the real `portd` binary, kills it with SIGKILL at random moments, restarts
//! it on the same data, and after every restart checks with the [`Oracle`] that:
//!
//! - every acknowledged write is there: runs, log lines (in order), `statusLabel`
//!   patches, final statuses, entity upserts bound to runs (value and audit log);
//! - the database passes its integrity check, taken while portd is dead (SQLite:
//!   `PRAGMA integrity_check` on a read-only connection; PostgreSQL: port-store's
//!   [`port_store::StoreAdmin::integrity_check`]);
//! - every run `IN_PROGRESS` whose webhook had not been answered 2xx before the kill
//!   reaches the receiver within 10 s of the restart;
//! - every request for one run carries the same `webhook-id`, and every signature
//!   verifies;
//! - replaying an `Idempotency-Key` returns the original run, and a key whose request
//!   got no answer yields one run only.
//!
//! Every random choice (operations, their targets, receiver answers, kill moments)
//! comes from the seed; the timing of a real process does not, so a replay with the
//! same seed runs the same script, not the same interleaving.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use sqlx::Connection as _;

use crate::api::Api;
use crate::load::Load;
use crate::oracle::{ACTION, BLUEPRINT, DeliveryCheck, Oracle};
use crate::portd::{Portd, PortdSettings};
use crate::receiver::{Mode, Receiver};
use port_store::ScratchSchema;

const CLIENT_ID: &str = "chaos-client";
const CLIENT_SECRET: &str = "chaos-secret-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ";

/// What to run.
#[derive(Debug, Clone)]
pub struct CrashConfig {
    pub cycles: u32,
    pub seed: u64,
    /// A PostgreSQL server to run against (a schema of its own is created in it and
    /// dropped afterwards); `None` for SQLite.
    pub database_url: Option<String>,
    /// The `portd` binary.
    pub portd: PathBuf,
    /// Concurrent clients.
    pub workers: usize,
    /// How long the load runs before the kill: uniformly in this range.
    pub load: (Duration, Duration),
    /// The longest pause between two requests of one client.
    pub pace: Duration,
    /// The share of restarts that are killed again early (during startup, lease
    /// take-over and the first deliveries), in percent.
    pub early_kill_percent: u32,
    /// Print a line per cycle.
    pub verbose: bool,
}

impl CrashConfig {
    /// The defaults of `cargo xtask crash-test`.
    pub fn new(portd: PathBuf, cycles: u32, seed: u64) -> Self {
        Self {
            cycles,
            seed,
            database_url: None,
            portd,
            workers: 4,
            load: (Duration::from_millis(300), Duration::from_millis(2_000)),
            pace: Duration::from_millis(12),
            early_kill_percent: 25,
            verbose: true,
        }
    }
}

/// The figures of a run of the controller.
#[derive(Debug, Clone, Default)]
pub struct CrashReport {
    pub backend: &'static str,
    pub seed: u64,
    pub cycles: u32,
    pub kills: u32,
    /// Kills during a restart (before or right after it answered).
    pub early_kills: u32,
    pub integrity_checks: u32,
    pub runs: u64,
    pub logs: u64,
    pub labels: u64,
    pub entities: u64,
    pub finishes: u64,
    /// Requests that got no answer because portd died.
    pub unanswered: u64,
    /// Acknowledged writes found again, summed over all verifications.
    pub writes_checked: u64,
    /// Runs with an undelivered webhook at a kill, delivered after the restart.
    pub deliveries_after_restart: u64,
    /// Runs whose delivery portd recorded as DELIVERED at the end.
    pub deliveries_recorded: u64,
    /// Webhook requests the receiver got.
    pub webhook_requests: u64,
    /// Runs delivered (2xx) more than once without a redelivery being asked for.
    pub duplicate_deliveries: u64,
    pub idempotency_replays: u64,
    /// The longest time from a restart to the last pending webhook's arrival.
    pub max_recovery: Duration,
    pub elapsed: Duration,
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "crash-test ({}, seed {}): {} cycles, {} kills ({} during restarts), {} integrity checks ok, {:.1?}",
            self.backend,
            self.seed,
            self.cycles,
            self.kills,
            self.early_kills,
            self.integrity_checks,
            self.elapsed
        )?;
        writeln!(
            f,
            "  acknowledged: {} runs, {} log lines, {} labels, {} final statuses, {} bound entity upserts; {} requests unanswered by kills",
            self.runs, self.logs, self.labels, self.finishes, self.entities, self.unanswered
        )?;
        writeln!(
            f,
            "  checked: {} acknowledged writes found again (0 lost), {} idempotency replays (all the original run)",
            self.writes_checked, self.idempotency_replays
        )?;
        write!(
            f,
            "  deliveries: {} pending at a kill and delivered after the restart (slowest {:.2?} after it, limit 10 s), {} recorded DELIVERED at the end, {} webhook requests, {} duplicates (same webhook-id)",
            self.deliveries_after_restart,
            self.max_recovery,
            self.deliveries_recorded,
            self.webhook_requests,
            self.duplicate_deliveries
        )
    }
}

/// Where the data lives.
enum Backend {
    Sqlite,
    Postgres(ScratchSchema),
}

/// The integrity check of a database nobody is using (portd is dead).
async fn integrity_check(backend: &Backend, data_dir: &std::path::Path) -> Result<()> {
    match backend {
        Backend::Sqlite => {
            let path = data_dir.join("portd.db");
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .read_only(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .with_context(|| format!("opening {} read-only", path.display()))?;
            let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
                .fetch_all(&mut conn)
                .await?;
            conn.close().await?;
            let rows: Vec<String> = rows.into_iter().map(|(r,)| r).collect();
            if rows != ["ok"] {
                bail!("PRAGMA integrity_check: {rows:?}");
            }
        }
        Backend::Postgres(schema) => {
            let store = port_store::open(&schema.url(), &port_store::StoreOptions::default())
                .await
                .context("opening the PostgreSQL store")?;
            let ok = store.integrity_check().await?;
            store.close().await;
            if !ok {
                bail!("the PostgreSQL integrity check failed");
            }
        }
    }
    Ok(())
}

/// Runs the controller. On failure the error names the cycle; the caller prints the
/// seed to replay.
pub async fn run(config: &CrashConfig) -> Result<CrashReport> {
    let started = Instant::now();
    let backend = match &config.database_url {
        Some(url) => Backend::Postgres(
            ScratchSchema::create(url, "chaos")
                .await
                .context("creating a PostgreSQL schema for the crash test")?,
        ),
        None => Backend::Sqlite,
    };
    let dir = tempfile::Builder::new()
        .prefix("port-chaos-")
        .tempdir()
        .context("creating the data directory")?;
    crate::portd::make_private(dir.path())?;
    let outcome = cycles(config, &backend, dir.path(), started).await;
    if let Err(e) = &outcome {
        let tail = crate::portd::log_tail(&dir.path().join("portd.log"), 25);
        return Err(anyhow::anyhow!("{e:#}\nportd's log (last lines):\n{tail}"));
    }
    if let Backend::Postgres(schema) = backend {
        schema.drop_now().await?;
    }
    outcome
}

async fn cycles(
    config: &CrashConfig,
    backend: &Backend,
    data_dir: &std::path::Path,
    started: Instant,
) -> Result<CrashReport> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let receiver = Receiver::start(CLIENT_SECRET, config.seed ^ 0x5EED).await?;
    let schedule = std::iter::once("0")
        .chain(std::iter::repeat_n("0.3", 80))
        .collect::<Vec<_>>()
        .join(",");
    let settings = PortdSettings {
        binary: config.portd.clone(),
        data_dir: data_dir.to_path_buf(),
        database_url: match backend {
            Backend::Sqlite => None,
            Backend::Postgres(schema) => Some(schema.url()),
        },
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        log_filter: "warn".to_owned(),
        log_file: data_dir.join("portd.log"),
        env: vec![
            ("PORTD_DELIVERY_RETRY_SCHEDULE".to_owned(), schedule),
            ("PORTD_DELIVERY_TIMEOUT_SECS".to_owned(), "5".to_owned()),
        ],
    };
    let mut report = CrashReport {
        backend: match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        },
        seed: config.seed,
        ..CrashReport::default()
    };

    let mut portd = Portd::spawn(&settings)?;
    portd.ready(Duration::from_secs(60)).await?;
    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET).await?;
    setup(&api, &receiver.url()).await?;
    let mut oracle = Oracle::default();
    let mut kills: Vec<Instant> = Vec::new();

    for cycle in 1..=config.cycles {
        let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET).await?;
        receiver.set_mode(Mode::Chaotic);
        let load_state = Arc::new(Load::new(
            api,
            std::mem::take(&mut oracle),
            config.seed,
            cycle,
            config.pace,
        ));
        let clients = load_state.start(config.workers);
        let load = rng.random_range(config.load.0..=config.load.1);
        tokio::time::sleep(load).await;

        // Stamped before the signal: an answer handed back after this counts as unread.
        kills.push(Instant::now());
        portd.kill()?;
        report.kills += 1;
        load_state.stop();
        for c in clients {
            c.await.context("a load client panicked")?;
        }
        oracle = load_state
            .into_oracle()
            .context("a load client outlived the cycle")?;
        integrity_check(backend, data_dir)
            .await
            .with_context(|| format!("cycle {cycle}: after the kill"))?;
        report.integrity_checks += 1;

        receiver.set_mode(Mode::Healthy);
        if rng.random_range(0..100) < config.early_kill_percent {
            // Kill again while it starts: migrations, lease take-over, first sends.
            let early = Duration::from_millis(rng.random_range(0..400));
            let mut doomed = Portd::spawn(&settings)?;
            tokio::time::sleep(early).await;
            kills.push(Instant::now());
            doomed.kill()?;
            report.kills += 1;
            report.early_kills += 1;
            integrity_check(backend, data_dir)
                .await
                .with_context(|| format!("cycle {cycle}: after a kill during the restart"))?;
            report.integrity_checks += 1;
        }
        let restart_at = Instant::now();
        portd = Portd::spawn(&settings)?;
        portd
            .ready(Duration::from_secs(30))
            .await
            .with_context(|| format!("cycle {cycle}: restarting"))?;
        let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET).await?;
        let verified = oracle
            .verify(
                &api,
                Some(DeliveryCheck {
                    receiver: &receiver,
                    kills: &kills,
                    restart_at,
                }),
            )
            .await
            .with_context(|| format!("cycle {cycle} (killed after {load:.2?} of load)"))?;
        report.writes_checked += verified.writes_checked;
        report.deliveries_after_restart += verified.deliveries_needed;
        report.max_recovery = report.max_recovery.max(verified.recovery);
        report.idempotency_replays += verified.replays;
        report.cycles = cycle;
        if config.verbose {
            eprintln!(
                "crash-test: cycle {cycle}/{}: killed after {load:.2?}; {} runs known, {} writes checked, {} webhooks pending at the kill delivered {:.2?} after the restart",
                config.cycles,
                oracle.runs.len(),
                verified.writes_checked,
                verified.deliveries_needed,
                verified.recovery
            );
        }
    }

    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET).await?;
    report.deliveries_recorded = oracle
        .check_recorded_deliveries(&api, Duration::from_secs(20))
        .await?;
    let received = receiver.received();
    report.webhook_requests = received.len() as u64;
    report.duplicate_deliveries = oracle.duplicates(&received, &kills);
    let counts = &oracle.counts;
    report.runs = counts.runs;
    report.logs = counts.logs;
    report.labels = counts.labels;
    report.entities = counts.entities;
    report.finishes = counts.finishes;
    report.unanswered = counts.unanswered;
    report.idempotency_replays += counts.replays;
    portd.terminate(Duration::from_secs(20))?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Creates the workload's blueprint and its action, whose webhook goes to `hook`.
pub async fn setup(api: &Api, hook: &str) -> Result<()> {
    api.post(
        "/v1/blueprints",
        &json!({
            "identifier": BLUEPRINT,
            "title": "Chaos service",
            "schema": { "properties": { "value": { "type": "string" } }, "required": [] }
        }),
    )
    .await?
    .expect(201, "creating the blueprint")?;
    api.post(
        "/v1/actions",
        &json!({
            "identifier": ACTION,
            "title": "Chaos deploy",
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": { "properties": { "note": { "type": "string" } }, "required": [] }
            },
            "invocationMethod": { "type": "WEBHOOK", "url": hook }
        }),
    )
    .await?
    .expect(201, "creating the action")?;
    Ok(())
}

/// A seed from the clock, for runs not given one.
pub fn random_seed() -> u64 {
    rand::rng().random()
}
