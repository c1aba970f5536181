//! What the benchmark and a server it started say to each other: one JSON object per
//! line, commands on the server's stdin, answers on its stdout. Closing stdin stops
//! the server.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A server's lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Ready(Ready),
    Seeded(SeedReport),
    Error(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub addr: SocketAddr,
    pub pid: u32,
    /// portd: the bootstrap organization.
    pub org_id: Option<String>,
}

/// The benchmark's commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Seed(SeedRequest),
}

/// Store `runs` more runs (spread round-robin over `actions`, shaped like
/// `template_run`) and `logs` log lines on some of them, `logs_per_run` per run,
/// straight through `port_store`, stopping early after `budget_secs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRequest {
    pub org_id: String,
    pub template_run: String,
    pub actions: Vec<String>,
    pub runs: u64,
    pub logs: u64,
    pub logs_per_run: u64,
    pub budget_secs: f64,
    /// How many runs are written at once.
    pub concurrency: usize,
    /// How many run ids to send back (spread evenly over the new runs).
    pub sample: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedReport {
    pub runs: u64,
    pub logs: u64,
    pub secs: f64,
    /// False when the budget ran out first.
    pub complete: bool,
    pub sample: Vec<String>,
}
