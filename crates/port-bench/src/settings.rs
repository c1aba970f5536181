//! `port-bench run`'s arguments and the settings they resolve to (`--quick` or full).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::load::Plan;

/// The measured phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Run creation and log appends against the baseline (closed loop).
    Throughput,
    /// Trigger-to-receipt latency of webhooks at a fixed arrival rate (open loop).
    Webhook,
    /// Whole lifecycles per second (execute, delivery, 10 logs, final status).
    Lifecycle,
    /// GET and filtered-list latency and memory as stored runs grow.
    Scale,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Self::Throughput => "throughput",
            Self::Webhook => "webhook",
            Self::Lifecycle => "lifecycle",
            Self::Scale => "scale",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// A short run (under two minutes on 2 cores, once built): shorter windows, 10 k
    /// and 100 k stored runs.
    #[arg(long)]
    pub quick: bool,
    /// Keep-alive connections of the closed loops.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Warm-up before the measured windows [default: 5, quick: 1; halved with
    /// PostgreSQL too].
    #[arg(long)]
    pub warmup_secs: Option<f64>,
    /// Length of each measured window [default: 10, quick: 2; halved with PostgreSQL
    /// too].
    #[arg(long)]
    pub window_secs: Option<f64>,
    /// Measured windows per figure; the report gives their median and spread.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Arrival rate of the webhook latency phase, runs/s.
    #[arg(long, default_value_t = 500.0)]
    pub webhook_rate: f64,
    /// Lifecycle runs kept in flight.
    #[arg(long, default_value_t = 32)]
    pub lifecycles_in_flight: usize,
    /// Stored runs at which GET and the filtered list are measured, comma-separated
    /// [default: 10000,1000000; quick: 10000,100000].
    #[arg(long, value_delimiter = ',')]
    pub scale_runs: Option<Vec<u64>>,
    /// Log lines stored by the last scale step, spread over the steps like the runs
    /// [default: 5000000; quick: 500000].
    #[arg(long)]
    pub scale_logs: Option<u64>,
    /// Log lines per run that gets any.
    #[arg(long, default_value_t = 50)]
    pub logs_per_run: u64,
    /// Time limit for seeding one scale step, seconds; the step records what it reached
    /// [default: 210, quick: 20; halved with PostgreSQL too].
    #[arg(long)]
    pub seed_budget_secs: Option<f64>,
    /// Arrival rate of the GET and list latency loops, requests/s.
    #[arg(long, default_value_t = 200.0)]
    pub read_rate: f64,
    /// Also measure portd on PostgreSQL (a fresh schema per instance, dropped after).
    #[arg(long, env = "PORT_TEST_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Skip SQLite.
    #[arg(long)]
    pub no_sqlite: bool,
    /// portd's log filter (`PORTD_LOG`); `info` is portd's default.
    #[arg(long, default_value = "info")]
    pub portd_log: String,
    /// Run only these phases (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Option<Vec<Phase>>,
    /// Also write the JSON line to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// Everything a run needs to know, resolved from [`RunArgs`].
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub mode: &'static str,
    pub connections: usize,
    pub plan: Plan,
    pub webhook_rate: f64,
    /// Connections of the webhook open loop.
    pub webhook_connections: usize,
    pub lifecycles_in_flight: usize,
    /// Runs the log-append loop spreads its lines over.
    pub log_runs: usize,
    pub scale_runs: Vec<u64>,
    pub scale_logs: u64,
    pub logs_per_run: u64,
    pub seed_budget_secs: f64,
    /// How long portd idles after seeding before its memory is read.
    pub idle_secs: f64,
    /// How long the webhook and lifecycle phases wait for stragglers after sending.
    pub drain_secs: f64,
    pub read_rate: f64,
    pub read_plan: Plan,
    pub read_connections: usize,
    pub sqlite: bool,
    pub postgres: bool,
    #[serde(skip)]
    pub database_url: Option<String>,
    pub portd_log: String,
    pub phases: Vec<Phase>,
}

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

