//! `port-chaos`: the reliability suite of portd (docs/reliability.md).
//!
//! - [`crash`]: the kill -9 controller behind `cargo xtask crash-test`: seeded mixed
//!   load against the real `portd` binary, SIGKILL at random moments, restart on the
//!   same data, and an [`oracle`] that checks every acknowledged write after each
//!   restart.
//! - [`outage`]: PostgreSQL stopped with `pg_ctl stop -m immediate` under load, on a
//!   private cluster ([`pg::PrivateCluster`]): 503 with `Retry-After` meanwhile,
//!   recovery within 10 s of its return, nothing acknowledged lost.
//! - [`isolation`]: one organization attacks a real portd while another keeps using it;
//!   the victim's latency and portd's health are measured (the `isolation` tests).
//! - [`schemathesis`]: runs schemathesis against a real portd's `/openapi.json`
//!   (`cargo xtask schemathesis`).
//! - [`clients`]: Port's own clients against a real portd (Ocean's Port client, pinned,
//!   in a virtualenv under `target/`; the `ocean` test).
//!
//! The hostile-input property test, the security tests and the fuzz targets' corpus
//! run are this crate's integration tests.

pub mod api;
pub mod clients;
pub mod crash;
pub mod isolation;
pub mod load;
pub mod oracle;
pub mod outage;
pub mod pg;
pub mod portd;
pub mod receiver;
pub mod schemathesis;

/// Writes a line straight to stderr: libtest captures `eprintln!` of passing tests, and
/// the suite's figures are meant for CI logs.
pub fn visible(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
