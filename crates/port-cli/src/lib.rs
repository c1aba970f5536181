//! `port-cli`: the `port` command, a client of Port's self-service actions and runs API
//! (portd or Port's cloud) built on [`port_client`].
//!
//! What it adds to Port's own CLI: `port run ACTION --wait` and `--follow` watch the
//! run to its end and exit with its outcome, inputs are given inline (`--prop k=v`),
//! runs are listed with filters, and every failure has its own exit code:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success (with `--wait`/`--follow`: the run ended `SUCCESS`) |
//! | 1 | the run ended `FAILURE` or `DECLINED`, or did not end within `--timeout` |
//! | 2 | usage error (clap's code), an unreadable or invalid file, an unknown profile |
//! | 3 | API error: refused, unexpected answer, or server unreachable |
//! | 4 | authentication: missing or refused credentials |
//!
//! The binary parses [`Cli`] and hands it to [`run`]; tests can do the same.

pub mod cli;
mod commands;
pub mod config;
pub mod error;
pub mod input;
pub mod output;

pub use cli::Cli;
pub use error::{CliError, exit};

use output::Ui;

/// Runs a parsed command line and returns the process exit code. Errors are printed
/// as `error: <identifier>: <message>` on stderr.
pub async fn run(cli: Cli) -> u8 {
    let ui = Ui::new(cli.global.output, cli.global.quiet, cli.global.no_color);
    match commands::dispatch(&cli, &ui).await {
        Ok(code) => code,
        Err(error) if error.is_silent() => error.code,
        Err(error) => {
            eprintln!("error: {error}");
            error.code
        }
    }
}
