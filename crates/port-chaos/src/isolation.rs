//! Tenant isolation: one organization attacks a real `portd` while another keeps using
//! it, and the victim's latency, the attacker's answers and the process's health are
//! measured.
//!
//! Every attack of docs/reliability.md's isolation table is a test built on
//! [`Tenants::under_attack`]: the victim's usual latency is measured first (the
//! baseline), then the attack runs while the victim keeps probing, and
//! [`Isolation::assert_held`] checks that portd stayed alive and healthy, that no victim
//! request failed, and that the victim's latency stayed within [`LatencyBound`] of its
//! baseline. Attacks run one at a time (a process-wide lock), so their latencies are
//! not each other's noise.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

use crate::api::Api;
use crate::portd::{Portd, PortdSettings};

/// The victim organization's bootstrap credentials.
pub const VICTIM_CLIENT_ID: &str = "victim-client";
pub const VICTIM_CLIENT_SECRET: &str = "victim-secret-0123456789abcdefghijklmnopqrstuv";
/// The action the victim executes while probing (agent mode: nothing is sent anywhere).
pub const PROBE_ACTION: &str = "probe";

static SERIAL: LazyLock<Mutex<()>> = LazyLock::new(|| Mutex::new(()));

/// Holds the process-wide lock that keeps attacks (and their latency figures) apart.
pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// How `portd` is started for an attack.
#[derive(Debug, Clone, Default)]
pub struct TenantsOptions {
    /// `None`: SQLite in a temporary data directory.
    pub database_url: Option<String>,
    /// More environment variables for portd.
    pub env: Vec<(String, String)>,
    /// portd's open-files limit (`ulimit -n`); `None`: the test's own.
    pub open_files_limit: Option<u64>,
}

impl TenantsOptions {
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    #[must_use]
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    #[must_use]
    pub fn open_files_limit(mut self, limit: u64) -> Self {
        self.open_files_limit = Some(limit);
        self
    }
}

/// Credentials of an organization.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub org_id: String,
    pub client_id: String,
    pub client_secret: String,
}

/// A real portd with two organizations: the victim (bootstrapped) and the attacker
/// (created with `portd credentials create --org attacker`).
#[derive(Debug)]
pub struct Tenants {
    pub portd: Portd,
    pub settings: PortdSettings,
    pub victim: Api,
    pub attacker: Api,
    pub victim_credentials: Credentials,
    pub attacker_credentials: Credentials,
    dir: tempfile::TempDir,
}

impl Tenants {
    /// Starts portd and sets up both organizations and the victim's probe action.
    pub async fn start(options: TenantsOptions) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let settings = PortdSettings {
            binary: crate::portd::binary()?,
            data_dir: dir.path().join("data"),
            database_url: options.database_url.clone(),
            client_id: VICTIM_CLIENT_ID.to_owned(),
            client_secret: VICTIM_CLIENT_SECRET.to_owned(),
            log_filter: "warn".to_owned(),
            log_file: dir.path().join("portd.log"),
            env: options.env.clone(),
        };
        let mut portd = Portd::spawn_limited(&settings, options.open_files_limit)?;
        portd.ready(Duration::from_secs(60)).await?;
        let base = portd.base_url();
        let victim = Api::login(&base, VICTIM_CLIENT_ID, VICTIM_CLIENT_SECRET).await?;
        let victim_org = bootstrap_org_id(&settings)?;
        let attacker_credentials = create_organization(&settings, "attacker")?;
        let attacker = Api::login(
            &base,
            &attacker_credentials.client_id,
            &attacker_credentials.client_secret,
        )
        .await?;
        create_probe_action(&victim).await?;
        Ok(Self {
            portd,
            victim,
            attacker,
            victim_credentials: Credentials {
                org_id: victim_org,
                client_id: VICTIM_CLIENT_ID.to_owned(),
                client_secret: VICTIM_CLIENT_SECRET.to_owned(),
            },
            attacker_credentials,
            settings,
            dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.portd.base_url()
    }

    /// The temporary directory holding the data directory and portd's log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Measures the victim's baseline, then runs `attack` (given the attacker's API)
    /// while the victim keeps probing, and reports both.
    ///
    /// The victim probes for at least [`MIN_PROBE`] after the attack starts, and for as
    /// long as the attack lasts.
    pub async fn under_attack<F, Fut, T>(&mut self, name: &str, attack: F) -> Result<Isolation<T>>
    where
        F: FnOnce(Api) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let _serial = serial().await;
        let victim = self.victim.clone();
        // Warm up: the first requests pay for connection set-up and cold caches.
        probe_for(&victim, Duration::from_millis(300)).await?;
        let baseline = probe_for(&victim, BASELINE).await?;
        let started = Instant::now();
        let stop = StopFlag::default();
        let prober = {
            let victim = victim.clone();
            let stop = stop.clone();
            tokio::spawn(async move { probe_until(&victim, &stop).await })
        };
        let outcome = attack(self.attacker.clone()).await;
        let attack_time = started.elapsed();
        if attack_time < MIN_PROBE {
            tokio::time::sleep(MIN_PROBE - attack_time).await;
        }
        stop.set();
        let during = prober.await.context("the victim's prober panicked")??;
        let alive = self.portd.alive();
        let healthy = alive && health(&self.base_url()).await;
        let outcome = outcome.with_context(|| {
            format!(
                "the attack `{name}` failed; portd's log:\n{}",
                self.portd.log_tail(30)
            )
        })?;
        let isolation = Isolation {
            name: name.to_owned(),
            baseline,
            during,
            attack_time,
            alive,
            healthy,
            bound: LatencyBound::default(),
            log_tail: self.portd.log_tail(30),
            outcome,
        };
        crate::visible(&isolation.summary());
        Ok(isolation)
    }
}

