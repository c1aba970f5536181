//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure.

use std::io::Write as _;
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::cargo;

/// The steps every run performs, as arguments to `cargo`.
const STEPS: &[&[&str]] = &[
    &["fmt", "--all", "--", "--check"],
    &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
    &["test", "--workspace"],
];

/// What cargo-deny prints when it cannot clone or update the RustSec advisory database.
const ADVISORY_FETCH_FAILED: &str = "failed to fetch advisory database";

pub(crate) fn run() -> Result<()> {
    for args in STEPS {
        step(args)?;
    }
    if cargo_deny_installed() {
        step(&["deny", "check", "bans", "licenses", "sources"])?;
        advisories()?;
    } else {
        note(&[
            "cargo-deny is not installed; skipping `cargo deny check`.",
            "install it with `cargo install --locked cargo-deny`.",
        ]);
    }
    eprintln!();
    eprintln!("xtask ci: all steps passed");
    Ok(())
}

fn step(args: &[&str]) -> Result<()> {
    let shown = announce(args);
    let status = cargo()
        .args(args)
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status}); stopping here");
    }
    Ok(())
}

/// `cargo deny check advisories`, which needs the RustSec database from GitHub. A machine
/// that cannot reach it (no network, or only package registries) gets a visible note
/// instead of a failure; any advisory found is still a failure.
fn advisories() -> Result<()> {
    let args = ["deny", "check", "advisories"];
    let shown = announce(&args);
    let output = cargo()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    std::io::stdout().write_all(&output.stdout)?;
    std::io::stderr().write_all(&output.stderr)?;
    if output.status.success() {
        return Ok(());
    }
    if String::from_utf8_lossy(&output.stderr).contains(ADVISORY_FETCH_FAILED) {
        note(&[
            "the RustSec advisory database could not be fetched (offline?);",
            "advisories were NOT checked. Bans, licenses and sources passed.",
        ]);
        return Ok(());
    }
    bail!(
        "xtask ci: `{shown}` failed ({}); stopping here",
        output.status
    );
}

fn announce(args: &[&str]) -> String {
    let shown = format!("cargo {}", args.join(" "));
    eprintln!();
    eprintln!("xtask ci: running `{shown}`");
    shown
}

fn note(lines: &[&str]) {
    eprintln!();
    for line in lines {
        eprintln!("xtask ci: NOTE: {line}");
    }
}

fn cargo_deny_installed() -> bool {
    cargo()
        .args(["deny", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
