//! `cargo xtask crash-test`: builds `portd` and `port-chaos` (crates/port-chaos), then
//! runs the kill -9 controller: seeded mixed load against the real binary, SIGKILL at
//! random moments, restart on the same data, and a check of every acknowledged write
//! after each restart (docs/reliability.md).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use crate::cargo;

#[derive(Debug, Clone, Args)]
pub(crate) struct CrashTestArgs {
    /// Kill/restart cycles.
    #[arg(long, default_value_t = 25)]
    cycles: u32,
    /// The seed of every random choice (a failing run prints its seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Run against this PostgreSQL (in a schema of its own, dropped afterwards)
    /// instead of SQLite.
    #[arg(long)]
    database_url: Option<String>,
}

impl CrashTestArgs {
    /// The arguments of `port-chaos`, before `--portd`.
    fn forwarded(&self) -> Vec<String> {
        let mut args = vec![
            "crash-test".to_owned(),
            "--cycles".to_owned(),
            self.cycles.to_string(),
        ];
        if let Some(seed) = self.seed {
            args.extend(["--seed".to_owned(), seed.to_string()]);
        }
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".to_owned(), url.clone()]);
        }
        args
    }
}

/// Builds `portd` and `port-chaos` (debug profile); returns their paths.
pub(crate) fn build() -> Result<(PathBuf, PathBuf)> {
    eprintln!("xtask: cargo build -p port-server --bin portd -p port-chaos --bin port-chaos");
    let status = cargo()
        .args([
            "build",
            "-p",
            "port-server",
            "--bin",
            "portd",
            "-p",
            "port-chaos",
            "--bin",
            "port-chaos",
        ])
        .status()
        .context("could not start cargo build")?;
    if !status.success() {
        bail!("building portd and port-chaos failed ({status})");
    }
    let dir = target_dir()?.join("debug");
    let exe = std::env::consts::EXE_SUFFIX;
    Ok((
        dir.join(format!("portd{exe}")),
        dir.join(format!("port-chaos{exe}")),
    ))
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR` and config).
pub(crate) fn target_dir() -> Result<PathBuf> {
    let output = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("could not run `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)?;
    metadata
        .get("target_directory")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .context("`cargo metadata` names no target_directory")
}

pub(crate) fn run(args: &CrashTestArgs) -> Result<()> {
    let (portd, chaos) = build()?;
    let status = std::process::Command::new(&chaos)
        .args(args.forwarded())
        .arg("--portd")
        .arg(&portd)
        .status()
        .with_context(|| format!("could not start {}", chaos.display()))?;
    if !status.success() {
        bail!("the crash test failed ({status}); its seed is printed above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CrashTestArgs,
    }

    fn forwarded(argv: &[&str]) -> Vec<String> {
        Cli::try_parse_from(std::iter::once("crash-test").chain(argv.iter().copied()))
            .expect("arguments parse")
            .args
            .forwarded()
    }

    #[test]
    fn arguments_reach_port_chaos() {
        assert_eq!(forwarded(&[]), ["crash-test", "--cycles", "25"]);
        assert_eq!(
            forwarded(&[
                "--cycles",
                "3",
                "--seed",
                "42",
                "--database-url",
                "postgres://x"
            ]),
            [
                "crash-test",
                "--cycles",
                "3",
                "--seed",
                "42",
                "--database-url",
                "postgres://x"
            ]
        );
        assert!(Cli::try_parse_from(["crash-test", "--seed", "x"]).is_err());
    }
}
