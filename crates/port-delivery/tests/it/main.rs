//! Integration tests of port-delivery: the worker and the reaper with a real store
//! (SQLite in a temporary directory) and real HTTP receivers on loopback.

mod approval_notifications;
mod delivery;
mod destinations;
mod fairness;
mod reaper;
mod support;
mod transports;
