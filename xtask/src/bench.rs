//! `cargo xtask bench`: builds `port-bench` (crates/port-bench) in release mode and runs
//! it, measuring portd against a bare axum baseline in the same run. Arguments after
//! `--` go to `port-bench run` (see `cargo xtask bench -- --help`); docs/benchmarks.md
//! describes the figures and keeps the results.

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cargo;
use crate::crash_test::target_dir;

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// A short run (under two minutes once built): shorter windows, 10 k and 100 k
    /// stored runs.
    #[arg(long)]
    quick: bool,
    /// More arguments for `port-bench run`, after `--`.
    #[arg(last = true)]
    rest: Vec<String>,
}

impl BenchArgs {
    /// The arguments of `port-bench`.
    fn forwarded(&self) -> Vec<String> {
        let mut args = vec!["run".to_owned()];
        if self.quick {
            args.push("--quick".to_owned());
        }
        args.extend(self.rest.iter().cloned());
        args
    }
}

pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    eprintln!("xtask bench: cargo build --release -p port-bench");
    let status = cargo()
        .args([
            "build",
            "--release",
            "-p",
            "port-bench",
            "--bin",
            "port-bench",
        ])
        .status()
        .context("could not start cargo build")?;
    if !status.success() {
        bail!("`cargo build --release -p port-bench` failed ({status})");
    }
    let binary = target_dir()?.join("release").join("port-bench");
    let forwarded = args.forwarded();
    eprintln!("xtask bench: {} {}", binary.display(), forwarded.join(" "));
    let status = std::process::Command::new(&binary)
        .args(&forwarded)
        .status()
        .with_context(|| format!("could not start {}", binary.display()))?;
    if !status.success() {
        bail!("port-bench failed ({status})");
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
        args: BenchArgs,
    }

    fn forwarded(argv: &[&str]) -> Vec<String> {
        Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))
            .expect("arguments parse")
            .args
            .forwarded()
    }

    #[test]
    fn arguments_reach_port_bench() {
        assert_eq!(forwarded(&[]), ["run"]);
        assert_eq!(forwarded(&["--quick"]), ["run", "--quick"]);
        assert_eq!(
            forwarded(&["--quick", "--", "--only", "scale", "--scale-runs", "100"]),
            ["run", "--quick", "--only", "scale", "--scale-runs", "100"]
        );
        assert!(Cli::try_parse_from(["bench", "--only", "scale"]).is_err());
    }
}
