//! `port-bench run`: the phases, in order, against servers started for this run.
//!
//! 1. **Throughput** (closed loop, `connections` keep-alive connections): run creation
//!    on an agent-mode action (no HTTP delivery) and log appends spread over
//!    `log_runs` runs, each measured right after the same route of the bare axum
//!    baseline, so that the ratio compares neighbours in time.
//! 2. **Webhook** (open loop, one step per rate of `webhook_steps`, each on a fresh
//!    portd): runs of a webhook action pointing at the loopback receiver; latency =
//!    receipt at the receiver − send time of the execute request.
//! 3. **Lifecycle** (`lifecycles_in_flight` runs in flight): execute → delivery → the
//!    receiver appends 10 log lines and sets SUCCESS through the API → ended.
//! 4. **Scale** (a second, fresh portd): seed runs and log lines through `port_store`
//!    up to each step of `scale_runs`; at each step, GET-run and filtered-list latency
//!    (open loop) and the process's resident memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::child::{Child, PortdSetup};
use crate::http::{Call, Conn};
use crate::load::{self, MakeCall, Plan, Throughput};
use crate::machine::{self, Memory};
use crate::protocol::SeedRequest;
use crate::receiver::{self, Receiver};
use crate::serve::Kind;
use crate::settings::{Phase, Settings, WebhookStep};
use crate::stats::{Latency, Summary};
use port_store::ScratchSchema;

/// The agent-mode action of the throughput phase.
const AGENT_ACTION: &str = "bench_agent";
const HOOK_ACTION: &str = "bench_hook";
const LIFECYCLE_ACTION: &str = "bench_lifecycle";
/// Actions the scale phase spreads its runs over; the list filters on one of them.
const SCALE_ACTIONS: usize = 10;

const EXECUTE_BODY: &str = r#"{"properties":{"name":"svc-bench","region":"eu-west-1"}}"#;
const LOG_BODY: &str = r#"{"message":"step 3 of 10: terraform apply finished for svc-bench in eu-west-1 (3 added, 0 changed, 0 destroyed)"}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// portd's throughput beside the baseline's, on one route.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub portd: Throughput,
    pub baseline: Throughput,
    /// Median of portd over median of the baseline.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookReport {
    pub rate: f64,
    /// Connections of the open loop.
    pub connections: usize,
    pub sent: usize,
    pub accepted: usize,
    pub received: usize,
    pub missing: usize,
    pub duplicates: u64,
    pub unsigned: u64,
    /// Invocations without a readable run id.
    pub unreadable: u64,
    /// The latest any execute request left after its scheduled time.
    pub max_send_lag_ms: f64,
    pub windows: Vec<Option<Latency>>,
    pub p50_ms: Option<Summary>,
    pub p99_ms: Option<Summary>,
    pub all: Option<Latency>,
    /// The breakdown: how long the execute requests took (sent → 202 read)…
    pub execute: Option<Latency>,
    /// …and how long after the 202 was read the webhook arrived (negative: before).
    pub after_answer: Option<Latency>,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LifecycleReport {
    pub in_flight: usize,
    /// Lifecycles ended per second, per window.
    pub rate: Option<Summary>,
    pub windows: Vec<f64>,
    /// Execute sent → final status accepted.
    pub latency: Option<Latency>,
    pub ended: usize,
    pub execute_errors: u64,
    pub follow_up_errors: u64,
    pub first_error: Option<String>,
    /// The status a GET shows for one ended run (SUCCESS expected).
    pub checked_status: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadLatency {
    pub rate: f64,
    pub windows: Vec<Option<Latency>>,
    pub p50_ms: Option<Summary>,
    pub p99_ms: Option<Summary>,
    pub all: Option<Latency>,
    pub errors: usize,
    pub max_send_lag_ms: f64,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleStep {
    pub target_runs: u64,
    pub runs_stored: u64,
    pub logs_stored: u64,
    pub seed_secs: f64,
    pub seed_runs_per_sec: f64,
    pub seed_complete: bool,
    pub memory_after_idle: Option<Memory>,
    pub memory_after_reads: Option<Memory>,
    pub get: ReadLatency,
    pub list: ReadLatency,
    /// The baseline's `GET /v1/actions/runs/{id}` at the same rate, right before: the
    /// latency floor of a read on this machine at this moment.
    pub baseline_get: ReadLatency,
    pub db_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub memory_at_start: Option<Memory>,
    pub steps: Vec<ScaleStep>,
    /// Memory after the last step's reads minus after the first step's (the warm
    /// figure), MiB.
    pub rss_growth_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    pub backend: Backend,
    pub create: Option<Compared>,
    pub logs: Option<Compared>,
    /// The first (lowest-rate) step of `webhooks`; kept for readers of older JSON lines.
    pub webhook: Option<WebhookReport>,
    /// Every step of the webhook latency phase, lowest rate first.
    pub webhooks: Vec<WebhookReport>,
    pub lifecycle: Option<LifecycleReport>,
    /// Each load phase's portd (a fresh one per phase): its memory at the end.
    pub memory_after_load: Vec<PhaseMemory>,
    pub scale: Option<ScaleReport>,
}

/// Where a run keeps its files.
pub struct Workspace {
    pub dir: PathBuf,
    counter: std::sync::atomic::AtomicU32,
}

impl Workspace {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            counter: std::sync::atomic::AtomicU32::new(0),
        }
    }

    fn next(&self, name: &str) -> PathBuf {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir.join(format!("{n:02}-{name}"))
    }
}

