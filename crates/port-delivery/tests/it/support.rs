//! Test fixtures: a scripted webhook receiver on loopback, a clock that can jump
//! forward, and a harness with a real store, the services, a hub and the worker.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use port_core::action::{Action, ActionDefinition, ActionMeta};
use port_core::ports::{
    ClientSecret, Clock, Credential, Delivery, DeliveryAttempt, DeliveryState, Entropy,
    IdGenerator, Organization, Store,
};
use port_core::run::Run;
use port_core::run_log::RunLog;
use port_core::service::{AllowAllDestinations, Caller, ExecuteRequest, Services};
use port_core::testing::{MemoryStore, SeqEntropy};
use port_core::{RunId, Timestamp};
use port_delivery::{CancellationToken, DeliveryConfig, DeliveryWorker, Hub, Transports};
use port_store::{StoreOptions, Synchronous};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub const SECRET: &str = "test-client-secret-0123456789abcdef";
pub const CLIENT_ID: &str = "test-client";

/// How long waits for something expected last at most.
pub const PATIENCE: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// Clock

/// The system clock plus an offset that tests move forward, so that signing
/// timestamps and timeouts can be tested without waiting.
#[derive(Debug, Default)]
pub struct SkewClock {
    offset_ms: AtomicI64,
}

impl SkewClock {
    pub fn jump(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for SkewClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        Timestamp::from_unix_millis(ms + self.offset_ms.load(Ordering::SeqCst))
    }
}

// ---------------------------------------------------------------------------------------
// Receiver

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).context("the body is not JSON")
    }
}

type Hook = Box<dyn Fn() + Send + Sync>;

struct ReceiverState {
    /// Answers in order; the last one repeats.
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    on_request: Option<Hook>,
}

