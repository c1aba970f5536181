//! PostgreSQL stopped under load. The machine's shared server is left alone: the test
//! makes a private cluster ([`PrivateCluster`]), runs portd against it over TCP with
//! the crash test's mixed load, stops the cluster with `pg_ctl stop -m immediate`,
//! keeps it down a few seconds, starts it again, and checks that
//!
//! - while it is down, every request sent gets `503 service_unavailable` with a
//!   `Retry-After` header (no 500, no hang), and `/readyz` says 503 too;
//! - a write succeeds again within 10 s of the database's return;
//! - every write acknowledged before, during and after the outage is there.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::api::Api;
use crate::load::{AnswerRecord, Load};
use crate::oracle::Oracle;
use crate::pg::PrivateCluster;
use crate::portd::{Portd, PortdSettings};
use crate::receiver::Receiver;

const CLIENT_ID: &str = "outage-client";
const CLIENT_SECRET: &str = "outage-secret-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGH";

/// How long after the database's return a write must succeed again.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

/// The longest a request may wait for its 503 while the database is down.
pub const UNAVAILABLE_ANSWER_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct OutageConfig {
    pub portd: PathBuf,
    /// Load before the stop.
    pub before: Duration,
    /// How long the database stays down.
    pub down: Duration,
    /// Load after the recovery.
    pub after: Duration,
    pub clients: usize,
    pub seed: u64,
}

impl OutageConfig {
    pub fn new(portd: PathBuf) -> Self {
        Self {
            portd,
            before: Duration::from_millis(1_500),
            down: Duration::from_secs(4),
            after: Duration::from_millis(1_000),
            clients: 3,
            seed: 9,
        }
    }
}

/// What the outage test saw.
#[derive(Debug, Clone, Default)]
pub struct OutageReport {
    pub requests: u64,
    /// Answers to requests sent while the database was down, by status.
    pub during_outage: BTreeMap<u16, u64>,
    /// The `Retry-After` values seen on those answers.
    pub retry_after: BTreeMap<String, u64>,
    pub slowest_outage_answer: Duration,
    /// `pg_ctl start` until it accepted connections.
    pub database_restart: Duration,
    /// From the database's return to the first acknowledged write.
    pub recovery: Duration,
    pub acknowledged: u64,
    pub writes_checked: u64,
}

impl fmt::Display for OutageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pg-outage: {} requests; while PostgreSQL was down: {:?} by status (Retry-After {:?}), slowest answer {:.2?}",
            self.requests, self.during_outage, self.retry_after, self.slowest_outage_answer
        )?;
        write!(
            f,
            "  PostgreSQL restarted in {:.2?}; first acknowledged write {:.2?} after (limit 10 s); {} writes acknowledged, {} checked afterwards (0 lost)",
            self.database_restart, self.recovery, self.acknowledged, self.writes_checked
        )
    }
}

/// Runs `f` on the blocking pool with the cluster, and gives it back.
async fn with_cluster(
    cluster: PrivateCluster,
    f: impl FnOnce(&mut PrivateCluster) -> Result<()> + Send + 'static,
) -> Result<PrivateCluster> {
    tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        f(&mut cluster).map(|()| cluster)
    })
    .await
    .context("a pg_ctl task panicked")?
}

/// What became of the test.
#[derive(Debug, Clone)]
pub enum Outcome {
    Ran(OutageReport),
    /// It cannot run on this machine, for this reason.
    Skipped(String),
}

/// Runs the test (or says why it cannot run here).
pub async fn run(config: &OutageConfig) -> Result<Outcome> {
    if let Some(reason) = crate::pg::private_cluster_unsupported() {
        return Ok(Outcome::Skipped(reason));
    }
    let Some(bin) = crate::pg::server_bin_dir() else {
        return Ok(Outcome::Skipped("no initdb".to_owned()));
    };
    let cluster = tokio::task::spawn_blocking(move || -> Result<PrivateCluster> {
        let mut cluster = PrivateCluster::init(&bin)?;
        cluster.start()?;
        Ok(cluster)
    })
    .await
    .context("initdb panicked")??;
    let dir = tempfile::Builder::new()
        .prefix("port-chaos-outage-")
        .tempdir()?;
    crate::portd::make_private(dir.path())?;
    let log_file = dir.path().join("portd.log");
    let outcome = scenario(config, cluster, dir.path()).await;
    outcome.map(Outcome::Ran).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\nportd's log (last lines):\n{}",
            crate::portd::log_tail(&log_file, 25)
        )
    })
}

