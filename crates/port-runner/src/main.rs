//! `port-runner`: runs a command for each run of a Port self-service action.
//!
//! `port-runner --config runner.toml` reads which command handles which action (see
//! [`config`]), then receives signed webhooks from portd (or Port) on `listen`, or
//! claims `agent: true` runs itself (`mode = "pull"`). Each run starts its command
//! with the invocation JSON on stdin and the run in its environment; the command's
//! output becomes the run's log, its exit code the run's status. Everything else
//! (signatures, duplicates, decrypting secret inputs, timeouts, shutdown) is
//! `port-webhook`'s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use port_client::PortClient;
use port_webhook::{AckMode, ActionOptions, CancellationToken, PullOptions, Receiver};

mod command;
mod config;
mod output;

use command::CommandRunner;
use config::{Ack, Config, Mode};

/// How much longer than its command's timeout a run may take: time to kill the
/// command and report, before port-webhook's own timeout would step in.
const REPORT_MARGIN: Duration = Duration::from_secs(15);

/// Runs a command for each run of a Port self-service action.
#[derive(Debug, Parser)]
#[command(name = "port-runner", version, about)]
struct Cli {
    /// The configuration file.
    #[arg(long, short, env = "PORT_RUNNER_CONFIG", default_value = "runner.toml")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

/// Logs on stderr; levels from `PORT_RUNNER_LOG` or `RUST_LOG` (default `info`).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("PORT_RUNNER_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
            () = terminate => tracing::info!("terminated; shutting down"),
            () = token.cancelled() => return,
        }
        token.cancel();
    });
}

fn build(config: &Config) -> anyhow::Result<Receiver> {
    let client = PortClient::builder()
        .base_url(&config.port.api_url)
        .credentials(&config.port.client_id, &config.port.client_secret.0)
        .user_agent(concat!("port-runner/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the API client")?;
    let mut builder = Receiver::builder(client, &config.port.client_secret.0);
    if let Some(tolerance) = config.receiver.tolerance {
        builder = builder.tolerance(tolerance);
    }
    if let Some(grace) = config.receiver.shutdown_grace {
        builder = builder.shutdown_grace(grace);
    }
    for action in &config.actions {
        let runner = Arc::new(CommandRunner::new(action.clone(), &config.port));
        let options = ActionOptions::new()
            .timeout(runner.timeout() + REPORT_MARGIN)
            .concurrency(action.concurrency)
            .synchronized(action.synchronized);
        builder = builder.action(
            action.identifier.clone(),
            options,
            move |invocation, context| {
                let runner = Arc::clone(&runner);
                async move { runner.run(invocation, context).await }
            },
        );
    }
    Ok(builder.build())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let config = Config::load(&cli.config, |name| std::env::var(name).ok())
        .with_context(|| format!("invalid configuration {}", cli.config.display()))?;
    for action in &config.actions {
        tracing::info!(
            action = %action.identifier,
            command = %action.program.display(),
            timeout = %port_webhook::human_duration(action.timeout),
            concurrency = action.concurrency,
            synchronized = action.synchronized,
            "action"
        );
    }
    if cli.check {
        println!("{}: ok", cli.config.display());
        return Ok(());
    }
    let receiver = build(&config)?;
    on_signals(receiver.shutdown_token());
    match config.receiver.mode {
        Mode::Webhook => {
            let listener = tokio::net::TcpListener::bind(&config.receiver.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.receiver.listen))?;
            let address = listener.local_addr()?;
            tracing::info!(api = %config.port.api_url, %address, "receiving webhooks");
            // On stdout, for whoever started the runner (a port of 0 picks a free one).
            println!("port-runner listening on http://{address}");
            receiver.serve(listener).await?;
        }
        Mode::Pull => {
            let mut options = PullOptions::new().ack(match config.receiver.ack {
                Ack::Finish => AckMode::OnFinish,
                Ack::Claim => AckMode::OnClaim,
            });
            if let Some(timeout) = config.receiver.visibility_timeout {
                options = options.visibility_timeout(timeout);
            }
            if let Some(interval) = config.receiver.poll_interval {
                options = options.poll_interval(interval);
            }
            if let Some(installation) = &config.receiver.installation_id {
                options = options.installation_id(installation.clone());
            }
            tracing::info!(api = %config.port.api_url, "pulling runs");
            println!("port-runner pulling from {}", config.port.api_url);
            receiver.pull(options).await;
        }
    }
    tracing::info!("stopped");
    Ok(())
}
