//! `cargo xtask schemathesis`: installs schemathesis into `target/venv` (`python3 -m
//! venv`, then `pip install`), builds `portd` and `port-chaos`, and runs schemathesis
//! with every check against a fresh portd's `/openapi.json` (see
//! crates/port-chaos/src/schemathesis.rs). Needs PyPI; not part of `cargo test`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::crash_test::{build, target_dir};

/// What `pip install` asks for: pinned, so that CI runs the version the last run passed
/// with (a new release may add checks; raise it on purpose).
const REQUIREMENT: &str = "schemathesis==4.32.5";

#[derive(Debug, Clone, Args)]
pub(crate) struct SchemathesisArgs {
    /// Test cases per API operation.
    #[arg(long, default_value_t = 50)]
    max_examples: u32,
    /// More arguments for `schemathesis run`, after `--`.
    #[arg(last = true)]
    rest: Vec<String>,
}

fn checked(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `target/venv` with schemathesis in it; returns the executable.
fn install(venv: &Path) -> Result<std::path::PathBuf> {
    let bin = venv.join("bin");
    let executable = bin.join("schemathesis");
    if executable.is_file() {
        return Ok(executable);
    }
    eprintln!("xtask: python3 -m venv {}", venv.display());
    checked(
        Command::new("python3").args(["-m", "venv"]).arg(venv),
        "python3 -m venv",
    )?;
    eprintln!("xtask: pip install '{REQUIREMENT}'");
    checked(
        Command::new(bin.join("pip")).args(["install", "--quiet", REQUIREMENT]),
        "pip install schemathesis",
    )?;
    if !executable.is_file() {
        bail!("pip installed no {}", executable.display());
    }
    Ok(executable)
}

pub(crate) fn run(args: &SchemathesisArgs) -> Result<()> {
    let executable = install(&target_dir()?.join("venv"))?;
    let (portd, chaos) = build()?;
    let mut command = Command::new(&chaos);
    command
        .args(["schemathesis", "--schemathesis"])
        .arg(&executable)
        .arg("--portd")
        .arg(&portd)
        .args(["--max-examples", &args.max_examples.to_string()]);
    if !args.rest.is_empty() {
        command.arg("--").args(&args.rest);
    }
    checked(&mut command, "port-chaos schemathesis")
}
