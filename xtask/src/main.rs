//! `xtask`: project automation for portd, run as `cargo xtask <subcommand>`.
//!
//! Each subcommand lives in its own module. The tidy checks in [`tidy`] are also ordinary
//! `#[test]`s, so `cargo test --workspace` enforces them too.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

mod bench;
mod ci;
mod crash_test;
mod schemathesis;
mod tidy;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project automation for portd"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run what CI runs: fmt check, clippy, tests and (if installed) cargo-deny.
    Ci,
    /// Run the repository's structural checks (the same ones `cargo test` runs).
    Tidy,
    /// Measure portd against a bare axum baseline in the same run (builds port-bench in
    /// release mode; `--quick` for a short run; more arguments after `--`).
    Bench(bench::BenchArgs),
    /// Kill portd with SIGKILL under load at random moments, restart it, and check that
    /// nothing acknowledged was lost (builds portd and port-chaos first).
    CrashTest(crash_test::CrashTestArgs),
    /// Run schemathesis against a fresh portd's /openapi.json (installs it into
    /// target/venv from PyPI; more arguments after `--`).
    Schemathesis(schemathesis::SchemathesisArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Task::Ci => ci::run(),
        Task::Tidy => tidy::run(),
        Task::Bench(args) => bench::run(&args),
        Task::CrashTest(args) => crash_test::run(&args),
        Task::Schemathesis(args) => schemathesis::run(&args),
    };
    // Printed here rather than returned, so that RUST_BACKTRACE does not bury the message
    // under a backtrace of xtask itself.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

/// A `cargo` command run from the workspace root, using the same cargo that runs us.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}
