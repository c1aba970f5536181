//! Fixtures: portd in process (`TestServer`, which runs the delivery worker), the real
//! `port-runner` binary as a child process with a configuration and shell scripts in
//! a temporary directory.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use port_client::{PortClient, Run, RunLog};
use port_server::testing::TestServer;
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long waits for something expected last at most.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// portd, a client of it, and a directory for the runner's files.
pub struct Setup {
    pub server: TestServer,
    pub client: PortClient,
    pub dir: TempDir,
}

impl Setup {
    pub async fn start() -> Self {
        Self::with(TestServer::start().await.expect("portd starts")).await
    }

    /// portd making a single attempt at each webhook: a failed answer is final.
    pub async fn single_attempt() -> Self {
        let delivery = port_delivery::DeliveryConfig {
            retry_schedule: vec![Duration::ZERO],
            ..port_delivery::DeliveryConfig::default()
        };
        Self::with(
            TestServer::start_with_delivery(delivery)
                .await
                .expect("portd starts"),
        )
        .await
    }

    async fn with(server: TestServer) -> Self {
        let client = PortClient::builder()
            .base_url(&server.api_url)
            .credentials(&server.client_id, &server.client_secret)
            .build()
            .expect("a valid client");
        client
            .create_blueprint(&json!({
                "identifier": "microservice",
                "title": "Service",
                "schema": { "properties": { "region": { "type": "string" } }, "required": [] }
            }))
            .await
            .expect("the blueprint is created");
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("scripts")).expect("a scripts directory");
        Self {
            server,
            client,
            dir,
        }
    }

    /// Writes an executable script under `scripts/`.
    pub fn script(&self, name: &str, text: &str) {
        let path = self.dir.path().join("scripts").join(name);
        std::fs::write(&path, text).expect("the script is written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("the script is executable");
        }
    }

    /// Writes `runner.toml`: `[port]` names only the API (the credentials come from
    /// the environment), then `rest`.
    pub fn config(&self, rest: &str) -> PathBuf {
        let path = self.dir.path().join("runner.toml");
        let text = format!("[port]\napi_url = \"{}\"\n{rest}", self.server.api_url);
        std::fs::write(&path, text).expect("the configuration is written");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the runner with `config`; returns once it announced itself.
    pub fn runner(&self, config: &Path) -> Runner {
        Runner::start(config, &self.server.client_id, &self.server.client_secret)
    }

    /// Creates a v2 action with a `name` input and a secret `token` input, invoked by
    /// webhook at `url` (or pulled, with `agent`), with the legacy message as body.
    pub async fn action(&self, identifier: &str, url: &str, agent: bool) {
        self.action_with(
            identifier,
            json!({ "type": "WEBHOOK", "url": url, "agent": agent }),
        )
        .await;
    }

    /// Like [`Self::action`] with any invocation method.
    pub async fn action_with(&self, identifier: &str, invocation_method: Value) {
        self.client
            .create_action(&json!({
                "identifier": identifier,
                "title": identifier,
                "trigger": {
                    "type": "self-service",
                    "operation": "CREATE",
                    "blueprintIdentifier": "microservice",
                    "userInputs": { "properties": {
                        "name": { "type": "string" },
                        "token": { "type": "string", "encryption": "aes256-gcm" }
                    }, "required": [] }
                },
                "invocationMethod": invocation_method
            }))
            .await
            .expect("the action is created");
    }

    pub async fn execute(&self, action: &str, properties: Value) -> Run {
        let mut request = port_client::ExecuteRequest::new();
        for (key, value) in properties.as_object().into_iter().flatten() {
            request = request.property(key.clone(), value.clone());
        }
        self.client
            .execute(action, &request)
            .await
            .expect("the run is created")
    }

    pub async fn ended(&self, run_id: &str) -> Run {
        self.client
            .wait_for_run(run_id, PATIENCE)
            .await
            .expect("the run ends")
    }

    pub async fn logs(&self, run_id: &str) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let page: Vec<RunLog> = self
                .client
                .logs(run_id, all.len() as u64, 50)
                .await
                .expect("logs are readable");
            let done = page.len() < 50;
            all.extend(page.into_iter().map(|l| l.message));
            if done {
                return all;
            }
        }
    }

    /// Waits until the run's log has a line containing `text`.
    pub async fn wait_for_log(&self, run_id: &str, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.logs(run_id).await.iter().any(|l| l.contains(text)) {
                return;
            }
            assert!(Instant::now() < deadline, "no log line with {text:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A running `port-runner`, killed when dropped.
pub struct Runner {
    child: Child,
    /// Where it listens (webhook mode).
    pub url: Option<String>,
    output: Arc<Mutex<String>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut output = into.lock().unwrap_or_else(PoisonError::into_inner);
            output.push_str(&line);
            output.push('\n');
        }
    });
}

impl Runner {
    fn start(config: &Path, client_id: &str, client_secret: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_port-runner"))
            .arg("--config")
            .arg(config)
            .env("PORT_CLIENT_ID", client_id)
            .env("PORT_CLIENT_SECRET", client_secret)
            .env("PORT_RUNNER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("port-runner starts");
        let output = Arc::new(Mutex::new(String::new()));
        collect(
            child.stderr.take().expect("piped stderr"),
            Arc::clone(&output),
        );
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let keep = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            for line in lines.by_ref() {
                let announced = line.starts_with("port-runner ");
                keep.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&format!("{line}\n"));
                if announced {
                    let _ = tx.send(line);
                    break;
                }
            }
            for line in lines {
                keep.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&format!("{line}\n"));
            }
        });
        let mut runner = Self {
            child,
            url: None,
            output,
        };
        match rx.recv_timeout(PATIENCE) {
            Ok(line) => {
                runner.url = line
                    .strip_prefix("port-runner listening on ")
                    .map(str::to_owned);
            }
            Err(_) => panic!("port-runner did not start:\n{}", runner.output()),
        }
        runner
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends SIGTERM and waits for it to exit.
    #[cfg(unix)]
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM sent");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "port-runner did not stop:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the process `pid` is gone (or a zombie nobody reaped yet).
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) S …`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Waits for the pid written to `file`, then for that process to be gone.
pub async fn wait_gone(file: &Path) {
    let deadline = Instant::now() + PATIENCE;
    let pid: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", file.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    while !is_gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} outlived its run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
