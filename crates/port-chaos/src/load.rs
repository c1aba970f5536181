//! The mixed load: clients that execute the workload's action (with idempotency
//! keys), add log lines, patch status labels, upsert entities bound to their runs, end
//! runs, replay keys and ask for redeliveries, recording every outcome in the
//! [`Oracle`]: acknowledged (2xx), unanswered (the connection died or timed out), or
//! wrong (any other answer, which fails the test). Each run is operated on by the one
//! client that created it, one request at a time, so its acknowledged state is exact.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::Api;
use crate::oracle::{ACTION, BLUEPRINT, KeyState, LOG_PREFIX, Oracle, execute_body};

/// One answer (or its absence), for tests that look at answers over time.
#[derive(Debug, Clone)]
pub struct AnswerRecord {
    pub sent: Instant,
    pub answered: Instant,
    /// `None`: no answer (connection error or timeout).
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub what: String,
}

/// State shared with the load's clients.
pub struct Load {
    pub api: Api,
    pub oracle: Mutex<Oracle>,
    pub stop: AtomicBool,
    pub seed: u64,
    pub cycle: u32,
    /// `503 service_unavailable` counts as unanswered instead of wrong (the database is
    /// down on purpose).
    pub tolerate_unavailable: bool,
    /// Every answer, when `Some`.
    pub answers: Option<Mutex<Vec<AnswerRecord>>>,
    pub pace: Duration,
}

impl Load {
    pub fn new(api: Api, oracle: Oracle, seed: u64, cycle: u32, pace: Duration) -> Self {
        Self {
            api,
            oracle: Mutex::new(oracle),
            stop: AtomicBool::new(false),
            seed,
            cycle,
            tolerate_unavailable: false,
            answers: None,
            pace,
        }
    }

    pub fn oracle(&self) -> MutexGuard<'_, Oracle> {
        self.oracle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `clients` clients.
    pub fn start(self: &Arc<Self>, clients: usize) -> Vec<tokio::task::JoinHandle<()>> {
        (0..clients)
            .map(|w| tokio::spawn(client(self.clone(), w)))
            .collect()
    }

    /// Tells the clients to stop after their current request.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The oracle back, once every client has stopped.
    pub fn into_oracle(self: Arc<Self>) -> Option<Oracle> {
        Arc::try_unwrap(self).ok().map(|load| {
            load.oracle
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
        })
    }
}

/// What a request's answer means for the oracle.
enum Outcome {
    Acked(Value),
    Unanswered,
    Wrong(String),
}

async fn call(
    load: &Load,
    method: Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
    expected: &[u16],
) -> Outcome {
    let sent = Instant::now();
    let result = load.api.send(method.clone(), path, body, headers).await;
    if let Some(answers) = &load.answers {
        let record = AnswerRecord {
            sent,
            answered: Instant::now(),
            status: result.as_ref().ok().map(|a| a.status),
            retry_after: result
                .as_ref()
                .ok()
                .and_then(|a| a.header("retry-after"))
                .map(str::to_owned),
            what: format!("{method} {path}"),
        };
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }
    match result {
        Ok(answer) if expected.contains(&answer.status) => Outcome::Acked(answer.body),
        Ok(answer) if answer.status == 503 && load.tolerate_unavailable => Outcome::Unanswered,
        Ok(answer) => Outcome::Wrong(format!(
            "{method} {path}: {} {}",
            answer.status, answer.body
        )),
        Err(_) => Outcome::Unanswered,
    }
}

fn mix(seed: u64, cycle: u32, worker: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(cycle).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(worker as u64)
}

