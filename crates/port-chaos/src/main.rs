//! `port-chaos`: the reliability suite's command line (run through `cargo xtask
//! crash-test` and `cargo xtask schemathesis`, which build it and portd first).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use port_chaos::crash::{self, CrashConfig};
use port_chaos::{outage, portd, schemathesis};

#[derive(Debug, Parser)]
#[command(name = "port-chaos", about = "Reliability suite for portd")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Kill portd with SIGKILL under load, restart it, and check that nothing
    /// acknowledged was lost.
    CrashTest {
        /// Kill/restart cycles.
        #[arg(long, default_value_t = 25)]
        cycles: u32,
        /// The seed of every random choice (printed when not given).
        #[arg(long)]
        seed: Option<u64>,
        /// Run against this PostgreSQL (in a schema of its own, dropped afterwards)
        /// instead of SQLite.
        #[arg(long)]
        database_url: Option<String>,
        /// The portd binary (default: beside this one, built if missing or stale).
        #[arg(long)]
        portd: Option<PathBuf>,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Stop a private PostgreSQL cluster (initdb + pg_ctl) under load and check 503s
    /// with Retry-After, recovery within 10 s and that nothing acknowledged was lost.
    PgOutage {
        #[arg(long)]
        portd: Option<PathBuf>,
        /// How long the database stays down, in seconds.
        #[arg(long, default_value_t = 4.0)]
        down_secs: f64,
    },
    /// Run schemathesis against a fresh portd's /openapi.json.
    Schemathesis {
        /// The schemathesis executable (`cargo xtask schemathesis` installs one into
        /// target/venv).
        #[arg(long)]
        schemathesis: PathBuf,
        #[arg(long)]
        portd: Option<PathBuf>,
        /// Test cases per operation.
        #[arg(long, default_value_t = 50)]
        max_examples: u32,
        /// More arguments for `schemathesis run`, after `--`.
        #[arg(last = true)]
        rest: Vec<String>,
    },
}

fn binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(path) => Ok(path),
        None => portd::binary(),
    }
}

async fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::CrashTest {
            cycles,
            seed,
            database_url,
            portd,
            workers,
        } => {
            let seed = seed.unwrap_or_else(crash::random_seed);
            let mut replay = format!("cargo xtask crash-test --cycles {cycles} --seed {seed}");
            if database_url.is_some() {
                replay.push_str(" --database-url <the same URL>");
            }
            eprintln!("crash-test: seed {seed} (replay: {replay})");
            let mut config = CrashConfig::new(binary(portd)?, cycles, seed);
            config.database_url = database_url;
            config.workers = workers;
            match crash::run(&config).await {
                Ok(report) => {
                    println!("{report}");
                    Ok(())
                }
                Err(e) => Err(e.context(format!(
                    "crash-test FAILED with seed {seed}; replay: {replay}"
                ))),
            }
        }
        Task::PgOutage { portd, down_secs } => {
            let mut config = outage::OutageConfig::new(binary(portd)?);
            config.down = Duration::from_secs_f64(down_secs);
            match outage::run(&config).await? {
                outage::Outcome::Ran(report) => println!("{report}"),
                outage::Outcome::Skipped(reason) => println!("skipped: {reason}"),
            }
            Ok(())
        }
        Task::Schemathesis {
            schemathesis,
            portd,
            max_examples,
            rest,
        } => {
            let report =
                schemathesis::run(&binary(portd)?, &schemathesis, max_examples, &rest).await?;
            println!("{report}");
            if report.passed() {
                Ok(())
            } else {
                anyhow::bail!("schemathesis found problems (see above)")
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
