//! The oracle: every write the workload sent, split into those portd acknowledged
//! (a 2xx answer) and those left without an answer by a kill. After a restart,
//! [`Oracle::verify`] reads portd back through its API and checks that every
//! acknowledged write is there, that unanswered ones were applied at most once, and
//! then "resolves" the unanswered ones to what was found, so the next cycle starts
//! from known state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::Api;
use crate::receiver::{Received, Receiver};

/// The blueprint the workload's entities live in.
pub const BLUEPRINT: &str = "chaos_service";
/// The action the workload executes (a webhook to the receiver).
pub const ACTION: &str = "chaos_deploy";
/// Prefix of the workload's log lines (portd adds lines of its own).
pub const LOG_PREFIX: &str = "chaos-log ";
/// How long after a restart every pending webhook must have arrived.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// What is known about one run.
#[derive(Debug, Clone, Default)]
pub struct RunModel {
    /// The idempotency key that created it.
    pub key: String,
    /// The worker that operates on it.
    pub owner: usize,
    /// The last acknowledged `statusLabel`.
    pub label: Option<String>,
    /// Labels sent after it without an answer.
    pub label_pending: Vec<String>,
    /// Acknowledged log lines, in order.
    pub logs: Vec<String>,
    /// Log lines sent without an answer.
    pub logs_pending: Vec<String>,
    /// The acknowledged final status.
    pub status: Option<String>,
    /// A final status sent without an answer.
    pub status_pending: Option<String>,
    /// Entities upserted with `?run_id=` of this run and acknowledged.
    pub entities: BTreeSet<String>,
    /// Whether a redelivery was asked for (duplicates are then expected).
    pub redelivered: bool,
}

impl RunModel {
    /// Still accepting logs, patches and bound entities, as far as we know.
    pub fn active(&self) -> bool {
        self.status.is_none() && self.status_pending.is_none()
    }
}

/// An entity the workload upserts.
#[derive(Debug, Clone, Default)]
pub struct EntityModel {
    pub run: String,
    /// The last acknowledged `properties.value`.
    pub value: Option<String>,
    pub pending: Vec<String>,
}

/// An idempotency key and what it is known to have created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Acked(String),
    /// Sent without an answer: it may or may not have created a run.
    Unknown {
        owner: usize,
    },
}

/// Counters of what the workload did.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub runs: u64,
    pub logs: u64,
    pub labels: u64,
    pub entities: u64,
    pub finishes: u64,
    pub replays: u64,
    pub redeliveries: u64,
    /// Requests left without an answer (by kills).
    pub unanswered: u64,
}

/// What one verification found and checked.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// Acknowledged writes found (runs, log lines, labels, final statuses, entities,
    /// entity bindings in the audit log).
    pub writes_checked: u64,
    /// Runs that were `IN_PROGRESS` with an undelivered webhook at the kill.
    pub deliveries_needed: u64,
    /// How long after the restart the last of them arrived.
    pub recovery: Duration,
    /// Idempotency keys replayed.
    pub replays: u64,
}

/// The acknowledged state of the workload.
#[derive(Debug, Default)]
pub struct Oracle {
    pub runs: BTreeMap<String, RunModel>,
    pub keys: BTreeMap<String, KeyState>,
    pub entities: BTreeMap<String, EntityModel>,
    pub counts: Counts,
    /// Keys acknowledged since the last verification (all are replayed).
    pub fresh_keys: Vec<String>,
    /// Broken promises seen while the workload ran (wrong answers).
    pub violations: Vec<String>,
}

/// What [`Oracle::verify`] needs to check deliveries after a kill.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryCheck<'a> {
    pub receiver: &'a Receiver,
    /// When portd was killed, every time so far, oldest first.
    pub kills: &'a [Instant],
    /// When the process that now serves was started.
    pub restart_at: Instant,
}