/// A webhook receiver on 127.0.0.1 that records raw requests and answers from a script.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: JoinHandle<()>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if let Some(hook) = &state.on_request {
        hook();
    }
    lock(&state.received).push(Received {
        method,
        uri,
        headers,
        body,
        at: Instant::now(),
    });
    state.arrived.notify_waiters();
    let reply = {
        let mut script = lock(&state.script);
        if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().cloned()
        }
    }
    .unwrap_or_else(|| Reply::status(200));
    tokio::time::sleep(reply.delay).await;
    let mut headers = HeaderMap::new();
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers,
        reply.body,
    )
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Result<Self> {
        Self::start_with_hook(script, None).await
    }

    /// Listens on `addr` (say `127.0.0.2:PORT`) instead of a free port of 127.0.0.1.
    pub async fn start_on(addr: SocketAddr, script: Vec<Reply>) -> Result<Self> {
        Self::listen(addr, script, None).await
    }

    /// `on_request` runs as each request arrives, before it is recorded.
    pub async fn start_with_hook(script: Vec<Reply>, on_request: Option<Hook>) -> Result<Self> {
        Self::listen(SocketAddr::from(([127, 0, 0, 1], 0)), script, on_request).await
    }

    async fn listen(
        addr: SocketAddr,
        script: Vec<Reply>,
        on_request: Option<Hook>,
    ) -> Result<Self> {
        let state = Arc::new(ReceiverState {
            script: Mutex::new(script.into()),
            received: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            on_request,
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Result<Vec<Received>> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received();
            if received.len() >= n {
                return Ok(received);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, arrived).await.is_err() {
                bail!("expected {n} requests, got {}", self.received().len());
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// A receiver that holds requests

#[derive(Default)]
struct HeldState {
    arrived: Mutex<Vec<Instant>>,
    held: AtomicUsize,
    most_held: AtomicUsize,
}

/// A webhook receiver on 127.0.0.1 that accepts every request and answers none until
/// released (then 200): a backend that hangs.
pub struct HeldReceiver {
    pub addr: SocketAddr,
    state: Arc<HeldState>,
    release: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HeldReceiver {
    pub async fn start() -> Result<Self> {
        let state = Arc::new(HeldState::default());
        let (release, released) = tokio::sync::watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(move || {
            let state = handler_state.clone();
            let mut released = released.clone();
            async move {
                lock(&state.arrived).push(Instant::now());
                let held = state.held.fetch_add(1, Ordering::SeqCst) + 1;
                state.most_held.fetch_max(held, Ordering::SeqCst);
                let _ = released.wait_for(|go| *go).await;
                state.held.fetch_sub(1, Ordering::SeqCst);
                StatusCode::OK
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            release,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests that arrived so far.
    pub fn arrived(&self) -> usize {
        lock(&self.state.arrived).len()
    }

    /// The most requests held at once.
    pub fn most_held(&self) -> usize {
        self.state.most_held.load(Ordering::SeqCst)
    }

    /// Answers every held request, and every later one at once.
    pub fn release(&self) {
        let _ = self.release.send(true);
    }
}

impl Drop for HeldReceiver {
    fn drop(&mut self) {
        self.release();
        self.task.abort();
    }
}

/// Waits until `receivers` together got `n` requests.
pub async fn wait_for_arrivals(receivers: &[&HeldReceiver], n: usize) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let arrived: usize = receivers.iter().map(|r| r.arrived()).sum();
        if arrived >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("expected {n} held requests, got {arrived}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// DNS

/// A DNS of the test's own: every name resolves to the next address of a script (the
/// last one repeats), and each lookup is counted.
pub struct ScriptedDns {
    answers: Mutex<VecDeque<IpAddr>>,
    lookups: AtomicUsize,
}

impl ScriptedDns {
    pub fn new(answers: impl IntoIterator<Item = IpAddr>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into_iter().collect()),
            lookups: AtomicUsize::new(0),
        })
    }

    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    /// The next answer, as a lookup.
    pub fn answer(&self) -> Option<IpAddr> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let mut answers = lock(&self.answers);
        if answers.len() > 1 {
            answers.pop_front()
        } else {
            answers.front().copied()
        }
    }
}

impl Resolve for ScriptedDns {
    fn resolve(&self, _name: Name) -> Resolving {
        let addresses: Vec<SocketAddr> = self
            .answer()
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        Box::pin(async move { Ok(Box::new(addresses.into_iter()) as Addrs) })
    }
}

// ---------------------------------------------------------------------------------------
// Harness

/// Which store a harness runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Memory,
}

/// A short schedule (0, 50 ms, 100 ms), a 2 s timeout and a 1 s safety poll.
pub fn fast_config() -> DeliveryConfig {
    DeliveryConfig {
        retry_schedule: vec![
            Duration::ZERO,
            Duration::from_millis(50),
            Duration::from_millis(100),
        ],
        timeout: Duration::from_secs(2),
        reaper_interval: Duration::from_millis(50),
        ..DeliveryConfig::default()
    }
}

/// Seconds for a schedule written the way operators write it.
pub fn schedule(secs: &[f64]) -> Vec<Duration> {
    secs.iter().map(|s| Duration::from_secs_f64(*s)).collect()
}

pub struct Harness {
    pub services: Services,
    /// The store under the services, for what a test sets up or checks directly.
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub clock: Arc<SkewClock>,
    pub caller: Caller,
    pub shutdown: CancellationToken,
    worker: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl Harness {
    pub async fn new() -> Result<Self> {
        Self::on(Backend::Sqlite).await
    }

    pub async fn on(backend: Backend) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = match backend {
            Backend::Sqlite => {
                let options = StoreOptions {
                    sqlite_synchronous: Synchronous::Normal,
                    ..StoreOptions::default()
                };
                port_store::open(&dir.path().join("portd.db").display().to_string(), &options)
                    .await?
            }
            Backend::Memory => Arc::new(MemoryStore::new()),
        };
        let clock = Arc::new(SkewClock::default());
        let entropy: Arc<dyn Entropy> = Arc::new(SeqEntropy::new());
        let ids = IdGenerator::new(clock.clone(), entropy);
        let hub = Arc::new(Hub::new());
        let services = Services::new(
            store.clone(),
            clock.clone(),
            ids,
            hub.clone(),
            Arc::new(AllowAllDestinations),
            Arc::new(port_core::ports::InProcessTemplates::default()),
        );
        let now = clock.now();
        let org = Organization {
            id: services.ids.next(),
            name: "test".into(),
            created_at: now,
        };
        store.create_organization(&org).await?;
        store
            .add_credential(&Credential {
                org_id: org.id.clone(),
                client_id: CLIENT_ID.into(),
                client_secret: ClientSecret::new(SECRET),
                created_at: now,
                user: None,
            })
            .await?;
        let caller = Caller::machine(org.id, CLIENT_ID);
        Ok(Self {
            services,
            store,
            hub,
            clock,
            caller,
            shutdown: CancellationToken::new(),
            worker: None,
            _dir: dir,
        })
    }

    pub fn start_worker(&mut self, config: DeliveryConfig) -> Result<()> {
        let handle = DeliveryWorker::spawn(
            self.services.clone(),
            self.hub.clone(),
            config,
            self.shutdown.clone(),
        )?;
        self.worker = Some(handle);
        Ok(())
    }

    /// Starts the worker carrying deliveries with `transports`.
    pub fn start_worker_with_transports(
        &mut self,
        config: DeliveryConfig,
        transports: Transports,
    ) -> Result<()> {
        let handle = DeliveryWorker::spawn_with_transports(
            self.services.clone(),
            self.hub.clone(),
            config,
            transports,
            self.shutdown.clone(),
        )?;
        self.worker = Some(handle);
        Ok(())
    }

    /// Starts the worker resolving host names with `resolver` (the destination policy
    /// still vets its answers).
    pub fn start_worker_with_resolver(
        &mut self,
        config: DeliveryConfig,
        resolver: Arc<dyn Resolve>,
    ) -> Result<()> {
        let handle = DeliveryWorker::spawn_with_resolver(
            self.services.clone(),
            self.hub.clone(),
            config,
            resolver,
            self.shutdown.clone(),
        )?;
        self.worker = Some(handle);
        Ok(())
    }

    /// Cancels the worker and waits for it to end.
    pub async fn stop_worker(&mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            tokio::time::timeout(PATIENCE, worker)
                .await
                .context("the worker did not stop")??;
        }
        Ok(())
    }

    /// Another organization with its own signing credential.
    pub async fn add_org(&self, name: &str) -> Result<Caller> {
        let now = self.clock.now();
        let org = Organization {
            id: self.services.ids.next(),
            name: name.into(),
            created_at: now,
        };
        self.store.create_organization(&org).await?;
        let client_id = format!("{name}-client");
        self.store
            .add_credential(&Credential {
                org_id: org.id.clone(),
                client_id: client_id.clone(),
                client_secret: ClientSecret::new(SECRET),
                created_at: now,
                user: None,
            })
            .await?;
        Ok(Caller::machine(org.id, &client_id))
    }

    /// Stores a v2 action definition.
    pub async fn create_action(&self, definition: &Value) -> Result<()> {
        self.create_action_as(&self.caller, definition).await
    }

    /// Stores a v2 action definition in `caller`'s organization.
    pub async fn create_action_as(&self, caller: &Caller, definition: &Value) -> Result<()> {
        let now = self.services.clock.now();
        let action = Action {
            meta: ActionMeta {
                id: self.services.ids.next(),
                created_at: now,
                created_by: CLIENT_ID.into(),
                updated_at: now,
                updated_by: CLIENT_ID.into(),
            },
            definition: ActionDefinition::from_v2(definition)?,
        };
        self.store.create_action(&caller.org_id, &action).await?;
        Ok(())
    }

    pub async fn execute(&self, action: &str, properties: Value) -> Result<Run> {
        self.execute_as(&self.caller, action, properties).await
    }

    pub async fn execute_as(
        &self,
        caller: &Caller,
        action: &str,
        properties: Value,
    ) -> Result<Run> {
        let request = ExecuteRequest {
            properties,
            ..ExecuteRequest::default()
        };
        Ok(self.services.execute(caller, action, request).await?)
    }

    /// The only delivery of a run of `caller`'s organization.
    pub async fn delivery_of(&self, caller: &Caller, id: &RunId) -> Result<Delivery> {
        let mut all = self.store.deliveries_of_run(&caller.org_id, id).await?;
        match all.len() {
            1 => Ok(all.remove(0).0),
            n => bail!("run {id} has {n} deliveries"),
        }
    }

    pub async fn run(&self, id: &RunId) -> Result<Run> {
        Ok(self.services.get_run(&self.caller, id.as_str()).await?)
    }

    pub async fn wait_for_run(
        &self,
        id: &RunId,
        what: &str,
        done: impl Fn(&Run) -> bool,
    ) -> Result<Run> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let run = self.run(id).await?;
            if done(&run) {
                return Ok(run);
            }
            if Instant::now() > deadline {
                bail!("run {id} never became {what}: {run:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn logs(&self, id: &RunId) -> Result<Vec<RunLog>> {
        Ok(self
            .store
            .list_logs(&self.caller.org_id, id, 0, 1000)
            .await?)
    }

    pub async fn wait_for_delivery(
        &self,
        id: &RunId,
        state: DeliveryState,
    ) -> Result<(Delivery, Vec<DeliveryAttempt>)> {
        self.wait_for_delivery_of(&self.caller, id, state).await
    }

    /// Waits for the only delivery of a run of `caller`'s organization to reach `state`.
    pub async fn wait_for_delivery_of(
        &self,
        caller: &Caller,
        id: &RunId,
        state: DeliveryState,
    ) -> Result<(Delivery, Vec<DeliveryAttempt>)> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut all = self.store.deliveries_of_run(&caller.org_id, id).await?;
            if all.len() != 1 {
                bail!("run {id} has {} deliveries", all.len());
            }
            let (delivery, attempts) = all.remove(0);
            if delivery.state == state {
                return Ok((delivery, attempts));
            }
            if Instant::now() > deadline {
                bail!("the delivery of run {id} never became {state:?}: {delivery:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            worker.abort();
        }
    }
}

/// A v2 self-service WEBHOOK action posting to `url`; `method` keys are merged into
/// `invocationMethod` and `top` keys into the action.
pub fn webhook_action(identifier: &str, url: &str, method: Value, top: Value) -> Value {
    let mut invocation = json!({"type": "WEBHOOK", "url": url});
    merge(&mut invocation, method);
    let mut action = json!({
        "identifier": identifier,
        "title": identifier,
        "trigger": {
            "type": "self-service",
            "operation": "CREATE",
            "userInputs": {"properties": {}},
        },
        "invocationMethod": invocation,
    });
    merge(&mut action, top);
    action
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}
