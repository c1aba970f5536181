//! The reliability suite as tests (docs/reliability.md): kill -9 cycles against the
//! real portd binary on SQLite and PostgreSQL, PostgreSQL stopped under load, hostile
//! input to every route, security properties, and the fuzz targets over their corpus.

use std::io::Write as _;

mod automations;
mod common;
mod crash;
mod escalation;
mod fuzz_corpus;
mod hostile;
mod outage;
mod replicas;
mod secrets;
mod security;

/// The fuzz targets' checks (`fuzz/src/lib.rs`), run here on stable.
#[path = "../../../../fuzz/src/lib.rs"]
mod fuzz_logic;

/// Writes straight to stderr: libtest captures `eprintln!` of passing tests, and these
/// figures are meant for CI logs.
pub fn visible(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
