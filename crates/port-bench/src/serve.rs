//! `port-bench serve`: one server under test, in its own process (so its memory is its
//! own), controlled over stdin/stdout by the benchmark (see [`crate::protocol`]).
//!
//! - `baseline`: the bare axum server of [`crate::baseline`].
//! - `portd`: `port_server::start` with portd's defaults (the code of the `portd`
//!   binary, built here in the same release profile as the baseline): SQLite in
//!   `--data-dir` (WAL, durable batched commits) or the `--database-url` PostgreSQL, the
//!   delivery worker and reaper with their default settings, tracing from `PORTD_LOG`.
//!   It also answers `seed` commands by writing runs and log lines straight through
//!   `port_store`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use port_core::id::{ActionIdentifier, LogId, OrgId, RunId};
use port_core::ports::{Clock, IdGenerator, Store};
use port_core::run::{ActionRef, ApprovalPolicy, NewRun, Run, start};
use port_core::run_log::NewRunLog;
use port_server::config::Templates;
use port_server::{Config, RunningServer};
use port_store::{StoreOptions, Synchronous};
use tokio::io::AsyncBufReadExt as _;

use crate::protocol::{Answer, Command, Ready, SeedReport, SeedRequest};

/// Which server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Baseline,
    Portd,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[arg(value_enum)]
    pub kind: Kind,
    /// portd: the data directory (SQLite lives here unless --database-url is given).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// portd: a PostgreSQL URL.
    #[arg(long, env = "PORT_BENCH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

fn say(answer: &Answer) -> Result<()> {
    let line = serde_json::to_string(answer)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

pub async fn run(args: ServeArgs) -> Result<()> {
    match args.kind {
        Kind::Baseline => baseline().await,
        Kind::Portd => portd(args).await,
    }
}

async fn baseline() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server =
        tokio::spawn(async move { axum::serve(listener, crate::baseline::router()).await });
    say(&Answer::Ready(Ready {
        addr,
        pid: std::process::id(),
        org_id: None,
    }))?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while lines.next_line().await?.is_some() {
        say(&Answer::Error("the baseline takes no commands".into()))?;
    }
    server.abort();
    Ok(())
}

async fn portd(args: ServeArgs) -> Result<()> {
    port_server::config::init_tracing();
    let data_dir = args.data_dir.context("portd needs --data-dir")?;
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir,
        database_url: args.database_url.filter(|u| !u.is_empty()),
        bootstrap_client_id: std::env::var("PORTD_BOOTSTRAP_CLIENT_ID").ok(),
        bootstrap_client_secret: std::env::var("PORTD_BOOTSTRAP_CLIENT_SECRET").ok(),
        print_bootstrap_credentials: false,
        // As portd renders templates: in worker processes (this binary, run as
        // `template-worker`), so the figures include what production pays.
        templates: Templates::Sandbox {
            program: None,
            workers: 0,
            limits: port_sandbox::Limits::default(),
        },
        ..Config::default()
    };
    let server = port_server::start(config.clone()).await?;
    say(&Answer::Ready(Ready {
        addr: server.local_addr(),
        pid: std::process::id(),
        org_id: server.bootstrap_credentials().map(|c| c.org_id.clone()),
    }))?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<Command>(&line) {
            Ok(Command::Seed(request)) => match seed(&server, &config, &request).await {
                Ok(report) => Answer::Seeded(report),
                Err(e) => Answer::Error(format!("seeding failed: {e:#}")),
            },
            Err(e) => Answer::Error(format!("unknown command: {e}")),
        };
        say(&answer)?;
    }
    server.shutdown().await?;
    Ok(())
}

/// What every seeding task shares.
struct Seeder {
    store: Arc<dyn Store>,
    ids: IdGenerator,
    clock: Arc<dyn Clock>,
    template: Run,
    actions: Vec<ActionRef>,
    request: SeedRequest,
    deadline: Instant,
    /// Every `logs_every`-th new run gets `logs_per_run` lines while logs remain.
    logs_every: u64,
    sample_every: u64,
    next: AtomicU64,
    runs: AtomicU64,
    logs: AtomicU64,
    sample: Mutex<Vec<String>>,
}