/// Whether the receiver handed back a 2xx to a process that was still alive to read
/// it: no kill between the request's arrival and the answer. (A held request whose
/// sender died is still answered by the receiver; that answer reached no one.)
pub fn completed(r: &Received, kills: &[Instant]) -> bool {
    r.ok_at
        .is_some_and(|ok| !kills.iter().any(|k| r.at < *k && *k <= ok))
}

/// A run as portd lists it.
#[derive(Debug, Clone)]
struct Listed {
    status: String,
    label: Option<String>,
}

impl Oracle {
    pub fn add_run(&mut self, key: &str, run_id: &str, owner: usize) {
        self.keys
            .insert(key.to_owned(), KeyState::Acked(run_id.to_owned()));
        self.runs.insert(
            run_id.to_owned(),
            RunModel {
                key: key.to_owned(),
                owner,
                ..RunModel::default()
            },
        );
        self.fresh_keys.push(key.to_owned());
        self.counts.runs += 1;
    }

    pub fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// Reads everything back and checks it (see the module docs); with `deliveries`,
    /// also that webhooks pending at a kill arrived within [`DELIVERY_DEADLINE`] of the
    /// restart, with stable `webhook-id`s and valid signatures.
    pub async fn verify(
        &mut self,
        api: &Api,
        deliveries: Option<DeliveryCheck<'_>>,
    ) -> Result<Verified> {
        if !self.violations.is_empty() {
            bail!(
                "wrong answers during the load:\n  {}",
                self.violations.join("\n  ")
            );
        }
        let mut verified = Verified::default();
        let listed = list_runs(api).await?;
        self.check_runs(&listed, &mut verified)?;
        if let Some(check) = deliveries {
            self.check_deliveries(&listed, check, &mut verified).await?;
            check_webhook_ids(&check.receiver.received())?;
        }
        self.check_logs(api, &mut verified).await?;
        self.check_entities(api, &mut verified).await?;
        self.check_keys(api, &mut verified).await?;
        Ok(verified)
    }

    fn check_runs(&mut self, listed: &HashMap<String, Listed>, v: &mut Verified) -> Result<()> {
        for (id, run) in &mut self.runs {
            let Some(found) = listed.get(id) else {
                bail!("acknowledged run {id} (key {}) is missing", run.key);
            };
            v.writes_checked += 1;
            match (&run.status, &run.status_pending) {
                (Some(status), _) => {
                    if &found.status != status {
                        bail!(
                            "run {id}: status {} after an acknowledged {status}",
                            found.status
                        );
                    }
                    v.writes_checked += 1;
                }
                (None, Some(pending)) => {
                    if found.status != "IN_PROGRESS" && &found.status != pending {
                        bail!(
                            "run {id}: status {} (an unanswered {pending} was the only change)",
                            found.status
                        );
                    }
                }
                (None, None) => {
                    if found.status != "IN_PROGRESS" {
                        bail!("run {id}: status {} but nothing ended it", found.status);
                    }
                }
            }
            if found.status != "IN_PROGRESS" {
                run.status = Some(found.status.clone());
            }
            run.status_pending = None;

            let allowed = found.label == run.label
                || found
                    .label
                    .as_ref()
                    .is_some_and(|l| run.label_pending.contains(l));
            if !allowed {
                bail!(
                    "run {id}: statusLabel {:?}, expected the acknowledged {:?} or one of {:?}",
                    found.label,
                    run.label,
                    run.label_pending
                );
            }
            if run.label.is_some() {
                v.writes_checked += 1;
            }
            run.label.clone_from(&found.label);
            run.label_pending.clear();
        }
        Ok(())
    }