fn say(line: &str) {
    eprintln!("[port-bench] {line}");
}

/// A random alphanumeric string (bootstrap credentials of a benchmark instance).
fn random_string(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}

/// A running portd under test with its credentials and (PostgreSQL) schema.
struct Portd {
    child: Child,
    token: String,
    org_id: String,
    client: reqwest::Client,
    schema: Option<ScratchSchema>,
    data_dir: PathBuf,
}

impl Portd {
    async fn start(
        settings: &Settings,
        backend: Backend,
        work: &Workspace,
        name: &str,
    ) -> Result<Self> {
        let data_dir = work.next(&format!("{name}-{}", backend.name()));
        std::fs::create_dir_all(&data_dir)?;
        #[cfg(unix)]
        {
            // portd refuses an open data directory holding files of others' (the log).
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                crate::pg::create_schema(
                    settings
                        .database_url
                        .as_deref()
                        .context("no database URL")?,
                )
                .await?,
            ),
        };
        let setup = PortdSetup {
            data_dir: data_dir.clone(),
            database_url: schema.as_ref().map(ScratchSchema::url),
            client_id: random_string(32),
            client_secret: random_string(64),
            log_filter: settings.portd_log.clone(),
        };
        let child = Child::spawn(Kind::Portd, Some(&setup), &data_dir.join("portd.log")).await?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let response: Value = client
            .post(format!("http://{}/v1/auth/access_token", child.ready.addr))
            .json(&json!({ "clientId": setup.client_id, "clientSecret": setup.client_secret }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = response["accessToken"]
            .as_str()
            .context("no accessToken")?
            .to_owned();
        let org_id = child.ready.org_id.clone().context("portd named no org")?;
        Ok(Self {
            child,
            token,
            org_id,
            client,
            schema,
            data_dir,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.child.ready.addr
    }

    fn api_url(&self) -> String {
        format!("http://{}/v1", self.addr())
    }

    async fn create_action(&self, identifier: &str, url: &str, agent: bool) -> Result<()> {
        let body = json!({
            "identifier": identifier,
            "title": format!("Bench {identifier}"),
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": {
                    "properties": {
                        "name": { "type": "string" },
                        "region": { "type": "string" }
                    },
                    "required": ["name"]
                }
            },
            "invocationMethod": { "type": "WEBHOOK", "url": url, "agent": agent }
        });
        let response = self
            .client
            .post(format!("{}/actions", self.api_url()))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "creating action {identifier}: {status} {}",
                response.text().await?
            );
        }
        Ok(())
    }

    async fn get_run(&self, id: &str) -> Result<Value> {
        Ok(self
            .client
            .get(format!("{}/actions/runs/{id}", self.api_url()))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    fn db_bytes(&self) -> u64 {
        machine::dir_size(&self.data_dir)
    }

    async fn stop(self) -> Result<()> {
        let stopped = self.child.stop().await;
        if let Some(schema) = self.schema {
            schema.drop_now().await?;
        }
        stopped
    }
}

fn execute_call(action: &str) -> MakeCall {
    let path = format!("/v1/actions/{action}/runs");
    let body = Bytes::from_static(EXECUTE_BODY.as_bytes());
    Arc::new(move |_| Call::post(path.clone(), body.clone()))
}

fn log_call(runs: Arc<Vec<String>>) -> MakeCall {
    let body = Bytes::from_static(LOG_BODY.as_bytes());
    Arc::new(move |i| {
        let run = &runs[usize::try_from(i).unwrap_or(0) % runs.len()];
        Call::post(format!("/v1/actions/runs/{run}/logs"), body.clone())
    })
}

fn run_id(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.pointer("/run/id")?.as_str().map(str::to_owned)
}

/// Creates `count` runs of `action` over `connections` connections; their ids.
async fn create_runs(
    addr: SocketAddr,
    token: &str,
    action: &str,
    count: usize,
    connections: usize,
) -> Result<Vec<String>> {
    let call = execute_call(action)(0);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.min(count).max(1) {
        let mut conn = Conn::new(addr, Some(token))?;
        let (call, next) = (call.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                let (status, body) = conn.send(&call).await?;
                if status != StatusCode::ACCEPTED {
                    bail!("execute: {status} {}", String::from_utf8_lossy(&body));
                }
                ids.push(run_id(&body).context("no run id in the answer")?);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(count);
    for task in tasks {
        ids.extend(task.await??);
    }
    Ok(ids)
}

async fn compare(
    settings: &Settings,
    baseline: SocketAddr,
    portd: &Portd,
    what: &str,
    expect: StatusCode,
    make: MakeCall,
) -> Result<Compared> {
    say(&format!(
        "{what}: baseline, {} connections, {:.0} s",
        settings.connections,
        settings.plan.total().as_secs_f64()
    ));
    let base = load::closed_loop(
        baseline,
        None,
        settings.connections,
        settings.plan,
        expect,
        make.clone(),
    )
    .await?;
    say(&format!(
        "{what}: baseline {:.0}/s; now portd",
        base.rate.median
    ));
    let measured = load::closed_loop(
        portd.addr(),
        Some(&portd.token),
        settings.connections,
        settings.plan,
        expect,
        make,
    )
    .await?;
    say(&format!(
        "{what}: portd {:.0}/s (errors {}{})",
        measured.rate.median,
        measured.errors,
        measured
            .first_error
            .as_deref()
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    ));
    let ratio = if base.rate.median > 0.0 {
        measured.rate.median / base.rate.median
    } else {
        0.0
    };
    Ok(Compared {
        portd: measured,
        baseline: base,
        ratio,
    })
}

/// Window of each sample, by its scheduled offset from the loop's start.
fn windows_of<T>(
    plan: &Plan,
    start: Instant,
    items: impl IntoIterator<Item = (Instant, T)>,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..plan.repeats).map(|_| Vec::new()).collect();
    for (at, item) in items {
        if let Some(index) = plan.window_of(at.saturating_duration_since(start)) {
            out[index].push(item);
        }
    }
    out
}

fn summarize_windows(windows: &[Option<Latency>]) -> (Option<Summary>, Option<Summary>) {
    let p50: Vec<f64> = windows.iter().flatten().map(|l| l.p50_ms).collect();
    let p99: Vec<f64> = windows.iter().flatten().map(|l| l.p99_ms).collect();
    (Summary::of(&p50), Summary::of(&p99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn webhook(
    settings: &Settings,
    step: WebhookStep,
    portd: &Portd,
    receiver: &Receiver,
) -> Result<WebhookReport> {
    let plan = settings.plan;
    let WebhookStep { rate, connections } = step;
    let count = (plan.total().as_secs_f64() * rate).round() as u64;
    say(&format!(
        "webhook: {count} runs at {rate:.0}/s (open loop, {connections} connections), receiver at {}",
        receiver.addr
    ));
    receiver.take();
    let (start, samples) = load::open_loop(
        portd.addr(),
        Some(&portd.token),
        rate,
        count,
        connections,
        execute_call(HOOK_ACTION),
    )
    .await?;
    let first_error = load::first_unexpected(&samples, StatusCode::ACCEPTED);
    let sent: Vec<(Instant, Instant, Instant, String)> = samples
        .iter()
        .filter(|s| s.status == Some(StatusCode::ACCEPTED))
        .filter_map(|s| Some((s.scheduled, s.sent, s.done, run_id(&s.body)?)))
        .collect();
    receiver.wait_for(sent.len(), Duration::from_secs(15)).await;
    let seen = receiver.take();
    let mut all = Vec::new();
    let mut after_answer = Vec::new();
    let mut missing = 0;
    let per_window = windows_of(
        &plan,
        start,
        sent.iter().filter_map(|(scheduled, sent_at, done, id)| {
            let arrived = seen.arrivals.get(id);
            if arrived.is_none() {
                missing += 1;
            }
            let arrived = *arrived?;
            let latency = ms(arrived.saturating_duration_since(*sent_at));
            all.push(latency);
            // Negative when the webhook arrived before the 202 was read.
            after_answer.push(
                ms(arrived.saturating_duration_since(*done))
                    - ms(done.saturating_duration_since(arrived)),
            );
            Some((*scheduled, latency))
        }),
    );
    let execute = Latency::of(
        sent.iter()
            .map(|(_, sent_at, done, _)| ms(done.saturating_duration_since(*sent_at)))
            .collect(),
    );
    let windows: Vec<Option<Latency>> = per_window.into_iter().map(Latency::of).collect();
    let (p50_ms, p99_ms) = summarize_windows(&windows);
    let max_send_lag_ms = samples.iter().map(|s| ms(s.lag())).fold(0.0, f64::max);
    let report = WebhookReport {
        rate,
        connections,
        sent: samples.len(),
        accepted: sent.len(),
        received: seen.arrivals.len(),
        missing,
        duplicates: seen.duplicates,
        unsigned: seen.unsigned,
        unreadable: seen.unreadable,
        max_send_lag_ms,
        windows,
        p50_ms,
        p99_ms,
        all: Latency::of(all),
        execute,
        after_answer: Latency::of(after_answer),
        first_error,
    };
    say(&format!(
        "webhook at {rate:.0}/s: p50 {:.2} ms, p99 {:.2} ms, missing {}",
        report.p50_ms.map_or(f64::NAN, |s| s.median),
        report.p99_ms.map_or(f64::NAN, |s| s.median),
        report.missing
    ));
    Ok(report)
}

async fn lifecycle(
    settings: &Settings,
    portd: &Portd,
    receiver: &Receiver,
) -> Result<LifecycleReport> {
    let plan = settings.plan;
    let in_flight = settings.lifecycles_in_flight;
    say(&format!(
        "lifecycle: {in_flight} in flight for {:.0} s",
        plan.total().as_secs_f64()
    ));
    receiver.take();
    let permits = Arc::new(Semaphore::new(in_flight));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    receiver.set_backend(receiver::Backend {
        client: client.clone(),
        api_url: portd.api_url(),
        token: portd.token.clone(),
        permits: permits.clone(),
    });
    let start = Instant::now();
    let end = start + plan.total();
    let url = format!("{}/actions/{LIFECYCLE_ACTION}/runs", portd.api_url());
    let sent: Arc<std::sync::Mutex<Vec<(String, Instant)>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    while Instant::now() < end {
        let Ok(Ok(permit)) =
            tokio::time::timeout(end - Instant::now(), permits.clone().acquire_owned()).await
        else {
            break;
        };
        permit.forget();
        let (client, url, token) = (client.clone(), url.clone(), portd.token.clone());
        let (sent, errors, first_error, permits) = (
            sent.clone(),
            errors.clone(),
            first_error.clone(),
            permits.clone(),
        );
        tokio::spawn(async move {
            let at = Instant::now();
            let outcome = async {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(EXECUTE_BODY)
                    .send()
                    .await?;
                let status = response.status();
                let body = response.bytes().await?;
                if status != StatusCode::ACCEPTED {
                    bail!("execute: {status} {}", String::from_utf8_lossy(&body));
                }
                run_id(&body).context("no run id")
            }
            .await;
            match outcome {
                Ok(id) => sent.lock().expect("not poisoned").push((id, at)),
                Err(e) => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    first_error
                        .lock()
                        .expect("not poisoned")
                        .get_or_insert_with(|| format!("{e:#}"));
                    // No delivery will come back for it.
                    permits.add_permits(1);
                }
            }
        });
    }
    // Let the runs in flight finish (their ends fall after the last window anyway).
    let until = Instant::now() + Duration::from_secs_f64(settings.drain_secs);
    while permits.available_permits() < in_flight && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = receiver.take();
    let sent = std::mem::take(&mut *sent.lock().expect("not poisoned"));
    let per_window = windows_of(&plan, start, seen.ended.values().map(|at| (*at, ())));
    let windows: Vec<f64> = per_window
        .iter()
        .map(|w| w.len() as f64 / plan.window.as_secs_f64())
        .collect();
    let latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| Some(ms(seen.ended.get(id)?.saturating_duration_since(*at))))
        .collect();
    let checked_status = match seen.ended.keys().next() {
        Some(id) => portd
            .get_run(id)
            .await
            .ok()
            .and_then(|v| v.pointer("/run/status")?.as_str().map(str::to_owned)),
        None => None,
    };
    let first_error = first_error
        .lock()
        .expect("not poisoned")
        .take()
        .or(seen.first_error);
    let report = LifecycleReport {
        in_flight,
        rate: Summary::of(&windows),
        windows,
        latency: Latency::of(latencies),
        ended: seen.ended.len(),
        execute_errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        follow_up_errors: seen.follow_up_errors,
        first_error,
        checked_status,
    };
    say(&format!(
        "lifecycle: {:.0}/s, status of one: {:?}",
        report.rate.map_or(0.0, |s| s.median),
        report.checked_status
    ));
    Ok(report)
}

/// What a server's memory was when a phase ended.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseMemory {
    pub phase: Phase,
    /// The phase and its step, e.g. `webhook at 1000/s`.
    pub label: String,
    pub memory: Option<Memory>,
}

/// Runs `phase` on a fresh portd (with the three actions, pointing at a fresh
/// receiver), so that no phase inherits another's backlog; stops it afterwards.
async fn on_fresh_portd<T>(
    settings: &Settings,
    backend: Backend,
    work: &Workspace,
    (phase, label): (Phase, String),
    memories: &mut Vec<PhaseMemory>,
    body: impl AsyncFnOnce(&Portd, &Receiver) -> Result<T>,
) -> Result<T> {
    let receiver = Receiver::start().await?;
    let portd = Portd::start(settings, backend, work, phase.name()).await?;
    let outcome = async {
        portd
            .create_action(AGENT_ACTION, "http://127.0.0.1:9/agent", true)
            .await?;
        portd
            .create_action(HOOK_ACTION, &receiver.url("/hook"), false)
            .await?;
        portd
            .create_action(LIFECYCLE_ACTION, &receiver.url("/lifecycle"), false)
            .await?;
        body(&portd, &receiver).await
    }
    .await;
    memories.push(PhaseMemory {
        phase,
        label,
        memory: portd.child.memory(),
    });
    let stopped = portd.stop().await;
    let value = outcome?;
    stopped?;
    Ok(value)
}

async fn throughput(
    settings: &Settings,
    baseline: SocketAddr,
    portd: &Portd,
) -> Result<(Compared, Compared)> {
    let create = compare(
        settings,
        baseline,
        portd,
        "run creation",
        StatusCode::ACCEPTED,
        execute_call(AGENT_ACTION),
    )
    .await?;
    let runs = create_runs(
        portd.addr(),
        &portd.token,
        AGENT_ACTION,
        settings.log_runs,
        settings.connections,
    )
    .await?;
    let logs = compare(
        settings,
        baseline,
        portd,
        "log appends",
        StatusCode::CREATED,
        log_call(Arc::new(runs)),
    )
    .await?;
    Ok((create, logs))
}

async fn read_latency(
    settings: &Settings,
    (addr, token): (SocketAddr, Option<&str>),
    what: &str,
    make: MakeCall,
) -> Result<ReadLatency> {
    let plan = settings.read_plan;
    let rate = settings.read_rate;
    let count = (plan.total().as_secs_f64() * rate).round() as u64;
    let (start, samples) =
        load::open_loop(addr, token, rate, count, settings.read_connections, make).await?;
    let first_error = load::first_unexpected(&samples, StatusCode::OK);
    let ok: Vec<_> = samples
        .iter()
        .filter(|s| s.status == Some(StatusCode::OK))
        .collect();
    let per_window = windows_of(
        &plan,
        start,
        ok.iter()
            .map(|s| (s.scheduled, ms(s.done.saturating_duration_since(s.sent)))),
    );
    let windows: Vec<Option<Latency>> = per_window.into_iter().map(Latency::of).collect();
    let (p50_ms, p99_ms) = summarize_windows(&windows);
    let report = ReadLatency {
        rate,
        windows,
        p50_ms,
        p99_ms,
        all: Latency::of(
            ok.iter()
                .map(|s| ms(s.done.saturating_duration_since(s.sent)))
                .collect(),
        ),
        errors: samples.len() - ok.len(),
        max_send_lag_ms: samples.iter().map(|s| ms(s.lag())).fold(0.0, f64::max),
        first_error,
    };
    say(&format!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, errors {}",
        report.p50_ms.map_or(f64::NAN, |s| s.median),
        report.p99_ms.map_or(f64::NAN, |s| s.median),
        report.errors
    ));
    Ok(report)
}

/// Spreads `i` over `0..len` without a pattern the database could predict.
fn scatter(i: u64, len: usize) -> usize {
    let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    usize::try_from(mixed % len.max(1) as u64).unwrap_or(0)
}

async fn scale_phase(
    settings: &Settings,
    backend: Backend,
    baseline: SocketAddr,
    work: &Workspace,
) -> Result<ScaleReport> {
    let mut portd = Portd::start(settings, backend, work, "scale").await?;
    let outcome = scale_steps(settings, &mut portd, baseline).await;
    let stopped = portd.stop().await;
    let report = outcome?;
    stopped?;
    Ok(report)
}

async fn scale_steps(
    settings: &Settings,
    portd: &mut Portd,
    baseline: SocketAddr,
) -> Result<ScaleReport> {
    let actions: Vec<String> = (0..SCALE_ACTIONS).map(|i| format!("bench_s{i}")).collect();
    for action in &actions {
        portd
            .create_action(action, "http://127.0.0.1:9/agent", true)
            .await?;
    }
    let template = create_runs(portd.addr(), &portd.token, &actions[0], 1, 1).await?;
    let memory_at_start = portd.child.memory();
    let last = settings.scale_runs.last().copied().unwrap_or(1);
    let mut stored_runs = 1u64;
    let mut stored_logs = 0u64;
    let mut sample: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    for &target in &settings.scale_runs {
        let runs = target.saturating_sub(stored_runs);
        let logs = (settings.scale_logs as f64 * target as f64 / last as f64) as u64;
        let logs = logs.saturating_sub(stored_logs);
        say(&format!(
            "scale: seeding {runs} runs and {logs} log lines (budget {:.0} s)",
            settings.seed_budget_secs
        ));
        let seeded = portd
            .child
            .seed(
                SeedRequest {
                    org_id: portd.org_id.clone(),
                    template_run: template[0].clone(),
                    actions: actions.clone(),
                    runs,
                    logs,
                    logs_per_run: settings.logs_per_run,
                    budget_secs: settings.seed_budget_secs,
                    concurrency: if portd.schema.is_some() { 16 } else { 4 },
                    sample: 2000,
                },
                Duration::from_secs_f64(settings.seed_budget_secs + 120.0),
            )
            .await?;
        stored_runs += seeded.runs;
        stored_logs += seeded.logs;
        say(&format!(
            "scale: {} runs, {} logs stored ({:.0} runs/s seeding{})",
            stored_runs,
            stored_logs,
            seeded.runs as f64 / seeded.secs.max(1e-9),
            if seeded.complete {
                ""
            } else {
                "; budget ran out"
            }
        ));
        // Keep the sample spread over every run stored so far.
        sample.extend(seeded.sample);
        tokio::time::sleep(Duration::from_secs_f64(settings.idle_secs)).await;
        let memory_after_idle = portd.child.memory();
        let ids = Arc::new(sample.clone());
        let get_call: MakeCall = Arc::new(move |i| {
            Call::get(format!("/v1/actions/runs/{}", ids[scatter(i, ids.len())]))
        });
        let baseline_get =
            read_latency(settings, (baseline, None), "baseline GET", get_call.clone()).await?;
        let portd_target = (portd.addr(), Some(portd.token.as_str()));
        let get = read_latency(settings, portd_target, "GET run", get_call).await?;
        let filter = actions.clone();
        let list = read_latency(
            settings,
            portd_target,
            "filtered list",
            Arc::new(move |i| {
                Call::get(format!(
                    "/v1/actions/runs?action={}&limit=20",
                    filter[usize::try_from(i).unwrap_or(0) % filter.len()]
                ))
            }),
        )
        .await?;
        let db_bytes = match &portd.schema {
            Some(schema) => match settings.database_url.as_deref() {
                Some(base_url) => crate::pg::size(base_url, schema).await.ok(),
                None => None,
            },
            None => Some(portd.db_bytes()),
        };
        steps.push(ScaleStep {
            target_runs: target,
            runs_stored: stored_runs,
            logs_stored: stored_logs,
            seed_secs: seeded.secs,
            seed_runs_per_sec: seeded.runs as f64 / seeded.secs.max(1e-9),
            seed_complete: seeded.complete,
            memory_after_idle,
            memory_after_reads: portd.child.memory(),
            get,
            list,
            baseline_get,
            db_bytes,
        });
    }
    let rss = |step: Option<&ScaleStep>| step?.memory_after_reads.map(|m| m.rss_mib());
    let rss_growth_mib = match (rss(steps.first()), rss(steps.last())) {
        (Some(first), Some(last)) if steps.len() > 1 => Some(last - first),
        _ => None,
    };
    Ok(ScaleReport {
        memory_at_start,
        steps,
        rss_growth_mib,
    })
}

/// Every phase the settings ask for, on every backend; the baseline runs for the
/// whole time, idle except while it is measured.
pub async fn run(settings: &Settings, work: &Workspace) -> Result<Vec<BackendReport>> {
    let baseline = Child::spawn(Kind::Baseline, None, &work.next("baseline.log")).await?;
    let mut backends = Vec::new();
    if settings.sqlite {
        backends.push(Backend::Sqlite);
    }
    if settings.postgres {
        backends.push(Backend::Postgres);
    }
    let mut reports = Vec::new();
    let outcome = async {
        for backend in backends {
            say(&format!("== portd on {}", backend.name()));
            let mut report = BackendReport {
                backend,
                create: None,
                logs: None,
                webhook: None,
                webhooks: Vec::new(),
                lifecycle: None,
                memory_after_load: Vec::new(),
                scale: None,
            };
            let mut memories = Vec::new();
            if settings.runs(Phase::Throughput) {
                let addr = baseline.ready.addr;
                let (create, logs) = on_fresh_portd(
                    settings,
                    backend,
                    work,
                    (Phase::Throughput, Phase::Throughput.name().to_owned()),
                    &mut memories,
                    async |portd, _| throughput(settings, addr, portd).await,
                )
                .await?;
                report.create = Some(create);
                report.logs = Some(logs);
            }
            if settings.runs(Phase::Webhook) {
                // A fresh portd per rate too: the faster step must not inherit the
                // slower one's backlog (nor the other way round).
                for &step in &settings.webhook_steps {
                    report.webhooks.push(
                        on_fresh_portd(
                            settings,
                            backend,
                            work,
                            (Phase::Webhook, format!("webhook at {:.0}/s", step.rate)),
                            &mut memories,
                            async |portd, receiver| webhook(settings, step, portd, receiver).await,
                        )
                        .await?,
                    );
                }
                report.webhook = report.webhooks.first().cloned();
            }
            if settings.runs(Phase::Lifecycle) {
                report.lifecycle = Some(
                    on_fresh_portd(
                        settings,
                        backend,
                        work,
                        (Phase::Lifecycle, Phase::Lifecycle.name().to_owned()),
                        &mut memories,
                        async |portd, receiver| lifecycle(settings, portd, receiver).await,
                    )
                    .await?,
                );
            }
            report.memory_after_load = memories;
            if settings.runs(Phase::Scale) {
                report.scale =
                    Some(scale_phase(settings, backend, baseline.ready.addr, work).await?);
            }
            reports.push(report);
        }
        anyhow::Ok(())
    }
    .await;
    let stopped = baseline.stop().await;
    outcome?;
    stopped?;
    Ok(reports)
}

/// A directory for this run's databases and logs, removed afterwards unless kept.
pub fn workspace_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("port-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn remove_workspace(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatter_stays_in_range_and_spreads() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            let index = scatter(i, 100);
            assert!(index < 100);
            seen.insert(index);
        }
        assert!(seen.len() > 90, "{}", seen.len());
        assert_eq!(scatter(5, 0), 0);
    }

    #[test]
    fn run_ids_are_read_from_execute_answers() {
        assert_eq!(
            run_id(br#"{"ok":true,"run":{"id":"r_x"}}"#),
            Some("r_x".into())
        );
        assert_eq!(run_id(b"{}"), None);
    }
}