impl Settings {
    /// The defaults fit the time limits: `--quick` under two minutes, a full run under
    /// ten, on 2 cores; with PostgreSQL too, each backend gets about half the time.
    pub fn resolve(args: &RunArgs) -> Self {
        let quick = args.quick;
        let database_url = args.database_url.clone().filter(|u| !u.trim().is_empty());
        let backends = usize::from(!args.no_sqlite) + usize::from(database_url.is_some());
        let both = backends > 1;
        let pick = |given: Option<f64>, full: (f64, f64), short: (f64, f64)| {
            let (one, two) = if quick { short } else { full };
            given.unwrap_or(if both { two } else { one })
        };
        let plan = Plan {
            warmup: secs(pick(args.warmup_secs, (5.0, 3.0), (1.0, 0.5))),
            window: secs(pick(args.window_secs, (10.0, 5.0), (2.0, 1.0))),
            repeats: args.repeats.max(1),
        };
        let read_plan = Plan {
            warmup: secs(if quick { 0.5 } else { 1.0 }),
            window: secs(if quick { 1.0 } else { 3.0 }),
            repeats: args.repeats.max(1),
        };
        let mut scale_runs = args.scale_runs.clone().unwrap_or_else(|| {
            if quick {
                vec![10_000, 100_000]
            } else {
                vec![10_000, 1_000_000]
            }
        });
        scale_runs.sort_unstable();
        scale_runs.dedup();
        scale_runs.retain(|&n| n > 0);
        Self {
            mode: if quick { "quick" } else { "full" },
            connections: args.connections.max(1),
            plan,
            webhook_rate: args.webhook_rate.max(1.0),
            webhook_connections: 64,
            lifecycles_in_flight: args.lifecycles_in_flight.max(1),
            log_runs: 1000,
            scale_runs,
            scale_logs: args
                .scale_logs
                .unwrap_or(if quick { 500_000 } else { 5_000_000 }),
            logs_per_run: args.logs_per_run.max(1),
            seed_budget_secs: pick(args.seed_budget_secs, (210.0, 100.0), (20.0, 10.0)),
            idle_secs: if quick { 2.0 } else { 10.0 },
            drain_secs: pick(None, (10.0, 5.0), (3.0, 2.0)),
            read_rate: args.read_rate.max(1.0),
            read_plan,
            read_connections: 16,
            sqlite: !args.no_sqlite,
            postgres: database_url.is_some(),
            database_url,
            portd_log: args.portd_log.clone(),
            phases: args.only.clone().unwrap_or_else(|| {
                vec![
                    Phase::Throughput,
                    Phase::Webhook,
                    Phase::Lifecycle,
                    Phase::Scale,
                ]
            }),
        }
    }

    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunArgs,
    }

    fn settings(argv: &[&str]) -> Settings {
        let cli = Cli::try_parse_from(std::iter::once("port-bench").chain(argv.iter().copied()))
            .expect("arguments parse");
        Settings::resolve(&cli.args)
    }

    #[test]
    fn quick_and_full_defaults() {
        // The environment must not leak a database into the test.
        let full = settings(&["--database-url", ""]);
        assert_eq!(full.mode, "full");
        assert_eq!(full.plan.warmup, Duration::from_secs(5));
        assert_eq!(full.plan.window, Duration::from_secs(10));
        assert_eq!(full.plan.repeats, 3);
        assert_eq!(full.scale_runs, [10_000, 1_000_000]);
        assert_eq!(full.scale_logs, 5_000_000);
        assert!(full.sqlite && !full.postgres);
        assert_eq!(full.phases.len(), 4);

        let quick = settings(&["--quick", "--database-url", ""]);
        assert_eq!(quick.mode, "quick");
        assert_eq!(quick.plan.window, Duration::from_secs(2));
        assert_eq!(quick.scale_runs, [10_000, 100_000]);
        assert_eq!(quick.webhook_rate, 500.0);

        // Two backends share the time.
        let both = settings(&["--quick", "--database-url", "postgres://u@h/db"]);
        assert!(both.sqlite && both.postgres);
        assert_eq!(both.plan.window, Duration::from_secs(1));
        assert!(both.seed_budget_secs < quick.seed_budget_secs);
    }

    #[test]
    fn explicit_arguments_win() {
        let s = settings(&[
            "--quick",
            "--window-secs",
            "0.5",
            "--scale-runs",
            "300,100,100,0",
            "--only",
            "scale,webhook",
            "--database-url",
            "postgres://u@h/db",
            "--no-sqlite",
        ]);
        assert_eq!(s.plan.window, Duration::from_millis(500));
        assert_eq!(s.scale_runs, [100, 300]);
        assert_eq!(s.phases, [Phase::Scale, Phase::Webhook]);
        assert!(s.runs(Phase::Scale) && !s.runs(Phase::Throughput));
        assert!(s.postgres && !s.sqlite);
    }
}
