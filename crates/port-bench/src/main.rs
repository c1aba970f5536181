//! `port-bench`: measures portd against a bare axum baseline in the same run (issue 8).
//! Run it as `cargo xtask bench [--quick]`, which builds it in release mode first;
//! docs/benchmarks.md explains the figures and records results.
//!
//! - `port-bench run`: starts the servers (each in its own process), drives them from a
//!   tokio load generator, prints a table and then one JSON line on stdout (progress
//!   goes to stderr).
//! - `port-bench serve baseline|portd`: one server, controlled by `run` over
//!   stdin/stdout (internal).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

mod baseline;
mod bench;
mod child;
mod http;
mod load;
mod machine;
mod pg;
mod protocol;
mod receiver;
mod report;
mod serve;
mod settings;
mod stats;

#[derive(Debug, Parser)]
#[command(
    name = "port-bench",
    about = "Measure portd against a bare axum baseline in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the benchmark: a table, then one JSON line, on stdout.
    // Boxed: the run's knobs outweigh `serve`'s many times over.
    Run(Box<settings::RunArgs>),
    /// One server under test, controlled over stdin/stdout (used by `run`).
    #[command(hide = true)]
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    // The portd under test renders templates in workers that are this binary.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == port_server::TEMPLATE_WORKER)
    {
        std::process::exit(port_sandbox::worker::run());
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async_main()),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run(args) => run(*args).await,
        Command::Serve(args) => serve::run(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on ctrl-c or SIGTERM, naming which.
async fn interrupted() -> &'static str {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "ctrl-c",
        Some(()) = async {
            match terminate.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        } => "SIGTERM",
    }
}

fn store_settings() -> String {
    let o = port_store::StoreOptions::default();
    format!(
        "SQLite: WAL, synchronous={} (FULL: each API write acknowledged after a WAL fsync; one fsync per batch), 1 writer thread batching every waiting write into one transaction + {} readers, \
         busy_timeout {} s; PostgreSQL: pool of {}; store defaults of port_store, unchanged",
        o.sqlite_synchronous.as_str(),
        o.sqlite_read_connections,
        o.busy_timeout.as_secs(),
        o.pg_max_connections
    )
}

async fn run(args: settings::RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = settings::Settings::resolve(&args);
    let machine = machine::Machine::read();
    let dir = bench::workspace_dir()?;
    let probe = |dir: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            machine::fsyncs_per_sec(&dir, std::time::Duration::from_secs(1)).ok()
        })
        .await
        .ok()
        .flatten()
    };
    let fsyncs_at_start = probe(dir.clone()).await;
    let work = bench::Workspace::new(dir.clone());
    // On ctrl-c or SIGTERM the phases are dropped: the servers are killed (their
    // handles kill on drop) and PostgreSQL schemas dropped; then the files go too.
    let outcome = tokio::select! {
        outcome = bench::run(&settings, &work) => outcome,
        signal = interrupted() => {
            bench::remove_workspace(&dir);
            anyhow::bail!("interrupted by {signal}");
        }
    };
    let fsyncs_at_end = probe(dir.clone()).await;
    let backends = match outcome {
        Ok(backends) => {
            bench::remove_workspace(&dir);
            backends
        }
        Err(e) => {
            return Err(e.context(format!("files kept in {}", dir.display())));
        }
    };
    let mut portd_env: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("PORTD_"))
        .collect();
    portd_env.sort();
    let goals = report::goals(&backends);
    let report = report::Report {
        bench: "port-bench",
        mode: settings.mode,
        machine,
        fsyncs_per_sec: [fsyncs_at_start, fsyncs_at_end],
        layout: report::LAYOUT.to_owned(),
        store: store_settings(),
        all_goals_met: report::all_met(&goals),
        goals,
        settings,
        portd_env,
        backends,
        elapsed_secs: started.elapsed().as_secs_f64(),
        loadavg_at_end: machine::loadavg(),
    };
    let json = serde_json::to_string(&report)?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{json}\n"))?;
    }
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", report::render(&report))?;
    writeln!(stdout, "{json}")?;
    stdout.flush()?;
    Ok(())
}
