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
    /// Arrival rates of the webhook latency phase, runs/s, comma-separated: one step
    /// per rate, each on a fresh portd, reported separately (`--webhook-rate` too).
    #[arg(
        long,
        alias = "webhook-rate",
        value_delimiter = ',',
        default_values_t = [500.0, 1000.0]
    )]
    pub webhook_rates: Vec<f64>,
    /// Connections of the webhook open loop, at every rate [default: 64 per 500 runs/s,
    /// at least 64: each connection has 128 ms between its sends at any rate].
    #[arg(long)]
    pub webhook_connections: Option<usize>,
    /// Lifecycle runs kept in flight (a closed loop: it cannot exceed this many over the
    /// lifecycle latency, so the default leaves room for 500/s at 0.5 s each).
    #[arg(long, default_value_t = DEFAULT_LIFECYCLES_IN_FLIGHT)]
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

/// Lifecycles in flight by default. A closed loop of `n` runs whose lifecycles take `t`
/// seconds cannot end more than `n / t` per second (Little's law): 32 in flight at the
/// ≈ 200 ms measured before issue 19 capped the figure near 160/s, below the 500/s goal,
/// so the figure showed the loop's latency, not portd's throughput. 256 leaves the loop
/// room for 500/s up to 512 ms a lifecycle (and for ≈ 1,280/s at 200 ms): below that,
/// portd is the limit and its queues, not the loop, set the latency.
pub const DEFAULT_LIFECYCLES_IN_FLIGHT: usize = 256;

/// The webhook open loop's connections per 500 runs/s (the method of figure 3).
const WEBHOOK_CONNECTIONS_PER_500: f64 = 64.0;

/// One step of the webhook latency phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WebhookStep {
    /// Arrival rate, runs/s.
    pub rate: f64,
    pub connections: usize,
}

/// The open loop's connections at `rate`: `fixed` if given, else 64 per 500 runs/s and
/// never fewer than 64, so that each connection has the same 128 ms between its
/// scheduled sends at 1,000 runs/s as at 500 (an execute slower than that makes the
/// next send late, which the report shows as send lag).
pub fn webhook_connections(rate: f64, fixed: Option<usize>) -> usize {
    fixed
        .unwrap_or_else(|| {
            let scaled = (rate * WEBHOOK_CONNECTIONS_PER_500 / 500.0).ceil();
            // The `as` saturates; the rates are already clamped to ≥ 1 and finite.
            (scaled as usize).max(WEBHOOK_CONNECTIONS_PER_500 as usize)
        })
        .max(1)
}

/// The webhook steps of `rates`: finite rates ≥ 1 run/s (smaller ones are raised to
/// 1), ascending, each once; 500 runs/s when none is left.
pub fn webhook_steps(rates: &[f64], fixed_connections: Option<usize>) -> Vec<WebhookStep> {
    let mut rates: Vec<f64> = rates
        .iter()
        .copied()
        .filter(|r| r.is_finite())
        .map(|r| r.max(1.0))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    if rates.is_empty() {
        rates.push(500.0);
    }
    rates
        .into_iter()
        .map(|rate| WebhookStep {
            rate,
            connections: webhook_connections(rate, fixed_connections),
        })
        .collect()
}

/// Everything a run needs to know, resolved from [`RunArgs`].
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub mode: &'static str,
    pub connections: usize,
    pub plan: Plan,
    /// The first (lowest) webhook rate; kept for readers of older JSON lines.
    pub webhook_rate: f64,
    /// Connections of the webhook open loop at the first rate (ditto).
    pub webhook_connections: usize,
    /// Every step of the webhook latency phase, lowest rate first.
    pub webhook_steps: Vec<WebhookStep>,
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
        let webhook_steps = webhook_steps(&args.webhook_rates, args.webhook_connections);
        Self {
            mode: if quick { "quick" } else { "full" },
            connections: args.connections.max(1),
            plan,
            webhook_rate: webhook_steps[0].rate,
            webhook_connections: webhook_steps[0].connections,
            webhook_steps,
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
        assert_eq!(quick.webhook_connections, 64);
        assert_eq!(
            quick.webhook_steps,
            [
                WebhookStep {
                    rate: 500.0,
                    connections: 64
                },
                WebhookStep {
                    rate: 1000.0,
                    connections: 128
                }
            ]
        );
        assert_eq!(quick.lifecycles_in_flight, DEFAULT_LIFECYCLES_IN_FLIGHT);

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

    #[test]
    fn webhook_rates_are_a_list() {
        let rates = |s: &Settings| s.webhook_steps.iter().map(|w| w.rate).collect::<Vec<_>>();
        let s = settings(&["--webhook-rates", "1000,250,1000,0", "--database-url", ""]);
        // Ascending, once each; 0 is raised to 1 run/s.
        assert_eq!(rates(&s), [1.0, 250.0, 1000.0]);
        assert_eq!(s.webhook_rate, 1.0);
        // The old spelling still takes one rate (or several).
        let s = settings(&["--webhook-rate", "700", "--database-url", ""]);
        assert_eq!(rates(&s), [700.0]);
        assert_eq!(s.webhook_steps[0].connections, 90);
        let s = settings(&[
            "--webhook-rate",
            "2000",
            "--webhook-connections",
            "10",
            "--lifecycles-in-flight",
            "0",
            "--database-url",
            "",
        ]);
        assert_eq!(
            s.webhook_steps,
            [WebhookStep {
                rate: 2000.0,
                connections: 10
            }]
        );
        assert_eq!(s.lifecycles_in_flight, 1);
        assert!(Cli::try_parse_from(["port-bench", "--webhook-rates", "fast"]).is_err());
    }

    #[test]
    fn webhook_connections_keep_128_ms_between_sends() {
        assert_eq!(webhook_connections(500.0, None), 64);
        assert_eq!(webhook_connections(1000.0, None), 128);
        assert_eq!(webhook_connections(1001.0, None), 129);
        // Never fewer than the 64 of the original method.
        assert_eq!(webhook_connections(100.0, None), 64);
        assert_eq!(webhook_connections(1000.0, Some(16)), 16);
        assert_eq!(webhook_connections(1000.0, Some(0)), 1);
        // Nothing usable left: one step at 500 runs/s.
        assert_eq!(
            webhook_steps(&[f64::NAN, f64::INFINITY], None),
            [WebhookStep {
                rate: 500.0,
                connections: 64
            }]
        );
    }
}