/// How long the baseline is measured.
pub const BASELINE: Duration = Duration::from_millis(1500);
/// The shortest time the victim probes during an attack.
pub const MIN_PROBE: Duration = Duration::from_millis(1500);

/// How much slower the victim may get during an attack: its p95 may grow to
/// `factor × baseline p95 + slack`, and no request may take longer than `max`.
#[derive(Debug, Clone, Copy)]
pub struct LatencyBound {
    pub factor: f64,
    pub slack: Duration,
    pub max: Duration,
}

impl Default for LatencyBound {
    fn default() -> Self {
        // Debug builds on a 2-core machine, the attacker's own work competing for the
        // same cores: "usual latency" means the same order of magnitude, never seconds.
        Self {
            factor: 3.0,
            slack: Duration::from_millis(50),
            max: Duration::from_millis(1000),
        }
    }
}

/// The victim's latencies over a probe window.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// One entry per request, in milliseconds.
    pub samples_ms: Vec<f64>,
    /// Requests that failed (transport error or an unexpected status), described.
    pub failures: Vec<String>,
}

impl Latencies {
    pub fn count(&self) -> usize {
        self.samples_ms.len()
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 without samples.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.samples_ms.is_empty() {
            return 0.0;
        }
        let mut sorted = self.samples_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    pub fn max(&self) -> f64 {
        self.samples_ms.iter().copied().fold(0.0, f64::max)
    }
}

/// What one attack did to the victim and to portd.
#[derive(Debug)]
pub struct Isolation<T> {
    pub name: String,
    pub baseline: Latencies,
    pub during: Latencies,
    pub attack_time: Duration,
    /// The process was still running after the attack.
    pub alive: bool,
    /// `/healthz` answered 200 after the attack.
    pub healthy: bool,
    pub bound: LatencyBound,
    /// The end of portd's log, for failure messages.
    pub log_tail: String,
    /// What the attack returned (typically the statuses the attacker got).
    pub outcome: T,
}

impl<T> Isolation<T> {
    /// Uses another latency bound (say why where it is called).
    #[must_use]
    pub fn with_bound(mut self, bound: LatencyBound) -> Self {
        self.bound = bound;
        self
    }

    /// One line for CI logs: the victim's figures before and during the attack.
    pub fn summary(&self) -> String {
        format!(
            "isolation `{}`: attack {:.1} s; victim baseline p50 {:.1} ms p95 {:.1} ms ({} requests), \
             during p50 {:.1} ms p95 {:.1} ms max {:.1} ms ({} requests, {} failed); portd alive: {}, healthy: {}",
            self.name,
            self.attack_time.as_secs_f64(),
            self.baseline.quantile(0.5),
            self.baseline.quantile(0.95),
            self.baseline.count(),
            self.during.quantile(0.5),
            self.during.quantile(0.95),
            self.during.max(),
            self.during.count(),
            self.during.failures.len(),
            self.alive,
            self.healthy,
        )
    }