/// One client of the load: operates on the runs it owns, one request at a time.
async fn client(shared: Arc<Load>, worker: usize) {
    let mut rng = StdRng::seed_from_u64(mix(shared.seed, shared.cycle, worker));
    let mut runs: Vec<String> = shared
        .oracle()
        .runs
        .iter()
        .filter(|(_, r)| r.owner == worker && r.active())
        .map(|(id, _)| id.clone())
        .collect();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        n += 1;
        let tag = format!("c{} w{worker} n{n}", shared.cycle);
        let roll = rng.random_range(0..100u32);
        // Many open runs: end some.
        let finish_share = if runs.len() > 24 { 25 } else { 4 };
        if runs.is_empty() || roll < 18 {
            execute_op(&shared, worker, &tag, &mut runs).await;
        } else {
            // Mostly the newest runs, sometimes any.
            let index = if rng.random_bool(0.7) {
                runs.len() - 1 - rng.random_range(0..runs.len().min(5))
            } else {
                rng.random_range(0..runs.len())
            };
            let run = runs[index].clone();
            let roll = rng.random_range(0..100u32);
            if roll < finish_share {
                if finish_op(&shared, &run, rng.random_bool(0.8)).await {
                    runs.swap_remove(index);
                }
            } else if roll < 40 {
                log_op(&shared, &run, &tag).await;
            } else if roll < 62 {
                label_op(&shared, &run, &tag).await;
            } else if roll < 86 {
                let entity = format!("e-{run}-{}", rng.random_range(0..2u8));
                entity_op(&shared, &run, &entity, &tag).await;
            } else if roll < 94 {
                replay_op(&shared, &run).await;
            } else {
                redeliver_op(&shared, &run).await;
            }
        }
        if !shared.pace.is_zero() {
            let pause = rng.random_range(0..=shared.pace.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

async fn execute_op(shared: &Load, worker: usize, tag: &str, runs: &mut Vec<String>) {
    let key = format!("k-{:x}-{}", shared.seed, tag.replace(' ', "-"));
    let outcome = call(
        shared,
        Method::POST,
        &format!("/v1/actions/{ACTION}/runs"),
        Some(&execute_body(&key)),
        &[("idempotency-key", &key)],
        &[202],
    )
    .await;
    let mut oracle = shared.oracle();
    match outcome {
        Outcome::Acked(body) => match body["run"]["id"].as_str() {
            Some(id) if body["run"]["status"] == "IN_PROGRESS" => {
                oracle.add_run(&key, id, worker);
                runs.push(id.to_owned());
            }
            _ => oracle.violation(format!("execute answered {body}")),
        },
        Outcome::Unanswered => {
            oracle.counts.unanswered += 1;
            oracle.keys.insert(key, KeyState::Unknown { owner: worker });
        }
        Outcome::Wrong(what) => oracle.violation(what),
    }
}

async fn log_op(shared: &Load, run: &str, tag: &str) {
    let message = format!("{LOG_PREFIX}{tag}");
    let outcome = call(
        shared,
        Method::POST,
        &format!("/v1/actions/runs/{run}/logs"),
        Some(&json!({ "message": message })),
        &[],
        &[201],
    )
    .await;
    let mut oracle = shared.oracle();
    let Oracle {
        runs,
        counts,
        violations,
        ..
    } = &mut *oracle;
    let Some(model) = runs.get_mut(run) else {
        return;
    };
    match outcome {
        Outcome::Acked(_) => {
            model.logs.push(message);
            counts.logs += 1;
        }
        Outcome::Unanswered => {
            model.logs_pending.push(message);
            counts.unanswered += 1;
        }
        Outcome::Wrong(what) => violations.push(what),
    }
}

async fn label_op(shared: &Load, run: &str, tag: &str) {
    let label = format!("label {tag}");
    let outcome = call(
        shared,
        Method::PATCH,
        &format!("/v1/actions/runs/{run}"),
        Some(&json!({ "statusLabel": label })),
        &[],
        &[200],
    )
    .await;
    let mut oracle = shared.oracle();
    let Oracle {
        runs,
        counts,
        violations,
        ..
    } = &mut *oracle;
    let Some(model) = runs.get_mut(run) else {
        return;
    };
    match outcome {
        Outcome::Acked(body) if body["run"]["statusLabel"] == label.as_str() => {
            model.label = Some(label);
            model.label_pending.clear();
            counts.labels += 1;
        }
        Outcome::Acked(body) => violations.push(format!("PATCH {run} answered {body}")),
        Outcome::Unanswered => {
            model.label_pending.push(label);
            counts.unanswered += 1;
        }
        Outcome::Wrong(what) => violations.push(what),
    }
}

async fn entity_op(shared: &Load, run: &str, entity: &str, tag: &str) {
    let value = format!("v {tag}");
    let outcome = call(
        shared,
        Method::POST,
        &format!("/v1/blueprints/{BLUEPRINT}/entities?upsert=true&run_id={run}"),
        Some(&json!({ "identifier": entity, "properties": { "value": value } })),
        &[],
        &[200, 201],
    )
    .await;
    let mut oracle = shared.oracle();
    let Oracle {
        runs,
        entities,
        counts,
        violations,
        ..
    } = &mut *oracle;
    let model = entities.entry(entity.to_owned()).or_default();
    model.run = run.to_owned();
    match outcome {
        Outcome::Acked(_) => {
            model.value = Some(value);
            model.pending.clear();
            counts.entities += 1;
            if let Some(run) = runs.get_mut(run) {
                run.entities.insert(entity.to_owned());
            }
        }
        Outcome::Unanswered => {
            model.pending.push(value);
            counts.unanswered += 1;
        }
        Outcome::Wrong(what) => violations.push(what),
    }
}

/// Ends a run; whether the client should stop using it.
async fn finish_op(shared: &Load, run: &str, success: bool) -> bool {
    let status = if success { "SUCCESS" } else { "FAILURE" };
    let outcome = call(
        shared,
        Method::PATCH,
        &format!("/v1/actions/runs/{run}"),
        Some(&json!({ "status": status })),
        &[],
        &[200],
    )
    .await;
    let mut oracle = shared.oracle();
    let Oracle {
        runs,
        counts,
        violations,
        ..
    } = &mut *oracle;
    let Some(model) = runs.get_mut(run) else {
        return true;
    };
    match outcome {
        Outcome::Acked(_) => {
            model.status = Some(status.to_owned());
            counts.finishes += 1;
        }
        Outcome::Unanswered => {
            model.status_pending = Some(status.to_owned());
            counts.unanswered += 1;
        }
        Outcome::Wrong(what) => violations.push(what),
    }
    true
}

/// Replays the key that created `run`: the same run must come back.
async fn replay_op(shared: &Load, run: &str) {
    let Some(key) = shared.oracle().runs.get(run).map(|r| r.key.clone()) else {
        return;
    };
    let outcome = call(
        shared,
        Method::POST,
        &format!("/v1/actions/{ACTION}/runs"),
        Some(&execute_body(&key)),
        &[("idempotency-key", &key)],
        &[202],
    )
    .await;
    let mut oracle = shared.oracle();
    match outcome {
        Outcome::Acked(body) if body["run"]["id"] == run => oracle.counts.replays += 1,
        Outcome::Acked(body) => oracle.violation(format!(
            "replaying Idempotency-Key {key} of run {run} answered {}",
            body["run"]["id"]
        )),
        Outcome::Unanswered => oracle.counts.unanswered += 1,
        Outcome::Wrong(what) => oracle.violation(what),
    }
}

/// Asks for the run's webhook again (same `webhook-id`).
async fn redeliver_op(shared: &Load, run: &str) {
    if let Some(model) = shared.oracle().runs.get_mut(run) {
        model.redelivered = true;
    }
    let outcome = call(
        shared,
        Method::POST,
        &format!("/v1/actions/runs/{run}/deliveries/redeliver"),
        None,
        &[],
        &[200],
    )
    .await;
    let mut oracle = shared.oracle();
    match outcome {
        Outcome::Acked(_) => oracle.counts.redeliveries += 1,
        Outcome::Unanswered => oracle.counts.unanswered += 1,
        Outcome::Wrong(what) => oracle.violation(what),
    }
}