async fn scenario(
    config: &OutageConfig,
    cluster: PrivateCluster,
    data_dir: &std::path::Path,
) -> Result<OutageReport> {
    let receiver = Receiver::start(CLIENT_SECRET, config.seed).await?;
    let settings = PortdSettings {
        binary: config.portd.clone(),
        data_dir: data_dir.to_path_buf(),
        database_url: Some(cluster.url()),
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        log_filter: "warn".to_owned(),
        log_file: data_dir.join("portd.log"),
        env: vec![(
            "PORTD_DELIVERY_RETRY_SCHEDULE".to_owned(),
            "0,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5".to_owned(),
        )],
    };
    let mut portd = Portd::spawn(&settings)?;
    portd.ready(Duration::from_secs(60)).await?;
    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET).await?;
    crate::crash::setup(&api, &receiver.url()).await?;

    let mut load = Load::new(
        api.clone(),
        Oracle::default(),
        config.seed,
        1,
        Duration::from_millis(10),
    );
    load.tolerate_unavailable = true;
    load.answers = Some(Mutex::new(Vec::new()));
    let load = Arc::new(load);
    let clients = load.start(config.clients);
    tokio::time::sleep(config.before).await;

    let cluster = with_cluster(cluster, PrivateCluster::stop_immediate).await?;
    let down_at = Instant::now();
    // Readiness says so too.
    tokio::time::sleep(config.down / 2).await;
    let ready = api.get("/readyz").await?;
    if ready.status != 503 || ready.header("retry-after").is_none() {
        bail!(
            "/readyz with the database down: {} (Retry-After {:?}), expected 503 with Retry-After",
            ready.status,
            ready.header("retry-after")
        );
    }
    tokio::time::sleep(config.down / 2).await;

    let returning_at = Instant::now();
    let cluster = with_cluster(cluster, PrivateCluster::start).await?;
    let up_at = Instant::now();
    let mut report = OutageReport {
        database_restart: up_at - returning_at,
        ..OutageReport::default()
    };
    let answers = || -> Vec<AnswerRecord> {
        load.answers
            .as_ref()
            .map(|a| a.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    };
    loop {
        let first_ok = answers()
            .iter()
            .filter(|a| a.sent >= up_at && a.status.is_some_and(|s| (200..300).contains(&s)))
            .map(|a| a.answered)
            .min();
        if let Some(at) = first_ok {
            report.recovery = at - up_at;
            break;
        }
        if up_at.elapsed() > RECOVERY_LIMIT {
            load.stop();
            bail!("no write succeeded within {RECOVERY_LIMIT:?} of PostgreSQL's return");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(config.after).await;
    load.stop();
    for c in clients {
        c.await.context("a load client panicked")?;
    }

    let records = answers();
    report.requests = records.len() as u64;
    for a in &records {
        match a.status {
            Some(status) if status >= 500 && status != 503 => {
                bail!(
                    "{} answered {status} (only 503 may signal the outage)",
                    a.what
                )
            }
            _ => {}
        }
        // Sent while the database was down, answered before it came back.
        if a.sent >= down_at && a.sent < returning_at {
            let took = a.answered - a.sent;
            report.slowest_outage_answer = report.slowest_outage_answer.max(took);
            match (a.status, &a.retry_after) {
                (Some(503), Some(after)) if took <= UNAVAILABLE_ANSWER_LIMIT => {
                    *report.during_outage.entry(503).or_default() += 1;
                    *report.retry_after.entry(after.clone()).or_default() += 1;
                }
                (Some(status), _) if (200..300).contains(&status) && a.answered >= returning_at => {
                    // Waited for a connection and got one once the database was back:
                    // it accepts connections a little before `pg_ctl start -w` says so.
                    *report.during_outage.entry(status).or_default() += 1;
                }
                (status, after) => bail!(
                    "{} sent while PostgreSQL was down: {status:?} after {took:.2?} (Retry-After {after:?}); expected 503 with Retry-After within {UNAVAILABLE_ANSWER_LIMIT:?}",
                    a.what
                ),
            }
        }
    }
    if report.during_outage.get(&503).copied().unwrap_or(0) == 0 {
        bail!("no request was answered 503 while PostgreSQL was down");
    }

    let mut oracle = load
        .into_oracle()
        .context("a load client outlived the test")?;
    let counts = &oracle.counts;
    report.acknowledged =
        counts.runs + counts.logs + counts.labels + counts.entities + counts.finishes;
    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET).await?;
    let verified = oracle.verify(&api, None).await?;
    report.writes_checked = verified.writes_checked;
    portd.terminate(Duration::from_secs(20))?;
    drop(cluster);
    Ok(report)
}