    /// portd alive and healthy, no victim request failed, and the victim's latency
    /// within the bound of its baseline.
    pub fn assert_held(&self) -> Result<()> {
        let summary = self.summary();
        if !self.alive || !self.healthy {
            bail!(
                "{summary}\nportd did not survive; its log:\n{}",
                self.log_tail
            );
        }
        if !self.during.failures.is_empty() {
            bail!(
                "{summary}\nvictim requests failed during the attack: {:?}",
                &self.during.failures[..self.during.failures.len().min(5)]
            );
        }
        if self.during.count() < 5 {
            bail!("{summary}\nthe victim could barely send requests during the attack");
        }
        let allowed = self.baseline.quantile(0.95) * self.bound.factor
            + self.bound.slack.as_secs_f64() * 1000.0;
        let p95 = self.during.quantile(0.95);
        if p95 > allowed {
            bail!("{summary}\nvictim p95 {p95:.1} ms is over the allowed {allowed:.1} ms");
        }
        let max = self.bound.max.as_secs_f64() * 1000.0;
        if self.during.max() > max {
            bail!(
                "{summary}\na victim request took {:.1} ms (allowed {max:.1} ms)",
                self.during.max()
            );
        }
        Ok(())
    }
}

/// Tells the victim's prober that the attack is over.
#[derive(Debug, Clone, Default)]
struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One probe round: execute the probe action, read the run back, list runs.
async fn probe_once(victim: &Api, latencies: &mut Latencies) {
    let body = json!({ "properties": { "note": "probe" } });
    let path = format!("/v1/actions/{PROBE_ACTION}/runs");
    let executed = timed(latencies, "execute", 202, victim.post(&path, &body)).await;
    if let Some(run_id) = executed.as_ref().and_then(|b| b["run"]["id"].as_str()) {
        let path = format!("/v1/actions/runs/{run_id}");
        timed(latencies, "get run", 200, victim.get(&path)).await;
    }
    timed(
        latencies,
        "list runs",
        200,
        victim.get("/v1/actions/runs?limit=5"),
    )
    .await;
}

/// Awaits one request, records its latency, and returns its body if it had `expected`.
async fn timed(
    latencies: &mut Latencies,
    what: &str,
    expected: u16,
    request: impl Future<Output = Result<crate::api::Answer>>,
) -> Option<Value> {
    let started = Instant::now();
    let answer = request.await;
    latencies
        .samples_ms
        .push(started.elapsed().as_secs_f64() * 1000.0);
    match answer {
        Ok(answer) if answer.status == expected => Some(answer.body),
        Ok(answer) => {
            latencies
                .failures
                .push(format!("{what}: {} {}", answer.status, answer.body));
            None
        }
        Err(error) => {
            latencies.failures.push(format!("{what}: {error:#}"));
            None
        }
    }
}

async fn probe_for(victim: &Api, duration: Duration) -> Result<Latencies> {
    let mut latencies = Latencies::default();
    let started = Instant::now();
    while started.elapsed() < duration {
        probe_once(victim, &mut latencies).await;
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    Ok(latencies)
}

async fn probe_until(victim: &Api, stop: &StopFlag) -> Result<Latencies> {
    let mut latencies = Latencies::default();
    while !stop.is_set() {
        probe_once(victim, &mut latencies).await;
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    Ok(latencies)
}

/// Pause between probe rounds: the victim is an ordinary user, not a load generator.
const PROBE_PAUSE: Duration = Duration::from_millis(20);

async fn health(base_url: &str) -> bool {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return false;
    };
    http.get(format!("{base_url}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The bootstrap organization's id, from `<data dir>/credentials.json`.
fn bootstrap_org_id(settings: &PortdSettings) -> Result<String> {
    let path = settings.data_dir.join("credentials.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: Value = serde_json::from_str(&text)?;
    file["orgId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{} has no orgId", path.display()))
}

/// `portd credentials create --org NAME` against the running portd's data.
pub fn create_organization(settings: &PortdSettings, name: &str) -> Result<Credentials> {
    let mut command = Command::new(&settings.binary);
    command
        .args(["credentials", "create", "--org", name])
        .env("PORTD_DATA_DIR", &settings.data_dir)
        .env("PORTD_LOG", "warn")
        .env_remove("PORTD_BOOTSTRAP_CLIENT_ID")
        .env_remove("PORTD_BOOTSTRAP_CLIENT_SECRET");
    match &settings.database_url {
        Some(url) => command.env("PORTD_DATABASE_URL", url),
        None => command.env_remove("PORTD_DATABASE_URL"),
    };
    let output = command
        .output()
        .context("running portd credentials create")?;
    if !output.status.success() {
        bail!(
            "portd credentials create failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let created: Value =
        serde_json::from_slice(&output.stdout).context("reading the created credentials")?;
    let field = |name: &str| -> Result<String> {
        created[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the created credentials have no {name}: {created}"))
    };
    Ok(Credentials {
        org_id: field("orgId")?,
        client_id: field("clientId")?,
        client_secret: field("clientSecret")?,
    })
}

/// A self-service CREATE action taking any inputs, with this invocation method.
pub fn action(identifier: &str, invocation_method: Value) -> Value {
    json!({
        "identifier": identifier,
        "title": identifier,
        "trigger": {
            "type": "self-service",
            "operation": "CREATE",
            "userInputs": { "properties": { "note": { "type": "string" } } }
        },
        "invocationMethod": invocation_method
    })
}

/// Executes an action with no inputs; the answer whatever its status.
pub async fn execute(api: &Api, identifier: &str) -> Result<crate::api::Answer> {
    api.post(
        &format!("/v1/actions/{identifier}/runs"),
        &json!({ "properties": {} }),
    )
    .await
}

async fn create_probe_action(victim: &Api) -> Result<()> {
    let action = action(
        PROBE_ACTION,
        json!({
            "type": "WEBHOOK",
            "url": "http://127.0.0.1:9/probe",
            "agent": true,
            "body": { "note": "{{ .inputs.note }}", "run": "{{ .run.id }}" }
        }),
    );
    victim
        .post("/v1/actions", &action)
        .await?
        .expect(201, "creating the probe action")?;
    Ok(())
}
