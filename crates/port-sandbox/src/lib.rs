//! `port-sandbox`: renders action templates in worker processes, so that no template a
//! tenant writes can take the server down or slow other tenants.
//!
//! port-core's evaluator bounds steps, value size and depth, recursion and output (its
//! [`Budget`]). What it cannot bound from inside one process (the time and memory one
//! native jq operation takes, a stack overflow it does not see coming) the operating
//! system bounds here:
//!
//! - each render runs in a worker process ([`worker::run`], started as `portd
//!   template-worker`) with an address-space limit, no core dumps, no file writes and
//!   an empty environment;
//! - the server kills a worker that has not answered within the wall clock
//!   ([`Limits::time`]), and maps a worker that died to the limit it hit (memory,
//!   recursion) — always the tenant's 422, never the server's crash;
//! - workers are shared fairly: an organization uses at most [`SandboxConfig::per_org`]
//!   of them at once, and beyond [`SandboxConfig::queue_per_org`] waiting renders it
//!   is told to slow down (429), so one tenant's slow templates only queue its own.
//!
//! The parent side is async (tokio): waiting for a worker never blocks a runtime
//! thread.

pub mod protocol;
pub mod worker;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use port_core::id::OrgId;
use port_core::ports::TemplateEngine;
use port_core::template::{Budget, Limit, TemplateError};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::protocol::{Answer, Request};

/// What one render may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall clock of one render, from sending it to its answer.
    pub time: Duration,
    /// Memory a worker may allocate beyond what it maps at start.
    pub memory_bytes: u64,
    /// Stack of a worker's render thread (the template budget's recursion bound is a
    /// few MiB below it).
    pub stack_bytes: usize,
    /// Steps, depth and output (its `stack_bytes` is the worker's to set).
    pub budget: Budget,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(1),
            memory_bytes: 256 * 1024 * 1024,
            stack_bytes: 64 * 1024 * 1024,
            budget: Budget::default(),
        }
    }
}

/// How to start workers and share them.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The worker executable and its arguments (portd: itself, `template-worker`).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Workers rendering at once, over all organizations.
    pub workers: usize,
    /// Workers one organization may use at once.
    pub per_org: usize,
    /// Renders one organization may have waiting for a worker before it gets a 429.
    pub queue_per_org: usize,
    /// How long a render waits for a worker before it gets a 429.
    pub queue_wait: Duration,
    /// A worker is replaced after this many renders (bounds what any leak can grow).
    pub renders_per_worker: u64,
    pub limits: Limits,
}

impl SandboxConfig {
    /// Defaults for `program args…`: as many workers as cores (at least two), half of
    /// them (at least one) per organization.
    pub fn new(program: impl Into<PathBuf>, args: impl IntoIterator<Item = OsString>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let workers = cores.max(2);
        Self {
            program: program.into(),
            args: args.into_iter().collect(),
            workers,
            per_org: (workers / 2).max(1),
            queue_per_org: 32,
            queue_wait: Duration::from_secs(5),
            renders_per_worker: 10_000,
            limits: Limits::default(),
        }
    }
}

/// Renders templates in worker processes (see the crate docs). Cheap to clone.
#[derive(Debug, Clone)]
pub struct TemplateSandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SandboxConfig,
    /// One permit per worker that may render at once.
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Worker>>,
    shares: Mutex<HashMap<OrgId, Arc<Share>>>,
}

