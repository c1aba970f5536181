//! `port-core`: the pure domain of portd.
//!
//! Runs and their state machine, run logs, actions (Port's v2 shape and the legacy v1
//! shape), blueprints and entities, invocations and how they are rendered, webhook
//! signatures, and the application services. Everything here is written against the
//! traits in [`ports`] (storage, clock, ids); this crate does no IO and knows no
//! runtime, HTTP stack or database (see `docs/architecture.md`).

pub mod access;
pub mod action;
pub mod automation;
pub mod catalog;
pub mod catalog_rules;
pub mod claim;
pub mod destination;
pub mod error;
pub mod event;
pub mod id;
pub mod inputs;
pub mod integration;
pub mod invocation;
pub mod ports;
pub mod run;
pub mod run_log;
pub mod search;
pub mod secret;
pub mod service;
pub mod signature;
pub mod template;
pub mod time;
pub mod timer;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{ErrorKind, PortError};
pub use id::*;
pub use time::Timestamp;