/// Writes the requested runs and logs through a second handle on portd's database.
/// On SQLite it uses `synchronous=NORMAL`, so that seeding a million runs takes
/// minutes rather than an fsync per run; the server's own handle keeps its durable default and is
/// idle meanwhile (SQLite serializes the two writers with its file lock).
async fn seed(
    server: &RunningServer,
    config: &Config,
    request: &SeedRequest,
) -> Result<SeedReport> {
    let options = StoreOptions {
        sqlite_synchronous: Synchronous::Normal,
        ..StoreOptions::default()
    };
    let admin = port_store::open(&config.database_url(), &options).await?;
    let store: Arc<dyn Store> = admin.clone();
    let org = OrgId::parse(&request.org_id).context("org id")?;
    let template_id = RunId::parse(&request.template_run).context("template run id")?;
    let template = store
        .get_run(&org, &template_id)
        .await?
        .context("the template run does not exist")?;
    let actions = request
        .actions
        .iter()
        .map(|identifier| {
            Ok(ActionRef {
                identifier: ActionIdentifier::parse(identifier)?,
                title: Some(format!("Bench {identifier}")),
                icon: None,
                deleted: false,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if actions.is_empty() {
        bail!("no actions to seed runs of");
    }
    // On SQLite, runs beyond the first `store_seeded_runs` are copies made in SQL (see
    // `copy_runs`): writing a million runs one transaction at a time would take longer
    // than the whole benchmark may.
    let through_store = store_seeded_runs(request.runs);
    let copies_on_sqlite = port_store::StoreConfig::parse(&config.database_url())
        .is_ok_and(|c| matches!(c, port_store::StoreConfig::Sqlite { .. }))
        && request.runs > through_store;
    let full_request = request.clone();
    let mut request = request.clone();
    if copies_on_sqlite {
        request.logs = request.logs * through_store / request.runs;
        request.runs = through_store;
    }
    let request = &request;
    let logs_every = if request.logs == 0 || request.logs_per_run == 0 {
        u64::MAX
    } else {
        (request.runs * request.logs_per_run / request.logs).max(1)
    };
    let started = Instant::now();
    let seeder = Arc::new(Seeder {
        store,
        ids: server.state().ids().clone(),
        clock: server.state().clock().clone(),
        template,
        actions,
        request: request.clone(),
        deadline: started + Duration::from_secs_f64(request.budget_secs),
        logs_every,
        sample_every: (request.runs / request.sample.max(1) as u64).max(1),
        next: AtomicU64::new(0),
        runs: AtomicU64::new(0),
        logs: AtomicU64::new(0),
        sample: Mutex::new(Vec::new()),
    });
    let tasks: Vec<_> = (0..request.concurrency.max(1))
        .map(|_| tokio::spawn(seed_task(seeder.clone())))
        .collect();
    for task in tasks {
        task.await??;
    }
    admin.close().await;
    let mut runs = seeder.runs.load(Ordering::Relaxed);
    let mut logs = seeder.logs.load(Ordering::Relaxed).min(request.logs);
    let mut sample = std::mem::take(&mut *seeder.sample.lock().expect("not poisoned"));
    if copies_on_sqlite && runs >= request.runs {
        let copied = copy_runs(
            &config.database_url(),
            &org,
            full_request.runs - runs,
            seeder.deadline,
        )
        .await?;
        runs += copied.runs;
        logs += copied.logs;
        // Copies of the sampled runs (from complete passes, so that each exists), so that
        // reads hit original and copied rows alike.
        let extra: Vec<String> = sample
            .iter()
            .flat_map(|id| (1..=copied.complete_passes).map(move |pass| copy_id(id, pass)))
            .collect();
        sample.extend(extra);
    }
    Ok(SeedReport {
        runs,
        logs,
        secs: started.elapsed().as_secs_f64(),
        complete: runs >= full_request.runs,
        sample,
    })
}

/// Runs written through `port_store` per seed request on SQLite before copying: 5 %,
/// at least 10 k (so 50 k of a million), all of a smaller request.
fn store_seeded_runs(runs: u64) -> u64 {
    (runs / 20).max(10_000).min(runs)
}

/// Runs per copying transaction.
const COPY_BATCH: u64 = 50_000;

struct Copied {
    runs: u64,
    logs: u64,
    /// Passes that copied every original run (pass numbers 1..=complete_passes); a
    /// last, partial pass copies only some of them.
    complete_passes: u32,
}

/// The id of the `pass`-th copy of a run: `r_z` + two digits + the last 13 characters
/// of the original (still `r_` and 16 alphanumerics; originals never start with `z`).
fn copy_id(id: &str, pass: u32) -> String {
    format!("r_z{pass:02}{}", id.get(5..).unwrap_or_default())
}

/// Fills the database up to `wanted` more runs by copying the runs written through
/// the store (documents, columns and log lines alike) under new ids, in transactions
/// of `COPY_BATCH` runs. The rows are real rows of portd's schema, indexed like the
/// others, so what reads cost at this size is what a real history would cost.
async fn copy_runs(url: &str, org: &OrgId, wanted: u64, deadline: Instant) -> Result<Copied> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()?
                .busy_timeout(Duration::from_secs(30))
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal),
        )
        .await?;
    let originals: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM runs WHERE org_id = ?1 AND substr(id, 3, 1) <> 'z'",
    )
    .bind(org.as_str())
    .fetch_one(&pool)
    .await?;
    let originals = u64::try_from(originals).unwrap_or(0);
    let mut copied = Copied {
        runs: 0,
        logs: 0,
        complete_passes: 0,
    };
    let mut passes = 0;
    while copied.runs < wanted && originals > 0 && Instant::now() < deadline {
        passes += 1;
        let pass = i64::from(passes);
        let mut offset = 0;
        while offset < originals && copied.runs < wanted && Instant::now() < deadline {
            let n = COPY_BATCH.min(originals - offset).min(wanted - copied.runs);
            let originals_batch = "SELECT id FROM runs WHERE org_id = ?1 AND substr(id, 3, 1) <> 'z'                  ORDER BY id LIMIT ?3 OFFSET ?4";
            let new_id =
                |column: &str| format!("'r_z' || printf('%02d', ?2) || substr({column}, 6)");
            let runs_sql = format!(
                "INSERT OR IGNORE INTO runs (org_id, id, status, action_identifier, blueprint_identifier, \
                 entity_identifier, created_by, source, external_run_id, created_at, updated_at, version, document) \
                 SELECT org_id, {}, status, action_identifier, blueprint_identifier, entity_identifier, \
                 created_by, source, external_run_id, created_at, updated_at, version, document \
                 FROM runs WHERE org_id = ?1 AND id IN ({originals_batch})",
                new_id("id")
            );
            let logs_sql = format!(
                "INSERT OR IGNORE INTO run_logs (org_id, run_id, seq, id, message, created_at, created_by) \
                 SELECT org_id, {}, seq, id, message, created_at, created_by \
                 FROM run_logs WHERE org_id = ?1 AND run_id IN ({originals_batch})",
                new_id("run_id")
            );
            let mut tx = pool.begin().await?;
            let mut copy = async |sql: &str| -> Result<u64> {
                Ok(sqlx::query(sql)
                    .bind(org.as_str())
                    .bind(pass)
                    .bind(i64::try_from(n)?)
                    .bind(i64::try_from(offset)?)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected())
            };
            let runs = copy(&runs_sql).await?;
            let logs = copy(&logs_sql).await?;
            tx.commit().await?;
            copied.runs += runs;
            copied.logs += logs;
            offset += n;
        }
        if offset >= originals {
            copied.complete_passes = passes;
        }
    }
    pool.close().await;
    Ok(copied)
}