/// One organization's part of the workers.
#[derive(Debug)]
struct Share {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl TemplateSandbox {
    /// A sandbox with no worker yet; they start on first use.
    pub fn new(config: SandboxConfig) -> Self {
        let config = SandboxConfig {
            workers: config.workers.max(1),
            per_org: config.per_org.clamp(1, config.workers.max(1)),
            ..config
        };
        Self {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(config.workers)),
                idle: Mutex::new(Vec::new()),
                shares: Mutex::new(HashMap::new()),
                config,
            }),
        }
    }

    /// Starts one worker and renders a trivial template with it, so a server finds
    /// out at start whether its workers can run at all.
    pub async fn warm_up(&self) -> Result<(), TemplateError> {
        let mut worker = Worker::spawn(&self.inner.config).map_err(|e| unavailable(&e))?;
        let request = Request {
            template: Value::String("{{ 1 + 1 }}".to_owned()),
            context: Value::Null,
            budget: self.inner.config.limits.budget.clone(),
        };
        match worker.render(&request, &self.inner.config.limits).await {
            Ok(Answer::Rendered(value)) if value == 2 => {
                self.inner.put_back(worker);
                Ok(())
            }
            Ok(other) => Err(TemplateError::Unavailable {
                busy: false,
                message: format!("the template worker answered {other:?} to 1 + 1"),
            }),
            Err(error) => Err(error),
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Workers currently idle (for tests and metrics).
    pub fn idle_workers(&self) -> usize {
        lock(&self.inner.idle).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unavailable(error: &std::io::Error) -> TemplateError {
    TemplateError::Unavailable {
        busy: false,
        message: format!("the template sandbox cannot start a worker: {error}"),
    }
}

fn busy(org: &OrgId, why: &str) -> TemplateError {
    TemplateError::Unavailable {
        busy: true,
        message: format!(
            "organization {org} has too many template renders in progress ({why}); retry later"
        ),
    }
}

impl Inner {
    fn share(&self, org: &OrgId) -> Arc<Share> {
        let mut shares = lock(&self.shares);
        Arc::clone(shares.entry(org.clone()).or_insert_with(|| {
            Arc::new(Share {
                slots: Arc::new(Semaphore::new(self.config.per_org)),
                waiting: AtomicUsize::new(0),
            })
        }))
    }

    /// Forgets an organization's share once nobody uses it, so the map holds only
    /// organizations rendering right now.
    fn release_share(&self, org: &OrgId, share: Arc<Share>) {
        let mut shares = lock(&self.shares);
        drop(share);
        if let Some(current) = shares.get(org)
            && Arc::strong_count(current) == 1
        {
            shares.remove(org);
        }
    }

    /// Waits for the organization's slot, then a worker slot.
    async fn acquire(
        &self,
        org: &OrgId,
        share: &Share,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), TemplateError> {
        let waiting = share.waiting.fetch_add(1, Ordering::SeqCst);
        let acquired = async {
            if waiting >= self.config.queue_per_org {
                return Err(busy(org, &format!("{} waiting", self.config.queue_per_org)));
            }
            let wait = self.config.queue_wait;
            let own = tokio::time::timeout(wait, Arc::clone(&share.slots).acquire_owned())
                .await
                .map_err(|_| busy(org, "no worker free in time"))?
                .map_err(|_| busy(org, "the sandbox is closing"))?;
            let slot = tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned())
                .await
                .map_err(|_| busy(org, "no worker free in time"))?
                .map_err(|_| busy(org, "the sandbox is closing"))?;
            Ok((own, slot))
        }
        .await;
        share.waiting.fetch_sub(1, Ordering::SeqCst);
        acquired
    }

    fn take_worker(&self) -> Result<Worker, TemplateError> {
        if let Some(worker) = lock(&self.idle).pop() {
            return Ok(worker);
        }
        Worker::spawn(&self.config).map_err(|e| unavailable(&e))
    }

    /// Starts a worker in place of one that was killed, so the next render (likely
    /// another organization's) does not pay for the start.
    fn replace_lost_worker(&self) {
        if !lock(&self.idle).is_empty() {
            return;
        }
        match Worker::spawn(&self.config) {
            Ok(worker) => self.put_back(worker),
            Err(error) => tracing::warn!(%error, "cannot start a template worker"),
        }
    }

    fn put_back(&self, worker: Worker) {
        if worker.renders >= self.config.renders_per_worker {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < self.config.workers {
            idle.push(worker);
        }
    }
}

#[async_trait]
impl TemplateEngine for TemplateSandbox {
    async fn render(
        &self,
        org: &OrgId,
        template: &Value,
        context: &Value,
    ) -> Result<Value, TemplateError> {
        // Templates without `{{` render as themselves: no worker needed.
        if !mentions_template(template) {
            return port_core::template::render_within(
                template,
                context,
                &self.inner.config.limits.budget,
            );
        }
        let share = self.inner.share(org);
        let result = async {
            let _permits = self.inner.acquire(org, &share).await?;
            let mut worker = self.inner.take_worker()?;
            let request = Request {
                template: template.clone(),
                context: context.clone(),
                budget: self.inner.config.limits.budget.clone(),
            };
            match worker.render(&request, &self.inner.config.limits).await {
                Ok(answer) => {
                    self.inner.put_back(worker);
                    match answer {
                        Answer::Rendered(value) => Ok(value),
                        Answer::Failed(error) => Err(error),
                    }
                }
                Err(error) => {
                    tracing::warn!(org = %org, %error, "a template render ended its worker");
                    self.inner.replace_lost_worker();
                    Err(error)
                }
            }
        }
        .await;
        self.inner.release_share(org, share);
        result
    }

    fn max_output_bytes(&self) -> usize {
        self.inner.config.limits.budget.output_bytes
    }
}

/// Whether any string or key of `value` contains `{{`.
fn mentions_template(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("{{"),
        Value::Array(items) => items.iter().any(mentions_template),
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains("{{") || mentions_template(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// How much of a worker's stderr is kept to explain how it died.
const STDERR_TAIL: usize = 4096;

/// A worker process and its pipes.
#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: JoinHandle<Vec<u8>>,
    renders: u64,
}

impl Worker {
    fn spawn(config: &SandboxConfig) -> std::io::Result<Self> {
        let mut child = Command::new(&config.program)
            .args(&config.args)
            .env_clear()
            // One malloc arena: the address-space limit then measures the heap, not
            // per-thread arena reservations.
            .env("MALLOC_ARENA_MAX", "1")
            .env(
                worker::ENV_MEMORY_BYTES,
                config.limits.memory_bytes.to_string(),
            )
            .env(
                worker::ENV_STACK_BYTES,
                config.limits.stack_bytes.to_string(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("the worker's pipes are missing"));
        };
        // Drained all along, so a chatty worker never blocks on a full pipe; only the
        // tail is kept.
        let stderr = tokio::spawn(async move {
            let mut tail = Vec::new();
            let mut buffer = [0_u8; 1024];
            while let Ok(read) = stderr.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                tail.extend_from_slice(&buffer[..read]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            tail
        });
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr,
            renders: 0,
        })
    }

    /// Sends one request and waits for its answer within the wall clock. A worker
    /// that fails is killed and consumed: the error says which limit it hit.
    async fn render(
        &mut self,
        request: &Request,
        limits: &Limits,
    ) -> Result<Answer, TemplateError> {
        self.renders += 1;
        let max_answer = limits
            .budget
            .output_bytes
            .saturating_mul(2)
            .saturating_add(64 * 1024);
        let exchange = async {
            protocol::send_frame(&mut self.stdin, request).await?;
            protocol::receive_frame::<Answer>(&mut self.stdout, max_answer).await
        };
        match tokio::time::timeout(limits.time, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(self.died(limits).await),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Err(TemplateError::Limit {
                    expression: String::new(),
                    limit: Limit::Time(u64::try_from(limits.time.as_millis()).unwrap_or(u64::MAX)),
                })
            }
        }
    }

    /// The worker stopped answering: why, from its exit status and last words.
    async fn died(&mut self, limits: &Limits) -> TemplateError {
        let _ = self.child.start_kill();
        let status = self.child.wait().await.ok();
        let stderr = tokio::time::timeout(Duration::from_millis(200), &mut self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        classify(status, &String::from_utf8_lossy(&stderr), limits)
    }
}

/// Maps how a worker ended to what the template did.
fn classify(status: Option<ExitStatus>, stderr: &str, limits: &Limits) -> TemplateError {
    let limit = |limit| TemplateError::Limit {
        expression: String::new(),
        limit,
    };
    if stderr.contains("has overflowed its stack") {
        return limit(Limit::Recursion);
    }
    if stderr.contains("memory allocation of") || stderr.contains("capacity overflow") {
        return limit(Limit::Memory(limits.memory_bytes));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        // SIGKILL we did not send: the kernel's OOM killer.
        if status.and_then(|s| s.signal()) == Some(9) {
            return limit(Limit::Memory(limits.memory_bytes));
        }
    }
    let status = status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
    TemplateError::Evaluate {
        expression: String::new(),
        message: format!("the template evaluator stopped while rendering this template ({status})"),
    }
}
