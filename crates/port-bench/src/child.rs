//! The benchmark's side of a server process (`port-bench serve …`, see
//! [`crate::serve`]): start it, read its address, send it commands, read its memory,
//! stop it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use crate::machine::Memory;
use crate::protocol::{Answer, Command, Ready, SeedReport, SeedRequest};
use crate::serve::Kind;

/// How a portd child is configured.
#[derive(Debug, Clone, Default)]
pub struct PortdSetup {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// `PORTD_LOG` for the child.
    pub log_filter: String,
}

pub struct Child {
    process: tokio::process::Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    pub ready: Ready,
    log: PathBuf,
}

impl Child {
    /// Starts a server and waits (up to a minute) for it to listen. Its stderr goes
    /// to `log`.
    pub async fn spawn(kind: Kind, portd: Option<&PortdSetup>, log: &Path) -> Result<Self> {
        let exe = std::env::current_exe().context("locating port-bench")?;
        let mut command = tokio::process::Command::new(exe);
        command.arg("serve");
        command.arg(match kind {
            Kind::Baseline => "baseline",
            Kind::Portd => "portd",
        });
        if let Some(setup) = portd {
            command
                .arg("--data-dir")
                .arg(&setup.data_dir)
                .env("PORTD_LOG", &setup.log_filter)
                .env("PORTD_BOOTSTRAP_CLIENT_ID", &setup.client_id)
                .env("PORTD_BOOTSTRAP_CLIENT_SECRET", &setup.client_secret);
            match &setup.database_url {
                Some(url) => command.env("PORT_BENCH_DATABASE_URL", url),
                None => command.env_remove("PORT_BENCH_DATABASE_URL"),
            };
        }
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut process = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .context("starting a server process")?;
        let stdin = process.stdin.take();
        let stdout = process.stdout.take().context("no stdout")?;
        let mut child = Self {
            process,
            stdin,
            lines: BufReader::new(stdout).lines(),
            ready: Ready {
                addr: ([127, 0, 0, 1], 0).into(),
                pid: 0,
                org_id: None,
            },
            log: log.to_path_buf(),
        };
        match child.answer(Duration::from_secs(60)).await? {
            Answer::Ready(ready) => child.ready = ready,
            other => bail!("unexpected first line from the server: {other:?}"),
        }
        Ok(child)
    }

    async fn answer(&mut self, limit: Duration) -> Result<Answer> {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .map_err(|_| anyhow::anyhow!("the server did not answer within {limit:?}"))
            .and_then(|line| line.context("reading the server's stdout"));
        match line {
            Ok(Some(line)) => serde_json::from_str(&line)
                .with_context(|| format!("unreadable line from the server: {line}")),
            Ok(None) => bail!("the server exited; its log:\n{}", self.log_tail()),
            Err(e) => Err(e.context(format!("its log:\n{}", self.log_tail()))),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub async fn seed(&mut self, request: SeedRequest, limit: Duration) -> Result<SeedReport> {
        let mut line = serde_json::to_string(&Command::Seed(request))?;
        line.push('\n');
        let stdin = self
            .stdin
            .as_mut()
            .context("the server's stdin is closed")?;
        stdin.write_all(line.as_bytes()).await?;
        stdin.flush().await?;
        match self.answer(limit).await? {
            Answer::Seeded(report) => Ok(report),
            Answer::Error(e) => bail!("{e}"),
            other => bail!("unexpected answer to seed: {other:?}"),
        }
    }

    pub fn memory(&self) -> Option<Memory> {
        Memory::of_pid(self.ready.pid)
    }

    /// Closes stdin (a graceful stop) and waits up to 30 s, then kills.
    pub async fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(Duration::from_secs(30), self.process.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!(
                        "the server exited with {status}; its log:\n{}",
                        self.log_tail()
                    );
                }
            }
            Err(_) => {
                self.process.kill().await?;
                bail!("the server did not stop within 30 s; killed it");
            }
        }
        Ok(())
    }
}
