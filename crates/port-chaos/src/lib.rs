//! `port-chaos`: the reliability suite of portd (docs/reliability.md).
//!
//! - [`crash`]: the kill -9 controller behind `cargo xtask crash-test`: seeded mixed
//!   load against the real `portd` binary, SIGKILL at random moments, restart on the
//!   same data, and an [`oracle`] that checks every acknowledged write after each
//!   restart.
//! - [`outage`]: PostgreSQL stopped with `pg_ctl stop -m immediate` under load, on a
//!   private cluster ([`pg::PrivateCluster`]): 503 with `Retry-After` meanwhile,
//!   recovery within 10 s of its return, nothing acknowledged lost.
//! - [`schemathesis`]: runs schemathesis against a real portd's `/openapi.json`
//!   (`cargo xtask schemathesis`).
//!
//! The hostile-input property test, the security tests and the fuzz targets' corpus
//! run are this crate's integration tests.

pub mod api;
pub mod crash;
pub mod load;
pub mod oracle;
pub mod outage;
pub mod pg;
pub mod portd;
pub mod receiver;
pub mod schemathesis;
