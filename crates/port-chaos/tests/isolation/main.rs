//! Tenant isolation (docs/reliability.md, "No tenant can hurt another"): each test is one
//! attack by one organization against the real portd binary while another organization
//! keeps working, asserting that portd stays alive, that the victim keeps its usual
//! latency, and that the attacker gets a clear 4xx (or only its own work slows down).
//!
//! The tests run one at a time ([`port_chaos::isolation::serial`]), in their own test
//! binary, so no other suite's load is measured as the victim's latency.

mod automations;
mod clients;
mod connections;
mod delivery;
mod destinations;
mod harness;
mod metrics;
mod odd_text;
mod search;
mod secrets;
mod streams;
mod templates;
mod token;