async fn seed_task(seeder: Arc<Seeder>) -> Result<()> {
    let request = &seeder.request;
    let per_run = request.logs_per_run;
    loop {
        if Instant::now() >= seeder.deadline {
            return Ok(());
        }
        let i = seeder.next.fetch_add(1, Ordering::Relaxed);
        if i >= request.runs {
            return Ok(());
        }
        let run = new_run(&seeder, i);
        seeder.store.create_run(&run, None, None).await?;
        seeder.runs.fetch_add(1, Ordering::Relaxed);
        if i.is_multiple_of(seeder.sample_every) {
            seeder
                .sample
                .lock()
                .expect("not poisoned")
                .push(run.id.to_string());
        }
        if i.is_multiple_of(seeder.logs_every)
            && seeder.logs.fetch_add(per_run, Ordering::Relaxed) < request.logs
        {
            let now = seeder.clock.now();
            let logs: Vec<NewRunLog> = (0..per_run)
                .map(|n| {
                    NewRunLog::new(
                        seeder.ids.next::<LogId>(),
                        run.id.clone(),
                        &format!(
                            "step {n} of {per_run}: applied terraform module svc-{i} in eu-west-1 \
                             (3 added, 0 changed, 0 destroyed)"
                        ),
                        now,
                        &run.created_by,
                    )
                })
                .collect();
            seeder
                .store
                .save_transition(&run, run.version, &logs, None)
                .await?;
        }
    }
}

/// A run shaped like the template (same inputs, payload and creator), for action
/// `i mod actions`.
fn new_run(seeder: &Seeder, i: u64) -> Run {
    let template = &seeder.template;
    let mut properties = template.properties.clone();
    properties.insert("name".into(), format!("svc-{i}").into());
    let index = usize::try_from(i % seeder.actions.len() as u64).unwrap_or(0);
    start(
        NewRun {
            id: seeder.ids.next(),
            org_id: template.org_id.clone(),
            properties,
            source: template.source,
            required_approval: template.required_approval.clone(),
            approval_policy: ApprovalPolicy::NotRequired,
            payload: template.payload.clone(),
            action: seeder.actions[index].clone(),
            blueprint: template.blueprint.clone(),
            entity: template.entity.clone(),
            synchronized: template.synchronized,
            created_by: template.created_by.clone(),
            impersonated_by: None,
            chain_depth: template.chain_depth,
        },
        seeder.clock.now(),
    )
    .run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_the_id_shape_and_a_store_seeded_share() {
        assert_eq!(copy_id("r_0Vc9QHrGF2puCMbq", 3), "r_z039QHrGF2puCMbq");
        assert_eq!(store_seeded_runs(1_000_000), 50_000);
        assert_eq!(store_seeded_runs(90_000), 10_000);
        assert_eq!(store_seeded_runs(5_000), 5_000);
    }
}