    async fn check_deliveries(
        &mut self,
        listed: &HashMap<String, Listed>,
        check: DeliveryCheck<'_>,
        v: &mut Verified,
    ) -> Result<()> {
        let DeliveryCheck {
            receiver,
            kills,
            restart_at,
        } = check;
        let Some(&kill_at) = kills.last() else {
            bail!("a delivery check needs a kill");
        };
        let received = receiver.received();
        let delivered_before: BTreeSet<&str> = received
            .iter()
            .filter(|r| r.at < kill_at && completed(r, kills))
            .filter_map(|r| r.run_id.as_deref())
            .collect();
        let mut needed: BTreeSet<String> = self
            .runs
            .keys()
            .filter(|id| listed.get(*id).is_some_and(|l| l.status == "IN_PROGRESS"))
            .filter(|id| !delivered_before.contains(id.as_str()))
            .cloned()
            .collect();
        v.deliveries_needed = needed.len() as u64;
        let deadline = restart_at + DELIVERY_DEADLINE;
        let mut last = Duration::ZERO;
        loop {
            for r in receiver.received() {
                // Sent by the process that now serves, and answered.
                if let (Some(run), Some(at)) = (&r.run_id, r.ok_at)
                    && r.at > kill_at
                    && needed.remove(run)
                {
                    last = last.max(at.saturating_duration_since(restart_at));
                }
            }
            if needed.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} runs IN_PROGRESS with an undelivered webhook were not delivered \
                     within {DELIVERY_DEADLINE:?} of the restart: {:?}",
                    needed.len(),
                    v.deliveries_needed,
                    needed.iter().take(10).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        v.recovery = last;
        Ok(())
    }

    async fn check_logs(&mut self, api: &Api, v: &mut Verified) -> Result<()> {
        let wanted: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.logs.is_empty() || !r.logs_pending.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        let found: Vec<Result<(String, Vec<String>)>> = futures::stream::iter(wanted)
            .map(|id| async move {
                let logs = run_logs(api, &id).await?;
                Ok((id, logs))
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for item in found {
            let (id, messages) = item?;
            let run = self.runs.get_mut(&id).context("a listed run")?;
            let ours: Vec<String> = messages
                .into_iter()
                .filter(|m| m.starts_with(LOG_PREFIX))
                .collect();
            // Acknowledged lines in order; nothing we did not send; nothing twice.
            let mut acked = run.logs.iter().peekable();
            let mut seen = BTreeSet::new();
            for message in &ours {
                if !seen.insert(message.as_str()) {
                    bail!("run {id}: log line {message:?} is stored twice");
                }
                if acked.peek().is_some_and(|next| *next == message) {
                    acked.next();
                } else if !run.logs_pending.contains(message) && !run.logs.contains(message) {
                    bail!("run {id}: log line {message:?} was never sent");
                }
            }
            if let Some(missing) = acked.next() {
                bail!(
                    "run {id}: acknowledged log line {missing:?} is missing or out of order \
                     (stored: {ours:?})"
                );
            }
            v.writes_checked += run.logs.len() as u64;
            run.logs = ours;
            run.logs_pending.clear();
        }
        Ok(())
    }

    async fn check_entities(&mut self, api: &Api, v: &mut Verified) -> Result<()> {
        let body = api
            .get(&format!("/v1/blueprints/{BLUEPRINT}/entities"))
            .await?
            .expect(200, "listing entities")?;
        let stored: HashMap<String, Option<String>> = body["entities"]
            .as_array()
            .context("entities")?
            .iter()
            .filter_map(|e| {
                let id = e["identifier"].as_str()?.to_owned();
                Some((id, e["properties"]["value"].as_str().map(str::to_owned)))
            })
            .collect();
        for (id, entity) in &mut self.entities {
            let found = stored.get(id).cloned().flatten();
            let allowed =
                found == entity.value || found.as_ref().is_some_and(|f| entity.pending.contains(f));
            if !allowed {
                bail!(
                    "entity {id}: value {found:?}, expected the acknowledged {:?} or one of {:?}",
                    entity.value,
                    entity.pending
                );
            }
            if entity.value.is_some() {
                v.writes_checked += 1;
            }
            entity.value = found;
            entity.pending.clear();
        }
        // The acknowledged bindings are in each run's audit log.
        let bound: Vec<(String, BTreeSet<String>)> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.entities.is_empty())
            .map(|(id, r)| (id.clone(), r.entities.clone()))
            .collect();
        let audits: Vec<Result<u64>> = futures::stream::iter(bound)
            .map(|(run, entities)| async move {
                let body = api
                    .get(&format!("/v1/audit-log?run_id={run}"))
                    .await?
                    .expect(200, "reading an audit log")?;
                let listed: BTreeSet<&str> = body["audits"]
                    .as_array()
                    .context("audits")?
                    .iter()
                    .filter_map(|a| a["identifier"].as_str())
                    .collect();
                for entity in &entities {
                    if !listed.contains(entity.as_str()) {
                        bail!(
                            "run {run}: the acknowledged upsert of {entity} is not in its audit log"
                        );
                    }
                }
                Ok(entities.len() as u64)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for checked in audits {
            v.writes_checked += checked?;
        }
        Ok(())
    }

    /// Replays the keys acknowledged since the last check (same run), and resolves the
    /// unanswered ones (a replay either finds the run the lost request made or makes it,
    /// and a second replay agrees).
    async fn check_keys(&mut self, api: &Api, v: &mut Verified) -> Result<()> {
        for key in std::mem::take(&mut self.fresh_keys) {
            let Some(KeyState::Acked(run)) = self.keys.get(&key).cloned() else {
                continue;
            };
            let again = execute(api, &key).await?;
            v.replays += 1;
            if again != run {
                bail!("replaying Idempotency-Key {key} gave run {again}, not the original {run}");
            }
        }
        let unknown: Vec<(String, usize)> = self
            .keys
            .iter()
            .filter_map(|(key, state)| match state {
                KeyState::Unknown { owner } => Some((key.clone(), *owner)),
                KeyState::Acked(_) => None,
            })
            .collect();
        for (key, owner) in unknown {
            let first = execute(api, &key).await?;
            let second = execute(api, &key).await?;
            v.replays += 2;
            if first != second {
                bail!("Idempotency-Key {key} gave run {first}, then {second}");
            }
            if self.runs.contains_key(&first) {
                bail!("Idempotency-Key {key} answered with {first}, a run of another key");
            }
            self.keys
                .insert(key.clone(), KeyState::Acked(first.clone()));
            self.runs.insert(
                first,
                RunModel {
                    key,
                    owner,
                    ..RunModel::default()
                },
            );
        }
        Ok(())
    }

    /// After the last cycle: portd itself records every `IN_PROGRESS` run's delivery as
    /// delivered (within `within`). Returns how many runs were checked.
    pub async fn check_recorded_deliveries(&self, api: &Api, within: Duration) -> Result<u64> {
        let deadline = Instant::now() + within;
        let mut pending: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, r)| r.status.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let total = pending.len() as u64;
        while !pending.is_empty() {
            let states: Vec<Result<(String, bool)>> = futures::stream::iter(pending.clone())
                .map(|id| async move {
                    let body = api
                        .get(&format!("/v1/actions/runs/{id}/deliveries"))
                        .await?
                        .expect(200, "listing deliveries")?;
                    let delivered = body["deliveries"]
                        .as_array()
                        .and_then(|d| d.last())
                        .is_some_and(|d| d["state"] == "DELIVERED");
                    Ok((id, delivered))
                })
                .buffer_unordered(8)
                .collect()
                .await;
            pending.clear();
            for state in states {
                let (id, delivered) = state?;
                if !delivered {
                    pending.push(id);
                }
            }
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "portd still has {} deliveries of IN_PROGRESS runs not DELIVERED: {:?}",
                    pending.len(),
                    pending.iter().take(10).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(total)
    }

    /// Runs whose webhook reached the receiver (a 2xx answer read by a live portd)
    /// more than once although no redelivery was asked for: duplicates around kills.
    pub fn duplicates(&self, received: &[Received], kills: &[Instant]) -> u64 {
        let mut ok: HashMap<&str, u64> = HashMap::new();
        for r in received {
            if let Some(run) = &r.run_id
                && completed(r, kills)
            {
                *ok.entry(run.as_str()).or_default() += 1;
            }
        }
        ok.iter()
            .filter(|(run, n)| **n > 1 && self.runs.get(**run).is_some_and(|r| !r.redelivered))
            .count() as u64
    }
}

/// Every request for one run carries the same `webhook-id`, no two runs share one,
/// and every signature verifies.
pub fn check_webhook_ids(received: &[Received]) -> Result<()> {
    let mut by_run: HashMap<&str, &str> = HashMap::new();
    let mut by_id: HashMap<&str, &str> = HashMap::new();
    for r in received {
        if !r.signature_ok {
            bail!(
                "a webhook (run {:?}, webhook-id {}) carries an invalid signature",
                r.run_id,
                r.webhook_id
            );
        }
        let Some(run) = r.run_id.as_deref() else {
            bail!("a webhook without context.runId arrived");
        };
        if r.webhook_id.is_empty() {
            bail!("a webhook of run {run} has no webhook-id");
        }
        if let Some(previous) = by_run.insert(run, &r.webhook_id)
            && previous != r.webhook_id
        {
            bail!(
                "run {run} was delivered with webhook-id {previous} and then {}",
                r.webhook_id
            );
        }
        if let Some(other) = by_id.insert(&r.webhook_id, run)
            && other != run
        {
            bail!(
                "webhook-id {} is used by runs {other} and {run}",
                r.webhook_id
            );
        }
    }
    Ok(())
}

/// Every run portd lists, with its status and label.
async fn list_runs(api: &Api) -> Result<HashMap<String, Listed>> {
    let mut runs = HashMap::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = "/v1/actions/runs?limit=1000&version=v2".to_owned();
        if let Some(cursor) = &before {
            path.push_str("&before=");
            path.push_str(cursor);
        }
        let body = api.get(&path).await?.expect(200, "listing runs")?;
        for run in body["runs"].as_array().context("runs")? {
            let id = run["id"].as_str().context("a run id")?.to_owned();
            runs.insert(
                id,
                Listed {
                    status: run["status"].as_str().unwrap_or_default().to_owned(),
                    label: run["statusLabel"].as_str().map(str::to_owned),
                },
            );
        }
        match body["next"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return Ok(runs),
        }
    }
}

/// All log messages of a run, oldest first.
async fn run_logs(api: &Api, run: &str) -> Result<Vec<String>> {
    let mut messages = Vec::new();
    loop {
        let path = format!(
            "/v1/actions/runs/{run}/logs?limit=50&offset={}",
            messages.len()
        );
        let body = api.get(&path).await?.expect(200, "listing logs")?;
        let page = body["runLogs"].as_array().context("runLogs")?;
        messages.extend(
            page.iter()
                .map(|l| l["message"].as_str().unwrap_or_default().to_owned()),
        );
        if page.len() < 50 {
            return Ok(messages);
        }
    }
}

/// The body of the workload's execute requests for `key`.
pub fn execute_body(key: &str) -> Value {
    json!({ "properties": { "note": key } })
}

/// Executes the workload's action with an idempotency key; the run id (202 expected).
pub async fn execute(api: &Api, key: &str) -> Result<String> {
    let answer = api
        .send(
            Method::POST,
            &format!("/v1/actions/{ACTION}/runs"),
            Some(&execute_body(key)),
            &[("idempotency-key", key)],
        )
        .await
        .with_context(|| format!("replaying Idempotency-Key {key}"))?;
    let body = answer.expect(202, "executing with an Idempotency-Key")?;
    body["run"]["id"]
        .as_str()
        .map(str::to_owned)
        .context("the answer names no run")
}
